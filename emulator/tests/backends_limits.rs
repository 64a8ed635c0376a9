//! Cloud SQL and Memorystore sizing on native servers: a tier's `max_connections` as the app
//! sees it, and `size_gb` as Redis' `maxmemory`.

mod common;

use emulator::backends::{self, BackendsPlan, Mode, PostgresConfig, RedisConfig};
use sqlx::Connection;

/// db-f1-micro allows 25 connections: exactly 25 app connections succeed, the 26th gets
/// SQLSTATE 53300. PostgreSQL keeps `superuser_reserved_connections` (3) for superusers, so emu
/// starts the server with 28 and connects services as the non-superuser `app` role; a
/// superuser can still get in, as on Cloud SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f1_micro_allows_exactly_25_connections() {
    let dir = tempfile::tempdir().unwrap();
    let plan = BackendsPlan {
        postgres: PostgresConfig {
            mode: Mode::Native,
            tier: Some("db-f1-micro".into()),
            ..Default::default()
        },
        redis: RedisConfig {
            mode: Mode::None,
            ..Default::default()
        },
        project_dir: dir.path().to_path_buf(),
        databases: vec![],
    };
    let b = backends::start(plan).await.expect("native postgres");
    let status = b.status();
    assert_eq!(status["postgres"]["max_connections"], 25, "{status}");
    assert_eq!(status["postgres"]["tier"], "db-f1-micro", "{status}");
    assert_eq!(status["postgres"]["server_max_connections"], 28, "{status}");
    assert_eq!(
        status["postgres"]["superuser_reserved_connections"], 3,
        "{status}"
    );
    assert_eq!(status["postgres"]["requested_mode"], "native", "{status}");
    let addr = status["postgres"]["address"].as_str().unwrap();
    assert_eq!(
        status["postgres"]["url"],
        format!("postgres://app:****@{addr}/app"),
        "masked: {status}"
    );
    assert_eq!(status["redis"]["state"], "off", "{status}");
    let url = b.database_url(None).unwrap();

    let mut held = Vec::new();
    for i in 1..=25 {
        let c = sqlx::PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connection {i} of 25 failed: {e}"));
        held.push(c);
    }
    let err = sqlx::PgConnection::connect(&url)
        .await
        .expect_err("the 26th connection must be refused");
    let code = err
        .as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("53300"), "{err}");

    let superuser_pw = &common::project_passwords(dir.path())[0];
    let superuser = sqlx::PgConnection::connect(&format!(
        "postgres://postgres:{superuser_pw}@{addr}/postgres"
    ))
    .await
    .expect("a superuser slot stays free");
    superuser.close().await.unwrap();

    for c in held {
        c.close().await.unwrap();
    }
    b.stop().await;
    backends::down(dir.path(), true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_gb_sets_maxmemory_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    let plan = BackendsPlan {
        postgres: PostgresConfig {
            mode: Mode::None,
            ..Default::default()
        },
        redis: RedisConfig {
            mode: Mode::Native,
            size_gb: Some(1.0),
            ..Default::default()
        },
        project_dir: dir.path().to_path_buf(),
        databases: vec![],
    };
    let b = backends::start(plan.clone()).await.expect("native redis");
    let second = backends::start(plan)
        .await
        .expect_err("one append-only file, one server");
    assert!(second.to_string().contains("already running"), "{second}");
    let status = b.status();
    assert_eq!(status["redis"]["maxmemory"], 1u64 << 30, "{status}");
    assert_eq!(
        status["redis"]["maxmemory_policy"], "volatile-lru",
        "{status}"
    );
    assert!(b.database_url(None).is_none());
    let client = redis::Client::open(b.redis_url().unwrap().as_str()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let info = common::redis_info(&mut r).await;
    assert_eq!(info["maxmemory"], "1073741824");
    assert_eq!(info["maxmemory_policy"], "volatile-lru");
    assert_eq!(info["aof_enabled"], "1");
    common::assert_config_blocked(&mut r).await;
    drop(r);
    b.stop().await;
}
