//! `byzsgd-node local FILE`: a whole job on one machine. The same manifest `kubectl apply`
//! takes; pod-level fields are ignored. Every server and worker runs as a separate
//! `byzsgd-node` process on loopback with ports it picks itself, exactly as pods would run it.
//!
//! The runner validates everything before starting a process, shows a live progress bar,
//! and — because it knows which nodes are correct — measures what no node can: the true
//! largest distance between correct servers' models (`byzsgd_correct_servers_max_drift`,
//! exported on its own `/metrics`). It writes `runs/<name>-<timestamp>/` with `metrics.csv`,
//! `summary.json`, `plot.png` and a Prometheus `file_sd` file `targets.json`.
//!
//! With `--chaos FILE` it also applies `ByzantineChaos` configs to the running job
//! ([`chaos`]) and records them in `chaos.csv` and `summary.json`.

pub mod chaos;
pub mod children;
pub mod plot;
pub mod record;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use byzsgd_api::{Manifest, pki::JobCa, validate};
use byzsgd_core::{
    assemble::{Assembly, DataNeeds, JobData},
    job::{Plan, Role},
    protocol::NodeId,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use tokio::sync::mpsc;

use self::{
    chaos::{Campaign, Stage},
    children::{ChildNode, ChildOutput, Launcher},
    record::{Recorder, Summary},
};
use crate::rpc::wire;

/// How long children keep serving after their last step in runs with chaos, so the runner
/// can read every node's chaos evidence before it stops them (it closes their stdin then).
const CHAOS_LINGER_SECONDS: f64 = 60.0;

/// How often the runner checks timed chaos windows and its end condition between progress
/// lines.
const TICK: Duration = Duration::from_millis(100);

/// The folder of a run directory where servers write checkpoints and the final model.
pub const CHECKPOINTS: &str = "checkpoints";

/// How long the runner waits for honest workers once every correct server finished.
const WORKER_GRACE: Duration = Duration::from_secs(10);

/// Flags of `byzsgd-node local`.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// The `ByzSGDJob` manifest (e.g. examples/quickstart.yaml).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where run directories are created.
    #[arg(
        long,
        env = "BYZSGD_RUNS_DIR",
        default_value = "runs",
        value_name = "DIR"
    )]
    pub runs_dir: PathBuf,
    /// Override the data set directory of the manifest.
    #[arg(long, env = "BYZSGD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the runner's own /metrics (byzsgd_correct_servers_max_drift); port 0 picks one.
    #[arg(
        long,
        env = "BYZSGD_RUNNER_ADMIN_LISTEN",
        default_value = "127.0.0.1:0"
    )]
    pub admin_listen: std::net::SocketAddr,
    /// Resume from an earlier run of this job: its run directory (e.g. one whose runner was
    /// killed). Its checkpoints are copied into the new run's `checkpoints/` and every server
    /// starts from its newest one instead of step 0; `summary.json` says where each resumed
    /// (`resumedAt`). The job may have more steps than the earlier run had.
    #[arg(long, env = "BYZSGD_RESUME", value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// No progress bar (plain progress lines instead), e.g. in CI logs.
    #[arg(long, env = "BYZSGD_NO_PROGRESS", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_progress: bool,
    /// Plaintext links (`byzsgd-node server --insecure`) instead of the run's in-memory CA. Not
    /// a flag: only `byzsgd-node bench jobs --transport` sets it, to measure what TLS costs.
    #[arg(skip)]
    pub insecure: bool,
}

impl LocalArgs {
    /// A run of `file` under `runs_dir` as a benchmark starts it: no progress bar, the runner's
    /// metrics on any free loopback port, the manifest's data set, mutual TLS.
    pub fn unattended(file: PathBuf, runs_dir: PathBuf) -> Self {
        Self {
            file,
            runs_dir,
            data_dir: None,
            admin_listen: ([127, 0, 0, 1], 0).into(),
            resume: None,
            no_progress: true,
            insecure: false,
        }
    }
}

/// `byzsgd-node local`: the job's flags plus chaos configs.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalCommand {
    /// The run's flags.
    #[command(flatten)]
    pub args: LocalArgs,
    /// A `ByzantineChaos` file to apply to the run (repeat for several). Each is checked
    /// against the job before anything starts: its `spec.job` must be the manifest's name and
    /// the job must set `spec.chaos.allowed: true`. `attack`, `silence`, `delay` and
    /// `partition` are armed on the chosen nodes through their admin `POST /chaos` before the
    /// first step; `crash` kills the chosen processes when the job reaches `fromStep` and
    /// restarts them at `untilStep` (or after `duration`). Events go to `chaos.csv`.
    #[arg(
        long = "chaos",
        env = "BYZSGD_CHAOS_FILES",
        value_delimiter = ',',
        value_name = "CHAOS_FILE"
    )]
    pub chaos: Vec<PathBuf>,
}

/// A progress line from a child (see `runtime::progress_line`).
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
enum Progress {
    Stepped {
        step: u64,
        loss: Option<f32>,
    },
    Evaluated {
        step: u64,
        loss: Option<f32>,
        accuracy: Option<f32>,
    },
    #[serde(rename_all = "camelCase")]
    Gathered {
        step: u64,
        drift_to_median: Option<f32>,
    },
    #[serde(rename_all = "camelCase")]
    Recovered {
        from_step: u64,
        step: u64,
    },
    Finished,
}

/// Runs a job locally; returns its summary.
pub fn run(args: &LocalArgs) -> anyhow::Result<Summary> {
    run_with_chaos(args, &[])
}

/// Runs a job locally with the chaos configs in `chaos_files`; returns its summary. Every
/// file is checked before anything starts.
pub fn run_with_chaos(args: &LocalArgs, chaos_files: &[PathBuf]) -> anyhow::Result<Summary> {
    let manifest = Manifest::from_file(&args.file)?;
    let mut spec = manifest.spec.clone();
    if let Some(dir) = &args.data_dir {
        spec.dataset.path = Some(dir.clone());
    }
    let plan = validate(&spec)?;
    let planned = chaos::prepare(chaos_files, &manifest.name, &plan)?;
    // Read the data and build the model once here, so a missing data set or a model that
    // does not fit it fails before any process starts. A server's load reads and checks all
    // four files but converts only the test set: the runner needs no training pixels.
    let data = JobData::load_for(&plan, DataNeeds::Server)?;
    let dimension = Assembly::new(plan.clone(), data)?.config().dimension;
    let executable = std::env::current_exe().context("cannot locate the byzsgd-node executable")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_job(
        args,
        &manifest.name,
        plan,
        dimension,
        &executable,
        planned,
    ))
}

#[allow(clippy::too_many_lines)] // One sequence: start, arm, go, follow, collect, stop.
async fn run_job(
    args: &LocalArgs,
    name: &str,
    plan: Plan,
    dimension: usize,
    executable: &Path,
    planned: Vec<chaos::Planned>,
) -> anyhow::Result<Summary> {
    let run_dir = record::create_run_dir(&args.runs_dir, name)?;
    // Servers write their checkpoints and final model here (`crate::checkpoint`).
    let checkpoint_dir = run_dir.join(CHECKPOINTS);
    if let Some(earlier) = &args.resume {
        record::copy_checkpoints(&earlier.join(CHECKPOINTS), &checkpoint_dir, name)?;
    }
    let nodes: Vec<NodeId> = (0..plan.servers)
        .map(NodeId::server)
        .chain((0..plan.workers).map(NodeId::worker))
        .collect();
    let correct = plan.correct_servers();
    let (output, mut outputs) = mpsc::channel(4096);
    let job_file = std::fs::canonicalize(&args.file)?;
    let launched = Instant::now();
    // Every node gets the token when the job allows chaos, so an operator can also arm a
    // running local job by hand; without the flag the nodes refuse every chaos call.
    let token = plan.spec.chaos.allowed.then(chaos::new_token);
    let launcher = Launcher {
        executable: executable.to_owned(),
        job_file,
        data_dir: args.data_dir.clone(),
        output,
        linger_seconds: if planned.is_empty() {
            1.0
        } else {
            CHAOS_LINGER_SECONDS
        },
        chaos_token: token.clone(),
        // Every run has its own CA, in memory only: its nodes trust each other and nothing else.
        checkpoint_dir,
        ca: if args.insecure {
            None
        } else {
            Some(Arc::new(
                JobCa::generate(name).context("creating the job's certificate authority")?,
            ))
        },
    };
    let mut children = launcher.spawn_all(&nodes).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    children::wait_ready(&http, &children).await?;
    // Where each server starts: step 0, or the checkpoint it resumed from.
    let mut resumed_at: BTreeMap<String, u64> = children::statuses(&http, &children)
        .await
        .into_iter()
        .filter_map(|(node, status)| Some((node.to_string(), status.resumed_from?.step)))
        .collect();

    let runner_metrics = RunnerMetrics::serve(args.admin_listen, name).await?;
    record::write_targets(&run_dir, name, &children, &plan, &runner_metrics.address)?;

    let steps = plan.spec.training.steps;
    let bar = progress_bar(args.no_progress, steps);
    let mut recorder = Recorder::new(&run_dir, &plan)?;
    let mut tracker = Tracker::new(&plan);
    let admin: BTreeMap<NodeId, String> = children
        .iter()
        .map(|child| (child.id, child.admin.clone()))
        .collect();
    let mut campaign = Campaign::new(planned, &run_dir, token)?;
    if !campaign.is_empty() {
        let mut stage = Stage {
            http: &http,
            children: &mut children,
            launcher: &launcher,
            bar: &bar,
        };
        for node in campaign.arm(&mut stage).await? {
            tracker.forget(node);
        }
    }
    children::go(&mut children).await;
    // Times in the CSV and the summary count from here: every node loaded its data and is
    // wired, so start-up (loading the data set in each process) does not blur comparisons.
    let started = Instant::now();
    let startup_seconds = started.duration_since(launched).as_secs_f64();
    let mut interrupted = false;

    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut tick = tokio::time::interval(TICK);
    while !tracker.all_correct_finished() {
        let next = tokio::select! {
            next = outputs.recv() => next,
            _ = tick.tick() => {
                if campaign.is_empty() {
                    continue;
                }
                let mut stage = Stage { http: &http, children: &mut children, launcher: &launcher, bar: &bar };
                for node in campaign.advance(tracker.progress_step(), &mut stage).await? {
                    tracker.forget(node);
                }
                continue;
            }
            _ = &mut interrupt => { interrupted = true; break; }
        };
        let Some(next) = next else { break };
        let wall = started.elapsed().as_secs_f64();
        match next {
            ChildOutput::Log(id, line) => bar.println(format!("[{id}] {line}")),
            ChildOutput::Closed(id) => {
                tracker.closed.insert(id);
            }
            ChildOutput::Progress(id, line) => {
                record_progress(&mut recorder, &mut tracker, id, &line, wall)?;
                for step in tracker.snapshots_ready() {
                    if let Some(drift) =
                        measure_drift(&http, &admin, &correct, step, dimension).await
                    {
                        runner_metrics.max_drift.set(f64::from(drift));
                        recorder.drift(started.elapsed().as_secs_f64(), step, drift)?;
                        tracker.max_drift = tracker.max_drift.max(drift);
                    }
                }
                bar.set_position(tracker.progress_step());
                bar.set_message(tracker.describe());
                if !campaign.is_empty() {
                    let mut stage = Stage {
                        http: &http,
                        children: &mut children,
                        launcher: &launcher,
                        bar: &bar,
                    };
                    for node in campaign
                        .advance(tracker.progress_step(), &mut stage)
                        .await?
                    {
                        tracker.forget(node);
                    }
                }
            }
        }
        if tracker.correct_closed() {
            break;
        }
    }
    bar.finish_and_clear();
    let wall_seconds = started.elapsed().as_secs_f64();
    let statuses = children::statuses(&http, &children).await;
    let peak_rss_bytes = children
        .iter()
        .filter_map(|child| Some((child.id.to_string(), child.peak_rss_bytes()?)))
        .collect();
    stop_children(&mut children).await;
    let mut summary = tracker.summary(&plan, &run_dir, wall_seconds, startup_seconds, interrupted);
    summary.chaos = campaign.summary();
    if !campaign.is_empty() {
        summary.node_chaos = chaos::evidence(&statuses);
    }
    summary.rejected = statuses
        .iter()
        .map(|(node, status)| (node.to_string(), status.rejected))
        .collect();
    summary.peak_rss_bytes = peak_rss_bytes;
    // A server restarted mid-run (a `crash` experiment) names the checkpoint of its latest start.
    for (node, status) in &statuses {
        if let Some(from) = &status.resumed_from {
            resumed_at.insert(node.to_string(), from.step);
        }
    }
    summary.resumed_at = resumed_at;
    recorder.finish(&summary)?;
    if let Err(error) = plot::write(&run_dir, &recorder) {
        eprintln!("warning: no plot: {error:#}");
    }
    Ok(summary)
}

/// Records one progress line of a child; lines that are not progress events are ignored.
fn record_progress(
    recorder: &mut Recorder,
    tracker: &mut Tracker,
    id: NodeId,
    line: &str,
    wall: f64,
) -> anyhow::Result<()> {
    let Ok(progress) = serde_json::from_str::<Progress>(line) else {
        return Ok(());
    };
    match progress {
        Progress::Stepped { step, loss } => {
            recorder.row(wall, step, id, loss, None, None)?;
            tracker.stepped(id, step);
        }
        Progress::Evaluated {
            step,
            loss,
            accuracy,
        } => {
            recorder.evaluation(wall, step, id, loss, accuracy)?;
            tracker.evaluated(id, step, accuracy, wall);
        }
        Progress::Gathered {
            step,
            drift_to_median,
        } => {
            recorder.row(wall, step, id, None, None, drift_to_median)?;
            // A lagging server may jump to a later gather without stepping through the steps
            // in between (`Server::try_catch_up`); after the gather its model is θ_step.
            tracker.stepped(id, step);
        }
        Progress::Recovered { from_step, step } => {
            tracker.stepped(id, step);
            tracker.recoveries.push(record::Recovery {
                node: id.to_string(),
                wall_seconds: wall,
                from_step,
                step,
            });
        }
        Progress::Finished => {
            tracker.finished.insert(id);
        }
    }
    Ok(())
}

fn progress_bar(hidden: bool, steps: u64) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} step {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Closes every child's stdin (their signal to exit), waits briefly, then kills stragglers.
async fn stop_children(children: &mut [ChildNode]) {
    for child in children.iter_mut() {
        child.stdin.take();
    }
    for child in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(5), child.process.wait())
            .await
            .is_err()
        {
            let _ = child.process.kill().await;
        }
    }
}

/// Fetches the correct servers' models at `step` and returns their largest pairwise distance.
async fn measure_drift(
    http: &reqwest::Client,
    admin: &BTreeMap<NodeId, String>,
    correct: &[usize],
    step: u64,
    dimension: usize,
) -> Option<f32> {
    let mut models = Vec::with_capacity(correct.len());
    for &server in correct {
        let address = admin.get(&NodeId::server(server))?;
        let response = http
            .get(format!("http://{address}/model?step={step}"))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let bytes = response.bytes().await.ok()?;
        let tensor = crate::rpc::proto::Tensor {
            length: (bytes.len() / 4) as u32,
            data: bytes,
        };
        models.push(wire::decode_tensor(&tensor, dimension).ok()?);
    }
    let mut largest = 0.0_f32;
    for (i, a) in models.iter().enumerate() {
        for b in &models[i + 1..] {
            largest = largest.max(byzsgd_core::protocol::server::distance(a.view(), b.view()));
        }
    }
    Some(largest)
}

/// What the runner knows about the job's progress.
#[derive(Debug)]
struct Tracker {
    correct: BTreeSet<usize>,
    honest_workers: Vec<usize>,
    steps: BTreeMap<NodeId, u64>,
    /// Accuracy of each correct server per evaluated step.
    evaluations: BTreeMap<u64, BTreeMap<usize, f32>>,
    finished: BTreeSet<NodeId>,
    closed: BTreeSet<NodeId>,
    snapshot_every: u64,
    measured: BTreeSet<u64>,
    max_drift: f32,
    latest_accuracy: Option<(u64, f32)>,
    target: Option<f32>,
    time_to_target: Option<f64>,
    /// When every correct server had finished.
    servers_done_at: Option<Instant>,
    /// Restarted servers that adopted their peers' models.
    recoveries: Vec<record::Recovery>,
}

impl Tracker {
    fn new(plan: &Plan) -> Self {
        Self {
            correct: plan.correct_servers().into_iter().collect(),
            honest_workers: (0..plan.workers)
                .filter(|&index| plan.worker_behaviours[index].is_honest())
                .collect(),
            steps: BTreeMap::new(),
            evaluations: BTreeMap::new(),
            finished: BTreeSet::new(),
            closed: BTreeSet::new(),
            snapshot_every: plan.spec.training.evaluate_every.max(1),
            measured: BTreeSet::new(),
            max_drift: 0.0,
            latest_accuracy: None,
            target: plan
                .spec
                .convergence
                .as_ref()
                .map(|convergence| convergence.target_accuracy),
            time_to_target: None,
            servers_done_at: None,
            recoveries: Vec::new(),
        }
    }

    fn is_correct_server(&self, id: NodeId) -> bool {
        id.role == Role::Server && self.correct.contains(&id.index)
    }

    /// Stops waiting for a node a chaos crashed: it no longer counts as correct or honest,
    /// so the job ends with the remaining quorum.
    fn forget(&mut self, id: NodeId) {
        match id.role {
            Role::Server => {
                self.correct.remove(&id.index);
            }
            Role::Worker => self.honest_workers.retain(|&index| index != id.index),
        }
    }

    /// A node reached `step`. Never moves backwards: a server that catches up through a
    /// later gather (`gathered`) may still emit an older step's line after it.
    fn stepped(&mut self, id: NodeId, step: u64) {
        let reached = self.steps.entry(id).or_default();
        *reached = (*reached).max(step);
    }

    fn evaluated(&mut self, id: NodeId, step: u64, accuracy: Option<f32>, wall: f64) {
        let (Some(accuracy), true) = (accuracy, self.is_correct_server(id)) else {
            return;
        };
        let entry = self.evaluations.entry(step).or_default();
        entry.insert(id.index, accuracy);
        if entry.len() == self.correct.len() {
            let mut values: Vec<f32> = entry.values().copied().collect();
            let median = byzsgd_core::protocol::median_of(&mut values);
            self.latest_accuracy = Some((step, median));
            if self.time_to_target.is_none() && self.target.is_some_and(|target| median >= target) {
                self.time_to_target = Some(wall);
            }
        }
    }

    /// Snapshot steps every correct server has passed and that are not measured yet.
    fn snapshots_ready(&mut self) -> Vec<u64> {
        let reached = self
            .correct
            .iter()
            .map(|&index| self.steps.get(&NodeId::server(index)).copied().unwrap_or(0))
            .min()
            .unwrap_or(0);
        let mut ready = Vec::new();
        let mut step = self.snapshot_every;
        while step <= reached {
            if self.measured.insert(step) {
                ready.push(step);
            }
            step += self.snapshot_every;
        }
        ready
    }

    fn progress_step(&self) -> u64 {
        self.correct
            .iter()
            .map(|&index| self.steps.get(&NodeId::server(index)).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    fn describe(&self) -> String {
        let accuracy = self.latest_accuracy.map_or_else(
            || "-".to_owned(),
            |(_, accuracy)| format!("{:.1}%", accuracy * 100.0),
        );
        format!("accuracy {accuracy}  max drift {:.3e}", self.max_drift)
    }

    /// Whether every node that follows the protocol is done. Byzantine nodes are not waited
    /// for: an attacker may lag or stop at will. Nor is an honest worker that fell so far
    /// behind (e.g. cut off by a chaos partition) that it is still not done
    /// [`WORKER_GRACE`] after every correct server finished: servers only need a quorum of
    /// workers, so such a worker may never catch up.
    fn all_correct_finished(&mut self) -> bool {
        let servers_done = self
            .correct
            .iter()
            .all(|&index| self.finished.contains(&NodeId::server(index)));
        if !servers_done {
            return false;
        }
        let servers_done_at = *self.servers_done_at.get_or_insert_with(Instant::now);
        let workers_done = self.honest_workers.iter().all(|&index| {
            self.finished.contains(&NodeId::worker(index))
                || self.closed.contains(&NodeId::worker(index))
        });
        workers_done || servers_done_at.elapsed() >= WORKER_GRACE
    }

    fn correct_closed(&self) -> bool {
        self.correct
            .iter()
            .all(|&index| self.closed.contains(&NodeId::server(index)))
    }

    fn summary(
        &self,
        plan: &Plan,
        run_dir: &Path,
        wall_seconds: f64,
        startup_seconds: f64,
        interrupted: bool,
    ) -> Summary {
        let steps = self.progress_step();
        let final_accuracy = self.latest_accuracy.map(|(_, accuracy)| accuracy);
        Summary {
            run_dir: run_dir.to_owned(),
            wall_seconds,
            startup_seconds,
            steps,
            steps_per_second: if wall_seconds > 0.0 {
                steps as f64 / wall_seconds
            } else {
                0.0
            },
            final_accuracy,
            max_drift: self.max_drift,
            target_accuracy: self.target,
            time_to_target_seconds: self.time_to_target,
            converged: matches!((self.target, final_accuracy), (Some(target), Some(accuracy)) if accuracy >= target),
            interrupted,
            byzantine_nodes: plan
                .server_behaviours
                .iter()
                .chain(&plan.worker_behaviours)
                .filter(|behaviour| !behaviour.is_honest())
                .count(),
            chaos: Vec::new(),
            node_chaos: BTreeMap::new(),
            rejected: BTreeMap::new(),
            resumed_at: BTreeMap::new(),
            recoveries: self.recoveries.clone(),
            peak_rss_bytes: BTreeMap::new(),
        }
    }
}

/// The runner's own metrics endpoint.
struct RunnerMetrics {
    address: String,
    max_drift: prometheus::Gauge,
}

impl RunnerMetrics {
    async fn serve(listen: std::net::SocketAddr, job: &str) -> anyhow::Result<Self> {
        let labels = [("job_name".to_owned(), job.to_owned())]
            .into_iter()
            .collect();
        let registry = prometheus::Registry::new_custom(Some("byzsgd".into()), Some(labels))?;
        let max_drift = prometheus::Gauge::new(
            "correct_servers_max_drift",
            "Largest pairwise distance between correct servers' models at the last measured step",
        )?;
        registry.register(Box::new(max_drift.clone()))?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot bind {listen}"))?;
        let address = listener.local_addr()?.to_string();
        let registry = Arc::new(registry);
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move { crate::metrics::render(&registry) }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { address, max_drift })
    }
}

#[cfg(test)]
mod tests {
    use byzsgd_core::protocol::Event;

    use super::*;
    use crate::runtime::progress_line;

    /// A lagging server may catch up through the closing gather without a `stepped` line for
    /// the last steps; the job's progress is where every correct server got to, gather included.
    #[test]
    fn a_server_that_caught_up_at_a_gather_counts_as_there() {
        let dir = tempfile::tempdir().unwrap();
        let text = include_str!("../../../examples/quickstart.yaml");
        let plan = validate(&Manifest::parse(text, "quickstart").unwrap().spec).unwrap();
        let mut recorder = Recorder::new(dir.path(), &plan).unwrap();
        let mut tracker = Tracker::new(&plan);
        let steps = plan.spec.training.steps;
        let stepped = |step| Event::Stepped { step, loss: 0.5 };
        let gathered = |step| Event::Gathered {
            step,
            drift_to_median: 0.0,
            peer_distances: Vec::new(),
        };
        for index in plan.correct_servers() {
            let id = NodeId::server(index);
            // Server 0 stepped to steps − 1, then adopted the gather at `steps`; the others
            // gathered there, and a late line of an earlier step never moves progress back.
            let events = if index == 0 {
                [stepped(steps - 1), gathered(steps)]
            } else {
                [gathered(steps), stepped(steps - 3)]
            };
            for event in &events {
                let line = progress_line(id, event).unwrap();
                record_progress(&mut recorder, &mut tracker, id, &line, 0.0).unwrap();
            }
        }
        assert_eq!(tracker.progress_step(), steps);
    }
}
