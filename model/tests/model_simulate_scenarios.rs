//! Runs the simulation scenarios under `tests/data/simulate/` (format in the README there) and
//! checks their expected ranges, so a new scenario is a file, not code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use emu_model::{
    overrides_from_annotations, parse_trace_csv, render_table, simulate, AutoscalerConfig,
    ColdStartDelay, Load, Profile, ServiceTime, SimService, Stage,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    profile: String,
    concurrency: u32,
    #[serde(default)]
    min_instances: u32,
    #[serde(default)]
    max_instances: u32,
    initial_scale: Option<u32>,
    startup_ms: Option<u64>,
    startup_p50_ms: Option<u64>,
    startup_p99_ms: Option<u64>,
    request_timeout_s: Option<u64>,
    queue_timeout_s: Option<u64>,
    seed: u64,
    service_ms: Option<u64>,
    service_p50_ms: Option<u64>,
    service_p99_ms: Option<u64>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    csv: Option<String>,
    #[serde(default)]
    stages: Vec<StageSpec>,
    expect: Expectations,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageSpec {
    rps: f64,
    ramp_s: u64,
    hold_s: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectations {
    #[serde(default)]
    totals: BTreeMap<String, [f64; 2]>,
    #[serde(default)]
    at: Vec<AtSecond>,
}

#[derive(Debug, Deserialize)]
struct AtSecond {
    second: u64,
    #[serde(flatten)]
    fields: BTreeMap<String, [f64; 2]>,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn build(s: &Scenario, dir: &Path) -> Result<(SimService, Load), String> {
    let profile: Profile = s.profile.parse().map_err(|e| format!("{e}"))?;
    let mut cfg = AutoscalerConfig::for_profile(profile, s.concurrency);
    overrides_from_annotations(&s.annotations)
        .map_err(|e| e.to_string())?
        .apply(&mut cfg);
    if let Some(i) = s.initial_scale {
        cfg.initial_scale = i;
    }
    let startup = match (s.startup_ms, s.startup_p50_ms, s.startup_p99_ms) {
        (Some(f), None, None) => ColdStartDelay::Fixed(ms(f)),
        (None, Some(p50), Some(p99)) => ColdStartDelay::LogNormal {
            p50: ms(p50),
            p99: ms(p99),
        },
        (None, None, None) => ColdStartDelay::None,
        _ => return Err("give startup_ms, or startup_p50_ms and startup_p99_ms".into()),
    };
    let mut svc = SimService::new(cfg, startup);
    svc.concurrency = s.concurrency;
    svc.min_instances = s.min_instances;
    svc.max_instances = s.max_instances;
    if let Some(t) = s.request_timeout_s {
        svc.request_timeout = Duration::from_secs(t);
    }
    svc.queue_timeout = s.queue_timeout_s.map(Duration::from_secs);
    svc.validate().map_err(|e| e.to_string())?;

    let load = match &s.csv {
        Some(file) => {
            let text =
                std::fs::read_to_string(dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
            Load::Trace(parse_trace_csv(&text).map_err(|e| format!("{file}: {e}"))?)
        }
        None => {
            let service_time = match (s.service_ms, s.service_p50_ms, s.service_p99_ms) {
                (Some(f), None, None) => ServiceTime::Fixed(ms(f)),
                (None, Some(p50), Some(p99)) => ServiceTime::LogNormal {
                    p50: ms(p50),
                    p99: ms(p99),
                },
                _ => return Err("give service_ms, or service_p50_ms and service_p99_ms".into()),
            };
            Load::Stages {
                stages: s
                    .stages
                    .iter()
                    .map(|st| Stage {
                        rps: st.rps,
                        ramp: Duration::from_secs(st.ramp_s),
                        hold: Duration::from_secs(st.hold_s),
                    })
                    .collect(),
                service_time,
            }
        }
    };
    load.validate().map_err(|e| e.to_string())?;
    Ok((svc, load))
}

/// Checks `[lo, hi]` against the numeric (or boolean, as 0/1) field `name` of `obj`.
fn check(
    what: &str,
    obj: &serde_json::Value,
    name: &str,
    range: [f64; 2],
    failures: &mut Vec<String>,
) {
    let v = match obj.get(name) {
        Some(serde_json::Value::Bool(b)) => f64::from(u8::from(*b)),
        Some(v) => match v.as_f64() {
            Some(f) => f,
            None => {
                failures.push(format!("{what}: `{name}` is not a number"));
                return;
            }
        },
        None => {
            failures.push(format!("{what}: no field `{name}`"));
            return;
        }
    };
    let [lo, hi] = range;
    if v < lo || v > hi {
        failures.push(format!("{what}: {name} = {v} not in [{lo}, {hi}]"));
    }
}

fn run(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let scenario: Scenario = toml::from_str(&text).map_err(|e| e.to_string())?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let (svc, load) = build(&scenario, dir)?;
    let result = simulate(&svc, &load, scenario.seed);
    let json = serde_json::to_value(&result).map_err(|e| e.to_string())?;

    let mut failures = Vec::new();
    for (name, range) in &scenario.expect.totals {
        check("totals", &json["totals"], name, *range, &mut failures);
    }
    for at in &scenario.expect.at {
        let Some(row) = json["per_second"].get(at.second as usize) else {
            failures.push(format!("the run has no second {}", at.second));
            continue;
        };
        for (name, range) in &at.fields {
            let what = format!("second {}", at.second);
            check(&what, row, name, *range, &mut failures);
        }
    }
    if std::env::var_os("EMU_TRACE_PRINT").is_some() {
        println!("{}\n{}", path.display(), render_table(&result));
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}\n  {}\n{}",
        scenario.description,
        failures.join("\n  "),
        render_table(&result)
    ))
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/simulate");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn simulation_scenarios_stay_within_expected_ranges() {
    let files = scenario_files();
    assert!(
        files.len() >= 4,
        "expected the scenario files, found {files:?}"
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| run(f).err().map(|e| format!("{}: {e}", f.display())))
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
