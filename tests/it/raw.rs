//! What a hostile client does, for the tests a well-behaved gRPC client cannot run: a
//! raw HTTP/2 client (the `h2` crate) that sends bodies that are no protobuf, broken
//! gRPC framing, or headers and never a body; and a sidecar run as a process of its
//! own, so its memory and its log can be read.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use tokio::net::TcpStream;
use tonic::Code;

/// A gRPC answer as it came over the wire.
#[derive(Debug)]
pub struct Answer {
    pub code: Code,
    pub message: String,
}

/// One HTTP/2 connection to a sidecar.
pub struct RawConnection {
    sender: SendRequest<Bytes>,
}

impl RawConnection {
    pub async fn open(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (sender, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Self { sender }
    }

    /// Sends a unary call whose body is `body`, exactly, and waits for the answer.
    pub async fn call(&mut self, path: &str, body: Bytes, headers: &[(&str, &str)]) -> Answer {
        let (response, mut stream) = self.start(path, headers, false).await;
        stream.send_data(body, true).expect("send the body");
        answered(response).await
    }

    /// Sends a call's headers and never its body. The stream stays open while the
    /// returned sender lives.
    pub async fn headers_only(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (ResponseFuture, h2::SendStream<Bytes>) {
        self.start(path, headers, false).await
    }

    async fn start(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> (ResponseFuture, h2::SendStream<Bytes>) {
        let mut request = http::Request::post(format!("http://sidecar{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let sender = self.sender.clone().ready().await.expect("a stream slot");
        let mut sender = sender;
        sender
            .send_request(request.body(()).unwrap(), end_of_stream)
            .expect("send the headers")
    }
}

/// The status of a gRPC response: in its headers (trailers-only) or its trailers.
pub async fn answered(response: ResponseFuture) -> Answer {
    let response = response.await.expect("a response");
    if let Some(answer) = status_in(response.headers()) {
        return answer;
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.expect("response data");
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.expect("trailers").expect("a status");
    status_in(&trailers).expect("grpc-status in the trailers")
}

fn status_in(headers: &http::HeaderMap) -> Option<Answer> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .map(|value| {
            let text = value.to_str().unwrap_or_default();
            percent_decode(text)
        })
        .unwrap_or_default();
    Some(Answer {
        code: Code::from(code),
        message,
    })
}

/// grpc-message is percent-encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `message` as one uncompressed gRPC message: a zero flag, the length, the bytes.
pub fn framed(message: &[u8]) -> Bytes {
    let mut body = Vec::with_capacity(message.len() + 5);
    body.push(0);
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    body.into()
}

/// The path of an `onceward.v1.Onceward` method.
pub fn onceward(method: &str) -> String {
    format!("/onceward.v1.Onceward/{method}")
}

/// Resident memory of a process, from /proc (Linux), in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Waits until `addr` accepts TCP connections, for a sidecar started as a process.
pub async fn wait_until_listening(addr: SocketAddr) {
    for _ in 0..1000 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing listens on {addr}");
}

/// The `onceward` binary serving on free ports with the embedded tiers (SQLite in a
/// temporary directory, the in-process cache); killed when dropped.
pub struct SidecarProcess {
    pub addr: SocketAddr,
    pub pid: u32,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl SidecarProcess {
    pub async fn start(extra_args: &[&str]) -> Self {
        Self::start_with_open_file_limit(None, extra_args).await
    }

    /// Like `start`, the sidecar started under `ulimit -S -n soft` (and `-H -n hard`).
    pub async fn start_with_open_file_limit(
        limit: Option<(u64, Option<u64>)>,
        extra_args: &[&str],
    ) -> Self {
        use tokio::io::AsyncBufReadExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let addr: SocketAddr = format!("127.0.0.1:{}", crate::harness::free_port())
            .parse()
            .unwrap();
        let metrics = format!("127.0.0.1:{}", crate::harness::free_port());
        let binary = env!("CARGO_BIN_EXE_onceward");
        let mut command = match limit {
            None => tokio::process::Command::new(binary),
            Some((soft, hard)) => {
                let hard = hard.map_or(String::new(), |hard| format!("ulimit -H -n {hard} && "));
                let mut shell = tokio::process::Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!("ulimit -S -n {soft} && {hard}exec \"$0\" \"$@\""))
                    .arg(binary);
                shell
            }
        };
        let mut child = command
            .args([
                "serve",
                "--listen",
                &addr.to_string(),
                "--metrics-listen",
                &metrics,
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the sidecar");
        // Drain the log as it comes, or a full pipe would stall the sidecar.
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn({
            let log = log.clone();
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        wait_until_listening(addr).await;
        Self {
            addr,
            pid: child.id().expect("a running child"),
            log,
            _child: child,
            _dir: dir,
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}
