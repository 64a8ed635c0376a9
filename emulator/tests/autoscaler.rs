//! The autoscaler driving real processes: scale out under load to what the model says, back to
//! min after, and `emu simulate` agreeing with the real run.

mod common;

use std::time::Duration;

use common::{run_emu, Emu};
use tokio::time::Instant;

const SPEC: &str = r#"
[[service]]
name = "auto"
command = ["{EMU}", "demo-app"]
concurrency = 2
min_instances = 1
max_instances = 20

[service.autoscaling]
window = "6s"
scale_to_zero_pod_retention_period = "0s"
"#;

/// Ready instances per sample second for `auto`, from the timeline.
async fn ready_series(emu: &Emu, since: u64) -> Vec<(u64, u64)> {
    let v: serde_json::Value = reqwest::get(emu.url(&format!("/_emu/events?since={since}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "sample" && e["service"] == "auto")
        .map(|e| (e["ts_ms"].as_u64().unwrap(), e["ready"].as_u64().unwrap()))
        .collect()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_streams_at_concurrency_two_scale_to_seven_and_back_and_simulate_agrees() {
    let emu = Emu::start_toml(SPEC);
    emu.wait_ready("auto", 1).await;
    let start = unix_ms();

    // 8 closed-loop streams of 100 ms requests: 8 in flight → ceil(8 / (2 × 0.6)) = 7 instances.
    let stop_at = Instant::now() + Duration::from_secs(20);
    let client = reqwest::Client::new();
    let streams: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let url = emu.url("/work?ms=100");
            tokio::spawn(async move {
                let mut ok = 0u32;
                while Instant::now() < stop_at {
                    let r = client.get(&url).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    let mut served = 0;
    for s in streams {
        served += s.await.unwrap();
    }
    let load_end = unix_ms();
    assert!(served > 8 * 100, "streams ran: {served}");

    // Steady state: the last 6 seconds of load.
    let series = ready_series(&emu, start).await;
    let steady: Vec<u64> = series
        .iter()
        .filter(|(t, _)| *t + 6_000 >= load_end && *t <= load_end)
        .map(|(_, r)| *r)
        .collect();
    assert!(!steady.is_empty(), "{series:?}");
    for r in &steady {
        assert!((6..=8).contains(r), "steady ready {r} not 7±1: {series:?}");
    }

    // Back to min (1) after the load stops: 6 s window, halving per decision.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let st = emu.status().await;
        let s = &st["services"][0];
        if s["ready"] == 1 && s["starting"] == 0 && s["draining"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "did not scale back to min: {s}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Decisions are on the timeline with their inputs.
    let v: serde_json::Value = reqwest::get(emu.url(&format!("/_emu/events?since={start}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let decisions: Vec<&serde_json::Value> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "autoscaler")
        .collect();
    assert!(decisions.len() >= 10);
    for key in [
        "stable_avg",
        "panic_avg",
        "panicking",
        "desired",
        "lower",
        "upper",
        "min",
        "max",
    ] {
        assert!(
            decisions[0].get(key).is_some(),
            "decision lacks {key}: {}",
            decisions[0]
        );
    }
    assert!(
        decisions.iter().any(|d| d["desired"] == 7),
        "a decision for 7"
    );
    // Every 2 s, as Knative's ticker: the decisions stay on their schedule, so a late one does
    // not push the rest later (a busy machine delays single decisions, not the mean).
    let ts: Vec<u64> = decisions
        .iter()
        .map(|d| d["ts_ms"].as_u64().unwrap())
        .collect();
    let mean_s = (ts[ts.len() - 1] - ts[0]) as f64 / 1000.0 / (ts.len() - 1) as f64;
    assert!(
        (mean_s - 2.0).abs() <= 0.05,
        "decisions every {mean_s:.3} s on average over {} of them",
        ts.len()
    );
    let metrics = emu.metrics().await;
    assert!(
        metrics.contains("emu_desired_instances{service=\"auto\"} 1"),
        "{metrics}"
    );

    // The simulator, given the same spec and the load the run produced, agrees at steady state.
    // Closed-loop streams: the arrival rate is what they achieved, and each request's time in
    // the service is 8 streams × 20 s / served (on a busy machine it is above 100 ms).
    let rps = f64::from(served) / 20.0;
    let stages = format!("{rps:.1}:0s:20s");
    let service_ms = 8.0 * 20_000.0 / f64::from(served);
    let service_time = format!("{service_ms:.1}ms");
    let (code, out) = {
        let o = std::process::Command::new(common::EMU)
            .args([
                "simulate",
                "--stages",
                &stages,
                "--service-time",
                &service_time,
                "--json",
            ])
            .current_dir(emu.path())
            .output()
            .unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    assert_eq!(code, 0, "{out}");
    let sim: serde_json::Value = serde_json::from_str(&out).unwrap();
    let per_second = sim["result"]["per_second"].as_array().unwrap();
    let sim_steady: Vec<u64> = per_second[14..20]
        .iter()
        .map(|s| s["ready"].as_u64().unwrap())
        .collect();
    let real_median = {
        let mut s = steady.clone();
        s.sort();
        s[s.len() / 2]
    };
    for r in sim_steady {
        assert!(
            r.abs_diff(real_median) <= 1,
            "simulated {r} vs real {real_median}"
        );
    }
}

#[test]
fn simulate_rejects_bad_input_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "emu.toml", SPEC);
    let (code, err) = run_emu(dir.path(), &["simulate", "--stages", "80:zero:10s"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--stages"), "{err}");
    let (code, err) = run_emu(dir.path(), &["simulate", "--trace", "missing.csv"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.csv"), "{err}");
    std::fs::write(dir.path().join("t.csv"), "second,requests\n0,10\n1,ten\n").unwrap();
    let (code, err) = run_emu(dir.path(), &["simulate", "--trace", "t.csv"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 3"), "{err}");
    // A bad annotation in the spec is a config error naming its line.
    common::write(
        dir.path(),
        "emu.toml",
        &SPEC.replace("window = \"6s\"", "window = \"2s\""),
    );
    let (code, err) = run_emu(dir.path(), &["simulate"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("emu.toml:10:"), "{err}");
}

#[test]
fn simulate_prints_a_table() {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "emu.toml", SPEC);
    let out = std::process::Command::new(common::EMU)
        .args(["simulate", "--rps", "80", "--duration", "30s"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("service auto"), "{text}");
    assert!(text.contains("429 0  500 0  504 0"), "{text}");
}
