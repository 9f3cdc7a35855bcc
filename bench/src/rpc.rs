//! S14, request/reply (`pulse::rpc`): the round trip of one request at a time to one
//! responder, and the rate of 64 callers against 2 responders (sink members answering
//! with the payload). `rows` sets them against a raw `XADD` round trip and raw S3
//! consume + ack of the same run.

use std::{sync::Arc, time::Instant};

use futures_util::future::join_all;
use pulse::{
    keys::Keyspace,
    rpc::RequestOptions,
    streaming::{NewEvent, Sink, SinkOptions, Stream, StreamOptions},
    Backend,
};

use crate::{
    scenarios::Figure,
    stats::{rate, Samples},
    Size,
};

fn service(b: &Arc<dyn Backend>) -> Stream {
    let tag = format!("s14-{:x}", pulse::backend::new_epoch());
    let ks = Keyspace::new(&tag).expect("keyspace");
    Stream::new(b.clone(), "svc", StreamOptions::default().with_keyspace(ks)).expect("stream")
}

/// `n` responders on `s`, each answering every request with its payload.
async fn responders(s: &Stream, n: usize) -> Vec<Sink> {
    let mut sinks = Vec::new();
    for _ in 0..n {
        let sink = s
            .new_sink("responders", SinkOptions::default())
            .await
            .expect("sink");
        let mut rx = sink.subscribe().expect("subscribe");
        let answer = sink.clone();
        // Each request handled on its own task, as a service with concurrent handlers.
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let payload = e.payload.clone();
                    let _ = answer.reply(&e, payload).await;
                });
            }
        });
        sinks.push(sink);
    }
    sinks
}

async fn close(s: Stream, sinks: Vec<Sink>) {
    for sink in sinks {
        sink.close().await.expect("close");
    }
    s.destroy().await.expect("destroy");
}

/// One request in flight at a time, one responder.
pub(crate) async fn s14_round_trip(b: &Arc<dyn Backend>, size: Size) -> Figure {
    let s = service(b);
    let sinks = responders(&s, 1).await;
    let mut out = Samples::default();
    for i in 0..size.samples + 20 {
        let t = Instant::now();
        s.request(NewEvent::new("q", "payload"), RequestOptions::default())
            .await
            .expect("request");
        if i >= 20 {
            out.0.push(t.elapsed()); // past the inbox's and the sink's first round trips
        }
    }
    close(s, sinks).await;
    Figure::Latency(out)
}

/// 64 callers, each one request at a time, 2 responders.
pub(crate) async fn s14_throughput(b: &Arc<dyn Backend>, size: Size) -> Figure {
    let s = service(b);
    let sinks = responders(&s, 2).await;
    let per = (size.events / 10 / 64).max(1);
    let start = Instant::now();
    let callers: Vec<_> = (0..64)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..per {
                    s.request(NewEvent::new("q", "payload"), RequestOptions::default())
                        .await
                        .expect("request");
                }
            })
        })
        .collect();
    join_all(callers).await;
    let f = Figure::Rate(rate(per * 64, start.elapsed()));
    close(s, sinks).await;
    f
}
