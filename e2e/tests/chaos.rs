//! The `ByzantineChaos` controller on real pods: what the operator sends reaches the nodes, and
//! the nodes' own accounts (`/status.chaos`) show it.
//!
//! Real parts it starts or drives: the testbed's tier c, the node and operator images, the
//! chart installed with `helm` as a release watching only the test's namespace (the operator
//! runs in a pod and reaches the nodes at `http://{podIP}:9090/chaos`), a 12-pod job that allows
//! chaos (the API fixture `chaos-job.yaml` with more steps, so the experiments happen while it
//! trains), and `kubectl` for every change. Nothing is stood in for: what used to be a loopback
//! HTTP server recording the operator's calls is now each node's admin endpoint, read back
//! through its `/status`.
//!
//! It checks: the job's token Secret and the pods reading it; an attack armed in exactly the
//! selected pods, which act only on the steps of its window; a node refusing orders without the
//! token; a `duration` window cancelled by `DELETE /chaos`; deleting a running experiment
//! disarming its pods first (finalizer); a `crash` deleting the selected pod at `fromStep` and
//! the job recreating it; a malformed experiment `Invalid`, naming the field; the operator's
//! `byzsgd_operator_chaos_active` gauge; the Events; the verdict once the job succeeds.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::Duration,
};

use byzsgd_api::{
    chaos::{ByzantineChaos, ChaosCondition, ChaosPhase, Verdict},
    job::{ByzSgdJob, JobState},
};
use byzsgd_e2e::{
    cluster::{Cluster, TestNamespace, admin_addr, http, run, wait_until},
    stack::{self, Release},
    timing::Stopwatch,
    workload::{self, StatusWatch, addresses, state, wait_job, wait_pods_running},
};
use k8s_openapi::api::{
    core::v1::{Pod, Secret},
    events::v1::Event,
};
use kube::{ResourceExt, api::ListParams};
use serde_json::json;

const TEST: &str = "chaos";
const JOB: &str = "chaos-job";

/// The API's fixture job (5 servers, 7 workers, synthetic data, logistic regression, chaos
/// allowed), with enough steps to train for about half a minute on two cores.
fn job_manifest() -> String {
    let fixture = include_str!("../../api/tests/fixtures/chaos-job.yaml");
    let job = fixture.replace("steps: 100,", "steps: 4000,");
    assert_ne!(job, fixture, "the fixture's steps moved: update the test");
    job
}

/// The API's fixture experiment (ALIE on two seeded workers), its window moved to steps the
/// job reaches after the experiment is armed.
fn alie_manifest() -> String {
    let fixture = include_str!("../../api/tests/fixtures/chaos/alie-workers.yaml");
    let experiment = fixture.replace(
        "{fromStep: 20, untilStep: 60}",
        "{fromStep: 1000, untilStep: 2000}",
    );
    assert_ne!(
        experiment, fixture,
        "the fixture's window moved: update the test"
    );
    experiment
}

/// Silences one server; the name, index and window vary.
fn silence(name: &str, index: usize, window: &str) -> String {
    format!(
        "apiVersion: byzsgd.io/v1alpha1
kind: ByzantineChaos
metadata: {{name: {name}}}
spec:
  job: {JOB}
  role: server
  selector: {{mode: indices, indices: [{index}]}}
  action: {{kind: silence}}
  window: {window}
"
    )
}

/// `kubectl apply -n NS -f FILE` of `yaml`, written to `dir/name.yaml`.
fn apply(ns: &str, dir: &Path, name: &str, yaml: &str) {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).expect("writing a manifest");
    run(&[
        "kubectl",
        "apply",
        "--namespace",
        ns,
        "-f",
        &file.display().to_string(),
    ]);
}

fn experiment(cluster: &Cluster, ns: &str, name: &str) -> Option<ByzantineChaos> {
    cluster.get(ns, name)
}

fn phase(chaos: &ByzantineChaos) -> Option<ChaosPhase> {
    chaos.status.as_ref().and_then(|s| s.phase)
}

fn wait_phase(cluster: &Cluster, ns: &str, name: &str, wanted: ChaosPhase) -> ByzantineChaos {
    wait_until(
        &format!("experiment {name} in phase {wanted:?}"),
        Duration::from_secs(90),
        Duration::from_millis(300),
        |last| {
            let chaos = experiment(cluster, ns, name);
            *last = format!("{:#?}", chaos.as_ref().map(|c| &c.status));
            chaos.filter(|c| phase(c) == Some(wanted))
        },
    )
}

/// What `pod` reports as armed right now (`None`: nothing).
fn armed(statuses: &StatusWatch, pod: &str) -> Option<String> {
    statuses
        .latest(pod)
        .and_then(|s| s.chaos)
        .and_then(|c| c.armed)
}

/// Waits until `pod` reports `wanted` as armed.
fn wait_armed(statuses: &StatusWatch, pod: &str, wanted: Option<&str>) {
    wait_until(
        &format!("{pod} to report {wanted:?} armed"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        |last| {
            let now = armed(statuses, pod);
            *last = format!("{now:?}");
            (now.as_deref() == wanted).then_some(())
        },
    );
}

/// The operator's `byzsgd_operator_chaos_active` for `chaos`, from its pod's `/metrics`.
fn chaos_active(operator_ip: &str, chaos: &str) -> Option<String> {
    let addr = std::net::SocketAddr::new(operator_ip.parse().ok()?, 8080);
    let (_, metrics) = http(addr, "GET", "/metrics", None, None).ok()?;
    let wanted = format!("chaos=\"{chaos}\"");
    metrics
        .lines()
        .find(|l| l.starts_with("byzsgd_operator_chaos_active") && l.contains(&wanted))
        .and_then(|l| l.rsplit(' ').next().map(str::to_owned))
}

fn wait_gauge(operator_ip: &str, chaos: &str, value: &str) {
    wait_until(
        &format!("byzsgd_operator_chaos_active of {chaos} at {value}"),
        Duration::from_secs(60),
        Duration::from_millis(300),
        |last| {
            let now = chaos_active(operator_ip, chaos);
            *last = format!("{now:?}");
            (now.as_deref() == Some(value)).then_some(())
        },
    );
}

/// The reasons of the Events in `ns` about objects of `kind`.
fn event_reasons(cluster: &Cluster, ns: &str, kind: &str) -> BTreeSet<String> {
    let events: Vec<Event> = cluster.list(ns, &ListParams::default());
    events
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some(kind))
        .filter_map(|e| e.reason.clone())
        .collect()
}

#[test]
#[allow(clippy::too_many_lines)] // One experiment's life, start to verdict, reads best whole.
fn experiments_reach_exactly_the_selected_running_pods_and_get_a_verdict() {
    let total = Stopwatch::start(TEST, "total");
    let cluster = Cluster::connect();
    stack::import_images();
    let namespace = TestNamespace::create("e2e-chaos");
    let ns = namespace.name.as_str();
    let release = Release::install_watching(&cluster, "chaos-e2e", ns, 1);
    let operator_ip = release.operator_ip(&cluster);
    let dir = tempfile::tempdir().expect("a temp dir");

    // The job and the attack together, as `kubectl apply -f job.yaml -f experiment.yaml`: the
    // operator arms the attack as soon as the selected pods run, well before its window.
    let watch = Stopwatch::start(TEST, "attack_armed_in_selected_pods");
    let alie = alie_manifest();
    apply(ns, dir.path(), "job", &job_manifest());
    apply(ns, dir.path(), "alie", &alie);
    let job: ByzSgdJob = cluster.get(ns, JOB).expect("the job");
    let plan = byzsgd_api::validate(&job.spec.job).expect("a valid job");
    let spec: ByzantineChaos = serde_yaml_ng::from_str(&alie).expect("the experiment parses");
    let expected: BTreeSet<String> = byzsgd_api::chaos::select(&spec.spec.chaos, &plan)
        .into_iter()
        .map(|i| format!("chaos-job-worker-{i}"))
        .collect();
    assert_eq!(expected.len(), 2);

    // The job allows chaos: a token Secret owned by the job, and pods reading it.
    let secret: Secret = wait_until(
        "the chaos token Secret",
        Duration::from_secs(60),
        Duration::from_millis(300),
        |_| cluster.get(ns, "chaos-job-chaos-token"),
    );
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ByzSGDJob", JOB)
    );
    let token = String::from_utf8(secret.data.expect("data")["token"].0.clone()).expect("utf-8");
    assert!(token.len() >= 32, "token too short: {token}");
    let pods = wait_pods_running(&cluster, ns, JOB, 12, false, Duration::from_secs(120));
    let statuses = StatusWatch::start(addresses(&pods), Duration::from_millis(200));
    let bystander: &Pod = pods
        .iter()
        .find(|p| p.name_any().contains("-worker-") && !expected.contains(&p.name_any()))
        .expect("an unselected worker");
    let env = bystander.spec.as_ref().expect("spec").containers[0]
        .env
        .clone()
        .unwrap_or_default();
    let key = env
        .iter()
        .find(|e| e.name == "BYZSGD_CHAOS_TOKEN")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("pods read BYZSGD_CHAOS_TOKEN from the Secret");
    assert_eq!(
        (key.name.as_str(), key.key.as_str()),
        ("chaos-job-chaos-token", "token")
    );

    // The attack reaches exactly the pods the seeded selector picks.
    let running = wait_phase(&cluster, ns, "alie-two-workers", ChaosPhase::Running);
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
    for pod in &expected {
        wait_armed(&statuses, pod, Some("alie"));
    }
    watch.done();

    // A node takes orders only with the job's token: without it, nothing gets armed.
    let ip = workload::pod_ip(bystander).expect("an IP");
    let order = r#"{"action": {"kind": "silence"}, "window": {"fromStep": 0}}"#;
    let (code, body) =
        http(admin_addr(&ip), "POST", "/chaos", None, Some(order)).expect("the node answers");
    assert_eq!(code, 401, "no token: {body}");
    let (code, body) = http(
        admin_addr(&ip),
        "POST",
        "/chaos",
        Some("wrong"),
        Some(order),
    )
    .expect("the node answers");
    assert_eq!(code, 401, "a wrong token: {body}");
    let names: Vec<String> = pods.iter().map(ResourceExt::name_any).collect();
    for pod in names.iter().filter(|p| !expected.contains(*p)) {
        assert_eq!(armed(&statuses, pod), None, "{pod} was not selected");
    }
    wait_gauge(&operator_ip, "alie-two-workers", "1");

    // A duration window: the operator cancels it (DELETE /chaos) when it elapses.
    apply(
        ns,
        dir.path(),
        "brief",
        &silence("silence-briefly", 3, "{duration: 1s}"),
    );
    wait_phase(&cluster, ns, "silence-briefly", ChaosPhase::Ended);
    wait_armed(&statuses, "chaos-job-server-3", None);
    let history = statuses.history();
    let seen: Vec<Option<String>> = history["chaos-job-server-3"]
        .iter()
        .map(|s| s.chaos.clone().and_then(|c| c.armed))
        .collect();
    assert!(
        seen.contains(&Some("silence".to_owned())),
        "server 3 was armed, then disarmed: {seen:?}"
    );

    // Deleting a running experiment disarms its pods first (the finalizer).
    apply(
        ns,
        dir.path(),
        "open",
        &silence("silence-until-deleted", 2, "{fromStep: 0}"),
    );
    wait_phase(&cluster, ns, "silence-until-deleted", ChaosPhase::Running);
    wait_armed(&statuses, "chaos-job-server-2", Some("silence"));
    run(&[
        "kubectl",
        "delete",
        "bzchaos",
        "silence-until-deleted",
        "--namespace",
        ns,
    ]);
    assert!(experiment(&cluster, ns, "silence-until-deleted").is_none());
    wait_armed(&statuses, "chaos-job-server-2", None);

    // Crash: at fromStep the operator deletes the selected pod and the job recreates it. The
    // victim is a worker the attack did not select: it never gets a /chaos order.
    let victim = (0..7)
        .map(|i| format!("chaos-job-worker-{i}"))
        .find(|p| !expected.contains(p))
        .expect("5 workers are not attacked");
    let index = victim.rsplit('-').next().expect("an index");
    let before: Pod = cluster.get(ns, &victim).expect("the victim");
    let crash = format!(
        "apiVersion: byzsgd.io/v1alpha1
kind: ByzantineChaos
metadata: {{name: crash-one-worker}}
spec:
  job: {JOB}
  role: worker
  selector: {{mode: indices, indices: [{index}]}}
  action: {{kind: crash}}
  window: {{fromStep: 1500}}
"
    );
    apply(ns, dir.path(), "crash", &crash);
    let recreated: Pod = wait_until(
        "the crashed worker to be recreated",
        Duration::from_secs(120),
        Duration::from_millis(300),
        |last| {
            let pod: Option<Pod> = cluster.get(ns, &victim);
            *last = format!("{:?}", pod.as_ref().map(ResourceExt::uid));
            pod.filter(|p| p.uid() != before.uid())
        },
    );
    assert_ne!(recreated.uid(), before.uid());
    assert!(
        statuses.history()[&victim]
            .iter()
            .all(|s| s.chaos.as_ref().is_none_or(|c| c.armed.is_none())),
        "a crash sends no /chaos order"
    );
    let crashed = wait_phase(&cluster, ns, "crash-one-worker", ChaosPhase::Running);
    assert_eq!(
        crashed.status.expect("status").selected_pods,
        vec![victim.clone()]
    );

    // A malformed experiment: an index out of range, named in its condition.
    let bad = alie
        .replace("name: alie-two-workers", "name: bad-indices")
        .replace(
            "{mode: fixed, value: 2}",
            "{mode: indices, indices: [1, 9]}",
        );
    apply(ns, dir.path(), "bad", &bad);
    let invalid = wait_phase(&cluster, ns, "bad-indices", ChaosPhase::Invalid);
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

    // The job trains to its end; the attack's window closed on the way; the verdict follows.
    let job = wait_job(
        &cluster,
        ns,
        JOB,
        "the job to end",
        Duration::from_secs(240),
        |j| state(j).is_some_and(JobState::is_terminal),
    );
    let job_status = job.status.expect("status");
    assert_eq!(
        job_status.state,
        Some(JobState::Succeeded),
        "{:#?}",
        job_status.conditions
    );
    let judged = wait_until(
        "the attack's verdict",
        Duration::from_secs(60),
        Duration::from_millis(300),
        |last| {
            let chaos = experiment(&cluster, ns, "alie-two-workers");
            *last = format!("{:#?}", chaos.as_ref().map(|c| &c.status));
            chaos?
                .status
                .filter(|s| s.verdict.is_some_and(|v| v != Verdict::Pending))
        },
    );
    assert_eq!(judged.phase, Some(ChaosPhase::Ended));
    assert!(judged.end_time.is_some());
    assert_eq!(
        judged.verdict,
        Some(Verdict::Pass),
        "{:?}",
        judged.verdict_reason
    );
    wait_gauge(&operator_ip, "alie-two-workers", "0");
    // The attackers' own account: they acted on steps of the window and no others.
    let history = statuses.history();
    for pod in &expected {
        let report = history[pod]
            .iter()
            .rev()
            .find_map(|s| s.chaos.clone())
            .expect("a chaos report");
        let (first, last) = (
            report.first_step.expect("it acted"),
            report.last_step.expect("it acted"),
        );
        assert!(
            (1000..2000).contains(&first) && (1000..2000).contains(&last) && first <= last,
            "{pod} acted on steps {first}..={last}, outside [1000, 2000)"
        );
        eprintln!("{pod}: acted on steps {first}..={last}");
    }

    // Events on the job and on the experiments.
    let on_job = event_reasons(&cluster, ns, "ByzSGDJob");
    for reason in ["ChaosStarted", "ChaosEnded", "ChaosVerdict"] {
        assert!(
            on_job.contains(reason),
            "no {reason} on the job: {on_job:?}"
        );
    }
    let on_chaos = event_reasons(&cluster, ns, "ByzantineChaos");
    for reason in ["ChaosStarted", "InvalidSpec"] {
        assert!(
            on_chaos.contains(reason),
            "no {reason} on an experiment: {on_chaos:?}"
        );
    }
    run(&["kubectl", "get", "bzchaos", "--namespace", ns]);
    let counts: BTreeMap<&str, usize> = [("experiments", 4), ("pods", pods.len())].into();
    namespace.delete_workloads();
    drop(release);
    total.done_with(&json!(counts));
}
