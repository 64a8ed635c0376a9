//! `merge` against what one run of the same outcomes records: exact, and refusing what is not
//! one run's shards.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::merge;
use crate::engine::record::{decode_hist, Outcome};
use crate::engine::{EngineResult, Recorder};
use crate::report::{EmulatorSection, Latency, Loaded, Report, ShardInfo};
use crate::run::{build_report, Prepared};

const SCENARIO: &str = r#"
name = "merge-unit"
[[stage]]
rps = 100
hold = "4s"
[[request]]
name = "a"
path = "/a"
weight = 1
[[request]]
name = "b"
path = "/b"
weight = 1
[slo]
p95_ms = 40
min_rps = 90
[slo.windowed]
window = "2s"
p95_ms = 45
"#;

/// A report of `outcomes` (request, sent ms, latency ms, ok), started at `start_ms`.
fn report(outcomes: &[(usize, u64, u64, bool)], start_ms: u64, shard: Option<ShardInfo>) -> Report {
    let mut sc = crate::scenario::parse(Path::new("merge-unit.toml"), SCENARIO).unwrap();
    if let Some(sh) = shard {
        sc.scale_rps(1.0 / f64::from(sh.count));
    }
    let mut rec = Recorder::new(2, vec![(0.0, 4.0)]);
    for &(request, sent, lat, ok) in outcomes {
        rec.record(&Outcome {
            request,
            intended: Duration::from_millis(sent),
            sent: Duration::from_millis(sent),
            done: Duration::from_millis(sent) + Duration::from_micros(lat),
            status: Some(if ok { 200 } else { 500 }),
            ok,
            cold_start: false,
            instance: None,
        });
    }
    let started = SystemTime::UNIX_EPOCH + Duration::from_millis(start_ms);
    let p = Prepared {
        scenario: sc,
        target: "http://127.0.0.1:1".into(),
        out: PathBuf::from("unused"),
        duration_factor: 1.0,
        rps_factor: shard.map_or(1.0, |s| 1.0 / f64::from(s.count)),
        shard,
        client: Default::default(),
        emu_fetch_every: crate::emu::collect::EVERY,
    };
    let emulator = EmulatorSection {
        detected: false,
        instances_seen: 0,
        cold_start_responses: 0,
        latency_excluding_cold_starts: Latency::from_hist(&rec.excluding_cold),
        status: None,
        error: None,
        observed: None,
    };
    let n = outcomes.len() as u64;
    build_report(
        &p,
        EngineResult {
            recorder: rec,
            started,
            ended: started + Duration::from_secs(4),
            interrupted: false,
            users: 4,
            planned: n,
            sent: n,
            goose_error: None,
            pacing: Default::default(),
        },
        emulator,
        vec![],
    )
}

/// 400 requests over 4 s with latencies spread 1–60 ms (µs resolution); every 50th fails.
fn outcomes() -> Vec<(usize, u64, u64, bool)> {
    (0..400u64)
        .map(|i| {
            (
                (i % 2) as usize,
                i * 10,
                1_000 + (i * 7_919) % 59_000,
                i % 50 != 7,
            )
        })
        .collect()
}

#[test]
fn two_shards_merge_exactly_into_what_one_run_would_have_recorded() {
    let all = outcomes();
    let (s1, s2): (Vec<_>, Vec<_>) = all.iter().partition(|o| (o.1 / 10) % 2 == 0);
    let whole = report(&all, 1_000_000, None);
    let a = report(&s1, 1_000_000, Some(ShardInfo { index: 1, count: 2 }));
    let b = report(&s2, 1_000_000, Some(ShardInfo { index: 2, count: 2 }));
    let load = |r: Report, f: &str| Loaded {
        path: PathBuf::from(f),
        report: r,
    };
    let (m, warnings) = merge(&[load(a, "a.json"), load(b, "b.json")]).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");

    assert_eq!(m.totals, whole.totals);
    assert_eq!(m.status_codes, whole.status_codes);
    // Histograms added exactly: same counts in every bucket, so every percentile is equal.
    let hm = decode_hist(&m.latency.histogram).unwrap();
    let hw = decode_hist(&whole.latency.histogram).unwrap();
    assert_eq!(hm, hw);
    assert_eq!(
        (
            m.latency.p50_ms,
            m.latency.p95_ms,
            m.latency.p99_ms,
            m.latency.max_ms
        ),
        (
            whole.latency.p50_ms,
            whole.latency.p95_ms,
            whole.latency.p99_ms,
            whole.latency.max_ms
        )
    );
    for (x, y) in m.requests.iter().zip(&whole.requests) {
        assert_eq!(
            (x.requests, x.errors, &x.status_codes),
            (y.requests, y.errors, &y.status_codes)
        );
        assert_eq!(x.latency.p95_ms, y.latency.p95_ms, "{}", x.name);
    }
    let reqs: Vec<u64> = m.timeline.iter().map(|t| t.requests).collect();
    assert_eq!(
        reqs,
        whole
            .timeline
            .iter()
            .map(|t| t.requests)
            .collect::<Vec<_>>()
    );
    assert_eq!(m.timeline.len(), whole.timeline.len());
    for (x, y) in m.timeline.iter().zip(&whole.timeline) {
        assert_eq!(
            decode_hist(&x.histogram),
            decode_hist(&y.histogram),
            "second {}",
            x.second
        );
    }
    // SLOs judged on the merged data with the summed throughput floor.
    assert_eq!(m.slo_rules.as_ref().unwrap().min_rps, Some(90.0));
    let names = |r: &Report| {
        r.slos
            .iter()
            .map(|s| (s.name.clone(), s.passed, s.observed))
            .collect::<Vec<_>>()
    };
    let (mut ms, mut ws) = (names(&m), names(&whole));
    ms.sort_by(|a, b| a.0.cmp(&b.0));
    ws.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(ms, ws);
    assert_eq!(m.verdict, whole.verdict);
    assert_eq!(m.merged_from.len(), 2);

    // A machine that started 1.2 s later lands one second later (wall clock, rounded).
    let late = report(&s2, 1_001_200, Some(ShardInfo { index: 2, count: 2 }));
    let a = report(&s1, 1_000_000, Some(ShardInfo { index: 1, count: 2 }));
    let (m, _) = merge(&[load(a.clone(), "a.json"), load(late.clone(), "b.json")]).unwrap();
    assert_eq!(m.merged_from[1].offset_s, 1);
    assert_eq!(m.timeline.len(), late.timeline.len() + 1);
    for (s, t) in m.timeline.iter().enumerate() {
        let from_a = a.timeline.get(s).map_or(0, |x| x.requests);
        let from_b = s
            .checked_sub(1)
            .and_then(|i| late.timeline.get(i))
            .map_or(0, |x| x.requests);
        assert_eq!(t.requests, from_a + from_b, "second {s}");
    }
    assert_eq!(m.totals.requests, 400);
    assert!((m.duration_s - 5.2).abs() < 1e-9, "{}", m.duration_s);
}

#[test]
fn a_shard_given_twice_or_another_scenario_is_refused_naming_the_file() {
    let a = report(&outcomes(), 0, Some(ShardInfo { index: 1, count: 2 }));
    let load = |r: Report, f: &str| Loaded {
        path: PathBuf::from(f),
        report: r,
    };
    let e = merge(&[load(a.clone(), "x.json"), load(a.clone(), "y.json")]).unwrap_err();
    assert_eq!(e.file, "y.json");
    assert!(e.message.contains("shard 1/2 is also x.json"), "{e}");
    let mut other = a.clone();
    other.scenario.name = "other".into();
    other.shard = Some(ShardInfo { index: 2, count: 2 });
    let e = merge(&[load(a.clone(), "x.json"), load(other, "z.json")]).unwrap_err();
    assert!(e.file == "z.json" && e.message.contains("scenario"), "{e}");
    let (_, w) = merge(&[load(a, "x.json")]).unwrap();
    assert!(w[0].contains("2/2 are missing"), "{w:?}");
}
