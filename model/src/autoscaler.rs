//! The Knative Pod Autoscaler (KPA) as a pure state machine, as Cloud Run runs it.
//!
//! It follows knative/serving `pkg/autoscaler/scaling/autoscaler.go` (`Scale`) for the
//! per-decision arithmetic, and `pkg/reconciler/autoscaling/kpa/scaler.go` for what happens to
//! the result: initial scale, the min/max bounds, and the scale-to-zero grace period. The
//! caller feeds one concurrency sample per second ([`Autoscaler::record`]) and asks for a
//! decision every `tick_interval` ([`Autoscaler::decide`]); time is always passed in.

use std::time::Duration;

use serde::Serialize;

use super::config::AutoscalerConfig;
use super::window::{MaxWindow, WindowAverage};

/// One autoscaler decision and what it was based on. It goes into the JSON events feed, so a
/// user can see why emu started or stopped an instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Instances the service should have now.
    pub desired: u32,
    /// Average total concurrency over the stable window.
    pub stable_avg: f64,
    /// Average total concurrency over the panic window.
    pub panic_avg: f64,
    pub panicking: bool,
    /// Rate limits applied to this decision: at most halve (`lower`), at most ×1000 (`upper`).
    pub lower: u32,
    pub upper: u32,
    /// Ready instances the caller reported.
    pub ready: u32,
    /// Bounds applied last: `min` includes the initial scale until it has been reached once;
    /// `max` 0 means unbounded.
    pub min: u32,
    pub max: u32,
    /// Per-instance concurrency the autoscaler aims for.
    pub target: f64,
    /// Why `desired` is what it is when something other than demand decided it.
    pub reason: Reason,
}

/// What settled the final count, for people reading the events feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Demand over the stable (or, panicking, the panic) window.
    Demand,
    /// No concurrency was recorded during the last stable window: the previous count stands.
    NoData,
    /// Panic mode refuses to scale down.
    PanicHold,
    /// The scale-down delay holds a higher count from the last `scale_down_delay`.
    ScaleDownDelay,
    /// Raised to `min` (min instances or the initial scale).
    Min,
    /// Capped at `max`.
    Max,
    /// Demand is zero but the grace period or idle retention has not passed: keep one.
    ZeroGrace,
}

/// The KPA for one service (one revision). Create it when the revision is deployed.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    cfg: AutoscalerConfig,
    stable: WindowAverage,
    panic: WindowAverage,
    /// Last time demand was over the panic threshold while panicking; `None` = not panicking.
    panic_time: Option<Duration>,
    /// Highest count decided during this panic: panic mode never scales down.
    max_panic_pods: u32,
    delay: Option<MaxWindow>,
    /// The count of the last decision made on data, reused when there is no data.
    last_algorithmic: u32,
    /// Whether ready instances have reached the initial scale once (Knative:
    /// `IsScaleTargetInitialized`); until then the initial scale acts as a minimum.
    initialized: bool,
    /// Since when demand has asked for zero instances (start of the grace period).
    zero_since: Option<Duration>,
    /// Last non-zero concurrency or activation: start of the idle retention.
    last_active: Duration,
    /// The caller started an instance from zero and it is not ready yet: hold it.
    activation_pending: bool,
}

impl Autoscaler {
    /// A fresh autoscaler at deploy time `now`. `cfg` should have passed
    /// [`AutoscalerConfig::validate`]; out-of-range values are clamped so this never panics.
    pub fn new(cfg: AutoscalerConfig, now: Duration) -> Self {
        let stable = WindowAverage::new(cfg.stable_window);
        let panic = WindowAverage::new(cfg.panic_window());
        let delay = (!cfg.scale_down_delay.is_zero())
            .then(|| MaxWindow::new(cfg.scale_down_delay, cfg.tick_interval));
        let initialized = cfg.initial_scale == 0;
        let last_algorithmic = cfg.initial_scale;
        Autoscaler {
            cfg,
            stable,
            panic,
            panic_time: None,
            max_panic_pods: 0,
            delay,
            last_algorithmic,
            initialized,
            zero_since: None,
            last_active: now,
            activation_pending: false,
        }
    }

    pub fn config(&self) -> &AutoscalerConfig {
        &self.cfg
    }

    /// One sample per second: the total concurrency across the service's instances during that
    /// second (in-flight + queued, time-weighted, computed by the caller). Record zeros too:
    /// a second with no sample is a second the autoscaler knows nothing about.
    pub fn record(&mut self, now: Duration, concurrency: f64) {
        let c = if concurrency.is_finite() {
            concurrency.max(0.0)
        } else {
            0.0
        };
        self.stable.record(now, c);
        self.panic.record(now, c);
        if c > 0.0 {
            self.last_active = now;
        }
    }

    /// A request arrived while no instance was ready or starting and the caller started one.
    /// From here the grace period and idle retention start over, so the next decision cannot
    /// take the new instance away before its request has shown up in the windows.
    pub fn activated(&mut self, now: Duration) {
        self.last_active = self.last_active.max(now);
        self.zero_since = None;
        self.activation_pending = true;
    }

    /// A decision at `now` given `ready` ready instances. The caller calls it every
    /// `tick_interval` and moves the instance count toward `desired`.
    pub fn decide(&mut self, now: Duration, ready: u32) -> Decision {
        let cfg = &self.cfg;
        let target = cfg.target_value();
        let ready_f = f64::from(ready.max(1));
        let up_rate = cfg.max_scale_up_rate.max(1.0);
        let down_rate = cfg.max_scale_down_rate.max(1.0);
        // `ceil` so a conservative rate can still add one instance; `floor` likewise for down.
        let upper = (up_rate * ready_f).ceil() as u32;
        // With no instance reachable there is nothing to protect from a sudden scale-down.
        let lower = if ready > 0 {
            (ready_f / down_rate).floor() as u32
        } else {
            0
        };
        let stable_avg = self.stable.average(now);
        let panic_avg = self.panic.average(now);
        let mut reason = Reason::Demand;

        let mut desired = if self.stable.is_empty(now) {
            reason = Reason::NoData;
            self.last_algorithmic
        } else {
            let dspc = (stable_avg / target).ceil();
            let dppc = (panic_avg / target).ceil();
            let mut stable_pods = dspc.clamp(f64::from(lower), f64::from(upper)) as u32;
            let mut panic_pods = dppc.clamp(f64::from(lower), f64::from(upper)) as u32;
            if cfg.activation_scale > 1 {
                if dspc > 0.0 && cfg.activation_scale > stable_pods {
                    stable_pods = cfg.activation_scale;
                }
                if dppc > 0.0 && cfg.activation_scale > panic_pods {
                    panic_pods = cfg.activation_scale;
                }
            }
            let over_threshold = dppc / ready_f >= cfg.panic_threshold_percentage / 100.0;
            if over_threshold {
                // Enter panic, or extend it: it ends a stable window after the last surge.
                self.panic_time = Some(now);
            } else if let Some(pt) = self.panic_time {
                if pt + cfg.stable_window < now {
                    self.panic_time = None;
                    self.max_panic_pods = 0;
                }
            }
            let mut d = stable_pods;
            if self.panic_time.is_some() {
                // The stable average can exceed the panic one after a burst ends; provision
                // for whichever is larger, and never go down while panicking.
                d = d.max(panic_pods);
                if d > self.max_panic_pods {
                    self.max_panic_pods = d;
                } else if d < self.max_panic_pods {
                    reason = Reason::PanicHold;
                }
                d = self.max_panic_pods;
            }
            if let Some(delay) = &mut self.delay {
                delay.record(now, d);
                let held = delay.current();
                if held != d {
                    reason = Reason::ScaleDownDelay;
                    d = held;
                }
            }
            self.last_algorithmic = d;
            d
        };

        // Bounds, as the KPA reconciler applies them after `Scale`.
        if !self.initialized && ready >= cfg.initial_scale {
            self.initialized = true;
        }
        let mut min = cfg.min_scale;
        if !self.initialized {
            min = min.max(cfg.initial_scale);
        }
        let max = cfg.max_scale;
        if desired < min {
            desired = min;
            reason = Reason::Min;
        }
        if max != 0 && desired > max {
            desired = max;
            reason = Reason::Max;
        }

        // Scale to zero only after the grace period (measured from when demand first asked
        // for zero) and the idle retention (measured from the last non-zero concurrency).
        // With no instance ready or being activated there is nothing to keep: only a request
        // brings a service up from zero.
        if ready > 0 {
            self.activation_pending = false;
        }
        if desired == 0 {
            let since = *self.zero_since.get_or_insert(now);
            let grace_over = now.saturating_sub(since) >= cfg.scale_to_zero_grace;
            let retention_over =
                now.saturating_sub(self.last_active) >= cfg.scale_to_zero_retention;
            let has_instance = ready > 0 || self.activation_pending;
            if has_instance && !(grace_over && retention_over) {
                desired = 1;
                reason = Reason::ZeroGrace;
            } else {
                self.activation_pending = false;
            }
        } else {
            self.zero_since = None;
        }

        Decision {
            desired,
            stable_avg,
            panic_avg,
            panicking: self.panic_time.is_some(),
            lower,
            upper,
            ready,
            min,
            max,
            target,
            reason,
        }
    }
}
