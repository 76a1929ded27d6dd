//! The chaos controller's decision, pure: from the experiment, its previous status, the target
//! job (validated, with its status) and the job's pods, decides the new status, the one effect
//! to carry out (arm the selected nodes' `/chaos`, disarm them, or delete them for `crash`),
//! when to look again and which Events to publish.
//!
//! The life of an experiment: `Pending` (waiting for the job, its pods, or for `crash` the
//! window's first step) → `Running` (the selected pods received the action) → `Ended` (the
//! window closed or the job ended) with a verdict once the job is terminal. `Invalid` (the spec
//! does not fit the job, or the job does not allow chaos) and `Failed` (a node refused the
//! action) are final. The node enforces a step window itself (`POST /chaos` carries it), so only
//! a `duration` needs a `DELETE /chaos` from here.
//!
//! Like the job's status step, nothing reads a clock: `now` is an input and lands in the status
//! only on a transition, so a reconcile that changes nothing writes an identical status.

use std::{collections::BTreeMap, time::Duration};

use byzsgd_api::{
    admin::ChaosRequest,
    chaos::{
        ByzantineChaosStatus, ChaosAction, ChaosCondition, ChaosPhase, ChaosSpec, Verdict, Window,
        select, validate,
    },
    job::{ByzSgdJobStatus, ConditionType, JobState},
};
use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::{SignedDuration, Timestamp},
};

use crate::controller::{build::labels, status::Note, validate::ValidatedJob};

/// The job an experiment names, as found.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// No job of that name in the experiment's namespace.
    Missing,
    /// The job exists but fails its own validation; the message says why.
    Invalid(&'a str),
    /// The job, validated, and its status.
    Found {
        /// The validated job (its plan sizes the selector).
        job: &'a ValidatedJob,
        /// Its status as last written by the job controller.
        status: Option<&'a ByzSgdJobStatus>,
    },
}

/// What the decision needs to know of one pod of the job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodView {
    /// The pod's IP, once it has one.
    pub ip: Option<String>,
    /// Whether its phase is Running (and it is not being deleted).
    pub running: bool,
}

/// One selected pod the effect acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPod {
    /// Pod name.
    pub name: String,
    /// The node's index within its role.
    pub index: usize,
    /// The pod's IP (for the URL template's `{podIP}`).
    pub ip: String,
}

/// The one side effect a reconcile carries out.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Effect {
    /// Nothing to do to the pods.
    #[default]
    None,
    /// `POST /chaos` with `request` to each pod.
    Arm {
        /// The selected pods.
        pods: Vec<TargetPod>,
        /// The body (boxed: an attack's parameters make it the largest variant by far).
        request: Box<ChaosRequest>,
    },
    /// `DELETE /chaos` on each pod (best effort: a pod that is gone has nothing to cancel).
    Disarm {
        /// The selected pods that still have an IP.
        pods: Vec<TargetPod>,
    },
    /// Delete each pod (`crash`); the job controller recreates them per its runPolicy.
    Crash {
        /// The selected pods' names.
        pods: Vec<String>,
    },
}

/// Inputs of [`decide`].
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The experiment's spec.
    pub spec: &'a ChaosSpec,
    /// Its `metadata.generation`.
    pub generation: Option<i64>,
    /// Its status as last written.
    pub previous: Option<&'a ByzantineChaosStatus>,
    /// The job it names.
    pub target: Target<'a>,
    /// The job's pods by name.
    pub pods: &'a BTreeMap<String, PodView>,
    /// The current time.
    pub now: Timestamp,
    /// How often to look again while something may change.
    pub poll: Duration,
}

/// What the reconciler must do after deciding.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// The new status, assuming the effect succeeds.
    pub status: ByzantineChaosStatus,
    /// The effect to carry out before writing the status.
    pub effect: Effect,
    /// When to look again, if nothing else triggers a reconcile.
    pub requeue: Option<Duration>,
    /// Events to publish on the experiment and on its job.
    pub notes: Vec<Note>,
}

/// Condition status strings.
const TRUE: &str = "True";
const FALSE: &str = "False";
const UNKNOWN: &str = "Unknown";

/// Sets condition `type_`, keeping `lastTransitionTime` unless its status changes.
fn set(
    status: &mut ByzantineChaosStatus,
    type_: ChaosCondition,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
    generation: Option<i64>,
) {
    let conditions = &mut status.conditions;
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_.as_str()) {
        if existing.status != value {
            existing.last_transition_time = Time(now);
            value.clone_into(&mut existing.status);
        }
        reason.clone_into(&mut existing.reason);
        message.clone_into(&mut existing.message);
        existing.observed_generation = generation;
    } else {
        conditions.push(Condition {
            type_: type_.as_str().to_owned(),
            status: value.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: Time(now),
            observed_generation: generation,
        });
        let order = [
            ChaosCondition::Valid,
            ChaosCondition::Injected,
            ChaosCondition::Ended,
        ];
        conditions.sort_by_key(|c| {
            order
                .iter()
                .position(|t| t.as_str() == c.type_)
                .unwrap_or(usize::MAX)
        });
    }
}

fn note(warning: bool, reason: &str, message: String) -> Note {
    Note {
        warning,
        reason: reason.to_owned(),
        message,
    }
}

/// Decides the new status, the effect and the requeue (see the module docs).
pub fn decide(observed: &Observed<'_>) -> Decision {
    let mut status = observed.previous.cloned().unwrap_or_default();
    // A new generation of an invalid experiment starts over: its spec may now fit.
    if status.phase == Some(ChaosPhase::Invalid)
        && status.observed_generation != observed.generation
    {
        status = ByzantineChaosStatus::default();
    }
    status.observed_generation = observed.generation;
    let mut decision = Decision {
        status,
        ..Decision::default()
    };
    match decision.status.phase {
        Some(ChaosPhase::Invalid | ChaosPhase::Failed) => {}
        Some(ChaosPhase::Ended) => judge(observed, &mut decision),
        Some(ChaosPhase::Running) => watch_window(observed, &mut decision),
        None | Some(ChaosPhase::Pending) => start(observed, &mut decision),
    }
    decision
}

/// Marks the experiment Invalid: a Warning, and nothing more until its spec changes.
fn invalid(observed: &Observed<'_>, decision: &mut Decision, reason: &str, message: &str) {
    let status = &mut decision.status;
    let first = status.phase != Some(ChaosPhase::Invalid);
    status.phase = Some(ChaosPhase::Invalid);
    set(
        status,
        ChaosCondition::Valid,
        FALSE,
        reason,
        message,
        observed.now,
        observed.generation,
    );
    if first {
        decision.notes.push(note(true, reason, message.to_owned()));
    }
}

/// The job's training step as the job controller last reported it (0 before any report).
fn job_step(status: Option<&ByzSgdJobStatus>) -> u64 {
    status
        .and_then(|s| s.training.as_ref())
        .map_or(0, |t| t.step)
}

fn job_terminal(status: Option<&ByzSgdJobStatus>) -> bool {
    status
        .and_then(|s| s.state)
        .is_some_and(JobState::is_terminal)
}

/// The target job and its status if the experiment may run on it; otherwise records why not
/// (Pending for a missing job, Invalid for a spec that does not fit or a job that does not
/// allow chaos) and returns `None`.
fn usable_target<'a>(
    observed: &Observed<'a>,
    decision: &mut Decision,
) -> Option<(&'a ValidatedJob, Option<&'a ByzSgdJobStatus>)> {
    let spec = observed.spec;
    let (job, job_status) = match observed.target {
        Target::Missing => {
            let status = &mut decision.status;
            status.phase = Some(ChaosPhase::Pending);
            let message = format!(
                "no ByzSGDJob `{}` in this namespace yet; create it, or fix spec.job",
                spec.job
            );
            let (now, generation) = (observed.now, observed.generation);
            set(
                status,
                ChaosCondition::Valid,
                UNKNOWN,
                "JobNotFound",
                &message,
                now,
                generation,
            );
            decision.requeue = Some(observed.poll);
            return None;
        }
        Target::Invalid(why) => {
            let message = format!("the target job `{}` is invalid: {why}", spec.job);
            invalid(observed, decision, "JobInvalid", &message);
            return None;
        }
        Target::Found { job, status } => (job, status),
    };
    if let Err(error) = validate(spec, &job.name, &job.plan) {
        invalid(observed, decision, "InvalidSpec", &error.to_string());
        return None;
    }
    if !job.plan.spec.chaos.allowed {
        let message = format!(
            "job `{}` does not allow chaos, so its nodes refuse it: create the job with \
             spec.chaos.allowed: true",
            job.name
        );
        invalid(observed, decision, "ChaosNotAllowed", &message);
        return None;
    }
    Some((job, job_status))
}

/// Why the experiment can no longer start: the job ended, or passed `untilStep`.
fn missed(spec: &ChaosSpec, job: &str, job_status: Option<&ByzSgdJobStatus>) -> Option<String> {
    let step = job_step(job_status);
    if job_terminal(job_status) {
        return Some(format!("job `{job}` ended before the chaos started"));
    }
    spec.window
        .until_step
        .filter(|&until| step >= until)
        .map(|until| {
            format!("the job passed untilStep {until} (step {step}) before the chaos started")
        })
}

/// Pending → Running (or Invalid, or Ended if the chance has passed).
fn start(observed: &Observed<'_>, decision: &mut Decision) {
    let (now, generation, spec) = (observed.now, observed.generation, observed.spec);
    let Some((job, job_status)) = usable_target(observed, decision) else {
        return;
    };
    let indices = select(spec, &job.plan);
    let names: Vec<String> = indices
        .iter()
        .map(|&index| labels::pod_name(&job.name, spec.role, index))
        .collect();
    let status = &mut decision.status;
    let message = format!("fits job `{}`, which allows chaos", job.name);
    set(
        status,
        ChaosCondition::Valid,
        TRUE,
        "Valid",
        &message,
        now,
        generation,
    );
    status.selected_pods.clone_from(&names);
    status.phase = Some(ChaosPhase::Pending);

    if let Some(why) = missed(spec, &job.name, job_status) {
        end(observed, decision, "NeverStarted", &why);
        let status = &mut decision.status;
        status.verdict = Some(Verdict::Fail);
        status.verdict_reason = Some(format!("{why}: nothing was tested"));
        decision
            .notes
            .push(note(true, "ChaosVerdict", format!("Fail: {why}")));
        return;
    }

    let step = job_step(job_status);
    let waiting: Vec<&str> = names
        .iter()
        .filter(|name| {
            observed
                .pods
                .get(*name)
                .is_none_or(|pod| !pod.running || pod.ip.is_none())
        })
        .map(String::as_str)
        .collect();
    let crash_early = matches!(spec.action, ChaosAction::Crash) && step < spec.window.from_step;
    if !waiting.is_empty() || crash_early {
        let message = if waiting.is_empty() {
            format!(
                "waiting for step {} to crash the pods (the job is at step {step})",
                spec.window.from_step
            )
        } else {
            format!("waiting for pods {} to run", waiting.join(", "))
        };
        set(
            status,
            ChaosCondition::Injected,
            FALSE,
            "Waiting",
            &message,
            now,
            generation,
        );
        decision.requeue = Some(observed.poll);
        return;
    }

    decision.effect = effect(spec, &indices, &names, observed.pods);
    status.phase = Some(ChaosPhase::Running);
    status.start_time = Some(Time(now));
    let action = spec.action.kind();
    let message = format!("{action} sent to {}", names.join(", "));
    set(
        status,
        ChaosCondition::Injected,
        TRUE,
        "Injected",
        &message,
        now,
        generation,
    );
    let window = describe_window(&spec.window);
    decision.notes.push(note(
        false,
        "ChaosStarted",
        format!("{action} on pods {} ({window})", names.join(", ")),
    ));
    decision.requeue = Some(next_look(observed, &decision.status));
}

/// What starting the experiment does to the selected pods (every one runs and has an IP).
fn effect(
    spec: &ChaosSpec,
    indices: &[usize],
    names: &[String],
    pods: &BTreeMap<String, PodView>,
) -> Effect {
    if matches!(spec.action, ChaosAction::Crash) {
        return Effect::Crash {
            pods: names.to_vec(),
        };
    }
    let targets = indices
        .iter()
        .zip(names)
        .filter_map(|(&index, name)| {
            let ip = pods.get(name)?.ip.clone()?;
            Some(TargetPod {
                name: name.clone(),
                index,
                ip,
            })
        })
        .collect();
    Effect::Arm {
        pods: targets,
        request: Box::new(ChaosRequest {
            action: spec.action.clone(),
            // The node ends a step window itself; a duration is ended here, by DELETE.
            window: Window {
                duration: None,
                ..spec.window.clone()
            },
        }),
    }
}

fn describe_window(window: &Window) -> String {
    match (window.until_step, window.duration) {
        (Some(until), _) => format!("steps {}..{until}", window.from_step),
        (None, Some(duration)) => format!("from step {} for {duration}", window.from_step),
        (None, None) => format!("from step {} to the end", window.from_step),
    }
}

/// When a duration window closes, if it has one and has started.
fn closes_at(spec: &ChaosSpec, status: &ByzantineChaosStatus) -> Option<Timestamp> {
    let duration = SignedDuration::try_from(spec.window.duration?.0).ok()?;
    status.start_time.as_ref()?.0.checked_add(duration).ok()
}

/// The poll interval, or sooner if a duration window closes before it.
fn next_look(observed: &Observed<'_>, status: &ByzantineChaosStatus) -> Duration {
    let until_close = closes_at(observed.spec, status)
        .and_then(|close| Duration::try_from(close.duration_since(observed.now)).ok());
    until_close.map_or(observed.poll, |left| left.min(observed.poll))
}

/// Sets Ended with `reason`; the verdict is the caller's.
fn end(observed: &Observed<'_>, decision: &mut Decision, reason: &str, message: &str) {
    let status = &mut decision.status;
    status.phase = Some(ChaosPhase::Ended);
    status.end_time = Some(Time(observed.now));
    set(
        status,
        ChaosCondition::Ended,
        TRUE,
        reason,
        message,
        observed.now,
        observed.generation,
    );
    decision
        .notes
        .push(note(false, "ChaosEnded", message.to_owned()));
}

/// Running → Ended when the job ends, passes untilStep, or the duration elapses.
fn watch_window(observed: &Observed<'_>, decision: &mut Decision) {
    let spec = observed.spec;
    let job_status = match observed.target {
        Target::Found { status, .. } => status,
        Target::Missing | Target::Invalid(_) => {
            let message = format!("job `{}` is gone", spec.job);
            end(observed, decision, "JobGone", &message);
            judge(observed, decision);
            return;
        }
    };
    let step = job_step(job_status);
    if job_terminal(job_status) {
        end(
            observed,
            decision,
            "JobEnded",
            &format!("job `{}` ended", spec.job),
        );
        judge(observed, decision);
        return;
    }
    if let Some(until) = spec.window.until_step.filter(|&until| step >= until) {
        let message = format!("the job reached untilStep {until} (step {step})");
        end(observed, decision, "WindowClosed", &message);
        decision.requeue = Some(observed.poll);
        return;
    }
    if closes_at(spec, &decision.status).is_some_and(|close| observed.now >= close) {
        let duration = spec
            .window
            .duration
            .map(|d| d.to_string())
            .unwrap_or_default();
        let message = format!("the duration {duration} elapsed");
        end(observed, decision, "DurationElapsed", &message);
        if !matches!(spec.action, ChaosAction::Crash) {
            decision.effect = Effect::Disarm {
                pods: selected_targets(observed, &decision.status),
            };
        }
        decision.requeue = Some(observed.poll);
        return;
    }
    decision.requeue = Some(next_look(observed, &decision.status));
}

/// The selected pods that have an IP now.
fn selected_targets(observed: &Observed<'_>, status: &ByzantineChaosStatus) -> Vec<TargetPod> {
    targets(status, observed.pods, observed.spec)
}

/// The pods in `status.selectedPods` that have an IP in `pods`, with their indices.
fn targets(
    status: &ByzantineChaosStatus,
    pods: &BTreeMap<String, PodView>,
    spec: &ChaosSpec,
) -> Vec<TargetPod> {
    let prefix = format!("{}-{}-", spec.job, spec.role);
    status
        .selected_pods
        .iter()
        .filter_map(|name| {
            let index = name.strip_prefix(&prefix)?.parse().ok()?;
            let ip = pods.get(name)?.ip.clone()?;
            Some(TargetPod {
                name: name.clone(),
                index,
                ip,
            })
        })
        .collect()
}

/// What deleting a Running experiment does: cancel its order on the selected pods that are
/// still there (nothing for `crash`, whose pods were already replaced).
pub fn cancel(
    status: &ByzantineChaosStatus,
    pods: &BTreeMap<String, PodView>,
    spec: &ChaosSpec,
) -> Effect {
    if status.phase != Some(ChaosPhase::Running) || matches!(spec.action, ChaosAction::Crash) {
        return Effect::None;
    }
    Effect::Disarm {
        pods: targets(status, pods, spec),
    }
}

/// Sets the verdict once the job is terminal (or gone); Pending until then.
fn judge(observed: &Observed<'_>, decision: &mut Decision) {
    if decision
        .status
        .verdict
        .is_some_and(|v| v != Verdict::Pending)
    {
        return;
    }
    let job = &observed.spec.job;
    let outcome = match observed.target {
        Target::Missing | Target::Invalid(_) => Some((
            Verdict::Fail,
            format!("job `{job}` was deleted before it ended"),
        )),
        Target::Found {
            job: validated,
            status,
        } if job_terminal(status) => {
            let bound = validated
                .plan
                .spec
                .convergence
                .as_ref()
                .and_then(|c| c.max_drift)
                .map(f64::from);
            status.map(|s| verdict(job, s, bound))
        }
        Target::Found { .. } => None,
    };
    let status = &mut decision.status;
    if let Some((verdict, reason)) = outcome {
        let word = if verdict == Verdict::Pass {
            "Pass"
        } else {
            "Fail"
        };
        decision.notes.push(note(
            verdict == Verdict::Fail,
            "ChaosVerdict",
            format!("{word}: {reason}"),
        ));
        status.verdict = Some(verdict);
        status.verdict_reason = Some(reason);
    } else {
        status.verdict = Some(Verdict::Pending);
        status.verdict_reason = Some(format!("job `{job}` has not ended yet"));
        decision.requeue = Some(observed.poll);
    }
}

/// The verdict on a terminal job: Pass when it Succeeded with its `Converged` condition true
/// (Litmus' "steady state held") and, when the job declares `convergence.maxDrift`, its final
/// `status.training.maxDrift` is within it; Fail otherwise. Without a bound the drift is
/// reported, not judged.
pub fn verdict(job: &str, status: &ByzSgdJobStatus, max_drift: Option<f64>) -> (Verdict, String) {
    let measured = status.training.as_ref().and_then(|t| t.max_drift);
    let drift = measured.map_or_else(String::new, |d| format!("; max drift {d:.4}"));
    let converged = status.condition(ConditionType::Converged);
    let converged_true = converged.is_some_and(|c| c.status == TRUE);
    let converged_text = converged.map_or("no Converged condition", |c| c.message.as_str());
    let drift_exceeded = match (max_drift, measured) {
        (Some(bound), Some(d)) if d > bound => Some(format!(
            "its max drift {d:.4} exceeds spec.convergence.maxDrift = {bound}"
        )),
        (Some(bound), None) => Some(format!(
            "no drift was reported, so spec.convergence.maxDrift = {bound} cannot be checked"
        )),
        _ => None,
    };
    match status.state {
        Some(JobState::Succeeded) if converged_true => match drift_exceeded {
            None => (
                Verdict::Pass,
                format!("job `{job}` Succeeded and converged ({converged_text}){drift}"),
            ),
            Some(why) => (
                Verdict::Fail,
                format!("job `{job}` converged ({converged_text}) but {why}"),
            ),
        },
        Some(JobState::Succeeded) => (
            Verdict::Fail,
            format!(
                "job `{job}` Succeeded without reaching a convergence target \
                 ({converged_text}){drift}: set spec.convergence.targetAccuracy to judge it"
            ),
        ),
        _ => {
            let failed = status
                .condition(ConditionType::Failed)
                .map_or_else(String::new, |c| format!(" ({}: {})", c.reason, c.message));
            (Verdict::Fail, format!("job `{job}` Failed{failed}{drift}"))
        }
    }
}

/// The status after a node refused the action: Failed, with the node's answer.
pub fn refused(
    mut status: ByzantineChaosStatus,
    message: &str,
    now: Timestamp,
    generation: Option<i64>,
) -> ByzantineChaosStatus {
    status.phase = Some(ChaosPhase::Failed);
    status.start_time = None;
    set(
        &mut status,
        ChaosCondition::Injected,
        FALSE,
        "Refused",
        message,
        now,
        generation,
    );
    status
}
