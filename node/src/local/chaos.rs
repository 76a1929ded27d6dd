//! Chaos in local runs (`byzsgd-node local JOB --chaos FILE`): checks every chaos file against
//! the job before anything starts, then drives each one through its window while the job runs,
//! and keeps the record (`chaos.csv`, the `chaos` list of `summary.json`).
//!
//! Payload and network actions (`attack`, `silence`, `delay`, `partition`) are armed on the
//! chosen nodes through their authenticated admin `POST /chaos` before any node takes a step,
//! so a window "from step s" starts exactly at s; the node itself ends a step window, and the
//! runner sends `DELETE /chaos` when a `duration` elapses. `crash` is the runner's own: it
//! kills the chosen processes when the job reaches `fromStep` and starts them again, on the
//! same ports, at `untilStep` or after `duration` (never, for an open window). Job steps are
//! the slowest correct server's, as in the progress bar; a duration runs from the moment the
//! job reaches `fromStep`.

use std::{
    collections::BTreeMap,
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use byzsgd_api::{
    admin::Status,
    chaos::{self, ChaosAction, ChaosResource, ChaosSpec, Window},
};
use byzsgd_core::{
    job::Plan,
    protocol::{NodeId, chaos::ChaosReport},
};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::children::{self, ChildNode, Launcher};

/// A chaos file checked against the job, with the nodes it hits.
#[derive(Debug, Clone)]
pub struct Planned {
    /// `metadata.name` of the chaos.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Its spec.
    pub spec: ChaosSpec,
    /// The nodes it hits (`chaos::select`).
    pub nodes: Vec<NodeId>,
}

/// Reads and checks every chaos file for the job `job` with plan `plan`; the error names the
/// file, the field and the fix. Nothing is started here.
pub fn prepare(files: &[PathBuf], job: &str, plan: &Plan) -> anyhow::Result<Vec<Planned>> {
    let mut planned = Vec::with_capacity(files.len());
    for file in files {
        let resource = ChaosResource::from_file(file)?;
        chaos::validate(&resource.spec, job, plan)
            .with_context(|| format!("chaos file {}", file.display()))?;
        let nodes = chaos::select(&resource.spec, plan)
            .into_iter()
            .map(|index| NodeId {
                role: resource.spec.role,
                index,
            })
            .collect();
        planned.push(Planned {
            name: resource.name,
            file: file.clone(),
            spec: resource.spec,
            nodes,
        });
    }
    if !planned.is_empty() && !plan.spec.chaos.allowed {
        bail!(
            "job `{job}` does not allow chaos, so its nodes would refuse it: set \
             `spec.chaos.allowed: true` in the job's manifest to run it with --chaos"
        );
    }
    Ok(planned)
}

/// A fresh random bearer token for the nodes' `POST /chaos`.
pub fn new_token() -> String {
    use rand::Rng;
    // ThreadRng is a cryptographically secure generator; 128 bits cannot be guessed.
    format!("{:032x}", rand::rng().random::<u128>())
}

/// One thing that happened to one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChaosEvent {
    /// Seconds since the chaos was armed (the start of training, within milliseconds).
    pub time_s: f64,
    /// The node.
    pub node: String,
    /// `applied`, `ended`, `killed`, `restarted` or `restart-failed`.
    pub event: String,
    /// The job's step (slowest correct server) at that moment.
    pub step: u64,
}

/// One chaos of a run, as `summary.json` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChaosSummary {
    /// `metadata.name`.
    pub name: String,
    /// The chaos file.
    pub file: PathBuf,
    /// The action, as in the file.
    pub action: ChaosAction,
    /// The window, as in the file.
    pub window: Window,
    /// The nodes hit.
    pub nodes: Vec<String>,
    /// What happened, in order.
    pub events: Vec<ChaosEvent>,
}

/// Where a chaos is in its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Armed on the nodes (or, for a crash, waiting for `fromStep`).
    Waiting,
    /// The job reached `fromStep`, at this instant.
    Open(Instant),
    /// Over (or open for good: a crash without an end).
    Done,
}

#[derive(Debug)]
struct Entry {
    planned: Planned,
    phase: Phase,
    events: Vec<ChaosEvent>,
}

/// What the campaign needs of the running job.
#[derive(Debug)]
pub struct Stage<'a> {
    /// For the admin calls.
    pub http: &'a reqwest::Client,
    /// The job's processes (a crash replaces entries).
    pub children: &'a mut Vec<ChildNode>,
    /// Starts crashed nodes again.
    pub launcher: &'a Launcher,
    /// Where event lines go.
    pub bar: &'a ProgressBar,
}

/// Drives every chaos of a run and records what it did.
#[derive(Debug)]
pub struct Campaign {
    entries: Vec<Entry>,
    token: Option<String>,
    csv: csv::Writer<BufWriter<File>>,
    origin: Instant,
}

impl Campaign {
    /// A campaign over `planned`, writing `chaos.csv` into `run_dir`; `token` is the one the
    /// children were given.
    pub fn new(
        planned: Vec<Planned>,
        run_dir: &Path,
        token: Option<String>,
    ) -> anyhow::Result<Self> {
        let path = run_dir.join("chaos.csv");
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut csv = csv::Writer::from_writer(BufWriter::new(file));
        csv.write_record(["time_s", "chaos", "node", "event", "step"])?;
        Ok(Self {
            entries: planned
                .into_iter()
                .map(|planned| Entry {
                    planned,
                    phase: Phase::Waiting,
                    events: Vec::new(),
                })
                .collect(),
            token,
            csv,
            origin: Instant::now(),
        })
    }

    /// Whether there is any chaos to drive.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Before the first step: arms every payload and network action on its nodes, and kills
    /// the nodes of crashes that start at step 0. Returns the nodes killed.
    pub async fn arm(&mut self, stage: &mut Stage<'_>) -> anyhow::Result<Vec<NodeId>> {
        self.origin = Instant::now();
        for index in 0..self.entries.len() {
            if matches!(self.entries[index].planned.spec.action, ChaosAction::Crash) {
                continue;
            }
            let planned = self.entries[index].planned.clone();
            let window = Window {
                duration: None,
                ..planned.spec.window.clone()
            };
            let body = serde_json::json!({ "action": planned.spec.action, "window": window });
            for &node in &planned.nodes {
                let address = admin_address(stage.children, node)?;
                let mut request = stage
                    .http
                    .post(format!("http://{address}/chaos"))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
                if let Some(token) = &self.token {
                    request = request.bearer_auth(token);
                }
                let response = request
                    .send()
                    .await
                    .with_context(|| format!("chaos `{}`: cannot reach {node}", planned.name))?;
                let status = response.status();
                if !status.is_success() {
                    let text = response.text().await.unwrap_or_default();
                    bail!(
                        "chaos `{}`: {node} refused it ({status}): {text}",
                        planned.name
                    );
                }
                self.record(index, node, "applied", 0, stage.bar)?;
            }
        }
        self.advance(0, stage).await
    }

    /// Moves every chaos along now that the job is at `step` (call on progress and on a
    /// timer). Returns the nodes killed.
    pub async fn advance(
        &mut self,
        step: u64,
        stage: &mut Stage<'_>,
    ) -> anyhow::Result<Vec<NodeId>> {
        let mut killed = Vec::new();
        for index in 0..self.entries.len() {
            let entry = &mut self.entries[index];
            let window = entry.planned.spec.window.clone();
            let crash = matches!(entry.planned.spec.action, ChaosAction::Crash);
            if entry.phase == Phase::Waiting && step >= window.from_step {
                entry.phase = Phase::Open(Instant::now());
                if crash {
                    for node in entry.planned.nodes.clone() {
                        kill(stage.children, node).await;
                        killed.push(node);
                        self.record(index, node, "killed", step, stage.bar)?;
                    }
                }
            }
            let Phase::Open(opened) = self.entries[index].phase else {
                continue;
            };
            let by_step = window.until_step.is_some_and(|until| step >= until);
            let by_time = window
                .duration
                .is_some_and(|duration| opened.elapsed() >= duration.0);
            if !(by_step || by_time) {
                continue;
            }
            self.entries[index].phase = Phase::Done;
            let nodes = self.entries[index].planned.nodes.clone();
            for node in nodes {
                let event = if crash {
                    restart(stage, node).await
                } else if by_time {
                    self.disarm(stage, node).await
                } else {
                    // The node ends a step window itself; this only records it.
                    "ended"
                };
                self.record(index, node, event, step, stage.bar)?;
            }
        }
        Ok(killed)
    }

    async fn disarm(&self, stage: &Stage<'_>, node: NodeId) -> &'static str {
        let Ok(address) = admin_address(stage.children, node) else {
            return "end-failed";
        };
        let mut request = stage.http.delete(format!("http://{address}/chaos"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => "ended",
            _ => "end-failed",
        }
    }

    fn record(
        &mut self,
        index: usize,
        node: NodeId,
        event: &str,
        step: u64,
        bar: &ProgressBar,
    ) -> anyhow::Result<()> {
        let time_s = self.origin.elapsed().as_secs_f64();
        let entry = &mut self.entries[index];
        let name = &entry.planned.name;
        let action = entry.planned.spec.action.kind();
        say(
            bar,
            &format!("chaos {name}: {action} {event} on {node} at step {step} ({time_s:.2} s)"),
        );
        self.csv.write_record([
            format!("{time_s:.3}"),
            name.clone(),
            node.to_string(),
            event.to_owned(),
            step.to_string(),
        ])?;
        self.csv.flush()?;
        entry.events.push(ChaosEvent {
            time_s,
            node: node.to_string(),
            event: event.to_owned(),
            step,
        });
        Ok(())
    }

    /// The record for `summary.json`.
    pub fn summary(&self) -> Vec<ChaosSummary> {
        self.entries
            .iter()
            .map(|entry| ChaosSummary {
                name: entry.planned.name.clone(),
                file: entry.planned.file.clone(),
                action: entry.planned.spec.action.clone(),
                window: entry.planned.spec.window.clone(),
                nodes: entry
                    .planned
                    .nodes
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                events: entry.events.clone(),
            })
            .collect()
    }
}

/// Each node's `/status.chaos` at the end of the run: what it armed and where it acted.
pub fn evidence(statuses: &BTreeMap<NodeId, Status>) -> BTreeMap<String, ChaosReport> {
    statuses
        .iter()
        .filter_map(|(node, status)| Some((node.to_string(), status.chaos.clone()?)))
        .collect()
}

/// Prints a line above the progress bar, or on stdout when the bar is hidden.
fn say(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

fn admin_address(children: &[ChildNode], node: NodeId) -> anyhow::Result<String> {
    children
        .iter()
        .find(|child| child.id == node)
        .map(|child| child.admin.clone())
        .with_context(|| format!("{node} is not a node of this run"))
}

/// Kills a node's process (SIGKILL: a crash gives no chance to clean up) and reaps it.
async fn kill(children: &mut [ChildNode], node: NodeId) {
    if let Some(child) = children.iter_mut().find(|child| child.id == node) {
        child.stdin = None;
        let _ = child.process.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), child.process.wait()).await;
    }
}

/// Starts a killed node again on its ports; returns the event to record.
async fn restart(stage: &mut Stage<'_>, node: NodeId) -> &'static str {
    let table = children::peer_table(stage.children);
    let Some(position) = stage.children.iter().position(|child| child.id == node) else {
        return "restart-failed";
    };
    match stage
        .launcher
        .respawn(&stage.children[position], &table)
        .await
    {
        Ok(child) => {
            stage.children[position] = child;
            "restarted"
        }
        Err(error) => {
            say(
                stage.bar,
                &format!("chaos: cannot restart {node}: {error:#}"),
            );
            "restart-failed"
        }
    }
}
