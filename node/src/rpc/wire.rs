//! Conversions between protocol [`Payload`]s and the wire's [`Envelope`]s, with every check a
//! hostile peer makes necessary: declared length equals the byte count and the job's model
//! size, the kind is known, the job name matches. Vectors are checked for finiteness by the
//! protocol itself (`protocol::check_vector`), once, for every runtime.

use std::sync::Arc;

use byzsgd_core::protocol::{Payload, Rejection};
use ndarray::Array1;

use super::proto::{Envelope, Kind as WireKind, Tensor};

/// Encodes a vector as little-endian f32 bytes.
pub fn encode_tensor(values: &Array1<f32>) -> Tensor {
    // Fixed-size chunks let the compiler turn both loops into plain vector copies (on
    // little-endian targets `to_le_bytes` is the identity); pushing byte slices one value at a
    // time cost more than the socket write on profiles of the quickstart.
    let mut data = vec![0_u8; values.len() * 4];
    let (chunks, _) = data.as_chunks_mut::<4>();
    match values.as_slice() {
        Some(slice) => {
            for (chunk, value) in chunks.iter_mut().zip(slice) {
                *chunk = value.to_le_bytes();
            }
        }
        None => {
            for (chunk, value) in chunks.iter_mut().zip(values) {
                *chunk = value.to_le_bytes();
            }
        }
    }
    Tensor {
        length: values.len() as u32,
        data: data.into(),
    }
}

/// Decodes a tensor that must hold exactly `dimension` values.
pub fn decode_tensor(tensor: &Tensor, dimension: usize) -> Result<Array1<f32>, Rejection> {
    let length = tensor.length as usize;
    if length != dimension {
        return Err(Rejection::WrongLength);
    }
    if tensor.data.len() != length * 4 {
        return Err(Rejection::Malformed);
    }
    let (chunks, _) = tensor.data.as_chunks::<4>();
    let values: Vec<f32> = chunks
        .iter()
        .map(|chunk| f32::from_le_bytes(*chunk))
        .collect();
    Ok(Array1::from(values))
}

/// The wire kind of a payload.
pub fn wire_kind(payload: &Payload) -> WireKind {
    match payload {
        Payload::Model { .. } => WireKind::Model,
        Payload::Gather { .. } => WireKind::Gather,
        Payload::Gradient { .. } => WireKind::Gradient,
        Payload::Pull { .. } => WireKind::Pull,
        Payload::StateRequest { .. } => WireKind::StateRequest,
        Payload::State { .. } => WireKind::State,
    }
}

/// Builds the envelope for `payload` with an already encoded `tensor` (a broadcast encodes its
/// vector once and shares the bytes).
pub fn envelope(job: &str, payload: &Payload, tensor: Option<Tensor>) -> Envelope {
    let loss = if let Payload::Gradient { loss, .. } = payload {
        *loss
    } else {
        0.0
    };
    Envelope {
        job: job.to_owned(),
        step: payload.step(),
        kind: wire_kind(payload) as i32,
        tensor,
        loss,
    }
}

/// Builds the envelope for `payload` of job `job`.
pub fn encode(job: &str, payload: &Payload) -> Envelope {
    envelope(
        job,
        payload,
        payload.vector().map(|vector| encode_tensor(vector)),
    )
}

/// Decodes an envelope of job `job` whose vectors must have `dimension` values.
pub fn decode(envelope: &Envelope, job: &str, dimension: usize) -> Result<Payload, Rejection> {
    if envelope.job != job {
        return Err(Rejection::WrongJob);
    }
    let step = envelope.step;
    let kind = WireKind::try_from(envelope.kind).map_err(|_| Rejection::Malformed)?;
    let vector = || {
        envelope
            .tensor
            .as_ref()
            .ok_or(Rejection::Malformed)
            .and_then(|tensor| decode_tensor(tensor, dimension))
            .map(Arc::new)
    };
    match kind {
        WireKind::Model => Ok(Payload::Model {
            step,
            params: vector()?,
        }),
        WireKind::Gather => Ok(Payload::Gather {
            step,
            params: vector()?,
        }),
        WireKind::Gradient => Ok(Payload::Gradient {
            step,
            gradient: vector()?,
            loss: envelope.loss,
        }),
        WireKind::Pull => Ok(Payload::Pull { step }),
        WireKind::StateRequest => Ok(Payload::StateRequest { step }),
        WireKind::State => Ok(Payload::State {
            step,
            params: vector()?,
        }),
        WireKind::Unspecified => Err(Rejection::Malformed),
    }
}

/// Size of an encoded envelope carrying a `dimension`-vector, with room for the header fields;
/// used to set the gRPC message size limit so the largest model fits.
pub fn max_message_bytes(dimension: usize) -> usize {
    dimension * 4 + 4096
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn gradient(values: Vec<f32>) -> Payload {
        Payload::Gradient {
            step: 3,
            gradient: Arc::new(Array1::from(values)),
            loss: 0.5,
        }
    }

    #[test]
    fn round_trip_keeps_every_bit() {
        let payload = gradient(vec![1.0, -0.0, f32::MIN_POSITIVE, 3.5e7]);
        let envelope = encode("job", &payload);
        assert_eq!(decode(&envelope, "job", 4), Ok(payload));
    }

    #[test]
    fn declared_length_must_match_the_model_and_the_bytes() {
        let envelope = encode("job", &gradient(vec![1.0; 4]));
        assert_eq!(decode(&envelope, "job", 5), Err(Rejection::WrongLength));
        let mut truncated = envelope.clone();
        if let Some(tensor) = truncated.tensor.as_mut() {
            tensor.data = Bytes::from(tensor.data[..15].to_vec());
        }
        assert_eq!(decode(&truncated, "job", 4), Err(Rejection::Malformed));
        let mut missing = envelope;
        missing.tensor = None;
        assert_eq!(decode(&missing, "job", 4), Err(Rejection::Malformed));
    }

    #[test]
    fn other_jobs_and_unknown_kinds_are_rejected() {
        let envelope = encode("job", &gradient(vec![1.0; 4]));
        assert_eq!(decode(&envelope, "other", 4), Err(Rejection::WrongJob));
        let mut unknown = envelope;
        unknown.kind = 42;
        assert_eq!(decode(&unknown, "job", 4), Err(Rejection::Malformed));
    }
}
