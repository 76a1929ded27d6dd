//! Drives one protocol node over the network: the gRPC service feeds incoming messages to the
//! node, the node's outputs go to the per-peer senders, its events become metrics, `/status`
//! and (for the local runner) JSON progress lines on stdout. The mini-redis seam:
//! [`run`] takes already-bound listeners and a shutdown future, so tests bind `127.0.0.1:0`;
//! [`run_gated`] also holds the node back until a start signal (the local runner arms chaos
//! on every node before any of them takes a step).
//!
//! Chaos `delay` and `partition` orders act here, where messages leave and arrive: a delayed
//! send waits on its own task (seeded jitter) so the node's loop never sleeps, and a
//! partitioned peer's messages are dropped both ways and counted as
//! `byzsgd_rejected_total{reason="partition"}`.
//!
//! The node itself runs on this task; its CPU-heavy calls (gradients, aggregation) run under
//! `block_in_place` so the transport keeps moving meanwhile.

use std::{
    collections::HashMap,
    future::Future,
    io::Write,
    sync::Arc,
    time::{Duration, Instant},
};

use byzsgd_api::admin::{CheckpointStatus, GatherStatus, Status};
use byzsgd_core::{
    job::Role,
    protocol::{Event, Node, NodeId, Outputs, chaos::NetworkFault, checkpoint::Checkpoint},
};
use ndarray::Array1;
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

use crate::{
    admin,
    metrics::Direction,
    rpc::{
        Transport,
        inbox::{Inbound, InboxSender, fair_inbox},
        peers::Peers,
        proto::{Tensor, node_server::NodeServer},
        service::NodeService,
        wire,
    },
    state::{Checkpointing, RuntimeOptions, Shared},
};

/// Model snapshots a server keeps for `/model?step=` (the local runner reads them to measure
/// the true drift between correct servers).
const SNAPSHOTS: usize = 8;

/// Messages buffered per sender between the gRPC service and the protocol: a few steps of
/// one peer; a fuller queue holds back that peer's stream only (`rpc::inbox`).
const PER_SENDER_QUEUE: usize = 16;

/// How long shutdown waits for open connections before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Starts the gRPC server on `grpc` (behind the TLS acceptor under mutual TLS); good messages
/// go to `inbox`. It stops when `stopped` turns true.
fn start_grpc(
    options: &RuntimeOptions,
    shared: &Shared,
    grpc: TcpListener,
    inbox: InboxSender,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let max_message = wire::max_message_bytes(options.dimension);
    let identity = options
        .transport
        .identity(&options.job, options.peers.keys().copied());
    let service = NodeService::new(
        &options.job,
        options.dimension,
        identity,
        inbox,
        shared.metrics.clone(),
    );
    let until_stopped = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(crate::rpc::STREAM_WINDOW_BYTES)
        .initial_connection_window_size(crate::rpc::CONNECTION_WINDOW_BYTES)
        .add_service(
            NodeServer::new(service)
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
        );
    match &options.transport {
        Transport::MutualTls(tls) => {
            let accepted = ReceiverStream::new(tls.accept(grpc, shared.metrics.clone()));
            tokio::spawn(serve_grpc(
                router.serve_with_incoming_shutdown(accepted, until_stopped),
            ))
        }
        Transport::Insecure => tokio::spawn(serve_grpc(
            router.serve_with_incoming_shutdown(TcpListenerStream::new(grpc), until_stopped),
        )),
    }
}

/// Runs the gRPC server until its shutdown signal; a failure is logged (the node carries on:
/// its peers see it as silent, which the protocol tolerates).
async fn serve_grpc(server: impl Future<Output = Result<(), tonic::transport::Error>>) {
    if let Err(error) = server.await {
        tracing::error!(%error, "gRPC server failed");
    }
}

/// Runs `node` until it finished (plus `linger`) or `shutdown` resolves; returns its last
/// status.
pub async fn run(
    node: Box<dyn Node>,
    options: RuntimeOptions,
    grpc: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<Status> {
    run_gated(
        node,
        options,
        grpc,
        admin_listener,
        std::future::ready(()),
        shutdown,
    )
    .await
}

/// As [`run`], but the node takes no step before `start` resolves. The gRPC and admin
/// servers answer meanwhile (`/readyz` turns ready), so a caller can arm chaos first and
/// know that "from step s" is honoured exactly.
pub async fn run_gated(
    mut node: Box<dyn Node>,
    options: RuntimeOptions,
    grpc: TcpListener,
    admin_listener: TcpListener,
    start: impl Future<Output = ()> + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<Status> {
    let shared = Shared::new(&options)?;
    let (stop, stopped) = watch::channel(false);
    let max_message = wire::max_message_bytes(options.dimension);

    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        shared.clone(),
        stopped.clone(),
    ));

    let (inbox, mut inbound) = fair_inbox(PER_SENDER_QUEUE);
    let grpc_task = start_grpc(&options, &shared, grpc, inbox, stopped.clone());
    let peers = Peers::spawn(
        (&options.job, options.me),
        &options.peers,
        &options.transport,
        max_message,
        &stopped,
    );
    shared
        .ready
        .store(true, std::sync::atomic::Ordering::SeqCst);

    tokio::pin!(shutdown);
    let interrupted = tokio::select! {
        () = start => false,
        () = &mut shutdown => true,
    };
    let mut driver = Driver {
        options: &options,
        shared: &shared,
        peers,
        waiting_since: Instant::now(),
        last_step: Instant::now(),
        active_attack: options.attack.clone(),
        jitter: StdRng::seed_from_u64(options.chaos.as_ref().map_or(0, |control| control.seed)),
        flood: None,
        checkpointed_step: options
            .checkpoints
            .as_ref()
            .and_then(|checkpoints| checkpoints.resumed.as_ref())
            .map_or(0, |checkpoint| checkpoint.step),
    };
    if interrupted {
        return finish(&shared, stop, grpc_task, admin_task).await;
    }
    let started = Instant::now();
    let elapsed = move || started.elapsed().as_secs_f64();
    let out = tokio::task::block_in_place(|| node.start(elapsed()));
    driver.dispatch(&*node, out, Instant::now());

    let mut finished_at: Option<Instant> = None;
    loop {
        let deadline = node
            .next_deadline()
            .map(|at| started + Duration::from_secs_f64(at.max(0.0)));
        let linger_end = finished_at.map(|at| at + options.linger);
        let wake = [deadline, linger_end].into_iter().flatten().min();
        tokio::select! {
            () = &mut shutdown => break,
            message = inbound.recv() => {
                let Some(Inbound { from, payload }) = message else { break };
                if driver.partitioned(from, payload.step()) {
                    continue;
                }
                let received = Instant::now();
                match tokio::task::block_in_place(|| node.handle(elapsed(), from, payload)) {
                    Ok(out) => driver.dispatch(&*node, out, received),
                    Err(rejection) => {
                        shared.metrics.rejected(&from, rejection);
                    }
                }
            }
            () = sleep_until(wake) => {
                if linger_end.is_some_and(|end| Instant::now() >= end) {
                    break;
                }
                let out = tokio::task::block_in_place(|| node.tick(elapsed()));
                driver.dispatch(&*node, out, Instant::now());
            }
        }
        if finished_at.is_none() && node.finished() {
            finished_at = Some(Instant::now());
        }
    }

    finish(&shared, stop, grpc_task, admin_task).await
}

/// Stops the servers and returns the last status.
async fn finish(
    shared: &Shared,
    stop: watch::Sender<bool>,
    grpc_task: tokio::task::JoinHandle<()>,
    admin_task: tokio::task::JoinHandle<()>,
) -> anyhow::Result<Status> {
    // Graceful shutdown waits for open streams, but peers keep theirs open for their whole
    // life: give in-flight requests a moment, then stop regardless.
    let _ = stop.send(true);
    for task in [grpc_task, admin_task] {
        let abort = task.abort_handle();
        if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
            abort.abort();
        }
    }
    Ok(shared.status())
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// What happens to one outgoing message under chaos.
enum Delivery {
    /// Send it now (no network fault covers it).
    Now,
    /// Drop it (a partition cuts its receiver off).
    Drop,
    /// Send it after this delay.
    After(Duration),
}

/// Turns a node's outputs into sends, metrics, status and progress lines.
struct Driver<'a> {
    options: &'a RuntimeOptions,
    shared: &'a Shared,
    peers: Peers,
    /// When the node last made progress (start of its current quorum wait).
    waiting_since: Instant,
    last_step: Instant,
    /// The attack `byzsgd_byzantine_active` last reported as 1.
    active_attack: Option<String>,
    /// Draws the random part of chaos delays.
    jitter: StdRng,
    /// The `flood` chaos task, while one runs: its target and handle.
    flood: Option<(NodeId, bool, tokio::task::JoinHandle<()>)>,
    /// The step of the last periodic checkpoint written (or resumed from).
    checkpointed_step: u64,
}

impl Driver<'_> {
    /// Whether a message of `step` from `from` falls to a chaos partition; counts it if so.
    fn partitioned(&self, from: NodeId, step: u64) -> bool {
        let Some(control) = &self.options.chaos else {
            return false;
        };
        let cut = matches!(
            control.handle.network_fault(step),
            Some(NetworkFault::Partition { peers }) if peers.contains(&from)
        );
        if cut {
            self.shared.metrics.partitioned(from);
        }
        cut
    }

    /// What chaos does to a message of `step` to `to`; records the step when it acts.
    fn fault(&mut self, to: NodeId, step: u64) -> Delivery {
        let Some(control) = self.options.chaos.as_ref() else {
            return Delivery::Now;
        };
        let delivery = match control.handle.network_fault(step) {
            None => return Delivery::Now,
            Some(NetworkFault::Partition { peers }) => {
                if !peers.contains(&to) {
                    return Delivery::Now;
                }
                Delivery::Drop
            }
            Some(NetworkFault::Delay { latency, jitter }) => {
                let extra = if jitter.is_zero() {
                    Duration::ZERO
                } else {
                    jitter.mul_f64(self.jitter.random::<f64>())
                };
                Delivery::After(latency + extra)
            }
        };
        control.handle.record_applied(step);
        delivery
    }

    fn dispatch(&mut self, node: &dyn Node, out: Outputs, received: Instant) {
        // Encode each distinct vector once, even when it is broadcast to every peer.
        let mut encoded: HashMap<*const Array1<f32>, Tensor> = HashMap::new();
        for (to, payload) in out.messages {
            let tensor = payload.vector().map(|vector| {
                encoded
                    .entry(Arc::as_ptr(vector))
                    .or_insert_with(|| wire::encode_tensor(vector))
                    .clone()
            });
            let envelope = wire::envelope(&self.options.job, &payload, tensor);
            let bytes = payload.vector_bytes();
            match self.fault(to, payload.step()) {
                Delivery::Now => {}
                Delivery::Drop => continue,
                Delivery::After(delay) => {
                    self.send_later(to, envelope, payload.kind(), bytes, delay);
                    continue;
                }
            }
            if self.peers.send(to, envelope) {
                self.shared
                    .metrics
                    .message(Direction::Out, payload.kind(), bytes);
            } else {
                tracing::debug!(peer = %to, kind = payload.kind().as_str(), "peer queue full or unknown; message dropped");
            }
        }
        for event in out.events {
            self.record(node, &event, received);
        }
        self.sync_chaos();
        self.sync_flood(node.step());
    }

    /// Starts the `flood` chaos task when an order covers `step`, stops it when none does.
    fn sync_flood(&mut self, step: u64) {
        let wanted = self
            .options
            .chaos
            .as_ref()
            .and_then(|control| control.handle.flood(step));
        let running = self
            .flood
            .as_ref()
            .map(|(target, malformed, _)| (*target, *malformed));
        if wanted == running {
            if wanted.is_some()
                && let Some(control) = &self.options.chaos
            {
                control.handle.record_applied(step);
            }
            return;
        }
        if let Some((_, _, task)) = self.flood.take() {
            task.abort();
        }
        let Some((target, malformed)) = wanted else {
            return;
        };
        let Some(link) = self.peers.sender(target) else {
            return;
        };
        let envelope = crate::rpc::flood::junk(
            &self.options.job,
            self.options.me,
            target,
            self.options.dimension,
            malformed,
        );
        tracing::warn!(%target, malformed, "chaos: flooding");
        let task = tokio::spawn(crate::rpc::flood::flood(link, envelope));
        self.flood = Some((target, malformed, task));
    }

    /// Sends `envelope` to `to` after `delay` on its own task, so the node's loop goes on.
    fn send_later(
        &self,
        to: NodeId,
        envelope: crate::rpc::proto::Envelope,
        kind: byzsgd_core::protocol::Kind,
        bytes: usize,
        delay: Duration,
    ) {
        let Some(sender) = self.peers.sender(to) else {
            return;
        };
        let metrics = self.shared.metrics.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if sender.try_send(envelope).is_ok() {
                metrics.message(Direction::Out, kind, bytes);
            } else {
                tracing::debug!(peer = %to, "peer queue full or closed; delayed message dropped");
            }
        });
    }

    /// Makes `byzsgd_byzantine_active{attack}` and `/status` follow what a chaos-enabled node
    /// applies: 1 for the attack inside its window, 0 once it ended.
    fn sync_chaos(&mut self) {
        let Some(control) = &self.options.chaos else {
            return;
        };
        let active = control.handle.active();
        if active == self.active_attack {
            return;
        }
        let gauge = &self.shared.metrics.byzantine_active;
        if let Some(previous) = &self.active_attack {
            gauge.with_label_values(&[previous]).set(0);
        }
        if let Some(attack) = &active {
            gauge.with_label_values(&[attack]).set(1);
        }
        self.shared
            .update_status(|status| status.byzantine.clone_from(&active));
        self.active_attack = active;
    }

    fn record(&mut self, node: &dyn Node, event: &Event, received: Instant) {
        let metrics = &self.shared.metrics;
        metrics.observe(event);
        let progress = match event {
            Event::Stepped { .. } => Some("gradient"),
            Event::GradientSent { .. } => Some("model"),
            Event::Gathered { .. } => Some("gather"),
            _ => None,
        };
        if let Some(kind) = progress {
            metrics
                .quorum_wait_seconds
                .with_label_values(&[kind])
                .observe(received.duration_since(self.waiting_since).as_secs_f64());
            self.waiting_since = Instant::now();
        }
        match event {
            Event::Stepped { step, loss } => {
                metrics
                    .step_seconds
                    .observe(self.last_step.elapsed().as_secs_f64());
                self.last_step = Instant::now();
                self.shared.update_status(|status| {
                    status.step = *step;
                    status.loss = loss.is_finite().then_some(*loss);
                });
                if self.options.me.role == Role::Server
                    && step % self.options.snapshot_every.max(1) == 0
                {
                    self.snapshot(node, *step);
                }
                self.checkpoint_if_due(node, *step);
            }
            Event::GradientSent { step, loss } => {
                metrics
                    .step_seconds
                    .observe(self.last_step.elapsed().as_secs_f64());
                self.last_step = Instant::now();
                self.shared.update_status(|status| {
                    status.step = step + 1;
                    status.loss = loss.is_finite().then_some(*loss);
                });
            }
            Event::Evaluated {
                step,
                loss,
                accuracy,
            } => self.shared.update_status(|status| {
                status.accuracy = Some(*accuracy);
                status.accuracy_step = Some(*step);
                status.test_loss = Some(*loss);
            }),
            Event::Gathered {
                step,
                drift_to_median,
                ..
            } => {
                self.shared.update_status(|status| {
                    // A lagging server may catch up through a later gather, skipping steps.
                    status.step = status.step.max(*step);
                    status.last_gather = Some(GatherStatus {
                        step: *step,
                        drift_to_median: *drift_to_median,
                    });
                });
                self.checkpoint_if_due(node, *step);
            }
            Event::Recovered {
                from_step,
                step,
                peers,
            } => {
                let peers: Vec<String> = peers.iter().map(ToString::to_string).collect();
                tracing::warn!(
                    from_step,
                    step,
                    ?peers,
                    "restarted behind the job: adopted the median of the peers' models"
                );
                self.shared.update_status(|status| status.step = *step);
                self.checkpoint_if_due(node, *step);
            }
            Event::Finished => {
                self.shared.update_status(|status| status.finished = true);
                if let Some(checkpoints) = &self.options.checkpoints {
                    // One copy of the final state serves both the checkpoint and the export.
                    if let Some(checkpoint) = node.checkpoint() {
                        write_checkpoint(self.shared, &checkpoint, checkpoints);
                        export_model(self.shared, &checkpoint, checkpoints);
                    }
                }
            }
            _ => {}
        }
        if self.options.progress_lines
            && let Some(line) = progress_line(self.options.me, event)
        {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        }
    }

    /// Writes a periodic checkpoint when `step` has crossed a multiple of
    /// `checkpointEvery` since the last one. Crossing, not landing on, a multiple: a server
    /// that catches up through a gather or a recovery skips steps, and would otherwise never
    /// checkpoint again.
    fn checkpoint_if_due(&mut self, node: &dyn Node, step: u64) {
        let Some(checkpoints) = &self.options.checkpoints else {
            return;
        };
        if checkpoints.every == 0
            || step / checkpoints.every <= self.checkpointed_step / checkpoints.every
        {
            return;
        }
        if let Some(checkpoint) = node.checkpoint() {
            write_checkpoint(self.shared, &checkpoint, checkpoints);
            self.checkpointed_step = step;
        }
    }

    fn snapshot(&self, node: &dyn Node, step: u64) {
        let Some(model) = node.model() else { return };
        let tensor = wire::encode_tensor(&model.to_owned());
        if let Ok(mut snapshots) = self.shared.snapshots.lock() {
            snapshots.insert(step, tensor.data);
            while snapshots.len() > SNAPSHOTS {
                snapshots.pop_first();
            }
        }
    }
}

/// Writes the server's state as a checkpoint and names it in `/status`. A failure (disk full,
/// volume gone) is logged and counted, never fatal: training goes on, only the restart point
/// gets older.
fn write_checkpoint(shared: &Shared, checkpoint: &Checkpoint, checkpoints: &Checkpointing) {
    match tokio::task::block_in_place(|| checkpoints.store.write(checkpoint)) {
        Ok(folder) => {
            shared
                .metrics
                .checkpoint_step
                .set(i64::try_from(checkpoint.step).unwrap_or(i64::MAX));
            shared.update_status(|status| {
                status.checkpoint = Some(CheckpointStatus {
                    step: checkpoint.step,
                    path: folder.display().to_string(),
                });
            });
        }
        Err(error) => {
            shared.metrics.checkpoint_failures_total.inc();
            tracing::warn!(
                step = checkpoint.step,
                error = format!("{error:#}"),
                "cannot write a checkpoint"
            );
        }
    }
}

/// Writes the final model (`final/model.npy`) and names it in `/status`.
fn export_model(shared: &Shared, checkpoint: &Checkpoint, checkpoints: &Checkpointing) {
    let accuracy = shared.status().accuracy;
    match tokio::task::block_in_place(|| {
        checkpoints
            .store
            .export(&checkpoint.params, checkpoint.step, accuracy)
    }) {
        Ok(path) => {
            tracing::info!(model = %path.display(), step = checkpoint.step, "exported the final model");
            shared.update_status(|status| status.exported_model = Some(path.display().to_string()));
        }
        Err(error) => {
            shared.metrics.checkpoint_failures_total.inc();
            tracing::warn!(
                error = format!("{error:#}"),
                "cannot export the final model"
            );
        }
    }
}

/// One JSON line per interesting event, for the local runner.
pub fn progress_line(me: NodeId, event: &Event) -> Option<String> {
    let value = match event {
        Event::Stepped { step, loss } => {
            serde_json::json!({"event": "stepped", "node": me.to_string(), "step": step, "loss": finite(*loss)})
        }
        Event::Evaluated {
            step,
            loss,
            accuracy,
        } => serde_json::json!({
            "event": "evaluated", "node": me.to_string(), "step": step, "loss": finite(*loss), "accuracy": finite(*accuracy)
        }),
        Event::Gathered {
            step,
            drift_to_median,
            ..
        } => serde_json::json!({
            "event": "gathered", "node": me.to_string(), "step": step, "driftToMedian": finite(*drift_to_median)
        }),
        Event::Recovered {
            from_step, step, ..
        } => serde_json::json!({
            "event": "recovered", "node": me.to_string(), "fromStep": from_step, "step": step
        }),
        Event::Finished => serde_json::json!({"event": "finished", "node": me.to_string()}),
        _ => return None,
    };
    Some(value.to_string())
}

fn finite(value: f32) -> Option<f32> {
    value.is_finite().then_some(value)
}
