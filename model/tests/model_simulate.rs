//! `emu simulate`: a service under load on a simulated clock, scaled by the real autoscaler.

use std::time::Duration;

use emu_model::{
    parse_trace_csv, render_table, simulate, AutoscalerConfig, ColdStartDelay, Load, Profile,
    ServiceTime, SimResult, SimService, Stage,
};

fn service(profile: Profile, concurrency: u32, startup: ColdStartDelay) -> SimService {
    let svc = SimService::new(AutoscalerConfig::for_profile(profile, concurrency), startup);
    svc.validate().unwrap();
    svc
}

fn steady(rps: f64, secs: u64, service_time: ServiceTime) -> Load {
    let load = Load::Stages {
        stages: vec![Stage {
            rps,
            ramp: Duration::ZERO,
            hold: Duration::from_secs(secs),
        }],
        service_time,
    };
    load.validate().unwrap();
    load
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn check_conservation(r: &SimResult) {
    let t = &r.totals;
    assert_eq!(
        t.requests,
        t.served + t.rejected_429 + t.failed_500 + t.timeouts_504,
        "every request has exactly one outcome: {t:?}"
    );
    let arrivals: u64 = r.per_second.iter().map(|s| s.arrivals).sum();
    assert_eq!(arrivals, t.requests);
    let rejected: u64 = r.per_second.iter().map(|s| s.rejected_429).sum();
    assert_eq!(rejected, t.rejected_429);
    let timeouts: u64 = r.per_second.iter().map(|s| s.timeouts_504).sum();
    assert_eq!(timeouts, t.timeouts_504);
    let failed: u64 = r.per_second.iter().map(|s| s.failed_500).sum();
    assert_eq!(failed, t.failed_500);
}

#[test]
fn eight_streams_at_concurrency_two_settle_near_seven_instances() {
    // 8 requests/s of 1 s each keep 8 requests in flight (Little's law): 8 streams.
    let svc = service(
        Profile::CloudRun,
        2,
        ColdStartDelay::Fixed(Duration::from_millis(800)),
    );
    let r = simulate(&svc, &steady(8.0, 300, ServiceTime::Fixed(secs(1))), 7);
    check_conservation(&r);
    // ceil(8 / (2 × 0.6)) = 7, ±1 over the last two minutes.
    for s in &r.per_second[180..300] {
        assert!(
            (6..=8).contains(&s.ready),
            "second {}: {} ready\n{}",
            s.second,
            s.ready,
            render_table(&r)
        );
    }
    assert_eq!(r.per_second[299].desired, 7, "{}", render_table(&r));
    assert_eq!(r.totals.rejected_429, 0);
    assert_eq!(r.totals.timeouts_504, 0);
}

#[test]
fn one_instance_of_concurrency_one_rejects_the_overflow_with_429() {
    let mut svc = service(Profile::CloudRun, 1, ColdStartDelay::None);
    svc.max_instances = 1;
    let load = Load::Trace(parse_trace_csv("second,requests,service_ms\n0,3,30000\n").unwrap());
    let r = simulate(&svc, &load, 1);
    check_conservation(&r);
    assert_eq!(r.totals.requests, 3);
    assert_eq!(r.totals.served, 1);
    assert_eq!(r.totals.rejected_429, 2, "{}", render_table(&r));
    // Cloud Run's wait before the 429: max(10 s, 3.5 × average start-up) = 10 s.
    let at: Vec<u64> = r
        .per_second
        .iter()
        .filter(|s| s.rejected_429 > 0)
        .map(|s| s.second)
        .collect();
    assert_eq!(at, vec![10], "{}", render_table(&r));
    assert!(r.per_second.iter().all(|s| s.ready + s.starting <= 1));
    assert_eq!(r.totals.max_instances_seen, 1);
}

#[test]
fn queue_timeout_defaults_to_three_and_a_half_startups() {
    let svc = service(
        Profile::CloudRun,
        1,
        ColdStartDelay::Fixed(Duration::from_secs(4)),
    );
    assert_eq!(svc.effective_queue_timeout(), secs(14));
    let svc = service(Profile::CloudRun, 1, ColdStartDelay::None);
    assert_eq!(svc.effective_queue_timeout(), secs(10));
}

#[test]
fn a_start_slower_than_the_queue_timeout_holds_its_request_until_ready() {
    // From zero, the first request starts an instance that takes 20 s. Its queue timeout is
    // 10 s (no instance has started yet), but a start is in progress within its budget: the
    // request waits it out and is served, as Cloud Run's activator holds it. Once one has
    // started in 20 s, a request may wait 3.5 × 20 s = 70 s anyway.
    let mut svc = service(
        Profile::CloudRun,
        1,
        ColdStartDelay::Fixed(Duration::from_secs(20)),
    );
    svc.autoscaler.initial_scale = 0;
    svc.max_instances = 2;
    let load =
        Load::Trace(parse_trace_csv("second,requests,service_ms\n0,1,100\n40,3,30000\n").unwrap());
    let r = simulate(&svc, &load, 1);
    check_conservation(&r);
    assert_eq!(r.totals.failed_500, 0, "{}", render_table(&r));
    assert_eq!(r.totals.rejected_429, 0, "{}", render_table(&r));
    assert_eq!(r.totals.served, 4, "{}", render_table(&r));
    assert_eq!(r.per_second[20].in_flight, 1, "{}", render_table(&r));
}

#[test]
fn request_timeout_gives_504() {
    let mut svc = service(Profile::CloudRun, 10, ColdStartDelay::None);
    svc.request_timeout = secs(5);
    let r = simulate(&svc, &steady(2.0, 10, ServiceTime::Fixed(secs(8))), 1);
    check_conservation(&r);
    assert_eq!(r.totals.timeouts_504, 20, "{}", render_table(&r));
    assert_eq!(r.totals.served, 0);
    // The 504 fires at the timeout, 5 s after the first arrival.
    let first = r.per_second.iter().find(|s| s.timeouts_504 > 0).unwrap();
    assert_eq!(first.second, 5);
}

#[test]
fn same_seed_same_run_and_the_seed_matters() {
    let svc = service(
        Profile::CloudRun,
        10,
        ColdStartDelay::LogNormal {
            p50: Duration::from_millis(900),
            p99: Duration::from_secs(4),
        },
    );
    let load = Load::Stages {
        stages: vec![
            Stage {
                rps: 200.0,
                ramp: secs(30),
                hold: secs(60),
            },
            Stage {
                rps: 20.0,
                ramp: secs(10),
                hold: secs(60),
            },
        ],
        service_time: ServiceTime::LogNormal {
            p50: Duration::from_millis(80),
            p99: Duration::from_millis(600),
        },
    };
    let a = simulate(&svc, &load, 42);
    let b = simulate(&svc, &load, 42);
    assert_eq!(a, b);
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    let c = simulate(&svc, &load, 43);
    assert_ne!(a, c, "a different seed should draw different start-ups");
    check_conservation(&a);
    assert!(a.totals.cold_starts > 1);
}

#[test]
fn activation_from_zero_starts_one_instance_and_the_request_waits_for_it() {
    let svc = service(
        Profile::Knative,
        10,
        ColdStartDelay::Fixed(Duration::from_secs(2)),
    );
    // Idle long enough for Knative to scale to zero, then one request per second.
    let load = Load::Stages {
        stages: vec![
            Stage {
                rps: 0.0,
                ramp: Duration::ZERO,
                hold: secs(200),
            },
            Stage {
                rps: 1.0,
                ramp: Duration::ZERO,
                hold: secs(30),
            },
        ],
        service_time: ServiceTime::Fixed(Duration::from_millis(50)),
    };
    let r = simulate(&svc, &load, 3);
    check_conservation(&r);
    assert_eq!(r.per_second[199].ready, 0, "{}", render_table(&r));
    assert_eq!(r.totals.cold_starts, 1, "{}", render_table(&r));
    assert_eq!(r.totals.served, 30);
    // The first request waited the 2 s cold start; the later ones did not wait.
    assert!(r.totals.queue_wait_p99_ms >= 1900.0, "{:?}", r.totals);
    assert_eq!(r.totals.queue_wait_p50_ms, 0.0);
    assert!(r.per_second[200..]
        .iter()
        .all(|s| s.ready + s.starting == 1));
}

#[test]
fn knative_scales_to_zero_after_load_and_cloud_run_keeps_one() {
    let load = Load::Stages {
        stages: vec![
            Stage {
                rps: 20.0,
                ramp: Duration::ZERO,
                hold: secs(60),
            },
            Stage {
                rps: 0.0,
                ramp: Duration::ZERO,
                hold: secs(300),
            },
        ],
        service_time: ServiceTime::Fixed(Duration::from_millis(500)),
    };
    let kn = simulate(
        &service(Profile::Knative, 4, ColdStartDelay::None),
        &load,
        1,
    );
    assert_eq!(
        kn.per_second.last().unwrap().ready,
        0,
        "{}",
        render_table(&kn)
    );
    let cr = simulate(
        &service(Profile::CloudRun, 4, ColdStartDelay::None),
        &load,
        1,
    );
    assert_eq!(
        cr.per_second.last().unwrap().ready,
        1,
        "{}",
        render_table(&cr)
    );
}

#[test]
fn min_instances_stay_warm_and_max_caps() {
    let mut svc = service(Profile::Knative, 10, ColdStartDelay::None);
    svc.min_instances = 2;
    svc.max_instances = 3;
    let r = simulate(&svc, &steady(100.0, 120, ServiceTime::Fixed(secs(1))), 1);
    assert!(r
        .per_second
        .iter()
        .all(|s| (2..=3).contains(&(s.ready + s.starting))));
    assert_eq!(r.totals.max_instances_seen, 3);
    // 30 slots for 100 requests/s of 1 s each: the rest queue and are turned away.
    assert!(r.totals.rejected_429 > 1000, "{:?}", r.totals);
    check_conservation(&r);
}

#[test]
fn spike_trace_scales_out_and_back() {
    let text = include_str!("data/simulate/spike.csv");
    let load = Load::Trace(parse_trace_csv(text).unwrap());
    let mut svc = service(
        Profile::CloudRun,
        10,
        ColdStartDelay::Fixed(Duration::from_secs(1)),
    );
    // Start warm, as a service that has been serving: the spike is what this test is about.
    svc.autoscaler.initial_scale = 1;
    let r = simulate(&svc, &load, 9);
    check_conservation(&r);
    // 20 rps × 0.2 s = 4 in flight → 1 instance; the spike, 40 in flight → ceil(40 / 6) = 7.
    // Requests queued during the cold starts count as demand too, so panic overshoots (as
    // Knative does); it must still be bounded by the queue it saw: at most ~450 / 6 = 75.
    assert_eq!(r.per_second[55].ready, 1, "{}", render_table(&r));
    assert!(
        (7..=75).contains(&r.totals.max_instances_seen),
        "{}",
        render_table(&r)
    );
    assert!(r.per_second[70..90].iter().all(|s| s.ready >= 7));
    assert!(r.per_second[70..90].iter().all(|s| s.queue_depth == 0));
    assert!(r.per_second[60..66].iter().any(|s| s.panicking));
    assert_eq!(r.totals.rejected_429, 0);
    // Panic holds the count a stable window past the surge, then it comes back down.
    assert!(r.per_second[179].ready < r.totals.max_instances_seen);
}

#[test]
fn report_json_load_runs() {
    let v = serde_json::json!({"timeline": [
        {"second": 0, "requests": 50, "rps": 50.0, "p50_ms": 100.0, "p95_ms": 200.0, "p99_ms": 300.0},
        {"second": 1, "requests": 50, "rps": 50.0, "p50_ms": 100.0, "p95_ms": 200.0, "p99_ms": 300.0}
    ]});
    let load = emu_model::load_from_report_json(&v).unwrap();
    let r = simulate(
        &service(Profile::CloudRun, 80, ColdStartDelay::None),
        &load,
        1,
    );
    assert_eq!(r.totals.requests, 100);
    assert_eq!(r.totals.served, 100);
}

#[test]
fn table_collapses_long_runs_and_shows_totals() {
    let svc = service(Profile::CloudRun, 10, ColdStartDelay::None);
    let r = simulate(
        &svc,
        &steady(5.0, 600, ServiceTime::Fixed(Duration::from_millis(100))),
        1,
    );
    let table = render_table(&r);
    assert!(table.contains("arrivals"));
    assert!(table.contains("same for"), "{table}");
    assert!(table.contains("requests 3000"), "{table}");
    assert!(table.lines().count() < 100, "{table}");
    let short = simulate(
        &svc,
        &steady(5.0, 10, ServiceTime::Fixed(Duration::from_millis(100))),
        1,
    );
    assert_eq!(render_table(&short).lines().count(), 1 + 10 + 3);
}

#[test]
fn ten_minutes_at_a_thousand_rps_keeps_its_books() {
    let svc = service(
        Profile::CloudRun,
        80,
        ColdStartDelay::LogNormal {
            p50: Duration::from_millis(700),
            p99: Duration::from_secs(3),
        },
    );
    let load = Load::Stages {
        stages: vec![Stage {
            rps: 1000.0,
            ramp: secs(60),
            hold: secs(540),
        }],
        service_time: ServiceTime::LogNormal {
            p50: Duration::from_millis(40),
            p99: Duration::from_millis(300),
        },
    };
    let r = simulate(&svc, &load, 5);
    check_conservation(&r);
    assert!(
        (569_000..=571_000).contains(&r.totals.requests),
        "{:?}",
        r.totals
    );
    // Mean in flight ≈ 1000 × mean service (~55 ms) ≈ 55 → about 2 instances at 48 each.
    let last = r.per_second.last().unwrap();
    assert!((1..=4).contains(&last.ready), "{}", render_table(&r));
}

/// An hour at 1000 RPS must take well under a second in release mode. Timing is not
/// behaviour, so this only runs on request:
/// `cargo test -p emu-model --release --test model_simulate -- --ignored`.
#[test]
#[ignore]
fn an_hour_at_a_thousand_rps_is_fast() {
    let svc = service(Profile::CloudRun, 80, ColdStartDelay::Fixed(secs(1)));
    let load = steady(
        1000.0,
        3600,
        ServiceTime::LogNormal {
            p50: Duration::from_millis(40),
            p99: Duration::from_millis(300),
        },
    );
    #[allow(clippy::disallowed_methods)] // a wall-clock measurement is the point here
    let start = std::time::Instant::now();
    let r = simulate(&svc, &load, 1);
    let took = start.elapsed();
    eprintln!("1 h at 1000 RPS: {took:?}, {} requests", r.totals.requests);
    assert_eq!(r.totals.requests, 3_600_000);
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn result_serializes_with_the_documented_fields() {
    let svc = service(Profile::CloudRun, 10, ColdStartDelay::None);
    let r = simulate(
        &svc,
        &steady(5.0, 3, ServiceTime::Fixed(Duration::from_millis(100))),
        1,
    );
    let v = serde_json::to_value(&r).unwrap();
    for k in [
        "second",
        "arrivals",
        "ready",
        "starting",
        "cold_starts",
        "queue_depth",
        "in_flight",
        "rejected_429",
        "failed_500",
        "timeouts_504",
        "desired",
        "panicking",
        "queue_wait_p50_ms",
        "queue_wait_p95_ms",
    ] {
        assert!(v["per_second"][0].get(k).is_some(), "per_second lacks {k}");
    }
    for k in [
        "requests",
        "served",
        "cold_starts",
        "rejected_429",
        "failed_500",
        "timeouts_504",
        "max_instances_seen",
        "queue_wait_p50_ms",
        "queue_wait_p95_ms",
        "queue_wait_p99_ms",
        "queue_wait_mean_ms",
    ] {
        assert!(v["totals"].get(k).is_some(), "totals lack {k}");
    }
}

#[test]
fn zero_initial_scale_starts_cold() {
    let mut svc = service(
        Profile::CloudRun,
        10,
        ColdStartDelay::Fixed(Duration::from_secs(3)),
    );
    svc.autoscaler.initial_scale = 0;
    let r = simulate(
        &svc,
        &steady(2.0, 20, ServiceTime::Fixed(Duration::from_millis(100))),
        1,
    );
    assert_eq!(r.per_second[0].ready, 0);
    assert_eq!(r.per_second[0].starting, 1);
    assert_eq!(r.totals.cold_starts, 1, "{}", render_table(&r));
    assert_eq!(r.totals.served, 40);
    assert!(r.totals.queue_wait_p99_ms >= 2000.0);
}

#[test]
fn long_runs_are_tabled_in_windows() {
    let svc = service(
        Profile::CloudRun,
        80,
        ColdStartDelay::Fixed(Duration::from_millis(500)),
    );
    let load = steady(
        50.0,
        3600,
        ServiceTime::LogNormal {
            p50: Duration::from_millis(40),
            p99: Duration::from_millis(300),
        },
    );
    let r = simulate(&svc, &load, 2);
    let table = render_table(&r);
    assert!(table.starts_with("(each row is 12 s"), "{}", &table[..200]);
    assert!(
        table.lines().count() <= 300 + 5,
        "{} lines",
        table.lines().count()
    );
    // Windows keep the counts: the arrivals column (with collapsed repeats) adds up.
    let mut arrivals = 0u64;
    let mut previous = 0u64;
    for line in table.lines().skip(2).take_while(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words[0] == "…" {
            arrivals += previous * words[3].parse::<u64>().unwrap();
        } else {
            previous = words[1].parse().unwrap();
            arrivals += previous;
        }
    }
    assert_eq!(arrivals, r.totals.requests);
}
