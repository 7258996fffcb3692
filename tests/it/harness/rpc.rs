//! One helper per RPC (Claim, Complete, Release, ExtendLease, Lookup) for tests that
//! care about the answer rather than the call, reading a Claim's outcome and tier, and
//! `eventually`, for what a test has to wait for.

use std::time::Duration;

use onceward::proto::onceward_client::OncewardClient;
use onceward::proto::{self, ClaimRequest, ClaimResponse, Outcome, Tier};
use tonic::transport::Channel;

pub fn claim_request(
    namespace: &str,
    key: &str,
    fingerprint: &[u8],
    lease: Option<Duration>,
) -> ClaimRequest {
    ClaimRequest {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        fingerprint: fingerprint.to_vec(),
        lease: lease.map(proto_duration),
        ..Default::default()
    }
}

pub use onceward::proto::duration as proto_duration;

pub async fn claim(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    key: &str,
) -> ClaimResponse {
    claim_with(client, namespace, key, b"", None).await
}

pub async fn claim_with(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    key: &str,
    fingerprint: &[u8],
    lease: Option<Duration>,
) -> ClaimResponse {
    client
        .claim(claim_request(namespace, key, fingerprint, lease))
        .await
        .expect("claim")
        .into_inner()
}

pub async fn complete(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    key: &str,
    token: u64,
    response: &[u8],
) -> Result<proto::CompleteResponse, tonic::Status> {
    client
        .complete(proto::CompleteRequest {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            fencing_token: token,
            response: response.to_vec(),
            retention: None,
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn release(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    key: &str,
    token: u64,
) -> Result<(), tonic::Status> {
    client
        .release(proto::ReleaseRequest {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            fencing_token: token,
        })
        .await
        .map(drop)
}

pub async fn extend(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    key: &str,
    token: u64,
    lease: Duration,
) -> Result<proto::ExtendLeaseResponse, tonic::Status> {
    client
        .extend_lease(proto::ExtendLeaseRequest {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            fencing_token: token,
            lease: Some(proto_duration(lease)),
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn lookup(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    key: &str,
) -> proto::LookupResponse {
    client
        .lookup(proto::LookupRequest {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
        })
        .await
        .expect("lookup")
        .into_inner()
}

pub fn outcome(response: &ClaimResponse) -> Outcome {
    Outcome::try_from(response.outcome).expect("a known outcome")
}

pub fn tier(response: &ClaimResponse) -> Tier {
    Tier::try_from(response.served_by).expect("a known tier")
}

/// Retries `check` every 20 ms until it returns true, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
