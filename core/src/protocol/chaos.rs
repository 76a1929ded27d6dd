//! Run-time attack switching: a [`Lie`] whose attack a [`ChaosHandle`] arms, for a window of
//! steps, while the node runs (issue #7, "attacks switch at run time … without restarting").
//!
//! The node stays an honest state machine under the [`Byzantine`](super::byzantine::Byzantine)
//! wrapper, exactly as with a manifest attack: outside the window the wrapper passes every
//! output through (or applies the manifest's own attack, if the node has one), inside it the
//! armed attack rewrites them. So honest code still never asks "am I Byzantine" (DESIGN.md §3);
//! only the wrapper consults the handle. The window is judged by the step each outgoing message
//! is tagged with, so "from step s until step u" means exactly the messages of steps s..u.
//!
//! `delay` and `partition` act on the network, not on the payloads: the lie passes outputs
//! through (keeping the manifest's own attack, if any) and only names the action for the
//! metric, while the runtime asks the handle which sends to hold back or drop
//! ([`ChaosHandle::network_fault`]). Every rewritten, silenced, delayed or dropped step is
//! recorded ([`ChaosReport`]) so a test can prove where a window began and ended.

use std::{
    collections::BTreeSet,
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{
    Node, NodeId, Outputs,
    byzantine::{Lie, ServerLie, WorkerLie},
    message::Payload,
    server::Server,
    worker::Worker,
};
use crate::job::Behaviour;

/// What an armed node does.
#[derive(Debug, Clone, PartialEq)]
pub enum Armed {
    /// An attack of the attack module (the behaviour's role must be the node's).
    Attack(Behaviour),
    /// Send nothing.
    Silence,
    /// Hold every outgoing message back for `latency` plus a uniform draw in `[0, jitter]`.
    Delay {
        /// Fixed part of the delay.
        latency: Duration,
        /// Upper bound of the random part.
        jitter: Duration,
    },
    /// Drop every message to and from these peers.
    Partition {
        /// The peers cut off.
        peers: BTreeSet<NodeId>,
    },
    /// Send `target` junk as fast as the link takes it (the runtime's flood task).
    Flood {
        /// The node flooded.
        target: NodeId,
        /// Messages that fail the edge checks, rather than well-formed model-sized ones.
        malformed: bool,
    },
}

impl Armed {
    /// The name exported in `byzsgd_byzantine_active{attack}`.
    pub fn name(&self) -> String {
        match self {
            Self::Attack(Behaviour::Server(attack)) => attack.kind.to_string(),
            Self::Attack(Behaviour::Worker(attack)) => attack.kind.to_string(),
            Self::Attack(Behaviour::Honest) => "honest".to_owned(),
            Self::Silence => "silence".to_owned(),
            Self::Delay { .. } => "delay".to_owned(),
            Self::Partition { .. } => "partition".to_owned(),
            Self::Flood { .. } => "flood".to_owned(),
        }
    }

    /// Whether the runtime applies this order to sends (and receives) rather than the lie to
    /// payloads.
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            Self::Delay { .. } | Self::Partition { .. } | Self::Flood { .. }
        )
    }
}

/// What the runtime does to one message of a step inside a `delay` or `partition` window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkFault {
    /// Hold sends back.
    Delay {
        /// Fixed part.
        latency: Duration,
        /// Upper bound of the uniform random part.
        jitter: Duration,
    },
    /// Drop messages to and from these peers.
    Partition {
        /// The peers cut off.
        peers: BTreeSet<NodeId>,
    },
}

/// Evidence of what chaos did on a node, as `/status` reports it under `chaos`: the order and
/// the first and last step whose outgoing messages it actually changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChaosReport {
    /// The armed action's name (`alie`, `silence`, `delay`, …); `None` when nothing is armed.
    pub armed: Option<String>,
    /// First step of the armed window.
    pub from_step: Option<u64>,
    /// First step after the armed window, if bounded.
    pub until_step: Option<u64>,
    /// First step whose outgoing messages the latest order rewrote, silenced, delayed or
    /// dropped; `None` until it did. Kept after `DELETE /chaos`, reset by the next order.
    pub first_step: Option<u64>,
    /// Last such step.
    pub last_step: Option<u64>,
}

/// An order to misbehave during the steps `from_step..until_step`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosOrder {
    /// What to do.
    pub armed: Armed,
    /// First step whose messages are rewritten.
    pub from_step: u64,
    /// First step whose messages are honest again; `None`: until the end.
    pub until_step: Option<u64>,
}

impl ChaosOrder {
    fn covers(&self, step: u64) -> bool {
        step >= self.from_step && self.until_step.is_none_or(|until| step < until)
    }
}

#[derive(Debug, Default)]
struct HandleState {
    order: Option<ChaosOrder>,
    /// Bumped by every [`ChaosHandle::arm`], so the lie rebuilds its attack exactly once.
    generation: u64,
    /// The attack applied to the latest outputs, for the metric.
    active: Option<String>,
    /// First and last step the latest order acted on.
    applied: Option<(u64, u64)>,
}

/// The runtime's side of a chaos-enabled node: arm an order, read what is active. Cloning
/// shares the same node.
#[derive(Debug, Clone, Default)]
pub struct ChaosHandle(Arc<Mutex<HandleState>>);

impl ChaosHandle {
    /// A handle with nothing armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the current order (a later order wins; the previous one's window ends).
    pub fn arm(&self, order: ChaosOrder) {
        let mut state = self.lock();
        state.order = Some(order);
        state.generation += 1;
        state.applied = None;
    }

    /// Cancels the current order.
    pub fn disarm(&self) {
        let mut state = self.lock();
        state.order = None;
        state.generation += 1;
    }

    /// The attack the node applied to its latest outputs (an armed one inside its window, else
    /// the manifest's own attack), or `None` while it behaves honestly.
    pub fn active(&self) -> Option<String> {
        self.lock().active.clone()
    }

    /// The current order, if any.
    pub fn order(&self) -> Option<ChaosOrder> {
        self.lock().order.clone()
    }

    /// The network fault that applies to messages of `step`, if a `delay` or `partition`
    /// order covers it.
    pub fn network_fault(&self, step: u64) -> Option<NetworkFault> {
        let state = self.lock();
        let order = state.order.as_ref().filter(|order| order.covers(step))?;
        match &order.armed {
            Armed::Delay { latency, jitter } => Some(NetworkFault::Delay {
                latency: *latency,
                jitter: *jitter,
            }),
            Armed::Partition { peers } => Some(NetworkFault::Partition {
                peers: peers.clone(),
            }),
            Armed::Attack(_) | Armed::Silence | Armed::Flood { .. } => None,
        }
    }

    /// The node to flood and whether with malformed messages, if a `flood` order covers
    /// `step`.
    pub fn flood(&self, step: u64) -> Option<(NodeId, bool)> {
        let state = self.lock();
        let order = state.order.as_ref().filter(|order| order.covers(step))?;
        match order.armed {
            Armed::Flood { target, malformed } => Some((target, malformed)),
            _ => None,
        }
    }

    /// Records that the current order changed outgoing messages of `step`.
    pub fn record_applied(&self, step: u64) {
        let mut state = self.lock();
        state.applied = Some(match state.applied {
            Some((first, last)) => (first.min(step), last.max(step)),
            None => (step, step),
        });
    }

    /// What is armed and where it acted, for `/status`.
    pub fn report(&self) -> ChaosReport {
        let state = self.lock();
        let order = state.order.as_ref();
        ChaosReport {
            armed: order.map(|order| order.armed.name()),
            from_step: order.map(|order| order.from_step),
            until_step: order.and_then(|order| order.until_step),
            first_step: state.applied.map(|(first, _)| first),
            last_step: state.applied.map(|(_, last)| last),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HandleState> {
        // The state is a few plain fields written whole; a panic elsewhere cannot leave it torn.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a lie needs to know about the job besides the attack: n and declared f of the node's
/// role, and the attack's seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LieContext {
    /// Nodes of the role (n_ps or n_w).
    pub replicas: usize,
    /// Declared Byzantine nodes of the role (f_ps or f_w).
    pub byzantine: usize,
    /// Seed of the attack's randomness.
    pub seed: u64,
}

/// A node kind whose lies can be built from an [`Armed`] order.
pub trait Armable: Node + Sized + 'static {
    /// The lie for `armed`, or `None` when it does not apply to this role (the handle's user
    /// validated the role; a mismatch then leaves the node honest rather than panicking).
    fn lie(armed: &Armed, context: LieContext) -> Option<Box<dyn Lie<Self>>>;
}

impl Armable for Server {
    fn lie(armed: &Armed, context: LieContext) -> Option<Box<dyn Lie<Self>>> {
        match armed {
            Armed::Attack(Behaviour::Server(attack)) => Some(Box::new(ServerLie::new(
                *attack,
                context.replicas,
                context.byzantine,
                context.seed,
            ))),
            Armed::Silence => Some(Box::new(Silence)),
            Armed::Attack(_)
            | Armed::Delay { .. }
            | Armed::Partition { .. }
            | Armed::Flood { .. } => None,
        }
    }
}

impl Armable for Worker {
    fn lie(armed: &Armed, context: LieContext) -> Option<Box<dyn Lie<Self>>> {
        match armed {
            Armed::Attack(Behaviour::Worker(attack)) => Some(Box::new(WorkerLie::new(
                *attack,
                context.replicas,
                context.byzantine,
                context.seed,
            ))),
            Armed::Silence => Some(Box::new(Silence)),
            Armed::Attack(_)
            | Armed::Delay { .. }
            | Armed::Partition { .. }
            | Armed::Flood { .. } => None,
        }
    }
}

/// Sends nothing; the node keeps receiving and stepping.
#[derive(Debug, Clone, Copy)]
pub struct Silence;

impl<N> Lie<N> for Silence {
    fn rewrite(&mut self, _node: &mut N, out: Outputs) -> Outputs {
        Outputs {
            messages: Vec::new(),
            events: out.events,
        }
    }
}

/// A lie with a name, for the metric.
type Named<N> = (String, Box<dyn Lie<N>>);

/// An armed order with its name and, for payload actions, its lie (`None` for `delay` and
/// `partition`, which the runtime applies to the network).
type ArmedLie<N> = (ChaosOrder, String, Option<Box<dyn Lie<N>>>);

/// The lie of a chaos-enabled node: the armed attack inside its window, the manifest's attack
/// (if any) otherwise.
pub struct ChaosLie<N> {
    handle: ChaosHandle,
    context: LieContext,
    base: Option<Named<N>>,
    armed: Option<ArmedLie<N>>,
    generation: u64,
}

impl<N> fmt::Debug for ChaosLie<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLie")
            .field("context", &self.context)
            .field("base", &self.base.as_ref().map(|(name, _)| name))
            .field("armed", &self.armed.as_ref().map(|(order, _, _)| order))
            .finish_non_exhaustive()
    }
}

impl<N: Armable> ChaosLie<N> {
    /// A lie driven by `handle`. `base` is the node's manifest attack (name and lie), applied
    /// whenever no armed order covers the step.
    pub fn new(handle: ChaosHandle, context: LieContext, base: Option<Named<N>>) -> Self {
        Self {
            handle,
            context,
            base,
            armed: None,
            generation: 0,
        }
    }

    /// Picks up a new order from the handle, building its lie once.
    fn refresh(&mut self) {
        let (generation, order) = {
            let state = self.handle.lock();
            (state.generation, state.order.clone())
        };
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        self.armed = order.and_then(|order| {
            let name = order.armed.name();
            if order.armed.is_network() {
                return Some((order, name, None));
            }
            let lie = N::lie(&order.armed, self.context)?;
            Some((order, name, Some(lie)))
        });
    }
}

impl<N: Armable> Lie<N> for ChaosLie<N> {
    fn observe(&mut self, from: NodeId, payload: &Payload) {
        // Both lies keep learning, so an attack that starts mid-run (e.g. `stale`) already has
        // the history it needs.
        if let Some((_, lie)) = &mut self.base {
            lie.observe(from, payload);
        }
        if let Some((_, _, Some(lie))) = &mut self.armed {
            lie.observe(from, payload);
        }
    }

    fn rewrite(&mut self, node: &mut N, out: Outputs) -> Outputs {
        self.refresh();
        let Some(step) = out.messages.first().map(|(_, payload)| payload.step()) else {
            // Nothing to rewrite, and nothing that says what the node is doing: leave the
            // metric as it is.
            return out;
        };
        let base = self.base.as_mut();
        let (active, out, rewritten) = match &mut self.armed {
            Some((order, name, Some(lie))) if order.covers(step) => {
                (Some(name.clone()), lie.rewrite(node, out), true)
            }
            // A network fault keeps the manifest's attack on the payloads; the runtime
            // records the steps it actually delays or drops.
            Some((order, name, None)) if order.covers(step) => {
                let out = match base {
                    Some((_, lie)) => lie.rewrite(node, out),
                    None => out,
                };
                (Some(name.clone()), out, false)
            }
            _ => match base {
                Some((name, lie)) => (Some(name.clone()), lie.rewrite(node, out), false),
                None => (None, out, false),
            },
        };
        self.handle.lock().active = active;
        if rewritten {
            self.handle.record_applied(step);
        }
        out
    }
}
