//! The Rust client's inbox against a real sidecar: duplicate deliveries applied once, a
//! failing handler retried, a poison message dead-lettered on its last delivery, an id
//! reused for another payload, and a message another consumer is handling.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use onceward::proto::Outcome;
use onceward_client::{Client, Inbox, Message, Verdict};

use crate::harness::*;

#[path = "../../clients/rust/examples/inbox.rs"]
#[allow(dead_code)]
mod inbox_example;

async fn inbox(app: &TestApp, namespace: &str, max_deliveries: u32) -> Inbox {
    let client = Client::connect(app.addr.to_string()).await.unwrap();
    Inbox::new(client, namespace, max_deliveries).unwrap()
}

fn message<'a>(id: &'a str, payload: &'a [u8], deliveries: u32) -> Message<'a> {
    Message {
        id,
        payload,
        deliveries,
    }
}

#[tokio::test]
async fn redelivered_and_duplicated_messages_are_applied_once_and_acked() {
    let app = TestApp::builder().spawn().await;
    let inbox = inbox(&app, "orders", 5).await;
    let applied = AtomicU32::new(0);
    let batch = [
        message("m1", b"one", 1),
        message("m2", b"two", 1),
        message("m2", b"two", 2),
        message("m3", b"three", 1),
    ];
    let first = inbox_example::apply(&inbox, &batch, &applied)
        .await
        .unwrap();
    assert_eq!(applied.load(Ordering::SeqCst), 3, "m2 applied once");
    assert_eq!(
        first[0],
        Verdict::Done {
            result: b"applied m1".to_vec()
        }
    );
    assert_eq!(
        first[2],
        Verdict::Duplicate {
            result: b"applied m2".to_vec()
        }
    );
    assert!(first.iter().all(Verdict::is_ack), "{first:?}");

    // The broker redelivers the whole batch (say the acks were lost).
    let redelivered = [message("m3", b"three", 2), message("m1", b"one", 2)];
    let again = inbox_example::apply(&inbox, &redelivered, &applied)
        .await
        .unwrap();
    assert_eq!(applied.load(Ordering::SeqCst), 3, "nothing applied twice");
    assert_eq!(
        again,
        [
            Verdict::Duplicate {
                result: b"applied m3".to_vec()
            },
            Verdict::Duplicate {
                result: b"applied m1".to_vec()
            },
        ]
    );
}

#[tokio::test]
async fn a_failing_handler_is_retried_and_a_poison_message_dead_lettered_on_its_last_delivery() {
    let app = TestApp::builder().spawn().await;
    let inbox = inbox(&app, "payments-consumer", 3).await;
    let runs = AtomicU32::new(0);
    let flaky_fails = AtomicU32::new(1);
    let handle = |message: Message<'_>| {
        runs.fetch_add(1, Ordering::SeqCst);
        let outcome = match message.id {
            "poison" => Err("cannot parse"),
            "flaky" if flaky_fails.fetch_sub(1, Ordering::SeqCst) > 0 => Err("timeout"),
            _ => Ok(b"ok".to_vec()),
        };
        async move { outcome }
    };

    for delivery in 1..=3 {
        let batch = [
            message("poison", b"??", delivery),
            message("flaky", b"f", delivery),
        ];
        let verdicts = inbox.process(&batch, handle).await.unwrap();
        match (delivery, &verdicts[0]) {
            (1 | 2, Verdict::Retry { reason, .. }) => assert!(reason.contains("cannot parse")),
            (3, Verdict::DeadLetter { reason }) => {
                assert!(reason.contains("delivery 3 of 3"), "{reason}")
            }
            other => panic!("poison on delivery {delivery}: {other:?}"),
        }
        let expected_flaky = if delivery == 1 {
            matches!(verdicts[1], Verdict::Retry { .. })
        } else if delivery == 2 {
            verdicts[1]
                == Verdict::Done {
                    result: b"ok".to_vec(),
                }
        } else {
            verdicts[1]
                == Verdict::Duplicate {
                    result: b"ok".to_vec(),
                }
        };
        assert!(
            expected_flaky,
            "flaky on delivery {delivery}: {:?}",
            verdicts[1]
        );
    }
    // A failed message was released each time, so the next delivery ran it at once.
    assert_eq!(runs.load(Ordering::SeqCst), 3 + 2);
    let mut client = app.client.clone();
    let poison = claim(&mut client, "payments-consumer", "poison").await;
    assert_eq!(
        outcome(&poison),
        Outcome::Acquired,
        "a dead letter holds nothing"
    );
}

#[tokio::test]
async fn a_reused_id_is_dead_lettered_and_a_message_held_elsewhere_is_retried_later() {
    let app = TestApp::builder().spawn().await;
    let inbox = inbox(&app, "events", 5).await;
    let done = inbox
        .process(&[message("e1", b"payload", 1)], |_| async {
            Ok::<_, std::io::Error>(b"r".to_vec())
        })
        .await
        .unwrap();
    assert!(done[0].is_ack());

    let mut client = app.client.clone();
    let held = claim_with(
        &mut client,
        "events",
        "e2",
        b"",
        Some(Duration::from_secs(30)),
    )
    .await;
    assert_eq!(outcome(&held), Outcome::Acquired);

    let runs = AtomicU32::new(0);
    let verdicts = inbox
        .process(
            &[message("e1", b"another payload", 1), message("e2", b"x", 1)],
            |_| {
                runs.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, std::io::Error>(Vec::new()) }
            },
        )
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(
        matches!(&verdicts[0], Verdict::DeadLetter { reason } if reason.contains("different payload")),
        "{verdicts:?}"
    );
    assert!(
        matches!(&verdicts[1], Verdict::Retry { after, .. } if !after.is_zero()),
        "{verdicts:?}"
    );
}
