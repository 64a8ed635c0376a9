//! Docker mode against a real engine (the one `DOCKER_HOST` names), with the test images
//! `scripts/docker-images.sh` builds (`emu-test/postgres:15`, `emu-test/redis:7`).
//!
//! A test that needs an engine FAILS when none answers: `scripts/test.sh` starts one, and a
//! skipped Docker test must never look like a passing one. Where no engine can run, set
//! `EMU_SKIP_DOCKER=1` to skip them loudly; `CI` (or `EMU_REQUIRE_DOCKER=1`) overrides that.

mod common;

use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::{ListContainersOptionsBuilder, ListVolumesOptionsBuilder};
use emulator::backends::docker::{self, StoreSpec, LABEL_PROJECT};
use emulator::backends::{self, BackendError, BackendsPlan, Mode, PostgresConfig, RedisConfig};
use serde_yaml_ng::Value;
use sqlx::Connection;

const PG_IMAGE: &str = "emu-test/postgres:15";
const REDIS_IMAGE: &str = "emu-test/redis:7";

/// The engine, or None when the run skips Docker tests (`EMU_SKIP_DOCKER=1` outside CI).
/// Panics when no engine answers otherwise.
async fn engine(test: &str) -> Option<bollard::Docker> {
    let required = std::env::var_os("CI").is_some()
        || std::env::var("EMU_REQUIRE_DOCKER").as_deref() == Ok("1");
    if !required && std::env::var("EMU_SKIP_DOCKER").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: EMU_SKIP_DOCKER=1 (no Docker test ran)");
        return None;
    }
    match docker::engine().await {
        Ok(d) => Some(d),
        Err(e) => panic!(
            "{test} needs a Docker engine: {e}\nStart one: eval \"$(bash scripts/docker-engine.sh)\" && bash scripts/docker-images.sh\n(or set EMU_SKIP_DOCKER=1 to skip the Docker tests outside CI)"
        ),
    }
}

fn compose() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docker/compose.yaml"
    ))
    .unwrap();
    serde_yaml_ng::from_str(&text).expect("docker/compose.yaml parses")
}

/// Compose's `${NAME:-default}` interpolation (nested too) with `vars`.
fn interpolate(text: &str, vars: &HashMap<&str, String>) -> String {
    let mut s = text.to_string();
    // Innermost first: a `${` whose body holds no further `${`.
    while let Some(start) = s.rfind("${") {
        let end = start + s[start..].find('}').expect("closing brace");
        let body = &s[start + 2..end];
        let (name, default) = body.split_once(":-").unwrap_or((body, ""));
        let value = vars.get(name).cloned().unwrap_or_else(|| default.into());
        s.replace_range(start..=end, &value);
    }
    s
}

fn text_of(v: &Value, vars: &HashMap<&str, String>) -> String {
    match v {
        Value::String(s) => interpolate(s, vars),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn map_of(v: &Value, vars: &HashMap<&str, String>) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap().to_string(), text_of(v, vars)))
                .collect()
        })
        .unwrap_or_default()
}

/// The service of compose.yaml, resolved with `vars`, as a [`StoreSpec`].
fn compose_spec(store: &'static str, vars: &HashMap<&str, String>) -> StoreSpec {
    let c = compose();
    let svc = &c["services"][store];
    let seq = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|x| text_of(x, vars))
            .collect()
    };
    let port = text_of(&svc["ports"][0], vars);
    let (host, container_port) = port.rsplit_once(':').unwrap();
    let (ip, host_port) = host.split_once(':').unwrap();
    assert_eq!(ip, "127.0.0.1", "loopback only: {port}");
    let volume_line = text_of(&svc["volumes"][0], vars);
    let (volume_key, mount) = volume_line.split_once(':').unwrap();
    let volume = &c["volumes"][volume_key];
    assert_eq!(
        map_of(&volume["labels"], vars),
        map_of(&svc["labels"], vars),
        "the volume carries the container's labels"
    );
    StoreSpec {
        store,
        container: text_of(&svc["container_name"], vars),
        image: text_of(&svc["image"], vars),
        env: map_of(&svc["environment"], vars),
        cmd: seq(&svc["command"]),
        container_port: container_port.parse().unwrap(),
        host_port: (!host_port.is_empty()).then(|| host_port.parse().unwrap()),
        volume: text_of(&volume["name"], vars),
        mount: if mount == "/data" {
            "/data"
        } else {
            "/var/lib/postgresql/data"
        },
        labels: map_of(&svc["labels"], vars),
        healthcheck: seq(&svc["healthcheck"]["test"]),
    }
}

#[test]
fn compose_file_describes_the_containers_emu_creates() {
    let project = std::path::Path::new("/home/me/shop");
    let pg = PostgresConfig {
        mode: Mode::Docker,
        version: Some(15),
        tier: Some("db-f1-micro".into()),
        ..Default::default()
    };
    let redis = RedisConfig {
        mode: Mode::Docker,
        size_gb: Some(1.0),
        port: Some(6390),
        image: Some("emu-test/redis:7".into()),
        ..Default::default()
    };
    let vars = HashMap::from([
        ("EMU_PROJECT", "emu-shop".to_string()),
        ("EMU_PG_VERSION", "15".to_string()),
        ("EMU_PG_MAX_CONNECTIONS", "28".to_string()),
        ("EMU_REDIS_MAXMEMORY", "1073741824".to_string()),
        ("EMU_REDIS_PORT", "6390".to_string()),
        ("EMU_REDIS_IMAGE", "emu-test/redis:7".to_string()),
        ("EMU_PG_PASSWORD", "pgSecret1".to_string()),
        ("EMU_REDIS_PASSWORD", "redisSecret2".to_string()),
    ]);
    let emu_pg = docker::postgres_spec(&pg, project, "pgSecret1");
    assert_eq!(emu_pg.image, "postgres:15");
    assert!(emu_pg.cmd.contains(&"max_connections=28".to_string()));
    assert_eq!(compose_spec("postgres", &vars), emu_pg);
    assert_eq!(
        compose_spec("redis", &vars),
        docker::redis_spec(&redis, project, "redisSecret2")
    );
    // The defaults agree too (PostgreSQL 16, Redis 7, engine-chosen ports, 100 connections).
    let defaults = HashMap::from([("EMU_PROJECT", "emu-shop".to_string())]);
    assert_eq!(
        compose_spec("postgres", &defaults),
        docker::postgres_spec(&PostgresConfig::default(), project, "emu")
    );
    assert_eq!(
        compose_spec("redis", &defaults),
        docker::redis_spec(&RedisConfig::default(), project, "emu")
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

fn docker_plan(dir: &std::path::Path) -> BackendsPlan {
    BackendsPlan {
        postgres: PostgresConfig {
            mode: Mode::Docker,
            version: Some(15),
            tier: Some("db-f1-micro".into()),
            image: Some(PG_IMAGE.into()),
            ..Default::default()
        },
        redis: RedisConfig {
            mode: Mode::Docker,
            size_gb: Some(1.0),
            image: Some(REDIS_IMAGE.into()),
            ..Default::default()
        },
        project_dir: dir.to_path_buf(),
        databases: vec!["orders".into()],
    }
}

/// The project's containers: name → (id, running, labels, published loopback addresses).
async fn project_containers(
    d: &bollard::Docker,
    project: &str,
) -> BTreeMap<String, (String, bool, HashMap<String, String>, Vec<String>)> {
    let filters = HashMap::from([("label", vec![format!("{LABEL_PROJECT}={project}")])]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let mut out = BTreeMap::new();
    for c in d.list_containers(Some(opts)).await.unwrap() {
        let name = c.names.unwrap()[0].trim_start_matches('/').to_string();
        let ports = c
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| Some(format!("{}:{}", p.ip?, p.public_port?)))
            .collect();
        let running = c.state.map(|s| s.to_string()) == Some("running".into());
        out.insert(
            name,
            (c.id.unwrap(), running, c.labels.unwrap_or_default(), ports),
        );
    }
    out
}

async fn project_volumes(d: &bollard::Docker, project: &str) -> Vec<String> {
    let filters = HashMap::from([("label", vec![format!("{LABEL_PROJECT}={project}")])]);
    let opts = ListVolumesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let mut v: Vec<String> = d
        .list_volumes(Some(opts))
        .await
        .unwrap()
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_mode_runs_the_stores_reuses_them_and_down_removes_them() {
    let Some(d) = engine("docker_mode_runs_the_stores_reuses_them_and_down_removes_them").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let project = docker::compose_project(dir.path());
    let plan = docker_plan(dir.path());
    let b = backends::start(plan.clone()).await.expect("docker mode");
    let st = b.status();
    assert_eq!(st["postgres"]["mode"], "docker", "{st}");
    assert_eq!(st["postgres"]["image"], PG_IMAGE);
    assert_eq!(st["redis"]["image"], REDIS_IMAGE);

    // Labelled, running, published on loopback only.
    let first = project_containers(&d, &project).await;
    let names: Vec<&String> = first.keys().collect();
    assert_eq!(
        names,
        [&format!("{project}-postgres"), &format!("{project}-redis")]
    );
    for (name, (_, running, labels, ports)) in &first {
        assert!(running, "{name} runs");
        assert_eq!(labels.get(LABEL_PROJECT), Some(&project), "{name}");
        assert!(!ports.is_empty(), "{name} publishes its port");
        assert!(
            ports.iter().all(|p| p.starts_with("127.0.0.1:")),
            "{name} on loopback only: {ports:?}"
        );
    }

    // The Cloud SQL tier and the Memorystore size, as in native mode; the app role and the
    // asked-for database exist.
    let url = b.database_url(Some("orders")).unwrap();
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let version: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(version.starts_with("15"), "{version}");
    let max: String = sqlx::query_scalar("SHOW max_connections")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(max, "28", "db-f1-micro: 25 for the app + 3 reserved");
    sqlx::query("CREATE TABLE t (v TEXT)")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES ('kept')")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    // The project's passwords, as in native mode: nothing connects without them.
    common::assert_pg_requires_password(&url).await;
    common::assert_redis_requires_auth(&b.redis_url().unwrap()).await;
    let passwords = common::project_passwords(dir.path());
    common::assert_no_password("status", &b.status().to_string(), &passwords);
    let client = redis::Client::open(b.redis_url().unwrap()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let info = common::redis_info(&mut r).await;
    assert_eq!(info["maxmemory"], "1073741824");
    assert_eq!(info["maxmemory_policy"], "volatile-lru");
    common::assert_config_blocked(&mut r).await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("kept")
        .query_async(&mut r)
        .await
        .unwrap();
    drop(r);
    b.stop().await;
    let stopped = project_containers(&d, &project).await;
    assert!(
        stopped.values().all(|(_, running, ..)| !running),
        "stop stops them: {stopped:?}"
    );

    // The next start reuses the same containers, with the data.
    let b = backends::start(plan).await.expect("docker mode again");
    let again = project_containers(&d, &project).await;
    for (name, (id, running, ..)) in &again {
        assert!(running, "{name}");
        assert_eq!(id, &first[name].0, "{name} reused, not recreated");
    }
    let mut c = sqlx::PgConnection::connect(&b.database_url(Some("orders")).unwrap())
        .await
        .unwrap();
    let v: String = sqlx::query_scalar("SELECT v FROM t")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(v, "kept");
    c.close().await.unwrap();
    let client = redis::Client::open(b.redis_url().unwrap()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let v: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(v, "kept", "appendonly keeps Redis data in its volume");
    drop(r);
    b.stop().await;

    assert_eq!(
        project_volumes(&d, &project).await,
        [format!("{project}-pg15"), format!("{project}-redis")]
    );
    let report = backends::down(dir.path(), true).await.unwrap();
    assert!(report.contains("removed docker volume"), "{report}");
    assert!(
        project_containers(&d, &project).await.is_empty(),
        "{report}"
    );
    assert!(project_volumes(&d, &project).await.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_is_not_there_says_what_to_do() {
    if engine("an_image_that_is_not_there_says_what_to_do")
        .await
        .is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut plan = docker_plan(dir.path());
    plan.postgres.image = Some("emu-test/not-built:1".into());
    plan.redis.mode = Mode::None;
    let err = backends::start(plan).await.unwrap_err();
    assert!(matches!(err, BackendError::ImageMissing { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(
        text.contains("emu-test/not-built:1")
            && text.contains("[postgres] image")
            && text.contains("--backends native"),
        "{text}"
    );
}

/// A postgres volume made before per-project passwords (superuser password `emu`) keeps its
/// data and takes the project's new password; a wrong one is refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_older_postgres_volume_takes_the_projects_password() {
    if engine("an_older_postgres_volume_takes_the_projects_password")
        .await
        .is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut plan = docker_plan(dir.path());
    plan.redis.mode = Mode::None;
    // What an older emu used: the fixed superuser password "emu".
    let creds = backends::credentials_path(dir.path());
    std::fs::create_dir_all(creds.parent().unwrap()).unwrap();
    std::fs::write(
        &creds,
        r#"{"postgres_password": "emu", "app_password": "app", "redis_password": "x"}"#,
    )
    .unwrap();
    let b = backends::start(plan.clone()).await.expect("docker mode");
    let mut c = sqlx::PgConnection::connect(&b.database_url(None).unwrap())
        .await
        .unwrap();
    sqlx::query("CREATE TABLE old (v TEXT)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    b.stop().await;

    std::fs::remove_file(&creds).unwrap();
    let b = backends::start(plan)
        .await
        .expect("docker mode on the old volume");
    let new = common::project_passwords(dir.path());
    let url = b.database_url(None).unwrap();
    common::assert_new_passwords_keep_old_data(&url, &new[0]).await;
    b.stop().await;
    backends::down(dir.path(), true).await.unwrap();
}
