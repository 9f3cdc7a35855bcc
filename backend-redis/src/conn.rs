//! Connections: one shared multiplexed connection for commands and scripts, re-established
//! after a failure; and a pool of dedicated, timeout-free connections for blocking reads.
//!
//! A blocking `XREAD`/`XREADGROUP` never runs on the shared connection (it would stall every
//! request queued behind it) and never under the shared connection's response timeout
//! (which would cut it short). A blocking read whose future is dropped (cancelled) takes
//! its connection out of the pool, so the still-pending reply can never reach another
//! caller; the connection is closed with it.

use std::sync::{Arc, Mutex};

use pulse::{Error, Result};
use redis::{aio::MultiplexedConnection, AsyncConnectionConfig, Client, Cmd, Pipeline, Value};
use tokio::sync::Semaphore;

use crate::{errors::is_connection_failure, RedisOptions};

/// The shared command connection.
pub(crate) struct Commands {
    client: Client,
    config: AsyncConnectionConfig,
    current: Mutex<Option<MultiplexedConnection>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Commands {
    pub(crate) fn new(client: Client, options: &RedisOptions) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.command_timeout));
        Commands {
            client,
            config,
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
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| Error::Connection {
                message: format!("connect: {e}"),
                source: Some(Box::new(e)),
            })?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection after a connection-level failure.
    pub(crate) fn invalidate(&self, e: &redis::RedisError) {
        if is_connection_failure(e) {
            self.current
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
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
    pub(crate) async fn pipe(&self, pipe: &Pipeline) -> std::result::Result<Vec<Value>, CmdError> {
        let mut conn = self.get().await.map_err(CmdError::Pulse)?;
        pipe.query_async(&mut conn).await.map_err(|e| {
            self.invalidate(&e);
            CmdError::Redis(e)
        })
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
/// reply is still coming.
pub(crate) struct Blocking {
    client: Client,
    config: AsyncConnectionConfig,
    idle: Mutex<Vec<MultiplexedConnection>>,
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
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(options.max_blocking_connections)),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<MultiplexedConnection>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn connect(&self) -> std::result::Result<MultiplexedConnection, CmdError> {
        self.client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| {
                CmdError::Pulse(Error::Connection {
                    message: format!("blocking connection: {e}"),
                    source: Some(Box::new(e)),
                })
            })
    }

    /// Runs a blocking command on a dedicated connection.
    pub(crate) async fn cmd(&self, cmd: &Cmd) -> std::result::Result<Value, CmdError> {
        let _permit =
            self.permits.acquire().await.map_err(|_| {
                CmdError::Pulse(Error::connection("blocking connection pool closed"))
            })?;
        let reused = self.idle().pop();
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

/// Returns the connection to the idle list only when its command finished cleanly.
struct Checkout<'a> {
    conn: Option<MultiplexedConnection>,
    finished: bool,
    home: &'a Blocking,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let (true, Some(conn)) = (self.finished, self.conn.take()) {
            self.home.idle().push(conn);
        }
    }
}
