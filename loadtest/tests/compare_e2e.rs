//! `loadtest compare` and `run --baseline` end to end, the real binary every time, each test
//! with one definite outcome.
//!
//! Two real runs on a shared machine differ by whatever else the machine does, so no statistic
//! can promise their verdict. The statistics are therefore judged on reports whose data is
//! fixed (`common::synthetic`: every slot on time, log-normal latencies from a seed, written by
//! the real report code); the real runs test the plumbing of `run --baseline` against
//! baselines ten or a hundred times slower or faster than any run here can be.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use common::synthetic::write_report;
use common::*;

/// 1000 requests over 4 s with latencies spread ±10 %: two such runs differ at any judged
/// percentile by well under the 10 % tolerance (at most 7 % over 60 seed pairs tried), and a
/// +30 % shift is always seen with its interval above +25 %.
const STATS_SCENARIO: &str = r#"
name = "work"
[[stage]]
rps = 250
hold = "4s"

[[request]]
name = "work"
path = "/work"

[[request]]
name = "fast"
path = "/work?fast=1"

[slo]
p95_ms = 1000
error_rate = 0.01
"#;

/// The scenario the real runs use, against an endpoint that sleeps 20 ms.
const RUN_SCENARIO: &str = r#"
name = "work"
[[stage]]
rps = 50
hold = "4s"

[[request]]
name = "work"
path = "/work?ms=20"

[[request]]
name = "fast"
path = "/work?ms=20&fast=1"

[slo]
p95_ms = 1000
error_rate = 0.01
"#;

fn app() -> Router {
    Router::new().route(
        "/work",
        get(
            |q: Query<std::collections::HashMap<String, String>>| async move {
                let ms: u64 = q.get("ms").and_then(|v| v.parse().ok()).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "worked"
            },
        ),
    )
}

/// A synthetic run of STATS_SCENARIO in `d/name`.
fn synthetic(d: &Path, name: &str, median_ms: f64, seed: u64) -> PathBuf {
    let dir = d.join(name);
    write_report(&dir, STATS_SCENARIO, median_ms, seed);
    dir
}

async fn compare(base: &Path, cur: &Path, out: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec![
        "compare",
        base.to_str().unwrap(),
        cur.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = loadtest_raw(&args).await;
    let code = o.status.code().unwrap();
    for f in ["compare.json", "compare.md", "compare.html"] {
        assert!(out.join(f).is_file(), "{f} missing: {}", stderr(&o));
    }
    let j = read_compare(out);
    assert_eq!(j["schema_version"], 1);
    (code, j)
}

fn read_compare(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("compare.json")).unwrap()).unwrap()
}

fn metric<'a>(c: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    c["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no metric {id} in {c}"))
}

fn md(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("compare.md")).unwrap()
}

#[tokio::test]
async fn runs_of_the_same_distribution_are_no_regression() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let same: Vec<PathBuf> = (1..=4)
        .map(|seed| synthetic(d, &format!("same{seed}"), 20.0, seed))
        .collect();
    for (i, (a, b)) in [(0, 1), (2, 3), (1, 2)].into_iter().enumerate() {
        let out = d.join(format!("cmp{i}"));
        let (code, c) = compare(&same[a], &same[b], &out, &[]).await;
        assert_eq!(code, 0, "{}", md(&out));
        assert_eq!(c["verdict"], "no_regression");
        assert!(c["regressions"].as_array().unwrap().is_empty());
        let p50 = metric(&c, "overall.p50_ms");
        assert_ne!(p50["verdict"], "regression", "{}", md(&out));
        assert_ne!(p50["verdict"], "not_judged", "{}", md(&out));
    }
    // A rolling baseline (a folder of three runs) against the fourth: no regression either.
    let rolling = d.join("rolling");
    std::fs::create_dir(&rolling).unwrap();
    for (i, s) in same[..3].iter().enumerate() {
        std::fs::copy(s.join("report.json"), rolling.join(format!("run{i}.json"))).unwrap();
    }
    let out = d.join("cmp-roll");
    let (code, c) = compare(&rolling, &same[3], &out, &[]).await;
    assert_eq!(code, 0, "{}", md(&out));
    assert_eq!(c["baseline"]["runs"], 3);
    assert_eq!(c["verdict"], "no_regression");
}

#[tokio::test]
async fn thirty_percent_slower_is_a_regression_unless_the_tolerance_is_50_percent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = synthetic(d, "base", 20.0, 1);
    let slow = synthetic(d, "slow", 26.0, 2);

    // Under the default 10 %: exit 1, p50 regresses overall and per request, with an interval
    // above zero around the +30 % it is.
    let out = d.join("cmp");
    let (code, c) = compare(&base, &slow, &out, &[]).await;
    let text = md(&out);
    assert_eq!(code, 1, "{text}");
    assert_eq!(c["verdict"], "regression");
    for id in [
        "overall.p50_ms",
        "overall.p95_ms",
        "request.work.p50_ms",
        "request.fast.p50_ms",
    ] {
        let m = metric(&c, id);
        assert_eq!(m["verdict"], "regression", "{id}: {text}");
        assert!(m["interval"][0].as_f64().unwrap() > 0.1, "{id}: {text}");
        let change = m["change"].as_f64().unwrap();
        assert!((0.2..0.4).contains(&change), "{id}: {text}");
    }
    // Throughput and errors are the same on both sides.
    assert_eq!(metric(&c, "overall.error_rate")["verdict"], "no_change");
    assert_ne!(
        metric(&c, "overall.throughput_rps")["verdict"],
        "regression"
    );
    assert!(
        text.contains("| overall.p50_ms |") && text.contains("**regression**"),
        "{text}"
    );
    let html = std::fs::read_to_string(out.join("compare.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("baseline p95") && !html.contains("<script"));

    // Under 50 %: the same +30 % is significant but within the tolerance: no regression.
    let out = d.join("cmp-tol50");
    let (code, c) = compare(&base, &slow, &out, &["--tolerance", "50%"]).await;
    let text = md(&out);
    assert_eq!(code, 0, "{text}");
    assert_eq!(c["verdict"], "no_regression");
    for id in ["overall.p50_ms", "request.work.p50_ms"] {
        let m = metric(&c, id);
        assert_eq!(m["significant"], true, "{id}: {text}");
        assert_eq!(m["verdict"], "within_tolerance", "{id}: {text}");
    }

    // A rolling baseline of three runs against the +30 %: still a regression.
    let rolling = d.join("rolling");
    std::fs::create_dir(&rolling).unwrap();
    for seed in 3..=5 {
        let run = synthetic(d, &format!("run{seed}"), 20.0, seed);
        std::fs::copy(
            run.join("report.json"),
            rolling.join(format!("run{seed}.json")),
        )
        .unwrap();
    }
    let out = d.join("cmp-roll");
    let (code, c) = compare(&rolling, &slow, &out, &[]).await;
    assert_eq!(code, 1, "{}", md(&out));
    assert_eq!(c["baseline"]["runs"], 3);
    assert_eq!(metric(&c, "overall.p50_ms")["verdict"], "regression");
}

#[tokio::test]
async fn the_same_inputs_and_seed_give_the_same_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = synthetic(d, "base", 20.0, 1);
    let cur = synthetic(d, "cur", 21.0, 2);
    let (_, a) = compare(&base, &cur, &d.join("a"), &["--seed", "7"]).await;
    let (_, b) = compare(&base, &cur, &d.join("b"), &["--seed", "7"]).await;
    assert_eq!(a["metrics"], b["metrics"]);
    assert_eq!(a["verdict"], b["verdict"]);
}

/// A synthetic baseline of RUN_SCENARIO, `median_ms` per request.
fn run_baseline(dir: &Path, median_ms: f64, seed: u64) -> PathBuf {
    write_report(dir, RUN_SCENARIO, median_ms, seed);
    dir.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_baseline_compares_right_after_and_sets_the_exit_code() {
    let target = serve(app()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sc = write_scenario(d, "work.toml", RUN_SCENARIO);

    // Against a baseline answered in 1 ms, a run of a 20 ms endpoint is a regression (at least
    // 20 times slower, whatever the machine does): exit 1, and the comparison is written
    // beside the run's reports.
    let fast = run_baseline(&d.join("fast"), 1.0, 1);
    let r1 = d.join("r1");
    let o = loadtest(&[
        "run",
        &sc,
        "--target",
        &target,
        "--out",
        r1.to_str().unwrap(),
        "--baseline",
        fast.to_str().unwrap(),
    ])
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("PASS — work"), "the run itself passed: {err}");
    assert!(err.contains("REGRESSION — work"), "{err}");
    all_reports_exist(&r1);
    let c = read_compare(&r1);
    assert_eq!(c["verdict"], "regression");
    assert!(
        metric(&c, "overall.p50_ms")["interval"][0]
            .as_f64()
            .unwrap()
            > 10.0
    );
    for f in ["compare.md", "compare.html"] {
        assert!(r1.join(f).is_file(), "{f} missing");
    }

    // Against a rolling baseline (a folder of three runs) answered in about 2 s: no
    // regression (an improvement), so the run's own verdict decides: exit 0.
    let slow = d.join("slow");
    for seed in 1..=3 {
        run_baseline(&slow.join(format!("run{seed}")), 2000.0, seed);
    }
    let r2 = d.join("r2");
    let o = loadtest(&[
        "run",
        &sc,
        "--target",
        &target,
        "--out",
        r2.to_str().unwrap(),
        "--baseline",
        slow.to_str().unwrap(),
        "--tolerance",
        "20%",
    ])
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("NO REGRESSION — work"), "{err}");
    let c = read_compare(&r2);
    assert_eq!(c["verdict"], "no_regression");
    assert_eq!(c["baseline"]["runs"], 3);
    assert_eq!(c["tolerance"], 0.2);
    assert_eq!(metric(&c, "overall.p50_ms")["verdict"], "improvement");
}
