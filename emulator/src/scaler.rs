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
    // Skip keeps the ticks on their schedule after a late one (as Go's ticker does for Knative).
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut deltas = Deltas { last: [0; 5] };
    let mut decisions = DecisionClock::new(cfg.tick_interval);
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

        if decisions.due(now) {
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

/// When the autoscaler decides: every `every` on a fixed schedule from the loop's start (2 s,
/// 4 s, 6 s…), checked at each one-second sample. Scheduling the next decision from the time
/// the last one *ran* let tick jitter push some decisions a whole sample later (every 2.55 s on
/// average instead of 2 s); after a stall the schedule moves on instead of deciding in a burst.
#[derive(Debug)]
struct DecisionClock {
    every: Duration,
    next: Duration,
}

impl DecisionClock {
    fn new(every: Duration) -> Self {
        let every = every.max(Duration::from_secs(1));
        DecisionClock { every, next: every }
    }

    /// Whether a decision is due at `now` (time since the loop started).
    fn due(&mut self, now: Duration) -> bool {
        if now < self.next {
            return false;
        }
        while self.next <= now {
            self.next += self.every;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples at k seconds plus a lateness, as a busy machine delivers them.
    fn decisions_at(lateness_ms: impl Fn(u64) -> u64, seconds: u64) -> Vec<Duration> {
        let mut clock = DecisionClock::new(Duration::from_secs(2));
        (0..=seconds)
            .map(|k| Duration::from_millis(k * 1000 + lateness_ms(k)))
            .filter(|&now| clock.due(now))
            .collect()
    }

    #[test]
    fn decisions_keep_a_two_second_cadence_through_jittered_samples() {
        // Late by 0–40 ms, in an order that made the old rule skip to the next sample.
        let jitter = |k: u64| k * 37 % 41;
        let d = decisions_at(jitter, 60);
        assert_eq!(d.len(), 30, "{d:?}");
        let span = (d[29] - d[0]).as_secs_f64();
        let mean = span / 29.0;
        assert!((mean - 2.0).abs() <= 0.05, "mean {mean} s");
    }

    #[test]
    fn a_stall_moves_the_schedule_on_without_a_burst() {
        // Samples 10–14 arrive together at 14.5 s (the machine stalled): one decision there.
        let stalled = |k: u64| {
            if (10..15).contains(&k) {
                14_500 - k * 1000
            } else {
                0
            }
        };
        let d = decisions_at(stalled, 20);
        let at_stall = d.iter().filter(|t| t.as_millis() == 14_500).count();
        assert_eq!(at_stall, 1, "{d:?}");
        assert_eq!(d.last().copied(), Some(Duration::from_secs(20)), "{d:?}");
    }
}
