//! The per-service control loop: sample once a second (the timeline and the autoscaler's input),
//! decide the desired instance count, and tell the supervisor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::admin::events::Events;
use crate::instances::Command;
use crate::service::ServiceRuntime;

/// Idle time after which an instance above min is stopped (Cloud Run keeps idle instances up to 15 min).
const IDLE_RETENTION: Duration = Duration::from_secs(15 * 60);

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
    events: Arc<Events>,
    supervisor: mpsc::Sender<Command>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut deltas = Deltas { last: [0; 5] };
    let mut last_busy = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
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
        events.push(
            "sample",
            &svc.spec.name,
            json!({
                "ready": ready,
                "starting": starting,
                "draining": draining,
                "in_flight": snap.in_flight,
                "queue_depth": snap.queue_depth,
                "concurrency": snap.avg_concurrency,
                "requests": requests,
                "cold_starts": cold,
                "rejected_429": r429,
                "timeouts_504": t504,
                "errors_5xx": e5xx,
                "desired": svc.desired(),
            }),
        );

        if snap.avg_concurrency > 0.0 || snap.queue_depth > 0 {
            last_busy = Instant::now();
        }
        let spec = &svc.spec;
        let live = (starting + ready) as u32;
        if last_busy.elapsed() >= IDLE_RETENTION && live > spec.min_instances {
            svc.desired.store(spec.min_instances, Ordering::Relaxed);
            let _ = supervisor.try_send(Command::Reconcile);
        }
    }
}
