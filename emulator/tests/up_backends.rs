//! `emu up` with real PostgreSQL and Redis behind the demo: data kept across restarts, `emu down`
//! from another shell, nothing left behind after SIGKILL, passwords never shown.

mod common;

use std::time::Duration;

use common::{alive, run_emu, Emu};

const NATIVE: &str = r#"
[[service]]
name = "demo"
command = ["{EMU}", "demo-app"]
database = "shop"

[postgres]
mode = "native"
tier = "db-f1-micro"

[redis]
mode = "native"
size_gb = 1
"#;

fn backend_pids(status: &serde_json::Value) -> Vec<u32> {
    ["postgres", "redis"]
        .iter()
        .filter_map(|s| status["backends"][s]["pid"].as_u64())
        .map(|p| p as u32)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn native_backends_keep_data_across_restarts_and_hide_passwords() {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "emu.toml", NATIVE);
    let keep = dir.path().to_path_buf();
    let mut emu = Emu::start_in(dir, &[]);
    let client = reqwest::Client::new();
    let health: serde_json::Value = client
        .get(emu.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["dependencies"]["database"], "connected", "{health}");
    assert_eq!(health["dependencies"]["redis"], "connected", "{health}");
    let created: serde_json::Value = client
        .post(emu.url("/items"))
        .json(&serde_json::json!({ "name": "kept", "value": 42 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().unwrap();

    // The instance got DATABASE_URL for its own database, and status shows the preset, masked.
    let st = emu.status().await;
    let pg = &st["backends"]["postgres"];
    assert_eq!(pg["mode"], "native");
    assert_eq!(pg["tier"], "db-f1-micro");
    assert_eq!(pg["max_connections"], 25);
    let text = serde_json::to_string(&st).unwrap();
    let passwords = common::project_passwords(emu.path());
    common::assert_no_password("status", &text, &passwords);
    assert!(text.contains("****"), "{text}");
    assert_eq!(
        st["backends"]["redis"]["maxmemory"], 1073741824u64,
        "{}",
        st["backends"]["redis"]
    );
    let pids = backend_pids(&st);
    assert_eq!(pids.len(), 2, "{}", st["backends"]);

    // Stop (SIGTERM, as Ctrl-C) and start again in the same folder: the item is still there.
    let code = tokio::task::spawn_blocking(move || {
        let c = emu.terminate(Duration::from_secs(30));
        let err = emu.stderr_text();
        (c, err, emu)
    })
    .await
    .unwrap();
    assert!(code.0.success());
    common::assert_no_password("the log", &code.1, &passwords);
    for p in &pids {
        assert!(!alive(*p), "backend {p} still running after emu stopped");
    }
    let dir = code.2.into_dir();
    assert_eq!(dir.path(), keep);
    let emu = Emu::start_in(dir, &[]);
    let got: serde_json::Value = client
        .get(emu.url(&format!("/items/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "kept", "{got}");
    assert_eq!(got["value"], 42);
}

#[tokio::test(flavor = "multi_thread")]
async fn emu_down_from_another_shell_stops_everything() {
    let mut emu = Emu::start_toml(NATIVE);
    let st = emu.status().await;
    let pids = backend_pids(&st);
    assert_eq!(pids.len(), 2);
    let (code, _) = run_emu(emu.path(), &["down"]);
    assert_eq!(code, 0);
    let deadline = std::time::Duration::from_secs(30);
    let status = tokio::task::spawn_blocking(move || {
        let start = std::time::SystemTime::now();
        loop {
            if let Some(s) = emu.child.try_wait().unwrap() {
                return (s, emu);
            }
            assert!(
                start.elapsed().unwrap() < deadline,
                "emu did not stop after emu down"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert!(status.0.success());
    for p in &pids {
        assert!(!alive(*p), "backend {p} still running after emu down");
    }
    assert!(!status.1.path().join(".emu/emu.pid").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_emu_leaves_no_backend_behind() {
    let mut emu = Emu::start_toml(NATIVE);
    let st = emu.status().await;
    let mut pids = backend_pids(&st);
    pids.extend(
        st["services"][0]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["pid"].as_u64())
            .map(|p| p as u32),
    );
    emu.child.kill().unwrap();
    emu.child.wait().unwrap();
    for _ in 0..100 {
        if pids.iter().all(|p| !alive(*p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "left behind: {:?}",
        pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );
}

#[test]
fn bad_backend_config_exits_2_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    common::write(
        dir.path(),
        "emu.toml",
        &NATIVE.replace("db-f1-micro", "db-huge"),
    );
    let (code, err) = run_emu(dir.path(), &["up", "--port", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("emu.toml:9:") && err.contains("db-huge"),
        "{err}"
    );
}
