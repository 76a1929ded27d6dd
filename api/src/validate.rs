//! Checks a [`JobSpec`] against the paper's bounds and the rules' own bounds, and resolves it
//! into the core's [`Plan`]: quorums, the gather period T, who is Byzantine with which attack.
//! After this step nothing reads the raw spec again (the zookeeper-operator "validate" step).
//! The bounds themselves are the core's ([`Rule::min_inputs`]); this module names the field,
//! the problem and the fix.
//!
//! Every problem is reported at once, each naming the field (as a path such as
//! `spec.servers.replicas`) and the fix.

use std::fmt;

use byzsgd_core::{
    attack::{ServerAttack, ServerAttackKind, WorkerAttack, WorkerAttackKind},
    gar::{GarConfig, Rule},
    job::{Behaviour, GatherEvery, Injection, JobSpec, Plan, Role, auto_gather_every},
};

/// One problem in a job spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// Path of the offending field, e.g. `spec.servers.replicas`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.field, self.message, self.fix)
    }
}

/// All problems found in a job spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSpec {
    /// The problems, in field order.
    pub problems: Vec<SpecProblem>,
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid job spec")?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// Problems collected while validating.
#[derive(Debug, Default)]
struct Problems(Vec<SpecProblem>);

impl Problems {
    fn push(&mut self, field: &str, message: String, fix: String) {
        self.0.push(SpecProblem {
            field: field.to_owned(),
            message,
            fix,
        });
    }
}

/// Validates a spec and resolves it into a [`Plan`].
pub fn validate(spec: &JobSpec) -> Result<Plan, InvalidSpec> {
    let mut problems = Problems::default();
    check_training(spec, &mut problems);
    check_bounds(spec, &mut problems);

    let (n_ps, f_ps) = (spec.servers.replicas, spec.servers.byzantine);
    let (n_w, f_w) = (spec.workers.replicas, spec.workers.byzantine);
    let server_quorum = n_ps.saturating_sub(f_ps);
    let worker_quorum = n_w.saturating_sub(f_w);

    // Each rule's own bound applies to what it receives: a quorum of n − f inputs with f of them
    // possibly Byzantine (PAPER.md §11.1).
    let mut gradient_rule = GarConfig::new(spec.aggregation.gradients, f_w);
    gradient_rule
        .pre
        .clone_from(&spec.aggregation.pre_aggregators);
    let model_rule = GarConfig::new(spec.aggregation.models, f_ps);
    check_rule_bound(
        &mut problems,
        "spec.aggregation.gradients",
        spec.aggregation.gradients,
        worker_quorum,
        f_w,
        "workers",
    );
    check_rule_bound(
        &mut problems,
        "spec.aggregation.models",
        spec.aggregation.models,
        server_quorum,
        f_ps,
        "servers",
    );

    let (server_behaviours, worker_behaviours) = resolve_injections(spec, &mut problems);

    if let Some(convergence) = &spec.convergence
        && !(0.0..=1.0).contains(&convergence.target_accuracy)
    {
        problems.push(
            "spec.convergence.targetAccuracy",
            format!("must be in [0, 1], got {}", convergence.target_accuracy),
            "write accuracy as a fraction, e.g. 0.8 for 80 %".into(),
        );
    }

    if let Some(bound) = spec.convergence.as_ref().and_then(|c| c.max_drift)
        && !(bound.is_finite() && bound > 0.0)
    {
        problems.push(
            "spec.convergence.maxDrift",
            format!("must be a positive distance, got {bound}"),
            "write the largest acceptable distance between models, e.g. 1.0, or leave it out"
                .into(),
        );
    }

    let training = &spec.training;
    let gather_every = match spec.servers.gather_every {
        GatherEvery::Steps(steps) => steps,
        GatherEvery::Auto => auto_gather_every(training.lipschitz, training.learning_rate),
    };

    if !problems.0.is_empty() {
        return Err(InvalidSpec {
            problems: problems.0,
        });
    }
    Ok(Plan {
        spec: spec.clone(),
        servers: n_ps,
        byzantine_servers: f_ps,
        workers: n_w,
        byzantine_workers: f_w,
        server_quorum,
        worker_quorum,
        gather_every,
        gradient_rule,
        model_rule,
        server_behaviours,
        worker_behaviours,
    })
}

/// Hyper-parameters: positive, finite, in range.
fn check_training(spec: &JobSpec, problems: &mut Problems) {
    let training = &spec.training;
    if training.steps == 0 {
        problems.push(
            "spec.training.steps",
            "must be at least 1".into(),
            "set a positive number of steps".into(),
        );
    }
    if training.batch_size == 0 {
        problems.push(
            "spec.training.batchSize",
            "must be at least 1".into(),
            "set e.g. batchSize: 32".into(),
        );
    }
    if !(training.learning_rate.is_finite() && training.learning_rate > 0.0) {
        problems.push(
            "spec.training.learningRate",
            format!("must be a positive number, got {}", training.learning_rate),
            "set e.g. learningRate: 0.05".into(),
        );
    }
    if !(training.momentum.is_finite() && (0.0..1.0).contains(&training.momentum)) {
        problems.push(
            "spec.training.momentum",
            format!("must be in [0, 1), got {}", training.momentum),
            "set momentum: 0 for plain SGD, or e.g. 0.9".into(),
        );
    }
    if !(training.weight_decay.is_finite() && training.weight_decay >= 0.0) {
        problems.push(
            "spec.training.weightDecay",
            format!("must be ≥ 0, got {}", training.weight_decay),
            "set weightDecay: 0 or a small positive value".into(),
        );
    }
    if !(training.lipschitz.is_finite() && training.lipschitz > 0.0) {
        problems.push(
            "spec.training.lipschitz",
            format!("must be a positive number, got {}", training.lipschitz),
            "leave it out (defaults to 1) or set the gradient's Lipschitz constant".into(),
        );
    }
    if training.evaluate_every == 0 {
        problems.push(
            "spec.training.evaluateEvery",
            "must be at least 1".into(),
            "set e.g. evaluateEvery: 100".into(),
        );
    }
}

/// The paper's resilience bounds (PAPER.md §2): n_ps > 3·f_ps + 1 and n_w > 3·f_w.
fn check_bounds(spec: &JobSpec, problems: &mut Problems) {
    let (n_ps, f_ps) = (spec.servers.replicas, spec.servers.byzantine);
    let (n_w, f_w) = (spec.workers.replicas, spec.workers.byzantine);
    // The server bound protects DMC against Byzantine servers; with f_ps = 0 there is nothing
    // to contract against and one server (vanilla SGD, the paper's baseline) is legitimate.
    if f_ps > 0 && n_ps < 3 * f_ps + 2 {
        problems.push(
            "spec.servers.replicas",
            format!(
                "n_ps = {n_ps} servers cannot tolerate f_ps = {f_ps} Byzantine servers: ByzSGD needs n_ps ≥ 3·f_ps + 2 = {}",
                3 * f_ps + 2
            ),
            format!("use at least {} servers or lower spec.servers.byzantine", 3 * f_ps + 2),
        );
    }
    if n_w < 3 * f_w + 1 {
        problems.push(
            "spec.workers.replicas",
            format!(
                "n_w = {n_w} workers cannot tolerate f_w = {f_w} Byzantine workers: ByzSGD needs n_w ≥ 3·f_w + 1 = {}",
                3 * f_w + 1
            ),
            format!("use at least {} workers or lower spec.workers.byzantine", 3 * f_w + 1),
        );
    }
    if n_ps == 0 {
        problems.push(
            "spec.servers.replicas",
            "must be at least 1".into(),
            "set replicas: 1 or more".into(),
        );
    }
    if n_w == 0 {
        problems.push(
            "spec.workers.replicas",
            "must be at least 1".into(),
            "set replicas: 1 or more".into(),
        );
    }
}

/// Turns `spec.inject` into one behaviour per server and per worker.
fn resolve_injections(spec: &JobSpec, problems: &mut Problems) -> (Vec<Behaviour>, Vec<Behaviour>) {
    let (n_ps, n_w, f_w) = (
        spec.servers.replicas,
        spec.workers.replicas,
        spec.workers.byzantine,
    );
    let mut server_behaviours = vec![Behaviour::Honest; n_ps];
    let mut worker_behaviours = vec![Behaviour::Honest; n_w];
    for (position, injection) in spec.inject.iter().enumerate() {
        let base = format!("spec.inject[{position}]");
        let (replicas, behaviours) = match injection.role {
            Role::Server => (n_ps, &mut server_behaviours),
            Role::Worker => (n_w, &mut worker_behaviours),
        };
        let behaviour = match injection.role {
            Role::Server => injection
                .attack
                .parse::<ServerAttackKind>()
                .and_then(|kind| {
                    let attack = ServerAttack {
                        kind,
                        params: injection.params,
                    };
                    attack.validate().map(|()| Behaviour::Server(attack))
                }),
            Role::Worker => injection
                .attack
                .parse::<WorkerAttackKind>()
                .and_then(|kind| {
                    let attack = WorkerAttack {
                        kind,
                        params: injection.params,
                    };
                    attack
                        .validate(n_w, f_w)
                        .map(|()| Behaviour::Worker(attack))
                }),
        };
        let behaviour = match behaviour {
            Ok(behaviour) => behaviour,
            Err(error) => {
                problems.push(
                    &format!("{base}.attack"),
                    error.to_string(),
                    "name an attack listed here, with only the parameters it reads".into(),
                );
                continue;
            }
        };
        if injection.count > replicas {
            problems.push(
                &format!("{base}.count"),
                format!(
                    "{} {}s are injected but the job has only {replicas}",
                    injection.count, injection.role
                ),
                format!("lower count to at most {replicas}"),
            );
            continue;
        }
        let Some(indices) = injection_indices(injection, replicas, &base, problems) else {
            continue;
        };
        for index in indices {
            if !behaviours[index].is_honest() {
                problems.push(
                    &format!("{base}.indices"),
                    format!(
                        "{}-{index} is already made Byzantine by an earlier entry",
                        injection.role
                    ),
                    "give each node at most one attack (use indices to choose which)".into(),
                );
                continue;
            }
            behaviours[index] = behaviour.clone();
        }
    }
    (server_behaviours, worker_behaviours)
}

/// Which nodes an injection hits: its `indices`, or by default the highest `count` indices.
fn injection_indices(
    injection: &Injection,
    replicas: usize,
    base: &str,
    problems: &mut Problems,
) -> Option<Vec<usize>> {
    let Some(indices) = &injection.indices else {
        return Some((replicas - injection.count..replicas).collect());
    };
    if indices.len() != injection.count {
        problems.push(
            &format!("{base}.indices"),
            format!(
                "{} indices given but count is {}",
                indices.len(),
                injection.count
            ),
            "make count equal to the number of indices (or drop count)".into(),
        );
        return None;
    }
    if let Some(bad) = indices.iter().find(|&&i| i >= replicas) {
        problems.push(
            &format!("{base}.indices"),
            format!(
                "index {bad} is out of range for {replicas} {}s",
                injection.role
            ),
            format!("use indices in 0..{replicas}"),
        );
        return None;
    }
    Some(indices.clone())
}

fn check_rule_bound(
    problems: &mut Problems,
    field: &str,
    rule: Rule,
    quorum: usize,
    f: usize,
    role: &str,
) {
    let needed = rule.min_inputs(f);
    if quorum < needed {
        problems.push(
            field,
            format!(
                "rule `{rule}` receives a quorum of {quorum} {role} (n − f) with f = {f}, but needs {}: {needed} inputs",
                rule.bound()
            ),
            format!("add {} {role} or choose a rule with a looser bound (e.g. median)", needed - quorum),
        );
    }
}
