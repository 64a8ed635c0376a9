//! The calibrated verdicts of `loadtest compare` on synthetic reports (their latencies drawn
//! from a seeded generator, see `common::synthetic`): a change below the 1 ms floor is never a
//! regression; a baseline whose own halves disagree by more than the floor makes a moderate
//! change INCONCLUSIVE (exit 4), while a change clear of that noise is still a REGRESSION.
//! (Intervals that cannot cross −100 %: `compare::metrics` unit tests.)

mod common;

use std::path::{Path, PathBuf};

use common::synthetic::write_shaped_report;
use common::*;

/// 1000 requests over 4 s, one request name.
const SCENARIO: &str = r#"
name = "calib"
[[stage]]
rps = 250
hold = "4s"

[[request]]
name = "work"
path = "/work"
"#;

fn run(d: &Path, name: &str, median: impl Fn(f64) -> f64, seed: u64) -> PathBuf {
    let dir = d.join(name);
    write_shaped_report(&dir, SCENARIO, median, seed);
    dir
}

async fn compare(base: &Path, cur: &Path, out: &Path) -> (i32, serde_json::Value, String) {
    let o = loadtest_raw(&[
        "compare",
        base.to_str().unwrap(),
        cur.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    (o.status.code().unwrap(), j, stderr(&o))
}

fn metric<'a>(c: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    c["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap()
}

#[tokio::test]
async fn a_shift_below_one_millisecond_is_never_a_regression() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // +20 % of 1.5 ms is 0.3 ms: clear statistically, under the practical floor.
    let base = run(d, "base", |_| 1.5, 1);
    let cur = run(d, "cur", |_| 1.8, 2);
    let (code, c, err) = compare(&base, &cur, &d.join("out")).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(c["verdict"], "no_regression");
    assert_eq!(c["floor_ms"], 1.0);
    let p50 = metric(&c, "overall.p50_ms");
    assert!(p50["change"].as_f64().unwrap() > 0.15, "{p50}");
    assert_eq!(p50["significant"], true, "{p50}");
    assert_eq!(p50["verdict"], "within_tolerance", "{p50}");
    // The same +20 % at 15 ms (3 ms) is a regression.
    let base = run(d, "base15", |_| 15.0, 1);
    let cur = run(d, "cur15", |_| 18.0, 2);
    let (code, c, err) = compare(&base, &cur, &d.join("out15")).await;
    assert_eq!(code, 1, "{err}");
    assert_eq!(metric(&c, "overall.p50_ms")["verdict"], "regression");
}

#[tokio::test]
async fn a_baseline_noisier_than_the_floor_makes_a_moderate_change_inconclusive() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The baseline slowed from 10 to 14 ms half-way: its halves differ by ~40 %.
    let base = run(d, "base", |t| if t < 2.0 { 10.0 } else { 14.0 }, 1);
    // +25 % on the pooled baseline: beyond the 10 % tolerance, not beyond the baseline's noise.
    let cur = run(d, "cur", |_| 15.0, 2);
    let (code, c, err) = compare(&base, &cur, &d.join("out")).await;
    assert_eq!(code, 4, "{err}");
    assert_eq!(c["verdict"], "inconclusive");
    assert!(err.starts_with("INCONCLUSIVE — calib"), "{err}");
    let p50 = metric(&c, "overall.p50_ms");
    assert_eq!(p50["verdict"], "inconclusive", "{p50}");
    let detail = p50["detail"].as_str().unwrap();
    assert!(
        detail.contains("varies by") && detail.contains("floor of 10%"),
        "{detail}"
    );
    assert!(c["inconclusive"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i == "overall.p50_ms"));
    // Three times slower is clear of any such noise: a regression, exit 1.
    let slow = run(d, "slow", |_| 36.0, 3);
    let (code, c, err) = compare(&base, &slow, &d.join("out-slow")).await;
    assert_eq!(code, 1, "{err}");
    assert_eq!(metric(&c, "overall.p50_ms")["verdict"], "regression");
}
