//! The front door's HTTP/1.1 fast path (frontdoor/h1.rs) as a client sees it: one connection
//! carrying pipelined requests and answers of every framing, instances that close idle
//! connections, 1xx and close-delimited answers, a client leaving the queue, and the same
//! headers at the instance as the general (hyper) path gives.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Emu;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one answer from `s` (bytes already read but not used stay in `buf`). `head` says the
/// request was a HEAD (no body whatever the headers say).
async fn read_answer(s: &mut TcpStream, buf: &mut Vec<u8>, head: bool) -> Answer {
    async fn more(s: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("answer within 10 s")
            .unwrap();
        buf.extend_from_slice(&chunk[..n]);
        n
    }
    let (len, status, headers) = loop {
        let mut h = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut h);
        if let httparse::Status::Complete(n) = r.parse(buf).unwrap() {
            let headers = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect::<Vec<_>>();
            break (n, r.code.unwrap(), headers);
        }
        assert!(more(s, buf).await > 0, "connection closed inside a head");
    };
    buf.drain(..len);
    let mut a = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    if head || (100..200).contains(&status) || status == 204 || status == 304 {
        return a;
    }
    if let Some(n) = a.header("content-length") {
        let n: usize = n.parse().unwrap();
        while buf.len() < n {
            assert!(more(s, buf).await > 0, "connection closed inside a body");
        }
        a.body = buf.drain(..n).collect();
    } else if a.header("transfer-encoding") == Some("chunked") {
        loop {
            let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                assert!(more(s, buf).await > 0);
                continue;
            };
            let size = std::str::from_utf8(&buf[..eol]).unwrap();
            let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
            while buf.len() < eol + 2 + size + 2 {
                assert!(more(s, buf).await > 0);
            }
            a.body.extend_from_slice(&buf[eol + 2..eol + 2 + size]);
            buf.drain(..eol + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        while more(s, buf).await > 0 {}
        a.body = std::mem::take(buf);
    }
    a
}

/// A raw connection to emu with `requests` already written to it, and a buffer to read into.
async fn raw(port: u16, requests: &[u8]) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(requests).await.unwrap();
    (s, Vec::new())
}

fn upstream_service(port: u16, extra: &str) -> String {
    format!("[[service]]\nname = \"up\"\nupstream = \"http://127.0.0.1:{port}\"\n{extra}")
}

async fn serve_axum(app: axum::Router) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_carries_pipelined_chunked_head_and_plain_answers() {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/chunked",
            get(|| async {
                let parts: Vec<Result<&'static str, std::io::Error>> =
                    vec![Ok("one,"), Ok("two,"), Ok("three")];
                axum::body::Body::from_stream(futures_util::stream::iter(parts))
            }),
        )
        .route("/plain", get(|| async { "plain body" }));
    let port = serve_axum(app).await;
    let emu = Emu::start_toml(&upstream_service(port, ""));

    // Three requests in one write: each answer must come back whole and in order.
    let (mut s, mut buf) = raw(
        emu.port,
        b"GET /chunked HTTP/1.1\r\nhost: x\r\n\r\n\
          HEAD /plain HTTP/1.1\r\nhost: x\r\n\r\n\
          GET /plain HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    let chunked = read_answer(&mut s, &mut buf, false).await;
    assert_eq!(chunked.status, 200);
    assert_eq!(chunked.header("transfer-encoding"), Some("chunked"));
    assert_eq!(chunked.body, b"one,two,three");
    assert_eq!(chunked.header("x-emu-instance"), Some("up-1"));
    let head = read_answer(&mut s, &mut buf, true).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("10"));
    let plain = read_answer(&mut s, &mut buf, false).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.body, b"plain body");
    assert!(buf.is_empty(), "nothing after the third answer: {buf:?}");

    // And the connection is still usable afterwards.
    s.write_all(b"GET /plain HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let again = read_answer(&mut s, &mut buf, false).await;
    assert_eq!(again.body, b"plain body");
    // A request that asks to close gets its answer, then the connection ends.
    s.write_all(b"GET /plain HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let last = read_answer(&mut s, &mut buf, false).await;
    assert_eq!(last.body, b"plain body");
    assert_eq!(last.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("the front door closes")
        .unwrap();
    assert_eq!(n, 0);
}

/// An instance that answers one request per connection and then closes it without saying so,
/// as servers with a short keep-alive timeout do.
async fn closing_upstream(accepted: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // The head, then as many body bytes as it declares.
                let body_end = loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        break i + 4 + len;
                    }
                };
                while buf.len() < body_end {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_closing_idle_connections_fail_no_request() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let port = closing_upstream(accepted.clone()).await;
    let emu = Emu::start_toml(&upstream_service(port, ""));
    let client = reqwest::Client::new();
    for i in 0..8 {
        // POST is not retried on another connection if it was lost: the front door must not
        // pick a connection the instance has closed.
        let r = client
            .post(emu.url("/"))
            .body(format!("request {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "POST {i}: {}", emu.stderr_text());
        assert_eq!(r.text().await.unwrap(), "ok");
        let r = client.get(emu.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {i}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        accepted.load(Ordering::SeqCst) >= 16,
        "the instance closed its connections, so each request needed a new one"
    );
}

/// An instance speaking raw HTTP/1.1, answering by path: `/hints` (103 then 200), `/eof` (a
/// body that ends with the connection), `/named` (its Connection header names Content-Length),
/// `/both` (chunked with a Content-Length beside it).
async fn raw_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        continue;
                    };
                    let head: Vec<u8> = buf.drain(..end + 4).collect();
                    let answer: &[u8] = if head.starts_with(b"GET /hints ") {
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n",
                            )
                            .await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    } else if head.starts_with(b"GET /named ") {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Content-Length\r\n\r\nhello"
                    } else if head.starts_with(b"GET /both ") {
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                    } else {
                        // No length, not chunked: the body ends when the connection does.
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil ")
                            .await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = s.write_all(b"close").await;
                        let _ = s.shutdown().await;
                        return;
                    };
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn early_hints_and_close_delimited_answers_pass_through() {
    let port = raw_upstream().await;
    let emu = Emu::start_toml(&upstream_service(port, ""));

    let (mut s, mut buf) = raw(emu.port, b"GET /hints HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let hints = read_answer(&mut s, &mut buf, false).await;
    assert_eq!(hints.status, 103);
    assert_eq!(hints.header("link"), Some("</a.css>; rel=preload"));
    let ok = read_answer(&mut s, &mut buf, false).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, b"ok");
    assert_eq!(ok.header("x-emu-instance"), Some("up-1"));

    let (mut s, mut buf) = raw(emu.port, b"GET /eof HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let eof = read_answer(&mut s, &mut buf, false).await;
    assert_eq!(eof.status, 200);
    assert_eq!(eof.header("connection"), Some("close"));
    assert_eq!(eof.body, b"until close");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_cannot_unframe_its_answer() {
    let port = raw_upstream().await;
    let emu = Emu::start_toml(&upstream_service(port, ""));
    // Both on one connection, then a third request: each answer must end where it should.
    let (mut s, mut buf) = raw(
        emu.port,
        b"GET /named HTTP/1.1\r\nhost: x\r\n\r\n\
          GET /both HTTP/1.1\r\nhost: x\r\n\r\n\
          GET /named HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    // `Connection: Content-Length` does not take the body's length away from the client.
    let named = read_answer(&mut s, &mut buf, false).await;
    assert_eq!(named.header("content-length"), Some("5"));
    assert_eq!(named.body, b"hello");
    // Chunked wins over a Content-Length beside it, and only chunked reaches the client.
    let both = read_answer(&mut s, &mut buf, false).await;
    assert_eq!(both.header("transfer-encoding"), Some("chunked"));
    assert_eq!(both.header("content-length"), None);
    assert_eq!(both.body, b"hello");
    let again = read_answer(&mut s, &mut buf, false).await;
    assert_eq!(again.body, b"hello");
    assert!(buf.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_leaving_mid_answer_frees_its_slot_at_once() {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/stream",
            get(|| async {
                // One event, then a long silence: a stream the client gives up on.
                let events = futures_util::stream::unfold(0, |i| async move {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    Some((Ok::<_, std::io::Error>("data: tick\n\n"), i + 1))
                });
                axum::body::Body::from_stream(events)
            }),
        )
        .route("/plain", get(|| async { "plain body" }));
    let port = serve_axum(app).await;
    let emu = Emu::start_toml(&upstream_service(
        port,
        "concurrency = 1\nmin_instances = 1\nmax_instances = 1\nqueue_timeout = \"20s\"\n",
    ));
    emu.wait_ready("up", 1).await;
    let (mut s, _) = raw(emu.port, b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut first = [0u8; 512];
    let n = s.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(s);
    // The only slot must be free again, long before the stream's 30 s silence ends.
    let r = reqwest::Client::new()
        .get(emu.url("/plain"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("served while the abandoned stream is still silent");
    assert_eq!(r.text().await.unwrap(), "plain body");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_request_body_gets_504_at_the_request_timeout() {
    use axum::routing::post;
    let port = serve_axum(axum::Router::new().route("/", post(|| async { "never" }))).await;
    let emu = Emu::start_toml(&upstream_service(port, "timeout = \"1s\"\n"));
    // Ten bytes promised, three sent, then nothing.
    let (mut s, mut buf) = raw(
        emu.port,
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc",
    )
    .await;
    let started = tokio::time::Instant::now();
    let a = read_answer(&mut s, &mut buf, false).await;
    assert_eq!(a.status, 504);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_the_queue_gives_its_place_back() {
    use axum::routing::get;
    let slow_calls = Arc::new(AtomicUsize::new(0));
    let calls = slow_calls.clone();
    let app = axum::Router::new().route(
        "/slow",
        get(move || {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "done"
            }
        }),
    );
    let port = serve_axum(app).await;
    let emu = Emu::start_toml(&upstream_service(
        port,
        "concurrency = 1\nmin_instances = 1\nmax_instances = 1\nqueue_timeout = \"10s\"\n",
    ));
    emu.wait_ready("up", 1).await;
    let first = tokio::spawn(reqwest::get(emu.url("/slow")));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let queue_depth = || async { emu.status().await["services"][0]["queue_depth"].as_u64() };
    let mut waiter = TcpStream::connect(("127.0.0.1", emu.port)).await.unwrap();
    waiter
        .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(queue_depth().await, Some(1), "the second request waits");
    drop(waiter);
    let mut left = false;
    for _ in 0..20 {
        if queue_depth().await == Some(0) {
            left = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(left, "the queue emptied when its client left");

    let r = first.await.unwrap().unwrap();
    assert_eq!(r.text().await.unwrap(), "done");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        slow_calls.load(Ordering::SeqCst),
        1,
        "the abandoned request never reached the instance"
    );
}

/// What the instance saw, and what came back, for one request through an emu.
async fn seen_through(emu: &Emu) -> (BTreeMap<String, String>, Vec<String>) {
    let r = reqwest::Client::new()
        .get(emu.url("/debug/request?x=1"))
        .header("x-forwarded-for", "203.0.113.9")
        // Not a valid traceparent: replaced by a fresh one, never sent on beside it.
        .header("traceparent", "00-abc-def-01")
        .header("cookie", "a=b")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "secret")
        .header("user-agent", "ab-test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut answer: Vec<String> = r.headers().keys().map(|k| k.as_str().to_string()).collect();
    answer.sort();
    let v: serde_json::Value = r.json().await.unwrap();
    let mut seen: BTreeMap<String, String> = serde_json::from_value(v["headers"].clone()).unwrap();
    // Each emu's own address.
    assert_eq!(
        seen.remove("host").as_deref(),
        Some(format!("127.0.0.1:{}", emu.port).as_str())
    );
    // Fresh per request: compare their shape, not their value.
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let tp = seen.remove("traceparent").expect("traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert!(
        parts.len() == 4 && parts[0] == "00" && hex(parts[1], 32) && hex(parts[2], 16),
        "{tp}"
    );
    let ctx = seen
        .remove("x-cloud-trace-context")
        .expect("x-cloud-trace-context");
    let (trace, span) = ctx.split_once('/').unwrap();
    assert_eq!(trace, parts[1], "one trace id in both headers");
    let span = span.strip_suffix(";o=1").unwrap();
    assert_eq!(
        span.parse::<u64>().ok(),
        u64::from_str_radix(parts[2], 16).ok(),
        "one span id in both headers"
    );
    (seen, answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn fast_and_general_paths_give_the_instance_the_same_request() {
    let toml = r#"
[[service]]
name = "ab"
command = ["{EMU}", "demo-app"]
min_instances = 1
"#;
    let fast = Emu::start_toml(toml);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("emu.toml"), common::config(toml)).unwrap();
    let general = Emu::start_in_env(dir, &[], &[("EMU_FRONTDOOR", "hyper")]);
    fast.wait_ready("ab", 1).await;
    general.wait_ready("ab", 1).await;
    let (fast_seen, fast_answer) = seen_through(&fast).await;
    let (general_seen, general_answer) = seen_through(&general).await;
    assert_eq!(fast_seen, general_seen);
    assert_eq!(fast_answer, general_answer);
    assert_eq!(fast_seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert!(!fast_seen.contains_key("keep-alive"));
    assert!(!fast_seen.contains_key("proxy-authorization"));
    assert_eq!(fast_seen["user-agent"], "ab-test");
}

/// The answer to `request` on a connection of its own, and whether emu closed it after.
async fn answer_and_close(port: u16, request: &[u8]) -> (Answer, bool) {
    let (mut s, mut buf) = raw(port, request).await;
    let a = read_answer(&mut s, &mut buf, false).await;
    let mut rest = [0u8; 64];
    let closed = matches!(
        tokio::time::timeout(Duration::from_secs(10), s.read(&mut rest)).await,
        Ok(Ok(0)) | Ok(Err(_))
    );
    (a, closed)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_client_framing_is_a_400_and_a_close_not_the_instances_503() {
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
    );
    let port = serve_axum(app).await;
    for env in [&[][..], &[("EMU_FRONTDOOR", "hyper")][..]] {
        let dir = tempfile::tempdir().unwrap();
        common::write(dir.path(), "emu.toml", &upstream_service(port, ""));
        let emu = Emu::start_in_env(dir, &[], env);
        let bodies: [&[u8]; 11] = [
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"-1\r\nhello\r\n0\r\n\r\n",
            b"0x1\r\nh\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"5\0\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\n0\n\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
            b"5\r\nhello\r\n0\r\n: no name\r\n\r\n",
            b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n;\r\n0\r\n\r\n",
        ];
        for body in bodies {
            let mut req =
                b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            req.extend_from_slice(body);
            let (a, closed) = answer_and_close(emu.port, &req).await;
            assert_eq!(
                a.status,
                400,
                "{env:?} {:?}: {a:?}",
                String::from_utf8_lossy(body)
            );
            assert!(closed, "{env:?} {body:?}: connection kept open");
            assert_eq!(a.header("x-emu-instance"), Some("none"), "{a:?}");
        }
        // A length that is no number, or two that differ: 400. One too large for any body: 413
        // (where the fast path reads the head; with `EMU_FRONTDOOR=hyper` hyper's own parser
        // answers that one 431 before emu sees it).
        let mut lengths = vec![("abc", 400), ("1, 2", 400)];
        if env.is_empty() {
            lengths.push(("18446744073709551615", 413));
        }
        for (cl, want) in lengths {
            let req = format!("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {cl}\r\n\r\n");
            let (a, _) = answer_and_close(emu.port, req.as_bytes()).await;
            assert_eq!(a.status, want, "{env:?} {cl}: {a:?}");
        }
        // `PRI` that is not HTTP/2's preface.
        let (a, _) = answer_and_close(emu.port, b"PRI / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert_eq!(a.status, 400, "{env:?}: {a:?}");
        // Nothing was counted against the instance.
        let metrics = emu.metrics().await;
        assert!(!metrics.contains("code=\"503\""), "{metrics}");
        assert!(metrics.contains("code=\"400\""), "{metrics}");
    }
}
