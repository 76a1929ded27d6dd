//! Hostile input never panics (issue #15, item 3), property-based: any bytes on the wire, any
//! envelope a Byzantine peer can build, and any sequence of decoded messages fed to a server
//! and a worker end in a message or a counted rejection — never a panic.

// Property tests unwrap their fixtures: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, LazyLock};

use byzsgd_api::{Manifest, validate};
use byzsgd_core::{
    assemble::{Assembly, JobData},
    job::Role,
    protocol::{NodeId, Payload},
};
use byzsgd_node::rpc::{
    proto::{Envelope, Tensor},
    wire,
};
use ndarray::Array1;
use proptest::{collection::vec, prelude::*};
use prost::Message as _;

const JOB: &str = "hostile";

/// One job for every case: two servers could not tolerate a Byzantine one, so 5 and 4.
static ASSEMBLY: LazyLock<Assembly> = LazyLock::new(|| {
    let manifest = Manifest::parse(
        &format!(
            "
apiVersion: byzsgd.io/v1alpha1
kind: ByzSGDJob
metadata: {{name: {JOB}}}
spec:
  model: {{kind: logistic}}
  dataset: {{name: synthetic}}
  training: {{steps: 50, batchSize: 8, learningRate: 0.05, seed: 3}}
  servers: {{replicas: 5, byzantine: 1, gatherEvery: 2}}
  workers: {{replicas: 4, byzantine: 1}}
"
        ),
        "<test>",
    )
    .unwrap();
    let plan = validate(&manifest.spec).unwrap();
    Assembly::new(plan.clone(), JobData::load(&plan).unwrap()).unwrap()
});

fn dimension() -> usize {
    ASSEMBLY.config().dimension
}

/// Any float a peer can send, the awkward ones often.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -10.0_f32..10.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::MAX),
        1 => Just(-0.0_f32),
        1 => any::<f32>(),
    ]
}

/// A step near the protocol's, or anywhere (u64::MAX included).
fn step() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0_u64..60, 1 => any::<u64>(), 1 => Just(u64::MAX)]
}

/// A sender of the job or outside it.
fn sender() -> impl Strategy<Value = NodeId> {
    (any::<bool>(), 0_usize..7).prop_map(|(server, index)| {
        if server {
            NodeId::server(index)
        } else {
            NodeId::worker(index)
        }
    })
}

/// A payload as a decoded envelope can carry, vectors of the right length or not.
fn payload() -> impl Strategy<Value = Payload> {
    let vector = prop_oneof![
        4 => vec(value(), dimension()),
        1 => vec(value(), 0..dimension() + 3),
    ]
    .prop_map(|values| Arc::new(Array1::from(values)));
    prop_oneof![
        (step(), vector.clone()).prop_map(|(step, params)| Payload::Model { step, params }),
        (step(), vector.clone()).prop_map(|(step, params)| Payload::Gather { step, params }),
        (step(), vector.clone()).prop_map(|(step, params)| Payload::State { step, params }),
        (step(), vector, value()).prop_map(|(step, gradient, loss)| Payload::Gradient {
            step,
            gradient,
            loss
        }),
        step().prop_map(|step| Payload::Pull { step }),
        step().prop_map(|step| Payload::StateRequest { step }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Any bytes: protobuf decoding fails or yields an envelope, which the edge decodes or
    /// rejects.
    #[test]
    fn any_bytes_are_a_message_or_a_rejection(bytes in vec(any::<u8>(), 0..4096)) {
        if let Ok(envelope) = Envelope::decode(bytes.as_slice()) {
            let _ = wire::decode(&envelope, JOB, dimension());
        }
    }

    /// Any envelope a peer can build: wrong job, unknown kind, a tensor whose length and bytes
    /// disagree, a missing tensor.
    #[test]
    fn any_envelope_is_decoded_or_rejected(
        job in prop_oneof![Just(JOB.to_owned()), "[a-z-]{0,12}"],
        step in step(),
        kind in -2_i32..7,
        tensor in proptest::option::of((0_u32..(dimension() as u32 + 4), vec(any::<u8>(), 0..(dimension() * 4 + 8)))),
        loss in value(),
    ) {
        let envelope = Envelope {
            job,
            step,
            kind,
            tensor: tensor.map(|(length, data)| Tensor { length, data: data.into() }),
            loss,
        };
        if let Ok(payload) = wire::decode(&envelope, JOB, dimension()) {
            // What passes the edge has the job's length and finite-or-not floats, nothing else.
            if let Some(vector) = payload.vector() {
                prop_assert_eq!(vector.len(), dimension());
            }
        }
    }

    /// A message survives the wire unchanged (a loss of -0.0 arrives as 0.0: proto3 does not
    /// send a field equal to its default, and the loss is informational).
    #[test]
    fn encoding_round_trips(payload in payload()) {
        let payload = match payload {
            // x + 0.0 is x for every float but -0.0, which becomes 0.0 (IEEE 754).
            Payload::Gradient { step, gradient, loss } => Payload::Gradient {
                step,
                gradient,
                loss: loss + 0.0,
            },
            other => other,
        };
        let envelope = wire::encode(JOB, &payload);
        let bytes = envelope.encode_to_vec();
        let decoded = Envelope::decode(bytes.as_slice()).unwrap();
        match wire::decode(&decoded, JOB, dimension()) {
            Ok(back) => prop_assert_eq!(
                format!("{back:?}"),
                format!("{payload:?}"),
                "NaN prints the same, so Debug compares bit-identical vectors too"
            ),
            Err(_) => prop_assert!(
                payload.vector().is_some_and(|v| v.len() != dimension()),
                "only a wrong length is refused"
            ),
        }
    }

}

proptest! {
    // Fewer cases: each builds two nodes and may aggregate 7850-dimensional vectors.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any sequence of messages from anyone, to a server and to a worker, with time passing:
    /// each is handled or rejected, and the nodes keep answering.
    #[test]
    fn the_protocol_survives_any_message_sequence(
        messages in vec((sender(), payload(), 0.0_f64..5.0), 1..48),
    ) {
        for role in [Role::Server, Role::Worker] {
            let mut node = ASSEMBLY.node(role, 1).unwrap();
            let mut now = 0.0;
            let _ = node.start(now);
            for (from, payload, wait) in &messages {
                now += wait;
                let _ = node.handle(now, *from, payload.clone());
                let _ = node.tick(now);
                let _ = node.step();
            }
        }
    }
}
