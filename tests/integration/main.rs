//! Integration tests: one binary, so the crate links once.
// A test binary has no API: its modules share helpers with `pub`.
#![allow(unreachable_pub)]

mod cli;
mod deploy;
mod directory_vectors;
mod federation;
mod harness;
mod limits;
mod loan;
mod overload;
mod process;
mod properties;
mod qr_size;
mod redis_topologies;
mod replicas;
mod service;
mod signatures;
mod store_contract;
mod telemetry;
mod use_cases;
mod vectors;
mod web;
