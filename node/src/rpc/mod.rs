//! The gRPC transport (tonic, proto package `byzsgd.v1`): the service every node serves, the
//! per-peer senders, the wire encoding and the identity seam. It moves bytes and checks them;
//! the protocol decides what they mean.

/// HTTP/2 flow-control windows. The defaults (64 KiB per stream) make every model-sized
/// message wait for several WINDOW_UPDATE round trips; a window that holds a few whole models
/// lets a step's messages flow in one go.
pub const STREAM_WINDOW_BYTES: u32 = 8 << 20;
/// Connection-level window: all streams of one link together.
pub const CONNECTION_WINDOW_BYTES: u32 = 32 << 20;

pub mod identity;
pub mod peers;
pub mod service;
pub mod wire;

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
