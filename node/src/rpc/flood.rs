//! The `flood` chaos action's sender: junk for one peer, as fast as the link takes it. It
//! exists to show that a correct node stays bounded under a resource-exhaustion attack
//! (`bench flood`, issue 15); a correct node never runs it.

use std::sync::Arc;

use byzsgd_core::{
    job::Role,
    protocol::{NodeId, Payload},
};
use ndarray::Array1;
use tokio::sync::mpsc;

use super::{proto::Envelope, wire};

/// A step no job reaches: well-formed junk is stored nowhere and counted as `future`.
const FAR_AHEAD: u64 = u64::MAX / 2;

/// What `me` floods `target` with: the largest well-formed message `me` may send it (a
/// gradient to a server, a gather to a peer server, a model to a worker), tagged with a step
/// far ahead; or, `malformed`, the same with a length that does not match its data.
pub fn junk(job: &str, me: NodeId, target: NodeId, dimension: usize, malformed: bool) -> Envelope {
    let vector = Arc::new(Array1::<f32>::ones(dimension));
    let payload = match (me.role, target.role) {
        (Role::Worker, _) => Payload::Gradient {
            step: FAR_AHEAD,
            gradient: vector,
            loss: 0.0,
        },
        (Role::Server, Role::Server) => Payload::Gather {
            step: FAR_AHEAD,
            params: vector,
        },
        (Role::Server, Role::Worker) => Payload::Model {
            step: FAR_AHEAD,
            params: vector,
        },
    };
    let mut envelope = wire::encode(job, &payload);
    if malformed && let Some(tensor) = &mut envelope.tensor {
        tensor.length = tensor.length.wrapping_add(1);
    }
    envelope
}

/// Sends `envelope` on `link` again and again, waiting whenever the link's queue is full, until
/// the link closes or the task is aborted (the order ended).
pub async fn flood(link: mpsc::Sender<Envelope>, envelope: Envelope) {
    while link.send(envelope.clone()).await.is_ok() {}
}
