//! The overview (`/ui`): every stream with its length and events/s, every map, every pool.

use axum::{extract::State, response::Response};
use maud::html;

use super::{charts, encode, failure, layout, trusted};
use crate::{gateway::AppState, listing};

/// How many of each the overview lists.
const LIMIT: usize = 500;

pub(super) async fn page(State(app): State<AppState>) -> Response {
    app.sampler.start(app.backend.clone(), app.keyspace.clone());
    let b = app.backend.as_ref();
    let streams = listing::streams(b, &app.keyspace, LIMIT).await;
    let maps = listing::maps(b, &app.keyspace, LIMIT).await;
    let pools = listing::pools(b, &app.keyspace, LIMIT).await;
    let rates = app.sampler.rates();
    let body = html! {
        section aria-labelledby="streams" {
            h2 #streams { "Streams" }
            @match &streams {
                Err(e) => (failure("could not list the streams", e)),
                Ok(rows) if rows.is_empty() => p { "No streams." },
                Ok(rows) => table {
                    thead { tr { th { "Stream" } th.num { "Length" } th { "Last ID" } th.num { "Events/s" } th { "Last two minutes" } } }
                    tbody {
                        @for r in rows {
                            @let series = rates.get(&r.name).cloned().unwrap_or_default();
                            tr {
                                td { a href={ "/ui/streams/" (encode(&r.name)) } { (r.name) } }
                                td.num { (r.length.map_or("-".into(), |n| n.to_string())) }
                                td { (r.last_id.clone().or(r.error.clone()).unwrap_or_default()) }
                                td.num { (series.last().map_or("-".into(), |v| format!("{v:.1}"))) }
                                td { (trusted(charts::sparkline(&series, &format!("events per second of {}", r.name), 160, 24))) }
                            }
                        }
                    }
                },
            }
        }
        section aria-labelledby="maps" {
            h2 #maps { "Maps" }
            @match &maps {
                Err(e) => (failure("could not list the maps", e)),
                Ok(rows) if rows.is_empty() => p { "No maps." },
                Ok(rows) => table {
                    thead { tr { th { "Map" } th.num { "Keys" } } }
                    tbody {
                        @for r in rows {
                            tr {
                                td { a href={ "/ui/maps/" (encode(&r.name)) } { (r.name) } }
                                td.num { (r.keys.map_or(r.error.clone().unwrap_or("-".into()), |n| n.to_string())) }
                            }
                        }
                    }
                },
            }
        }
        section aria-labelledby="pools" {
            h2 #pools { "Pools" }
            @match &pools {
                Err(e) => (failure("could not list the pools", e)),
                Ok(rows) if rows.is_empty() => p { "No pools." },
                Ok(rows) => table {
                    thead { tr { th { "Pool" } th.num { "Workers" } th.num { "Jobs" } } }
                    tbody {
                        @for r in rows {
                            tr {
                                td { a href={ "/ui/pools/" (encode(&r.name)) } { (r.name) } }
                                td.num { (r.workers.map_or("-".into(), |n| n.to_string())) }
                                td.num { (r.jobs.map_or(r.error.clone().unwrap_or("-".into()), |n| n.to_string())) }
                            }
                        }
                    }
                },
            }
        }
    };
    axum::response::IntoResponse::into_response(layout("Overview", body))
}
