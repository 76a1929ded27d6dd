//! Who sent a stream: the seam between the transport and the protocol's notion of a sender.
//!
//! The protocol trusts [`NodeId`]s to be unforgeable (one quorum slot per node). Whatever
//! implements [`Identity`] is what makes that true. Today's [`HeaderIdentity`] reads a header
//! the sender sets on its stream — fine for trusted networks and the local runner, but a
//! Byzantine node could claim another's name. mTLS, where the identity is the peer
//! certificate's subject, plugs in here without touching the protocol.

use std::net::SocketAddr;

use byzsgd_core::protocol::NodeId;
use tonic::metadata::MetadataMap;

/// Metadata key carrying the sender's name (`server-3`, `worker-0`) under [`HeaderIdentity`].
pub const NODE_HEADER: &str = "x-byzsgd-node";

/// What the transport knows about an incoming stream.
#[derive(Debug)]
pub struct StreamInfo<'a> {
    /// The request metadata (HTTP/2 headers).
    pub metadata: &'a MetadataMap,
    /// The remote socket address, when known.
    pub remote: Option<SocketAddr>,
}

/// Resolves the sender of a stream.
pub trait Identity: Send + Sync + std::fmt::Debug + 'static {
    /// The authenticated sender, or None to refuse the stream.
    fn identify(&self, stream: &StreamInfo<'_>) -> Option<NodeId>;
}

/// Takes the sender from the [`NODE_HEADER`] header. Not Byzantine-safe: see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderIdentity;

impl Identity for HeaderIdentity {
    fn identify(&self, stream: &StreamInfo<'_>) -> Option<NodeId> {
        let value = stream.metadata.get(NODE_HEADER)?.to_str().ok()?;
        NodeId::parse(value)
    }
}
