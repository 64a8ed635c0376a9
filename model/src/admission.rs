//! Admission and queueing, as Cloud Run does it: which instance gets a request, the FIFO queue in
//! front of the instances, and when a queued request gives up.
//!
//! A request takes a slot on the ready instance with the most free slots. With no free slot it
//! waits in one FIFO queue; a released slot, or an instance that becomes ready, goes straight to
//! the oldest waiter. A wait that outlives the queue timeout (configured, or the longer of 10 s and
//! 3.5 × the mean start-up time of the instances so far) becomes a 429, or a 500 when no instance
//! is ready to take it; one that outlives the request's own deadline first becomes a 504.
//!
//! A start in progress holds the queue timeout off: a request that triggered a start, or waits
//! while one runs, waits for it as long as the start is within its startup-probe budget (Cloud
//! Run's activator holds a request for the instance it is starting). It then gets the instance,
//! a 500 (or 429 with instances ready but busy) when the start fails, or a 504 at its deadline.
//!
//! [`Admission`] is these rules as a state machine with no clock and no I/O: every call takes
//! `now` (time since an origin the caller picks). The front door wraps it in a mutex, tokio timers
//! and channels; `emu simulate` drives it on a simulated millisecond clock. Both therefore answer
//! the same request the same way.
//!
//! The caller's instance type `I` keeps its own in-flight count ([`Occupancy`]), so readers that
//! only want a number (status pages, the supervisor choosing whom to stop) need not take the lock
//! this state lives under. A waiter `W` is whatever the caller uses to hand a request its slot
//! (a channel in the front door, the request itself in the simulator).

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds (seconds) of the queue-wait histogram buckets; one more bucket above is +Inf.
pub const QUEUE_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Index of the [`QUEUE_BUCKETS`] bucket a wait falls in (`QUEUE_BUCKETS.len()` = +Inf).
pub fn queue_bucket(wait: Duration) -> usize {
    let s = wait.as_secs_f64();
    QUEUE_BUCKETS
        .iter()
        .position(|b| s <= *b)
        .unwrap_or(QUEUE_BUCKETS.len())
}

/// The shortest queue timeout Cloud Run applies when none is configured.
pub const MIN_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Cloud Run's queue timeout when none is configured: the longer of 10 s and 3.5 × the mean
/// start-up time, so a request may wait out a few cold starts before it is turned away.
pub fn default_queue_timeout(mean_startup: Duration) -> Duration {
    MIN_QUEUE_TIMEOUT.max(mean_startup.mul_f64(3.5))
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    /// Waited the queue timeout with every ready instance busy: 429.
    NoAvailableInstance,
    /// Waited the queue timeout and no instance was ready to take it: 500.
    NoInstanceStarted,
    /// The request's own deadline passed while it waited: 504.
    Timeout,
    /// The service is shutting down: 503.
    ShuttingDown,
}

/// An instance as admission counts it: how many requests it serves now.
///
/// Only [`Admission`] changes the count, under whatever lock guards it; anyone may read it.
pub trait Occupancy {
    fn in_flight(&self) -> u32;
    fn set_in_flight(&self, n: u32);
    /// The same instance (identity, not equal contents).
    fn is_same(&self, other: &Self) -> bool;
}

impl<T: Occupancy + ?Sized> Occupancy for Arc<T> {
    fn in_flight(&self) -> u32 {
        (**self).in_flight()
    }
    fn set_in_flight(&self, n: u32) {
        (**self).set_in_flight(n);
    }
    fn is_same(&self, other: &Self) -> bool {
        Arc::ptr_eq(self, other)
    }
}

impl<T: Occupancy + ?Sized> Occupancy for Rc<T> {
    fn in_flight(&self) -> u32 {
        (**self).in_flight()
    }
    fn set_in_flight(&self, n: u32) {
        (**self).set_in_flight(n);
    }
    fn is_same(&self, other: &Self) -> bool {
        Rc::ptr_eq(self, other)
    }
}

/// What a queued request whose timer fired gets ([`Admission::give_up`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// It leaves the queue with this answer.
    Answer(AdmitError),
    /// A start is in progress within its budget: it waits on, and the caller asks again at this
    /// time (its deadline or the end of the start's budget, whichever comes first).
    Hold(Duration),
}

/// A start in progress, to tell [`Admission`] how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StartId(u64);

/// A queued request's place, to give it up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// A request that has to wait: how to hand it a slot, and by when it must be answered.
#[derive(Debug)]
pub struct Waiting<W, R> {
    /// What [`Admission`] keeps in the queue and hands to `deliver` with a slot.
    pub waiter: W,
    /// What the caller keeps (the receiving end of a channel, say); returned in
    /// [`Arrival::Queued`].
    pub receipt: R,
    /// The request's own deadline: waiting past it is a 504.
    pub deadline: Duration,
}

/// What happened to an arriving request.
#[derive(Debug)]
pub enum Arrival<I, R> {
    /// A free slot on this instance: the request holds it until [`Admission::release`].
    Admitted(I),
    /// No free slot: the request waits. Unless a slot is delivered to its waiter first, the
    /// caller calls [`Admission::give_up`] at `until`. `receipt` is the caller's half of the
    /// waiter (the receiving end of a channel, say).
    Queued {
        ticket: Ticket,
        until: Duration,
        receipt: R,
    },
}

/// What [`Admission::sample`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueSnapshot {
    /// Instances taking requests.
    pub ready: usize,
    /// Requests in flight on the ready instances.
    pub in_flight: u32,
    pub queue_depth: usize,
    /// Time-weighted mean of in-flight + queued requests since the previous sample: the
    /// autoscaler's input.
    pub avg_concurrency: f64,
}

/// One place in the queue; `waiter` is `None` once the request left (a tombstone, dropped when
/// it reaches the front), so leaving from the middle costs a binary search, not a shift.
#[derive(Debug)]
struct Place<W> {
    ticket: Ticket,
    /// The request's own deadline: giving up at or after it is a 504.
    deadline: Duration,
    /// Its queue timeout passed while a start was in progress: it waits for that start only.
    held: bool,
    waiter: Option<W>,
}

/// A service's admission state: its ready instances, its queue, and the demand the autoscaler
/// reads. See the module documentation for the rules.
#[derive(Debug)]
pub struct Admission<I, W> {
    /// Slots per instance.
    concurrency: u32,
    /// Configured queue timeout; `None` = [`default_queue_timeout`] of the observed start-ups.
    queue_timeout: Option<Duration>,
    /// Instances that take requests, in the order they became ready.
    ready: Vec<I>,
    queue: VecDeque<Place<W>>,
    /// Places in `queue` still waiting.
    waiting: usize,
    next_ticket: u64,
    closed: bool,
    /// In flight + queued, and its integral (request·nanoseconds) since `window_start`.
    demand: u32,
    demand_integral: u128,
    last_change: Option<Duration>,
    window_start: Option<Duration>,
    /// Start-up times of the instances that became ready, for the default queue timeout.
    startup_sum: Duration,
    startup_count: u32,
    /// Starts in progress, each with the end of its startup-probe budget.
    starts: Vec<(StartId, Duration)>,
    next_start: u64,
}

impl<I: Occupancy + Clone, W> Admission<I, W> {
    /// `concurrency` slots per instance (at least 1); `queue_timeout` `None` = Cloud Run's rule.
    pub fn new(concurrency: u32, queue_timeout: Option<Duration>) -> Self {
        Admission {
            concurrency: concurrency.max(1),
            queue_timeout,
            ready: Vec::new(),
            queue: VecDeque::new(),
            waiting: 0,
            next_ticket: 0,
            closed: false,
            demand: 0,
            demand_integral: 0,
            last_change: None,
            window_start: None,
            startup_sum: Duration::ZERO,
            startup_count: 0,
            starts: Vec::new(),
            next_start: 0,
        }
    }

    pub fn concurrency(&self) -> u32 {
        self.concurrency
    }

    /// How long a request arriving now may wait for a slot.
    pub fn queue_timeout(&self) -> Duration {
        if let Some(q) = self.queue_timeout {
            return q;
        }
        let mean = match self.startup_count {
            0 => Duration::ZERO,
            n => self.startup_sum / n,
        };
        default_queue_timeout(mean)
    }

    /// A request arrives at `now`: it takes a free slot, or queues as the [`Waiting`] that
    /// `must_wait` describes (called only then, so a request that need not wait builds no
    /// waiter).
    pub fn arrive<R>(
        &mut self,
        now: Duration,
        must_wait: impl FnOnce() -> Waiting<W, R>,
    ) -> Result<Arrival<I, R>, AdmitError> {
        if self.closed {
            return Err(AdmitError::ShuttingDown);
        }
        self.touch(now);
        self.demand += 1;
        if let Some(instance) = self.pick() {
            instance.set_in_flight(instance.in_flight() + 1);
            return Ok(Arrival::Admitted(instance));
        }
        let Waiting {
            waiter,
            receipt,
            deadline,
        } = must_wait();
        let gives_up = now + self.queue_timeout();
        let until = gives_up.min(deadline);
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.queue.push_back(Place {
            ticket,
            deadline,
            held: false,
            waiter: Some(waiter),
        });
        self.waiting += 1;
        Ok(Arrival::Queued {
            ticket,
            until,
            receipt,
        })
    }

    /// The queued request `ticket` reached its `until`: the answer it gets, or that it waits on
    /// for a start in progress; `None` if it is no longer waiting (a slot was delivered to it
    /// first, or the queue closed).
    pub fn give_up(&mut self, now: Duration, ticket: Ticket) -> Option<GiveUp> {
        let i = self.position(ticket)?;
        let deadline = self.queue[i].deadline;
        if now < deadline {
            if let Some(end) = self.start_budget_end(now) {
                self.queue[i].held = true;
                return Some(GiveUp::Hold(end.min(deadline)));
            }
        }
        self.leave(now, ticket)?;
        Some(GiveUp::Answer(if now >= deadline {
            AdmitError::Timeout
        } else {
            self.no_slot()
        }))
    }

    /// An instance starts at `now`; its startup-probe budget ends at `budget_end`. Until then,
    /// or until [`Admission::start_ended`], queued requests wait for it past their queue timeout.
    pub fn start_began(&mut self, now: Duration, budget_end: Duration) -> StartId {
        self.touch(now);
        let id = StartId(self.next_start);
        self.next_start += 1;
        self.starts.push((id, budget_end));
        id
    }

    /// Start `id` is over: it became ready (after [`Admission::add_ready`]) or it failed or was
    /// stopped. With no other start left in its budget, the requests held for it leave: returned
    /// with their answer (500 with no instance ready, else 429) for the caller to deliver.
    pub fn start_ended(&mut self, now: Duration, id: StartId) -> Vec<(W, AdmitError)> {
        self.starts.retain(|(s, _)| *s != id);
        if self.start_budget_end(now).is_some() || !self.queue.iter().any(|p| p.held) {
            return Vec::new();
        }
        let answer = self.no_slot();
        let held: Vec<Ticket> = self
            .queue
            .iter()
            .filter(|p| p.held && p.waiter.is_some())
            .map(|p| p.ticket)
            .collect();
        held.into_iter()
            .filter_map(|t| {
                let i = self.position(t)?;
                let waiter = self.queue[i].waiter.take()?;
                self.forget(now);
                Some((waiter, answer))
            })
            .collect()
    }

    /// The latest budget end of the starts still within their budget at `now`.
    fn start_budget_end(&self, now: Duration) -> Option<Duration> {
        self.starts
            .iter()
            .map(|(_, end)| *end)
            .filter(|end| *end > now)
            .max()
    }

    /// Why a request that waited out its queue timeout gets no slot.
    fn no_slot(&self) -> AdmitError {
        if self.ready.is_empty() {
            AdmitError::NoInstanceStarted
        } else {
            AdmitError::NoAvailableInstance
        }
    }

    /// The queued request `ticket` went away (its client left). False if it was no longer
    /// waiting: then a slot may have been delivered to it, which its caller must release.
    pub fn withdraw(&mut self, now: Duration, ticket: Ticket) -> bool {
        self.leave(now, ticket).is_some()
    }

    /// A request on `instance` finished. Its slot goes to the oldest waiter if the instance
    /// still takes requests (`deliver` hands it over; false = that waiter is gone, try the
    /// next). Returns true when the instance has nothing in flight any more.
    pub fn release(
        &mut self,
        now: Duration,
        instance: &I,
        mut deliver: impl FnMut(W, &I) -> bool,
    ) -> bool {
        self.touch(now);
        self.demand -= 1;
        if self.waiting > 0 && self.ready.iter().any(|r| r.is_same(instance)) {
            while let Some(waiter) = self.pop_waiter() {
                if deliver(waiter, instance) {
                    return false; // the slot, and its in-flight count, carry over.
                }
                self.demand -= 1;
            }
        }
        let left = instance.in_flight().saturating_sub(1);
        instance.set_in_flight(left);
        left == 0
    }

    /// `instance` passed its startup probe after `startup`: it takes requests, queued ones first.
    pub fn add_ready(
        &mut self,
        now: Duration,
        instance: I,
        startup: Duration,
        deliver: impl FnMut(W, &I) -> bool,
    ) {
        self.startup_sum += startup;
        self.startup_count += 1;
        self.resume(now, instance, deliver);
    }

    /// `instance` takes requests again (its readiness probe passes): queued requests first.
    pub fn resume(&mut self, now: Duration, instance: I, mut deliver: impl FnMut(W, &I) -> bool) {
        self.touch(now);
        while instance.in_flight() < self.concurrency {
            let Some(waiter) = self.pop_waiter() else {
                break;
            };
            instance.set_in_flight(instance.in_flight() + 1);
            if !deliver(waiter, &instance) {
                instance.set_in_flight(instance.in_flight() - 1);
                self.demand -= 1;
            }
        }
        self.ready.push(instance);
    }

    /// Takes `instance` out of rotation (unready, draining, stopped): no new requests; those in
    /// flight go on and are released as usual.
    pub fn remove(&mut self, instance: &I) {
        self.ready.retain(|r| !r.is_same(instance));
    }

    /// Stops admitting: new requests get [`AdmitError::ShuttingDown`]. Returns the waiters, whose
    /// requests get the same answer (the caller drops or tells them).
    pub fn close(&mut self) -> Vec<W> {
        self.closed = true;
        let waiters: Vec<W> = self.queue.drain(..).filter_map(|p| p.waiter).collect();
        self.demand -= self.waiting as u32;
        self.waiting = 0;
        waiters
    }

    pub fn queue_depth(&self) -> usize {
        self.waiting
    }

    pub fn ready_count(&self) -> usize {
        self.ready.len()
    }

    /// Requests in flight anywhere, on ready instances or on ones draining.
    pub fn in_flight(&self) -> u32 {
        self.demand - self.waiting as u32
    }

    /// The state now, and the time-weighted concurrency since the previous sample, which
    /// starts a new averaging window.
    pub fn sample(&mut self, now: Duration) -> QueueSnapshot {
        self.touch(now);
        let span = self.window_start.map_or(Duration::ZERO, |s| now - s);
        let avg_concurrency = if span.is_zero() {
            f64::from(self.demand)
        } else {
            self.demand_integral as f64 / span.as_nanos() as f64
        };
        self.demand_integral = 0;
        self.window_start = Some(now);
        QueueSnapshot {
            ready: self.ready.len(),
            in_flight: self.ready.iter().map(Occupancy::in_flight).sum(),
            queue_depth: self.waiting,
            avg_concurrency,
        }
    }

    /// The ready instance with the most free slots (the first of equals).
    fn pick(&self) -> Option<I> {
        let mut best: Option<&I> = None;
        let mut best_in_flight = self.concurrency;
        for instance in &self.ready {
            let n = instance.in_flight();
            if n < best_in_flight {
                best_in_flight = n;
                best = Some(instance);
                if n == 0 {
                    break;
                }
            }
        }
        best.cloned()
    }

    /// The oldest waiter still waiting, out of the queue.
    fn pop_waiter(&mut self) -> Option<W> {
        while let Some(place) = self.queue.pop_front() {
            if let Some(waiter) = place.waiter {
                self.waiting -= 1;
                return Some(waiter);
            }
        }
        None
    }

    /// Where `ticket` waits in the queue, if it still does.
    fn position(&self, ticket: Ticket) -> Option<usize> {
        // Places are pushed in ticket order and only popped from the front: sorted.
        let i = self
            .queue
            .binary_search_by_key(&ticket, |p| p.ticket)
            .ok()?;
        self.queue[i].waiter.is_some().then_some(i)
    }

    /// Takes `ticket` out of the queue; `Some(())` if it was waiting.
    fn leave(&mut self, now: Duration, ticket: Ticket) -> Option<()> {
        let i = self.position(ticket)?;
        self.queue[i].waiter.take()?;
        self.forget(now);
        Some(())
    }

    /// Accounts for a place whose waiter was just taken: it no longer waits.
    fn forget(&mut self, now: Duration) {
        self.waiting -= 1;
        if self.waiting == 0 {
            self.queue.clear();
        }
        while self.queue.front().is_some_and(|p| p.waiter.is_none()) {
            self.queue.pop_front();
        }
        self.touch(now);
        self.demand -= 1;
    }

    /// Adds the demand since the last change to the integral.
    fn touch(&mut self, now: Duration) {
        if let Some(last) = self.last_change {
            let span = now.saturating_sub(last).as_nanos();
            self.demand_integral += u128::from(self.demand) * span;
        }
        self.last_change = Some(now);
        if self.window_start.is_none() {
            self.window_start = Some(now);
        }
    }
}
