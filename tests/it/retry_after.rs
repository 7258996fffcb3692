//! `retry_after` is a floor: 50 callers told `IN_PROGRESS` for one held key each wait
//! at least what the sidecar said, plus full jitter over their backoff, so they come
//! back spread out, not together, and none early. The transcript is printed.

use std::time::Duration;

use onceward_client::{Claim, Client, ClientConfig};

use crate::harness::*;

#[tokio::test]
async fn fifty_callers_told_in_progress_wait_at_least_retry_after_and_spread_out() {
    let app = TestApp::builder().spawn().await;
    let config = ClientConfig::builder()
        .initial_backoff(Duration::from_millis(50))
        .build();
    let client = Client::connect_with(app.addr.to_string(), config.clone())
        .await
        .unwrap();
    let mut raw = app.client.clone();
    let held = claim_with(&mut raw, "herd", "k", b"", Some(Duration::from_secs(30))).await;
    assert_eq!(outcome(&held), onceward::proto::Outcome::Acquired);

    let mut waits = Vec::new();
    println!("caller  retry_after  wait");
    for caller in 0..50 {
        let Claim::InProgress { retry_after } = client.claim("herd", "k", b"").await.unwrap()
        else {
            panic!("caller {caller}: the key is held");
        };
        let wait = config.in_progress_wait(retry_after, 0);
        println!("{caller:>6}  {retry_after:>11?}  {wait:?}");
        assert!(wait >= retry_after, "caller {caller} would come back early");
        waits.push(wait - retry_after);
    }
    waits.sort_unstable();
    let spread = waits[waits.len() - 1] - waits[0];
    assert!(
        spread >= Duration::from_millis(25),
        "the jitter spreads callers over the backoff (50 ms): {spread:?}"
    );
    waits.dedup();
    assert!(waits.len() >= 45, "callers come back at different times");
}
