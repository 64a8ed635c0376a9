//! Windowed aggregations the autoscaler decides on, after knative's
//! `pkg/autoscaler/aggregation`: a time-weighted average over 1-s buckets, and a maximum over
//! a time window (for the scale-down delay).

use std::collections::VecDeque;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    sec: u64,
    sum: f64,
    count: u32,
}

impl Bucket {
    fn value(&self) -> f64 {
        self.sum / f64::from(self.count.max(1))
    }
}

/// The average of 1-s buckets over a window, with Knative's `WindowAverage` semantics:
///
/// - while data has been arriving for less than a window, the average is over the seconds seen
///   (so a new revision reacts after a few seconds, not after a minute);
/// - when the newest data is a few seconds old, the average is over the seconds up to it;
/// - gaps shorter than the window count as zero;
/// - nothing for a whole window: the average is 0 and [`WindowAverage::is_empty`] is true.
///
/// Each bucket holds the mean of the samples recorded in that second: a sample is already the
/// service-wide total, so two samples in one second are two looks at the same quantity.
#[derive(Debug, Clone)]
pub struct WindowAverage {
    len: u64,
    buckets: VecDeque<Bucket>,
    first_write: Option<u64>,
    last_write: Option<u64>,
}

/// Knative rounds window averages down to 6 digits so float noise (2.0000000001) cannot add
/// an instance through `ceil`.
fn round6(f: f64) -> f64 {
    (f * 1e6).floor() / 1e6
}

impl WindowAverage {
    /// A window of `window` rounded up to whole seconds, at least one bucket.
    pub fn new(window: Duration) -> Self {
        let len = window.as_secs_f64().ceil().max(1.0) as u64;
        WindowAverage {
            len,
            buckets: VecDeque::with_capacity(len as usize + 1),
            first_write: None,
            last_write: None,
        }
    }

    /// The window length in 1-s buckets.
    pub fn len_secs(&self) -> u64 {
        self.len
    }

    /// Adds `value` to the bucket of the second `now` falls in.
    pub fn record(&mut self, now: Duration, value: f64) {
        let sec = now.as_secs();
        if let Some(last) = self.last_write {
            // Older than a window behind the newest data: it can no longer matter.
            if sec + self.len < last {
                return;
            }
        }
        if self.first_write.is_none_or(|f| sec < f) {
            self.first_write = Some(sec);
        }
        match self.last_write {
            Some(last) if sec > last => {
                if sec - last >= self.len {
                    // A whole window without data: start over, as if new.
                    self.buckets.clear();
                    self.first_write = Some(sec);
                }
                self.last_write = Some(sec);
            }
            None => self.last_write = Some(sec),
            _ => {}
        }
        match self.buckets.iter().rposition(|b| b.sec <= sec) {
            Some(i) if self.buckets[i].sec == sec => {
                self.buckets[i].sum += value;
                self.buckets[i].count += 1;
            }
            Some(i) => self.buckets.insert(
                i + 1,
                Bucket {
                    sec,
                    sum: value,
                    count: 1,
                },
            ),
            None => self.buckets.push_front(Bucket {
                sec,
                sum: value,
                count: 1,
            }),
        }
        let newest = self.last_write.unwrap_or(sec);
        while self
            .buckets
            .front()
            .is_some_and(|b| b.sec + self.len <= newest)
        {
            self.buckets.pop_front();
        }
    }

    /// True when nothing was recorded during the last window (Knative: no data to scale on).
    pub fn is_empty(&self, now: Duration) -> bool {
        match self.last_write {
            None => true,
            Some(last) => now.as_secs().saturating_sub(last) > self.len,
        }
    }

    /// The average at `now` (see the type's documentation for partial windows).
    pub fn average(&self, now: Duration) -> f64 {
        let (Some(first), Some(last)) = (self.first_write, self.last_write) else {
            return 0.0;
        };
        let now_s = now.as_secs().max(last);
        if now_s - last >= self.len {
            return 0.0;
        }
        let lo = first.max((now_s + 1).saturating_sub(self.len));
        if lo > last {
            return 0.0;
        }
        let total: f64 = self
            .buckets
            .iter()
            .filter(|b| b.sec >= lo && b.sec <= last)
            .map(Bucket::value)
            .sum();
        round6(total / (last - lo + 1) as f64)
    }
}

/// The maximum of values recorded over the last `window`, in buckets of `granularity`
/// (knative's `max.TimeWindow`): a scale-down waits until the higher count has aged out.
#[derive(Debug, Clone)]
pub struct MaxWindow {
    buckets: u64,
    granularity_ms: u64,
    entries: VecDeque<(u64, u32)>,
}

impl MaxWindow {
    pub fn new(window: Duration, granularity: Duration) -> Self {
        let granularity_ms = (granularity.as_millis() as u64).max(1);
        let buckets = (window.as_millis() as u64).div_ceil(granularity_ms).max(1);
        MaxWindow {
            buckets,
            granularity_ms,
            entries: VecDeque::new(),
        }
    }

    /// Records `value` at `now`; two values in the same bucket keep the larger.
    pub fn record(&mut self, now: Duration, value: u32) {
        let idx = now.as_millis() as u64 / self.granularity_ms;
        while self
            .entries
            .front()
            .is_some_and(|&(i, _)| i + self.buckets <= idx)
        {
            self.entries.pop_front();
        }
        match self.entries.back_mut() {
            Some((i, v)) if *i == idx => *v = (*v).max(value),
            _ => self.entries.push_back((idx, value)),
        }
    }

    /// The largest value still inside the window (0 when none).
    pub fn current(&self) -> u32 {
        self.entries.iter().map(|&(_, v)| v).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn partial_window_averages_over_seconds_seen() {
        let mut w = WindowAverage::new(s(60));
        for t in 0..6 {
            w.record(s(t), 10.0);
        }
        assert_eq!(w.average(s(5)), 10.0);
        assert!(!w.is_empty(s(5)));
    }

    #[test]
    fn full_window_slides() {
        let mut w = WindowAverage::new(s(6));
        for t in 0..6 {
            w.record(s(t), 0.0);
        }
        for t in 6..9 {
            w.record(s(t), 12.0);
        }
        // buckets 3..=8: three zeros and three 12s.
        assert_eq!(w.average(s(8)), 6.0);
    }

    #[test]
    fn stale_data_counts_only_up_to_last_write_and_expires() {
        let mut w = WindowAverage::new(s(10));
        for t in 0..10 {
            w.record(s(t), 4.0);
        }
        // Last write at 9; at 12 the window (3..=12) holds buckets 3..=9, averaged over 7.
        assert_eq!(w.average(s(12)), 4.0);
        assert_eq!(w.average(s(19)), 0.0);
        assert!(w.is_empty(s(20)));
    }

    #[test]
    fn gap_in_data_counts_as_zero() {
        let mut w = WindowAverage::new(s(4));
        w.record(s(0), 8.0);
        w.record(s(3), 8.0);
        // buckets 0..=3 with 1 and 2 missing: (8 + 8) / 4.
        assert_eq!(w.average(s(3)), 4.0);
    }

    #[test]
    fn same_second_samples_are_averaged() {
        let mut w = WindowAverage::new(s(60));
        w.record(Duration::from_millis(1000), 2.0);
        w.record(Duration::from_millis(1500), 4.0);
        assert_eq!(w.average(s(1)), 3.0);
    }

    #[test]
    fn rounding_keeps_ceil_honest() {
        let mut w = WindowAverage::new(s(60));
        for t in 0..3 {
            w.record(s(t), 0.1 + 0.2);
        }
        assert_eq!((w.average(s(2)) / 0.3).ceil(), 1.0);
    }

    #[test]
    fn max_window_holds_peak_for_its_length() {
        let mut m = MaxWindow::new(s(10), s(2));
        m.record(s(0), 9);
        m.record(s(2), 3);
        assert_eq!(m.current(), 9);
        m.record(s(8), 3);
        assert_eq!(m.current(), 9);
        m.record(s(10), 3);
        assert_eq!(m.current(), 3);
    }
}
