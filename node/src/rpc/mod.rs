//! The gRPC transport (tonic, proto package `byzsgd.v1`): the service every node serves, the
//! per-peer senders, the wire encoding and the identity seam. It moves bytes and checks them;
//! the protocol decides what they mean.

pub mod identity;
pub mod peers;
pub mod service;
pub mod wire;

/// Code generated from `proto/byzsgd/v1/byzsgd.proto`.
#[allow(missing_docs, unreachable_pub, clippy::pedantic, clippy::default_trait_access)]
pub mod proto {
    tonic::include_proto!("byzsgd.v1");
}
