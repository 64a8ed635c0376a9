//! `loadtest run --shard I/N` on two "machines" at once (two processes) against one target,
//! then `loadtest merge`: counts add up exactly, the merged histogram is the sum of the shards',
//! and `compare` takes the merged run against a single full-rate run.

mod common;

use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use common::*;
use hdrhistogram::Histogram;
use loadtest::engine::record::{add_hist, decode_hist};

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

const SCENARIO: &str = r#"
name = "sharded"
[[stage]]
rps = 60
hold = "3s"

[[request]]
name = "a"
path = "/work?ms=20"
weight = 2

[[request]]
name = "b"
path = "/work?ms=20&b=1"
weight = 1

[slo]
p95_ms = 1000
error_rate = 0.01
min_rps = 57
"#;

/// Every (value, count) a histogram holds: equal for equal data whatever the bounds.
fn recorded(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_half_rate_shards_merge_into_one_run() {
    let target = serve(app()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sc = write_scenario(d, "sharded.toml", SCENARIO);
    let (s1, s2, full, merged) = (d.join("s1"), d.join("s2"), d.join("full"), d.join("merged"));

    let a1 = [
        "run",
        &sc,
        "--target",
        &target,
        "--out",
        s1.to_str().unwrap(),
        "--shard",
        "1/2",
    ];
    let a2 = [
        "run",
        &sc,
        "--target",
        &target,
        "--out",
        s2.to_str().unwrap(),
        "--shard",
        "2/2",
    ];
    let (o1, o2) = tokio::join!(loadtest(&a1), loadtest(&a2));
    assert_eq!(o1.status.code(), Some(0), "{}", stderr(&o1));
    assert_eq!(o2.status.code(), Some(0), "{}", stderr(&o2));
    let (r1, r2) = (read_json(&s1), read_json(&s2));
    for (r, i) in [(&r1, 1), (&r2, 2)] {
        assert_schema_valid(r);
        assert_eq!(r["shard"]["index"], i);
        assert_eq!(r["shard"]["count"], 2);
        assert_eq!(r["load"]["target_rps"], 30.0, "half the rate each");
        assert_eq!(
            r["slo_rules"]["min_rps"], 28.5,
            "half the throughput floor each"
        );
    }

    let o = loadtest_raw(&[
        "merge",
        s1.join("report.json").to_str().unwrap(),
        s2.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    all_reports_exist(&merged);
    let m = read_json(&merged);
    assert_schema_valid(&m);
    assert_eq!(m["merged_from"].as_array().unwrap().len(), 2);
    assert_eq!(m["verdict"], "pass");

    // Counts add up exactly.
    let total = u(&r1["totals"]["requests"]) + u(&r2["totals"]["requests"]);
    assert_eq!(u(&m["totals"]["requests"]), total);
    assert_eq!(total, 180, "60 rps for 3 s");
    assert_eq!(u(&m["latency"]["count"]), total);
    for (i, name) in ["a", "b"].iter().enumerate() {
        let q = &m["requests"][i];
        assert_eq!(q["name"], *name);
        assert_eq!(
            u(&q["requests"]),
            u(&r1["requests"][i]["requests"]) + u(&r2["requests"][i]["requests"])
        );
    }
    let timeline_sum: u64 = m["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| u(&t["requests"]))
        .sum();
    assert_eq!(timeline_sum, total);
    // The merged histogram is exactly the sum of the shards': every (value, count) kept. Both
    // shard histograms are decoded, so their bounds are whatever range each run reached; the
    // sum must grow to hold both (it failed here with `OtherAddendValueExceedsRange` whenever
    // the second shard's slowest request was slower than anything the first had seen).
    let h =
        |r: &serde_json::Value| decode_hist(r["latency"]["histogram"].as_str().unwrap()).unwrap();
    let mut sum = h(&r1);
    add_hist(&mut sum, &h(&r2));
    assert_eq!(sum.len(), total);
    assert_eq!(recorded(&h(&m)), recorded(&sum));
    for (p, q) in [("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)] {
        assert_eq!(
            m["latency"][p].as_f64().unwrap(),
            sum.value_at_quantile(q) as f64 / 1000.0,
            "{p}"
        );
    }
    // SLOs judged on the merged data: the whole floor, against the summed rate.
    let min_rps = m["slos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "min_rps")
        .unwrap();
    assert_eq!(min_rps["threshold"], 57.0);
    assert!(min_rps["observed"].as_f64().unwrap() > 57.0, "{min_rps}");

    // A single full-rate run of the same scenario sends as many requests, and `compare` takes
    // the merged report as the run to judge against it. Two runs on a shared machine differ
    // by whatever else the machine did, so the verdict is made certain with the widest
    // tolerance (1000 %): a regression would need a metric ten times worse, or an SLO the
    // merged run failed (it passed, above).
    let o = loadtest(&[
        "run",
        &sc,
        "--target",
        &target,
        "--out",
        full.to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let f = read_json(&full);
    assert_eq!(u(&f["totals"]["requests"]), total);
    let cmp = d.join("cmp");
    let o = loadtest_raw(&[
        "compare",
        full.to_str().unwrap(),
        merged.to_str().unwrap(),
        "--tolerance",
        "1000%",
        "--out",
        cmp.to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cmp.join("compare.json")).unwrap()).unwrap();
    assert_eq!(c["verdict"], "no_regression");
    assert_eq!(c["current"]["requests"], total);
    assert_eq!(c["baseline"]["requests"], total);
}
