//! The `byzsgd.v1.Node` service: accepts a peer's stream, learns who it is from the
//! [`Identity`] seam, decodes and checks every envelope at the edge, and hands good messages
//! to the node's driver. A bad message is counted and dropped; it never ends the process.

use std::sync::Arc;

use byzsgd_core::protocol::{NodeId, Payload, Rejection};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::{
    identity::{Identity, Refusal, StreamInfo},
    proto::{DeliverSummary, Envelope, node_server::Node as NodeRpc},
    wire,
};
use crate::metrics::{Direction, Metrics};

/// One decoded message on its way to the driver.
#[derive(Debug)]
pub struct Inbound {
    /// The authenticated sender.
    pub from: NodeId,
    /// The message.
    pub payload: Payload,
}

/// The service state shared by every stream.
#[derive(Debug, Clone)]
pub struct NodeService {
    job: Arc<str>,
    dimension: usize,
    identity: Arc<dyn Identity>,
    inbox: mpsc::Sender<Inbound>,
    metrics: Metrics,
}

impl NodeService {
    /// A service for job `job` whose vectors have `dimension` values; good messages go to
    /// `inbox`.
    pub fn new(
        job: &str,
        dimension: usize,
        identity: Arc<dyn Identity>,
        inbox: mpsc::Sender<Inbound>,
        metrics: Metrics,
    ) -> Self {
        Self {
            job: job.into(),
            dimension,
            identity,
            inbox,
            metrics,
        }
    }
}

#[tonic::async_trait]
impl NodeRpc for NodeService {
    async fn deliver(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<DeliverSummary>, Status> {
        let info = StreamInfo {
            metadata: request.metadata(),
            remote: request.remote_addr(),
            peer_certs: request.peer_certs(),
        };
        let from = match self.identity.identify(&info) {
            Ok(from) => from,
            Err(refusal) => {
                self.metrics.rejected(refusal.rejection());
                let peer = info
                    .remote
                    .map_or_else(|| "unknown address".to_owned(), |a| a.to_string());
                tracing::warn!(%peer, %refusal, "refused a stream");
                return Err(match refusal {
                    Refusal::Anonymous => Status::unauthenticated(refusal.to_string()),
                    Refusal::Impersonation { .. } => Status::permission_denied(refusal.to_string()),
                });
            }
        };
        let mut stream = request.into_inner();
        let mut summary = DeliverSummary::default();
        loop {
            let envelope = match stream.message().await {
                Ok(Some(envelope)) => envelope,
                Ok(None) => break,
                Err(status) => {
                    // Undecodable protobuf or a broken connection: count it, end this stream.
                    self.metrics.rejected(Rejection::Malformed);
                    summary.rejected += 1;
                    tracing::debug!(peer = %from, error = %status, "stream ended with an error");
                    break;
                }
            };
            let kind_bytes = envelope
                .tensor
                .as_ref()
                .map_or(0, |tensor| tensor.data.len());
            match wire::decode(&envelope, &self.job, self.dimension) {
                Ok(payload) => {
                    self.metrics
                        .message(Direction::In, payload.kind(), kind_bytes);
                    if self.inbox.send(Inbound { from, payload }).await.is_err() {
                        // The driver stopped: the node is shutting down.
                        break;
                    }
                    summary.accepted += 1;
                }
                Err(rejection) => {
                    self.metrics.rejected(rejection);
                    summary.rejected += 1;
                }
            }
        }
        Ok(Response::new(summary))
    }
}
