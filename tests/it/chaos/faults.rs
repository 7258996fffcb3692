//! The faults, on a schedule drawn from the seed, and the evidence that each one
//! actually happened: a fault that silently did nothing would make the run prove
//! nothing, so every injection records what it observed and the run asserts on it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{RngExt as _, SeedableRng as _};
use tokio::time::Instant;

use super::fleet::Scrape;
use super::worker::Ctx;
use crate::harness::{RedisServer, TcpProxy};

/// One fault.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// `FLUSHALL`: the hot tier forgets everything.
    FlushRedis,
    /// Redis SIGKILLed, then restarted empty on the same port after `down`.
    KillRedis { down: Duration },
    /// `CLIENT PAUSE <pause> ALL`: every Redis command stalls.
    PauseRedis { pause: Duration },
    /// Every Postgres connection of the sidecars cut, and new ones refused, for `down`.
    CutPostgres { down: Duration },
    /// Sidecar `index` SIGKILLed `window` after its last scrape, restarted after `down`.
    KillSidecar {
        index: usize,
        window: Duration,
        down: Duration,
    },
}

impl Fault {
    /// The name the summary and the evidence use.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::FlushRedis => "Redis FLUSHALL",
            Fault::KillRedis { .. } => "Redis SIGKILL + restart",
            Fault::PauseRedis { .. } => "Redis CLIENT PAUSE ALL",
            Fault::CutPostgres { .. } => "Postgres cut off",
            Fault::KillSidecar { .. } => "sidecar SIGKILL + restart",
        }
    }
}

/// The faults of one run, each with when it starts (from the start of the run).
pub fn schedule(seed: u64, sidecars: usize, window: Duration) -> Vec<(Duration, Fault)> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xFA17_5EED);
    let mut faults = vec![
        Fault::FlushRedis,
        Fault::FlushRedis,
        Fault::FlushRedis,
        Fault::KillRedis {
            down: millis(&mut rng, 300..=800),
        },
        Fault::KillRedis {
            down: millis(&mut rng, 300..=800),
        },
        Fault::PauseRedis {
            pause: millis(&mut rng, 300..=600),
        },
        Fault::PauseRedis {
            pause: millis(&mut rng, 300..=600),
        },
        Fault::CutPostgres {
            down: millis(&mut rng, 1_500..=2_000),
        },
        Fault::CutPostgres {
            down: millis(&mut rng, 1_500..=2_000),
        },
    ];
    for index in 0..sidecars {
        faults.push(Fault::KillSidecar {
            index,
            window: millis(&mut rng, 5..=40),
            down: millis(&mut rng, 300..=800),
        });
    }
    faults.shuffle(&mut rng);
    // One fault per slot, so they never overlap and each lands on live traffic.
    let start = Duration::from_secs(1);
    let slot = (window - start) / faults.len() as u32;
    faults
        .into_iter()
        .enumerate()
        .map(|(i, fault)| (start + slot * i as u32 + millis(&mut rng, 0..=300), fault))
        .collect()
}

/// What the injections observed.
#[derive(Debug, Default)]
pub struct Evidence {
    /// Per fault name: how many were injected, and how many showed their effect.
    pub injected: BTreeMap<&'static str, (u32, u32)>,
    /// The last scrape of every killed sidecar process.
    pub last_scrapes: Vec<Scrape>,
    /// What went wrong with the evidence, for the final report.
    pub notes: Vec<String>,
}

impl Evidence {
    fn record(&mut self, fault: &Fault, showed: bool, note: impl FnOnce() -> String) {
        let entry = self.injected.entry(fault.name()).or_default();
        entry.0 += 1;
        if showed {
            entry.1 += 1;
        } else {
            self.notes.push(format!("{}: {}", fault.name(), note()));
        }
    }
}

/// Injects the scheduled faults, in order, each at its time after `started`.
pub async fn inject(
    ctx: &Ctx,
    redis: &mut RedisServer,
    proxy: &TcpProxy,
    schedule: &[(Duration, Fault)],
    started: Instant,
) -> Evidence {
    let mut evidence = Evidence::default();
    for (at, fault) in schedule {
        tokio::time::sleep_until(started + *at).await;
        println!(
            "[{:>6.2}s] fault: {fault:?}",
            started.elapsed().as_secs_f64()
        );
        match *fault {
            Fault::FlushRedis => {
                let keys = dbsize(redis).await;
                redis.flushall().await;
                evidence.record(fault, keys > 0, || "Redis was already empty".into());
            }
            Fault::KillRedis { down } => {
                redis.kill();
                let gone = redis.connection().await.is_err();
                tokio::time::sleep(down).await;
                redis.restart().await;
                evidence.record(fault, gone, || "Redis still answered after SIGKILL".into());
            }
            Fault::PauseRedis { pause } => {
                // A probe connection opened before the pause: its command must wait.
                let mut probe = redis.connection().await.expect("probe connection");
                let mut admin = redis.connection().await.expect("admin connection");
                let _: () = redis::cmd("CLIENT")
                    .arg("PAUSE")
                    .arg(pause.as_millis() as u64)
                    .arg("ALL")
                    .query_async(&mut admin)
                    .await
                    .expect("CLIENT PAUSE");
                let asked = Instant::now();
                let _: () = redis::cmd("SET")
                    .arg("chaos:probe")
                    .arg(1)
                    .query_async(&mut probe)
                    .await
                    .expect("probe SET after the pause");
                let stalled = asked.elapsed();
                evidence.record(fault, stalled >= pause * 3 / 4, || {
                    format!("a command during a {pause:?} pause took only {stalled:?}")
                });
            }
            Fault::CutPostgres { down } => {
                let before = ctx.unavailable_during_cut.load(Ordering::SeqCst);
                ctx.postgres_cut.store(true, Ordering::SeqCst);
                proxy.cut();
                tokio::time::sleep(down).await;
                ctx.postgres_cut.store(false, Ordering::SeqCst);
                proxy.restore();
                let refused = ctx.unavailable_during_cut.load(Ordering::SeqCst) - before;
                evidence.record(fault, refused > 0, || {
                    "no Claim failed closed with UNAVAILABLE during the cut".into()
                });
            }
            Fault::KillSidecar {
                index,
                window,
                down,
            } => {
                // `scrape_and_kill` asserts the SIGKILL and that the pid is gone.
                let killed = ctx.fleet[index].scrape_and_kill(window).await;
                println!(
                    "[{:>6.2}s] sidecar {index} pid {} killed",
                    started.elapsed().as_secs_f64(),
                    killed.pid
                );
                evidence.last_scrapes.push(killed.last_scrape);
                tokio::time::sleep(down).await;
                ctx.fleet[index].restart().await;
                evidence.record(fault, true, String::new);
            }
        }
    }
    evidence
}

async fn dbsize(redis: &RedisServer) -> i64 {
    let mut connection = redis.connection().await.expect("redis connection");
    redis::cmd("DBSIZE")
        .query_async(&mut connection)
        .await
        .expect("DBSIZE")
}

fn millis(rng: &mut StdRng, range: std::ops::RangeInclusive<u64>) -> Duration {
    Duration::from_millis(rng.random_range(range))
}
