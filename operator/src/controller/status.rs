//! Step 4 of the pipeline, pure: from the validated job, the previous status, the observed pods
//! and the servers' reports, decides the new status and what must happen to the pods (create,
//! delete, delete the whole job). `runPolicy` is honoured here on every path: backoffLimit,
//! activeDeadlineSeconds, ttlSecondsAfterFinished, cleanPodPolicy, suspend.
//!
//! Nothing here reads a clock: `now` is an input, and it lands in the status only when a
//! condition changes, so a reconcile that changes nothing writes an identical status (no
//! reconcile loop from ever-moving timestamps).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use byzsgd_api::job::{
    ByzSgdJobStatus, CleanPodPolicy, ConditionType, JobState, ReplicaStatus, TrackedPod,
    TrainingStatus, status::median,
};
use byzsgd_core::job::Role;
use k8s_openapi::{
    api::core::v1::Pod,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::{SignedDuration, Timestamp},
};

use super::{
    build::labels,
    data::{self, DataHealth},
    observe::NodeReport,
    validate::ValidatedJob,
};

/// Why a job failed: the `reason` of its Failed condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// `runPolicy.activeDeadlineSeconds` passed.
    DeadlineExceeded,
    /// More pod recreations and container restarts than `runPolicy.backoffLimit`.
    BackoffLimitExceeded,
    /// More pods of one role failed at once than the declared f of that role: the protocol's
    /// quorum of n − f can no longer be met by the pods that are left.
    QuorumLost,
    /// The servers finished (or passed `convergence.withinSteps`) below the target accuracy.
    NotConverged,
    /// The spec fails the node's validation.
    InvalidSpec,
    /// The pods cannot get or read the data set, and no restart would change that.
    DataUnavailable,
}

impl FailureReason {
    /// The reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeadlineExceeded => "DeadlineExceeded",
            Self::BackoffLimitExceeded => "BackoffLimitExceeded",
            Self::QuorumLost => "QuorumLost",
            Self::NotConverged => "NotConverged",
            Self::InvalidSpec => "InvalidSpec",
            Self::DataUnavailable => "DataUnavailable",
        }
    }
}

/// A Kubernetes event to publish about the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// PascalCase reason.
    pub reason: String,
    /// Human-readable text.
    pub message: String,
}

/// What the reconciler must do after deciding.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// The new status.
    pub status: ByzSgdJobStatus,
    /// Pods to create (by name; `build` has their full form).
    pub create: BTreeSet<String>,
    /// Pods to delete.
    pub delete: BTreeSet<String>,
    /// Delete the job itself (TTL after finishing).
    pub delete_job: bool,
    /// When to look again, if nothing else triggers a reconcile.
    pub requeue: Option<Duration>,
    /// Events describing transitions.
    pub notes: Vec<Note>,
}

/// Inputs of [`decide`] besides the job.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The status as last written.
    pub previous: Option<&'a ByzSgdJobStatus>,
    /// The job's pods, by name.
    pub pods: &'a BTreeMap<String, Pod>,
    /// Server reports by index (only servers that answered).
    pub reports: &'a [(usize, NodeReport)],
    /// The current time.
    pub now: Timestamp,
    /// How often to poll the servers while the job runs.
    pub poll: Duration,
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn container_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Sets condition `type_` in `conditions`, keeping `lastTransitionTime` when the status does not
/// change. Returns true if the status changed (a transition).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
    generation: Option<i64>,
) -> bool {
    let status = if status { "True" } else { "False" };
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_.as_str()) {
        let changed = existing.status != status;
        if changed {
            existing.last_transition_time = Time(now);
            status.clone_into(&mut existing.status);
        }
        reason.clone_into(&mut existing.reason);
        message.clone_into(&mut existing.message);
        existing.observed_generation = generation;
        changed
    } else {
        conditions.push(Condition {
            type_: type_.as_str().to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: Time(now),
            observed_generation: generation,
        });
        // Sorting keeps the list in one order whatever order conditions were first set in.
        let order = |c: &Condition| {
            ConditionType::ALL
                .iter()
                .position(|t| t.as_str() == c.type_)
                .unwrap_or(usize::MAX)
        };
        conditions.sort_by_key(order);
        status == "True"
    }
}

/// Combines server reports into the training status: the first `quorum` reports by server
/// index (the protocol's quorum size, n_ps − f_ps), and per field their median. With at most
/// f_ps lying servers among ≥ 2·f_ps + 2 reports (n_ps ≥ 3·f_ps + 2), the median stays between
/// values reported by correct servers. `None` while fewer than `quorum` servers answer.
pub fn combine(reports: &[(usize, NodeReport)], quorum: usize) -> Option<TrainingStatus> {
    if quorum == 0 || reports.len() < quorum {
        return None;
    }
    let quorum_reports: Vec<&NodeReport> = reports.iter().take(quorum).map(|(_, r)| r).collect();
    let field =
        |read: fn(&NodeReport) -> Option<f64>| quorum_reports.iter().filter_map(move |r| read(r));
    Some(TrainingStatus {
        step: median(quorum_reports.iter().map(|r| r.step as f64)).map_or(0, |s| s.floor() as u64),
        loss: median(field(|r| r.loss)),
        accuracy: median(field(|r| r.accuracy)),
        max_drift: median(field(|r| {
            r.last_gather.as_ref().and_then(|g| g.drift_to_median)
        })),
        checkpoint_step: median(field(|r| r.checkpoint.as_ref().map(|c| c.step as f64)))
            .map(|step| step.floor() as u64),
        quorum: quorum as u32,
    })
}

/// The training status from one poll's reports: once a quorum of them say their server
/// finished, [`combine`] of those final reports only. A server that has counted its last step
/// but not yet evaluated it reports a stale accuracy; taken into the quorum, it would end the
/// job with an ACCURACY no server finished with (seen on real pods).
pub fn current_training(reports: &[(usize, NodeReport)], quorum: usize) -> Option<TrainingStatus> {
    let finished: Vec<(usize, NodeReport)> = reports
        .iter()
        .filter(|(_, report)| report.finished)
        .cloned()
        .collect();
    if finished.len() >= quorum {
        combine(&finished, quorum)
    } else {
        combine(reports, quorum)
    }
}

fn replica_status(job: &ValidatedJob, pods: &BTreeMap<String, Pod>, role: Role) -> ReplicaStatus {
    let mut status = ReplicaStatus {
        selector: labels::role_selector(&job.name, role),
        ..ReplicaStatus::default()
    };
    for index in 0..job.replicas(role) {
        let Some(pod) = pods.get(&labels::pod_name(&job.name, role, index)) else {
            continue;
        };
        match phase(pod) {
            "Succeeded" => status.succeeded += 1,
            "Failed" => status.failed += 1,
            "Running" => {
                status.running += 1;
                status.active += 1;
            }
            _ => status.active += 1,
        }
    }
    status
}

/// The status of a job whose spec fails validation.
pub fn invalid(
    previous: Option<&ByzSgdJobStatus>,
    generation: Option<i64>,
    message: &str,
    now: Timestamp,
) -> (ByzSgdJobStatus, bool) {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    let changed = set_condition(
        &mut status.conditions,
        ConditionType::Failed,
        true,
        FailureReason::InvalidSpec.as_str(),
        message,
        now,
        generation,
    );
    status.state = Some(JobState::Failed);
    if status.completion_time.is_none() {
        status.completion_time = Some(Time(now));
    }
    (status, changed)
}

/// Decides the new status and the pod operations (see the module docs).
#[allow(clippy::too_many_lines)] // One linear walk through runPolicy reads best in one place.
pub fn decide(job: &ValidatedJob, observed: &Observed<'_>) -> Decision {
    let now = observed.now;
    let generation = job.generation;
    let mut status = observed.previous.cloned().unwrap_or_default();
    let mut decision = Decision::default();
    status.observed_generation = generation;
    status.servers = Some(format!(
        "{}/{}",
        job.plan.byzantine_servers, job.plan.servers
    ));
    status.workers = Some(format!(
        "{}/{}",
        job.plan.byzantine_workers, job.plan.workers
    ));
    for role in [Role::Server, Role::Worker] {
        status
            .replica_statuses
            .insert(role.to_string(), replica_status(job, observed.pods, role));
    }
    let pods = observed.pods;
    let mut notes: Vec<Note> = Vec::new();
    let mut note = |warning: bool, reason: &str, message: String| {
        notes.push(Note {
            warning,
            reason: reason.to_owned(),
            message,
        });
    };

    // Static facts of the spec: resilience and injection.
    let (inj_ps, inj_w) = (job.injected(Role::Server), job.injected(Role::Worker));
    let within = inj_ps <= job.plan.byzantine_servers && inj_w <= job.plan.byzantine_workers;
    set_condition(
        &mut status.conditions,
        ConditionType::ResilienceBoundSatisfied,
        within,
        if within {
            "WithinDeclaredBounds"
        } else {
            "MoreByzantineThanDeclared"
        },
        &format!(
            "injected {inj_ps} of declared f_ps = {} servers and {inj_w} of declared f_w = {} workers",
            job.plan.byzantine_servers, job.plan.byzantine_workers
        ),
        now,
        generation,
    );
    let injected: Vec<String> = [Role::Server, Role::Worker]
        .into_iter()
        .flat_map(|role| (0..job.replicas(role)).map(move |i| (role, i)))
        .filter_map(|(role, i)| {
            job.attack(role, i)
                .map(|a| format!("{}={a}", labels::pod_name(&job.name, role, i)))
        })
        .collect();
    set_condition(
        &mut status.conditions,
        ConditionType::ByzantineInjected,
        !injected.is_empty(),
        if injected.is_empty() {
            "NoInjection"
        } else {
            "AttacksInjected"
        },
        &if injected.is_empty() {
            "every node follows the protocol".to_owned()
        } else {
            injected.join(", ")
        },
        now,
        generation,
    );

    let all_names: Vec<(Role, usize, String)> = [Role::Server, Role::Worker]
        .into_iter()
        .flat_map(|role| {
            (0..job.replicas(role)).map(move |i| (role, i, labels::pod_name(&job.name, role, i)))
        })
        .collect();

    // Already finished: only clean-up and TTL remain.
    if let Some(state) = status.state.filter(|s| s.is_terminal()) {
        clean_pods(job.run_policy.clean_pod_policy, pods, &mut decision.delete);
        ttl(job, &status, now, &mut decision);
        status.state = Some(state);
        decision.status = status;
        decision.notes = notes;
        return decision;
    }

    // Suspended: delete every pod, keep the status; the deadline restarts on resume.
    if job.run_policy.suspend {
        decision.delete.extend(pods.keys().cloned());
        status.tracked_pods.clear();
        status.start_time = None;
        if set_condition(
            &mut status.conditions,
            ConditionType::Suspended,
            true,
            "Suspended",
            "runPolicy.suspend is true: pods deleted, status kept",
            now,
            generation,
        ) {
            note(
                false,
                "Suspended",
                "runPolicy.suspend is true: deleting the pods".to_owned(),
            );
        }
        set_condition(
            &mut status.conditions,
            ConditionType::Running,
            false,
            "Suspended",
            "the job is suspended",
            now,
            generation,
        );
        set_condition(
            &mut status.conditions,
            ConditionType::Restarting,
            false,
            "Suspended",
            "the job is suspended",
            now,
            generation,
        );
        status.state = Some(JobState::Suspended);
        decision.status = status;
        decision.notes = notes;
        return decision;
    }
    if status.is_true(ConditionType::Suspended) {
        set_condition(
            &mut status.conditions,
            ConditionType::Suspended,
            false,
            "Resumed",
            "runPolicy.suspend is false: pods recreated",
            now,
            generation,
        );
        note(
            false,
            "Resumed",
            "runPolicy.suspend is false: recreating the pods".to_owned(),
        );
    }
    let start = status.start_time.get_or_insert(Time(now)).0;

    // Backoff accounting: every recreation and every container restart counts once, across
    // operator restarts, because what was counted is in the status.
    let mut restarted = false;
    let mut failed = BTreeMap::<Role, usize>::new();
    for (role, _, name) in &all_names {
        let pod = pods.get(name);
        let tracked = status.tracked_pods.get(name).cloned();
        match (pod, tracked) {
            (Some(pod), tracked) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let restarts = container_restarts(pod);
                let counted = match &tracked {
                    Some(t) if t.uid == uid => t.container_restarts,
                    // A new incarnation under a known name is a recreation.
                    Some(_) => {
                        status.restarts += 1;
                        restarted = true;
                        0
                    }
                    None => 0,
                };
                if restarts > counted {
                    status.restarts += restarts - counted;
                    restarted = true;
                }
                status.tracked_pods.insert(
                    name.clone(),
                    TrackedPod {
                        uid,
                        container_restarts: restarts.max(counted),
                    },
                );
                if phase(pod) == "Failed" {
                    *failed.entry(*role).or_default() += 1;
                    if !terminating(pod) {
                        decision.delete.insert(name.clone());
                    }
                }
            }
            (None, Some(_)) => {
                // The pod is gone (deleted, evicted, lost): recreating it is a retry.
                status.restarts += 1;
                status.tracked_pods.remove(name);
                restarted = true;
                decision.create.insert(name.clone());
            }
            (None, None) => {
                decision.create.insert(name.clone());
            }
        }
    }
    if restarted {
        note(
            true,
            "Restarting",
            format!(
                "pods were recreated or restarted: {} so far",
                status.restarts
            ),
        );
    }

    // The data set: a problem is a condition (and an event when it appears); one that no
    // restart fixes fails the job below.
    let data = job.data.as_ref().map_or(DataHealth::Unknown, |source| {
        data::diagnose(source, pods.values())
    });
    if let Some(source) = &job.data {
        let (available, reason, message) = match &data {
            DataHealth::Loaded => (
                true,
                "DataLoaded",
                format!("the pods read the {}", data::describe(source)),
            ),
            DataHealth::Unknown => (
                false,
                "Waiting",
                format!("no node has started on the {} yet", data::describe(source)),
            ),
            DataHealth::Waiting(problem) | DataHealth::Broken(problem) => {
                (false, problem.reason, problem.message.clone())
            }
        };
        let was_problem = status
            .condition(ConditionType::DataAvailable)
            .is_some_and(|c| c.reason == reason);
        set_condition(
            &mut status.conditions,
            ConditionType::DataAvailable,
            available,
            reason,
            &message,
            now,
            generation,
        );
        if let (DataHealth::Waiting(_), false) = (&data, was_problem) {
            note(true, reason, message);
        }
    }

    // Training progress from the servers.
    let quorum = job.plan.server_quorum;
    if let Some(training) = current_training(observed.reports, quorum) {
        status.training = Some(training);
    }
    let target = job.plan.spec.convergence.as_ref();
    let accuracy = status.training.as_ref().and_then(|t| t.accuracy);
    let converged = match (target, accuracy) {
        (Some(target), Some(accuracy)) => accuracy >= f64::from(target.target_accuracy),
        _ => false,
    };
    set_condition(
        &mut status.conditions,
        ConditionType::Converged,
        converged,
        match (target, converged) {
            (None, _) => "NoTarget",
            (Some(_), true) => "TargetReached",
            (Some(_), false) => "BelowTarget",
        },
        &match (target, accuracy) {
            (None, _) => "the job has no convergence target".to_owned(),
            (Some(t), Some(a)) => format!("quorum accuracy {a:.4}, target {}", t.target_accuracy),
            (Some(t), None) => format!("no accuracy reported yet, target {}", t.target_accuracy),
        },
        now,
        generation,
    );
    // A server is done when its pod Succeeded (the node exits 0 after its last step) or when
    // it says so in its /status (it keeps serving it a while after its last step, see
    // `pod::NODE_LINGER_SECONDS`).
    let finished_servers = (0..job.plan.servers)
        .filter(|&i| {
            let exited = pods
                .get(&labels::pod_name(&job.name, Role::Server, i))
                .is_some_and(|p| phase(p) == "Succeeded");
            exited
                || observed
                    .reports
                    .iter()
                    .any(|(index, report)| *index == i && report.finished)
        })
        .count();
    let steps_done = finished_servers >= quorum;
    let past_window = match (target, status.training.as_ref()) {
        (Some(t), Some(training)) => {
            let within = t.within_steps.unwrap_or(job.plan.spec.training.steps);
            training.step >= within.saturating_add(job.plan.spec.training.evaluate_every)
        }
        _ => false,
    };

    // Terminal checks, most specific first.
    let limit = job.run_policy.backoff_limit;
    let deadline = job
        .run_policy
        .active_deadline_seconds
        .map(|s| start + SignedDuration::from_secs(s));
    let lost = [Role::Server, Role::Worker]
        .into_iter()
        .find(|role| failed.get(role).copied().unwrap_or(0) > job.byzantine(*role));
    let outcome: Option<(bool, &str, String)> = if let DataHealth::Broken(problem) = &data {
        Some((
            false,
            FailureReason::DataUnavailable.as_str(),
            problem.message.clone(),
        ))
    } else if let Some(limit) = limit.filter(|l| status.restarts > *l) {
        Some((
            false,
            FailureReason::BackoffLimitExceeded.as_str(),
            format!(
                "{} pod recreations and container restarts exceed runPolicy.backoffLimit = {limit}",
                status.restarts
            ),
        ))
    } else if let Some(role) = lost {
        Some((
            false,
            FailureReason::QuorumLost.as_str(),
            format!(
                "{} {role} pods failed at once but the job tolerates only f = {}",
                failed.get(&role).copied().unwrap_or(0),
                job.byzantine(role)
            ),
        ))
    } else if let Some(deadline) = deadline.filter(|d| now >= *d) {
        Some((
            false,
            FailureReason::DeadlineExceeded.as_str(),
            format!(
                "runPolicy.activeDeadlineSeconds = {} passed at {deadline}",
                job.run_policy.active_deadline_seconds.unwrap_or_default()
            ),
        ))
    } else if converged && steps_done {
        // The job ends when its servers ran their steps, as `byzsgd-node local` does: reaching
        // the target early sets Converged, but the status keeps following the training so
        // that STEP and ACCURACY end at the servers' final values.
        Some((
            true,
            "TargetReached",
            format!(
                "a quorum of {quorum} servers reached accuracy {:.4}",
                accuracy.unwrap_or_default()
            ),
        ))
    } else if target.is_some() && (steps_done || (past_window && !converged)) {
        Some((
            false,
            FailureReason::NotConverged.as_str(),
            format!(
                "the servers finished below the target accuracy (quorum accuracy {})",
                accuracy.map_or_else(|| "unknown".to_owned(), |a| format!("{a:.4}"))
            ),
        ))
    } else if target.is_none() && steps_done {
        Some((
            true,
            "StepsCompleted",
            format!("{finished_servers} servers ran all their steps"),
        ))
    } else {
        None
    };

    if let Some((succeeded, reason, message)) = outcome {
        let (type_, state) = if succeeded {
            (ConditionType::Succeeded, JobState::Succeeded)
        } else {
            (ConditionType::Failed, JobState::Failed)
        };
        set_condition(
            &mut status.conditions,
            type_,
            true,
            reason,
            &message,
            now,
            generation,
        );
        set_condition(
            &mut status.conditions,
            ConditionType::Running,
            false,
            reason,
            "the job finished",
            now,
            generation,
        );
        set_condition(
            &mut status.conditions,
            ConditionType::Restarting,
            false,
            reason,
            "the job finished",
            now,
            generation,
        );
        note(
            !succeeded,
            if succeeded { "Succeeded" } else { "Failed" },
            format!("{reason}: {message}"),
        );
        status.state = Some(state);
        status.completion_time = Some(Time(now));
        decision.create.clear();
        // Failed pods were only to be deleted for a retry; now cleanPodPolicy alone decides.
        decision.delete.clear();
        clean_pods(job.run_policy.clean_pod_policy, pods, &mut decision.delete);
        if let DataHealth::Broken(_) = &data {
            // Restarts cannot fix unreadable data, so stop them: every unfinished pod goes,
            // whatever cleanPodPolicy says (a kept pod would restart forever); the Failed
            // condition keeps the node's own message.
            decision.delete.extend(
                pods.iter()
                    .filter(|(_, pod)| phase(pod) != "Succeeded" && !terminating(pod))
                    .map(|(name, _)| name.clone()),
            );
        }
        ttl(job, &status, now, &mut decision);
        decision.status = status;
        decision.notes = notes;
        return decision;
    }

    // Still running.
    let created = set_condition(
        &mut status.conditions,
        ConditionType::Created,
        true,
        "PodsCreated",
        "service, config map and pods were created",
        now,
        generation,
    );
    if created {
        note(
            false,
            "Created",
            format!(
                "created {} server and {} worker pods",
                job.plan.servers, job.plan.workers
            ),
        );
    }
    let all_running = all_names.iter().all(|(_, _, name)| {
        pods.get(name)
            .is_some_and(|p| phase(p) == "Running" && !terminating(p))
    });
    let was_restarting = status.is_true(ConditionType::Restarting);
    let restarting = restarted || (was_restarting && !all_running);
    set_condition(
        &mut status.conditions,
        ConditionType::Restarting,
        restarting,
        if restarting {
            "PodsRestarting"
        } else {
            "NoRestart"
        },
        &format!(
            "{} pod recreations and container restarts so far",
            status.restarts
        ),
        now,
        generation,
    );
    if set_condition(
        &mut status.conditions,
        ConditionType::Running,
        all_running,
        if all_running {
            "AllPodsRunning"
        } else {
            "PodsNotRunning"
        },
        if all_running {
            "every server and worker pod runs"
        } else {
            "some pods do not run yet"
        },
        now,
        generation,
    ) && all_running
    {
        note(
            false,
            "Running",
            "every server and worker pod runs".to_owned(),
        );
    }
    status.state = Some(if restarting {
        JobState::Restarting
    } else if all_running {
        JobState::Running
    } else {
        JobState::Created
    });
    let mut requeue = observed.poll;
    if let Some(deadline) = deadline {
        let left = Duration::try_from(deadline.duration_since(now)).unwrap_or_default();
        requeue = requeue.min(left.max(Duration::from_millis(100)));
    }
    decision.requeue = Some(requeue);
    decision.status = status;
    decision.notes = notes;
    decision
}

/// Adds the pods `policy` deletes at the end of a job.
fn clean_pods(policy: CleanPodPolicy, pods: &BTreeMap<String, Pod>, delete: &mut BTreeSet<String>) {
    for (name, pod) in pods {
        let remove = match policy {
            CleanPodPolicy::None => false,
            CleanPodPolicy::All => true,
            CleanPodPolicy::Running => !matches!(phase(pod), "Succeeded" | "Failed"),
        };
        if remove && !terminating(pod) {
            delete.insert(name.clone());
        }
    }
}

/// Deletes the job once its TTL after finishing passed, or asks to look again then.
fn ttl(job: &ValidatedJob, status: &ByzSgdJobStatus, now: Timestamp, decision: &mut Decision) {
    let (Some(ttl), Some(done)) = (
        job.run_policy.ttl_seconds_after_finished,
        &status.completion_time,
    ) else {
        return;
    };
    let expiry = done.0 + SignedDuration::from_secs(ttl);
    if now >= expiry {
        decision.delete_job = true;
    } else {
        let left = Duration::try_from(expiry.duration_since(now)).unwrap_or_default();
        decision.requeue = Some(left.max(Duration::from_millis(100)));
    }
}
