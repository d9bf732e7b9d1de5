//! What the tests, the benchmarks and the load harness share: fixed keys and members, and a private redis-server. Built with the `testkit` feature only.

mod fixtures;
mod redis_server;

pub mod pki;
pub use fixtures::*;
pub use redis_server::{Monitor, RedisServer, info_field};
