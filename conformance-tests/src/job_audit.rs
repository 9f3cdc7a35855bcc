//! A job audit for fault tests outside the suite: a handler that records which worker runs
//! which job, and the overlaps it saw (a job started while another worker still ran it).
//! The suite's own pool cases keep a richer ledger (`cases::pool`).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use pulse::{
    async_trait,
    error::BoxError,
    pool::{Job, JobHandler},
};

/// Which worker runs which job, and every overlap seen.
#[derive(Default, Debug)]
pub struct JobAudit {
    running: Mutex<HashMap<String, HashSet<String>>>,
    overlaps: Mutex<Vec<String>>,
}

impl JobAudit {
    /// A new, shared audit.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A handler that records into this audit as worker `label`.
    pub fn handler(self: &Arc<Self>, label: &str) -> AuditedHandler {
        AuditedHandler {
            label: label.to_owned(),
            audit: self.clone(),
        }
    }

    /// True when every job in `keys` runs on exactly one worker.
    pub fn exactly_once(&self, keys: &[String]) -> bool {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .all(|k| running.get(k).is_some_and(|s| s.len() == 1))
    }

    /// True when no job runs anywhere.
    pub fn none_running(&self) -> bool {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.values().all(HashSet::is_empty)
    }

    /// Every overlap seen: "`key` on {workers} and `worker`".
    pub fn overlaps(&self) -> Vec<String> {
        self.overlaps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What runs where, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "{:?}",
            self.running.lock().unwrap_or_else(|p| p.into_inner())
        )
    }
}

/// Records starts and stops into a [`JobAudit`].
#[derive(Debug)]
pub struct AuditedHandler {
    label: String,
    audit: Arc<JobAudit>,
}

#[async_trait]
impl JobHandler for AuditedHandler {
    async fn start(&self, job: &Job) -> Result<(), BoxError> {
        let mut running = self.audit.running.lock().unwrap_or_else(|p| p.into_inner());
        let set = running.entry(job.key.clone()).or_default();
        if !set.is_empty() {
            self.audit
                .overlaps
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("{} on {set:?} and {}", job.key, self.label));
        }
        set.insert(self.label.clone());
        Ok(())
    }

    async fn stop(&self, key: &str) -> Result<(), BoxError> {
        self.audit
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_owned())
            .or_default()
            .remove(&self.label);
        Ok(())
    }
}
