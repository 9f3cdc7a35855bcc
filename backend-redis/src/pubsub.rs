//! The pub/sub hub: every subscription of one backend shares one RESP3 connection.
//!
//! Invariants:
//! - SUBSCRIBE/UNSUBSCRIBE commands and the decisions behind them are serialised by one
//!   async lock (`link`), so an unsubscribe for a channel can never overtake a newer
//!   subscribe for it;
//! - every connection carries a generation; pushes from an older connection are ignored;
//! - a lost connection (closed by the server, failed health-check PING) is reported to every
//!   subscription as `Lost`; the hub reconnects with capped exponential back-off,
//!   re-subscribes every channel, and only then reports `Restored`;
//! - a hub may know several nodes (on a cluster: its own node first, then the seeds;
//!   [`crate::lanes`] keeps one hub per node) and holds a connection to one of them: a
//!   script's `PUBLISH` reaches the subscribers of every node once. A node that cannot be
//!   reached is skipped for the next one, so a subscription survives the loss of the node
//!   it was on (`Lost`, then `Restored` from another node).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, Weak,
    },
};

use pulse::{
    backend::{PubSubEvent, Subscription},
    Error, Result,
};
use redis::{aio::MultiplexedConnection, AsyncConnectionConfig, Client, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{
    conn::connect_error,
    errors::{denied, refused},
    parse, RedisOptions,
};

type Push = (u64, PushInfo);

#[derive(Default)]
struct Registry {
    next_id: u64,
    subs: HashMap<u64, (mpsc::UnboundedSender<PubSubEvent>, Vec<String>)>,
    by_channel: HashMap<String, Vec<u64>>,
}

struct Link {
    conn: Option<MultiplexedConnection>,
}

pub(crate) struct Hub {
    /// One client per node the hub may connect to (one for a single server); at least one.
    clients: Vec<Client>,
    /// The index in `clients` of the node to connect to next (or connected to).
    node: AtomicUsize,
    options: RedisOptions,
    link: tokio::sync::Mutex<Link>,
    registry: Mutex<Registry>,
    generation: AtomicU64,
    client_id: AtomicI64,
    pushes: mpsc::UnboundedSender<Push>,
    unsubscribe: mpsc::UnboundedSender<Vec<String>>,
}

impl Hub {
    /// A hub; its task runs until the hub is dropped.
    pub(crate) fn start(clients: Vec<Client>, options: RedisOptions) -> Arc<Hub> {
        let (pushes, push_rx) = mpsc::unbounded_channel();
        let (unsubscribe, unsub_rx) = mpsc::unbounded_channel();
        let hub = Arc::new(Hub {
            clients,
            node: AtomicUsize::new(0),
            options,
            link: tokio::sync::Mutex::new(Link { conn: None }),
            registry: Mutex::new(Registry::default()),
            generation: AtomicU64::new(0),
            client_id: AtomicI64::new(-1),
            pushes,
            unsubscribe,
        });
        tokio::spawn(run(Arc::downgrade(&hub), push_rx, unsub_rx));
        hub
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server-side client ID of the current connection (diagnostics, fault tests).
    pub(crate) fn client_id(&self) -> Option<i64> {
        Some(self.client_id.load(Ordering::Relaxed)).filter(|id| *id >= 0)
    }

    /// The address of the node the hub connects to (diagnostics, fault tests).
    pub(crate) fn node(&self) -> String {
        self.current()
            .map(|c| c.get_connection_info().addr().to_string())
            .unwrap_or_default()
    }

    fn current(&self) -> Option<&Client> {
        let i = self.node.load(Ordering::Relaxed) % self.clients.len().max(1);
        self.clients.get(i)
    }

    /// Opens a connection (generation + 1) to the first node that answers, starting with
    /// the current one, and subscribes every registered channel.
    async fn connect(&self, link: &mut Link) -> Result<()> {
        let start = self.node.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.clients.len() {
            let node = (start + i) % self.clients.len();
            match self.connect_to(node, link).await {
                Ok(()) => {
                    self.node.store(node, Ordering::Relaxed);
                    return Ok(());
                }
                // A refused subscription or login is the same on every node.
                Err(e @ (Error::Denied { .. } | Error::Refused { .. })) => return Err(e),
                Err(e) => {
                    if self.clients.len() > 1 {
                        debug!(error = %e, "pub/sub node unreachable; trying the next one");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::connection("no node to subscribe on")))
    }

    async fn connect_to(&self, node: usize, link: &mut Link) -> Result<()> {
        let Some(client) = self.clients.get(node) else {
            return Err(Error::connection("no node to subscribe on"));
        };
        let generation = self.generation.load(Ordering::SeqCst) + 1;
        let tx = self.pushes.clone();
        let sender = move |info: PushInfo| tx.send((generation, info)).map_err(|_| ());
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.command_timeout))
            .set_push_sender(sender);
        let mut conn = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => conn,
            Err(e) => {
                let info = client.get_connection_info();
                let timeout = self.options.connect_timeout;
                return Err(connect_error("pub/sub connection", info, timeout, e).await);
            }
        };
        let conn_err = |e: redis::RedisError| subscribe_err("pub/sub connection", e);
        let id: Value = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await
            .map_err(conn_err)?;
        let channels: Vec<String> = self.registry().by_channel.keys().cloned().collect();
        if !channels.is_empty() {
            conn.subscribe(&channels).await.map_err(conn_err)?;
        }
        self.client_id
            .store(parse::int(&id).unwrap_or(-1), Ordering::Relaxed);
        self.generation.store(generation, Ordering::SeqCst);
        link.conn = Some(conn);
        Ok(())
    }

    pub(crate) async fn subscribe(self: &Arc<Self>, channels: &[String]) -> Result<Subscription> {
        if channels.is_empty() {
            return Err(Error::InvalidArgument("no channels to subscribe to".into()));
        }
        let mut unique = channels.to_vec();
        unique.sort();
        unique.dedup();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut link = self.link.lock().await;
        let id = {
            let mut reg = self.registry();
            let id = reg.next_id;
            reg.next_id += 1;
            for ch in &unique {
                reg.by_channel.entry(ch.clone()).or_default().push(id);
            }
            reg.subs.insert(id, (tx, unique.clone()));
            id
        };
        let guard = Unsubscribe {
            hub: Arc::downgrade(self),
            id,
        };
        let result = match link.conn.as_mut() {
            // A fresh connection subscribes every registered channel, ours included.
            None => self.connect(&mut link).await,
            Some(conn) => conn
                .subscribe(&unique)
                .await
                .map_err(|e| subscribe_err("subscribe", e)),
        };
        drop(link);
        // On failure the guard unregisters the subscription as it drops.
        result.map(|()| Subscription::new(rx, guard))
    }

    fn broadcast(&self, event: &PubSubEvent) {
        for (tx, _) in self.registry().subs.values() {
            let _ = tx.send(event.clone());
        }
    }

    fn route(&self, info: PushInfo) {
        let mut data = info.data.into_iter();
        let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
            return;
        };
        let (Some(channel), Some(payload)) = (parse::text(channel), parse::bytes(payload)) else {
            return;
        };
        let reg = self.registry();
        for id in reg.by_channel.get(&channel).into_iter().flatten() {
            if let Some((tx, _)) = reg.subs.get(id) {
                let _ = tx.send(PubSubEvent::Message {
                    channel: channel.clone(),
                    payload: payload.clone(),
                });
            }
        }
    }

    /// After a loss: reconnect with back-off until it works or nothing is subscribed.
    async fn recover(&self, lost_generation: u64) {
        let mut delay = self.options.reconnect_min_delay;
        loop {
            {
                let mut link = self.link.lock().await;
                if self.generation.load(Ordering::SeqCst) > lost_generation && link.conn.is_some() {
                    return; // someone (a new subscribe) already reconnected
                }
                link.conn = None;
                if self.registry().subs.is_empty() {
                    return; // the next subscribe connects
                }
                match self.connect(&mut link).await {
                    Ok(()) => return,
                    Err(e) => warn!(error = %e, ?delay, "pub/sub reconnect failed; retrying"),
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.options.reconnect_max_delay);
        }
    }

    async fn health_check(&self) -> bool {
        let conn = self.link.lock().await.conn.clone();
        let Some(mut conn) = conn else { return true };
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<Value>(&mut conn);
        matches!(
            tokio::time::timeout(self.options.command_timeout, ping).await,
            Ok(Ok(_))
        )
    }

    async fn unsubscribe_unused(&self, channels: Vec<String>) {
        let mut link = self.link.lock().await;
        let unused: Vec<String> = {
            let reg = self.registry();
            channels
                .into_iter()
                .filter(|c| !reg.by_channel.contains_key(c))
                .collect()
        };
        if let (Some(conn), false) = (link.conn.as_mut(), unused.is_empty()) {
            if let Err(e) = conn.unsubscribe(&unused).await {
                debug!(error = %e, "unsubscribe failed; the connection will be replaced");
            }
        }
    }
}

async fn run(
    hub: Weak<Hub>,
    mut pushes: mpsc::UnboundedReceiver<Push>,
    mut unsubs: mpsc::UnboundedReceiver<Vec<String>>,
) {
    let period = match hub.upgrade() {
        Some(h) => h.options.health_check_interval,
        None => return,
    };
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let lost = tokio::select! {
            push = pushes.recv() => {
                let Some((generation, info)) = push else { return };
                let Some(hub) = hub.upgrade() else { return };
                if generation != hub.generation.load(Ordering::SeqCst) {
                    continue;
                }
                match info.kind {
                    PushKind::Message => { hub.route(info); None }
                    PushKind::Disconnection => Some(generation),
                    _ => None,
                }
            }
            channels = unsubs.recv() => {
                let Some(channels) = channels else { return };
                let Some(hub) = hub.upgrade() else { return };
                hub.unsubscribe_unused(channels).await;
                None
            }
            _ = ticker.tick() => {
                let Some(hub) = hub.upgrade() else { return };
                if hub.health_check().await { None } else { Some(hub.generation.load(Ordering::SeqCst)) }
            }
        };
        if let Some(generation) = lost {
            let Some(hub) = hub.upgrade() else { return };
            warn!("pub/sub connection lost; reconnecting");
            hub.broadcast(&PubSubEvent::Lost);
            hub.recover(generation).await;
            if hub.link.lock().await.conn.is_some() {
                debug!("pub/sub connection restored");
                hub.broadcast(&PubSubEvent::Restored);
            }
        }
    }
}

/// A failure on the pub/sub connection: a denial (a channel the ACL user may not
/// subscribe to, say) is [`Error::Denied`], a refusal [`Error::Refused`], anything else
/// [`Error::Connection`].
fn subscribe_err(what: &'static str, e: redis::RedisError) -> Error {
    let answered = denied("subscribe", &e).or_else(|| refused("subscribe", &e));
    answered.unwrap_or_else(|| Error::Connection {
        message: format!("{what}: {e}"),
        source: Some(Box::new(e)),
    })
}

/// Unregisters a subscription when dropped; the hub task unsubscribes unused channels.
struct Unsubscribe {
    hub: Weak<Hub>,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let mut emptied = Vec::new();
        {
            let mut reg = hub.registry();
            if let Some((_, channels)) = reg.subs.remove(&self.id) {
                for ch in channels {
                    if let Some(ids) = reg.by_channel.get_mut(&ch) {
                        ids.retain(|i| *i != self.id);
                        if ids.is_empty() {
                            reg.by_channel.remove(&ch);
                            emptied.push(ch);
                        }
                    }
                }
            }
        }
        if !emptied.is_empty() {
            let _ = hub.unsubscribe.send(emptied);
        }
    }
}
