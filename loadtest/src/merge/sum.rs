//! Adding the shards up: histograms bucket by bucket, counts and status codes summed, seconds
//! aligned by each shard's offset from the earliest start.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::engine::record::{add_hist, decode_hist, encode_hist, new_hist, RequestStats, Second};
use crate::report::{InputError, Loaded, MergedShard, TimelineItem, Totals};

fn hist(l: &Loaded, s: &str, what: &str) -> Result<Histogram<u64>, InputError> {
    decode_hist(s).ok_or_else(|| {
        InputError::new(
            &l.path,
            format!("{what}: the histogram is not HdrHistogram V2+deflate base64"),
        )
    })
}

fn add_codes(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// One second of the merged timeline.
pub(super) struct MergedSecond {
    pub hist: Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
    pub cold: u64,
    pub target: f64,
}

/// Everything summed over the shards so far.
pub(super) struct Sums {
    /// Request names: the first report's order, then any others.
    pub names: Vec<String>,
    pub overall: Histogram<u64>,
    pub service: Histogram<u64>,
    pub excluding_cold: Histogram<u64>,
    pub per_request: Vec<RequestStats>,
    pub request_codes: Vec<BTreeMap<String, u64>>,
    pub codes: BTreeMap<String, u64>,
    pub seconds: Vec<MergedSecond>,
    pub totals: Totals,
    pub invalid: Vec<String>,
    pub interrupted: bool,
    pub merged_from: Vec<MergedShard>,
}

impl Sums {
    /// Empty sums for these shards, their timelines shifted by `offsets` seconds.
    pub fn new(inputs: &[Loaded], offsets: &[usize]) -> Self {
        let mut names: Vec<String> = Vec::new();
        for l in inputs {
            for q in &l.report.requests {
                if !names.contains(&q.name) {
                    names.push(q.name.clone());
                }
            }
        }
        let n_secs = inputs
            .iter()
            .zip(offsets)
            .map(|(l, o)| o + l.report.timeline.len())
            .max()
            .unwrap_or(0);
        Sums {
            per_request: names
                .iter()
                .map(|_| RequestStats {
                    hist: new_hist(3),
                    requests: 0,
                    errors: 0,
                    transport_errors: 0,
                    cold_starts: 0,
                    status: BTreeMap::new(),
                })
                .collect(),
            request_codes: vec![BTreeMap::new(); names.len()],
            names,
            overall: new_hist(3),
            service: new_hist(3),
            excluding_cold: new_hist(3),
            codes: BTreeMap::new(),
            seconds: (0..n_secs)
                .map(|_| MergedSecond {
                    hist: new_hist(2),
                    requests: 0,
                    errors: 0,
                    cold: 0,
                    target: 0.0,
                })
                .collect(),
            totals: Totals {
                requests: 0,
                ok: 0,
                errors: 0,
                transport_errors: 0,
                error_rate: 0.0,
                cold_start_responses: 0,
            },
            invalid: Vec::new(),
            interrupted: false,
            merged_from: Vec::new(),
        }
    }

    /// Adds one shard whose second 0 is merged second `offset`.
    pub fn add(&mut self, l: &Loaded, offset: usize) -> Result<(), InputError> {
        let r = &l.report;
        add_hist(
            &mut self.overall,
            &hist(l, &r.latency.histogram, "latency")?,
        );
        add_hist(
            &mut self.service,
            &hist(l, &r.service_time.histogram, "service_time")?,
        );
        add_hist(
            &mut self.excluding_cold,
            &hist(
                l,
                &r.emulator.latency_excluding_cold_starts.histogram,
                "emulator.latency_excluding_cold_starts",
            )?,
        );
        add_codes(&mut self.codes, &r.status_codes);
        let t = &mut self.totals;
        t.requests += r.totals.requests;
        t.ok += r.totals.ok;
        t.errors += r.totals.errors;
        t.transport_errors += r.totals.transport_errors;
        t.cold_start_responses += r.totals.cold_start_responses;
        self.add_requests(l)?;
        self.add_timeline(l, offset)?;
        self.interrupted |= r.interrupted;
        self.invalid.extend(
            r.invalid_reasons
                .iter()
                .map(|x| format!("{}: {x}", l.path.display())),
        );
        self.merged_from.push(MergedShard {
            file: l.path.display().to_string(),
            shard: r.shard,
            started_unix_ms: r.started_unix_ms,
            requests: r.totals.requests,
            offset_s: offset as u64,
        });
        Ok(())
    }

    fn add_requests(&mut self, l: &Loaded) -> Result<(), InputError> {
        for q in &l.report.requests {
            let i = self.names.iter().position(|n| n == &q.name).unwrap_or(0);
            let s = &mut self.per_request[i];
            add_hist(
                &mut s.hist,
                &hist(
                    l,
                    &q.latency.histogram,
                    &format!("requests.{}.latency", q.name),
                )?,
            );
            s.requests += q.requests;
            s.errors += q.errors;
            s.transport_errors += q.transport_errors;
            s.cold_starts += q.cold_start_responses;
            add_codes(&mut self.request_codes[i], &q.status_codes);
        }
        Ok(())
    }

    fn add_timeline(&mut self, l: &Loaded, offset: usize) -> Result<(), InputError> {
        for item in &l.report.timeline {
            let s = &mut self.seconds[offset + item.second as usize];
            add_hist(
                &mut s.hist,
                &hist(
                    l,
                    &item.histogram,
                    &format!("timeline[{}].histogram", item.second),
                )?,
            );
            s.requests += item.requests;
            s.errors += item.errors;
            s.cold += item.cold_starts;
            s.target += item.target_rps;
        }
        Ok(())
    }

    /// The merged seconds as the SLO judge reads them.
    pub fn judged_seconds(&self) -> Vec<Second> {
        self.seconds
            .iter()
            .map(|s| Second::from_parts(s.requests, s.errors, s.cold, s.hist.clone()))
            .collect()
    }

    /// The merged seconds as the report shows them.
    pub fn timeline(&self) -> Vec<TimelineItem> {
        let pct = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        self.seconds
            .iter()
            .enumerate()
            .map(|(i, s)| TimelineItem {
                second: i as u64,
                target_rps: s.target,
                requests: s.requests,
                errors: s.errors,
                rps: s.requests as f64,
                p50_ms: pct(&s.hist, 0.50),
                p95_ms: pct(&s.hist, 0.95),
                p99_ms: pct(&s.hist, 0.99),
                max_ms: if s.hist.is_empty() {
                    0.0
                } else {
                    s.hist.max() as f64 / 1000.0
                },
                cold_starts: s.cold,
                histogram: encode_hist(&s.hist),
            })
            .collect()
    }
}
