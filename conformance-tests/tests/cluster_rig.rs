#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The private Redis Cluster helper works: a 3-master cluster comes up with every slot
//! served, names the master of a slot, computes slots as `pulse::keys::hash_slot` does,
//! and survives a master restart (it rejoins with its
//! node id and the cluster is ready again).

use pulse_conformance::redis_cluster::private_cluster;

#[test]
fn a_private_cluster_comes_up_serves_every_slot_and_takes_a_restart() {
    let Some(cluster) = private_cluster(3, 0) else {
        return;
    };
    assert_eq!(cluster.nodes().len(), 3);
    let url = cluster.url();
    assert!(url.starts_with("redis+cluster://127.0.0.1:"), "{url}");
    assert_eq!(url.matches(',').count(), 2, "{url}");
    // The three masters split the slots: the first, middle and last slots have owners,
    // every owner is one of ours, and not all slots have the same one.
    let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
    let owners: Vec<u16> = [0u16, 8000, 16383]
        .iter()
        .map(|s| cluster.owner_of_slot(*s, 1).unwrap())
        .collect();
    assert!(
        owners.iter().all(|p| ports.contains(p)),
        "{owners:?} {ports:?}"
    );
    assert!(owners.iter().any(|p| *p != owners[0]), "{owners:?}");
    // Pulse's slot function agrees with the server's, on every kind of key it builds.
    let ks = pulse::keys::Keyspace::default();
    let map = ks.map("orders").unwrap();
    for key in [
        map.hash.clone(),
        map.channel.clone(),
        ks.stream("events").unwrap(),
        ks.pool_map("jobs", "owners").unwrap().hash,
        "no tag at all".to_owned(),
        "foo{}{bar}".to_owned(),
        "foo{{bar}}zap".to_owned(),
    ] {
        assert_eq!(
            cluster.slot_of(&key).unwrap(),
            pulse::keys::hash_slot(&key),
            "{key}"
        );
    }
    // A master restarted (no persistence of data, but its nodes.conf) rejoins.
    let master = &cluster.nodes()[0];
    master.stop();
    assert!(!master.is_running());
    master.restart().unwrap();
    cluster.wait_ready().unwrap();
    assert!(ports.contains(&cluster.owner_of_slot(0, 0).unwrap()));
}

#[test]
fn a_cluster_with_replicas_fails_over_on_request() {
    let Some(cluster) = private_cluster(3, 1) else {
        return;
    };
    assert_eq!(cluster.nodes().len(), 6);
    // Replicas attach in the background after creation: wait for three of each.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let roles = loop {
        let roles = cluster.masters_now(0).unwrap();
        if roles.iter().filter(|m| **m).count() == 3 && roles.iter().filter(|m| !**m).count() == 3 {
            break roles;
        }
        assert!(std::time::Instant::now() < deadline, "roles: {roles:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let replica = roles.iter().position(|m| !m).unwrap();
    cluster.failover(replica).unwrap();
    let after = cluster.masters_now(replica).unwrap();
    assert!(after[replica], "the replica was promoted: {after:?}");
    assert_eq!(after.iter().filter(|m| **m).count(), 3, "{after:?}");
}
