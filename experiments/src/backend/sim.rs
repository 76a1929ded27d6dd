//! The `sim` backend: the whole job as protocol state machines in one thread, in virtual time
//! (`byzsgd_core::sim`). Deterministic and fast, so it carries the grids whose claims are about
//! accuracy, drift and message counts; it has no wall clock, so it reports no steps per second
//! and no time to target (those need `--backend local`).
//!
//! Chaos: `attack` and `silence` are armed on the chosen nodes' chaos handles before the run,
//! with the same step windows a live node honours. `crash`, `delay`, `partition` and timed
//! windows act on processes and wall time and are refused here with the fix.

use anyhow::bail;
use byzsgd_api::{
    chaos::{self, ChaosAction},
    job::status::median,
};
use byzsgd_core::{
    assemble::{Assembly, JobData},
    job::Role,
    protocol::chaos::{Armed, ChaosHandle, ChaosOrder},
    sim::{Network, Report, Sim},
};

use super::{Output, Prepared};
use crate::results::{SummaryRow, TidyRow, metric};

/// Virtual seconds after which a simulation stops even if nodes are still waiting (a stuck
/// run then reports `finished = false` and whatever steps it reached).
const MAX_VIRTUAL_SECONDS: f64 = 1e6;

/// Runs one prepared run in the simulator.
pub fn run(prepared: &Prepared) -> anyhow::Result<Output> {
    let plan = &prepared.plan;
    let correct = plan.correct_servers();
    let data = JobData::load(plan)?;
    let assembly = Assembly::new(plan.clone(), data)?;
    let mut nodes = Vec::with_capacity(plan.servers + plan.workers);
    let mut handles: Vec<(Role, usize, Option<ChaosHandle>)> = Vec::new();
    for (role, count) in [(Role::Server, plan.servers), (Role::Worker, plan.workers)] {
        for index in 0..count {
            let (node, handle) = assembly.node_with_chaos(role, index)?;
            nodes.push(node);
            handles.push((role, index, handle));
        }
    }
    arm_chaos(prepared, &handles)?;
    let report = Sim::new(
        nodes,
        correct.clone(),
        Network {
            seed: plan.spec.training.seed,
            ..Network::default()
        },
    )
    .run(MAX_VIRTUAL_SECONDS);
    Ok(output(prepared, &report, &correct))
}

/// Arms the chosen nodes' handles with the scenario's `attack` and `silence` chaos.
fn arm_chaos(
    prepared: &Prepared,
    handles: &[(Role, usize, Option<ChaosHandle>)],
) -> anyhow::Result<()> {
    let plan = &prepared.plan;
    for resource in &prepared.chaos {
        let spec = &resource.spec;
        if spec.window.duration.is_some() {
            bail!(
                "chaos `{}`: window.duration needs a wall clock; the sim backend takes step \
                 windows (fromStep/untilStep) — or use --backend local",
                resource.name
            );
        }
        let (replicas, byzantine) = match spec.role {
            Role::Server => (plan.servers, plan.byzantine_servers),
            Role::Worker => (plan.workers, plan.byzantine_workers),
        };
        let armed = match &spec.action {
            ChaosAction::Attack { name, params } => Armed::Attack(chaos::runtime_attack(
                spec.role, name, *params, replicas, byzantine,
            )?),
            ChaosAction::Silence => Armed::Silence,
            other => bail!(
                "chaos `{}`: action `{}` acts on processes and the network; the sim backend \
                 applies `attack` and `silence` — use --backend local",
                resource.name,
                other.kind()
            ),
        };
        for index in chaos::select(spec, plan) {
            let handle = handles
                .iter()
                .find(|(role, i, _)| *role == spec.role && *i == index)
                .and_then(|(_, _, handle)| handle.as_ref());
            let Some(handle) = handle else {
                bail!(
                    "chaos `{}`: the job does not allow chaos: set spec.chaos.allowed: true",
                    resource.name
                );
            };
            handle.arm(ChaosOrder {
                armed: armed.clone(),
                from_step: spec.window.from_step,
                until_step: spec.window.until_step,
            });
        }
    }
    Ok(())
}

/// Tidy rows and summary of a finished simulation.
fn output(prepared: &Prepared, report: &Report, correct: &[usize]) -> Output {
    Output {
        rows: rows(&prepared.run.id, report, correct),
        summary: summary(prepared, report, correct),
    }
}

/// Correct servers' evaluations, the true drift before and after gathers, and each server's
/// distance to the median it adopted.
fn rows(run: &str, report: &Report, correct: &[usize]) -> Vec<TidyRow> {
    let mut rows = Vec::new();
    for evaluation in report
        .evaluations
        .iter()
        .filter(|e| correct.contains(&e.server))
    {
        let node = format!("server-{}", evaluation.server);
        let at = |name, value: f32| {
            TidyRow::new(
                run,
                evaluation.step,
                &node,
                "server",
                name,
                f64::from(value),
            )
        };
        rows.push(at(metric::LOSS, evaluation.loss));
        rows.push(at(metric::ACCURACY, evaluation.accuracy));
    }
    for (name, series) in [
        (metric::DRIFT, &report.drift),
        (metric::DRIFT_AFTER_GATHER, &report.gathered_drift),
    ] {
        for (step, drift) in series {
            rows.push(TidyRow::new(
                run,
                *step,
                "job",
                "job",
                name,
                f64::from(*drift),
            ));
        }
    }
    for (step, server, drift) in &report.gathers {
        let node = format!("server-{server}");
        rows.push(TidyRow::new(
            run,
            *step,
            &node,
            "server",
            metric::DRIFT_TO_MEDIAN,
            f64::from(*drift),
        ));
    }
    rows
}

/// Final accuracy, drift, contraction at gathers, and message and byte counts per step.
fn summary(prepared: &Prepared, report: &Report, correct: &[usize]) -> SummaryRow {
    let plan = &prepared.plan;
    let steps = correct
        .iter()
        .filter_map(|&i| report.final_steps.get(i))
        .copied()
        .min()
        .unwrap_or(0);
    let final_accuracy = report.final_accuracy(correct).map(f64::from);
    // Contraction at a gather: the correct servers' largest distance right after it, over the
    // largest distance at that step before it (PAPER.md §3.2: DMC contracts by a constant).
    let contraction = median(report.gathered_drift.iter().filter_map(|(step, after)| {
        let before = *report.drift.get(step)?;
        (before > 1e-9).then(|| f64::from(*after) / f64::from(before))
    }));
    let per_step = |total: u64| (steps > 0).then(|| total as f64 / steps as f64);
    let mut summary = SummaryRow::default();
    summary.set("final_accuracy", final_accuracy);
    summary.set("max_drift", Some(f64::from(report.max_drift())));
    summary.set("gather_contraction", contraction);
    summary.set("steps", Some(steps as f64));
    let target = plan
        .spec
        .convergence
        .as_ref()
        .map(|c| f64::from(c.target_accuracy));
    summary.set(
        "converged",
        target.map(|t| {
            f64::from(u8::from(
                report.finished && final_accuracy.is_some_and(|a| a >= t),
            ))
        }),
    );
    summary.set(
        "messages_per_step",
        per_step(report.messages.values().sum()),
    );
    summary.set("bytes_per_step", per_step(report.bytes.values().sum()));
    summary
}
