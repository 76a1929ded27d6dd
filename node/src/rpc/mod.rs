//! The gRPC transport (tonic, proto package `byzsgd.v1`): the service every node serves, the
//! per-peer senders, the wire encoding, mutual TLS and the identity seam. It moves bytes and
//! checks them; the protocol decides what they mean.

/// HTTP/2 flow-control windows. The defaults (64 KiB per stream) make every model-sized
/// message wait for several WINDOW_UPDATE round trips; a window that holds a few whole models
/// lets a step's messages flow in one go.
pub const STREAM_WINDOW_BYTES: u32 = 8 << 20;
/// Connection-level window: all streams of one link together.
pub const CONNECTION_WINDOW_BYTES: u32 = 32 << 20;

pub mod flood;
pub mod identity;
pub mod inbox;
pub mod tls;
pub mod wire;

pub mod peers;
pub mod service;

use std::sync::Arc;

use byzsgd_core::protocol::NodeId;

/// How a node's peer links are secured.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Mutual TLS with the job's CA; every sender is the node its certificate names. The
    /// default: `--tls-dir`, the operator's Secrets, the local runner's in-memory CA.
    MutualTls(tls::Tls),
    /// Plaintext; a sender is whoever it claims to be (`--insecure`: trusted networks and
    /// debugging only, ByzSGD's bounds do not hold against a node that lies about its name).
    Insecure,
}

impl Transport {
    /// Who sent a stream, for the nodes of `job`.
    pub fn identity(
        &self,
        job: &str,
        nodes: impl IntoIterator<Item = NodeId>,
    ) -> Arc<dyn identity::Identity> {
        match self {
            Self::MutualTls(_) => Arc::new(identity::CertificateIdentity::new(job, nodes)),
            Self::Insecure => Arc::new(identity::HeaderIdentity),
        }
    }
}

/// Code generated from `proto/byzsgd/v1/byzsgd.proto`.
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::pedantic,
    clippy::default_trait_access
)]
pub mod proto {
    tonic::include_proto!("byzsgd.v1");
}
