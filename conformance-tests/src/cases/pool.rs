//! Pool admission (claim / release) and leases.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use pulse::{
    backend::{ClaimOutcome, PubSubEvent, SetCondition},
    codec::{MapChange, MapNotice},
};

use crate::{eventually, expect_event, Ctx};

const SEC: u128 = 1_000_000_000;
/// A realistic "now" in nanoseconds (2026), longer than 2^53.
const NOW: u128 = 1_790_000_000 * SEC;

/// Claims succeed once; a live guard or a job record refuses; an expired guard is retaken.
pub async fn pool_claim_admission(cx: Ctx) {
    let be = &cx.backend;
    let (records, pending) = (cx.key("records"), cx.map("pending"));
    let ClaimOutcome::Claimed { token, revision } = be
        .pool_claim(&records, &pending, "job", NOW, NOW + 10 * SEC)
        .await
        .unwrap()
    else {
        panic!("first claim must win");
    };
    assert_eq!(token, (NOW + 10 * SEC).to_string());
    assert_eq!(revision.rev, 1);
    assert_eq!(
        be.hash_get(&pending.hash, "job").await.unwrap(),
        Some(Bytes::from(token.clone()))
    );
    let second = be
        .pool_claim(&records, &pending, "job", NOW + SEC, NOW + 20 * SEC)
        .await
        .unwrap();
    assert_eq!(
        second,
        ClaimOutcome::Pending {
            guard: token.clone()
        }
    );
    let later = be
        .pool_claim(&records, &pending, "job", NOW + 11 * SEC, NOW + 30 * SEC)
        .await
        .unwrap();
    assert!(
        matches!(later, ClaimOutcome::Claimed { ref token, .. } if *token == (NOW + 30 * SEC).to_string()),
        "{later:?}"
    );
    let records_map = cx.map("records");
    be.map_set(
        &records_map,
        "running",
        Bytes::from("payload"),
        SetCondition::Always,
    )
    .await
    .unwrap();
    let running = be
        .pool_claim(&records_map.hash, &pending, "running", NOW, NOW + SEC)
        .await
        .unwrap();
    assert_eq!(running, ClaimOutcome::Running);
    assert!(
        !be.hash_exists(&pending.hash, "running").await.unwrap(),
        "no guard left behind"
    );
}

/// A guard that is not a decimal number is reported and left untouched.
pub async fn pool_claim_malformed_guard(cx: Ctx) {
    let be = &cx.backend;
    let pending = cx.map("pending");
    be.map_set(
        &pending,
        "job",
        Bytes::from("not-a-timestamp"),
        SetCondition::Always,
    )
    .await
    .unwrap();
    let out = be
        .pool_claim(&cx.key("records"), &pending, "job", NOW, NOW + SEC)
        .await
        .unwrap();
    assert_eq!(
        out,
        ClaimOutcome::Malformed {
            guard: "not-a-timestamp".into()
        }
    );
    assert_eq!(
        be.hash_get(&pending.hash, "job").await.unwrap(),
        Some(Bytes::from("not-a-timestamp"))
    );
    be.map_set(&pending, "short", Bytes::from("9"), SetCondition::Always)
        .await
        .unwrap();
    let out = be
        .pool_claim(&cx.key("records"), &pending, "short", 10, 20)
        .await
        .unwrap();
    assert!(
        matches!(out, ClaimOutcome::Claimed { .. }),
        "9 < 10 compares as integers: {out:?}"
    );
}

/// 20 concurrent claims of one key: exactly one wins, the others see it pending.
pub async fn pool_claim_concurrent_one_winner(cx: Ctx) {
    let pending = Arc::new(cx.map("pending"));
    let records = cx.key("records");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (be, pending, records) = (cx.backend.clone(), pending.clone(), records.clone());
            tokio::spawn(async move {
                be.pool_claim(&records, &pending, "job", NOW, NOW + SEC + i)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut claimed = 0;
    for t in tasks {
        match t.await.unwrap() {
            ClaimOutcome::Claimed { .. } => claimed += 1,
            ClaimOutcome::Pending { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(claimed, 1);
}

/// Release deletes the guard only with the claimant's token, publishing a map notice.
pub async fn pool_release_by_token(cx: Ctx) {
    let be = &cx.backend;
    let pending = cx.map("pending");
    let mut sub = be
        .subscribe(std::slice::from_ref(&pending.channel))
        .await
        .unwrap();
    let ClaimOutcome::Claimed { token, .. } = be
        .pool_claim(&cx.key("r"), &pending, "job", NOW, NOW + SEC)
        .await
        .unwrap()
    else {
        panic!("claim");
    };
    let PubSubEvent::Message { payload, .. } = expect_event(&mut sub).await else {
        panic!("notice")
    };
    let set = MapNotice::decode(&payload).unwrap();
    assert_eq!(
        set.change,
        MapChange::Set {
            key: "job".into(),
            value: Bytes::from(token.clone())
        }
    );
    assert!(!be.pool_release(&pending, "job", "12345").await.unwrap());
    assert!(be.hash_exists(&pending.hash, "job").await.unwrap());
    assert!(be.pool_release(&pending, "job", &token).await.unwrap());
    assert!(!be.hash_exists(&pending.hash, "job").await.unwrap());
    let PubSubEvent::Message { payload, .. } = expect_event(&mut sub).await else {
        panic!("notice")
    };
    let del = MapNotice::decode(&payload).unwrap();
    assert_eq!(
        (del.change, del.rev),
        (MapChange::Delete { key: "job".into() }, set.rev + 1)
    );
}

/// A lease has one holder at a time; release by a non-holder does nothing.
pub async fn lease_exclusive(cx: Ctx) {
    let be = &cx.backend;
    let key = cx.key("lease");
    assert!(be
        .lease_acquire(&key, "a", Duration::from_secs(30))
        .await
        .unwrap());
    assert!(!be
        .lease_acquire(&key, "b", Duration::from_secs(30))
        .await
        .unwrap());
    assert!(!be.lease_release(&key, "b").await.unwrap());
    assert!(be.lease_release(&key, "a").await.unwrap());
    assert!(!be.lease_release(&key, "a").await.unwrap());
    assert!(be
        .lease_acquire(&key, "b", Duration::from_secs(30))
        .await
        .unwrap());
}

/// An expired lease can be taken by another holder.
pub async fn lease_expires(cx: Ctx) {
    let be = &cx.backend;
    let key = cx.key("lease");
    assert!(be
        .lease_acquire(&key, "a", Duration::from_millis(100))
        .await
        .unwrap());
    assert!(!be
        .lease_acquire(&key, "b", Duration::from_secs(30))
        .await
        .unwrap());
    eventually("lease expired", || async {
        be.lease_acquire(&key, "b", Duration::from_secs(30))
            .await
            .unwrap()
    })
    .await;
    assert!(!be
        .lease_acquire(&key, "a", Duration::from_secs(30))
        .await
        .unwrap());
}

/// The holder renews its lease, extending it.
pub async fn lease_renewed_by_holder(cx: Ctx) {
    let be = &cx.backend;
    let key = cx.key("lease");
    assert!(be
        .lease_acquire(&key, "a", Duration::from_millis(300))
        .await
        .unwrap());
    assert!(be
        .lease_acquire(&key, "a", Duration::from_secs(30))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await; // past the first, short lease
    assert!(
        !be.lease_acquire(&key, "b", Duration::from_secs(30))
            .await
            .unwrap(),
        "renewal was lost"
    );
}
