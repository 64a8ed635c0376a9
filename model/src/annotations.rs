//! Knative per-revision autoscaling annotations → [`AutoscalerOverrides`].
//!
//! A Cloud Run service YAML carries its scaling knobs as annotations on
//! `spec.template.metadata`. Values are written the way Knative writes them ("60s", "6m",
//! "70", "10.0"). A typo in an `autoscaling.knative.dev/` key is an error rather than a silent
//! default, because a misspelt `minScale` would quietly change how the service behaves.
//!
//! `run.googleapis.com/` annotations are not autoscaling knobs locally: `cpu-throttling` and
//! `startup-cpu-boost` belong to the instance runner, the rest only make sense in Google's
//! control plane. They are left for other parts of emu and ignored here.

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::{AutoscalerOverrides, TARGET_MIN, WINDOW_MAX, WINDOW_MIN};

/// The annotation prefix of Knative's autoscaler.
pub const PREFIX: &str = "autoscaling.knative.dev/";

/// Which annotation is wrong, its value, and why; shown to the user as is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("annotation {key}: {value:?} {reason}")]
pub struct AnnotationError {
    pub key: String,
    pub value: String,
    pub reason: String,
}

/// Reads every `autoscaling.knative.dev/` annotation into overrides. Keys (after the prefix):
/// `window`, `target`, `target-utilization-percentage`, `panic-window-percentage`,
/// `panic-threshold-percentage`, `scale-down-delay`, `scale-to-zero-pod-retention-period`,
/// `initial-scale`/`initialScale`, `activation-scale`, `min-scale`/`minScale`,
/// `max-scale`/`maxScale`; `class` must be the KPA, `metric` must be `concurrency` (emu
/// models concurrency scaling only); `target-burst-capacity` is accepted and has no effect
/// (it only decides whether Knative's activator stays in the request path, and emu's front
/// door always is). Anything else under the prefix is an error.
pub fn overrides_from_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<AutoscalerOverrides, AnnotationError> {
    let mut o = AutoscalerOverrides::default();
    // Knative rejects a revision that sets both spellings of the same knob.
    let mut seen: BTreeMap<&'static str, &str> = BTreeMap::new();
    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(PREFIX) else {
            continue;
        };
        let err = |reason: String| AnnotationError {
            key: key.clone(),
            value: value.clone(),
            reason,
        };
        let v = value.trim();
        let canonical: &'static str =
            match name {
                "minScale" | "min-scale" => "min-scale",
                "maxScale" | "max-scale" => "max-scale",
                "initialScale" | "initial-scale" => "initial-scale",
                "window" => "window",
                "target" => "target",
                "target-utilization-percentage" => "target-utilization-percentage",
                "panic-window-percentage" => "panic-window-percentage",
                "panic-threshold-percentage" => "panic-threshold-percentage",
                "scale-down-delay" => "scale-down-delay",
                "scale-to-zero-pod-retention-period" => "scale-to-zero-pod-retention-period",
                "activation-scale" => "activation-scale",
                "class" => "class",
                "metric" => "metric",
                "target-burst-capacity" => "target-burst-capacity",
                _ => return Err(err(
                    "is not an autoscaling annotation emu knows; expected one of window, target, \
                     target-utilization-percentage, panic-window-percentage, \
                     panic-threshold-percentage, scale-down-delay, \
                     scale-to-zero-pod-retention-period, initial-scale, activation-scale, \
                     min-scale (minScale), max-scale (maxScale), class, metric, \
                     target-burst-capacity"
                        .to_string(),
                )),
            };
        if let Some(other) = seen.insert(canonical, name) {
            return Err(err(format!(
                "is set twice: both {PREFIX}{other} and {PREFIX}{name}; keep one"
            )));
        }
        match canonical {
            "min-scale" => o.min_scale = Some(parse_count(v).map_err(err)?),
            "max-scale" => o.max_scale = Some(parse_count(v).map_err(err)?),
            "initial-scale" => o.initial_scale = Some(parse_count(v).map_err(err)?),
            "activation-scale" => {
                let n = parse_count(v).map_err(err)?;
                if n == 0 {
                    return Err(err("must be at least 1".into()));
                }
                o.activation_scale = Some(n);
            }
            "window" => {
                let d = parse_go_duration(v).map_err(err)?;
                if d < WINDOW_MIN || d > WINDOW_MAX {
                    return Err(err("must be within 6s..=1h".into()));
                }
                if d.subsec_nanos() != 0 {
                    return Err(err("must be whole seconds".into()));
                }
                o.stable_window = Some(d);
            }
            "target" => {
                let t = parse_float(v).map_err(err)?;
                if t < TARGET_MIN {
                    return Err(err(format!("must be at least {TARGET_MIN}")));
                }
                o.target = Some(t);
            }
            "target-utilization-percentage" => {
                let p = parse_float(v).map_err(err)?;
                if !(1.0..=100.0).contains(&p) {
                    return Err(err("must be a percentage within 1..=100".into()));
                }
                o.target_utilization = Some(p / 100.0);
            }
            "panic-window-percentage" => {
                let p = parse_float(v).map_err(err)?;
                if !(1.0..=100.0).contains(&p) {
                    return Err(err("must be a percentage within 1..=100".into()));
                }
                o.panic_window_percentage = Some(p);
            }
            "panic-threshold-percentage" => {
                let p = parse_float(v).map_err(err)?;
                if !(110.0..=1000.0).contains(&p) {
                    return Err(err("must be a percentage within 110..=1000".into()));
                }
                o.panic_threshold_percentage = Some(p);
            }
            "scale-down-delay" => {
                let d = parse_go_duration(v).map_err(err)?;
                if d > WINDOW_MAX || d.subsec_nanos() != 0 {
                    return Err(err("must be whole seconds within 0s..=1h".into()));
                }
                o.scale_down_delay = Some(d);
            }
            "scale-to-zero-pod-retention-period" => {
                let d = parse_go_duration(v).map_err(err)?;
                if d > WINDOW_MAX {
                    return Err(err("must be within 0s..=1h".into()));
                }
                o.scale_to_zero_retention = Some(d);
            }
            "class" => {
                if v != "kpa.autoscaling.knative.dev" {
                    return Err(err(
                        "is not supported: emu models the KPA (kpa.autoscaling.knative.dev) only"
                            .into(),
                    ));
                }
            }
            "metric" => {
                if v != "concurrency" {
                    return Err(err(
                        "is not supported: emu scales on concurrency only".into()
                    ));
                }
            }
            // Validated as a number so a typo still surfaces, then ignored (see above).
            _ => {
                let t = parse_float(v).map_err(err)?;
                if t < 0.0 && t != -1.0 {
                    return Err(err("must be non-negative or -1".into()));
                }
            }
        }
    }
    if let (Some(min), Some(max)) = (o.min_scale, o.max_scale) {
        if max != 0 && min > max {
            let key = format!(
                "{PREFIX}{}",
                seen.get("min-scale").copied().unwrap_or("min-scale")
            );
            let value = min.to_string();
            return Err(AnnotationError {
                key,
                value,
                reason: format!("is above the max scale {max}"),
            });
        }
    }
    Ok(o)
}

fn parse_count(v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .map_err(|_| "must be a whole number of instances, 0 or more".to_string())
}

fn parse_float(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(f),
        _ => Err("must be a number".to_string()),
    }
}

/// Parses a Go `time.ParseDuration` string ("60s", "6m", "1m30s", "1.5h", "500ms", "0"), the
/// format Knative annotations use. Negative durations are refused: no knob accepts them.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = "must be a duration like \"60s\", \"6m\" or \"1m30s\"";
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(HINT.to_string());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0.0_f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{HINT} (missing unit)"))?;
        if num_len == 0 {
            return Err(HINT.to_string());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| HINT.to_string())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("{HINT} (unknown unit)")),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err(HINT.to_string());
    }
    // Round to whole nanoseconds so "1.5s" is exactly 1.5 s.
    Ok(Duration::from_nanos((total * 1e9).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_go_duration("6m").unwrap(), Duration::from_secs(360));
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_go_duration("60").is_err());
        assert!(parse_go_duration("-5s").is_err());
        assert!(parse_go_duration("5 days").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn knative_annotations_become_overrides() {
        let o = overrides_from_annotations(&ann(&[
            ("autoscaling.knative.dev/window", "6m"),
            ("autoscaling.knative.dev/target", "10"),
            (
                "autoscaling.knative.dev/target-utilization-percentage",
                "70",
            ),
            ("autoscaling.knative.dev/panic-window-percentage", "10.0"),
            ("autoscaling.knative.dev/panic-threshold-percentage", "150"),
            ("autoscaling.knative.dev/scale-down-delay", "30s"),
            (
                "autoscaling.knative.dev/scale-to-zero-pod-retention-period",
                "1m30s",
            ),
            ("autoscaling.knative.dev/initial-scale", "3"),
            ("autoscaling.knative.dev/minScale", "1"),
            ("autoscaling.knative.dev/maxScale", "20"),
            ("autoscaling.knative.dev/metric", "concurrency"),
            ("run.googleapis.com/cpu-throttling", "false"),
            ("unrelated/key", "whatever"),
        ]))
        .unwrap();
        assert_eq!(o.stable_window, Some(Duration::from_secs(360)));
        assert_eq!(o.target, Some(10.0));
        assert_eq!(o.target_utilization, Some(0.7));
        assert_eq!(o.panic_window_percentage, Some(10.0));
        assert_eq!(o.panic_threshold_percentage, Some(150.0));
        assert_eq!(o.scale_down_delay, Some(Duration::from_secs(30)));
        assert_eq!(o.scale_to_zero_retention, Some(Duration::from_secs(90)));
        assert_eq!(o.initial_scale, Some(3));
        assert_eq!(o.min_scale, Some(1));
        assert_eq!(o.max_scale, Some(20));
        assert_eq!(o.container_concurrency, None);
    }

    #[test]
    fn kebab_spellings_work_too() {
        let o = overrides_from_annotations(&ann(&[
            ("autoscaling.knative.dev/min-scale", "2"),
            ("autoscaling.knative.dev/max-scale", "0"),
        ]))
        .unwrap();
        assert_eq!((o.min_scale, o.max_scale), (Some(2), Some(0)));
    }

    fn err_key(pairs: &[(&str, &str)]) -> String {
        match overrides_from_annotations(&ann(pairs)) {
            Err(e) => {
                assert!(e.to_string().contains(&e.key), "{e}");
                e.key
            }
            Ok(o) => panic!("expected an error for {pairs:?}, got {o:?}"),
        }
    }

    #[test]
    fn bad_annotations_name_the_key() {
        let w = "autoscaling.knative.dev/window";
        assert_eq!(err_key(&[(w, "60")]), w);
        assert_eq!(err_key(&[(w, "2s")]), w);
        assert_eq!(err_key(&[(w, "2h")]), w);
        let t = "autoscaling.knative.dev/target-utilization-percentage";
        assert_eq!(err_key(&[(t, "150")]), t);
        assert_eq!(err_key(&[(t, "seventy")]), t);
        let m = "autoscaling.knative.dev/maxScale";
        assert_eq!(err_key(&[(m, "-1")]), m);
        assert_eq!(err_key(&[(m, "2.5")]), m);
        let typo = "autoscaling.knative.dev/minscale";
        assert_eq!(err_key(&[(typo, "1")]), typo);
        let p = "autoscaling.knative.dev/panic-threshold-percentage";
        assert_eq!(err_key(&[(p, "100")]), p);
        let c = "autoscaling.knative.dev/class";
        assert_eq!(err_key(&[(c, "hpa.autoscaling.knative.dev")]), c);
        let met = "autoscaling.knative.dev/metric";
        assert_eq!(err_key(&[(met, "rps")]), met);
        // Both spellings of one knob: the second (in key order) is named.
        let both = err_key(&[
            ("autoscaling.knative.dev/min-scale", "1"),
            ("autoscaling.knative.dev/minScale", "1"),
        ]);
        assert_eq!(both, "autoscaling.knative.dev/minScale");
        // min above max names the min annotation.
        let k = err_key(&[
            ("autoscaling.knative.dev/minScale", "5"),
            ("autoscaling.knative.dev/maxScale", "2"),
        ]);
        assert_eq!(k, "autoscaling.knative.dev/minScale");
    }
}
