//! The simulator's machinery: instances starting and serving, requests through the admission
//! rules, and the books of one run, stepped one millisecond at a time.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::in_flight::InFlight;
use super::sampling::{mean_startup, ms_at_least_1, percentile, ServiceSampler};
use super::{SimSecond, SimService, SimTotals};
use crate::admission::{
    Admission, AdmitError, Arrival, GiveUp, Occupancy, StartId, Ticket, Waiting,
};
use crate::autoscaler::Autoscaler;
use crate::coldstart::ColdStartDelay;

/// A simulated instance: admission only needs its in-flight count; `id` indexes
/// [`Fleet::instances`].
#[derive(Debug)]
struct SimInstance {
    id: u32,
    in_flight: Cell<u32>,
}

impl Occupancy for SimInstance {
    fn in_flight(&self) -> u32 {
        self.in_flight.get()
    }
    fn set_in_flight(&self, n: u32) {
        self.in_flight.set(n);
    }
    fn is_same(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

type Instance = Rc<SimInstance>;

/// A request waiting for a slot: when it arrived and how long it takes once served (ms).
#[derive(Debug, Clone, Copy)]
struct Request {
    arrived: u64,
    service: u64,
}

type Queue = Admission<Instance, Request>;

/// Milliseconds on the simulated clock as the admission rules' time.
fn at(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The first millisecond at or after `d`.
fn ms_ceil(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// Requests that got a slot: when each completes, the 504s still to fire, and the waits.
struct Served {
    in_flight: InFlight,
    /// When the 504 of a request served past its timeout fires.
    timeouts: BinaryHeap<Reverse<u64>>,
    request_timeout_ms: u64,
    served: u64,
    waits_this_second: Vec<u32>,
    waits_all: Histogram<u64>,
}

impl Served {
    /// `request` takes a slot on `instance` at `t`.
    fn start(&mut self, t: u64, request: Request, instance: &Instance) {
        let wait = t - request.arrived;
        if wait + request.service > self.request_timeout_ms {
            self.timeouts
                .push(Reverse(request.arrived + self.request_timeout_ms));
        } else {
            self.served += 1;
        }
        self.in_flight.push(t, t + request.service, instance.id);
        self.waits_this_second
            .push(u32::try_from(wait).unwrap_or(u32::MAX));
        self.waits_all.saturating_record(wait);
    }
}

/// The service's instances, starting and ready, and what starting them cost.
struct Fleet {
    rng: StdRng,
    startup: ColdStartDelay,
    /// Every instance the run started, by id.
    instances: Vec<Instance>,
    ready: Vec<Instance>,
    /// (ready at, started at, its start in the admission rules), in ms, of the instances
    /// still starting.
    starting: BinaryHeap<Reverse<(u64, u64, StartId)>>,
    /// Answers to requests that waited for a start stopped before it was ready, counted in the
    /// next millisecond.
    answered: Vec<AdmitError>,
    cold_starts_this_second: u32,
    cold_starts_total: u64,
    max_seen: u32,
}

impl Fleet {
    fn total(&self) -> u32 {
        (self.ready.len() + self.starting.len()) as u32
    }

    /// An instance is ready at `t` after `startup`: it takes requests, queued ones first.
    fn add_ready(&mut self, t: u64, startup: Duration, queue: &mut Queue, served: &mut Served) {
        let instance = Rc::new(SimInstance {
            id: self.instances.len() as u32,
            in_flight: Cell::new(0),
        });
        self.instances.push(instance.clone());
        queue.add_ready(at(t), instance.clone(), startup, |request, i| {
            served.start(t, request, i);
            true
        });
        self.ready.push(instance);
    }

    fn start_instance(&mut self, t: u64, queue: &mut Queue, served: &mut Served) {
        let ms = (self.startup.sample(&mut self.rng).as_secs_f64() * 1000.0).round() as u64;
        if ms == 0 {
            self.add_ready(t, Duration::ZERO, queue, served);
        } else {
            // A simulated start never fails: its budget is the time it takes.
            let id = queue.start_began(at(t), at(t + ms));
            self.starting.push(Reverse((t + ms, t, id)));
        }
        self.cold_starts_this_second += 1;
        self.cold_starts_total += 1;
        self.max_seen = self.max_seen.max(self.total());
    }

    /// Instances whose start-up ends by `t` become ready.
    fn finish_startups(&mut self, t: u64, queue: &mut Queue, served: &mut Served) {
        while let Some(&Reverse((ready_at, started_at, id))) = self.starting.peek() {
            if ready_at > t {
                break;
            }
            self.starting.pop();
            self.add_ready(t, at(ready_at - started_at), queue, served);
            queue.start_ended(at(t), id);
        }
    }

    /// Moves the instance count to `desired`: start new ones, or stop instances still starting
    /// first (the newest first, as a Deployment deletes not-ready pods first), then the least
    /// busy ready ones, as the supervisor of `emu up` does.
    fn reconcile(&mut self, t: u64, desired: u32, queue: &mut Queue, served: &mut Served) {
        let current = self.total();
        if desired > current {
            for _ in current..desired {
                self.start_instance(t, queue, served);
            }
            return;
        }
        let mut remove = current - desired;
        if remove > 0 && !self.starting.is_empty() {
            let mut v: Vec<(u64, u64, StartId)> =
                self.starting.drain().map(|Reverse(x)| x).collect();
            v.sort_unstable();
            while remove > 0 {
                let Some((_, _, id)) = v.pop() else { break };
                let answers = queue.start_ended(at(t), id);
                self.answered.extend(answers.into_iter().map(|(_, a)| a));
                remove -= 1;
            }
            self.starting = v.into_iter().map(Reverse).collect();
        }
        for _ in 0..remove {
            let Some(i) = (0..self.ready.len()).min_by_key(|&i| self.ready[i].in_flight()) else {
                break;
            };
            let instance = self.ready.remove(i);
            queue.remove(&instance);
        }
    }
}

/// Outcomes counted during one second.
#[derive(Default)]
pub(super) struct SecondCounts {
    arrivals: u64,
    rejected_429: u64,
    failed_500: u64,
    timeouts_504: u64,
    /// Queue wait (ms) of the requests that got a slot during the second.
    wait_p50: f64,
    wait_p95: f64,
}

impl SecondCounts {
    fn count(&mut self, answer: AdmitError) {
        match answer {
            AdmitError::NoAvailableInstance => self.rejected_429 += 1,
            // The simulation never closes its queue, so it never shuts down.
            AdmitError::NoInstanceStarted | AdmitError::ShuttingDown => self.failed_500 += 1,
            AdmitError::Timeout => self.timeouts_504 += 1,
        }
    }
}

/// One run's mutable state.
pub(super) struct Run {
    queue: Queue,
    fleet: Fleet,
    served: Served,
    /// When each queued request gives up, unless it is served first.
    give_ups: BinaryHeap<Reverse<(u64, Ticket)>>,
    request_timeout: Duration,
    /// Fractional arrivals carried to the next millisecond.
    arrivals_due: f64,
    /// Instances (ids) that a request finished on in the current millisecond.
    due: Vec<u32>,
}

impl Run {
    /// A run of `svc` just after deployment, with `initial` instances up.
    pub(super) fn new(svc: &SimService, seed: u64, initial: u32) -> Run {
        let concurrency = if svc.concurrency == 0 {
            u32::MAX
        } else {
            svc.concurrency
        };
        let mut run = Run {
            queue: Admission::new(concurrency, svc.queue_timeout),
            fleet: Fleet {
                rng: StdRng::seed_from_u64(seed),
                startup: svc.startup,
                instances: Vec::new(),
                ready: Vec::new(),
                starting: BinaryHeap::new(),
                answered: Vec::new(),
                cold_starts_this_second: 0,
                cold_starts_total: 0,
                max_seen: initial,
            },
            served: Served {
                in_flight: InFlight::new(),
                timeouts: BinaryHeap::new(),
                request_timeout_ms: ms_at_least_1(svc.request_timeout),
                served: 0,
                waits_this_second: Vec::new(),
                waits_all: Histogram::new_with_bounds(1, 86_400_000, 3)
                    .expect("static histogram bounds are valid"),
            },
            give_ups: BinaryHeap::new(),
            request_timeout: svc.request_timeout,
            arrivals_due: 0.0,
            due: Vec::new(),
        };
        run.queue.sample(Duration::ZERO);
        // The initial instances started before the load: their start-ups count towards the
        // queue timeout as the distribution's mean.
        let startup = mean_startup(&svc.startup);
        for _ in 0..initial {
            run.fleet
                .add_ready(0, startup, &mut run.queue, &mut run.served);
        }
        run
    }

    /// Nothing waits for an outcome: the queue is empty and no 504 is still to fire.
    pub(super) fn settled(&self) -> bool {
        self.queue.queue_depth() == 0 && self.served.timeouts.is_empty()
    }

    pub(super) fn queue_timeout(&self) -> Duration {
        self.queue.queue_timeout()
    }

    pub(super) fn ready(&self) -> u32 {
        self.fleet.ready.len() as u32
    }

    /// The second `s`, with `rate` requests arriving evenly over it.
    pub(super) fn second(
        &mut self,
        s: u64,
        rate: f64,
        sampler: &ServiceSampler,
        scaler: &mut Autoscaler,
    ) -> SecondCounts {
        let mut counts = SecondCounts::default();
        self.fleet.cold_starts_this_second = 0;
        let per_ms = rate / 1000.0;
        for ms in 0..1000 {
            self.step(s * 1000 + ms, per_ms, sampler, scaler, &mut counts);
        }
        // Requests that get a slot at the second's end (an instance that starts at once when
        // the autoscaler decides) count for the next second, which that moment begins.
        let waits = &mut self.served.waits_this_second;
        counts.wait_p50 = percentile(waits, 0.50);
        counts.wait_p95 = percentile(waits, 0.95);
        waits.clear();
        counts
    }

    /// The time-weighted concurrency since the last sample: the autoscaler's input.
    pub(super) fn sample(&mut self, now: Duration) -> f64 {
        self.queue.sample(now).avg_concurrency
    }

    /// Moves the instance count towards `desired` at `t`.
    pub(super) fn reconcile(&mut self, t: u64, desired: u32) {
        self.fleet
            .reconcile(t, desired, &mut self.queue, &mut self.served);
    }

    /// What second `s` looked like, at its end.
    pub(super) fn row(
        &self,
        s: u64,
        counts: &SecondCounts,
        concurrency: f64,
        desired: u32,
        panicking: bool,
    ) -> SimSecond {
        SimSecond {
            second: s,
            arrivals: counts.arrivals,
            concurrency,
            ready: self.fleet.ready.len() as u32,
            starting: self.fleet.starting.len() as u32,
            cold_starts: self.fleet.cold_starts_this_second,
            queue_depth: self.queue.queue_depth() as u32,
            in_flight: self.queue.in_flight(),
            rejected_429: counts.rejected_429,
            failed_500: counts.failed_500,
            timeouts_504: counts.timeouts_504,
            desired,
            panicking,
            queue_wait_p50_ms: counts.wait_p50,
            queue_wait_p95_ms: counts.wait_p95,
        }
    }

    /// The whole run, from its rows and its books.
    pub(super) fn totals(&self, rows: &[SimSecond]) -> SimTotals {
        let sum = |f: fn(&SimSecond) -> u64| rows.iter().map(f).sum::<u64>();
        let waits = &self.served.waits_all;
        let quantile = |q| {
            if waits.is_empty() {
                0.0
            } else {
                waits.value_at_quantile(q) as f64
            }
        };
        SimTotals {
            requests: sum(|s| s.arrivals),
            served: self.served.served,
            cold_starts: self.fleet.cold_starts_total,
            rejected_429: sum(|s| s.rejected_429),
            failed_500: sum(|s| s.failed_500),
            timeouts_504: sum(|s| s.timeouts_504),
            max_instances_seen: self.fleet.max_seen,
            queue_wait_p50_ms: quantile(0.50),
            queue_wait_p95_ms: quantile(0.95),
            queue_wait_p99_ms: quantile(0.99),
            queue_wait_mean_ms: if waits.is_empty() { 0.0 } else { waits.mean() },
        }
    }

    /// One millisecond: start-ups end, requests complete, 504s fire, requests arrive (one from
    /// zero starts an instance, as the activator does), queued requests give up.
    fn step(
        &mut self,
        t: u64,
        per_ms: f64,
        sampler: &ServiceSampler,
        scaler: &mut Autoscaler,
        counts: &mut SecondCounts,
    ) {
        let Run {
            queue,
            fleet,
            served,
            give_ups,
            due,
            ..
        } = self;
        for answer in fleet.answered.drain(..) {
            counts.count(answer);
        }
        fleet.finish_startups(t, queue, served);
        served.in_flight.take_due(t, due);
        for &id in due.iter() {
            queue.release(at(t), &fleet.instances[id as usize], |request, i| {
                served.start(t, request, i);
                true
            });
        }
        while served.timeouts.peek().is_some_and(|&Reverse(c)| c <= t) {
            served.timeouts.pop();
            counts.timeouts_504 += 1;
        }

        self.arrivals_due += per_ms;
        // Truncation is floor for the non-negative count, without a call into libm.
        let n = self.arrivals_due as u64;
        self.arrivals_due -= n as f64;
        counts.arrivals += n;
        for _ in 0..n {
            let request = Request {
                arrived: t,
                service: sampler.sample(&mut fleet.rng),
            };
            let must_wait = || Waiting {
                waiter: request,
                receipt: (),
                deadline: at(t) + self.request_timeout,
            };
            match queue.arrive(at(t), must_wait) {
                Ok(Arrival::Admitted(instance)) => served.start(t, request, &instance),
                Ok(Arrival::Queued { ticket, until, .. }) => {
                    give_ups.push(Reverse((ms_ceil(until), ticket)));
                }
                Err(answer) => counts.count(answer),
            }
        }
        if n > 0 && fleet.total() == 0 {
            fleet.start_instance(t, queue, served);
            scaler.activated(at(t));
        }

        while let Some(&Reverse((when, ticket))) = give_ups.peek() {
            if when > t {
                break;
            }
            give_ups.pop();
            match queue.give_up(at(t), ticket) {
                Some(GiveUp::Answer(answer)) => counts.count(answer),
                Some(GiveUp::Hold(until)) => {
                    give_ups.push(Reverse((ms_ceil(until).max(t + 1), ticket)))
                }
                None => {}
            }
        }
    }
}
