//! Byzantine nodes: an honest state machine whose **outgoing** messages are rewritten by an
//! attack (`crate::attack`). The wrapped node runs the protocol normally — it keeps receiving,
//! aggregating and stepping — so the attacker always knows what an honest node would send and
//! can craft its lie from it; honest code never asks "am I Byzantine" (DESIGN.md §3).
//!
//! What each attacker can see:
//! - a Byzantine **server** sees the gradients it receives, its own past models (for stale
//!   replay) and the peer models of the last gather (the honest spread equivocation exploits);
//! - a Byzantine **worker** estimates the honest gradient distribution from extra mini-batches
//!   of its own shard at the same point (as Garfield's attackers do, PAPER.md §11.12), because
//!   workers never see each other's gradients on the wire.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fmt::Debug,
    sync::Arc,
};

use ndarray::{Array1, ArrayView1};

use super::{
    Node, Outputs,
    message::{NodeId, Payload, Rejection},
    server::Server,
    worker::Worker,
};
use crate::{
    attack::{ServerAttack, ServerView, WorkerAttack, WorkerView},
    job::Role,
};

/// How many past models a Byzantine server keeps for stale replay.
const HISTORY: usize = 64;
/// Most extra gradients a Byzantine worker computes per step to estimate honest statistics: four
/// (plus its own) estimate a mean and spread well enough for ALIE, and more would make the attacker
/// so slow that asynchronous quorums leave it out, which flatters the defence.
const MAX_ESTIMATES: usize = 4;

/// A vector an attack crafted for one receiver class (`None`: send nothing), shared by every
/// receiver of that class.
type Crafted = Option<Arc<Array1<f32>>>;

/// The attacking half of a Byzantine node: what it learns and how it lies.
pub trait Lie<N>: Send + Debug {
    /// Sees every message the node receives, before the node handles it.
    fn observe(&mut self, _from: NodeId, _payload: &Payload) {}
    /// Turns what the honest node would send into what the attacker sends.
    fn rewrite(&mut self, node: &mut N, out: Outputs) -> Outputs;
}

/// A lie that runs a named attack (for the `byzsgd_byzantine_active{attack}` metric).
pub trait NamedLie {
    /// The attack's name, as in manifests.
    fn attack_name(&self) -> String;
}

impl NamedLie for ServerLie {
    fn attack_name(&self) -> String {
        self.attack.kind.to_string()
    }
}

impl NamedLie for WorkerLie {
    fn attack_name(&self) -> String {
        self.attack.kind.to_string()
    }
}

/// An honest node whose outgoing messages a [`Lie`] rewrites.
#[derive(Debug)]
pub struct Byzantine<N, L> {
    node: N,
    lie: L,
}

/// A server running an attack.
pub type ByzantineServer = Byzantine<Server, ServerLie>;
/// A worker running an attack.
pub type ByzantineWorker = Byzantine<Worker, WorkerLie>;

impl<N: Node, L: Lie<N>> Node for Byzantine<N, L> {
    fn id(&self) -> NodeId {
        self.node.id()
    }
    fn start(&mut self, now: f64) -> Outputs {
        let out = self.node.start(now);
        self.lie.rewrite(&mut self.node, out)
    }
    fn handle(&mut self, now: f64, from: NodeId, payload: Payload) -> Result<Outputs, Rejection> {
        self.lie.observe(from, &payload);
        let out = self.node.handle(now, from, payload)?;
        Ok(self.lie.rewrite(&mut self.node, out))
    }
    fn tick(&mut self, now: f64) -> Outputs {
        let out = self.node.tick(now);
        self.lie.rewrite(&mut self.node, out)
    }
    fn step(&self) -> u64 {
        self.node.step()
    }
    fn finished(&self) -> bool {
        self.node.finished()
    }
    fn model(&self) -> Option<ArrayView1<'_, f32>> {
        self.node.model()
    }
    fn next_deadline(&self) -> Option<f64> {
        self.node.next_deadline()
    }
    fn checkpoint(&self) -> Option<super::checkpoint::Checkpoint> {
        self.node.checkpoint()
    }
}

impl<N, L> Byzantine<N, L> {
    /// Wraps `node`; `lie` rewrites everything it sends.
    pub fn with_lie(node: N, lie: L) -> Self {
        Self { node, lie }
    }
}

impl ByzantineServer {
    /// Wraps an honest server; `servers` and `byzantine` are the declared n_ps and f_ps.
    pub fn new(
        node: Server,
        attack: ServerAttack,
        servers: usize,
        byzantine: usize,
        seed: u64,
    ) -> Self {
        Self::with_lie(node, ServerLie::new(attack, servers, byzantine, seed))
    }
}

impl ServerLie {
    /// A server attack's lie; `servers` and `byzantine` are the declared n_ps and f_ps.
    pub fn new(attack: ServerAttack, servers: usize, byzantine: usize, seed: u64) -> Self {
        Self {
            attack,
            servers,
            byzantine,
            seed,
            history: VecDeque::new(),
            last_gather: BTreeMap::new(),
        }
    }
}

impl WorkerLie {
    /// A worker attack's lie; `workers` and `byzantine` are the declared n_w and f_w.
    pub fn new(attack: WorkerAttack, workers: usize, byzantine: usize, seed: u64) -> Self {
        Self {
            attack,
            workers,
            byzantine,
            seed,
        }
    }
}

impl ByzantineWorker {
    /// Wraps an honest worker; `workers` and `byzantine` are the declared n_w and f_w. For
    /// `label-flip`, the wrapped worker's gradient source must already read flipped labels (the
    /// attack acts on data, not on the vector).
    pub fn new(
        node: Worker,
        attack: WorkerAttack,
        workers: usize,
        byzantine: usize,
        seed: u64,
    ) -> Self {
        Self::with_lie(node, WorkerLie::new(attack, workers, byzantine, seed))
    }
}

/// A Byzantine server's lie: crafted models to workers and at gathers.
#[derive(Debug)]
pub struct ServerLie {
    attack: ServerAttack,
    servers: usize,
    byzantine: usize,
    seed: u64,
    /// Its own past models, oldest first (stale replay).
    history: VecDeque<Array1<f32>>,
    /// Each peer's model of its latest gather (the honest spread equivocation exploits; the
    /// receiver's own model, which dissensus pushes further out).
    last_gather: BTreeMap<usize, Arc<Array1<f32>>>,
}

impl Lie<Server> for ServerLie {
    fn observe(&mut self, from: NodeId, payload: &Payload) {
        if let Payload::Gather { params, .. } = payload
            && from.role == Role::Server
            && from.index < self.servers
        {
            self.last_gather.insert(from.index, params.clone());
        }
    }

    fn rewrite(&mut self, server: &mut Server, out: Outputs) -> Outputs {
        let mut rewritten = Outputs {
            messages: Vec::with_capacity(out.messages.len()),
            events: out.events,
        };
        // A slice of the deque itself: copying up to HISTORY models per output batch would put
        // megabytes of memcpy on every step of the attacker.
        let history: &[Array1<f32>] = self.history.make_contiguous();
        let honest: Vec<ArrayView1<'_, f32>> = self
            .last_gather
            .values()
            .map(|model| model.view())
            .collect();
        let mut own: Option<Arc<Array1<f32>>> = None;
        // Crafted once per (step, kind of message, receiver class) and shared, so the runtime
        // also encodes each distinct model once.
        let mut crafted: HashMap<(u64, bool, usize), Crafted> = HashMap::new();
        for (to, payload) in out.messages {
            // Models to peers (gathers, and answers to a restarted peer) lie over the servers;
            // scatters over the workers.
            let (step, params, to_servers) = match &payload {
                Payload::Model { step, params } => (*step, params.clone(), false),
                Payload::Gather { step, params } | Payload::State { step, params } => {
                    (*step, params.clone(), true)
                }
                _ => {
                    rewritten.messages.push((to, payload));
                    continue;
                }
            };
            let receivers = if to_servers {
                self.servers
            } else {
                server.workers()
            };
            let class = self.attack.receiver_class(to.index, receivers);
            let lie = crafted.entry((step, to_servers, class)).or_insert_with(|| {
                let view = ServerView {
                    own: params.view(),
                    honest: &honest,
                    history,
                    step,
                    receiver: to.index,
                    receivers,
                    receiver_model: to_servers
                        .then(|| self.last_gather.get(&to.index))
                        .flatten()
                        .map(|model| model.view()),
                    n: self.servers,
                    f: self.byzantine,
                    seed: self.seed,
                };
                self.attack.craft(&view).map(Arc::new)
            });
            if let Some(lie) = lie {
                rewritten
                    .messages
                    .push((to, payload.with_vector(Arc::clone(lie))));
            }
            own.get_or_insert(params);
        }
        // Recorded after the batch, so every receiver of it sees the same history, which (as
        // `ServerView::history` documents) never includes the model being sent.
        if let Some(own) = own {
            self.history.push_back((*own).clone());
            if self.history.len() > HISTORY {
                self.history.pop_front();
            }
        }
        rewritten
    }
}

/// A Byzantine worker's lie: crafted gradients.
#[derive(Debug)]
pub struct WorkerLie {
    attack: WorkerAttack,
    workers: usize,
    byzantine: usize,
    seed: u64,
}

impl Lie<Worker> for WorkerLie {
    fn rewrite(&mut self, worker: &mut Worker, out: Outputs) -> Outputs {
        let has_gradient = out
            .messages
            .iter()
            .any(|(_, payload)| matches!(payload, Payload::Gradient { .. }));
        let estimates = if has_gradient && self.attack.kind.needs_honest() {
            let count = (self.workers - self.byzantine).clamp(2, MAX_ESTIMATES);
            worker.sample_gradients(count)
        } else {
            Vec::new()
        };
        // The adaptive attacks optimise against the servers' rule (the omniscient adversary
        // knows the protocol).
        let rule = worker.gradient_rule().clone();
        let mut rewritten = Outputs {
            messages: Vec::with_capacity(out.messages.len()),
            events: out.events,
        };
        // Crafted once per (step, receiver class) and shared with every server of that class.
        let mut crafted: HashMap<(u64, usize), Crafted> = HashMap::new();
        for (to, payload) in out.messages {
            let Payload::Gradient {
                step,
                gradient,
                loss,
            } = &payload
            else {
                rewritten.messages.push((to, payload));
                continue;
            };
            let class = self.attack.receiver_class(to.index);
            let lie = crafted.entry((*step, class)).or_insert_with(|| {
                let mut honest: Vec<ArrayView1<'_, f32>> =
                    estimates.iter().map(|estimate| estimate.view()).collect();
                honest.push(gradient.view());
                let view = WorkerView {
                    honest: &honest,
                    own: gradient.view(),
                    step: *step,
                    receiver: to.index,
                    n: self.workers,
                    f: self.byzantine,
                    seed: self.seed,
                    rule: Some(&rule),
                };
                self.attack.craft(&view).map(Arc::new)
            });
            if let Some(lie) = lie {
                rewritten.messages.push((
                    to,
                    Payload::Gradient {
                        step: *step,
                        gradient: Arc::clone(lie),
                        loss: *loss,
                    },
                ));
            }
        }
        rewritten
    }
}
