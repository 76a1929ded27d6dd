//! What a local run leaves behind in `runs/<name>-<timestamp>/`: `metrics.csv` (one row per
//! server step, evaluation, gather and drift measurement), `summary.json` (with the chaos
//! applied; `chaos.csv` is written by [`super::chaos`]), and `targets.json`
//! (Prometheus `file_sd`: every node's admin port plus the runner's, so a real Prometheus can
//! scrape a local run).

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::Context;
use byzsgd_core::{
    job::{Behaviour, Plan},
    protocol::NodeId,
};
use serde::{Deserialize, Serialize};

use super::children::ChildNode;

/// Creates `runs/<name>-<UTC timestamp>` (with a numeric suffix if it exists).
pub fn create_run_dir(runs: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let mut dir = runs.join(format!("{name}-{stamp}"));
    let mut suffix = 1;
    while dir.exists() {
        suffix += 1;
        dir = runs.join(format!("{name}-{stamp}-{suffix}"));
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create run directory {}", dir.display()))?;
    Ok(dir)
}

/// Copies the checkpoints of job `name` from an earlier run's `from` folder into `to`, the new
/// run's (the earlier run stays as it was). Fails, naming the folder, when it holds none.
pub fn copy_checkpoints(from: &Path, to: &Path, name: &str) -> anyhow::Result<()> {
    let prefix = format!("{name}-server-");
    let servers: Vec<_> = std::fs::read_dir(from)
        .with_context(|| {
            format!(
                "--resume: cannot read {}: pass the run directory of an earlier run of this \
                 job (it holds checkpoints/)",
                from.display()
            )
        })?
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    if servers.is_empty() {
        anyhow::bail!(
            "--resume: {} holds no checkpoint of job `{name}` (no {prefix}N folder): pass the \
             run directory of an earlier run of this job",
            from.display()
        );
    }
    for server in servers {
        copy_tree(&server.path(), &to.join(server.file_name()))?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| {
                format!(
                    "cannot copy {} to {}",
                    entry.path().display(),
                    target.display()
                )
            })?;
        }
    }
    Ok(())
}

/// Writes the Prometheus `file_sd` targets of a run.
pub fn write_targets(
    dir: &Path,
    job: &str,
    children: &[ChildNode],
    plan: &Plan,
    runner: &str,
) -> anyhow::Result<()> {
    let mut groups: Vec<serde_json::Value> = children
        .iter()
        .map(|child| {
            let attack = attack_name(plan.behaviour(child.id.role, child.id.index));
            serde_json::json!({
                "targets": [child.admin],
                "labels": {
                    "job_name": job,
                    "node": child.id.to_string(),
                    "role": child.id.role.as_str(),
                    "byzantine": if attack.is_some() { "true" } else { "false" },
                    "attack": attack.unwrap_or_default(),
                }
            })
        })
        .collect();
    groups.push(serde_json::json!({
        "targets": [runner],
        "labels": {"job_name": job, "node": "runner", "role": "runner", "byzantine": "false", "attack": ""}
    }));
    let path = dir.join("targets.json");
    std::fs::write(&path, serde_json::to_string_pretty(&groups)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn attack_name(behaviour: &Behaviour) -> Option<String> {
    match behaviour {
        Behaviour::Honest => None,
        Behaviour::Server(attack) => Some(attack.kind.to_string()),
        Behaviour::Worker(attack) => Some(attack.kind.to_string()),
    }
}

/// `summary.json`; `byzsgd-exp` reads it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Wall time of the training, seconds (from the moment every node was wired).
    pub wall_seconds: f64,
    /// Seconds spent starting processes, loading data and wiring them before that.
    pub startup_seconds: f64,
    /// Steps every correct server completed.
    pub steps: u64,
    /// Steps per second (slowest correct server).
    pub steps_per_second: f64,
    /// Median test accuracy of the correct servers at the end.
    pub final_accuracy: Option<f32>,
    /// Largest distance between correct servers' models measured during the run.
    pub max_drift: f32,
    /// The convergence target, if any.
    pub target_accuracy: Option<f32>,
    /// Seconds until the target was reached.
    pub time_to_target_seconds: Option<f64>,
    /// Whether the target was reached.
    pub converged: bool,
    /// Whether the run was interrupted.
    pub interrupted: bool,
    /// Nodes that ran an attack.
    pub byzantine_nodes: usize,
    /// The chaos configs applied (`--chaos`), with what happened to which node.
    #[serde(default)]
    pub chaos: Vec<super::chaos::ChaosSummary>,
    /// Each node's `/status.chaos` at the end of a run with chaos: what was armed and the
    /// first and last step it acted on. Empty without `--chaos`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub node_chaos: std::collections::BTreeMap<String, byzsgd_core::protocol::chaos::ChaosReport>,
    /// Servers that restarted behind the job and adopted the median of their peers' models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recoveries: Vec<Recovery>,
    /// Messages each node dropped (`/status.rejected` at the end of the run: edge checks,
    /// protocol checks and chaos partitions together).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// The step each server resumed at: the checkpoint its latest start found (`--resume`, or a
    /// restart mid-run by a `crash` experiment); servers that started from step 0 are absent.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub resumed_at: std::collections::BTreeMap<String, u64>,
    /// Each node's peak resident memory (bytes) at the end of the run (Linux `VmHWM`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub peak_rss_bytes: std::collections::BTreeMap<String, u64>,
}

/// One crash recovery of a server (`Event::Recovered`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    /// `server-2`.
    pub node: String,
    /// When, in seconds since the training started.
    pub wall_seconds: f64,
    /// Its step after the restart.
    pub from_step: u64,
    /// The step it adopted.
    pub step: u64,
}

/// One accuracy point, kept for the plot.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// Step.
    pub step: u64,
    /// Value.
    pub value: f32,
}

/// Writes `metrics.csv` as the run goes and keeps what the plot needs.
#[derive(Debug)]
pub struct Recorder {
    csv: csv::Writer<BufWriter<File>>,
    plan_behaviours: Vec<(NodeId, bool)>,
    /// Accuracy per correct server.
    pub accuracy: std::collections::BTreeMap<NodeId, Vec<Point>>,
    /// Max drift between correct servers per measured step.
    pub drift: Vec<Point>,
}

impl Recorder {
    /// Opens `metrics.csv` in `dir`.
    pub fn new(dir: &Path, plan: &Plan) -> anyhow::Result<Self> {
        let path = dir.join("metrics.csv");
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut csv = csv::Writer::from_writer(BufWriter::new(file));
        csv.write_record([
            "wall_seconds",
            "step",
            "node",
            "role",
            "byzantine",
            "loss",
            "accuracy",
            "drift_to_median",
            "max_correct_drift",
        ])?;
        let plan_behaviours = (0..plan.servers)
            .map(|index| {
                (
                    NodeId::server(index),
                    !plan.server_behaviours[index].is_honest(),
                )
            })
            .chain((0..plan.workers).map(|index| {
                (
                    NodeId::worker(index),
                    !plan.worker_behaviours[index].is_honest(),
                )
            }))
            .collect();
        Ok(Self {
            csv,
            plan_behaviours,
            accuracy: std::collections::BTreeMap::new(),
            drift: Vec::new(),
        })
    }

    fn byzantine(&self, id: NodeId) -> bool {
        self.plan_behaviours
            .iter()
            .any(|(node, byzantine)| *node == id && *byzantine)
    }

    /// A server's step or gather.
    pub fn row(
        &mut self,
        wall: f64,
        step: u64,
        id: NodeId,
        loss: Option<f32>,
        accuracy: Option<f32>,
        drift_to_median: Option<f32>,
    ) -> anyhow::Result<()> {
        let byzantine = self.byzantine(id);
        self.csv.write_record([
            format!("{wall:.3}"),
            step.to_string(),
            id.to_string(),
            id.role.as_str().to_owned(),
            byzantine.to_string(),
            optional(loss),
            optional(accuracy),
            optional(drift_to_median),
            String::new(),
        ])?;
        Ok(())
    }

    /// A server's evaluation.
    pub fn evaluation(
        &mut self,
        wall: f64,
        step: u64,
        id: NodeId,
        loss: Option<f32>,
        accuracy: Option<f32>,
    ) -> anyhow::Result<()> {
        self.row(wall, step, id, loss, accuracy, None)?;
        if let (Some(accuracy), false) = (accuracy, self.byzantine(id)) {
            self.accuracy.entry(id).or_default().push(Point {
                step,
                value: accuracy,
            });
        }
        Ok(())
    }

    /// The runner's drift measurement.
    pub fn drift(&mut self, wall: f64, step: u64, drift: f32) -> anyhow::Result<()> {
        self.csv.write_record([
            format!("{wall:.3}"),
            step.to_string(),
            "runner".to_owned(),
            "runner".to_owned(),
            "false".to_owned(),
            String::new(),
            String::new(),
            String::new(),
            format!("{drift}"),
        ])?;
        self.drift.push(Point { step, value: drift });
        Ok(())
    }

    /// Flushes the CSV and writes `summary.json` next to it.
    pub fn finish(&mut self, summary: &Summary) -> anyhow::Result<()> {
        self.csv.flush()?;
        let path = summary.run_dir.join("summary.json");
        let mut file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        writeln!(file, "{}", serde_json::to_string_pretty(summary)?)?;
        Ok(())
    }
}

fn optional(value: Option<f32>) -> String {
    value.map(|value| value.to_string()).unwrap_or_default()
}
