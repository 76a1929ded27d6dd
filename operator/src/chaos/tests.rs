//! Unit tests of the chaos controller's pure decision, driven by the node's chaos fixtures and
//! a small job that allows chaos (`api/tests/fixtures/chaos-job.yaml`).

use std::{collections::BTreeMap, time::Duration};

use byzsgd_api::{
    chaos::{
        ByzantineChaos, ByzantineChaosStatus, ChaosAction, ChaosCondition, ChaosDuration,
        ChaosPhase, ChaosSpec, Verdict, select,
    },
    job::{ByzSgdJob, ByzSgdJobStatus, ConditionType, JobState, TrainingStatus},
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::decide::{
    Decision, Effect, Observed, PodView, Target, cancel, decide, refused, verdict,
};
use crate::controller::{
    build::labels,
    status::set_condition,
    validate::{ValidatedJob, validate_job},
};

const JOB: &str = include_str!("../../../api/tests/fixtures/chaos-job.yaml");
const ALIE: &str = include_str!("../../../api/tests/fixtures/chaos/alie-workers.yaml");
const POLL: Duration = Duration::from_secs(10);

fn validated(yaml: &str) -> ValidatedJob {
    let mut job: ByzSgdJob = serde_yaml_ng::from_str(yaml).expect("job parses");
    job.metadata.namespace = Some("ns".to_owned());
    job.metadata.uid = Some("uid-1".to_owned());
    validate_job(&job).expect("job is valid")
}

fn alie() -> ChaosSpec {
    let chaos: ByzantineChaos = serde_yaml_ng::from_str(ALIE).expect("chaos parses");
    chaos.spec.chaos
}

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid time")
}

/// Every pod of the job, Running with an IP.
fn running_pods(job: &ValidatedJob) -> BTreeMap<String, PodView> {
    [
        byzsgd_core::job::Role::Server,
        byzsgd_core::job::Role::Worker,
    ]
    .into_iter()
    .flat_map(|role| {
        (0..job.replicas(role)).map(move |index| {
            (
                labels::pod_name(&job.name, role, index),
                PodView {
                    ip: Some(format!("10.0.0.{index}")),
                    running: true,
                },
            )
        })
    })
    .collect()
}

fn job_status(state: JobState, step: u64, converged: Option<bool>) -> ByzSgdJobStatus {
    let mut status = ByzSgdJobStatus {
        state: Some(state),
        training: Some(TrainingStatus {
            step,
            accuracy: Some(0.9),
            max_drift: Some(0.01),
            quorum: 4,
            ..TrainingStatus::default()
        }),
        ..ByzSgdJobStatus::default()
    };
    if let Some(converged) = converged {
        set_condition(
            &mut status.conditions,
            ConditionType::Converged,
            converged,
            if converged {
                "TargetReached"
            } else {
                "NoTarget"
            },
            "quorum accuracy 0.9000, target 0.8",
            t0(),
            None,
        );
    }
    status
}

struct Case<'a> {
    spec: &'a ChaosSpec,
    previous: Option<&'a ByzantineChaosStatus>,
    target: Target<'a>,
    pods: &'a BTreeMap<String, PodView>,
    now: Timestamp,
    generation: Option<i64>,
}

fn run(case: &Case<'_>) -> Decision {
    decide(&Observed {
        spec: case.spec,
        generation: case.generation,
        previous: case.previous,
        target: case.target,
        pods: case.pods,
        now: case.now,
        poll: POLL,
    })
}

fn condition(status: &ByzantineChaosStatus, type_: ChaosCondition) -> (&str, &str) {
    let c = status.condition(type_).expect("condition is set");
    (c.status.as_str(), c.message.as_str())
}

#[test]
fn an_attack_is_sent_to_exactly_the_selected_pods_with_its_step_window() {
    let job = validated(JOB);
    let spec = alie();
    let pods = running_pods(&job);
    let running = job_status(JobState::Running, 3, Some(false));
    let decision = run(&Case {
        spec: &spec,
        previous: None,
        target: Target::Found {
            job: &job,
            status: Some(&running),
        },
        pods: &pods,
        now: t0(),
        generation: Some(1),
    });
    let expected: Vec<String> = select(&spec, &job.plan)
        .into_iter()
        .map(|i| format!("chaos-job-worker-{i}"))
        .collect();
    assert_eq!(expected.len(), 2);
    let Effect::Arm { pods: hit, request } = &decision.effect else {
        panic!("expected Arm, got {:?}", decision.effect);
    };
    let names: Vec<&str> = hit.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, expected);
    assert!(hit.iter().all(|p| p.ip == format!("10.0.0.{}", p.index)));
    assert_eq!(request.action, spec.action);
    assert_eq!(
        (request.window.from_step, request.window.until_step),
        (20, Some(60))
    );
    let status = &decision.status;
    assert_eq!(status.phase, Some(ChaosPhase::Running));
    assert_eq!(status.selected_pods, expected);
    assert_eq!(status.start_time.as_ref().map(|t| t.0), Some(t0()));
    assert_eq!(condition(status, ChaosCondition::Valid).0, "True");
    assert_eq!(condition(status, ChaosCondition::Injected).0, "True");
    assert!(
        decision
            .notes
            .iter()
            .any(|n| n.reason == "ChaosStarted" && n.message.contains(&expected[0]))
    );
    assert_eq!(decision.requeue, Some(POLL));
}

#[test]
fn pods_that_do_not_run_yet_keep_the_experiment_pending() {
    let job = validated(JOB);
    let spec = alie();
    let mut pods = running_pods(&job);
    let first = select(&spec, &job.plan)[0];
    let waiting = format!("chaos-job-worker-{first}");
    pods.insert(waiting.clone(), PodView::default());
    let decision = run(&Case {
        spec: &spec,
        previous: None,
        target: Target::Found {
            job: &job,
            status: None,
        },
        pods: &pods,
        now: t0(),
        generation: Some(1),
    });
    assert_eq!(decision.effect, Effect::None);
    assert_eq!(decision.status.phase, Some(ChaosPhase::Pending));
    let (value, message) = condition(&decision.status, ChaosCondition::Injected);
    assert_eq!(value, "False");
    assert!(message.contains(&waiting), "{message}");
    assert_eq!(decision.requeue, Some(POLL));
}

#[test]
fn indices_out_of_range_make_it_invalid_naming_the_field_once() {
    let job = validated(JOB);
    let mut spec = alie();
    spec.selector.mode = byzsgd_api::chaos::SelectorMode::Indices;
    spec.selector.value = None;
    spec.selector.indices = Some(vec![1, 9]);
    let pods = running_pods(&job);
    let mut case = Case {
        spec: &spec,
        previous: None,
        target: Target::Found {
            job: &job,
            status: None,
        },
        pods: &pods,
        now: t0(),
        generation: Some(1),
    };
    let first = run(&case);
    assert_eq!(first.status.phase, Some(ChaosPhase::Invalid));
    assert_eq!(first.effect, Effect::None);
    assert_eq!(first.requeue, None);
    let (value, message) = condition(&first.status, ChaosCondition::Valid);
    assert_eq!(value, "False");
    assert!(message.contains("spec.selector.indices"), "{message}");
    assert!(
        first
            .notes
            .iter()
            .any(|n| n.warning && n.reason == "InvalidSpec")
    );

    // The same generation again: no new Warning, nothing to do.
    case.previous = Some(&first.status);
    let again = run(&case);
    assert_eq!(again.status, first.status);
    assert!(again.notes.is_empty());

    // A new generation is judged afresh (here still invalid, so one more Warning).
    case.generation = Some(2);
    let next = run(&case);
    assert_eq!(next.status.phase, Some(ChaosPhase::Invalid));
    assert_eq!(next.notes.len(), 1);
}

#[test]
fn a_job_that_does_not_allow_chaos_is_refused() {
    let job = validated(&JOB.replace("  chaos: {allowed: true}\n", ""));
    let spec = alie();
    let pods = running_pods(&job);
    let decision = run(&Case {
        spec: &spec,
        previous: None,
        target: Target::Found {
            job: &job,
            status: None,
        },
        pods: &pods,
        now: t0(),
        generation: Some(1),
    });
    assert_eq!(decision.status.phase, Some(ChaosPhase::Invalid));
    let condition = decision
        .status
        .condition(ChaosCondition::Valid)
        .expect("Valid set");
    assert_eq!(condition.reason, "ChaosNotAllowed");
    assert!(condition.message.contains("spec.chaos.allowed"));
    assert_eq!(decision.effect, Effect::None);
}

#[test]
fn a_missing_job_is_waited_for() {
    let spec = alie();
    let pods = BTreeMap::new();
    let decision = run(&Case {
        spec: &spec,
        previous: None,
        target: Target::Missing,
        pods: &pods,
        now: t0(),
        generation: Some(1),
    });
    assert_eq!(decision.status.phase, Some(ChaosPhase::Pending));
    assert_eq!(
        condition(&decision.status, ChaosCondition::Valid).0,
        "Unknown"
    );
    assert_eq!(decision.requeue, Some(POLL));
}

#[test]
fn crash_waits_for_from_step_then_deletes_the_selected_pods() {
    let job = validated(JOB);
    let mut spec = alie();
    spec.action = ChaosAction::Crash;
    let pods = running_pods(&job);
    let early = job_status(JobState::Running, 19, Some(false));
    let mut case = Case {
        spec: &spec,
        previous: None,
        target: Target::Found {
            job: &job,
            status: Some(&early),
        },
        pods: &pods,
        now: t0(),
        generation: Some(1),
    };
    let waiting = run(&case);
    assert_eq!(waiting.effect, Effect::None);
    assert_eq!(waiting.status.phase, Some(ChaosPhase::Pending));
    assert!(
        condition(&waiting.status, ChaosCondition::Injected)
            .1
            .contains("step 20")
    );

    let at_step = job_status(JobState::Running, 20, Some(false));
    case.previous = Some(&waiting.status);
    case.target = Target::Found {
        job: &job,
        status: Some(&at_step),
    };
    let crashed = run(&case);
    assert_eq!(
        crashed.effect,
        Effect::Crash {
            pods: waiting.status.selected_pods.clone()
        }
    );
    assert_eq!(crashed.status.phase, Some(ChaosPhase::Running));
}

#[test]
fn reaching_until_step_ends_it_and_the_verdict_waits_for_the_job() {
    let job = validated(JOB);
    let spec = alie();
    let pods = running_pods(&job);
    let running = job_status(JobState::Running, 30, Some(false));
    let started = run(&Case {
        spec: &spec,
        previous: None,
        target: Target::Found {
            job: &job,
            status: Some(&running),
        },
        pods: &pods,
        now: t0(),
        generation: Some(1),
    });
    // While inside the window nothing changes: the same status, no effect, no Event.
    let later = t0() + SignedDuration::from_secs(30);
    let mut case = Case {
        spec: &spec,
        previous: Some(&started.status),
        target: Target::Found {
            job: &job,
            status: Some(&running),
        },
        pods: &pods,
        now: later,
        generation: Some(1),
    };
    let steady = run(&case);
    assert_eq!(steady.status, started.status);
    assert_eq!(steady.effect, Effect::None);
    assert!(steady.notes.is_empty());

    let past = job_status(JobState::Running, 60, Some(false));
    case.target = Target::Found {
        job: &job,
        status: Some(&past),
    };
    let ended = run(&case);
    assert_eq!(ended.status.phase, Some(ChaosPhase::Ended));
    assert_eq!(ended.status.end_time.as_ref().map(|t| t.0), Some(later));
    assert_eq!(
        ended.effect,
        Effect::None,
        "the node ends a step window itself"
    );
    assert!(ended.notes.iter().any(|n| n.reason == "ChaosEnded"));

    let succeeded = job_status(JobState::Succeeded, 90, Some(true));
    case.previous = Some(&ended.status);
    case.target = Target::Found {
        job: &job,
        status: Some(&succeeded),
    };
    let judged = run(&case);
    assert_eq!(judged.status.verdict, Some(Verdict::Pass));
    assert!(
        judged
            .status
            .verdict_reason
            .as_deref()
            .is_some_and(|r| r.contains("Succeeded") && r.contains("0.0100"))
    );
    assert!(
        judged
            .notes
            .iter()
            .any(|n| n.reason == "ChaosVerdict" && !n.warning)
    );
    assert_eq!(judged.requeue, None);
}

#[test]
fn a_duration_window_is_cancelled_when_it_elapses() {
    let job = validated(JOB);
    let mut spec = alie();
    spec.window.until_step = None;
    spec.window.duration = Some(ChaosDuration(Duration::from_secs(30)));
    let pods = running_pods(&job);
    let running = job_status(JobState::Running, 30, Some(false));
    let target = Target::Found {
        job: &job,
        status: Some(&running),
    };
    let started = run(&Case {
        spec: &spec,
        previous: None,
        target,
        pods: &pods,
        now: t0(),
        generation: Some(1),
    });
    let Effect::Arm { request, .. } = &started.effect else {
        panic!("expected Arm");
    };
    assert_eq!(
        request.window.duration, None,
        "the duration is ended by DELETE"
    );
    let mut case = Case {
        spec: &spec,
        previous: Some(&started.status),
        target,
        pods: &pods,
        now: t0() + SignedDuration::from_secs(25),
        generation: Some(1),
    };
    let before = run(&case);
    assert_eq!(before.status.phase, Some(ChaosPhase::Running));
    assert_eq!(before.requeue, Some(Duration::from_secs(5)));

    case.now = t0() + SignedDuration::from_secs(30);
    let after = run(&case);
    assert_eq!(after.status.phase, Some(ChaosPhase::Ended));
    let Effect::Disarm { pods: cancelled } = &after.effect else {
        panic!("expected Disarm, got {:?}", after.effect);
    };
    let names: Vec<String> = cancelled.iter().map(|p| p.name.clone()).collect();
    assert_eq!(names, started.status.selected_pods);
}

#[test]
fn a_job_that_ends_before_the_chaos_starts_fails_the_experiment() {
    let job = validated(JOB);
    let spec = alie();
    let pods = running_pods(&job);
    let failed = job_status(JobState::Failed, 5, Some(false));
    let decision = run(&Case {
        spec: &spec,
        previous: None,
        target: Target::Found {
            job: &job,
            status: Some(&failed),
        },
        pods: &pods,
        now: t0(),
        generation: Some(1),
    });
    assert_eq!(decision.effect, Effect::None);
    assert_eq!(decision.status.phase, Some(ChaosPhase::Ended));
    assert_eq!(decision.status.verdict, Some(Verdict::Fail));
    assert_eq!(decision.status.start_time, None);
}

#[test]
fn verdict_passes_only_a_succeeded_and_converged_job() {
    let (pass, _) = verdict("j", &job_status(JobState::Succeeded, 100, Some(true)), None);
    assert_eq!(pass, Verdict::Pass);
    let (no_target, reason) = verdict(
        "j",
        &job_status(JobState::Succeeded, 100, Some(false)),
        None,
    );
    assert_eq!(no_target, Verdict::Fail);
    assert!(reason.contains("targetAccuracy"), "{reason}");
    let mut failed = job_status(JobState::Failed, 100, Some(false));
    set_condition(
        &mut failed.conditions,
        ConditionType::Failed,
        true,
        "NotConverged",
        "the servers finished below the target accuracy",
        t0(),
        None,
    );
    let (fail, reason) = verdict("j", &failed, None);
    assert_eq!(fail, Verdict::Fail);
    assert!(reason.contains("NotConverged"), "{reason}");
}

/// The steady state includes the drift bound when the job declares one: a converged job whose
/// servers ended further apart than `convergence.maxDrift` fails (the fixture's drift is 0.01).
#[test]
fn verdict_judges_the_drift_bound_when_the_job_declares_one() {
    let converged = job_status(JobState::Succeeded, 100, Some(true));
    assert_eq!(verdict("j", &converged, Some(0.05)).0, Verdict::Pass);
    let (fail, reason) = verdict("j", &converged, Some(0.001));
    assert_eq!(fail, Verdict::Fail);
    assert!(
        reason.contains("exceeds spec.convergence.maxDrift"),
        "{reason}"
    );
    let mut silent = converged;
    silent.training = None;
    let (fail, reason) = verdict("j", &silent, Some(0.05));
    assert_eq!(fail, Verdict::Fail);
    assert!(reason.contains("cannot be checked"), "{reason}");
}

#[test]
fn a_refusal_fails_the_experiment_with_the_nodes_message() {
    let status = refused(
        ByzantineChaosStatus::default(),
        "pod x refused the chaos order with 403: this job does not allow chaos",
        t0(),
        Some(1),
    );
    assert_eq!(status.phase, Some(ChaosPhase::Failed));
    let (value, message) = condition(&status, ChaosCondition::Injected);
    assert_eq!(value, "False");
    assert!(message.contains("403"));
}

#[test]
fn deleting_a_running_experiment_cancels_it_on_the_selected_pods_only() {
    let job = validated(JOB);
    let spec = alie();
    let pods = running_pods(&job);
    let running = job_status(JobState::Running, 30, Some(false));
    let started = run(&Case {
        spec: &spec,
        previous: None,
        target: Target::Found {
            job: &job,
            status: Some(&running),
        },
        pods: &pods,
        now: t0(),
        generation: Some(1),
    });
    let Effect::Disarm { pods: cancelled } = cancel(&started.status, &pods, &spec) else {
        panic!("a running experiment must be cancelled");
    };
    let names: Vec<String> = cancelled.iter().map(|p| p.name.clone()).collect();
    assert_eq!(names, started.status.selected_pods);
    assert!(
        cancelled
            .iter()
            .all(|p| p.ip == format!("10.0.0.{}", p.index))
    );

    // Nothing to cancel before it runs, after it ended, or for a crash.
    assert_eq!(
        cancel(&ByzantineChaosStatus::default(), &pods, &spec),
        Effect::None
    );
    let mut ended = started.status.clone();
    ended.phase = Some(ChaosPhase::Ended);
    assert_eq!(cancel(&ended, &pods, &spec), Effect::None);
    let mut crash = spec.clone();
    crash.action = ChaosAction::Crash;
    assert_eq!(cancel(&started.status, &pods, &crash), Effect::None);
}
