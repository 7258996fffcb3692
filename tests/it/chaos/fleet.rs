//! The sidecars under test: real `onceward serve` processes (the built binary), each
//! on a fixed port so it can be SIGKILLed and restarted where its clients expect it.
//!
//! Every `Claim` passes through a per-sidecar gate (a `RwLock` held for the whole
//! RPC, and the worker's tally is written before it is released). Scraping before a
//! kill takes the gate exclusively, so every Claim answered by that process before
//! the scrape is in the scrape and in the tally alike. After the scrape the gate
//! reopens for a short window, so the SIGKILL still lands on Claims in flight; the
//! workers tally the Claims of that window apart ([`Phase::Scraped`]): they are the
//! only ones the metrics cannot account for.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use onceward::proto::onceward_client::OncewardClient;
use tokio::sync::{RwLock, RwLockReadGuard};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::ClaimCounts;
use crate::harness::{free_port, metric_value, scrape_metrics};

/// The one lease every normal claim gets (the server default). It must outlast the
/// longest a live holder can take between its ACQUIRED and its acknowledged Complete
/// (a Postgres cut of up to 2 s plus retries): a holder that outlives its lease is
/// indistinguishable from a dead one, and its takeover would make a second vendor call.
pub const DEFAULT_LEASE: &str = "8s";

/// The signal `Child::kill` sends on Unix.
const SIGKILL: i32 = 9;

/// How long a process gets to become ready before the run fails.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Where a sidecar incarnation stands, as the Claims that pass its gate see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Running; every Claim it answers will be in a later scrape.
    Live,
    /// Its last scrape is taken and a SIGKILL is coming: what it answers now is lost
    /// to the metrics.
    Scraped,
    /// Killed: Claims sent to it are refused by the kernel and reach no server.
    Dead,
}

/// One process's identity as seen through the gate.
pub struct Incarnation {
    /// 0 for the first process on this port, then one more per restart.
    pub number: u32,
    /// See [`Phase`].
    pub phase: Phase,
    /// A client on a channel of this incarnation's own, so no connection outlives
    /// the process it was made to.
    pub client: OncewardClient<Channel>,
}

/// What killing a sidecar showed.
pub struct KillReport {
    /// The last scrape of the killed process.
    pub last_scrape: Scrape,
    /// The killed pid.
    pub pid: u32,
}

/// One sidecar slot: a port pair and the process currently serving it.
pub struct Sidecar {
    /// 0 or 1: which sidecar this is.
    pub index: usize,
    /// The gRPC address, the same across restarts.
    pub addr: SocketAddr,
    metrics_addr: SocketAddr,
    args: Vec<String>,
    log_prefix: PathBuf,
    gate: RwLock<Incarnation>,
    child: std::sync::Mutex<Option<Child>>,
}

impl Sidecar {
    /// Starts `onceward serve` on free ports against `database_url` and `redis_url`,
    /// and waits until it reports SERVING.
    pub async fn start(index: usize, database_url: &str, redis_url: &str, seed: u64) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let args = vec![
            "serve".to_owned(),
            format!("--listen={addr}"),
            format!("--metrics-listen={metrics_addr}"),
            format!("--database-url={database_url}"),
            // The Postgres the tests share allows 100 connections in all.
            "--database-max-connections=8".to_owned(),
            format!("--redis-url={redis_url}"),
            "--ledger-timeout=1s".to_owned(),
            "--redis-breaker-cooldown=200ms".to_owned(),
            format!("--default-lease={DEFAULT_LEASE}"),
        ];
        let log_prefix =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{seed}-sidecar{index}"));
        let child = spawn(&args, &log_prefix, 0);
        let client = wait_ready(addr, &child, &log_prefix).await;
        Self {
            index,
            addr,
            metrics_addr,
            args,
            log_prefix,
            gate: RwLock::new(Incarnation {
                number: 0,
                phase: Phase::Live,
                client,
            }),
            child: std::sync::Mutex::new(Some(child)),
        }
    }

    /// The gate for a Claim: held for the whole RPC and the tally. `None` while a
    /// scrape, kill or restart has it, so the caller picks another sidecar.
    pub fn enter(&self) -> Option<RwLockReadGuard<'_, Incarnation>> {
        self.gate.try_read().ok()
    }

    /// A client for an RPC other than Claim (not gated: a SIGKILL may cut it).
    pub fn client(&self) -> Option<OncewardClient<Channel>> {
        self.gate.try_read().ok().map(|live| live.client.clone())
    }

    /// Scrapes the running process with no Claim in flight, lets Claims flow for
    /// `window`, then SIGKILLs it and checks that its pid is gone.
    pub async fn scrape_and_kill(&self, window: Duration) -> KillReport {
        let mut gate = self.gate.write().await;
        assert_eq!(
            gate.phase,
            Phase::Live,
            "sidecar {} killed twice",
            self.index
        );
        let last_scrape = Scrape::take(self.metrics_addr).await;
        gate.phase = Phase::Scraped;
        drop(gate);
        tokio::time::sleep(window).await;

        let mut child = self
            .child
            .lock()
            .unwrap()
            .take()
            .expect("a running process");
        let pid = child.id();
        child.kill().expect("SIGKILL the sidecar");
        let status = child.wait().expect("reap the sidecar");
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "sidecar {} pid {pid} did not die of SIGKILL: {status:?}",
            self.index
        );
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "sidecar {} pid {pid} is still there after SIGKILL",
            self.index
        );
        self.gate.write().await.phase = Phase::Dead;
        KillReport { last_scrape, pid }
    }

    /// Starts a new process on the same ports. The gate is held throughout, so no
    /// Claim counted as sent to the dead process can reach the new one.
    pub async fn restart(&self) {
        let mut gate = self.gate.write().await;
        assert_eq!(gate.phase, Phase::Dead, "restart of a live sidecar");
        let number = gate.number + 1;
        let child = spawn(&self.args, &self.log_prefix, number);
        gate.client = wait_ready(self.addr, &child, &self.log_prefix).await;
        *self.child.lock().unwrap() = Some(child);
        gate.number = number;
        gate.phase = Phase::Live;
    }

    /// Scrapes the running process with no Claim in flight (at the end of the run).
    pub async fn final_scrape(&self) -> Scrape {
        let gate = self.gate.write().await;
        assert_eq!(gate.phase, Phase::Live);
        Scrape::take(self.metrics_addr).await
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The counters the run checks, read from one process's `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    /// `onceward_claims_total` by (outcome, tier).
    pub claims: ClaimCounts,
    /// `onceward_takeovers_total`.
    pub takeovers: f64,
    /// `onceward_cache_lookups_total{result="bypass"}`: claims that skipped an open circuit.
    pub cache_bypasses: f64,
    /// `onceward_cache_errors_total`, every op.
    pub cache_errors: f64,
}

impl Scrape {
    async fn take(metrics_addr: SocketAddr) -> Self {
        let text = scrape_metrics(metrics_addr).await;
        let mut claims = ClaimCounts::default();
        for outcome in super::OUTCOME_LABELS {
            for tier in super::TIER_LABELS {
                let value = metric_value(
                    &text,
                    "onceward_claims_total",
                    &[("outcome", outcome), ("tier", tier)],
                );
                if value > 0.0 {
                    claims.insert((outcome, tier), value as u64);
                }
            }
        }
        let cache_errors = ["claim", "put", "replace", "remove"]
            .iter()
            .map(|op| metric_value(&text, "onceward_cache_errors_total", &[("op", op)]))
            .sum();
        Self {
            claims,
            takeovers: metric_value(&text, "onceward_takeovers_total", &[]),
            cache_bypasses: metric_value(
                &text,
                "onceward_cache_lookups_total",
                &[("result", "bypass")],
            ),
            cache_errors,
        }
    }

    /// Adds another process's scrape to this sum.
    pub fn add(&mut self, other: &Scrape) {
        for (labels, count) in &other.claims {
            *self.claims.entry(*labels).or_default() += count;
        }
        self.takeovers += other.takeovers;
        self.cache_bypasses += other.cache_bypasses;
        self.cache_errors += other.cache_errors;
    }
}

fn spawn(args: &[String], log_prefix: &std::path::Path, incarnation: u32) -> Child {
    let log_path = log_prefix.with_extension(format!("{incarnation}.log"));
    let log = std::fs::File::create(&log_path).expect("create the sidecar log");
    Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn onceward serve")
}

/// Waits until the process answers SERVING, and returns a client on a fresh channel.
async fn wait_ready(
    addr: SocketAddr,
    child: &Child,
    log_prefix: &std::path::Path,
) -> OncewardClient<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10));
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    loop {
        if let Ok(channel) = endpoint.connect().await {
            let serving = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: "onceward.v1.Onceward".to_owned(),
                })
                .await
                .is_ok_and(|reply| reply.into_inner().status() == ServingStatus::Serving);
            if serving {
                return OncewardClient::new(endpoint.connect_lazy());
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sidecar pid {} on {addr} not ready within {READY_WITHIN:?}; see {}.*.log",
            child.id(),
            log_prefix.display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
