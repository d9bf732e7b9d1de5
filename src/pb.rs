//! Code generated from `proto/` by build.rs; fenced here so that the rest of the crate names it.
#![allow(missing_docs, clippy::all, missing_debug_implementations)]

/// Messages of package `liangma.v1`.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/liangma.v1.rs"));
}

/// The encoded descriptor set of every proto file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/liangma_descriptor.bin"));
