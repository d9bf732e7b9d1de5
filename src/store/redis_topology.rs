//! How the Redis store reaches Redis: one server, a Redis Cluster, or a master found through Sentinel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::StoreError;

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server (or a proxy): `redis://host:port/db`, `rediss://…` or `redis+unix:///path`.
    Standalone { url: String },
    /// A Redis Cluster, found through any of these nodes (`redis://[:password@]host:port`).
    Cluster { nodes: Vec<String> },
    /// The master Sentinel names `master_name`, asked of any of these Sentinels; the master is
    /// reached with the user, password and database of `master_credentials` (a `redis://` URL
    /// whose host is ignored), if given.
    Sentinel { sentinels: Vec<String>, master_name: String, master_credentials: Option<String> },
}

/// Redis 1.x leaves Nagle's algorithm on, which adds up to 40 ms to small replies.
fn tcp_settings() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

fn bad(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("bad Redis {what}: {error}"))
}

/// One self-healing connection to whichever topology is configured; cheap to clone.
#[derive(Clone)]
pub(super) enum RedisConnection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelConnection),
}

impl RedisConnection {
    /// Makes the connection without waiting for Redis: it connects on first use and again after
    /// every failure, so the service starts (and recovers) whether or not Redis is up.
    pub(super) fn open(topology: &RedisTopology, timeout: Duration) -> Result<Self, StoreError> {
        match topology {
            RedisTopology::Standalone { url } => {
                let info =
                    url.as_str().into_connection_info().map_err(|e| bad("URL", e))?.set_tcp_settings(tcp_settings());
                let client = redis::Client::open(info).map_err(|e| bad("URL", e))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                Ok(Self::Standalone(client.get_connection_manager_lazy(config).map_err(|e| bad("URL", e))?))
            }
            RedisTopology::Cluster { nodes } => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .tcp_settings(tcp_settings())
                    // A failover takes the cluster about node-timeout plus an election; the
                    // caller's own timeout bounds each operation, so the client may keep trying.
                    .retries(6)
                    .min_retry_wait(50)
                    .max_retry_wait(1000)
                    .build()
                    .map_err(|e| bad("cluster nodes", e))?;
                let config =
                    redis::cluster::ClusterConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout);
                Ok(Self::Cluster(client.get_pending_async_connection_with_config(config)))
            }
            RedisTopology::Sentinel { sentinels, master_name, master_credentials } => {
                let mut master = SentinelNodeConnectionInfo::default().set_tcp_settings(tcp_settings());
                if let Some(credentials) = master_credentials {
                    let info = credentials.as_str().into_connection_info().map_err(|e| bad("master credentials", e))?;
                    master = master.set_redis_connection_info(info.redis_settings().clone());
                }
                let sentinels = sentinels
                    .iter()
                    .map(|url| url.as_str().into_connection_info().map(|info| info.set_tcp_settings(tcp_settings())))
                    .collect::<RedisResult<Vec<_>>>()
                    .map_err(|e| bad("Sentinel address", e))?;
                let client =
                    SentinelClient::build(sentinels, master_name.clone(), Some(master), SentinelServerType::Master)
                        .map_err(|e| bad("Sentinel settings", e))?;
                Ok(Self::Sentinel(SentinelConnection {
                    client: Arc::new(tokio::sync::Mutex::new(client)),
                    current: Arc::new(Mutex::new(None)),
                    config: AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout)),
                }))
            }
        }
    }

    /// Whether multi-key commands and pipelines must stay within one hash slot.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
            Self::Sentinel(connection) => Box::pin(async move {
                connection.run(|mut master| async move { master.send_packed_command(cmd).await }).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(connection) => Box::pin(async move {
                connection
                    .run(|mut master| async move { master.send_packed_commands(pipeline, offset, count).await })
                    .await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
            Self::Sentinel(_) => 0,
        }
    }
}

/// A connection to the master Sentinel currently names. Any failure that may mean the master
/// moved (no answer, connection lost, or the server now being a read-only replica) drops the
/// connection, and the next call asks the Sentinels again.
#[derive(Clone)]
pub(super) struct SentinelConnection {
    client: Arc<tokio::sync::Mutex<SentinelClient>>,
    current: Arc<Mutex<Option<MultiplexedConnection>>>,
    config: AsyncConnectionConfig,
}

impl SentinelConnection {
    async fn master(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(connection) = self.current.lock().expect("not poisoned").clone() {
            return Ok(connection);
        }
        // One lookup at a time: callers that queued behind it find the connection it made.
        let mut client = self.client.lock().await;
        if let Some(connection) = self.current.lock().expect("not poisoned").clone() {
            return Ok(connection);
        }
        let connection = client.get_async_connection_with_config(&self.config).await?;
        *self.current.lock().expect("not poisoned") = Some(connection.clone());
        Ok(connection)
    }

    async fn run<T, F, Fut>(&self, request: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let answer = request(self.master().await?).await;
        if let Err(error) = &answer
            && master_may_have_moved(error)
        {
            self.current.lock().expect("not poisoned").take();
        }
        answer
    }
}

fn master_may_have_moved(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || error.code() == Some("READONLY")
}
