//! The `emu simulate` engine: a service under load on a simulated clock, scaled by the same
//! [`Autoscaler`] `emu up` uses and admitted by the same [`Admission`] rules as its front door,
//! so "what would Cloud Run do with this load?" takes milliseconds instead of an hour.
//!
//! The clock steps in 1 ms. Requests arrive evenly spread over each second and go through
//! [`Admission`]: a free slot on the least busy ready instance (`concurrency` per instance), or
//! the FIFO queue, from which a request gives up with 429 after the queue timeout (500 if no
//! instance is ready then) or 504 at its request timeout. A request whose wait plus service
//! exceeds the request timeout gets its 504 at the timeout while its instance keeps working, as
//! on Cloud Run. A scale-in takes instances out of rotation; their in-flight requests finish (as
//! draining instances do). The autoscaler gets one sample per second (the time-weighted
//! in-flight + queued count) and decides every tick.

mod engine;
mod in_flight;
mod sampling;
mod table;

use std::time::Duration;

use serde::Serialize;

use super::admission::default_queue_timeout;
use super::autoscaler::Autoscaler;
use super::coldstart::ColdStartDelay;
use super::config::AutoscalerConfig;
use super::load::{PlannedSecond, ServiceTime};
use super::ModelError;
use engine::Run;
use sampling::ServiceSampler;

pub use super::load::{
    load_from_report_json, parse_trace_csv, Load, Stage, TraceSecond, DEFAULT_TRACE_SERVICE_TIME,
};
pub use sampling::mean_startup;
pub use table::render_table;

/// The service being simulated. `concurrency`, `min_instances` and `max_instances` are the
/// service's settings and win over the same knobs in `autoscaler`. The run starts just after
/// deployment, with max(`min_instances`, `autoscaler.initial_scale`) instances ready; set
/// `initial_scale` to 0 to start cold.
#[derive(Debug, Clone)]
pub struct SimService {
    pub autoscaler: AutoscalerConfig,
    /// Slots per instance; 0 = unlimited.
    pub concurrency: u32,
    pub min_instances: u32,
    /// 0 = unbounded.
    pub max_instances: u32,
    pub startup: ColdStartDelay,
    /// How long a request may wait for a slot; `None` = Cloud Run's rule,
    /// max(10 s, 3.5 × average start-up time).
    pub queue_timeout: Option<Duration>,
    pub request_timeout: Duration,
}

/// Cloud Run's request timeout default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

impl SimService {
    /// A service whose concurrency and instance bounds are taken from `autoscaler`, with Cloud
    /// Run's request timeout and queue-timeout rule.
    pub fn new(autoscaler: AutoscalerConfig, startup: ColdStartDelay) -> Self {
        SimService {
            concurrency: autoscaler.container_concurrency,
            min_instances: autoscaler.min_scale,
            max_instances: autoscaler.max_scale,
            autoscaler,
            startup,
            queue_timeout: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The autoscaler configuration with the service's own settings applied.
    pub fn effective_autoscaler(&self) -> AutoscalerConfig {
        let mut cfg = self.autoscaler.clone();
        cfg.container_concurrency = self.concurrency;
        cfg.min_scale = self.min_instances;
        cfg.max_scale = self.max_instances;
        cfg
    }

    /// How long a request waits for a slot once start-ups have been seen: the configured
    /// timeout, or Cloud Run's rule applied to the mean start-up time. (During a run the rule
    /// follows the start-ups the run has drawn, as `emu up` follows the ones it has seen.)
    pub fn effective_queue_timeout(&self) -> Duration {
        self.queue_timeout
            .unwrap_or_else(|| default_queue_timeout(mean_startup(&self.startup)))
    }

    /// Checks the settings against Cloud Run's ranges.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.effective_autoscaler().validate()?;
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(3600) {
            return Err(ModelError::Config {
                field: "request_timeout",
                reason: format!("{:?} must be within 1ms..=3600s", self.request_timeout),
            });
        }
        if self.queue_timeout.is_some_and(|q| q.is_zero()) {
            return Err(ModelError::Config {
                field: "queue_timeout",
                reason: "must be positive".into(),
            });
        }
        Ok(())
    }
}

/// What one simulated second looked like (counts are for the second, levels at its end).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimSecond {
    pub second: u64,
    pub arrivals: u64,
    /// The sample the autoscaler got: time-weighted in-flight + queued requests.
    pub concurrency: f64,
    pub ready: u32,
    pub starting: u32,
    /// Instances started during this second.
    pub cold_starts: u32,
    pub queue_depth: u32,
    pub in_flight: u32,
    pub rejected_429: u64,
    /// Requests that waited the queue timeout with no instance ready to take them.
    pub failed_500: u64,
    pub timeouts_504: u64,
    /// The latest autoscaler decision.
    pub desired: u32,
    pub panicking: bool,
    /// Queue wait of the requests that got a slot during this second (0 when none did).
    pub queue_wait_p50_ms: f64,
    pub queue_wait_p95_ms: f64,
}

/// The whole run. `requests = served + rejected_429 + failed_500 + timeouts_504`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimTotals {
    pub requests: u64,
    pub served: u64,
    pub cold_starts: u64,
    pub rejected_429: u64,
    pub failed_500: u64,
    pub timeouts_504: u64,
    pub max_instances_seen: u32,
    pub queue_wait_p50_ms: f64,
    pub queue_wait_p95_ms: f64,
    pub queue_wait_p99_ms: f64,
    pub queue_wait_mean_ms: f64,
}

/// What `emu simulate` prints (as a table) or writes (as JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimResult {
    pub per_second: Vec<SimSecond>,
    pub totals: SimTotals,
}

/// Runs `load` against `svc` and reports every second. The same `seed` gives the same result;
/// the run ends once the load is over and every request has an outcome. Add a final stage
/// with `rps: 0` to watch the service scale in afterwards. Call [`SimService::validate`] and
/// [`Load::validate`] first: out-of-range input is clamped, not rejected, here.
pub fn simulate(svc: &SimService, load: &Load, seed: u64) -> SimResult {
    let cfg = svc.effective_autoscaler();
    // Decisions happen at the first second boundary at or after each tick.
    let tick_ms = (cfg.tick_interval.as_millis() as u64).max(1);
    let mut next_decision = tick_ms;
    let plan = load.plan();
    let load_secs = plan.len() as u64;
    let idle = PlannedSecond {
        requests: 0.0,
        service: ServiceTime::Fixed(DEFAULT_TRACE_SERVICE_TIME),
    };
    let mut scaler = Autoscaler::new(cfg.clone(), Duration::ZERO);
    let mut initial = cfg.min_scale.max(cfg.initial_scale);
    if svc.max_instances != 0 {
        initial = initial.min(svc.max_instances);
    }
    let mut run = Run::new(svc, seed, initial);
    let mut desired = initial;
    let mut panicking = false;
    let mut per_second = Vec::with_capacity(plan.len() + 16);
    let mut sampler = ServiceSampler::new(&idle.service);
    for s in 0.. {
        if s >= load_secs && run.settled() {
            break;
        }
        // After the load ends, every request has an outcome within the queue and request
        // timeouts; this bounds the run should that ever not hold.
        if s >= load_secs + (run.queue_timeout() + svc.request_timeout).as_secs() + 2 {
            break;
        }
        let planned = plan.get(s as usize).unwrap_or(&idle);
        if sampler.source != planned.service {
            sampler = ServiceSampler::new(&planned.service);
        }
        let counts = run.second(s, planned.requests, &sampler, &mut scaler);

        let end = (s + 1) * 1000;
        let now = Duration::from_millis(end);
        let concurrency = run.sample(now);
        scaler.record(now, concurrency);
        if end >= next_decision {
            next_decision += tick_ms;
            let d = scaler.decide(now, run.ready());
            desired = d.desired;
            panicking = d.panicking;
            run.reconcile(end, desired);
        }
        per_second.push(run.row(s, &counts, concurrency, desired, panicking));
    }
    let totals = run.totals(&per_second);
    SimResult { per_second, totals }
}
