//! What nodes say to each other, independent of any transport: the sim passes these values
//! around in memory, the gRPC layer encodes them (proto package `byzsgd.v1`).
//!
//! Vectors are behind `Arc` so that one model broadcast to every worker is one allocation.

use std::sync::Arc;

use ndarray::Array1;

use crate::job::Role;

/// A node of the job, as the authenticated channel identifies it. The protocol never takes a
/// sender's identity from a message field, so a Byzantine node cannot claim another's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    /// Server or worker.
    pub role: Role,
    /// Index within the role, from 0.
    pub index: usize,
}

impl NodeId {
    /// Server `index`.
    pub fn server(index: usize) -> Self {
        Self {
            role: Role::Server,
            index,
        }
    }
    /// Worker `index`.
    pub fn worker(index: usize) -> Self {
        Self {
            role: Role::Worker,
            index,
        }
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.role, self.index)
    }
}

impl NodeId {
    /// Parses the [`Display`](std::fmt::Display) form, `server-3` / `worker-0`.
    pub fn parse(name: &str) -> Option<Self> {
        let (role, index) = name.rsplit_once('-')?;
        let index = index.parse().ok()?;
        let role = match role {
            "server" => Role::Server,
            "worker" => Role::Worker,
            _ => return None,
        };
        Some(Self { role, index })
    }
}

/// The message kinds of ByzSGD.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Server → worker: the server's model at the start of `step` (scatter).
    Model {
        /// The step this model starts.
        step: u64,
        /// The parameters.
        params: Arc<Array1<f32>>,
    },
    /// Server → server: the server's model at gather `step` (DMC).
    Gather {
        /// The gather step (a multiple of T).
        step: u64,
        /// The parameters.
        params: Arc<Array1<f32>>,
    },
    /// Worker → server: a stochastic gradient computed at the median of the step's models.
    Gradient {
        /// The step the gradient is for.
        step: u64,
        /// The gradient.
        gradient: Arc<Array1<f32>>,
        /// The worker's mini-batch loss (informational; never trusted for decisions).
        loss: f32,
    },
    /// Worker → server, synchronous mode only: "send me your model for `step`".
    Pull {
        /// The step whose model is wanted.
        step: u64,
    },
    /// Server → server, when a server (re)starts: "where are you?" (crash recovery).
    StateRequest {
        /// The asking server's step (0 after a restart; informational).
        step: u64,
    },
    /// Server → server, the answer to a [`Payload::StateRequest`]: the sender's current step
    /// and model.
    State {
        /// The answering server's step.
        step: u64,
        /// Its model at that step.
        params: Arc<Array1<f32>>,
    },
}

/// Bounded label for metrics: which kind of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// [`Payload::Model`].
    Model,
    /// [`Payload::Gather`].
    Gather,
    /// [`Payload::Gradient`].
    Gradient,
    /// [`Payload::Pull`].
    Pull,
    /// [`Payload::StateRequest`].
    StateRequest,
    /// [`Payload::State`].
    State,
}

impl Kind {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Gather => "gather",
            Self::Gradient => "gradient",
            Self::Pull => "pull",
            Self::StateRequest => "state_request",
            Self::State => "state",
        }
    }
}

impl Payload {
    /// The message kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Model { .. } => Kind::Model,
            Self::Gather { .. } => Kind::Gather,
            Self::Gradient { .. } => Kind::Gradient,
            Self::Pull { .. } => Kind::Pull,
            Self::StateRequest { .. } => Kind::StateRequest,
            Self::State { .. } => Kind::State,
        }
    }

    /// The step the message is tagged with.
    pub fn step(&self) -> u64 {
        match self {
            Self::Model { step, .. }
            | Self::Gather { step, .. }
            | Self::Gradient { step, .. }
            | Self::Pull { step }
            | Self::StateRequest { step }
            | Self::State { step, .. } => *step,
        }
    }

    /// The vector carried, if any.
    pub fn vector(&self) -> Option<&Arc<Array1<f32>>> {
        match self {
            Self::Model { params, .. }
            | Self::Gather { params, .. }
            | Self::State { params, .. } => Some(params),
            Self::Gradient { gradient, .. } => Some(gradient),
            Self::Pull { .. } | Self::StateRequest { .. } => None,
        }
    }

    /// The same message carrying `vector` instead (a Byzantine node's rewrite); messages
    /// without a vector are returned unchanged.
    #[must_use]
    pub fn with_vector(self, vector: Arc<Array1<f32>>) -> Self {
        match self {
            Self::Model { step, .. } => Self::Model {
                step,
                params: vector,
            },
            Self::Gather { step, .. } => Self::Gather {
                step,
                params: vector,
            },
            Self::State { step, .. } => Self::State {
                step,
                params: vector,
            },
            Self::Gradient { step, loss, .. } => Self::Gradient {
                step,
                gradient: vector,
                loss,
            },
            Self::Pull { .. } | Self::StateRequest { .. } => self,
        }
    }

    /// Size on the wire of the vector, in bytes (f32 little-endian).
    pub fn vector_bytes(&self) -> usize {
        self.vector().map_or(0, |vector| vector.len() * 4)
    }
}

/// Why an incoming message was dropped. Counted as `byzsgd_rejected_total{reason}`; never fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum Rejection {
    /// Tagged with a step the receiver has already passed.
    #[error("stale step")]
    Stale,
    /// A second message of the same kind and step from the same sender.
    #[error("duplicate (step, sender)")]
    Duplicate,
    /// Tagged too far in the future to be buffered.
    #[error("step too far ahead")]
    Future,
    /// Vector of the wrong length.
    #[error("wrong vector length")]
    WrongLength,
    /// NaN or ±inf where only finite values are allowed.
    #[error("non-finite values")]
    NonFinite,
    /// A kind this role never receives, or from a role that never sends it.
    #[error("unexpected message kind for this receiver")]
    UnexpectedKind,
    /// A sender index outside the job.
    #[error("unknown sender")]
    UnknownSender,
    /// Undecodable bytes (transport only).
    #[error("malformed message")]
    Malformed,
    /// Tagged with another job's name (transport only).
    #[error("wrong job")]
    WrongJob,
    /// A connection without a valid certificate of the job's CA: none, another CA's, expired,
    /// or naming no node of the job (transport only; the TLS handshake or the stream is
    /// refused).
    #[error("unauthenticated connection")]
    Unauthenticated,
    /// A peer whose certificate names one node claimed to be another (transport only).
    #[error("claimed another node's identity")]
    Impersonation,
}

impl Rejection {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::Duplicate => "duplicate",
            Self::Future => "future",
            Self::WrongLength => "wrong_length",
            Self::NonFinite => "non_finite",
            Self::UnexpectedKind => "unexpected_kind",
            Self::UnknownSender => "unknown_sender",
            Self::Malformed => "malformed",
            Self::WrongJob => "wrong_job",
            Self::Unauthenticated => "unauthenticated",
            Self::Impersonation => "impersonation",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_round_trip() {
        for id in [NodeId::server(0), NodeId::worker(12)] {
            assert_eq!(NodeId::parse(&id.to_string()), Some(id));
        }
        for bad in ["", "server", "server-", "server-x", "boss-1", "server--1"] {
            assert_eq!(NodeId::parse(bad), None, "{bad}");
        }
    }
}
