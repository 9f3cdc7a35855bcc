//! A handle on one stream: add, remove, destroy, and the entry points to readers and sinks.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use serde::Serialize;

use super::{
    delayed::Due,
    event::{NAME, PAYLOAD, TOPIC, TRACE_PARENT},
};
use crate::{
    backend::{AddOptions, EntryId, Fields, Ttl},
    codec,
    keys::{Keyspace, MAX_NAME_LEN},
    spans::{self, traced},
    telemetry::StreamMetrics,
    Backend, Error, Result,
};

/// Options of a stream handle. Defaults are documented on each field.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StreamOptions {
    /// Where the stream's keys live. Default: prefix `pulse`.
    pub keyspace: Keyspace,
    /// Trim to about this many entries on every add. Default `None`: never trim. Trimming
    /// drops the oldest entries whether or not every reader and sink has processed them,
    /// so it is opt-in.
    pub max_len: Option<u64>,
    /// Expiry of the stream key, applied in the same step as every add. Default `None`.
    pub ttl: Option<Ttl>,
    /// Largest payload accepted by `add`, in bytes. Default 16 MiB.
    pub max_payload: usize,
    /// How long a dedup key ([`NewEvent::with_dedup_key`]) keeps a second add from adding.
    /// Default 5 minutes; 1 ms to 7 days.
    pub dedup_window: Duration,
    /// The lease of the mover of delayed events ([`Stream::add_delayed`]): a process that
    /// dies while it moves them is replaced after at most this long, so due events are
    /// late by as much then. Renewed every third of it while events are due soon.
    /// Default 10 s.
    pub delay_lease: Duration,
    /// How often a mover with nothing to wait for looks whether delayed events were added
    /// without it hearing (a notice lost with a producer's connection): one cheap call.
    /// Default 120 s.
    pub delay_check: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            keyspace: Keyspace::default(),
            max_len: None,
            ttl: None,
            max_payload: 16 * 1024 * 1024,
            dedup_window: Duration::from_secs(300),
            delay_lease: Duration::from_secs(10),
            delay_check: Duration::from_secs(120),
        }
    }
}

impl StreamOptions {
    /// Sets [`StreamOptions::keyspace`].
    pub fn with_keyspace(mut self, keyspace: Keyspace) -> Self {
        self.keyspace = keyspace;
        self
    }
    /// Sets [`StreamOptions::max_len`].
    pub fn with_max_len(mut self, max_len: u64) -> Self {
        self.max_len = Some(max_len);
        self
    }
    /// Sets [`StreamOptions::ttl`].
    pub fn with_ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Sets [`StreamOptions::max_payload`].
    pub fn with_max_payload(mut self, n: usize) -> Self {
        self.max_payload = n;
        self
    }
    /// Sets [`StreamOptions::delay_lease`] (at least 30 ms) and
    /// [`StreamOptions::delay_check`] (at least 10 ms).
    pub fn with_delay_mover(mut self, lease: Duration, check: Duration) -> Self {
        self.delay_lease = lease.max(Duration::from_millis(30));
        self.delay_check = check.max(Duration::from_millis(10));
        self
    }
    /// Sets [`StreamOptions::dedup_window`].
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
        self
    }
}

/// An event to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Event name.
    pub name: String,
    /// Payload.
    pub payload: Bytes,
    /// Optional topic, for topic filters.
    pub topic: Option<String>,
    /// The W3C `traceparent` to store with it. `None`: with the `opentelemetry` feature,
    /// the current span's, if it has an OpenTelemetry context; else none.
    pub trace_parent: Option<String>,
    /// Headers, in the order given (see [`NewEvent::with_header`] for the limits).
    pub headers: Vec<(String, String)>,
    /// The dedup key (see [`NewEvent::with_dedup_key`]).
    pub dedup_key: Option<String>,
    /// When a delayed event is due (see [`NewEvent::deliver_at`]); such an event is added
    /// with [`Stream::add_delayed`].
    pub due: Option<Due>,
}

impl NewEvent {
    /// An event without a topic.
    pub fn new(name: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        NewEvent {
            name: name.into(),
            payload: payload.into(),
            topic: None,
            trace_parent: None,
            headers: Vec::new(),
            dedup_key: None,
            due: None,
        }
    }

    /// Makes the add idempotent: a second add with the same key within the stream's
    /// [`dedup_window`](StreamOptions::dedup_window) adds nothing and returns the first
    /// add's ID, also when the adds race from many processes (one atomic backend step).
    /// 1 to 512 bytes without control characters, else the add fails with
    /// [`Error::InvalidArgument`].
    pub fn with_dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }

    /// Adds a header: small string metadata carried to readers and sinks
    /// ([`Event::headers`](super::Event::headers)). At most 32 per event, names of 1 to 64
    /// letters, digits, `-`, `_` or `.` (unique), values up to 4 KiB, 16 KiB in all; the
    /// add fails with [`Error::InvalidArgument`] naming the rule otherwise.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the `traceparent` to store (propagating a context by hand, or from another
    /// tracing system): 1 to 256 visible ASCII characters, else the add fails with
    /// [`Error::InvalidArgument`].
    pub fn with_trace_parent(mut self, trace_parent: impl Into<String>) -> Self {
        self.trace_parent = Some(trace_parent.into());
        self
    }

    /// Sets the topic.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }
}

/// A handle on a stream. Cheap to clone; handles with the same name share the events.
#[derive(Clone)]
pub struct Stream {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) options: StreamOptions,
    pub(crate) metrics: StreamMetrics,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("name", &self.name)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// A handle on stream `name` (no I/O).
    ///
    /// Errors: [`Error::InvalidName`].
    pub fn new(backend: Arc<dyn Backend>, name: &str, options: StreamOptions) -> Result<Stream> {
        let key = options.keyspace.stream(name)?;
        Ok(Stream {
            backend,
            name: name.to_owned(),
            key,
            options,
            metrics: StreamMetrics::new(name),
        })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backend key holding the stream.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub(super) fn fields(&self, event: NewEvent) -> Result<Fields> {
        if event.due.is_some() {
            return Err(Error::InvalidArgument(
                "a delayed event (deliver_at, deliver_after) is added with Stream::add_delayed"
                    .into(),
            ));
        }
        if event.name.is_empty() {
            return Err(Error::InvalidArgument("an event needs a name".into()));
        }
        if event.name.len() > MAX_NAME_LEN {
            return Err(Error::InvalidArgument(format!(
                "an event name is at most {MAX_NAME_LEN} bytes, not {}",
                event.name.len()
            )));
        }
        if event.payload.len() > self.options.max_payload {
            return Err(Error::PayloadTooLarge {
                size: event.payload.len(),
                limit: self.options.max_payload,
            });
        }
        if let Some(t) = &event.topic {
            super::validate_subject(t)?;
        }
        let mut fields = vec![
            (NAME.to_owned(), Bytes::from(event.name)),
            (PAYLOAD.to_owned(), event.payload),
        ];
        if let Some(t) = event.topic {
            fields.push((TOPIC.to_owned(), Bytes::from(t)));
        }
        match event.trace_parent.or_else(spans::current_trace_parent) {
            Some(tp)
                if tp.is_empty() || tp.len() > 256 || !tp.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                return Err(Error::InvalidArgument(
                    "a trace parent is 1 to 256 visible ASCII characters".into(),
                ));
            }
            Some(tp) => fields.push((TRACE_PARENT.to_owned(), Bytes::from(tp))),
            None => {}
        }
        fields.extend(super::headers::fields(&event.headers)?);
        Ok(fields)
    }

    pub(super) fn add_options(&self, create: bool) -> AddOptions {
        let mut o = AddOptions::default().with_create(create);
        o.max_len = self.options.max_len;
        o.ttl = self.options.ttl;
        o
    }

    /// Adds an event; returns its ID. Trimming and TTL apply in the same step.
    ///
    /// Errors: `InvalidArgument` (empty name, or longer than 512 bytes), `PayloadTooLarge`, `InvalidName` (topic),
    /// `WrongType`, `Connection`.
    pub async fn add(&self, name: &str, payload: impl Into<Bytes>) -> Result<EntryId> {
        self.add_event(NewEvent::new(name, payload)).await
    }

    /// Adds an event with its options (topic); returns its ID.
    pub async fn add_event(&self, event: NewEvent) -> Result<EntryId> {
        Ok(self.add_unique(event).await?.0)
    }

    /// [`Stream::add_event`], also saying whether this call added the event: `false` when
    /// its dedup key ([`NewEvent::with_dedup_key`]) already stood for an earlier add,
    /// whose ID is returned.
    pub async fn add_unique(&self, event: NewEvent) -> Result<(EntryId, bool)> {
        match self.add_one(event, true).await? {
            (Some(id), added) => Ok((id, added)),
            (None, _) => Err(Error::malformed("stream add", "no ID returned")),
        }
    }

    /// Adds an event only if the stream exists; `None` when it does not (nothing written).
    pub async fn add_if_exists(&self, event: NewEvent) -> Result<Option<EntryId>> {
        Ok(self.add_one(event, false).await?.0)
    }

    /// One traced, counted append; `create` makes the stream if it is missing. Returns
    /// the ID and whether this call added it (false: a dedup key's earlier add).
    pub(super) async fn add_one(
        &self,
        mut event: NewEvent,
        create: bool,
    ) -> Result<(Option<EntryId>, bool)> {
        let span = spans::send(&self.name, 1);
        traced(span.clone(), async {
            let dedup = event.dedup_key.take();
            let fields = self.fields(event)?;
            let options = self.add_options(create);
            let (id, added) = match dedup {
                None => {
                    let id = self.backend.stream_add(&self.key, fields, &options).await?;
                    (id, id.is_some())
                }
                Some(key) => {
                    let (dedup, window) = super::dedup::target(self, &key)?;
                    let once = self
                        .backend
                        .stream_add_once(&self.key, &dedup, window, fields, &options)
                        .await?;
                    (once.id, once.added)
                }
            };
            if let Some(id) = id {
                if added {
                    self.metrics.added.increment(1);
                }
                span.record("messaging.message.id", tracing::field::display(id));
            }
            Ok((id, added))
        })
        .await
    }

    /// Adds a serialised value (versioned postcard frame); read it with
    /// [`Event::decode`](super::Event::decode).
    pub async fn add_typed<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<EntryId> {
        self.add(name, codec::encode(value)?).await
    }

    /// Adds several events in order, sent together; returns their IDs. All events are
    /// validated before anything is sent. Not atomic: on a connection failure a prefix may
    /// have been written.
    pub async fn add_batch(&self, events: Vec<NewEvent>) -> Result<Vec<EntryId>> {
        if events.iter().any(|e| e.dedup_key.is_some()) {
            // Each dedup key is its own atomic check: one add after the other, in order.
            let mut ids = Vec::with_capacity(events.len());
            for event in events {
                ids.push(self.add_event(event).await?);
            }
            return Ok(ids);
        }
        traced(spans::send(&self.name, events.len()), async {
            let fields = events
                .into_iter()
                .map(|e| self.fields(e))
                .collect::<Result<Vec<_>>>()?;
            let ids = self
                .backend
                .stream_add_batch(&self.key, fields, &self.add_options(true))
                .await?;
            self.metrics
                .added
                .increment(ids.iter().flatten().count() as u64);
            ids.into_iter()
                .map(|id| id.ok_or_else(|| Error::malformed("stream add", "no ID returned")))
                .collect()
        })
        .await
    }

    /// Deletes events by ID; returns how many existed.
    pub async fn remove(&self, ids: &[EntryId]) -> Result<u64> {
        self.backend.stream_remove(&self.key, ids).await
    }

    /// Number of events in the stream (0 when it does not exist).
    pub async fn len(&self) -> Result<u64> {
        Ok(self
            .backend
            .stream_info(&self.key)
            .await?
            .map_or(0, |i| i.length))
    }

    /// Deletes the stream with its consumer groups and its delayed events. Live sinks
    /// re-create their group when events are added again; a stream that never existed is
    /// not an error.
    pub async fn destroy(&self) -> Result<()> {
        let (index, data) = self.delayed_keys();
        self.backend
            .delete(&[self.key.clone(), index, data])
            .await
            .map(|_| ())
    }

    /// A key belonging to this stream (same hash tag), for sink bookkeeping.
    pub(crate) fn sub_key(&self, part: &str) -> String {
        format!("{}:{part}", self.key)
    }
}

/// Where a reader (or a new sink group) starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// After the last event at the time the reader or group is created, resolved once, so
    /// nothing added afterwards is skipped.
    #[default]
    Newest,
    /// From the first event.
    Oldest,
    /// After this event ID (exclusive), what a resuming client (an SSE `Last-Event-ID`)
    /// asks for. The ID must be a position of this stream: one before its first event
    /// (trimmed or deleted since: events may have been missed), one after its last, or a
    /// stream that does not exist are [`Error::InvalidArgument`] when the reader or group
    /// is created, never silently read from the oldest. `After(EntryId::ZERO)` is the same
    /// as [`Start::Oldest`].
    After(EntryId),
    /// From the first event added at or after this time (inclusive).
    At(std::time::SystemTime),
}

impl Start {
    /// The cursor (read entries *after* it) this start resolves to for `stream`.
    pub(crate) async fn resolve(self, stream: &Stream) -> Result<EntryId> {
        Ok(match self {
            Start::Newest => {
                crate::backend::stream_last_id(stream.backend.as_ref(), &stream.key).await?
            }
            Start::Oldest => EntryId::ZERO,
            Start::After(id) => {
                check_after(stream, id).await?;
                id
            }
            Start::At(t) => {
                let ms = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO)
                    .as_millis() as u64;
                EntryId::new(ms, 0).prev().unwrap_or(EntryId::ZERO)
            }
        })
    }
}

/// Checks that `id` is a position of `stream` to start after (see [`Start::After`]).
pub(crate) async fn check_after(stream: &Stream, id: EntryId) -> Result<()> {
    if id == EntryId::ZERO {
        return Ok(());
    }
    let refuse = |why: String| {
        Err(Error::InvalidArgument(format!(
            "cannot start after {id} on stream {:?}: {why}",
            stream.name
        )))
    };
    let Some(info) = stream.backend.stream_info(&stream.key).await? else {
        return refuse("the stream does not exist (deleted or expired?)".into());
    };
    if id > info.last_id {
        return refuse(format!(
            "no such position, the stream's last event is {}",
            info.last_id
        ));
    }
    match info.first_id {
        Some(first) if id < first => refuse(format!(
            "older than the stream's first event {first}: the events in between were trimmed \
             or deleted; start from Start::Oldest to read what is left"
        )),
        _ => Ok(()),
    }
}
