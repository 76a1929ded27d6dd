//! The `byzsgd.v1.Node` service: accepts a peer's stream, learns who it is from the
//! [`Identity`] seam, decodes and checks every envelope at the edge, and hands good messages
//! to the node's driver through the fair [`inbox`](super::inbox). A bad message is counted and
//! dropped; it never ends the process.
//!
//! Bounded under a flood: one stream per sender (a new one replaces the old, which is how a
//! restarted peer comes back), so a sender holds at most one HTTP/2 window plus its inbox
//! queue; and a stream whose messages keep failing the edge checks is read more slowly
//! ([`MALFORMED_PER_SECOND`]), so garbage cannot buy unlimited decoding time.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use byzsgd_core::protocol::{NodeId, Rejection};
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use super::{
    identity::{Identity, Refusal, StreamInfo},
    inbox::InboxSender,
    proto::{DeliverSummary, Envelope, node_server::Node as NodeRpc},
    wire,
};
use crate::metrics::{Direction, Metrics};

/// Messages per second a stream may fail the edge checks with before the service reads it
/// only once per [`MALFORMED_PAUSE`]: honest peers never send one.
pub const MALFORMED_PER_SECOND: u32 = 64;
/// The pause per rejected message once a stream is over [`MALFORMED_PER_SECOND`].
pub const MALFORMED_PAUSE: Duration = Duration::from_millis(50);

/// The service state shared by every stream.
#[derive(Debug, Clone)]
pub struct NodeService {
    job: Arc<str>,
    dimension: usize,
    identity: Arc<dyn Identity>,
    inbox: InboxSender,
    metrics: Metrics,
    /// The current stream of each sender: a newer one ends the older.
    streams: Arc<Mutex<HashMap<NodeId, u64>>>,
}

impl NodeService {
    /// A service for job `job` whose vectors have `dimension` values; good messages go to
    /// `inbox`.
    pub fn new(
        job: &str,
        dimension: usize,
        identity: Arc<dyn Identity>,
        inbox: InboxSender,
        metrics: Metrics,
    ) -> Self {
        Self {
            job: job.into(),
            dimension,
            identity,
            inbox,
            metrics,
            streams: Arc::default(),
        }
    }

    /// Registers a new stream of `from`; returns its generation.
    fn open_stream(&self, from: NodeId) -> u64 {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = streams.get(&from).map_or(0, |current| current + 1);
        streams.insert(from, generation);
        generation
    }

    /// Whether the stream `generation` of `from` is still its newest.
    fn is_current(&self, from: NodeId, generation: u64) -> bool {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.get(&from) == Some(&generation)
    }
}

/// Counts a stream's edge rejections per second and says how long to pause.
#[derive(Debug)]
struct MalformedThrottle {
    window_start: Instant,
    in_window: u32,
}

impl MalformedThrottle {
    fn new() -> Self {
        Self {
            window_start: Instant::now(),
            in_window: 0,
        }
    }

    fn pause_after_rejection(&mut self) -> Option<Duration> {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window += 1;
        (self.in_window > MALFORMED_PER_SECOND).then_some(MALFORMED_PAUSE)
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
                let peer = info
                    .remote
                    .map_or_else(|| "unknown address".to_owned(), |a| a.to_string());
                self.metrics.rejected(&peer, refusal.rejection());
                tracing::warn!(%peer, %refusal, "refused a stream");
                return Err(match refusal {
                    Refusal::Anonymous => Status::unauthenticated(refusal.to_string()),
                    Refusal::Impersonation { .. } => Status::permission_denied(refusal.to_string()),
                });
            }
        };
        let generation = self.open_stream(from);
        let mut stream = request.into_inner();
        let mut summary = DeliverSummary::default();
        let mut throttle = MalformedThrottle::new();
        loop {
            if !self.is_current(from, generation) {
                tracing::debug!(peer = %from, "stream replaced by a newer one from the same peer");
                break;
            }
            let envelope = match stream.message().await {
                Ok(Some(envelope)) => envelope,
                Ok(None) => break,
                Err(status) => {
                    // Undecodable protobuf or a broken connection: count it, end this stream.
                    self.metrics.rejected(&from, Rejection::Malformed);
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
                    if self.inbox.send(from, payload).await.is_err() {
                        // The driver stopped: the node is shutting down.
                        break;
                    }
                    summary.accepted += 1;
                }
                Err(rejection) => {
                    self.metrics.rejected(&from, rejection);
                    summary.rejected += 1;
                    if let Some(pause) = throttle.pause_after_rejection() {
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        }
        Ok(Response::new(summary))
    }
}
