//! Request/reply over streams (`pulse::rpc`): answers and typed errors, deadlines,
//! accept timeouts, heartbeats and their loss, retries, late answers, many in flight.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use pulse::{
    backend::EntryId,
    rpc::RequestOptions,
    streaming::{EventReceiver, NewEvent, Sink, SinkOptions, Start, Stream, StreamOptions},
    Error,
};
use tokio::time::Instant;

use crate::Ctx;

fn service(cx: &Ctx, name: &str) -> Stream {
    Stream::new(
        cx.backend.clone(),
        name,
        StreamOptions::default()
            .with_keyspace(cx.keyspace())
            .with_max_payload(1024),
    )
    .unwrap()
}

fn responder_opts() -> SinkOptions {
    SinkOptions::default()
        .with_block(Duration::from_millis(100))
        .with_ack_grace(Duration::from_millis(400))
        .with_check_interval(Duration::from_millis(20))
        .with_start(Start::Oldest)
}

fn quick() -> RequestOptions {
    RequestOptions::default()
        .with_timeout(Duration::from_secs(10))
        .with_heartbeat(Duration::from_millis(50))
}

async fn next(rx: &mut EventReceiver) -> pulse::streaming::Event {
    tokio::time::timeout(crate::patience(), rx.recv())
        .await
        .expect("a request in time")
        .expect("open")
}

/// Answers every request with its payload upper-cased, tagged with `who`.
fn echo(sink: Sink, mut rx: EventReceiver, who: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            let answer = String::from_utf8_lossy(&e.payload).to_uppercase();
            let _ = sink
                .reply_with_headers(&e, answer, vec![("who".into(), who.into())])
                .await;
        }
    })
}

/// A request gets its answer, headers and responder; the responder sees a request with
/// an ID, a deadline within the timeout and attempt 1.
pub async fn rpc_request_gets_its_reply(cx: Ctx) {
    let s = service(&cx, "svc");
    let sink = s.new_sink("r", responder_opts()).await.unwrap();
    let mut rx = sink.subscribe().unwrap();
    let caller = {
        let s = s.clone();
        tokio::spawn(async move {
            s.request(
                NewEvent::new("q", "hello").with_header("lang", "en"),
                quick(),
            )
            .await
        })
    };
    let req = next(&mut rx).await;
    assert!(req.is_request());
    assert_eq!(req.attempt(), Some(1));
    assert_eq!(req.header("lang"), Some("en"));
    let deadline = req.deadline().unwrap();
    assert!(deadline > SystemTime::now() && deadline < SystemTime::now() + Duration::from_secs(11));
    assert!(req.request_id().is_some());
    sink.reply_with_headers(&req, "HELLO", vec![("k".into(), "v".into())])
        .await
        .unwrap();
    let reply = caller.await.unwrap().unwrap();
    assert_eq!(&reply.payload[..], b"HELLO");
    assert_eq!(reply.headers.get("k").map(String::as_str), Some("v"));
    assert_eq!(
        reply.headers.len(),
        1,
        "no pulse.rpc.* header leaks: {:?}",
        reply.headers
    );
    assert_eq!(reply.responder.as_deref(), Some(sink.consumer()));
    assert!(
        sink.pending(10).await.unwrap().is_empty(),
        "answered means acknowledged"
    );
    sink.close().await.unwrap();
}

/// A responder's error reaches the caller typed; bad answers and bad requests are refused.
pub async fn rpc_errors_are_typed(cx: Ctx) {
    let s = service(&cx, "svc");
    let sink = s.new_sink("r", responder_opts()).await.unwrap();
    let mut rx = sink.subscribe().unwrap();
    let caller = {
        let s = s.clone();
        tokio::spawn(async move { s.request(NewEvent::new("q", "x"), quick()).await })
    };
    let req = next(&mut rx).await;
    let big = Bytes::from(vec![b'x'; 2048]);
    let e = sink.reply(&req, big).await.unwrap_err();
    assert!(matches!(e, Error::PayloadTooLarge { .. }), "{e:?}");
    let e = sink.reply_error(&req, "", "no code").await.unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    sink.reply_error(&req, "not_found", "no such item")
        .await
        .unwrap();
    match caller.await.unwrap() {
        Err(Error::Remote { code, message }) => {
            assert_eq!(
                (code.as_str(), message.as_str()),
                ("not_found", "no such item")
            );
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    // Not a request: nobody to answer.
    s.add("plain", "x").await.unwrap();
    let plain = next(&mut rx).await;
    assert!(!plain.is_request());
    let e = sink.reply(&plain, "x").await.unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    // Bad requests.
    for (what, options) in [
        ("zero timeout", quick().with_timeout(Duration::ZERO)),
        (
            "huge timeout",
            quick().with_timeout(Duration::from_secs(90_000)),
        ),
        (
            "tiny heartbeat",
            quick().with_heartbeat(Duration::from_millis(1)),
        ),
    ] {
        let e = s
            .request(NewEvent::new("q", "x"), options)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{what}: {e:?}");
    }
    let e = s
        .request(
            NewEvent::new("q", "x").with_header("pulse.rpc.id", "forged"),
            quick(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let e = service(&cx, "nobody")
        .request(NewEvent::new("q", "x"), quick())
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(_)),
        "unknown service: {e:?}"
    );
    sink.close().await.unwrap();
}

/// No responder: a timeout at the deadline, never a hang; an accept timeout fails sooner.
/// A request already past its deadline when a sink gets it is not handed to a handler.
pub async fn rpc_deadlines_bound_every_wait(cx: Ctx) {
    let s = service(&cx, "svc");
    s.add("created", "x").await.unwrap(); // the service stream exists, nobody serves it
    let t = Instant::now();
    let e = s
        .request(
            NewEvent::new("q", "x"),
            quick().with_timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(t.elapsed() < Duration::from_secs(5), "bounded");
    let t = Instant::now();
    let e = s
        .request(
            NewEvent::new("q", "x"),
            quick().with_accept_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "well before the 10 s timeout"
    );
    // A request whose caller died before it could withdraw it, long past its deadline.
    let past = SystemTime::now() - Duration::from_secs(1);
    let ms = past
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    s.add_event(
        NewEvent::new("q", "expired")
            .with_header("pulse.rpc.id", "01ABANDONED")
            .with_header("pulse.rpc.inbox", "_inbox.gone")
            .with_header("pulse.rpc.deadline", ms.to_string()),
    )
    .await
    .unwrap();
    // Now a responder comes: the requests above were withdrawn or are past their
    // deadlines, so only the plain event and a live request reach it.
    let sink = s.new_sink("r", responder_opts()).await.unwrap();
    let mut rx = sink.subscribe().unwrap();
    let caller = {
        let s = s.clone();
        tokio::spawn(async move { s.request(NewEvent::new("q", "live"), quick()).await })
    };
    let created = next(&mut rx).await;
    assert_eq!(created.name, "created");
    sink.ack(&created).await.unwrap();
    let req = next(&mut rx).await;
    assert_eq!(
        &req.payload[..],
        b"live",
        "expired requests were handed out"
    );
    sink.reply(&req, "ok").await.unwrap();
    assert_eq!(&caller.await.unwrap().unwrap().payload[..], b"ok");
    crate::eventually("expired requests acknowledged", || async {
        sink.pending(10).await.unwrap().is_empty()
    })
    .await;
    sink.close().await.unwrap();
}

/// A slow handler is kept alive by heartbeats; a responder that dies after accepting is
/// noticed by their loss (`Aborted`) long before the deadline, and with a retry another
/// member answers the same request (same ID, attempt 2).
pub async fn rpc_heartbeats_show_a_live_responder_and_their_loss_a_dead_one(cx: Ctx) {
    let s = service(&cx, "svc");
    let sink = s.new_sink("r", responder_opts()).await.unwrap();
    let mut rx = sink.subscribe().unwrap();
    let caller = {
        let s = s.clone();
        tokio::spawn(async move { s.request(NewEvent::new("q", "slow"), quick()).await })
    };
    let req = next(&mut rx).await;
    // Ten heartbeats long, and past the sink's ack grace: the heartbeats keep it from
    // being taken for stuck and redelivered.
    tokio::time::sleep(Duration::from_millis(600)).await;
    sink.reply(&req, "done").await.unwrap();
    assert_eq!(&caller.await.unwrap().unwrap().payload[..], b"done");
    // Now the responder dies holding a request.
    let caller = {
        let s = s.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            (
                s.request(NewEvent::new("q", "doomed"), quick()).await,
                t.elapsed(),
            )
        })
    };
    let _doomed = next(&mut rx).await;
    // It works on it a while (its sink heartbeats, the first saying "accepted"), then dies.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sink.simulate_crash().await;
    let (result, took) = caller.await.unwrap();
    assert!(matches!(result, Err(Error::Aborted { .. })), "{result:?}");
    assert!(
        took < Duration::from_secs(5),
        "aborted after {took:?}, not at the deadline"
    );
    // With a retry, a live member answers the re-sent request.
    let other = s.new_sink("r", responder_opts()).await.unwrap();
    let mut other_rx = other.subscribe().unwrap();
    let doomed = s.new_sink("r", responder_opts()).await.unwrap();
    let mut doomed_rx = doomed.subscribe().unwrap();
    let caller = {
        let s = s.clone();
        tokio::spawn(async move {
            // Whether the first member dies before or after accepting, the caller moves on:
            // by the accept timeout, or by the heartbeats' loss.
            let options = quick()
                .with_retries(1)
                .with_accept_timeout(Duration::from_millis(300));
            s.request(NewEvent::new("q", "again"), options).await
        })
    };
    // Whoever gets the first attempt dies; the survivor answers the second. (The first
    // crashed member's request comes back too, reclaimed: it is not the one awaited.)
    let again = |e: &pulse::streaming::Event| &e.payload[..] == b"again";
    let (which, first) = loop {
        let (which, e) = tokio::select! {
            e = next(&mut other_rx) => (0, e),
            e = next(&mut doomed_rx) => (1, e),
        };
        if again(&e) {
            break (which, e);
        }
    };
    let (survivor, mut survivor_rx) = if which == 0 {
        other.simulate_crash().await;
        (doomed, doomed_rx)
    } else {
        doomed.simulate_crash().await;
        (other, other_rx)
    };
    assert_eq!(first.attempt(), Some(1));
    let mut second = next(&mut survivor_rx).await;
    while !again(&second) || second.attempt() != Some(2) {
        second = next(&mut survivor_rx).await;
    }
    assert_eq!(second.attempt(), Some(2));
    assert_eq!(
        second.request_id(),
        first.request_id(),
        "the same request, resent"
    );
    survivor.reply(&second, "answered").await.unwrap();
    assert_eq!(&caller.await.unwrap().unwrap().payload[..], b"answered");
    survivor.close().await.unwrap();
}

/// An answer that comes after its caller gave up is dropped, never taken for the answer
/// to a later request; a second answer to one request is dropped too.
pub async fn rpc_late_answers_are_never_misdelivered(cx: Ctx) {
    let s = service(&cx, "svc");
    let sink = s.new_sink("r", responder_opts()).await.unwrap();
    let mut rx = sink.subscribe().unwrap();
    let short = quick().with_timeout(Duration::from_millis(300));
    let first = {
        let s = s.clone();
        tokio::spawn(async move { s.request(NewEvent::new("q", "one"), short).await })
    };
    let one = next(&mut rx).await;
    assert!(matches!(first.await.unwrap(), Err(Error::Timeout { .. })));
    let second = {
        let s = s.clone();
        tokio::spawn(async move { s.request(NewEvent::new("q", "two"), quick()).await })
    };
    let two = next(&mut rx).await;
    sink.reply(&one, "late answer to one").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    sink.reply(&two, "answer to two").await.unwrap();
    sink.reply(&two, "second answer to two").await.unwrap();
    assert_eq!(
        &second.await.unwrap().unwrap().payload[..],
        b"answer to two"
    );
    sink.close().await.unwrap();
}

/// Many requests in flight at once, two responders: every caller gets its own answer.
pub async fn rpc_many_requests_in_flight_each_get_their_own_answer(cx: Ctx) {
    let s = service(&cx, "svc");
    let a = s.new_sink("r", responder_opts()).await.unwrap();
    let b = s.new_sink("r", responder_opts()).await.unwrap();
    let (ra, rb) = (a.subscribe().unwrap(), b.subscribe().unwrap());
    let workers = [echo(a.clone(), ra, "a"), echo(b.clone(), rb, "b")];
    let s = Arc::new(s);
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let reply = s
                    .request(NewEvent::new("q", format!("call {i}")), quick())
                    .await
                    .unwrap();
                assert_eq!(reply.payload, Bytes::from(format!("CALL {i}")));
                reply.headers["who"].clone()
            })
        })
        .collect();
    let mut by = std::collections::HashMap::new();
    for c in calls {
        *by.entry(c.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(by.values().sum::<i32>(), 200);
    a.close().await.unwrap();
    b.close().await.unwrap();
    for w in workers {
        w.abort();
    }
}

/// A confirmed add returns once `n` distinct sinks acknowledged it, naming them: one
/// sink acknowledging twice counts once, and a sink whose filter drops the event (an
/// acknowledgement unseen) confirms nothing; short of `n`, a timeout saying how many.
pub async fn rpc_confirmed_adds_count_distinct_sinks(cx: Ctx) {
    let s = service(&cx, "orders");
    let billing = s.new_sink("billing", responder_opts()).await.unwrap();
    let audit = s.new_sink("audit", responder_opts()).await.unwrap();
    let ignorer = s
        .new_sink(
            "ignorer",
            responder_opts().with_filter(pulse::streaming::Filter::Topic("other".into())),
        )
        .await
        .unwrap();
    let (mut rb, mut ra, _ri) = (
        billing.subscribe().unwrap(),
        audit.subscribe().unwrap(),
        ignorer.subscribe().unwrap(),
    );
    let adder = {
        let s = s.clone();
        tokio::spawn(async move {
            s.add_confirmed(NewEvent::new("created", "#1"), 2, Duration::from_secs(10))
                .await
        })
    };
    let e = next(&mut rb).await;
    billing.ack(&e).await.unwrap();
    billing.ack(&e).await.unwrap(); // twice: still one sink
    let e = next(&mut ra).await;
    audit.ack(&e).await.unwrap();
    let confirmed = adder.await.unwrap().unwrap();
    assert_eq!(confirmed.id, e.id);
    assert_eq!(confirmed.by, ["billing", "audit"]);
    // Three wanted: billing and audit confirm, the ignorer's filter drops the event.
    let adder = {
        let s = s.clone();
        tokio::spawn(async move {
            s.add_confirmed(
                NewEvent::new("created", "#2"),
                3,
                Duration::from_millis(500),
            )
            .await
        })
    };
    let e = next(&mut rb).await;
    billing.ack(&e).await.unwrap();
    billing.ack(&e).await.unwrap();
    let e = next(&mut ra).await;
    audit.ack(&e).await.unwrap();
    match adder.await.unwrap() {
        Err(Error::Timeout { what }) => assert!(what.contains(": 2 within"), "{what}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    for bad in [0, 1001] {
        let e = s
            .add_confirmed(NewEvent::new("x", "y"), bad, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{bad}: {e:?}");
    }
    for sink in [billing, audit, ignorer] {
        sink.close().await.unwrap();
    }
}

/// A caller that stops waiting tells the responder: dropping the caller's future fires the
/// request's cancellation long before its deadline, and the answer given after that is
/// dropped (the request is acknowledged, the caller's inbox gets nothing). A cancel missed
/// while the responder's subscription was down is caught when it comes back (the request
/// entry was withdrawn), and one given up by its timeout fires too.
pub async fn rpc_cancellation_reaches_the_responder(cx: Ctx) {
    let s = service(&cx, "svc");
    let sink = s.new_sink("r", responder_opts()).await.unwrap();
    let mut rx = sink.subscribe().unwrap();
    // Deadlines far beyond the case's patience: only a cancel can fire in time.
    let long = || quick().with_timeout(Duration::from_secs(120));
    let request = |payload: &'static str| {
        let (s, options) = (s.clone(), long());
        tokio::spawn(async move { s.request(NewEvent::new("q", payload), options).await })
    };
    // A first request answered: the responder listens for cancels from now on.
    let caller = request("first");
    let req = next(&mut rx).await;
    sink.reply(&req, "ok").await.unwrap();
    caller.await.unwrap().unwrap();

    let caller = request("long");
    let req = next(&mut rx).await;
    let cancel = sink.cancellation(&req);
    assert!(!cancel.is_cancelled());
    caller.abort();
    let _ = caller.await;
    tokio::time::timeout(crate::patience(), cancel.cancelled())
        .await
        .expect("the responder learns the caller is gone");
    sink.reply(&req, "for nobody").await.unwrap();
    assert!(sink.pending(10).await.unwrap().is_empty(), "acknowledged");
    let inbox = Stream::new(
        cx.backend.clone(),
        req.header("pulse.rpc.inbox").unwrap(),
        StreamOptions::default().with_keyspace(cx.keyspace()),
    )
    .unwrap();
    let answers = cx
        .backend
        .stream_range(inbox.key(), EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    assert!(
        !answers
            .iter()
            .any(|e| e.field("p").map(|p| &p[..]) == Some(b"for nobody")),
        "an answer to a cancelled request reaches no inbox"
    );
    // Not a request in flight: a handle that never fires.
    assert!(!sink.cancellation(&req).is_cancelled());

    // A cancel lost while the subscription was down: the withdrawn entry tells.
    let caller = request("lost");
    let req = next(&mut rx).await;
    let cancel = sink.cancellation(&req);
    // The caller's withdrawal, without its message.
    assert_eq!(s.remove(&[req.id]).await.unwrap(), 1);
    cx.faults.kill_subscriptions().await;
    tokio::time::timeout(crate::patience(), cancel.cancelled())
        .await
        .expect("found withdrawn after the subscription came back");
    caller.abort();

    // A caller whose timeout passes gives up and says so; the handler sees it at once.
    let caller = {
        let s = s.clone();
        tokio::spawn(async move {
            let short = quick().with_timeout(Duration::from_millis(400));
            s.request(NewEvent::new("q", "short"), short).await
        })
    };
    let req = loop {
        let e = next(&mut rx).await;
        if &e.payload[..] == b"short" {
            break e;
        }
    };
    let cancel = sink.cancellation(&req);
    let r = caller.await.unwrap();
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    tokio::time::timeout(crate::patience(), cancel.cancelled())
        .await
        .expect("a timed-out request is cancelled");
    sink.close().await.unwrap();
}

/// A handler that dies holding a request (its task panics, dropping its receiver) is
/// noticed: the caller is told at the next heartbeat tick and retries at once, and a live
/// member answers — long before the deadline. The dead subscriber's instance takes no more
/// requests.
pub async fn rpc_a_handler_that_dies_is_noticed(cx: Ctx) {
    let s = service(&cx, "svc");
    let doomed = s.new_sink("r", responder_opts()).await.unwrap();
    let mut rx = doomed.subscribe().unwrap();
    let handler = tokio::spawn(async move {
        let _request = rx.recv().await;
        panic!("a handler bug");
    });
    let caller = {
        let s = s.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let options = quick()
                .with_timeout(Duration::from_secs(60))
                .with_retries(1);
            (
                s.request(NewEvent::new("q", "fragile"), options).await,
                t.elapsed(),
            )
        })
    };
    assert!(handler.await.unwrap_err().is_panic());
    let live = s.new_sink("r", responder_opts()).await.unwrap();
    let echoing = echo(live.clone(), live.subscribe().unwrap(), "live");
    let (reply, took) = caller.await.unwrap();
    let reply = reply.unwrap();
    assert_eq!(&reply.payload[..], b"FRAGILE");
    assert_eq!(reply.responder.as_deref(), Some(live.consumer()));
    assert!(
        took < Duration::from_secs(5),
        "retried after {took:?}, not at the deadline"
    );
    // The same again: the doomed instance, without subscribers, takes nothing more.
    let reply = s
        .request(NewEvent::new("q", "again"), quick())
        .await
        .unwrap();
    assert_eq!(reply.responder.as_deref(), Some(live.consumer()));
    echoing.abort();
    doomed.close().await.unwrap();
    live.close().await.unwrap();
}
