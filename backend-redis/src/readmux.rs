//! Shared blocking reads: the blocking `XREAD`s of one backend handle, merged into one
//! `XREAD` on one dedicated connection, so a process with many readers holds one blocking
//! connection for all of them rather than one each.
//!
//! A caller registers a *waiter* (its streams with their cursors, its count, its deadline)
//! and awaits a one-shot answer. One driver task, spawned when the first waiter arrives and
//! ending when none is left, loops: it builds one `XREAD COUNT c BLOCK t STREAMS …` over
//! the union of the waiters' streams (per stream the lowest cursor, `c` the highest count,
//! `t` the nearest deadline), answers every waiter that got entries past its own cursors
//! (at most its count per stream) and every waiter whose deadline passed (an empty answer),
//! and goes round again with the rest.
//!
//! Invariants:
//! - A waiter never sees an entry at or before its cursor, nor more than its count per
//!   stream: a merged reply is filtered per waiter. Entries a waiter was not given are
//!   still after its cursor, so it reads them next time; nothing is skipped.
//! - A waiter is answered only from a read that included its cursors: a read built before
//!   it arrived may start after its cursor (another waiter's), and answering from it would
//!   skip the entries in between.
//! - A waiter that arrives while the driver is blocked is taken into the read at once: the
//!   driver ends its own wait with `CLIENT UNBLOCK` (sent on the shared command
//!   connection, and repeated while the `XREAD` has not reached the server yet).
//! - A dropped waiter (cancelled read) costs nothing but a wake-up: it is pruned on the next
//!   round, and when it was the last one the driver unblocks and ends, so no read outlives
//!   its callers for long.
//! - A connection failure answers every waiter with the error (the callers retry, as for any
//!   failed read); the driver's connection is replaced on the next round. A command error
//!   from the merged read (a key holding something else than a stream) is attributed by
//!   re-reading each waiter's streams without blocking on the command connection, so one
//!   reader's bad key never fails the others.
//!
//! The caller ([`crate::ops`]' `stream_read`) first reads without blocking on a pooled
//! connection while a merged read is under way, so a reader that keeps finding entries
//! never ends the merged read of the idle ones; with no merged read under way it comes here
//! directly (the merged read returns at once when entries are there).
//!
//! Consumer-group reads (`XREADGROUP`) cannot be merged across consumers and keep their own
//! dedicated connections ([`crate::conn::Blocking`]).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use pulse::{
    backend::{EntryId, StreamBatch},
    Error, Result,
};
use redis::{aio::MultiplexedConnection, Cmd, Value};
use tokio::{
    sync::{oneshot, Notify},
    time::Instant,
};
use tracing::debug;

use crate::{
    errors::{is_connection_failure, map_err},
    parse, Inner,
};

/// The merged blocking reads of one backend handle.
#[derive(Default)]
pub(crate) struct ReadMux {
    state: Mutex<State>,
    /// Wakes the driver: a waiter arrived or went away.
    wake: Notify,
}

#[derive(Default)]
struct State {
    waiters: Vec<Waiter>,
    /// A waiter arrived since the driver built its current command.
    arrived: bool,
    driver_running: bool,
    /// The driver's connection and its server-side client ID, kept between driver runs.
    conn: Option<(MultiplexedConnection, i64)>,
}

struct Waiter {
    streams: Vec<(String, EntryId)>,
    count: usize,
    deadline: Instant,
    /// Its cursors are in the read under way. A reply to a read built before the waiter
    /// arrived may start after the waiter's cursor, so it must not be answered from it.
    included: bool,
    answer: oneshot::Sender<Result<Vec<StreamBatch>>>,
}

impl ReadMux {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when no merged read is under way: a new read disturbs nobody (no
    /// `CLIENT UNBLOCK`), so it need not look for ready entries elsewhere first.
    pub(crate) fn is_idle(&self) -> bool {
        !self.state().driver_running
    }
}

/// Reads `streams` past their cursors, waiting up to `block` for the first entry, through
/// the backend's shared blocking connection.
pub(crate) async fn read(
    inner: &Arc<Inner>,
    streams: &[(String, EntryId)],
    count: usize,
    block: Duration,
) -> Result<Vec<StreamBatch>> {
    let (answer, rx) = oneshot::channel();
    let mux = &inner.reads;
    let spawn = {
        let mut st = mux.state();
        st.waiters.push(Waiter {
            streams: streams.to_vec(),
            count,
            deadline: Instant::now() + block,
            included: false,
            answer,
        });
        st.arrived = true;
        !std::mem::replace(&mut st.driver_running, true)
    };
    if spawn {
        tokio::spawn(drive(inner.clone()));
    }
    mux.wake.notify_one();
    // Dropped before the answer (a cancelled read): the driver learns it at once.
    let _wake_on_drop = WakeOnDrop(&mux.wake);
    rx.await
        .unwrap_or_else(|_| Err(Error::connection("the shared blocking read stopped")))
}

struct WakeOnDrop<'a>(&'a Notify);

impl Drop for WakeOnDrop<'_> {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// Marks the driver stopped when it is dropped half-way (its runtime shutting down), so the
/// next waiter starts a new one. A driver that runs out of waiters marks itself stopped
/// under the same lock that found no waiter ([`next_round`]), so a waiter arriving then
/// starts a new driver and a later one never sees two.
struct DriverRunning<'a> {
    mux: &'a ReadMux,
    ended: bool,
}

impl Drop for DriverRunning<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.mux.state().driver_running = false;
        }
    }
}

/// One round's merged command and how long it may block.
struct Round {
    cmd: Cmd,
    block: Duration,
}

async fn drive(inner: Arc<Inner>) {
    let mux = &inner.reads;
    let mut running = DriverRunning { mux, ended: false };
    while let Some(round) = next_round(mux) {
        match run_round(&inner, &round).await {
            Ok(Ok(v)) => match parse::batches(v) {
                Ok(batches) => answer(mux, &batches),
                Err(e) => fail_all(mux, &e),
            },
            Ok(Err(_)) => attribute_errors(&inner).await,
            Err(e) => fail_all(mux, &e),
        }
    }
    running.ended = true;
}

/// Runs one round on the driver's connection, connecting when there is none and once more
/// on a fresh one when a kept connection turns out dead (a server restart, or the runtime
/// that owned it ended). `Err` is a connection failure; `Ok(Err(_))` a command error.
async fn run_round(
    inner: &Inner,
    round: &Round,
) -> Result<std::result::Result<Value, redis::RedisError>> {
    let mut kept = inner.reads.state().conn.take();
    loop {
        let reused = kept.is_some();
        let (mut conn, id) = match kept.take() {
            Some(c) => c,
            None => connect(inner).await?,
        };
        match read_round(inner, &mut conn, id, round).await {
            Err(e) if is_connection_failure(&e) && reused => continue,
            Err(e) if is_connection_failure(&e) => return Err(map_err("XREAD", "", e)),
            out => {
                inner.reads.state().conn = Some((conn, id));
                return Ok(out);
            }
        }
    }
}

/// Prunes cancelled and expired waiters and builds the merged command, or `None` when no
/// waiter is left (the driver ends).
fn next_round(mux: &ReadMux) -> Option<Round> {
    let mut st = mux.state();
    let now = Instant::now();
    st.waiters.retain(|w| !w.answer.is_closed());
    let (expired, live): (Vec<_>, Vec<_>) = std::mem::take(&mut st.waiters)
        .into_iter()
        .partition(|w| w.deadline <= now);
    st.waiters = live;
    for w in expired {
        let _ = w.answer.send(Ok(Vec::new()));
    }
    st.arrived = false;
    let Some(nearest) = st.waiters.iter().map(|w| w.deadline).min() else {
        st.driver_running = false;
        return None;
    };
    for w in &mut st.waiters {
        w.included = true;
    }
    // Per stream the lowest cursor; `COUNT` applies to every stream, so the highest count.
    let mut union: BTreeMap<&str, EntryId> = BTreeMap::new();
    for w in &st.waiters {
        for (key, cursor) in &w.streams {
            let lowest = union.entry(key).or_insert(*cursor);
            *lowest = (*lowest).min(*cursor);
        }
    }
    let count = st.waiters.iter().map(|w| w.count).max().unwrap_or(1);
    let mut cmd = redis::cmd("XREAD");
    // At least 1 ms: `BLOCK 0` would wait forever.
    let block = (nearest - now).max(Duration::from_millis(1));
    cmd.arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(crate::ops::millis(block).max(1))
        .arg("STREAMS");
    for key in union.keys() {
        cmd.arg(*key);
    }
    for cursor in union.values() {
        cmd.arg(cursor.to_string());
    }
    Some(Round { cmd, block })
}

/// Runs the round's read; ends it early with `CLIENT UNBLOCK` when a waiter arrives or the
/// last one leaves.
async fn read_round(
    inner: &Inner,
    conn: &mut MultiplexedConnection,
    client_id: i64,
    round: &Round,
) -> std::result::Result<Value, redis::RedisError> {
    let mux = &inner.reads;
    let read = round.cmd.query_async::<Value>(conn);
    tokio::pin!(read);
    let (mut unblocking, mut unblocked) = (false, false);
    let unblock = unblock(inner, client_id, round.block);
    tokio::pin!(unblock);
    loop {
        tokio::select! {
            out = &mut read => return out,
            () = mux.wake.notified(), if !unblocking => {
                let st = mux.state();
                unblocking = st.arrived || st.waiters.iter().all(|w| w.answer.is_closed());
            }
            // Polled to completion once only: the read ends at once or at its timeout.
            () = &mut unblock, if unblocking && !unblocked => unblocked = true,
        }
    }
}

/// Sends `CLIENT UNBLOCK` until it lands: the `XREAD` may not have reached the server yet,
/// and then there is nothing to unblock. Gives up (the read ends at its own timeout) when
/// the command connection fails.
async fn unblock(inner: &Inner, client_id: i64, bound: Duration) {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("UNBLOCK").arg(client_id);
    let mut pause = Duration::from_millis(1);
    let give_up = Instant::now() + bound;
    loop {
        match inner.commands.cmd(&cmd).await {
            Ok(Value::Int(1)) => return,
            Ok(_) if Instant::now() < give_up => {}
            Ok(_) => return,
            Err(e) => {
                let error = e.map(|e| map_err("CLIENT UNBLOCK", "", e));
                debug!(%error, "cannot end a shared read early");
                return;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

async fn connect(inner: &Inner) -> Result<(MultiplexedConnection, i64)> {
    let Some(pool) = inner.blocking.server() else {
        return Err(Error::Config(
            "shared blocking reads need a single server".into(),
        ));
    };
    let mut conn = pool
        .connect()
        .await
        .map_err(|e| e.map(|e| map_err("connect", "", e)))?;
    let id = redis::cmd("CLIENT")
        .arg("ID")
        .query_async::<i64>(&mut conn)
        .await
        .map_err(|e| map_err("CLIENT ID", "", e))?;
    Ok((conn, id))
}

/// Answers every waiter of the round that got entries past its cursors.
fn answer(mux: &ReadMux, batches: &[StreamBatch]) {
    if batches.is_empty() {
        return;
    }
    let mut st = mux.state();
    let (served, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut st.waiters)
        .into_iter()
        .map(|w| {
            let mine = match w.included {
                true => filter(&w, batches),
                false => Vec::new(),
            };
            (w, mine)
        })
        .partition(|(_, mine)| !mine.is_empty());
    st.waiters = waiting.into_iter().map(|(w, _)| w).collect();
    drop(st);
    for (w, mine) in served {
        let _ = w.answer.send(Ok(mine));
    }
}

/// The part of a merged reply that belongs to one waiter: per stream of its, the entries
/// after its cursor, at most its count.
fn filter(w: &Waiter, batches: &[StreamBatch]) -> Vec<StreamBatch> {
    let mut out = Vec::new();
    for (key, cursor) in &w.streams {
        let Some(batch) = batches.iter().find(|b| &b.stream == key) else {
            continue;
        };
        let entries: Vec<_> = batch
            .entries
            .iter()
            .filter(|e| e.id > *cursor)
            .take(w.count)
            .cloned()
            .collect();
        if !entries.is_empty() {
            out.push(StreamBatch {
                stream: key.clone(),
                entries,
            });
        }
    }
    out
}

fn fail_all(mux: &ReadMux, e: &Error) {
    let waiters = std::mem::take(&mut mux.state().waiters);
    for w in waiters {
        let _ = w.answer.send(Err(e.for_each_waiter()));
    }
}

/// The merged read failed with a command error: re-reads each waiter's streams without
/// blocking, answering those whose read fails (with their own error) or finds entries.
async fn attribute_errors(inner: &Inner) {
    let mux = &inner.reads;
    let waiters = std::mem::take(&mut mux.state().waiters);
    let mut keep = Vec::new();
    for w in waiters {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(w.count).arg("STREAMS");
        for (key, _) in &w.streams {
            cmd.arg(key);
        }
        for (_, cursor) in &w.streams {
            cmd.arg(cursor.to_string());
        }
        let key = w.streams.first().map(|(k, _)| k.as_str()).unwrap_or("");
        let out = inner
            .commands
            .cmd(&cmd)
            .await
            .map_err(|e| e.map(|e| map_err("XREAD", key, e)))
            .and_then(parse::batches);
        match out {
            Ok(b) if b.is_empty() => keep.push(w),
            out => {
                let _ = w.answer.send(out);
            }
        }
    }
    mux.state().waiters.extend(keep);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use pulse::{
        backend::{AddOptions, AtomicOps, EntryId, StreamOps},
        Error,
    };
    use pulse_conformance::redis_server::private_server;

    use crate::RedisBackend;

    /// A key that stops being a stream after the caller's first, non-blocking look fails
    /// the merged read; only that caller gets the error, the others stay blocked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_command_error_fails_only_its_waiter() {
        let Some(server) = private_server(&[]) else {
            return;
        };
        let backend = RedisBackend::connect(&server.url()).await.unwrap();
        let long = Duration::from_secs(30);
        let good = {
            let inner = backend.inner.clone();
            tokio::spawn(async move {
                super::read(&inner, &[("good".into(), EntryId::ZERO)], 10, long).await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await; // let the good read block
        assert!(backend
            .lease_acquire("bad", "someone", Duration::from_secs(60))
            .await
            .unwrap());
        // Straight to the merged read, as if the key changed type after the first look.
        let bad = tokio::time::timeout(
            Duration::from_secs(10),
            super::read(&backend.inner, &[("bad".into(), EntryId::ZERO)], 10, long),
        )
        .await
        .expect("the bad read hung");
        assert!(
            matches!(bad, Err(Error::WrongType { ref key }) if key == "bad"),
            "{bad:?}"
        );
        assert!(!good.is_finished(), "the good read failed with the bad one");
        let id = backend
            .stream_add(
                "good",
                vec![("n".into(), "x".into())],
                &AddOptions::default(),
            )
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), good)
            .await
            .expect("the good read was not woken")
            .unwrap()
            .unwrap();
        assert_eq!(Some(got[0].entries[0].id), id);
    }

    /// Two waiters on one stream, one blocked at its end with a count of ten, one joining
    /// from its start with a count of two: the merged read reads from the lower cursor with
    /// the higher count, and each gets only its own share.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_merged_read_keeps_each_cursor_and_count() {
        let Some(server) = private_server(&[]) else {
            return;
        };
        let backend = RedisBackend::connect(&server.url()).await.unwrap();
        let batch = (0..5)
            .map(|i| vec![("n".into(), format!("{i}").into())])
            .collect();
        let ids: Vec<EntryId> = backend
            .stream_add_batch("s", batch, &AddOptions::default())
            .await
            .unwrap()
            .into_iter()
            .map(Option::unwrap)
            .collect();
        let long = Duration::from_secs(30);
        let at_end = {
            let (inner, last) = (backend.inner.clone(), ids[4]);
            tokio::spawn(async move { super::read(&inner, &[("s".into(), last)], 10, long).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await; // let it block
        let from_start = tokio::time::timeout(
            Duration::from_secs(10),
            super::read(&backend.inner, &[("s".into(), ids[0])], 2, long),
        )
        .await
        .expect("served")
        .unwrap();
        let got: Vec<EntryId> = from_start[0].entries.iter().map(|e| e.id).collect();
        assert_eq!(got, ids[1..3]);
        assert!(
            !at_end.is_finished(),
            "the reader at the end got old entries"
        );
        let id = backend
            .stream_add(
                "s",
                vec![("n".into(), "new".into())],
                &AddOptions::default(),
            )
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), at_end)
            .await
            .expect("woken")
            .unwrap()
            .unwrap();
        assert_eq!(
            got[0].entries.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![id.unwrap()]
        );
    }
}
