//! Checks a [`ChaosSpec`] against the job it targets and resolves which nodes it hits.
//!
//! Every problem is reported at once, each naming its field path and the fix, as for jobs
//! (`crate::validate`). The node choice is a pure function of the spec, the job's size and
//! the seed, so the operator, the local runner and a test all hit the same nodes.

use std::{collections::BTreeSet, fmt};

use byzsgd_core::{
    attack::{
        AttackError, AttackParams, ServerAttack, ServerAttackKind, WorkerAttack, WorkerAttackKind,
    },
    job::{Behaviour, Plan, Role},
    protocol::NodeId,
};
use rand::{SeedableRng, rngs::StdRng};

use super::spec::{ChaosAction, ChaosSpec, SelectorMode};
use crate::validate::SpecProblem;

/// All problems found in a chaos spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidChaos {
    /// The problems, in field order.
    pub problems: Vec<SpecProblem>,
}

impl fmt::Display for InvalidChaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid ByzantineChaos")?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// Why an attack cannot be switched on at run time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuntimeAttackError {
    /// The name or the parameters are wrong for the role.
    #[error(transparent)]
    Attack(#[from] AttackError),
    /// `label-flip` changes the data a worker trains on, which is fixed when it starts.
    #[error(
        "attack `label-flip` acts on the training data and cannot be switched on at run time: \
         declare it in the job's `spec.inject` instead"
    )]
    LabelFlip,
}

/// Resolves attack `name` with `params` for a node of `role` in a job of `replicas` nodes of
/// that role, `byzantine` of them declared Byzantine.
pub fn runtime_attack(
    role: Role,
    name: &str,
    params: AttackParams,
    replicas: usize,
    byzantine: usize,
) -> Result<Behaviour, RuntimeAttackError> {
    match role {
        Role::Server => {
            let attack = ServerAttack {
                kind: name.parse::<ServerAttackKind>()?,
                params,
            };
            attack.validate()?;
            Ok(Behaviour::Server(attack))
        }
        Role::Worker => {
            let kind = name.parse::<WorkerAttackKind>()?;
            if kind == WorkerAttackKind::LabelFlip {
                return Err(RuntimeAttackError::LabelFlip);
            }
            let attack = WorkerAttack { kind, params };
            attack.validate(replicas, byzantine)?;
            Ok(Behaviour::Worker(attack))
        }
    }
}

/// Problems collected while validating.
#[derive(Debug, Default)]
struct Problems(Vec<SpecProblem>);

impl Problems {
    fn push(&mut self, field: &str, message: String, fix: impl Into<String>) {
        self.0.push(SpecProblem {
            field: field.to_owned(),
            message,
            fix: fix.into(),
        });
    }
}

/// Checks `spec` against the job named `job` with plan `plan`: the job name, the selector's
/// count and indices, the action (attack names and parameters valid for the role, peers that
/// exist) and the window.
pub fn validate(spec: &ChaosSpec, job: &str, plan: &Plan) -> Result<(), InvalidChaos> {
    let mut problems = Problems::default();
    if spec.job != job {
        problems.push(
            "spec.job",
            format!("names job `{}`, but the job is `{job}`", spec.job),
            format!("set job: {job}"),
        );
    }
    let (replicas, byzantine) = role_size(plan, spec.role);
    check_selector(spec, replicas, &mut problems);
    check_action(spec, plan, replicas, byzantine, &mut problems);
    check_window(spec, plan.spec.training.steps, &mut problems);
    if problems.0.is_empty() {
        Ok(())
    } else {
        Err(InvalidChaos {
            problems: problems.0,
        })
    }
}

/// n and declared f of a role.
fn role_size(plan: &Plan, role: Role) -> (usize, usize) {
    match role {
        Role::Server => (plan.servers, plan.byzantine_servers),
        Role::Worker => (plan.workers, plan.byzantine_workers),
    }
}

fn check_selector(spec: &ChaosSpec, replicas: usize, problems: &mut Problems) {
    let selector = &spec.selector;
    let mode = selector.mode.as_str();
    let wants_value = matches!(
        selector.mode,
        SelectorMode::Fixed | SelectorMode::FixedPercent
    );
    match (wants_value, selector.value) {
        (true, None) => problems.push(
            "spec.selector.value",
            format!("mode `{mode}` needs a value"),
            if selector.mode == SelectorMode::Fixed {
                "set value to the number of nodes to hit"
            } else {
                "set value to the percentage (0–100) of nodes to hit"
            },
        ),
        (false, Some(_)) => problems.push(
            "spec.selector.value",
            format!("mode `{mode}` takes no value"),
            "remove value, or use mode fixed or fixed-percent",
        ),
        _ => {}
    }
    if let Some(value) = selector.value {
        let too_many = match selector.mode {
            SelectorMode::Fixed => (value == 0 || value > replicas as u64)
                .then(|| format!("the job has {replicas} {}s", spec.role)),
            SelectorMode::FixedPercent => (value > 100).then(|| "it is a percentage".to_owned()),
            _ => None,
        };
        if let Some(why) = too_many {
            problems.push(
                "spec.selector.value",
                format!("{value} is out of range: {why}"),
                match selector.mode {
                    SelectorMode::Fixed => format!("use a value in 1..={replicas}"),
                    _ => "use a value in 0..=100".to_owned(),
                },
            );
        }
    }
    match (selector.mode == SelectorMode::Indices, &selector.indices) {
        (true, None) => problems.push(
            "spec.selector.indices",
            "mode `indices` needs indices".into(),
            format!("list node indices in 0..{replicas}, e.g. indices: [0]"),
        ),
        (false, Some(_)) => problems.push(
            "spec.selector.indices",
            format!("mode `{mode}` takes no indices"),
            "remove indices, or use mode indices",
        ),
        (true, Some(indices)) => {
            let unique: BTreeSet<_> = indices.iter().collect();
            if indices.is_empty() {
                problems.push(
                    "spec.selector.indices",
                    "is empty: the chaos would hit nothing".into(),
                    "list at least one index",
                );
            } else if let Some(bad) = indices.iter().find(|&&index| index >= replicas) {
                problems.push(
                    "spec.selector.indices",
                    format!("index {bad} is out of range for {replicas} {}s", spec.role),
                    format!("use indices in 0..{replicas}"),
                );
            } else if unique.len() != indices.len() {
                problems.push(
                    "spec.selector.indices",
                    "lists an index twice".into(),
                    "list each index once",
                );
            }
        }
        (false, None) => {}
    }
}

fn check_action(
    spec: &ChaosSpec,
    plan: &Plan,
    replicas: usize,
    byzantine: usize,
    problems: &mut Problems,
) {
    match &spec.action {
        ChaosAction::Attack { name, params } => {
            if let Err(error) = runtime_attack(spec.role, name, *params, replicas, byzantine) {
                let field = match error {
                    RuntimeAttackError::Attack(
                        AttackError::UnusedParam { .. } | AttackError::InvalidParam { .. },
                    ) => "spec.action.params",
                    _ => "spec.action.name",
                };
                problems.push(
                    field,
                    error.to_string(),
                    format!(
                        "name a {} attack, with only the parameters it reads",
                        spec.role
                    ),
                );
            }
        }
        ChaosAction::Delay { latency, jitter } => {
            if latency.0.is_zero() && jitter.0.is_zero() {
                problems.push(
                    "spec.action.latency",
                    "latency and jitter are both 0: the delay would do nothing".into(),
                    "set latency, e.g. latency: 50ms",
                );
            }
        }
        ChaosAction::Partition { peers } => {
            if peers.is_empty() {
                problems.push(
                    "spec.action.peers",
                    "is empty: the partition would cut nothing".into(),
                    "list peers such as server-1 or worker-3",
                );
            }
            for (position, peer) in peers.iter().enumerate() {
                let exists = NodeId::parse(peer)
                    .is_some_and(|node| node.index < role_size(plan, node.role).0);
                if !exists {
                    problems.push(
                        &format!("spec.action.peers[{position}]"),
                        format!("`{peer}` is not a node of this job"),
                        format!(
                            "name a node as server-I (I < {}) or worker-I (I < {})",
                            plan.servers, plan.workers
                        ),
                    );
                }
            }
        }
        ChaosAction::Flood { target, .. } => {
            let exists =
                NodeId::parse(target).is_some_and(|node| node.index < role_size(plan, node.role).0);
            if !exists {
                problems.push(
                    "spec.action.target",
                    format!("`{target}` is not a node of this job"),
                    format!(
                        "name a node as server-I (I < {}) or worker-I (I < {})",
                        plan.servers, plan.workers
                    ),
                );
            }
        }
        ChaosAction::Crash | ChaosAction::Silence => {}
    }
}

fn check_window(spec: &ChaosSpec, steps: u64, problems: &mut Problems) {
    let window = &spec.window;
    if window.from_step >= steps {
        problems.push(
            "spec.window.fromStep",
            format!(
                "step {} is past the job's last step ({})",
                window.from_step,
                steps.saturating_sub(1)
            ),
            format!("use a fromStep below {steps}"),
        );
    }
    if let Some(until) = window.until_step
        && until <= window.from_step
    {
        problems.push(
            "spec.window.untilStep",
            format!(
                "{until} is not after fromStep {}: the window is empty",
                window.from_step
            ),
            "set untilStep above fromStep, or leave it out to run to the end",
        );
    }
    if window.until_step.is_some() && window.duration.is_some() {
        problems.push(
            "spec.window.duration",
            "is given together with untilStep".into(),
            "end the window either by step (untilStep) or by time (duration), not both",
        );
    }
    if window.duration.is_some_and(|duration| duration.0.is_zero()) {
        problems.push(
            "spec.window.duration",
            "is 0: the window is empty".into(),
            "set a positive duration such as 30s",
        );
    }
}

/// The indices of the role's nodes that `spec` hits, in increasing order. Deterministic: the
/// seeded modes draw with `spec.seed` (or the job's `training.seed`). Out-of-range counts and
/// indices are clamped or dropped, so call [`validate`] first to report them.
pub fn select(spec: &ChaosSpec, plan: &Plan) -> Vec<usize> {
    let (replicas, _) = role_size(plan, spec.role);
    let selector = &spec.selector;
    let value = selector
        .value
        .map_or(0, |value| usize::try_from(value).unwrap_or(usize::MAX));
    let count = match selector.mode {
        SelectorMode::All => return (0..replicas).collect(),
        SelectorMode::Indices => {
            let chosen: BTreeSet<usize> = selector
                .indices
                .iter()
                .flatten()
                .copied()
                .filter(|&index| index < replicas)
                .collect();
            return chosen.into_iter().collect();
        }
        SelectorMode::One => 1,
        SelectorMode::Fixed => value,
        SelectorMode::FixedPercent => replicas * value.min(100) / 100,
    }
    .min(replicas);
    let seed = spec.seed.unwrap_or(plan.spec.training.seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut chosen = rand::seq::index::sample(&mut rng, replicas, count).into_vec();
    chosen.sort_unstable();
    chosen
}
