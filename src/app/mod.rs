//! Building the sidecar (connect, migrate, bind) apart from running it, so tests can
//! bind port 0, read the address, and stop it with a future of their own.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::cache::{
    HotTier, MemoryHotTier, MemoryOptions, NearCache, RedisClusterHotTier, RedisClusterOptions,
    RedisHotTier, RedisOptions,
};
use crate::config::ServeArgs;
use crate::engine::Engine;
use crate::grpc::connect::ProtocolLayer;
use crate::grpc::guard::{GuardLayer, GuardLimits};
use crate::grpc::transport::{self, Incoming, TransportLimits};
use crate::grpc::{AdminService, OncewardService, transport_limit_as_resource_exhausted};
use crate::ledger::Ledger;
use crate::proto;
use crate::retention::Retention;
use crate::tenants::{ConfigFile, Gatekeeper};

mod storage;

pub use self::storage::{connect_ledger, gc, migrate, redact};

/// How often histogram buckets are folded for rendering.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A built sidecar: connected, migrated and bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    gatekeeper: Arc<Gatekeeper>,
    tls: Option<TlsAcceptor>,
    transport: TransportLimits,
    guard: GuardLimits,
    http2_keepalive: Option<(Duration, Duration)>,
    max_concurrent_streams: u32,
    metrics_listener: TcpListener,
    engine: Arc<Engine>,
    ledger: Arc<dyn Ledger>,
    hot: Arc<dyn HotTier>,
    metrics: PrometheusHandle,
    cleanup_interval: Duration,
    cleanup_batch_size: u32,
    /// Hears of records other sidecars forgot; stopped with the sidecar.
    forget_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Connects both tiers, applies migrations and binds both listeners.
    pub async fn build(args: &ServeArgs) -> anyhow::Result<Self> {
        tracing::info!(settings = %redact(&format!("{args:?}")), "starting");
        let metrics = crate::metrics::install();
        let limits = args.limits()?;
        let (transport, guard) = edge_limits(args, &limits)?;
        let gatekeeper = Arc::new(gatekeeper(args)?);
        let tls = tls_config(args)?;
        let ledger = connect_ledger(&args.storage).await?;
        let hot = hot_tier(args).await?;
        let engine = Arc::new(Engine::new(
            ledger.clone(),
            hot.clone(),
            limits,
            args.storage.ledger_timeout,
        ));
        let forget_watch =
            ledger.watch_forgotten(evict_forgotten(hot.clone(), args.storage.ledger_timeout));

        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
        let metrics_listener = TcpListener::bind(args.metrics_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} for metrics (--metrics-listen)",
                    args.metrics_listen
                )
            })?;
        Ok(Self {
            listener,
            gatekeeper,
            tls,
            transport,
            guard,
            http2_keepalive: (!args.http2_keepalive_interval.is_zero())
                .then_some((args.http2_keepalive_interval, args.http2_keepalive_timeout)),
            max_concurrent_streams: args.max_concurrent_streams,
            metrics_listener,
            engine,
            ledger,
            hot,
            metrics,
            cleanup_interval: args.cleanup_interval,
            cleanup_batch_size: args.cleanup_batch_size,
            forget_watch,
        })
    }

    /// The gRPC address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The ledger in use, for tooling such as a one-off retention pass.
    pub fn ledger(&self) -> Arc<dyn Ledger> {
        self.ledger.clone()
    }

    /// The hot tier in use, for tooling that needs to inspect or evict entries.
    pub fn hot_tier(&self) -> Arc<dyn HotTier> {
        self.hot.clone()
    }

    /// The metrics address actually bound.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes in-flight
    /// RPCs, stops the background jobs and returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<proto::onceward_server::OncewardServer<OncewardService>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("cannot build the reflection service")?;

        let retention_task = (!self.cleanup_interval.is_zero()).then(|| {
            let retention = Retention::new(self.ledger.clone(), self.cleanup_batch_size);
            tokio::spawn(retention.run(self.cleanup_interval, stop.clone()))
        });
        let addr = self.local_addr();
        let metrics_addr = self.metrics_addr();
        let metrics_task = tokio::spawn(serve_metrics(
            self.metrics_listener,
            self.metrics.clone(),
            stop.clone(),
        ));
        tracing::info!(
            %addr,
            max_connections = self.transport.max_connections,
            max_concurrent_streams = self.max_concurrent_streams,
            "serving gRPC"
        );
        tracing::info!("serving Prometheus metrics on http://{metrics_addr}/metrics");

        let (keepalive_interval, keepalive_timeout) = self.http2_keepalive.unzip();
        let (incoming, accepting) = Incoming::start(self.listener, self.tls, self.transport);
        // No `.timeout()`: the guard keeps the deadline, answering DEADLINE_EXCEEDED.
        // HTTP/1.1 too: Connect and gRPC-Web callers (curl, fetch, PHP) may not speak
        // HTTP/2; their calls reach the guard as gRPC ones (`grpc::connect`).
        let max_message_bytes = self.guard.max_message_bytes;
        let served = tonic::transport::Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(self.max_concurrent_streams)
            .http2_keepalive_interval(keepalive_interval)
            .http2_keepalive_timeout(keepalive_timeout)
            .layer(ProtocolLayer::new(max_message_bytes))
            .layer(GuardLayer::new(self.gatekeeper.clone(), self.guard))
            .layer(tower::util::MapResponseLayer::new(
                transport_limit_as_resource_exhausted::<tonic::body::Body>,
            ))
            .add_service(health)
            .add_service(reflection)
            .add_service(AdminService::server(
                self.engine.clone(),
                self.gatekeeper.clone(),
            ))
            .add_service(OncewardService::server(self.engine, self.gatekeeper))
            .serve_with_incoming_shutdown(incoming.into_stream(), shutdown)
            .await;

        // The server dropped the incoming stream: the accept loop has stopped or is
        // stopping; wait for it so the port is closed when this returns.
        let _ = accepting.await;
        stop.cancel();
        if let Some(watch) = self.forget_watch {
            watch.abort();
        }
        let _ = metrics_task.await;
        if let Some(retention_task) = retention_task {
            let _ = retention_task.await;
        }
        tracing::info!("stopped");
        served.context("gRPC server failed")
    }
}

/// What this sidecar does when another one forgot a record: drop its own copy now, and
/// once more when every claim that read the record before it went has cached what it
/// read (each within the ledger timeout). `None`: drop every copy.
fn evict_forgotten(hot: Arc<dyn HotTier>, settle: Duration) -> crate::ledger::ForgetHook {
    Arc::new(move |id| match id {
        Some(id) => {
            hot.evict_local(&id);
            let hot = hot.clone();
            tokio::spawn(async move {
                tokio::time::sleep(settle).await;
                hot.evict_local(&id);
            });
        }
        None => hot.evict_all_local(),
    })
}

/// The hot tier the flags name: a Redis, a Redis Cluster or the in-process cache, each
/// behind the near cache unless it is turned off.
async fn hot_tier(args: &ServeArgs) -> anyhow::Result<Arc<dyn HotTier>> {
    let shared: Arc<dyn HotTier> = if let Some(url) = &args.redis_url {
        tracing::info!(url = %redact(url), "hot tier: Redis");
        let redis = RedisHotTier::new(&RedisOptions {
            url: url.clone(),
            key_prefix: args.redis_key_prefix.clone(),
            timeout: args.redis_timeout,
            breaker_cooldown: args.redis_breaker_cooldown,
        })
        .context("invalid --redis-url")?;
        probe_redis(&redis, url).await;
        Arc::new(redis)
    } else if !args.redis_cluster.is_empty() {
        let nodes = redact(&args.redis_cluster.join(","));
        tracing::info!(seeds = %nodes, "hot tier: Redis Cluster");
        if args.redis_key_prefix.contains('{') && args.redis_key_prefix.contains('}') {
            tracing::warn!(
                prefix = %args.redis_key_prefix,
                "--redis-key-prefix holds a hash tag ({{…}}): every key hashes to one slot, \
                 so one shard holds the whole hot tier"
            );
        }
        let cluster = RedisClusterHotTier::new(&RedisClusterOptions {
            nodes: args.redis_cluster.clone(),
            key_prefix: args.redis_key_prefix.clone(),
            timeout: args.redis_timeout,
            breaker_cooldown: args.redis_breaker_cooldown,
        })
        .context("invalid --redis-cluster")?;
        match cluster.connect().await {
            Ok(shards) => {
                let shards: Vec<String> = shards
                    .iter()
                    .map(|shard| format!("{} on {}", shard.name(), shard.master))
                    .collect();
                tracing::info!(seeds = %nodes, ?shards, "Redis Cluster connected");
            }
            Err(error) => tracing::warn!(
                seeds = %nodes,
                error = %crate::errors::chain(&error),
                "Redis Cluster does not answer; serving from the ledger alone until it \
                 does (check --redis-cluster)"
            ),
        }
        Arc::new(cluster)
    } else {
        tracing::info!(
            max_entries = args.cache_max_entries,
            "hot tier: in-process (one sidecar; give --redis-url or --redis-cluster to share it)"
        );
        // The near cache's plain store answers a duplicate for less than the in-process
        // tier, whose per-key computations every claim in progress needs.
        Arc::new(MemoryHotTier::new(&MemoryOptions {
            max_entries: args.cache_max_entries,
        }))
    };
    Ok(match args.near_cache_max_bytes {
        0 => shared,
        max_bytes => Arc::new(NearCache::new(shared, max_bytes)),
    })
}

/// Tries Redis once at start (and once more after a moment, for a Redis starting
/// alongside), warning with its address and the error when it does not answer. The
/// sidecar starts either way: Redis is only a cache, and claims go to the ledger until
/// it answers.
async fn probe_redis(redis: &RedisHotTier, url: &str) {
    const ATTEMPTS: u32 = 2;
    const PAUSE: Duration = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match redis.ping().await {
            Ok(()) => return,
            Err(error) if attempt == ATTEMPTS => tracing::warn!(
                url = %redact(url),
                error = %crate::errors::chain(&error),
                "Redis does not answer; serving from the ledger alone until it does \
                 (check --redis-url)"
            ),
            Err(_) => tokio::time::sleep(PAUSE).await,
        }
    }
}

/// The tenants from `--config`, with a loud warning when authentication is off.
fn gatekeeper(args: &ServeArgs) -> anyhow::Result<Gatekeeper> {
    let config = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let gatekeeper = Gatekeeper::new(config)?;
    if gatekeeper.is_enabled() {
        let tenants: Vec<&str> = gatekeeper.tenant_names().collect();
        tracing::info!(?tenants, "authentication on");
    } else if args.require_auth {
        anyhow::bail!("--require-auth is set but no tenants are configured (see --config)");
    } else {
        tracing::warn!(
            "AUTHENTICATION IS OFF: any caller can read and change any namespace; \
             configure tenants with --config (and --require-auth) before production"
        );
    }
    Ok(gatekeeper)
}

/// TLS (and mutual TLS) from the PEM files named by the flags.
fn tls_config(args: &ServeArgs) -> anyhow::Result<Option<TlsAcceptor>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let client_ca = args.tls_client_ca.as_deref().map(read).transpose()?;
    let acceptor = crate::grpc::tls::acceptor(&read(cert)?, &read(key)?, client_ca.as_deref())
        .context("invalid TLS configuration")?;
    tracing::info!(mutual = args.tls_client_ca.is_some(), "serving TLS");
    Ok(Some(acceptor))
}

/// The limits of the accept loop and of each request, from the flags.
fn edge_limits(
    args: &ServeArgs,
    limits: &crate::domain::Limits,
) -> anyhow::Result<(TransportLimits, GuardLimits)> {
    for (flag, value) in [
        ("--rpc-timeout", args.rpc_timeout),
        ("--handshake-timeout", args.handshake_timeout),
        ("--request-body-timeout", args.request_body_timeout),
    ] {
        anyhow::ensure!(!value.is_zero(), "{flag} must be positive");
    }
    anyhow::ensure!(
        args.http2_keepalive_interval.is_zero() || !args.http2_keepalive_timeout.is_zero(),
        "--http2-keepalive-timeout must be positive"
    );
    let transport = TransportLimits {
        handshake_timeout: args.handshake_timeout,
        max_connections: transport::connection_cap(args.max_connections as usize),
        tcp_keepalive: (!args.tcp_keepalive.is_zero()).then_some(args.tcp_keepalive),
    };
    let guard = GuardLimits {
        rpc_timeout: args.rpc_timeout,
        request_body_timeout: args.request_body_timeout,
        max_message_bytes: crate::grpc::max_message_bytes(limits),
    };
    Ok((transport, guard))
}

/// A deliberately tiny HTTP/1 responder for `GET /metrics`: Prometheus scrapes are
/// one request per connection, and this keeps a web framework out of the sidecar.
pub(crate) async fn serve_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    stop: CancellationToken,
) {
    let upkeep = {
        let handle = handle.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => handle.run_upkeep(),
                }
            }
        })
    };
    loop {
        let (mut socket, _) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "metrics listener failed to accept");
                    continue;
                }
            },
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let read = match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut request))
                .await
            {
                Ok(Ok(read)) => read,
                _ => return,
            };
            let (status, body) = if request[..read].starts_with(b"GET /metrics") {
                ("200 OK", handle.render())
            } else {
                ("404 Not Found", "try /metrics\n".to_owned())
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(reply.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
    upkeep.abort();
}
