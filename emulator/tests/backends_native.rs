//! Native mode against the installed PostgreSQL and redis-server: real servers on free ports,
//! data under a temp project folder, every process stopped at the end.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use emulator::backends::{self, BackendsPlan, Mode, PostgresConfig, RedisConfig};
use sqlx::Connection;

fn plan(dir: &Path, pg: Mode, redis: Mode) -> BackendsPlan {
    BackendsPlan {
        postgres: PostgresConfig {
            mode: pg,
            ..Default::default()
        },
        redis: RedisConfig {
            mode: redis,
            ..Default::default()
        },
        project_dir: dir.to_path_buf(),
        databases: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_data_survives_stop_and_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = plan(dir.path(), Mode::Native, Mode::Native);
    p.databases = vec!["orders".into()];
    p.redis.size_gb = Some(0.5);

    let b = backends::start(p.clone()).await.expect("native start");
    let status = b.status();
    assert_eq!(status["postgres"]["mode"], "native", "{status}");
    assert_eq!(status["redis"]["mode"], "native", "{status}");
    assert!(
        !status.to_string().contains(":app@"),
        "password leaked: {status}"
    );
    assert_eq!(
        b.health().await,
        serde_json::json!({"postgres": "up", "redis": "up"})
    );
    // A second emu on the same project must not open the same data.
    let second = backends::start(p.clone())
        .await
        .expect_err("data already in use");
    assert!(second.to_string().contains("already running"), "{second}");
    let db_url = b.database_url(Some("orders")).unwrap();
    assert!(db_url.ends_with("/orders"), "{db_url}");
    let redis_url = b.redis_url().unwrap();

    let mut c = sqlx::PgConnection::connect(&db_url).await.unwrap();
    sqlx::query("CREATE TABLE t (v TEXT)")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES ('kept')")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET")
        .arg("k")
        .arg("kept")
        .query_async::<()>(&mut r)
        .await
        .unwrap();
    drop(r);

    b.stop().await;

    let b = backends::start(p).await.expect("second native start");
    let mut c = sqlx::PgConnection::connect(&b.database_url(Some("orders")).unwrap())
        .await
        .unwrap();
    let v: String = sqlx::query_scalar("SELECT v FROM t")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(v, "kept");
    c.close().await.unwrap();
    let client = redis::Client::open(b.redis_url().unwrap().as_str()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let v: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("kept"), "redis appendonly data lost");
    // size_gb → maxmemory and Memorystore's policy.
    let info = common::redis_info(&mut r).await;
    assert_eq!(info["maxmemory"], (512u64 * 1024 * 1024).to_string());
    assert_eq!(info["maxmemory_policy"], "volatile-lru");
    common::assert_config_blocked(&mut r).await;
    let saved = redis::cmd("BGSAVE").query_async::<String>(&mut r).await;
    assert!(saved.is_err(), "BGSAVE is blocked as on Memorystore");
    drop(r);
    b.stop().await;
    backends::down(dir.path(), true).await.unwrap();
}

/// A run killed with SIGKILL leaves `postmaster.pid` behind; the next start recovers. So does a
/// pid file naming a live process that is not PostgreSQL (a reused pid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_postmaster_pid_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    // A project folder the postgres user cannot enter (like one under /root): when emu is root
    // the cluster then lives under /var/lib/emu/postgres, named in .emu/postgres/location.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let p = plan(dir.path(), Mode::Native, Mode::None);
    let b = backends::start(p.clone()).await.expect("native start");
    let status = b.status();
    let data_dir = status["postgres"]["data_dir"].as_str().unwrap().to_string();
    let pid = status["postgres"]["pid"].as_u64().unwrap();
    if emulator::proc::is_root() {
        assert!(data_dir.starts_with("/var/lib/emu/postgres/"), "{data_dir}");
    }
    // Simulate `kill -9` of the whole server.
    emulator::proc::signal_group(
        u32::try_from(pid).unwrap(),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid_file = Path::new(&data_dir).join("postmaster.pid");
    assert!(pid_file.exists(), "a killed postgres leaves its pid file");
    b.stop().await;

    let b = backends::start(p.clone())
        .await
        .expect("start after SIGKILL");
    let mut c = sqlx::PgConnection::connect(&b.database_url(None).unwrap())
        .await
        .unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(one, 1);
    c.close().await.unwrap();
    b.stop().await;

    // A bogus pid file naming a live, non-postgres process (this test).
    std::fs::write(
        &pid_file,
        format!(
            "{}\n{data_dir}\n1700000000\n5432\n\n127.0.0.1\n  0 0\nready\n",
            std::process::id()
        ),
    )
    .unwrap();
    let b = backends::start(p)
        .await
        .expect("start with a bogus pid file");
    assert!(b.database_url(None).is_some());
    b.stop().await;

    let report = backends::down(dir.path(), true).await.unwrap();
    assert!(
        !Path::new(&data_dir).exists(),
        "down --volumes left {data_dir}: {report}"
    );
    assert!(!dir.path().join(".emu/postgres").exists(), "{report}");
}

/// `auto` without a Docker engine falls back to the installed servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_uses_installed_servers_without_docker() {
    if backends::docker_available().await {
        eprintln!("skipping auto_mode_uses_installed_servers_without_docker: a Docker engine answers, so auto picks docker");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = backends::start(plan(dir.path(), Mode::None, Mode::Auto))
        .await
        .expect("auto mode");
    assert_eq!(b.status()["redis"]["mode"], "native");
    assert!(b.redis_url().is_some());
    b.stop().await;
}

/// Like Cloud SQL and Memorystore with AUTH: no connection without the project's password
/// (over TCP, the only way in), which lives in `.emu/credentials.json` (0600) and stays the
/// same across runs, with the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_servers_require_the_projects_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), Mode::Native, Mode::Native);
    let b = backends::start(p.clone()).await.expect("native start");
    let creds = emulator::backends::credentials_path(dir.path());
    let mode = std::fs::metadata(&creds).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", creds.display());
    let passwords = common::project_passwords(dir.path());
    let (superuser_pw, app_pw) = (&passwords[0], &passwords[1]);

    let url = b.database_url(None).unwrap();
    assert!(
        url.contains(&format!(":{app_pw}@")),
        "the URL carries the password"
    );
    common::assert_pg_requires_password(&url).await;
    // The superuser too: only with the generated password.
    let mut admin = reqwest::Url::parse(&url).unwrap();
    admin.set_username("postgres").unwrap();
    admin.set_password(Some(superuser_pw)).unwrap();
    admin.set_path("/postgres");
    common::assert_pg_requires_password(admin.as_str()).await;
    let redis_url = b.redis_url().unwrap();
    common::assert_redis_requires_auth(&redis_url).await;
    common::assert_no_password("status", &b.status().to_string(), &passwords);

    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE t (v TEXT)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    b.stop().await;

    // The next run: same passwords, same data.
    let b = backends::start(p).await.expect("second start");
    assert_eq!(
        b.database_url(None).unwrap().split('@').next(),
        url.split('@').next()
    );
    assert_eq!(common::project_passwords(dir.path()), passwords);
    let mut c = sqlx::PgConnection::connect(&b.database_url(None).unwrap())
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 0);
    c.close().await.unwrap();
    common::assert_redis_requires_auth(&b.redis_url().unwrap()).await;
    b.stop().await;
    for log in [".emu/postgres/postgres.log", ".emu/redis/redis.log"] {
        let text = std::fs::read_to_string(dir.path().join(log)).unwrap_or_default();
        common::assert_no_password(log, &text, &passwords);
    }
    backends::down(dir.path(), true).await.unwrap();
}

/// A cluster from before passwords (pg_hba.conf trusting loopback, no credentials file) keeps
/// its data and gets the new password before it serves: a wrong one is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_trusted_loopback_gets_passwords_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), Mode::Native, Mode::None);
    let b = backends::start(p.clone()).await.expect("native start");
    let data_dir = b.status()["postgres"]["data_dir"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = sqlx::PgConnection::connect(&b.database_url(None).unwrap())
        .await
        .unwrap();
    sqlx::query("CREATE TABLE old (v TEXT)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    b.stop().await;
    // What an older emu left: trust for everything, and no credentials.
    std::fs::write(
        Path::new(&data_dir).join("pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n",
    )
    .unwrap();
    let old = common::project_passwords(dir.path());
    std::fs::remove_file(emulator::backends::credentials_path(dir.path())).unwrap();

    let b = backends::start(p).await.expect("start on the old cluster");
    let new = common::project_passwords(dir.path());
    assert_ne!(new, old, "new passwords were generated");
    let url = b.database_url(None).unwrap();
    common::assert_new_passwords_keep_old_data(&url, &new[0]).await;
    b.stop().await;
    backends::down(dir.path(), true).await.unwrap();
}
