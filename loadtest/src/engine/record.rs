//! What the client saw: HDR histograms overall, per request and per second.
//!
//! Latencies are microseconds measured from the *intended* send time (coordinated-omission
//! mitigation): a request the generator could only send late still counts the wait it would
//! have caused a real client. Per-second histograms are packed (V2 + deflate) once no request
//! can land in them any more, so a six-hour soak keeps a few megabytes, not gigabytes.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// Significant figures for whole-run histograms.
const SIGFIG: u8 = 3;
/// Significant figures for per-second histograms (1 % error is plenty for a window).
const SECOND_SIGFIG: u8 = 2;

/// A new auto-resizing histogram of microseconds.
pub fn new_hist(sigfig: u8) -> Histogram<u64> {
    Histogram::new(sigfig).unwrap_or_else(|_| Histogram::new(2).expect("2 significant figures"))
}

/// V2 + deflate, base64: the portable form `loadtest compare` and HdrHistogram tools read.
pub fn encode_hist(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    if V2DeflateSerializer::new().serialize(h, &mut buf).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Inverse of [`encode_hist`]. The deserializer builds a histogram bounded by the range the
/// encoded one had reached; it is made auto-resizing again, like every histogram [`new_hist`]
/// makes, so recording a larger value into it or adding a wider histogram to it grows it
/// instead of failing with `OtherAddendValueExceedsRange`.
pub fn decode_hist(s: &str) -> Option<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    let mut h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .ok()?;
    h.auto(true);
    Some(h)
}

/// Adds every count of `from` into `into`, growing `into` to cover `from`'s range, so it
/// cannot fail whatever either histogram's bounds or precision: merging shards or pooling
/// baseline runs must never drop a request. (Were growing ever impossible, the values are
/// clamped into range rather than lost.)
pub fn add_hist(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.auto(true);
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

fn pack(h: &Histogram<u64>) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = V2DeflateSerializer::new().serialize(h, &mut buf);
    buf
}

/// A packed second, auto-resizing again (see [`decode_hist`]): a late request recorded into
/// an unpacked second must not be dropped for being slower than the second's slowest so far.
fn unpack(b: &[u8]) -> Histogram<u64> {
    let mut h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(b))
        .unwrap_or_else(|_| new_hist(SECOND_SIGFIG));
    h.auto(true);
    h
}

/// A latency percentile in milliseconds; `None` for an empty histogram.
pub fn pct_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

/// Counters for one request name.
#[derive(Debug, Clone)]
pub struct RequestStats {
    pub hist: Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
    pub transport_errors: u64,
    pub cold_starts: u64,
    pub status: BTreeMap<u16, u64>,
}

impl RequestStats {
    fn new() -> Self {
        RequestStats {
            hist: new_hist(SIGFIG),
            requests: 0,
            errors: 0,
            transport_errors: 0,
            cold_starts: 0,
            status: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone)]
enum SecondHist {
    Live(Histogram<u64>),
    Packed(Vec<u8>),
}

/// One second of the run, by actual send time.
#[derive(Debug, Clone)]
pub struct Second {
    pub requests: u64,
    pub errors: u64,
    pub cold_starts: u64,
    hist: SecondHist,
    /// p50, p95, p99, max (ms), kept when the histogram is packed.
    summary: Option<[f64; 4]>,
}

impl Second {
    fn new() -> Self {
        Second {
            requests: 0,
            errors: 0,
            cold_starts: 0,
            hist: SecondHist::Live(new_hist(SECOND_SIGFIG)),
            summary: None,
        }
    }

    fn live(&mut self) -> &mut Histogram<u64> {
        if let SecondHist::Packed(b) = &self.hist {
            self.hist = SecondHist::Live(unpack(b));
            self.summary = None;
        }
        match &mut self.hist {
            SecondHist::Live(h) => h,
            SecondHist::Packed(_) => unreachable!("just unpacked"),
        }
    }

    fn pack(&mut self) {
        if let SecondHist::Live(h) = &self.hist {
            self.summary = Some(summary(h));
            self.hist = SecondHist::Packed(pack(h));
        }
    }

    /// A second rebuilt from a report (what `loadtest merge` judges merged shards with).
    pub fn from_parts(requests: u64, errors: u64, cold_starts: u64, hist: Histogram<u64>) -> Self {
        Second {
            requests,
            errors,
            cold_starts,
            hist: SecondHist::Live(hist),
            summary: None,
        }
    }

    /// The histogram (unpacked copy when packed).
    pub fn histogram(&self) -> Histogram<u64> {
        match &self.hist {
            SecondHist::Live(h) => h.clone(),
            SecondHist::Packed(b) => unpack(b),
        }
    }

    /// p50, p95, p99, max in ms (zeros for an empty second).
    pub fn percentiles(&self) -> [f64; 4] {
        match (&self.summary, &self.hist) {
            (Some(s), _) => *s,
            (None, SecondHist::Live(h)) => summary(h),
            (None, SecondHist::Packed(b)) => summary(&unpack(b)),
        }
    }

    /// The packed histogram, base64.
    pub fn encoded(&self) -> String {
        match &self.hist {
            SecondHist::Live(h) => encode_hist(h),
            SecondHist::Packed(b) => base64::engine::general_purpose::STANDARD.encode(b),
        }
    }
}

fn summary(h: &Histogram<u64>) -> [f64; 4] {
    [
        pct_ms(h, 0.50).unwrap_or(0.0),
        pct_ms(h, 0.95).unwrap_or(0.0),
        pct_ms(h, 0.99).unwrap_or(0.0),
        if h.is_empty() {
            0.0
        } else {
            h.max() as f64 / 1000.0
        },
    ]
}

/// One finished request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub request: usize,
    /// Offsets from the run's start.
    pub intended: Duration,
    pub sent: Duration,
    pub done: Duration,
    /// `None` when no response came (connect error, timeout, reset).
    pub status: Option<u16>,
    pub ok: bool,
    pub cold_start: bool,
    pub instance: Option<String>,
}

/// Everything recorded during a run.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub overall: Histogram<u64>,
    pub excluding_cold: Histogram<u64>,
    /// Time from actual send to completion (what the server alone cost).
    pub service: Histogram<u64>,
    /// How late requests were sent against the schedule.
    pub send_lag: Histogram<u64>,
    pub per_request: Vec<RequestStats>,
    pub seconds: Vec<Second>,
    pub status: BTreeMap<u16, u64>,
    pub instances: HashSet<String>,
    pub requests: u64,
    pub errors: u64,
    pub transport_errors: u64,
    pub cold_starts: u64,
    /// Sends per hold window, by actual send time (index = position in `holds`).
    pub hold_sent: Vec<u64>,
    holds: Vec<(f64, f64)>,
}

impl Recorder {
    pub fn new(requests: usize, holds: Vec<(f64, f64)>) -> Self {
        Recorder {
            overall: new_hist(SIGFIG),
            excluding_cold: new_hist(SIGFIG),
            service: new_hist(SIGFIG),
            send_lag: new_hist(SIGFIG),
            per_request: (0..requests).map(|_| RequestStats::new()).collect(),
            seconds: Vec::new(),
            status: BTreeMap::new(),
            instances: HashSet::new(),
            requests: 0,
            errors: 0,
            transport_errors: 0,
            cold_starts: 0,
            hold_sent: vec![0; holds.len()],
            holds,
        }
    }

    pub fn record(&mut self, o: &Outcome) {
        let micros = |d: Duration| (d.as_micros() as u64).max(1);
        let latency = micros(o.done.saturating_sub(o.intended));
        let _ = self.overall.record(latency);
        let _ = self.service.record(micros(o.done.saturating_sub(o.sent)));
        let _ = self
            .send_lag
            .record(micros(o.sent.saturating_sub(o.intended)));
        if !o.cold_start {
            let _ = self.excluding_cold.record(latency);
        }
        self.requests += 1;
        if !o.ok {
            self.errors += 1;
        }
        if o.status.is_none() {
            self.transport_errors += 1;
        }
        if o.cold_start {
            self.cold_starts += 1;
        }
        if let Some(s) = o.status {
            *self.status.entry(s).or_default() += 1;
        }
        if let Some(id) = &o.instance {
            if !self.instances.contains(id) {
                self.instances.insert(id.clone());
            }
        }
        if let Some(r) = self.per_request.get_mut(o.request) {
            let _ = r.hist.record(latency);
            r.requests += 1;
            if !o.ok {
                r.errors += 1;
            }
            if o.status.is_none() {
                r.transport_errors += 1;
            }
            if o.cold_start {
                r.cold_starts += 1;
            }
            if let Some(s) = o.status {
                *r.status.entry(s).or_default() += 1;
            }
        }
        let sec = o.sent.as_secs() as usize;
        if self.seconds.len() <= sec {
            self.seconds.resize_with(sec + 1, Second::new);
        }
        let s = &mut self.seconds[sec];
        s.requests += 1;
        if !o.ok {
            s.errors += 1;
        }
        if o.cold_start {
            s.cold_starts += 1;
        }
        let _ = s.live().record(latency);
        let t = o.sent.as_secs_f64();
        for (i, (a, b)) in self.holds.iter().enumerate() {
            if t >= *a && t < *b {
                self.hold_sent[i] += 1;
            }
        }
    }

    /// Packs every second that ends before `before` (no request sent then can still be open).
    pub fn pack_before(&mut self, before: Duration) {
        let n = (before.as_secs() as usize).min(self.seconds.len());
        for s in &mut self.seconds[..n] {
            s.pack();
        }
    }

    /// Merged histogram of seconds `[a, b)`.
    pub fn window(&self, a: usize, b: usize) -> Histogram<u64> {
        let mut h = new_hist(SECOND_SIGFIG);
        for s in self.seconds.iter().take(b).skip(a) {
            add_hist(&mut h, &s.histogram());
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(sent_ms: u64, latency_ms: u64, cold: bool) -> Outcome {
        Outcome {
            request: 0,
            intended: Duration::from_millis(sent_ms),
            sent: Duration::from_millis(sent_ms),
            done: Duration::from_millis(sent_ms + latency_ms),
            status: Some(200),
            ok: true,
            cold_start: cold,
            instance: Some("i-1".into()),
        }
    }

    #[test]
    fn cold_starts_are_kept_apart_and_seconds_pack() {
        let mut r = Recorder::new(1, vec![(0.0, 2.0)]);
        for i in 0..100 {
            r.record(&outcome(i * 20, 10, false));
        }
        r.record(&outcome(500, 2000, true));
        assert_eq!(r.requests, 101);
        assert_eq!(r.cold_starts, 1);
        assert!(r.overall.max() >= 1_990_000);
        assert!(r.excluding_cold.max() < 20_000);
        assert_eq!(r.hold_sent[0], 101);
        let before = r.seconds[0].percentiles();
        r.pack_before(Duration::from_secs(1));
        assert_eq!(r.seconds[0].percentiles(), before);
        assert_eq!(r.window(0, 2).len(), 101);
        let h = decode_hist(&r.seconds[0].encoded()).unwrap();
        assert_eq!(h.len(), r.seconds[0].requests);
    }

    /// Every (value, count) a histogram holds, for comparing histograms of different bounds.
    fn recorded(h: &Histogram<u64>) -> Vec<(u64, u64)> {
        h.iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    #[test]
    fn decoded_histograms_add_and_record_beyond_their_range() {
        // Decoded, a histogram is bounded by the range it had reached; adding one whose values
        // lie far above that range is what made `merge` and its test fail.
        let mut small = new_hist(3);
        for v in [100, 2_000, 9_000] {
            small.record(v).unwrap();
        }
        let mut large = new_hist(3);
        for v in [50, 40_000_000, 3_000_000_000] {
            large.record(v).unwrap();
        }
        let mut sum = decode_hist(&encode_hist(&small)).unwrap();
        add_hist(&mut sum, &decode_hist(&encode_hist(&large)).unwrap());
        assert_eq!(sum.len(), 6);
        let mut expected = new_hist(3);
        add_hist(&mut expected, &small);
        add_hist(&mut expected, &large);
        assert_eq!(recorded(&sum), recorded(&expected));
        // Coarser into finer and finer into coarser: counts are kept either way.
        let mut coarse = decode_hist(&encode_hist(&new_hist(2))).unwrap();
        add_hist(&mut coarse, &sum);
        assert_eq!(coarse.len(), 6);
        assert!(coarse.max() >= 2_990_000_000);
        // Recording into a decoded histogram grows it too.
        let mut d = decode_hist(&encode_hist(&small)).unwrap();
        d.record(1_000_000_000).unwrap();
        assert_eq!(d.len(), 4);
    }

    #[test]
    fn a_late_request_recorded_into_a_packed_second_is_kept() {
        let mut r = Recorder::new(1, vec![]);
        r.record(&outcome(100, 5, false));
        r.pack_before(Duration::from_secs(1));
        // Sent in second 0, answered much later than anything the packed second had seen.
        r.record(&outcome(200, 60_000, false));
        assert_eq!(r.seconds[0].histogram().len(), 2);
        assert!(r.seconds[0].percentiles()[3] >= 60_000.0);
    }

    #[test]
    fn latency_counts_from_the_intended_time() {
        let mut r = Recorder::new(1, vec![]);
        let mut o = outcome(1000, 5, false);
        o.intended = Duration::from_millis(900);
        r.record(&o);
        assert!((pct_ms(&r.overall, 0.5).unwrap() - 105.0).abs() < 0.2);
        assert!((pct_ms(&r.service, 0.5).unwrap() - 5.0).abs() < 0.1);
    }
}
