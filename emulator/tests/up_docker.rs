//! `emu up --backends docker`: the demo on containerised PostgreSQL and Redis (the test images
//! of `scripts/docker-images.sh`), data kept across an emu restart; and the error, exit 2, when
//! no engine answers. Like `backends_docker.rs`, a missing engine fails these tests unless
//! `EMU_SKIP_DOCKER=1` is set outside CI.

mod common;

use std::time::Duration;

use common::{run_emu_env, Emu};

const DEMO: &str = r#"
[[service]]
name = "demo"
command = ["{EMU}", "demo-app"]

[postgres]
mode = "docker"
version = 15
image = "emu-test/postgres:15"
tier = "db-f1-micro"

[redis]
mode = "docker"
image = "emu-test/redis:7"
size_gb = 1
"#;

#[tokio::test(flavor = "multi_thread")]
async fn demo_serves_items_on_containers_and_keeps_them_across_restarts() {
    if !common::require_engine("demo_serves_items_on_containers_and_keeps_them_across_restarts")
        .await
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "emu.toml", DEMO);
    let mut emu = Emu::start_in(dir, &[]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let st = emu.status().await;
    assert_eq!(st["backends"]["postgres"]["mode"], "docker", "{st}");
    assert_eq!(st["backends"]["redis"]["mode"], "docker", "{st}");
    assert_eq!(st["backends"]["postgres"]["max_connections"], 25);
    let created = client
        .post(emu.url("/items"))
        .json(&serde_json::json!({ "name": "in a container", "value": 7 }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    let id = created["id"].as_i64().unwrap();

    let (ok, emu) = tokio::task::spawn_blocking(move || {
        let code = emu.terminate(Duration::from_secs(60));
        (code.success(), emu)
    })
    .await
    .unwrap();
    assert!(ok, "emu stops cleanly");
    let dir = emu.into_dir();
    let keep = dir.path().to_path_buf();
    let emu = Emu::start_in(dir, &[]);
    let got: serde_json::Value = client
        .get(emu.url(&format!("/items/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "in a container", "{got}");
    assert_eq!(got["value"], 7);
    let dir = tokio::task::spawn_blocking(move || {
        let mut emu = emu;
        emu.terminate(Duration::from_secs(60));
        emu.into_dir()
    })
    .await
    .unwrap();
    assert_eq!(dir.path(), keep);
    let (code, err) = common::run_emu(dir.path(), &["down", "--volumes"]);
    assert_eq!(code, 0, "{err}");
    let d = emulator::backends::docker::engine().await.unwrap();
    let project = emulator::backends::docker::compose_project(dir.path());
    for store in ["postgres", "redis"] {
        let name = format!("{project}-{store}");
        assert!(
            d.inspect_container(&name, None).await.is_err(),
            "emu down --volumes removes {name}"
        );
    }
}

#[test]
fn docker_backends_without_an_engine_exit_2_and_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "emu.toml", DEMO);
    let (code, err) = run_emu_env(
        dir.path(),
        &["up", "--port", "0", "--backends", "docker"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no Docker engine answers at unix:///nonexistent/docker.sock")
            && err.contains("--backends native"),
        "{err}"
    );
}
