//! Compiles `proto/` with the pure-Rust protox compiler (no system `protoc`) and
//! generates prost messages and tonic services from the resulting descriptor set.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/liangma/v1/code.proto",
        "proto/liangma/v1/common.proto",
        "proto/liangma/v1/issuer.proto",
        "proto/liangma/v1/verifier.proto",
        "proto/liangma/v1/registry.proto",
        "proto/liangma/v1/usage.proto",
        "proto/liangma/v1/trust.proto",
        "proto/liangma/v1/loan.proto",
        "proto/liangma/v1/node.proto",
        "proto/liangma/v1/member.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // The same descriptor set serves gRPC reflection at run time.
    std::fs::write(out_dir.join("liangma_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    // Undecodable requests are INVALID_ARGUMENT (src/grpc/codec.rs), not tonic's INTERNAL.
    tonic_prost_build::configure().codec_path("crate::grpc::codec::StrictCodec").compile_fds(descriptors)?;
    Ok(())
}
