//! Durations as people write them in config: `300` (seconds), `1.5` (seconds), `"300s"`, `"5m"`,
//! `"250ms"` (humantime's grammar, which also reads Knative's `"60s"`/`"6m"`).

use std::time::Duration;

use serde::Deserialize;

/// Parses `"300s"`, `"1m 30s"`, `"250ms"`, `"1.5s"` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return secs_to_duration(secs).ok_or_else(|| format!("{text:?} is not a duration"));
    }
    if let Ok(d) = humantime::parse_duration(t) {
        return Ok(d);
    }
    // humantime has no fractions: "1.5s", "0.25m".
    for (unit, scale) in [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)] {
        if let Some(num) = t.strip_suffix(unit) {
            if let Some(d) = num
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|n| secs_to_duration(n * scale))
            {
                return Ok(d);
            }
        }
    }
    Err(format!(
        "{text:?} is not a duration: write it like \"300s\", \"5m\", \"250ms\" or a number of seconds"
    ))
}

fn secs_to_duration(secs: f64) -> Option<Duration> {
    (secs.is_finite() && (0.0..1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// A duration field in TOML: a number of seconds or a string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum DurationField {
    Int(i64),
    Float(f64),
    Text(String),
}

impl DurationField {
    pub fn to_duration(&self) -> Result<Duration, String> {
        match self {
            DurationField::Int(i) if *i >= 0 => Ok(Duration::from_secs(*i as u64)),
            DurationField::Int(i) => {
                Err(format!("{i} is negative: a duration must be zero or more"))
            }
            DurationField::Float(f) => {
                secs_to_duration(*f).ok_or_else(|| format!("{f} is not a duration in seconds"))
            }
            DurationField::Text(t) => parse_duration(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_people_write() {
        assert_eq!(parse_duration("300s").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration("-1").is_err());
    }
}
