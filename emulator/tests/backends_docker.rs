//! Docker mode. The compose file is checked everywhere; running it needs a Docker engine, and
//! those tests say why they skip when `docker info` fails.

use std::collections::BTreeSet;

use emulator::backends::docker::{self, COMPOSE_YAML};
use emulator::backends::{self, BackendsPlan, Mode, PostgresConfig, RedisConfig};
use serde_yaml_ng::Value;
use sqlx::Connection;

fn compose() -> Value {
    serde_yaml_ng::from_str(COMPOSE_YAML).expect("docker/compose.yaml parses")
}

#[test]
fn compose_file_has_both_stores_with_healthchecks_and_volumes() {
    let c = compose();
    // The embedded copy is the file in the repository.
    let on_disk = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docker/compose.yaml"
    ))
    .unwrap();
    assert_eq!(on_disk, COMPOSE_YAML);

    let services: BTreeSet<&str> = c["services"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(services, BTreeSet::from(["postgres", "redis"]));

    let pg = &c["services"]["postgres"];
    assert_eq!(pg["image"].as_str(), Some("postgres:${EMU_PG_VERSION:-16}"));
    assert!(pg["healthcheck"]["test"].is_sequence(), "{pg:?}");
    assert!(pg["healthcheck"]["test"][1]
        .as_str()
        .unwrap()
        .contains("pg_isready"));
    assert_eq!(
        pg["container_name"].as_str(),
        Some("${EMU_PROJECT:-emu}-postgres")
    );
    let pg_ports = pg["ports"][0].as_str().unwrap();
    assert!(
        pg_ports.starts_with("127.0.0.1:"),
        "loopback only: {pg_ports}"
    );
    assert_eq!(
        pg["volumes"][0].as_str(),
        Some("pgdata:/var/lib/postgresql/data")
    );
    let cmd: Vec<&str> = pg["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        cmd.contains(&"max_connections=${EMU_PG_MAX_CONNECTIONS:-103}"),
        "{cmd:?}"
    );
    assert!(cmd.contains(&"superuser_reserved_connections=3"), "{cmd:?}");

    let redis = &c["services"]["redis"];
    assert_eq!(
        redis["image"].as_str(),
        Some("redis:${EMU_REDIS_VERSION:-7}")
    );
    assert_eq!(redis["healthcheck"]["test"][1].as_str(), Some("redis-cli"));
    assert_eq!(redis["volumes"][0].as_str(), Some("redisdata:/data"));
    let rcmd: Vec<&str> = redis["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        rcmd.contains(&"volatile-lru") && rcmd.contains(&"--appendonly"),
        "{rcmd:?}"
    );
    assert!(redis["ports"][0]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));

    let volumes = c["volumes"].as_mapping().unwrap();
    assert!(volumes.contains_key("pgdata") && volumes.contains_key("redisdata"));
    assert_eq!(
        c["volumes"]["pgdata"]["name"].as_str(),
        Some("${EMU_PROJECT:-emu}-pg${EMU_PG_VERSION:-16}"),
        "one volume per major version"
    );
}

#[test]
fn dockerfile_builds_emu_with_native_servers() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/Dockerfile"))
            .unwrap();
    assert!(text.contains("FROM rust:"), "rust builder stage");
    assert!(text.contains("debian:bookworm-slim"), "slim runtime stage");
    assert!(text.contains("postgresql") && text.contains("redis-server"));
    assert!(text.contains("cargo build --release"));
}

#[test]
fn project_names_follow_the_folder() {
    assert_eq!(
        docker::compose_project(std::path::Path::new("/home/me/Shop API")),
        "emu-shop-api"
    );
    assert_eq!(
        docker::compose_network(std::path::Path::new("/x/shop")),
        "emu-shop_default"
    );
}

async fn engine_or_skip(test: &str) -> bool {
    if backends::docker_available().await {
        return true;
    }
    eprintln!("skipping {test}: no Docker engine answers (`docker info` failed)");
    false
}

#[tokio::test]
async fn docker_mode_runs_and_keeps_data() {
    if !engine_or_skip("docker_mode_runs_and_keeps_data").await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = BackendsPlan {
        postgres: PostgresConfig {
            mode: Mode::Docker,
            version: Some(15),
            tier: Some("db-f1-micro".into()),
            ..Default::default()
        },
        redis: RedisConfig {
            mode: Mode::Docker,
            size_gb: Some(1.0),
            ..Default::default()
        },
        project_dir: dir.path().to_path_buf(),
        databases: vec![],
    };
    let b = backends::start(plan.clone()).await.expect("docker mode");
    assert_eq!(b.status()["postgres"]["mode"], "docker");
    let mut c = sqlx::PgConnection::connect(&b.database_url(None).unwrap())
        .await
        .unwrap();
    let v: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(v.starts_with("15"), "{v}");
    sqlx::query("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES ('kept')")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    b.stop().await;

    let b = backends::start(plan).await.expect("docker mode again");
    let mut c = sqlx::PgConnection::connect(&b.database_url(None).unwrap())
        .await
        .unwrap();
    let v: String = sqlx::query_scalar("SELECT v FROM t")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(v, "kept");
    c.close().await.unwrap();
    b.stop().await;
    let report = backends::down(dir.path(), true).await.unwrap();
    assert!(report.contains("removed docker containers"), "{report}");
}

#[tokio::test]
async fn docker_instance_runs_and_stops() {
    if !engine_or_skip("docker_instance_runs_and_stops").await {
        return;
    }
    let name = format!("emu-test-{}", std::process::id());
    let inst =
        docker::DockerInstance::start("redis:7", &[("K_SERVICE".into(), "t".into())], 6379, &name)
            .await
            .expect("docker run");
    assert!(inst.host_port() > 0);
    assert!(inst.is_running().await);
    inst.stop().await.unwrap();
}

#[tokio::test]
async fn docker_mode_without_engine_says_what_to_do() {
    if backends::docker_available().await {
        eprintln!("skipping docker_mode_without_engine_says_what_to_do: a Docker engine answers");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let err = backends::start(BackendsPlan {
        postgres: PostgresConfig {
            mode: Mode::Docker,
            ..Default::default()
        },
        redis: RedisConfig {
            mode: Mode::None,
            ..Default::default()
        },
        project_dir: dir.path().to_path_buf(),
        databases: vec![],
    })
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("docker info") && text.contains("native"),
        "{text}"
    );
}
