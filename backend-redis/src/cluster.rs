//! Redis Cluster: the shared command connection that follows redirections without ever
//! resending a command that may have run, the slot map that routes dedicated (blocking)
//! connections to a slot's owner, and the split of multi-stream reads by slot.
//!
//! Invariants:
//! - The `redis` cluster client is built with `retries(0)`, so it never resends: a command
//!   whose reply is lost is [`Error::Connection`] ("maybe applied"), exactly as on one
//!   server (docs/ARCHITECTURE.md, decision 24). A reply that proves the command did not
//!   run is resent here, until [`RedisOptions::command_timeout`]: `ASK` to the named node
//!   after `ASKING`; `MOVED` (the client refreshes its slot map on it), `TRYAGAIN`,
//!   `CLUSTERDOWN`, `MASTERDOWN`, `LOADING` and `READONLY` (a demoted master) after a
//!   short pause, and so is a command the client could not send for want of a connection
//!   to its node. A pipeline is resent only when every one of its commands was refused so,
//!   or when it was a transaction the server discarded; an `ASK` for a pipeline waits for
//!   the migration to end rather than following it.
//! - Every keyed command of one operation is in one slot (the keys share a hash tag). Only
//!   reads over several streams span slots; [`by_slot`] splits them.
//! - Blocking commands run on dedicated connections to the owner of their slot (one pool
//!   per node, [`crate::conn::Blocking`]), never on the cluster connection, whose one socket
//!   per node a blocked read would stall.
//!
//! Pub/sub does not use the cluster client: a script's `PUBLISH` reaches every node's
//! subscribers, so [`crate::pubsub::Hub`] subscribes on one plain connection to one node and
//! moves to another on loss (`../shared/notes/redis-cluster.md` has the client bugs that
//! rules out).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use pulse::{keys::hash_slot, Error, Result};
use redis::{
    aio::ConnectionLike,
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
    Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, Pipeline, RedisError, RedisFuture,
    ServerErrorKind, Value,
};
use tokio::time::Instant;
use tracing::debug;

use crate::{
    conn::{Blocking, CmdError},
    errors::is_connection_failure,
    parse, RedisOptions,
};

/// What a refused-but-not-run reply asks for.
enum Resend {
    /// Ask the named node, after `ASKING` (a slot being migrated).
    Ask(String, u16),
    /// Send again after a pause (a moved slot, a failover, a node loading).
    Later,
}

/// Whether `e` proves that the command did not run, and how to send it again.
fn resend(e: &RedisError) -> Option<Resend> {
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::Ask) => {
            let (addr, _) = e.redirect_node()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some(Resend::Ask(host.to_owned(), port.parse().ok()?))
        }
        ErrorKind::Server(
            ServerErrorKind::Moved
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::BusyLoading
            | ServerErrorKind::ReadOnly,
        ) => Some(Resend::Later),
        _ => None,
    }
}

/// Whether a failed pipeline of `commands` commands ran none of them, so it may be sent
/// again: every command refused with a redirection, or a discarded transaction.
fn pipeline_not_run(e: &RedisError, commands: usize) -> bool {
    let discarded = e.code() == Some("EXECABORT");
    let Some(errors) = e.clone().into_server_errors() else {
        return false;
    };
    let redirected = |err: &redis::ServerError| {
        matches!(
            err.kind(),
            Some(
                ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
                    | ServerErrorKind::ReadOnly
            )
        )
    };
    let all_redirected = !errors.is_empty() && errors.iter().all(|(_, err)| redirected(err));
    all_redirected && (discarded || errors.len() == commands)
}

/// Pauses between resends: 2 ms doubling to 100 ms.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(2))
    }
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_millis(100));
    }
}

/// The shared command connection to a cluster (see the module doc for what it resends).
///
/// The `redis` cluster connection reconnects a node's socket when it sees the connection
/// drop, but not when requests to the node time out: chaos saw one process's requests to
/// a restarted node time out for minutes while every other process had recovered. So a
/// connection-level failure (a timeout, a dropped or refused connection) renews the whole
/// cluster connection in the background, as the single-server connection is renewed
/// after one; requests in flight finish on the old one, new ones take the new one.
#[derive(Clone)]
pub(crate) struct ClusterLink {
    shared: Arc<LinkShared>,
    /// How long refused commands are resent before the refusal is returned.
    patience: Duration,
}

struct LinkShared {
    client: ClusterClient,
    /// The connection in use, and how many times it was renewed.
    current: Mutex<(u64, ClusterConnection)>,
    /// A renewal is under way (one at a time).
    renewing: AtomicBool,
}

impl ClusterLink {
    pub(crate) fn new(client: ClusterClient, conn: ClusterConnection, patience: Duration) -> Self {
        let shared = Arc::new(LinkShared {
            client,
            current: Mutex::new((0, conn)),
            renewing: AtomicBool::new(false),
        });
        ClusterLink { shared, patience }
    }

    /// The connection in use, with its generation.
    fn conn(&self) -> (u64, ClusterConnection) {
        let current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (current.0, current.1.clone())
    }

    /// After `e` on the connection of generation `used`: a connection-level failure starts
    /// a renewal, unless the connection was renewed since or a renewal is under way.
    fn check(&self, used: u64, e: &RedisError) {
        if !is_connection_failure(e) || self.conn().0 != used {
            return;
        }
        if self.shared.renewing.swap(true, Ordering::SeqCst) {
            return;
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            match shared.client.get_async_connection().await {
                Ok(conn) => {
                    let mut current = shared.current.lock().unwrap_or_else(|p| p.into_inner());
                    if current.0 == used {
                        *current = (used + 1, conn);
                    }
                    debug!(generation = used + 1, "cluster connection renewed");
                }
                Err(e) => debug!(error = %e, "renewing the cluster connection failed"),
            }
            shared.renewing.store(false, Ordering::SeqCst);
        });
    }

    async fn command(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        let (used, mut conn) = self.conn();
        let out = self.command_on(&mut conn, cmd).await;
        if let Err(e) = &out {
            self.check(used, e);
        }
        out
    }

    async fn command_on(
        &self,
        conn: &mut ClusterConnection,
        cmd: &Cmd,
    ) -> redis::RedisResult<Value> {
        let give_up = Instant::now() + self.patience;
        let mut backoff = Backoff::new();
        let mut ask: Option<(String, u16)> = None;
        loop {
            let out = match ask.take() {
                None => conn.req_packed_command(cmd).await,
                Some((host, port)) => {
                    let mut pipe = redis::pipe();
                    pipe.cmd("ASKING").add_command(cmd.clone());
                    let route = SingleNodeRoutingInfo::ByAddress { host, port };
                    conn.route_pipeline(pipe, 1, 1, route)
                        .await
                        .and_then(|mut replies| {
                            replies
                                .pop()
                                .map(Value::extract_error)
                                .unwrap_or(Ok(Value::Nil))
                        })
                }
            };
            let Err(e) = out else { return out };
            // No connection to the node (an `ASK` naming a node the client does not know
            // yet, or the client reconnecting): nothing was sent, so wait and send again.
            let unknown_node = e.kind() == ErrorKind::ClusterConnectionNotFound;
            if unknown_node && Instant::now() < give_up {
                backoff.wait().await;
                continue;
            }
            match resend(&e) {
                Some(_) if Instant::now() >= give_up => return Err(e),
                Some(Resend::Ask(host, port)) => ask = Some((host, port)),
                Some(Resend::Later) => backoff.wait().await,
                None => return Err(e),
            }
        }
    }

    async fn pipeline(
        &mut self,
        pipe: &Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<Value>> {
        let give_up = Instant::now() + self.patience;
        let mut backoff = Backoff::new();
        let (used, mut conn) = self.conn();
        loop {
            match conn.req_packed_commands(pipe, offset, count).await {
                Err(e) if Instant::now() < give_up && pipeline_not_run(&e, pipe.len()) => {
                    backoff.wait().await;
                }
                out => {
                    if let Err(e) = &out {
                        self.check(used, e);
                    }
                    return out;
                }
            }
        }
    }
}

impl ClusterLink {
    /// Sends `cmd` to the node at `host:port`, which must be one the cluster connection
    /// knows (a master); no redirection is followed.
    pub(crate) async fn on_node(
        &mut self,
        (host, port): Node,
        cmd: &Cmd,
    ) -> redis::RedisResult<Value> {
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
        let (used, mut conn) = self.conn();
        let out = conn.route_command(cmd.clone(), route).await;
        if let Err(e) = &out {
            self.check(used, e);
        }
        out
    }
}

impl ConnectionLike for ClusterLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.pipeline(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// One node: `(host, port)`.
pub(crate) type Node = (String, u16);

/// Which node serves which slots, and a pool of dedicated connections per node.
pub(crate) struct Topology {
    link: ClusterLink,
    /// A seed's settings (login, TLS), with the address replaced per node.
    template: ConnectionInfo,
    options: RedisOptions,
    /// Slot ranges by first slot: `(last slot, owner)`.
    slots: RwLock<BTreeMap<u16, (u16, Node)>>,
    pools: Mutex<HashMap<Node, Arc<Blocking>>>,
}

impl Topology {
    /// Reads the slot map through `link`.
    pub(crate) async fn new(
        link: ClusterLink,
        template: ConnectionInfo,
        options: RedisOptions,
    ) -> Result<Self> {
        let topology = Topology {
            link,
            template,
            options,
            slots: RwLock::new(BTreeMap::new()),
            pools: Mutex::new(HashMap::new()),
        };
        topology.refresh().await?;
        Ok(topology)
    }

    /// Reads the slot map again (`CLUSTER SLOTS`, from any node).
    pub(crate) async fn refresh(&self) -> Result<()> {
        let mut link = self.link.clone();
        let reply = link
            .command(redis::cmd("CLUSTER").arg("SLOTS"))
            .await
            .map_err(|e| crate::errors::map_err("CLUSTER SLOTS", "", e))?;
        let map = parse_slots(reply)?;
        *self.slots.write().unwrap_or_else(|p| p.into_inner()) = map;
        Ok(())
    }

    /// The master serving `slot`, as last read.
    pub(crate) fn owner(&self, slot: u16) -> Option<Node> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        let (_, (last, node)) = slots.range(..=slot).next_back()?;
        (slot <= *last).then(|| node.clone())
    }

    /// Every master, as last read.
    pub(crate) fn masters(&self) -> Vec<Node> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        let mut nodes: Vec<Node> = slots.values().map(|(_, n)| n.clone()).collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// The connection settings of `node`: the seed's login and TLS, the node's address.
    pub(crate) fn info_for(&self, (host, port): &Node) -> ConnectionInfo {
        let addr = match self.template.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.clone(), *port),
        };
        self.template.clone().set_addr(addr)
    }

    fn pool(&self, node: &Node) -> std::result::Result<Arc<Blocking>, CmdError> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(node) {
            return Ok(pool.clone());
        }
        let pool =
            Arc::new(Blocking::new(self.info_for(node), &self.options).map_err(CmdError::Pulse)?);
        pools.insert(node.clone(), pool.clone());
        Ok(pool)
    }

    /// Runs a blocking command about `key` on a dedicated connection to the owner of its
    /// slot. A `MOVED` reply refreshes the slot map and goes to the new owner; a slot in
    /// migration (`ASK`, `TRYAGAIN`) or a cluster without a master for it answers an
    /// empty read after a pause, since nothing was read; a connection failure refreshes the
    /// slot map (a failover) before it is returned.
    pub(crate) async fn blocking(
        &self,
        key: &str,
        cmd: &Cmd,
    ) -> std::result::Result<Value, CmdError> {
        let slot = hash_slot(key);
        for _ in 0..3 {
            let node = match self.owner(slot) {
                Some(node) => node,
                None => {
                    self.refresh().await.map_err(CmdError::Pulse)?;
                    self.owner(slot).ok_or_else(|| {
                        CmdError::Pulse(Error::connection(format!(
                            "no cluster node serves slot {slot}"
                        )))
                    })?
                }
            };
            match self.pool(&node)?.cmd(cmd).await {
                Err(CmdError::Redis(e))
                    if matches!(e.kind(), ErrorKind::Server(ServerErrorKind::Moved)) =>
                {
                    self.refresh().await.map_err(CmdError::Pulse)?;
                }
                Err(CmdError::Redis(e)) if resend(&e).is_some() => {
                    debug!(error = %e, "a blocking read met a slot in transition; reading nothing");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return Ok(Value::Nil);
                }
                Err(CmdError::Redis(e)) if is_connection_failure(&e) => {
                    if let Err(refresh) = self.refresh().await {
                        debug!(error = %refresh, "cannot refresh the slot map");
                    }
                    return Err(CmdError::Redis(e));
                }
                Err(CmdError::Pulse(e)) => {
                    if let Err(refresh) = self.refresh().await {
                        debug!(error = %refresh, "cannot refresh the slot map");
                    }
                    return Err(CmdError::Pulse(e));
                }
                out => return out,
            }
        }
        Err(CmdError::Pulse(Error::connection(format!(
            "slot {slot} kept moving while a blocking read looked for its owner"
        ))))
    }
}

/// `CLUSTER SLOTS`: `[[first, last, [host, port, id, …], replicas…], …]`.
fn parse_slots(reply: Value) -> Result<BTreeMap<u16, (u16, Node)>> {
    let bad = |why: &str| Error::malformed("CLUSTER SLOTS", why.to_owned());
    let Value::Array(ranges) = reply else {
        return Err(bad("expected an array"));
    };
    let mut map = BTreeMap::new();
    for range in ranges {
        let Value::Array(mut parts) = range else {
            return Err(bad("expected an array per slot range"));
        };
        if parts.len() < 3 {
            return Err(bad("a slot range without a master"));
        }
        let master = parts.swap_remove(2);
        let slot = |v: &Value| {
            parse::int(v)
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| bad("a slot number out of range"))
        };
        let (first, last) = (slot(&parts[0])?, slot(&parts[1])?);
        let Value::Array(master) = master else {
            return Err(bad("expected the master as an array"));
        };
        let mut fields = master.into_iter();
        let host = fields.next().and_then(parse::text).unwrap_or_default();
        let port = fields
            .next()
            .as_ref()
            .and_then(parse::int)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| bad("a master without a port"))?;
        map.insert(first, (last, (host, port)));
    }
    Ok(map)
}

/// Groups `items` by the slot of their key, keeping their order within a group and the
/// groups in order of first appearance.
pub(crate) fn by_slot<T: Clone>(items: &[T], key: impl Fn(&T) -> &str) -> Vec<Vec<T>> {
    let mut groups: Vec<(u16, Vec<T>)> = Vec::new();
    for item in items {
        let slot = hash_slot(key(item));
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, group)) => group.push(item.clone()),
            None => groups.push((slot, vec![item.clone()])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_grouped_by_slot_in_order() {
        let keys = ["{a}:1", "{b}:1", "{a}:2", "c"];
        let groups = by_slot(&keys, |k| k);
        assert_eq!(
            groups,
            vec![vec!["{a}:1", "{a}:2"], vec!["{b}:1"], vec!["c"]]
        );
    }

    #[test]
    fn slot_map_is_read_and_looked_up_by_range() {
        let node = |host: &str, port| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(5460), node("h1", 7000)]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                node("h2", 7001),
                node("h3", 7002),
            ]),
        ]);
        let map = parse_slots(reply).unwrap_or_default();
        assert_eq!(map.len(), 2);
        assert_eq!(map[&5461], (16383, ("h2".to_owned(), 7001)));
        assert!(parse_slots(Value::Int(1)).is_err());
        assert!(parse_slots(Value::Array(vec![Value::Array(vec![Value::Int(0)])])).is_err());
    }
}
