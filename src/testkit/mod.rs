//! What the tests, the benchmarks and the load harness share: fixed keys and members, and private Redis servers, clusters and Sentinel groups. Built with the `testkit` feature only.

mod fixtures;
mod redis_cluster;
mod redis_server;

pub mod pki;
pub use fixtures::*;
pub use redis_cluster::{RedisCluster, RedisSentinel};
pub use redis_server::{Monitor, RedisServer, info_field};
