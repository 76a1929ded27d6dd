//! `byzsgd-exp run`: expands a scenario, validates every grid point before the first run, runs
//! them one after another on the chosen backend with a progress bar, and keeps the results
//! current on disk after every run (`results.csv`, `summary.csv`, `sweep.json`), so an
//! interrupted sweep loses at most the run in progress.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, bail};
use byzsgd_api::chaos::ChaosResource;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::{
    backend::{self, Prepared, kube::KubeOptions},
    grid,
    results::{self, RESULTS_CSV, SUMMARY_CSV, SummaryRow},
    scenario::{BackendKind, Scenario},
};

/// How a sweep runs.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// The backend.
    pub backend: BackendKind,
    /// Where results go.
    pub out: PathBuf,
    /// `byzsgd-node` for the local backend (found automatically when unset).
    pub node_bin: Option<PathBuf>,
    /// Options of the kube backend.
    pub kube: KubeOptions,
    /// Plain lines instead of a progress bar.
    pub no_progress: bool,
}

/// `sweep.json`: what produced the CSVs next to it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SweepRecord<'a> {
    scenario: &'a str,
    backend: &'static str,
    runs: usize,
    failed: Vec<String>,
    started: String,
    seconds: f64,
    /// 1-minute load average when the sweep started: timings on a shared machine need it.
    load_average: Option<f64>,
    version: &'static str,
}

/// Expands and validates every run of a scenario.
pub fn prepare_all(scenario: &Scenario) -> anyhow::Result<Vec<Prepared>> {
    let job_path = scenario.job_path();
    let text = std::fs::read_to_string(&job_path)
        .with_context(|| format!("cannot read the scenario's job {}", job_path.display()))?;
    let base: serde_json::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not valid YAML", job_path.display()))?;
    let chaos = scenario
        .chaos_paths()
        .iter()
        .map(|path| ChaosResource::from_file(path))
        .collect::<Result<Vec<_>, _>>()?;
    let runs = grid::expand(&scenario.spec.name, &base, &scenario.spec.grid)
        .with_context(|| format!("{}", scenario.path.display()))?;
    runs.iter()
        .map(|run| {
            let origin = format!(
                "{} run {} ({})",
                scenario.path.display(),
                run.id,
                run.describe()
            );
            backend::prepare(run, &chaos, &origin)
        })
        .collect()
}

/// Runs a scenario; returns the summary rows of the runs that finished.
pub fn run(scenario: &Scenario, options: &SweepOptions) -> anyhow::Result<Vec<SummaryRow>> {
    let prepared = prepare_all(scenario)?;
    let node_bin = match options.backend {
        BackendKind::Local => Some(backend::local::find_node_binary(
            options.node_bin.as_deref(),
        )?),
        _ => None,
    };
    backend::create_dir(&options.out)?;
    let axes = scenario.axes();
    let results_path = options.out.join(RESULTS_CSV);
    let summary_path = options.out.join(SUMMARY_CSV);
    let mut tidy = csv::Writer::from_path(&results_path)
        .with_context(|| format!("cannot write {}", results_path.display()))?;

    let bar = progress_bar(prepared.len() as u64, options.no_progress);
    let started = Instant::now();
    let started_at = jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M UTC")
        .to_string();
    let load_average = load_average();
    let mut summaries = Vec::new();
    let mut failed = Vec::new();
    for item in &prepared {
        let run = &item.run;
        bar.set_message(format!("{} {}", run.id, run.describe()));
        let clock = Instant::now();
        let outcome = match options.backend {
            BackendKind::Sim => backend::sim::run(item),
            BackendKind::Local => backend::local::run(
                item,
                node_bin
                    .as_deref()
                    .unwrap_or_else(|| Path::new("byzsgd-node")),
                &options.out.join("runs").join(&run.id),
            ),
            BackendKind::Kube => backend::kube::run(item, &options.kube),
        };
        let seconds = clock.elapsed().as_secs_f64();
        match outcome {
            Ok(output) => {
                results::write_tidy(&mut tidy, &output.rows)?;
                let mut summary = output.summary;
                if let Some(target) = item.plan.spec.convergence.as_ref() {
                    let steps =
                        first_step_reaching(&output.rows, f64::from(target.target_accuracy));
                    summary.set("steps_to_target", steps.map(|s| s as f64));
                }
                summary.run.clone_from(&run.id);
                summary.labels = run.labels.iter().cloned().collect();
                say(
                    &bar,
                    format!(
                        "{} {}: accuracy {}, max drift {} ({seconds:.1} s)",
                        run.id,
                        run.describe(),
                        shown(summary.metric("final_accuracy")),
                        shown(summary.metric("max_drift")),
                    ),
                );
                summaries.push(summary);
                results::write_summary(&summary_path, &axes, &summaries)?;
            }
            Err(error) => {
                say(
                    &bar,
                    format!("{} {}: FAILED: {error:#}", run.id, run.describe()),
                );
                failed.push(format!("{} ({}): {error:#}", run.id, run.describe()));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let record = SweepRecord {
        scenario: &scenario.spec.name,
        backend: options.backend.as_str(),
        runs: prepared.len(),
        failed: failed.clone(),
        started: started_at,
        seconds: started.elapsed().as_secs_f64(),
        load_average,
        version: env!("CARGO_PKG_VERSION"),
    };
    let record_path = options.out.join("sweep.json");
    std::fs::write(&record_path, serde_json::to_string_pretty(&record)? + "\n")
        .with_context(|| format!("cannot write {}", record_path.display()))?;
    if summaries.is_empty() {
        // Keep the header so readers see the columns even when every run failed.
        results::write_summary(&summary_path, &axes, &summaries)?;
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} runs failed:\n  {}",
            failed.len(),
            prepared.len(),
            failed.join("\n  ")
        );
    }
    Ok(summaries)
}

/// The first evaluated step at which the median accuracy over the reporting servers reaches
/// `target`.
fn first_step_reaching(rows: &[results::TidyRow], target: f64) -> Option<u64> {
    results::median_by_step(rows, results::metric::ACCURACY)
        .into_iter()
        .find(|(_, median)| *median >= target)
        .map(|((_, step), _)| step)
}

/// A line above the bar, or on stderr when the bar is hidden (indicatif drops it then).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn shown(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.3}"))
}

fn progress_bar(length: u64, plain: bool) -> ProgressBar {
    let bar = ProgressBar::new(length);
    if plain {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} runs, eta {eta}  {wide_msg}",
        ) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
    }
    bar
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
