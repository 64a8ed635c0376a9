//! The front door end to end: the real `emu` binary, real instance processes, real sockets.
//! Every behaviour here runs on each path a request can take ([`Via`]: the HTTP/1.1 fast path,
//! hyper's HTTP/1.1 path, h2c), so the paths cannot drift apart. Timing is asserted only where
//! it cannot flake: a lower bound a timer guarantees, and generous upper bounds that tell one
//! cause from another (a queue timeout of 1 s from a request timeout of 300 s).

mod common;

use std::time::Duration;
use tokio::time::Instant;

use common::{alive, one_slot, timed_get, Emu, Via};
use futures_util::future::join_all;

const NO_INSTANCE: &str = "The request was aborted because there was no available instance.";

on_every_path!(
    full_instance_queues_then_429s_with_cloud_runs_sentence,
    longer_queue_wait_serves_all_one_after_another,
    scale_from_zero_is_a_cold_start_with_the_extra_delay,
    request_timeout_is_504_and_counts_the_cold_start,
    killed_instance_fails_its_requests_with_503_and_is_replaced,
    instance_sees_cloud_runs_headers_and_env,
    bodies_over_32_mib_get_413_and_smaller_ones_stream_through,
    reserved_paths_and_trace_never_reach_the_instance,
);

async fn full_instance_queues_then_429s_with_cloud_runs_sentence(path: Via) {
    let emu = Emu::start_toml_on(path, &one_slot("1s"));
    emu.wait_ready("slow", 1).await;
    // The first request holds the only slot far longer than the queue timeout.
    let url = emu.url("/work?ms=8000");
    let results = join_all((0..3).map(|_| timed_get(path, url.clone()))).await;
    let ok: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    let rejected: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(ok.len(), 1, "{results:?}");
    assert_eq!(rejected.len(), 2, "{results:?}");
    for r in rejected {
        assert!(r.1.contains(NO_INSTANCE), "{}", r.1);
        assert_eq!(
            r.3.as_deref(),
            Some("none"),
            "emu's own answer names no instance"
        );
        // Never before the queue timeout; long before the slot came free.
        assert!(r.2 >= Duration::from_millis(1000), "{:?}", r.2);
        assert!(r.2 < Duration::from_millis(7500), "{:?}", r.2);
    }
    let st = emu.status().await;
    assert_eq!(st["services"][0]["rejected_429"], 2);
}

async fn longer_queue_wait_serves_all_one_after_another(path: Via) {
    let emu = Emu::start_toml_on(path, &one_slot("30s"));
    emu.wait_ready("slow", 1).await;
    let url = emu.url("/work?ms=1000");
    let mut results = join_all((0..3).map(|_| timed_get(path, url.clone()))).await;
    assert!(results.iter().all(|r| r.0 == 200), "{results:?}");
    results.sort_by_key(|r| r.2);
    // Served one at a time on the one instance: the k-th answer cannot come before k seconds.
    for (i, r) in results.iter().enumerate() {
        assert!(
            r.2 >= Duration::from_millis(1000 * (i as u64 + 1)),
            "request {i} took {:?}: not served one after another",
            r.2
        );
        assert_eq!(r.3.as_deref(), Some("slow-1"));
    }
}

async fn scale_from_zero_is_a_cold_start_with_the_extra_delay(path: Via) {
    let emu = Emu::start_toml_on(
        path,
        r#"
[[service]]
name = "cold"
command = ["{EMU}", "demo-app"]
min_instances = 0
cold_start = "1s"
"#,
    );
    let st = emu.status().await;
    assert_eq!(
        st["services"][0]["ready"], 0,
        "min 0: nothing runs before a request"
    );
    let t = Instant::now();
    let r = path.get(&emu.url("/")).await;
    let took = t.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("x-emu-cold-start")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    assert!(
        took >= Duration::from_secs(1),
        "cold start took only {took:?}"
    );
    let r = path.get(&emu.url("/")).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-emu-cold-start").is_none());
    let st = emu.status().await;
    assert_eq!(st["services"][0]["cold_starts"], 1);
    assert!(
        st["services"][0]["instances"][0]["startup_ms"]
            .as_u64()
            .unwrap()
            >= 1000
    );
}

async fn request_timeout_is_504_and_counts_the_cold_start(path: Via) {
    let emu = Emu::start_toml_on(
        path,
        r#"
[[service]]
name = "t"
command = ["{EMU}", "demo-app"]
timeout = 1
min_instances = 1
"#,
    );
    emu.wait_ready("t", 1).await;
    let (status, body, took, inst) = timed_get(path, emu.url("/work?ms=20000")).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(inst.as_deref(), Some("none"));
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(
        took < Duration::from_secs(15),
        "the work's 20 s were waited out: {took:?}"
    );
    // The clock includes a cold start: 20 s of cold start against a 1 s timeout.
    let emu = Emu::start_toml_on(
        path,
        r#"
[[service]]
name = "t"
command = ["{EMU}", "demo-app"]
timeout = 1
cold_start = "20s"
"#,
    );
    let (status, _, took, _) = timed_get(path, emu.url("/")).await;
    assert_eq!(status, 504);
    assert!(took < Duration::from_secs(15), "{took:?}");
}

async fn killed_instance_fails_its_requests_with_503_and_is_replaced(path: Via) {
    let emu = Emu::start_toml_on(
        path,
        r#"
[[service]]
name = "k"
command = ["{EMU}", "demo-app"]
concurrency = 10
min_instances = 1
max_instances = 1
"#,
    );
    let s = emu.wait_ready("k", 1).await;
    let pid = s["instances"][0]["pid"].as_u64().unwrap() as i32;
    let first = s["instances"][0]["id"].as_str().unwrap().to_string();
    let url = emu.url("/work?ms=30000");
    let inflight = tokio::spawn(join_all((0..5).map(move |_| timed_get(path, url.clone()))));
    emu.wait_in_flight("k", 5).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let results = inflight.await.unwrap();
    for r in &results {
        assert_eq!(r.0, 503, "in-flight request on the killed instance: {r:?}");
    }
    // Later requests succeed on a replacement.
    let s = emu.wait_ready("k", 1).await;
    let second = s["instances"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let (status, _, _, inst) = timed_get(path, emu.url("/")).await;
    assert_eq!(status, 200);
    assert_eq!(inst.as_deref(), Some(second.as_str()));
    let ev: serde_json::Value = reqwest::get(emu.url("/_emu/events?since=0"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let failed = ev["events"].as_array().unwrap().iter().any(|e| {
        e["kind"] == "instance" && e["state"] == "failed" && e["instance"] == first.as_str()
    });
    assert!(failed, "the crash is on the timeline");
}

async fn instance_sees_cloud_runs_headers_and_env(path: Via) {
    let emu = Emu::start_toml_on(
        path,
        r#"
[[service]]
name = "hdr"
command = ["{EMU}", "demo-app"]
min_instances = 1
env = { DEMO_GREETING = "hola" }
"#,
    );
    emu.wait_ready("hdr", 1).await;
    let client = path.client();
    let r = client
        .get(emu.url("/debug/request"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("x-emu-instance").unwrap(), "hdr-1");
    let v: serde_json::Value = r.json().await.unwrap();
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    let xctc = h["x-cloud-trace-context"].as_str().unwrap();
    let (trace, rest) = xctc.split_once('/').unwrap();
    assert_eq!(trace.len(), 32);
    assert!(rest.ends_with(";o=1"), "{xctc}");
    let tp = h["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with(&format!("00-{trace}-")) && tp.ends_with("-01"),
        "{tp} vs {xctc}"
    );
    assert!(h["host"].as_str().unwrap().starts_with("127.0.0.1:"), "{h}");
    let env = &v["env"];
    assert_eq!(env["K_SERVICE"], "hdr");
    assert_eq!(env["K_REVISION"], "hdr-00001-emu");
    assert_eq!(env["K_CONFIGURATION"], "hdr");
    assert_eq!(env["DEMO_GREETING"], "hola");
    let port: u16 = env["PORT"].as_str().unwrap().parse().unwrap();
    assert_ne!(port, emu.port);

    // A client's traceparent is kept (an invalid one before it is dropped), and its trace id
    // carried into X-Cloud-Trace-Context.
    let mine = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let v: serde_json::Value = client
        .get(emu.url("/debug/request"))
        .header("traceparent", "not-a-trace")
        .header("traceparent", mine)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["headers"]["traceparent"], mine, "{}", v["headers"]);
    assert!(v["headers"]["x-cloud-trace-context"]
        .as_str()
        .unwrap()
        .starts_with("0af7651916cd43dd8448eb211c80319c/"));
}

async fn bodies_over_32_mib_get_413_and_smaller_ones_stream_through(path: Via) {
    use axum::routing::post;
    // An app that reads the whole body and answers with its length.
    let app = axum::Router::new()
        .route(
            "/",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let emu = Emu::start_toml_on(
        path,
        &format!("[[service]]\nname = \"b\"\nupstream = \"http://127.0.0.1:{port}\"\n"),
    );

    if path != Via::H2c {
        // A declared length over 32 MiB is refused before any of the body is read.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", emu.port))
            .await
            .unwrap();
        tcp.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 40000000\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tcp.read(&mut buf).await.unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 413"), "{head}");
        assert!(head.contains("x-emu-instance: none"), "{head}");
    }

    let client = path.client();
    let chunked = |mib: usize| {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            (0..mib).map(|_| Ok(vec![b'y'; 1024 * 1024])).collect();
        reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
    };
    // Just under the limit streams through to the instance, with or without a length.
    let ok = client
        .post(emu.url("/"))
        .body(vec![b'x'; 31 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), (31 * 1024 * 1024).to_string());
    let ok = client
        .post(emu.url("/"))
        .body(chunked(2))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), (2 * 1024 * 1024).to_string());
    // Without a Content-Length (chunked), the cap is enforced while streaming.
    let r = client
        .post(emu.url("/"))
        .body(chunked(34))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "{}", emu.stderr_text());
    // A normal request still works afterwards.
    let ok = client.post(emu.url("/")).body("hi").send().await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "2");
}

async fn reserved_paths_and_trace_never_reach_the_instance(path: Via) {
    let emu = Emu::start_toml_on(
        path,
        r#"
[[service]]
name = "r"
command = ["{EMU}", "demo-app"]
min_instances = 1
"#,
    );
    emu.wait_ready("r", 1).await;
    let client = path.client();
    for p in ["/healthz", "/readyz", "/_ah/warmup", "/eventlog"] {
        let r = client.get(emu.url(p)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{p}");
        assert_eq!(r.headers()["x-emu-instance"], "none", "{p}");
        let body = r.text().await.unwrap();
        assert!(body.contains("That’s an error."), "{p}: {body}");
        assert!(body.contains(p), "{p}: {body}");
    }
    let r = client
        .request(reqwest::Method::TRACE, emu.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // The instance was asked nothing: its only requests were none.
    let st = emu.status().await;
    assert_eq!(st["services"][0]["instances"][0]["served"], 0, "{st}");
    let r = client.get(emu.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200, "a path not reserved reaches the instance");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_emu_leaves_no_instance_behind() {
    let mut emu = Emu::start_toml(
        r#"
[[service]]
name = "o"
command = ["{EMU}", "demo-app"]
min_instances = 3
"#,
    );
    let s = emu.wait_ready("o", 3).await;
    let pids: Vec<u32> = s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|p| alive(*p)));
    emu.child.kill().unwrap(); // SIGKILL: emu runs no cleanup at all
    emu.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "orphans left: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_host_and_by_own_port_and_logs_json() {
    let dir = tempfile::tempdir().unwrap();
    let own_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    common::write(
        dir.path(),
        "emu.toml",
        &format!(
            r#"
[[service]]
name = "alpha"
command = ["{{EMU}}", "demo-app"]
min_instances = 1

[[service]]
name = "beta"
command = ["{{EMU}}", "demo-app"]
min_instances = 1
port = {own_port}
"#
        ),
    );
    let log = dir.path().join("requests.log");
    let log_arg = log.display().to_string();
    let emu = Emu::start_in(dir, &["--log-format", "json", "--request-log", &log_arg]);
    emu.wait_ready("alpha", 1).await;
    emu.wait_ready("beta", 1).await;
    let client = reqwest::Client::new();
    let a = client
        .get(emu.url("/"))
        .header("host", format!("alpha.localhost:{}", emu.port))
        .send()
        .await
        .unwrap();
    assert_eq!(a.text().await.unwrap(), "Hello from alpha!\n");
    let b = client
        .get(emu.url("/"))
        .header("host", format!("beta.localhost:{}", emu.port))
        .send()
        .await
        .unwrap();
    assert_eq!(b.text().await.unwrap(), "Hello from beta!\n");
    let own = reqwest::get(format!("http://127.0.0.1:{own_port}/"))
        .await
        .unwrap();
    assert_eq!(own.text().await.unwrap(), "Hello from beta!\n");
    let none = client
        .get(emu.url("/"))
        .header("host", "gamma.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);

    // The log is written behind the answers: wait for all four lines.
    let mut text = String::new();
    for _ in 0..200 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0]["httpRequest"]["status"], 200);
    assert_eq!(lines[0]["httpRequest"]["requestMethod"], "GET");
    assert!(lines[0]["trace"].as_str().unwrap().starts_with("projects/"));
    assert_eq!(lines[3]["httpRequest"]["status"], 404);
    assert_eq!(lines[3]["severity"], "WARNING");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_metrics_and_events() {
    let emu = Emu::start_toml(
        r#"
[[service]]
name = "m"
command = ["{EMU}", "demo-app"]
"#,
    );
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for _ in 0..3 {
        assert_eq!(reqwest::get(emu.url("/")).await.unwrap().status(), 200);
    }
    // Samples are taken once a second: wait until two cover the requests.
    let mut metrics = String::new();
    for _ in 0..300 {
        metrics = emu.metrics().await;
        let ev: serde_json::Value = reqwest::get(emu.url(&format!("/_emu/events?since={since}")))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let samples = ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "sample")
            .map(|e| e["requests"].as_u64().unwrap_or(0))
            .collect::<Vec<_>>();
        if samples.len() >= 2 && samples.iter().sum::<u64>() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains("emu_requests_total{service=\"m\",code=\"200\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("emu_instances{service=\"m\",state=\"ready\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("emu_cold_starts_total{service=\"m\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("emu_queue_wait_seconds_count{service=\"m\"} 1"),
        "{metrics}"
    );
    let ev: serde_json::Value = reqwest::get(emu.url(&format!("/_emu/events?since={since}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = ev["events"].as_array().unwrap();
    let samples: Vec<_> = events.iter().filter(|e| e["kind"] == "sample").collect();
    assert!(samples.len() >= 2, "{ev}");
    let total: u64 = samples
        .iter()
        .map(|s| s["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 3);
    assert_eq!(
        samples
            .iter()
            .map(|s| s["cold_starts"].as_u64().unwrap())
            .sum::<u64>(),
        1
    );
    assert!(events
        .iter()
        .any(|e| e["kind"] == "instance" && e["state"] == "ready" && e["startup_ms"].is_u64()));
    assert!(events.iter().all(|e| e["ts_ms"].as_u64().unwrap() >= since));
    let bad = reqwest::get(emu.url("/_emu/events?since=yesterday"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let table = common::run_emu(emu.path(), &["status"]);
    assert_eq!(table.0, 0, "{}", table.1);
}
