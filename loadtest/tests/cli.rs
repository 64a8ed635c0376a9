//! `loadtest list` and argument handling that needs no traffic.

mod common;

use std::time::Duration;

use common::*;
use loadtest::run::{RateScaling, RunOptions};

#[tokio::test]
async fn list_shows_every_scenario_with_load_and_slos() {
    let o = loadtest_raw(&["list", scenarios_dir().to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for name in ["baseline", "peak", "soak", "smoke"] {
        assert!(out.contains(&format!("{name}  (")), "{out}");
    }
    assert!(out.contains("load: 100 rps ramp 15s hold 5m"), "{out}");
    assert!(out.contains("load: 1000 rps ramp 1m hold 1m"), "{out}");
    assert!(out.contains("p95 of every 10m window < 300 ms"), "{out}");

    let one = loadtest_raw(&["list", scenarios_dir().join("smoke.toml").to_str().unwrap()]).await;
    assert_eq!(one.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&one.stdout).starts_with("smoke"));

    let missing = loadtest_raw(&["list", "/no/such/place"]).await;
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn list_into_a_closed_pipe_is_no_panic() {
    // `loadtest list | head -1`, made certain: the reading end is closed before loadtest
    // writes anything, so its first write meets EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["list", scenarios_dir().to_str().unwrap()])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}

fn args(scenario: &str) -> RunOptions {
    RunOptions {
        scenario: scenarios_dir().join(scenario).display().to_string(),
        ..RunOptions::default()
    }
}

#[test]
fn duration_compresses_soak_stages_and_windows_proportionally() {
    let mut a = args("soak.toml");
    a.duration = Some(Duration::from_secs(180));
    let p = loadtest::run::prepare(&a).unwrap();
    assert_eq!(p.scenario.duration(), Duration::from_secs(180));
    let f = 180.0 / (6.0 * 3600.0 + 60.0);
    assert!((p.duration_factor - f).abs() < 1e-9);
    // 10-minute windows shrink by the same factor (to ~5 s).
    let (w, _) = p.scenario.slos.windowed.unwrap();
    assert!((w.as_secs_f64() - 600.0 * f).abs() < 0.01, "{w:?}");
    assert_eq!(p.scenario.peak_rps(), 200.0);
    assert_eq!(p.target, "http://127.0.0.1:8080");
}

#[test]
fn rps_and_rps_scale_scale_every_stage_and_the_throughput_slo() {
    let mut a = args("peak.toml");
    a.rate = Some(RateScaling::PeakRps(100.0));
    let p = loadtest::run::prepare(&a).unwrap();
    assert_eq!(p.scenario.peak_rps(), 100.0);
    assert_eq!(p.scenario.slos.min_rps, Some(95.0));
    let mut a = args("baseline.toml");
    a.rate = Some(RateScaling::Factor(0.5));
    a.target = Some("http://127.0.0.1:9/".into());
    let p = loadtest::run::prepare(&a).unwrap();
    assert_eq!(p.scenario.peak_rps(), 50.0);
    assert_eq!(p.target, "http://127.0.0.1:9");
    a.target = Some("localhost:8080".into());
    assert!(loadtest::run::prepare(&a)
        .unwrap_err()
        .to_string()
        .contains("not an http(s) URL"));
    a.target = None;
    a.rate = Some(RateScaling::Factor(-1.0));
    assert!(loadtest::run::prepare(&a).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_entry_point_runs_in_process_for_end_to_end_tests() {
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .route("/items/{id}", axum::routing::get(|| async { "item" }));
    let target = serve(app).await;
    let out = tempfile::tempdir().unwrap();
    let report = loadtest::run::run_scenario("smoke", &target, None, out.path())
        .await
        .unwrap();
    // The verdict itself is pinned by the subprocess tests; this one shares its runtime with
    // the server, so it checks the path works, not the timing.
    assert_eq!(
        report.totals.requests,
        report.load.planned_requests,
        "{}",
        report.headline()
    );
    assert_eq!(report.totals.errors, 0);
    assert!(!report.interrupted);
    assert!(report
        .invalid_reasons
        .iter()
        .all(|r| !r.contains("unreachable")));
    all_reports_exist(out.path());
    assert!(!report.emulator.detected);
}
