//! A caller of `POST /charge`, as a payment client should be: one `Idempotency-Key`
//! per logical charge, reused on every retry; retries with full jitter (a random wait
//! in `[0, min(cap, base·2ⁿ)]`, so callers that failed together do not come back
//! together); and a retry budget (each first attempt earns a fraction of a retry, each
//! retry spends one), so an outage cannot multiply the load on the way back.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::RngExt as _;

/// Retries earned per first attempt.
pub const RETRY_RATIO: f64 = 0.5;
/// Retries the budget holds at most (and starts with).
pub const MAX_RETRY_TOKENS: f64 = 50.0;
/// The most attempts of one logical charge.
pub const MAX_ATTEMPTS: u32 = 10;
const BASE_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What became of one logical charge.
#[derive(Debug, Clone)]
pub struct Charged {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
    pub attempts: u32,
}

/// Counts across every charge a client made.
#[derive(Debug, Default)]
pub struct Counts {
    pub first_attempts: AtomicU64,
    pub retries: AtomicU64,
    pub lost_responses: AtomicU64,
    pub in_progress: AtomicU64,
    pub budget_refusals: AtomicU64,
}

/// The retrying client.
pub struct ChargeClient {
    http: HttpClient<HttpConnector, Full<Bytes>>,
    url: String,
    budget: Mutex<f64>,
    pub counts: Counts,
}

impl ChargeClient {
    /// A client of the charge API at `base_url` (`http://host:port`).
    pub fn new(base_url: &str) -> Self {
        Self {
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
            url: format!("{}/charge", base_url.trim_end_matches('/')),
            budget: Mutex::new(MAX_RETRY_TOKENS),
            counts: Counts::default(),
        }
    }

    /// Charges `amount_cents` for `order` under `key`, retrying until an answer that
    /// is final (2xx, or a 4xx other than 409). With `lose_first`, the first attempt's
    /// response is lost: the client hangs up `lose_after` after sending it.
    pub async fn charge(
        &self,
        key: &str,
        order: &str,
        amount_cents: i64,
        lose_first: Option<Duration>,
    ) -> Result<Charged, String> {
        let body = format!(r#"{{"order":"{order}","amount_cents":{amount_cents}}}"#);
        self.counts.first_attempts.fetch_add(1, Ordering::Relaxed);
        self.deposit();
        let mut attempt = 1;
        loop {
            let timeout = match lose_first {
                Some(after) if attempt == 1 => after,
                _ => REQUEST_TIMEOUT,
            };
            match self.send(key, &body, timeout).await {
                Ok((409, _, _)) => {
                    self.counts.in_progress.fetch_add(1, Ordering::Relaxed);
                }
                Ok((status, text, replayed)) if status < 500 => {
                    return Ok(Charged {
                        status,
                        body: text,
                        replayed,
                        attempts: attempt,
                    });
                }
                // A 5xx: the charge did not (reliably) happen, and the key was released.
                Ok(_) => {}
                Err(_) => {
                    self.counts.lost_responses.fetch_add(1, Ordering::Relaxed);
                }
            }
            if attempt >= MAX_ATTEMPTS {
                return Err(format!("{key}: no final answer after {attempt} attempts"));
            }
            if !self.withdraw() {
                self.counts.budget_refusals.fetch_add(1, Ordering::Relaxed);
                return Err(format!("{key}: retry budget exhausted"));
            }
            self.counts.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(full_jitter(attempt - 1)).await;
            attempt += 1;
        }
    }

    async fn send(
        &self,
        key: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<(u16, String, bool), String> {
        let request = http::Request::post(&self.url)
            .header("idempotency-key", key)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|error| error.to_string())?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|error| error.to_string())?;
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotent-replayed");
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| error.to_string())?
                .to_bytes();
            Ok((
                status,
                String::from_utf8_lossy(&body).into_owned(),
                replayed,
            ))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| "no response (lost)".to_owned())?
    }

    fn deposit(&self) {
        let mut tokens = self.budget.lock().expect("budget lock");
        *tokens = (*tokens + RETRY_RATIO).min(MAX_RETRY_TOKENS);
    }

    fn withdraw(&self) -> bool {
        let mut tokens = self.budget.lock().expect("budget lock");
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The most retries the budget can have allowed so far.
    pub fn retry_allowance(&self) -> f64 {
        self.counts.first_attempts.load(Ordering::Relaxed) as f64 * RETRY_RATIO + MAX_RETRY_TOKENS
    }
}

/// A random wait in `[0, min(MAX_BACKOFF, BASE_BACKOFF · 2^retry)]`.
pub fn full_jitter(retry: u32) -> Duration {
    let ceiling = BASE_BACKOFF
        .saturating_mul(2u32.saturating_pow(retry.min(16)))
        .min(MAX_BACKOFF);
    let nanos = ceiling.as_nanos() as u64;
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// `payment-path load`: `charges` logical charges, `concurrency` at a time; prints
/// what happened.
#[allow(dead_code)] // the proof includes this file for the client alone
pub async fn load(url: &str, charges: u32, concurrency: usize) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    let client = ChargeClient::new(url);
    let run = format!("{:08x}", rand::random::<u32>());
    let answers: Vec<Result<Charged, String>> = futures_util::stream::iter(0..charges)
        .map(|n| {
            let client = &client;
            let run = &run;
            async move {
                client
                    .charge(
                        &format!("load-{run}-{n}"),
                        &format!("order-{n}"),
                        100 + i64::from(n),
                        None,
                    )
                    .await
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let created = answers
        .iter()
        .filter(
            |answer| matches!(answer, Ok(charged) if charged.status == 201 && !charged.replayed),
        )
        .count();
    let attempts: u32 = answers
        .iter()
        .flatten()
        .map(|charged| charged.attempts)
        .sum();
    if let Some(Ok(sample)) = answers.first() {
        println!("e.g. {}", sample.body);
    }
    println!(
        "{charges} charges: {created} created, {} failed; {attempts} attempts, {} retries (budget allowed {:.0})",
        answers.iter().filter(|answer| answer.is_err()).count(),
        client.counts.retries.load(Ordering::Relaxed),
        client.retry_allowance()
    );
    Ok(())
}
