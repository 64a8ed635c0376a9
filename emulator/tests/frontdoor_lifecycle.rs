//! The front door's connection lifecycle on every path ([`Via`]): SIGTERM drains in-flight
//! requests before instances stop, and a client that leaves frees its slot at once and is
//! logged and counted as 499.

mod common;

use std::time::Duration;

use common::{alive, one_slot, timed_get, Emu, Via};

on_every_path!(
    sigterm_lets_in_flight_requests_finish_then_stops_instances,
    a_client_gone_mid_request_frees_its_slot,
);

async fn sigterm_lets_in_flight_requests_finish_then_stops_instances(path: Via) {
    let mut emu = Emu::start_toml_on(
        path,
        r#"
[[service]]
name = "g"
command = ["{EMU}", "demo-app"]
min_instances = 1
"#,
    );
    let s = emu.wait_ready("g", 1).await;
    let pid = s["instances"][0]["pid"].as_u64().unwrap() as u32;
    let url = emu.url("/work?ms=1500");
    let req = tokio::spawn(timed_get(path, url));
    emu.wait_in_flight("g", 1).await;
    let status = tokio::task::spawn_blocking(move || {
        let st = emu.terminate(Duration::from_secs(20));
        (st, emu)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "emu exited with {:?}", status.0);
    let r = req.await.unwrap();
    assert_eq!(r.0, 200, "in-flight request finished: {r:?}");
    assert!(!alive(pid), "instance stopped");
    assert!(status.1.stderr_text().contains("emu: stopped"));
}

async fn a_client_gone_mid_request_frees_its_slot(path: Via) {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "emu.toml", &common::config(&one_slot("2s")));
    let log = dir.path().join("requests.log");
    let log_arg = log.display().to_string();
    let args = ["--log-format", "json", "--request-log", &log_arg];
    let emu = Emu::start_in_env(dir, &args, path.env());
    emu.wait_ready("slow", 1).await;
    // A client takes the only slot with a minute of work, then leaves.
    let url = emu.url("/work?ms=60000");
    let gone = tokio::spawn(async move { path.get(&url).await.status() });
    emu.wait_in_flight("slow", 1).await;
    gone.abort();
    // The slot comes free at once: the next request is served, not queued into a 429.
    emu.wait_in_flight("slow", 0).await;
    let (status, _, _, inst) = timed_get(path, emu.url("/")).await;
    assert_eq!(status, 200);
    assert_eq!(inst.as_deref(), Some("slow-1"));
    // The request that lost its client is in the log (499, client closed, with its latency)
    // and in the metrics, beside the one that was answered.
    let mut closed = None;
    for _ in 0..200 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        closed = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["httpRequest"]["status"] == 499);
        if closed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed =
        closed.unwrap_or_else(|| panic!("no 499 entry in {:?}", std::fs::read_to_string(&log)));
    assert!(closed["httpRequest"]["requestUrl"]
        .as_str()
        .unwrap()
        .ends_with("/work?ms=60000"));
    assert!(closed["httpRequest"]["latency"]
        .as_str()
        .unwrap()
        .ends_with('s'));
    let metrics = emu.metrics().await;
    assert!(
        metrics.contains("emu_requests_total{service=\"slow\",code=\"499\"} 1"),
        "{metrics}"
    );
}
