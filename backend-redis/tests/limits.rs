//! The Redis backend at the server's limits, each test on its own private `redis-server`:
//! a refusal (`maxclients`, `maxmemory`, ACL) is a typed [`Error::Refused`] after which
//! nothing was applied, and a server that may evict keys is refused when connecting unless
//! the user opts in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use pulse::{
    backend::{AddOptions, AtomicOps, EntryId, MapTarget, PubSubOps, SetCondition, StreamOps, Ttl},
    error::Refusal,
    keys::Keyspace,
    rmap::{Map, MapOptions},
    Backend, Denial, Error,
};
use pulse_conformance::redis_server::{private_server, RedisServer};
use pulse_redis::{RedisBackend, RedisOptions};
use redis::aio::MultiplexedConnection;

fn fast() -> RedisOptions {
    RedisOptions::default()
        .with_command_timeout(Duration::from_secs(3))
        .with_connect_timeout(Duration::from_secs(3))
}

fn url(server: &RedisServer, user: &str) -> String {
    format!("redis://{user}@127.0.0.1:{}/", server.port())
}

async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn exists(conn: &mut MultiplexedConnection, key: &str) -> bool {
    let n: i64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap();
    n > 0
}

#[track_caller]
fn assert_refused(result: Result<impl std::fmt::Debug, Error>, want: Refusal) {
    match result {
        Err(Error::Refused { reason, .. }) if reason == want => {}
        other => panic!("expected a refusal ({want}), got {other:?}"),
    }
}

fn assert_no_permission(result: Result<impl std::fmt::Debug, Error>) {
    match result {
        Err(
            e @ Error::Denied {
                reason: Denial::NoPermission,
                ..
            },
        ) => assert!(!e.is_retryable()),
        other => panic!("expected a NoPermission denial, got {other:?}"),
    }
}

/// Opens backends (one connection each) until the server turns one away; the refusal is
/// typed and names the server's reason, with and without credentials in the handshake.
/// The connections an established backend opens later (a blocking read, pub/sub) are
/// refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxclients_is_a_typed_refusal() {
    for auth in [false, true] {
        let mut args = vec!["--maxclients", "4"];
        if auth {
            args.extend(["--requirepass", "s3cret-pw"]);
            args.extend(["--user", "alice", "on", ">alice-pw", "~*", "&*", "+@all"]);
        }
        let Some(server) = private_server(&args) else {
            return;
        };
        let users = if auth {
            [":s3cret-pw", "alice:alice-pw"]
        } else {
            ["", ""]
        };
        let mut open = Vec::new();
        let refusal = loop {
            assert!(open.len() <= 4, "more than maxclients connections accepted");
            let user = users[open.len() % 2];
            match RedisBackend::connect_with(&url(&server, user), fast()).await {
                Ok(b) => open.push(b),
                Err(e) => break e,
            }
        };
        assert!(!open.is_empty(), "auth {auth}: not even one connection");
        match &refusal {
            Error::Refused {
                op: "connect",
                reason: Refusal::TooManyClients,
                message,
            } => assert!(message.contains("max number of clients"), "{message}"),
            other => panic!("auth {auth}: expected TooManyClients, got {other:?}"),
        }
        assert!(!format!("{refusal:?}").contains("pw"), "{refusal:?}");

        let first = &open[0];
        let read = first
            .stream_read(
                &[("s".into(), EntryId::ZERO)],
                1,
                Some(Duration::from_millis(100)),
            )
            .await;
        assert_refused(read, Refusal::TooManyClients);
        assert_refused(
            first.subscribe(&["ch".to_owned()]).await,
            Refusal::TooManyClients,
        );
        // The established connection still works.
        first.publish("ch", Bytes::from("x")).await.unwrap();
    }
}

/// Fills the server to `maxmemory` (noeviction), then a map set, a map increment and
/// stream appends (plain, atomic with a TTL, batched) are refused as out of memory, and
/// none of them left anything behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_is_a_typed_refusal_and_applies_nothing() {
    let Some(server) = private_server(&["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"])
    else {
        return;
    };
    let backend: Arc<dyn Backend> = Arc::new(
        RedisBackend::connect_with(&server.url(), fast())
            .await
            .unwrap(),
    );
    let keyspace = Keyspace::new("limits").unwrap();
    let map = Map::join(
        backend.clone(),
        "m",
        MapOptions::default().with_keyspace(keyspace.clone()),
    )
    .await
    .unwrap();
    let hash = keyspace.map("m").unwrap().hash;
    let stream = keyspace.stream("s").unwrap();

    let mut conn = raw(&server.url()).await;
    let chunk = vec![b'x'; 64 * 1024];
    let mut filled = 0;
    loop {
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("filler:{filled}"))
            .arg(&chunk)
            .query_async(&mut conn)
            .await;
        match set {
            Ok(()) => filled += 1,
            Err(e) if e.code() == Some("OOM") => break,
            Err(e) => panic!("filling: {e}"),
        }
        assert!(filled < 1000, "the server never ran out of memory");
    }
    // The refused SET crossed the limit with its own argument; halve the limit under the
    // data so that every later write is refused whatever the allocator's slack.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1mb")
        .query_async(&mut conn)
        .await
        .unwrap();

    assert_refused(map.set("k", "v").await, Refusal::OutOfMemory);
    assert_refused(map.increment("n", 1).await, Refusal::OutOfMemory);
    let fields = || vec![("f".to_owned(), Bytes::from("v"))];
    assert_refused(
        backend
            .stream_add(&stream, fields(), &AddOptions::default())
            .await,
        Refusal::OutOfMemory,
    );
    let with_ttl = AddOptions::default().with_ttl(Ttl::Sliding(Duration::from_secs(60)));
    assert_refused(
        backend.stream_add(&stream, fields(), &with_ttl).await,
        Refusal::OutOfMemory,
    );
    assert_refused(
        backend
            .stream_add_batch(&stream, vec![fields(), fields()], &AddOptions::default())
            .await,
        Refusal::OutOfMemory,
    );

    assert!(!exists(&mut conn, &hash).await, "the map was written");
    assert!(!exists(&mut conn, &stream).await, "the stream was written");
    assert_eq!(map.get("k"), None);
    assert_eq!(map.get("n"), None);

    // Writes work again once memory is available.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(map.increment("n", 2).await.unwrap(), 2);
}

/// An ACL user refused a command, a key or a channel gets a `NoPermission` denial, not
/// retryable, and nothing was applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_denials_are_typed_and_not_retryable() {
    let Some(server) = private_server(&[
        "--user",
        "bob",
        "on",
        ">bob-pw",
        "~allowed:*",
        "&allowed:*",
        "+@all",
        "-xadd",
    ]) else {
        return;
    };
    let bob = RedisBackend::connect_with(&url(&server, "bob:bob-pw"), fast())
        .await
        .unwrap();
    let mut admin = raw(&server.url()).await;

    let fields = vec![("f".to_owned(), Bytes::from("v"))];
    assert_no_permission(
        bob.stream_add("allowed:s", fields, &AddOptions::default())
            .await,
    );
    assert!(!exists(&mut admin, "allowed:s").await);

    let outside = MapTarget::new("other:m", "allowed:n");
    assert_no_permission(
        bob.map_set(&outside, "k", Bytes::from("v"), SetCondition::Always)
            .await,
    );
    assert!(!exists(&mut admin, "other:m").await);

    assert_no_permission(bob.subscribe(&["other:ch".to_owned()]).await);

    // What the ACL allows still works, on the same connections.
    let inside = MapTarget::new("allowed:m", "allowed:n");
    bob.map_set(&inside, "k", Bytes::from("v"), SetCondition::Always)
        .await
        .unwrap();
    bob.subscribe(&["allowed:ch".to_owned()]).await.unwrap();
}

/// A server that may evict keys is refused at connect with a configuration error naming
/// the policy, unless the user opts in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_server_is_refused_unless_allowed() {
    let Some(server) = private_server(&["--maxmemory-policy", "allkeys-lru"]) else {
        return;
    };
    for policy in ["allkeys-lru", "volatile-ttl"] {
        let mut conn = raw(&server.url()).await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .query_async(&mut conn)
            .await
            .unwrap();
        match RedisBackend::connect_with(&server.url(), fast()).await {
            Err(Error::Config(message)) => {
                assert!(message.contains(policy), "{message}");
                assert!(message.contains("with_allow_eviction"), "{message}");
            }
            other => panic!("{policy}: expected a configuration error, got {other:?}"),
        }
        let allowed = RedisBackend::connect_with(&server.url(), fast().with_allow_eviction(true))
            .await
            .unwrap();
        allowed.publish("ch", Bytes::from("x")).await.unwrap();
    }
}

/// When the server does not let us read the policy (an ACL without `CONFIG`, `CONFIG`
/// renamed away), the backend connects anyway (and logs a warning), even to a server that
/// evicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_policy_is_not_checked() {
    let Some(server) = private_server(&[
        "--maxmemory-policy",
        "allkeys-lru",
        "--user",
        "bob",
        "on",
        ">bob-pw",
        "~*",
        "&*",
        "+@all",
        "-config",
    ]) else {
        return;
    };
    let bob = RedisBackend::connect_with(&url(&server, "bob:bob-pw"), fast())
        .await
        .unwrap();
    bob.publish("ch", Bytes::from("x")).await.unwrap();

    let Some(renamed) = private_server(&[
        "--maxmemory-policy",
        "allkeys-lru",
        "--rename-command",
        "CONFIG",
        "",
    ]) else {
        return;
    };
    RedisBackend::connect_with(&renamed.url(), fast())
        .await
        .unwrap()
        .publish("ch", Bytes::from("x"))
        .await
        .unwrap();
}

/// A sink and a reader started while the server is at `maxclients` (their blocking reads
/// cannot get a connection) say so through `health()` — with the server's reason — and
/// deliver once a connection is free again. (Before, 37 of 50 sinks in this situation
/// received nothing and only the log said why.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_and_readers_at_maxclients_report_it() {
    use pulse::streaming::{ReadHealth, ReaderOptions, SinkOptions, Stream, StreamOptions};
    let Some(server) = private_server(&["--maxclients", "4"]) else {
        return;
    };
    let backend = RedisBackend::connect_with(&server.url(), fast())
        .await
        .unwrap();
    let b: Arc<dyn Backend> = Arc::new(backend);
    // The backend holds its command connection; take the rest of the server's slots.
    let mut hogs = Vec::new();
    loop {
        match redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
        {
            Ok(c) => hogs.push(c),
            Err(_) => break,
        }
        assert!(hogs.len() <= 4, "maxclients not enforced");
    }
    let stream = Stream::new(b.clone(), "s", StreamOptions::default()).unwrap();
    let patience = Duration::from_millis(300);
    let sink = stream
        .new_sink(
            "g",
            SinkOptions::default()
                .with_retry_delay(Duration::from_millis(20))
                .with_read_patience(patience),
        )
        .await
        .unwrap();
    let reader = stream
        .new_reader(
            ReaderOptions::default()
                .with_retry_delay(Duration::from_millis(20))
                .with_read_patience(patience),
        )
        .await
        .unwrap();
    let (mut from_sink, mut from_reader) = (sink.subscribe().unwrap(), reader.subscribe().unwrap());
    for mut health in [sink.health(), reader.health()] {
        let failing = tokio::time::timeout(
            Duration::from_secs(10),
            health.wait_for(|h| matches!(h, ReadHealth::Failing { .. })),
        )
        .await
        .expect("reported within 10 s")
        .unwrap()
        .clone();
        match failing {
            ReadHealth::Failing { error } => {
                assert!(error.contains("too many clients"), "{error}")
            }
            other => panic!("{other:?}"),
        }
    }
    drop(hogs);
    stream.add("e", "after").await.unwrap();
    for rx in [&mut from_sink, &mut from_reader] {
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert_eq!(event.ok().flatten().map(|e| e.name), Some("e".to_owned()));
    }
    assert_eq!(*sink.health().borrow(), ReadHealth::Reading);
    sink.close().await.unwrap();
    reader.close().await.unwrap();
}
