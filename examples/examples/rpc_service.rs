//! A price service: responders answer requests sent to a stream, callers await answers.
//!
//! With no argument, one process runs a responder and a caller (memory backend by
//! default). Over Redis, run them as two processes:
//!
//! ```text
//! PULSE_REDIS_URL=redis://127.0.0.1:6379 cargo run --example rpc_service -- responder
//! PULSE_REDIS_URL=redis://127.0.0.1:6379 cargo run --example rpc_service -- caller
//! ```
//!
//! The caller asks for three prices: one the responder knows, one it does not (a typed
//! `Error::Remote`), and one it takes long to compute — heartbeats keep that request alive
//! past the caller's heartbeat window, and its deadline travels with it.

use std::{sync::Arc, time::Duration};

use pulse::{
    rpc::RequestOptions,
    streaming::{NewEvent, Sink, SinkOptions, Start, Stream, StreamOptions},
    Backend, Error,
};

const SERVICE: &str = "prices";

/// A responder: a member of the service stream's sink.
async fn responder(backend: Arc<dyn Backend>) -> pulse::Result<Sink> {
    let stream = Stream::new(backend, SERVICE, StreamOptions::default())?;
    let sink = stream
        .new_sink("pricer", SinkOptions::default().with_start(Start::Newest))
        .await?;
    println!("responder {} ready", sink.consumer());
    Ok(sink)
}

/// Answers requests (`stop_after` of them, or until the process ends).
async fn serve(sink: Sink, stop_after: Option<usize>) -> pulse::Result<()> {
    let mut requests = sink.subscribe()?;
    let mut answered = 0;
    while let Some(request) = requests.recv().await {
        let item = String::from_utf8_lossy(&request.payload).into_owned();
        let left = request
            .deadline()
            .and_then(|d| d.duration_since(std::time::SystemTime::now()).ok());
        println!(
            "request {item:?} (attempt {:?}, {left:?} left)",
            request.attempt()
        );
        match item.as_str() {
            "tea" => sink.reply(&request, "3 EUR").await?,
            "saffron" => {
                tokio::time::sleep(Duration::from_millis(800)).await; // heartbeats meanwhile
                sink.reply(&request, "12 EUR a gram").await?;
            }
            _ => {
                sink.reply_error(&request, "not_found", &format!("no price for {item}"))
                    .await?
            }
        }
        answered += 1;
        if stop_after == Some(answered) {
            break;
        }
    }
    sink.close().await
}

async fn caller(backend: Arc<dyn Backend>) -> pulse::Result<()> {
    let stream = Stream::new(backend, SERVICE, StreamOptions::default())?;
    let options = RequestOptions::default()
        .with_timeout(Duration::from_secs(5))
        .with_heartbeat(Duration::from_millis(200))
        .with_accept_timeout(Duration::from_secs(2));
    for item in ["tea", "unicorn", "saffron"] {
        match stream
            .request(NewEvent::new("price", item), options.clone())
            .await
        {
            Ok(reply) => println!("{item}: {}", String::from_utf8_lossy(&reply.payload)),
            Err(Error::Remote { code, message }) => println!("{item}: {code} ({message})"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    match std::env::args().nth(1).as_deref() {
        Some("responder") => serve(responder(backend).await?, None).await,
        Some("caller") => caller(backend).await,
        _ => {
            let serving = tokio::spawn(serve(responder(backend.clone()).await?, Some(3)));
            caller(backend).await?;
            match serving.await {
                Ok(served) => served,
                Err(e) => Err(Error::backend("responder task", e.to_string())),
            }
        }
    }
}
