//! The OpenAPI document of the gateway, generated from the handlers' `#[utoipa::path]`
//! annotations and the body types' schemas: what `/openapi.json` serves and what the
//! fuzz test in CI checks the gateway against.

use serde_json::Value;
use utoipa::OpenApi;

use super::{error, listing, maps, pools, streams};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulse gateway",
        description = "Streams, sinks, maps and pools over HTTP + JSON + SSE. Every error is a JSON body {\"error\": {\"kind\", \"message\"}}; 503 answers carry Retry-After.",
    ),
    paths(
        listing::streams,
        listing::maps,
        listing::pools,
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
        crate::listing::StreamRow,
        crate::listing::MapRow,
        crate::listing::PoolRow,
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

/// The OpenAPI document, as JSON, refined where the annotations cannot say it: the name
/// rules on path parameters, the ID and base64 forms in bodies, the 401 every route may
/// answer, and operation IDs named by their tag (`streams_publish`).
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for schema in schemas.values_mut() {
            if let Some(b64) = schema.pointer_mut("/properties/payload_base64") {
                b64["pattern"] = Value::from(BASE64_RULE);
            }
        }
        schemas.insert("PublishBody".into(), publish_body());
        if let Some(ids) = schemas
            .get_mut("AckBody")
            .and_then(|s| s.pointer_mut("/properties/ids"))
        {
            ids["items"]["pattern"] = Value::from(ID_RULE);
            ids["minItems"] = Value::from(1);
        }
    }
    let unauthorized = serde_json::json!({
        "description": "No bearer token, or the wrong one",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    });
    if let Some(body) = doc.pointer_mut(
        "/paths/~1v1~1streams~1{stream}~1events/post/requestBody/content/application~1json/schema",
    ) {
        *body = serde_json::json!({"$ref": "#/components/schemas/PublishBody"});
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for operation in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in operation.values_mut() {
                let tag = op["tags"][0].as_str().unwrap_or("api").to_owned();
                if let Some(id) = op["operationId"].as_str().map(str::to_owned) {
                    op["operationId"] = Value::from(format!("{tag}_{id}"));
                }
                if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                    responses.insert("401".into(), unauthorized.clone());
                }
                let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                    continue;
                };
                for p in params.iter_mut().filter(|p| p["in"] == "path") {
                    let rule = match p["name"].as_str() {
                        Some("key") => KEY_RULE,
                        _ => NAME_RULE,
                    };
                    p["schema"] = serde_json::json!({
                        "type": "string",
                        "pattern": rule.0,
                        "minLength": 1,
                        "maxLength": rule.1,
                    });
                }
            }
        }
    }
    doc
}

/// The name rule (`pulse::keys::validate_name`) as a pattern: no whitespace, no control
/// character, none of `* ? [ ] { }`; at most 512 bytes (a length in characters only
/// bounds it: a non-ASCII name reaches the byte limit sooner and is refused with a 400).
const NAME_RULE: (&str, usize) = (
    "^[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000*?\\[\\]{}]+$",
    512,
);

/// What a publish takes: one event, or a non-empty batch of them.
fn publish_body() -> Value {
    serde_json::json!({
        "oneOf": [
            {"$ref": "#/components/schemas/PublishEvent"},
            {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/PublishEvent"}},
        ]
    })
}

/// An event ID: `ms-seq`.
const ID_RULE: &str = "^[0-9]{1,19}-[0-9]{1,19}$";

/// Standard base64 with padding.
const BASE64_RULE: &str = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$";

/// The map-key rule (`pulse::keys::validate_map_key`): anything but `=` (up to 64 KiB; the
/// document says 1,024 characters, what fits a URL path everywhere).
const KEY_RULE: (&str, usize) = ("^[^=]+$", 1024);
