//! The Connect workload: a duplicate `Claim` as a `fetch`-only or curl caller sends it —
//! JSON over HTTP/1.1 with `Connect-Protocol-Version: 1`, one keep-alive connection per
//! operation in flight — against the same completed keys as gRPC's `duplicate`.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::driver::Worker;
use super::workloads::{Key, KeyPlan, NAMESPACE};

/// The workloads' fingerprint in base64, as the canonical JSON mapping writes `bytes`
/// (a wrong one would be answered `FINGERPRINT_MISMATCH`, an error of every operation,
/// which `tests/it/bench.rs` would see).
const FINGERPRINT_BASE64: &str = "b25jZXdhcmQtYmVuY2gtZmluZ2VycHJpbnQtMzItYnk=";

/// The HTTP/1.1 client every Connect worker of a run shares (its pool keeps a
/// connection per request in flight).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A Connect caller.
pub struct ConnectWorker {
    client: HttpClient,
    claim: Uri,
    plan: Arc<KeyPlan>,
}

impl ConnectWorker {
    /// A client for a run's workers.
    pub fn client() -> HttpClient {
        Client::builder(TokioExecutor::new()).build_http()
    }

    /// A worker calling `Claim` at `addr` (`http://host:port`).
    pub fn new(client: HttpClient, addr: &str, plan: Arc<KeyPlan>) -> anyhow::Result<Self> {
        let claim = format!("{}/onceward.v1.Onceward/Claim", addr.trim_end_matches('/'))
            .parse()
            .map_err(|error| anyhow::anyhow!("invalid --addr {addr:?}: {error}"))?;
        Ok(Self {
            client,
            claim,
            plan,
        })
    }
}

#[async_trait]
impl Worker for ConnectWorker {
    async fn call(&mut self, seq: u64) -> Result<(), String> {
        let Key::Completed(key) = self.plan.key(seq) else {
            return Err("the connect workload repeats completed keys only".to_owned());
        };
        let body = format!(
            r#"{{"namespace":"{NAMESPACE}","key":"{key}","fingerprint":"{FINGERPRINT_BASE64}","attempt":1}}"#
        );
        let request = Request::post(self.claim.clone())
            .header("content-type", "application/json")
            .header("connect-protocol-version", "1")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| error.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|_| "HTTP".to_owned())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| "HTTP body".to_owned())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        // The whole answer is small; finding the outcome is enough to judge it.
        match contains(&body, br#""outcome":"OUTCOME_COMPLETED""#) {
            true => Ok(()),
            false => Err("not COMPLETED".to_owned()),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
