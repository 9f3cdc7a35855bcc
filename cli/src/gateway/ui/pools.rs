//! A pool's page: workers, jobs (running and waiting, searchable by key), jobs per worker,
//! the live feed of its events, and the stop and dispatch actions.

use std::time::SystemTime;

use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
    Form,
};
use maud::{html, Markup};
use pulse::pool::{JobInfo, JobStatus, PoolState};
use serde::Deserialize;

use super::{back, charts, encode, failure, layout, trusted, Flash};
use crate::{
    gateway::{
        error::ApiError,
        sse::{self, Closing, Frame},
        AppState,
    },
    output::{ago, pool_event_json},
};

#[derive(Debug, Default, Deserialize)]
pub(super) struct PageQuery {
    /// Only jobs whose key contains this.
    q: Option<String>,
    #[serde(flatten)]
    flash: Flash,
}

pub(super) async fn page(
    State(app): State<AppState>,
    Path(pool): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    let state = match app.client_node(&pool).await {
        Ok(node) => {
            let state = node.inspect().await;
            let _ = node.close().await;
            state
        }
        Err(e) => Err(e),
    };
    let here = format!("/ui/pools/{}", encode(&pool));
    let body = html! {
        (query.flash.markup())
        @match &state {
            Err(e) => (failure("could not read the pool", e)),
            Ok(state) => (content(&app, &here, state, query.q.as_deref().unwrap_or(""))),
        }
        section aria-labelledby="feed-title" {
            h2 #feed-title { "Live feed" }
            p.hint { "Starts, moves, stops and workers joining or leaving, as they happen (needs JavaScript)." }
            figure {
                svg #moves width="400" height="60" viewBox="0 0 400 60" role="img" aria-label="moves per 10 seconds since this page opened" {}
                figcaption { "Moves per 10 s since this page opened" }
            }
            ol #feed data-source={ (here) "/feed" } aria-live="polite" {}
        }
    };
    layout(&format!("Pool {pool}"), body).into_response()
}

fn content(app: &AppState, here: &str, state: &PoolState, q: &str) -> Markup {
    let jobs: Vec<&JobInfo> = state.jobs.iter().filter(|j| j.key.contains(q)).collect();
    let waiting: Vec<&&JobInfo> = jobs
        .iter()
        .filter(|j| matches!(j.status, JobStatus::Waiting { .. }))
        .collect();
    let per_worker: Vec<(String, u64)> = state
        .workers
        .iter()
        .map(|w| (w.id.clone(), w.jobs as u64))
        .collect();
    html! {
        div #live data-refresh=(here) {
            section aria-labelledby="workers" {
                h2 #workers { "Workers (" (state.workers.len()) ")" }
                @if state.workers.is_empty() { p { "No workers." } } @else {
                    table {
                        thead { tr { th { "Worker" } th { "Node" } th { "Group" } th.num { "Jobs" } th { "Alive" } th { "Since" } } }
                        tbody {
                            @for w in &state.workers {
                                tr {
                                    td { (w.id) } td { (w.node) } td { (w.group) }
                                    td.num { (w.jobs) }
                                    td { @if w.alive { "yes" } @else { strong { "no" } } }
                                    td { (ago(w.registered_at)) }
                                }
                            }
                        }
                    }
                    figure {
                        (trusted(charts::bars(&per_worker, "jobs per worker")))
                        figcaption { "Jobs per worker" }
                    }
                }
            }
            section aria-labelledby="jobs" {
                h2 #jobs { "Jobs (" (jobs.len()) @if !q.is_empty() { " matching “" (q) "”" } ")" }
                form.search method="get" action=(here) role="search" {
                    label for="q" { "Find a job by key" }
                    input #q type="search" name="q" value=(q);
                    button type="submit" { "Find" }
                }
                @if jobs.is_empty() { p { "No jobs." } } @else {
                    table #jobs-table {
                        thead { tr { th { "Job" } th { "Status" } th { "Worker" } th { "Node" } th { "Group" } th { "Since" } th.num { "Moves" } @if !app.read_only { th { span.sr { "Action" } } } } }
                        tbody {
                            @for j in &jobs { (job_row(app, here, j)) }
                        }
                    }
                }
            }
            section aria-labelledby="waiting" {
                h2 #waiting { "Waiting (" (waiting.len()) ")" }
                @if waiting.is_empty() { p { "No job waits." } } @else {
                    ul { @for j in &waiting { li { (j.key) " — " (status_text(&j.status)) } } }
                }
            }
        }
        @if !app.read_only {
            section aria-labelledby="dispatch" {
                h2 #dispatch { "Dispatch a job" }
                form method="post" action={ (here) "/dispatch" } {
                    label for="key" { "Key" }
                    input #key name="key" required;
                    label for="payload" { "Payload (text)" }
                    input #payload name="payload";
                    button type="submit" { "Dispatch" }
                }
            }
        }
    }
}

fn since(t: Option<SystemTime>) -> String {
    t.map_or_else(|| "-".into(), ago)
}

fn status_text(status: &JobStatus) -> String {
    match status {
        JobStatus::Running { .. } => "running".into(),
        JobStatus::Waiting { reason, since: s } => format!("waiting ({reason:?}) {}", since(*s)),
        _ => "unknown".into(),
    }
}

fn job_row(app: &AppState, here: &str, j: &JobInfo) -> Markup {
    let (worker, node, started) = match &j.status {
        JobStatus::Running {
            worker,
            node,
            since: s,
        } => (worker.clone(), node.clone().unwrap_or_default(), since(*s)),
        JobStatus::Waiting { since: s, .. } => (String::new(), String::new(), since(*s)),
        _ => Default::default(),
    };
    html! {
        tr data-key=(j.key) {
            td { (j.key) }
            td { (if matches!(j.status, JobStatus::Running { .. }) { "running".to_owned() } else { status_text(&j.status) }) }
            td { (worker) } td { (node) } td { (j.group) } td { (started) } td.num { (j.moves) }
            @if !app.read_only {
                td {
                    form method="post" action={ (here) "/stop" } {
                        input type="hidden" name="key" value=(j.key);
                        button type="submit" aria-label={ "Stop " (j.key) } { "Stop" }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct DispatchForm {
    key: String,
    #[serde(default)]
    payload: String,
}

pub(super) async fn dispatch(
    State(app): State<AppState>,
    Path(pool): Path<String>,
    Form(form): Form<DispatchForm>,
) -> Response {
    let here = format!("/ui/pools/{}", encode(&pool));
    let outcome = async {
        let node = app.client_node(&pool).await?;
        let dispatched = node.dispatch_job(&form.key, form.payload.clone()).await;
        let _ = node.close().await;
        dispatched
    }
    .await;
    back(
        &here,
        outcome
            .map(|()| format!("Dispatched {}.", form.key))
            .map_err(|e| format!("Could not dispatch {}: {e}", form.key)),
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct StopForm {
    key: String,
}

pub(super) async fn stop(
    State(app): State<AppState>,
    Path(pool): Path<String>,
    Form(form): Form<StopForm>,
) -> Response {
    let here = format!("/ui/pools/{}", encode(&pool));
    let outcome = async {
        let node = app.client_node(&pool).await?;
        let stopped = node.stop_job(&form.key).await;
        let _ = node.close().await;
        stopped
    }
    .await;
    back(
        &here,
        match outcome {
            Ok(true) => Ok(format!("Stopped {}.", form.key)),
            Ok(false) => Err(format!("{} is not in the pool.", form.key)),
            Err(e) => Err(format!("Could not stop {}: {e}", form.key)),
        },
    )
}

/// The pool's events over SSE (each `data` the event as JSON), from a client-only node
/// that lives as long as the connection.
pub(super) async fn feed(
    State(app): State<AppState>,
    Path(pool): Path<String>,
) -> Result<Response, ApiError> {
    let node = app.client_node(&pool).await?;
    let events = node.events()?;
    let keep = Closing::node(node);
    let frames = futures_util::stream::unfold((events, keep), |(mut events, keep)| async move {
        let e = events.recv().await?;
        let frame = Frame {
            id: None,
            event: "message".into(),
            data: pool_event_json(&e).to_string(),
        };
        Some((frame, (events, keep)))
    });
    Ok(sse::response(frames))
}
