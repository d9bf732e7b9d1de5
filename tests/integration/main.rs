//! Integration tests: one binary, so the crate links once.

mod cli;
mod deploy;
mod fixtures;
mod harness;
mod limits;
mod loan;
mod process;
mod properties;
mod qr_size;
mod redis_server;
mod service;
mod vectors;
