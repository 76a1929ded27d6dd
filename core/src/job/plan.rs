//! The resolved job: what every runtime (the simulator, local processes, pods) starts from,
//! once a [`JobSpec`] passed validation (`byzsgd_api::validate`). Quorums, the gather period T
//! and each node's behaviour are decided here once; nothing reads the raw spec's counts again.

use super::spec::{JobSpec, Role};
use crate::{
    attack::{ServerAttack, WorkerAttack},
    gar::GarConfig,
};

/// The attack a Byzantine node runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// Follows the protocol.
    Honest,
    /// A Byzantine server.
    Server(ServerAttack),
    /// A Byzantine worker.
    Worker(WorkerAttack),
}

impl Behaviour {
    /// Whether the node follows the protocol.
    pub fn is_honest(&self) -> bool {
        matches!(self, Self::Honest)
    }
}

/// A job spec that passed validation, with everything derived from it resolved once.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The spec it came from.
    pub spec: JobSpec,
    /// n_ps.
    pub servers: usize,
    /// Declared f_ps.
    pub byzantine_servers: usize,
    /// n_w.
    pub workers: usize,
    /// Declared f_w.
    pub byzantine_workers: usize,
    /// q_ps = n_ps − f_ps: models a worker waits for per step, and a server per gather.
    pub server_quorum: usize,
    /// q_w = n_w − f_w: gradients a server waits for per step.
    pub worker_quorum: usize,
    /// The gather period T (resolved from `auto`).
    pub gather_every: u64,
    /// Rule for gradients on servers, with f = f_w.
    pub gradient_rule: GarConfig,
    /// Rule for models on workers and at gathers, with f = f_ps.
    pub model_rule: GarConfig,
    /// Behaviour of each server, by index.
    pub server_behaviours: Vec<Behaviour>,
    /// Behaviour of each worker, by index.
    pub worker_behaviours: Vec<Behaviour>,
}

impl Plan {
    /// The behaviour of one node.
    pub fn behaviour(&self, role: Role, index: usize) -> &Behaviour {
        let list = match role {
            Role::Server => &self.server_behaviours,
            Role::Worker => &self.worker_behaviours,
        };
        list.get(index).unwrap_or(&Behaviour::Honest)
    }

    /// Indices of the servers that follow the protocol (whose drift the scatter/gather bound is
    /// about).
    pub fn correct_servers(&self) -> Vec<usize> {
        (0..self.servers)
            .filter(|&i| self.server_behaviours[i].is_honest())
            .collect()
    }
}

/// T = ⌊1/(3·l·η)⌋, at least 1 (PAPER.md §3.5 and §10.2: when η > 1/(3l) the formula gives 0 and
/// servers gather at every step).
pub fn auto_gather_every(lipschitz: f32, learning_rate: f32) -> u64 {
    let period = 1.0 / (3.0 * f64::from(lipschitz) * f64::from(learning_rate));
    if period.is_finite() && period >= 1.0 {
        period.floor() as u64
    } else {
        1
    }
}
