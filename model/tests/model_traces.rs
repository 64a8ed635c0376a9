//! Replays the trace files under `tests/data/autoscaler/` (format in the README there) and
//! checks each expected range, in the manner of vector's adaptive-concurrency tests: the files
//! say what the KPA must do; this runner only plays them on a fake clock.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use emu_model::{overrides_from_annotations, Autoscaler, AutoscalerConfig, Decision, Profile};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceFile {
    description: String,
    profile: String,
    container_concurrency: u32,
    #[serde(default)]
    startup_secs: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    load: Vec<Segment>,
    expect: Vec<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Segment {
    secs: u64,
    concurrency: f64,
    to: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    at: u64,
    desired: [u32; 2],
    panicking: Option<bool>,
}

/// Total concurrency during second `t` (1-based: the sample recorded at `t` covers `t-1..t`).
fn concurrency_at(load: &[Segment], t: u64) -> f64 {
    let mut start = 0;
    for seg in load {
        if t <= start + seg.secs {
            let Some(to) = seg.to else {
                return seg.concurrency;
            };
            let frac = (t - start) as f64 / seg.secs.max(1) as f64;
            return seg.concurrency + (to - seg.concurrency) * frac;
        }
        start += seg.secs;
    }
    0.0
}

/// Ready instances that follow decisions after a start-up delay; scale-in removes starting
/// instances first, as the simulator does.
struct Instances {
    ready: u32,
    starting: VecDeque<u64>,
    startup: u64,
}

impl Instances {
    fn tick(&mut self, now: u64) {
        while self.starting.front().is_some_and(|&r| r <= now) {
            self.starting.pop_front();
            self.ready += 1;
        }
    }

    fn reconcile(&mut self, now: u64, desired: u32) {
        let total = self.ready + self.starting.len() as u32;
        if desired > total {
            for _ in total..desired {
                self.starting.push_back(now + self.startup);
            }
        } else {
            let mut remove = total - desired;
            while remove > 0 && self.starting.pop_back().is_some() {
                remove -= 1;
            }
            self.ready -= remove.min(self.ready);
        }
        self.tick(now);
    }
}

fn run(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let trace: TraceFile = toml::from_str(&text).map_err(|e| e.to_string())?;
    let profile: Profile = trace.profile.parse().map_err(|e| format!("{e}"))?;
    let mut cfg = AutoscalerConfig::for_profile(profile, trace.container_concurrency);
    overrides_from_annotations(&trace.annotations)
        .map_err(|e| e.to_string())?
        .apply(&mut cfg);
    cfg.validate().map_err(|e| e.to_string())?;

    let end: u64 = trace.load.iter().map(|s| s.secs).sum();
    let mut scaler = Autoscaler::new(cfg.clone(), Duration::ZERO);
    let mut inst = Instances {
        ready: cfg.initial_scale.max(cfg.min_scale),
        starting: VecDeque::new(),
        startup: trace.startup_secs,
    };
    let mut decisions: BTreeMap<u64, Decision> = BTreeMap::new();
    for t in 1..=end {
        let now = Duration::from_secs(t);
        inst.tick(t);
        scaler.record(now, concurrency_at(&trace.load, t));
        if t % 2 == 0 {
            let d = scaler.decide(now, inst.ready);
            inst.reconcile(t, d.desired);
            decisions.insert(t, d);
        }
    }

    let mut failures = Vec::new();
    for e in &trace.expect {
        let Some(d) = decisions.get(&e.at) else {
            failures.push(format!(
                "no decision at {} s (decisions are every 2 s)",
                e.at
            ));
            continue;
        };
        let [lo, hi] = e.desired;
        if d.desired < lo || d.desired > hi {
            failures.push(format!(
                "at {} s desired {} not in [{lo}, {hi}] (stable {:.2}, panic {:.2}, ready {}, {:?})",
                e.at, d.desired, d.stable_avg, d.panic_avg, d.ready, d.reason
            ));
        }
        if let Some(p) = e.panicking {
            if d.panicking != p {
                failures.push(format!(
                    "at {} s panicking {} expected {p}",
                    e.at, d.panicking
                ));
            }
        }
    }
    let trajectory: Vec<String> = decisions
        .iter()
        .map(|(t, d)| format!("{t}:{}{}", d.desired, if d.panicking { "p" } else { "" }))
        .collect();
    // `EMU_TRACE_PRINT=1 cargo test -p emu-model --test model_traces -- --nocapture` shows every run.
    if std::env::var_os("EMU_TRACE_PRINT").is_some() {
        println!("{}: {}", path.display(), trajectory.join(" "));
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}\n  {}\n  trajectory (second:desired, p = panicking): {}",
        trace.description,
        failures.join("\n  "),
        trajectory.join(" ")
    ))
}

fn trace_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/autoscaler");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn autoscaler_traces_stay_within_expected_ranges() {
    let files = trace_files();
    assert!(
        files.len() >= 8,
        "expected the trace files, found {files:?}"
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| run(f).err().map(|e| format!("{}: {e}", f.display())))
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn a_wrong_expectation_is_caught() {
    // The runner must be able to fail: the steady trace with an impossible range.
    let dir = std::env::temp_dir().join(format!("emu-model-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("wrong.toml");
    std::fs::write(
        &path,
        "description = \"wrong on purpose\"\nprofile = \"knative\"\ncontainer_concurrency = 10\n\
         [[load]]\nsecs = 60\nconcurrency = 35.0\n[[expect]]\nat = 60\ndesired = [7, 9]\n",
    )
    .unwrap();
    let err = run(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.contains("desired 5 not in [7, 9]"), "{err}");
}
