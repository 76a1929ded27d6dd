//! The README's "On Kubernetes" section, run as a user runs it, on real pods.
//!
//! Real parts it starts or drives: the testbed's tier c (kube-apiserver, etcd,
//! kube-controller-manager, kube-scheduler, a kubelet with containerd and runc, the bridge CNI,
//! kube-proxy, CoreDNS), the project's three images imported with `testbed/import-images`, the
//! chart installed with the testbed's `helm` (the operator runs from its image in a pod), every
//! server and worker of `examples/quickstart.yaml` and `examples/chaos/job.yaml` as a pod
//! training over the pod network, `kubectl` for every user command, the release
//! `byzsgd-node local` for the same-file baseline, and Prometheus (upstream, built by
//! `scripts/prometheus`: Debian's has no Kubernetes discovery) discovering the pods and the
//! operator from the chart's PodMonitor and ServiceMonitor. Nothing is stood in for.
//!
//! In order, one test (the steps build on each other): images → monitoring CRDs → `helm
//! install` → operator Available → the local baseline → Prometheus → `kubectl apply -f
//! examples/quickstart.yaml` → 12 pods Running → every dashboard and alert query returns series
//! (the operator's too) → Succeeded, `kubectl get bsgd` showing the servers' own final STEP and
//! ACCURACY, no worse than the local run − 3 points → the chaos example: attacks switched in the
//! selected running pods, a worker deleted mid-run and recreated within `backoffLimit`, the job
//! still Succeeded, the experiment's verdict → `kubectl delete` leaves nothing. Phase timings go
//! to stderr as JSON lines (`"e2e":"timing"`).
//!
//! Run: `scripts/images && testbed/with-testbed --tier c -- cargo test -p byzsgd-e2e --features
//! tier-c --test readme -- --nocapture` (scripts/test does this).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use byzsgd_api::{
    chaos::{ByzantineChaos, ChaosPhase, Verdict},
    job::{ByzSgdJob, ConditionType, JobState, status::median},
};
use byzsgd_e2e::{
    cluster::{Cluster, DiagnoseOnPanic, repo, run, wait_until},
    prometheus::Prometheus,
    promql::{self, Query, Variables},
    stack::{self, Release},
    timing::Stopwatch,
    workload::{
        self, StatusWatch, addresses, job_pods, state, table, wait_job, wait_job_gone,
        wait_pods_running,
    },
};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::json;

const TEST: &str = "readme";
/// The README's release and namespace.
const RELEASE: &str = "byzsgd";
const SYSTEM: &str = "byzsgd-system";
/// `kubectl apply -f examples/…` without `-n`: the kubeconfig's default namespace.
const NS: &str = "default";
const QUICKSTART: &str = "quickstart";
const CHAOS_JOB: &str = "chaos-demo";
const CHAOS: &str = "alie-workers";
/// ACCURACY on the cluster may trail the local run on the same file by this much: both are
/// asynchronous, so which gradients enter a quorum differs from run to run.
const ACCURACY_TOLERANCE: f64 = 0.03;

/// Bound of each wait for training to end; a quickstart takes about 1.5 min in pods here.
const TRAINING: Duration = Duration::from_secs(300);

#[test]
fn the_readme_runs_on_real_pods() {
    let total = Stopwatch::start(TEST, "total");
    let cluster = Cluster::connect();
    let _diagnose = DiagnoseOnPanic(vec![NS.to_owned(), SYSTEM.to_owned()]);

    // The images, then the chart (its monitoring objects need the Prometheus Operator's CRDs).
    let watch = Stopwatch::start(TEST, "image_import");
    stack::import_images();
    watch.done();
    stack::install_monitoring_crds();
    let watch = Stopwatch::start(TEST, "helm_install_to_operator_available");
    run(&[
        "helm",
        "install",
        RELEASE,
        "charts/byzsgd-operator",
        "--namespace",
        SYSTEM,
        "--create-namespace",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "podMonitor.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "dashboards.enabled=true",
    ]);
    let release = Release::installed(RELEASE, SYSTEM);
    release.wait_available(&cluster, Duration::from_secs(120));
    watch.done();
    run(&[
        "kubectl",
        "get",
        "prometheusrules,podmonitors,servicemonitors,configmaps",
        "--namespace",
        SYSTEM,
    ]);

    let baseline = local_baseline();

    let dir = tempfile::tempdir().expect("a temp dir");
    let prometheus = stack::prometheus_from_monitors(&cluster, SYSTEM, dir.path());
    let scrape = stack::pod_scrape_interval(SYSTEM);

    quickstart(&cluster, &prometheus, scrape, baseline);
    chaos(&cluster);

    // `kubectl delete` of each job: garbage collection takes everything it owns.
    let watch = Stopwatch::start(TEST, "delete_jobs");
    run(&["kubectl", "delete", "-f", "examples/quickstart.yaml"]);
    run(&[
        "kubectl",
        "delete",
        "-f",
        "examples/chaos/job.yaml",
        "-f",
        "examples/chaos/alie-workers.yaml",
    ]);
    for job in [QUICKSTART, CHAOS_JOB] {
        wait_job_gone(&cluster, NS, job, Duration::from_secs(120));
    }
    watch.done();
    drop(release);
    total.done();
}

/// `byzsgd-node local examples/quickstart.yaml`: the accuracy the cluster must match.
fn local_baseline() -> f64 {
    let summary = workload::local_run(
        TEST,
        "local_quickstart",
        &repo().join("examples/quickstart.yaml"),
    );
    summary["finalAccuracy"]
        .as_f64()
        .unwrap_or_else(|| panic!("no finalAccuracy in {summary}"))
}

/// `kubectl apply -f examples/quickstart.yaml`, up to `Succeeded`, with Prometheus watching.
fn quickstart(cluster: &Cluster, prometheus: &Prometheus, scrape: Duration, baseline: f64) {
    let job_time = Stopwatch::start(TEST, "quickstart_apply_to_succeeded");
    let pod_start = Stopwatch::start(TEST, "quickstart_pods_running");
    run(&["kubectl", "apply", "-f", "examples/quickstart.yaml"]);
    let pods = wait_pods_running(cluster, NS, QUICKSTART, 12, false, Duration::from_secs(120));
    pod_start.done_with(&json!({"pods": pods.len()}));
    let servers: Vec<Pod> = pods
        .iter()
        .filter(|p| p.labels().get("byzsgd.io/role").map(String::as_str) == Some("server"))
        .cloned()
        .collect();
    let statuses = StatusWatch::start(addresses(&servers), Duration::from_millis(500));
    run(&["kubectl", "get", "pods", "-o", "wide"]);

    // Every query of every dashboard and alert rule, the operator's included, while it trains.
    let watch = Stopwatch::start(TEST, "quickstart_every_query_returns_series");
    let variables = Variables::for_scrape_interval(NS, QUICKSTART, scrape, "1h");
    let queries = promql::all_queries();
    assert!(
        queries.iter().any(Query::needs_operator),
        "the chart has operator queries"
    );
    let mut alive = || {
        let job: Option<ByzSgdJob> = cluster.get(NS, QUICKSTART);
        match job.as_ref().and_then(state) {
            Some(s) if s.is_terminal() => Err(format!("the job ended ({s:?}) first")),
            _ => Ok(()),
        }
    };
    // Two scrapes of every pod first: `rate()` and `changes()` need two samples, and an alert
    // over a single sample (ByzSGDNoProgress's `changes(...) == 0`) would describe the start-up,
    // not the run. Not more: at the chart's 15 s interval, four scrapes of twelve pods (up to
    // 60 s after the pods start) raced the quickstart's ~60 s of training and sometimes lost.
    promql::wait_for_scrapes(
        prometheus,
        &format!("namespace=\"{NS}\", job_name=\"{QUICKSTART}\""),
        pods.len(),
        (variables.rate_interval(), 2),
        TRAINING,
        &mut alive,
    );
    let (at, results) = promql::evaluate_until_every_query_returns(
        prometheus, &queries, &variables, TRAINING, &mut alive,
    );
    watch.done_with(&json!({"queries": results.len()}));
    assert_alerts(&results, &pods);
    promql::assert_variables_resolve(prometheus, &variables);
    for (query, expr, series) in &results {
        if query.needs_operator() || query.expr.contains("correct_servers_max_drift") {
            eprintln!(
                "{} at {at:.0}:\n  {expr}\n{}",
                query.origin,
                promql::describe(series)
            );
        }
    }

    let job = wait_job(
        cluster,
        NS,
        QUICKSTART,
        "quickstart Succeeded",
        TRAINING,
        |j| state(j).is_some_and(JobState::is_terminal),
    );
    let status = job.status.clone().expect("a status");
    assert_eq!(
        status.state,
        Some(JobState::Succeeded),
        "{:#?}",
        status.conditions
    );
    job_time.done_with(&json!({"step": status.training.as_ref().map(|t| t.step)}));
    assert!(status.is_true(ConditionType::Converged));

    let training = status.training.expect("training status");
    let accuracy = assert_a_quorums_final_reports(&training, &statuses);
    assert!(
        accuracy >= baseline - ACCURACY_TOLERANCE,
        "the cluster reached {accuracy:.4}, the local run of the same file {baseline:.4}"
    );
    assert_kubectl_get_bsgd_shows(&training);
    eprintln!(
        "{}",
        byzsgd_e2e::timing::line(
            TEST,
            "quickstart_result",
            0.0,
            &json!({"cluster_accuracy": accuracy, "local_accuracy": baseline, "step": training.step,
                    "max_drift": training.max_drift}),
        )
    );
}

/// STEP and ACCURACY are the median over n_ps − f_ps servers' own reports — the first that
/// answered the operator's last poll, in index order, so any n_ps − f_ps of them — and those
/// reports were the servers' final ones (each said `finished`). The operator may see a final
/// report before the watch's next poll does; nodes keep serving it for 30 s after their last
/// step (`--linger-seconds`), so the watch gets every server's, or at least a quorum's, in
/// that time. Returns the accuracy.
fn assert_a_quorums_final_reports(
    training: &byzsgd_api::job::TrainingStatus,
    statuses: &StatusWatch,
) -> f64 {
    let quorum = usize::try_from(training.quorum).expect("a small quorum");
    let prefix = format!("{QUICKSTART}-server-");
    let finals = |history: &workload::History| -> (usize, Vec<byzsgd_api::admin::Status>) {
        let servers = history
            .keys()
            .filter(|pod| pod.starts_with(&prefix))
            .count();
        let finals = history
            .iter()
            .filter(|(pod, _)| pod.starts_with(&prefix))
            .filter_map(|(_, reports)| reports.iter().find(|r| r.finished).cloned())
            .collect();
        (servers, finals)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    let finals = loop {
        let history = statuses.history();
        let (servers, finals) = finals(&history);
        if finals.len() == servers || std::time::Instant::now() >= deadline {
            assert!(
                finals.len() >= quorum,
                "fewer than {quorum} servers reported finished: {history:#?}"
            );
            break finals;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let accuracy = training.accuracy.expect("an accuracy");
    let matches = |subset: &[&byzsgd_api::admin::Status]| {
        let step = median(subset.iter().map(|r| r.step as f64));
        let mid = median(subset.iter().filter_map(|r| r.accuracy.map(f64::from)));
        step.map(|s| s as u64) == Some(training.step)
            && mid.is_some_and(|m| (m - accuracy).abs() < 1e-6)
    };
    // Every choice of `quorum` servers among those that reported (at most C(5, 4) = 5 here).
    let any_quorum = (0_u32..1 << finals.len())
        .filter(|mask| mask.count_ones() as usize == quorum)
        .any(|mask| {
            let subset: Vec<&byzsgd_api::admin::Status> = finals
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, r)| r)
                .collect();
            matches(&subset)
        });
    assert!(
        any_quorum,
        "STEP {} and ACCURACY {accuracy} are not the medians of any {quorum} servers' final \
         reports: {finals:#?}",
        training.step
    );
    accuracy
}

/// `kubectl get bsgd` shows the status: state, STEP, ACCURACY, f/n of each role.
fn assert_kubectl_get_bsgd_shows(training: &byzsgd_api::job::TrainingStatus) {
    let accuracy = training.accuracy.expect("an accuracy");
    let shown = run(&["kubectl", "get", "bsgd"]);
    let rows = table(&shown);
    let row = rows
        .iter()
        .find(|r| r["NAME"] == QUICKSTART)
        .unwrap_or_else(|| panic!("no quickstart row in\n{shown}"));
    assert_eq!(row["STATE"], "Succeeded", "{shown}");
    assert_eq!(row["STEP"], training.step.to_string(), "{shown}");
    let printed: f64 = row["ACCURACY"]
        .parse()
        .unwrap_or_else(|e| panic!("ACCURACY {:?}: {e}\n{shown}", row["ACCURACY"]));
    assert!((printed - accuracy).abs() < 1e-6, "{shown}");
    assert_eq!(
        (row["SERVERS (F/N)"].as_str(), row["WORKERS (F/N)"].as_str()),
        ("1/5", "2/7"),
        "{shown}"
    );
}

/// On the healthy quickstart every alert condition is false, except the Byzantine one, which
/// holds for exactly the pods the operator made Byzantine (their `byzsgd.io/byzantine` label).
fn assert_alerts(results: &[promql::Evaluated], pods: &[Pod]) {
    let injected: BTreeSet<(String, String)> = pods
        .iter()
        .filter_map(|p| {
            let labels = p.labels();
            let attack = labels.get("byzsgd.io/byzantine")?;
            let node = format!(
                "{}-{}",
                labels.get("byzsgd.io/role")?,
                labels.get("byzsgd.io/index")?
            );
            Some((node, attack.clone()))
        })
        .collect();
    assert_eq!(injected.len(), 3, "1 server and 2 workers: {injected:?}");
    let evaluated: BTreeSet<String> = results
        .iter()
        .filter_map(|(q, ..)| q.alert.clone())
        .collect();
    assert_eq!(evaluated, promql::alerts(), "every alert was evaluated");
    promql::assert_only_byzantine_activity_fires(results, &injected);
}

/// The chaos example: the operator arms the attack in the selected running pods through their
/// admin endpoint; one worker is deleted mid-run (runPolicy); the job still succeeds and the
/// experiment gets its verdict.
#[allow(clippy::too_many_lines)] // One experiment's life, start to verdict, reads best whole.
fn chaos(cluster: &Cluster) {
    let job_time = Stopwatch::start(TEST, "chaos_apply_to_verdict");
    run(&[
        "kubectl",
        "apply",
        "-f",
        "examples/chaos/job.yaml",
        "-f",
        "examples/chaos/alie-workers.yaml",
    ]);
    let pods = wait_pods_running(cluster, NS, CHAOS_JOB, 12, false, Duration::from_secs(120));
    let statuses = StatusWatch::start(addresses(&pods), Duration::from_millis(500));
    let experiment = wait_until(
        "the experiment to select its pods",
        Duration::from_secs(120),
        Duration::from_millis(500),
        |last| {
            let chaos: Option<ByzantineChaos> = cluster.get(NS, CHAOS);
            *last = format!("{:#?}", chaos.as_ref().map(|c| &c.status));
            let status = chaos?.status?;
            (status.phase == Some(ChaosPhase::Running)).then_some(status)
        },
    );
    run(&["kubectl", "get", "bzchaos"]);
    let selected: BTreeSet<String> = experiment.selected_pods.iter().cloned().collect();
    assert_eq!(selected.len(), 2, "selector fixed 2: {selected:?}");
    assert!(selected.iter().all(|p| p.starts_with("chaos-demo-worker-")));

    // The order reached exactly the selected pods: their own /status says what is armed.
    let names: Vec<String> = pods.iter().map(ResourceExt::name_any).collect();
    wait_until(
        "the selected pods to report the armed attack",
        Duration::from_secs(30),
        Duration::from_millis(500),
        |last| {
            let armed: BTreeMap<String, Option<String>> = names
                .iter()
                .map(|pod| {
                    let chaos = statuses.latest(pod).and_then(|s| s.chaos);
                    (pod.clone(), chaos.and_then(|c| c.armed))
                })
                .collect();
            *last = format!("{armed:#?}");
            let ok = armed.iter().all(|(pod, armed)| {
                if selected.contains(pod) {
                    armed.as_deref() == Some("alie")
                } else {
                    armed.is_none()
                }
            });
            ok.then_some(())
        },
    );
    for pod in &selected {
        let chaos = statuses
            .latest(pod)
            .and_then(|s| s.chaos)
            .expect("a chaos report");
        assert_eq!(
            (chaos.from_step, chaos.until_step),
            (Some(200), Some(600)),
            "{pod}"
        );
    }
    delete_a_worker_mid_run(cluster, &selected);

    let job = wait_job(cluster, NS, CHAOS_JOB, "chaos-demo to end", TRAINING, |j| {
        state(j).is_some_and(JobState::is_terminal)
    });
    let job_status = job.status.clone().expect("status");
    assert_eq!(
        job_status.state,
        Some(JobState::Succeeded),
        "{:#?}",
        job_status.conditions
    );
    assert_eq!(
        job_status.restarts, 1,
        "one deletion, one recreation: {job_status:#?}"
    );
    let verdict = wait_until(
        "the experiment's verdict",
        Duration::from_secs(60),
        Duration::from_millis(500),
        |last| {
            let chaos: Option<ByzantineChaos> = cluster.get(NS, CHAOS);
            *last = format!("{:#?}", chaos.as_ref().map(|c| &c.status));
            let status = chaos?.status?;
            status
                .verdict
                .filter(|v| matches!(v, Verdict::Pass | Verdict::Fail))
                .map(|v| (v, status))
        },
    );
    job_time.done_with(&json!({"verdict": format!("{:?}", verdict.0)}));
    let shown = run(&["kubectl", "get", "bzchaos"]);
    let rows = table(&shown);
    let row = rows
        .iter()
        .find(|r| r["NAME"] == CHAOS)
        .unwrap_or_else(|| panic!("no {CHAOS} row in\n{shown}"));
    assert_eq!(row["PHASE"], "Ended", "{shown}");
    assert_eq!(row["VERDICT"], format!("{:?}", verdict.0), "{shown}");
    // The verdict is the one the README states: Pass iff the job Succeeded, converged and kept
    // its final drift within convergence.maxDrift (1.0 in the example).
    let within = job_status
        .training
        .as_ref()
        .and_then(|t| t.max_drift)
        .is_some_and(|d| d <= 1.0);
    let pass = job_status.is_true(ConditionType::Converged) && within;
    assert_eq!(
        verdict.0 == Verdict::Pass,
        pass,
        "verdict {:?} ({:?}) for {job_status:#?}",
        verdict.0,
        verdict.1.verdict_reason
    );

    // What the attackers did, by their own account: they rewrote the messages of steps inside
    // the window and no others.
    for pod in &selected {
        let report = statuses
            .history()
            .get(pod)
            .and_then(|h| h.iter().rev().find_map(|s| s.chaos.clone()))
            .expect("a chaos report");
        let (first, last) = (
            report.first_step.expect("acted"),
            report.last_step.expect("acted"),
        );
        assert!(
            (200..600).contains(&first) && (200..600).contains(&last) && first <= last,
            "{pod} acted on steps {first}..={last}, outside [200, 600)"
        );
    }
}

/// runPolicy's promise on a real pod: a worker deleted mid-run is recreated by the operator,
/// the recreation counts against `backoffLimit` (3 in the example) in `status.restarts`, and
/// the job goes on (the quorum of n_w − f_w workers never needed it).
fn delete_a_worker_mid_run(cluster: &Cluster, selected: &BTreeSet<String>) {
    let victim = (0..7)
        .map(|i| format!("{CHAOS_JOB}-worker-{i}"))
        .find(|p| !selected.contains(p))
        .expect("5 workers are not attacked");
    let before: Pod = cluster.get(NS, &victim).expect("the victim pod");
    let old_uid = before.uid().expect("a uid");
    let watch = Stopwatch::start(TEST, "deleted_worker_recreated_running");
    run(&["kubectl", "delete", "pod", &victim, "--wait=false"]);
    let recreated: Pod = wait_until(
        "the deleted worker to be recreated and run",
        Duration::from_secs(120),
        Duration::from_millis(250),
        |last| {
            let pod: Option<Pod> = cluster.get(NS, &victim);
            *last = format!("{:?}", pod.as_ref().map(|p| (p.uid(), workload::phase(p))));
            pod.filter(|p| p.uid().as_deref() != Some(old_uid.as_str()) && workload::running(p))
        },
    );
    watch.done_with(&json!({"pod": victim}));
    assert_ne!(recreated.uid(), Some(old_uid));
    let job = wait_job(
        cluster,
        NS,
        CHAOS_JOB,
        "the recreation to be counted",
        Duration::from_secs(60),
        |j| j.status.as_ref().is_some_and(|s| s.restarts >= 1),
    );
    let status = job.status.expect("status");
    assert_eq!(status.restarts, 1);
    assert!(
        status.restarts <= 3,
        "within backoffLimit: {}",
        status.restarts
    );
    assert_ne!(status.state, Some(JobState::Failed), "{status:#?}");
    let pods = job_pods(cluster, NS, CHAOS_JOB);
    assert_eq!(pods.len(), 12, "{}", workload::describe_pods(&pods));
}
