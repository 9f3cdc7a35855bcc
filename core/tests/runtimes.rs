//! Handles that outlive their runtime: the per-process inbox and movers are registered
//! by backend handle, and a runtime that shuts down drops their tasks. A request (or a
//! reader) on the same backend in a later runtime must get a live inbox (mover), not
//! the dead one left in the registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use pulse::{
    rpc::RequestOptions,
    streaming::{NewEvent, ReaderOptions, SinkOptions, Start, Stream, StreamOptions},
    Backend,
};

#[test]
fn a_later_runtime_gets_a_live_inbox_and_mover() {
    let backend: Arc<dyn Backend> = Arc::new(pulse_memory::MemoryBackend::new());
    for round in 0..3 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let backend = backend.clone();
        rt.block_on(async move {
            let s = Stream::new(backend, "svc", StreamOptions::default()).unwrap();
            let sink = s
                .new_sink("r", SinkOptions::default().with_start(Start::Newest))
                .await
                .unwrap();
            let mut requests = sink.subscribe().unwrap();
            let answering = async {
                let r = requests.recv().await.unwrap();
                sink.reply(&r, format!("round {round}")).await.unwrap();
            };
            let options = RequestOptions::default().with_timeout(Duration::from_secs(5));
            let (reply, ()) = tokio::join!(s.request(NewEvent::new("q", "x"), options), answering);
            assert_eq!(
                reply.unwrap().payload,
                format!("round {round}").into_bytes()
            );
            // A delayed event reaches a reader: its mover is alive too.
            let reader = s
                .new_reader(ReaderOptions::default().with_start(Start::Newest))
                .await
                .unwrap();
            let mut events = reader.subscribe().unwrap();
            s.add_delayed(NewEvent::new("later", "x").deliver_after(Duration::from_millis(10)))
                .await
                .unwrap();
            let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .expect("the delayed event, from a live mover")
                .unwrap();
            assert_eq!(e.name, "later");
            // Handles kept past the runtime: the sink and reader are leaked into the
            // next round's registry on purpose (not closed).
            std::mem::forget(sink);
            std::mem::forget(reader);
        });
        drop(rt);
    }
}
