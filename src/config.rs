//! The sidecar's settings: `serve`, `gc` and `migrate` flags. Every flag has a default
//! or says it is required, and an `ONCEWARD_*` environment fallback; nothing else in the
//! crate reads the environment. The whole command line, with the client commands and
//! the bench, is parsed in one pass by [`crate::command::Cli`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::domain::{DurationBounds, Limits, parse_duration};

/// `onceward gc`.
#[derive(Debug, Clone, Args)]
pub struct GcArgs {
    /// The ledger to clean.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// Rows deleted per batch.
    #[arg(long, env = "ONCEWARD_CLEANUP_BATCH_SIZE", default_value_t = crate::retention::DEFAULT_BATCH_SIZE)]
    pub cleanup_batch_size: u32,
}

/// Where the two tiers live.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// The ledger: postgres://… (production, shared by many sidecars) or sqlite://…
    /// (single host). Default: an embedded SQLite file under --data-dir.
    #[arg(long, env = "ONCEWARD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Where the embedded SQLite ledger lives when no --database-url is given.
    #[arg(long, env = "ONCEWARD_DATA_DIR", default_value = "./onceward-data")]
    pub data_dir: PathBuf,

    /// Most Postgres connections.
    #[arg(long, env = "ONCEWARD_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,

    /// Concurrent batched statements per kind of ledger write (claims, completions).
    #[arg(long, env = "ONCEWARD_LEDGER_BATCH_WRITERS", default_value_t = crate::ledger::postgres::DEFAULT_BATCH_WRITERS)]
    pub ledger_batch_writers: usize,

    /// Start even if Postgres has synchronous_commit off (acknowledged claims could be
    /// lost in a Postgres crash).
    #[arg(long, env = "ONCEWARD_ALLOW_ASYNC_COMMIT")]
    pub allow_async_commit: bool,

    /// How long any ledger call may take before the RPC fails closed with UNAVAILABLE.
    #[arg(long, env = "ONCEWARD_LEDGER_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub ledger_timeout: Duration,
}

/// `onceward serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// gRPC listen address.
    #[arg(long, env = "ONCEWARD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Threads that run the sidecar. With one (the default) every task runs on one
    /// thread, so the replies, Redis commands and ledger batches that one wake-up
    /// readies leave in few system calls; more threads use more cores, at more CPU per
    /// operation (BENCHMARKS.md).
    #[arg(long, env = "ONCEWARD_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: u16,

    /// Prometheus listen address (text format on /metrics).
    #[arg(
        long,
        env = "ONCEWARD_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: SocketAddr,

    /// The ledger.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// The hot tier: redis://… . Default: an in-process cache (one sidecar only).
    #[arg(long, env = "ONCEWARD_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// The hot tier on a Redis Cluster (or Valkey cluster), instead of --redis-url:
    /// seed nodes host:port[,host:port…]; the others are discovered.
    #[arg(
        long,
        env = "ONCEWARD_REDIS_CLUSTER",
        value_delimiter = ',',
        conflicts_with = "redis_url",
        hide_env_values = true
    )]
    pub redis_cluster: Vec<String>,

    /// Bytes of completed records each sidecar keeps in memory in front of its hot tier,
    /// so duplicates of completed keys need no round trip to Redis (and, on the
    /// in-process tier, cost less); 0 turns it off.
    #[arg(long, env = "ONCEWARD_NEAR_CACHE_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub near_cache_max_bytes: u64,

    /// Most keys the in-process hot tier holds (when neither --redis-url nor
    /// --redis-cluster is given).
    #[arg(long, env = "ONCEWARD_CACHE_MAX_ENTRIES", default_value_t = 100_000)]
    pub cache_max_entries: u64,

    /// Prefix of every Redis key, so deployments can share one Redis.
    #[arg(long, env = "ONCEWARD_REDIS_KEY_PREFIX", default_value = "onceward:")]
    pub redis_key_prefix: String,

    /// The most a Redis command may take before the claim falls through to the ledger.
    #[arg(long, env = "ONCEWARD_REDIS_TIMEOUT", value_parser = parse_duration, default_value = "100ms")]
    pub redis_timeout: Duration,

    /// How long the Redis circuit stays open after a failure before one probe.
    #[arg(long, env = "ONCEWARD_REDIS_BREAKER_COOLDOWN", value_parser = parse_duration, default_value = "1s")]
    pub redis_breaker_cooldown: Duration,

    /// Lease of a claim that does not ask for one.
    #[arg(long, env = "ONCEWARD_DEFAULT_LEASE", value_parser = parse_duration, default_value = "30s")]
    pub default_lease: Duration,

    /// Longest lease a claim may ask for.
    #[arg(long, env = "ONCEWARD_MAX_LEASE", value_parser = parse_duration, default_value = "1h")]
    pub max_lease: Duration,

    /// Retention of a completed record that does not ask for one; also how long an
    /// abandoned claim is kept after its lease runs out.
    #[arg(long, env = "ONCEWARD_DEFAULT_RETENTION", value_parser = parse_duration, default_value = "24h")]
    pub default_retention: Duration,

    /// Longest retention a Complete may ask for.
    #[arg(long, env = "ONCEWARD_MAX_RETENTION", value_parser = parse_duration, default_value = "30d")]
    pub max_retention: Duration,

    /// Tenants and their tokens (TOML; see SECURITY.md). Without it, or with no
    /// tenants in it, authentication is off.
    #[arg(long, env = "ONCEWARD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Refuse to start without tenants (authentication must be on).
    #[arg(long, env = "ONCEWARD_REQUIRE_AUTH")]
    pub require_auth: bool,

    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "ONCEWARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "ONCEWARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "ONCEWARD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Server-side deadline of every RPC (the client's grpc-timeout, if shorter, wins);
    /// a call still running then is answered DEADLINE_EXCEEDED.
    #[arg(long, env = "ONCEWARD_RPC_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub rpc_timeout: Duration,

    /// Most concurrent RPCs (HTTP/2 streams) per client connection.
    #[arg(long, env = "ONCEWARD_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub max_concurrent_streams: u32,

    /// Most client connections open at once; further connections wait in the listen
    /// backlog until one closes. Kept below the open-file limit.
    #[arg(long, env = "ONCEWARD_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Time a new connection has to send the HTTP/2 preface (with TLS: to finish the
    /// handshake and send it) before it is closed.
    #[arg(long, env = "ONCEWARD_HANDSHAKE_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub handshake_timeout: Duration,

    /// Time a request has, from its headers, to send its whole body; a request still
    /// waiting is answered DEADLINE_EXCEEDED and its memory freed.
    #[arg(long, env = "ONCEWARD_REQUEST_BODY_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub request_body_timeout: Duration,

    /// Time between HTTP/2 pings on a connection, to find dead peers; 0 turns them off.
    #[arg(long, env = "ONCEWARD_HTTP2_KEEPALIVE_INTERVAL", value_parser = parse_duration, default_value = "20s")]
    pub http2_keepalive_interval: Duration,

    /// Time a ping may go unanswered before its connection is closed.
    #[arg(long, env = "ONCEWARD_HTTP2_KEEPALIVE_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub http2_keepalive_timeout: Duration,

    /// Idle time before TCP keepalive probes on a client connection; 0 turns them off.
    #[arg(long, env = "ONCEWARD_TCP_KEEPALIVE", value_parser = parse_duration, default_value = "60s")]
    pub tcp_keepalive: Duration,

    /// Time between retention passes inside `serve`; 0 turns the job off (e.g. when
    /// `onceward gc` runs from cron instead).
    #[arg(long, env = "ONCEWARD_CLEANUP_INTERVAL", value_parser = parse_duration, default_value = "60s")]
    pub cleanup_interval: Duration,

    /// Rows deleted per retention batch.
    #[arg(long, env = "ONCEWARD_CLEANUP_BATCH_SIZE", default_value_t = crate::retention::DEFAULT_BATCH_SIZE)]
    pub cleanup_batch_size: u32,

    /// The most items one ClaimBatch or CompleteBatch may carry.
    #[arg(long, env = "ONCEWARD_MAX_BATCH_ITEMS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_batch_items: u32,

    /// Largest response a Complete may store, in bytes.
    #[arg(long, env = "ONCEWARD_MAX_RESPONSE_BYTES", default_value_t = 256 * 1024, alias = "max-response-size")]
    pub max_response_bytes: usize,
}

impl ServeArgs {
    /// The limits requests are validated against.
    pub fn limits(&self) -> anyhow::Result<Limits> {
        anyhow::ensure!(
            self.default_lease <= self.max_lease,
            "--default-lease must not exceed --max-lease"
        );
        anyhow::ensure!(
            self.default_retention <= self.max_retention,
            "--default-retention must not exceed --max-retention"
        );
        anyhow::ensure!(
            !self.default_lease.is_zero(),
            "--default-lease must be positive"
        );
        anyhow::ensure!(
            !self.default_retention.is_zero(),
            "--default-retention must be positive"
        );
        Ok(Limits {
            lease: DurationBounds {
                default: self.default_lease,
                max: self.max_lease,
            },
            retention: DurationBounds {
                default: self.default_retention,
                max: self.max_retention,
            },
            max_response_bytes: self.max_response_bytes,
            max_batch_items: self.max_batch_items as usize,
        })
    }
}
