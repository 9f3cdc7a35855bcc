//! Commands that answer a generic `ERR` on a missing key (`XINFO STREAM`, `XINFO GROUPS`,
//! `XGROUP CREATE` without `MKSTREAM`) while another client creates that key. The backend
//! tells "missing" from other failures by asking `EXISTS` afterwards; a key created in
//! between must read as the key's state (asked again), never as an error. Seen in CI as
//! `XINFO STREAM: no such key` from `stream_info` while a delayed-event mover made the
//! stream's first entry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use pulse::backend::{AddOptions, GroupOps, GroupStart, StreamOps};
use pulse::Error;
use pulse_conformance::redis_server::private_server;
use pulse_redis::RedisBackend;

/// Rounds per command; each round's add lands between the command and its `EXISTS` about
/// half the time, so the old code failed within a handful of rounds.
const ROUNDS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_during_the_existence_check_is_never_an_error() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    // The checker and the creator on different connections, so the add can land between
    // the checker's command and its EXISTS.
    let checker = RedisBackend::connect(&server.url()).await.unwrap();
    let creator = RedisBackend::connect(&server.url()).await.unwrap();
    for round in 0..ROUNDS {
        let key = format!("race:{round}");
        let add = {
            let (creator, key) = (creator.clone(), key.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(300 * (round as u64 % 7))).await;
                let fields = vec![("f".to_owned(), Bytes::from_static(b"v"))];
                creator
                    .stream_add(&key, fields, &AddOptions::default())
                    .await
                    .unwrap();
            })
        };
        // Each command in turn until the stream is there; only the documented answers.
        loop {
            let info = checker.stream_info(&key).await.expect("stream_info");
            let groups = checker.group_list(&key).await.expect("group_list");
            let created = match checker
                .group_create(&key, "g", GroupStart::Newest, false)
                .await
            {
                Ok(_) => true,
                Err(Error::NoGroup { .. }) => false,
                Err(e) => panic!("group_create on a stream being created: {e:?}"),
            };
            if info.is_some() && created {
                assert!(groups.len() <= 1, "{groups:?}");
                break;
            }
        }
        add.await.unwrap();
    }
}
