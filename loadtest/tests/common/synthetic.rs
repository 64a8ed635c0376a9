//! Reports of runs that recorded exactly what a test says, assembled and written by the real
//! report code (`build_report`, `write_all`): inputs for `compare` whose verdict is certain,
//! where two real runs on a shared machine differ by whatever else the machine was doing.

use std::path::Path;
use std::time::{Duration, SystemTime};

use loadtest::engine::{EngineResult, Outcome, Recorder, Schedule};
use loadtest::report::{self, EmulatorSection, Latency};
use loadtest::run::{build_report, Prepared};
use loadtest::scenario;

/// splitmix64, for latencies that never change with a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (a, b) = (self.unit(), self.unit());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    }
}

/// Writes `dir/report.json` (and the other three reports) for a run of `scenario_text` in which
/// every planned slot was sent on time and answered with status 200 after a log-normal latency
/// of median `median_ms` and log-spread 0.1 (about ±10 %), drawn from `seed`. The requests take turns.
pub fn write_report(dir: &Path, scenario_text: &str, median_ms: f64, seed: u64) {
    write_shaped_report(dir, scenario_text, |_| median_ms, seed);
}

/// Like [`write_report`], with the median a function of the send time (seconds): a run whose
/// service slowed half-way, say.
pub fn write_shaped_report(
    dir: &Path,
    scenario_text: &str,
    median_ms: impl Fn(f64) -> f64,
    seed: u64,
) {
    let sc = scenario::parse(Path::new("synthetic.toml"), scenario_text).unwrap();
    let schedule = Schedule::new(&sc.stages);
    let holds = schedule.holds().iter().map(|h| (h.start, h.end)).collect();
    let mut rec = Recorder::new(sc.requests.len(), holds);
    let mut rng = Rng(seed);
    let mut last = Duration::ZERO;
    for k in 0..schedule.total() {
        let sent = schedule.send_time(k).unwrap();
        let median = median_ms(sent.as_secs_f64());
        let latency = Duration::from_secs_f64(median * (0.1 * rng.normal()).exp() / 1000.0);
        last = last.max(sent + latency);
        rec.record(&Outcome {
            request: k as usize % sc.requests.len(),
            intended: sent,
            sent,
            done: sent + latency,
            status: Some(200),
            ok: true,
            cold_start: false,
            instance: None,
        });
    }
    let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seed);
    let emulator = EmulatorSection {
        detected: false,
        instances_seen: 0,
        cold_start_responses: 0,
        latency_excluding_cold_starts: Latency::from_hist(&rec.excluding_cold),
        status: None,
        error: None,
        observed: None,
    };
    let planned = schedule.total();
    let prepared = Prepared {
        scenario: sc,
        target: "http://127.0.0.1:1".into(),
        out: dir.to_path_buf(),
        duration_factor: 1.0,
        rps_factor: 1.0,
        shard: None,
        client: Default::default(),
        emu_fetch_every: loadtest::emu::collect::EVERY,
    };
    let result = EngineResult {
        recorder: rec,
        started,
        ended: started + last,
        interrupted: false,
        users: 16,
        planned,
        sent: planned,
        goose_error: None,
        pacing: Default::default(),
    };
    let r = build_report(&prepared, result, emulator, vec![]);
    report::write_all(&r, dir).unwrap();
}
