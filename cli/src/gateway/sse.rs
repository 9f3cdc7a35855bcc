//! Server-sent events, written by hand so that they stay cheap and safe: every event that
//! is ready when the connection can take more goes out in one body chunk (a backlog is
//! not one write per event), a comment line (`:`) keeps an idle connection alive every
//! [`KEEP_ALIVE`], and text from the store never breaks the framing — a field that holds
//! a line break is left out (the JSON `data` carries everything, escaped).
//!
//! An SSE response owns what feeds it ([`Closing`]): when the client goes away the
//! response is dropped and its reader, sink member or map replica is closed.

use std::{convert::Infallible, time::Duration};

use axum::{
    body::Body,
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use pulse::{
    pool::Node,
    rmap::Map,
    streaming::{Reader, Sink},
};

/// How long a connection may stay silent before a keep-alive comment.
pub(super) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Most events in one body chunk.
const CHUNK_EVENTS: usize = 256;

/// One event: its `id` (for `Last-Event-ID`), its `event` name and its `data`.
pub(super) struct Frame {
    pub(super) id: Option<String>,
    pub(super) event: String,
    pub(super) data: String,
}

impl Frame {
    /// The event in the wire format, appended to `out`.
    fn write(&self, out: &mut String) {
        let safe = |s: &str| !s.contains(['\r', '\n']);
        if let Some(id) = self.id.as_deref().filter(|id| safe(id)) {
            out.push_str("id: ");
            out.push_str(id);
            out.push('\n');
        }
        if safe(&self.event) {
            out.push_str("event: ");
            out.push_str(&self.event);
            out.push('\n');
        }
        // One `data` line per line of the text, as the format wants (our JSON has none).
        let mut lines = self
            .data
            .split(['\r', '\n'])
            .filter(|l| !l.is_empty())
            .peekable();
        if lines.peek().is_none() {
            out.push_str("data:\n");
        }
        for line in lines {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
}

/// A `text/event-stream` response of `frames`, batched and kept alive.
pub(super) fn response(frames: impl Stream<Item = Frame> + Send + 'static) -> Response {
    let frames = Box::pin(frames);
    let kept_alive = futures_util::stream::unfold(frames, |mut frames| async move {
        match tokio::time::timeout(KEEP_ALIVE, frames.next()).await {
            Ok(Some(frame)) => Some((Some(frame), frames)),
            Ok(None) => None,
            Err(_) => Some((None, frames)), // silent for KEEP_ALIVE
        }
    });
    let chunks = kept_alive.ready_chunks(CHUNK_EVENTS).map(|frames| {
        let mut out = String::new();
        for frame in &frames {
            match frame {
                Some(f) => f.write(&mut out),
                None => out.push_str(":\n\n"),
            }
        }
        Ok::<_, Infallible>(Bytes::from(out))
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Closes what a connection held (a reader, a sink member, a map replica, a pool node)
/// when the connection's response is dropped: the client went away.
pub(super) enum Closing {
    Reader(Option<Reader>),
    Sink(Option<Sink>),
    Map(Option<Map>),
    Node(Option<Node>),
}

impl Closing {
    pub(super) fn reader(r: Reader) -> Self {
        Closing::Reader(Some(r))
    }
    pub(super) fn sink(s: Sink) -> Self {
        Closing::Sink(Some(s))
    }
    pub(super) fn map(m: Map) -> Self {
        Closing::Map(Some(m))
    }
    pub(super) fn node(n: Node) -> Self {
        Closing::Node(Some(n))
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match self {
            Closing::Reader(r) => {
                if let Some(r) = r.take() {
                    runtime.spawn(async move { r.close().await });
                }
            }
            Closing::Sink(s) => {
                if let Some(s) = s.take() {
                    runtime.spawn(async move { s.close().await });
                }
            }
            Closing::Map(m) => {
                if let Some(m) = m.take() {
                    runtime.spawn(async move { m.close().await });
                }
            }
            Closing::Node(n) => {
                if let Some(n) = n.take() {
                    runtime.spawn(async move { n.close().await });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn wire(frame: &Frame) -> String {
        let mut out = String::new();
        frame.write(&mut out);
        out
    }

    #[test]
    fn a_frame_is_id_event_and_one_data_line_per_line() {
        let frame = Frame {
            id: Some("1-0".into()),
            event: "order.created".into(),
            data: "{\"a\":1}\n{\"b\":2}".into(),
        };
        assert_eq!(
            wire(&frame),
            "id: 1-0\nevent: order.created\ndata: {\"a\":1}\ndata: {\"b\":2}\n\n"
        );
    }

    #[test]
    fn fields_with_line_breaks_are_left_out_never_split() {
        let frame = Frame {
            id: Some("1-0\nid: 9-9".into()),
            event: "evil\r\ndata: injected".into(),
            data: String::new(),
        };
        assert_eq!(wire(&frame), "data:\n\n");
    }

    async fn body_text(response: Response) -> Vec<String> {
        let mut body = response.into_body().into_data_stream();
        let mut chunks = Vec::new();
        while let Some(chunk) = body.next().await {
            chunks.push(String::from_utf8(chunk.unwrap().to_vec()).unwrap());
        }
        chunks
    }

    #[tokio::test]
    async fn ready_events_share_one_chunk() {
        let frames = (0..3).map(|i| Frame {
            id: Some(format!("{i}-0")),
            event: "e".into(),
            data: "{}".into(),
        });
        let response = response(futures_util::stream::iter(frames));
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let chunks = body_text(response).await;
        assert_eq!(chunks.len(), 1, "{chunks:?}");
        assert_eq!(chunks[0].matches("id: ").count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_gets_keep_alive_comments() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Frame>(1);
        let frames = tokio_stream_of(rx);
        let response = response(frames);
        let mut body = response.into_body().into_data_stream();
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(
            &first[..],
            b":\n\n",
            "a comment after {KEEP_ALIVE:?} of silence"
        );
        tx.send(Frame {
            id: None,
            event: "e".into(),
            data: "{}".into(),
        })
        .await
        .unwrap();
        let second = body.next().await.unwrap().unwrap();
        assert_eq!(&second[..], b"event: e\ndata: {}\n\n");
        drop(tx);
        assert!(body.next().await.is_none(), "the body ends with its source");
    }

    fn tokio_stream_of(
        rx: tokio::sync::mpsc::Receiver<Frame>,
    ) -> impl Stream<Item = Frame> + Send + 'static {
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) })
    }
}
