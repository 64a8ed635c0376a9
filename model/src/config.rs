//! Autoscaler settings: the Knative KPA knobs, with Cloud Run's and Knative's defaults.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::ModelError;

/// Which platform's defaults to start from. Cloud Run runs Knative's KPA with a 60 % target
/// and keeps idle instances up to 15 minutes; plain Knative uses 70 % and scales to zero as
/// soon as the grace period allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    CloudRun,
    Knative,
}

impl FromStr for Profile {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cloud-run" => Ok(Profile::CloudRun),
            "knative" => Ok(Profile::Knative),
            other => Err(ModelError::Profile(other.to_string())),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::CloudRun => "cloud-run",
            Profile::Knative => "knative",
        })
    }
}

/// Knative's lower bound on a target value (`autoscaling.TargetMin`): below it the division
/// `concurrency / target` explodes.
pub const TARGET_MIN: f64 = 0.01;
/// Target per instance when `containerConcurrency` is 0 (unlimited): Knative's
/// `container-concurrency-target-default`.
pub const UNLIMITED_CONCURRENCY_TARGET: f64 = 100.0;
/// Knative's bounds on the stable window (`autoscaling.WindowMin` / `WindowMax`).
pub const WINDOW_MIN: Duration = Duration::from_secs(6);
pub const WINDOW_MAX: Duration = Duration::from_secs(3600);

/// Every knob of the KPA as emu models it. Build with [`AutoscalerConfig::for_profile`], adjust
/// with [`AutoscalerOverrides`], then [`AutoscalerConfig::validate`] before use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoscalerConfig {
    /// Hard per-instance limit; 0 = unlimited (the target then comes from a default of 100).
    pub container_concurrency: u32,
    /// Fraction of the per-instance total the autoscaler aims for: 0.60 Cloud Run, 0.70 Knative.
    pub target_utilization: f64,
    /// `autoscaling.knative.dev/target`: replaces `container_concurrency` as the per-instance
    /// total (capped by it when it is set). As in Knative's `ResolveMetricTarget`, the
    /// utilization still applies: the effective target is `min(target, cc) × utilization`.
    pub target: Option<f64>,
    #[serde(serialize_with = "secs")]
    pub stable_window: Duration,
    /// Panic window as a percentage of the stable window (10 → 6 s of a 60 s window).
    pub panic_window_percentage: f64,
    /// Enter panic when the panic-window demand reaches this percentage of ready instances.
    pub panic_threshold_percentage: f64,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    /// How long demand must have asked for zero instances before the last one goes.
    #[serde(serialize_with = "secs")]
    pub scale_to_zero_grace: Duration,
    /// How long the last instance stays after the last non-zero concurrency. Cloud Run keeps
    /// idle instances up to 15 minutes; Knative's default pod retention is 0.
    #[serde(serialize_with = "secs")]
    pub scale_to_zero_retention: Duration,
    /// Scale-down decisions take the maximum desired count over this much time.
    #[serde(serialize_with = "secs")]
    pub scale_down_delay: Duration,
    /// Instances the service must reach once before the autoscaler may go lower.
    pub initial_scale: u32,
    /// `autoscaling.knative.dev/activation-scale`: the minimum count when scaling up from zero.
    pub activation_scale: u32,
    pub min_scale: u32,
    /// 0 = unbounded.
    pub max_scale: u32,
    /// How often the caller asks for a decision; also the granularity of the scale-down delay.
    #[serde(serialize_with = "secs")]
    pub tick_interval: Duration,
}

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl AutoscalerConfig {
    /// The defaults of `profile` for a service with this `containerConcurrency`.
    pub fn for_profile(profile: Profile, container_concurrency: u32) -> Self {
        // Cloud Run starts a min-instances-0 service at zero: only a request scales it up
        // (cloud-run-behavior.md §2). Knative's initial-scale default is 1.
        let (target_utilization, retention, initial_scale) = match profile {
            Profile::CloudRun => (0.60, Duration::from_secs(15 * 60), 0),
            Profile::Knative => (0.70, Duration::ZERO, 1),
        };
        AutoscalerConfig {
            container_concurrency,
            target_utilization,
            target: None,
            stable_window: Duration::from_secs(60),
            panic_window_percentage: 10.0,
            panic_threshold_percentage: 200.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            scale_to_zero_grace: Duration::from_secs(30),
            scale_to_zero_retention: retention,
            scale_down_delay: Duration::ZERO,
            initial_scale,
            activation_scale: 1,
            min_scale: 0,
            max_scale: 0,
            tick_interval: Duration::from_secs(2),
        }
    }

    /// The per-instance concurrency the autoscaler aims for (Knative's `ResolveMetricTarget`).
    pub fn target_value(&self) -> f64 {
        let cc = f64::from(self.container_concurrency);
        let total = match self.target {
            Some(t) if self.container_concurrency > 0 => t.min(cc),
            Some(t) => t,
            None if self.container_concurrency > 0 => cc,
            None => UNLIMITED_CONCURRENCY_TARGET,
        };
        (total * self.target_utilization).max(TARGET_MIN)
    }

    /// The panic window: a percentage of the stable window, never shorter than one 1-s bucket.
    pub fn panic_window(&self) -> Duration {
        self.stable_window
            .mul_f64(self.panic_window_percentage / 100.0)
            .max(Duration::from_secs(1))
    }

    /// Checks every value against the ranges Knative accepts (`config.go` `validate` and the
    /// annotation validation), so a model built from it behaves like the real thing.
    pub fn validate(&self) -> Result<(), ModelError> {
        fn bad(field: &'static str, reason: String) -> Result<(), ModelError> {
            Err(ModelError::Config { field, reason })
        }
        if self.container_concurrency > 1000 {
            return bad(
                "container_concurrency",
                format!(
                    "{} is above Cloud Run's limit of 1000",
                    self.container_concurrency
                ),
            );
        }
        let tu = self.target_utilization;
        if !(tu > 0.0 && tu <= 1.0) {
            return bad(
                "target_utilization",
                format!("{tu} must be in (0, 1] (a fraction, not a percentage)"),
            );
        }
        if let Some(t) = self.target {
            if !(t.is_finite() && t >= TARGET_MIN) {
                return bad("target", format!("{t} must be at least {TARGET_MIN}"));
            }
        }
        let sw = self.stable_window;
        if sw < WINDOW_MIN || sw > WINDOW_MAX {
            return bad("stable_window", format!("{sw:?} must be within 6s..=1h"));
        }
        if sw.subsec_nanos() != 0 {
            return bad("stable_window", format!("{sw:?} must be whole seconds"));
        }
        let pw = self.panic_window_percentage;
        if !(1.0..=100.0).contains(&pw) {
            return bad(
                "panic_window_percentage",
                format!("{pw} must be within 1..=100"),
            );
        }
        let pt = self.panic_threshold_percentage;
        if !(110.0..=1000.0).contains(&pt) {
            return bad(
                "panic_threshold_percentage",
                format!("{pt} must be within 110..=1000"),
            );
        }
        if !(self.max_scale_up_rate.is_finite() && self.max_scale_up_rate > 1.0) {
            return bad(
                "max_scale_up_rate",
                format!("{} must be greater than 1", self.max_scale_up_rate),
            );
        }
        if !(self.max_scale_down_rate.is_finite() && self.max_scale_down_rate > 1.0) {
            return bad(
                "max_scale_down_rate",
                format!("{} must be greater than 1", self.max_scale_down_rate),
            );
        }
        if self.scale_to_zero_grace.is_zero() {
            return bad("scale_to_zero_grace", "must be positive".to_string());
        }
        if self.scale_to_zero_retention > WINDOW_MAX {
            return bad(
                "scale_to_zero_retention",
                format!("{:?} must be at most 1h", self.scale_to_zero_retention),
            );
        }
        let sdd = self.scale_down_delay;
        if sdd > WINDOW_MAX || sdd.subsec_nanos() != 0 {
            return bad(
                "scale_down_delay",
                format!("{sdd:?} must be whole seconds within 0s..=1h"),
            );
        }
        if self.max_scale != 0 && self.min_scale > self.max_scale {
            return bad(
                "min_scale",
                format!("{} is above max_scale {}", self.min_scale, self.max_scale),
            );
        }
        if self.activation_scale == 0 {
            return bad("activation_scale", "must be at least 1".to_string());
        }
        let tick = self.tick_interval;
        if tick < Duration::from_millis(100) || tick > sw {
            return bad(
                "tick_interval",
                format!("{tick:?} must be within 100ms..=stable_window"),
            );
        }
        Ok(())
    }
}

/// A partial configuration: each `Some` replaces the profile default. Built from per-revision
/// annotations ([`super::overrides_from_annotations`]) or from emu's own config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AutoscalerOverrides {
    pub container_concurrency: Option<u32>,
    pub target_utilization: Option<f64>,
    pub target: Option<f64>,
    pub stable_window: Option<Duration>,
    pub panic_window_percentage: Option<f64>,
    pub panic_threshold_percentage: Option<f64>,
    pub max_scale_up_rate: Option<f64>,
    pub max_scale_down_rate: Option<f64>,
    pub scale_to_zero_grace: Option<Duration>,
    pub scale_to_zero_retention: Option<Duration>,
    pub scale_down_delay: Option<Duration>,
    pub initial_scale: Option<u32>,
    pub activation_scale: Option<u32>,
    pub min_scale: Option<u32>,
    pub max_scale: Option<u32>,
    pub tick_interval: Option<Duration>,
}

impl AutoscalerOverrides {
    /// Writes every set value into `cfg`; unset ones leave the profile default alone.
    pub fn apply(&self, cfg: &mut AutoscalerConfig) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        set(&mut cfg.container_concurrency, &self.container_concurrency);
        set(&mut cfg.target_utilization, &self.target_utilization);
        if self.target.is_some() {
            cfg.target = self.target;
        }
        set(&mut cfg.stable_window, &self.stable_window);
        set(
            &mut cfg.panic_window_percentage,
            &self.panic_window_percentage,
        );
        set(
            &mut cfg.panic_threshold_percentage,
            &self.panic_threshold_percentage,
        );
        set(&mut cfg.max_scale_up_rate, &self.max_scale_up_rate);
        set(&mut cfg.max_scale_down_rate, &self.max_scale_down_rate);
        set(&mut cfg.scale_to_zero_grace, &self.scale_to_zero_grace);
        set(
            &mut cfg.scale_to_zero_retention,
            &self.scale_to_zero_retention,
        );
        set(&mut cfg.scale_down_delay, &self.scale_down_delay);
        set(&mut cfg.initial_scale, &self.initial_scale);
        set(&mut cfg.activation_scale, &self.activation_scale);
        set(&mut cfg.min_scale, &self.min_scale);
        set(&mut cfg.max_scale, &self.max_scale);
        set(&mut cfg.tick_interval, &self.tick_interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_differ_in_target_and_retention() {
        let cr = AutoscalerConfig::for_profile(Profile::CloudRun, 80);
        let kn = AutoscalerConfig::for_profile(Profile::Knative, 80);
        assert!((cr.target_value() - 48.0).abs() < 1e-9);
        assert!((kn.target_value() - 56.0).abs() < 1e-9);
        assert_eq!(cr.scale_to_zero_retention, Duration::from_secs(900));
        assert_eq!(kn.scale_to_zero_retention, Duration::ZERO);
        cr.validate().unwrap();
        kn.validate().unwrap();
    }

    #[test]
    fn unlimited_concurrency_targets_default_and_target_is_capped_by_cc() {
        let mut c = AutoscalerConfig::for_profile(Profile::Knative, 0);
        assert!((c.target_value() - 70.0).abs() < 1e-9);
        c.target = Some(10.0);
        assert!((c.target_value() - 7.0).abs() < 1e-9);
        c.container_concurrency = 5;
        assert!((c.target_value() - 3.5).abs() < 1e-9);
    }

    #[test]
    fn profile_parses_and_rejects_unknown() {
        assert_eq!("cloud-run".parse::<Profile>().unwrap(), Profile::CloudRun);
        assert_eq!("knative".parse::<Profile>().unwrap(), Profile::Knative);
        assert!("gke".parse::<Profile>().is_err());
    }

    #[test]
    fn validate_names_the_bad_field() {
        let mut c = AutoscalerConfig::for_profile(Profile::CloudRun, 80);
        c.min_scale = 5;
        c.max_scale = 2;
        match c.validate() {
            Err(ModelError::Config { field, .. }) => assert_eq!(field, "min_scale"),
            other => panic!("expected min_scale error, got {other:?}"),
        }
        let mut c = AutoscalerConfig::for_profile(Profile::CloudRun, 80);
        c.stable_window = Duration::from_secs(5);
        assert!(matches!(
            c.validate(),
            Err(ModelError::Config {
                field: "stable_window",
                ..
            })
        ));
    }
}
