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

/// Inspection from a client-only node: every job with its group, owner, node, start time
/// and moves; every worker with its group, job count and liveness; the waiting jobs with
/// why and since when.
pub async fn pool_inspection_shows_jobs_workers_and_waits(cx: Ctx) {
    use pulse::pool::{JobStatus, WaitReason};
    let ledger = Arc::new(Ledger::default());
    let quick = opts(&cx).with_dispatch_timeout(Duration::from_millis(300));
    let a = Node::join(cx.backend.clone(), "pool", quick.clone())
        .await
        .unwrap();
    let b = Node::join(cx.backend.clone(), "pool", quick.clone())
        .await
        .unwrap();
    let c = Node::join(cx.backend.clone(), "pool", quick.with_client_only(true))
        .await
        .unwrap();
    let w1 = a.add_worker(rec(&ledger, "w1")).await.unwrap();
    let p1 = b
        .add_worker_in_group("premium", rec(&ledger, "p1"))
        .await
        .unwrap();
    a.set_group_range("premium", &["vip:"]).await.unwrap();
    a.set_group_range("gold", &["gold:"]).await.unwrap();
    let before = std::time::SystemTime::now() - Duration::from_secs(1);
    for k in ["job-1", "job-2", "vip:1"] {
        c.dispatch_job(k, "payload").await.unwrap();
    }
    let r = c.dispatch_job("gold:1", "x").await;
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    eventually("c sees every job placed", || async {
        let s = c.inspect().await.unwrap();
        s.jobs.len() == 4
            && ["job-1", "job-2", "vip:1"]
                .iter()
                .all(|k| matches!(s.job(k).unwrap().status, JobStatus::Running { .. }))
    })
    .await;
    let s = c.inspect().await.unwrap();
    let running = |k: &str| match &s.job(k).unwrap().status {
        JobStatus::Running {
            worker,
            node,
            since,
        } => (worker.clone(), node.clone(), *since),
        other => panic!("{k}: {other:?}"),
    };
    let (worker, node, since) = running("job-1");
    assert_eq!((worker.as_str(), node.as_deref()), (w1.id(), Some(a.id())));
    assert!(since.is_some_and(|t| t > before), "{since:?}");
    let (worker, node, _) = running("vip:1");
    assert_eq!((worker.as_str(), node.as_deref()), (p1.id(), Some(b.id())));
    assert_eq!(s.job("vip:1").unwrap().group, "premium");
    assert_eq!(s.job("job-1").unwrap().group, DEFAULT_GROUP);
    assert_eq!(s.job("job-1").unwrap().payload_len, 7);
    let gold = s.job("gold:1").unwrap();
    assert_eq!(gold.group, "gold");
    assert!(
        matches!(
            gold.status,
            JobStatus::Waiting { reason: WaitReason::NoWorkerInGroup, since: Some(t) } if t > before
        ),
        "{gold:?}"
    );
    assert_eq!(s.waiting().count(), 1);
    assert!(s.longest_wait().is_some());
    let workers: Vec<(&str, &str, usize, bool)> = s
        .workers
        .iter()
        .map(|w| (w.id.as_str(), w.group.as_str(), w.jobs, w.alive))
        .collect();
    let mut want = vec![
        (w1.id(), DEFAULT_GROUP, 2, true),
        (p1.id(), "premium", 1, true),
    ];
    want.sort();
    assert_eq!(workers, want);
    assert_eq!(s.ranges.len(), 2);
    // w1 leaves for a new default worker: its jobs move, one move each.
    let w2 = a.add_worker(rec(&ledger, "w2")).await.unwrap();
    a.remove_worker(&w1).await.unwrap();
    eventually("the default jobs moved and say so", || async {
        let s = c.inspect().await.unwrap();
        ["job-1", "job-2"].iter().all(|k| {
            let j = s.job(k).unwrap();
            j.moves == 1
                && matches!(&j.status, JobStatus::Running { worker, .. } if worker == w2.id())
        })
    })
    .await;
    // b dies: its worker is not alive any more, its job waits.
    b.simulate_crash().await;
    eventually("p1 dead, vip:1 waiting", || async {
        let s = c.inspect().await.unwrap();
        let p1_dead = s.workers.iter().all(|w| w.id != p1.id() || !w.alive);
        p1_dead && matches!(s.job("vip:1").unwrap().status, JobStatus::Waiting { .. })
    })
    .await;
    for n in [&a, &c] {
        n.close().await.unwrap();
    }
}
