//! The mover of a stream's delayed events: appends them to the stream once due.
//!
//! Every live reader and sink of a stream holds a [`Mover`] for it; one task per stream and
//! backend handle runs in the process while any is held (a registry shares it), and stops
//! when the last is dropped. Across processes, one mover at a time moves: the one holding
//! the lease `<stream key>:delayed:mover` (renewed every third of
//! [`StreamOptions::delay_lease`](super::StreamOptions::delay_lease)). The others stand by.
//!
//! No idle polling: a mover sleeps until the next due time it learnt (from its last
//! release, or from the notice an add publishes when it becomes the earliest). A holder
//! keeps the lease only while the next due event is near (half a lease away); otherwise it
//! lets go and sleeps, and whoever wakes first at the due time takes the lease. A stand-by
//! that finds the lease taken retries after half a lease, so a holder that died is replaced
//! once its lease lapses. A mover with nothing to wait for looks again every
//! [`StreamOptions::delay_check`](super::StreamOptions::delay_check) (one cheap call), in
//! case a notice was lost; a lost subscription makes it look at once.
//!
//! Correctness does not rest on the lease: each release is atomic in the backend, so two
//! movers racing (a lease that lapsed while its holder was paused) still append each event
//! once, in due order.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock, Weak,
    },
    time::Duration,
};

use tokio::{
    sync::watch,
    time::{sleep_until, Instant},
};
use tracing::{debug, warn, Instrument};

use super::{delayed::wall_ms, Stream};
use crate::backend::{PubSubEvent, Subscription};

/// Most events appended per release call (one script run on Redis).
const BATCH: usize = 512;
/// First delay after a failed call (doubling up to a lease).
const RETRY: Duration = Duration::from_millis(100);

type Registry = Mutex<HashMap<(usize, String), Weak<Shared>>>;

fn registry() -> &'static Registry {
    static MOVERS: OnceLock<Registry> = OnceLock::new();
    MOVERS.get_or_init(Registry::default)
}

struct Shared {
    id: (usize, String),
    stop: watch::Sender<bool>,
    /// False once the task is gone (dropped with its runtime): then a new share starts a
    /// new mover rather than joining a dead one.
    alive: Arc<AtomicBool>,
}

/// Held by the mover task: marks it dead however it ends.
struct Alive(Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let mut movers = registry().lock().unwrap_or_else(|p| p.into_inner());
        if movers.get(&self.id).is_some_and(|w| w.strong_count() == 0) {
            movers.remove(&self.id);
        }
    }
}

/// A share in the mover of one stream; the mover runs while any share is held.
#[derive(Clone)]
pub(super) struct Mover(Arc<Shared>);

impl Mover {
    /// A share in `stream`'s mover, starting it if this process runs none for it.
    pub(super) fn join(stream: &Stream) -> Mover {
        let id = (
            Arc::as_ptr(&stream.backend) as *const () as usize,
            stream.key.clone(),
        );
        let mut movers = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = movers
            .get(&id)
            .and_then(Weak::upgrade)
            .filter(|s| s.alive.load(Ordering::SeqCst))
        {
            return Mover(shared);
        }
        let (stop, stopped) = watch::channel(false);
        let alive = Arc::new(AtomicBool::new(true));
        let shared = Arc::new(Shared {
            id: id.clone(),
            stop,
            alive: alive.clone(),
        });
        movers.insert(id, Arc::downgrade(&shared));
        let span = tracing::info_span!("pulse.stream.mover", stream = %stream.name);
        let stream = stream.clone();
        tokio::spawn(
            async move {
                let _alive = Alive(alive);
                run(stream, stopped).await;
            }
            .instrument(span),
        );
        Mover(shared)
    }

    /// The key of the stream moved.
    pub(super) fn stream_key(&self) -> &str {
        &self.0.id.1
    }
}

/// The next event of a subscription, or never when there is none.
async fn next_notice(sub: &mut Option<Subscription>) -> Option<PubSubEvent> {
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The instant at which wall-clock time `ms` is reached, by this process's clock.
fn instant_of(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms.saturating_sub(wall_ms()))
}

struct State {
    stream: Stream,
    holder: String,
    lease_key: String,
    /// When the lease was last taken or renewed, while held.
    renewed: Option<Instant>,
    /// When to release next; `None`: nothing known to wait for.
    wake: Option<Instant>,
    retry: Duration,
}

async fn run(stream: Stream, mut stop: watch::Receiver<bool>) {
    let mut st = State {
        holder: crate::ids::new_id(),
        lease_key: stream.sub_key("delayed:mover"),
        stream,
        renewed: None,
        wake: None,
        retry: RETRY,
    };
    let check = st.stream.options.delay_check;
    let notice = st.stream.delayed_notice();
    let mut sub: Option<Subscription> = None;
    let (mut resubscribe, mut sub_retry) = (Some(Instant::now()), RETRY);
    let mut next_check = Instant::now() + check;
    loop {
        if sub.is_none() && resubscribe.is_some_and(|at| at <= Instant::now()) {
            match st
                .stream
                .backend
                .subscribe(std::slice::from_ref(&notice))
                .await
            {
                Ok(s) => {
                    (sub, resubscribe, sub_retry) = (Some(s), None, RETRY);
                    // Subscribed from now on: look once for what was added before.
                    st.wake = Some(Instant::now());
                }
                Err(e) => {
                    debug!(error = %e, "mover: subscribing to notices failed; retrying");
                    resubscribe = Some(Instant::now() + sub_retry);
                    sub_retry = (sub_retry * 2).min(st.lease());
                }
            }
        }
        let mut deadline = st.wake.unwrap_or(next_check);
        if let Some(at) = resubscribe {
            deadline = deadline.min(at);
        }
        tokio::select! {
            _ = stop.changed() => break,
            event = next_notice(&mut sub) => {
                match event {
                    Some(PubSubEvent::Message { payload, .. }) => {
                        let due = std::str::from_utf8(&payload).ok().and_then(|t| t.parse().ok());
                        let at = due.map_or_else(Instant::now, instant_of);
                        st.wake = Some(st.wake.map_or(at, |w| w.min(at)));
                    }
                    // Notices may have been missed: look now.
                    Some(PubSubEvent::Lost | PubSubEvent::Restored) => st.wake = Some(Instant::now()),
                    None => {
                        sub = None;
                        resubscribe = Some(Instant::now());
                    }
                }
                continue;
            }
            _ = sleep_until(deadline) => {}
        }
        let now = Instant::now();
        match st.wake {
            Some(at) if at <= now => {
                st.step().await;
                if st.wake.is_none() {
                    next_check = Instant::now() + check;
                }
            }
            Some(_) => {}
            None if next_check <= now => {
                next_check = now + check;
                match st
                    .stream
                    .backend
                    .delay_info(&st.stream.delayed_keys().0)
                    .await
                {
                    Ok(info) => st.wake = info.next_due_ms.map(instant_of),
                    Err(e) => debug!(error = %e, "mover: idle check failed"),
                }
            }
            None => {}
        }
    }
    if st.renewed.is_some() {
        let _ = st
            .stream
            .backend
            .lease_release(&st.lease_key, &st.holder)
            .await;
    }
}

impl State {
    fn lease(&self) -> Duration {
        self.stream.options.delay_lease
    }

    /// Sets the next wake after a failed call, backing off.
    fn failed(&mut self, what: &str, e: &crate::Error) {
        warn!(error = %e, "mover: {what} failed; retrying in {:?}", self.retry);
        self.wake = Some(Instant::now() + self.retry);
        self.retry = (self.retry * 2).min(self.lease());
    }

    /// Takes or renews the lease when needed; whether this mover holds it.
    async fn hold(&mut self) -> bool {
        if self
            .renewed
            .is_some_and(|at| at.elapsed() < self.lease() / 3)
        {
            return true;
        }
        let b = &self.stream.backend;
        match b
            .lease_acquire(&self.lease_key, &self.holder, self.lease())
            .await
        {
            Ok(true) => {
                self.renewed = Some(Instant::now());
                true
            }
            Ok(false) => {
                // Another process moves; stand by until its lease could have lapsed.
                self.renewed = None;
                self.wake = Some(Instant::now() + self.lease() / 2);
                false
            }
            Err(e) => {
                self.failed("taking the lease", &e);
                false
            }
        }
    }

    /// One release round, as the lease holder.
    async fn step(&mut self) {
        if !self.hold().await {
            return;
        }
        let s = &self.stream;
        let (index, data) = s.delayed_keys();
        let options = s.add_options(true);
        let release = match s
            .backend
            .delay_release(&s.key, &index, &data, BATCH, &options)
            .await
        {
            Ok(r) => r,
            Err(e) => return self.failed("releasing due events", &e),
        };
        self.retry = RETRY;
        s.metrics.released.increment(release.released.len() as u64);
        if !release.unreadable.is_empty() {
            warn!(stream = %s.name, ids = ?release.unreadable, "delayed entries that are not events were set aside (foreign data under the stream's keys)");
        }
        if release.released.len() == BATCH {
            self.wake = Some(Instant::now());
            return;
        }
        let wait = release
            .next_due_ms
            .map(|due| Duration::from_millis(due.saturating_sub(release.now_ms)));
        self.wake = wait.map(|w| Instant::now() + w);
        if wait.is_none_or(|w| w > self.lease() / 2) {
            // Nothing due soon: let another process (or this one, later) take over.
            self.renewed = None;
            if let Err(e) = s.backend.lease_release(&self.lease_key, &self.holder).await {
                debug!(error = %e, "mover: releasing the lease failed; it lapses");
            }
        }
    }
}
