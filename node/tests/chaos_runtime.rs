//! Run-time attack switching: a chaos-enabled worker lies exactly inside the armed step window
//! (driven by hand, message by message), and the admin `POST /chaos` is authenticated, refused
//! in jobs that do not allow chaos, and reflected in `/metrics` while nodes run over gRPC.

// Helpers shared by the tests unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use byzsgd_api::{Manifest, pki::JobCa, validate};
use byzsgd_core::{
    assemble::{Assembly, JobData},
    attack::{AttackParams, WorkerAttack, WorkerAttackKind},
    job::{Behaviour, Role},
    protocol::{
        Node, NodeId, Payload,
        chaos::{Armed, ChaosOrder},
    },
};
use byzsgd_node::{
    rpc::{Transport, tls::Tls},
    runtime,
    state::{ChaosControl, RuntimeOptions},
};
use common::{rejected, status, step};
use ndarray::Array1;
use tokio::net::TcpListener;

fn job(allowed: bool, steps: u64) -> String {
    format!(
        "
apiVersion: byzsgd.io/v1alpha1
kind: ByzSGDJob
metadata: {{name: chaos-job}}
spec:
  model: {{kind: logistic}}
  dataset: {{name: synthetic}}
  training: {{steps: {steps}, batchSize: 8, learningRate: 0.05, seed: 3, evaluateEvery: 1000}}
  servers: {{replicas: 1}}
  workers: {{replicas: 1}}
  chaos: {{allowed: {allowed}}}
"
    )
}

fn assembly(allowed: bool, steps: u64) -> Assembly {
    let manifest = Manifest::parse(&job(allowed, steps), "<test>").unwrap();
    let plan = validate(&manifest.spec).unwrap();
    let data = JobData::load(&plan).unwrap();
    Assembly::new(plan, data).unwrap()
}

/// The gradient a worker sends after receiving the model of `step`.
fn gradient_after_model(node: &mut dyn Node, step: u64, model: &Arc<Array1<f32>>) -> Array1<f32> {
    let payload = Payload::Model {
        step,
        params: Arc::clone(model),
    };
    let out = node.handle(0.0, NodeId::server(0), payload).unwrap();
    let gradients: Vec<_> = out
        .messages
        .iter()
        .filter_map(|(_, payload)| match payload {
            Payload::Gradient {
                step: sent,
                gradient,
                ..
            } => {
                assert_eq!(*sent, step);
                Some((**gradient).clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        gradients.len(),
        1,
        "one gradient per step to the one server"
    );
    gradients.into_iter().next().unwrap()
}

#[test]
fn armed_worker_lies_exactly_inside_its_step_window() {
    let (from, until) = (3, 6);
    let honest_assembly = assembly(false, 10);
    let chaos_assembly = assembly(true, 10);
    let (mut honest, none) = honest_assembly.node_with_chaos(Role::Worker, 0).unwrap();
    assert!(
        none.is_none(),
        "a job that does not allow chaos hands out no handle"
    );
    let (mut chaotic, handle) = chaos_assembly.node_with_chaos(Role::Worker, 0).unwrap();
    let handle = handle.expect("a job that allows chaos hands out a handle");
    let _ = honest.start(0.0);
    let _ = chaotic.start(0.0);
    handle.arm(ChaosOrder {
        armed: Armed::Attack(Behaviour::Worker(WorkerAttack {
            kind: WorkerAttackKind::Reverse,
            params: AttackParams::default(),
        })),
        from_step: from,
        until_step: Some(until),
    });
    let model = Arc::new(honest_assembly.model().init(3));
    for step in 0..10 {
        let truth = gradient_after_model(&mut *honest, step, &model);
        let sent = gradient_after_model(&mut *chaotic, step, &model);
        assert!(
            truth.iter().any(|&x| x != 0.0),
            "step {step}: zero gradient"
        );
        if (from..until).contains(&step) {
            // `reverse` sends −100 × the honest gradient (Garfield's default).
            let expected = &truth * -100.0;
            let error = (&sent - &expected)
                .mapv(f32::abs)
                .fold(0.0_f32, |a, &b| a.max(b));
            assert!(
                error < 1e-3,
                "step {step}: not reversed (max error {error})"
            );
            assert_eq!(handle.active().as_deref(), Some("reverse"), "step {step}");
        } else {
            assert_eq!(sent, truth, "step {step}: lied outside the window");
            if step >= until {
                assert_eq!(handle.active(), None, "step {step}: still reported active");
            }
        }
    }
}

#[test]
fn silence_sends_nothing_inside_the_window_only() {
    let assembly = assembly(true, 10);
    let (mut node, handle) = assembly.node_with_chaos(Role::Worker, 0).unwrap();
    let handle = handle.unwrap();
    let _ = node.start(0.0);
    handle.arm(ChaosOrder {
        armed: Armed::Silence,
        from_step: 1,
        until_step: Some(2),
    });
    let model = Arc::new(assembly.model().init(3));
    let mut sent = Vec::new();
    for step in 0..3 {
        let out = node
            .handle(
                0.0,
                NodeId::server(0),
                Payload::Model {
                    step,
                    params: Arc::clone(&model),
                },
            )
            .unwrap();
        sent.push(out.messages.len());
    }
    assert_eq!(sent, [1, 0, 1]);
    let report = handle.report();
    assert_eq!(report.armed.as_deref(), Some("silence"));
    assert_eq!((report.first_step, report.last_step), (Some(1), Some(1)));
}

/// One running job on loopback: (server admin address, worker admin address, stop sender).
struct Running {
    admin: BTreeMap<NodeId, String>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<byzsgd_api::admin::Status>>>,
}

async fn start(allowed: bool, token: Option<&str>) -> Running {
    let assembly = assembly(allowed, 1_000_000);
    let plan = assembly.plan().clone();
    let nodes = [NodeId::server(0), NodeId::worker(0)];
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    let mut admin = BTreeMap::new();
    for id in nodes {
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, grpc.local_addr().unwrap().to_string());
        admin.insert(
            id,
            format!("http://{}", admin_listener.local_addr().unwrap()),
        );
        listeners.push((id, grpc, admin_listener));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let ca = JobCa::generate("chaos-job").unwrap();
    let mut tasks = Vec::new();
    for (id, grpc, admin_listener) in listeners {
        let (node, handle) = assembly.node_with_chaos(id.role, id.index).unwrap();
        let options = RuntimeOptions {
            job: "chaos-job".into(),
            me: id,
            dimension: assembly.config().dimension,
            peers: peers.clone(),
            transport: Transport::MutualTls(Tls::new(ca.issue(id).unwrap()).unwrap()),
            attack: None,
            snapshot_every: 1000,
            linger: Duration::from_millis(100),
            progress_lines: false,
            quorums: (plan.server_quorum, plan.worker_quorum),
            chaos: handle.map(|handle| ChaosControl {
                handle,
                replicas: 1,
                byzantine: 0,
                servers: 1,
                workers: 1,
                seed: 0,
            }),
            chaos_token: token.map(str::to_owned),
            checkpoints: None,
        };
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        tasks.push(tokio::spawn(runtime::run(
            node,
            options,
            grpc,
            admin_listener,
            shutdown,
        )));
    }
    Running { admin, stop, tasks }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await.unwrap().unwrap();
        }
    }
}

async fn post(url: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/chaos"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// `byzsgd_byzantine_active{attack="<attack>"}` of a node, if exported.
async fn active_gauge(url: &str, attack: &str) -> Option<f64> {
    common::metric(
        url,
        "byzsgd_byzantine_active",
        &format!("attack=\"{attack}\""),
    )
    .await
}

/// Polls `check` every 20 ms for up to 20 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

const REVERSE: &str = r#"{"action": {"kind": "attack", "name": "reverse"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_call_needs_a_token_and_a_job_that_allows_chaos() {
    let running = start(false, Some("s3cret")).await;
    let worker = running.admin[&NodeId::worker(0)].clone();
    let (code, body) = post(&worker, None, REVERSE).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(&worker, Some("wrong"), REVERSE).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(&worker, Some("s3cret"), REVERSE).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("spec.chaos.allowed"), "{body}");
    running.stop().await;

    let running = start(true, None).await;
    let worker = running.admin[&NodeId::worker(0)].clone();
    let (code, body) = post(&worker, Some("anything"), REVERSE).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("no chaos token"), "{body}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn armed_attack_shows_in_metrics_and_ends_with_its_window() {
    let running = start(true, Some("s3cret")).await;
    let worker = running.admin[&NodeId::worker(0)].clone();

    let (code, body) = post(
        &worker,
        Some("s3cret"),
        r#"{"action": {"kind": "attack", "name": "equivocate"}}"#,
    )
    .await;
    assert_eq!(code, 422, "a server attack on a worker: {body}");
    assert!(body.contains("unknown worker attack"), "{body}");
    let (code, body) = post(&worker, Some("s3cret"), r#"{"action": {"kind": "attack"}}"#).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("action"), "{body}");

    let (code, body) = post(&worker, Some("s3cret"), REVERSE).await;
    assert_eq!(code, 200, "{body}");
    eventually("the reverse gauge to turn 1", || async {
        active_gauge(&worker, "reverse").await == Some(1.0)
    })
    .await;
    let status = status(&worker).await;
    assert_eq!(status["byzantine"], "reverse");

    // Close the window ahead of the node (steps take about a millisecond, so a few steps of
    // margin lost the race now and then): the gauge falls back to 0 once the node passes it.
    let until = step(&worker).await + AHEAD;
    let body = format!(
        r#"{{"action": {{"kind": "attack", "name": "reverse"}}, "window": {{"untilStep": {until}}}}}"#
    );
    let (code, response) = post(&worker, Some("s3cret"), &body).await;
    assert_eq!(code, 200, "{response}");
    eventually("the node to pass the window", || async {
        step(&worker).await > until + 1
    })
    .await;
    eventually("the reverse gauge to turn 0", || async {
        active_gauge(&worker, "reverse").await == Some(0.0)
    })
    .await;
    // A window already over is refused.
    let (code, response) = post(&worker, Some("s3cret"), &body).await;
    assert_eq!(code, 409, "{response}");
    running.stop().await;
}

/// How many steps ahead of a running node a test opens a window.
const AHEAD: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_and_partition_are_checked_applied_and_reported() {
    let running = start(true, Some("s3cret")).await;
    let worker = running.admin[&NodeId::worker(0)].clone();
    let token = Some("s3cret");

    let refused = [
        (
            r#"{"action": {"kind": "partition", "peers": ["server-3"]}}"#,
            "action.peers[0]",
        ),
        (
            r#"{"action": {"kind": "partition", "peers": []}}"#,
            "action.peers",
        ),
        (
            r#"{"action": {"kind": "delay", "latency": "0s"}}"#,
            "action.latency",
        ),
        (r#"{"action": {"kind": "crash"}}"#, "crash"),
    ];
    for (body, field) in refused {
        let (code, response) = post(&worker, token, body).await;
        assert_eq!(code, 422, "{body}: {response}");
        assert!(response.contains(field), "{body}: {response}");
    }

    // One server and one worker: the server waits for the worker every step, so the worker
    // sends exactly one gradient per step and the report must name the window's bounds. The
    // window opens well ahead so the order lands first (the answer tells if it did not).
    let from = step(&worker).await + AHEAD;
    let until = from + 8;
    let body = format!(
        r#"{{"action": {{"kind": "delay", "latency": "5ms", "jitter": "5ms"}}, "window": {{"fromStep": {from}, "untilStep": {until}}}}}"#
    );
    let (code, response) = post(&worker, token, &body).await;
    assert_eq!(code, 200, "{response}");
    let accepted: serde_json::Value = serde_json::from_str(&response).unwrap();
    assert!(
        accepted["step"].as_u64().unwrap() < from,
        "the order arrived after its window opened; raise AHEAD: {response}"
    );
    eventually("the node to pass the delay window", || async {
        step(&worker).await > until + 1
    })
    .await;
    let report = status(&worker).await["chaos"].clone();
    assert_eq!(report["armed"], "delay", "{report}");
    assert_eq!(report["firstStep"], from, "{report}");
    assert_eq!(report["lastStep"], until - 1, "{report}");
    assert_eq!(active_gauge(&worker, "delay").await, Some(0.0));

    // Cut the worker off its only server: the model of `from` is dropped on arrival, counted,
    // and the worker cannot step past it.
    let from = step(&worker).await + AHEAD;
    let body = format!(
        r#"{{"action": {{"kind": "partition", "peers": ["server-0"]}}, "window": {{"fromStep": {from}}}}}"#
    );
    let (code, response) = post(&worker, token, &body).await;
    assert_eq!(code, 200, "{response}");
    eventually("a partitioned message to be counted", || async {
        rejected(&worker, "partition").await >= 1.0
    })
    .await;
    let stuck = step(&worker).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        step(&worker).await,
        stuck,
        "the worker went on past the partition"
    );
    assert!(stuck >= from, "cut before its window: {stuck} < {from}");
    let report = status(&worker).await["chaos"].clone();
    assert_eq!(report["armed"], "partition", "{report}");
    running.stop().await;
}

/// Hostile input never panics (issue #15, item 3): hundreds of generated `POST /chaos` bodies —
/// random bytes, and well-formed requests with awkward names and numbers — each get an answer
/// (2xx, 4xx), never a 5xx, and the node keeps serving `/healthz` throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_chaos_body_gets_an_answer_and_the_node_keeps_running() {
    use proptest::{
        prelude::*,
        strategy::ValueTree,
        test_runner::{Config, TestRunner},
    };
    let running = start(true, Some("s3cret")).await;
    let url = running.admin[&NodeId::worker(0)].clone();
    let number = prop_oneof![
        (0_u64..2000).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("1e400".to_owned()),
        Just("-0.5".to_owned()),
        Just("null".to_owned()),
        Just("\"x\"".to_owned()),
    ];
    let action = prop_oneof![
        "[a-z]{0,8}".prop_map(|name| format!(r#"{{"kind": "attack", "name": "{name}"}}"#)),
        (number.clone(), number.clone()).prop_map(|(scale, z)| format!(
            r#"{{"kind": "attack", "name": "alie", "params": {{"scale": {scale}, "z": {z}}}}}"#
        )),
        Just(r#"{"kind": "silence"}"#.to_owned()),
        (number.clone(), number.clone())
            .prop_map(|(l, j)| format!(r#"{{"kind": "delay", "latency": {l}, "jitter": {j}}}"#)),
        "[a-z0-9-]{0,10}"
            .prop_map(|peer| format!(r#"{{"kind": "partition", "peers": ["{peer}"]}}"#)),
        Just(r#"{"kind": "crash"}"#.to_owned()),
    ];
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        (action, number.clone(), number).prop_map(|(action, from, until)| format!(
            r#"{{"action": {action}, "window": {{"fromStep": {from}, "untilStep": {until}}}}}"#
        )),
    ];
    let mut runner = TestRunner::new(Config {
        rng_seed: proptest::test_runner::RngSeed::Fixed(15),
        ..Config::default()
    });
    let mut answered = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..300 {
        let body = body.new_tree(&mut runner).unwrap().current();
        let (code, response) = post(&url, Some("s3cret"), &body).await;
        assert!(code < 500, "{code} for {body}: {response}");
        *answered.entry(code).or_default() += 1;
        // Disarm whatever a valid body armed, so the next one starts clean.
        if code < 300 {
            let _ = reqwest::Client::new()
                .delete(format!("{url}/chaos"))
                .bearer_auth("s3cret")
                .send()
                .await;
        }
    }
    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert!(health.status().is_success());
    // Not only refusals: the generator also reaches the accepting path.
    assert!(answered.keys().any(|&code| code < 300), "{answered:?}");
    assert!(answered.keys().any(|&code| code >= 400), "{answered:?}");
    running.stop().await;
}
