//! Connections: one shared multiplexed connection for commands and scripts, re-established
//! after a failure; and a pool of dedicated, timeout-free connections for blocking reads.
//!
//! A blocking `XREAD`/`XREADGROUP` never runs on the shared connection (it would stall every
//! request queued behind it) and never under the shared connection's response timeout
//! (which would cut it short). A blocking read whose future is dropped (cancelled) takes
//! its connection out of the pool, so the still-pending reply can never reach another
//! caller; the connection is closed with it.

use std::sync::Mutex;

use deadpool_redis::{Manager, Pool, Runtime};
use pulse::{Error, Result};
use redis::{aio::MultiplexedConnection, AsyncConnectionConfig, Client, Cmd, Pipeline, Value};

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

/// Dedicated connections for blocking reads.
pub(crate) struct Blocking {
    pool: Pool,
}

impl Blocking {
    pub(crate) fn new(info: redis::ConnectionInfo, options: &RedisOptions) -> Result<Self> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(None);
        let manager = Manager::new_with_config(info, config)
            .map_err(|e| Error::Config(format!("blocking connection pool: {e}")))?;
        let pool = Pool::builder(manager)
            .max_size(options.max_blocking_connections)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Config(format!("blocking connection pool: {e}")))?;
        Ok(Blocking { pool })
    }

    /// Runs a blocking command on a dedicated connection.
    pub(crate) async fn cmd(&self, cmd: &Cmd) -> std::result::Result<Value, CmdError> {
        let conn = self.pool.get().await.map_err(|e| {
            CmdError::Pulse(Error::Connection {
                message: format!("blocking connection: {e}"),
                source: Some(Box::new(e)),
            })
        })?;
        let mut guard = Checkout {
            conn: Some(conn),
            finished: false,
        };
        let conn = guard
            .conn
            .as_mut()
            .ok_or_else(|| CmdError::Pulse(Error::connection("no connection")))?;
        let out = cmd.query_async::<Value>(&mut **conn).await;
        // A connection-level failure leaves the connection useless: drop it.
        guard.finished = !matches!(&out, Err(e) if is_connection_failure(e));
        out.map_err(CmdError::Redis)
    }
}

/// Returns the connection to the pool only when its command finished cleanly.
struct Checkout {
    conn: Option<deadpool_redis::Connection>,
    finished: bool,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if !self.finished {
            if let Some(conn) = self.conn.take() {
                drop(deadpool_redis::Connection::take(conn));
            }
        }
    }
}
