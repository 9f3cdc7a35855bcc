//! Dead letters: where a sink puts an event it gave up on (delivered `max_deliveries`
//! times without an acknowledgement), and the operator's tools on them.
//!
//! A sink `s` of stream `orders` has one dead-letter stream, key
//! `<orders key>:sink:s:dead` — in the stream's hash tag, so the move is one atomic backend
//! step on a cluster too — and name `orders:dead:s`. It is an ordinary [`Stream`]: readers
//! and sinks can consume it. Each dead letter is the original event's fields (name,
//! payload, topic, trace parent, headers) plus headers saying where it came from:
//! `pulse.dead.stream`, `pulse.dead.id`, `pulse.dead.sink`, `pulse.dead.deliveries`,
//! `pulse.dead.at` (milliseconds since the epoch) and, when the handler gave one through
//! [`Sink::fail`](super::Sink::fail), `pulse.dead.error`.
//!
//! Invariants:
//! - A move appends the dead letter and acknowledges the original in one step, and only
//!   while the original is still pending: a mover that crashed half-way left it pending
//!   (it is moved again later), one that crashed after left it done; never both, never
//!   twice (`GroupOps::group_dead_letter`).
//! - A requeue appends the event (without the `pulse.dead.*` headers) to the original
//!   stream as a new event and deletes the dead letter in one step, once
//!   (`StreamOps::stream_move`); a second requeue of the same letter is refused.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use tracing::{info, warn};

use super::{sink::Member, sink::SinkInner, Event, Stream};
use crate::{
    backend::{EntryId, Fields, MapTarget, SetCondition, Ttl},
    keys::validate_name,
    telemetry::StreamMetrics,
    Error, Result,
};

/// The header prefix of a dead letter's origin.
const DEAD: &str = "pulse.dead.";
/// Longest error text kept with a dead letter, in bytes.
const MAX_ERROR: usize = 4096;
/// How long a failure's reason waits for its event to be moved.
const ERRORS_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl Stream {
    /// The dead letters of sink `sink` on this stream (no I/O).
    ///
    /// Errors: [`Error::InvalidName`] for a bad sink name.
    pub fn dead_letters(&self, sink: &str) -> Result<DeadLetters> {
        validate_name("sink", sink)?;
        let name = format!("{}:dead:{sink}", self.name);
        let stream = Stream {
            backend: self.backend.clone(),
            key: dead_key(self, sink),
            metrics: StreamMetrics::new(&name),
            name,
            options: self.options.clone(),
        };
        Ok(DeadLetters {
            origin: self.clone(),
            sink: sink.to_owned(),
            stream,
        })
    }
}

fn dead_key(stream: &Stream, sink: &str) -> String {
    stream.sub_key(&format!("sink:{sink}:dead"))
}

/// Where [`Sink::fail`](super::Sink::fail) keeps reasons until the event is moved: a
/// small map in the stream's hash tag, expiring a week after its last write.
pub(super) fn errors_target(stream: &Stream, sink: &str) -> MapTarget {
    let hash = stream.sub_key(&format!("sink:{sink}:errors"));
    let mut target = MapTarget::new(hash.clone(), format!("{hash}:notices"));
    target.ttl = Some(Ttl::Sliding(ERRORS_TTL));
    target
}

/// One event a sink gave up on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its ID in the dead-letter stream.
    pub id: EntryId,
    /// The original event as it was added (its `id` and `stream` are the original's;
    /// `headers` are the original's, without the `pulse.dead.*` ones).
    pub event: Event,
    /// The sink that gave up on it.
    pub sink: String,
    /// How many times it had been delivered.
    pub deliveries: u64,
    /// When it was moved.
    pub at: SystemTime,
    /// The last reason a handler gave ([`Sink::fail`](super::Sink::fail)), if any.
    pub error: Option<String>,
}

impl DeadLetter {
    /// Reads a dead letter from an event of the dead-letter stream; `None` when it is not
    /// one (no origin headers).
    pub fn from_event(letter: Event) -> Option<DeadLetter> {
        let origin = |k: &str| letter.headers.get(&format!("{DEAD}{k}")).cloned();
        let stream = origin("stream")?;
        let original: EntryId = origin("id")?.parse().ok()?;
        let sink = origin("sink")?;
        let deliveries = origin("deliveries")?.parse().ok()?;
        let at = UNIX_EPOCH + Duration::from_millis(origin("at")?.parse().ok()?);
        let error = origin("error");
        let mut event = letter.clone();
        event.headers.retain(|k, _| !k.starts_with(DEAD));
        event.id = original;
        event.stream = stream;
        event.sink = None;
        event.deliveries = deliveries;
        Some(DeadLetter {
            id: letter.id,
            event,
            sink,
            deliveries,
            at,
            error,
        })
    }
}

/// The dead letters of one sink on one stream ([`Stream::dead_letters`]).
#[derive(Clone, Debug)]
pub struct DeadLetters {
    origin: Stream,
    sink: String,
    stream: Stream,
}

impl DeadLetters {
    /// The dead-letter stream itself, to read or consume like any other.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The oldest `limit` dead letters (entries that are not dead letters are left out).
    ///
    /// Errors: backend errors.
    pub async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let entries = self
            .stream
            .backend
            .stream_range(&self.stream.key, EntryId::ZERO, EntryId::MAX, Some(limit))
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| Event::from_entry(&self.stream.name, None, e).ok())
            .filter_map(DeadLetter::from_event)
            .collect())
    }

    /// The dead letter `id`, if it is there.
    ///
    /// Errors: backend errors.
    pub async fn get(&self, id: EntryId) -> Result<Option<DeadLetter>> {
        let entries = self
            .stream
            .backend
            .stream_range(&self.stream.key, id, id, Some(1))
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| Event::from_entry(&self.stream.name, None, e).ok())
            .find_map(DeadLetter::from_event))
    }

    /// Puts dead letter `id` back into the original stream as a new event (its ID is
    /// returned) and removes it from the dead letters, in one step, once.
    ///
    /// Errors: [`Error::InvalidArgument`] when `id` is not a dead letter here (never was,
    /// purged, or requeued already); backend errors (nothing moved).
    pub async fn requeue(&self, id: EntryId) -> Result<EntryId> {
        let not_here = || {
            Error::InvalidArgument(format!(
                "{id} is not a dead letter of sink {:?} on stream {:?}",
                self.sink, self.origin.name
            ))
        };
        let b = &self.stream.backend;
        let entry = b
            .stream_range(&self.stream.key, id, id, Some(1))
            .await?
            .into_iter()
            .next()
            .ok_or_else(not_here)?;
        let is_letter = entry
            .fields
            .iter()
            .any(|(k, _)| k == &format!("h:{DEAD}stream"));
        if !is_letter {
            return Err(not_here());
        }
        let fields: Fields = entry
            .fields
            .iter()
            .filter(|(k, _)| !k.starts_with(&format!("h:{DEAD}")))
            .cloned()
            .collect();
        let new = b
            .stream_move(&self.stream.key, id, &self.origin.key, fields)
            .await?
            .ok_or_else(not_here)?;
        info!(stream = %self.origin.name, sink = %self.sink, letter = %id, event = %new, "requeued a dead letter");
        Ok(new)
    }

    /// Deletes dead letters by ID; returns how many were there.
    ///
    /// Errors: backend errors.
    pub async fn purge(&self, ids: &[EntryId]) -> Result<u64> {
        self.stream
            .backend
            .stream_remove(&self.stream.key, ids)
            .await
    }

    /// Deletes every dead letter (the whole dead-letter stream).
    ///
    /// Errors: backend errors.
    pub async fn purge_all(&self) -> Result<()> {
        self.stream
            .backend
            .delete(std::slice::from_ref(&self.stream.key))
            .await?;
        Ok(())
    }
}

/// Moves pending event `id` of `member`'s stream to the sink's dead letters after
/// `deliveries` deliveries; `reason` is the handler's last error, if this instance knows
/// it (else the one [`Sink::fail`](super::Sink::fail) stored is used). Returns whether this
/// call moved it (false: no longer pending, or gone from the stream, then only
/// acknowledged).
pub(super) async fn move_to_dead_letters(
    inner: &SinkInner,
    member: &Member,
    id: EntryId,
    deliveries: u64,
    reason: Option<String>,
) -> Result<bool> {
    let stream = &member.stream;
    let b = &inner.backend;
    let Some(entry) = b
        .stream_range(&stream.key, id, id, Some(1))
        .await?
        .into_iter()
        .next()
    else {
        // Trimmed or deleted before anyone acknowledged it: nothing left to keep.
        warn!(sink = %inner.name, stream = %stream.name, %id, "an event to dead-letter was gone from the stream");
        b.group_ack(&stream.key, &inner.name, &[id]).await?;
        return Ok(false);
    };
    let errors = errors_target(stream, &inner.name);
    let field = id.to_string();
    let reason = match reason {
        Some(r) => Some(r),
        None => b
            .hash_get(&errors.hash, &field)
            .await?
            .map(|v| String::from_utf8_lossy(&v).into_owned()),
    };
    let mut fields: Fields = entry
        .fields
        .iter()
        .filter(|(k, _)| !k.starts_with(&format!("h:{DEAD}")))
        .cloned()
        .collect();
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut origin: BTreeMap<&str, String> = BTreeMap::new();
    origin.insert("stream", stream.name.clone());
    origin.insert("id", field.clone());
    origin.insert("sink", inner.name.clone());
    origin.insert("deliveries", deliveries.to_string());
    origin.insert("at", at.to_string());
    if let Some(r) = reason {
        origin.insert("error", truncate(r, MAX_ERROR));
    }
    fields.extend(
        origin
            .into_iter()
            .map(|(k, v)| (format!("h:{DEAD}{k}"), Bytes::from(v))),
    );
    let dead = dead_key(stream, &inner.name);
    let moved = b
        .group_dead_letter(&stream.key, &inner.name, id, &dead, fields)
        .await?;
    if moved.is_some() {
        member.metrics.dead_lettered.increment(1);
        warn!(sink = %inner.name, stream = %stream.name, %id, deliveries, "moved an event to the dead letters");
    }
    // The reason has served (or the event is done): best effort, it expires anyway.
    let _ = b
        .map_delete(&errors, &field, crate::backend::DeleteCondition::Always)
        .await;
    Ok(moved.is_some())
}

/// Stores `reason` for event `id` until it is moved (or the week-long expiry).
pub(super) async fn store_reason(
    inner: &SinkInner,
    stream: &Stream,
    id: EntryId,
    reason: &str,
) -> Result<()> {
    let errors = errors_target(stream, &inner.name);
    let value = Bytes::from(truncate(reason.to_owned(), MAX_ERROR));
    inner
        .backend
        .map_set(&errors, &id.to_string(), value, SetCondition::Always)
        .await?;
    Ok(())
}

/// `text` cut to at most `max` bytes on a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
