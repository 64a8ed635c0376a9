//! Liveness and readiness probes on real instances: a failing readiness probe takes an instance
//! out of rotation until it passes again; a failing liveness probe restarts it.

mod common;

use std::time::Duration;

use common::Emu;

async fn instance_state(emu: &Emu, id: &str) -> Option<String> {
    let st = emu.status().await;
    st["services"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .map(|i| i["state"].as_str().unwrap().to_string())
}

async fn wait_state(emu: &Emu, id: &str, want: Option<&str>) {
    for _ in 0..100 {
        if instance_state(emu, id).await.as_deref() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} never became {want:?}: {}", emu.status().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_takes_an_instance_out_of_rotation_and_liveness_restarts_it() {
    let emu = Emu::start_toml(
        r#"
[[service]]
name = "probed"
command = ["{EMU}", "demo-app"]
min_instances = 2
max_instances = 2

[service.readiness_probe]
http_path = "/ready"
period = "200ms"
timeout = "200ms"
failure_threshold = 1

[service.liveness_probe]
http_path = "/health"
period = "300ms"
timeout = "300ms"
failure_threshold = 2
"#,
    );
    let s = emu.wait_ready("probed", 2).await;
    let inst = s["instances"].as_array().unwrap();
    let (a, a_addr) = (
        inst[0]["id"].as_str().unwrap().to_string(),
        inst[0]["address"].as_str().unwrap().to_string(),
    );
    let (b, b_addr) = (
        inst[1]["id"].as_str().unwrap().to_string(),
        inst[1]["address"].as_str().unwrap().to_string(),
    );
    let client = reqwest::Client::new();

    // A says it is not ready: it leaves the rotation, every request goes to B.
    client
        .post(format!("http://{a_addr}/debug/ready?state=false"))
        .send()
        .await
        .unwrap();
    wait_state(&emu, &a, Some("unready")).await;
    for _ in 0..10 {
        let r = client.get(emu.url("/")).send().await.unwrap();
        assert_eq!(
            r.headers().get("x-emu-instance").unwrap().to_str().unwrap(),
            b
        );
    }
    // Ready again: back in rotation.
    client
        .post(format!("http://{a_addr}/debug/ready?state=true"))
        .send()
        .await
        .unwrap();
    wait_state(&emu, &a, Some("ready")).await;

    // B fails its liveness probe twice: it is restarted (a new instance replaces it).
    client
        .post(format!("http://{b_addr}/debug/health?state=false"))
        .send()
        .await
        .unwrap();
    wait_state(&emu, &b, None).await;
    let s = emu.wait_ready("probed", 2).await;
    let ids: Vec<&str> = s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&a.as_str()) && !ids.contains(&b.as_str()),
        "{ids:?}"
    );
    let ev: serde_json::Value = reqwest::get(emu.url("/_emu/events?since=0"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let why = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["instance"] == b.as_str() && e["state"] == "failed")
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .unwrap();
    assert!(why.contains("liveness probe failed"), "{why}");
}

/// A slow boot: a request that started an instance is not failed by its queue timeout while
/// that start is within its startup-probe budget; it is served once the instance is ready.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_waits_out_the_slow_start_it_triggered() {
    let emu = Emu::start_toml(
        r#"
[[service]]
name = "slow"
command = ["/bin/sh", "-c", "sleep 3; exec python3 -m http.server \"$PORT\""]
min_instances = 0
queue_timeout = "1s"
timeout = "30s"
[service.startup_probe]
period = "1s"
timeout = "1s"
failure_threshold = 20
"#,
    );
    let t = tokio::time::Instant::now();
    let r = reqwest::get(emu.url("/")).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert!(
        t.elapsed() >= Duration::from_secs(3),
        "it waited for the boot"
    );
    assert_eq!(r.headers()["x-emu-cold-start"], "true");
}
