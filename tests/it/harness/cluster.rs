//! A Redis Cluster of the test's own: three masters and three replicas, each a
//! `redis-server --cluster-enabled yes` on a free port of 127.0.0.1 with its state in a
//! temporary directory, joined by `redis-cli --cluster create`. A test may SIGKILL any
//! node; every node still running is killed when the cluster is dropped.
//!
//! The cluster is set up as a cluster serving a hot tier should be:
//! `cluster-require-full-coverage no`, so a shard that is down (master and replicas)
//! stops only its own slots rather than the whole cluster, and a 1 s
//! `cluster-node-timeout`, so a replica is promoted soon after its master dies.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

/// Masters in the test cluster; each has one replica.
const MASTERS: usize = 3;

/// How long the cluster waits before it deems a silent node failed.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// One `redis-server` of the cluster.
struct Node {
    port: u16,
    child: Option<Child>,
}

/// A shard as `CLUSTER SLOTS` reports it: its slot range, its master's port, and the
/// ports of its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterShard {
    pub start: u16,
    pub end: u16,
    pub master: u16,
    pub replicas: Vec<u16>,
}

impl ClusterShard {
    /// Whether the shard holds `slot`.
    pub fn holds(&self, slot: u16) -> bool {
        (self.start..=self.end).contains(&slot)
    }
}

/// The running cluster.
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts six nodes, makes them a cluster and waits until every node says
    /// `cluster_state:ok` and every replica is in sync with its master.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cluster = Self {
            nodes: Vec::new(),
            _dir: dir,
        };
        for _ in 0..MASTERS * 2 {
            let port = cluster_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args([
                    "--cluster-node-timeout",
                    &NODE_TIMEOUT.as_millis().to_string(),
                ])
                .args(["--cluster-require-full-coverage", "no"])
                // A replica may always stand in for its dead master, however long
                // it was cut off: this is a cache.
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(cluster._dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be on PATH");
            cluster.nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        for node in &cluster.nodes {
            wait_for(Duration::from_secs(10), || async {
                connect(node.port).await.ok().map(drop)
            })
            .await
            .unwrap_or_else(|| panic!("redis-server did not start on port {}", node.port));
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("redis-cli must be on PATH");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        cluster.wait_until_healthy().await;
        cluster
    }

    /// The seed nodes, as `--redis-cluster` takes them: every node's address.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The shards as a live node sees them, by slot range.
    pub async fn shards(&self) -> Vec<ClusterShard> {
        for port in self.running() {
            let Ok(mut connection) = connect(port).await else {
                continue;
            };
            let Ok(reply) = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<Vec<Vec<redis::Value>>>(&mut connection)
                .await
            else {
                continue;
            };
            // Each entry: start, end, then one array per node, master first, whose
            // second element is its port.
            let int = |value: &redis::Value| match value {
                redis::Value::Int(int) => *int as u16,
                other => panic!("CLUSTER SLOTS: {other:?} is no number"),
            };
            let port = |node: &redis::Value| match node {
                redis::Value::Array(fields) => int(&fields[1]),
                other => panic!("CLUSTER SLOTS: {other:?} is no node"),
            };
            let mut shards: Vec<ClusterShard> = reply
                .iter()
                .map(|entry| ClusterShard {
                    start: int(&entry[0]),
                    end: int(&entry[1]),
                    master: port(&entry[2]),
                    replicas: entry[3..].iter().map(port).collect(),
                })
                .collect();
            shards.sort_by_key(|shard| shard.start);
            return shards;
        }
        panic!("no cluster node answers CLUSTER SLOTS");
    }

    /// The hash slot of `key`, as the cluster computes it.
    pub async fn slot(&self, key: &str) -> u16 {
        let mut connection = connect(self.running()[0]).await.expect("a cluster node");
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("CLUSTER KEYSLOT")
    }

    /// SIGKILLs the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("a node of this cluster");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `FLUSHALL` on every running master.
    pub async fn flush_every_master(&self) {
        for shard in self.shards().await {
            let mut connection = connect(shard.master).await.expect("a master");
            let () = redis::cmd("FLUSHALL")
                .query_async(&mut connection)
                .await
                .expect("FLUSHALL");
        }
    }

    /// Keys held by the master on `port`.
    pub async fn keys_on(&self, port: u16) -> u64 {
        let mut connection = connect(port).await.expect("a node");
        redis::cmd("DBSIZE")
            .query_async(&mut connection)
            .await
            .expect("DBSIZE")
    }

    /// Waits until the shard that holds `slot` has a running master other than
    /// `dead` (its replica was promoted), and returns that master's port.
    pub async fn wait_for_new_master(&self, slot: u16, dead: u16) -> u16 {
        wait_for(Duration::from_secs(20), || async {
            let shard = self
                .shards()
                .await
                .into_iter()
                .find(|shard| shard.holds(slot))?;
            (shard.master != dead && self.running().contains(&shard.master)).then_some(shard.master)
        })
        .await
        .unwrap_or_else(|| panic!("no replica took over from the master on {dead}"))
    }

    /// Ports of the nodes still running.
    fn running(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| node.port)
            .collect()
    }

    /// Every node says `cluster_state:ok` and every replica's link to its master is up.
    async fn wait_until_healthy(&self) {
        let started = Instant::now();
        let healthy = wait_for(Duration::from_secs(30), || async {
            for port in self.running() {
                let mut connection = connect(port).await.ok()?;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut connection)
                    .await
                    .ok()?;
                if !info.contains("cluster_state:ok") {
                    return None;
                }
                let replication: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut connection)
                    .await
                    .ok()?;
                if replication.contains("role:slave")
                    && !replication.contains("master_link_status:up")
                {
                    return None;
                }
            }
            Some(())
        })
        .await;
        assert!(
            healthy.is_some(),
            "the cluster was not healthy within {:?}",
            started.elapsed()
        );
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A connection to the node on `port`, with replies allowed 5 s on a busy machine.
async fn connect(port: u16) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// A free port whose cluster bus port (the port + 10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = rand::random_range(12_000..=30_000u16);
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
}

/// Retries `check` every 50 ms until it gives a value, for at most `within`.
async fn wait_for<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
