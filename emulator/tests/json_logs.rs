//! `--log-format json`: every line of a mixed run is JSON — an instance's JSON lines pass
//! through with its id added, its other lines become `textPayload` entries, and emu's request
//! entries are Cloud Logging `LogEntry` JSON by Google's mapping (no nulls, sizes as strings,
//! span id, sampled flag, the protocol the client spoke).

mod common;

use std::time::Duration;

use common::Emu;
use serde_json::Value;

/// Logs a JSON line and a text line at start, a JSON line per request, and its access log as
/// text; answers with a declared length.
const APP: &str = r#"
import http.server, json, os
print(json.dumps({"severity": "INFO", "message": "booting", "component": "app"}), flush=True)
print("plain text, not JSON", flush=True)

class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        print(json.dumps({"severity": "NOTICE", "message": "served " + self.path}), flush=True)
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.answer()
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.answer()
    def log_message(self, fmt, *args):
        print("access " + fmt % args, flush=True)

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), App).serve_forever()
"#;

/// Fails on a null anywhere in `v`.
fn no_nulls(v: &Value, at: &str) {
    match v {
        Value::Null => panic!("null at {at}"),
        Value::Object(m) => m
            .iter()
            .for_each(|(k, v)| no_nulls(v, &format!("{at}.{k}"))),
        Value::Array(a) => a.iter().for_each(|v| no_nulls(v, at)),
        _ => {}
    }
}

fn is_str(v: &Value) -> bool {
    v.is_string()
}

/// A request entry, checked field by field against the LogEntry / HttpRequest types.
fn check_request_entry(e: &Value) {
    no_nulls(e, "entry");
    let h = &e["httpRequest"];
    assert!(h["status"].is_u64(), "{e}");
    for f in [
        "requestMethod",
        "requestUrl",
        "remoteIp",
        "protocol",
        "latency",
    ] {
        assert!(is_str(&h[f]), "{f}: {e}");
    }
    assert!(h["latency"].as_str().unwrap().ends_with('s'), "{e}");
    for f in ["requestSize", "responseSize"] {
        if let Some(n) = h.get(f) {
            assert!(
                n.as_str().unwrap().parse::<u64>().is_ok(),
                "{f} int64 as a string: {e}"
            );
        }
    }
    // A request that reached an instance has a trace; emu's own refusals may have none.
    if e["labels"].get("instanceId").is_some() || e.get("trace").is_some() {
        let trace = e["trace"].as_str().unwrap();
        assert!(trace.starts_with("projects/local/traces/"), "{e}");
        let span = e["spanId"].as_str().unwrap();
        assert!(span.len() == 16, "{e}");
        assert!(span.chars().all(|c| c.is_ascii_hexdigit()), "{e}");
        assert!(e["traceSampled"].is_boolean(), "{e}");
    }
    assert!(e["labels"].as_object().unwrap().values().all(is_str), "{e}");
    assert!(
        is_str(&e["severity"]) && is_str(&e["timestamp"]) && is_str(&e["logName"]),
        "{e}"
    );
}

async fn wait_lines(what: &str, mut lines: impl FnMut() -> Vec<String>, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let got = lines();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} {what} lines: {:?}", lines());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_line_of_a_mixed_run_is_log_entry_json() {
    let dir = tempfile::tempdir().unwrap();
    common::write(
        dir.path(),
        "emu.toml",
        "[[service]]\nname = \"app\"\ncommand = [\"python3\", \"app.py\"]\nmin_instances = 1\n",
    );
    common::write(dir.path(), "app.py", APP);
    let log = dir.path().join("requests.log");
    let log_arg = log.display().to_string();
    let emu = Emu::start_in(dir, &["--log-format", "json", "--request-log", &log_arg]);
    emu.wait_ready("app", 1).await;

    let h1 = reqwest::Client::new();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    assert_eq!(h1.get(emu.url("/a")).send().await.unwrap().status(), 200);
    assert_eq!(h2.get(emu.url("/b")).send().await.unwrap().status(), 200);
    let posted = h1
        .post(emu.url("/c"))
        .body("twelve bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    // emu's own answer: no instance, so no instanceId (and no null in its place).
    assert_eq!(
        h1.get(emu.url("/healthz")).send().await.unwrap().status(),
        404
    );

    let requests = wait_lines(
        "request log",
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect()
        },
        4,
    )
    .await;
    let entries: Vec<Value> = requests
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    entries.iter().for_each(check_request_entry);
    let protocols: Vec<&str> = entries
        .iter()
        .map(|e| e["httpRequest"]["protocol"].as_str().unwrap())
        .collect();
    assert_eq!(
        protocols,
        ["HTTP/1.1", "HTTP/2", "HTTP/1.1", "HTTP/1.1"],
        "{requests:?}"
    );
    assert_eq!(
        entries[0]["httpRequest"]["responseSize"], "5",
        "{}",
        entries[0]
    );
    assert_eq!(
        entries[2]["httpRequest"]["requestSize"], "12",
        "{}",
        entries[2]
    );
    assert!(
        entries[0]["labels"]["instanceId"].is_string(),
        "{}",
        entries[0]
    );
    assert!(
        entries[3]["labels"].get("instanceId").is_none(),
        "{}",
        entries[3]
    );

    // The instance's stdout: boot JSON, a text line, then per request its JSON and access text.
    let out = wait_lines("instance", || emu.stdout.lock().unwrap().clone(), 8).await;
    let mut passed_through = 0;
    for line in &out {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        no_nulls(&v, "line");
        if let Some(text) = v.get("textPayload") {
            assert!(text.is_string() && v["severity"] == "DEFAULT", "{v}");
            assert!(v["labels"]["instanceId"].is_string(), "{v}");
        } else {
            assert!(v["message"].is_string(), "the app's own fields stay: {v}");
            assert!(
                v["logging.googleapis.com/labels"]["instanceId"].is_string(),
                "{v}"
            );
            passed_through += 1;
        }
    }
    assert!(
        out.iter().any(|l| l.contains("\"component\":\"app\"")),
        "{out:?}"
    );
    assert_eq!(passed_through, 4, "{out:?}");
}
