//! The worker's state machine (PAPER.md §3.2 and §5).
//!
//! Asynchronous mode: wait for the step-t models of the first q_ps distinct servers, take their
//! coordinate-wise median, compute a gradient there and send it to every server.
//!
//! Synchronous mode: pull the model of one server per step, check it with the Lipschitz and
//! outliers filters, and switch to another server when a filter fails; at step 0 and at gather
//! steps pull every server and take the median, as in the asynchronous mode. Which server a
//! worker starts with is `(index + seed) mod n_ps`, and it moves round-robin on suspicion
//! (PAPER.md §10.2: a seeded, documented choice).

use std::{collections::BTreeSet, sync::Arc};

use ndarray::{Array1, ArrayView1};

use super::{
    Event, GradientSource, Node, Outputs, ProtocolConfig, check_vector,
    inbox::Inbox,
    message::{Kind, NodeId, Payload, Rejection},
    server::distance,
    take_model_quorum,
};
use crate::{
    filter::{LipschitzFilter, outliers_bound},
    job::{Role, spec::Mode},
};

/// Coefficients accepted unconditionally before the Lipschitz filter has a history.
const LIPSCHITZ_WARMUP: usize = 5;

/// A correct worker.
#[derive(Debug)]
pub struct Worker {
    config: Arc<ProtocolConfig>,
    index: usize,
    /// The next step this worker will compute a gradient for.
    step: u64,
    models: Inbox<Arc<Array1<f32>>>,
    source: Box<dyn GradientSource>,
    /// The model the last gradient was computed at (what Byzantine wrappers estimate around).
    last_point: Option<Array1<f32>>,
    finished: bool,
    sync: SyncState,
    /// Per server, the newest step it sent a model for that lay beyond this worker's buffer
    /// (asynchronous mode): how a worker that fell behind learns where the servers are.
    ahead: Vec<Option<u64>>,
}

/// Where a synchronous worker's gradient was computed, which decides how θ_local moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    /// The median of every server's model: θ_local restarts from it.
    Median,
    /// One server's model that passed the filters: θ_local keeps its own course.
    Pulled,
}

/// Synchronous-mode state: which server is trusted, and the filters' memory.
#[derive(Debug)]
struct SyncState {
    chosen: usize,
    suspects: BTreeSet<usize>,
    /// The worker's own model estimate θ_local (PAPER.md §5: "the worker's own locally
    /// maintained model"): set to the median of every server's model where the worker takes
    /// one (step 0, gathers, the all-refused fallback), and otherwise advanced by the worker's
    /// own update, θ_local ← θ_local − η·v, whatever model it pulled. It is never set to a
    /// pulled model: a Byzantine server whose model passes the filter would otherwise move the
    /// estimate by up to the filter's bound at every step, and the filter would follow it away
    /// (the cause of the synchronous variant's divergence under equivocation, issue #16). The
    /// bound's second term, 2·((t − 1) mod T)·η‖g‖, is there for exactly the drift this
    /// estimate accumulates between gathers.
    local: Option<Array1<f32>>,
    /// (step, model, gradient) of the previous accepted step, for both filters.
    previous: Option<(u64, Array1<f32>, Array1<f32>)>,
    lipschitz: LipschitzFilter,
    /// Step whose model was requested and not yet received.
    requested: Option<u64>,
    /// When that request was sent: a chosen server that stays silent past the timeout is
    /// suspected like one that fails a filter (synchrony bounds delays).
    requested_at: f64,
    /// The worker's mirror of the servers' momentum buffer, so θ_local follows the update the
    /// servers really apply (θ − η·v, not θ − η·g, when momentum is on).
    velocity: Option<Array1<f32>>,
    /// (step, servers refused for it): when every server has been refused for one step, the
    /// worker falls back to pulling all of them and taking the median, as at a gather — always
    /// safe, and it guarantees progress when honest models fail a filter.
    refusals: (u64, usize),
}

impl Worker {
    /// A worker computing gradients with `source`.
    pub fn new(config: Arc<ProtocolConfig>, index: usize, source: Box<dyn GradientSource>) -> Self {
        let byzantine_servers = config.servers - config.server_quorum;
        let ahead = vec![None; config.servers];
        let sync = SyncState {
            chosen: ((index as u64).wrapping_add(config.seed) % config.servers.max(1) as u64)
                as usize,
            suspects: BTreeSet::new(),
            local: None,
            previous: None,
            lipschitz: LipschitzFilter::new(config.servers, byzantine_servers, LIPSCHITZ_WARMUP),
            requested: None,
            requested_at: 0.0,
            velocity: None,
            refusals: (0, 0),
        };
        Self {
            config,
            index,
            step: 0,
            models: Inbox::default(),
            source,
            last_point: None,
            finished: false,
            ahead,
            sync,
        }
    }

    /// Computes `count` more gradients at the last point this worker computed at, on fresh
    /// mini-batches. Byzantine wrappers use this to estimate the honest gradient distribution
    /// (as Garfield's attackers do, PAPER.md §11.12); honest code never calls it.
    pub fn sample_gradients(&mut self, count: usize) -> Vec<Array1<f32>> {
        let Some(point) = self.last_point.clone() else {
            return Vec::new();
        };
        (0..count)
            .map(|_| {
                let mut gradient = Array1::zeros(self.config.dimension);
                self.source.gradient(point.view(), gradient.view_mut());
                gradient
            })
            .collect()
    }

    fn needs_all_servers(&self, step: u64) -> bool {
        self.config.mode == Mode::Asynchronous
            || step == 0
            || self.config.is_gather_step(step)
            || self.sync.refusals == (step, self.config.servers)
    }

    /// Asks for the model of `self.step` (synchronous mode).
    fn request(&mut self, now: f64, out: &mut Outputs) {
        if self.finished || self.sync.requested == Some(self.step) {
            return;
        }
        self.sync.requested = Some(self.step);
        self.sync.requested_at = now;
        let step = self.step;
        if self.needs_all_servers(step) {
            for server in 0..self.config.servers {
                out.messages
                    .push((NodeId::server(server), Payload::Pull { step }));
            }
        } else {
            out.messages
                .push((NodeId::server(self.sync.chosen), Payload::Pull { step }));
        }
    }

    /// The rule servers aggregate gradients with (what an adaptive attacker optimises against).
    pub(crate) fn gradient_rule(&self) -> &crate::gar::GarConfig {
        &self.config.gradient_rule
    }

    /// Computes the gradient at `point` and sends it to every server.
    fn send_gradient(&mut self, step: u64, point: Array1<f32>, out: &mut Outputs) {
        let mut gradient = Array1::zeros(self.config.dimension);
        let loss = self.source.gradient(point.view(), gradient.view_mut());
        self.emit_gradient(step, point, Anchor::Median, gradient, loss, out);
    }

    /// Sends a gradient computed at `point` to every server and moves to the next step.
    fn emit_gradient(
        &mut self,
        step: u64,
        point: Array1<f32>,
        anchor: Anchor,
        gradient: Array1<f32>,
        loss: f32,
        out: &mut Outputs,
    ) {
        let shared = Arc::new(gradient);
        for server in 0..self.config.servers {
            out.messages.push((
                NodeId::server(server),
                Payload::Gradient {
                    step,
                    gradient: shared.clone(),
                    loss,
                },
            ));
        }
        out.events.push(Event::GradientSent { step, loss });
        if self.config.mode == Mode::Synchronous {
            let velocity = match self.sync.velocity.take() {
                Some(velocity) => velocity * self.config.momentum + &*shared,
                None => (*shared).clone(),
            };
            // The estimate continues only from the previous step's; a pulled model of another
            // step (a server ahead of this worker) re-anchors it, as a median does.
            let base = match (anchor, self.sync.local.take(), &self.sync.previous) {
                (Anchor::Pulled, Some(local), Some((previous_step, ..)))
                    if step == previous_step + 1 =>
                {
                    local
                }
                _ => point.clone(),
            };
            let local = base - &(&velocity * self.config.learning_rate);
            self.sync.velocity = Some(velocity);
            self.sync.local = Some(local);
            self.sync.previous = Some((step, point.clone(), (*shared).clone()));
        }
        self.last_point = Some(point);
        self.step = step + 1;
        self.models.discard_below(self.step);
        if self.step >= self.config.steps {
            self.finished = true;
            out.events.push(Event::Finished);
        }
    }

    /// Takes the median of a model quorum for `step` and computes there.
    fn compute_at_median(&mut self, step: u64, out: &mut Outputs) {
        let (_, result) = take_model_quorum(
            &mut self.models,
            step,
            self.config.server_quorum,
            &self.config.model_rule,
            Kind::Model,
        );
        match result {
            Ok((median, event)) => {
                out.events.push(event);
                self.send_gradient(step, median, out);
            }
            Err(error) => debug_assert!(
                false,
                "model aggregation failed although bounds were validated: {error}"
            ),
        }
    }

    /// Asynchronous mode: `server` sent a model for `step`, beyond what this worker buffers
    /// (`self.step + max_lead`). Once f_ps + 1 servers did, at least one correct server has
    /// reached the (f_ps + 1)-th newest of their steps, so the worker jumps there: the models it
    /// waits for will never come again (servers scatter each step once), and without the jump a
    /// worker that fell behind — starved of CPU, cut off for a while, or restarted from step 0 —
    /// would refuse every model as "too far ahead" for the rest of the run. f_ps Byzantine
    /// servers alone cannot move it. This extends "work on the newest step" (module docs of
    /// `protocol`) past the buffer, which stays bounded.
    fn catch_up(&mut self, server: usize, step: u64) {
        let Some(slot) = self.ahead.get_mut(server) else {
            return;
        };
        *slot = Some(slot.map_or(step, |seen| seen.max(step)));
        let mut seen: Vec<u64> = self.ahead.iter().flatten().copied().collect();
        let byzantine_servers = self.config.servers - self.config.server_quorum;
        if seen.len() <= byzantine_servers {
            return;
        }
        seen.sort_unstable_by(|a, b| b.cmp(a));
        let target = seen[byzantine_servers];
        if target > self.step + self.config.max_lead {
            self.step = target;
            self.models.discard_below(target);
            self.ahead.iter_mut().for_each(|slot| *slot = None);
        }
    }

    fn advance(&mut self, now: f64, out: &mut Outputs) {
        while !self.finished {
            if self.needs_all_servers(self.step) || self.config.mode == Mode::Asynchronous {
                match self
                    .models
                    .latest_ready(self.step, self.config.server_quorum)
                {
                    Some(step) => self.compute_at_median(step, out),
                    None => break,
                }
            } else {
                let Some(step) = self.pulled_step() else {
                    break;
                };
                self.check_pulled(step, out);
            }
        }
        if self.config.mode == Mode::Synchronous {
            self.request(now, out);
        }
    }

    /// Suspects the chosen server and moves to the next unsuspected one, round-robin.
    fn switch_server(&mut self) {
        let chosen = self.sync.chosen;
        self.sync.suspects.insert(chosen);
        if self.sync.suspects.len() >= self.config.servers {
            // Everyone is suspected: forgive all but the last offender.
            self.sync.suspects.clear();
            self.sync.suspects.insert(chosen);
        }
        let mut next = (chosen + 1) % self.config.servers;
        while self.sync.suspects.contains(&next) {
            next = (next + 1) % self.config.servers;
        }
        self.sync.chosen = next;
        self.sync.requested = None;
    }

    /// Synchronous mode: the step of a model received from the chosen server, if any.
    fn pulled_step(&self) -> Option<u64> {
        let chosen = self.sync.chosen;
        (self.step..=self.step + self.config.max_lead).find(|&step| {
            self.models
                .get(step)
                .iter()
                .any(|(sender, _)| *sender == chosen)
        })
    }

    /// Synchronous mode: runs both filters on the chosen server's model for `step`.
    fn check_pulled(&mut self, step: u64, out: &mut Outputs) {
        let chosen = self.sync.chosen;
        let Some(params) = self
            .models
            .get(step)
            .iter()
            .find(|(sender, _)| *sender == chosen)
            .map(|(_, params)| params.clone())
        else {
            return;
        };
        // One gradient at the pulled model serves both the Lipschitz check and, if the model
        // passes, the update.
        let mut gradient = Array1::zeros(self.config.dimension);
        let loss = self.source.gradient(params.view(), gradient.view_mut());
        match self.filter_verdict(step, &params, &gradient) {
            None => {
                self.sync.suspects.clear();
                self.models.discard_below(step + 1);
                self.sync.requested = None;
                self.emit_gradient(step, (*params).clone(), Anchor::Pulled, gradient, loss, out);
            }
            Some(filter) => {
                out.events.push(Event::FilterRejected {
                    step,
                    server: NodeId::server(chosen),
                    filter,
                });
                // Drop the refused model so it is not checked again.
                let kept: Vec<(usize, Arc<Array1<f32>>)> = self
                    .models
                    .take(step)
                    .into_iter()
                    .filter(|(sender, _)| *sender != chosen)
                    .collect();
                for (sender, model) in kept {
                    let _ = self.models.insert(step, sender, model, step, step);
                }
                let (refused_step, count) = self.sync.refusals;
                let count = if refused_step == self.step {
                    count + 1
                } else {
                    1
                };
                self.sync.refusals = (self.step, count.min(self.config.servers));
                self.switch_server();
            }
        }
    }

    /// Which filter, if any, refuses the model pulled for `step` (PAPER.md §5).
    fn filter_verdict(
        &mut self,
        step: u64,
        params: &Array1<f32>,
        gradient: &Array1<f32>,
    ) -> Option<&'static str> {
        let Some((previous_step, previous_model, previous_gradient)) = &self.sync.previous else {
            return None;
        };
        // The outliers bound assumes the model is one step after the local estimate's; a
        // server that has moved further ahead is judged by the Lipschitz filter alone.
        if let Some(local) = &self.sync.local
            && step == previous_step + 1
        {
            // The bound's η‖g‖ is the size of one update; with momentum that is η‖v‖.
            let update = self.sync.velocity.as_ref().unwrap_or(previous_gradient);
            let gradient_norm = update
                .iter()
                .map(|g| f64::from(*g).powi(2))
                .sum::<f64>()
                .sqrt();
            let bound = outliers_bound(
                self.config.learning_rate,
                gradient_norm,
                self.config.gather_every,
                self.config.workers,
                self.config.workers - self.config.worker_quorum,
                step,
            );
            if f64::from(distance(params.view(), local.view())) > bound {
                return Some("outliers");
            }
        }
        let gradient_delta = f64::from(distance(gradient.view(), previous_gradient.view()));
        let model_delta = f64::from(distance(params.view(), previous_model.view()));
        match LipschitzFilter::coefficient(gradient_delta, model_delta) {
            Some(k) if !self.sync.lipschitz.check(k) => Some("lipschitz"),
            _ => None,
        }
    }
}

impl Node for Worker {
    fn id(&self) -> NodeId {
        NodeId::worker(self.index)
    }

    fn start(&mut self, now: f64) -> Outputs {
        let mut out = Outputs::default();
        if self.config.steps == 0 {
            self.finished = true;
            out.events.push(Event::Finished);
        } else if self.config.mode == Mode::Synchronous {
            self.request(now, &mut out);
        }
        out
    }

    fn handle(&mut self, now: f64, from: NodeId, payload: Payload) -> Result<Outputs, Rejection> {
        let Payload::Model { step, params } = payload else {
            return Err(Rejection::UnexpectedKind);
        };
        if from.role != Role::Server {
            return Err(Rejection::UnexpectedKind);
        }
        if from.index >= self.config.servers {
            return Err(Rejection::UnknownSender);
        }
        check_vector(params.view(), self.config.dimension)?;
        let current = if self.finished { u64::MAX } else { self.step };
        if step > self.step + self.config.max_lead
            && !self.finished
            && self.config.mode == Mode::Asynchronous
        {
            self.catch_up(from.index, step);
        }
        self.models.insert(
            step,
            from.index,
            params,
            current,
            self.step + self.config.max_lead,
        )?;
        let mut out = Outputs::default();
        self.advance(now, &mut out);
        Ok(out)
    }

    fn tick(&mut self, now: f64) -> Outputs {
        let mut out = Outputs::default();
        if let Some(deadline) = self.next_deadline()
            && now >= deadline
        {
            if self.needs_all_servers(self.step) {
                // No q_ps models for one step came back: a worker that fell behind pulls from
                // servers that answer with their current models, which may straddle a step.
                // Asking again gets a fresh set; without it the worker waited forever.
                self.sync.requested = None;
            } else {
                self.switch_server();
            }
            self.request(now, &mut out);
        }
        out
    }

    fn step(&self) -> u64 {
        self.step
    }

    fn finished(&self) -> bool {
        self.finished
    }

    fn model(&self) -> Option<ArrayView1<'_, f32>> {
        None
    }

    fn next_deadline(&self) -> Option<f64> {
        (self.config.mode == Mode::Synchronous && !self.finished && self.sync.requested.is_some())
            .then_some(self.sync.requested_at + self.config.sync_timeout)
    }
}
