//! The parameter server's state machine (PAPER.md §3.2–3.3).
//!
//! Per step: wait for the gradients of the first q_w distinct workers, aggregate them with the
//! gradient rule, update the model, then either scatter the new model to the workers or, every
//! T steps, gather with the other servers and adopt the coordinate-wise median of q_ps models
//! (DMC). In the synchronous variant workers pull models instead of receiving them, and the
//! server waits for all n_w gradients until a timeout once it holds a quorum.

use std::{collections::BTreeMap, sync::Arc};

use ndarray::{Array1, ArrayView1};

use super::{
    Evaluator, Event, Node, Outputs, ProtocolConfig, aggregate_quorum, check_vector,
    checkpoint::{Checkpoint, CheckpointError},
    inbox::Inbox,
    median_of,
    message::{Kind, NodeId, Payload, Rejection},
    take_model_quorum,
};
use crate::{job::spec::Mode, model::Sgd};

/// How long a server waits without completing a quorum before it sends its current model again
/// to the peers it has not heard from at this step (seconds). A message to a peer that was down
/// is lost; without this, killing every pod of a job at once deadlocked it on real pods: the
/// servers, back at their checkpoints' step, had scattered their models before the workers
/// were up, and waited for gradients the workers could not compute. Much longer than a step
/// (milliseconds), so an undisturbed run never re-sends.
pub const RESEND_AFTER: f64 = 2.0;

/// Peers' answers to a state request: their step and model, by peer index.
type StateAnswers = BTreeMap<usize, (u64, Arc<Array1<f32>>)>;

/// Where a server is within its current step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Model sent (or ready to be pulled); waiting for gradients of `step`.
    Scatter,
    /// Waiting for the peer models of gather `step`.
    Gather,
    /// All steps done.
    Finished,
}

/// A correct parameter server.
#[derive(Debug)]
pub struct Server {
    config: Arc<ProtocolConfig>,
    index: usize,
    params: Array1<f32>,
    sgd: Sgd,
    step: u64,
    phase: Phase,
    /// Gradients with the worker's reported loss, per step.
    gradients: Inbox<(Arc<Array1<f32>>, f32)>,
    /// Peer models per gather step (own model included once the server reaches that gather).
    gathers: Inbox<Arc<Array1<f32>>>,
    /// Synchronous mode: workers waiting for the model of a step.
    pulls: Inbox<()>,
    /// Synchronous mode: when to stop waiting for the remaining gradients of this step.
    sync_deadline: Option<f64>,
    /// (step, phase, when): the wait this deadline belongs to and when to re-send the model
    /// to the peers not heard from ([`RESEND_AFTER`]).
    resend: Option<(u64, Phase, f64)>,
    evaluator: Option<Box<dyn Evaluator>>,
    /// Peers' answers to the state request sent at start, until enough arrived (crash
    /// recovery, [`Server::recover`]); `None` once settled.
    recovery: Option<StateAnswers>,
    /// Per peer: our step when we last answered its state request (one model per peer and
    /// step, however often a Byzantine peer asks).
    state_answered: Vec<Option<u64>>,
}

impl Server {
    /// A server starting from `initial` (every correct server gets the same seeded model,
    /// PAPER.md §3.1).
    pub fn new(
        config: Arc<ProtocolConfig>,
        index: usize,
        initial: Array1<f32>,
        evaluator: Option<Box<dyn Evaluator>>,
    ) -> Self {
        let sgd = fresh_sgd(&config, initial.len());
        let servers = config.servers;
        Self {
            config,
            index,
            params: initial,
            sgd,
            step: 0,
            phase: Phase::Scatter,
            gradients: Inbox::default(),
            gathers: Inbox::default(),
            pulls: Inbox::default(),
            sync_deadline: None,
            resend: None,
            evaluator,
            recovery: None,
            state_answered: vec![None; servers],
        }
    }

    /// Resumes from a checkpoint instead of the initial model: the step, model and momentum
    /// it holds. Call before [`Node::start`]; the server then asks its peers where they are
    /// like any (re)started server and, if they are ahead, recovers from them.
    pub fn resume(&mut self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        checkpoint.check(self.config.dimension, self.config.steps)?;
        self.params.assign(&checkpoint.params);
        let restored = self.sgd.restore_velocity(&checkpoint.velocity);
        debug_assert!(restored.is_some(), "checked against the dimension above");
        self.step = checkpoint.step;
        Ok(())
    }

    /// n_w (receivers of a scatter).
    pub fn workers(&self) -> usize {
        self.config.workers
    }

    /// The current model.
    pub fn params(&self) -> &Array1<f32> {
        &self.params
    }

    /// Messages buffered for future steps (bounded by `max_lead`).
    pub fn buffered(&self) -> usize {
        self.gradients.len() + self.gathers.len() + self.pulls.len()
    }

    fn gather_horizon(&self) -> u64 {
        // Gathers are T steps apart; keeping the next two lets a slow server catch up.
        self.step + self.config.max_lead.max(2 * self.config.gather_every)
    }

    /// Starts the current step: finish, gather, or scatter.
    fn begin_step(&mut self, out: &mut Outputs) {
        if self.config.is_gather_step(self.step) {
            self.phase = Phase::Gather;
            let params = Arc::new(self.params.clone());
            for peer in (0..self.config.servers).filter(|&peer| peer != self.index) {
                out.messages.push((
                    NodeId::server(peer),
                    Payload::Gather {
                        step: self.step,
                        params: params.clone(),
                    },
                ));
            }
            // NB: the own model counts in the gather quorum (module docs of `protocol`). It
            // cannot collide: peers never send under our index.
            let _ = self.gathers.insert(
                self.step,
                self.index,
                params,
                self.step,
                self.gather_horizon(),
            );
        } else if self.step >= self.config.steps {
            self.finish(out);
        } else {
            self.scatter(out);
        }
    }

    /// The end of training: the final model (after the closing gather) is evaluated once more,
    /// so every correct server reports a model from the same contracted neighbourhood.
    fn finish(&mut self, out: &mut Outputs) {
        self.phase = Phase::Finished;
        self.evaluate(out);
        out.events.push(Event::Finished);
        // A synchronous worker still pulling its last step gets the final model, which ends
        // its run too; otherwise it would wait for a scatter that never comes.
        let params = Arc::new(self.params.clone());
        self.answer_pulls(&params, out);
    }

    fn scatter(&mut self, out: &mut Outputs) {
        self.phase = Phase::Scatter;
        let params = Arc::new(self.params.clone());
        match self.config.mode {
            Mode::Asynchronous => {
                for worker in 0..self.config.workers {
                    out.messages.push((
                        NodeId::worker(worker),
                        Payload::Model {
                            step: self.step,
                            params: params.clone(),
                        },
                    ));
                }
            }
            Mode::Synchronous => self.answer_pulls(&params, out),
        }
    }

    /// Synchronous mode: answers every pull waiting for this step or an earlier one.
    fn answer_pulls(&mut self, params: &Arc<Array1<f32>>, out: &mut Outputs) {
        for (worker, ()) in self.pulls.take(self.step) {
            out.messages.push((
                NodeId::worker(worker),
                Payload::Model {
                    step: self.step,
                    params: params.clone(),
                },
            ));
        }
    }

    /// Makes as much progress as the buffered messages allow.
    fn advance(&mut self, now: f64, out: &mut Outputs) {
        loop {
            if self.phase == Phase::Finished {
                return;
            }
            if self.try_catch_up(out) {
                continue;
            }
            match self.phase {
                Phase::Gather => {
                    if self.gathers.count(self.step) >= self.config.server_quorum {
                        self.finish_gather(out);
                        continue;
                    }
                    self.resend_if_due(now, out);
                    return;
                }
                Phase::Scatter => {
                    let count = self.gradients.count(self.step);
                    let ready = match self.config.mode {
                        Mode::Asynchronous => count >= self.config.worker_quorum,
                        Mode::Synchronous => {
                            if count >= self.config.workers {
                                true
                            } else if count >= self.config.worker_quorum {
                                let deadline = *self
                                    .sync_deadline
                                    .get_or_insert(now + self.config.sync_timeout);
                                now >= deadline
                            } else {
                                false
                            }
                        }
                    };
                    if !ready {
                        if self.config.mode == Mode::Asynchronous {
                            self.resend_if_due(now, out);
                        }
                        return;
                    }
                    self.apply_gradients(out);
                }
                Phase::Finished => return,
            }
        }
    }

    /// While a quorum is incomplete: once [`RESEND_AFTER`] has passed in the same wait, sends
    /// the current model again — to the workers without a gradient for this step (scatter,
    /// asynchronous mode) or to the peers without a gather model for it — and again every
    /// [`RESEND_AFTER`]. Only to those not heard from: a peer that already has the model
    /// would count the copy as a duplicate.
    fn resend_if_due(&mut self, now: f64, out: &mut Outputs) {
        let wait = (self.step, self.phase);
        match self.resend {
            Some((step, phase, at)) if (step, phase) == wait && now < at => return,
            Some((step, phase, _)) if (step, phase) == wait => {}
            _ => {
                self.resend = Some((wait.0, wait.1, now + RESEND_AFTER));
                return;
            }
        }
        self.resend = Some((wait.0, wait.1, now + RESEND_AFTER));
        let params = Arc::new(self.params.clone());
        let step = self.step;
        match self.phase {
            Phase::Scatter => {
                let heard: Vec<usize> = self.gradients.get(step).iter().map(|(w, _)| *w).collect();
                for worker in (0..self.config.workers).filter(|w| !heard.contains(w)) {
                    out.messages.push((
                        NodeId::worker(worker),
                        Payload::Model {
                            step,
                            params: params.clone(),
                        },
                    ));
                }
            }
            Phase::Gather => {
                let heard: Vec<usize> = self.gathers.get(step).iter().map(|(s, _)| *s).collect();
                for peer in (0..self.config.servers).filter(|p| !heard.contains(p)) {
                    out.messages.push((
                        NodeId::server(peer),
                        Payload::Gather {
                            step,
                            params: params.clone(),
                        },
                    ));
                }
            }
            Phase::Finished => {}
        }
    }

    /// Aggregates the step's gradient quorum and updates the model.
    fn apply_gradients(&mut self, out: &mut Outputs) {
        let mut received = self.gradients.take(self.step);
        if self.config.mode == Mode::Asynchronous {
            // Exactly the first q_w distinct senders (PAPER.md §3.2); later ones are late.
            received.truncate(self.config.worker_quorum);
        }
        self.sync_deadline = None;
        let senders: Vec<NodeId> = received
            .iter()
            .map(|(sender, _)| NodeId::worker(*sender))
            .collect();
        let views: Vec<ArrayView1<'_, f32>> = received
            .iter()
            .map(|(_, (gradient, _))| gradient.view())
            .collect();
        let mut losses: Vec<f32> = received.iter().map(|(_, (_, loss))| *loss).collect();
        match aggregate_quorum(&self.config.gradient_rule, Kind::Gradient, &senders, &views) {
            Ok((value, event)) => {
                out.events.push(event);
                self.sgd.step(self.params.view_mut(), value.view());
            }
            Err(error) => {
                // Validation checks every bound before a job starts, so this is unreachable in
                // practice; skipping the update keeps the node alive rather than crashing it.
                debug_assert!(false, "gradient aggregation failed: {error}");
            }
        }
        self.step += 1;
        self.gradients.discard_below(self.step);
        out.events.push(Event::Stepped {
            step: self.step,
            loss: median_of(&mut losses),
        });
        // The last step's evaluation waits for the closing gather (`finish`).
        if self.step.is_multiple_of(self.config.evaluate_every) && self.step < self.config.steps {
            self.evaluate(out);
        }
        self.begin_step(out);
    }

    /// DMC: replaces the model by the median of the gather quorum.
    fn finish_gather(&mut self, out: &mut Outputs) {
        let step = self.step;
        self.adopt_gather(step, out);
    }

    /// A server behind the others jumps to a later gather for which it holds q_ps peer models.
    fn try_catch_up(&mut self, out: &mut Outputs) -> bool {
        let from = self.step + 1;
        match self.gathers.latest_ready(from, self.config.server_quorum) {
            Some(step) if self.config.is_gather_step(step) => {
                self.adopt_gather(step, out);
                true
            }
            _ => false,
        }
    }

    fn adopt_gather(&mut self, step: u64, out: &mut Outputs) {
        let (received, result) = take_model_quorum(
            &mut self.gathers,
            step,
            self.config.server_quorum,
            &self.config.model_rule,
            Kind::Gather,
        );
        match result {
            Ok((median, event)) => {
                let peer_distances = received
                    .iter()
                    .filter(|(sender, _)| *sender != self.index)
                    .map(|(sender, params)| {
                        (
                            NodeId::server(*sender),
                            distance(self.params.view(), params.view()),
                        )
                    })
                    .collect();
                let drift_to_median = distance(self.params.view(), median.view());
                out.events.push(event);
                out.events.push(Event::Gathered {
                    step,
                    drift_to_median,
                    peer_distances,
                });
                self.params = median;
            }
            Err(error) => debug_assert!(false, "model aggregation failed: {error}"),
        }
        if step > self.step {
            self.step = step;
            self.gradients.discard_below(step);
            self.pulls.discard_below(step);
        }
        self.gathers.discard_below(step + 1);
        if self.step >= self.config.steps {
            self.finish(out);
        } else {
            self.scatter(out);
        }
    }

    /// Asks every peer where it is. A server that starts with the job hears "step 0" and goes
    /// on; one restarted mid-run (a crash, a rescheduled pod) learns it is behind and recovers.
    fn request_state(&mut self, out: &mut Outputs) {
        if self.config.servers < 2 {
            return;
        }
        self.recovery = Some(BTreeMap::new());
        for peer in (0..self.config.servers).filter(|&peer| peer != self.index) {
            out.messages.push((
                NodeId::server(peer),
                Payload::StateRequest { step: self.step },
            ));
        }
    }

    /// Crash recovery, once q_ps − 1 peers answered the state request: when they are ahead,
    /// adopt the coordinate-wise median of their models and the (f_ps + 1)-th highest step they
    /// reported, then go on from there.
    ///
    /// Why a Byzantine peer cannot poison the transfer: at most f_ps of the q_ps − 1 =
    /// n_ps − f_ps − 1 answers are Byzantine, and n_ps ≥ 3·f_ps + 2 leaves at least f_ps + 1
    /// correct ones, a majority, so every coordinate of the median lies between correct values
    /// (the same argument as DMC). The step is the (f_ps + 1)-th highest, so some correct peer
    /// reached it: a Byzantine peer can neither rush the server past the job nor hold it back
    /// (the lowest f_ps answers are ignored as well). Waiting for q_ps − 1 answers, not q_ps,
    /// because with f_ps silent Byzantine peers only n_ps − 1 − f_ps peers ever answer.
    /// Momentum restarts from zero: a restarted process has lost it, and the peers' velocities
    /// are not part of the transfer.
    fn recover(&mut self, out: &mut Outputs) {
        let Some(answers) = self.recovery.take() else {
            return;
        };
        let byzantine = self.config.servers - self.config.server_quorum;
        let mut steps: Vec<u64> = answers.values().map(|(step, _)| *step).collect();
        steps.sort_unstable_by(|a, b| b.cmp(a));
        let target = steps[byzantine.min(steps.len() - 1)];
        if self.phase == Phase::Finished || target <= self.step {
            return;
        }
        let views: Vec<ArrayView1<'_, f32>> =
            answers.values().map(|(_, params)| params.view()).collect();
        let median = match crate::gar::coordinate_median(&views) {
            Ok(median) => median,
            Err(error) => {
                debug_assert!(false, "recovery median failed: {error}");
                return;
            }
        };
        let from_step = self.step;
        self.params = median;
        self.sgd = fresh_sgd(&self.config, self.params.len());
        self.step = target;
        self.sync_deadline = None;
        self.gradients.discard_below(target);
        self.pulls.discard_below(target);
        self.gathers.discard_below(target + 1);
        out.events.push(Event::Recovered {
            from_step,
            step: target,
            peers: answers.keys().map(|&peer| NodeId::server(peer)).collect(),
        });
        // The median just adopted stands in for a gather at `target`, whose peer models went
        // out while this server was down.
        if self.step >= self.config.steps {
            self.finish(out);
        } else {
            self.scatter(out);
        }
    }

    /// A message claiming to come from a peer server: another server of this job.
    fn check_peer(&self, from: NodeId) -> Result<(), Rejection> {
        if from.index >= self.config.servers || from.index == self.index {
            return Err(Rejection::UnknownSender);
        }
        Ok(())
    }

    /// A peer (re)started and asks where this server is.
    fn answer_state_request(&mut self, from: NodeId, out: &mut Outputs) -> Result<(), Rejection> {
        self.check_peer(from)?;
        if self.state_answered[from.index] == Some(self.step) {
            return Err(Rejection::Duplicate);
        }
        self.state_answered[from.index] = Some(self.step);
        out.messages.push((
            from,
            Payload::State {
                step: self.step,
                params: Arc::new(self.params.clone()),
            },
        ));
        Ok(())
    }

    /// A peer's answer to this server's state request.
    fn receive_state(
        &mut self,
        from: NodeId,
        step: u64,
        params: Arc<Array1<f32>>,
        out: &mut Outputs,
    ) -> Result<(), Rejection> {
        self.check_peer(from)?;
        check_vector(params.view(), self.config.dimension)?;
        let Some(answers) = &mut self.recovery else {
            // Not asked, or recovery already settled.
            return Err(Rejection::Stale);
        };
        if answers.contains_key(&from.index) {
            return Err(Rejection::Duplicate);
        }
        answers.insert(from.index, (step, params));
        if answers.len() + 1 >= self.config.server_quorum {
            self.recover(out);
        }
        Ok(())
    }

    fn evaluate(&mut self, out: &mut Outputs) {
        if let Some(evaluator) = &mut self.evaluator {
            let (loss, accuracy) = evaluator.evaluate(self.params.view());
            out.events.push(Event::Evaluated {
                step: self.step,
                loss,
                accuracy,
            });
        }
    }

    fn receive(
        &mut self,
        from: NodeId,
        payload: Payload,
        out: &mut Outputs,
    ) -> Result<(), Rejection> {
        match (from.role, payload) {
            (
                crate::job::Role::Worker,
                Payload::Gradient {
                    step,
                    gradient,
                    loss,
                },
            ) => {
                if from.index >= self.config.workers {
                    return Err(Rejection::UnknownSender);
                }
                check_vector(gradient.view(), self.config.dimension)?;
                if !loss.is_finite() {
                    return Err(Rejection::NonFinite);
                }
                let current = if self.phase == Phase::Finished {
                    u64::MAX
                } else {
                    self.step
                };
                let horizon = self.step + self.config.max_lead;
                self.gradients
                    .insert(step, from.index, (gradient, loss), current, horizon)?;
                Ok(())
            }
            (crate::job::Role::Worker, Payload::Pull { step })
                if self.config.mode == Mode::Synchronous =>
            {
                if from.index >= self.config.workers {
                    return Err(Rejection::UnknownSender);
                }
                if step <= self.step && matches!(self.phase, Phase::Scatter | Phase::Finished) {
                    // Behind or on time: the current (or final) model is the freshest answer.
                    out.messages.push((
                        NodeId::worker(from.index),
                        Payload::Model {
                            step: self.step,
                            params: Arc::new(self.params.clone()),
                        },
                    ));
                    return Ok(());
                }
                let wanted = step.max(self.step);
                self.pulls.insert(
                    wanted,
                    from.index,
                    (),
                    self.step,
                    self.step + self.config.max_lead,
                )?;
                Ok(())
            }
            (crate::job::Role::Server, Payload::Gather { step, params }) => {
                self.check_peer(from)?;
                if !self.config.is_gather_step(step) {
                    return Err(Rejection::UnexpectedKind);
                }
                check_vector(params.view(), self.config.dimension)?;
                // A gather already completed is stale.
                let current = match self.phase {
                    Phase::Gather => self.step,
                    Phase::Scatter => self.step + 1,
                    Phase::Finished => u64::MAX,
                };
                self.gathers
                    .insert(step, from.index, params, current, self.gather_horizon())?;
                Ok(())
            }
            (crate::job::Role::Server, Payload::StateRequest { .. }) => {
                self.answer_state_request(from, out)
            }
            (crate::job::Role::Server, Payload::State { step, params }) => {
                self.receive_state(from, step, params, out)
            }
            _ => Err(Rejection::UnexpectedKind),
        }
    }
}

impl Node for Server {
    fn id(&self) -> NodeId {
        NodeId::server(self.index)
    }

    fn start(&mut self, now: f64) -> Outputs {
        let mut out = Outputs::default();
        self.request_state(&mut out);
        self.begin_step(&mut out);
        self.advance(now, &mut out);
        out
    }

    fn handle(&mut self, now: f64, from: NodeId, payload: Payload) -> Result<Outputs, Rejection> {
        let mut out = Outputs::default();
        self.receive(from, payload, &mut out)?;
        self.advance(now, &mut out);
        Ok(out)
    }

    fn tick(&mut self, now: f64) -> Outputs {
        let mut out = Outputs::default();
        self.advance(now, &mut out);
        out
    }

    fn step(&self) -> u64 {
        self.step
    }

    fn finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    fn model(&self) -> Option<ArrayView1<'_, f32>> {
        Some(self.params.view())
    }

    fn next_deadline(&self) -> Option<f64> {
        // Only the current wait's: a deadline left from a wait that ended would wake the
        // runtime in a loop without anything to do.
        let resend = self
            .resend
            .filter(|&(step, phase, _)| (step, phase) == (self.step, self.phase))
            .map(|(_, _, at)| at);
        match (self.sync_deadline, resend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn checkpoint(&self) -> Option<Checkpoint> {
        Some(Checkpoint {
            step: self.step,
            params: self.params.clone(),
            velocity: self.sgd.velocity().to_owned(),
        })
    }
}

/// The optimiser state a server starts with, and restarts with after a crash recovery (the
/// velocity is not part of the transfer).
fn fresh_sgd(config: &ProtocolConfig, dimension: usize) -> Sgd {
    Sgd::new(
        config.learning_rate,
        config.momentum,
        config.weight_decay,
        dimension,
    )
}

/// Euclidean distance between two vectors, accumulated in f64.
pub fn distance(a: ArrayView1<'_, f32>, b: ArrayView1<'_, f32>) -> f32 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| {
            let d = f64::from(*x) - f64::from(*y);
            d * d
        })
        .sum::<f64>()
        .sqrt() as f32
}
