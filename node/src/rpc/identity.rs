//! Who sent a stream: the seam between the transport and the protocol's notion of a sender.
//!
//! The protocol trusts [`NodeId`]s to be unforgeable: one quorum slot per node, so the
//! resilience bounds hold only if a Byzantine node holds exactly one identity. Under mutual TLS
//! (the default) [`CertificateIdentity`] takes the sender from the peer certificate the job's
//! CA issued it, whose one DNS name is the node's name; a stream that also *claims* a name (the
//! [`NODE_HEADER`] every node sends) must claim that same node, or it is refused and counted as
//! `impersonation`. [`HeaderIdentity`] believes the header: it exists only for `--insecure`
//! (trusted networks, debugging), where a Byzantine node could claim any identity.

use std::{net::SocketAddr, sync::Arc};

use byzsgd_api::identity::node_name;
use byzsgd_core::protocol::{NodeId, Rejection};
use rustls::pki_types::{CertificateDer, ServerName};
use tonic::metadata::MetadataMap;

/// Metadata key carrying the sender's claimed name (`server-3`, `worker-0`).
pub const NODE_HEADER: &str = "x-byzsgd-node";

/// What the transport knows about an incoming stream.
#[derive(Debug)]
pub struct StreamInfo<'a> {
    /// The request metadata (HTTP/2 headers).
    pub metadata: &'a MetadataMap,
    /// The remote socket address, when known.
    pub remote: Option<SocketAddr>,
    /// The certificate chain the peer presented in the TLS handshake (already checked against
    /// the job's CA), when the link is TLS.
    pub peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl StreamInfo<'_> {
    /// The name the stream claims in [`NODE_HEADER`], if any (unparsed: a claim may be junk).
    fn claimed(&self) -> Option<&str> {
        self.metadata
            .get(NODE_HEADER)
            .map(|value| value.to_str().unwrap_or("<not text>"))
    }
}

/// Why a stream is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No identity, or one outside the job.
    #[error("the stream does not identify a node of this job")]
    Anonymous,
    /// The certificate names one node, the stream claims another.
    #[error("the certificate names {certified}, the stream claims `{claimed}`")]
    Impersonation {
        /// The node the certificate names.
        certified: NodeId,
        /// What the stream claimed.
        claimed: String,
    },
}

impl Refusal {
    /// The `byzsgd_rejected_total` reason.
    pub fn rejection(&self) -> Rejection {
        match self {
            Self::Anonymous => Rejection::Unauthenticated,
            Self::Impersonation { .. } => Rejection::Impersonation,
        }
    }
}

/// Resolves the sender of a stream.
pub trait Identity: Send + Sync + std::fmt::Debug + 'static {
    /// The authenticated sender, or why the stream is refused.
    fn identify(&self, stream: &StreamInfo<'_>) -> Result<NodeId, Refusal>;
}

/// Takes the sender from the peer certificate: the one node of the job whose name the
/// certificate is valid for (see the module docs).
#[derive(Debug, Clone)]
pub struct CertificateIdentity {
    /// Every node of the job with its certificate name.
    names: Vec<(NodeId, ServerName<'static>)>,
}

impl CertificateIdentity {
    /// The identities of `nodes` of `job`.
    pub fn new(job: &str, nodes: impl IntoIterator<Item = NodeId>) -> Self {
        let names = nodes
            .into_iter()
            .filter_map(|node| {
                ServerName::try_from(node_name(job, node))
                    .ok()
                    .map(|name| (node, name))
            })
            .collect();
        Self { names }
    }

    /// The node `certificate` names: exactly one of the job's, or None.
    fn certified(&self, certificate: &CertificateDer<'_>) -> Option<NodeId> {
        let certificate = webpki::EndEntityCert::try_from(certificate).ok()?;
        let mut valid_for = self
            .names
            .iter()
            .filter(|(_, name)| certificate.verify_is_valid_for_subject_name(name).is_ok());
        match (valid_for.next(), valid_for.next()) {
            (Some(&(node, _)), None) => Some(node),
            // None of the job's nodes, or several (a certificate made to hold many slots).
            _ => None,
        }
    }
}

impl Identity for CertificateIdentity {
    fn identify(&self, stream: &StreamInfo<'_>) -> Result<NodeId, Refusal> {
        let certified = stream
            .peer_certs
            .as_ref()
            .and_then(|chain| chain.first())
            .and_then(|leaf| self.certified(leaf))
            .ok_or(Refusal::Anonymous)?;
        match stream.claimed() {
            Some(claimed) if NodeId::parse(claimed) != Some(certified) => {
                Err(Refusal::Impersonation {
                    certified,
                    claimed: claimed.to_owned(),
                })
            }
            _ => Ok(certified),
        }
    }
}

/// Takes the sender from the [`NODE_HEADER`] header. Not Byzantine-safe: see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderIdentity;

impl Identity for HeaderIdentity {
    fn identify(&self, stream: &StreamInfo<'_>) -> Result<NodeId, Refusal> {
        stream
            .claimed()
            .and_then(NodeId::parse)
            .ok_or(Refusal::Anonymous)
    }
}
