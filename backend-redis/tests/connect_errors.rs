//! Connecting goes wrong in ways a user must be told apart, each against a private
//! `redis-server`: no password where one is required, a database the server does not have,
//! and `rediss://` to a port that speaks plain text (found at once, not at the connect
//! timeout). Wrong passwords are in `faults.rs`, plain text to a TLS port in `tls.rs`,
//! malformed URLs in the crate's `redis_url` unit tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use pulse::{Denial, Error};
use pulse_conformance::redis_server::private_server;
use pulse_redis::{RedisBackend, RedisOptions};

fn slow_timeout() -> RedisOptions {
    RedisOptions::default().with_connect_timeout(Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_where_one_is_required_is_denied() {
    let Some(server) = private_server(&["--requirepass", "s3cret"]) else {
        return;
    };
    let err = RedisBackend::connect_with(&server.url(), slow_timeout())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Denied {
                op: "connect",
                reason: Denial::NoCredentials,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("credentials required"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_the_server_does_not_have_is_a_config_error() {
    let Some(server) = private_server(&["--databases", "4"]) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}/7", server.port());
    let err = RedisBackend::connect_with(&url, slow_timeout())
        .await
        .unwrap_err();
    match &err {
        Error::Config(m) => assert!(m.contains("no database 7"), "{m}"),
        other => panic!("{other:?}"),
    }
    let ok = format!("redis://127.0.0.1:{}/3", server.port());
    RedisBackend::connect_with(&ok, slow_timeout())
        .await
        .unwrap();
}

/// A TLS client talking to a plain-text port would wait for the server's TLS answer until
/// the connect timeout (it was "timed out" after 5 s); a plain-text `PING` after a moment
/// finds out and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_plain_text_port_fails_fast_and_says_why() {
    for extra in [&[][..], &["--requirepass", "pw"][..]] {
        let Some(server) = private_server(extra) else {
            return;
        };
        let url = format!("rediss://:pw@127.0.0.1:{}/", server.port());
        let started = Instant::now();
        let err = RedisBackend::connect_with(&url, slow_timeout())
            .await
            .unwrap_err();
        let took = started.elapsed();
        match &err {
            Error::Config(m) => assert!(m.contains("speaks plain text, not TLS"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(!err.to_string().contains("pw@"));
    }
}
