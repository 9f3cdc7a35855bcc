//! `open` against a private `redis-server`: a plain URL and one with a wrong password.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pulse::Error;
use pulse_conformance::redis_server::private_server;

#[tokio::test]
async fn redis_urls_open_the_redis_backend_and_errors_stay_typed() {
    let Some(server) = private_server(&["--requirepass", "s3cret"]) else {
        return;
    };
    let port = server.port();
    let backend = pulse_connect::open(&format!("redis://:s3cret@127.0.0.1:{port}/"))
        .await
        .unwrap();
    assert_eq!(backend.kind(), "redis");
    assert!(!backend.exists("nothing").await.unwrap());
    let e = match pulse_connect::open(&format!("redis://:xyzzy@127.0.0.1:{port}/")).await {
        Err(e) => e,
        Ok(_) => panic!("a wrong password connected"),
    };
    assert!(matches!(e, Error::Denied { .. }), "{e:?}");
    assert!(
        !e.to_string().contains("xyzzy"),
        "the password is not repeated: {e}"
    );
}
