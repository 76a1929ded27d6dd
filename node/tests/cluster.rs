//! A job over real gRPC on loopback, in one process: 5 servers and 4 workers, one Byzantine
//! of each (an equivocating server, an "a little is enough" worker). Every node binds
//! `127.0.0.1:0`, so tests never collide on ports.

use std::{collections::BTreeMap, time::Duration};

use byzsgd_api::{Manifest, pki::JobCa, validate};
use byzsgd_core::{
    assemble::{Assembly, JobData},
    job::{Behaviour, Role},
    protocol::NodeId,
};
use byzsgd_node::{
    rpc::{Transport, tls::Tls},
    runtime,
    state::RuntimeOptions,
};
use tokio::net::TcpListener;

const JOB: &str = "
apiVersion: byzsgd.io/v1alpha1
kind: ByzSGDJob
metadata: {name: grpc-test}
spec:
  model: {kind: logistic}
  dataset: {name: synthetic}
  training: {steps: 120, batchSize: 16, learningRate: 0.05, seed: 5, evaluateEvery: 40}
  servers: {replicas: 5, byzantine: 1}
  workers: {replicas: 4, byzantine: 1}
  inject:
    - {role: server, count: 1, attack: equivocate}
    - {role: worker, count: 1, attack: alie}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_job_converges_over_grpc_with_byzantine_server_and_worker() {
    let manifest = Manifest::parse(JOB, "<test>").unwrap();
    let plan = validate(&manifest.spec).unwrap();
    let data = JobData::load(&plan).unwrap();
    let assembly = Assembly::new(plan.clone(), data).unwrap();
    let nodes: Vec<NodeId> = (0..plan.servers)
        .map(NodeId::server)
        .chain((0..plan.workers).map(NodeId::worker))
        .collect();

    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for &id in &nodes {
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, grpc.local_addr().unwrap().to_string());
        listeners.push((id, grpc, admin));
    }
    // Mutual TLS, as every real deployment: the job's CA issues each node its identity.
    let ca = JobCa::generate(&manifest.name).unwrap();
    let mut tasks = Vec::new();
    for (id, grpc, admin) in listeners {
        let options = RuntimeOptions {
            job: manifest.name.clone(),
            me: id,
            dimension: assembly.config().dimension,
            peers: peers.clone(),
            transport: Transport::MutualTls(Tls::new(ca.issue(id).unwrap()).unwrap()),
            attack: match plan.behaviour(id.role, id.index) {
                Behaviour::Honest => None,
                _ => Some("injected".into()),
            },
            snapshot_every: 40,
            linger: Duration::from_millis(500),
            progress_lines: false,
            quorums: (plan.server_quorum, plan.worker_quorum),
            chaos: None,
            chaos_token: None,
            checkpoints: None,
        };
        let node = assembly.node(id.role, id.index).unwrap();
        tasks.push((
            id,
            tokio::spawn(runtime::run(
                node,
                options,
                grpc,
                admin,
                std::future::pending(),
            )),
        ));
    }
    let mut accuracies = Vec::new();
    for (id, task) in tasks {
        let status = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .unwrap_or_else(|_| panic!("{id} did not finish in time"))
            .unwrap()
            .unwrap();
        assert!(status.finished, "{id} finished");
        if id.role == Role::Server && plan.behaviour(id.role, id.index).is_honest() {
            assert_eq!(status.step, 120, "{id} ran every step");
            accuracies.push(status.accuracy.expect("servers evaluate"));
        }
    }
    assert_eq!(accuracies.len(), 4, "four correct servers");
    for accuracy in accuracies {
        assert!(accuracy >= 0.8, "correct server accuracy {accuracy}");
    }
}
