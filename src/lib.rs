//! liangma (亮码): signed, single-use electronic provident-fund codes that any centre can verify.
//!
//! A home centre signs a member's deposit claims with its ed25519 key ([`issue`]); the code
//! travels as short text (`LM1:` + base45) or a QR code ([`code`]); a loan centre checks it
//! offline against the published trust list ([`trust`], [`verify`]). The byte format is
//! normative in `docs/code-format.md`.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod clock;
pub mod code;
pub mod config;
pub mod federation;
pub mod grpc;
pub mod issue;
pub mod json_log;
pub mod lanes;
pub mod loan;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod pb;
pub mod random;
pub mod render;
pub mod service;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod trust;
pub mod verify;
