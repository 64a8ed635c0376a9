//! Load for `emu simulate`: staged request rates, or a per-second trace (from a CSV file or a
//! loadtest `report.json`), turned into a per-second plan the simulator walks through.

use std::time::Duration;

use serde::Serialize;

use super::ModelError;

/// One stage of a staged load: ramp linearly from the previous stage's rate (0 before the
/// first stage) to `rps` over `ramp`, then hold `rps` for `hold`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub rps: f64,
    pub ramp: Duration,
    pub hold: Duration,
}

/// How long the service takes to handle one request once an instance has taken it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ServiceTime {
    Fixed(Duration),
    /// Log-normal, given by its median and 99th percentile: real latencies have a long tail.
    LogNormal {
        p50: Duration,
        p99: Duration,
    },
}

/// One second of a recorded load: how many requests arrived and how long each took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceSecond {
    pub second: u64,
    pub requests: f64,
    pub service_time: Duration,
}

/// What arrives at the service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Load {
    Stages {
        stages: Vec<Stage>,
        service_time: ServiceTime,
    },
    Trace(Vec<TraceSecond>),
}

/// Service time of a trace CSV that has no `service_ms` column.
pub const DEFAULT_TRACE_SERVICE_TIME: Duration = Duration::from_millis(100);

/// The load of one simulated second: `requests` spread evenly over the second.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedSecond {
    pub requests: f64,
    pub service: ServiceTime,
}

/// The longest load emu simulates: a week, second by second.
pub const MAX_LOAD_SECS: u64 = 7 * 24 * 3600;
/// The highest request rate emu simulates (requests are simulated one by one).
pub const MAX_RPS: f64 = 1_000_000.0;

impl Load {
    /// Checks that the load is something the simulator can run: at most a week long, rates
    /// finite and within [`MAX_RPS`], service times within an hour.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &'static str, reason: String| Err(ModelError::Config { field, reason });
        let check_service = |s: &ServiceTime| match s {
            ServiceTime::Fixed(d) if *d > Duration::from_secs(3600) => bad(
                "service_time",
                format!("{d:?} is longer than the 1 h maximum request timeout"),
            ),
            ServiceTime::LogNormal { p50, p99 } if p99 < p50 || p50.is_zero() => bad(
                "service_time",
                format!("log-normal needs 0 < p50 <= p99, got p50 {p50:?}, p99 {p99:?}"),
            ),
            ServiceTime::LogNormal { p99, .. } if *p99 > Duration::from_secs(3600) => bad(
                "service_time",
                format!("p99 {p99:?} is longer than the 1 h maximum request timeout"),
            ),
            _ => Ok(()),
        };
        match self {
            Load::Stages {
                stages,
                service_time,
            } => {
                check_service(service_time)?;
                for (i, s) in stages.iter().enumerate() {
                    if !(s.rps.is_finite() && (0.0..=MAX_RPS).contains(&s.rps)) {
                        return bad(
                            "rps",
                            format!("stage {}: {} must be within 0..={MAX_RPS}", i + 1, s.rps),
                        );
                    }
                }
            }
            Load::Trace(trace) => {
                for t in trace {
                    if !(t.requests.is_finite() && (0.0..=MAX_RPS).contains(&t.requests)) {
                        return bad(
                            "requests",
                            format!(
                                "second {}: {} must be within 0..={MAX_RPS}",
                                t.second, t.requests
                            ),
                        );
                    }
                    check_service(&ServiceTime::Fixed(t.service_time))?;
                }
            }
        }
        if self.duration_secs() > MAX_LOAD_SECS {
            return bad(
                "load",
                format!("{} s is longer than a week", self.duration_secs()),
            );
        }
        Ok(())
    }

    /// How many seconds of load there are.
    pub fn duration_secs(&self) -> u64 {
        match self {
            Load::Stages { stages, .. } => {
                let total: Duration = stages.iter().map(|s| s.ramp + s.hold).sum();
                total.as_secs_f64().ceil() as u64
            }
            Load::Trace(t) => t.iter().map(|s| s.second + 1).max().unwrap_or(0),
        }
    }

    /// The per-second plan. A ramp's rate is taken at the middle of each second, so a ramp's
    /// total requests match its area. Capped at [`MAX_LOAD_SECS`] (see [`Load::validate`]).
    pub(crate) fn plan(&self) -> Vec<PlannedSecond> {
        let n = self.duration_secs().min(MAX_LOAD_SECS) as usize;
        match self {
            Load::Stages {
                stages,
                service_time,
            } => (0..n)
                .map(|i| PlannedSecond {
                    requests: stage_rate_at(stages, i as f64 + 0.5),
                    service: service_time.clone(),
                })
                .collect(),
            Load::Trace(trace) => {
                let mut plan = vec![
                    PlannedSecond {
                        requests: 0.0,
                        service: ServiceTime::Fixed(DEFAULT_TRACE_SERVICE_TIME),
                    };
                    n
                ];
                for s in trace.iter().filter(|s| (s.second as usize) < n) {
                    let p = &mut plan[s.second as usize];
                    p.requests += s.requests.max(0.0);
                    p.service = ServiceTime::Fixed(s.service_time);
                }
                plan
            }
        }
    }
}

/// The rate of a staged load at `t` seconds after the start.
fn stage_rate_at(stages: &[Stage], t: f64) -> f64 {
    let mut start = 0.0;
    let mut prev = 0.0;
    for s in stages {
        let ramp = s.ramp.as_secs_f64();
        let hold = s.hold.as_secs_f64();
        if t < start + ramp {
            return prev + (s.rps - prev) * (t - start) / ramp;
        }
        if t < start + ramp + hold {
            return s.rps;
        }
        start += ramp + hold;
        prev = s.rps;
    }
    0.0
}

/// Reads a trace CSV: a header `second,requests` or `second,requests,service_ms`, then one row
/// per second. Blank lines and lines starting with `#` are skipped; seconds must increase.
/// Without `service_ms`, each request takes [`DEFAULT_TRACE_SERVICE_TIME`].
pub fn parse_trace_csv(text: &str) -> Result<Vec<TraceSecond>, ModelError> {
    let mut rows = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let Some((hline, header)) = rows.next() else {
        return Err(ModelError::Trace {
            line: 1,
            reason: "empty trace: expected a header \"second,requests[,service_ms]\"".into(),
        });
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let with_service = match cols.as_slice() {
        ["second", "requests"] => false,
        ["second", "requests", "service_ms"] => true,
        _ => {
            return Err(ModelError::Trace {
                line: hline,
                reason: format!(
                    "header {header:?}: expected \"second,requests\" or \
                     \"second,requests,service_ms\""
                ),
            })
        }
    };
    let mut out: Vec<TraceSecond> = Vec::new();
    for (line, row) in rows {
        let err = |reason: String| ModelError::Trace { line, reason };
        let fields: Vec<&str> = row.split(',').map(str::trim).collect();
        if fields.len() != cols.len() {
            return Err(err(format!(
                "{} fields, expected {} ({header})",
                fields.len(),
                cols.len()
            )));
        }
        let second: u64 = fields[0]
            .parse()
            .map_err(|_| err(format!("second {:?} is not a whole number", fields[0])))?;
        if second >= MAX_LOAD_SECS {
            return Err(err(format!("second {second} is beyond a week")));
        }
        let requests: f64 = match fields[1].parse::<f64>() {
            Ok(r) if r.is_finite() && r >= 0.0 => r,
            _ => {
                return Err(err(format!(
                    "requests {:?} is not a number of 0 or more",
                    fields[1]
                )))
            }
        };
        let service_time = if with_service {
            match fields[2].parse::<f64>() {
                Ok(ms) if (0.0..=3_600_000.0).contains(&ms) => Duration::from_secs_f64(ms / 1000.0),
                _ => {
                    return Err(err(format!(
                        "service_ms {:?} is not a number of milliseconds within 0..=3600000",
                        fields[2]
                    )))
                }
            }
        } else {
            DEFAULT_TRACE_SERVICE_TIME
        };
        if let Some(prev) = out.last() {
            if second <= prev.second {
                return Err(err(format!(
                    "second {second} does not come after second {}",
                    prev.second
                )));
            }
        }
        out.push(TraceSecond {
            second,
            requests,
            service_time,
        });
    }
    Ok(out)
}

/// Turns a loadtest `report.json` into a trace: each `timeline` entry's `requests` (or `rps`
/// when `requests` is absent) arrive in its `second`, each taking its `p50_ms`. A second with
/// no latency (no requests completed) reuses the previous second's.
pub fn load_from_report_json(v: &serde_json::Value) -> Result<Load, ModelError> {
    let timeline = v
        .get("timeline")
        .and_then(|t| t.as_array())
        .ok_or_else(|| ModelError::Report("no `timeline` array".into()))?;
    let mut out: Vec<TraceSecond> = Vec::with_capacity(timeline.len());
    let mut last_service = None;
    for (i, entry) in timeline.iter().enumerate() {
        let err = |what: &str| ModelError::Report(format!("timeline[{i}]: {what}"));
        let second = entry
            .get("second")
            .and_then(serde_json::Value::as_u64)
            .filter(|s| *s < MAX_LOAD_SECS)
            .ok_or_else(|| err("`second` missing, not a whole number, or beyond a week"))?;
        let requests = entry
            .get("requests")
            .and_then(serde_json::Value::as_f64)
            .or_else(|| entry.get("rps").and_then(serde_json::Value::as_f64))
            .filter(|r| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| err("`requests` (or `rps`) missing or negative"))?;
        let p50 = entry
            .get("p50_ms")
            .and_then(serde_json::Value::as_f64)
            .filter(|ms| ms.is_finite() && *ms > 0.0 && *ms <= 3_600_000.0)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0));
        let service_time = match p50.or(last_service) {
            Some(d) => d,
            None if requests == 0.0 => DEFAULT_TRACE_SERVICE_TIME,
            None => return Err(err("`p50_ms` missing, and no earlier second has one")),
        };
        last_service = Some(service_time);
        if let Some(prev) = out.last() {
            if second <= prev.second {
                return Err(err(&format!(
                    "second {second} does not come after second {}",
                    prev.second
                )));
            }
        }
        out.push(TraceSecond {
            second,
            requests,
            service_time,
        });
    }
    if out.is_empty() {
        return Err(ModelError::Report("`timeline` is empty".into()));
    }
    Ok(Load::Trace(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_and_without_service_time() {
        let t = parse_trace_csv("second,requests\n0,5\n# pause\n\n2,7.5\n").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].second, 2);
        assert_eq!(t[1].requests, 7.5);
        assert_eq!(t[0].service_time, DEFAULT_TRACE_SERVICE_TIME);
        let t = parse_trace_csv("second,requests,service_ms\n0,5,250\n").unwrap();
        assert_eq!(t[0].service_time, Duration::from_millis(250));
    }

    #[test]
    fn csv_errors_name_the_line() {
        let e = parse_trace_csv("second,requests\n0,5\n1,lots\n").unwrap_err();
        assert!(matches!(e, ModelError::Trace { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("line 3"));
        let e = parse_trace_csv("sec,req\n").unwrap_err();
        assert!(matches!(e, ModelError::Trace { line: 1, .. }), "{e}");
        let e = parse_trace_csv("second,requests\n5,1\n5,1\n").unwrap_err();
        assert!(matches!(e, ModelError::Trace { line: 3, .. }), "{e}");
        let e = parse_trace_csv("second,requests,service_ms\n0,1\n").unwrap_err();
        assert!(matches!(e, ModelError::Trace { line: 2, .. }), "{e}");
    }

    #[test]
    fn report_json_timeline() {
        let v = serde_json::json!({"schema_version": 1, "timeline": [
            {"second": 0, "requests": 10, "rps": 10.0, "p50_ms": 20.0, "p95_ms": 40.0},
            {"second": 1, "requests": 0, "rps": 0.0, "p50_ms": null},
            {"second": 2, "requests": 12, "rps": 12.0, "p50_ms": 30.0}
        ]});
        let Load::Trace(t) = load_from_report_json(&v).unwrap() else {
            panic!("expected a trace")
        };
        assert_eq!(t.len(), 3);
        assert_eq!(t[1].service_time, Duration::from_millis(20));
        assert_eq!(t[2].service_time, Duration::from_millis(30));
        let bad = serde_json::json!({"timeline": [{"second": 0}]});
        let e = load_from_report_json(&bad).unwrap_err();
        assert!(e.to_string().contains("timeline[0]"), "{e}");
        assert!(load_from_report_json(&serde_json::json!({})).is_err());
    }

    #[test]
    fn stages_ramp_linearly_from_previous() {
        let stages = vec![
            Stage {
                rps: 10.0,
                ramp: Duration::from_secs(10),
                hold: Duration::from_secs(5),
            },
            Stage {
                rps: 0.0,
                ramp: Duration::ZERO,
                hold: Duration::from_secs(5),
            },
        ];
        assert!((stage_rate_at(&stages, 5.0) - 5.0).abs() < 1e-9);
        assert_eq!(stage_rate_at(&stages, 12.0), 10.0);
        assert_eq!(stage_rate_at(&stages, 16.0), 0.0);
        let load = Load::Stages {
            stages,
            service_time: ServiceTime::Fixed(Duration::from_millis(10)),
        };
        assert_eq!(load.duration_secs(), 20);
        let total: f64 = load.plan().iter().map(|p| p.requests).sum();
        assert!((total - 100.0).abs() < 1e-9, "{total}");
    }

    #[test]
    fn validate_rejects_what_cannot_be_simulated() {
        let stage = |rps: f64, hold: u64| Stage {
            rps,
            ramp: Duration::ZERO,
            hold: Duration::from_secs(hold),
        };
        let fixed = ServiceTime::Fixed(Duration::from_millis(10));
        let ok = Load::Stages {
            stages: vec![stage(10.0, 60)],
            service_time: fixed.clone(),
        };
        ok.validate().unwrap();
        let negative = Load::Stages {
            stages: vec![stage(10.0, 60), stage(-1.0, 60)],
            service_time: fixed.clone(),
        };
        let e = negative.validate().unwrap_err();
        assert!(e.to_string().contains("stage 2"), "{e}");
        let too_long = Load::Stages {
            stages: vec![stage(1.0, MAX_LOAD_SECS + 1)],
            service_time: fixed,
        };
        assert!(too_long.validate().is_err());
        let inverted = Load::Stages {
            stages: vec![stage(1.0, 10)],
            service_time: ServiceTime::LogNormal {
                p50: Duration::from_millis(100),
                p99: Duration::from_millis(50),
            },
        };
        assert!(inverted.validate().is_err());
    }
}
