//! The OpenAPI document of the gateway, generated from the handlers' `#[utoipa::path]`
//! annotations and the body types' schemas: what `/openapi.json` serves and what the
//! fuzz test in CI checks the gateway against.

use serde_json::Value;
use utoipa::OpenApi;

use super::{error, maps, pools, streams};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulse gateway",
        description = "Streams, sinks, maps and pools over HTTP + JSON + SSE. Every error is a JSON body {\"error\": {\"kind\", \"message\"}}; 503 answers carry Retry-After.",
    ),
    paths(
        streams::publish,
        streams::info,
        streams::subscribe,
        streams::subscribe_sink,
        streams::ack,
        streams::request,
        maps::list,
        maps::get,
        maps::set,
        maps::delete,
        maps::watch,
        pools::inspect,
        pools::dispatch,
        pools::stop,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        streams::PublishEvent,
        streams::Published,
        streams::AckBody,
        streams::RequestBody,
        maps::SetBody,
        pools::DispatchBody,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

/// Declares the bearer token scheme the routes ask for.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        if let Some(components) = doc.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The OpenAPI document, as JSON.
pub fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null)
}
