//! The demo's streaming routes, for what a proxy can get wrong about long-lived answers:
//!
//! - `GET /ws`: a WebSocket that echoes every text and binary message back;
//! - `GET /events?key=K&n=N`: N server-sent events, each sent only after the client confirmed
//!   the one before with `POST /events/ack?key=K&id=I`. A proxy that buffers the stream never
//!   delivers the first event, so the client never confirms it and the stream stalls — a test
//!   can tell streaming from buffering without timing anything.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{LazyLock, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::Query;
use axum::response::sse::{Event, Sse};
use axum::response::Response;
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::watch;

/// `GET /ws`: echoes until the client closes.
pub async fn ws(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                if socket.send(msg).await.is_err() {
                    return;
                }
            }
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

/// The last event id each stream's client confirmed, by stream key.
static ACKED: LazyLock<Mutex<HashMap<String, watch::Sender<u64>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn acked(key: &str) -> watch::Receiver<u64> {
    let mut map = ACKED.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(key.to_string())
        .or_insert_with(|| watch::channel(0).0)
        .subscribe()
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    key: String,
    #[serde(default = "one")]
    n: u64,
}

fn one() -> u64 {
    1
}

/// `GET /events?key=K&n=N`: event `i` goes out once event `i - 1` was confirmed.
pub async fn events(
    Query(q): Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = acked(&q.key);
    let stream = futures_util::stream::unfold((1u64, rx), move |(i, mut rx)| async move {
        if i > q.n {
            return None;
        }
        if i > 1 && rx.wait_for(|a| *a >= i - 1).await.is_err() {
            return None;
        }
        let event = Event::default()
            .id(i.to_string())
            .data(format!("event {i}"));
        Some((Ok(event), (i + 1, rx)))
    });
    Sse::new(stream)
}

#[derive(Debug, Deserialize)]
pub struct Ack {
    key: String,
    id: u64,
}

/// `POST /events/ack?key=K&id=I`: the client has event `I`.
pub async fn ack(Query(a): Query<Ack>) -> &'static str {
    let map = ACKED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = map.get(&a.key) {
        tx.send_modify(|v| *v = (*v).max(a.id));
    }
    "ok\n"
}
