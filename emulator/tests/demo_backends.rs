//! The demo service in-process (axum on 127.0.0.1:0) against native PostgreSQL and Redis that
//! the test starts through the backends API in a temp project folder.

use std::path::Path;
use std::time::Duration;

use emulator::backends::{self, BackendsPlan, Mode, PostgresConfig, RedisConfig};
use emulator::demo::{self, DemoConfig, DemoState};
use serde_json::{json, Value};

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

/// Serves the demo over `cfg`; returns its base URL and a handle that stops it.
async fn serve_demo(cfg: DemoConfig) -> (String, tokio::sync::oneshot::Sender<()>) {
    let state = DemoState::new(cfg).unwrap();
    state.migrate_in_background();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(demo::serve(listener, demo::app_with(state), async {
        let _ = rx.await;
    }));
    (base, tx)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_cache_and_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let b = backends::start(plan(dir.path(), Mode::Native, Mode::Native))
        .await
        .expect("native backends");
    let (base, stop) = serve_demo(DemoConfig {
        database_url: b.database_url(None),
        redis_url: b.redis_url(),
        rate_limit: 3,
        rate_window_secs: 60,
        db_pool: 2,
        ..Default::default()
    })
    .await;
    let c = http();

    let h = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let h: Value = h.json().await.unwrap();
    assert_eq!(
        h["dependencies"],
        json!({"database": "connected", "redis": "connected"})
    );

    let created = c
        .post(format!("{base}/items"))
        .json(&json!({"name": "apple", "value": {"n": 3}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["name"], "apple");
    assert_eq!(created["value"], json!({"n": 3}));
    let id = created["id"].as_i64().unwrap();

    let first = c.get(format!("{base}/items/{id}")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache"], "miss");
    let first: Value = first.json().await.unwrap();
    let second = c.get(format!("{base}/items/{id}")).send().await.unwrap();
    assert_eq!(second.headers()["x-cache"], "hit");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(second["id"], id);

    let missing = c.get(format!("{base}/items/999999")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let bad = c
        .post(format!("{base}/items"))
        .json(&json!({"value": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let list: Value = c
        .get(format!("{base}/items?limit=5"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["id"], id);

    // Limit 3 per minute per client: the 4th from one client is refused, others still pass.
    // A fixed window may roll over mid-check; then try again with a fresh client.
    let minute = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 60
    };
    let mut checked = false;
    for attempt in 0..3 {
        let ip = format!("203.0.113.{}", 7 + attempt);
        let before = minute();
        let mut codes = Vec::new();
        for _ in 1..=4 {
            let r = c
                .get(format!("{base}/limited"))
                .header("x-forwarded-for", format!("{ip}, 10.0.0.1"))
                .send()
                .await
                .unwrap();
            codes.push(r.status().as_u16());
        }
        if minute() == before {
            assert_eq!(codes, [200, 200, 200, 429]);
            checked = true;
            break;
        }
    }
    assert!(checked, "the rate limit window kept rolling over");
    let other = c
        .get(format!("{base}/limited"))
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    // Without x-forwarded-for the peer address counts.
    let peer: Value = c
        .get(format!("{base}/limited"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(peer["client"], "127.0.0.1");

    let _ = stop.send(());
    b.stop().await;
    backends::down(dir.path(), true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_redis_down_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut p = plan(dir.path(), Mode::None, Mode::Native);
    p.redis.port = Some(port);
    let b = backends::start(p.clone()).await.expect("native redis");
    let (base, stop) = serve_demo(DemoConfig {
        redis_url: b.redis_url(),
        ..Default::default()
    })
    .await;
    let c = http();
    let health = |c: reqwest::Client| {
        let url = format!("{base}/health");
        async move {
            let r = c.get(url).send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap())
        }
    };
    let (code, body) = health(c.clone()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["dependencies"]["database"], "not_configured");
    assert_eq!(body["dependencies"]["redis"], "connected");

    b.stop().await;
    let (code, body) = health(c.clone()).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["dependencies"]["redis"], "disconnected");
    assert_eq!(body["status"], "degraded");

    let b = backends::start(p)
        .await
        .expect("redis again on the same port");
    let mut last = (0, Value::Null);
    for _ in 0..50 {
        last = health(c.clone()).await;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last.0, 200, "{}", last.1);
    assert_eq!(last.1["dependencies"]["redis"], "connected");

    let _ = stop.send(());
    b.stop().await;
}

#[tokio::test]
async fn health_without_dependencies_is_ok() {
    let (base, stop) = serve_demo(DemoConfig::default()).await;
    let r = http().get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["dependencies"],
        json!({"database": "not_configured", "redis": "not_configured"})
    );
    let items = http().get(format!("{base}/items")).send().await.unwrap();
    assert_eq!(items.status(), 503);
    let _ = stop.send(());
}

#[test]
fn demo_settings_from_lookup() {
    let env = |k: &str| match k {
        "DEMO_RATE_LIMIT" => Some("600/m".to_string()),
        "DEMO_DB_POOL" => Some("3".to_string()),
        "REDIS_URL" => Some("redis://127.0.0.1:1".to_string()),
        _ => None,
    };
    let cfg = DemoConfig::from_lookup(env).unwrap();
    assert_eq!(
        (cfg.rate_limit, cfg.rate_window_secs, cfg.db_pool),
        (600, 60, 3)
    );
    assert!(cfg.database_url.is_none());
    let bad = DemoConfig::from_lookup(|k| (k == "DEMO_DB_POOL").then(|| "lots".to_string()));
    assert_eq!(bad.unwrap_err().var, "DEMO_DB_POOL");
}

/// The demo starts while its database is down (503s), and works once the database is up:
/// the pool connects lazily and the migrations are retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_starts_before_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The password emu will give the app role (the project's, generated ahead here).
    let (creds, _) = backends::Credentials::load_or_create(dir.path()).unwrap();
    let (base, stop) = serve_demo(DemoConfig {
        database_url: Some(format!(
            "postgres://app:{}@127.0.0.1:{port}/app",
            creds.app_password
        )),
        ..Default::default()
    })
    .await;
    let c = http();
    let h = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(h.status(), 503);
    let body: Value = h.json().await.unwrap();
    assert_eq!(body["dependencies"]["database"], "disconnected");
    assert_eq!(body["dependencies"]["redis"], "not_configured");
    let r = c
        .post(format!("{base}/items"))
        .json(&json!({"name": "early"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let err: Value = r.json().await.unwrap();
    assert_eq!(
        err["error"], "database is unavailable",
        "no internals in the body"
    );

    let mut p = plan(dir.path(), Mode::Native, Mode::None);
    p.postgres.port = Some(port);
    let b = backends::start(p)
        .await
        .expect("native postgres on the demo's port");
    let mut last = 0;
    for _ in 0..50 {
        let r = c
            .post(format!("{base}/items"))
            .json(&json!({"name": "late", "value": [1, 2]}))
            .send()
            .await
            .unwrap();
        last = r.status().as_u16();
        if last == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last, 201);
    let h = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(h.status(), 200);

    let _ = stop.send(());
    b.stop().await;
    backends::down(dir.path(), true).await.unwrap();
}
