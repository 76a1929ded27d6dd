//! The `local` backend: each run is `byzsgd-node local` on this machine — every server and
//! worker a separate process on loopback, exactly as a user runs a job — and its run directory
//! (`metrics.csv`, `summary.json`, `chaos.csv`) is translated into tidy rows. Chaos files are
//! handed to the runner with `--chaos`.
//!
//! The node binary is found by `--node-bin` / `BYZSGD_NODE_BIN`, else next to `byzsgd-exp`
//! (both are built into the same target directory), else on `PATH`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};
use byzsgd_node::local::record::Summary;
use serde::Deserialize;

use super::{Output, Prepared, chaos_yaml, create_dir};
use crate::results::{TidyRow, metric};

/// Finds the `byzsgd-node` executable.
pub fn find_node_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!(
            "--node-bin {}: no such file; build it with `cargo build --release -p byzsgd-node`",
            path.display()
        );
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("byzsgd-node")));
    if let Some(sibling) = sibling.filter(|p| p.is_file()) {
        return Ok(sibling);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("byzsgd-node"))
            .find(|p| p.is_file())
    });
    on_path.context(
        "cannot find the byzsgd-node executable: build it (`cargo build --release -p \
         byzsgd-node`), then pass --node-bin PATH or set BYZSGD_NODE_BIN",
    )
}

/// One row of the runner's `metrics.csv`.
#[derive(Debug, Deserialize)]
struct MetricsRow {
    wall_seconds: f64,
    step: u64,
    node: String,
    role: String,
    byzantine: bool,
    loss: Option<f64>,
    accuracy: Option<f64>,
    drift_to_median: Option<f64>,
    max_correct_drift: Option<f64>,
}

/// Runs one prepared run through `byzsgd-node local`, keeping its files under `dir`.
pub fn run(prepared: &Prepared, node_bin: &Path, dir: &Path) -> anyhow::Result<Output> {
    // A re-run replaces the run's previous files: its results are rewritten anyway, and a stale
    // run directory must not be mistaken for the live one (by the scraper or the reader).
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot clear the previous run in {}", dir.display()))?;
    }
    create_dir(dir)?;
    let job_file = dir.join("job.yaml");
    std::fs::write(&job_file, &prepared.manifest_yaml)
        .with_context(|| format!("cannot write {}", job_file.display()))?;
    let mut command = Command::new(node_bin);
    command
        .arg("local")
        .arg(&job_file)
        .arg("--runs-dir")
        .arg(dir)
        .arg("--no-progress");
    for (index, resource) in prepared.chaos.iter().enumerate() {
        let path = dir.join(format!("chaos-{index}.yaml"));
        std::fs::write(&path, chaos_yaml(resource)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        command.arg("--chaos").arg(&path);
    }
    let log_path = dir.join("runner.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let scraper = super::scrape::Scraper::start(dir);
    let status = command
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("cannot start {}", node_bin.display()));
    let traffic = scraper.finish();
    let status = status?;
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "byzsgd-node local exited with {status} (log: {}):\n{}",
            log_path.display(),
            tail.join("\n")
        );
    }
    let run_dir = newest_run_dir(dir)?;
    let mut output = read_run_dir(&prepared.run.id, &run_dir)?;
    if let Some(traffic) = traffic {
        output
            .summary
            .set("messages_per_step", Some(traffic.messages_per_step));
        output
            .summary
            .set("bytes_per_step", Some(traffic.bytes_per_step));
    }
    Ok(output)
}

/// The run directory the runner created under `dir` (the newest, should there be several).
fn newest_run_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("summary.json").is_file())
        .filter_map(|path| Some((path.metadata().ok()?.modified().ok()?, path)))
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, path)| path)
        .with_context(|| format!("the runner left no summary.json under {}", dir.display()))
}

/// Translates a local run directory into tidy rows and a summary.
pub fn read_run_dir(run: &str, dir: &Path) -> anyhow::Result<Output> {
    let summary_path = dir.join("summary.json");
    let text = std::fs::read_to_string(&summary_path)
        .with_context(|| format!("cannot read {}", summary_path.display()))?;
    let runner: Summary = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a runner summary", summary_path.display()))?;
    if runner.interrupted {
        bail!("the run in {} was interrupted", dir.display());
    }
    let metrics_path = dir.join("metrics.csv");
    let mut reader = csv::Reader::from_path(&metrics_path)
        .with_context(|| format!("cannot open {}", metrics_path.display()))?;
    let mut rows = Vec::new();
    let mut push = |step: u64, node: &str, role: &str, name: &str, value: f64| {
        rows.push(TidyRow::new(run, step, node, role, name, value));
    };
    for (line, record) in reader.deserialize::<MetricsRow>().enumerate() {
        let record = record.with_context(|| {
            format!("{}: row {} is malformed", metrics_path.display(), line + 2)
        })?;
        if record.role == "runner" {
            if let Some(drift) = record.max_correct_drift {
                push(record.step, "job", "job", metric::DRIFT, drift);
            }
            continue;
        }
        // Byzantine servers' own reports say nothing about the correct model.
        if record.byzantine {
            continue;
        }
        if let Some(loss) = record.loss {
            push(record.step, &record.node, &record.role, metric::LOSS, loss);
        }
        if let Some(accuracy) = record.accuracy {
            push(
                record.step,
                &record.node,
                &record.role,
                metric::ACCURACY,
                accuracy,
            );
            push(
                record.step,
                &record.node,
                &record.role,
                metric::TIME,
                record.wall_seconds,
            );
        }
        if let Some(drift) = record.drift_to_median {
            push(
                record.step,
                &record.node,
                &record.role,
                metric::DRIFT_TO_MEDIAN,
                drift,
            );
        }
    }
    let mut output = Output {
        rows,
        ..Output::default()
    };
    let summary = &mut output.summary;
    summary.set("final_accuracy", runner.final_accuracy.map(f64::from));
    summary.set("max_drift", Some(f64::from(runner.max_drift)));
    summary.set("steps", Some(runner.steps as f64));
    summary.set("steps_per_second", Some(runner.steps_per_second));
    summary.set("time_to_target_s", runner.time_to_target_seconds);
    summary.set("wall_s", Some(runner.wall_seconds));
    summary.set("startup_s", Some(runner.startup_seconds));
    summary.set(
        "converged",
        runner
            .target_accuracy
            .map(|_| f64::from(u8::from(runner.converged))),
    );
    Ok(output)
}
