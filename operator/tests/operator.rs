//! The operator against the real control plane of the testbed (tier b: API server, controllers,
//! scheduler, kwok nodes): CRD admission, children and garbage collection, runPolicy, restarts,
//! leader election and the real binary.
//!
//! The training status from the servers' `/status` needs processes answering on the pods' IPs,
//! which kwok pods are not: `e2e/tests/readme.rs` proves it on real pods (tier c), where STEP
//! and ACCURACY must equal the median of the quorum's own final reports; that one lying server
//! cannot move the median is the unit test `one_lying_server_cannot_move_the_combined_accuracy`
//! (`src/controller/tests.rs`).
//!
//! Run with `testbed/with-testbed --tier b -- cargo test -p byzsgd-operator --test operator`.
//! Without a testbed the tests fail, naming `testbed/up`. Each test works in its own namespace
//! and runs its own operator (watching only that namespace), so tests do not depend on each
//! other or on their order.

mod support;

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use byzsgd_api::{
    chaos::ByzantineChaos,
    job::{ByzSgdJob, ConditionType, JobState},
};
use byzsgd_operator::{LeaseConfig, ReconcilerConfig, RunConfig};
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{ConfigMap, Pod, Secret, Service},
};
use kube::{
    Api, Client, CustomResourceExt, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::wait::conditions,
};
use serde_json::json;
use support::{TestNamespace, Testbed, WAIT, wait_for};
use tokio::sync::oneshot;

const QUICKSTART: &str = include_str!("../../examples/quickstart.yaml");

/// Applies the operator's CRDs and waits until the API server serves them (structural schema).
async fn install_crd(testbed: &Testbed) {
    support::install_crd(testbed, &ByzSgdJob::crd(), "operator-tests").await;
    support::install_crd(testbed, &ByzantineChaos::crd(), "operator-tests").await;
}

/// An operator running in this process, watching one namespace, stopped on drop.
struct Operator {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), byzsgd_operator::RunError>>,
}

impl Operator {
    fn start(client: Client, config: RunConfig) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(byzsgd_operator::run(client, config, async move {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            task,
        }
    }

    fn in_namespace(client: Client, ns: &str, reconciler: ReconcilerConfig) -> Self {
        Self::start(
            client,
            RunConfig {
                watch_namespace: Some(ns.to_owned()),
                reconciler,
                ..RunConfig::default()
            },
        )
    }

    /// Graceful stop: asks it to shut down and waits for `run` to return.
    async fn stop(mut self) -> Result<(), byzsgd_operator::RunError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("the operator stops within the wait bound")
            .expect("the operator task does not panic")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fast() -> ReconcilerConfig {
    ReconcilerConfig {
        poll_interval: Duration::from_millis(500),
        ..ReconcilerConfig::default()
    }
}

fn parse_job(yaml: &str) -> ByzSgdJob {
    serde_yaml_ng::from_str(yaml).expect("manifest parses")
}

async fn apply_job(ns: &TestNamespace, job: &ByzSgdJob) -> Result<ByzSgdJob, kube::Error> {
    let api: Api<ByzSgdJob> = ns.api();
    api.patch(
        &job.name_any(),
        &PatchParams::apply("operator-tests"),
        &Patch::Apply(job),
    )
    .await
}

/// Waits until the job's status satisfies `check`.
async fn wait_status(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    check: impl Fn(&ByzSgdJob) -> bool + Send + 'static,
) -> ByzSgdJob {
    wait_for(
        ns.api::<ByzSgdJob>(),
        name,
        what,
        move |job: Option<&ByzSgdJob>| job.is_some_and(&check),
    )
    .await
    .expect("the job exists")
}

fn state(job: &ByzSgdJob) -> Option<JobState> {
    job.status.as_ref().and_then(|s| s.state)
}

async fn job_pods(ns: &TestNamespace, job: &str) -> Vec<Pod> {
    ns.api::<Pod>()
        .list(&ListParams::default().labels(&format!("byzsgd.io/job={job}")))
        .await
        .expect("listing pods")
        .items
}

/// Waits until `count` pods of the job exist and satisfy `check`.
async fn wait_pods(
    ns: &TestNamespace,
    job: &str,
    what: &str,
    check: impl Fn(&[Pod]) -> bool,
) -> Vec<Pod> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pods = job_pods(ns, job).await;
        if check(&pods) {
            return pods;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; pods: {:?}",
            pods.iter()
                .map(|p| (
                    p.name_any(),
                    p.status.as_ref().and_then(|s| s.phase.clone())
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn is_running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && pod.metadata.deletion_timestamp.is_none()
}

/// The job's identities: its CA and one certificate per node, each Secret owned by the job
/// (uid `uid`); every pod mounts its own. Returns the Secrets.
async fn assert_identities(ns: &TestNamespace, uid: &str, pods: &[Pod]) -> Vec<Secret> {
    let secrets: Vec<Secret> = ns
        .api::<Secret>()
        .list(&ListParams::default().labels("byzsgd.io/job=quickstart"))
        .await
        .expect("listing secrets")
        .items;
    let mut names: Vec<String> = secrets.iter().map(ResourceExt::name_any).collect();
    names.sort();
    let mut expected: Vec<String> = (0..5)
        .map(|i| format!("quickstart-server-{i}-tls"))
        .chain((0..7).map(|i| format!("quickstart-worker-{i}-tls")))
        .chain(["quickstart-ca".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    for secret in &secrets {
        assert_eq!(
            secret.owner_references()[0].uid,
            uid,
            "{}",
            secret.name_any()
        );
        let keys: Vec<&String> = secret.data.as_ref().expect("data").keys().collect();
        if secret.name_any() == "quickstart-ca" {
            assert_eq!(keys, ["ca.crt", "ca.key"]);
        } else {
            assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
            assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        }
    }
    for pod in pods {
        let mounted = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.volumes.as_ref())
            .and_then(|volumes| volumes.iter().find(|v| v.name == "tls"))
            .and_then(|volume| volume.secret.as_ref())
            .and_then(|secret| secret.secret_name.clone());
        assert_eq!(mounted, Some(format!("{}-tls", pod.name_any())));
    }
    secrets
}

#[tokio::test]
async fn quickstart_creates_owned_children_runs_and_is_garbage_collected() {
    let testbed = Testbed::connect().await;
    testbed.require_tier_b().await;
    install_crd(&testbed).await;
    let ns = TestNamespace::create(&testbed, "quickstart").await;
    ns.wait_for_default_service_account().await;
    let operator = Operator::in_namespace(testbed.client.clone(), &ns.name, fast());

    // examples/quickstart.yaml unchanged (only the namespace comes from the test).
    let created = apply_job(&ns, &parse_job(QUICKSTART))
        .await
        .expect("quickstart is admitted");
    let uid = created.uid().expect("uid");
    let pods = wait_pods(&ns, "quickstart", "12 Running pods", |p| {
        p.len() == 12 && p.iter().all(is_running)
    })
    .await;
    for pod in &pods {
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            (uid.as_str(), Some(true))
        );
        assert!(
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .is_some(),
            "scheduled on a kwok node"
        );
    }
    let service = ns
        .api::<Service>()
        .get("quickstart")
        .await
        .expect("headless service");
    assert_eq!(
        service.spec.and_then(|s| s.cluster_ip).as_deref(),
        Some("None")
    );
    assert_eq!(
        service.metadata.owner_references.expect("owner")[0].uid,
        uid
    );
    let config_map = ns
        .api::<ConfigMap>()
        .get("quickstart-job")
        .await
        .expect("config map");
    assert_eq!(
        config_map.metadata.owner_references.expect("owner")[0].uid,
        uid
    );

    let secrets = assert_identities(&ns, &uid, &pods).await;

    let running = wait_status(&ns, "quickstart", "STATE Running", |j| {
        state(j) == Some(JobState::Running)
    })
    .await;
    let status = running.status.expect("status");
    assert_eq!(status.servers.as_deref(), Some("1/5"));
    assert_eq!(status.workers.as_deref(), Some("2/7"));
    assert!(
        status.is_true(ConditionType::Created) && status.is_true(ConditionType::ByzantineInjected)
    );
    assert_eq!(status.observed_generation, running.metadata.generation);
    assert_eq!(status.replica_statuses["worker"].running, 7);

    // Deleting the job deletes everything it owns (garbage collection, no finalizer).
    ns.api::<ByzSgdJob>()
        .delete("quickstart", &DeleteParams::background())
        .await
        .expect("deleting the job");
    wait_pods(&ns, "quickstart", "every pod to be gone", <[Pod]>::is_empty).await;
    wait_for(
        ns.api::<Service>(),
        "quickstart",
        "the service to be deleted",
        conditions::is_deleted(&service.metadata.uid.clone().unwrap_or_default()),
    )
    .await;
    wait_for(
        ns.api::<ConfigMap>(),
        "quickstart-job",
        "the config map to be deleted",
        conditions::is_deleted(&config_map.metadata.uid.clone().unwrap_or_default()),
    )
    .await;
    for secret in &secrets {
        wait_for(
            ns.api::<Secret>(),
            &secret.name_any(),
            "the job's Secrets to be deleted",
            conditions::is_deleted(&secret.metadata.uid.clone().unwrap_or_default()),
        )
        .await;
    }
    operator.stop().await.expect("clean stop");
    ns.delete().await;
}

/// The API server itself refuses jobs that break a bound, naming the bound; jobs on the right
/// side of each bound are admitted (so the rules are not simply "reject everything").
#[tokio::test]
async fn api_server_rejects_broken_bounds_naming_them() {
    let testbed = Testbed::connect().await;
    install_crd(&testbed).await;
    let ns = TestNamespace::create(&testbed, "bounds").await;
    for (fixture, expected) in [
        (
            include_str!("../../api/tests/fixtures/bad-servers.yaml"),
            "n_ps ≥ 3·f_ps + 2",
        ),
        (
            include_str!("../../api/tests/fixtures/bad-workers.yaml"),
            "n_w ≥ 3·f_w + 1",
        ),
        (
            include_str!("../../api/tests/fixtures/bad-krum.yaml"),
            "n ≥ 2f + 3",
        ),
        (
            include_str!("../../api/tests/fixtures/bad-bulyan.yaml"),
            "n ≥ 4f + 3",
        ),
        (
            include_str!("../../api/tests/fixtures/bad-inject.yaml"),
            "count must be ≤ the replicas",
        ),
    ] {
        let job = parse_job(fixture);
        match apply_job(&ns, &job).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{status:?}");
                assert!(
                    status.message.contains(expected),
                    "{}: message {:?} does not name {expected}",
                    job.name_any(),
                    status.message
                );
            }
            other => panic!("{} was admitted: {other:?}", job.name_any()),
        }
    }
    // One step to the right side of each bound is admitted.
    for (name, servers, workers, aggregation) in [
        (
            "ok-servers",
            json!({"replicas": 5, "byzantine": 1}),
            json!({"replicas": 4, "byzantine": 1}),
            json!({}),
        ),
        (
            "ok-krum",
            json!({"replicas": 1}),
            json!({"replicas": 9, "byzantine": 2}),
            json!({"gradients": "krum"}),
        ),
        (
            "ok-bulyan",
            json!({"replicas": 8, "byzantine": 1}),
            json!({"replicas": 4, "byzantine": 1}),
            json!({"models": "bulyan"}),
        ),
    ] {
        let job: ByzSgdJob = serde_json::from_value(json!({
            "apiVersion": "byzsgd.io/v1alpha1", "kind": "ByzSGDJob", "metadata": {"name": name},
            "spec": {"model": {"kind": "logistic"}, "training": {"steps": 10, "learningRate": 0.1},
                     "servers": servers, "workers": workers, "aggregation": aggregation}
        }))
        .expect("job");
        apply_job(&ns, &job)
            .await
            .unwrap_or_else(|e| panic!("{name} must be admitted: {e}"));
    }
    // A live job's training part is immutable; its runPolicy is not.
    let api: Api<ByzSgdJob> = ns.api();
    let change = |body: serde_json::Value| {
        let api = api.clone();
        async move {
            api.patch("ok-servers", &PatchParams::default(), &Patch::Merge(&body))
                .await
        }
    };
    match change(json!({"spec": {"workers": {"replicas": 7}}})).await {
        Err(kube::Error::Api(status)) => {
            assert!(status.message.contains("immutable"), "{status:?}");
        }
        other => panic!("changing workers was accepted: {other:?}"),
    }
    change(json!({"spec": {"runPolicy": {"suspend": true}}}))
        .await
        .expect("runPolicy may change");
    ns.delete().await;
}

/// kwok pods run no process, so no pod can restart its container; deleting pods is the way to
/// make the operator retry. Past backoffLimit the job fails, and cleanPodPolicy decides which
/// pods stay: `Running` deletes the running ones, `None` keeps them.
#[tokio::test]
async fn deleting_pods_past_backoff_limit_fails_the_job_and_clean_pod_policy_decides() {
    let testbed = Testbed::connect().await;
    testbed.require_tier_b().await;
    install_crd(&testbed).await;
    let ns = TestNamespace::create(&testbed, "backoff").await;
    ns.wait_for_default_service_account().await;
    let operator = Operator::in_namespace(testbed.client.clone(), &ns.name, fast());
    let job = |name: &str, policy: &str| -> ByzSgdJob {
        serde_json::from_value(json!({
            "apiVersion": "byzsgd.io/v1alpha1", "kind": "ByzSGDJob", "metadata": {"name": name},
            "spec": {"model": {"kind": "logistic"}, "dataset": {"name": "synthetic"},
                     "training": {"steps": 10, "learningRate": 0.1},
                     "servers": {"replicas": 1}, "workers": {"replicas": 2},
                     "runPolicy": {"backoffLimit": 1, "cleanPodPolicy": policy}}
        }))
        .expect("job")
    };
    for (name, policy, pods_left) in [("clean-running", "Running", 0), ("clean-none", "None", 2)] {
        apply_job(&ns, &job(name, policy)).await.expect("admitted");
        wait_pods(&ns, name, "3 Running pods", |p| {
            p.len() == 3 && p.iter().all(is_running)
        })
        .await;
        let pods: Api<Pod> = ns.api();
        for round in 0..2 {
            let victim = format!("{name}-worker-0");
            let old = pods.get(&victim).await.expect("pod").uid().expect("uid");
            pods.delete(&victim, &DeleteParams::default())
                .await
                .expect("delete");
            if round == 0 {
                // The first deletion is a retry within the limit: the pod comes back.
                wait_pods(&ns, name, "the pod to be recreated", |p| {
                    p.iter().any(|p| {
                        p.name_any() == victim
                            && p.uid().as_deref() != Some(old.as_str())
                            && is_running(p)
                    })
                })
                .await;
            }
        }
        let failed = wait_status(&ns, name, "Failed", |j| state(j) == Some(JobState::Failed)).await;
        let status = failed.status.expect("status");
        let condition = status
            .condition(ConditionType::Failed)
            .expect("Failed condition");
        assert_eq!(condition.reason, "BackoffLimitExceeded", "{condition:?}");
        assert_eq!(status.restarts, 2);
        wait_pods(&ns, name, &format!("{pods_left} pods to stay"), |p| {
            p.iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count()
                == pods_left
        })
        .await;
    }
    operator.stop().await.expect("clean stop");
    ns.delete().await;
}

/// Stopping the operator in the middle of creating pods and starting a new one must neither
/// duplicate nor recreate anything (names are deterministic and creation is server-side apply).
#[tokio::test]
async fn restarting_the_operator_mid_reconcile_creates_no_duplicates() {
    let testbed = Testbed::connect().await;
    testbed.require_tier_b().await;
    install_crd(&testbed).await;
    let ns = TestNamespace::create(&testbed, "restart").await;
    ns.wait_for_default_service_account().await;
    apply_job(&ns, &parse_job(QUICKSTART))
        .await
        .expect("admitted");

    let first = Operator::in_namespace(testbed.client.clone(), &ns.name, fast());
    wait_pods(&ns, "quickstart", "the first pods", |p| !p.is_empty()).await;
    drop(first); // abort: no graceful shutdown, possibly between two pod creations
    let second = Operator::in_namespace(testbed.client.clone(), &ns.name, fast());
    let pods = wait_pods(&ns, "quickstart", "12 Running pods", |p| {
        p.len() == 12 && p.iter().all(is_running)
    })
    .await;
    let uids: BTreeMap<String, String> = pods
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect();
    // One CA, whichever operator made which certificate: every node Secret carries the CA
    // Secret's certificate (a restarted operator reads the CA back, never makes a second).
    let secrets = ns
        .api::<Secret>()
        .list(&ListParams::default().labels("byzsgd.io/job=quickstart"))
        .await
        .expect("listing secrets")
        .items;
    assert_eq!(secrets.len(), 13, "a CA and twelve node certificates");
    let ca_of = |secret: &Secret| secret.data.as_ref().and_then(|d| d.get("ca.crt")).cloned();
    let ca = secrets
        .iter()
        .find(|s| s.name_any() == "quickstart-ca")
        .and_then(ca_of)
        .expect("the CA Secret");
    assert!(secrets.iter().all(|s| ca_of(s).as_ref() == Some(&ca)));

    let running = wait_status(&ns, "quickstart", "STATE Running", |j| {
        state(j) == Some(JobState::Running)
    })
    .await;
    assert_eq!(
        running.status.expect("status").restarts,
        0,
        "a pod was recreated"
    );
    let third = Operator::in_namespace(testbed.client.clone(), &ns.name, fast());
    drop(second);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: BTreeMap<String, String> = job_pods(&ns, "quickstart")
        .await
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect();
    assert_eq!(after, uids, "pods changed across operator restarts");
    third.stop().await.expect("clean stop");
    ns.delete().await;
}

/// Two replicas with leader election: one leads, the other waits; when the leader stops
/// gracefully it releases the Lease and the standby takes over and reconciles.
#[tokio::test]
async fn leader_election_lets_one_replica_reconcile_and_hands_over_on_stop() {
    let testbed = Testbed::connect().await;
    testbed.require_tier_b().await;
    install_crd(&testbed).await;
    let ns = TestNamespace::create(&testbed, "lease").await;
    ns.wait_for_default_service_account().await;
    let replica = |holder: &str| {
        Operator::start(
            testbed.client.clone(),
            RunConfig {
                watch_namespace: Some(ns.name.clone()),
                leader_election: Some(LeaseConfig {
                    name: "byzsgd-operator".to_owned(),
                    namespace: ns.name.clone(),
                    holder: holder.to_owned(),
                    duration: Duration::from_secs(4),
                    renew_every: Duration::from_millis(500),
                }),
                reconciler: fast(),
                ..RunConfig::default()
            },
        )
    };
    let leases: Api<Lease> = ns.api();
    let holder = |leases: Api<Lease>| async move {
        leases
            .get_opt("byzsgd-operator")
            .await
            .expect("lease")
            .and_then(|l| l.spec?.holder_identity)
    };
    let a = replica("replica-a");
    wait_for(
        leases.clone(),
        "byzsgd-operator",
        "replica-a to lead",
        |l: Option<&Lease>| {
            l.and_then(|l| l.spec.as_ref()?.holder_identity.as_deref()) == Some("replica-a")
        },
    )
    .await;
    let b = replica("replica-b");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        holder(leases.clone()).await.as_deref(),
        Some("replica-a"),
        "the standby took a held lease"
    );

    a.stop().await.expect("the leader stops cleanly");
    wait_for(
        leases.clone(),
        "byzsgd-operator",
        "replica-b to take over",
        |l: Option<&Lease>| {
            l.and_then(|l| l.spec.as_ref()?.holder_identity.as_deref()) == Some("replica-b")
        },
    )
    .await;
    // The new leader reconciles.
    apply_job(&ns, &parse_job(QUICKSTART))
        .await
        .expect("admitted");
    wait_pods(&ns, "quickstart", "pods from the new leader", |p| {
        p.len() == 12
    })
    .await;
    b.stop().await.expect("clean stop");
    ns.delete().await;
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// The CLI path: the real binary prints the CRD, serves /healthz, /readyz and /metrics,
/// reconciles, and exits 0 on SIGTERM.
#[tokio::test]
async fn the_binary_prints_the_crd_serves_metrics_reconciles_and_stops_on_sigterm() {
    let testbed = Testbed::connect().await;
    testbed.require_tier_b().await;
    install_crd(&testbed).await;
    let binary = env!("CARGO_BIN_EXE_byzsgd-operator");

    let crd = tokio::process::Command::new(binary)
        .arg("crd")
        .output()
        .await
        .expect("crd runs");
    assert!(crd.status.success());
    assert_eq!(
        String::from_utf8(crd.stdout).expect("utf-8"),
        byzsgd_api::crd::all_crds_yaml().expect("yaml")
    );

    let ns = TestNamespace::create(&testbed, "binary").await;
    ns.wait_for_default_service_account().await;
    let addr = free_port();
    let mut child = tokio::process::Command::new(binary)
        .args([
            "run",
            "--watch-namespace",
            &ns.name,
            "--metrics-listen",
            &addr.to_string(),
        ])
        .env("KUBECONFIG", &testbed.kubeconfig)
        .env("BYZSGD_OPERATOR_STATUS_INTERVAL_SECONDS", "0.5")
        .kill_on_drop(true)
        .spawn()
        .expect("the operator starts");
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        async move {
            let response = http.get(format!("http://{addr}{path}")).send().await.ok()?;
            response.status().is_success().then_some(())?;
            response.text().await.ok()
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while get("/readyz").await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get("/healthz").await.as_deref(), Some("ok"));

    apply_job(&ns, &parse_job(QUICKSTART))
        .await
        .expect("admitted");
    wait_pods(&ns, "quickstart", "12 pods from the binary", |p| {
        p.len() == 12
    })
    .await;
    wait_status(&ns, "quickstart", "STATE Running", |j| {
        state(j) == Some(JobState::Running)
    })
    .await;
    // The jobs{phase} gauge is refreshed at the end of each reconcile, from the watch cache.
    let wanted = [
        "byzsgd_operator_reconcile_total",
        "byzsgd_operator_reconcile_duration_seconds_bucket",
        "byzsgd_operator_jobs{phase=\"Running\"} 1",
    ];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = get("/metrics").await.unwrap_or_default();
        if wanted.iter().all(|name| metrics.contains(name)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/metrics lacks one of {wanted:?}:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let pid = child.id().expect("pid");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    ns.delete().await;
}
