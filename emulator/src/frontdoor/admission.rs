//! Admission: per-instance concurrency slots and the FIFO queue in front of them.
//!
//! A request takes a slot on the ready instance with the most free slots. With no free slot it
//! waits in a FIFO queue; a released slot, or an instance that becomes ready, is handed straight to
//! the oldest waiter. A wait that outlives the queue timeout becomes a 429 (or a 500 when no
//! instance ever became ready), one that outlives the request timeout a 504.
//!
//! One short mutex per service guards the slots and the queue; the permit that holds a slot is
//! owned by the request and released on drop (mini-redis' semaphore-permit discipline).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// Lifecycle of an instance as the front door sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    Starting,
    Ready,
    Draining,
    Stopped,
    /// Running, but failing its readiness probe: no new requests until it passes again.
    Unready,
}

impl InstanceState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => InstanceState::Starting,
            1 => InstanceState::Ready,
            2 => InstanceState::Draining,
            4 => InstanceState::Unready,
            _ => InstanceState::Stopped,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Ready => "ready",
            InstanceState::Draining => "draining",
            InstanceState::Stopped => "stopped",
            InstanceState::Unready => "unready",
        }
    }
}

/// One instance's slots: where to send requests and how many are in flight there.
#[derive(Debug)]
pub struct Slot {
    pub id: Arc<str>,
    /// `id` as the `x-emu-instance` header value, built once rather than per response.
    id_header: Option<http::HeaderValue>,
    /// `http://127.0.0.1:PORT`, set when the process is started.
    addr: OnceLock<http::uri::Authority>,
    state: AtomicU8,
    in_flight: AtomicU32,
    served: AtomicU64,
    pub created_at: Instant,
    ready_at: OnceLock<Instant>,
    /// Wakes whoever waits for a draining instance to go idle.
    idle: Notify,
    pid: AtomicU32,
}

impl Slot {
    pub fn new(id: impl Into<Arc<str>>) -> Arc<Slot> {
        let id: Arc<str> = id.into();
        Arc::new(Slot {
            id_header: http::HeaderValue::from_str(&id).ok(),
            id,
            addr: OnceLock::new(),
            state: AtomicU8::new(0),
            in_flight: AtomicU32::new(0),
            served: AtomicU64::new(0),
            created_at: Instant::now(),
            ready_at: OnceLock::new(),
            idle: Notify::new(),
            pid: AtomicU32::new(0),
        })
    }
    /// The instance id as a header value (`None` if it is not a valid one).
    pub fn id_header(&self) -> Option<&http::HeaderValue> {
        self.id_header.as_ref()
    }
    pub fn set_addr(&self, addr: http::uri::Authority) {
        let _ = self.addr.set(addr);
    }
    pub fn addr(&self) -> Option<&http::uri::Authority> {
        self.addr.get()
    }
    pub fn set_pid(&self, pid: u32) {
        self.pid.store(pid, Ordering::Relaxed);
    }
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::Relaxed)).filter(|p| *p != 0)
    }
    pub fn state(&self) -> InstanceState {
        InstanceState::from_u8(self.state.load(Ordering::Acquire))
    }
    fn set_state(&self, s: InstanceState) {
        self.state.store(s as u8, Ordering::Release);
    }
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
    pub fn ready_at(&self) -> Option<Instant> {
        self.ready_at.get().copied()
    }
    /// Time from creation (including the cold-start delay) to ready.
    pub fn startup_duration(&self) -> Option<Duration> {
        self.ready_at().map(|r| r - self.created_at)
    }
    /// Resolves once the instance has no request in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A queued request's place, given back if the request is dropped while it waits.
struct Abandoned<'a> {
    pool: &'a Arc<Pool>,
    id: u64,
    rx: &'a mut oneshot::Receiver<Arc<Slot>>,
    armed: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut inner = self.pool.inner.lock();
        let before = inner.queue.len();
        inner.queue.retain(|w| w.id != self.id);
        if inner.queue.len() < before {
            inner.touch(Instant::now());
            inner.concurrency -= 1;
            return;
        }
        drop(inner);
        // Already granted a slot (under the lock, before we got it): hand it on.
        if let Ok(slot) = self.rx.try_recv() {
            self.pool.release(&slot);
        }
    }
}

/// A held slot: the request owns it until its response body is done, then drop releases it.
#[derive(Debug)]
pub struct Permit {
    pool: Arc<Pool>,
    pub slot: Arc<Slot>,
    /// The request waited for this instance to start.
    pub cold: bool,
    /// How long the request waited in the queue.
    pub queued: Duration,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.pool.release(&self.slot);
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    /// Waited the queue timeout with every instance busy: 429.
    NoAvailableInstance,
    /// Waited the queue timeout and no instance ever became ready: 500.
    NoInstanceStarted,
    /// The request timeout passed while waiting: 504.
    Timeout,
    /// The service is shutting down: 503.
    ShuttingDown,
}

struct Waiter {
    id: u64,
    tx: oneshot::Sender<Arc<Slot>>,
}

#[derive(Default)]
struct Inner {
    /// Instances that take requests (state Ready).
    ready: Vec<Arc<Slot>>,
    queue: VecDeque<Waiter>,
    next_waiter: u64,
    /// In flight + queued, and its time integral, for the autoscaler's time-weighted average.
    concurrency: u32,
    integral: f64,
    last_change: Option<Instant>,
    window_start: Option<Instant>,
    closed: bool,
    /// Startup durations of the instances that became ready (mean feeds the queue timeout).
    startup_sum: Duration,
    startup_count: u32,
}

impl Inner {
    fn touch(&mut self, now: Instant) {
        if let Some(last) = self.last_change {
            self.integral += f64::from(self.concurrency) * (now - last).as_secs_f64();
        }
        self.last_change = Some(now);
        if self.window_start.is_none() {
            self.window_start = Some(now);
        }
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

/// Upper bounds (seconds) of the queue-wait histogram buckets; the last is +Inf.
pub const QUEUE_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

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
        let s = d.as_secs_f64();
        let i = QUEUE_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(QUEUE_BUCKETS.len());
        self.queue_wait_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.queue_wait_count.fetch_add(1, Ordering::Relaxed);
        self.queue_wait_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// A service's slots and queue.
pub struct Pool {
    pub concurrency: u32,
    inner: Mutex<Inner>,
    pub counters: Counters,
    /// Pinged when a request has to wait: the supervisor may start an instance.
    demand: Notify,
    /// Configured queue timeout; `None` = max(10 s, 3.5 × mean startup).
    queue_timeout: Option<Duration>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// What the sampler reads once a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolSnapshot {
    pub ready: usize,
    pub in_flight: u32,
    pub queue_depth: usize,
    /// Time-weighted mean of in-flight + queued since the previous snapshot.
    pub avg_concurrency: f64,
}

impl Pool {
    pub fn new(concurrency: u32, queue_timeout: Option<Duration>) -> Arc<Pool> {
        Arc::new(Pool {
            concurrency: concurrency.max(1),
            inner: Mutex::new(Inner::default()),
            counters: Counters::new(),
            demand: Notify::new(),
            queue_timeout,
        })
    }

    /// How long a request may wait for a slot: configured, or Cloud Run's max(10 s, 3.5 × mean startup).
    pub fn queue_timeout(&self) -> Duration {
        if let Some(q) = self.queue_timeout {
            return q;
        }
        let inner = self.inner.lock();
        let mean = if inner.startup_count == 0 {
            Duration::ZERO
        } else {
            inner.startup_sum / inner.startup_count
        };
        Duration::from_secs(10).max(mean.mul_f64(3.5))
    }

    /// Takes a slot, waiting in the FIFO queue when none is free. `deadline` is the request's timeout.
    pub async fn acquire(self: &Arc<Self>, deadline: Instant) -> Result<Permit, AdmitError> {
        let arrived = Instant::now();
        match self.try_acquire(arrived)? {
            Ok(permit) => Ok(permit),
            // Boxed: waiting is the rare path, and its state (a timer, a channel) would otherwise
            // ride in every request's future.
            Err((id, rx)) => Box::pin(self.wait(id, rx, arrived, deadline)).await,
        }
    }

    /// A free slot now (`Ok(Ok)`), or a place in the queue (`Ok(Err)`).
    #[allow(clippy::type_complexity)]
    fn try_acquire(
        self: &Arc<Self>,
        arrived: Instant,
    ) -> Result<Result<Permit, (u64, oneshot::Receiver<Arc<Slot>>)>, AdmitError> {
        let (id, rx) = {
            let mut inner = self.inner.lock();
            if inner.closed {
                return Err(AdmitError::ShuttingDown);
            }
            inner.touch(arrived);
            inner.concurrency += 1;
            if let Some(slot) = self.pick(&inner) {
                slot.in_flight.fetch_add(1, Ordering::Relaxed);
                return Ok(Ok(Permit {
                    pool: self.clone(),
                    slot,
                    cold: false,
                    queued: Duration::ZERO,
                }));
            }
            let (tx, rx) = oneshot::channel();
            let id = inner.next_waiter;
            inner.next_waiter += 1;
            inner.queue.push_back(Waiter { id, tx });
            (id, rx)
        };
        self.demand.notify_one();
        Ok(Err((id, rx)))
    }

    /// Waits in the queue for a slot, up to the queue timeout or `deadline`.
    async fn wait(
        self: &Arc<Self>,
        id: u64,
        mut rx: oneshot::Receiver<Arc<Slot>>,
        arrived: Instant,
        deadline: Instant,
    ) -> Result<Permit, AdmitError> {
        let queue_deadline = arrived + self.queue_timeout();
        let until = queue_deadline.min(deadline);
        // If the request is dropped while it waits (the client went away), the guard takes its
        // place out of the queue, so it neither lingers as phantom demand nor swallows a slot.
        let mut guard = Abandoned {
            pool: self,
            id,
            rx: &mut rx,
            armed: true,
        };
        let granted = tokio::time::timeout_at(until, &mut *guard.rx).await;
        // Nothing below awaits: from here the request cannot be dropped half-way.
        guard.armed = false;
        drop(guard);
        let slot = match granted {
            Ok(Ok(slot)) => Some(slot),
            Ok(Err(_)) => None, // pool closed
            Err(_) => {
                // Timed out; a grant may have raced in while we took the lock.
                let mut inner = self.inner.lock();
                let before = inner.queue.len();
                inner.queue.retain(|w| w.id != id);
                if inner.queue.len() == before {
                    // Our waiter was already popped, under the lock: the grant is in the channel
                    // (or the pool closed and dropped it).
                    drop(inner);
                    rx.try_recv().ok()
                } else {
                    let now = Instant::now();
                    inner.touch(now);
                    inner.concurrency -= 1;
                    let none_ready = inner.ready.is_empty();
                    drop(inner);
                    return Err(if until == deadline && deadline <= queue_deadline {
                        AdmitError::Timeout
                    } else if none_ready {
                        AdmitError::NoInstanceStarted
                    } else {
                        AdmitError::NoAvailableInstance
                    });
                }
            }
        };
        let slot = match slot {
            Some(s) => s,
            None => return Err(AdmitError::ShuttingDown),
        };
        let queued = arrived.elapsed();
        self.counters.record_queue_wait(queued);
        let cold = slot.ready_at().is_some_and(|r| r > arrived);
        if cold {
            self.counters.cold_starts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Permit {
            pool: self.clone(),
            slot,
            cold,
            queued,
        })
    }

    /// Hands free slots of `slot` to the oldest waiters (an instance became ready again or anew).
    fn hand_out(&self, inner: &mut Inner, slot: &Arc<Slot>) {
        while slot.in_flight() < self.concurrency {
            let Some(w) = inner.queue.pop_front() else {
                break;
            };
            slot.in_flight.fetch_add(1, Ordering::Relaxed);
            if w.tx.send(slot.clone()).is_err() {
                slot.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The ready instance with the most free slots.
    fn pick(&self, inner: &Inner) -> Option<Arc<Slot>> {
        let mut best: Option<&Arc<Slot>> = None;
        let mut best_in_flight = self.concurrency;
        for s in &inner.ready {
            let f = s.in_flight.load(Ordering::Relaxed);
            if f < best_in_flight {
                best_in_flight = f;
                best = Some(s);
                if f == 0 {
                    break;
                }
            }
        }
        best.cloned()
    }

    fn release(&self, slot: &Arc<Slot>) {
        slot.served.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner.lock();
        let now = Instant::now();
        inner.touch(now);
        // This request is done; a waiter handed its slot was already counted when it queued.
        inner.concurrency -= 1;
        if slot.state() == InstanceState::Ready {
            // Hand the slot straight to the oldest waiter that is still waiting.
            while let Some(w) = inner.queue.pop_front() {
                if w.tx.send(slot.clone()).is_ok() {
                    return; // the slot's in_flight carries over to the waiter.
                }
            }
        }
        drop(inner);
        if slot.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            slot.idle.notify_waiters();
        }
    }

    /// An instance passed its startup probe: it takes requests, queued ones first.
    pub fn add_ready(&self, slot: Arc<Slot>) {
        let mut inner = self.inner.lock();
        if slot.state() != InstanceState::Starting {
            return;
        }
        let _ = slot.ready_at.set(Instant::now());
        slot.set_state(InstanceState::Ready);
        if let Some(d) = slot.startup_duration() {
            inner.startup_sum += d;
            inner.startup_count += 1;
        }
        self.hand_out(&mut inner, &slot);
        inner.ready.push(slot);
    }

    /// A ready instance failed its readiness probe: it takes no new requests (in-flight ones go on).
    pub fn suspend(&self, slot: &Arc<Slot>) {
        let mut inner = self.inner.lock();
        if slot.state() == InstanceState::Ready {
            inner.ready.retain(|s| !Arc::ptr_eq(s, slot));
            slot.set_state(InstanceState::Unready);
        }
    }

    /// An unready instance passes its readiness probe again: back in rotation, queued requests first.
    pub fn resume(&self, slot: &Arc<Slot>) {
        let mut inner = self.inner.lock();
        if slot.state() != InstanceState::Unready {
            return;
        }
        slot.set_state(InstanceState::Ready);
        self.hand_out(&mut inner, slot);
        inner.ready.push(slot.clone());
    }

    /// Takes an instance out of rotation (scale-in, shutdown or crash); its in-flight requests go on.
    pub fn remove(&self, slot: &Arc<Slot>, state: InstanceState) {
        let mut inner = self.inner.lock();
        inner.ready.retain(|s| !Arc::ptr_eq(s, slot));
        slot.set_state(state);
        drop(inner);
        slot.idle.notify_waiters();
    }

    /// Stops admitting: queued requests get 503, new ones too.
    pub fn close(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        let n = inner.queue.len() as u32;
        inner.queue.clear();
        inner.concurrency -= n;
    }

    /// Resolves when a request starts waiting.
    pub async fn demanded(&self) {
        self.demand.notified().await;
    }

    pub fn queue_depth(&self) -> usize {
        self.inner.lock().queue.len()
    }

    pub fn ready_count(&self) -> usize {
        self.inner.lock().ready.len()
    }

    /// Current state, and the time-weighted concurrency since the last snapshot (which resets it).
    pub fn snapshot(&self) -> PoolSnapshot {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        inner.touch(now);
        let span = inner
            .window_start
            .map(|s| (now - s).as_secs_f64())
            .unwrap_or(0.0);
        let avg = if span > 0.0 {
            inner.integral / span
        } else {
            f64::from(inner.concurrency)
        };
        inner.integral = 0.0;
        inner.window_start = Some(now);
        PoolSnapshot {
            ready: inner.ready.len(),
            in_flight: inner.ready.iter().map(|s| s.in_flight()).sum(),
            queue_depth: inner.queue.len(),
            avg_concurrency: avg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test(start_paused = true)]
    async fn takes_the_instance_with_most_free_slots() {
        let pool = Pool::new(2, None);
        let a = Slot::new("a");
        let b = Slot::new("b");
        pool.add_ready(a.clone());
        pool.add_ready(b.clone());
        let p1 = pool.acquire(far()).await.unwrap();
        let p2 = pool.acquire(far()).await.unwrap();
        assert_ne!(p1.slot.id, p2.slot.id, "spread over instances");
        let _p3 = pool.acquire(far()).await.unwrap();
        let _p4 = pool.acquire(far()).await.unwrap();
        assert_eq!(a.in_flight() + b.in_flight(), 4);
        assert!(!p1.cold);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_fifo_when_slots_free() {
        let pool = Pool::new(1, Some(Duration::from_secs(30)));
        let a = Slot::new("a");
        pool.add_ready(a.clone());
        let held = pool.acquire(far()).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let pool = pool.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let p = pool.acquire(far()).await.unwrap();
                order.lock().push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(p);
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(pool.queue_depth(), 3);
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![0, 1, 2]);
        assert_eq!(a.in_flight(), 0);
        assert_eq!(a.served(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_timeout_gives_429_when_busy_and_500_when_none_ready() {
        let pool = Pool::new(1, Some(Duration::from_secs(1)));
        assert_eq!(
            pool.acquire(far()).await.unwrap_err(),
            AdmitError::NoInstanceStarted
        );
        let a = Slot::new("a");
        pool.add_ready(a);
        let _held = pool.acquire(far()).await.unwrap();
        let t0 = Instant::now();
        assert_eq!(
            pool.acquire(far()).await.unwrap_err(),
            AdmitError::NoAvailableInstance
        );
        assert_eq!(t0.elapsed(), Duration::from_secs(1));
        assert_eq!(pool.queue_depth(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn request_timeout_while_queued_is_504() {
        let pool = Pool::new(1, Some(Duration::from_secs(10)));
        let err = pool
            .acquire(Instant::now() + Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(err, AdmitError::Timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_waited_for_a_start_is_cold() {
        let pool = Pool::new(5, None);
        let slot = Slot::new("a");
        let p = pool.clone();
        let waiter = tokio::spawn(async move { p.acquire(far()).await.unwrap() });
        tokio::time::sleep(Duration::from_millis(700)).await;
        pool.add_ready(slot.clone());
        let permit = waiter.await.unwrap();
        assert!(permit.cold);
        assert_eq!(permit.queued, Duration::from_millis(700));
        drop(permit);
        let warm = pool.acquire(far()).await.unwrap();
        assert!(!warm.cold);
        assert_eq!(pool.counters.cold_starts.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn default_queue_timeout_follows_startup_time() {
        let pool = Pool::new(1, None);
        assert_eq!(pool.queue_timeout(), Duration::from_secs(10));
        let s = Slot::new("a");
        tokio::time::sleep(Duration::from_secs(4)).await;
        pool.add_ready(s);
        assert_eq!(pool.queue_timeout(), Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn time_weighted_concurrency() {
        let pool = Pool::new(10, None);
        pool.add_ready(Slot::new("a"));
        let _ = pool.snapshot();
        let p = pool.acquire(far()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let q = pool.acquire(far()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let snap = pool.snapshot();
        assert!(
            (snap.avg_concurrency - 1.5).abs() < 1e-6,
            "{}",
            snap.avg_concurrency
        );
        assert_eq!(snap.in_flight, 2);
        drop((p, q));
    }

    #[tokio::test(start_paused = true)]
    async fn draining_instance_takes_no_new_requests_and_signals_idle() {
        let pool = Pool::new(2, Some(Duration::from_secs(1)));
        let a = Slot::new("a");
        pool.add_ready(a.clone());
        let p = pool.acquire(far()).await.unwrap();
        pool.remove(&a, InstanceState::Draining);
        assert_eq!(
            pool.acquire(far()).await.unwrap_err(),
            AdmitError::NoInstanceStarted
        );
        let idle = tokio::spawn({
            let a = a.clone();
            async move { a.wait_idle().await }
        });
        drop(p);
        idle.await.unwrap();
        assert_eq!(a.in_flight(), 0);
    }
}

#[cfg(test)]
mod stress {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_dropped_while_queued_gives_its_place_back() {
        let pool = Pool::new(1, Some(Duration::from_secs(30)));
        let a = Slot::new("a");
        pool.add_ready(a.clone());
        let held = pool
            .acquire(Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
        let p = pool.clone();
        let waiter =
            tokio::spawn(async move { p.acquire(Instant::now() + Duration::from_secs(60)).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(pool.queue_depth(), 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(pool.queue_depth(), 0, "the abandoned place left the queue");
        assert_eq!(
            pool.inner.lock().concurrency,
            1,
            "only the held request counts"
        );
        drop(held);
        assert_eq!(pool.inner.lock().concurrency, 0);
        assert_eq!(a.in_flight(), 0);
        // The slot is free for the next request at once.
        let next = pool
            .acquire(Instant::now() + Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(&*next.slot.id, "a");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_returns_to_zero_under_churn() {
        let pool = Pool::new(2, Some(Duration::from_secs(30)));
        pool.add_ready(Slot::new("a"));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    let p = pool
                        .acquire(Instant::now() + Duration::from_secs(60))
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    drop(p);
                }
            }));
        }
        for i in 0..5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            pool.add_ready(Slot::new(format!("b{i}")));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(pool.inner.lock().concurrency, 0);
        assert_eq!(pool.queue_depth(), 0);
    }
}
