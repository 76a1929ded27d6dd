//! Any bytes a peer sends: protobuf decoding of an `Envelope`, the edge checks of
//! `wire::decode`, and — for whatever passes them — the protocol's handling of the message by a
//! server and a worker (every `Payload` kind, from every claimed sender). The input's first byte
//! picks the sender; the rest is the envelope.

#![no_main]

use std::sync::LazyLock;

use byzsgd_api::{Manifest, validate};
use byzsgd_core::{
    assemble::{Assembly, JobData},
    job::Role,
    protocol::NodeId,
};
use byzsgd_node::rpc::{proto::Envelope, wire};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

const JOB: &str = "fuzz";

static ASSEMBLY: LazyLock<Assembly> = LazyLock::new(|| {
    let manifest = Manifest::parse(
        "apiVersion: byzsgd.io/v1alpha1
kind: ByzSGDJob
metadata: {name: fuzz}
spec:
  model: {kind: logistic}
  dataset: {name: synthetic}
  training: {steps: 20, batchSize: 4, learningRate: 0.05, seed: 3}
  servers: {replicas: 5, byzantine: 1, gatherEvery: 2}
  workers: {replicas: 4, byzantine: 1}
",
        "<fuzz>",
    )
    .expect("the fuzz job parses");
    let plan = validate(&manifest.spec).expect("the fuzz job is valid");
    Assembly::new(plan.clone(), JobData::load(&plan).expect("synthetic data")).expect("assembles")
});

fuzz_target!(|data: &[u8]| {
    let Some((&who, bytes)) = data.split_first() else {
        return;
    };
    let Ok(envelope) = Envelope::decode(bytes) else {
        return;
    };
    let assembly = &*ASSEMBLY;
    let Ok(payload) = wire::decode(&envelope, JOB, assembly.config().dimension) else {
        return;
    };
    let from = if who & 0x80 == 0 {
        NodeId::server(usize::from(who % 8))
    } else {
        NodeId::worker(usize::from(who % 8))
    };
    for (role, index) in [(Role::Server, 0), (Role::Worker, 0)] {
        let mut node = assembly.node(role, index).expect("node");
        let _ = node.start(0.0);
        let _ = node.handle(0.1, from, payload.clone());
        let _ = node.tick(10.0);
    }
});
