//! Showing a run move: an indicatif bar on a terminal, one plain line every interval elsewhere
//! (a CI log shows nothing for a whole run otherwise), or nothing.
//!
//! The engine's ticker hands a [`Snapshot`] to [`Progress::update`]; what is shown, and when,
//! is decided here from the snapshot's clock alone, so the line and its pacing are tested
//! without a run.

use std::collections::VecDeque;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How a run shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Off,
    /// A live bar on stderr (a terminal).
    Bar,
    /// One plain line on stderr every this long (a CI log).
    Lines(Duration),
}

impl ProgressMode {
    /// The bar on a terminal, else lines every `interval`; `Off` when not `enabled`.
    pub fn for_stderr(enabled: bool, interval: Duration) -> ProgressMode {
        use std::io::IsTerminal;
        match (enabled, std::io::stderr().is_terminal()) {
            (false, _) => ProgressMode::Off,
            (true, true) => ProgressMode::Bar,
            (true, false) => ProgressMode::Lines(interval),
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub elapsed: Duration,
    pub planned: Duration,
    /// The rate the schedule asks for now.
    pub target_rps: f64,
    /// Requests sent so far.
    pub sent: u64,
    /// p95 of every answered request so far (ms), from the intended send time.
    pub p95_ms: Option<f64>,
    pub errors: u64,
    pub in_flight: u64,
}

/// The bar or the line pacing, and the last second of send counts (for the achieved rate).
pub struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    next_line: Duration,
    sends: VecDeque<(Duration, u64)>,
}

impl Progress {
    pub fn new(mode: ProgressMode, planned: Duration) -> Progress {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(planned.as_millis() as u64),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = ProgressStyle::with_template("{bar:24.cyan/blue} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let next_line = match mode {
            ProgressMode::Lines(every) => every,
            _ => Duration::MAX,
        };
        Progress {
            mode,
            bar,
            next_line,
            sends: VecDeque::new(),
        }
    }

    /// How often the ticker should call [`Progress::update`] for this mode (at most 500 ms).
    pub fn tick(&self) -> Duration {
        match self.mode {
            ProgressMode::Lines(every) => {
                every.clamp(Duration::from_millis(50), Duration::from_millis(500))
            }
            _ => Duration::from_millis(500),
        }
    }

    /// Requests sent per second over the last second (or what there is of it).
    fn achieved(&mut self, s: &Snapshot) -> f64 {
        self.sends.push_back((s.elapsed, s.sent));
        while self
            .sends
            .get(1)
            .is_some_and(|(t, _)| s.elapsed.saturating_sub(*t) >= Duration::from_secs(1))
        {
            self.sends.pop_front();
        }
        match self.sends.front() {
            Some((t, n)) if s.elapsed > *t => (s.sent - n) as f64 / (s.elapsed - *t).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// Shows `s`: redraws the bar, or returns the line when one is due (and prints it).
    pub fn update(&mut self, s: &Snapshot) -> Option<String> {
        let achieved = self.achieved(s);
        let text = line(s, achieved);
        if let Some(bar) = &self.bar {
            bar.set_position(s.elapsed.as_millis() as u64);
            bar.set_message(text);
            return None;
        }
        if s.elapsed < self.next_line {
            return None;
        }
        if let ProgressMode::Lines(every) = self.mode {
            while self.next_line <= s.elapsed {
                self.next_line += every;
            }
        }
        eprintln!("loadtest: {text}");
        Some(text)
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `12.0 s / 60 s  target 200 rps  achieved 199.0 rps  p95 3.1 ms  errors 0  in flight 4`.
pub fn line(s: &Snapshot, achieved: f64) -> String {
    format!(
        "{:.1} s / {:.0} s  target {:.0} rps  achieved {:.1} rps  p95 {}  errors {}  in flight {}",
        s.elapsed.as_secs_f64(),
        s.planned.as_secs_f64(),
        s.target_rps,
        achieved,
        s.p95_ms
            .map(|p| format!("{p:.1} ms"))
            .unwrap_or_else(|| "–".into()),
        s.errors,
        s.in_flight
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(ms: u64, sent: u64) -> Snapshot {
        Snapshot {
            elapsed: Duration::from_millis(ms),
            planned: Duration::from_secs(60),
            target_rps: 100.0,
            sent,
            p95_ms: Some(3.07),
            errors: 2,
            in_flight: 5,
        }
    }

    #[test]
    fn lines_come_once_per_interval_with_every_figure() {
        let mut p = Progress::new(
            ProgressMode::Lines(Duration::from_secs(10)),
            Duration::from_secs(60),
        );
        assert_eq!(p.tick(), Duration::from_millis(500));
        let mut shown = Vec::new();
        // A tick every 500 ms for 31 s at 100 rps.
        for i in 1..=62u64 {
            if let Some(l) = p.update(&snap(i * 500, i * 50)) {
                shown.push((i * 500, l));
            }
        }
        let at: Vec<u64> = shown.iter().map(|(t, _)| *t).collect();
        assert_eq!(at, [10_000, 20_000, 30_000]);
        assert_eq!(
            shown[0].1,
            "10.0 s / 60 s  target 100 rps  achieved 100.0 rps  p95 3.1 ms  errors 2  in flight 5"
        );
    }

    #[test]
    fn a_late_tick_prints_one_line_not_a_backlog_and_off_prints_nothing() {
        let mut p = Progress::new(
            ProgressMode::Lines(Duration::from_secs(1)),
            Duration::from_secs(60),
        );
        assert!(p.update(&snap(1_000, 10)).is_some());
        // The machine stalled 5 s: one line, the next one a second later.
        assert!(p.update(&snap(6_200, 60)).is_some());
        assert!(p.update(&snap(6_700, 65)).is_none());
        assert!(p.update(&snap(7_000, 70)).is_some());
        let mut off = Progress::new(ProgressMode::Off, Duration::from_secs(60));
        assert!((1..100).all(|i| off.update(&snap(i * 1000, i)).is_none()));
        assert_eq!(
            Progress::new(
                ProgressMode::Lines(Duration::from_millis(200)),
                Duration::ZERO
            )
            .tick(),
            Duration::from_millis(200)
        );
    }
}
