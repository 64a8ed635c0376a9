//! Goose wiring: users, pacing, request templates.
//!
//! # Why pacing is ours and not goose's
//!
//! Goose is a closed-loop generator: each `GooseUser` runs its transactions back to back
//! (optionally with a wait time or a global `throttle_requests` cap). That model cannot hold an
//! *arrival rate*: when the server slows, users send less, and the load that caused the slowness
//! disappears from the measurement (coordinated omission). Goose's own CO mitigation back-fills
//! synthetic samples from a per-user cadence, which does not match a scenario whose rate ramps.
//!
//! So goose supplies what it is good at — user tasks, an HTTP client per user, a run timer and
//! a Ctrl-C handler — and one transaction does the open-model part: every iteration claims the
//! next slot `k` of a shared [`Schedule`] (an atomic counter), sleeps until slot `k`'s intended
//! send time, sends, and records latency **from the intended time**. Users only bound how many
//! requests can be in flight; a user that finishes late simply picks the next due slot at once.
//! Goose's own metrics, reports, banner, telnet and websocket controllers are all off; goose
//! never sees our argv (`GooseAttack::initialize_with_config`).

pub mod record;
pub mod schedule;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use goose::config::GooseConfiguration;
use goose::goose::Scenario as GooseScenario;
use goose::prelude::{
    GooseAttack, GooseMethod, GooseRequest, GooseUser, Transaction, TransactionFunction,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::scenario::{Method, Scenario};
pub use record::{Outcome, Recorder};
pub use schedule::Schedule;

/// What the engine measured.
#[derive(Debug)]
pub struct EngineResult {
    pub recorder: Recorder,
    /// When slot 0 was due.
    pub started: SystemTime,
    pub ended: SystemTime,
    pub interrupted: bool,
    pub users: usize,
    pub planned: u64,
    /// Slots claimed and sent.
    pub sent: u64,
    /// Goose refused to run (a bug in our wiring, not the user's input).
    pub goose_error: Option<String>,
}

/// How many goose users (= most requests in flight) a scenario gets.
///
/// Enough for one second of latency at the peak rate (Little's law: in flight = rate ×
/// latency), at least 16, at most 4000; a scenario can set `max_in_flight`. Each user costs a
/// reqwest client, so this is bounded. When the service is slower than that, requests leave
/// late: latency still counts from the intended time, and the achieved rate (by actual send
/// time) falls, which makes the run invalid with the send lag in the reason.
pub fn users_for(scenario: &Scenario) -> usize {
    scenario
        .max_in_flight
        .unwrap_or_else(|| (scenario.peak_rps().ceil() as usize).clamp(16, 4000))
        .min(10_000)
}

struct Shared {
    schedule: Schedule,
    scenario: Scenario,
    /// Cumulative weights for picking a request.
    cumulative: Vec<u64>,
    start: OnceLock<(Instant, SystemTime)>,
    next: AtomicU64,
    sent: AtomicU64,
    /// Slots claimed and not yet recorded (sleeping until due, or in flight).
    open: AtomicU64,
    /// Every slot was sent and answered; we ended goose, not Ctrl-C.
    completed: AtomicBool,
    recorder: Mutex<Recorder>,
}

impl Shared {
    fn start(&self) -> Instant {
        self.start
            .get_or_init(|| (Instant::now(), SystemTime::now()))
            .0
    }

    fn pick(&self, k: u64) -> usize {
        pick(&self.cumulative, k)
    }

    /// One iteration of the only transaction: wait for the next slot, send, record.
    async fn step(&self, user: &mut GooseUser) {
        let start = self.start();
        if goose::is_killswitch_triggered() {
            // Ctrl-C: claim nothing more; goose is stopping the users.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        }
        self.open.fetch_add(1, Ordering::SeqCst);
        let k = self.next.fetch_add(1, Ordering::SeqCst);
        let Some(offset) = self.schedule.send_time(k) else {
            // Schedule done. The last user to see nothing open ends the attack through goose's
            // killswitch (its only early-stop hook), so a slow tail is waited for rather than
            // cut by a fixed run timer.
            if self.open.fetch_sub(1, Ordering::SeqCst) == 1
                && !goose::is_killswitch_triggered()
                && !self.completed.swap(true, Ordering::SeqCst)
            {
                goose::trigger_killswitch("loadtest: schedule complete");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        };
        self.send(user, start, offset, k).await;
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    async fn send(&self, user: &mut GooseUser, start: Instant, offset: Duration, k: u64) {
        let intended = start + offset;
        // Sleep in short steps so Ctrl-C (goose's killswitch) ends the run promptly.
        loop {
            if goose::is_killswitch_triggered() {
                return;
            }
            let now = Instant::now();
            if now >= intended {
                break;
            }
            tokio::time::sleep_until(intended.min(now + Duration::from_millis(250))).await;
        }
        let idx = self.pick(k);
        let spec = &self.scenario.requests[idx];
        let (path, headers, body) = {
            let mut rng = rand::rng();
            (
                spec.path.render(&mut rng),
                spec.headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render(&mut rng)))
                    .collect::<Vec<_>>(),
                spec.body
                    .as_ref()
                    .map(|b| serde_json::to_vec(&b.render(&mut rng)).unwrap_or_default()),
            )
        };
        let method = match spec.method {
            Method::Get => GooseMethod::Get,
            Method::Post => GooseMethod::Post,
            Method::Put => GooseMethod::Put,
            Method::Patch => GooseMethod::Patch,
            Method::Delete => GooseMethod::Delete,
            Method::Head => GooseMethod::Head,
        };
        let sent_at = Instant::now();
        self.sent.fetch_add(1, Ordering::Relaxed);
        let (status, cold_start, instance) = match user.get_request_builder(&method, &path) {
            Err(_) => (None, false, None),
            Ok(mut rb) => {
                for (k, v) in &headers {
                    rb = rb.header(k.as_str(), v.as_str());
                }
                if let Some(b) = body {
                    rb = rb.header("content-type", "application/json").body(b);
                }
                rb = rb.timeout(self.scenario.timeout);
                let req = GooseRequest::builder()
                    .method(method)
                    .path(path.as_str())
                    .name(spec.name.as_str())
                    .set_request_builder(rb)
                    .build();
                match user.request(req).await {
                    Ok(goose) => match goose.response {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let h = resp.headers();
                            let cold = h
                                .get("x-emu-cold-start")
                                .and_then(|v| v.to_str().ok())
                                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
                            // `none`: emu answered itself (429, 504, …); no instance served it.
                            let instance = h
                                .get("x-emu-instance")
                                .and_then(|v| v.to_str().ok())
                                .filter(|v| *v != "none")
                                .map(str::to_string);
                            // The latency includes the whole body, as a client would wait.
                            match resp.bytes().await {
                                Ok(_) => (Some(status), cold, instance),
                                Err(_) => (None, cold, instance),
                            }
                        }
                        Err(_) => (None, false, None),
                    },
                    Err(_) => (None, false, None),
                }
            }
        };
        let done = Instant::now();
        let outcome = Outcome {
            request: idx,
            intended: offset,
            sent: sent_at.saturating_duration_since(start),
            done: done.saturating_duration_since(start),
            status,
            ok: status.is_some_and(|s| spec.expects(s)),
            cold_start,
            instance,
        };
        self.recorder.lock().record(&outcome);
    }
}

/// Runs the scenario's schedule against `target` with goose. Never panics on the target's
/// behaviour; a goose wiring error is returned in `goose_error`.
pub async fn run(scenario: &Scenario, target: &str, progress: bool) -> EngineResult {
    let schedule = Schedule::new(&scenario.stages);
    let holds: Vec<(f64, f64)> = schedule.holds().iter().map(|h| (h.start, h.end)).collect();
    let mut acc = 0;
    let cumulative = scenario
        .requests
        .iter()
        .map(|r| {
            acc += u64::from(r.weight);
            acc
        })
        .collect();
    let users = users_for(scenario);
    let shared = Arc::new(Shared {
        recorder: Mutex::new(Recorder::new(scenario.requests.len(), holds)),
        schedule,
        scenario: scenario.clone(),
        cumulative,
        start: OnceLock::new(),
        next: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        open: AtomicU64::new(0),
        completed: AtomicBool::new(false),
    });

    let step_shared = shared.clone();
    let step: TransactionFunction = Arc::new(move |user| {
        let shared = step_shared.clone();
        Box::pin(async move {
            shared.step(user).await;
            Ok(())
        })
    });
    let goose_scenario = GooseScenario::new("loadtest")
        .register_transaction(Transaction::new(step).set_name("paced request"));

    let config = goose_config(scenario, target, users, shared.schedule.duration());
    let bar = progress_bar(progress);
    let ticker = spawn_ticker(shared.clone(), bar.clone(), scenario.timeout);

    let attack =
        GooseAttack::initialize_with_config(config).map(|a| a.register_scenario(goose_scenario));
    let goose_error = match attack {
        Err(e) => Some(format!("{e:?}")),
        Ok(a) => a.execute().await.err().map(|e| format!("{e:?}")),
    };
    ticker.abort();
    bar.finish_and_clear();
    let interrupted = goose::is_killswitch_triggered() && !shared.completed.load(Ordering::SeqCst);
    // Goose's Ctrl-C handler stays installed and exits the process at once when the killswitch
    // is already set; clear it so a Ctrl-C while we fetch emu events and write the reports
    // does not throw the finished run away.
    goose::reset_killswitch();
    let ended = SystemTime::now();
    let started = shared.start.get().map(|s| s.1).unwrap_or(ended);
    let planned = shared.schedule.total();
    let sent = shared.sent.load(Ordering::Relaxed);
    let recorder = shared.recorder.lock().clone();
    EngineResult {
        recorder,
        started,
        ended,
        interrupted,
        users,
        planned,
        sent,
        goose_error,
    }
}

/// Goose with everything of its own off (metrics, banner, telnet, reports) and `users` users.
/// Every user is launched within ~0.25 s; the schedule's clock starts when the first one
/// runs. The run ends when the last slot is answered (see `Shared::step`); goose's run timer is
/// only a backstop: the schedule, one request timeout and a margin.
fn goose_config(
    scenario: &Scenario,
    target: &str,
    users: usize,
    schedule: Duration,
) -> GooseConfiguration {
    let launch_rate = (users as f64 * 4.0).max(1.0);
    let run_secs = (schedule + scenario.timeout).as_secs_f64().ceil() as u64 + 5;
    let mut config = GooseConfiguration::default();
    config.host = Some(target.to_string());
    config.users = Some(users);
    config.increase_rate = Some(format!("{launch_rate}"));
    config.run_time = Some(format!("{run_secs}s"));
    config.quiet = 1;
    config.no_print_metrics = true;
    config.no_error_summary = true;
    config.no_metrics = true;
    config.no_telnet = true;
    config.timeout = Some(format!("{}", scenario.timeout.as_secs().max(1)));
    config
}

/// Every half second: packs the seconds no open request can still land in (a soak keeps
/// megabytes, not gigabytes) and updates the progress line.
fn spawn_ticker(
    shared: Arc<Shared>,
    bar: ProgressBar,
    timeout: Duration,
) -> tokio::task::JoinHandle<()> {
    let keep = timeout + Duration::from_secs(3);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let Some((start, _)) = shared.start.get().copied() else {
                continue;
            };
            let elapsed = start.elapsed();
            let mut rec = shared.recorder.lock();
            rec.pack_before(elapsed.saturating_sub(keep));
            if bar.is_hidden() {
                continue;
            }
            let sec = elapsed.as_secs() as usize;
            let achieved = sec
                .checked_sub(1)
                .and_then(|s| rec.seconds.get(s))
                .map(|s| s.requests)
                .unwrap_or(0);
            let p95 = record::pct_ms(&rec.overall, 0.95).unwrap_or(0.0);
            let msg = format!(
                "{:>6.1}s / {:.0}s  {:>6} / {:>6.0} rps  p95 {:>7.1} ms  errors {}",
                elapsed.as_secs_f64(),
                shared.schedule.duration().as_secs_f64(),
                achieved,
                shared.schedule.rate_at(elapsed.as_secs_f64() - 1.0),
                p95,
                rec.errors
            );
            drop(rec);
            bar.set_message(msg);
        }
    })
}

/// Which request the k-th send is, from the cumulative weights: each request's share of any
/// stretch of the run is its weight's share (k·φ mod 1 is spread evenly over [0, 1) for every
/// length of run), so a run sends the mix the scenario asks for and two runs send the same mix:
/// per-request throughput then differs between runs only when the target does, not by chance.
fn pick(cumulative: &[u64], k: u64) -> usize {
    let total = cumulative.last().copied().unwrap_or(1).max(1);
    let u = (k as f64 * 0.618_033_988_749_894_9).fract();
    let x = ((u * total as f64) as u64).min(total - 1);
    cumulative.partition_point(|c| *c <= x)
}

/// The live progress line; hidden when stderr is not a terminal (CI logs stay clean).
fn progress_bar(enabled: bool) -> ProgressBar {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod pick_tests {
    use super::pick;

    #[test]
    fn the_mix_follows_the_weights_over_any_stretch() {
        // Weights 2, 1 and 7.
        let cumulative = [2, 3, 10];
        let counts = |from: u64, n: u64| {
            let mut c = [0u64; 3];
            for k in from..from + n {
                c[pick(&cumulative, k)] += 1;
            }
            c
        };
        let whole = counts(0, 10_000);
        for (i, share) in [0.2, 0.1, 0.7].iter().enumerate() {
            let got = whole[i] as f64 / 10_000.0;
            assert!((got - share).abs() < 0.002, "request {i}: {got} vs {share}");
        }
        // Every stretch of 100 sends is within 3 requests of its share.
        for from in (0..5_000).step_by(37) {
            let c = counts(from, 100);
            for (i, share) in [20.0, 10.0, 70.0].iter().enumerate() {
                assert!((c[i] as f64 - share).abs() <= 3.0, "from {from}: {c:?}");
            }
        }
        // Only the weights decide: a single request is always picked.
        assert!((0..100).all(|k| pick(&[5], k) == 0));
    }
}
