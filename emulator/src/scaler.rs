//! The per-service control loop: sample once a second (the timeline and the autoscaler's input),
//! ask the pure autoscaler model for a decision every tick (2 s), and tell the supervisor.
//!
//! The model knows nothing of clocks; this loop passes it `now` as time since the loop started.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::model::Autoscaler;
use crate::service::supervisor::Command;
use crate::service::ServiceRuntime;
use crate::timeline::{Sample, Timeline};

struct Deltas {
    last: [u64; 5],
}

impl Deltas {
    fn take(&mut self, c: [&AtomicU64; 5]) -> [u64; 5] {
        let now = c.map(|a| a.load(Ordering::Relaxed));
        let d = std::array::from_fn(|i| now[i].saturating_sub(self.last[i]));
        self.last = now;
        d
    }
}

/// Runs until `shutdown`.
pub async fn run(
    svc: Arc<ServiceRuntime>,
    events: Arc<Timeline>,
    supervisor: mpsc::Sender<Command>,
    shutdown: CancellationToken,
) {
    let origin = Instant::now();
    let cfg = svc.spec.autoscaler.clone();
    let mut model = Autoscaler::new(cfg.clone(), Duration::ZERO);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut deltas = Deltas { last: [0; 5] };
    let decide_every = cfg.tick_interval.max(Duration::from_secs(1));
    let mut next_decision = decide_every;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = origin.elapsed();
        let snap = svc.pool.snapshot();
        let (starting, ready, draining) = svc.counts();
        let c = &svc.pool.counters;
        let [requests, cold, r429, t504, e5xx] = deltas.take([
            &c.requests,
            &c.cold_starts,
            &c.rejected_429,
            &c.timeouts_504,
            &c.errors_5xx,
        ]);
        model.record(now, snap.avg_concurrency);
        if svc.activated.swap(false, Ordering::AcqRel) {
            model.activated(now);
        }

        if now >= next_decision {
            next_decision = now + decide_every;
            let d = model.decide(now, ready as u32);
            let before = svc.desired.swap(d.desired, Ordering::AcqRel);
            events.push_decision(&svc.spec.name, &d, before);
            if before != d.desired {
                tracing::info!(service = %svc.spec.name, from = before, to = d.desired, panic = d.panicking, "scale");
            }
            let _ = supervisor.try_send(Command::Reconcile);
        }

        let count = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let sample = Sample {
            ready: count(ready as u64),
            starting: count(starting as u64),
            draining: count(draining as u64),
            in_flight: count(snap.in_flight as u64),
            queue_depth: count(snap.queue_depth as u64),
            concurrency: snap.avg_concurrency,
            requests: count(requests),
            cold_starts: count(cold),
            rejected_429: count(r429),
            timeouts_504: count(t504),
            errors_5xx: count(e5xx),
            desired: svc.desired(),
        };
        events.push_sample(&svc.spec.name, sample);
    }
}
