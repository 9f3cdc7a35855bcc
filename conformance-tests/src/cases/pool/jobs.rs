//! One job and one node at a time: dispatch, admission, stop, leases, start failures,
//! notifications, bounded dispatch, client-only nodes, shutdown, close and the inbox.

use super::*;

/// Workers are listed locally and pool-wide; every node sees every worker.
pub async fn pool_lists_workers(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    let mut ids = Vec::new();
    for i in 0..2 {
        ids.push(
            a.add_worker(rec(&ledger, &format!("a{i}")))
                .await
                .unwrap()
                .id()
                .to_owned(),
        );
    }
    ids.push(
        b.add_worker(rec(&ledger, "b0"))
            .await
            .unwrap()
            .id()
            .to_owned(),
    );
    ids.sort();
    let mut local: Vec<String> = a.workers().iter().map(|w| w.id().to_owned()).collect();
    local.sort();
    assert_eq!(
        local,
        ids[..]
            .iter()
            .filter(|id| local.contains(id))
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(local.len(), 2);
    for n in [&a, &b] {
        eventually("every node lists every worker", || async {
            n.pool_workers()
                .iter()
                .map(|w| w.id.clone())
                .collect::<Vec<_>>()
                == ids
        })
        .await;
    }
    assert!(a
        .pool_workers()
        .iter()
        .all(|w| w.node == a.id() || w.node == b.id()));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A dispatched job starts on one worker with its payload and is visible everywhere.
pub async fn pool_dispatch_starts_the_job(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    let w = b.add_worker(rec(&ledger, "w")).await.unwrap();
    a.dispatch_job("job-1", "payload1").await.unwrap();
    assert_eq!(
        ledger.runs("job-1"),
        HashSet::from(["w".to_owned()]),
        "started before dispatch returned"
    );
    assert_eq!(
        ledger.payloads.lock().unwrap()["job-1"],
        Bytes::from("payload1")
    );
    a.dispatch_job("empty", Bytes::new()).await.unwrap();
    eventually("visible on both nodes", || async {
        a.job_keys() == ["empty", "job-1"]
            && b.job_payload("job-1") == Some(Bytes::from("payload1"))
            && b.job_owner("job-1").as_deref() == Some(w.id())
    })
    .await;
    assert_eq!(a.job_payload("empty"), Some(Bytes::new()));
    assert_eq!(a.job_payload("nope"), None);
    eventually("worker lists its jobs", || async {
        w.jobs() == ["empty", "job-1"]
    })
    .await;
    assert!(ledger
        .starts
        .lock()
        .unwrap()
        .iter()
        .all(|(_, _, requeued)| !requeued));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A live key cannot be dispatched twice, even concurrently from several nodes.
pub async fn pool_singleton_admission(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    a.add_worker(rec(&ledger, "w")).await.unwrap();
    a.dispatch_job("k", "x").await.unwrap();
    assert!(matches!(
        b.dispatch_job("k", "y").await,
        Err(Error::JobExists { .. })
    ));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let n = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { n.dispatch_job("race", format!("{i}")).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(Error::JobExists { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(
        ledger
            .starts
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _, _)| k == "race")
            .count(),
        1
    );
    for bad in ["", "a=b"] {
        assert!(matches!(
            a.dispatch_job(bad, "x").await,
            Err(Error::InvalidKey { .. })
        ));
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Stopping a job stops it on its worker and removes it; the key can be reused.
pub async fn pool_stop_job(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = node(&cx).await;
    a.add_worker(rec(&ledger, "w")).await.unwrap();
    a.dispatch_job("k", "x").await.unwrap();
    assert!(a.stop_job("k").await.unwrap());
    eventually("stopped", || async {
        ledger.runs("k").is_empty() && a.job_payload("k").is_none() && a.job_owner("k").is_none()
    })
    .await;
    assert!(!a.stop_job("k").await.unwrap());
    a.dispatch_job("k", "again").await.unwrap();
    assert_eq!(ledger.runs("k").len(), 1);
    a.close().await.unwrap();
}

/// A run's lease is held while the run is the job's only one, `lost()` resolves when the
/// job is stopped or moves, and a lease once lost stays lost (a new run gets a new one).
pub async fn pool_job_lease_follows_the_run(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let lease_of = |key: &str, label: &str| -> JobLease {
        let leases = ledger.leases.lock().unwrap();
        let runs = leases.get(key).expect("a run of the job");
        let (_, lease) = runs.iter().rev().find(|(l, _)| l == label).expect("a run");
        lease.clone()
    };
    // A long TTL: a loaded test machine must not fence the worker mid-test.
    let options = opts(&cx).with_worker_ttl(Duration::from_secs(30));
    let a = Node::join(cx.backend.clone(), "pool", options)
        .await
        .unwrap();
    let w1 = a.add_worker(rec(&ledger, "w1")).await.unwrap();
    a.dispatch_job("k", "x").await.unwrap();
    let lease = lease_of("k", "w1");
    assert!(lease.is_held());
    assert!(
        tokio::time::timeout(Duration::from_millis(100), lease.lost())
            .await
            .is_err(),
        "lost() resolved while the lease is held"
    );
    let waiter = tokio::spawn({
        let lease = lease.clone();
        async move { lease.lost().await }
    });
    assert!(a.stop_job("k").await.unwrap());
    tokio::time::timeout(crate::patience(), waiter)
        .await
        .expect("lost() resolves when the job is stopped")
        .unwrap();
    assert!(!lease.is_held());
    // Restarting the same key on the same worker gives a new lease; the old one stays lost.
    a.dispatch_job("k", "again").await.unwrap();
    let second = lease_of("k", "w1");
    assert!(second.is_held() && !lease.is_held() && second != lease);
    // A move ends the lease on the old worker; the new run holds its own.
    a.add_worker(rec(&ledger, "w2")).await.unwrap();
    a.remove_worker(&w1).await.unwrap();
    eventually("k moved to w2", || async {
        ledger.runs("k").contains("w2")
    })
    .await;
    assert!(!second.is_held());
    assert!(lease_of("k", "w2").is_held());
    ledger.assert_no_overlap();
    a.close().await.unwrap();
    assert!(!lease_of("k", "w2").is_held(), "close ends every lease");
    // A worker that stops renewing (its process died or froze) loses its leases on its
    // own, from local time alone: `lost()` resolves without any stop or backend call.
    let b = node(&cx).await; // worker TTL 600 ms
    b.add_worker(rec(&ledger, "w3")).await.unwrap();
    b.dispatch_job("m", "x").await.unwrap();
    let lapsing = lease_of("m", "w3");
    assert!(lapsing.is_held());
    b.simulate_crash().await;
    tokio::time::timeout(crate::patience(), lapsing.lost())
        .await
        .expect("lost() resolves once renewals stop");
    assert!(!lapsing.is_held());
    assert!(
        ledger.stops.lock().unwrap().iter().all(|(k, _)| k != "m"),
        "nobody called stop: the lease lapsed by itself"
    );
}

/// A new job whose start fails is reported to the dispatcher and does not exist.
pub async fn pool_start_failure(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = node(&cx).await;
    a.add_worker(Recorder {
        label: "w".into(),
        ledger: ledger.clone(),
        fail: Some("bad"),
    })
    .await
    .unwrap();
    let err = a.dispatch_job("bad", "x").await.unwrap_err();
    assert!(
        matches!(&err, Error::JobFailed { key, message } if key == "bad" && message.contains("refusing")),
        "{err:?}"
    );
    eventually("the failed job does not exist", || async {
        a.job_payload("bad").is_none()
    })
    .await;
    a.dispatch_job("good", "x").await.unwrap();
    a.close().await.unwrap();
}

/// Notifications reach the owner's handler with the exact payload; a handler without
/// `notify` is fine.
pub async fn pool_notify_worker(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    b.add_worker(rec(&ledger, "w")).await.unwrap();
    a.dispatch_job("k", "x").await.unwrap();
    eventually("owner known", || async { a.job_owner("k").is_some() }).await;
    assert!(a
        .notify_worker("k", Bytes::from_static(b"\x00hello"))
        .await
        .unwrap());
    eventually("notified", || async {
        ledger.notes.lock().unwrap().clone() == [("k".to_owned(), Bytes::from_static(b"\x00hello"))]
    })
    .await;
    assert!(!a.notify_worker("absent", "x").await.unwrap());
    let c = node(&cx).await;
    let other = Arc::new(Ledger::default());
    b.close().await.unwrap();
    c.add_worker(Plain(other.clone())).await.unwrap();
    eventually("job moved to the plain handler", || async {
        other.runs("k").len() == 1 && a.job_owner("k").is_some()
    })
    .await;
    eventually("owner seen", || async { owner_is_plain(&a, &c) }).await;
    // a's workers replica may trail its owners replica (separate maps): until it has c's
    // worker, the owner's node is unknown and nothing is sent (false).
    eventually("notification sent to c", || async {
        a.notify_worker("k", "ignored").await.unwrap()
    })
    .await;
    a.dispatch_job("k2", "x").await.unwrap(); // still healthy afterwards
    a.close().await.unwrap();
    c.close().await.unwrap();
}

/// Without workers a dispatch times out (bounded) and the job starts when a worker comes.
pub async fn pool_dispatch_is_bounded(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = Node::join(
        cx.backend.clone(),
        "pool",
        opts(&cx).with_dispatch_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert!(matches!(
        a.dispatch_job("k", "x").await,
        Err(Error::Timeout { .. })
    ));
    assert!(
        matches!(a.dispatch_job("k", "x").await, Err(Error::JobExists { .. })),
        "the job exists"
    );
    a.add_worker(rec(&ledger, "w")).await.unwrap();
    eventually("started later", || async { ledger.runs("k").len() == 1 }).await;
    a.close().await.unwrap();
}

/// Client-only nodes dispatch, stop and notify, host no workers, and close cleanly.
pub async fn pool_client_only_node(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let worker_node = node(&cx).await;
    worker_node.add_worker(rec(&ledger, "w")).await.unwrap();
    let client = client_node(&cx).await;
    assert!(matches!(
        client.add_worker(rec(&ledger, "x")).await,
        Err(Error::InvalidArgument(_))
    ));
    client.dispatch_job("k", "x").await.unwrap();
    eventually("owner visible", || async {
        client.job_owner("k").is_some()
    })
    .await;
    assert!(client.notify_worker("k", "n").await.unwrap());
    eventually("notified", || async {
        ledger.notes.lock().unwrap().len() == 1
    })
    .await;
    assert!(client.stop_job("k").await.unwrap());
    eventually("stopped", || async { ledger.runs("k").is_empty() }).await;
    client.close().await.unwrap();
    client.close().await.unwrap();
    assert!(matches!(
        client.dispatch_job("k", "x").await,
        Err(Error::Closed { .. })
    ));
    worker_node.close().await.unwrap();
}

/// Shutdown stops every job on every node, removes the state, and refuses new nodes
/// while in progress.
pub async fn pool_shutdown(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    a.add_worker(rec(&ledger, "a")).await.unwrap();
    b.add_worker(rec(&ledger, "b")).await.unwrap();
    let ks = keys(8);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    eventually("running", || async { ledger.exactly_once(&ks) }).await;
    a.shutdown().await.unwrap();
    assert_eq!(ledger.running_count(), 0, "every job stopped");
    assert!(a.is_shutdown() && a.is_closed());
    eventually("other node closed", || async {
        b.is_closed() && b.is_shutdown()
    })
    .await;
    assert!(matches!(
        Node::join(cx.backend.clone(), "pool", opts(&cx)).await,
        Err(Error::ShuttingDown { .. })
    ));
    let jobs_hash = cx.keyspace().pool_map("pool", "jobs").unwrap().hash;
    assert!(
        !cx.backend.exists(&jobs_hash).await.unwrap(),
        "state removed"
    );
    ledger.assert_no_overlap();
}

/// Closing every node leaves no subscription behind.
pub async fn pool_close_leaks_nothing(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = node(&cx).await;
    a.add_worker(rec(&ledger, "w")).await.unwrap();
    a.dispatch_job("k", "x").await.unwrap();
    a.close().await.unwrap();
    let channels: Vec<String> = ["jobs", "owners", "workers", "control", "groups"]
        .iter()
        .map(|p| cx.keyspace().pool_map("pool", p).unwrap().channel)
        .collect();
    for ch in channels {
        eventually("no subscriber left", || async {
            cx.backend.publish(&ch, Bytes::new()).await.unwrap() == 0
        })
        .await;
    }
    assert!(ledger.runs("k").is_empty(), "close stopped the job");
    assert_eq!(a.job_keys(), ["k"], "close keeps the job for other nodes");
}

/// A node's inbox holds only what the node has not read yet: the dispatch results and
/// notifications it has handled are deleted, so a long-lived dispatcher's inbox does not
/// grow by one entry per job it ever dispatched.
pub async fn pool_inbox_keeps_only_unread_messages(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let workers = node(&cx).await;
    workers.add_worker(rec(&ledger, "w")).await.unwrap();
    let client = client_node(&cx).await;
    for key in keys(40) {
        client.dispatch_job(&key, "x").await.unwrap();
    }
    assert!(client.notify_worker("job-0", "n").await.unwrap());
    eventually("notified", || async {
        ledger.notes.lock().unwrap().len() == 1
    })
    .await;
    let inbox = |n: &Node| {
        pulse::streaming::Stream::new(
            cx.backend.clone(),
            &format!("pool:inbox:{}", n.id()),
            pulse::streaming::StreamOptions::default().with_keyspace(cx.keyspace()),
        )
        .unwrap()
    };
    for (what, n) in [("dispatcher", &client), ("worker node", &workers)] {
        let stream = inbox(n);
        eventually(&format!("the {what}'s inbox is drained"), || async {
            stream.len().await.unwrap() == 0
        })
        .await;
    }
    client.close().await.unwrap();
    workers.close().await.unwrap();
}

/// `max_payload` is the one payload limit: a payload of exactly that size, above the
/// default 16 MiB, is dispatched and reaches its worker (the pool's record and inbox allow
/// the payload plus its metadata), and one byte more is refused with the payload's size.
pub async fn pool_payload_limit_is_max_payload(cx: Ctx) {
    let limit = 16 * 1024 * 1024 + 1024;
    let options = opts(&cx).with_max_payload(limit);
    let node = Node::join(cx.backend.clone(), "pool", options)
        .await
        .unwrap();
    let ledger = Arc::new(Ledger::default());
    let _w = node.add_worker(rec(&ledger, "w")).await.unwrap();
    let payload = Bytes::from(vec![b'p'; limit]);
    node.dispatch_job("big", payload.clone()).await.unwrap();
    assert_eq!(ledger.payloads.lock().unwrap()["big"], payload);
    let over = node
        .dispatch_job("bigger", Bytes::from(vec![b'p'; limit + 1]))
        .await;
    assert!(
        matches!(over, Err(Error::PayloadTooLarge { size, limit: l }) if size == limit + 1 && l == limit),
        "got {over:?}"
    );
    node.close().await.unwrap();
}

/// Job keys follow the map-key rule (spaces fine, `=` not), topics the name rule (no
/// spaces): a key with a space runs, the same text as a topic is refused by name, and a key
/// with `=` is refused at dispatch with `InvalidKey`.
pub async fn pool_job_keys_and_topics_have_their_own_rules(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = node(&cx).await;
    a.add_worker(rec(&ledger, "w")).await.unwrap();
    a.dispatch_job("tenant 7/report.pdf", "x").await.unwrap();
    assert_eq!(
        ledger.runs("tenant 7/report.pdf"),
        HashSet::from(["w".to_owned()])
    );
    assert!(matches!(
        a.dispatch_job("a=b", "x").await,
        Err(Error::InvalidKey { .. })
    ));
    let stream = pulse::streaming::Stream::new(
        cx.backend.clone(),
        "events",
        pulse::streaming::StreamOptions::default().with_keyspace(cx.keyspace()),
    )
    .unwrap();
    let event = pulse::streaming::NewEvent::new("done", "x").with_topic("tenant 7/report.pdf");
    assert!(matches!(
        stream.add_event(event).await,
        Err(Error::InvalidName { what: "topic", .. })
    ));
    a.close().await.unwrap();
}
