//! What the Redis backend guarantees when things break: typed errors instead of hangs or
//! panics, and recovery once the server is back. Each test runs its own private
//! `redis-server` so it can stop or restart it without disturbing other tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use pulse::{
    backend::{
        AddOptions, AtomicOps, EntryId, KeyOps, MapTarget, MapWrite, PubSubEvent, PubSubOps,
        SetCondition, StreamOps,
    },
    Error,
};
use pulse_conformance::redis_server::{private_server, RedisServer};
use pulse_redis::{RedisBackend, RedisOptions};

fn fast() -> RedisOptions {
    RedisOptions::default()
        .with_reconnect_delays(Duration::from_millis(20), Duration::from_millis(200))
        .with_health_check_interval(Duration::from_millis(200))
        .with_command_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_secs(2))
}

async fn next_event(sub: &mut pulse::backend::Subscription) -> PubSubEvent {
    tokio::time::timeout(Duration::from_secs(20), sub.recv())
        .await
        .expect("no event in 20 s")
        .expect("closed")
}

/// Retries `f` until it succeeds or 20 s pass.
async fn eventually_ok<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = pulse::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert!(
                    e.is_connection(),
                    "only connection errors are expected, got {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("still failing after 20 s: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_a_connection_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = RedisBackend::connect_with(&format!("redis://127.0.0.1:{port}/"), fast())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
}

#[tokio::test]
async fn malformed_url_is_a_config_error_without_secrets() {
    for url in [
        "http://user:hunter2@localhost/",
        "redis://user:hunter2@[::1/",
        "not a url",
    ] {
        let err = RedisBackend::connect(url).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{url}: {err:?}");
        assert!(
            !format!("{err} {err:?}").contains("hunter2"),
            "secret leaked: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_acl_user_authenticate_and_stay_hidden() {
    let Some(server) = private_server(&[
        "--requirepass",
        "s3cret-pw",
        "--user",
        "alice",
        "on",
        ">alice-pw",
        "~*",
        "&*",
        "+@all",
    ]) else {
        return;
    };
    let port = server.port();
    let backend =
        RedisBackend::connect_with(&format!("redis://:s3cret-pw@127.0.0.1:{port}/"), fast())
            .await
            .unwrap();
    assert!(
        !format!("{backend:?}").contains("s3cret"),
        "password in Debug output"
    );
    let acl =
        RedisBackend::connect_with(&format!("redis://alice:alice-pw@127.0.0.1:{port}/"), fast())
            .await
            .unwrap();
    assert!(!format!("{acl:?}").contains("alice-pw"));
    let map = MapTarget::new("m", "m:n");
    acl.map_set(&map, "k", Bytes::from("v"), SetCondition::Always)
        .await
        .unwrap();
    let mut sub = acl.subscribe(&["ch".to_owned()]).await.unwrap();
    backend.publish("ch", Bytes::from("hi")).await.unwrap();
    assert!(matches!(
        next_event(&mut sub).await,
        PubSubEvent::Message { .. }
    ));
    for bad in [
        format!("redis://:wrong@127.0.0.1:{port}/"),
        format!("redis://alice:wrong@127.0.0.1:{port}/"),
    ] {
        let err = RedisBackend::connect_with(&bad, fast()).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Denied {
                    op: "connect",
                    reason: pulse::Denial::WrongCredentials,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        assert!(
            !format!("{err:?}").contains("wrong@"),
            "URL leaked: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_fail_typed_while_down_and_recover_after_restart() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let backend = RedisBackend::connect_with(&server.url(), fast())
        .await
        .unwrap();
    let map = MapTarget::new("m", "m:n");
    backend
        .map_set(&map, "k", Bytes::from("1"), SetCondition::Always)
        .await
        .unwrap();
    server.stop();
    let err = backend
        .map_set(&map, "k", Bytes::from("2"), SetCondition::Always)
        .await
        .unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    assert!(backend.exists("m").await.unwrap_err().is_connection());
    server.restart().unwrap();
    // The restarted server is empty (no persistence) and has no scripts: both recovered.
    let out =
        eventually_ok(|| backend.map_set(&map, "k", Bytes::from("3"), SetCondition::Always)).await;
    assert_eq!((out.previous, out.revision.rev), (None, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_report_loss_and_recover_after_restart() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let backend = RedisBackend::connect_with(&server.url(), fast())
        .await
        .unwrap();
    let mut sub = backend.subscribe(&["ch".to_owned()]).await.unwrap();
    server.stop();
    assert_eq!(next_event(&mut sub).await, PubSubEvent::Lost);
    server.restart().unwrap();
    assert_eq!(next_event(&mut sub).await, PubSubEvent::Restored);
    eventually_ok(|| backend.publish("ch", Bytes::from("back"))).await;
    assert_eq!(
        next_event(&mut sub).await,
        PubSubEvent::Message {
            channel: "ch".into(),
            payload: Bytes::from("back")
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_survive_a_script_cache_flush() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let backend = RedisBackend::connect_with(&server.url(), fast())
        .await
        .unwrap();
    flush_scripts(&server).await;
    let map = MapTarget::new("m", "m:n");
    let out = backend
        .map_set(&map, "k", Bytes::from("v"), SetCondition::Always)
        .await
        .unwrap();
    assert!(out.written);
    flush_scripts(&server).await;
    assert!(backend
        .lease_acquire("lease", "me", Duration::from_secs(5))
        .await
        .unwrap());
}

/// A foreign writer's non-integer `=rev` makes a set (alone or batched) an `InvalidValue`
/// that writes nothing, rather than a half-applied write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_revision_fails_sets_and_changes_nothing() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let backend = RedisBackend::connect_with(&server.url(), fast())
        .await
        .unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg("m")
        .arg("=rev")
        .arg("not a number")
        .query_async(&mut conn)
        .await
        .unwrap();
    let map = MapTarget::new("m", "m:n");
    let one = backend
        .map_set(&map, "k", Bytes::from("v"), SetCondition::Always)
        .await;
    assert!(matches!(one, Err(Error::InvalidValue { .. })), "{one:?}");
    let write = |key: &str| MapWrite {
        key: key.into(),
        value: Bytes::from("v"),
        condition: SetCondition::Always,
    };
    let many = backend
        .map_set_many(&map, vec![write("a"), write("b")])
        .await;
    assert!(matches!(many, Err(Error::InvalidValue { .. })), "{many:?}");
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg("m")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fields, ["=rev"]);
}

async fn flush_scripts(server: &RedisServer) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_read_ends_with_a_connection_error_when_the_server_dies() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let backend = RedisBackend::connect_with(&server.url(), fast())
        .await
        .unwrap();
    let reader = {
        let backend = backend.clone();
        tokio::spawn(async move {
            backend
                .stream_read(
                    &[("s".into(), EntryId::ZERO)],
                    10,
                    Some(Duration::from_secs(60)),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await; // let the read block first
    server.stop();
    let res = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("read hung")
        .unwrap();
    assert!(res.unwrap_err().is_connection());
    server.restart().unwrap();
    let opts = AddOptions::default();
    let id = eventually_ok(|| backend.stream_add("s", vec![("n".into(), Bytes::from("x"))], &opts))
        .await;
    let got = backend
        .stream_read(
            &[("s".into(), EntryId::ZERO)],
            10,
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(Some(got[0].entries[0].id), id);
}

/// A dedicated connection left idle across a server restart is dead; the next blocking read
/// notices, retries once on a fresh connection and succeeds — the caller sees no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_read_after_a_restart_replaces_its_dead_idle_connection() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let backend = RedisBackend::connect_with(&server.url(), fast())
        .await
        .unwrap();
    let opts = AddOptions::default();
    let fields = || vec![("n".into(), Bytes::from("x"))];
    backend.stream_add("s", fields(), &opts).await.unwrap();
    let from_start = [("s".to_owned(), EntryId::ZERO)];
    let read = || backend.stream_read(&from_start, 10, Some(Duration::from_secs(5)));
    // Answered at once: its dedicated connection goes back to the idle list.
    assert_eq!(read().await.unwrap()[0].entries.len(), 1);
    server.restart().unwrap();
    eventually_ok(|| backend.stream_add("s", fields(), &opts)).await;
    // The first blocking read after the restart must succeed, not report the dead socket.
    let got = read()
        .await
        .expect("the idle connection is replaced transparently");
    assert_eq!(got[0].entries.len(), 1);
}
