//! A private Redis Cluster for tests: masters (and optionally one replica each) on free
//! loopback ports, each a [`RedisServer`] with cluster mode on (so each has its own
//! temporary directory, is killed when dropped or when the test process exits, and can be
//! stopped and restarted — it rejoins with the node id kept in its `nodes.conf`).
//! [`RedisCluster::start`] returns once every node reports `cluster_state:ok` and sees
//! every slot served.
//!
//! Environment: `PULSE_REQUIRE_REDIS=1` turns a cluster that cannot be started into a
//! failure instead of a visible skip ([`private_cluster`]).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::redis_server::{redis_required, RedisServer};

/// How long a new cluster may take to agree on its slots.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running private cluster.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    masters: usize,
}

/// The answer of `redis-cli -p <port> <args…>`, or why there is none.
fn cli(port: u16, args: &[&str]) -> std::io::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "redis-cli {args:?} on port {port}: {}",
            out.status
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl RedisCluster {
    /// Starts `masters` masters (at least 3, as Redis requires) with `replicas` replicas
    /// each (0 or more), creates the cluster and waits until it is ready.
    pub fn start(masters: usize, replicas: usize) -> std::io::Result<Self> {
        Self::start_with(masters, replicas, &[])
    }

    /// [`RedisCluster::start`] with extra `redis-server` arguments for every node (for
    /// example `--appendonly yes` for data that survives a restart).
    pub fn start_with(masters: usize, replicas: usize, extra: &[&str]) -> std::io::Result<Self> {
        if masters < 3 {
            return Err(std::io::Error::other("a cluster needs at least 3 masters"));
        }
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let mut args = vec![
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ];
            args.extend_from_slice(extra);
            nodes.push(RedisServer::start_with(&args)?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        let replicas_arg = replicas.to_string();
        create.extend(["--cluster-replicas", &replicas_arg, "--cluster-yes"]);
        cli(nodes[0].port(), &create)?;
        let cluster = RedisCluster { nodes, masters };
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// Waits until every running node says `cluster_state:ok` with all 16384 slots served.
    pub fn wait_ready(&self) -> std::io::Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let ready = self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                cli(n.port(), &["cluster", "info"]).is_ok_and(|info| {
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                })
            });
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "cluster not ready within {READY_WITHIN:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The seed URL of every node: `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…/`.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}/", seeds.join(","))
    }

    /// The nodes, in creation order (the first `masters` were created as masters).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The port of the master that serves `slot` now, as node `via` sees it.
    pub fn owner_of_slot(&self, slot: u16, via: usize) -> std::io::Result<u16> {
        let nodes = cli(self.nodes[via].port(), &["cluster", "nodes"])?;
        owner_in_nodes(&nodes, slot)
            .ok_or_else(|| std::io::Error::other(format!("no master serves slot {slot}")))
    }

    /// The roles the cluster gives its nodes now, as node `via` sees them: per node
    /// index, `true` for a master.
    pub fn masters_now(&self, via: usize) -> std::io::Result<Vec<bool>> {
        let nodes = cli(self.nodes[via].port(), &["cluster", "nodes"])?;
        Ok(self
            .nodes
            .iter()
            .map(|n| {
                nodes.lines().any(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    fields.len() > 2
                        && fields[1].starts_with(&format!("127.0.0.1:{}@", n.port()))
                        && fields[2].split(',').any(|f| f == "master")
                })
            })
            .collect())
    }

    /// Promotes replica `node` with `CLUSTER FAILOVER` (a coordinated failover: its master
    /// hands over without losing writes) and waits until it is a master, its old master a
    /// replica, and the cluster ready.
    pub fn failover(&self, node: usize) -> std::io::Result<()> {
        let ask = || -> std::io::Result<()> {
            let answer = cli(self.nodes[node].port(), &["cluster", "failover"])?;
            if !answer.trim().eq_ignore_ascii_case("ok") {
                return Err(std::io::Error::other(format!("CLUSTER FAILOVER: {answer}")));
            }
            Ok(())
        };
        ask()?;
        let deadline = Instant::now() + READY_WITHIN;
        // A manual failover gives up quietly (after about 5 s) when the replica has not
        // caught up with its master yet, as right after it attached: ask again then.
        let mut asked = Instant::now();
        // Done when the node is a master and its old master is seen as a replica.
        loop {
            let roles = self.masters_now(node)?;
            let promoted = roles.get(node).copied().unwrap_or(false);
            if promoted && roles.iter().filter(|m| **m).count() == self.masters {
                break;
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other("the replica did not become a master"));
            }
            if !promoted && asked.elapsed() > Duration::from_secs(6) {
                ask()?;
                asked = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_ready()
    }

    /// The replica of master `master` (node index), once one is attached and in sync
    /// (replicas attach in the background after the cluster is created).
    pub fn replica_of(&self, master: usize) -> std::io::Result<usize> {
        let master_id = cli(self.nodes[master].port(), &["cluster", "myid"])?
            .trim()
            .to_owned();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let nodes = cli(self.nodes[master].port(), &["cluster", "nodes"])?;
            let replica = nodes.lines().find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let is_ours = fields.len() > 3
                    && fields[2].split(',').any(|f| f == "slave")
                    && fields[3] == master_id;
                let port: u16 = fields
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                is_ours.then(|| self.index_of(port)).flatten()
            });
            if let Some(replica) = replica {
                let synced = cli(self.nodes[replica].port(), &["info", "replication"])
                    .is_ok_and(|info| info.contains("master_link_status:up"));
                if synced {
                    return Ok(replica);
                }
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "no replica of node {master} in sync within {READY_WITHIN:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index of the node listening on `port`.
    pub fn index_of(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port() == port)
    }

    /// Moves `slot` to master `to` the way `redis-cli --cluster reshard` does —
    /// `SETSLOT IMPORTING`/`MIGRATING`, `MIGRATE` of its keys one at a time with `pause`
    /// between them (so clients meet `ASK` and `TRYAGAIN` on a half-moved slot), then
    /// `SETSLOT NODE` on every master — and waits until the cluster is ready.
    pub fn migrate_slot(&self, slot: u16, to: usize, pause: Duration) -> std::io::Result<()> {
        let from_port = self.owner_of_slot(slot, to)?;
        let from = self
            .index_of(from_port)
            .ok_or_else(|| std::io::Error::other("the slot's owner is not ours"))?;
        if from == to {
            return Ok(());
        }
        let (src, dst) = (self.nodes[from].port(), self.nodes[to].port());
        let id = |port| cli(port, &["cluster", "myid"]).map(|s| s.trim().to_owned());
        let (src_id, dst_id) = (id(src)?, id(dst)?);
        let slot_arg = slot.to_string();
        let ok = |what: &str, answer: String| {
            if answer.trim().eq_ignore_ascii_case("ok") {
                Ok(())
            } else {
                Err(std::io::Error::other(format!("{what}: {answer}")))
            }
        };
        ok(
            "SETSLOT IMPORTING",
            cli(
                dst,
                &["cluster", "setslot", &slot_arg, "importing", &src_id],
            )?,
        )?;
        ok(
            "SETSLOT MIGRATING",
            cli(
                src,
                &["cluster", "setslot", &slot_arg, "migrating", &dst_id],
            )?,
        )?;
        let dst_port = dst.to_string();
        loop {
            let keys = cli(src, &["cluster", "getkeysinslot", &slot_arg, "1"])?;
            let Some(key) = keys.lines().map(str::trim).find(|k| !k.is_empty()) else {
                break;
            };
            let answer = cli(
                src,
                &[
                    "migrate",
                    "127.0.0.1",
                    &dst_port,
                    key,
                    "0",
                    "5000",
                    "replace",
                ],
            )?;
            if !answer.trim().eq_ignore_ascii_case("ok") && !answer.contains("NOKEY") {
                return Err(std::io::Error::other(format!("MIGRATE {key}: {answer}")));
            }
            std::thread::sleep(pause);
        }
        // The importing node first, then the source, then the rest; replicas refuse
        // SETSLOT and learn the owner from their masters.
        let mut order = vec![to, from];
        order.extend((0..self.nodes.len()).filter(|i| *i != to && *i != from));
        for i in order.into_iter().filter(|i| self.nodes[*i].is_running()) {
            let _ = cli(
                self.nodes[i].port(),
                &["cluster", "setslot", &slot_arg, "node", &dst_id],
            );
        }
        let deadline = Instant::now() + READY_WITHIN;
        for (i, node) in self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_running())
        {
            while self.owner_of_slot(slot, i).ok() != Some(dst) {
                if Instant::now() > deadline {
                    return Err(std::io::Error::other(format!(
                        "node {} does not see slot {slot} on its new owner",
                        node.port()
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.wait_ready()
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`, asked of the first node).
    pub fn slot_of(&self, key: &str) -> std::io::Result<u16> {
        cli(self.nodes[0].port(), &["cluster", "keyslot", key])?
            .trim()
            .parse()
            .map_err(|_| std::io::Error::other("CLUSTER KEYSLOT did not answer a number"))
    }
}

/// The master port serving `slot` in `CLUSTER NODES` output (lines of `id ip:port@bus
/// flags master ping pong epoch link slot…`, slots as `a-b` or `a`).
fn owner_in_nodes(text: &str, slot: u16) -> Option<u16> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 9 || !fields[2].split(',').any(|f| f == "master") {
            return None;
        }
        let serves = fields[8..].iter().any(|range| {
            let mut ends = range.splitn(2, '-');
            match (
                ends.next().map(str::parse::<u16>),
                ends.next().map(str::parse::<u16>),
            ) {
                (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
                (Some(Ok(a)), None) => a == slot,
                _ => false, // `[slot->-node]` migration markers
            }
        });
        let port = fields[1]
            .split('@')
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()?;
        serves.then_some(port)
    })
}

/// A private cluster for one test; `None` (after printing why) when none can be started,
/// panicking instead when [`redis_required`].
pub fn private_cluster(masters: usize, replicas: usize) -> Option<RedisCluster> {
    match RedisCluster::start(masters, replicas) {
        Ok(c) => Some(c),
        Err(e) if redis_required() => {
            panic!("PULSE_REQUIRE_REDIS=1 but the Redis Cluster failed: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPING: cannot start a Redis Cluster ({e})");
            None
        }
    }
}

/// The URL of the cluster shared by every test of this test binary:
/// `PULSE_REDIS_CLUSTER_URL` if set, else a private 3-master cluster started on first use.
/// `None` (after printing why) when none can be started; panics instead when
/// [`redis_required`].
pub fn shared_cluster_url() -> Option<String> {
    if let Ok(url) = std::env::var("PULSE_REDIS_CLUSTER_URL") {
        return Some(url);
    }
    static CLUSTER: std::sync::OnceLock<Option<RedisCluster>> = std::sync::OnceLock::new();
    CLUSTER
        .get_or_init(|| private_cluster(3, 0))
        .as_ref()
        .map(RedisCluster::url)
}
