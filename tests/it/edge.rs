//! The edges: input validation (docs/PROTOCOL.md, "Errors"), metrics, health, reflection, startup
//! checks and graceful shutdown.

use std::time::Duration;

use onceward::proto::{self, Outcome};
use tonic::Code;

use crate::harness::*;

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let status = result.expect_err("must be refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with(&format!("{field}:")),
        "the message names the field {field}: {:?}",
        status.message()
    );
}

on_every_pairing!(every_bad_input_is_invalid_argument_naming_the_field_and_nothing_is_stored);

async fn every_bad_input_is_invalid_argument_naming_the_field_and_nothing_is_stored(
    pairing: Pairing,
) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let ok_key = "order-1";
    let long_lease = Some(Duration::from_secs(2 * 3600));

    let bad_claims = [
        (claim_request("", ok_key, b"", None), "namespace"),
        (
            claim_request(&"n".repeat(65), ok_key, b"", None),
            "namespace",
        ),
        (claim_request("has space", ok_key, b"", None), "namespace"),
        (claim_request("ns", "", b"", None), "key"),
        (claim_request("ns", &"k".repeat(256), b"", None), "key"),
        (claim_request("ns", "tab\there", b"", None), "key"),
        (claim_request("ns", ok_key, &[7; 65], None), "fingerprint"),
        (claim_request("ns", ok_key, b"", long_lease), "lease"),
    ];
    for (request, field) in bad_claims {
        assert_invalid(client.claim(request).await, field);
    }
    let negative = proto::ClaimRequest {
        lease: Some(prost_types::Duration {
            seconds: -1,
            nanos: 0,
        }),
        ..claim_request("ns", ok_key, b"", None)
    };
    assert_invalid(client.claim(negative).await, "lease");
    assert!(
        !lookup(&mut client, "ns", ok_key).await.found,
        "nothing stored"
    );

    let held = claim(&mut client, "ns", ok_key).await;
    let complete_request =
        |response: Vec<u8>, retention: Option<Duration>| proto::CompleteRequest {
            namespace: "ns".to_owned(),
            key: ok_key.to_owned(),
            fencing_token: held.fencing_token,
            response,
            retention: retention.map(proto_duration),
        };
    let oversized = client
        .complete(complete_request(vec![0; 256 * 1024 + 1], None))
        .await;
    assert_invalid(oversized, "response");
    let status = client
        .complete(complete_request(vec![0; 256 * 1024 + 1], None))
        .await
        .unwrap_err();
    assert!(
        status.message().contains("262144"),
        "names the limit: {}",
        status.message()
    );
    let forever = client
        .complete(complete_request(
            b"ok".to_vec(),
            Some(Duration::from_secs(31 * 86_400)),
        ))
        .await;
    assert_invalid(forever, "retention");
    assert_invalid(
        client
            .extend_lease(proto::ExtendLeaseRequest {
                namespace: "ns".to_owned(),
                key: ok_key.to_owned(),
                fencing_token: held.fencing_token,
                lease: long_lease.map(proto_duration),
            })
            .await,
        "lease",
    );
    assert_invalid(
        client
            .release(proto::ReleaseRequest {
                namespace: "bad/ns".to_owned(),
                key: ok_key.to_owned(),
                fencing_token: held.fencing_token,
            })
            .await,
        "namespace",
    );
    assert_invalid(
        client
            .lookup(proto::LookupRequest {
                namespace: "ns".to_owned(),
                key: String::new(),
            })
            .await,
        "key",
    );

    let record = lookup(&mut client, "ns", ok_key).await.record.unwrap();
    assert_eq!(
        record.state(),
        proto::RecordState::InProgress,
        "refused requests changed nothing"
    );
    // The largest allowed response is accepted and replayed intact.
    let largest = vec![0xab; 256 * 1024];
    client
        .complete(complete_request(largest.clone(), None))
        .await
        .expect("at the limit");
    assert_eq!(claim(&mut client, "ns", ok_key).await.response, largest);
}

#[tokio::test]
async fn metrics_count_claims_by_outcome_and_tier_and_time_every_rpc() {
    let app = TestApp::builder().spawn().await;
    let mut client = app.client.clone();
    let held = claim(&mut client, "m", "k").await;
    claim(&mut client, "m", "k").await;
    complete(&mut client, "m", "k", held.fencing_token, b"r")
        .await
        .unwrap();
    claim(&mut client, "m", "k").await;
    claim(&mut client, "m", "k").await;
    let _ = release(&mut client, "m", "k", held.fencing_token).await;

    let claims = async |outcome, tier| {
        app.metric(
            "onceward_claims_total",
            &[("outcome", outcome), ("tier", tier)],
        )
        .await
    };
    assert_eq!(claims("acquired", "ledger").await, 1.0);
    assert_eq!(claims("in_progress", "cache").await, 1.0);
    assert_eq!(claims("completed", "cache").await, 2.0);
    assert_eq!(
        app.metric("onceward_fencing_rejections_total", &[("rpc", "release")])
            .await,
        1.0
    );
    let rpcs = async |method, code| {
        app.metric(
            "onceward_rpc_duration_seconds_count",
            &[("method", method), ("code", code), ("protocol", "grpc")],
        )
        .await
    };
    assert_eq!(rpcs("Claim", "OK").await, 4.0);
    assert_eq!(rpcs("Complete", "OK").await, 1.0);
    assert_eq!(rpcs("Release", "FAILED_PRECONDITION").await, 1.0);
    for op in ["claim", "complete", "release"] {
        let calls = app
            .metric(
                "onceward_ledger_duration_seconds_count",
                &[("op", op), ("result", "ok")],
            )
            .await;
        assert!(calls >= 1.0, "{op}: {calls} ledger calls recorded");
    }
    for op in ["claim", "complete"] {
        let batches = app
            .metric("onceward_ledger_batch_size_count", &[("op", op)])
            .await;
        let requests = app
            .metric("onceward_ledger_batch_size_sum", &[("op", op)])
            .await;
        assert!(
            batches >= 1.0 && requests >= batches,
            "{op}: {requests} in {batches}"
        );
        assert_eq!(
            app.metric(
                "onceward_ledger_batch_duration_seconds_count",
                &[("op", op)]
            )
            .await,
            batches
        );
    }
    let text = app.metrics().await;
    for name in [
        "onceward_ledger_batch_size",
        "onceward_ledger_batch_duration_seconds",
        "onceward_claims_total",
        "onceward_cache_lookups_total",
        "onceward_cache_circuit_open",
        "onceward_ledger_duration_seconds",
        "onceward_fencing_rejections_total",
        "onceward_rpc_duration_seconds",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "help text for {name}"
        );
    }
}

#[tokio::test]
async fn health_and_reflection_answer_without_a_proto_file() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let app = TestApp::builder().spawn().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "onceward.v1.Onceward"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "service {service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection")
        .into_inner();
    let reply = replies.message().await.unwrap().expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("expected a service list, got {reply:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"onceward.v1.Onceward".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
}

#[tokio::test]
async fn it_refuses_to_start_on_a_postgres_that_may_lose_commits_unless_told_to_accept_it() {
    use clap::Parser as _;
    use onceward::command::{Cli, Command};

    let db = TestDatabase::create().await;
    let name = db.url.rsplit_once('/').unwrap().1.to_owned();
    {
        use sqlx::Connection as _;
        let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {name} SET synchronous_commit = off"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    }
    let args = |extra: &[&str]| {
        let mut argv = vec![
            "onceward".to_owned(),
            "serve".to_owned(),
            "--listen=127.0.0.1:0".to_owned(),
            "--metrics-listen=127.0.0.1:0".to_owned(),
            format!("--database-url={}", db.url),
            format!("--redis-url={}", shared_redis_url()),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => *args,
            _ => unreachable!(),
        }
    };
    let refused = onceward::app::Application::build(&args(&[])).await;
    let error = format!("{:#}", refused.err().expect("must refuse"));
    assert!(error.contains("synchronous_commit"), "{error}");
    onceward::app::Application::build(&args(&["--allow-async-commit"]))
        .await
        .expect("starts when the risk is accepted");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_work_and_returns_cleanly() {
    let app = TestApp::builder().spawn().await;
    let mut client = app.client.clone();
    let held = claim(&mut client, "s", "k").await;
    assert_eq!(outcome(&held), Outcome::Acquired);
    let addr = app.addr;
    app.stop().await;
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "no longer accepting");
}

#[tokio::test]
async fn a_message_over_the_transport_limit_is_resource_exhausted() {
    let app = TestApp::builder()
        .args(&["--max-response-bytes=1024"])
        .spawn()
        .await;
    let mut client = app.client.clone();
    let held = claim(&mut client, "big", "k").await;
    // Over the 1 KiB response limit but within the transport's: named by the edge.
    let over_field = complete(&mut client, "big", "k", held.fencing_token, &[1; 2048]).await;
    assert_eq!(over_field.unwrap_err().code(), Code::InvalidArgument);
    // Over the transport limit (max response + 64 KiB): refused before decoding.
    let over_transport = complete(&mut client, "big", "k", held.fencing_token, &[1; 200_000]).await;
    let status = over_transport.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let record = lookup(&mut client, "big", "k").await.record.unwrap();
    assert_eq!(
        record.state(),
        proto::RecordState::InProgress,
        "nothing stored"
    );
}
