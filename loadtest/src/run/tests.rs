//! Who is blamed for a rate that was not held: the target (FAIL) or the generator (INVALID).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{build_report, Prepared};
use crate::engine::{EngineResult, Outcome, Pacing, Recorder};
use crate::report::{EmulatorSection, Latency, Report, Verdict};

/// A run of 20 rps for 2 s that sent only every other slot, with `pacing`'s counts.
fn half_sent(pacing: Pacing) -> Report {
    let text = "[[stage]]\nrps = 20\nhold = \"2s\"\n[[request]]\nname = \"a\"\npath = \"/\"\n";
    let sc = crate::scenario::parse(Path::new("half.toml"), text).unwrap();
    let mut rec = Recorder::new(1, vec![(0.0, 2.0)]);
    for i in 0..20u64 {
        let t = Duration::from_millis(i * 100);
        rec.record(&Outcome {
            request: 0,
            intended: t,
            sent: t,
            done: t + Duration::from_millis(90),
            status: Some(200),
            ok: true,
            cold_start: false,
            instance: None,
        });
    }
    let p = Prepared {
        scenario: sc,
        target: "http://127.0.0.1:1".into(),
        out: PathBuf::from("unused"),
        duration_factor: 1.0,
        rps_factor: 1.0,
        shard: None,
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
    let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let result = EngineResult {
        recorder: rec,
        started,
        ended: started + Duration::from_secs(4),
        interrupted: false,
        users: 2,
        planned: 40,
        sent: 20,
        goose_error: None,
        pacing,
    };
    build_report(&p, result, emulator, vec![])
}

fn pacing(saturated: u64, generator_late: u64) -> Pacing {
    Pacing {
        max_in_flight: 2,
        max_in_flight_basis: "max_in_flight = 2 in the scenario".into(),
        open_file_limit: Some(1024),
        peak_in_flight: 2,
        not_sent_target_saturated: saturated,
        sent_late_by_generator: generator_late,
    }
}

#[test]
fn a_rate_lost_to_a_saturated_target_is_an_slo_failure_naming_the_cap() {
    let r = half_sent(pacing(19, 1));
    assert_eq!(r.verdict, Verdict::Fail, "{:?}", r.invalid_reasons);
    assert!(r.invalid_reasons.is_empty());
    let s = r
        .slos
        .iter()
        .find(|s| s.name == "not_sent_target_saturated")
        .unwrap();
    assert!(!s.passed);
    assert_eq!(s.observed, Some(19.0));
    let d = s.detail.as_deref().unwrap();
    assert!(
        d.contains("max_in_flight = 2") && d.contains("2 in flight at most"),
        "{d}"
    );
    assert_eq!(r.load.pacing.not_sent_target_saturated, 19);
}

#[test]
fn a_rate_lost_to_the_generator_is_invalid() {
    let r = half_sent(pacing(0, 20));
    assert_eq!(r.verdict, Verdict::Invalid);
    assert!(
        r.invalid_reasons[0].contains("the generator could not keep up")
            && r.invalid_reasons[0].contains("20 sends late through the generator"),
        "{:?}",
        r.invalid_reasons
    );
    // Nothing was held back by the target: that objective passed.
    let s = r
        .slos
        .iter()
        .find(|s| s.name == "not_sent_target_saturated")
        .unwrap();
    assert!(s.passed && s.detail.is_none());
}
