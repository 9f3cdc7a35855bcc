//! The dashboard at `/ui`: pools, streams, sinks and maps as server-rendered HTML (maud),
//! with a little script over SSE for what changes live.
//!
//! Contract:
//! - every page is complete HTML that works without JavaScript (tables, forms); the
//!   script (`assets/app.js`) only adds live updates: the feed of pool events, the jobs
//!   and map tables refreshed on change, the stream tail;
//! - assets are embedded in the binary (`include_str!`), nothing is fetched elsewhere;
//! - with a token, a browser signs in once at `/ui/login` and carries it in an
//!   `HttpOnly`, `SameSite=Strict` cookie, which the API's routes accept as well (the
//!   page's `EventSource`s cannot send headers); a cookie-carried `POST` from another
//!   site (`Sec-Fetch-Site` other than `same-origin`) is refused;
//! - `--read-only` leaves out every action, and the server refuses every change.
//!
//! Pages: `overview` (streams, maps and pools, events/s per stream), `pools`, `streams`
//! (with sinks and dead letters), `maps`; `charts` draws the SVG.

mod charts;
mod maps;
mod overview;
mod pools;
mod streams;

use axum::{
    extract::{Query, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Router,
};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;

use super::{same_secret, AppState};

pub(super) use charts::Sampler;

/// The cookie a signed-in browser carries.
pub(super) const COOKIE: &str = "pulse_token";

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// The dashboard's routes (all under `/ui`).
pub(super) fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/pools/{pool}", get(pools::page))
        .route("/ui/pools/{pool}/feed", get(pools::feed))
        .route("/ui/pools/{pool}/dispatch", post(pools::dispatch))
        .route("/ui/pools/{pool}/stop", post(pools::stop))
        .route("/ui/streams/{stream}", get(streams::page))
        .route("/ui/streams/{stream}/tail", get(streams::tail))
        .route(
            "/ui/streams/{stream}/dead/{sink}/requeue",
            post(streams::requeue),
        )
        .route(
            "/ui/streams/{stream}/dead/{sink}/purge",
            post(streams::purge),
        )
        .route("/ui/maps/{map}", get(maps::page))
        .route_layer(axum::middleware::from_fn_with_state(state, signed_in));
    Router::new()
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/assets/app.css", get(|| asset(CSS, "text/css")))
        .route("/ui/assets/app.js", get(|| asset(JS, "text/javascript")))
        .merge(pages)
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The token a request carries in the dashboard's cookie.
pub(super) fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether a cookie-carried request came from another site (a forged form or script).
pub(super) fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site != "same-origin" && site != "none")
}

/// Sends a browser without the token to the sign-in page; refuses a cross-site change and,
/// read-only, any change.
async fn signed_in(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        let ok = cookie_token(request.headers())
            .is_some_and(|given| same_secret(given.as_bytes(), token.as_bytes()));
        if !ok {
            return Redirect::to("/ui/login").into_response();
        }
    }
    if request.method() == Method::POST {
        if cross_site(request.headers()) {
            return refusal(
                StatusCode::FORBIDDEN,
                "a change from another site is refused",
            );
        }
        if app.read_only {
            return refusal(StatusCode::FORBIDDEN, "this dashboard is read-only");
        }
    }
    next.run(request).await
}

fn refusal(status: StatusCode, why: &str) -> Response {
    let body = layout(
        "Refused",
        html! { p.error role="alert" { (why) } p { a href="/ui" { "Back to the overview" } } },
    );
    (status, body).into_response()
}

/// A page: header with the navigation, `body`, the script.
pub(super) fn layout(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · Pulse" }
                    link rel="stylesheet" href="/ui/assets/app.css";
                }
                body {
                    a.skip href="#main" { "Skip to content" }
                    header {
                        nav aria-label="Pulse" {
                            a.brand href="/ui" { "Pulse" }
                            a href="/ui#streams" { "Streams" }
                            a href="/ui#maps" { "Maps" }
                            a href="/ui#pools" { "Pools" }
                        }
                    }
                    main #main { h1 { (title) } (body) }
                    script src="/ui/assets/app.js" defer {}
                }
            }
        }
        .into_string(),
    )
}

/// A note at the top of a page after an action (`?done=` or `?error=`).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Flash {
    done: Option<String>,
    error: Option<String>,
}

impl Flash {
    pub(super) fn markup(&self) -> Markup {
        html! {
            @if let Some(done) = &self.done { p.done role="status" { (done) } }
            @if let Some(error) = &self.error { p.error role="alert" { (error) } }
        }
    }
}

/// A redirect back to `to` with a note.
pub(super) fn back(to: &str, outcome: Result<String, String>) -> Response {
    let (key, text) = match outcome {
        Ok(done) => ("done", done),
        Err(error) => ("error", error),
    };
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}{key}={}", encode(&text))).into_response()
}

/// Percent-encodes `text` for a URL path segment or query value.
pub(super) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Text as it is when it is UTF-8 without control characters, else hex.
pub(super) fn text_or_hex(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            (s.to_owned(), false)
        }
        _ => (bytes.iter().map(|b| format!("{b:02x}")).collect(), true),
    }
}

/// The error of a failed read, as a page section.
pub(super) fn failure(what: &str, e: &pulse::Error) -> Markup {
    html! { p.error role="alert" { (what) ": " (e.to_string()) } }
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    error: Option<String>,
}

async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    login_form(q.error.as_deref()).into_response()
}

fn login_form(error: Option<&str>) -> Html<String> {
    layout(
        "Sign in",
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/ui/login" {
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

/// Checks the token and, when it is right, hands the browser its cookie.
async fn login(State(app): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = &app.token else {
        return Redirect::to("/ui").into_response();
    };
    if !same_secret(form.token.as_bytes(), token.as_bytes()) {
        let page = login_form(Some("That token is wrong."));
        return (StatusCode::UNAUTHORIZED, page).into_response();
    }
    let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", form.token);
    let mut response = Redirect::to("/ui").into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            response.headers_mut().insert(header::SET_COOKIE, v);
            response
        }
        // A token with characters a cookie cannot hold: say so rather than loop.
        Err(_) => (
            StatusCode::BAD_REQUEST,
            login_form(Some(
                "This token cannot be kept in a cookie; use the API with a bearer token.",
            )),
        )
            .into_response(),
    }
}

/// Raw SVG or other trusted markup built by this module.
pub(super) fn trusted(markup: String) -> PreEscaped<String> {
    PreEscaped(markup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; pulse_token=s3; b=2"),
        );
        assert_eq!(cookie_token(&h), Some("s3"));
        h.insert(header::COOKIE, HeaderValue::from_static("pulse_tokenx=1"));
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn encoding_and_hex() {
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(text_or_hex(b"plain"), ("plain".into(), false));
        assert_eq!(text_or_hex(&[0, 255]), ("00ff".into(), true));
    }
}
