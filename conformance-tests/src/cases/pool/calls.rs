//! Job calls ([`Node::call`]): the answer of the worker running the job, typed errors for
//! every way it cannot answer, and — while jobs move between workers — each call handled
//! by at most one owner, once, and only while that owner runs the job.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use pulse::{
    async_trait,
    error::BoxError,
    pool::{CallError, Job, JobCall, JobHandler, Node},
    Error,
};

use super::{keys, opts, rec, Ledger, Plain, Recorder};
use crate::{eventually, Ctx};

/// Every call a handler answered: (call number, handler label, whether that handler ran
/// the job, as the ledger and the call's lease say).
#[derive(Default)]
struct CallLog(Mutex<Vec<(u64, String, bool)>>);

/// The recording handler, answering calls by their payload: `echo:<n>` → `<label>:<n>`,
/// `coded` → a [`CallError`], `boom` → a plain error, `panic` → a panic, `big` → an
/// answer over the pool's payload limit, `slow` → an answer after 3 s.
struct Answering {
    rec: Recorder,
    log: Arc<CallLog>,
}

#[async_trait]
impl JobHandler for Answering {
    async fn start(&self, job: &Job) -> Result<(), BoxError> {
        self.rec.start(job).await
    }
    async fn stop(&self, key: &str) -> Result<(), BoxError> {
        self.rec.stop(key).await
    }
    async fn call(&self, call: &JobCall) -> Result<Bytes, BoxError> {
        let text = String::from_utf8_lossy(&call.payload).into_owned();
        let label = &self.rec.label;
        if let Some(n) = text.strip_prefix("echo:") {
            let n: u64 = n.parse()?;
            // While the call's lease is held the job was not stopped here (a stop revokes
            // the lease before the handler's `stop`): the ledger must show it running.
            // Either way this worker must have started the job.
            let held = call.lease.is_held();
            let ledger = &self.rec.ledger;
            let ran = (!held || ledger.runs(&call.key).contains(label))
                && ledger
                    .starts
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(k, l, _)| k == &call.key && l == label);
            self.log.0.lock().unwrap().push((n, label.clone(), ran));
            return Ok(Bytes::from(format!("{label}:{n}")));
        }
        match text.as_str() {
            "coded" => Err(CallError::new("not_found", "no such thing").into()),
            "boom" => Err("it broke".into()),
            "panic" => panic!("a handler bug"),
            "big" => Ok(Bytes::from(vec![b'x'; 4096])),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok(Bytes::from_static(b"late"))
            }
            _ => Ok(call.payload.clone()),
        }
    }
}

fn answering(ledger: &Arc<Ledger>, log: &Arc<CallLog>, label: &str) -> Answering {
    Answering {
        rec: rec(ledger, label),
        log: log.clone(),
    }
}

async fn joined(cx: &Ctx) -> Node {
    Node::join(cx.backend.clone(), "pool", opts(cx).with_max_payload(1024))
        .await
        .unwrap()
}

const T: Duration = Duration::from_secs(5);

/// A call reaches the handler of the worker running the job, from any node, client-only
/// included; every way of failing is typed.
pub async fn pool_job_call_answers_from_the_running_worker(cx: Ctx) {
    let (ledger, log) = (Arc::new(Ledger::default()), Arc::new(CallLog::default()));
    let (a, b) = (joined(&cx).await, joined(&cx).await);
    a.add_worker(answering(&ledger, &log, "a")).await.unwrap();
    b.add_worker(answering(&ledger, &log, "b")).await.unwrap();
    let client = Node::join(
        cx.backend.clone(),
        "pool",
        opts(&cx).with_max_payload(1024).with_client_only(true),
    )
    .await
    .unwrap();
    let ks = keys(8);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    for (n, k) in ks.iter().enumerate() {
        eventually("owner known", || async { client.job_owner(k).is_some() }).await;
        let answer = client.call(k, format!("echo:{n}"), T).await.unwrap();
        let runs = ledger.runs(k);
        assert_eq!(runs.len(), 1);
        let owner = runs.into_iter().next().unwrap();
        assert_eq!(
            answer,
            Bytes::from(format!("{owner}:{n}")),
            "from the owner"
        );
    }
    let k = &ks[0];
    let remote = |r: pulse::Result<Bytes>| match r {
        Err(Error::Remote { code, message }) => (code, message),
        other => panic!("want a remote error, got {other:?}"),
    };
    assert_eq!(
        remote(client.call(k, "coded", T).await),
        ("not_found".to_owned(), "no such thing".to_owned())
    );
    assert_eq!(remote(client.call(k, "boom", T).await).0, "handler_error");
    assert_eq!(remote(client.call(k, "panic", T).await).0, "panicked");
    assert_eq!(
        remote(client.call(k, "big", T).await).0,
        "payload_too_large"
    );
    // Bounded: a slow handler is a timeout at the caller's deadline.
    let r = client.call(k, "slow", Duration::from_millis(300)).await;
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    // The node is still fine after all that.
    assert_eq!(client.call(k, "ok", T).await.unwrap(), Bytes::from("ok"));
    // No such job; bad arguments.
    let r = client.call("absent", "x", T).await;
    assert!(matches!(r, Err(Error::NotRunning { .. })), "{r:?}");
    for bad in [Duration::ZERO, Duration::from_secs(25 * 3600)] {
        let r = client.call(k, "x", bad).await;
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    }
    let r = client.call(k, vec![0u8; 2048], T).await;
    assert!(matches!(r, Err(Error::PayloadTooLarge { .. })), "{r:?}");
    let r = client.call("", "x", T).await;
    assert!(matches!(r, Err(Error::InvalidKey { .. })), "{r:?}");
    for n in [&a, &b, &client] {
        n.close().await.unwrap();
    }
    let r = client.call(k, "x", T).await;
    assert!(matches!(r, Err(Error::Closed { .. })), "{r:?}");
}

/// A handler without `call` answers `unsupported`; a dispatched job without a worker is
/// waited for and then reported not running, within the deadline.
pub async fn pool_job_call_unsupported_and_unplaced(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = joined(&cx).await;
    let w = a.add_worker(Plain(ledger.clone())).await.unwrap();
    a.dispatch_job("k", "x").await.unwrap();
    eventually("owner known", || async { a.job_owner("k").is_some() }).await;
    match a.call("k", "x", T).await {
        Err(Error::Remote { code, .. }) => assert_eq!(code, "unsupported"),
        other => panic!("{other:?}"),
    }
    a.remove_worker(&w).await.unwrap();
    eventually("no owner", || async { a.job_owner("k").is_none() }).await;
    let started = tokio::time::Instant::now();
    let r = a.call("k", "x", Duration::from_millis(400)).await;
    assert!(matches!(r, Err(Error::NotRunning { .. })), "{r:?}");
    assert!(started.elapsed() >= Duration::from_millis(300), "waited");
    a.close().await.unwrap();
}

/// While workers join and leave (jobs moving all the time), calls go on: each call is
/// answered by at most one handler, once, by one that ran the job while answering; the
/// rest fail typed (not running, or a timeout while a job moved). No job runs twice.
pub async fn pool_job_calls_during_moves_reach_one_owner(cx: Ctx) {
    let (ledger, log) = (Arc::new(Ledger::default()), Arc::new(CallLog::default()));
    let nodes = [joined(&cx).await, joined(&cx).await];
    let mut workers = vec![(
        0,
        nodes[0]
            .add_worker(answering(&ledger, &log, "w0"))
            .await
            .unwrap(),
    )];
    let ks = keys(12);
    for k in &ks {
        nodes[0].dispatch_job(k, "x").await.unwrap();
    }
    let (done_tx, done) = tokio::sync::watch::channel(false);
    let caller = {
        let (node, ks) = (nodes[1].clone(), ks.clone());
        tokio::spawn(async move {
            // Calls back to back until the churn is over.
            let mut outcomes = HashMap::new();
            let mut n = 0u64;
            while !*done.borrow() {
                let k = &ks[n as usize % ks.len()];
                let r = node
                    .call(k, format!("echo:{n}"), Duration::from_secs(2))
                    .await;
                outcomes.insert(n, r);
                n += 1;
            }
            outcomes
        })
    };
    for round in 1..=8 {
        let i = round % 2;
        let label = format!("w{round}");
        let w = nodes[i]
            .add_worker(answering(&ledger, &log, &label))
            .await
            .unwrap();
        workers.push((i, w));
        if workers.len() > 2 {
            let (j, w) = workers.remove(0);
            nodes[j].remove_worker(&w).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("every job placed", || async { ledger.exactly_once(&ks) }).await;
    done_tx.send(true).unwrap();
    let outcomes = caller.await.unwrap();
    let handled = log.0.lock().unwrap().clone();
    let mut times: HashMap<u64, usize> = HashMap::new();
    for (n, label, running) in &handled {
        *times.entry(*n).or_default() += 1;
        assert!(
            running,
            "call {n} answered by {label}, which did not run the job"
        );
    }
    assert!(
        times.values().all(|&t| t == 1),
        "a call handled twice: {times:?}"
    );
    let mut answered = 0;
    for (n, r) in &outcomes {
        match r {
            Ok(bytes) => {
                answered += 1;
                let (label, _, _) = handled
                    .iter()
                    .map(|(m, l, r)| (l, m, r))
                    .find(|(_, m, _)| *m == n)
                    .unwrap();
                assert_eq!(bytes, &Bytes::from(format!("{label}:{n}")));
            }
            Err(Error::NotRunning { .. } | Error::Timeout { .. }) => {}
            Err(e) => panic!("call {n}: {e:?}"),
        }
    }
    assert!(
        answered >= 150,
        "most calls are answered: {answered} of 300"
    );
    ledger.assert_no_overlap();
    for n in &nodes {
        n.close().await.unwrap();
    }
}
