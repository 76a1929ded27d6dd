//! Compiles the wire protocol (`proto/byzsgd/v1/byzsgd.proto`) with the `protoc` that the
//! `protoc-bin-vendored` crate ships, so building needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/byzsgd/v1/byzsgd.proto";
    println!("cargo:rerun-if-changed={proto}");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // `bytes::Bytes` for tensors: decoding slices the receive buffer instead of copying.
    config.bytes([".byzsgd.v1.Tensor.data"]);
    tonic_prost_build::configure().compile_with_config(config, &[proto], &["proto"])?;
    Ok(())
}
