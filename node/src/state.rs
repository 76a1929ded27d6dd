//! What a running node shares between its driver ([`crate::runtime`]), its admin server
//! ([`crate::admin`]) and the process that starts it: how the node is wired
//! ([`RuntimeOptions`]), the chaos controls a chaos-enabled job gets ([`ChaosControl`]), and the
//! live state the admin port reads ([`Shared`]: metrics, `/status`, model snapshots,
//! readiness). Below both the driver and the admin server, so neither imports the other's
//! internals.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use byzsgd_api::admin::{CheckpointStatus, Status};
use byzsgd_core::{
    job::Role,
    protocol::{NodeId, chaos::ChaosHandle},
};
use prometheus::Registry;

use crate::{checkpoint::CheckpointStore, metrics::Metrics, rpc::Transport};

/// How a node process is wired.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The job's name; messages of other jobs are rejected.
    pub job: String,
    /// This node.
    pub me: NodeId,
    /// Parameters of the model (the length of every vector).
    pub dimension: usize,
    /// `host:port` of every node of the job (this one may be included; it is skipped).
    pub peers: BTreeMap<NodeId, String>,
    /// How peer links are secured, and so who sent a stream.
    pub transport: Transport,
    /// The attack this node runs, if any (exported as `byzsgd_byzantine_active`).
    pub attack: Option<String>,
    /// Keep a model snapshot every this many steps (servers).
    pub snapshot_every: u64,
    /// How long to keep serving after the node finished, so slower peers can drain.
    pub linger: Duration,
    /// Print progress as JSON lines on stdout (the local runner reads them).
    pub progress_lines: bool,
    /// Quorum sizes of the job, (models n_ps − f_ps, gradients n_w − f_w), exported as
    /// `byzsgd_quorum_size{kind}`.
    pub quorums: (usize, usize),
    /// Run-time attack switching, present only when the job allows chaos
    /// (`spec.chaos.allowed`); `POST /chaos` refuses otherwise.
    pub chaos: Option<ChaosControl>,
    /// The bearer token `POST /chaos` requires; without one the endpoint refuses every call.
    pub chaos_token: Option<String>,
    /// Where a server writes its checkpoints and final model, and how often (`None`: nowhere).
    pub checkpoints: Option<Checkpointing>,
}

/// A server's checkpoint schedule ([`crate::checkpoint`]).
#[derive(Debug, Clone)]
pub struct Checkpointing {
    /// Its folder.
    pub store: CheckpointStore,
    /// Write one every this many steps (`spec.training.checkpointEvery`; 0: only the final
    /// model is exported).
    pub every: u64,
    /// The checkpoint the server resumed from, shown in `/status` until it writes a newer one.
    pub resumed: Option<CheckpointStatus>,
}

/// What the admin server needs to arm a chaos-enabled node.
#[derive(Debug, Clone)]
pub struct ChaosControl {
    /// Arms the node's attack.
    pub handle: ChaosHandle,
    /// Nodes of this node's role in the job (n_ps or n_w), to validate attack parameters.
    pub replicas: usize,
    /// Declared Byzantine nodes of this node's role (f_ps or f_w).
    pub byzantine: usize,
    /// Servers of the job (n_ps), to check `partition` peers.
    pub servers: usize,
    /// Workers of the job (n_w), to check `partition` peers.
    pub workers: usize,
    /// Seed of the `delay` jitter.
    pub seed: u64,
}

/// State the admin server reads.
#[derive(Debug)]
pub struct Shared {
    /// The node's metric registry.
    pub registry: Registry,
    /// The metrics.
    pub metrics: Metrics,
    /// `/status`.
    pub status: Mutex<Status>,
    /// Server model snapshots by step (little-endian f32 bytes).
    pub snapshots: Mutex<BTreeMap<u64, bytes::Bytes>>,
    /// Set once the gRPC server listens and peers are wired.
    pub ready: std::sync::atomic::AtomicBool,
    /// This node's role (which attacks `POST /chaos` accepts).
    pub role: Role,
    /// Run-time attack switching, when the job allows chaos.
    pub chaos: Option<ChaosControl>,
    /// The bearer token of `POST /chaos`, if configured.
    pub chaos_token: Option<String>,
}

impl Shared {
    /// Fresh state with a registry under the `byzsgd` prefix.
    pub fn new(options: &RuntimeOptions) -> anyhow::Result<Arc<Self>> {
        let labels = [("role".to_owned(), options.me.role.as_str().to_owned())]
            .into_iter()
            .collect();
        let registry = Registry::new_custom(Some("byzsgd".into()), Some(labels))?;
        let metrics = Metrics::register(&registry)?;
        if let Some(attack) = &options.attack {
            metrics.byzantine_active.with_label_values(&[attack]).set(1);
        }
        let (models, gradients) = options.quorums;
        for (kind, size) in [("model", models), ("gradient", gradients)] {
            metrics
                .quorum_size
                .with_label_values(&[kind])
                .set(i64::try_from(size).unwrap_or(i64::MAX));
        }
        let resumed_from = options
            .checkpoints
            .as_ref()
            .and_then(|checkpoints| checkpoints.resumed.clone());
        let status = Status {
            job: options.job.clone(),
            role: options.me.role.as_str().to_owned(),
            index: options.me.index,
            peers: options
                .peers
                .keys()
                .filter(|peer| **peer != options.me)
                .map(ToString::to_string)
                .collect(),
            byzantine: options.attack.clone(),
            // A server resumed from a checkpoint is at that step before it takes its first
            // one; reporting 0 until then would drag the job's median step down after a
            // restart of every pod.
            step: resumed_from
                .as_ref()
                .map_or(0, |checkpoint| checkpoint.step),
            checkpoint: resumed_from.clone(),
            resumed_from,
            ..Status::default()
        };
        Ok(Arc::new(Self {
            registry,
            metrics,
            status: Mutex::new(status),
            snapshots: Mutex::new(BTreeMap::new()),
            ready: std::sync::atomic::AtomicBool::new(false),
            role: options.me.role,
            chaos: options.chaos.clone(),
            chaos_token: options.chaos_token.clone(),
        }))
    }

    /// The current `/status`, with the chaos report read live from the handle.
    pub fn status(&self) -> Status {
        let mut status = self
            .status
            .lock()
            .map(|status| status.clone())
            .unwrap_or_default();
        status.chaos = self.chaos.as_ref().map(|control| control.handle.report());
        status.rejected = self.metrics.rejected_count();
        status
    }

    pub(crate) fn update_status(&self, update: impl FnOnce(&mut Status)) {
        if let Ok(mut status) = self.status.lock() {
            update(&mut status);
        }
    }
}
