//! Run-time attack switching: a [`Lie`] whose attack a [`ChaosHandle`] arms, for a window of
//! steps, while the node runs (issue #7, "attacks switch at run time … without restarting").
//!
//! The node stays an honest state machine under the [`Byzantine`](super::byzantine::Byzantine)
//! wrapper, exactly as with a manifest attack: outside the window the wrapper passes every
//! output through (or applies the manifest's own attack, if the node has one), inside it the
//! armed attack rewrites them. So honest code still never asks "am I Byzantine" (DESIGN.md §3);
//! only the wrapper consults the handle. The window is judged by the step each outgoing message
//! is tagged with, so "from step s until step u" means exactly the messages of steps s..u.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::job::Behaviour;

use super::byzantine::{Lie, ServerLie, WorkerLie};
use super::message::Payload;
use super::server::Server;
use super::worker::Worker;
use super::{Node, Outputs};

/// What an armed node does.
#[derive(Debug, Clone, PartialEq)]
pub enum Armed {
    /// An attack of the attack module (the behaviour's role must be the node's).
    Attack(Behaviour),
    /// Send nothing.
    Silence,
}

impl Armed {
    /// The name exported in `byzsgd_byzantine_active{attack}`.
    pub fn name(&self) -> String {
        match self {
            Self::Attack(Behaviour::Server(attack)) => attack.kind.to_string(),
            Self::Attack(Behaviour::Worker(attack)) => attack.kind.to_string(),
            Self::Attack(Behaviour::Honest) => "honest".to_owned(),
            Self::Silence => "silence".to_owned(),
        }
    }
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
            Armed::Attack(_) => None,
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
            Armed::Attack(_) => None,
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

/// The lie of a chaos-enabled node: the armed attack inside its window, the manifest's attack
/// (if any) otherwise.
pub struct ChaosLie<N> {
    handle: ChaosHandle,
    context: LieContext,
    base: Option<Named<N>>,
    armed: Option<(ChaosOrder, Named<N>)>,
    generation: u64,
}

impl<N> fmt::Debug for ChaosLie<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLie")
            .field("context", &self.context)
            .field("base", &self.base.as_ref().map(|(name, _)| name))
            .field("armed", &self.armed.as_ref().map(|(order, _)| order))
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
            let lie = N::lie(&order.armed, self.context)?;
            let name = order.armed.name();
            Some((order, (name, lie)))
        });
    }
}

impl<N: Armable> Lie<N> for ChaosLie<N> {
    fn observe(&mut self, payload: &Payload) {
        // Both lies keep learning, so an attack that starts mid-run (e.g. `stale`) already has
        // the history it needs.
        if let Some((_, lie)) = &mut self.base {
            lie.observe(payload);
        }
        if let Some((_, (_, lie))) = &mut self.armed {
            lie.observe(payload);
        }
    }

    fn rewrite(&mut self, node: &mut N, out: Outputs) -> Outputs {
        self.refresh();
        let Some(step) = out.messages.first().map(|(_, payload)| payload.step()) else {
            // Nothing to rewrite, and nothing that says what the node is doing: leave the
            // metric as it is.
            return out;
        };
        let chosen = match &mut self.armed {
            Some((order, named)) if order.covers(step) => Some(named),
            _ => self.base.as_mut(),
        };
        let active = chosen.as_ref().map(|(name, _)| name.clone());
        let out = match chosen {
            Some((_, lie)) => lie.rewrite(node, out),
            None => out,
        };
        self.handle.lock().active = active;
        out
    }
}
