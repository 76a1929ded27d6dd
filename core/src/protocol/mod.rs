//! ByzSGD's server and worker as pure state machines (sans-IO, after raft-rs): a node is fed
//! incoming messages with [`Node::handle`] and time with [`Node::tick`], and answers with the
//! messages to send and the events to record. No sockets, no threads, no clocks: the caller —
//! the in-memory [`crate::sim`] harness or the gRPC runtime — owns all of that, so the whole
//! algorithm runs deterministically in tests.
//!
//! # The algorithm (PAPER.md §3)
//!
//! *Scatter step t.* Every server sends its model θ_t to every worker. A worker waits for the
//! step-t models of the first q_ps = n_ps − f_ps distinct servers, takes their coordinate-wise
//! median, computes a stochastic gradient there and sends it to every server. A server waits for
//! the step-t gradients of the first q_w = n_w − f_w distinct workers, aggregates them with the
//! gradient rule (MDA by default) and updates θ_{t+1} = θ_t − η·ĝ.
//!
//! *Gather (DMC) every T steps.* Servers send their model to every server, wait for q_ps models
//! and replace their own by the coordinate-wise median.
//!
//! # Decisions where the paper is unclear (PAPER.md §10.2)
//!
//! - A server's **own model counts** in its gather quorum: it contributes it at once and waits
//!   for q_ps − 1 peers. With n_ps ≥ 3·f_ps + 2 the quorum still holds a majority of correct models.
//! - Gathers happen when the step counter reaches a positive multiple of T (t mod T = 0, t > 0),
//!   before that step's scatter.
//! - Training **ends with a gather**: at t = steps every correct server gathers once more and
//!   reports (and evaluates) the median, whatever steps mod T is. The paper's guarantee is about
//!   correct servers' models staying close; without the closing DMC each server would report
//!   a model up to T − 1 local steps past the last contraction, and which server's model the job
//!   reports would be luck (measured: final accuracies of correct servers 0.80–0.84 in one run).
//! - Momentum and weight decay, when configured, are applied by each server to the aggregated
//!   gradient (PyTorch semantics); with momentum 0 the update is the paper's θ − η·ĝ.
//! - A server that fell behind (slow, or partitioned away) rejoins at the next gather for which it
//!   holds q_ps peer models: it adopts their median and that step.
//! - **Crash recovery**: every server asks its peers for their step and model when it starts
//!   (`StateRequest` / `State`). At a job's start they all answer step 0 and nothing happens; a
//!   server restarted mid-run waits for q_ps − 1 answers and, when they are ahead, adopts the
//!   coordinate-wise median of their models at the (f_ps + 1)-th highest step reported
//!   (`server::Server::recover` says why a Byzantine peer cannot poison this). A restarted
//!   worker needs no transfer: it jumps to the step servers are at (below).
//! - A worker that holds a quorum for several steps works on the newest one: gradients for
//!   older steps would be stale anyway.
//! - A worker that fell further behind than it buffers (`max_lead` steps: starved of CPU, cut
//!   off, or restarted from step 0) jumps to the (f_ps + 1)-th newest step that servers sent it
//!   models for, which a correct server has reached; without it such a worker would stay out
//!   for the rest of the run, and a few of them would leave the servers short of q_w.
//! - Byzantine behaviour is a wrapper ([`byzantine`]) that rewrites an honest node's outgoing
//!   messages; honest code never asks "am I Byzantine".

pub mod checkpoint;
pub mod byzantine;
pub mod chaos;
pub mod inbox;
pub mod message;
pub mod server;
pub mod worker;

use std::{fmt::Debug, time::Instant};

pub use message::{Kind, NodeId, Payload, Rejection};
use ndarray::{Array1, ArrayView1, ArrayViewMut1};

use crate::{
    gar::{GarConfig, Rule},
    job::{Plan, spec::Mode},
};

/// Everything a node needs to know about the job, resolved from a validated [`Plan`].
#[derive(Debug, Clone)]
pub struct ProtocolConfig {
    /// n_ps.
    pub servers: usize,
    /// n_w.
    pub workers: usize,
    /// q_ps = n_ps − f_ps.
    pub server_quorum: usize,
    /// q_w = n_w − f_w.
    pub worker_quorum: usize,
    /// Gather period T.
    pub gather_every: u64,
    /// Number of steps to run.
    pub steps: u64,
    /// Asynchronous or synchronous variant.
    pub mode: Mode,
    /// Gradient rule (f = f_w).
    pub gradient_rule: GarConfig,
    /// Model rule (f = f_ps).
    pub model_rule: GarConfig,
    /// η.
    pub learning_rate: f32,
    /// Server-side momentum.
    pub momentum: f32,
    /// Server-side weight decay.
    pub weight_decay: f32,
    /// Evaluate every this many steps.
    pub evaluate_every: u64,
    /// Number of model parameters; every vector must have this length.
    pub dimension: usize,
    /// How many steps ahead of its own a node buffers messages. Bounds memory under Byzantine
    /// floods: a node holds at most `(max_lead + 1) × senders` vectors per kind.
    pub max_lead: u64,
    /// Synchronous mode: how long a server waits for the remaining gradients once it holds a
    /// quorum, in seconds.
    pub sync_timeout: f64,
    /// Seed shared by the job (initial model, data, attacks).
    pub seed: u64,
}

impl ProtocolConfig {
    /// Resolves the protocol settings of a plan for a model with `dimension` parameters.
    pub fn from_plan(plan: &Plan, dimension: usize) -> Self {
        let training = &plan.spec.training;
        Self {
            servers: plan.servers,
            workers: plan.workers,
            server_quorum: plan.server_quorum,
            worker_quorum: plan.worker_quorum,
            gather_every: plan.gather_every,
            steps: training.steps,
            mode: plan.spec.mode,
            gradient_rule: plan.gradient_rule.clone(),
            model_rule: plan.model_rule.clone(),
            learning_rate: training.learning_rate,
            momentum: training.momentum,
            weight_decay: training.weight_decay,
            evaluate_every: training.evaluate_every,
            dimension,
            max_lead: 8,
            sync_timeout: 2.0,
            seed: training.seed,
        }
    }

    /// Whether servers gather at `step`: before its scatter every T steps, and once more at
    /// the end (`step == steps`) so that training ends on a DMC-contracted model.
    pub fn is_gather_step(&self, step: u64) -> bool {
        step > 0
            && step <= self.steps
            && (step.is_multiple_of(self.gather_every) || step == self.steps)
    }
}

/// Something worth recording that happened inside a node (metrics, logs, CSV).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A server finished a step: its model is now θ_{step}.
    Stepped {
        /// The new step counter (number of updates applied).
        step: u64,
        /// Median of the mini-batch losses the aggregated workers reported.
        loss: f32,
    },
    /// A rule aggregated a quorum.
    Aggregated {
        /// Gradients (server step), or models (worker step, server gather).
        kind: Kind,
        /// The rule used.
        rule: Rule,
        /// Inputs the rule kept.
        selected: Vec<NodeId>,
        /// Inputs the rule left out.
        excluded: Vec<NodeId>,
        /// Wall time of the aggregation, in seconds (not used for any decision).
        seconds: f64,
    },
    /// A server replaced its model by the median at a gather (DMC).
    Gathered {
        /// The gather step.
        step: u64,
        /// Distance from the server's model before the gather to the median it adopted.
        drift_to_median: f32,
        /// Distance to each peer model received in the quorum.
        peer_distances: Vec<(NodeId, f32)>,
    },
    /// A server evaluated its model on the test set.
    Evaluated {
        /// The step of the model evaluated.
        step: u64,
        /// Mean test loss.
        loss: f32,
        /// Test accuracy in [0, 1].
        accuracy: f32,
    },
    /// A worker sent a gradient.
    GradientSent {
        /// The step of the gradient.
        step: u64,
        /// Its mini-batch loss.
        loss: f32,
    },
    /// A synchronous worker's filter refused a server's model.
    FilterRejected {
        /// The step.
        step: u64,
        /// The suspected server.
        server: NodeId,
        /// `lipschitz` or `outliers`.
        filter: &'static str,
    },
    /// A (re)started server found its peers ahead and adopted the median of their models
    /// (crash recovery, [`server::Server`]).
    Recovered {
        /// The server's step before.
        from_step: u64,
        /// The step it jumped to.
        step: u64,
        /// The peers whose models the median was taken over.
        peers: Vec<NodeId>,
    },
    /// The node ran all its steps.
    Finished,
}

/// What a node produces in answer to one input.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// Messages to send, one per destination.
    pub messages: Vec<(NodeId, Payload)>,
    /// Things to record.
    pub events: Vec<Event>,
}

impl Outputs {
    /// Appends another batch of outputs.
    pub fn extend(&mut self, other: Self) {
        self.messages.extend(other.messages);
        self.events.extend(other.events);
    }
}

/// A protocol participant, honest or Byzantine.
pub trait Node: Send + Debug {
    /// Who this is.
    fn id(&self) -> NodeId;
    /// Called once, before any message: the first sends.
    fn start(&mut self, now: f64) -> Outputs;
    /// One incoming message from an authenticated sender.
    fn handle(&mut self, now: f64, from: NodeId, payload: Payload) -> Result<Outputs, Rejection>;
    /// Time passed (used by the synchronous variant's timeouts).
    fn tick(&mut self, now: f64) -> Outputs;
    /// The node's step counter.
    fn step(&self) -> u64;
    /// Whether the node ran all its steps.
    fn finished(&self) -> bool;
    /// A server's current model (None for workers).
    fn model(&self) -> Option<ArrayView1<'_, f32>>;
    /// The earliest time at which [`Node::tick`] has something to do, if any.
    fn next_deadline(&self) -> Option<f64> {
        None
    }
    /// A server's state to write as a checkpoint (None for workers, which hold none worth
    /// keeping: a restarted worker jumps to the step the servers are at).
    fn checkpoint(&self) -> Option<checkpoint::Checkpoint> {
        None
    }
}

/// Computes stochastic gradients on a worker's shard (model + data), so the protocol does not
/// depend on how data is stored.
pub trait GradientSource: Send + Debug {
    /// Writes a mini-batch gradient at `params` into `gradient` and returns the batch loss.
    fn gradient(&mut self, params: ArrayView1<'_, f32>, gradient: ArrayViewMut1<'_, f32>) -> f32;
}

/// Evaluates a server's model on held-out data.
pub trait Evaluator: Send + Debug {
    /// Returns (mean loss, accuracy in [0, 1]).
    fn evaluate(&mut self, params: ArrayView1<'_, f32>) -> (f32, f32);
}

/// Runs a rule over a quorum from `senders` (in the same order as `views`) and describes what
/// it kept and left out as an [`Event::Aggregated`].
pub(crate) fn aggregate_quorum(
    config: &GarConfig,
    kind: Kind,
    senders: &[NodeId],
    views: &[ArrayView1<'_, f32>],
) -> Result<(Array1<f32>, Event), crate::gar::GarError> {
    let started = Instant::now();
    let aggregation = crate::gar::aggregate(config, views)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut selected = Vec::with_capacity(aggregation.selected.len());
    let mut excluded = Vec::new();
    for (position, sender) in senders.iter().enumerate() {
        if aggregation.selected.contains(&position) {
            selected.push(*sender);
        } else {
            excluded.push(*sender);
        }
    }
    let event = Event::Aggregated {
        kind,
        rule: config.rule,
        selected,
        excluded,
        seconds,
    };
    Ok((aggregation.value, event))
}

/// Vectors taken from an inbox, with their senders' indices, in arrival order.
pub(crate) type Taken = Vec<(usize, std::sync::Arc<Array1<f32>>)>;
/// An aggregate and the event describing it.
pub(crate) type Aggregated = Result<(Array1<f32>, Event), crate::gar::GarError>;

/// Takes the first `quorum` models buffered for `step` (all from servers) and aggregates them
/// with `config`; returns what was taken along with the result.
pub(crate) fn take_model_quorum(
    inbox: &mut inbox::Inbox<std::sync::Arc<Array1<f32>>>,
    step: u64,
    quorum: usize,
    config: &GarConfig,
    kind: Kind,
) -> (Taken, Aggregated) {
    let mut received = inbox.take(step);
    received.truncate(quorum);
    let senders: Vec<NodeId> = received
        .iter()
        .map(|(sender, _)| NodeId::server(*sender))
        .collect();
    let views: Vec<ArrayView1<'_, f32>> =
        received.iter().map(|(_, params)| params.view()).collect();
    let result = aggregate_quorum(config, kind, &senders, &views);
    (received, result)
}

/// The edge check every incoming vector passes: right length, only finite values.
pub fn check_vector(vector: ArrayView1<'_, f32>, dimension: usize) -> Result<(), Rejection> {
    if vector.len() != dimension {
        return Err(Rejection::WrongLength);
    }
    if vector.iter().any(|value| !value.is_finite()) {
        return Err(Rejection::NonFinite);
    }
    Ok(())
}

/// Median of a few losses (for reporting only): the middle value, NaN-free.
pub fn median_of(values: &mut [f32]) -> f32 {
    if values.is_empty() {
        return f32::NAN;
    }
    values.sort_by(f32::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        0.5 * (values[middle - 1] + values[middle])
    }
}
