//! `emu status`: the running emu's services and instances, as a table people read (or the raw
//! JSON). The port comes from `--port`, else the running emu's `.emu/emu.json`, else 8080.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::StatusArgs;
use crate::console::{self, Stream};
use crate::state::EmuState;

/// `emu status`: asks the running emu's `/_emu/status` and prints it.
pub(super) async fn run_status(args: StatusArgs) -> ExitCode {
    let port = args
        .port
        .or_else(|| EmuState::read(Path::new(".")).map(|s| s.port))
        .unwrap_or(crate::spec::limits::DEFAULT_FRONTDOOR_PORT);
    let url = format!("http://127.0.0.1:{port}/_emu/status");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let v: serde_json::Value = match client.get(&url).send().await {
        Ok(r) => match r.json().await {
            Ok(v) => v,
            Err(e) => {
                eprintln!("emu status: {url} did not answer emu's status JSON: {e}");
                return ExitCode::from(1);
            }
        },
        Err(_) => {
            eprintln!("emu status: no emu answers on 127.0.0.1:{port}. Start one with `emu up`, or pass --port");
            return ExitCode::from(1);
        }
    };
    if args.json {
        let json = serde_json::to_string_pretty(&v).unwrap_or_default();
        console::line(Stream::Stdout, &json);
    } else {
        console::write(Stream::Stdout, &status_table(&v));
    }
    ExitCode::SUCCESS
}

/// Renders `/_emu/status` as a table people read.
pub fn status_table(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "emu {} (pid {}) on port {}",
        v["emu"]["version"].as_str().unwrap_or("?"),
        v["emu"]["pid"],
        v["emu"]["port"]
    );
    let empty = Vec::new();
    for s in v["services"].as_array().unwrap_or(&empty) {
        let _ = writeln!(
            out,
            "\nSERVICE {}  {}{}  runner={} concurrency={} instances={}..{} timeout={}s",
            s["name"].as_str().unwrap_or("?"),
            s["url"].as_str().unwrap_or(""),
            s["port"]
                .as_u64()
                .map(|p| format!(" (and :{p})"))
                .unwrap_or_default(),
            s["runner"]["kind"].as_str().unwrap_or("?"),
            s["spec"]["concurrency"],
            s["spec"]["min_instances"],
            s["spec"]["max_instances"],
            s["spec"]["timeout_s"]
        );
        let _ = writeln!(
            out,
            "  desired={} ready={} starting={} draining={} queue={} requests={} cold_starts={} 429s={} 504s={}",
            s["desired"], s["ready"], s["starting"], s["draining"], s["queue_depth"], s["requests"], s["cold_starts"], s["rejected_429"], s["timeouts_504"]
        );
        if let Some(f) = s["last_failure"].as_str() {
            let _ = writeln!(out, "  last failure: {f}");
        }
        let instances = s["instances"].as_array().unwrap_or(&empty);
        if !instances.is_empty() {
            let _ = writeln!(
                out,
                "  {:<24} {:<9} {:>9} {:>9} {:>10}",
                "INSTANCE", "STATE", "IN-FLIGHT", "SERVED", "STARTUP"
            );
            for i in instances {
                let startup = i["startup_ms"]
                    .as_u64()
                    .map(|ms| format!("{ms}ms"))
                    .unwrap_or_else(|| "-".into());
                let _ = writeln!(
                    out,
                    "  {:<24} {:<9} {:>9} {:>9} {:>10}",
                    i["id"].as_str().unwrap_or("?"),
                    i["state"].as_str().unwrap_or("?"),
                    i["in_flight"].to_string(),
                    i["served"].to_string(),
                    startup
                );
            }
        }
    }
    out
}
