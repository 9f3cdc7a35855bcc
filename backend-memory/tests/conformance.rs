//! The shared conformance suite, run against the memory backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use pulse_conformance::{conformance_suite, BoxFuture, Faults, Fixture};
use pulse_memory::MemoryBackend;

struct MemoryFaults(MemoryBackend);

impl Faults for MemoryFaults {
    fn kill_subscriptions(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.0.interrupt_subscriptions() })
    }
}

async fn fixture() -> Option<Fixture> {
    let backend = MemoryBackend::new();
    Some(Fixture::new(
        Arc::new(backend.clone()),
        Arc::new(MemoryFaults(backend)),
    ))
}

conformance_suite!(fixture);
