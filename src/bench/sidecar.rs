//! The sidecar under test when the bench starts it itself, and its memory use.
//!
//! It runs as a separate process (this same binary, `serve`), never inside the bench,
//! so its RSS is its own and it does not share a runtime with the load generator.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::report::SidecarMemory;

/// How long the sidecar may take to connect, migrate and listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to drain after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A sidecar started by the bench.
pub struct Sidecar {
    child: Child,
    pid: u32,
    /// The embedded sidecar's data directory, removed when it stops.
    data_dir: Option<PathBuf>,
}

impl Sidecar {
    /// Starts `onceward serve <serve_args>` and waits until `addr` answers a health
    /// check. Its logs go to the bench's stderr.
    pub async fn spawn(serve_args: &[String], addr: &str) -> anyhow::Result<Self> {
        let mut command = serve_command()?;
        command.args(serve_args);
        Self::start(command, addr, None).await
    }

    /// Starts the embedded default at `addr` (`http://host:port`): `onceward serve`
    /// with a fresh data directory under the system's temporary directory, a metrics
    /// port of its own, and no ledger or hot tier named, in the flags or in the
    /// environment.
    pub async fn spawn_embedded(addr: &str) -> anyhow::Result<Self> {
        let listen = addr
            .split_once("://")
            .map_or(addr, |(_, rest)| rest)
            .trim_end_matches('/');
        let data_dir = std::env::temp_dir().join(format!(
            "onceward-bench-embedded-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut command = serve_command()?;
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", listen])
            .args(["--metrics-listen", &metrics.to_string()])
            .env_remove("ONCEWARD_DATABASE_URL")
            .env_remove("ONCEWARD_REDIS_URL")
            .env_remove("ONCEWARD_REDIS_CLUSTER");
        Self::start(command, addr, Some(data_dir)).await
    }

    /// Runs `command` and waits until `addr` answers a health check.
    async fn start(
        mut command: Command,
        addr: &str,
        data_dir: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let child = command.spawn().context("cannot start the sidecar")?;
        let pid = child.id().context("the sidecar exited at once")?;
        // From here on, dropping it stops the process and removes its directory.
        let mut sidecar = Self {
            child,
            pid,
            data_dir,
        };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = sidecar.child.try_wait()? {
                anyhow::bail!(
                    "the sidecar exited with {status} before serving (see its log above)"
                );
            }
            if serving(addr).await {
                return Ok(sidecar);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("the sidecar did not answer on {addr} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The sidecar's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends SIGTERM and waits for the graceful stop; kills it if it hangs. Dropping
    /// it afterwards removes its data directory, if it has one.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // std has no way to send SIGTERM without unsafe code; kill(1) has.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                anyhow::ensure!(status.success(), "the sidecar exited with {status}");
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                anyhow::bail!("the sidecar did not stop within {STOP_TIMEOUT:?} of SIGTERM")
            }
        }
    }
}

impl Drop for Sidecar {
    /// Removes the embedded sidecar's data directory (the process itself is killed on
    /// drop if it still runs).
    fn drop(&mut self) {
        if let Some(dir) = &self.data_dir
            && let Err(error) = std::fs::remove_dir_all(dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), %error, "cannot remove the embedded sidecar's data");
        }
    }
}

/// `onceward serve`, as this same binary, with its output where the bench wants it.
fn serve_command() -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("cannot find the onceward binary")?;
    let mut command = Command::new(exe);
    command
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    Ok(command)
}

/// Whether `addr` answers a health check.
pub async fn serving(addr: &str) -> bool {
    let Ok(endpoint) = Endpoint::from_shared(addr.to_owned()) else {
        return false;
    };
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok()
}

/// Reads the peak and current resident memory of `pid` from `/proc/PID/status`.
pub fn memory(pid: u32) -> anyhow::Result<SidecarMemory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| {
        format!("cannot read /proc/{pid}/status (is the sidecar local and running?)")
    })?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok(SidecarMemory {
        pid,
        peak_rss_kib: field("VmHWM:")?,
        rss_kib: field("VmRSS:")?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process_peak_rss() {
        let memory = super::memory(std::process::id()).expect("/proc is mounted");
        assert!(memory.peak_rss_kib >= memory.rss_kib && memory.rss_kib > 0);
    }
}
