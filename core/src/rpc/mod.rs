//! Request/reply over streams: a caller sends a request event to a service stream and
//! awaits one answer; the stream's sink members are the responders.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use pulse::{rpc::RequestOptions, streaming::{NewEvent, SinkOptions, Stream, StreamOptions}};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulse::Result<()> {
//! let backend = Arc::new(pulse_memory::MemoryBackend::new());
//! let prices = Stream::new(backend, "prices", StreamOptions::default())?;
//! let responder = prices.new_sink("pricer", SinkOptions::default()).await?;
//! let mut requests = responder.subscribe()?;
//! tokio::spawn(async move {
//!     while let Some(request) = requests.recv().await {
//!         let _ = responder.reply(&request, format!("{} costs 3 EUR", String::from_utf8_lossy(&request.payload))).await;
//!     }
//! });
//! let options = RequestOptions::default().with_timeout(Duration::from_secs(5));
//! let reply = prices.request(NewEvent::new("price", "tea"), options).await?;
//! assert_eq!(&reply.payload[..], b"tea costs 3 EUR");
//! # Ok(()) }
//! ```
//!
//! How, and what is promised:
//! - **One inbox per process** (per backend handle and keyspace): a stream
//!   `_inbox.<ulid>` read by one reader, whatever the number of requests in flight
//!   (module `inbox`). Answers are entries of it, so a dropped connection delays them but loses
//!   none; it is trimmed, expires when idle and is deleted when the process stops calling.
//! - **The first answer wins**; later ones, and answers to a request whose caller gave up
//!   (timed out, aborted, dropped its future), are counted
//!   (`pulse_rpc_late_replies_total`) and dropped, never delivered to another request:
//!   each request has its own ID.
//! - **Deadlines travel** with the request ([`Event::deadline`]); a sink never hands a
//!   request already past its deadline to a handler (it acknowledges it). No responder:
//!   [`Error::Timeout`] at the deadline, never a hang.
//! - **Progress, the bamboo way**: once a sink hands a request to a handler it sends
//!   heartbeats every [`RequestOptions::heartbeat`] until the handler replies (or
//!   acknowledges, or the deadline passes); the first, sent within half the caller's
//!   accept timeout (or one interval), says the request was accepted, and a handler that
//!   answers sooner sends nothing but its answer. A caller whose accepted request goes
//!   three heartbeats without news fails with [`Error::Aborted`] (the responder died)
//!   instead of waiting for the deadline; [`RequestOptions::accept_timeout`] fails when
//!   nobody picks the request up in time.
//! - **Retries are the caller's choice** ([`RequestOptions::with_retries`]): after an
//!   abort or an accept timeout the same request (same ID, the responder's idempotency
//!   key: [`Event::request_id`], and the next [`Event::attempt`]) is sent again, within
//!   the same deadline.
//! - **Cancellation**: a caller that stops waiting — its future dropped, its timeout or
//!   its retries spent — withdraws its request and tells the responders; a handler
//!   watches [`Sink::cancellation`](crate::streaming::Sink::cancellation), which also
//!   fires at the deadline, and an answer given after it is dropped (module `cancel`
//!   says how a cancel missed by pub/sub is still caught).
//! - **Errors are typed**: a responder's [`Sink::reply_error`](crate::streaming::Sink::reply_error)
//!   reaches the caller as [`Error::Remote`] with its code and message.
//!
//! **Confirmed adds** ([`Stream::add_confirmed`]) ride the same inbox: the add returns
//! once `n` distinct sinks acknowledged the event, with their names (a sink counts once,
//! whichever member acknowledged and however often).
//!
//! Headers of a request (all `pulse.rpc.*`, read them with the [`Event`] helpers): `id`,
//! `inbox`, `deadline` (ms since the epoch), `heartbeat` (ms), `accept` (ms, when set),
//! `attempt`. Trace context
//! rides as on every event: the request carries the caller's `traceparent`, the answer the
//! responder's.

mod cancel;
mod confirm;
mod inbox;
mod responder;

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use tokio::time::{sleep_until, Instant};

pub use cancel::Cancellation;
pub(crate) use confirm::acknowledged;
pub use confirm::Confirmed;
pub(crate) use responder::{Delivery, Responding};

use crate::{
    streaming::{Event, NewEvent, Stream},
    Error, Result,
};

/// Header holding a request's ID.
pub(crate) const ID: &str = "pulse.rpc.id";
/// Header holding the name of the caller's inbox stream.
pub(crate) const INBOX: &str = "pulse.rpc.inbox";
/// Header holding a request's deadline (ms since the epoch).
pub(crate) const DEADLINE: &str = "pulse.rpc.deadline";
/// Header holding the heartbeat interval the caller expects (ms).
pub(crate) const HEARTBEAT: &str = "pulse.rpc.heartbeat";
/// Header holding the attempt number (1 for the first send).
pub(crate) const ATTEMPT: &str = "pulse.rpc.attempt";
/// Header of an answer holding the responder's error code.
pub(crate) const CODE: &str = "pulse.rpc.code";
/// Header of an answer holding the responder (its sink consumer).
pub(crate) const RESPONDER: &str = "pulse.rpc.responder";
/// Header of a confirmation holding the sink that acknowledged.
pub(crate) const SINK: &str = "pulse.rpc.sink";

/// Header holding the caller's accept timeout (ms), when it set one.
pub(crate) const ACCEPT: &str = "pulse.rpc.accept";
/// Names of the inbox entries: the answers, and the signs of life.
pub(crate) const REPLY_NAME: &str = "reply";
pub(crate) const ERROR_NAME: &str = "error";
pub(crate) const HEARTBEAT_NAME: &str = "heartbeat";
/// An inbox entry saying the handler holding a request ended without answering.
pub(crate) const ABANDONED_NAME: &str = "abandoned";

/// Longest request timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Options of one request. Defaults are documented on each field.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RequestOptions {
    /// How long the caller waits for the answer, retries included; also the deadline the
    /// responders see. Default 30 s; 1 ms to 24 h.
    pub timeout: Duration,
    /// Fail (or retry) when no responder accepted the request within this long. Default
    /// `None`: wait until the timeout.
    pub accept_timeout: Option<Duration>,
    /// How often a responder working on the request sends a heartbeat; the caller aborts
    /// after three intervals without one. Default 1 s; at least 10 ms.
    pub heartbeat: Duration,
    /// How many times to send the request again after an abort or an accept timeout.
    /// Default 0.
    pub retries: u32,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            timeout: Duration::from_secs(30),
            accept_timeout: None,
            heartbeat: Duration::from_secs(1),
            retries: 0,
        }
    }
}

impl RequestOptions {
    /// Sets [`RequestOptions::timeout`].
    pub fn with_timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// Sets [`RequestOptions::accept_timeout`].
    pub fn with_accept_timeout(mut self, d: Duration) -> Self {
        self.accept_timeout = Some(d);
        self
    }
    /// Sets [`RequestOptions::heartbeat`].
    pub fn with_heartbeat(mut self, d: Duration) -> Self {
        self.heartbeat = d;
        self
    }
    /// Sets [`RequestOptions::retries`].
    pub fn with_retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    fn check(&self) -> Result<()> {
        if self.timeout < Duration::from_millis(1) || self.timeout > MAX_TIMEOUT {
            return Err(Error::InvalidArgument(
                "a request timeout is 1 ms to 24 h".into(),
            ));
        }
        if self.heartbeat < Duration::from_millis(10) || self.heartbeat > MAX_TIMEOUT {
            return Err(Error::InvalidArgument(
                "a request heartbeat is 10 ms to 24 h".into(),
            ));
        }
        if self.accept_timeout.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidArgument(
                "an accept timeout is at least 1 ms".into(),
            ));
        }
        Ok(())
    }
}

/// The answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The payload the responder gave.
    pub payload: Bytes,
    /// The headers it gave.
    pub headers: BTreeMap<String, String>,
    /// Who answered (the responder's sink consumer).
    pub responder: Option<String>,
    /// The answer's `traceparent` (the responder's span), if it was traced.
    pub trace_parent: Option<String>,
}

/// What an inbox hands to a waiting request.
#[derive(Debug)]
pub(crate) enum Signal {
    /// A responder works on it (the first one says it accepted it).
    Heartbeat,
    Reply(Reply),
    Error {
        code: String,
        message: String,
    },
    /// A sink acknowledged a confirmed add ([`Stream::add_confirmed`]).
    Confirmed {
        sink: String,
    },
    /// The handler holding the request ended without answering (it panicked, or dropped
    /// its subscription): worth a retry at once.
    Abandoned,
}

impl Event {
    /// Whether this event is a request ([`Stream::request`]) a responder should answer.
    pub fn is_request(&self) -> bool {
        self.header(ID).is_some() && self.header(INBOX).is_some()
    }

    /// A request's ID: the same on every attempt, so a responder can recognise a re-sent
    /// request (the idempotency key of [`RequestOptions::with_retries`]).
    pub fn request_id(&self) -> Option<&str> {
        self.header(ID)
    }

    /// When the caller stops waiting for the answer to this request.
    pub fn deadline(&self) -> Option<SystemTime> {
        let ms: u64 = self.header(DEADLINE)?.parse().ok()?;
        Some(UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// Which attempt of the request this is (1 for the first).
    pub fn attempt(&self) -> Option<u32> {
        self.header(ATTEMPT)?.parse().ok()
    }
}

impl Stream {
    /// Sends `event` as a request to this service stream and awaits one answer from a
    /// responder (a sink member of the stream, see the [module docs](crate::rpc)).
    ///
    /// Errors: [`Error::Remote`] (the responder answered with an error),
    /// [`Error::Timeout`] (no answer within `timeout`, or none accepted it within
    /// `accept_timeout`, retries spent), [`Error::Aborted`] (the responder stopped sending
    /// heartbeats, retries spent), `InvalidArgument` (bad options, headers named
    /// `pulse.rpc.*`, no such stream: nobody ever served it), what
    /// [`Stream::add_event`] refuses, `Connection`.
    pub async fn request(&self, event: NewEvent, options: RequestOptions) -> Result<Reply> {
        options.check()?;
        if event
            .headers
            .iter()
            .any(|(n, _)| n.starts_with("pulse.rpc."))
        {
            return Err(Error::InvalidArgument(
                "headers named pulse.rpc.* are the request's own".into(),
            ));
        }
        let started = Instant::now();
        let deadline = started + options.timeout;
        let deadline_ms = crate::ids::epoch_ms(SystemTime::now() + options.timeout);
        let id = crate::ids::new_id();
        let inbox = inbox::Inbox::join(self).await?;
        let mut waiting = inbox.expect(&id);
        let mut attempt = 0;
        // Armed until answered: however the wait ends otherwise (timeout, retries spent,
        // the caller's future dropped), the responders are told (module `cancel`).
        let guard = cancel::GiveUp::new(self, &id, deadline_ms);
        loop {
            attempt += 1;
            let mut sent = event.clone();
            if let Some(d) = options.accept_timeout {
                sent = sent.with_header(ACCEPT, (d.as_millis() as u64).to_string());
            }
            let sent = sent
                .with_header(ID, id.clone())
                .with_header(INBOX, inbox.name())
                .with_header(DEADLINE, deadline_ms.to_string())
                .with_header(
                    HEARTBEAT,
                    (options.heartbeat.as_millis() as u64).to_string(),
                )
                .with_header(ATTEMPT, attempt.to_string());
            let Some(entry) = self.add_if_exists(sent).await? else {
                guard.disarm();
                return Err(Error::InvalidArgument(format!(
                    "no service stream {:?}: no responder ever served it",
                    self.name()
                )));
            };
            guard.sent(entry);
            let sent_at = Instant::now();
            let give_up = match wait(&mut waiting, &options, sent_at, deadline).await {
                Outcome::Done(Ok(reply)) => {
                    guard.disarm();
                    return Ok(reply);
                }
                Outcome::Done(Err(e @ Error::Remote { .. })) => {
                    guard.disarm();
                    return Err(e);
                }
                Outcome::Done(Err(e)) => {
                    guard.now().await;
                    return Err(e);
                }
                Outcome::GaveUp(e) => e,
            };
            if attempt > options.retries || Instant::now() >= deadline {
                guard.now().await;
                return Err(give_up);
            }
            // Nobody is to work on an attempt given up: a late or reclaimed copy of it
            // would be work for nobody.
            guard.withdraw().await;
            tracing::debug!(stream = %self.name(), request = %id, attempt, error = %give_up, "sending the request again");
        }
    }
}

enum Outcome {
    Done(Result<Reply>),
    /// An abort or an accept timeout: worth a retry.
    GaveUp(Error),
}

async fn wait(
    waiting: &mut inbox::Waiting,
    options: &RequestOptions,
    sent_at: Instant,
    deadline: Instant,
) -> Outcome {
    let mut accepted = false;
    let mut last_news = sent_at;
    loop {
        let check_at = if accepted {
            (last_news + options.heartbeat * 3).min(deadline)
        } else {
            options
                .accept_timeout
                .map_or(deadline, |d| (sent_at + d).min(deadline))
        };
        tokio::select! {
            signal = waiting.next() => match signal {
                Some(Signal::Heartbeat) => {
                    accepted = true;
                    last_news = Instant::now();
                }
                Some(Signal::Confirmed { .. }) => {} // not for a request
                Some(Signal::Abandoned) => {
                    return Outcome::GaveUp(Error::Aborted {
                        what: "the responder's handler ended without answering".into(),
                    })
                }
                Some(Signal::Reply(reply)) => return Outcome::Done(Ok(reply)),
                Some(Signal::Error { code, message }) => {
                    return Outcome::Done(Err(Error::Remote { code, message }))
                }
                None => return Outcome::Done(Err(Error::Closed { what: "request inbox".into() })),
            },
            _ = sleep_until(check_at) => {
                let now = Instant::now();
                if now >= deadline {
                    return Outcome::Done(Err(Error::Timeout {
                        what: format!("an answer within {:?}", options.timeout),
                    }));
                }
                if accepted {
                    if now >= last_news + options.heartbeat * 3 {
                        return Outcome::GaveUp(Error::Aborted {
                            what: format!(
                                "the responder sent no heartbeat for {:?}",
                                options.heartbeat * 3
                            ),
                        });
                    }
                } else if options.accept_timeout.is_some_and(|d| now >= sent_at + d) {
                    return Outcome::GaveUp(Error::Timeout {
                        what: "a responder to accept the request".into(),
                    });
                }
            }
        }
    }
}

/// The signals an inbox entry carries, by request ID: one, or (a heartbeat entry, which
/// lists in its payload every request a responder works on for this inbox, one ID per
/// line) several; none when it is not one of ours.
pub(crate) fn signals_of(event: Event) -> Vec<(String, Signal)> {
    if event.name == HEARTBEAT_NAME {
        return String::from_utf8_lossy(&event.payload)
            .lines()
            .filter(|id| !id.is_empty())
            .map(|id| (id.to_owned(), Signal::Heartbeat))
            .collect();
    }
    signal_of(event).into_iter().collect()
}

fn signal_of(event: Event) -> Option<(String, Signal)> {
    let id = event.header(ID)?.to_owned();
    let signal = match event.name.as_str() {
        REPLY_NAME => {
            let responder = event.header(RESPONDER).map(str::to_owned);
            let mut headers = event.headers;
            headers.retain(|name, _| !name.starts_with("pulse.rpc."));
            Signal::Reply(Reply {
                payload: event.payload,
                headers,
                responder,
                trace_parent: event.trace_parent,
            })
        }
        ABANDONED_NAME => Signal::Abandoned,
        confirm::CONFIRMED_NAME => Signal::Confirmed {
            sink: event.header(SINK)?.to_owned(),
        },
        ERROR_NAME => Signal::Error {
            code: event.header(CODE).unwrap_or("unknown").to_owned(),
            message: String::from_utf8_lossy(&event.payload).into_owned(),
        },
        _ => return None,
    };
    Some((id, signal))
}
