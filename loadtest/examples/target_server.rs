//! A minimal target for trying `loadtest` by hand and measuring the generator:
//! `cargo run --release -p loadtest --example target_server -- 127.0.0.1:18080`
//! serves `/`, `/items/{id}`, `POST /items` and `/work?ms=N` (sleeps N ms).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/items", axum::routing::post(|| async { "created" }))
        .route("/items/{id}", get(|| async { "item" }))
        .route(
            "/work",
            get(|q: Query<HashMap<String, String>>| async move {
                let ms: u64 = q.get("ms").and_then(|v| v.parse().ok()).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "worked"
            }),
        );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
