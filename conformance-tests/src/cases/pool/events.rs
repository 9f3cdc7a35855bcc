//! Pool events ([`Node::events`]) as another node sees them, and the stop context a
//! handler gets ([`JobHandler::on_stop`]): which job, its payload and why it stops.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use pulse::{
    async_trait,
    error::BoxError,
    pool::{Job, JobHandler, JobStop, PoolEvent, PoolEvents, StopReason},
};

use super::{client_node, node};
use crate::{eventually, Ctx};

/// What a handler was told at each stop: key, payload, reason, and whether the stopping
/// run's lease was still held then.
type Stops = Mutex<Vec<(String, Vec<u8>, StopReason, bool)>>;

/// A handler that implements `on_stop` only (not `stop`), recording what it is told.
#[derive(Default)]
struct Contextual(
    Stops,
    Mutex<std::collections::HashMap<String, pulse::pool::JobLease>>,
);

#[async_trait]
impl JobHandler for Contextual {
    async fn start(&self, job: &Job) -> Result<(), BoxError> {
        self.1
            .lock()
            .unwrap()
            .insert(job.key.clone(), job.lease.clone());
        Ok(())
    }
    async fn on_stop(&self, stop: &JobStop) -> Result<(), BoxError> {
        // The lease of the run is already released when the handler is told.
        let held = self
            .1
            .lock()
            .unwrap()
            .get(&stop.key)
            .is_some_and(|l| l.is_held());
        self.0
            .lock()
            .unwrap()
            .push((stop.key.clone(), stop.payload.to_vec(), stop.reason, held));
        Ok(())
    }
}

/// Collects events until `done` says the list is complete (within the patience).
async fn until(
    rx: &mut PoolEvents,
    seen: &mut Vec<PoolEvent>,
    what: &str,
    done: impl Fn(&[PoolEvent]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + crate::patience();
    while !done(seen) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) => seen.push(e),
            Ok(None) => panic!("events ended while waiting for {what}: {seen:?}"),
            Err(_) => panic!("no {what} in {seen:?}"),
        }
    }
}

/// Joins, starts, moves, stops, range changes and leaves reach another node's
/// subscriber; a handler's `on_stop` gets the key, the payload and the reason, with the
/// lease already released.
pub async fn pool_events_and_stop_reasons(cx: Ctx) {
    let handler = Arc::new(Contextual::default());
    let a = node(&cx).await;
    let observer = client_node(&cx).await;
    let mut rx = observer.events().unwrap();
    let mut seen = Vec::new();
    let w1 = a.add_worker(SharedHandler(handler.clone())).await.unwrap();
    until(&mut rx, &mut seen, "w1 joined", |s| {
        s.iter().any(|e| matches!(e, PoolEvent::WorkerJoined { worker, node, group } if worker == w1.id() && node == a.id() && group == "default"))
    })
    .await;
    let keys: Vec<String> = (0..8).map(|i| format!("job-{i}")).collect();
    for k in &keys {
        a.dispatch_job(k, format!("payload {k}")).await.unwrap();
    }
    until(&mut rx, &mut seen, "every start", |s| {
        keys.iter().all(|k| {
            s.iter().any(|e| matches!(e, PoolEvent::JobStarted { key, worker, moves: 0 } if key == k && worker == w1.id()))
        })
    })
    .await;
    // A second worker: jobs move to it, each seen as a move from w1, stopped as `Moved`.
    let w2 = a.add_worker(SharedHandler(handler.clone())).await.unwrap();
    until(&mut rx, &mut seen, "a move to w2", |s| {
        s.iter().any(|e| matches!(e, PoolEvent::JobMoved { from, to, .. } if from == w1.id() && to == w2.id()))
    })
    .await;
    let moved = handler
        .0
        .lock()
        .unwrap()
        .iter()
        .find(|(_, _, r, _)| *r == StopReason::Moved)
        .cloned()
        .expect("a stop for a move");
    assert_eq!(moved.1, format!("payload {}", moved.0).into_bytes());
    // Stopped for good: the reason and the removal.
    eventually("job-0 placed", || async { a.job_owner("job-0").is_some() }).await;
    assert!(a.stop_job("job-0").await.unwrap());
    until(&mut rx, &mut seen, "job-0 removed", |s| {
        s.iter()
            .any(|e| matches!(e, PoolEvent::JobRemoved { key } if key == "job-0"))
    })
    .await;
    eventually("job-0 stopped as Stopped", || async {
        handler
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(k, p, r, _)| k == "job-0" && *r == StopReason::Stopped && p == b"payload job-0")
    })
    .await;
    a.set_group_range("vip", &["vip:"]).await.unwrap();
    until(&mut rx, &mut seen, "ranges changed", |s| {
        s.iter().any(|e| matches!(e, PoolEvent::RangesChanged))
    })
    .await;
    // w2 removed: its jobs stop as `WorkerLeaving`, and it leaves.
    a.remove_worker(&w2).await.unwrap();
    until(&mut rx, &mut seen, "w2 left", |s| {
        s.iter()
            .any(|e| matches!(e, PoolEvent::WorkerLeft { worker } if worker == w2.id()))
    })
    .await;
    assert!(handler
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|(_, _, r, _)| *r == StopReason::WorkerLeaving));
    assert!(
        handler
            .0
            .lock()
            .unwrap()
            .iter()
            .all(|(_, _, _, held)| !held),
        "a lease was still held when its stop ran"
    );
    // The node's own subscriber sees its stops too.
    let mut local = a.events().unwrap();
    eventually("job-1 runs again after w2 left", || async {
        a.inspect().await.unwrap().job("job-1").is_some_and(|j| {
            matches!(&j.status, pulse::pool::JobStatus::Running { worker, .. } if worker == w1.id())
        })
    })
    .await;
    assert!(a.stop_job("job-1").await.unwrap());
    let mut mine = Vec::new();
    until(&mut local, &mut mine, "job-1 stopped here", |s| {
        s.iter().any(|e| matches!(e, PoolEvent::JobStopped { key, reason: StopReason::Stopped, .. } if key == "job-1"))
    })
    .await;
    a.close().await.unwrap();
    observer.close().await.unwrap();
    // A closed node's subscribers end, once drained.
    tokio::time::timeout(Duration::from_secs(5), async {
        while local.recv().await.is_some() {}
    })
    .await
    .expect("the subscription ends with its node");
    assert!(observer.events().is_err(), "a closed node has no events");
}

/// Lets one handler serve several workers.
struct SharedHandler(Arc<Contextual>);

#[async_trait]
impl JobHandler for SharedHandler {
    async fn start(&self, job: &Job) -> Result<(), BoxError> {
        self.0.start(job).await
    }
    async fn on_stop(&self, stop: &JobStop) -> Result<(), BoxError> {
        self.0.on_stop(stop).await
    }
}
