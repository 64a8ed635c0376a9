//! loadtest against the real emu front door: a service held to one instance with one slot turns
//! most of a 10 RPS load of slow requests away with 429, and the report shows both sides — the
//! client's 429s and emu's own timeline (instances, queue, rejections).

use std::process::{Command, Stdio};

use e2e::{bin, Up};

#[test]
fn report_joins_the_clients_429s_to_emus_timeline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("emu.toml"),
        r#"
[[service]]
name = "tight"
command = ["emu", "demo-app"]
concurrency = 1
min_instances = 1
max_instances = 1
queue_timeout = "1s"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("tight.toml"),
        r#"
name = "tight"
description = "Slow requests at a service with one slot"

[[stage]]
rps = 10
ramp = "0s"
hold = "6s"

[[request]]
name = "work"
method = "GET"
path = "/work?ms=400"
expect_status = [200]

[slo]
error_rate = 0.01
"#,
    )
    .unwrap();
    let up = Up::start(dir, &["--port", "0"]);
    let target = format!("http://127.0.0.1:{}", up.port);
    let o = Command::new(bin("loadtest"))
        .args([
            "run",
            "tight.toml",
            "--target",
            &target,
            "--no-progress",
            "--out",
            "out",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the error-rate SLO fails: {stderr}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/report.json")).unwrap())
            .unwrap();

    // The client's side: 429s, most of the 60 requests.
    let rejected = r["status_codes"]["429"].as_u64().unwrap_or(0);
    assert!(rejected >= 20, "{}", r["status_codes"]);
    let slo = r["slos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "error_rate")
        .unwrap();
    assert_eq!(slo["passed"], false);

    // emu's side, fetched from /_emu/events for the run's window.
    let emu = &r["emulator"];
    assert_eq!(emu["detected"], true, "{emu}");
    let obs = &emu["observed"];
    assert!(
        obs["summary"]["rejected_429"].as_u64().unwrap() >= rejected.saturating_sub(2),
        "{}",
        obs["summary"]
    );
    assert_eq!(obs["summary"]["max_ready"], 1);
    let timeline = obs["timeline"].as_array().unwrap();
    assert!(timeline.len() >= 5, "{obs}");
    assert!(timeline
        .iter()
        .all(|s| s["ready"].as_u64().unwrap() <= 1 && s["in_flight"].as_u64().unwrap() <= 1));
    assert!(timeline
        .iter()
        .any(|s| s["rejected_429"].as_u64().unwrap() > 0));
    assert!(timeline
        .iter()
        .any(|s| s["queue_depth"].as_u64().unwrap() > 0));
    assert_eq!(emu["instances_seen"], 1, "{emu}");

    // And the markdown a CI job summary shows carries the same.
    let md = std::fs::read_to_string(dir.join("out/report.md")).unwrap();
    assert!(md.contains("429"), "{md}");
    up.stop();
}

#[test]
fn a_run_longer_than_emus_timeline_keeps_every_second() {
    // emu keeps its timeline for 3 s here; loadtest reads it every second during a 12 s run, so
    // the report's emulator section still has the whole run (read only at the end, it would
    // hold the last 3 s).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("emu.toml"),
        "[[service]]\nname = \"api\"\ncommand = [\"emu\", \"demo-app\"]\nmin_instances = 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("long.toml"),
        "[[stage]]\nrps = 5\nhold = \"12s\"\n\n[[request]]\nname = \"home\"\npath = \"/\"\n",
    )
    .unwrap();
    let up = Up::start(dir, &["--port", "0", "--timeline-retention", "3s"]);
    let target = format!("http://127.0.0.1:{}", up.port);
    let o = Command::new(bin("loadtest"))
        .args(["run", "long.toml", "--target", &target, "--no-progress"])
        .args(["--emu-fetch-every", "1s", "--out", "out"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{stderr}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/report.json")).unwrap())
            .unwrap();
    let obs = &r["emulator"]["observed"];
    let timeline = obs["timeline"].as_array().unwrap();
    assert!(timeline.len() >= 11, "{} seconds: {obs}", timeline.len());
    // The events feed itself holds only the last few seconds.
    let events: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(
        &Command::new("curl")
            .args(["-s", &format!("{target}/_emu/events?since=0")])
            .output()
            .unwrap()
            .stdout,
    ))
    .unwrap();
    let samples = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "sample")
        .count();
    assert!(samples <= 5, "{samples} samples kept with a 3 s retention");
    up.stop();
}
