//! The proof: 1000 logical charges through the whole path while it is broken on
//! purpose — duplicate requests, concurrent requests with one key, lost responses, a
//! key reused for another amount, the relay SIGKILLed between the broker's ack and its
//! mark, the consumer SIGKILLed in the middle of a batch, the broker restarted, and a
//! poison message — then the counts read from the services' metrics: 1000 charges,
//! 1000 effects, one dead letter, agreeing with the tables.
//!
//! The seed (`PAYMENT_PROOF_SEED`, random when unset) is printed first; it fixes which
//! charge meets which fault.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use sqlx::Connection as _;

use super::client::ChargeClient;
use super::*;

const CHARGES: usize = 1000;
const IN_FLIGHT: usize = 32;

/// What a logical charge meets on its way.
#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    /// Sent again after its answer: replayed.
    Duplicate,
    /// Sent twice at once: one runs, the other waits (409) and gets the replay.
    Concurrent,
    /// Its first response never arrives (the client hangs up after this long).
    LostResponse(Duration),
    /// Sent again with another amount under the same key: 422, nothing changes.
    Mismatch,
}

fn plan(seed: u64) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..CHARGES)
        .map(|_| match rng.random_range(0..100) {
            0..15 => Fault::Duplicate,
            15..25 => Fault::Concurrent,
            25..35 => Fault::LostResponse(Duration::from_millis(rng.random_range(0..30))),
            35..37 => Fault::Mismatch,
            _ => Fault::None,
        })
        .collect()
}

/// One logical charge with its fault; the charge's response body (its id).
async fn charge(client: &ChargeClient, n: usize, fault: Fault) -> Result<String, String> {
    let key = format!("charge-{n}");
    let order = format!("order-{n}");
    let amount = 100 + n as i64;
    let first = match fault {
        Fault::Concurrent => {
            let (one, two) = tokio::join!(
                client.charge(&key, &order, amount, None),
                client.charge(&key, &order, amount, None)
            );
            let (one, two) = (one?, two?);
            if one.body != two.body || one.replayed == two.replayed {
                return Err(format!("{key}: concurrent answers {one:?} and {two:?}"));
            }
            one
        }
        Fault::LostResponse(after) => client.charge(&key, &order, amount, Some(after)).await?,
        _ => client.charge(&key, &order, amount, None).await?,
    };
    if first.status != 201 {
        return Err(format!("{key}: {first:?}"));
    }
    match fault {
        Fault::Duplicate => {
            let again = client.charge(&key, &order, amount, None).await?;
            if !again.replayed || again.body != first.body {
                return Err(format!("{key}: duplicate answered {again:?}"));
            }
        }
        Fault::Mismatch => {
            let other = client.charge(&key, &order, amount + 1, None).await?;
            if other.status != 422 {
                return Err(format!("{key}: another amount got {other:?}"));
            }
        }
        _ => {}
    }
    Ok(first.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_charges_through_every_fault_apply_exactly_a_thousand_effects() {
    let seed = std::env::var("PAYMENT_PROOF_SEED")
        .ok()
        .map(|seed| seed.parse::<u64>().expect("PAYMENT_PROOF_SEED is a u64"))
        .unwrap_or_else(rand::random);
    println!("PAYMENT_PROOF_SEED={seed}  (set it to replay this run)");
    let started = Instant::now();
    let mut path = PaymentPath::start(
        &["--max-rate", "5000", "--batch", "100"],
        &["--lease", "2s", "--max-deliveries", "3", "--batch", "50"],
    )
    .await;
    // A poison message: not a charge. Its handler fails on every delivery.
    path.db
        .execute(
            "INSERT INTO onceward_outbox (topic, message_key, payload) \
         VALUES ('payments.charged', 'poison', 'not json')",
        )
        .await;

    // The relay is held between the broker's ack and its mark once 300 rows are
    // marked; the consumer is held in a batch once 525 entries are written (not a
    // multiple of its pull size, so that entries of the batch were written before).
    let mut holder = sqlx::PgConnection::connect(&path.db.url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(71), pg_advisory_lock(72)")
        .execute(&mut holder)
        .await
        .unwrap();
    path.db
        .execute(
            "CREATE FUNCTION hold_relay() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF (SELECT count(*) FROM onceward_outbox WHERE published_at IS NOT NULL) >= 300 \
         THEN PERFORM pg_advisory_xact_lock(71); END IF; RETURN NEW; END $$",
        )
        .await;
    path.db
        .execute(
            "CREATE TRIGGER hold_relay BEFORE UPDATE ON onceward_outbox \
         FOR EACH ROW EXECUTE FUNCTION hold_relay()",
        )
        .await;
    path.db
        .execute(
            "CREATE FUNCTION hold_consumer() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF (SELECT count(*) FROM ledger_entries) >= 525 \
         THEN PERFORM pg_advisory_xact_lock(72); END IF; RETURN NEW; END $$",
        )
        .await;
    path.db
        .execute(
            "CREATE TRIGGER hold_consumer BEFORE INSERT ON ledger_entries \
         FOR EACH ROW EXECUTE FUNCTION hold_consumer()",
        )
        .await;

    let client = Arc::new(ChargeClient::new(&path.api_url));
    let load = tokio::spawn({
        let client = client.clone();
        async move {
            futures_util::stream::iter(plan(seed).into_iter().enumerate())
                .map(|(n, fault)| {
                    let client = client.clone();
                    async move { charge(&client, n, fault).await }
                })
                .buffer_unordered(IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
        }
    });

    // The relay, held after its acks: killed, and a new one publishes the batch again.
    assert!(
        held_at_lock(&path.db, Duration::from_secs(30)).await,
        "the relay reached 300"
    );
    let published_by_first = path.relay.metric(crate::relay::PUBLISHED, &[]).await;
    path.relay.kill().await;
    end_held_sessions(&path.db).await;
    sqlx::query("SELECT pg_advisory_unlock(71)")
        .execute(&mut holder)
        .await
        .unwrap();
    path.db
        .execute("DROP TRIGGER hold_relay ON onceward_outbox")
        .await;
    path.restart_relay().await;
    println!("relay SIGKILLed between ack and mark after {published_by_first} publishes");

    // The consumer, held mid-batch: killed, and a new one takes over its messages.
    assert!(
        held_at_lock(&path.db, Duration::from_secs(30)).await,
        "the consumer reached 525"
    );
    let applied_by_first = path.consumer.metric(consumer::APPLIED, &[]).await;
    let dead_lettered_by_first = path.consumer.metric(consumer::DEAD_LETTERED, &[]).await;
    path.consumer.kill().await;
    end_held_sessions(&path.db).await;
    sqlx::query("SELECT pg_advisory_unlock(72)")
        .execute(&mut holder)
        .await
        .unwrap();
    path.db
        .execute("DROP TRIGGER hold_consumer ON ledger_entries")
        .await;
    path.consumer.restart().await;
    println!("consumer SIGKILLed mid-batch after {applied_by_first} effects");

    // The broker, restarted (its streams are on disk).
    path.nats.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    path.nats.restart().await;
    println!("broker restarted");

    let answers = load.await.expect("the load ran");
    let failures: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(failures.is_empty(), "charges failed: {failures:?}");
    assert!(
        eventually(Duration::from_secs(30), || async {
            path.db.scalar("SELECT count(*) FROM ledger_entries").await >= CHARGES as i64
                && path.stream_messages("PAYMENTS_DLQ").await >= 1
        })
        .await,
        "every charge reached the ledger and the poison the DLQ"
    );
    // Let redeliveries still in flight arrive: none of them may apply an effect.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // From the metrics.
    let charges = path.api.metric(charge_api::CHARGES, &[]).await;
    let applied = applied_by_first + path.consumer.metric(consumer::APPLIED, &[]).await;
    let dead_lettered =
        dead_lettered_by_first + path.consumer.metric(consumer::DEAD_LETTERED, &[]).await;
    let inbox_dups = path.consumer.metric(consumer::INBOX_DUPLICATES, &[]).await;
    let table_dups = path.consumer.metric(consumer::TABLE_DUPLICATES, &[]).await;
    let broker_dups = path.relay.metric(crate::relay::DUPLICATES, &[]).await;
    let mismatches = path
        .api
        .metric(charge_api::REQUESTS, &[("status", "422")])
        .await;
    let in_progress = path
        .api
        .metric(charge_api::REQUESTS, &[("status", "409")])
        .await;
    // The sidecar's own view of the 422s: claims answered FINGERPRINT_MISMATCH.
    let sidecar_mismatches: f64 = path
        .sidecar
        .metrics()
        .await
        .lines()
        .filter(|line| {
            line.starts_with("onceward_claims_total{") && line.contains("fingerprint_mismatch")
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(
        sidecar_mismatches, mismatches,
        "every 422 is a FINGERPRINT_MISMATCH claim"
    );
    let counts = &client.counts;
    use std::sync::atomic::Ordering::Relaxed;
    println!(
        "charges {charges}, effects {applied}, dead letters {dead_lettered}; duplicates caught: \
         broker {broker_dups}, inbox {inbox_dups}, ledger table {table_dups}; 409s {in_progress}, \
         422s {mismatches}; client: {} requests, {} retries (budget allowed {:.0}), {} lost \
         responses; {:.1} s",
        counts.first_attempts.load(Relaxed),
        counts.retries.load(Relaxed),
        client.retry_allowance(),
        counts.lost_responses.load(Relaxed),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        charges, CHARGES as f64,
        "charges, from the charge API's metrics"
    );
    assert_eq!(
        applied, CHARGES as f64,
        "effects, from the consumer's metrics"
    );
    assert_eq!(dead_lettered, 1.0);
    assert!(
        broker_dups > 0.0,
        "the killed relay's batch was published again"
    );
    // The killed consumer's batch came again; whether any of it had been applied
    // before the kill (then the ledger table's key caught it) depends on where the
    // batch began, so it is reported above rather than asserted.
    assert_eq!(counts.budget_refusals.load(Relaxed), 0);
    assert!(counts.retries.load(Relaxed) as f64 <= client.retry_allowance());

    // And the tables agree.
    assert_eq!(
        path.db.scalar("SELECT count(*) FROM charges").await,
        CHARGES as i64
    );
    assert_eq!(
        path.db.scalar("SELECT count(*) FROM ledger_entries e JOIN charges c ON c.idempotency_key = e.charge_key AND c.amount_cents = e.amount_cents").await,
        CHARGES as i64,
        "one entry per charge, for its amount"
    );
    assert_eq!(
        path.db.scalar("SELECT count(*) FROM onceward_outbox WHERE published_at IS NULL OR dead_at IS NOT NULL").await,
        0
    );
    assert_eq!(path.stream_messages("PAYMENTS_DLQ").await, 1);
}
