//! The suite cleans up after itself on the services it shares with other work.

use onceward::proto::Outcome;

use crate::harness::*;

#[tokio::test]
async fn a_sidecar_on_the_shared_redis_leaves_no_keys_behind() {
    let size: u64 = {
        let client = redis::Client::open(shared_redis_url()).unwrap();
        redis::cmd("DBSIZE")
            .query(&mut client.get_connection().unwrap())
            .unwrap()
    };
    if size > SharedRedisKeys::MAX_KEYS_TO_SCAN {
        eprintln!(
            "skipped: this Redis holds {size} keys, more than the harness walks to clean up \
             (a Redis shared with something else, e.g. a benchmark's records)"
        );
        return;
    }
    let app = TestApp::builder().spawn().await;
    let mut client = app.client.clone();
    let held = claim(&mut client, "hygiene", "done").await;
    assert_eq!(outcome(&held), Outcome::Acquired);
    complete(&mut client, "hygiene", "done", held.fencing_token, b"r")
        .await
        .unwrap();
    claim(&mut client, "hygiene", "held").await;
    let pattern = format!("{}*", app.key_prefix);
    let keys = || {
        let client = redis::Client::open(shared_redis_url()).unwrap();
        let mut connection = client.get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query(&mut connection)
            .unwrap();
        keys.len()
    };
    let written = eventually(std::time::Duration::from_secs(5), || async { keys() == 2 }).await;
    assert!(written, "the sidecar wrote both keys to the shared Redis");

    drop(client);
    drop(app);
    assert_eq!(keys(), 0, "keys left under the test's prefix");
}
