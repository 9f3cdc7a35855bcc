//! The pool-wide ticker and the scheduler built on it.

use super::*;

/// Each tick of a shared ticker goes to exactly one node; `stop` ends it everywhere.
pub async fn pool_ticker_ticks_once_per_slot(cx: Ctx) {
    let (a, b) = (node(&cx).await, node(&cx).await);
    let mut ta = a.new_ticker("t", Duration::from_millis(40)).await.unwrap();
    let mut tb = b.new_ticker("t", Duration::from_millis(40)).await.unwrap();
    let mut slots = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            Some(t) = ta.recv() => slots.push(t.slot),
            Some(t) = tb.recv() => slots.push(t.slot),
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
    let unique: HashSet<u64> = slots.iter().copied().collect();
    assert_eq!(unique.len(), slots.len(), "a slot ticked twice: {slots:?}");
    assert!(slots.len() >= 8, "too few ticks: {slots:?}");
    assert!(matches!(
        a.new_ticker("bad name", Duration::from_millis(10)).await,
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        a.new_ticker("z", Duration::ZERO).await,
        Err(Error::InvalidArgument(_))
    ));
    ta.stop().await.unwrap();
    let ended = tokio::time::timeout(crate::patience(), async {
        while tb.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "stop did not reach the other node");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

struct Script {
    plans: Mutex<Vec<pulse::pool::Plan>>,
}

#[async_trait]
impl pulse::pool::Producer for Script {
    fn name(&self) -> &str {
        "nightly"
    }
    async fn plan(&self) -> Result<pulse::pool::Plan, BoxError> {
        let mut plans = self.plans.lock().unwrap();
        Ok(if plans.is_empty() {
            pulse::pool::Plan::done()
        } else {
            plans.remove(0)
        })
    }
}

/// A schedule applies each plan once per interval on one node, and a finished plan stops
/// its jobs and its ticker.
pub async fn pool_scheduler_applies_plans(cx: Ctx) {
    use pulse::pool::Plan;
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    a.add_worker(rec(&ledger, "w")).await.unwrap();
    let plans = vec![
        Plan::new().start("j1", "p1"),
        Plan::new().stop("j1").start("j2", "p2"),
        Plan::new().start("j1", "p1").start("j3", "p3").stop_all(),
    ];
    let script = Script {
        plans: Mutex::new(plans),
    };
    let sa = a
        .schedule(script, Duration::from_millis(150))
        .await
        .unwrap();
    eventually("schedule finished", || async { sa.is_finished() }).await;
    eventually("its jobs stopped", || async {
        ledger.running_count() == 0 && a.job_keys().is_empty()
    })
    .await;
    let started: Vec<String> = ledger
        .starts
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _, _)| k.clone())
        .collect();
    assert_eq!(started, ["j1", "j2", "j1", "j3"], "plans applied in order");
    assert_eq!(sa.last_error(), None);
    let schedule_map = cx.keyspace().pool_map("pool", "schedule:nightly").unwrap();
    let left = cx.backend.hash_get_all(&schedule_map.hash).await.unwrap();
    assert!(
        left.iter().all(|(k, _)| k.starts_with('=')),
        "the schedule's records were reset: {left:?}"
    );
    assert!(b.job_keys().is_empty());
    ledger.assert_no_overlap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}
