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

use std::collections::VecDeque;
use std::sync::Arc;

use ndarray::{Array1, ArrayView1};

use crate::attack::{ServerAttack, ServerView, WorkerAttack, WorkerAttackKind, WorkerView};

use super::message::{NodeId, Payload, Rejection};
use super::server::Server;
use super::worker::Worker;
use super::{Node, Outputs};

/// How many past models a Byzantine server keeps for stale replay.
const HISTORY: usize = 64;
/// Most extra gradients a Byzantine worker computes per step to estimate honest statistics.
const MAX_ESTIMATES: usize = 8;

/// A server running an attack.
#[derive(Debug)]
pub struct ByzantineServer {
    inner: Server,
    attack: ServerAttack,
    /// n_ps and f_ps as declared, given to the attack.
    servers: usize,
    byzantine: usize,
    seed: u64,
    history: VecDeque<Array1<f32>>,
    last_gather: Vec<Arc<Array1<f32>>>,
}

impl ByzantineServer {
    /// Wraps an honest server.
    pub fn new(
        inner: Server,
        attack: ServerAttack,
        servers: usize,
        byzantine: usize,
        seed: u64,
    ) -> Self {
        Self {
            inner,
            attack,
            servers,
            byzantine,
            seed,
            history: VecDeque::new(),
            last_gather: Vec::new(),
        }
    }

    fn rewrite(&mut self, out: Outputs) -> Outputs {
        let mut rewritten = Outputs {
            messages: Vec::with_capacity(out.messages.len()),
            events: out.events,
        };
        let history: Vec<Array1<f32>> = self.history.iter().cloned().collect();
        let honest: Vec<ArrayView1<'_, f32>> =
            self.last_gather.iter().map(|model| model.view()).collect();
        let mut recorded = false;
        for (to, payload) in out.messages {
            let (step, params, gather) = match &payload {
                Payload::Model { step, params } => (*step, params.clone(), false),
                Payload::Gather { step, params } => (*step, params.clone(), true),
                _ => {
                    rewritten.messages.push((to, payload));
                    continue;
                }
            };
            let receivers = if gather {
                self.servers
            } else {
                self.inner_workers()
            };
            let view = ServerView {
                own: params.view(),
                honest: &honest,
                history: &history,
                step,
                receiver: to.index,
                receivers,
                n: self.servers,
                f: self.byzantine,
                seed: self.seed,
            };
            if let Some(crafted) = self.attack.craft(&view) {
                let crafted = Arc::new(crafted);
                let payload = if gather {
                    Payload::Gather {
                        step,
                        params: crafted,
                    }
                } else {
                    Payload::Model {
                        step,
                        params: crafted,
                    }
                };
                rewritten.messages.push((to, payload));
            }
            if !recorded {
                recorded = true;
                self.history.push_back((*params).clone());
                if self.history.len() > HISTORY {
                    self.history.pop_front();
                }
            }
        }
        rewritten
    }

    fn inner_workers(&self) -> usize {
        self.inner.workers()
    }
}

impl Node for ByzantineServer {
    fn id(&self) -> NodeId {
        self.inner.id()
    }
    fn start(&mut self, now: f64) -> Outputs {
        let out = self.inner.start(now);
        self.rewrite(out)
    }
    fn handle(&mut self, now: f64, from: NodeId, payload: Payload) -> Result<Outputs, Rejection> {
        if let Payload::Gather { params, .. } = &payload {
            if self.last_gather.len() >= self.servers {
                self.last_gather.remove(0);
            }
            self.last_gather.push(params.clone());
        }
        let out = self.inner.handle(now, from, payload)?;
        Ok(self.rewrite(out))
    }
    fn tick(&mut self, now: f64) -> Outputs {
        let out = self.inner.tick(now);
        self.rewrite(out)
    }
    fn step(&self) -> u64 {
        self.inner.step()
    }
    fn finished(&self) -> bool {
        self.inner.finished()
    }
    fn model(&self) -> Option<ArrayView1<'_, f32>> {
        self.inner.model()
    }
    fn next_deadline(&self) -> Option<f64> {
        self.inner.next_deadline()
    }
}

/// A worker running an attack.
#[derive(Debug)]
pub struct ByzantineWorker {
    inner: Worker,
    attack: WorkerAttack,
    workers: usize,
    byzantine: usize,
    seed: u64,
}

impl ByzantineWorker {
    /// Wraps an honest worker. For `label-flip`, the wrapped worker's gradient source must
    /// already read flipped labels (the attack acts on data, not on the vector).
    pub fn new(
        inner: Worker,
        attack: WorkerAttack,
        workers: usize,
        byzantine: usize,
        seed: u64,
    ) -> Self {
        Self {
            inner,
            attack,
            workers,
            byzantine,
            seed,
        }
    }

    fn needs_estimates(&self) -> bool {
        matches!(
            self.attack.kind,
            WorkerAttackKind::Alie | WorkerAttackKind::Foe | WorkerAttackKind::Mimic
        )
    }

    fn rewrite(&mut self, out: Outputs) -> Outputs {
        let has_gradient = out
            .messages
            .iter()
            .any(|(_, payload)| matches!(payload, Payload::Gradient { .. }));
        let estimates = if has_gradient && self.needs_estimates() {
            let count = (self.workers - self.byzantine).clamp(2, MAX_ESTIMATES);
            self.inner.sample_gradients(count)
        } else {
            Vec::new()
        };
        let mut rewritten = Outputs {
            messages: Vec::with_capacity(out.messages.len()),
            events: out.events,
        };
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
            };
            if let Some(crafted) = self.attack.craft(&view) {
                rewritten.messages.push((
                    to,
                    Payload::Gradient {
                        step: *step,
                        gradient: Arc::new(crafted),
                        loss: *loss,
                    },
                ));
            }
        }
        rewritten
    }
}

impl Node for ByzantineWorker {
    fn id(&self) -> NodeId {
        self.inner.id()
    }
    fn start(&mut self, now: f64) -> Outputs {
        let out = self.inner.start(now);
        self.rewrite(out)
    }
    fn handle(&mut self, now: f64, from: NodeId, payload: Payload) -> Result<Outputs, Rejection> {
        let out = self.inner.handle(now, from, payload)?;
        Ok(self.rewrite(out))
    }
    fn tick(&mut self, now: f64) -> Outputs {
        let out = self.inner.tick(now);
        self.rewrite(out)
    }
    fn step(&self) -> u64 {
        self.inner.step()
    }
    fn finished(&self) -> bool {
        self.inner.finished()
    }
    fn model(&self) -> Option<ArrayView1<'_, f32>> {
        None
    }
    fn next_deadline(&self) -> Option<f64> {
        self.inner.next_deadline()
    }
}
