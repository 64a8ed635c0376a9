//! The front door's limits end to end, on the real binary: a request head that does not arrive
//! within `header_timeout` is closed, an idle keep-alive connection closes after `idle_timeout`
//! (and not at the header timeout), and a flood of connections from one client is answered
//! 429 past its share instead of running emu out of file descriptors, while another client
//! keeps being served. Timing is asserted only as generous upper bounds and as lower bounds a
//! timer guarantees.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Emu, Via};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

const HELLO: &str = r#"
[[service]]
name = "hello"
command = ["{EMU}", "demo-app"]
min_instances = 1
max_instances = 1
"#;

/// Sends `GET /` on `s` and returns the answer's status, its body read whole.
async fn get(s: &mut TcpStream) -> u16 {
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk))
            .await
            .expect("an answer within 30 s")
            .unwrap();
        assert!(n > 0, "closed before answering");
        buf.extend_from_slice(&chunk[..n]);
        let mut h = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut h);
        if let httparse::Status::Complete(head) = r.parse(&buf).unwrap() {
            let len: usize = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .expect("a content-length");
            if buf.len() >= head + len {
                return r.code.unwrap();
            }
        }
    }
}

/// True when emu closes `s` (end of stream or reset) within `bound`; bytes it sends first are
/// returned too.
async fn closed_within(s: &mut TcpStream, bound: Duration) -> (bool, Vec<u8>) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let until = Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut chunk)).await {
            Err(_) => return (false, got),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, got),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn a_slow_head_is_closed_while_an_idle_connection_stays(path: Via) {
    let emu = Emu::start_toml_on(path, &format!("[emu]\nheader_timeout = \"1s\"\n{HELLO}"));
    emu.wait_ready("hello", 1).await;
    let mut idle = TcpStream::connect(("127.0.0.1", emu.port)).await.unwrap();
    assert_eq!(get(&mut idle).await, 200);

    // A client that trickles its head, a byte at a time, never finishing it.
    let started = Instant::now();
    let slow = TcpStream::connect(("127.0.0.1", emu.port)).await.unwrap();
    let (mut rd, mut wr) = slow.into_split();
    let trickle = tokio::spawn(async move {
        let _ = wr.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ").await;
        while wr.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(60), rd.read(&mut chunk)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a head still arriving after the header timeout is closed without an answer: {read:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    trickle.abort();

    // The keep-alive connection has now been idle longer than the header timeout: it is under
    // the idle timeout (600 s), and still serves.
    assert_eq!(get(&mut idle).await, 200);
}

async fn an_idle_connection_closes_after_the_idle_timeout(path: Via) {
    let toml = format!("[emu]\nheader_timeout = \"1s\"\nidle_timeout = \"3s\"\n{HELLO}");
    let emu = Emu::start_toml_on(path, &toml);
    emu.wait_ready("hello", 1).await;
    let idle_from = if path == Via::H2c {
        h2c_request_then_idle(emu.port).await
    } else {
        let mut s = TcpStream::connect(("127.0.0.1", emu.port)).await.unwrap();
        assert_eq!(get(&mut s).await, 200);
        let t = Instant::now();
        let (closed, _) = closed_within(&mut s, Duration::from_secs(60)).await;
        assert!(closed, "an idle connection is closed by the idle timeout");
        t
    };
    // Not the header timeout (1 s): the idle one (3 s), less the answer's way back.
    assert!(
        idle_from.elapsed() >= Duration::from_secs(2),
        "closed after {:?}",
        idle_from.elapsed()
    );
}

/// One request over HTTP/2, then waits for emu to end the connection; returns when the answer
/// had come.
async fn h2c_request_then_idle(port: u16) -> Instant {
    use http_body_util::{BodyExt, Empty};
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://127.0.0.1:{port}/"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(60), conn)
        .await
        .expect("an idle HTTP/2 connection is closed by the idle timeout")
        .unwrap()
        .ok();
    t
}

mod a_slow_head_is_closed_while_an_idle_connection_stays {
    #[tokio::test(flavor = "multi_thread")]
    async fn fast() {
        super::a_slow_head_is_closed_while_an_idle_connection_stays(super::Via::Fast).await
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn hyper() {
        super::a_slow_head_is_closed_while_an_idle_connection_stays(super::Via::Hyper).await
    }
}

on_every_path!(an_idle_connection_closes_after_the_idle_timeout);

#[derive(Debug, Default)]
struct Flood {
    answered_429: usize,
    /// Held until emu closed them (the header timeout: the flood never sends a head).
    closed_unanswered: usize,
    /// Connected, then neither answered nor closed: the kernel completed the handshake while
    /// emu's accept queue was full, and dropped the connection without telling the client.
    never_accepted: usize,
    /// Could not connect (the same full queue, seen from the client).
    connect_failed: usize,
    /// Answered with something other than a 429.
    other: Vec<String>,
}

enum Attempt {
    Answered429,
    Closed,
    NeverAccepted,
    ConnectFailed,
    Other(String),
}

/// One attempt of the flood: connect, send nothing, and see how emu ends it.
async fn attempt(port: u16) -> Attempt {
    let connect = TcpStream::connect(("127.0.0.1", port));
    let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(30), connect).await else {
        return Attempt::ConnectFailed;
    };
    // The header timeout (10 s) closes what was admitted; half as long again is plenty.
    match closed_within(&mut s, Duration::from_secs(30)).await {
        (true, got) if got.is_empty() => Attempt::Closed,
        (true, got) if got.starts_with(b"HTTP/1.1 429 ") => Attempt::Answered429,
        (false, got) if got.is_empty() => Attempt::NeverAccepted,
        (closed, got) => Attempt::Other(format!(
            "closed {closed}: {:?}",
            String::from_utf8_lossy(&got[..got.len().min(80)])
        )),
    }
}

/// A fresh connection from 127.0.0.2 each time, one `GET /` on it.
async fn probe(port: u16) -> Result<(), String> {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse::<SocketAddr>().unwrap())
        .unwrap();
    let connect = sock.connect(([127, 0, 0, 1], port).into());
    let mut s = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| "connect: no answer in 10 s".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(20), get(&mut s)).await {
        Ok(200) => Ok(()),
        Ok(other) => Err(format!("status {other}")),
        Err(_) => Err("no answer in 20 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_connection_attempts_from_one_client_leave_another_served() {
    // The flood holds up to 3000 sockets here: this process's own limit must allow them.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    assert!(
        hard >= 4096,
        "the flood needs 4096 open files in the test process; the hard limit is {hard} (raise it with ulimit -Hn)"
    );
    // emu with 2048 file descriptors: without a cap, 3000 connections held open would exhaust
    // them and every new connection, anyone's, would fail.
    let emu = Emu::start_toml_with_file_limit(HELLO, 2048);
    emu.wait_ready("hello", 1).await;
    let port = emu.port;

    let flooding = Arc::new(AtomicBool::new(true));
    let prober = {
        let flooding = flooding.clone();
        tokio::spawn(async move {
            let (mut served, mut failed) = (0, Vec::new());
            while flooding.load(Ordering::Relaxed) {
                match probe(port).await {
                    Ok(()) => served += 1,
                    Err(e) => failed.push(e),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (served, failed)
        })
    };
    let started = Instant::now();
    let flood = futures_util::stream::iter(0..20_000)
        .map(|_| attempt(port))
        .buffer_unordered(3000)
        .fold(Flood::default(), |mut f, r| async move {
            match r {
                Attempt::Answered429 => f.answered_429 += 1,
                Attempt::Closed => f.closed_unanswered += 1,
                Attempt::NeverAccepted => f.never_accepted += 1,
                Attempt::ConnectFailed => f.connect_failed += 1,
                Attempt::Other(e) if f.other.len() < 5 => f.other.push(e),
                Attempt::Other(_) => {}
            }
            f
        });
    let flood = tokio::time::timeout(Duration::from_secs(300), flood)
        .await
        .expect("the flood ends within 300 s");
    flooding.store(false, Ordering::Relaxed);
    let (served, probe_failures) = prober.await.unwrap();
    eprintln!(
        "flood of 20000 in {:?}: {flood:?}; probes served {served}, failed {}",
        started.elapsed(),
        probe_failures.len()
    );
    assert!(
        probe_failures.is_empty(),
        "the other client was served throughout: {probe_failures:?}"
    );

    assert!(
        flood.other.is_empty(),
        "only 429s or silence: {:?}",
        flood.other
    );
    assert!(flood.answered_429 > 0, "past its share the client got 429s");
    assert!(
        served >= 3,
        "the prober ran during the flood ({served} probes)"
    );
    let stderr = emu.stderr_text();
    assert!(!stderr.contains("accept failed"), "{stderr}");
    // The flooding client itself is served again once its connections are gone.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert_eq!(get(&mut s).await, 200);
}

/// An upstream that reads a request's whole body before answering (axum), on a port of its own.
async fn body_reader() -> u16 {
    use axum::routing::post;
    let app = axum::Router::new().route("/", post(|body: String| async move { body }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// A chunked upload goes hyper's way; one that stops half-way is cut at the request timeout
/// with a 504, as a stalled Content-Length body is on the fast path.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_chunked_body_gets_504_at_the_request_timeout() {
    let port = body_reader().await;
    let emu = Emu::start_toml(&format!(
        "[[service]]\nname = \"up\"\nupstream = \"http://127.0.0.1:{port}\"\ntimeout = \"1s\"\n"
    ));
    let mut s = TcpStream::connect(("127.0.0.1", emu.port)).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, got) = closed_within(&mut s, Duration::from_secs(30)).await;
    assert!(
        got.starts_with(b"HTTP/1.1 504 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}
