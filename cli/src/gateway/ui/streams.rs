//! A stream's page: its figures, its sinks (pending per consumer, lag), pending per sink
//! as a chart, a live tail with a subject filter, and each sink's dead letters with
//! inspect, requeue and purge.

use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
    Form,
};
use maud::{html, Markup};
use pulse::{
    backend::EntryId,
    streaming::{DeadLetter, Filter, ReaderOptions, Start},
};
use serde::Deserialize;

use super::{back, charts, encode, failure, layout, text_or_hex, trusted, Flash};
use crate::{
    gateway::{
        error::ApiError,
        sse::{self, Closing, Frame},
        AppState,
    },
    output::{ago, event_json, span},
};

/// Dead letters listed per sink.
const DEAD_LIMIT: usize = 100;

#[derive(Debug, Default, Deserialize)]
pub(super) struct PageQuery {
    /// The live tail's subject pattern.
    subject: Option<String>,
    #[serde(flatten)]
    flash: Flash,
}

pub(super) async fn page(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    app.sampler.start(app.backend.clone(), app.keyspace.clone());
    let rates = app.sampler.rates().remove(&name).unwrap_or_default();
    let here = format!("/ui/streams/{}", encode(&name));
    let stream = match app.stream(&name) {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let state = stream.state().await;
    let mut dead = Vec::new();
    if let Ok(state) = &state {
        for sink in &state.sinks {
            let letters = match stream.dead_letters(&sink.name) {
                Ok(d) => d.list(DEAD_LIMIT).await,
                Err(e) => Err(e),
            };
            dead.push((sink.name.clone(), letters));
        }
    }
    let subject = query.subject.clone().unwrap_or_default();
    let tail = format!(
        "{here}/tail{}",
        if subject.is_empty() {
            String::new()
        } else {
            format!("?subject={}", encode(&subject))
        }
    );
    let body = html! {
        (query.flash.markup())
        @match &state {
            Err(e) => (failure("could not read the stream", e)),
            Ok(s) => {
                dl.figures {
                    dt { "Length" } dd { (s.length) }
                    dt { "First ID" } dd { (s.first_id.map_or("-".into(), |i| i.to_string())) }
                    dt { "Last ID" } dd { (s.last_id) }
                    dt { "Events/s" }
                    dd {
                        (rates.last().map_or("- (sampled every 2 s)".into(), |r| format!("{r:.1}")))
                        " "
                        (trusted(charts::sparkline(&rates, "events per second, last two minutes", 200, 24)))
                    }
                }
                section aria-labelledby="sinks" {
                    h2 #sinks { "Sinks (" (s.sinks.len()) ")" }
                    @if s.sinks.is_empty() { p { "No sinks." } } @else {
                        table {
                            thead { tr { th { "Sink" } th.num { "Pending" } th.num { "Lag" } th { "Last delivered" } th { "Consumers (pending, idle)" } } }
                            tbody {
                                @for k in &s.sinks {
                                    tr {
                                        td { (k.name) }
                                        td.num { (k.pending) }
                                        td.num { (k.lag.map_or("-".into(), |n| n.to_string())) }
                                        td { (k.last_delivered) }
                                        td { ul.inline { @for c in &k.consumers { li { (c.name) " (" (c.pending) ", " (span(c.idle)) ")" } } } }
                                    }
                                }
                            }
                        }
                        @let pending: Vec<(String, u64)> = s.sinks.iter().map(|k| (k.name.clone(), k.pending)).collect();
                        figure {
                            (trusted(charts::bars(&pending, "pending events per sink")))
                            figcaption { "Pending per sink" }
                        }
                    }
                }
            }
        }
        section aria-labelledby="tail-title" {
            h2 #tail-title { "Live tail" }
            form.search method="get" action=(here) {
                label for="subject" { "Subject pattern" }
                input #subject name="subject" value=(subject) placeholder="orders.*.created";
                button type="submit" { "Filter" }
            }
            p.hint { "New events as they are added (needs JavaScript)." }
            table #tail data-source=(tail) {
                thead { tr { th { "ID" } th { "Name" } th { "Payload" } } }
                tbody aria-live="polite" {}
            }
        }
        @for (sink, letters) in &dead { (dead_letters(&app, &here, sink, letters)) }
    };
    layout(&format!("Stream {name}"), body).into_response()
}

fn dead_letters(
    app: &AppState,
    here: &str,
    sink: &str,
    letters: &pulse::Result<Vec<DeadLetter>>,
) -> Markup {
    let action = |what: &str| format!("{here}/dead/{}/{what}", encode(sink));
    html! {
        section aria-label={ "Dead letters of " (sink) } {
            h2 { "Dead letters of " (sink) }
            @match letters {
                Err(e) => (failure("could not read the dead letters", e)),
                Ok(list) if list.is_empty() => p { "None." },
                Ok(list) => table.dead {
                    thead { tr { th { "ID" } th { "Event" } th.num { "Deliveries" } th { "Moved" } th { "Error" } @if !app.read_only { th { span.sr { "Actions" } } } } }
                    tbody {
                        @for d in list {
                            @let (payload, hex) = text_or_hex(&d.event.payload);
                            tr data-id=(d.id) {
                                td { (d.id) }
                                td {
                                    details {
                                        summary { (d.event.name) " (" (d.event.id) ")" }
                                        @if hex { p { "Payload (hex)" } } @else { p { "Payload" } }
                                        pre { (payload) }
                                    }
                                }
                                td.num { (d.deliveries) }
                                td { (ago(d.at)) }
                                td { (d.error.clone().unwrap_or_default()) }
                                @if !app.read_only {
                                    td {
                                        form.inline method="post" action=(action("requeue")) {
                                            input type="hidden" name="id" value=(d.id);
                                            button type="submit" aria-label={ "Requeue " (d.id) } { "Requeue" }
                                        }
                                        form.inline method="post" action=(action("purge")) {
                                            input type="hidden" name="id" value=(d.id);
                                            button.danger type="submit" aria-label={ "Purge " (d.id) } { "Purge" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct LetterForm {
    id: String,
}

async fn with_letter(
    app: &AppState,
    name: &str,
    sink: &str,
    id: &str,
) -> Result<(pulse::streaming::DeadLetters, EntryId), String> {
    let id: EntryId = id
        .parse()
        .map_err(|_| format!("{id:?} is not an event ID"))?;
    let stream = app.stream(name).map_err(|e| e.to_string())?;
    let letters = stream.dead_letters(sink).map_err(|e| e.to_string())?;
    Ok((letters, id))
}

pub(super) async fn requeue(
    State(app): State<AppState>,
    Path((name, sink)): Path<(String, String)>,
    Form(form): Form<LetterForm>,
) -> Response {
    let here = format!("/ui/streams/{}", encode(&name));
    let outcome = match with_letter(&app, &name, &sink, &form.id).await {
        Ok((letters, id)) => letters
            .requeue(id)
            .await
            .map(|new| format!("Requeued {id} as {new}."))
            .map_err(|e| format!("Could not requeue {id}: {e}")),
        Err(e) => Err(e),
    };
    back(&here, outcome)
}

pub(super) async fn purge(
    State(app): State<AppState>,
    Path((name, sink)): Path<(String, String)>,
    Form(form): Form<LetterForm>,
) -> Response {
    let here = format!("/ui/streams/{}", encode(&name));
    let outcome = match with_letter(&app, &name, &sink, &form.id).await {
        Ok((letters, id)) => match letters.purge(&[id]).await {
            Ok(1) => Ok(format!("Purged {id}.")),
            Ok(_) => Err(format!("{id} is not a dead letter here.")),
            Err(e) => Err(format!("Could not purge {id}: {e}")),
        },
        Err(e) => Err(e),
    };
    back(&here, outcome)
}

#[derive(Debug, Deserialize)]
pub(super) struct TailQuery {
    subject: Option<String>,
}

/// New events of the stream over SSE, each as the unnamed event browsers deliver to
/// `onmessage` (`data` the event as JSON).
pub(super) async fn tail(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<TailQuery>,
) -> Result<Response, ApiError> {
    let stream = app.stream(&name)?;
    let filter = match q.subject.as_deref().filter(|s| !s.is_empty()) {
        Some(p) => Filter::subject(p)?,
        None => Filter::All,
    };
    let reader = stream
        .new_reader(
            ReaderOptions::default()
                .with_start(Start::Newest)
                .with_filter(filter),
        )
        .await?;
    let events = reader.subscribe()?;
    let keep = Closing::reader(reader);
    let frames = futures_util::stream::unfold((events, keep), |(mut events, keep)| async move {
        let e = events.recv().await?;
        let frame = Frame {
            id: Some(e.id.to_string()),
            event: "message".into(),
            data: event_json(&e).to_string(),
        };
        Some((frame, (events, keep)))
    });
    Ok(sse::response(frames))
}
