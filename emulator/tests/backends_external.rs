//! External mode against the machine's PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379),
//! which this test only reads; and unreachable URLs, which must fail clearly.

use emulator::backends::{self, BackendError, BackendsPlan, Mode, PostgresConfig, RedisConfig};
use sqlx::Connection;

fn external(pg: &str, redis: &str) -> BackendsPlan {
    BackendsPlan {
        postgres: PostgresConfig {
            mode: Mode::External,
            url: Some(pg.into()),
            ..Default::default()
        },
        redis: RedisConfig {
            mode: Mode::External,
            url: Some(redis.into()),
            ..Default::default()
        },
        project_dir: std::env::temp_dir(),
        databases: vec![],
    }
}

#[tokio::test]
async fn external_servers_are_checked_and_used() {
    let b = backends::start(external(
        "postgres://postgres@127.0.0.1:5432/postgres",
        "redis://127.0.0.1:6379",
    ))
    .await
    .expect("the machine's PostgreSQL and Redis answer");
    let status = b.status();
    assert_eq!(status["postgres"]["mode"], "external", "{status}");
    assert_eq!(status["postgres"]["state"], "running", "{status}");
    assert!(status["postgres"]["version"].as_str().is_some(), "{status}");
    assert_eq!(status["redis"]["mode"], "external", "{status}");
    let url = b.database_url(None).unwrap();
    assert_eq!(url, "postgres://postgres@127.0.0.1:5432/postgres");
    assert_eq!(
        b.database_url(Some("test")).unwrap(),
        "postgres://postgres@127.0.0.1:5432/test"
    );
    assert_eq!(b.redis_url().unwrap(), "redis://127.0.0.1:6379");
    assert_eq!(
        b.service_env(Some("test")),
        [
            (
                "DATABASE_URL".to_string(),
                "postgres://postgres@127.0.0.1:5432/test".to_string()
            ),
            (
                "REDIS_URL".to_string(),
                "redis://127.0.0.1:6379".to_string()
            ),
        ]
    );
    assert_eq!(
        b.health().await,
        serde_json::json!({"postgres": "up", "redis": "up"})
    );
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(one, 1);
    c.close().await.unwrap();
    // Stopping leaves external servers alone.
    b.stop().await;
    let c = sqlx::PgConnection::connect(&url).await.unwrap();
    c.close().await.unwrap();
}

#[tokio::test]
async fn unreachable_postgres_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there.
    let err = backends::start(external(
        "postgres://app:hunter2@127.0.0.1:1/app",
        "redis://127.0.0.1:6379",
    ))
    .await
    .expect_err("nothing listens on port 1");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            BackendError::Unreachable {
                what: "PostgreSQL",
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("postgres://app:****@127.0.0.1:1/app"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "password leaked: {text}");
    assert!(text.contains("mode"), "says what to do: {text}");
}

#[tokio::test]
async fn unreachable_redis_is_a_clear_error() {
    let err = backends::start(external(
        "postgres://postgres@127.0.0.1:5432/postgres",
        "redis://:sekret@127.0.0.1:1",
    ))
    .await
    .expect_err("nothing listens on port 1");
    let text = err.to_string();
    assert!(
        matches!(err, BackendError::Unreachable { what: "Redis", .. }),
        "{text}"
    );
    assert!(text.contains("redis://:****@127.0.0.1:1"), "{text}");
    assert!(!text.contains("sekret"), "{text}");
}
