//! Unit tests of the pure steps (`validate`, `build`, the status decision), driven by minimal
//! YAML fixtures (`api/tests/fixtures/`) and the quickstart, as users write them.

use std::{collections::BTreeMap, time::Duration};

use byzsgd_api::job::{ByzSgdJob, ByzSgdJobStatus, CleanPodPolicy, ConditionType, JobState};
use byzsgd_core::job::Role;
use k8s_openapi::{
    api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
        PodStatus,
    },
    jiff::{SignedDuration, Timestamp},
};

use super::{
    build::{build, labels},
    observe::{CheckpointReport, GatherReport, NodeReport},
    status::{Observed, combine, current_training, decide, set_condition},
    validate::{Error, ValidatedJob, validate_job},
};

const QUICKSTART: &str = include_str!("../../../examples/quickstart.yaml");

/// Parses a fixture as the API server would hand it over: with a namespace and a uid.
fn job_from(yaml: &str) -> ByzSgdJob {
    let mut job: ByzSgdJob = serde_yaml_ng::from_str(yaml).expect("fixture parses");
    job.metadata.namespace = Some("ns".to_owned());
    job.metadata.uid = Some("uid-1".to_owned());
    job.metadata.generation = Some(1);
    job
}

fn validated(yaml: &str) -> ValidatedJob {
    validate_job(&job_from(yaml)).expect("fixture is valid")
}

#[test]
fn minimal_job_validates_with_one_server_and_one_worker() {
    let job = validated(include_str!("../../../api/tests/fixtures/minimal.yaml"));
    assert_eq!((job.plan.servers, job.plan.workers), (1, 1));
    assert_eq!(job.namespace, "ns");
    assert!(job.owner.controller == Some(true) && job.owner.uid == "uid-1");
}

/// Every fixture the API server must reject is also rejected by `validate` (defence in depth:
/// a CRD installed without its rules still cannot start a broken job).
#[test]
fn broken_fixtures_fail_validation_naming_the_field() {
    for (yaml, field) in [
        (
            include_str!("../../../api/tests/fixtures/bad-servers.yaml"),
            "spec.servers.replicas",
        ),
        (
            include_str!("../../../api/tests/fixtures/bad-workers.yaml"),
            "spec.workers.replicas",
        ),
        (
            include_str!("../../../api/tests/fixtures/bad-krum.yaml"),
            "spec.aggregation.gradients",
        ),
        (
            include_str!("../../../api/tests/fixtures/bad-bulyan.yaml"),
            "spec.aggregation.models",
        ),
        (
            include_str!("../../../api/tests/fixtures/bad-inject.yaml"),
            "spec.inject[0].count",
        ),
    ] {
        match validate_job(&job_from(yaml)) {
            Err(Error::InvalidSpec { source, .. }) => assert!(
                source.problems.iter().any(|p| p.field == field),
                "expected a problem on {field}: {source}"
            ),
            other => panic!("expected InvalidSpec on {field}, got {other:?}"),
        }
    }
}

#[test]
fn job_without_uid_is_refused() {
    let mut job = job_from(include_str!("../../../api/tests/fixtures/minimal.yaml"));
    job.metadata.uid = None;
    assert!(matches!(validate_job(&job), Err(Error::MissingUid { .. })));
}

#[test]
fn quickstart_builds_service_config_map_and_twelve_owned_pods() {
    let job = validated(QUICKSTART);
    let desired = build(&job);
    assert_eq!(desired.pods.len(), 12);
    let names: Vec<String> = desired
        .pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names[0], "quickstart-server-0");
    assert_eq!(names[11], "quickstart-worker-6");
    let service = desired.service.spec.as_ref().expect("service spec");
    assert_eq!(service.cluster_ip.as_deref(), Some("None"));
    for owner in std::iter::once(&desired.service.metadata)
        .chain(std::iter::once(&desired.config_map.metadata))
        .chain(desired.pods.iter().map(|p| &p.metadata))
        .map(|m| m.owner_references.as_ref().expect("owner refs"))
    {
        assert_eq!(owner.len(), 1);
        assert_eq!(owner[0].kind, "ByzSGDJob");
        assert_eq!(owner[0].controller, Some(true));
    }
}

/// The pods read the ConfigMap with the node's own parser; what it reads must be the job.
#[test]
fn config_map_holds_a_manifest_the_node_parses_back_to_the_same_spec() {
    let job = validated(QUICKSTART);
    let desired = build(&job);
    let text = &desired.config_map.data.as_ref().expect("data")[labels::JOB_FILE];
    let parsed = byzsgd_api::Manifest::parse(text, "configmap").expect("node parses it");
    assert_eq!(parsed.name, "quickstart");
    assert_eq!(parsed.spec, job.plan.spec);
}

/// Dashboards find Byzantine pods by label; the node picks the highest indices by default.
#[test]
fn injected_pods_carry_the_byzantine_label_and_others_do_not() {
    let job = validated(QUICKSTART);
    let byzantine: BTreeMap<String, String> = build(&job)
        .pods
        .iter()
        .filter_map(|p| {
            let labels = p.metadata.labels.as_ref()?;
            Some((
                p.metadata.name.clone()?,
                labels.get(labels::BYZANTINE_LABEL)?.clone(),
            ))
        })
        .collect();
    assert_eq!(
        byzantine,
        BTreeMap::from([
            ("quickstart-server-4".to_owned(), "equivocate".to_owned()),
            ("quickstart-worker-5".to_owned(), "alie".to_owned()),
            ("quickstart-worker-6".to_owned(), "alie".to_owned()),
        ])
    );
}

/// Prometheus discovers node pods through these; without them no node metric is scraped.
/// A job that allows chaos gets a token Secret it owns and pods that read it; a job that does
/// not gets neither, so its admin port cannot be switched to Byzantine behaviour.
#[test]
fn only_jobs_that_allow_chaos_get_a_token_secret_and_pods_reading_it() {
    let chaos_job = validated(include_str!("../../../api/tests/fixtures/chaos-job.yaml"));
    let secret = super::build::chaos_secret(&chaos_job, "abc").expect("a Secret");
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("chaos-job-chaos-token")
    );
    assert_eq!(
        secret.metadata.owner_references,
        Some(vec![chaos_job.owner.clone()])
    );
    let data = secret.data.expect("data");
    assert_eq!(data[labels::CHAOS_TOKEN_KEY].0, b"abc");
    for pod in build(&chaos_job).pods {
        let env = pod.spec.expect("spec").containers[0]
            .env
            .clone()
            .unwrap_or_default();
        let token = env
            .iter()
            .find(|e| e.name == labels::CHAOS_TOKEN_ENV)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("the token comes from the Secret");
        assert_eq!(token.name, "chaos-job-chaos-token");
        assert_eq!(token.key, labels::CHAOS_TOKEN_KEY);
    }

    let quickstart = validated(QUICKSTART);
    assert!(super::build::chaos_secret(&quickstart, "abc").is_none());
    for pod in build(&quickstart).pods {
        let env = pod.spec.expect("spec").containers[0]
            .env
            .clone()
            .unwrap_or_default();
        assert!(
            env.iter().all(|e| e.name != labels::CHAOS_TOKEN_ENV),
            "a job without chaos got a chaos token"
        );
    }
}

#[test]
fn pods_carry_scrape_annotations_ports_probes_and_identity() {
    let job = validated(QUICKSTART);
    let pod = &build(&job).pods[3];
    let annotations = pod.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9090");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("quickstart-server-3"));
    assert_eq!(spec.subdomain.as_deref(), Some("quickstart"));
    let container = &spec.containers[0];
    let ports: Vec<(String, i32)> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [("grpc".to_owned(), 7070), ("admin".to_owned(), 9090)]
    );
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&container.readiness_probe).as_deref(), Some("/readyz"));
    assert_eq!(path(&container.liveness_probe).as_deref(), Some("/healthz"));
    let labels = pod.metadata.labels.as_ref().expect("labels");
    for key in ["name", "instance", "component", "managed-by"] {
        assert!(
            labels.contains_key(&format!("app.kubernetes.io/{key}")),
            "missing {key}"
        );
    }
}

fn report(step: u64, accuracy: f64) -> NodeReport {
    NodeReport {
        step,
        loss: Some(1.0 - accuracy),
        accuracy: Some(accuracy),
        last_gather: Some(GatherReport {
            step,
            drift_to_median: Some(0.01),
        }),
        finished: false,
        checkpoint: None,
    }
}

/// PAPER.md §2: n_ps ≥ 3·f_ps + 2 makes the quorum at least 2·f_ps + 2, so the median of the
/// quorum stays among correct values whatever f_ps servers say.
#[test]
fn one_lying_server_cannot_move_the_combined_accuracy() {
    let honest: Vec<(usize, NodeReport)> = (0..5).map(|i| (i, report(100, 0.5))).collect();
    let mut lying = honest.clone();
    lying[0].1 = report(1_000_000, 1.0);
    let combined = combine(&lying, 4).expect("quorum answered");
    assert_eq!(combined.accuracy, Some(0.5));
    assert_eq!(combined.step, 100);
    // Control: with two liars (more than f_ps = 1) the median does move, so the check above is
    // about the quorum, not a constant.
    lying[1].1 = report(1_000_000, 1.0);
    assert_eq!(combine(&lying, 4).expect("quorum").accuracy, Some(0.75));
    assert!(
        combine(&honest[..3], 4).is_none(),
        "fewer than a quorum must not produce a status"
    );
}

/// The job names the checkpoint a full restart resumes near: the median of the quorum's
/// newest checkpoint steps, which one server claiming a later one cannot move.
#[test]
fn the_status_names_the_quorums_checkpoint_step() {
    let with_checkpoint = |step| NodeReport {
        checkpoint: Some(CheckpointReport { step }),
        ..report(350, 0.5)
    };
    let mut reports: Vec<(usize, NodeReport)> = (0..5).map(|i| (i, with_checkpoint(300))).collect();
    reports[0].1 = with_checkpoint(1_000_000);
    reports[1].1 = report(350, 0.5); // none written yet
    assert_eq!(
        combine(&reports, 4).expect("quorum").checkpoint_step,
        Some(300)
    );
    let none: Vec<(usize, NodeReport)> = (0..5).map(|i| (i, report(10, 0.1))).collect();
    assert_eq!(combine(&none, 4).expect("quorum").checkpoint_step, None);
}

/// The job ends on what its servers finished with: a server still evaluating its last step
/// (finished: false, an older accuracy) is left out once a quorum has finished.
#[test]
fn once_a_quorum_finished_the_status_is_their_final_reports() {
    let finished = |accuracy| NodeReport {
        finished: true,
        ..report(1500, accuracy)
    };
    let reports = vec![
        (0, finished(0.80)),
        (1, report(1500, 0.70)),
        (2, finished(0.82)),
        (3, finished(0.84)),
        (4, finished(0.86)),
    ];
    let accuracy = |reports: &[(usize, NodeReport)]| {
        current_training(reports, 4)
            .and_then(|t| t.accuracy)
            .map(|a| (a * 1e6).round() / 1e6)
    };
    assert_eq!(accuracy(&reports), Some(0.83), "servers 0, 2, 3, 4");
    // Control: before a quorum finished, the first quorum of answers counts, server 1 included.
    let mut running = reports.clone();
    running[4].1.finished = false;
    assert_eq!(accuracy(&running), Some(0.81), "servers 0, 1, 2, 3");
}

#[test]
fn condition_transition_time_changes_only_on_transitions() {
    let t0 = Timestamp::from_second(1_000).expect("time");
    let t1 = Timestamp::from_second(2_000).expect("time");
    let mut conditions = Vec::new();
    assert!(set_condition(
        &mut conditions,
        ConditionType::Running,
        true,
        "A",
        "a",
        t0,
        Some(1)
    ));
    assert!(!set_condition(
        &mut conditions,
        ConditionType::Running,
        true,
        "B",
        "b",
        t1,
        Some(1)
    ));
    assert_eq!(conditions[0].last_transition_time.0, t0);
    assert_eq!(conditions[0].reason, "B");
    assert!(set_condition(
        &mut conditions,
        ConditionType::Running,
        false,
        "C",
        "c",
        t1,
        Some(1)
    ));
    assert_eq!(conditions[0].last_transition_time.0, t1);
}

fn pod(name: &str, uid: &str, phase: &str, restarts: i32) -> (String, Pod) {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.to_owned());
    pod.metadata.uid = Some(uid.to_owned());
    pod.status = Some(PodStatus {
        phase: Some(phase.to_owned()),
        container_statuses: Some(vec![ContainerStatus {
            name: "node".to_owned(),
            restart_count: restarts,
            ..ContainerStatus::default()
        }]),
        ..PodStatus::default()
    });
    (name.to_owned(), pod)
}

fn running_pods(job: &ValidatedJob, generation: &str) -> BTreeMap<String, Pod> {
    [Role::Server, Role::Worker]
        .into_iter()
        .flat_map(|role| (0..job.replicas(role)).map(move |i| (role, i)))
        .map(|(role, i)| {
            let name = labels::pod_name(&job.name, role, i);
            pod(&name, &format!("{name}-{generation}"), "Running", 0)
        })
        .collect()
}

fn observe<'a>(
    previous: Option<&'a ByzSgdJobStatus>,
    pods: &'a BTreeMap<String, Pod>,
    reports: &'a [(usize, NodeReport)],
    now: Timestamp,
) -> Observed<'a> {
    Observed {
        previous,
        pods,
        reports,
        now,
        poll: Duration::from_secs(10),
    }
}

/// Re-deciding with the same observations must write the same status: a timestamp that moved
/// on every reconcile would trigger the next reconcile forever.
#[test]
fn deciding_twice_on_the_same_observations_gives_the_same_status() {
    let job = validated(QUICKSTART);
    let pods = running_pods(&job, "a");
    let t0 = Timestamp::from_second(1_000).expect("time");
    let first = decide(&job, &observe(None, &pods, &[], t0)).status;
    assert_eq!(first.state, Some(JobState::Running));
    let later = t0 + SignedDuration::from_secs(30);
    let second = decide(&job, &observe(Some(&first), &pods, &[], later)).status;
    assert_eq!(first, second);
}

#[test]
fn missing_pods_are_created_and_first_creations_do_not_count_as_restarts() {
    let job = validated(QUICKSTART);
    let t0 = Timestamp::from_second(1_000).expect("time");
    let decision = decide(&job, &observe(None, &BTreeMap::new(), &[], t0));
    assert_eq!(decision.create.len(), 12);
    assert_eq!(decision.status.restarts, 0);
    assert_eq!(decision.status.state, Some(JobState::Created));
}

/// Recreations and container restarts both count, each once, and the count lives in the status
/// so an operator restart (a fresh `decide` from the stored status) does not reset it.
#[test]
fn backoff_counts_recreations_and_container_restarts_once_each() {
    let mut job = validated(QUICKSTART);
    job.run_policy.backoff_limit = Some(2);
    job.run_policy.clean_pod_policy = CleanPodPolicy::Running;
    let t0 = Timestamp::from_second(1_000).expect("time");
    let mut pods = running_pods(&job, "a");
    let first = decide(&job, &observe(None, &pods, &[], t0)).status;
    assert_eq!(first.restarts, 0);

    // server-0 deleted: one recreation; worker-0 restarted its container twice... once.
    pods.remove("quickstart-server-0");
    let (name, restarted) = pod("quickstart-worker-0", "quickstart-worker-0-a", "Running", 1);
    pods.insert(name, restarted);
    let second = decide(&job, &observe(Some(&first), &pods, &[], t0));
    assert_eq!(second.status.restarts, 2);
    assert!(second.create.contains("quickstart-server-0"));
    assert_eq!(second.status.state, Some(JobState::Restarting));
    // The same observation again adds nothing.
    let again = decide(&job, &observe(Some(&second.status), &pods, &[], t0));
    assert_eq!(again.status.restarts, 2);

    // The pod comes back (new uid, already counted), then a third event exceeds the limit.
    let (name, back) = pod("quickstart-server-0", "quickstart-server-0-b", "Running", 0);
    pods.insert(name, back);
    let third = decide(&job, &observe(Some(&again.status), &pods, &[], t0));
    assert_eq!(third.status.restarts, 2);
    pods.remove("quickstart-worker-3");
    let failed = decide(&job, &observe(Some(&third.status), &pods, &[], t0));
    assert_eq!(failed.status.state, Some(JobState::Failed));
    let condition = failed
        .status
        .condition(ConditionType::Failed)
        .expect("Failed condition");
    assert_eq!(condition.reason, "BackoffLimitExceeded");
    assert!(
        failed.create.is_empty(),
        "no pod is recreated after failing"
    );
    // cleanPodPolicy Running deletes every running pod.
    assert_eq!(failed.delete.len(), pods.len());
}

#[test]
fn clean_pod_policy_none_keeps_every_pod_after_failure() {
    let mut job = validated(QUICKSTART);
    job.run_policy.backoff_limit = Some(0);
    let t0 = Timestamp::from_second(1_000).expect("time");
    let mut pods = running_pods(&job, "a");
    let first = decide(&job, &observe(None, &pods, &[], t0)).status;
    pods.remove("quickstart-worker-1");
    let failed = decide(&job, &observe(Some(&first), &pods, &[], t0));
    assert_eq!(failed.status.state, Some(JobState::Failed));
    assert!(failed.delete.is_empty());
    // Later reconciles of a finished job keep it finished and keep the pods.
    let later = decide(&job, &observe(Some(&failed.status), &pods, &[], t0));
    assert_eq!(later.status, failed.status);
    assert!(later.delete.is_empty() && later.create.is_empty());
}

#[test]
fn deadline_fails_the_job_and_ttl_deletes_it_later() {
    let mut job = validated(QUICKSTART);
    job.run_policy.active_deadline_seconds = Some(60);
    job.run_policy.ttl_seconds_after_finished = Some(600);
    job.run_policy.clean_pod_policy = CleanPodPolicy::All;
    let t0 = Timestamp::from_second(1_000).expect("time");
    let pods = running_pods(&job, "a");
    let first = decide(&job, &observe(None, &pods, &[], t0));
    assert!(first.requeue.is_some_and(|r| r <= Duration::from_secs(10)));
    let late = t0 + SignedDuration::from_secs(61);
    let failed = decide(&job, &observe(Some(&first.status), &pods, &[], late));
    let condition = failed
        .status
        .condition(ConditionType::Failed)
        .expect("Failed");
    assert_eq!(condition.reason, "DeadlineExceeded");
    assert_eq!(failed.delete.len(), 12);
    assert!(!failed.delete_job);
    let expired = late + SignedDuration::from_secs(601);
    assert!(decide(&job, &observe(Some(&failed.status), &pods, &[], expired)).delete_job);
}

#[test]
fn more_failed_pods_than_f_lose_the_quorum() {
    let job = validated(QUICKSTART);
    let t0 = Timestamp::from_second(1_000).expect("time");
    let mut pods = running_pods(&job, "a");
    let first = decide(&job, &observe(None, &pods, &[], t0)).status;
    for i in 0..2 {
        let (name, failed) = pod(
            &format!("quickstart-server-{i}"),
            &format!("quickstart-server-{i}-a"),
            "Failed",
            0,
        );
        pods.insert(name, failed);
    }
    let decision = decide(&job, &observe(Some(&first), &pods, &[], t0));
    let condition = decision
        .status
        .condition(ConditionType::Failed)
        .expect("Failed");
    assert_eq!(condition.reason, "QuorumLost");
}

#[test]
fn suspend_deletes_pods_keeps_status_and_resume_recreates_without_counting() {
    let mut job = validated(QUICKSTART);
    let t0 = Timestamp::from_second(1_000).expect("time");
    let pods = running_pods(&job, "a");
    let reports: Vec<(usize, NodeReport)> = (0..5).map(|i| (i, report(100, 0.5))).collect();
    let running = decide(&job, &observe(None, &pods, &reports, t0)).status;
    job.run_policy.suspend = true;
    let suspended = decide(&job, &observe(Some(&running), &pods, &[], t0));
    assert_eq!(suspended.delete.len(), 12);
    assert_eq!(suspended.status.state, Some(JobState::Suspended));
    assert_eq!(
        suspended.status.training, running.training,
        "status is kept"
    );
    job.run_policy.suspend = false;
    let resumed = decide(
        &job,
        &observe(Some(&suspended.status), &BTreeMap::new(), &[], t0),
    );
    assert_eq!(resumed.create.len(), 12);
    assert_eq!(resumed.status.restarts, 0);
    assert!(!resumed.status.is_true(ConditionType::Suspended));
}

#[test]
fn quorum_reaching_the_target_succeeds_and_a_liar_alone_cannot() {
    let job = validated(QUICKSTART);
    let t0 = Timestamp::from_second(1_000).expect("time");
    let pods = running_pods(&job, "a");
    let mut reports: Vec<(usize, NodeReport)> = (0..5).map(|i| (i, report(500, 0.5))).collect();
    reports[4].1 = report(500, 1.0);
    let not_yet = decide(&job, &observe(None, &pods, &reports, t0));
    assert_eq!(not_yet.status.state, Some(JobState::Running));
    assert!(!not_yet.status.is_true(ConditionType::Converged));
    for (_, r) in &mut reports {
        *r = report(600, 0.85);
    }
    // Reaching the target early sets Converged; the job runs on, its status following the
    // servers, until they ran their steps (as `byzsgd-node local` does).
    let converged = decide(&job, &observe(Some(&not_yet.status), &pods, &reports, t0));
    assert_eq!(converged.status.state, Some(JobState::Running));
    assert!(converged.status.is_true(ConditionType::Converged));
    for (i, r) in &mut reports {
        *r = report(1500, 0.86);
        // A quorum (4 of 5) says it finished; the liar's word alone would not be enough.
        r.finished = *i < 4;
    }
    let done = decide(&job, &observe(Some(&converged.status), &pods, &reports, t0));
    assert_eq!(done.status.state, Some(JobState::Succeeded));
    assert!(done.status.is_true(ConditionType::Converged));
    let training = done.status.training.expect("training");
    assert_eq!((training.step, training.accuracy), (1500, Some(0.86)));
}

/// A server that finished its steps exits 0 (pod Succeeded) after serving its final status a
/// while: either counts as done, and a quorum of finished servers below the target fails the
/// job as NotConverged.
#[test]
fn servers_that_finished_below_the_target_fail_the_job() {
    let job = validated(QUICKSTART);
    let t0 = Timestamp::from_second(1_000).expect("time");
    let mut pods = running_pods(&job, "a");
    let mut reports: Vec<(usize, NodeReport)> = (0..5).map(|i| (i, report(1500, 0.7))).collect();
    // One finished and exited, one finished and says so: 2 of a quorum of 4, not yet done.
    pods.insert(
        "quickstart-server-0".to_owned(),
        pod(
            "quickstart-server-0",
            "quickstart-server-0-a",
            "Succeeded",
            0,
        )
        .1,
    );
    reports.remove(0);
    reports[0].1.finished = true;
    let running = decide(&job, &observe(None, &pods, &reports, t0));
    assert!(
        !running.status.state.is_some_and(JobState::is_terminal),
        "{:?}",
        running.status.state
    );
    reports[1].1.finished = true;
    reports[2].1.finished = true;
    let failed = decide(&job, &observe(Some(&running.status), &pods, &reports, t0));
    assert_eq!(failed.status.state, Some(JobState::Failed));
    let condition = failed
        .status
        .condition(ConditionType::Failed)
        .expect("Failed condition");
    assert_eq!(condition.reason, "NotConverged", "{condition:?}");
}

/// The node's `/status` JSON is what the operator parses: a contract between the two crates.
#[test]
fn node_status_json_parses_into_a_report() {
    let status = byzsgd_api::admin::Status {
        step: 42,
        loss: Some(0.25),
        accuracy: Some(0.75),
        last_gather: Some(byzsgd_api::admin::GatherStatus {
            step: 40,
            drift_to_median: 0.125,
        }),
        checkpoint: Some(byzsgd_api::admin::CheckpointStatus {
            step: 40,
            path: "/var/lib/byzsgd/checkpoints/job-server-0/step-00000040".to_owned(),
        }),
        ..byzsgd_api::admin::Status::default()
    };
    let json = serde_json::to_vec(&status).expect("serialises");
    let parsed: NodeReport = serde_json::from_slice(&json).expect("parses");
    assert_eq!(parsed.checkpoint.map(|c| c.step), Some(40));
    assert_eq!(parsed.step, 42);
    assert_eq!(parsed.accuracy, Some(0.75));
    assert_eq!(
        parsed.last_gather.and_then(|g| g.drift_to_median),
        Some(0.125)
    );
}

/// The defaults every node pod gets without a template: non-root, read-only root, no
/// capabilities, no service-account token, resource requests, a termination log, and the
/// Fashion-MNIST data image copied by an init container into the volume the node reads.
#[test]
fn pods_default_to_non_root_read_only_requests_and_the_data_image() {
    let job = validated(QUICKSTART);
    let pod = &build(&job).pods[0];
    let spec = pod.spec.as_ref().expect("spec");
    let pod_security = spec
        .security_context
        .as_ref()
        .expect("pod security context");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(spec.automount_service_account_token, Some(false));
    let node = &spec.containers[0];
    assert_eq!(node.image.as_deref(), Some("localhost/byzsgd-node:0.1.0"));
    let security = node
        .security_context
        .as_ref()
        .expect("container security context");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_owned()])
    );
    let requests = node
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .expect("requests");
    assert_eq!(requests["cpu"].0, "100m");
    assert_eq!(requests["memory"].0, "128Mi");
    let env: BTreeMap<String, Option<String>> = node
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    assert_eq!(env["BYZSGD_DATA_DIR"].as_deref(), Some("/dataset"));
    assert_eq!(
        env["BYZSGD_TERMINATION_LOG"].as_deref(),
        Some("/dev/termination-log")
    );
    let init = &spec.init_containers.as_ref().expect("init containers")[0];
    assert_eq!(
        init.image.as_deref(),
        Some("localhost/byzsgd-data-fashion-mnist:0.1.0")
    );
    assert_eq!(
        init.command.as_deref(),
        Some(
            [
                "/bin/busybox",
                "cp",
                "-r",
                "/data/fashion-mnist/.",
                "/dataset/"
            ]
            .map(str::to_owned)
            .as_slice()
        )
    );
    let data = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "data")
        .expect("data volume");
    assert!(data.empty_dir.is_some());
    let mount = node
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "data")
        .expect("data mount");
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        ("/dataset", Some(true))
    );
}

/// Servers keep their checkpoints on the `checkpoints` volume: an `emptyDir` by default, the
/// template's volume of that name when it has one (a claim survives pod deletion); workers do
/// not hold it, so a ReadWriteOnce claim does not pin them to the servers' node.
#[test]
fn servers_mount_the_checkpoint_volume_and_workers_do_not() {
    let volume = |pod: &Pod| {
        pod.spec
            .as_ref()
            .and_then(|spec| spec.volumes.clone())
            .into_iter()
            .flatten()
            .find(|v| v.name == "checkpoints")
    };
    let mount = |pod: &Pod| {
        pod.spec.as_ref().expect("spec").containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "checkpoints")
            .map(|m| m.mount_path.clone())
    };
    let is_server = |pod: &Pod| {
        pod.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.contains("-server-"))
    };

    let default = build(&validated(QUICKSTART));
    for pod in &default.pods {
        if is_server(pod) {
            assert!(volume(pod).expect("checkpoint volume").empty_dir.is_some());
            assert_eq!(mount(pod).as_deref(), Some("/var/lib/byzsgd/checkpoints"));
        } else {
            assert_eq!((volume(pod), mount(pod)), (None, None));
        }
    }

    let claimed = QUICKSTART.replace(
        "  runPolicy:",
        "  template:\n    volumes: [{name: checkpoints, persistentVolumeClaim: {claimName: ckpt}}]\n  runPolicy:",
    );
    for pod in &build(&validated(&claimed)).pods {
        let found = volume(pod);
        if is_server(pod) {
            let claim = found
                .and_then(|v| v.persistent_volume_claim)
                .expect("the claim");
            assert_eq!(claim.claim_name, "ckpt");
            assert_eq!(mount(pod).as_deref(), Some("/var/lib/byzsgd/checkpoints"));
        } else {
            assert_eq!(found, None);
        }
    }
}

/// Kubeflow-like overrides land in every pod, merged over the defaults: a partial security
/// context keeps the other defaults, the operator's labels and env win on a clash, extra
/// volumes are mounted, and a claim replaces the data image.
#[test]
fn template_overrides_merge_over_the_defaults() {
    let yaml = QUICKSTART.replace(
        "  runPolicy:",
        r#"  template:
    labels: {team: ml, "byzsgd.io/role": hijack}
    annotations: {owner: me}
    imagePullSecrets: [{name: regcred}]
    resources: {requests: {memory: 1Gi}, limits: {memory: 2Gi}}
    env: [{name: RUST_LOG, value: debug}, {name: BYZSGD_DATA_DIR, value: /elsewhere}]
    nodeSelector: {pool: gpu}
    tolerations: [{key: dedicated, operator: Equal, value: ml, effect: NoSchedule}]
    affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 1, podAffinityTerm: {topologyKey: kubernetes.io/hostname}}]}}
    securityContext: {runAsUser: 1000}
    containerSecurityContext: {readOnlyRootFilesystem: false}
    volumes: [{name: scratch, emptyDir: {}}]
    volumeMounts: [{name: scratch, mountPath: /scratch}]
    dataSource: {persistentVolumeClaim: {claimName: fmnist, subPath: idx}}
  runPolicy:"#,
    );
    let job = validated(&yaml);
    let pod = &build(&job).pods[5];
    let labels = pod.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels["team"], "ml");
    assert_eq!(
        labels["byzsgd.io/role"], "worker",
        "the operator's label wins"
    );
    assert_eq!(
        pod.metadata.annotations.as_ref().expect("annotations")["owner"],
        "me"
    );
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(
        spec.image_pull_secrets.as_ref().expect("secrets")[0].name,
        "regcred"
    );
    assert_eq!(
        spec.node_selector.as_ref().expect("selector")["pool"],
        "gpu"
    );
    assert_eq!(spec.tolerations.as_ref().expect("tolerations").len(), 1);
    assert!(spec.affinity.is_some());
    let pod_security = spec.security_context.as_ref().expect("pod security");
    assert_eq!(pod_security.run_as_user, Some(1000));
    assert_eq!(
        pod_security.run_as_non_root,
        Some(true),
        "unset fields keep the default"
    );
    let node = &spec.containers[0];
    let security = node.security_context.as_ref().expect("container security");
    assert_eq!(security.read_only_root_filesystem, Some(false));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let resources = node.resources.as_ref().expect("resources");
    let requests = resources.requests.as_ref().expect("requests");
    assert_eq!(requests["memory"].0, "1Gi");
    assert_eq!(
        requests["cpu"].0, "100m",
        "defaults fill what the template leaves out"
    );
    assert_eq!(
        resources.limits.as_ref().expect("limits")["memory"].0,
        "2Gi"
    );
    let env: Vec<(String, Option<String>)> = node
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    assert!(env.contains(&("RUST_LOG".to_owned(), Some("debug".to_owned()))));
    assert_eq!(
        env.iter().filter(|(n, _)| n == "BYZSGD_DATA_DIR").count(),
        1,
        "one definition, the operator's: {env:?}"
    );
    assert!(env.contains(&("BYZSGD_DATA_DIR".to_owned(), Some("/dataset".to_owned()))));
    assert!(spec.init_containers.is_none(), "a claim needs no copy");
    let volumes = spec.volumes.as_ref().expect("volumes");
    let data = volumes.iter().find(|v| v.name == "data").expect("data");
    let claim = data.persistent_volume_claim.as_ref().expect("claim");
    assert_eq!(
        (claim.claim_name.as_str(), claim.read_only),
        ("fmnist", Some(true))
    );
    assert!(volumes.iter().any(|v| v.name == "scratch"));
    let mounts = node.volume_mounts.as_ref().expect("mounts");
    assert!(mounts.iter().any(|m| m.mount_path == "/scratch"));
    let data_mount = mounts
        .iter()
        .find(|m| m.name == "data")
        .expect("data mount");
    assert_eq!(data_mount.sub_path.as_deref(), Some("idx"));
}

/// A template that would clash with the operator's own volumes, mount something undefined, or
/// leave `mnist` without data is refused with every problem named.
#[test]
fn template_problems_name_the_field_and_the_fix() {
    let yaml = QUICKSTART
        .replace("name: fashion-mnist", "name: mnist")
        .replace(
            "  runPolicy:",
            "  template:\n    volumes: [{name: data, emptyDir: {}}, {name: checkpoints, emptyDir: {}}]\n    volumeMounts: [{name: nope, mountPath: /dataset}, {name: checkpoints, mountPath: /ckpt}]\n  runPolicy:",
        );
    let Err(Error::InvalidSpec { source, .. }) = validate_job(&job_from(&yaml)) else {
        panic!("expected InvalidSpec");
    };
    let fields: Vec<&str> = source.problems.iter().map(|p| p.field.as_str()).collect();
    for field in [
        "spec.template.dataSource",
        "spec.template.volumes[0].name",
        "spec.template.volumeMounts[0].name",
        "spec.template.volumeMounts[0].mountPath",
        "spec.template.volumeMounts[1].name",
    ] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
    assert!(source.problems.iter().all(|p| !p.fix.is_empty()));
}

fn with_init_waiting(mut pod: Pod, reason: &str, message: &str) -> Pod {
    let status = pod.status.get_or_insert_with(PodStatus::default);
    status.phase = Some("Pending".to_owned());
    status.init_container_statuses = Some(vec![ContainerStatus {
        name: "data".to_owned(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_owned()),
                message: Some(message.to_owned()),
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }]);
    pod
}

/// A data image nobody loaded is a condition and an event naming the image and the fix; the
/// job waits (the image may still be imported) instead of failing or restarting.
#[test]
fn an_unpullable_data_image_is_a_condition_not_a_failure() {
    let job = validated(QUICKSTART);
    let mut pods = running_pods(&job, "a");
    let name = "quickstart-worker-2".to_owned();
    let stuck = with_init_waiting(
        pods.remove(&name).expect("pod"),
        "ErrImageNeverPull",
        "not present",
    );
    pods.insert(name, stuck);
    let decision = decide(&job, &observe(None, &pods, &[], Timestamp::UNIX_EPOCH));
    let condition = decision
        .status
        .condition(ConditionType::DataAvailable)
        .expect("DataAvailable");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "DataImageUnavailable")
    );
    assert!(
        condition
            .message
            .contains("localhost/byzsgd-data-fashion-mnist:0.1.0"),
        "{}",
        condition.message
    );
    assert!(condition.message.contains("fix:"), "{}", condition.message);
    assert!(
        decision
            .notes
            .iter()
            .any(|n| n.warning && n.reason == "DataImageUnavailable")
    );
    assert_ne!(decision.status.state, Some(JobState::Failed));
    assert!(decision.delete.is_empty());
}

/// A node that exits 78 (cannot read its data) fails the job at once with the node's own
/// message, and its pods are deleted so they do not restart forever, whatever cleanPodPolicy.
#[test]
fn a_node_that_cannot_read_its_data_fails_the_job_without_a_crash_loop() {
    let job = validated(QUICKSTART);
    let mut pods = running_pods(&job, "a");
    let name = "quickstart-server-1".to_owned();
    let mut broken = pods.remove(&name).expect("pod");
    let status = broken.status.get_or_insert_with(PodStatus::default);
    status.container_statuses = Some(vec![ContainerStatus {
        name: "node".to_owned(),
        restart_count: 1,
        last_state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 78,
                message: Some("error: cannot load data set `fashion-mnist` from /dataset: no training images file\n".to_owned()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }]);
    pods.insert(name.clone(), broken);
    let decision = decide(&job, &observe(None, &pods, &[], Timestamp::UNIX_EPOCH));
    assert_eq!(decision.status.state, Some(JobState::Failed));
    let failed = decision
        .status
        .condition(ConditionType::Failed)
        .expect("Failed");
    assert_eq!(failed.reason, "DataUnavailable");
    assert!(
        failed.message.contains("quickstart-server-1")
            && failed.message.contains("no training images"),
        "{}",
        failed.message
    );
    let data = decision
        .status
        .condition(ConditionType::DataAvailable)
        .expect("DataAvailable");
    assert_eq!(data.reason, "DataUnreadable");
    assert_eq!(decision.delete.len(), 12, "every unfinished pod goes");
    assert!(decision.create.is_empty());
}
