//! Job calls: ask a running job a question and get its answer, wherever it runs.
//!
//! Each job is a meter that counts ticks while its worker holds its lease. A client-only
//! node calls the jobs by key (`Node::call`): the call reaches the one worker running the
//! job, even after the job moved to a worker that joined later, and a job that does not
//! exist is a typed `Error::NotRunning`. Memory backend by default; set `PULSE_REDIS_URL`
//! to run it on Redis.
//!
//! ```text
//! cargo run --example pool_job_call
//! ```

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use pulse::{
    error::BoxError,
    pool::{CallError, Job, JobCall, JobHandler, Node, NodeOptions},
    Error,
};

/// Counts ticks for each job it runs; answers `ticks` and `reset` calls.
struct Meters {
    label: String,
    counts: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

#[pulse::async_trait]
impl JobHandler for Meters {
    async fn start(&self, job: &Job) -> Result<(), BoxError> {
        let count = Arc::new(AtomicU64::new(0));
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.key.clone(), count.clone());
        let lease = job.lease.clone();
        tokio::spawn(async move {
            while lease.is_held() {
                count.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        println!("  {} starts {}", self.label, job.key);
        Ok(())
    }

    async fn stop(&self, key: &str) -> Result<(), BoxError> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        println!("  {} stops {key}", self.label);
        Ok(())
    }

    async fn call(&self, call: &JobCall) -> Result<Bytes, BoxError> {
        let count = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&call.key)
            .cloned()
            .ok_or_else(|| CallError::new("gone", "not running here any more"))?;
        match &call.payload[..] {
            b"ticks" => Ok(Bytes::from(format!(
                "{} ticks on {}",
                count.load(Ordering::Relaxed),
                self.label
            ))),
            b"reset" => {
                count.store(0, Ordering::Relaxed);
                Ok(Bytes::from_static(b"reset"))
            }
            other => Err(CallError::new(
                "unknown_question",
                format!("cannot answer {:?}", String::from_utf8_lossy(other)),
            )
            .into()),
        }
    }
}

fn meters(label: &str) -> Meters {
    Meters {
        label: label.to_owned(),
        counts: Mutex::new(HashMap::new()),
    }
}

async fn ask(client: &Node, key: &str, question: &'static str) -> pulse::Result<()> {
    match client.call(key, question, Duration::from_secs(5)).await {
        Ok(answer) => println!("{key} {question}? {}", String::from_utf8_lossy(&answer)),
        Err(Error::Remote { code, message }) => println!("{key} {question}? {code}: {message}"),
        Err(Error::NotRunning { .. }) => println!("{key} {question}? no such job running"),
        Err(e) => return Err(e),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    let pool = format!("meters-{}", pulse_examples::run_id());
    let options = NodeOptions::default().with_worker_ttl(Duration::from_secs(3));
    let a = Node::join(backend.clone(), &pool, options.clone()).await?;
    let b = Node::join(backend.clone(), &pool, options.clone()).await?;
    let client = Node::join(backend, &pool, options.with_client_only(true)).await?;

    a.add_worker(meters("worker-a")).await?;
    let keys = ["meter-eu", "meter-us", "meter-ap", "meter-af", "meter-sa"];
    for key in keys {
        client.dispatch_job(key, "").await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for key in keys {
        ask(&client, key, "ticks").await?;
    }
    ask(&client, "meter-eu", "weather").await?;
    ask(&client, "meter-mars", "ticks").await?;

    println!("worker-b joins: some meters move to it");
    b.add_worker(meters("worker-b")).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for key in keys {
        ask(&client, key, "ticks").await?;
    }
    ask(&client, "meter-us", "reset").await?;
    ask(&client, "meter-us", "ticks").await?;

    for key in keys {
        client.stop_job(key).await?;
    }
    // A stopped job answers no more calls once its worker stopped it.
    while client.job_owner("meter-eu").is_some() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ask(&client, "meter-eu", "ticks").await?;
    client.close().await?;
    b.close().await?;
    a.close().await?;
    Ok(())
}
