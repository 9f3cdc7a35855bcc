//! Worker groups: jobs run in the group whose range (key prefixes) holds their key; adding
//! a worker or changing a range moves only the jobs it concerns; a group without workers
//! holds its jobs; bad ranges are refused, concurrent changes serialised, foreign data
//! under the ranges skipped.

use std::{collections::HashSet, sync::Arc, time::Duration};

use pulse::{
    pool::{Node, DEFAULT_GROUP},
    Error,
};

use super::{node, opts, rec, Ledger};
use crate::{eventually, Ctx};

/// The label of the handler running `key`, once exactly one does.
fn runner(ledger: &Ledger, key: &str) -> Option<String> {
    let runs = ledger.runs(key);
    (runs.len() == 1).then(|| runs.into_iter().next().unwrap())
}

/// Waits until each `(key, label)` runs on that handler alone.
async fn placed(ledger: &Ledger, want: &[(&str, &str)]) {
    eventually(&format!("placed as {want:?}"), || async {
        want.iter()
            .all(|(k, l)| runner(ledger, k).as_deref() == Some(*l))
    })
    .await;
}

/// Keys go to their group's workers; a new worker in a group takes only that group's
/// jobs; a range change moves only the jobs whose group changes.
pub async fn pool_groups_route_by_range_and_move_only_their_jobs(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = node(&cx).await;
    a.set_group_range("premium", &["tenant-1:", "tenant-2:"])
        .await
        .unwrap();
    let d = a.add_worker(rec(&ledger, "d")).await.unwrap();
    assert_eq!(d.group(), DEFAULT_GROUP);
    let p1 = a
        .add_worker_in_group("premium", rec(&ledger, "p1"))
        .await
        .unwrap();
    assert_eq!(p1.group(), "premium");
    let premium: Vec<String> = (0..6)
        .map(|i| format!("tenant-{}:{i}", 1 + i % 2))
        .collect();
    let plain: Vec<String> = (0..6).map(|i| format!("tenant-3:{i}")).collect();
    for k in premium.iter().chain(&plain) {
        a.dispatch_job(k, "x").await.unwrap();
        assert_eq!(
            a.group_of(k),
            if premium.contains(k) {
                "premium"
            } else {
                DEFAULT_GROUP
            }
        );
    }
    let want = |label_premium: &'static str| -> Vec<(String, &'static str)> {
        premium
            .iter()
            .map(|k| (k.clone(), label_premium))
            .chain(plain.iter().map(|k| (k.clone(), "d")))
            .collect()
    };
    let as_refs = |v: &[(String, &'static str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, l)| (k.clone(), (*l).to_owned()))
            .collect()
    };
    let w = as_refs(&want("p1"));
    let w: Vec<(&str, &str)> = w.iter().map(|(k, l)| (k.as_str(), l.as_str())).collect();
    placed(&ledger, &w).await;

    // A second premium worker takes some premium jobs; no default job moves.
    let stops_before = ledger.stops.lock().unwrap().len();
    a.add_worker_in_group("premium", rec(&ledger, "p2"))
        .await
        .unwrap();
    eventually("p2 took its share", || async {
        premium.iter().any(|k| ledger.runs(k).contains("p2"))
            && ledger.exactly_once(&[premium.clone(), plain.clone()].concat())
    })
    .await;
    let moved: HashSet<String> = ledger.stops.lock().unwrap()[stops_before..]
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        moved.iter().all(|k| premium.contains(k)),
        "only premium jobs moved: {moved:?}"
    );
    for k in &plain {
        assert_eq!(runner(&ledger, k).as_deref(), Some("d"));
    }

    // tenant-3 joins the premium range: only its jobs move, to premium workers.
    let stops_before = ledger.stops.lock().unwrap().len();
    a.set_group_range("premium", &["tenant-1:", "tenant-2:", "tenant-3:"])
        .await
        .unwrap();
    eventually("tenant-3 moved to premium", || async {
        plain
            .iter()
            .all(|k| matches!(runner(&ledger, k).as_deref(), Some("p1" | "p2")))
    })
    .await;
    let moved: HashSet<String> = ledger.stops.lock().unwrap()[stops_before..]
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        moved,
        plain.iter().cloned().collect(),
        "only tenant-3 jobs moved"
    );
    assert_eq!(
        a.group_ranges().get("premium").map(Vec::len),
        Some(3),
        "{:?}",
        a.group_ranges()
    );

    // The range removed: every job goes back to the default group.
    a.set_group_range("premium", &[]).await.unwrap();
    let all = [premium.clone(), plain.clone()].concat();
    eventually("all back on d", || async {
        all.iter()
            .all(|k| runner(&ledger, k).as_deref() == Some("d"))
    })
    .await;
    assert!(a.group_ranges().is_empty());
    ledger.assert_no_overlap();
    a.close().await.unwrap();
}

/// A group whose range has keys but no live worker holds their jobs: not run in another
/// group, not lost; they start when a worker of the group joins.
pub async fn pool_group_without_workers_holds_its_jobs(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = Node::join(
        cx.backend.clone(),
        "pool",
        opts(&cx).with_dispatch_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    a.add_worker(rec(&ledger, "d")).await.unwrap();
    a.set_group_range("vip", &["vip:"]).await.unwrap();
    let r = a.dispatch_job("vip:1", "x").await;
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    a.dispatch_job("plain", "x").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ledger.runs("vip:1").is_empty(), "not run outside its group");
    assert_eq!(a.job_keys(), ["plain", "vip:1"], "not lost");
    a.add_worker_in_group("vip", rec(&ledger, "v"))
        .await
        .unwrap();
    placed(&ledger, &[("vip:1", "v"), ("plain", "d")]).await;
    ledger.assert_no_overlap();
    a.close().await.unwrap();
}

/// Bad ranges are refused with what is wrong; two nodes racing overlapping ranges: one
/// wins; foreign data under the ranges means no ranges (every key in the default group).
pub async fn pool_group_ranges_refuse_bad_input(cx: Ctx) {
    let (a, b) = (node(&cx).await, node(&cx).await);
    let e = a.set_group_range("no space", &["x"]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidName { .. }), "{e:?}");
    let e = a.set_group_range(DEFAULT_GROUP, &["x"]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    for bad in ["", "a=b"] {
        let e = a.set_group_range("g", &[bad]).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{bad:?}: {e:?}");
    }
    let e = a
        .add_worker_in_group("{tag}", rec(&Arc::new(Ledger::default()), "x"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidName { .. }), "{e:?}");
    a.set_group_range("g1", &["shared-"]).await.unwrap();
    let e = b.set_group_range("g2", &["shared-x"]).await;
    let e = match e {
        // b's replica may not have g1's range yet: its compare-and-set then learns it.
        Err(e) => e,
        Ok(()) => panic!("overlap accepted"),
    };
    assert!(
        matches!(e, Error::InvalidArgument(ref m) if m.contains("g1")),
        "{e:?}"
    );
    // Racing, from two nodes: exactly one of two overlapping ranges is accepted.
    let (ra, rb) = tokio::join!(
        a.set_group_range("left", &["race-"]),
        b.set_group_range("right", &["race-x"])
    );
    assert!(ra.is_ok() ^ rb.is_ok(), "{ra:?} {rb:?}");
    // Foreign data where the ranges live: skipped (every key in the default group).
    let target = {
        let k = cx.keyspace().pool_map("pool", "groups").unwrap();
        pulse::backend::MapTarget::new(k.hash, k.channel)
    };
    cx.backend
        .map_set(
            &target,
            "ranges",
            bytes::Bytes::from_static(b"\xff\xfe garbage"),
            pulse::backend::SetCondition::Always,
        )
        .await
        .unwrap();
    eventually("garbage seen", || async { a.group_ranges().is_empty() }).await;
    assert_eq!(a.group_of("shared-1"), DEFAULT_GROUP);
    a.set_group_range("g1", &["shared-"]).await.unwrap();
    eventually("range back", || async { b.group_of("shared-1") == "g1" }).await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}
