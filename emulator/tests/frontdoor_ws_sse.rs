//! Long-lived answers through the front door, with real clients: a WebSocket (tokio-tungstenite
//! against the demo's echo) and server-sent events (the demo's stream that waits for each event
//! to be confirmed, so buffering shows as a stall rather than as a slow number).

mod common;

use std::time::Duration;

use common::{Emu, Via};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const ONE_SLOT: &str = r#"
[[service]]
name = "live"
command = ["{EMU}", "demo-app"]
concurrency = 1
min_instances = 1
max_instances = 1
timeout = "6s"
queue_timeout = "1s"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_holds_one_slot_for_its_life_and_closes_at_the_request_timeout() {
    let emu = Emu::start_toml(ONE_SLOT);
    emu.wait_ready("live", 1).await;
    let url = format!("ws://127.0.0.1:{}/ws", emu.port);
    let opened = Instant::now();
    let (mut ws, resp) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["x-emu-instance"], "live-1");

    // A thousand messages each way, in order.
    let (mut tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..1000 {
            tx.send(Message::text(format!("message {i}")))
                .await
                .unwrap();
        }
        tx
    });
    for i in 0..1000 {
        let m = rx.next().await.unwrap().unwrap();
        assert_eq!(m.into_text().unwrap().as_str(), format!("message {i}"));
    }
    let tx = sender.await.unwrap();
    ws = tx.reunite(rx).unwrap();

    // The socket holds the only slot: a request meanwhile waits out the queue and gets 429.
    let r = reqwest::get(emu.url("/")).await.unwrap();
    assert_eq!(r.status(), 429);
    let st = emu.status().await;
    let s = &st["services"][0];
    assert_eq!(s["instances"][0]["in_flight"], 1, "{st}");
    assert_eq!(s["rejected_429"], 1, "{st}");

    // At the request timeout emu closes the connection, as Cloud Run does.
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the WebSocket outlived the request timeout by a minute"
    );
    assert!(
        opened.elapsed() >= Duration::from_secs(6),
        "closed before the timeout"
    );
    // Its slot is free again, and it counted as one request (101).
    emu.wait_in_flight("live", 0).await;
    let r = reqwest::get(emu.url("/")).await.unwrap();
    assert_eq!(r.status(), 200);
    let metrics = emu.metrics().await;
    assert!(
        metrics.contains("emu_requests_total{service=\"live\",code=\"101\"} 1"),
        "{metrics}"
    );
}

/// Reads server-sent events off `body` until `n` have come; returns their data lines.
async fn read_events(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    n: usize,
) -> Vec<String> {
    let mut events = Vec::new();
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                events.push(data.to_string());
            }
        }
        if events.len() >= n {
            return events;
        }
        let chunk = body.next().await.expect("stream ended early").unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_sent_events_flow_without_buffering_on_every_path() {
    for via in [Via::Fast, Via::Hyper, Via::H2c] {
        let env = via.env();
        let dir = tempfile::tempdir().unwrap();
        common::write(
            dir.path(),
            "emu.toml",
            &ONE_SLOT.replace("concurrency = 1", "concurrency = 4"),
        );
        let emu = Emu::start_in_env(dir, &[], env);
        emu.wait_ready("live", 1).await;
        let client = via.client();
        let r = client
            .get(emu.url("/events?key=a&n=5"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let mut body = r.bytes_stream();
        let mut buf = String::new();
        // Each event is sent only once the one before was confirmed: a buffered stream stalls.
        for i in 1..=5u64 {
            let got =
                tokio::time::timeout(Duration::from_secs(30), read_events(&mut body, &mut buf, 1))
                    .await
                    .unwrap_or_else(|_| panic!("event {i} never arrived ({via:?})"));
            assert_eq!(got, [format!("event {i}")]);
            let ack = client
                .post(emu.url(&format!("/events/ack?key=a&id={i}")))
                .send()
                .await
                .unwrap();
            assert_eq!(ack.status(), 200);
        }
        // The stream ends after its last event (HTTP/2 may close it with an empty frame).
        while let Some(rest) = body.next().await {
            let rest = rest.unwrap();
            assert!(
                rest.is_empty(),
                "{via:?}: more after the last event: {rest:?}"
            );
        }

        // A stream that never ends is cut at the request timeout.
        let started = Instant::now();
        let r = client
            .get(emu.url("/events?key=b&n=1000"))
            .send()
            .await
            .unwrap();
        let mut body = r.bytes_stream();
        let mut buf = String::new();
        assert_eq!(read_events(&mut body, &mut buf, 1).await, ["event 1"]);
        let ended = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(Ok(_)) = body.next().await {}
        })
        .await;
        assert!(
            ended.is_ok(),
            "the stream outlived the request timeout by a minute"
        );
        assert!(started.elapsed() >= Duration::from_secs(6));
    }
}
