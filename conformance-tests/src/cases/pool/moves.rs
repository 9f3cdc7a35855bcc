//! Jobs moving: a worker removed, a node closed or crashed, a worker joining, churn, and a
//! node paused past its TTL — never two runs at once, no job lost.

use super::*;

/// Removing a worker moves its jobs to the remaining worker, never running one twice.
pub async fn pool_remove_worker_moves_jobs(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = node(&cx).await;
    let w1 = a.add_worker(rec(&ledger, "w1")).await.unwrap();
    a.add_worker(rec(&ledger, "w2")).await.unwrap();
    let ks = keys(20);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    eventually("all running once", || async { ledger.exactly_once(&ks) }).await;
    a.remove_worker(&w1).await.unwrap();
    assert!(w1.is_stopped() && w1.jobs().is_empty());
    eventually("all moved to w2", || async {
        ledger.exactly_once(&ks) && ks.iter().all(|k| ledger.runs(k).contains("w2"))
    })
    .await;
    assert_eq!(a.job_keys().len(), 20, "no job lost");
    ledger.assert_no_overlap();
    a.close().await.unwrap();
}

/// Closing a node moves its jobs to another node.
pub async fn pool_close_moves_jobs(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    a.add_worker(rec(&ledger, "a")).await.unwrap();
    let ks = keys(10);
    for k in &ks {
        b.dispatch_job(k, "x").await.unwrap();
    }
    b.add_worker(rec(&ledger, "b")).await.unwrap();
    eventually("spread", || async { ledger.exactly_once(&ks) }).await;
    a.close().await.unwrap();
    assert!(a.is_closed());
    eventually("all on b", || async {
        ledger.exactly_once(&ks) && ks.iter().all(|k| ledger.runs(k).contains("b"))
    })
    .await;
    let moved = ledger
        .starts
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, l, requeued)| l == "b" && *requeued)
        .count();
    assert!(moved > 0, "moved jobs are started as requeued");
    ledger.assert_no_overlap();
    b.close().await.unwrap();
}

/// A crashed node's jobs restart elsewhere once its workers' liveness expires.
pub async fn pool_crash_recovers_jobs(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    a.add_worker(rec(&ledger, "a")).await.unwrap();
    let ks = keys(10);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    b.add_worker(rec(&ledger, "b")).await.unwrap();
    eventually("spread", || async { ledger.exactly_once(&ks) }).await;
    a.simulate_crash().await;
    ledger.crash("a");
    eventually("recovered on b", || async {
        ledger.exactly_once(&ks) && ks.iter().all(|k| ledger.runs(k).contains("b"))
    })
    .await;
    eventually("dead worker removed", || async {
        b.pool_workers().len() == 1
    })
    .await;
    ledger.assert_no_overlap();
    b.close().await.unwrap();
}

/// Adding a worker moves only its share of jobs; every job still runs exactly once.
pub async fn pool_rebalance_on_join(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = node(&cx).await;
    let w1 = a.add_worker(rec(&ledger, "w1")).await.unwrap();
    let ks = keys(40);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    let w2 = a.add_worker(rec(&ledger, "w2")).await.unwrap();
    // Done when every job runs where rendezvous hashing puts it (not merely when some moved:
    // moves happen one by one).
    let ids = [w1.id().to_owned(), w2.id().to_owned()];
    let label = |k: &str| {
        if pulse::pool::route(k, ids.iter().map(String::as_str)) == Some(ids[1].as_str()) {
            "w2"
        } else {
            "w1"
        }
    };
    eventually("rebalanced", || async {
        ledger.exactly_once(&ks) && ks.iter().all(|k| ledger.runs(k).contains(label(k)))
    })
    .await;
    let on_w2 = ks.iter().filter(|k| ledger.runs(k).contains("w2")).count();
    assert!(
        (8..=32).contains(&on_w2),
        "about half should move, got {on_w2}"
    );
    assert_eq!(
        ledger.stops.lock().unwrap().len(),
        on_w2,
        "only moved jobs were stopped"
    );
    ledger.assert_no_overlap();
    a.close().await.unwrap();
}

/// Churn: 200 jobs while workers come and go across 3 nodes; at the end every job runs on
/// exactly one worker and no job ever ran twice at the same time.
pub async fn pool_churn(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let nodes = [node(&cx).await, node(&cx).await, node(&cx).await];
    let mut workers = first_workers(&nodes, &ledger).await;
    let ks = keys(200);
    for (i, k) in ks.iter().enumerate() {
        nodes[i % 3].dispatch_job(k, "x").await.unwrap();
    }
    for round in 1..=6 {
        let i = round % 3;
        let label = format!("n{i}-w{round}");
        workers.push((i, nodes[i].add_worker(rec(&ledger, &label)).await.unwrap()));
        if round % 2 == 0 {
            let (j, w) = workers.remove(0);
            nodes[j].remove_worker(&w).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // let moves overlap the next round
    }
    eventually("every job runs exactly once", || async {
        ledger.exactly_once(&ks)
    })
    .await;
    ledger.assert_no_overlap();
    let owners: HashSet<String> = ks.iter().filter_map(|k| nodes[0].job_owner(k)).collect();
    assert!(owners.len() > 1, "jobs are spread");
    for n in &nodes {
        n.close().await.unwrap();
    }
}

/// A node on its own runtime thread, which can be frozen like a SIGSTOPped process.
struct Pausable {
    handle: tokio::runtime::Handle,
    pause: tokio::sync::mpsc::UnboundedSender<Duration>,
}

impl Pausable {
    fn start() -> Pausable {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (pause, mut pauses) = tokio::sync::mpsc::unbounded_channel::<Duration>();
            tx.send((rt.handle().clone(), pause)).unwrap();
            rt.block_on(async move {
                while let Some(d) = pauses.recv().await {
                    std::thread::sleep(d); // the whole runtime stands still
                }
            });
        });
        let (handle, pause) = rx.recv().unwrap();
        Pausable { handle, pause }
    }
}

/// A node paused past the worker TTL loses its jobs to another node, which runs them;
/// on resume it stops its stale copies before anything else (fencing) and never runs a
/// job at the same time as its new owner. No job is lost.
pub async fn pool_paused_node_fences_itself(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let frozen = Pausable::start();
    // A TTL the other node can keep renewing within on a loaded test machine (the suite
    // runs every case at once): the freeze below is 4 x TTL.
    let ttl = Duration::from_millis(1500);
    let options = opts(&cx).with_worker_ttl(ttl);
    let (backend, l) = (cx.backend.clone(), ledger.clone());
    let b_options = options.clone();
    let a = frozen
        .handle
        .spawn(async move {
            let a = Node::join(backend, "pool", options).await.unwrap();
            a.add_worker(rec(&l, "a")).await.unwrap();
            a
        })
        .await
        .unwrap();
    let ks = keys(10);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    let b = Node::join(cx.backend.clone(), "pool", b_options)
        .await
        .unwrap();
    b.add_worker(rec(&ledger, "b")).await.unwrap();
    eventually("spread over a and b", || async { ledger.exactly_once(&ks) }).await;
    let on_a: Vec<String> = ks
        .iter()
        .filter(|k| ledger.runs(k).contains("a"))
        .cloned()
        .collect();
    assert!(!on_a.is_empty());
    let frozen_leases: Vec<JobLease> = {
        let leases = ledger.leases.lock().unwrap();
        on_a.iter()
            .flat_map(|k| leases.get(k).into_iter().flatten())
            .filter(|(label, _)| label == "a")
            .map(|(_, lease)| lease.clone())
            .collect()
    };
    // (Under heavy load a may already have fenced itself: such leases are lost already.)
    // Freeze a for 4 x TTL. Its jobs are frozen with it: they do not run meanwhile.
    frozen.pause.send(ttl * 4).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    ledger.crash("a");
    // b must take them while a is frozen (once a is back they may route back to it).
    let deadline = tokio::time::Instant::now() + ttl * 4;
    while !on_a.iter().all(|k| ledger.runs(k).contains("b")) {
        if tokio::time::Instant::now() >= deadline {
            let state: Vec<String> = on_a
                .iter()
                .map(|k| format!("{k}: runs {:?}, owner {:?}", ledger.runs(k), b.job_owner(k)))
                .collect();
            panic!("b did not take a's jobs while a was frozen: {state:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // After the pause a fences (stops its stale copies) and jobs settle once each.
    eventually("a stopped its stale copies", || async {
        let stops = ledger.stops.lock().unwrap();
        on_a.iter()
            .all(|k| stops.iter().any(|(sk, l)| sk == k && l == "a"))
    })
    .await;
    eventually("every job runs exactly once", || async {
        ledger.exactly_once(&ks)
    })
    .await;
    ledger.assert_no_overlap();
    assert_eq!(b.job_keys().len(), 10, "no job lost");
    // The frozen runs' leases lapsed before b took the jobs (checked at each start) and
    // stay lapsed although a renews again under a new generation (its new runs, if the
    // jobs came back, have new leases).
    for lease in &frozen_leases {
        assert!(!lease.is_held(), "a stale lease of a frozen run is held");
    }
    let closing = a.clone();
    frozen
        .handle
        .spawn(async move { closing.close().await.unwrap() })
        .await
        .unwrap();
    b.close().await.unwrap();
}
