//! Leases.

use std::time::Duration;

use crate::{eventually, Ctx};

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
