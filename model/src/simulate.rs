//! The `emu simulate` engine: a service under load on a simulated clock, scaled by the same
//! [`Autoscaler`] `emu up` uses, so "what would Cloud Run do with this load?" takes
//! milliseconds instead of an hour.
//!
//! The clock steps in 1 ms. Requests arrive evenly spread over each second, wait in one FIFO
//! queue, and take a free slot (`concurrency` per ready instance). Busy slots are pooled: the
//! simulator tracks when each in-flight request completes, not which instance holds it, so a
//! scale-in lets in-flight requests finish (as draining instances do) while new requests see
//! the smaller capacity at once. A request that waits longer than the queue timeout is
//! rejected with 429; one whose wait plus service exceeds the request timeout gets a 504 at
//! the timeout (its instance keeps working, as on Cloud Run). The autoscaler gets one sample
//! per second (the time-weighted in-flight + queued count) and decides every tick.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::autoscaler::Autoscaler;
use super::coldstart::ColdStartDelay;
use super::config::AutoscalerConfig;
use super::load::{PlannedSecond, ServiceTime};
use super::ModelError;

pub use super::load::{
    load_from_report_json, parse_trace_csv, Load, Stage, TraceSecond, DEFAULT_TRACE_SERVICE_TIME,
};

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

    /// How long a request waits for a slot before its 429.
    pub fn effective_queue_timeout(&self) -> Duration {
        self.queue_timeout.unwrap_or_else(|| {
            Duration::from_secs(10).max(mean_startup(&self.startup).mul_f64(3.5))
        })
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

/// The expected start-up time of `d` (the mean of the log-normal for `LogNormal`).
pub fn mean_startup(d: &ColdStartDelay) -> Duration {
    match d {
        ColdStartDelay::None => Duration::ZERO,
        ColdStartDelay::Fixed(t) => *t,
        ColdStartDelay::LogNormal { p50, p99 } => {
            let (mu, sigma) = lognormal_params(*p50, *p99);
            Duration::from_secs_f64((mu + sigma * sigma / 2.0).exp().min(86_400.0))
        }
    }
}

/// z-score of the 99th percentile of a standard normal distribution.
const Z99: f64 = 2.326_347_874_040_841;

/// (μ, σ) of a log-normal (in seconds) with this median and 99th percentile.
fn lognormal_params(p50: Duration, p99: Duration) -> (f64, f64) {
    let median = p50.as_secs_f64().max(1e-9);
    let sigma = (p99.as_secs_f64() / median).max(1.0).ln() / Z99;
    (median.ln(), sigma)
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
    pub timeouts_504: u64,
    /// The latest autoscaler decision.
    pub desired: u32,
    pub panicking: bool,
    /// Queue wait of the requests that got a slot during this second (0 when none did).
    pub queue_wait_p50_ms: f64,
    pub queue_wait_p95_ms: f64,
}

/// The whole run. `requests = served + rejected_429 + timeouts_504`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimTotals {
    pub requests: u64,
    pub served: u64,
    pub cold_starts: u64,
    pub rejected_429: u64,
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

/// Millisecond of a duration, at least 1 so every request occupies its slot for a step.
fn ms_at_least_1(d: Duration) -> u64 {
    (d.as_secs_f64() * 1000.0).round().max(1.0) as u64
}

/// Draws service times in ms. A log-normal is sampled through a table of its quantiles
/// (inverse-transform sampling with linear interpolation), which costs one uniform draw instead
/// of two plus four transcendental functions: an hour at 1000 RPS is 3.6 M draws.
struct ServiceSampler {
    source: ServiceTime,
    kind: SamplerKind,
}

enum SamplerKind {
    Fixed(u64),
    /// Service time (ms) at quantiles `i / (len - 1)` for the central part; the extreme tails
    /// (below the first and above the last inner quantile) are drawn exactly.
    Table {
        ms: Vec<f64>,
        mu: f64,
        sigma: f64,
    },
}

/// Quantile table resolution; tails outside `[1/N, 1 - 1/N]` are sampled exactly.
const TABLE_STEPS: usize = 4096;

impl ServiceSampler {
    fn new(source: &ServiceTime) -> Self {
        let kind = match source {
            ServiceTime::Fixed(d) => SamplerKind::Fixed(ms_at_least_1(*d)),
            ServiceTime::LogNormal { p50, p99 } => {
                let (mu, sigma) = lognormal_params(*p50, *p99);
                let ms = (1..TABLE_STEPS)
                    .map(|i| {
                        let z = inverse_normal_cdf(i as f64 / TABLE_STEPS as f64);
                        (mu + sigma * z).exp().min(86_400.0) * 1000.0
                    })
                    .collect();
                SamplerKind::Table { ms, mu, sigma }
            }
        };
        ServiceSampler {
            source: source.clone(),
            kind,
        }
    }

    fn sample(&self, rng: &mut StdRng) -> u64 {
        match &self.kind {
            SamplerKind::Fixed(ms) => *ms,
            SamplerKind::Table { ms, mu, sigma } => {
                let u: f64 = rng.random::<f64>();
                let x = u * TABLE_STEPS as f64;
                let i = x as usize;
                let v = if i == 0 || i >= TABLE_STEPS - 1 {
                    let p = u.clamp(1e-300, 1.0 - 1e-16);
                    (mu + sigma * inverse_normal_cdf(p)).exp().min(86_400.0) * 1000.0
                } else {
                    // ms[k] is the quantile (k + 1) / N, so x lies between ms[i - 1] and ms[i].
                    let f = x - i as f64;
                    ms[i - 1] + (ms[i] - ms[i - 1]) * f
                };
                v.round().max(1.0) as u64
            }
        }
    }
}

/// The standard normal quantile function (Acklam's rational approximation, relative error
/// below 1.2e-9 — far finer than the millisecond the simulator resolves).
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Completion times of in-flight requests. Nearly all complete within a minute, so a timing
/// wheel of 1-ms slots counts them in O(1); the rare longer ones go to a heap.
struct InFlight {
    wheel: Vec<u32>,
    overflow: BinaryHeap<Reverse<u64>>,
    count: u64,
}

/// Wheel size in ms (a power of two, about 65 s).
const WHEEL: u64 = 1 << 16;

impl InFlight {
    fn new() -> Self {
        InFlight {
            wheel: vec![0; WHEEL as usize],
            overflow: BinaryHeap::new(),
            count: 0,
        }
    }

    /// A request taken at `t` that completes at `done` (> `t`).
    fn push(&mut self, t: u64, done: u64) {
        if done - t < WHEEL {
            self.wheel[(done & (WHEEL - 1)) as usize] += 1;
        } else {
            self.overflow.push(Reverse(done));
        }
        self.count += 1;
    }

    /// Retires what completes at `t`; call once for every millisecond, in order.
    fn advance(&mut self, t: u64) {
        let slot = &mut self.wheel[(t & (WHEEL - 1)) as usize];
        self.count -= u64::from(*slot);
        *slot = 0;
        while self.overflow.peek().is_some_and(|&Reverse(c)| c <= t) {
            self.overflow.pop();
            self.count -= 1;
        }
    }
}

/// Nearest-rank percentile of `v` (reordered in place); 0 when empty.
fn percentile(v: &mut [u32], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    let (_, x, _) = v.select_nth_unstable(rank);
    f64::from(*x)
}

/// The mutable state of a run.
struct Sim {
    rng: StdRng,
    startup: ColdStartDelay,
    ready: u32,
    /// Start-up completion times (ms) of starting instances.
    starting: BinaryHeap<Reverse<u64>>,
    cold_starts_this_second: u32,
    cold_starts_total: u64,
    max_seen: u32,
}

impl Sim {
    fn start_instance(&mut self, t: u64) {
        let ms = (self.startup.sample(&mut self.rng).as_secs_f64() * 1000.0).round() as u64;
        if ms == 0 {
            self.ready += 1;
        } else {
            self.starting.push(Reverse(t + ms));
        }
        self.cold_starts_this_second += 1;
        self.cold_starts_total += 1;
        self.max_seen = self.max_seen.max(self.total());
    }

    fn total(&self) -> u32 {
        self.ready + self.starting.len() as u32
    }

    /// Moves the instance count to `desired`: start new ones, or stop instances still starting
    /// first (the newest first, as a Deployment deletes not-ready pods first), then ready ones.
    fn reconcile(&mut self, t: u64, desired: u32) {
        let current = self.total();
        if desired > current {
            for _ in current..desired {
                self.start_instance(t);
            }
        } else if desired < current {
            let mut remove = current - desired;
            if !self.starting.is_empty() {
                let mut v: Vec<u64> = self.starting.drain().map(|Reverse(x)| x).collect();
                v.sort_unstable();
                while remove > 0 && !v.is_empty() {
                    v.pop();
                    remove -= 1;
                }
                self.starting = v.into_iter().map(Reverse).collect();
            }
            self.ready -= remove.min(self.ready);
        }
    }
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
    let slots_per_instance: u64 = if svc.concurrency == 0 {
        u64::from(u32::MAX)
    } else {
        u64::from(svc.concurrency)
    };
    let max_instances = svc.max_instances;
    let queue_timeout = svc.effective_queue_timeout();
    let request_timeout_ms = ms_at_least_1(svc.request_timeout);
    // Whichever comes first ends the wait; a request timeout while queued is a 504.
    let expiry_is_504 = svc.request_timeout <= queue_timeout;
    let expiry_ms = ms_at_least_1(queue_timeout.min(svc.request_timeout));

    let plan = load.plan();
    let load_secs = plan.len() as u64;
    let idle = PlannedSecond {
        requests: 0.0,
        service: ServiceTime::Fixed(DEFAULT_TRACE_SERVICE_TIME),
    };

    let mut scaler = Autoscaler::new(cfg.clone(), Duration::ZERO);
    let mut initial = cfg.min_scale.max(cfg.initial_scale);
    if max_instances != 0 {
        initial = initial.min(max_instances);
    }
    let mut sim = Sim {
        rng: StdRng::seed_from_u64(seed),
        startup: svc.startup,
        // The service was deployed before the load starts: its initial instances are up.
        ready: initial,
        starting: BinaryHeap::new(),
        cold_starts_this_second: 0,
        cold_starts_total: 0,
        max_seen: initial,
    };
    let mut desired = initial;
    let mut panicking = false;

    let mut queue: VecDeque<(u64, u64)> = VecDeque::new(); // (arrival ms, service ms)
    let mut in_flight = InFlight::new();
    let mut sampler = ServiceSampler::new(&idle.service);
    let mut timeouts: BinaryHeap<Reverse<u64>> = BinaryHeap::new(); // when a 504 fires
    let mut arrivals_acc = 0.0_f64;
    let mut waits_this_second: Vec<u32> = Vec::new();
    let mut waits_all: Histogram<u64> =
        Histogram::new_with_bounds(1, 86_400_000, 3).expect("static histogram bounds are valid");
    let mut totals = SimTotals {
        requests: 0,
        served: 0,
        cold_starts: 0,
        rejected_429: 0,
        timeouts_504: 0,
        max_instances_seen: initial,
        queue_wait_p50_ms: 0.0,
        queue_wait_p95_ms: 0.0,
        queue_wait_p99_ms: 0.0,
        queue_wait_mean_ms: 0.0,
    };
    let mut per_second = Vec::with_capacity(plan.len() + 16);

    // After the load ends, every request has an outcome within the queue and request timeouts.
    let hard_end = load_secs + (queue_timeout + svc.request_timeout).as_secs() + 2;
    let mut s: u64 = 0;
    loop {
        if s >= load_secs && queue.is_empty() && timeouts.is_empty() {
            break;
        }
        if s >= hard_end {
            break;
        }
        let planned = plan.get(s as usize).unwrap_or(&idle);
        let per_ms = planned.requests / 1000.0;
        if sampler.source != planned.service {
            sampler = ServiceSampler::new(&planned.service);
        }
        let mut arrivals = 0u64;
        let mut rejected = 0u64;
        let mut timed_out = 0u64;
        let mut conc_ms_sum = 0u64;
        waits_this_second.clear();
        sim.cold_starts_this_second = 0;

        for ms in 0..1000u64 {
            let t = s * 1000 + ms;
            while sim.starting.peek().is_some_and(|&Reverse(r)| r <= t) {
                sim.starting.pop();
                sim.ready += 1;
            }
            in_flight.advance(t);
            while timeouts.peek().is_some_and(|&Reverse(c)| c <= t) {
                timeouts.pop();
                timed_out += 1;
            }

            arrivals_acc += per_ms;
            let n = arrivals_acc.floor();
            arrivals_acc -= n;
            let n = n as u64;
            if n > 0 {
                arrivals += n;
                for _ in 0..n {
                    let service = sampler.sample(&mut sim.rng);
                    queue.push_back((t, service));
                }
                // Activation: only a request brings a service up from zero, and at once.
                if sim.total() == 0 {
                    sim.start_instance(t);
                    scaler.activated(Duration::from_millis(t));
                }
            }

            let capacity = u64::from(sim.ready).saturating_mul(slots_per_instance);
            while in_flight.count < capacity {
                let Some((arrived, service)) = queue.pop_front() else {
                    break;
                };
                let wait = t - arrived;
                if wait + service > request_timeout_ms {
                    timeouts.push(Reverse(arrived + request_timeout_ms));
                } else {
                    totals.served += 1;
                }
                in_flight.push(t, t + service);
                let w = u32::try_from(wait).unwrap_or(u32::MAX);
                waits_this_second.push(w);
                waits_all.saturating_record(wait);
            }

            while queue.front().is_some_and(|&(a, _)| a + expiry_ms <= t) {
                queue.pop_front();
                if expiry_is_504 {
                    timed_out += 1;
                } else {
                    rejected += 1;
                }
            }
            conc_ms_sum += in_flight.count + queue.len() as u64;
        }

        let end = (s + 1) * 1000;
        let now = Duration::from_millis(end);
        let concurrency = conc_ms_sum as f64 / 1000.0;
        scaler.record(now, concurrency);
        if end >= next_decision {
            next_decision += tick_ms;
            let d = scaler.decide(now, sim.ready);
            desired = d.desired;
            panicking = d.panicking;
            sim.reconcile(end, desired);
        }

        totals.requests += arrivals;
        totals.rejected_429 += rejected;
        totals.timeouts_504 += timed_out;
        per_second.push(SimSecond {
            second: s,
            arrivals,
            concurrency,
            ready: sim.ready,
            starting: sim.starting.len() as u32,
            cold_starts: sim.cold_starts_this_second,
            queue_depth: queue.len() as u32,
            in_flight: u32::try_from(in_flight.count).unwrap_or(u32::MAX),
            rejected_429: rejected,
            timeouts_504: timed_out,
            desired,
            panicking,
            queue_wait_p50_ms: percentile(&mut waits_this_second, 0.50),
            queue_wait_p95_ms: percentile(&mut waits_this_second, 0.95),
        });
        s += 1;
    }

    totals.cold_starts = sim.cold_starts_total;
    totals.max_instances_seen = sim.max_seen;
    if !waits_all.is_empty() {
        totals.queue_wait_p50_ms = waits_all.value_at_quantile(0.50) as f64;
        totals.queue_wait_p95_ms = waits_all.value_at_quantile(0.95) as f64;
        totals.queue_wait_p99_ms = waits_all.value_at_quantile(0.99) as f64;
        totals.queue_wait_mean_ms = waits_all.mean();
    }
    SimResult { per_second, totals }
}

/// Rows a table shows before it groups seconds into windows.
const MAX_TABLE_ROWS: usize = 300;

/// Folds consecutive seconds into one row: counts are summed, levels are taken at the window's
/// end, concurrency is averaged, waits are the worst second's, panic is any second's.
fn fold_window(w: &[SimSecond]) -> SimSecond {
    let last = &w[w.len() - 1];
    let sum = |f: fn(&SimSecond) -> u64| w.iter().map(f).sum::<u64>();
    let max = |f: fn(&SimSecond) -> f64| w.iter().map(f).fold(0.0_f64, f64::max);
    SimSecond {
        second: w[0].second,
        arrivals: sum(|s| s.arrivals),
        concurrency: w.iter().map(|s| s.concurrency).sum::<f64>() / w.len() as f64,
        cold_starts: w.iter().map(|s| s.cold_starts).sum(),
        rejected_429: sum(|s| s.rejected_429),
        timeouts_504: sum(|s| s.timeouts_504),
        panicking: w.iter().any(|s| s.panicking),
        queue_wait_p50_ms: max(|s| s.queue_wait_p50_ms),
        queue_wait_p95_ms: max(|s| s.queue_wait_p95_ms),
        ..last.clone()
    }
}

/// A human table: one row per second (or per window of seconds when the run is long, so an
/// hour fits on a screen), runs of identical rows collapsed, then the totals.
pub fn render_table(r: &SimResult) -> String {
    const COLLAPSE_OVER: usize = 40;
    let width = r.per_second.len().div_ceil(MAX_TABLE_ROWS).max(1);
    let rows: Vec<SimSecond> = if width == 1 {
        r.per_second.clone()
    } else {
        r.per_second.chunks(width).map(fold_window).collect()
    };
    let mut out = String::new();
    if width > 1 {
        let _ = writeln!(
            out,
            "(each row is {width} s: counts summed, levels at the row's end, waits the worst second's)"
        );
    }
    let _ = writeln!(
        out,
        "{:>6} {:>8} {:>8} {:>5} {:>5} {:>4} {:>6} {:>8} {:>6} {:>6} {:>7} {:>5} {:>8} {:>8}",
        "sec",
        "arrivals",
        "conc",
        "ready",
        "start",
        "cold",
        "queue",
        "inflight",
        "429",
        "504",
        "desired",
        "panic",
        "wait_p50",
        "wait_p95"
    );
    let body = |s: &SimSecond| {
        format!(
            "{:>8} {:>8.1} {:>5} {:>5} {:>4} {:>6} {:>8} {:>6} {:>6} {:>7} {:>5} {:>8.0} {:>8.0}",
            s.arrivals,
            s.concurrency,
            s.ready,
            s.starting,
            s.cold_starts,
            s.queue_depth,
            s.in_flight,
            s.rejected_429,
            s.timeouts_504,
            s.desired,
            if s.panicking { "yes" } else { "-" },
            s.queue_wait_p50_ms,
            s.queue_wait_p95_ms
        )
    };
    let collapse = rows.len() > COLLAPSE_OVER;
    let unit = if width == 1 { "seconds" } else { "rows" };
    let mut i = 0;
    while i < rows.len() {
        let row = body(&rows[i]);
        let _ = writeln!(out, "{:>6} {row}", rows[i].second);
        let mut j = i + 1;
        if collapse {
            while j < rows.len() && body(&rows[j]) == row {
                j += 1;
            }
            if j - i > 2 {
                let _ = writeln!(
                    out,
                    "{:>6} … same for {} more {unit} (to {})",
                    "",
                    j - i - 1,
                    rows[j - 1].second
                );
            } else {
                j = i + 1;
            }
        }
        i = j;
    }
    let t = &r.totals;
    let _ = writeln!(
        out,
        "\nrequests {}  served {}  429 {}  504 {}  cold starts {}  max instances {}",
        t.requests, t.served, t.rejected_429, t.timeouts_504, t.cold_starts, t.max_instances_seen
    );
    let _ = writeln!(
        out,
        "queue wait ms: p50 {:.0}  p95 {:.0}  p99 {:.0}  mean {:.1}",
        t.queue_wait_p50_ms, t.queue_wait_p95_ms, t.queue_wait_p99_ms, t.queue_wait_mean_ms
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_normal_cdf_matches_known_quantiles() {
        assert!(inverse_normal_cdf(0.5).abs() < 1e-9);
        assert!((inverse_normal_cdf(0.975) - 1.959_963_985).abs() < 1e-6);
        assert!((inverse_normal_cdf(0.99) - Z99).abs() < 1e-6);
        assert!((inverse_normal_cdf(0.001) + 3.090_232_306).abs() < 1e-6);
    }

    #[test]
    fn lognormal_sampler_hits_its_percentiles() {
        let s = ServiceSampler::new(&ServiceTime::LogNormal {
            p50: Duration::from_millis(40),
            p99: Duration::from_millis(300),
        });
        let mut rng = StdRng::seed_from_u64(1);
        let mut v: Vec<u32> = (0..200_000).map(|_| s.sample(&mut rng) as u32).collect();
        let p50 = percentile(&mut v, 0.50);
        let p99 = percentile(&mut v, 0.99);
        assert!((39.0..=41.0).contains(&p50), "p50 {p50}");
        assert!((285.0..=315.0).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn in_flight_wheel_and_overflow_retire_on_time() {
        let mut f = InFlight::new();
        f.push(0, 5);
        f.push(0, WHEEL + 10);
        f.push(3, 5);
        for t in 1..5 {
            f.advance(t);
        }
        assert_eq!(f.count, 3);
        f.advance(5);
        assert_eq!(f.count, 1);
        for t in 6..=WHEEL + 10 {
            f.advance(t);
        }
        assert_eq!(f.count, 0);
    }
}
