//! A deterministic in-memory network of protocol nodes (after raft-rs's test harness): seeded
//! per-message delays, drops, partitions and crashes, and Byzantine nodes, all in one thread
//! and in virtual time. Used by the tests and by the experiment runner's `sim` backend.
//!
//! The harness knows which servers are correct, so it measures what no node can: the largest
//! distance between correct servers' models at the same step (the quantity scatter/gather
//! bounds), reported as `max_drift`.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
};

use ndarray::Array1;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::{
    job::Role,
    protocol::{Event, Kind, Node, NodeId, Payload, Rejection, server::distance},
};

/// Network conditions of a simulation.
#[derive(Debug, Clone)]
pub struct Network {
    /// Seed of delays and drops.
    pub seed: u64,
    /// Smallest one-way delay, in seconds of virtual time.
    pub min_delay: f64,
    /// Largest one-way delay; each message draws uniformly in [min, max].
    pub max_delay: f64,
    /// Probability that a message is lost. ByzSGD assumes reliable channels between correct
    /// nodes, so keep this 0 unless a test wants to show what losing that assumption does.
    pub drop_rate: f64,
    /// Links cut during a time window.
    pub partitions: Vec<Partition>,
    /// Nodes that stop at a time (crash-stop: they neither send nor receive afterwards).
    pub crashes: Vec<(NodeId, f64)>,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            seed: 0,
            min_delay: 0.001,
            max_delay: 0.010,
            drop_rate: 0.0,
            partitions: Vec::new(),
            crashes: Vec::new(),
        }
    }
}

/// Messages between the two sides are lost during [from, until).
#[derive(Debug, Clone)]
pub struct Partition {
    /// One side.
    pub side: Vec<NodeId>,
    /// Start of the cut, virtual seconds.
    pub from: f64,
    /// End of the cut.
    pub until: f64,
}

impl Partition {
    fn cuts(&self, a: NodeId, b: NodeId, now: f64) -> bool {
        now >= self.from && now < self.until && (self.side.contains(&a) != self.side.contains(&b))
    }
}

/// One server's evaluation at a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The server.
    pub server: usize,
    /// The step.
    pub step: u64,
    /// Test loss.
    pub loss: f32,
    /// Test accuracy.
    pub accuracy: f32,
}

/// What a simulation measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Virtual seconds elapsed.
    pub elapsed: f64,
    /// Every evaluation of every server (honest or not), in order.
    pub evaluations: Vec<Evaluation>,
    /// Max pairwise distance between correct servers' models θ_t, per step t (before any
    /// gather at that step).
    pub drift: BTreeMap<u64, f32>,
    /// The same distance right after each gather (DMC): the contraction is `drift[t]` →
    /// `gathered_drift[t]`.
    pub gathered_drift: BTreeMap<u64, f32>,
    /// Drift of each correct server to the median at each gather: (step, server, distance).
    pub gathers: Vec<(u64, usize, f32)>,
    /// Messages delivered, by kind.
    pub messages: BTreeMap<Kind, u64>,
    /// Bytes of vectors delivered, by kind.
    pub bytes: BTreeMap<Kind, u64>,
    /// Messages dropped by receivers, by reason.
    pub rejected: BTreeMap<Rejection, u64>,
    /// Messages lost by the network (drops, partitions, crashed receivers).
    pub lost: u64,
    /// Largest number of distinct senders any gradient quorum waited for (q_w when correct).
    pub largest_gradient_quorum: usize,
    /// Times each worker was excluded by a gradient rule, summed over servers.
    pub excluded_workers: BTreeMap<usize, u64>,
    /// Models refused by a synchronous worker's filters, by the server that sent them.
    pub filter_rejections: BTreeMap<usize, u64>,
    /// Whether every correct node finished.
    pub finished: bool,
    /// Final step of each server.
    pub final_steps: Vec<u64>,
    /// Crash recoveries: (server, step before, step adopted).
    pub recoveries: Vec<(usize, u64, u64)>,
}

impl Report {
    /// Median test accuracy over the correct servers' last evaluations.
    pub fn final_accuracy(&self, correct: &[usize]) -> Option<f32> {
        let mut last: BTreeMap<usize, f32> = BTreeMap::new();
        for evaluation in &self.evaluations {
            if correct.contains(&evaluation.server) {
                last.insert(evaluation.server, evaluation.accuracy);
            }
        }
        let mut values: Vec<f32> = last.into_values().collect();
        (!values.is_empty()).then(|| crate::protocol::median_of(&mut values))
    }

    /// Largest drift between correct servers over the whole run.
    pub fn max_drift(&self) -> f32 {
        self.drift.values().copied().fold(0.0, f32::max)
    }
}

#[derive(Debug)]
enum Scheduled {
    Deliver {
        from: NodeId,
        to: NodeId,
        payload: Payload,
    },
    Tick {
        node: NodeId,
    },
    /// A crashed node comes back as this fresh instance (its state lost).
    Restart {
        node: Box<dyn Node>,
    },
}

/// A simulation: nodes, a network and a virtual clock.
#[derive(Debug)]
pub struct Sim {
    nodes: BTreeMap<NodeId, Box<dyn Node>>,
    correct_servers: Vec<usize>,
    network: Network,
    rng: StdRng,
    now: f64,
    sequence: u64,
    queue: BinaryHeap<Reverse<(Time, u64)>>,
    pending: BTreeMap<u64, Scheduled>,
    /// Per (step, after-gather), snapshots of correct servers' models until all of them
    /// reached it.
    snapshots: BTreeMap<(u64, bool), Vec<Array1<f32>>>,
    /// When crashed nodes come back ([`Sim::restart`]).
    restarts: Vec<(NodeId, f64)>,
    report: Report,
}

/// Total order on virtual time (never NaN: delays are validated finite).
#[derive(Debug, Clone, Copy)]
struct Time(f64);
impl PartialEq for Time {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Time {}
impl PartialOrd for Time {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Time {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Sim {
    /// A simulation of `nodes`, where `correct_servers` are the indices of servers that follow
    /// the protocol.
    pub fn new(nodes: Vec<Box<dyn Node>>, correct_servers: Vec<usize>, network: Network) -> Self {
        let rng = StdRng::seed_from_u64(network.seed);
        let nodes = nodes.into_iter().map(|node| (node.id(), node)).collect();
        Self {
            nodes,
            correct_servers,
            network,
            rng,
            now: 0.0,
            sequence: 0,
            queue: BinaryHeap::new(),
            pending: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            restarts: Vec::new(),
            report: Report::default(),
        }
    }

    /// Brings a node crashed by [`Network::crashes`] back at `at` as `fresh`, a new instance
    /// that lost all state (a restarted process or pod); it is started like at the beginning.
    #[must_use]
    pub fn restart(mut self, at: f64, fresh: Box<dyn Node>) -> Self {
        self.restarts.push((fresh.id(), at));
        self.schedule(at, Scheduled::Restart { node: fresh });
        self
    }

    /// Runs until every correct node finished, nothing is left to deliver, or `max_time`.
    pub fn run(mut self, max_time: f64) -> Report {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in &ids {
            if let Some(node) = self.nodes.get_mut(id) {
                let out = node.start(0.0);
                self.absorb(*id, out);
            }
        }
        while let Some(Reverse((Time(time), sequence))) = self.queue.pop() {
            if time > max_time || self.all_correct_finished() {
                break;
            }
            self.now = time;
            let Some(event) = self.pending.remove(&sequence) else {
                continue;
            };
            match event {
                Scheduled::Deliver { from, to, payload } => self.deliver(from, to, payload),
                Scheduled::Restart { node } => {
                    let id = node.id();
                    self.nodes.insert(id, node);
                    if let Some(node) = self.nodes.get_mut(&id) {
                        let out = node.start(time);
                        self.absorb(id, out);
                    }
                }
                Scheduled::Tick { node } => {
                    if !self.crashed(node)
                        && let Some(target) = self.nodes.get_mut(&node)
                    {
                        let out = target.tick(time);
                        self.absorb(node, out);
                    }
                }
            }
        }
        self.report.elapsed = self.now;
        self.report.finished = self.all_correct_finished();
        self.report.final_steps = self
            .nodes
            .values()
            .filter(|node| node.id().role == Role::Server)
            .map(|node| node.step())
            .collect();
        self.report
    }

    fn all_correct_finished(&self) -> bool {
        self.nodes.values().all(|node| {
            let id = node.id();
            let correct = id.role == Role::Worker || self.correct_servers.contains(&id.index);
            node.finished() || !correct || self.crashed(id)
        })
    }

    /// Down now: crashed, and not restarted since.
    fn crashed(&self, node: NodeId) -> bool {
        self.network.crashes.iter().any(|(crashed, at)| {
            *crashed == node
                && self.now >= *at
                && !self
                    .restarts
                    .iter()
                    .any(|(restarted, back)| *restarted == node && back > at && self.now >= *back)
        })
    }

    fn schedule(&mut self, at: f64, event: Scheduled) {
        self.sequence += 1;
        self.queue.push(Reverse((Time(at), self.sequence)));
        self.pending.insert(self.sequence, event);
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, payload: Payload) {
        if self.crashed(to) {
            self.report.lost += 1;
            return;
        }
        let kind = payload.kind();
        let bytes = payload.vector_bytes() as u64;
        let Some(node) = self.nodes.get_mut(&to) else {
            self.report.lost += 1;
            return;
        };
        match node.handle(self.now, from, payload) {
            Ok(out) => {
                *self.report.messages.entry(kind).or_default() += 1;
                *self.report.bytes.entry(kind).or_default() += bytes;
                self.absorb(to, out);
            }
            Err(rejection) => *self.report.rejected.entry(rejection).or_default() += 1,
        }
    }

    /// Records a node's events and puts its messages on the wire.
    fn absorb(&mut self, from: NodeId, out: crate::protocol::Outputs) {
        for event in out.events {
            self.record(from, event);
        }
        if self.crashed(from) {
            return;
        }
        for (to, payload) in out.messages {
            let lost = self.rng.random_bool(self.network.drop_rate.clamp(0.0, 1.0))
                || self
                    .network
                    .partitions
                    .iter()
                    .any(|partition| partition.cuts(from, to, self.now));
            if lost {
                self.report.lost += 1;
                continue;
            }
            let delay = if self.network.max_delay > self.network.min_delay {
                self.rng
                    .random_range(self.network.min_delay..self.network.max_delay)
            } else {
                self.network.min_delay
            };
            self.schedule(self.now + delay, Scheduled::Deliver { from, to, payload });
        }
        if let Some(deadline) = self.nodes.get(&from).and_then(|node| node.next_deadline()) {
            self.schedule(deadline.max(self.now), Scheduled::Tick { node: from });
        }
    }

    fn record(&mut self, from: NodeId, event: Event) {
        let correct_server =
            from.role == Role::Server && self.correct_servers.contains(&from.index);
        match event {
            Event::Evaluated {
                step,
                loss,
                accuracy,
            } => {
                self.report.evaluations.push(Evaluation {
                    server: from.index,
                    step,
                    loss,
                    accuracy,
                });
            }
            Event::Stepped { step, .. } if correct_server => self.snapshot(from, step, false),
            Event::Gathered {
                step,
                drift_to_median,
                ..
            } if correct_server => {
                self.report
                    .gathers
                    .push((step, from.index, drift_to_median));
                self.snapshot(from, step, true);
            }
            Event::Recovered {
                from_step, step, ..
            } => self.report.recoveries.push((from.index, from_step, step)),
            Event::FilterRejected { server, .. } => {
                *self
                    .report
                    .filter_rejections
                    .entry(server.index)
                    .or_default() += 1;
            }
            Event::Aggregated {
                kind: Kind::Gradient,
                selected,
                excluded,
                ..
            } => {
                self.report.largest_gradient_quorum = self
                    .report
                    .largest_gradient_quorum
                    .max(selected.len() + excluded.len());
                for worker in excluded {
                    *self
                        .report
                        .excluded_workers
                        .entry(worker.index)
                        .or_default() += 1;
                }
            }
            _ => {}
        }
    }

    /// Keeps a correct server's model at `step` until every correct server has one, then
    /// records their largest pairwise distance.
    fn snapshot(&mut self, from: NodeId, step: u64, gathered: bool) {
        let Some(model) = self
            .nodes
            .get(&from)
            .and_then(|node| node.model())
            .map(|model| model.to_owned())
        else {
            return;
        };
        let expected = self.correct_servers.len();
        let key = (step, gathered);
        let models = self.snapshots.entry(key).or_default();
        models.push(model);
        if models.len() == expected {
            let models = self.snapshots.remove(&key).unwrap_or_default();
            let mut largest = 0.0_f32;
            for (i, a) in models.iter().enumerate() {
                for b in &models[i + 1..] {
                    largest = largest.max(distance(a.view(), b.view()));
                }
            }
            if gathered {
                self.report.gathered_drift.insert(step, largest);
            } else {
                self.report.drift.insert(step, largest);
            }
            // Older steps can no longer complete (a server that caught up skipped them).
            self.snapshots = self.snapshots.split_off(&(step, false));
        }
    }
}
