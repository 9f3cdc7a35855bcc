//! Connections: one shared multiplexed connection for commands and scripts, re-established
//! after a failure (on a cluster, the cluster connection of [`crate::cluster`], one socket
//! per node); and a pool of dedicated, timeout-free connections for blocking reads (on a
//! cluster, one pool per node).
//!
//! A blocking `XREAD`/`XREADGROUP` never runs on the shared connection (it would stall every
//! request queued behind it) and never under the shared connection's response timeout
//! (which would cut it short). A blocking read whose future is dropped (cancelled) takes
//! its connection out of the pool, so the still-pending reply can never reach another
//! caller; the connection is closed with it.
//!
//! A failed connection attempt is explained by [`connect_error`]: a server at `maxclients`
//! turns a client away with a reason that `redis` loses, so the reason is read back with a
//! probe and reported as [`Error::Refused`] rather than as a dropped connection.

use std::{
    io::{Read, Write},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use pulse::{error::Refusal, Error, Result};
use redis::{
    aio::{ConnectionLike, MultiplexedConnection},
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, Pipeline, RedisError, RedisFuture, Value,
};
use tokio::sync::Semaphore;

use crate::{
    cluster::{ClusterLink, Topology},
    errors::{denied, is_connection_failure, is_refusal},
    RedisOptions,
};

/// The shared command connection: to one server, or to a cluster.
pub(crate) enum Commands {
    Server(Box<ServerCommands>),
    Cluster(ClusterLink),
}

/// A handle on the shared command connection, for one request.
#[derive(Clone)]
pub(crate) enum Shared {
    Server(MultiplexedConnection),
    Cluster(ClusterLink),
}

impl ConnectionLike for Shared {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Shared::Server(c) => c.req_packed_command(cmd),
            Shared::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Shared::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Shared::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Shared::Server(c) => c.get_db(),
            Shared::Cluster(c) => c.get_db(),
        }
    }
}

/// The shared connection to one server.
pub(crate) struct ServerCommands {
    client: Client,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    current: Mutex<Option<MultiplexedConnection>>,
    connecting: tokio::sync::Mutex<()>,
}

impl ServerCommands {
    pub(crate) fn new(client: Client, options: &RedisOptions) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.command_timeout));
        ServerCommands {
            client,
            config,
            connect_timeout: options.connect_timeout,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The live connection, establishing one if needed.
    pub(crate) async fn get(&self) -> Result<MultiplexedConnection> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let info = self.client.get_connection_info();
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config);
        let conn = tokio::select! {
            out = connect => match out {
                Ok(conn) => conn,
                Err(e) => {
                    return Err(connect_error("connect", info, self.connect_timeout, e).await);
                }
            },
            e = plain_text_behind_tls(info, self.connect_timeout) => return Err(e),
        };
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection after a connection-level failure.
    fn invalidate(&self, e: &redis::RedisError) {
        if is_connection_failure(e) {
            self.current
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
        }
    }
}

impl Commands {
    /// The live connection, establishing one if needed (a cluster connection re-establishes
    /// its node connections by itself).
    pub(crate) async fn get(&self) -> Result<Shared> {
        match self {
            Commands::Server(s) => s.get().await.map(Shared::Server),
            Commands::Cluster(c) => Ok(Shared::Cluster(c.clone())),
        }
    }

    /// Forgets the connection after a connection-level failure.
    pub(crate) fn invalidate(&self, e: &redis::RedisError) {
        if let Commands::Server(s) = self {
            s.invalidate(e);
        }
    }

    /// Runs one command.
    pub(crate) async fn cmd(&self, cmd: &Cmd) -> std::result::Result<Value, CmdError> {
        let mut conn = self.get().await.map_err(CmdError::Pulse)?;
        cmd.query_async(&mut conn).await.map_err(|e| {
            self.invalidate(&e);
            CmdError::Redis(e)
        })
    }

    /// Runs a pipeline; returns one reply per non-ignored command.
    ///
    /// A pipeline of which the server refused some commands (out of memory, say) and
    /// applied the others is a [`Error::Connection`] ("may have been applied"), since a
    /// refusal would promise that nothing was. A transaction the server discarded
    /// (`EXECABORT`: a command was refused while queueing) applied nothing and stays a
    /// refusal.
    pub(crate) async fn pipe(&self, pipe: &Pipeline) -> std::result::Result<Vec<Value>, CmdError> {
        let mut conn = self.get().await.map_err(CmdError::Pulse)?;
        pipe.query_async(&mut conn).await.map_err(|e| {
            self.invalidate(&e);
            let failed = e
                .clone()
                .into_server_errors()
                .map_or(0, |errors| errors.len());
            let discarded = e.code() == Some("EXECABORT");
            if !discarded && failed < pipe.len() && is_refusal(&e) {
                return CmdError::Pulse(Error::Connection {
                    message: format!(
                        "the server refused {failed} of {} commands and applied the others: {e}",
                        pipe.len()
                    ),
                    source: Some(Box::new(e)),
                });
            }
            CmdError::Redis(e)
        })
    }
}

/// Explains a failed connection attempt (`what` names the connection in the message).
///
/// A server at `maxclients` writes `-ERR max number of clients reached` as soon as it
/// accepts a connection and closes it; `redis` reads that line as the reply to its first
/// handshake command and reports a dropped connection (or a failed authentication). So
/// when the server was reached, a probe connection sends `PING` and reads the first line
/// back: the server's refusal becomes [`Error::Refused`] with
/// [`Refusal::TooManyClients`], anything else leaves the original [`Error::Connection`].
/// The probe needs plain TCP or a Unix socket: over TLS the server closes before the
/// handshake without writing a reason.
pub(crate) async fn connect_error(
    what: &'static str,
    info: &redis::ConnectionInfo,
    timeout: Duration,
    e: RedisError,
) -> Error {
    if let Some(denied) = denied("connect", &e) {
        return denied;
    }
    if e.to_string().contains("refused to switch database") {
        // `redis` reports a failed `SELECT` with this text and the server's detail.
        return Error::Config(format!(
            "the server at {} has no database {} ({}): the URL's path selects it, from 0 \
             to the server's `databases` setting minus one",
            info.addr(),
            info.redis_settings().db(),
            e.detail().unwrap_or("DB index is out of range"),
        ));
    }
    let reached = !(e.is_connection_refusal() || e.is_timeout());
    let addr = info.addr().clone();
    let mut hint = "";
    if reached && matches!(addr, ConnectionAddr::Tcp(..) | ConnectionAddr::Unix(_)) {
        let greeting = tokio::task::spawn_blocking(move || probe(&addr, timeout))
            .await
            .ok()
            .flatten();
        match greeting {
            Some(line) if line.starts_with("ERR max number of clients") => {
                return Error::Refused {
                    op: "connect",
                    reason: Refusal::TooManyClients,
                    message: line,
                };
            }
            // A TLS port closes on a plain-text command without a word.
            None if matches!(info.addr(), ConnectionAddr::Tcp(..)) => {
                hint = "; the server closed the connection without answering a plain-text \
                        PING: if it expects TLS, use a rediss:// URL";
            }
            _ => {}
        }
    }
    Error::Connection {
        message: format!("{what}: {e}{hint}"),
        source: Some(Box::new(e)),
    }
}

/// For a `rediss://` address whose TLS handshake has not completed after a moment: whether
/// the server answers a plain-text `PING`, i.e. speaks plain text on that port, in which
/// case the handshake would only time out (the server waits for a command line that never
/// comes). Resolves to the error to report then; otherwise (a plain address, a TLS server,
/// no answer) never resolves, and the connection attempt runs to its own end.
async fn plain_text_behind_tls(info: &redis::ConnectionInfo, timeout: Duration) -> Error {
    if let ConnectionAddr::TcpTls { host, port, .. } = info.addr() {
        tokio::time::sleep(Duration::from_millis(250).min(timeout / 4)).await;
        let plain = ConnectionAddr::Tcp(host.clone(), *port);
        let line = tokio::task::spawn_blocking(move || probe(&plain, timeout))
            .await
            .ok()
            .flatten();
        if line.is_some_and(|l| is_resp_text(&l)) {
            return Error::Config(format!(
                "the server at {host}:{port} speaks plain text, not TLS: use a redis:// URL, \
                 or enable TLS on the server (`tls-port`)"
            ));
        }
    }
    std::future::pending().await
}

/// True for what a Redis server answers to `PING` in plain text: `+PONG`, or an error
/// line (`NOAUTH …`, `ERR …`, `DENIED …`) as [`probe`] returns it.
fn is_resp_text(line: &str) -> bool {
    line.starts_with("+PONG")
        || line
            .split(' ')
            .next()
            .is_some_and(|code| code.len() >= 3 && code.bytes().all(|b| b.is_ascii_uppercase()))
}

/// The first line the server answers to `PING` on a fresh connection, without the `-`
/// of an error; `None` when it cannot be read within `timeout`.
fn probe(addr: &ConnectionAddr, timeout: Duration) -> Option<String> {
    fn first_line(mut s: impl Read + Write) -> Option<String> {
        // A server that already closed may reset the connection when PING arrives, after
        // its line reached us: read what came whatever the write did.
        let _ = s.write_all(b"PING\r\n");
        let mut line = Vec::new();
        let mut buf = [0u8; 128];
        while !line.contains(&b'\n') && line.len() < 512 {
            match s.read(&mut buf) {
                Ok(n) if n > 0 => line.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.lines().next()?.trim();
        Some(line.strip_prefix('-').unwrap_or(line).to_owned())
    }
    match addr {
        ConnectionAddr::Tcp(host, port) => {
            let target = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))
                .ok()?
                .next()?;
            let s = std::net::TcpStream::connect_timeout(&target, timeout).ok()?;
            s.set_read_timeout(Some(timeout)).ok()?;
            s.set_write_timeout(Some(timeout)).ok()?;
            first_line(s)
        }
        #[cfg(unix)]
        ConnectionAddr::Unix(path) => {
            let s = std::os::unix::net::UnixStream::connect(path).ok()?;
            s.set_read_timeout(Some(timeout)).ok()?;
            s.set_write_timeout(Some(timeout)).ok()?;
            first_line(s)
        }
        _ => None,
    }
}

/// A failure before (connecting) or from Redis.
#[derive(Debug)]
pub(crate) enum CmdError {
    Pulse(Error),
    Redis(redis::RedisError),
}

impl CmdError {
    /// Maps with `f` when it is a Redis error.
    pub(crate) fn map(self, f: impl FnOnce(redis::RedisError) -> Error) -> Error {
        match self {
            CmdError::Pulse(e) => e,
            CmdError::Redis(e) => f(e),
        }
    }
}

/// Dedicated connections for blocking reads: an idle list and a cap, no health check on
/// checkout (a connection that turns out dead fails its command, is dropped, and the read
/// is retried once on a fresh one). A connection goes back to the idle list only when its
/// command finished cleanly; one whose read was cancelled mid-flight is closed, since its
/// reply is still coming. A connection left idle longer than `idle_timeout` is closed the
/// next time the pool is used, so a burst of concurrent reads does not pin its peak number
/// of connections for good.
pub(crate) struct Blocking {
    client: Client,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    /// Newest last, each with the time it went idle.
    idle: Mutex<Vec<(MultiplexedConnection, Instant)>>,
    idle_timeout: Duration,
    permits: Arc<Semaphore>,
}

impl Blocking {
    pub(crate) fn new(info: redis::ConnectionInfo, options: &RedisOptions) -> Result<Self> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(None);
        let client = Client::open(info)
            .map_err(|e| Error::Config(format!("invalid Redis URL ({})", e.category())))?;
        Ok(Blocking {
            client,
            config,
            connect_timeout: options.connect_timeout,
            idle: Mutex::new(Vec::new()),
            idle_timeout: options.blocking_idle_timeout,
            permits: Arc::new(Semaphore::new(options.max_blocking_connections)),
        })
    }

    /// The idle list, without the connections idle for longer than `idle_timeout`.
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(MultiplexedConnection, Instant)>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let timeout = self.idle_timeout;
        idle.retain(|(_, since)| since.elapsed() < timeout);
        idle
    }

    /// A new dedicated connection, outside the pool and its cap.
    pub(crate) async fn connect(&self) -> std::result::Result<MultiplexedConnection, CmdError> {
        match self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
        {
            Ok(conn) => Ok(conn),
            Err(e) => {
                let info = self.client.get_connection_info();
                let e = connect_error("blocking connection", info, self.connect_timeout, e);
                Err(CmdError::Pulse(e.await))
            }
        }
    }

    /// Runs a blocking command on a dedicated connection.
    pub(crate) async fn cmd(&self, cmd: &Cmd) -> std::result::Result<Value, CmdError> {
        let _permit =
            self.permits.acquire().await.map_err(|_| {
                CmdError::Pulse(Error::connection("blocking connection pool closed"))
            })?;
        let reused = self.idle().pop().map(|(conn, _)| conn);
        let fresh = reused.is_none();
        let conn = match reused {
            Some(c) => c,
            None => self.connect().await?,
        };
        match self.run_on(conn, cmd).await {
            // An idle connection may have died with a server restart: once more, fresh.
            Err(CmdError::Redis(e)) if !fresh && is_connection_failure(&e) => {
                let conn = self.connect().await?;
                self.run_on(conn, cmd).await
            }
            out => out,
        }
    }

    async fn run_on(
        &self,
        conn: MultiplexedConnection,
        cmd: &Cmd,
    ) -> std::result::Result<Value, CmdError> {
        let mut guard = Checkout {
            conn: Some(conn),
            finished: false,
            home: self,
        };
        let out = match guard.conn.as_mut() {
            Some(conn) => cmd.query_async::<Value>(conn).await,
            None => return Err(CmdError::Pulse(Error::connection("no connection"))),
        };
        // A connection-level failure leaves the connection useless: drop it.
        guard.finished = !matches!(&out, Err(e) if is_connection_failure(e));
        out.map_err(CmdError::Redis)
    }
}

/// Where blocking commands run: one pool for a single server, one per node of a cluster.
pub(crate) enum Dedicated {
    Server(Box<Blocking>),
    Cluster(Arc<Topology>),
}

impl Dedicated {
    /// Runs a blocking command about `key` (the first key it names) on a dedicated
    /// connection to the server that holds `key`.
    pub(crate) async fn cmd(&self, key: &str, cmd: &Cmd) -> std::result::Result<Value, CmdError> {
        match self {
            Dedicated::Server(pool) => pool.cmd(cmd).await,
            Dedicated::Cluster(topology) => topology.blocking(key, cmd).await,
        }
    }

    /// The pool of a single server (the shared reads of [`crate::readmux`] use it; they
    /// are off on a cluster).
    pub(crate) fn server(&self) -> Option<&Blocking> {
        match self {
            Dedicated::Server(pool) => Some(pool),
            Dedicated::Cluster(_) => None,
        }
    }
}

/// Returns the connection to the idle list only when its command finished cleanly.
struct Checkout<'a> {
    conn: Option<MultiplexedConnection>,
    finished: bool,
    home: &'a Blocking,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let (true, Some(conn)) = (self.finished, self.conn.take()) {
            self.home.idle().push((conn, Instant::now()));
        }
    }
}
