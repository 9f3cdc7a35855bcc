//! `rediss://` against a private TLS `redis-server` with a throwaway CA made for the test:
//! commands, scripts, pub/sub and blocking reads all work over TLS with an ACL user, the
//! password never shows, a server whose CA is not trusted is a typed error, and plain text
//! to the TLS port fails at once with a hint to use `rediss://`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, process::Command, time::Duration};

use bytes::Bytes;
use pulse::{
    backend::{
        AddOptions, AtomicOps, EntryId, MapTarget, PubSubEvent, PubSubOps, SetCondition, StreamOps,
    },
    Error,
};
use pulse_conformance::redis_server::{private_server, redis_required};
use pulse_redis::{RedisBackend, RedisOptions};

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A CA and a server certificate for 127.0.0.1, in `dir`.
fn make_certs(dir: &Path) -> bool {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .is_ok()
        && openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "1",
                "-subj",
                "/CN=pulse-test-ca",
            ],
        )
        && openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        )
        && openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
            ],
        )
}

fn fast() -> RedisOptions {
    RedisOptions::default()
        .with_connect_timeout(Duration::from_secs(3))
        .with_command_timeout(Duration::from_secs(3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_an_acl_user() {
    let dir = std::env::temp_dir().join(format!(
        "pulse-tls-{}-{}",
        std::process::id(),
        pulse::backend::new_epoch()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    if !make_certs(&dir) {
        assert!(
            !redis_required(),
            "PULSE_REQUIRE_REDIS=1 but openssl could not make test certificates"
        );
        eprintln!("SKIPPING: openssl is not available to make test certificates");
        return;
    }
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let path = |f: &str| dir.join(f).display().to_string();
    let (cert, key, ca) = (path("server.crt"), path("server.key"), path("ca.crt"));
    let args = [
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
        "--user",
        "alice",
        "on",
        ">alice-pw",
        "~*",
        "&*",
        "+@all",
    ];
    let Some(_server) = private_server(&args) else {
        return;
    };
    let url = format!("rediss://alice:alice-pw@127.0.0.1:{tls_port}/");
    let ca_pem = std::fs::read(dir.join("ca.crt")).unwrap();

    let backend = RedisBackend::connect_with(&url, fast().with_tls_root_cert(ca_pem.clone()))
        .await
        .unwrap();
    assert!(!format!("{backend:?}").contains("alice-pw"));
    assert!(!format!(
        "{:?}",
        fast().with_tls_client_cert(b"CERT".to_vec(), b"SECRET-KEY".to_vec())
    )
    .contains("SECRET"));
    let map = MapTarget::new("m", "m:n");
    let mut sub = backend.subscribe(&["m:n".to_owned()]).await.unwrap();
    backend
        .map_set(&map, "k", Bytes::from("v"), SetCondition::Always)
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(event, PubSubEvent::Message { .. }),
        "pub/sub over TLS"
    );
    let reader = {
        let b = backend.clone();
        tokio::spawn(async move {
            b.stream_read(
                &[("s".into(), EntryId::ZERO)],
                10,
                Some(Duration::from_secs(20)),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // let the read block first
    backend
        .stream_add(
            "s",
            vec![("n".into(), Bytes::from("e"))],
            &AddOptions::default(),
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got[0].entries.len(), 1, "blocking read over TLS");

    // A CA we do not trust (the system store) and plain TCP to the TLS port: typed errors.
    let untrusted = RedisBackend::connect_with(&url, fast()).await.unwrap_err();
    assert!(
        matches!(untrusted, Error::Connection { .. }),
        "{untrusted:?}"
    );
    assert!(!format!("{untrusted:?}").contains("alice-pw"));
    let started = std::time::Instant::now();
    let plain = RedisBackend::connect_with(
        &format!("redis://alice:alice-pw@127.0.0.1:{tls_port}/"),
        fast(),
    )
    .await
    .unwrap_err();
    assert!(matches!(plain, Error::Connection { .. }), "{plain:?}");
    // The TLS port closes on plain text; the message says what to try.
    assert!(plain.to_string().contains("use a rediss:// URL"), "{plain}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "plain text to TLS was slow"
    );
    assert!(!plain.to_string().contains("alice-pw"));
    let _ = std::fs::remove_dir_all(&dir);
}
