//! A map's page: its keys and values (text, or hex when binary), refreshed live on change.

use axum::{
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use maud::html;

use super::{encode, failure, layout, text_or_hex};
use crate::gateway::AppState;

/// Keys shown (the rest are counted).
const SHOWN: usize = 5000;

pub(super) async fn page(State(app): State<AppState>, Path(name): Path<String>) -> Response {
    let entries = match app.keyspace.map(&name) {
        Ok(keys) => app.backend.hash_get_all(&keys.hash).await,
        Err(e) => Err(e),
    };
    // Fields starting with `=` are the map's bookkeeping (revision, epoch).
    let entries = entries.map(|all| {
        let mut user: Vec<_> = all
            .into_iter()
            .filter(|(k, _)| !k.starts_with('='))
            .collect();
        user.sort_by(|a, b| a.0.cmp(&b.0));
        user
    });
    let here = format!("/ui/maps/{}", encode(&name));
    let body = html! {
        @match &entries {
            Err(e) => (failure("could not read the map", e)),
            Ok(user) => {
                @let total = user.len();
                div #live data-refresh=(here) data-watch={ "/v1/maps/" (encode(&name)) "/events" } {
                    p { (total) " keys" @if total > SHOWN { " (the first " (SHOWN) " shown)" } "." }
                    @if total > 0 {
                        table #entries {
                            thead { tr { th { "Key" } th { "Value" } } }
                            tbody {
                                @for (k, v) in user.iter().take(SHOWN) {
                                    @let (text, hex) = text_or_hex(v);
                                    tr { td { (k) } td { @if hex { span.tag { "hex" } " " } code { (text) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
        p.hint { "The table follows changes as they happen (needs JavaScript)." }
    };
    layout(&format!("Map {name}"), body).into_response()
}
