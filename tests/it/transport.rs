//! Hostile and broken clients against the transport (issue 16): deadlines answer
//! DEADLINE_EXCEEDED, malformed bodies INVALID_ARGUMENT, streams without a body or a
//! token are let go early, silent connections are closed, the connection cap holds,
//! and memory stays bounded while all of that goes on.

use std::time::{Duration, Instant};

use bytes::Bytes;
use onceward::proto::Outcome;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::Code;

use crate::harness::*;
use crate::raw::*;

/// Holds an exclusive lock on the ledger's table, so every ledger call waits.
async fn lock_the_ledger(db: &TestDatabase) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("LOCK TABLE onceward_records IN ACCESS EXCLUSIVE MODE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

#[tokio::test]
async fn a_call_past_the_server_deadline_is_deadline_exceeded_and_counted() {
    let db = TestDatabase::create().await;
    let app = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .args(&["--rpc-timeout=300ms", "--ledger-timeout=5s"])
        .spawn()
        .await;
    let _lock = lock_the_ledger(&db).await;
    let mut client = app.client.clone();

    let started = Instant::now();
    let status = client
        .claim(claim_request("slow", "k", b"", None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(status.message(), "deadline exceeded after 300ms");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the deadline"
    );
    assert_eq!(
        app.metric(
            "onceward_rpc_duration_seconds_count",
            &[
                ("method", "Claim"),
                ("code", "DEADLINE_EXCEEDED"),
                ("protocol", "grpc")
            ]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_shorter_client_deadline_is_deadline_exceeded_too_not_cancelled() {
    let db = TestDatabase::create().await;
    let app = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .args(&["--ledger-timeout=5s"])
        .spawn()
        .await;
    let _lock = lock_the_ledger(&db).await;
    // A raw client: tonic's own would give up at the same moment and never see the answer.
    let mut wire = RawConnection::open(app.addr).await;

    let started = Instant::now();
    let claim = framed(b"\x0a\x04slow\x12\x01k");
    let answer = wire
        .call(&onceward("Claim"), claim, &[("grpc-timeout", "250m")])
        .await;
    assert_eq!(answer.code, Code::DeadlineExceeded, "{answer:?}");
    assert!(
        answer.message.starts_with("deadline exceeded after "),
        "{answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn malformed_bodies_are_invalid_argument_in_a_short_message_never_internal() {
    let app = TestApp::builder().spawn().await;
    let mut wire = RawConnection::open(app.addr).await;
    // ClaimRequest with field 1 (namespace) or 2 (key) holding bytes that are no UTF-8.
    let bad_namespace = framed(&[0x0a, 0x02, 0xff, 0xfe, 0x12, 0x01, b'k']);
    let bad_key = framed(&[0x0a, 0x02, b'n', b's', 0x12, 0x02, 0xc3, 0x28]);
    let mut compressed = framed(b"\x0a\x02ns").to_vec();
    compressed[0] = 1;
    let mut two = framed(b"\x0a\x02ns").to_vec();
    two.extend_from_slice(&framed(b"\x0a\x02ns"));
    let cases: [(&str, Bytes); 7] = [
        ("invalid UTF-8 in namespace", bad_namespace),
        ("invalid UTF-8 in key", bad_key),
        ("no protobuf", framed(&[0xff; 64])),
        ("an empty body", Bytes::new()),
        ("a compressed flag without grpc-encoding", compressed.into()),
        ("a message cut short", framed(&[0x0a; 40]).slice(..20)),
        ("two messages", two.into()),
    ];
    for (what, body) in cases {
        for method in ["Claim", "Complete", "Release", "ExtendLease", "Lookup"] {
            let answer = wire.call(&onceward(method), body.clone(), &[]).await;
            assert_eq!(
                answer.code,
                Code::InvalidArgument,
                "{what} to {method}: {answer:?}"
            );
            assert!(
                answer.message.starts_with("malformed request body: ")
                    && answer.message.len() < 200
                    && !answer.message.contains("failed to decode Protobuf"),
                "{what} to {method}: {:?}",
                answer.message
            );
        }
    }
    let answer = wire.call(&onceward("Claim"), bad_key_of_claim(), &[]).await;
    assert!(answer.message.contains("ClaimRequest.key"), "{answer:?}");
}

fn bad_key_of_claim() -> Bytes {
    framed(&[0x0a, 0x02, b'n', b's', 0x12, 0x01, 0xff])
}

#[tokio::test]
async fn a_stream_that_sends_headers_and_no_body_is_let_go_at_the_body_timeout() {
    let app = TestApp::builder()
        .args(&["--request-body-timeout=300ms"])
        .spawn()
        .await;
    let mut wire = RawConnection::open(app.addr).await;
    let started = Instant::now();
    let (response, _held_open) = wire.headers_only(&onceward("Claim"), &[]).await;
    let answer = tokio::time::timeout(Duration::from_secs(3), answered(response))
        .await
        .expect("answered while the client still holds the stream open");
    assert_eq!(answer.code, Code::DeadlineExceeded, "{answer:?}");
    assert_eq!(answer.message, "request body not received within 300ms");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A body that does arrive in time is served as usual.
    let (response, mut body) = wire.headers_only(&onceward("Claim"), &[]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    body.send_data(framed(b"\x0a\x02ns\x12\x01k"), true)
        .unwrap();
    assert_eq!(answered(response).await.code, Code::Ok);
}

#[tokio::test]
async fn a_reflection_stream_that_sends_nothing_ends_at_the_rpc_deadline() {
    let app = TestApp::builder()
        .args(&["--rpc-timeout=300ms"])
        .spawn()
        .await;
    let mut wire = RawConnection::open(app.addr).await;
    let reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    let (response, _held_open) = wire.headers_only(reflection, &[]).await;
    let ended = tokio::time::timeout(Duration::from_secs(3), answered(response)).await;
    assert!(
        ended.is_ok(),
        "the stream was closed while its client held it open"
    );
}

#[tokio::test]
async fn with_tenants_a_stream_without_a_valid_token_is_refused_on_its_headers() {
    let token = "transport-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tenants.toml");
    let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    std::fs::write(
        &config,
        format!("[[tenants]]\nname = \"t\"\ntoken_sha256 = \"{hash}\"\nnamespaces = [\"*\"]\n"),
    )
    .unwrap();
    let app = TestApp::builder()
        .tenants(&config)
        .args(&["--request-body-timeout=5s"])
        .spawn()
        .await;
    let mut wire = RawConnection::open(app.addr).await;

    let bearer = format!("Bearer {token}");
    for headers in [vec![], vec![("authorization", "Bearer not-the-token")]] {
        let (response, _held_open) = wire.headers_only(&onceward("Claim"), &headers).await;
        let answer = tokio::time::timeout(Duration::from_secs(1), answered(response))
            .await
            .expect("refused without waiting for a body");
        assert_eq!(
            answer.code,
            Code::Unauthenticated,
            "{headers:?}: {answer:?}"
        );
    }
    // With the token, the stream waits for its body, which is then served.
    let (mut response, mut body) = wire
        .headers_only(&onceward("Claim"), &[("authorization", &bearer)])
        .await;
    let early = tokio::time::timeout(Duration::from_millis(300), &mut response).await;
    assert!(
        early.is_err(),
        "a caller with a token is not refused on its headers"
    );
    body.send_data(framed(b"\x0a\x02ns\x12\x01k"), true)
        .unwrap();
    assert_eq!(answered(response).await.code, Code::Ok);
    assert_eq!(
        app.metric(
            "onceward_rpc_duration_seconds_count",
            &[
                ("method", "Claim"),
                ("code", "UNAUTHENTICATED"),
                ("protocol", "grpc")
            ]
        )
        .await,
        2.0,
        "refusals on the headers are counted like the handlers' answers"
    );
}

/// Reads until the server closes the connection; how long that took.
async fn closed_within(mut socket: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    let reading = async {
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, reading)
        .await
        .ok()
        .map(|()| started.elapsed())
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_handshake_timeout_and_a_good_client_is_served() {
    let app = TestApp::builder()
        .args(&["--handshake-timeout=300ms"])
        .spawn()
        .await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(app.addr).await.unwrap());
    }
    let mut partial = TcpStream::connect(app.addr).await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    silent.push(partial);

    let mut client = TestApp::connect(app.addr).await;
    assert_eq!(
        outcome(&claim(&mut client, "ns", "k").await),
        Outcome::Acquired
    );

    for socket in silent {
        let closed = closed_within(socket, Duration::from_secs(3)).await;
        assert!(closed.is_some(), "a silent connection was left open");
    }
    // The good client's connection, long past the timeout, is still served.
    assert_eq!(
        outcome(&claim(&mut client, "ns", "k").await),
        Outcome::InProgress
    );
}

#[tokio::test]
async fn over_max_connections_a_new_client_waits_in_the_backlog_and_the_cap_is_logged() {
    let sidecar =
        SidecarProcess::start(&["--max-connections=8", "--handshake-timeout=700ms"]).await;
    // `start` connected once to see the port open; let that slot be given back.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(sidecar.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    let started = Instant::now();
    let mut client = TestApp::connect(sidecar.addr).await;
    let claimed = claim(&mut client, "ns", "k").await;
    let waited = started.elapsed();
    assert_eq!(outcome(&claimed), Outcome::Acquired);
    assert!(
        waited >= Duration::from_millis(300),
        "served only once a slot was free ({waited:?})"
    );
    let log = sidecar.log();
    assert!(
        log.contains("connection limit reached") && log.contains("--max-connections"),
        "{log}"
    );
    assert!(
        log.contains("closed connections that sent no HTTP/2 preface"),
        "{log}"
    );
}

#[tokio::test]
async fn the_sidecar_raises_its_open_file_limit_and_keeps_its_connection_cap_below_it() {
    let sidecar = SidecarProcess::start_with_open_file_limit(Some((512, None)), &[]).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", sidecar.pid)).unwrap();
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a Max open files line");
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft = hard: {open_files}");
    assert!(
        sidecar.log().contains("raised the open-file limit"),
        "{}",
        sidecar.log()
    );

    // A hard limit of 400 leaves room for 144 connections beside the sidecar's own files.
    let sidecar = SidecarProcess::start_with_open_file_limit(Some((400, Some(400))), &[]).await;
    let log = sidecar.log();
    assert!(
        log.contains("--max-connections lowered to fit the open-file limit")
            && log.contains("cap=144"),
        "{log}"
    );
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_disconnected() {
    let app = TestApp::builder()
        .args(&[
            "--http2-keepalive-interval=200ms",
            "--http2-keepalive-timeout=200ms",
        ])
        .spawn()
        .await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (_sender, mut connection) = h2::client::handshake(tcp).await.unwrap();
    // Exchange settings, then answer nothing: while the connection is not polled, the
    // server's pings go unanswered.
    let still_open = tokio::time::timeout(Duration::from_millis(100), &mut connection).await;
    assert!(still_open.is_err());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let ended = tokio::time::timeout(Duration::from_secs(1), &mut connection).await;
    assert!(ended.is_ok(), "the server closed the connection");
}

/// The memory bound of SECURITY.md, measured on the sidecar process.
const RSS_BOUND: u64 = 256 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_streams_on_a_hundred_connections_keep_memory_bounded_and_claims_fast() {
    const CONNECTIONS: usize = 100;
    const STREAMS: usize = 256;
    // Long enough that every stream still hangs while the good client claims; that
    // they are then let go is the body-timeout test's.
    let sidecar = SidecarProcess::start(&["--request-body-timeout=30s"]).await;
    let pid = sidecar.pid;
    let at_rest = rss_bytes(pid);

    let attackers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let addr = sidecar.addr;
            tokio::spawn(async move {
                let mut wire = RawConnection::open(addr).await;
                let mut held = Vec::with_capacity(STREAMS);
                for _ in 0..STREAMS {
                    held.push(wire.headers_only(&onceward("Claim"), &[]).await);
                }
                (wire, held)
            })
        })
        .collect();
    let mut held = Vec::new();
    for attacker in attackers {
        held.push(attacker.await.unwrap());
    }

    let mut client = TestApp::connect(sidecar.addr).await;
    let mut latencies = Vec::new();
    let mut peak = rss_bytes(pid);
    for i in 0..200 {
        let started = Instant::now();
        let answer = claim(&mut client, "ns", &format!("k{i}")).await;
        latencies.push(started.elapsed());
        assert_eq!(outcome(&answer), Outcome::Acquired);
        peak = peak.max(rss_bytes(pid));
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    let mb = |bytes: u64| bytes / (1024 * 1024);
    println!(
        "sidecar RSS at rest {} MB, {} MB with {} half-open streams; Claim p99 {p99:?}",
        mb(at_rest),
        mb(peak),
        CONNECTIONS * STREAMS
    );
    assert!(peak < RSS_BOUND, "peak RSS {} MB", mb(peak));
    assert!(p99 < Duration::from_millis(250), "Claim p99 {p99:?}");
    drop(held);
}
