//! The autoscaler on a fake clock: one concurrency sample per second, a decision every 2 s,
//! ready instances following the last decision at once (start-up is the simulator's business).

use std::collections::BTreeMap;
use std::time::Duration;

use emu_model::autoscaler::Reason;
use emu_model::{overrides_from_annotations, Autoscaler, AutoscalerConfig, Decision, Profile};

struct Clock {
    scaler: Autoscaler,
    now: u64,
    ready: u32,
    decisions: Vec<(u64, Decision)>,
}

impl Clock {
    fn new(cfg: AutoscalerConfig) -> Self {
        cfg.validate().unwrap();
        let ready = cfg.initial_scale.max(cfg.min_scale);
        Clock {
            scaler: Autoscaler::new(cfg, Duration::ZERO),
            now: 0,
            ready,
            decisions: Vec::new(),
        }
    }

    /// Runs `secs` seconds at a constant total concurrency; returns the decisions made.
    fn run(&mut self, secs: u64, concurrency: f64) -> Vec<Decision> {
        let mut out = Vec::new();
        for _ in 0..secs {
            self.now += 1;
            let now = Duration::from_secs(self.now);
            self.scaler.record(now, concurrency);
            if self.now.is_multiple_of(2) {
                let d = self.scaler.decide(now, self.ready);
                self.ready = d.desired;
                self.decisions.push((self.now, d.clone()));
                out.push(d);
            }
        }
        out
    }

    fn last(&self) -> &Decision {
        &self.decisions.last().unwrap().1
    }
}

fn knative(cc: u32) -> AutoscalerConfig {
    AutoscalerConfig::for_profile(Profile::Knative, cc)
}

fn cloud_run(cc: u32) -> AutoscalerConfig {
    AutoscalerConfig::for_profile(Profile::CloudRun, cc)
}

#[test]
fn steady_load_settles_at_ceil_concurrency_over_target() {
    // Knative: target 10 × 0.7 = 7 → ceil(35 / 7) = 5.
    let mut c = Clock::new(knative(10));
    c.run(180, 35.0);
    assert_eq!(c.last().desired, 5);
    assert!(!c.last().panicking);
    assert!((c.last().stable_avg - 35.0).abs() < 1e-6);

    // Cloud Run: target 10 × 0.6 = 6 → ceil(35 / 6) = 6.
    let mut c = Clock::new(cloud_run(10));
    c.run(180, 35.0);
    assert_eq!(c.last().desired, 6);

    // Unlimited concurrency targets 100 × 0.6 = 60 per instance.
    let mut c = Clock::new(cloud_run(0));
    c.run(180, 250.0);
    assert_eq!(c.last().desired, 5);
}

#[test]
fn step_up_enters_panic_and_scales_within_one_decision() {
    let mut c = Clock::new(knative(10));
    c.run(120, 10.0);
    assert_eq!(c.last().desired, 2);
    assert!(!c.last().panicking);

    // The very next decision after the step already sees it through the 6 s panic window.
    let d = c.run(2, 100.0);
    let first = &d[0];
    assert!(first.panicking, "{first:?}");
    assert!(first.desired >= 6, "{first:?}");
    // Once the panic window is full of the new load: ceil(100 / 7) = 15.
    c.run(6, 100.0);
    assert_eq!(c.last().desired, 15);
    assert!(c.last().panicking);
}

#[test]
fn panic_never_scales_down_and_ends_after_a_stable_window() {
    let mut c = Clock::new(knative(10));
    c.run(120, 10.0);
    c.run(20, 100.0);
    assert_eq!(c.last().desired, 15);
    // The burst is over, but panic mode holds the count.
    let during = c.run(30, 10.0);
    assert!(
        during.iter().all(|d| d.panicking && d.desired == 15),
        "{during:?}"
    );
    // A stable window after the last over-threshold decision, panic ends and the count falls.
    let after = c.run(120, 10.0);
    assert!(!c.last().panicking);
    assert!(after.iter().any(|d| d.desired < 15));
    assert_eq!(c.last().desired, 2);
}

#[test]
fn step_down_at_most_halves_per_decision() {
    let mut cfg = knative(10);
    cfg.stable_window = Duration::from_secs(6);
    let mut c = Clock::new(cfg);
    c.run(30, 1000.0);
    assert_eq!(c.last().desired, 143);
    assert!(!c.last().panicking);
    let mut prev = c.last().desired;
    let mut rate_limited = false;
    for d in c.run(40, 1.0) {
        assert!(d.desired >= prev / 2, "{prev} → {}: {d:?}", d.desired);
        if ((d.stable_avg / d.target).ceil() as u32) < d.lower {
            rate_limited = true;
            assert_eq!(d.desired, d.lower);
        }
        prev = d.desired;
    }
    assert!(
        rate_limited,
        "the drop should have hit the scale-down rate limit"
    );
    assert_eq!(c.last().desired, 1);
}

#[test]
fn knative_scales_to_zero_after_the_grace_period() {
    let mut c = Clock::new(knative(10));
    c.run(60, 3.0);
    // The stable window empties at 120 s; the grace period runs 30 s from there.
    for d in c.run(88, 0.0) {
        assert_eq!(d.desired, 1, "{d:?}");
    }
    assert_eq!(c.last().reason, Reason::ZeroGrace);
    c.run(2, 0.0);
    assert_eq!(c.now, 150);
    assert_eq!(c.last().desired, 0);
    // At zero with no traffic it stays at zero: only a request brings it back.
    for d in c.run(100, 0.0) {
        assert_eq!(d.desired, 0);
    }
}

#[test]
fn cloud_run_keeps_the_last_instance_for_the_idle_retention() {
    let mut c = Clock::new(cloud_run(10));
    c.run(60, 3.0);
    // Last non-zero concurrency at 60 s: the instance stays until 60 s + 15 min.
    for d in c.run(898, 0.0) {
        assert_eq!(d.desired, 1, "{d:?}");
    }
    c.run(2, 0.0);
    assert_eq!(c.now, 960);
    assert_eq!(c.last().desired, 0);
}

#[test]
fn activation_from_zero_is_not_undone_before_grace_and_retention() {
    let mut c = Clock::new(knative(10));
    c.run(200, 0.0);
    assert_eq!(c.last().desired, 0);
    // A request arrives: the caller starts an instance and tells the autoscaler, which then
    // decides before the instance is ready and before any sample shows the request.
    let now = Duration::from_secs(201);
    c.scaler.activated(now);
    let d = c.scaler.decide(now, 0);
    assert_eq!(d.desired, 1, "{d:?}");
    // The request ran for a second; the instance stays for the grace period after the window.
    c.now = 201;
    c.ready = 1;
    c.run(1, 0.5);
    let held = c.run(60 + 26, 0.0);
    assert!(held.iter().all(|d| d.desired == 1), "{held:?}");
    c.run(10, 0.0);
    assert_eq!(c.last().desired, 0);
}

#[test]
fn min_and_max_clamp() {
    let mut cfg = knative(10);
    cfg.min_scale = 3;
    cfg.max_scale = 4;
    let mut c = Clock::new(cfg);
    c.run(120, 0.0);
    assert_eq!(c.last().desired, 3);
    assert_eq!(c.last().reason, Reason::Min);
    c.run(60, 500.0);
    assert_eq!(c.last().desired, 4);
    assert_eq!(c.last().reason, Reason::Max);
    assert_eq!((c.last().min, c.last().max), (3, 4));
}

#[test]
fn initial_scale_holds_until_reached_once() {
    let mut cfg = knative(10);
    cfg.initial_scale = 3;
    let mut a = Autoscaler::new(cfg, Duration::ZERO);
    for t in 1..=10u64 {
        a.record(Duration::from_secs(t), 0.0);
    }
    // Not yet ready: the initial scale is a floor.
    assert_eq!(a.decide(Duration::from_secs(10), 1).desired, 3);
    // Reached once: demand decides from here on (1 → grace, then 0).
    let d = a.decide(Duration::from_secs(12), 3);
    assert!(d.desired < 3, "{d:?}");
}

#[test]
fn scale_down_delay_holds_the_maximum() {
    let mut cfg = knative(10);
    cfg.stable_window = Duration::from_secs(6);
    cfg.scale_down_delay = Duration::from_secs(30);
    let mut c = Clock::new(cfg.clone());
    c.run(60, 70.0);
    assert_eq!(c.last().desired, 10);
    let held = c.run(28, 7.0);
    assert!(held.iter().all(|d| d.desired == 10), "{held:?}");
    assert_eq!(c.last().reason, Reason::ScaleDownDelay);
    c.run(12, 7.0);
    assert!(c.last().desired < 10);
    c.run(120, 7.0);
    assert_eq!(c.last().desired, 1);

    // Without the delay the same drop is followed within a few decisions.
    cfg.scale_down_delay = Duration::ZERO;
    let mut c = Clock::new(cfg);
    c.run(60, 70.0);
    c.run(10, 7.0);
    assert!(c.last().desired < 10);
}

#[test]
fn annotations_override_the_profile() {
    let ann: BTreeMap<String, String> = [
        ("autoscaling.knative.dev/target", "10"),
        (
            "autoscaling.knative.dev/target-utilization-percentage",
            "100",
        ),
        ("autoscaling.knative.dev/window", "6s"),
        ("autoscaling.knative.dev/maxScale", "3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut cfg = cloud_run(80);
    overrides_from_annotations(&ann).unwrap().apply(&mut cfg);
    cfg.validate().unwrap();
    assert_eq!(cfg.target_value(), 10.0);
    assert_eq!(cfg.stable_window, Duration::from_secs(6));
    let mut c = Clock::new(cfg);
    c.run(20, 25.0);
    assert_eq!(c.last().desired, 3);
    c.run(20, 200.0);
    assert_eq!(c.last().desired, 3);
}

#[test]
fn bad_annotation_is_an_error_naming_it() {
    let ann: BTreeMap<String, String> = [(
        "autoscaling.knative.dev/window".to_string(),
        "sixty".to_string(),
    )]
    .into();
    let e = overrides_from_annotations(&ann).unwrap_err();
    assert_eq!(e.key, "autoscaling.knative.dev/window");
    assert!(
        e.to_string().contains("autoscaling.knative.dev/window"),
        "{e}"
    );
}

#[test]
fn decision_serializes_for_the_events_feed() {
    let mut c = Clock::new(knative(10));
    c.run(4, 14.0);
    let v = serde_json::to_value(c.last()).unwrap();
    for k in [
        "desired",
        "stable_avg",
        "panic_avg",
        "panicking",
        "lower",
        "upper",
        "ready",
        "min",
        "max",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    let cfg = serde_json::to_value(knative(10)).unwrap();
    assert_eq!(cfg["stable_window"], 60.0);
}

#[test]
fn scale_up_rate_limits_growth_per_decision() {
    let mut cfg = knative(10);
    cfg.max_scale_up_rate = 2.0;
    let mut c = Clock::new(cfg);
    let d = c.run(8, 700.0);
    // From 1 ready: at most ×2 per decision → 2, 4, 8, 16 (100 wanted).
    let counts: Vec<u32> = d.iter().map(|d| d.desired).collect();
    assert_eq!(counts, vec![2, 4, 8, 16]);
    assert!(d.iter().all(|d| d.desired == d.upper));
}

#[test]
fn no_data_keeps_the_previous_count() {
    let mut a = Autoscaler::new(knative(10), Duration::ZERO);
    for t in 1..=20u64 {
        a.record(Duration::from_secs(t), 35.0);
    }
    let d = a.decide(Duration::from_secs(20), 5);
    assert_eq!(d.desired, 5);
    // The caller stopped reporting: after a whole stable window without samples there is no
    // data to act on, and the count stands rather than collapsing to zero.
    let d = a.decide(Duration::from_secs(200), 5);
    assert_eq!(d.reason, Reason::NoData);
    assert_eq!(d.desired, 5);
}
