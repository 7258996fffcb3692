//! A `nats-server -js` of a test's own: a free port on 127.0.0.1, a JetStream store
//! directory of its own (kept across a restart, removed with the server), killed when
//! dropped. The tests create their streams themselves; the relay never does.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::free_port;

/// A JetStream-enabled NATS server of the test's own.
pub struct NatsServer {
    pub port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts one and waits until JetStream answers.
    pub async fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            store: tempfile::tempdir().expect("a store directory"),
            child: None,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and store, and waits until JetStream answers:
    /// the streams and their messages survive a restart.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be on PATH (Debian: apt-get install nats-server)");
        self.child = Some(child);
        let mut last_error = String::new();
        for _ in 0..250 {
            match async_nats::connect(self.url()).await {
                // JetStream's API answers (the account info, raw: its shape differs
                // between server versions).
                Ok(client) => match client.request("$JS.API.INFO", "".into()).await {
                    Ok(reply) if !reply.payload.is_empty() => return,
                    Ok(_) => last_error = "an empty reply".to_owned(),
                    Err(error) => last_error = error.to_string(),
                },
                Err(error) => last_error = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "nats-server did not start on port {}: {last_error}",
            self.port
        );
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A JetStream context on a connection of the test's own.
    pub async fn jetstream(&self) -> jetstream::Context {
        let client = async_nats::connect(self.url())
            .await
            .expect("connect to NATS");
        jetstream::new(client)
    }

    /// Creates a stream over `subjects` with a duplicate window of `dedup` (the
    /// window in which a second message with the same `Nats-Msg-Id` is dropped).
    pub async fn create_stream(
        &self,
        name: &str,
        subjects: &[&str],
        dedup: Duration,
    ) -> stream::Stream {
        self.jetstream()
            .await
            .create_stream(stream::Config {
                name: name.to_owned(),
                subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
                duplicate_window: dedup,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .expect("create stream")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
