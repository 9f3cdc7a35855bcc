//! Nothing to use: this crate exists for its tests, which build `pulse` with the
//! `opentelemetry` feature and check, against the OpenTelemetry SDK's in-memory exporter,
//! that producers store a W3C `traceparent` and consumer spans link to it.
//!
//! In a workspace build the feature is then on for every member (cargo unifies features);
//! `.ci/run` also checks `pulse` alone, where it is off.
