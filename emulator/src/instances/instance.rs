//! One instance as everyone sees it: its id and address, where it is in its life, and how many
//! requests it serves. The supervisor creates it, admission lends it to requests, admin reads it.
//! Every field is an atomic or set-once cell, so reading one never waits on a lock.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use emu_model::Occupancy;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Lifecycle of an instance.
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

/// One instance: where to send its requests and how many are in flight there.
#[derive(Debug)]
pub struct Instance {
    pub id: Arc<str>,
    /// `id` as the `x-emu-instance` header value, built once rather than per response.
    id_header: Option<http::HeaderValue>,
    /// `127.0.0.1:PORT`, set when the process is started.
    addr: OnceLock<http::uri::Authority>,
    state: AtomicU8,
    /// Written only by admission (under its lock); read by anyone.
    in_flight: AtomicU32,
    served: AtomicU64,
    pub created_at: Instant,
    ready_at: OnceLock<Instant>,
    /// Wakes whoever waits for a draining instance to go idle.
    idle: Notify,
    pid: AtomicU32,
}

impl Instance {
    pub fn new(id: impl Into<Arc<str>>) -> Arc<Instance> {
        let id: Arc<str> = id.into();
        Arc::new(Instance {
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
    /// Set by admission, together with taking the instance into or out of rotation.
    pub(crate) fn set_state(&self, s: InstanceState) {
        self.state.store(s as u8, Ordering::Release);
    }
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
    /// One more request finished here.
    pub(crate) fn count_served(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }
    pub fn ready_at(&self) -> Option<Instant> {
        self.ready_at.get().copied()
    }
    /// Marks the moment the instance became ready (once).
    pub(crate) fn set_ready_at(&self, at: Instant) {
        let _ = self.ready_at.set(at);
    }
    /// Time from creation (including the cold-start delay) to ready.
    pub fn startup_duration(&self) -> Option<Duration> {
        self.ready_at().map(|r| r - self.created_at)
    }
    /// Wakes [`Instance::wait_idle`]: called when the last request in flight finished.
    pub(crate) fn notify_idle(&self) {
        self.idle.notify_waiters();
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

impl Occupancy for Instance {
    fn in_flight(&self) -> u32 {
        Instance::in_flight(self)
    }
    fn set_in_flight(&self, n: u32) {
        self.in_flight.store(n, Ordering::Relaxed);
    }
    fn is_same(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
