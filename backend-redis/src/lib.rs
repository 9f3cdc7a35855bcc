//! # pulse-redis
//!
//! The production backend of Pulse, on Redis ≥ 7.0 with the `redis` crate:
//! - commands and Lua scripts share one multiplexed connection (requests pipeline
//!   automatically), re-established after a failure;
//! - blocking reads never run on the shared connection: the blocking `XREAD`s of all
//!   readers are merged into one on one dedicated connection
//!   ([`RedisOptions::share_blocking_reads`]); consumer-group reads each take a dedicated
//!   connection from a capped pool (closed after [`RedisOptions::blocking_idle_timeout`]
//!   idle; a cancelled read discards its connection);
//! - pub/sub uses one RESP3 connection per backend for every subscription, health-checked,
//!   reporting loss and recovery to subscribers;
//! - each atomic operation is one Lua script under `lua/`, surviving `NOSCRIPT`;
//! - `redis://` and `rediss://` (TLS, optionally with a custom root CA and a client
//!   certificate: [`RedisOptions::with_tls_root_cert`]), with user and password in the URL;
//! - Redis Cluster from `redis+cluster://host:port,host:port/` (or `rediss+cluster://`):
//!   the same guarantees (every command of one operation in one slot, no command resent
//!   after it may have run, blocking reads on dedicated connections to their slot's node,
//!   pub/sub on one node moving to the next seed on loss; see the `cluster` module and
//!   docs/ARCHITECTURE.md, decision 27);
//! - a server that may evict keys (`maxmemory-policy` other than `noeviction`) is refused
//!   when connecting, unless [`RedisOptions::allow_eviction`] says otherwise;
//! - refusals (out of memory, `maxclients`, ACL, read-only, busy) are
//!   [`pulse::Error::Refused`], typed by the server's error code.
//!
//! ```no_run
//! # async fn demo() -> pulse::Result<()> {
//! let backend = pulse_redis::RedisBackend::connect("redis://user:secret@127.0.0.1:6379/").await?;
//! # Ok(()) }
//! ```

mod cluster;
mod conn;
mod errors;
mod lanes;
mod ops;
mod parse;
mod pubsub;
mod readmux;
mod redis_url;
mod scripts;

use std::{fmt, sync::Arc, time::Duration};

use pulse::{Error, Result};
use redis::{aio::MultiplexedConnection, ConnectionInfo, ProtocolVersion, Value};
use tracing::warn;

use crate::{
    cluster::{ClusterLink, Topology},
    conn::{Blocking, Commands, Dedicated, ServerCommands},
    errors::{denied, is_connection_failure, map_err},
    lanes::Lanes,
    pubsub::Hub,
    readmux::ReadMux,
    redis_url::Target,
    scripts::Scripts,
};

/// PEM bytes whose content never appears in `Debug` output.
#[derive(Clone)]
pub struct Pem(pub Vec<u8>);

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pem(<{} bytes redacted>)", self.0.len())
    }
}

/// Connection settings. Defaults are documented on each field.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisOptions {
    /// For `rediss://` URLs: the root certificate(s) to trust instead of the system's.
    /// Default `None` (system trust store).
    pub tls_root_cert: Option<Pem>,
    /// For `rediss://` URLs: a client certificate and key (mutual TLS). Default `None`.
    pub tls_client_cert: Option<(Pem, Pem)>,
    /// Longest wait for a command or script reply on the shared connection. Default 5 s.
    pub command_timeout: Duration,
    /// Longest wait to establish a connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Most dedicated connections for concurrent blocking reads that are not shared
    /// (consumer-group reads, and stream reads when `share_blocking_reads` is off).
    /// Default 128.
    pub max_blocking_connections: usize,
    /// Merge the blocking stream reads (`XREAD`) of this handle and its clones into one
    /// read on one dedicated connection, so any number of readers blocked at once hold one
    /// connection. A reader that arrives while the merged read is blocked ends it with
    /// `CLIENT UNBLOCK` (one extra round trip on the command connection) and joins the
    /// next one. Default `true`; `false` gives every blocking read its own connection
    /// from the pool (`max_blocking_connections`). A single server only: on a cluster every
    /// blocking read has its own connection to its slot's node (a pool per node).
    pub share_blocking_reads: bool,
    /// How long a dedicated connection may sit idle in the pool before it is closed (on
    /// the pool's next use). Default 30 s.
    pub blocking_idle_timeout: Duration,
    /// First delay between pub/sub reconnection attempts (doubling). Default 50 ms.
    pub reconnect_min_delay: Duration,
    /// Longest delay between pub/sub reconnection attempts. Default 2 s.
    pub reconnect_max_delay: Duration,
    /// How often the pub/sub connection is checked with a PING, so a silently dead
    /// connection is detected. Default 5 s.
    pub health_check_interval: Duration,
    /// Connect to a server that may evict keys under memory pressure (`maxmemory-policy`
    /// other than `noeviction`). Pulse keeps leases, pool state and consumer-group state
    /// in keys: evicting one can run a job twice or lose it. Default `false`: connecting
    /// checks the policy (`CONFIG GET maxmemory-policy`, one round trip) and refuses such
    /// a server with [`Error::Config`]; when the server does not let us read the policy
    /// (ACL, disabled `CONFIG`), a warning is logged and the connection proceeds. `true`
    /// skips the check.
    pub allow_eviction: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            tls_root_cert: None,
            tls_client_cert: None,
            command_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            max_blocking_connections: 128,
            share_blocking_reads: true,
            blocking_idle_timeout: Duration::from_secs(30),
            reconnect_min_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_secs(2),
            health_check_interval: Duration::from_secs(5),
            allow_eviction: false,
        }
    }
}

impl RedisOptions {
    /// Sets [`RedisOptions::tls_root_cert`] (PEM).
    pub fn with_tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_cert = Some(Pem(pem.into()));
        self
    }
    /// Sets [`RedisOptions::tls_client_cert`] (PEM certificate and PEM private key).
    pub fn with_tls_client_cert(
        mut self,
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client_cert = Some((Pem(cert.into()), Pem(key.into())));
        self
    }
    /// Sets [`RedisOptions::command_timeout`].
    pub fn with_command_timeout(mut self, d: Duration) -> Self {
        self.command_timeout = d;
        self
    }
    /// Sets [`RedisOptions::connect_timeout`].
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Sets [`RedisOptions::max_blocking_connections`].
    pub fn with_max_blocking_connections(mut self, n: usize) -> Self {
        self.max_blocking_connections = n.max(1);
        self
    }
    /// Sets [`RedisOptions::share_blocking_reads`].
    pub fn with_share_blocking_reads(mut self, share: bool) -> Self {
        self.share_blocking_reads = share;
        self
    }
    /// Sets [`RedisOptions::blocking_idle_timeout`].
    pub fn with_blocking_idle_timeout(mut self, d: Duration) -> Self {
        self.blocking_idle_timeout = d;
        self
    }
    /// Sets the pub/sub reconnection back-off bounds.
    pub fn with_reconnect_delays(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min_delay = min;
        self.reconnect_max_delay = max.max(min);
        self
    }
    /// Sets [`RedisOptions::health_check_interval`].
    pub fn with_health_check_interval(mut self, d: Duration) -> Self {
        self.health_check_interval = d.max(Duration::from_millis(10));
        self
    }
    /// Sets [`RedisOptions::allow_eviction`].
    pub fn with_allow_eviction(mut self, allow: bool) -> Self {
        self.allow_eviction = allow;
        self
    }
}

/// The Redis backend. Cloning shares the connections.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    commands: Commands,
    blocking: Dedicated,
    /// Merged blocking stream reads, used when `share_reads` is on.
    reads: ReadMux,
    share_reads: bool,
    pubsub: PubSub,
    scripts: Scripts,
    /// `host:port/db` only: credentials never reach logs or `Debug`.
    endpoint: String,
    /// Latency and errors of the commands on the shared connection.
    metrics: pulse::telemetry::BackendMetrics,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("endpoint", &self.inner.endpoint)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects with default options. See [`RedisBackend::connect_with`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`, or a cluster's
    /// seeds: `redis+cluster://[user:password@]host:port[,host:port…]/`), checks the server
    /// (every master of a cluster) answers and does not evict keys (see
    /// [`RedisOptions::allow_eviction`]) and loads the scripts (on every node).
    ///
    /// ```no_run
    /// # async fn demo() -> pulse::Result<()> {
    /// let url = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002/";
    /// let backend = pulse_redis::RedisBackend::connect(url).await?;
    /// assert!(backend.is_cluster());
    /// # Ok(()) }
    /// ```
    ///
    /// Errors: [`Error::Config`] for a malformed URL (the message names the problem — the
    /// scheme, the host, the port, the database path — and never contains the URL, which
    /// may hold a password), for a database index the server does not have, for a
    /// `rediss://` URL to a server that speaks plain text on that port (found within a
    /// moment rather than at the connect timeout) and for a server with an eviction
    /// policy; [`Error::Denied`] when the server refuses the user name or password
    /// ([`Denial::WrongCredentials`](pulse::Denial::WrongCredentials)) or wants one
    /// ([`Denial::NoCredentials`](pulse::Denial::NoCredentials)), never retryable;
    /// [`Error::Connection`] when the server cannot be reached (a plain-text URL to a TLS
    /// port says that it may expect TLS);
    /// [`Error::Refused`] when it turns the connection away (`maxclients`:
    /// [`Refusal::TooManyClients`](pulse::error::Refusal::TooManyClients), over plain TCP
    /// only: over TLS the server gives no reason, and that is a `Connection`) or cannot
    /// load the scripts now (out of memory, loading its data set). For a cluster also:
    /// [`Error::Config`] for a seed that is not a cluster node, and for a single-server
    /// URL that names a cluster node (it would serve only that node's slots);
    /// [`Error::Connection`] when no seed answers.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self> {
        match redis_url::target(url)? {
            Target::Server(info) => Self::connect_server(with_tls(*info, &options)?, options).await,
            Target::Cluster(seeds) => {
                let seeds = seeds
                    .into_iter()
                    .map(|info| with_tls(info, &options))
                    .collect::<Result<Vec<_>>>()?;
                Self::connect_cluster_seeds(seeds, options).await
            }
        }
    }

    /// Connects to a Redis Cluster through `seeds`, each a single-node URL
    /// (`redis://[user:password@]host:port/`, or all `rediss://`): the programmatic form of
    /// a `redis+cluster://` URL, with the same checks and errors as
    /// [`RedisBackend::connect_with`].
    ///
    /// ```no_run
    /// # async fn demo() -> pulse::Result<()> {
    /// let seeds = ["redis://127.0.0.1:7000/", "redis://127.0.0.1:7001/"];
    /// let options = pulse_redis::RedisOptions::default();
    /// let backend = pulse_redis::RedisBackend::connect_cluster(&seeds, options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster(seeds: &[&str], options: RedisOptions) -> Result<Self> {
        if seeds.is_empty() {
            return Err(Error::Config(
                "a cluster needs at least one seed node".into(),
            ));
        }
        let seeds = seeds
            .iter()
            .map(|seed| match redis_url::target(seed)? {
                Target::Server(info) => with_tls(*info, &options),
                Target::Cluster(_) => Err(Error::Config(
                    "a cluster seed is one node's URL (redis://host:port/), not a cluster URL"
                        .into(),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        if seeds.iter().any(|s| s.redis_settings().db() != 0) {
            return Err(Error::Config(
                "a cluster seed selects no database (a cluster has database 0 only)".into(),
            ));
        }
        let tls =
            |info: &ConnectionInfo| matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
        if seeds.iter().any(|s| tls(s) != tls(&seeds[0])) {
            return Err(Error::Config(
                "cluster seeds mix redis:// and rediss://: use one scheme for every seed".into(),
            ));
        }
        Self::connect_cluster_seeds(seeds, options).await
    }

    async fn connect_server(info: ConnectionInfo, options: RedisOptions) -> Result<Self> {
        let endpoint = format!("{}/{}", info.addr(), info.redis_settings().db());
        let pubsub_client = pubsub_client(&info)?;
        let client = redis::Client::open(info.clone())
            .map_err(|e| Error::Config(format!("invalid Redis URL ({})", e.category())))?;
        let commands = Commands::Server(Box::new(ServerCommands::new(client, &options)));
        let blocking = Dedicated::Server(Box::new(Blocking::new(info, &options)?));
        let mut conn = commands.get().await?;
        // The login is checked here: a server that wants a password we did not give
        // accepts the connection and refuses its first command (`NOAUTH`).
        redis::cmd("PING")
            .query_async::<Value>(&mut conn)
            .await
            .map_err(|e| map_err("connect", "", e))?;
        if cluster_enabled(&mut conn, false).await? {
            return Err(Error::Config(format!(
                "the server at {endpoint} is a Redis Cluster node: connect to the cluster with \
                 a redis+cluster://host:port[,host:port…]/ URL"
            )));
        }
        if !options.allow_eviction {
            check_eviction_policy(&mut conn, &endpoint).await?;
        }
        let share_reads = options.share_blocking_reads;
        let pubsub = PubSub::Server(Hub::start(vec![pubsub_client], options));
        Self::finish(commands, blocking, share_reads, pubsub, endpoint).await
    }

    async fn connect_cluster_seeds(
        seeds: Vec<ConnectionInfo>,
        options: RedisOptions,
    ) -> Result<Self> {
        let endpoint = seeds
            .iter()
            .map(|s| s.addr().to_string())
            .collect::<Vec<_>>()
            .join(",");
        // A seed that answers must be a cluster node: a URL that mixes in a single server
        // would otherwise half work.
        for seed in &seeds {
            if let Ok(mut conn) = plain_connection(seed, &options).await {
                if !cluster_enabled(&mut conn, true).await? {
                    return Err(Error::Config(format!(
                        "the server at {} is not a Redis Cluster node (cluster support is \
                         disabled): list only cluster nodes in a redis+cluster:// URL, or use \
                         redis://host:port for a single server",
                        seed.addr()
                    )));
                }
            }
        }
        let template = seeds[0].clone();
        let mut builder = redis::cluster::ClusterClientBuilder::new(seeds.clone())
            .retries(0)
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.command_timeout);
        if let Some(certs) = certificates(&options) {
            builder = builder.certs(certs);
        }
        let client = builder
            .build()
            .map_err(|e| Error::Config(format!("invalid cluster settings ({e})")))?;
        let conn = client.get_async_connection().await.map_err(|e| {
            denied("connect", &e).unwrap_or_else(|| Error::Connection {
                message: format!(
                    "cannot reach the cluster through any of its seeds ({endpoint}): {e}"
                ),
                source: Some(Box::new(e)),
            })
        })?;
        let link = ClusterLink::new(client, conn, options.command_timeout);
        let commands = Commands::Cluster(link.clone());
        let topology = Arc::new(Topology::new(link, template, options.clone()).await?);
        let mut conn = commands.get().await?;
        redis::cmd("PING")
            .query_async::<Value>(&mut conn)
            .await
            .map_err(|e| map_err("connect", "", e))?;
        if !options.allow_eviction {
            for node in topology.masters() {
                let info = topology.info_for(&node);
                let mut conn = plain_connection(&info, &options).await?;
                check_eviction_policy(&mut conn, &info.addr().to_string()).await?;
            }
        }
        let mut fallbacks = Vec::new();
        for seed in &seeds {
            if let Some(node) = tcp_node(seed) {
                fallbacks.push((node, pubsub_client(seed)?));
            }
        }
        let pubsub = PubSub::Cluster(Box::new(Lanes::new(topology.clone(), fallbacks, options)));
        let blocking = Dedicated::Cluster(topology);
        Self::finish(
            commands,
            blocking,
            false,
            pubsub,
            format!("cluster {endpoint}"),
        )
        .await
    }

    /// Loads the scripts (on every node of a cluster) and assembles the handle.
    async fn finish(
        commands: Commands,
        blocking: Dedicated,
        share_reads: bool,
        pubsub: PubSub,
        endpoint: String,
    ) -> Result<Self> {
        let scripts = Scripts::new();
        let mut conn = commands.get().await?;
        for script in scripts.all() {
            script
                .load_async(&mut conn)
                .await
                .map_err(|e| map_err("load scripts", "", e))?;
        }
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                commands,
                blocking,
                reads: ReadMux::default(),
                share_reads,
                pubsub,
                scripts,
                endpoint,
                metrics: pulse::telemetry::BackendMetrics::new("redis"),
            }),
        })
    }

    /// Whether this handle is connected to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.commands, Commands::Cluster(_))
    }

    /// The server-side client ID of the shared pub/sub connection to a single server, once
    /// it exists (diagnostics and fault-injection tests: `CLIENT KILL ID <id>`); on a
    /// cluster, see [`RedisBackend::pubsub_connections`].
    pub fn pubsub_client_id(&self) -> Option<i64> {
        match &self.inner.pubsub {
            PubSub::Server(hub) => hub.client_id(),
            PubSub::Cluster(lanes) => lanes.connections().first().map(|(_, id)| *id),
        }
    }

    /// Every pub/sub connection that exists: the `host:port` of its node and its
    /// server-side client ID (one for a single server; on a cluster one per node that
    /// serves subscribed channels).
    pub fn pubsub_connections(&self) -> Vec<(String, i64)> {
        match &self.inner.pubsub {
            PubSub::Server(hub) => hub
                .client_id()
                .map(|id| (hub.node(), id))
                .into_iter()
                .collect(),
            PubSub::Cluster(lanes) => lanes.connections(),
        }
    }
}

/// Where subscriptions go: one hub for a single server, one per node on a cluster.
enum PubSub {
    Server(Arc<Hub>),
    Cluster(Box<Lanes>),
}

/// The host and port of a TCP (or TLS) address.
fn tcp_node(info: &ConnectionInfo) -> Option<cluster::Node> {
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port)
        | redis::ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
        _ => None,
    }
}

/// The TLS certificates of `options`, if any.
fn certificates(options: &RedisOptions) -> Option<redis::TlsCertificates> {
    if options.tls_root_cert.is_none() && options.tls_client_cert.is_none() {
        return None;
    }
    Some(redis::TlsCertificates {
        client_tls: options
            .tls_client_cert
            .as_ref()
            .map(|(c, k)| redis::ClientTlsConfig {
                client_cert: c.0.clone(),
                client_key: k.0.clone(),
            }),
        root_cert: options.tls_root_cert.as_ref().map(|p| p.0.clone()),
    })
}

/// `info` with the TLS parameters of `options` folded in, so every connection made from
/// it (commands, pub/sub, blocking reads) uses them.
fn with_tls(info: ConnectionInfo, options: &RedisOptions) -> Result<ConnectionInfo> {
    let Some(certs) = certificates(options) else {
        return Ok(info);
    };
    Ok(redis::Client::build_with_tls(info, certs)
        .map_err(|e| Error::Config(format!("invalid TLS settings ({})", e.category())))?
        .get_connection_info()
        .clone())
}

/// A client for a RESP3 pub/sub connection to `info`.
pub(crate) fn pubsub_client(info: &ConnectionInfo) -> Result<redis::Client> {
    let resp3 = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    redis::Client::open(info.clone().set_redis_settings(resp3))
        .map_err(|e| Error::Config(format!("invalid Redis URL ({})", e.category())))
}

/// A short-lived connection to one node (checks at connect).
async fn plain_connection(
    info: &ConnectionInfo,
    options: &RedisOptions,
) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(info.clone())
        .map_err(|e| Error::Config(format!("invalid Redis URL ({})", e.category())))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.command_timeout));
    match client
        .get_multiplexed_async_connection_with_config(&config)
        .await
    {
        Ok(conn) => Ok(conn),
        Err(e) => Err(conn::connect_error("connect", info, options.connect_timeout, e).await),
    }
}

/// Whether the server runs in cluster mode (`INFO cluster`). A server that will not say
/// (an ACL without `INFO`, a proxy) is taken at its URL's word.
async fn cluster_enabled(
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    url_says: bool,
) -> Result<bool> {
    match redis::cmd("INFO")
        .arg("cluster")
        .query_async::<Value>(conn)
        .await
    {
        Ok(info) => Ok(parse::text(info).is_some_and(|text| text.contains("cluster_enabled:1"))),
        Err(e) if is_connection_failure(&e) => Err(map_err("INFO cluster", "", e)),
        Err(_) => Ok(url_says),
    }
}

/// Refuses a server that may evict keys (see [`RedisOptions::allow_eviction`]); one
/// round trip. A server that will not tell (ACL without `CONFIG`, `CONFIG` renamed away,
/// a proxy that does not know the parameter) is connected to with a warning.
async fn check_eviction_policy(
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    endpoint: &str,
) -> Result<()> {
    let reply = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async::<Value>(conn)
        .await;
    let reply = match reply {
        Ok(v) => v,
        Err(e) if is_connection_failure(&e) => return Err(map_err("CONFIG GET", "", e)),
        Err(e) => {
            warn!(
                endpoint,
                error = %e,
                "cannot read the server's maxmemory-policy, so cannot check that it never \
                 evicts Pulse's keys; make sure it is `noeviction`"
            );
            return Ok(());
        }
    };
    let policy = match reply {
        Value::Array(mut items) if items.len() == 2 => items.pop(),
        Value::Map(mut pairs) if pairs.len() == 1 => pairs.pop().map(|(_, v)| v),
        _ => None,
    }
    .and_then(parse::text);
    match policy {
        Some(policy) if policy.eq_ignore_ascii_case("noeviction") => Ok(()),
        Some(policy) => Err(Error::Config(format!(
            "the Redis server at {endpoint} has maxmemory-policy {policy}: it may evict keys \
             under memory pressure, and Pulse keeps leases, pool state and consumer-group state \
             in keys, so evicting them runs jobs twice or loses them; set \
             `maxmemory-policy noeviction` on the server, or accept the risk with \
             RedisOptions::with_allow_eviction(true)"
        ))),
        None => {
            warn!(
                endpoint,
                "the server did not report its maxmemory-policy, so cannot check that it \
                 never evicts Pulse's keys; make sure it is `noeviction`"
            );
            Ok(())
        }
    }
}

impl pulse::Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }
}
