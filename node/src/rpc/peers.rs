//! Outgoing links: one task per peer that connects with retry and exponential backoff, keeps
//! one long-lived `Deliver` stream open, and reconnects when it breaks. Queues are bounded; a
//! peer that stops reading loses messages (counted) instead of growing this node's memory.
//! Under mutual TLS a link presents this node's certificate and accepts only the peer whose
//! certificate names the node it dialled.

use std::{collections::BTreeMap, time::Duration};

use byzsgd_api::identity::node_name;
use byzsgd_core::protocol::NodeId;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use super::{
    Transport,
    identity::NODE_HEADER,
    proto::{Envelope, node_client::NodeClient},
};

/// Messages queued per peer before new ones are dropped: a few steps' worth.
const QUEUE: usize = 256;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Kept short: a restarted peer (crash recovery) waits for its peers to reconnect before their
/// answers reach it, and a failed connect to a dead peer costs next to nothing.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// How often an idle or busy link pings its peer, and how long it waits for the answer.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Senders to every peer.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    senders: BTreeMap<NodeId, mpsc::Sender<Envelope>>,
}

impl Peers {
    /// Starts one sender task per peer of `me` in `job`. `addresses` maps peers to
    /// `host:port`.
    pub fn spawn(
        (job, me): (&str, NodeId),
        addresses: &BTreeMap<NodeId, String>,
        transport: &Transport,
        max_message_bytes: usize,
        shutdown: &watch::Receiver<bool>,
    ) -> Self {
        let mut senders = BTreeMap::new();
        for (&peer, address) in addresses {
            if peer == me {
                continue;
            }
            let (sender, receiver) = mpsc::channel(QUEUE);
            let endpoint = match endpoint(job, peer, address, transport) {
                Ok(endpoint) => endpoint,
                Err(error) => {
                    tracing::error!(%peer, %address, %error, "cannot link to this peer");
                    continue;
                }
            };
            tokio::spawn(run_link(
                me,
                peer,
                endpoint,
                receiver,
                max_message_bytes,
                shutdown.clone(),
            ));
            senders.insert(peer, sender);
        }
        Self { senders }
    }

    /// The queue to `to`, for a send that happens later (a chaos delay).
    pub fn sender(&self, to: NodeId) -> Option<mpsc::Sender<Envelope>> {
        self.senders.get(&to).cloned()
    }

    /// Queues `envelope` for `to`. Returns false when the peer is unknown or its queue is full.
    pub fn send(&self, to: NodeId, envelope: Envelope) -> bool {
        self.senders
            .get(&to)
            .is_some_and(|sender| sender.try_send(envelope).is_ok())
    }
}

/// The endpoint of `peer` of `job` at `address` (`host:port`).
fn endpoint(
    job: &str,
    peer: NodeId,
    address: &str,
    transport: &Transport,
) -> Result<Endpoint, tonic::transport::Error> {
    let scheme = match transport {
        Transport::MutualTls(_) => "https",
        Transport::Insecure => "http",
    };
    // HTTP/2 pings find a peer that vanished without closing its connection (a pod deleted
    // with its network, a node lost): without them the stream would wait for TCP to give up,
    // minutes, and the peer's replacement at a new address would get nothing meanwhile.
    let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
        .initial_stream_window_size(super::STREAM_WINDOW_BYTES)
        .initial_connection_window_size(super::CONNECTION_WINDOW_BYTES);
    match transport {
        Transport::MutualTls(tls) => endpoint.tls_config(tls.client_config(&node_name(job, peer))),
        Transport::Insecure => Ok(endpoint),
    }
}

async fn run_link(
    me: NodeId,
    peer: NodeId,
    endpoint: Endpoint,
    mut queue: mpsc::Receiver<Envelope>,
    max_message_bytes: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut pending: Option<Envelope> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let channel = tokio::select! {
            connected = endpoint.connect() => connected,
            _ = shutdown.changed() => return,
        };
        let channel = match channel {
            Ok(channel) => channel,
            Err(error) => {
                tracing::debug!(%peer, %error, backoff_ms = backoff.as_millis() as u64, "connect failed, retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = FIRST_BACKOFF;
        let mut client = NodeClient::new(channel)
            .max_encoding_message_size(max_message_bytes)
            .max_decoding_message_size(max_message_bytes);
        let (stream, stream_receiver) = mpsc::channel(16);
        let mut request = tonic::Request::new(ReceiverStream::new(stream_receiver));
        if let Ok(name) = me.to_string().parse() {
            request.metadata_mut().insert(NODE_HEADER, name);
        }
        let mut call = tokio::spawn(async move { client.deliver(request).await });
        if let Some(envelope) = pending.take()
            && let Err(error) = stream.send(envelope).await
        {
            pending = Some(error.0);
            continue;
        }
        loop {
            tokio::select! {
                next = queue.recv() => match next {
                    None => {
                        // The node is done sending: close the stream and let it drain.
                        drop(stream);
                        let _ = call.await;
                        return;
                    }
                    Some(envelope) => {
                        if let Err(error) = stream.send(envelope).await {
                            pending = Some(error.0);
                            break;
                        }
                    }
                },
                _ = &mut call => {
                    tracing::debug!(%peer, "stream closed by peer, reconnecting");
                    break;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
