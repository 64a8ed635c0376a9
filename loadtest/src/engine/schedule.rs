//! The arrival schedule: when the k-th request of an open-model run is meant to be sent.
//!
//! Pure: no clock, no I/O. The rate is piecewise linear (each stage ramps from the previous rate
//! to its own, then holds it), so the cumulative count N(t) is piecewise quadratic and the k-th
//! arrival is at N⁻¹(k + ½) — evenly spaced at a constant rate, smoothly denser on a ramp.

use std::time::Duration;

use crate::scenario::Stage;

#[derive(Debug, Clone, Copy)]
struct Segment {
    start: f64,
    len: f64,
    from: f64,
    to: f64,
    /// Arrivals before this segment.
    before: f64,
    stage: usize,
    hold: bool,
}

impl Segment {
    fn count(&self) -> f64 {
        (self.from + self.to) / 2.0 * self.len
    }
}

/// A window in which a stage holds a constant rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hold {
    pub stage: usize,
    pub start: f64,
    pub end: f64,
    pub rps: f64,
}

/// The intended send times of a run, offsets from the run's start.
#[derive(Debug, Clone)]
pub struct Schedule {
    segments: Vec<Segment>,
    total: u64,
    duration: f64,
}

impl Schedule {
    pub fn new(stages: &[Stage]) -> Schedule {
        let mut segments = Vec::new();
        let (mut t, mut rate, mut before) = (0.0_f64, 0.0_f64, 0.0_f64);
        for (i, s) in stages.iter().enumerate() {
            for (len, to, hold) in [
                (s.ramp.as_secs_f64(), s.rps, false),
                (s.hold.as_secs_f64(), s.rps, true),
            ] {
                if len <= 0.0 {
                    rate = to;
                    continue;
                }
                let seg = Segment {
                    start: t,
                    len,
                    from: rate,
                    to,
                    before,
                    stage: i,
                    hold,
                };
                before += seg.count();
                t += len;
                rate = to;
                segments.push(seg);
            }
        }
        Schedule {
            segments,
            total: (before + 0.5).floor() as u64,
            duration: t,
        }
    }

    /// How many requests the whole schedule sends.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How long the schedule lasts.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    /// When the k-th request (0-based) is meant to be sent; `None` past the end.
    pub fn send_time(&self, k: u64) -> Option<Duration> {
        if k >= self.total {
            return None;
        }
        let n = k as f64 + 0.5;
        let seg = self
            .segments
            .iter()
            .rev()
            .find(|s| s.before <= n && s.count() > 0.0)?;
        let m = (n - seg.before).max(0.0);
        let slope = (seg.to - seg.from) / seg.len;
        // Root of slope/2·u² + from·u − m = 0, in the form that stays exact when slope → 0.
        let disc = (seg.from * seg.from + 2.0 * slope * m).max(0.0);
        let denom = seg.from + disc.sqrt();
        let u = if denom > 0.0 { 2.0 * m / denom } else { 0.0 };
        Some(Duration::from_secs_f64(seg.start + u.min(seg.len)))
    }

    /// The planned rate at `t` seconds into the run.
    pub fn rate_at(&self, t: f64) -> f64 {
        for s in &self.segments {
            if t >= s.start && t < s.start + s.len {
                return s.from + (s.to - s.from) * (t - s.start) / s.len;
            }
        }
        0.0
    }

    /// Planned arrivals in `[a, b)` seconds.
    pub fn planned_between(&self, a: f64, b: f64) -> f64 {
        self.cumulative(b) - self.cumulative(a)
    }

    fn cumulative(&self, t: f64) -> f64 {
        let mut acc = 0.0;
        for s in &self.segments {
            if t <= s.start {
                break;
            }
            let u = (t - s.start).min(s.len);
            let slope = (s.to - s.from) / s.len;
            acc = s.before + s.from * u + slope * u * u / 2.0;
        }
        acc
    }

    /// The windows in which a stage holds its rate (ramps excluded).
    pub fn holds(&self) -> Vec<Hold> {
        self.segments
            .iter()
            .filter(|s| s.hold && s.to > 0.0)
            .map(|s| Hold {
                stage: s.stage,
                start: s.start,
                end: s.start + s.len,
                rps: s.to,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(rps: f64, ramp: u64, hold: u64) -> Stage {
        Stage {
            rps,
            ramp: Duration::from_secs(ramp),
            hold: Duration::from_secs(hold),
        }
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let s = Schedule::new(&[stage(200.0, 0, 10)]);
        assert_eq!(s.total(), 2000);
        let t0 = s.send_time(0).unwrap().as_secs_f64();
        let t1 = s.send_time(1).unwrap().as_secs_f64();
        assert!((t0 - 0.0025).abs() < 1e-9);
        assert!((t1 - t0 - 0.005).abs() < 1e-9);
        assert!(s.send_time(1999).unwrap() < Duration::from_secs(10));
        assert_eq!(s.send_time(2000), None);
    }

    #[test]
    fn ramp_then_hold_counts_and_orders() {
        let s = Schedule::new(&[stage(100.0, 10, 10), stage(50.0, 10, 0)]);
        // ramp 0→100 over 10 s = 500, hold 100×10 = 1000, ramp 100→50 over 10 s = 750.
        assert_eq!(s.total(), 2250);
        let mut last = Duration::ZERO;
        for k in 0..s.total() {
            let t = s.send_time(k).unwrap();
            assert!(t >= last, "k={k}");
            last = t;
        }
        assert!(last <= Duration::from_secs(30));
        // Half of the ramp's requests come in its last 30 %: at t≈7.07 s.
        let mid = s.send_time(250).unwrap().as_secs_f64();
        assert!((mid - 50f64.sqrt()).abs() < 0.01, "{mid}");
        assert_eq!(s.holds().len(), 1);
        assert!((s.planned_between(10.0, 20.0) - 1000.0).abs() < 1e-6);
        assert!((s.rate_at(5.0) - 50.0).abs() < 1e-9);
    }
}
