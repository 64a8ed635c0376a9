//! Admission in the live front door: the async shell around the model's [`Admission`] rules.
//!
//! The rules (which instance gets a request, the FIFO queue, when a waiting request gives up with
//! 429, 500 or 504) are `emu_model::admission`, the code `emu simulate` runs too. This shell adds
//! what a live service needs: one short mutex per service around the rules, a oneshot channel per
//! waiting request, a tokio timer for its give-up time, the counters admin and the sampler read,
//! and a permit that holds a slot until the request's response is done and releases it on drop
//! (mini-redis' semaphore-permit discipline).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use emu_model::admission::{
    queue_bucket, Admission, Arrival, GiveUp, StartId, Ticket, Waiting, QUEUE_BUCKETS,
};
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::instances::instance::{Instance, InstanceState};

pub use emu_model::admission::{AdmitError, QueueSnapshot};

/// How a waiting request is handed its instance, or the answer of a start that failed it.
type Waiter = oneshot::Sender<Result<Arc<Instance>, AdmitError>>;
type Receipt = oneshot::Receiver<Result<Arc<Instance>, AdmitError>>;

/// Hands `instance` to a waiting request; false if that request is gone.
fn deliver(waiter: Waiter, instance: &Arc<Instance>) -> bool {
    waiter.send(Ok(instance.clone())).is_ok()
}

/// A queued request's place, given back if the request is dropped while it waits.
struct Abandoned<'a> {
    queue: &'a Arc<AdmissionQueue>,
    ticket: Ticket,
    rx: &'a mut Receipt,
    armed: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let now = self.queue.since_origin(Instant::now());
        if self.queue.rules.lock().withdraw(now, self.ticket) {
            return;
        }
        // Already granted a slot (under the lock, before we got it): hand it on.
        if let Ok(Ok(instance)) = self.rx.try_recv() {
            self.queue.release(&instance);
        }
    }
}

/// A held slot: the request owns it until its response body is done, then drop releases it.
#[derive(Debug)]
pub struct Permit {
    queue: Arc<AdmissionQueue>,
    pub slot: Arc<Instance>,
    /// The request waited for this instance to start.
    pub cold: bool,
    /// How long the request waited in the queue.
    pub queued: Duration,
}

/// A start in progress, as admission counts it: while it is within its startup-probe budget,
/// requests wait for it past their queue timeout. Dropping it ends it; a start that did not
/// become ready first ([`AdmissionQueue::add_ready`]) fails the requests held for it.
#[derive(Debug)]
pub struct Start {
    queue: Arc<AdmissionQueue>,
    id: StartId,
}

impl Drop for Start {
    fn drop(&mut self) {
        let now = self.queue.since_origin(Instant::now());
        let answered = self.queue.rules.lock().start_ended(now, self.id);
        // Told outside the lock; a waiter that is gone needs no answer.
        for (waiter, answer) in answered {
            let _ = waiter.send(Err(answer));
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.queue.release(&self.slot);
    }
}

/// Counters the admin endpoints and the per-second sampler read.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub cold_starts: AtomicU64,
    pub rejected_429: AtomicU64,
    pub failed_500: AtomicU64,
    pub timeouts_504: AtomicU64,
    pub errors_5xx: AtomicU64,
    /// Responses by status code (index = code, 0..600).
    pub by_status: Vec<AtomicU64>,
    /// Queue wait histogram (see [`QUEUE_BUCKETS`]), plus count and sum in microseconds.
    pub queue_wait_buckets: Vec<AtomicU64>,
    pub queue_wait_count: AtomicU64,
    pub queue_wait_sum_us: AtomicU64,
}

impl Counters {
    fn new() -> Self {
        Counters {
            by_status: (0..600).map(|_| AtomicU64::new(0)).collect(),
            queue_wait_buckets: (0..=QUEUE_BUCKETS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            ..Default::default()
        }
    }

    /// Records a finished request's status.
    pub fn record_status(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.by_status.get(usize::from(status)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        match status {
            429 => self.rejected_429.fetch_add(1, Ordering::Relaxed),
            504 => self.timeouts_504.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        if status >= 500 {
            self.errors_5xx.fetch_add(1, Ordering::Relaxed);
        }
        if status == 500 {
            self.failed_500.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn record_queue_wait(&self, d: Duration) {
        self.queue_wait_buckets[queue_bucket(d)].fetch_add(1, Ordering::Relaxed);
        self.queue_wait_count.fetch_add(1, Ordering::Relaxed);
        self.queue_wait_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// A service's admission queue: its ready instances, their slots and the requests waiting.
pub struct AdmissionQueue {
    /// Slots per instance (at least 1).
    pub concurrency: u32,
    /// The rules, on a clock that starts when the queue is made.
    rules: Mutex<Admission<Arc<Instance>, Waiter>>,
    origin: Instant,
    pub counters: Counters,
    /// Pinged when a request has to wait: the supervisor may start an instance.
    demand: Notify,
}

impl std::fmt::Debug for AdmissionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionQueue")
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl AdmissionQueue {
    /// `concurrency` slots per instance; `queue_timeout` `None` = max(10 s, 3.5 × mean startup).
    pub fn new(concurrency: u32, queue_timeout: Option<Duration>) -> Arc<AdmissionQueue> {
        let rules = Admission::new(concurrency, queue_timeout);
        Arc::new(AdmissionQueue {
            concurrency: rules.concurrency(),
            rules: Mutex::new(rules),
            origin: Instant::now(),
            counters: Counters::new(),
            demand: Notify::new(),
        })
    }

    /// `t` on the rules' clock.
    fn since_origin(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.origin)
    }

    /// How long a request may wait for a slot: configured, or Cloud Run's max(10 s, 3.5 × mean startup).
    pub fn queue_timeout(&self) -> Duration {
        self.rules.lock().queue_timeout()
    }

    /// Takes a slot, waiting in the FIFO queue when none is free. `deadline` is the request's timeout.
    pub async fn acquire(self: &Arc<Self>, deadline: Instant) -> Result<Permit, AdmitError> {
        let arrived = Instant::now();
        let must_wait = || {
            let (waiter, receipt) = oneshot::channel();
            Waiting {
                waiter,
                receipt,
                deadline: self.since_origin(deadline),
            }
        };
        let arrival = self
            .rules
            .lock()
            .arrive(self.since_origin(arrived), must_wait)?;
        match arrival {
            Arrival::Admitted(slot) => Ok(Permit {
                queue: self.clone(),
                slot,
                cold: false,
                queued: Duration::ZERO,
            }),
            Arrival::Queued {
                ticket,
                until,
                receipt,
            } => {
                self.demand.notify_one();
                // Boxed: waiting is the rare path, and its state (a timer, a channel) would
                // otherwise ride in every request's future.
                let until = self.origin + until;
                Box::pin(self.wait(ticket, receipt, arrived, until)).await
            }
        }
    }

    /// Waits in the queue for a slot until `until` (the queue timeout or the request's
    /// deadline), and on while the rules hold it for a start in progress.
    async fn wait(
        self: &Arc<Self>,
        ticket: Ticket,
        mut rx: Receipt,
        arrived: Instant,
        mut until: Instant,
    ) -> Result<Permit, AdmitError> {
        // If the request is dropped while it waits (the client went away), the guard takes its
        // place out of the queue, so it neither lingers as phantom demand nor swallows a slot.
        let mut guard = Abandoned {
            queue: self,
            ticket,
            rx: &mut rx,
            armed: true,
        };
        let granted = loop {
            match tokio::time::timeout_at(until, &mut *guard.rx).await {
                Ok(got) => break got.unwrap_or(Err(AdmitError::ShuttingDown)), // closed: 503
                Err(_) => {
                    let now = self.since_origin(Instant::now());
                    match self.rules.lock().give_up(now, ticket) {
                        Some(GiveUp::Hold(next)) => until = self.origin + next,
                        Some(GiveUp::Answer(answer)) => break Err(answer),
                        // A grant raced in, under the lock, before we took it: it is in the
                        // channel (or the queue closed and dropped it).
                        None => break guard.rx.try_recv().unwrap_or(Err(AdmitError::ShuttingDown)),
                    }
                }
            }
        };
        // Nothing below awaits: from here the request cannot be dropped half-way.
        guard.armed = false;
        drop(guard);
        let slot = granted?;
        let queued = arrived.elapsed();
        self.counters.record_queue_wait(queued);
        let cold = slot.ready_at().is_some_and(|r| r > arrived);
        if cold {
            self.counters.cold_starts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Permit {
            queue: self.clone(),
            slot,
            cold,
            queued,
        })
    }

    fn release(&self, instance: &Arc<Instance>) {
        instance.count_served();
        let now = self.since_origin(Instant::now());
        let idle = self.rules.lock().release(now, instance, deliver);
        if idle {
            instance.notify_idle();
        }
    }

    /// An instance starts now; its startup-probe budget (cold-start delay included) is `budget`.
    /// Until the returned [`Start`] is dropped, requests wait for it past their queue timeout.
    pub fn start_began(self: &Arc<Self>, budget: Duration) -> Start {
        let now = self.since_origin(Instant::now());
        let id = self.rules.lock().start_began(now, now + budget);
        Start {
            queue: self.clone(),
            id,
        }
    }

    /// An instance passed its startup probe: it takes requests, queued ones first.
    pub fn add_ready(&self, instance: Arc<Instance>) {
        let now = Instant::now();
        let mut rules = self.rules.lock();
        if instance.state() != InstanceState::Starting {
            return;
        }
        instance.set_ready_at(now);
        instance.set_state(InstanceState::Ready);
        let startup = instance.startup_duration().unwrap_or_default();
        rules.add_ready(self.since_origin(now), instance, startup, deliver);
    }

    /// A ready instance failed its readiness probe: it takes no new requests (in-flight ones go on).
    pub fn suspend(&self, instance: &Arc<Instance>) {
        let mut rules = self.rules.lock();
        if instance.state() == InstanceState::Ready {
            rules.remove(instance);
            instance.set_state(InstanceState::Unready);
        }
    }

    /// An unready instance passes its readiness probe again: back in rotation, queued requests first.
    pub fn resume(&self, instance: &Arc<Instance>) {
        let now = self.since_origin(Instant::now());
        let mut rules = self.rules.lock();
        if instance.state() != InstanceState::Unready {
            return;
        }
        instance.set_state(InstanceState::Ready);
        rules.resume(now, instance.clone(), deliver);
    }

    /// Takes an instance out of rotation (scale-in, shutdown or crash); its in-flight requests go on.
    pub fn remove(&self, instance: &Arc<Instance>, state: InstanceState) {
        let mut rules = self.rules.lock();
        rules.remove(instance);
        instance.set_state(state);
        drop(rules);
        instance.notify_idle();
    }

    /// Stops admitting: queued requests get 503, new ones too.
    pub fn close(&self) {
        let waiters = self.rules.lock().close();
        // Dropped outside the lock: each receiver then sees the queue closed.
        drop(waiters);
    }

    /// Resolves when a request starts waiting.
    pub async fn demanded(&self) {
        self.demand.notified().await;
    }

    pub fn queue_depth(&self) -> usize {
        self.rules.lock().queue_depth()
    }

    pub fn ready_count(&self) -> usize {
        self.rules.lock().ready_count()
    }

    /// Current state, and the time-weighted concurrency since the last snapshot (which resets it).
    pub fn snapshot(&self) -> QueueSnapshot {
        let now = self.since_origin(Instant::now());
        self.rules.lock().sample(now)
    }
}

#[cfg(test)]
mod tests;
