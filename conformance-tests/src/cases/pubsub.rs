//! Publish/subscribe: ordering, channel selection, unsubscribe, loss and recovery.

use std::time::Duration;

use bytes::Bytes;
use pulse::{backend::PubSubEvent, Error};

use crate::{eventually, expect_event, Ctx};

fn message(channel: &str, payload: &str) -> PubSubEvent {
    PubSubEvent::Message {
        channel: channel.to_owned(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

/// Every message published after `subscribe` returns arrives, in publish order.
pub async fn pubsub_delivers_in_order(cx: Ctx) {
    let b = &cx.backend;
    let ch = cx.key("ch");
    let mut sub = b.subscribe(std::slice::from_ref(&ch)).await.unwrap();
    for i in 0..200 {
        assert!(b.publish(&ch, Bytes::from(i.to_string())).await.unwrap() >= 1);
    }
    for i in 0..200 {
        assert_eq!(expect_event(&mut sub).await, message(&ch, &i.to_string()));
    }
}

/// A subscription receives its channels only (in order per channel; channels of
/// different hash tags need not keep their relative order).
pub async fn pubsub_only_subscribed_channels(cx: Ctx) {
    let b = &cx.backend;
    let (a, c, other) = (cx.key("a"), cx.key("c"), cx.key("other"));
    let mut sub = b.subscribe(&[a.clone(), c.clone()]).await.unwrap();
    b.publish(&other, Bytes::from("no")).await.unwrap();
    b.publish(&a, Bytes::from("1")).await.unwrap();
    b.publish(&c, Bytes::from("2")).await.unwrap();
    b.publish(&a, Bytes::from("3")).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(expect_event(&mut sub).await);
    }
    let of = |ch: &str| -> Vec<&PubSubEvent> {
        got.iter()
            .filter(|e| matches!(e, PubSubEvent::Message { channel, .. } if channel == ch))
            .collect()
    };
    assert_eq!(of(&a), [&message(&a, "1"), &message(&a, "3")], "{got:?}");
    assert_eq!(of(&c), [&message(&c, "2")], "{got:?}");
    assert_eq!(b.publish(&other, Bytes::from("no")).await.unwrap(), 0);
}

/// Two subscriptions to one channel both receive it; dropping one leaves the other.
pub async fn pubsub_shared_channel(cx: Ctx) {
    let b = &cx.backend;
    let ch = cx.key("ch");
    let mut one = b.subscribe(std::slice::from_ref(&ch)).await.unwrap();
    let mut two = b.subscribe(std::slice::from_ref(&ch)).await.unwrap();
    b.publish(&ch, Bytes::from("x")).await.unwrap();
    assert_eq!(expect_event(&mut one).await, message(&ch, "x"));
    assert_eq!(expect_event(&mut two).await, message(&ch, "x"));
    drop(one);
    b.publish(&ch, Bytes::from("y")).await.unwrap();
    assert_eq!(expect_event(&mut two).await, message(&ch, "y"));
}

/// Dropping the last subscription of a channel unsubscribes it.
pub async fn pubsub_drop_unsubscribes(cx: Ctx) {
    let b = &cx.backend;
    let ch = cx.key("ch");
    let sub = b.subscribe(std::slice::from_ref(&ch)).await.unwrap();
    assert_eq!(b.publish(&ch, Bytes::from("x")).await.unwrap(), 1);
    drop(sub);
    eventually("channel unsubscribed", || async {
        b.publish(&ch, Bytes::from("y")).await.unwrap() == 0
    })
    .await;
}

/// A broken connection is reported as `Lost`, then `Restored`; delivery resumes after.
pub async fn pubsub_reports_loss_and_restore(cx: Ctx) {
    let b = &cx.backend;
    let ch = cx.key("ch");
    let mut sub = b.subscribe(std::slice::from_ref(&ch)).await.unwrap();
    let mut other = b.subscribe(&[cx.key("other")]).await.unwrap();
    cx.faults.kill_subscriptions().await;
    for s in [&mut sub, &mut other] {
        assert_eq!(expect_event(s).await, PubSubEvent::Lost);
        assert_eq!(expect_event(s).await, PubSubEvent::Restored);
    }
    b.publish(&ch, Bytes::from("after")).await.unwrap();
    assert_eq!(expect_event(&mut sub).await, message(&ch, "after"));
    let extra = tokio::time::timeout(Duration::from_millis(100), other.recv()).await;
    assert!(extra.is_err(), "unexpected event {extra:?}");
}

/// Subscribing to no channel is an `InvalidArgument`.
pub async fn pubsub_invalid_arguments(cx: Ctx) {
    assert!(matches!(
        cx.backend.subscribe(&[]).await,
        Err(Error::InvalidArgument(_))
    ));
}
