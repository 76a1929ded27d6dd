//! The `ByzantineChaos` controller against the real control plane of the testbed (tier b: API
//! server, controllers, scheduler, kwok nodes): the chaos token of a job that allows chaos, an
//! experiment reconciled from the API's own fixture (`api/tests/fixtures/chaos/`), its status
//! and verdict, a malformed experiment, and the Events on the job.
//!
//! Run with `testbed/with-testbed --tier b -- cargo test -p byzsgd-operator --test chaos`.
//! Without a testbed the test fails, naming `testbed/up`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use byzsgd_api::admin::ChaosRequest;
use byzsgd_api::chaos::{ByzantineChaos, ChaosCondition, ChaosPhase, Verdict};
use byzsgd_api::job::{ByzSgdJob, JobState};
use byzsgd_core::job::Role;
use byzsgd_operator::{ReconcilerConfig, RunConfig};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{CustomResourceExt, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::oneshot;

use support::{TestNamespace, Testbed, WAIT, wait_for};

const JOB: &str = include_str!("../../api/tests/fixtures/chaos-job.yaml");
const ALIE: &str = include_str!("../../api/tests/fixtures/chaos/alie-workers.yaml");
/// Silences one server; NAME, INDEX and WINDOW are filled in per experiment.
const SILENCE: &str = "
apiVersion: byzsgd.io/v1alpha1
kind: ByzantineChaos
metadata: {name: NAME}
spec:
  job: chaos-job
  role: server
  selector: {mode: indices, indices: [INDEX]}
  action: {kind: silence}
  window: WINDOW
";

/// One request the stand-in `/chaos` received.
#[derive(Debug, Clone)]
struct Received {
    pod: String,
    method: String,
    authorization: Option<String>,
    body: String,
}

/// What the stand-in serves and records.
#[derive(Default)]
struct StandIn {
    reports: BTreeMap<String, serde_json::Value>,
    received: Vec<Received>,
}

type Shared = Arc<Mutex<StandIn>>;

/// Sets every server's `/status` report (the node's `runtime::Status` JSON).
fn report(shared: &Shared, step: u64, accuracy: f64, finished: bool) {
    let mut stand_in = shared.lock().expect("lock");
    for i in 0..5 {
        stand_in.reports.insert(
            format!("chaos-job-server-{i}"),
            json!({
                "job": "chaos-job", "role": "server", "index": i, "step": step,
                "loss": 1.0 - accuracy, "accuracy": accuracy, "accuracyStep": step,
                "lastGather": {"step": step, "driftToMedian": 0.02},
                "peers": [], "finished": finished, "rejected": 0
            }),
        );
    }
}

/// Serves `GET /status/{pod}` from the reports and records `POST`/`DELETE /chaos/{pod}`.
async fn serve_stand_in(shared: Shared) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, Method, StatusCode, header};
    let status = |State(shared): State<Shared>, Path(pod): Path<String>| async move {
        let body = shared.lock().expect("lock").reports.get(&pod).cloned();
        body.map(axum::Json).ok_or(StatusCode::NOT_FOUND)
    };
    let chaos = |State(shared): State<Shared>,
                 Path(pod): Path<String>,
                 method: Method,
                 headers: HeaderMap,
                 body: String| async move {
        shared.lock().expect("lock").received.push(Received {
            pod,
            method: method.to_string(),
            authorization: headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body,
        });
        axum::Json(json!({"armed": "alie", "fromStep": 20, "untilStep": 60, "step": 0}))
    };
    let app = axum::Router::new()
        .route("/status/{pod}", axum::routing::get(status))
        .route("/chaos/{pod}", axum::routing::post(chaos).delete(chaos))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("stand-in serves");
    });
    (addr, task)
}

/// The methods of the `/chaos` calls `pod` received so far, in order.
fn calls_to(shared: &Shared, pod: &str) -> Vec<String> {
    shared
        .lock()
        .expect("lock")
        .received
        .iter()
        .filter(|r| r.pod == pod)
        .map(|r| r.method.clone())
        .collect()
}

/// Waits until `/metrics` shows `byzsgd_operator_chaos_active` of `chaos` at `value`.
async fn wait_gauge(metrics_addr: SocketAddr, chaos: &str, value: i64) {
    let wanted = format!("chaos=\"{chaos}\"");
    let suffix = format!(" {value}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = match reqwest::get(format!("http://{metrics_addr}/metrics")).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let found = metrics.lines().any(|l| {
            l.starts_with("byzsgd_operator_chaos_active")
                && l.contains(&wanted)
                && l.ends_with(&suffix)
        });
        if found {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "byzsgd_operator_chaos_active of {chaos} never reached {value}:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// Server-side applies `yaml` (a resource of kind `K`) in the test namespace.
async fn apply<K>(ns: &TestNamespace, yaml: &str) -> K
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + serde::Serialize,
    <K as Resource>::DynamicType: Default,
{
    let object: K = serde_yaml_ng::from_str(yaml).expect("fixture parses");
    ns.api::<K>()
        .patch(
            &object.name_any(),
            &PatchParams::apply("chaos-tests"),
            &Patch::Apply(&object),
        )
        .await
        .expect("admitted")
}

async fn wait_chaos(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    check: impl Fn(&ByzantineChaos) -> bool + Send + 'static,
) -> ByzantineChaos {
    wait_for(
        ns.api::<ByzantineChaos>(),
        name,
        what,
        move |c: Option<&ByzantineChaos>| c.is_some_and(&check),
    )
    .await
    .expect("the experiment exists")
}

fn phase(chaos: &ByzantineChaos) -> Option<ChaosPhase> {
    chaos.status.as_ref().and_then(|s| s.phase)
}

/// Waits until the namespace holds Events with every reason in `reasons` about `kind`, and
/// returns the Events.
async fn wait_events(ns: &TestNamespace, kind: &str, reasons: &[&str]) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let events = ns
            .api::<Event>()
            .list(&ListParams::default())
            .await
            .expect("listing events")
            .items;
        let seen: BTreeSet<String> = events
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some(kind))
            .filter_map(|e| e.reason.clone())
            .collect();
        if reasons.iter().all(|r| seen.contains(*r)) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for Events {reasons:?} on a {kind}; seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// STAND-IN: kwok pods run no process, so nothing answers on the pods' IPs. This test serves
/// the servers' `/status` JSON and records the nodes' `/chaos` calls on a small HTTP server on
/// loopback, and points the operator's `--status-url-template` and `--chaos-url-template` at
/// it, one path per pod. What a real node does with the order is the node's tests' business
/// (`node/tests/chaos_runtime.rs`); the real path `http://{podIP}:9090/chaos` is proven when a
/// real node runs (tier c).
#[tokio::test]
#[allow(clippy::too_many_lines)] // One experiment's life, start to verdict, reads best whole.
async fn an_experiment_hits_exactly_the_selected_pods_and_gets_a_verdict() {
    let testbed = Testbed::connect().await;
    testbed.require_tier_b().await;
    support::install_crd(&testbed, &ByzSgdJob::crd(), "chaos-tests").await;
    support::install_crd(&testbed, &ByzantineChaos::crd(), "chaos-tests").await;
    let ns = TestNamespace::create(&testbed, "chaos").await;
    ns.wait_for_default_service_account().await;

    let shared: Shared = Arc::default();
    report(&shared, 0, 0.1, false);
    let (addr, server) = serve_stand_in(shared.clone()).await;
    let metrics_addr = free_port();
    let (stop, stopped) = oneshot::channel::<()>();
    let operator = tokio::spawn(byzsgd_operator::run(
        testbed.client.clone(),
        RunConfig {
            watch_namespace: Some(ns.name.clone()),
            metrics_listen: Some(metrics_addr),
            reconciler: ReconcilerConfig {
                status_url_template: format!("http://{addr}/status/{{pod}}"),
                chaos_url_template: format!("http://{addr}/chaos/{{pod}}"),
                poll_interval: Duration::from_millis(500),
                ..ReconcilerConfig::default()
            },
            ..RunConfig::default()
        },
        async move {
            let _ = stopped.await;
        },
    ));

    // The job allows chaos: a token Secret owned by the job, and pods reading it.
    let job: ByzSgdJob = apply(&ns, JOB).await;
    let secret = wait_for(
        ns.api::<Secret>(),
        "chaos-job-chaos-token",
        "the chaos token Secret",
        |s: Option<&Secret>| s.is_some(),
    )
    .await
    .expect("the Secret exists");
    let owner = &secret.metadata.owner_references.clone().expect("owned")[0];
    assert_eq!(
        (owner.kind.as_str(), Some(owner.uid.as_str())),
        ("ByzSGDJob", job.metadata.uid.as_deref())
    );
    let token =
        String::from_utf8(secret.data.expect("data")["token"].0.clone()).expect("utf-8 token");
    assert!(token.len() >= 32, "token too short: {token}");
    let pod: Pod = wait_for(
        ns.api::<Pod>(),
        "chaos-job-worker-0",
        "a worker pod",
        |p: Option<&Pod>| p.is_some(),
    )
    .await
    .expect("pod");
    let env = pod.spec.expect("spec").containers[0]
        .env
        .clone()
        .unwrap_or_default();
    let token_env = env
        .iter()
        .find(|e| e.name == "BYZSGD_CHAOS_TOKEN")
        .expect("pods get BYZSGD_CHAOS_TOKEN");
    let key = token_env
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("from the Secret");
    assert_eq!(
        (key.name.as_str(), key.key.as_str()),
        ("chaos-job-chaos-token", "token")
    );

    // The experiment, from the node's own fixture.
    report(&shared, 30, 0.5, false);
    let chaos: ByzantineChaos = apply(&ns, ALIE).await;
    let plan = byzsgd_api::validate(&job.spec.job).expect("plan");
    let expected: BTreeSet<String> = byzsgd_api::chaos::select(&chaos.spec.chaos, &plan)
        .into_iter()
        .map(|i| format!("chaos-job-{}-{i}", Role::Worker))
        .collect();
    assert_eq!(expected.len(), 2);
    let running = wait_chaos(&ns, "alie-two-workers", "phase Running", |c| {
        phase(c) == Some(ChaosPhase::Running)
    })
    .await;
    let status = running.status.expect("status");
    assert_eq!(
        status
            .selected_pods
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        expected
    );
    assert!(status.start_time.is_some());

    let received = shared.lock().expect("lock").received.clone();
    let posted: BTreeSet<String> = received.iter().map(|r| r.pod.clone()).collect();
    assert_eq!(posted, expected, "exactly the selected pods get the order");
    let wanted = ChaosRequest {
        action: chaos.spec.chaos.action.clone(),
        window: chaos.spec.chaos.window.clone(),
    };
    for request in &received {
        assert_eq!(request.method, "POST");
        assert_eq!(request.authorization, Some(format!("Bearer {token}")));
        let body: ChaosRequest = serde_json::from_str(&request.body).expect("body parses");
        assert_eq!(body, wanted);
    }

    // The gauge dashboards draw as annotations.
    wait_gauge(metrics_addr, "alie-two-workers", 1).await;

    // A duration window: the order is cancelled (DELETE) when it elapses.
    let brief = SILENCE
        .replace("NAME", "silence-briefly")
        .replace("INDEX", "3")
        .replace("WINDOW", "{duration: 1s}");
    let _: ByzantineChaos = apply(&ns, &brief).await;
    wait_chaos(&ns, "silence-briefly", "phase Ended", |c| {
        phase(c) == Some(ChaosPhase::Ended)
    })
    .await;
    let calls = calls_to(&shared, "chaos-job-server-3");
    assert_eq!(
        calls,
        ["POST", "DELETE"],
        "arm, then cancel when 1s elapsed"
    );

    // Deleting a running experiment cancels its order first (the finalizer).
    let open_ended = SILENCE
        .replace("NAME", "silence-until-deleted")
        .replace("INDEX", "2")
        .replace("WINDOW", "{fromStep: 0}");
    let _: ByzantineChaos = apply(&ns, &open_ended).await;
    wait_chaos(&ns, "silence-until-deleted", "phase Running", |c| {
        phase(c) == Some(ChaosPhase::Running)
    })
    .await;
    ns.api::<ByzantineChaos>()
        .delete("silence-until-deleted", &DeleteParams::default())
        .await
        .expect("deleted");
    wait_for(
        ns.api::<ByzantineChaos>(),
        "silence-until-deleted",
        "the experiment to be gone",
        |c: Option<&ByzantineChaos>| c.is_none(),
    )
    .await;
    let calls = calls_to(&shared, "chaos-job-server-2");
    assert_eq!(calls, ["POST", "DELETE"], "arm, then cancel on deletion");

    // Crash: at fromStep the selected pod is deleted, and the job controller recreates it. The
    // victim is a worker the attack did not select, so it must receive no /chaos call at all.
    let victim = (0..7)
        .find(|i| !expected.contains(&format!("chaos-job-worker-{i}")))
        .expect("5 workers are not attacked");
    let victim_pod = format!("chaos-job-worker-{victim}");
    let before = ns.api::<Pod>().get(&victim_pod).await.expect("pod");
    let crash = ALIE
        .replace("name: alie-two-workers", "name: crash-one-worker")
        .replace(
            "{mode: fixed, value: 2}",
            &format!("{{mode: indices, indices: [{victim}]}}"),
        )
        .replace(
            "action:\n    kind: attack\n    name: alie\n    params: {z: 1.5}",
            "action: {kind: crash}",
        )
        .replace("{fromStep: 20, untilStep: 60}", "{fromStep: 25}");
    assert!(
        crash.contains("kind: crash") && crash.contains("fromStep: 25"),
        "{crash}"
    );
    let _: ByzantineChaos = apply(&ns, &crash).await;
    wait_chaos(&ns, "crash-one-worker", "phase Running", |c| {
        phase(c) == Some(ChaosPhase::Running)
    })
    .await;
    let old_uid = before.metadata.uid.clone();
    wait_for(
        ns.api::<Pod>(),
        &victim_pod,
        "the crashed pod to be recreated",
        move |p: Option<&Pod>| p.is_some_and(|p| p.metadata.uid != old_uid),
    )
    .await;
    assert!(
        calls_to(&shared, &victim_pod).is_empty(),
        "a crash sends no /chaos order"
    );

    // A malformed experiment: an index out of range, named in the condition.
    let bad = ALIE
        .replace("name: alie-two-workers", "name: bad-indices")
        .replace(
            "{mode: fixed, value: 2}",
            "{mode: indices, indices: [1, 9]}",
        );
    let _: ByzantineChaos = apply(&ns, &bad).await;
    let invalid = wait_chaos(&ns, "bad-indices", "phase Invalid", |c| {
        phase(c) == Some(ChaosPhase::Invalid)
    })
    .await;
    let valid = invalid
        .status
        .as_ref()
        .and_then(|s| s.condition(ChaosCondition::Valid))
        .expect("Valid condition")
        .clone();
    assert_eq!(valid.status, "False");
    assert!(
        valid.message.contains("spec.selector.indices"),
        "{}",
        valid.message
    );

    // Past untilStep the experiment ends; the verdict waits for the job.
    report(&shared, 70, 0.5, false);
    let ended = wait_chaos(&ns, "alie-two-workers", "phase Ended", |c| {
        phase(c) == Some(ChaosPhase::Ended)
    })
    .await;
    let status = ended.status.expect("status");
    assert!(status.end_time.is_some());
    assert_ne!(status.verdict, Some(Verdict::Pass));

    // The servers converge and finish: the job succeeds, the experiment passes.
    report(&shared, 100, 0.85, true);
    let judged = wait_chaos(&ns, "alie-two-workers", "a verdict", |c| {
        c.status
            .as_ref()
            .and_then(|s| s.verdict)
            .is_some_and(|v| v != Verdict::Pending)
    })
    .await;
    let status = judged.status.expect("status");
    assert_eq!(
        status.verdict,
        Some(Verdict::Pass),
        "{:?}",
        status.verdict_reason
    );
    wait_gauge(metrics_addr, "alie-two-workers", 0).await;
    let job_now = ns.api::<ByzSgdJob>().get("chaos-job").await.expect("job");
    assert_eq!(
        job_now.status.and_then(|s| s.state),
        Some(JobState::Succeeded)
    );

    // Events on the job and on the experiments.
    let events = wait_events(
        &ns,
        "ByzSGDJob",
        &["ChaosStarted", "ChaosEnded", "ChaosVerdict"],
    )
    .await;
    let started = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("ChaosStarted"))
        .and_then(|e| e.note.clone())
        .unwrap_or_default();
    assert!(
        expected.iter().all(|pod| started.contains(pod)),
        "ChaosStarted does not name the pods: {started}"
    );
    wait_events(&ns, "ByzantineChaos", &["ChaosStarted", "InvalidSpec"]).await;

    let _ = stop.send(());
    tokio::time::timeout(WAIT, operator)
        .await
        .expect("the operator stops")
        .expect("no panic")
        .expect("clean stop");
    server.abort();
    ns.delete().await;
}
