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

pub mod pacing;
pub mod progress;
pub mod record;
pub mod schedule;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use goose::client::GooseClientBuilder;
use goose::config::GooseConfiguration;
use goose::goose::Scenario as GooseScenario;
use goose::prelude::{GooseAttack, Transaction, TransactionFunction};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::scenario::{Method, Scenario};
pub use pacing::Pacing;
pub use progress::ProgressMode;
use progress::{Progress, Snapshot};
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
    /// The in-flight cap and who made sends late.
    pub pacing: Pacing,
    /// Goose refused to run (a bug in our wiring, not the user's input).
    pub goose_error: Option<String>,
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
    /// Requests sent and not yet answered.
    in_flight: AtomicU64,
    /// Set by the ticker once goose's killswitch is (Ctrl-C): wakes every sleeping user.
    stop: tokio::sync::watch::Sender<bool>,
    /// Goose has returned: the ticker clears the progress bar and ends.
    done: tokio::sync::Notify,
    peak_in_flight: AtomicU64,
    saturated: AtomicU64,
    generator_late: AtomicU64,
    users: usize,
    /// One client for every user: a user is then a task, not a connection pool, so the cap can
    /// be sized by rate × timeout.
    client: reqwest::Client,
    /// The base URL, without a trailing `/`.
    target: String,
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
    async fn step(&self) {
        let start = self.start();
        if goose::is_killswitch_triggered() {
            // Ctrl-C: claim nothing more; goose is stopping the users.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        }
        self.open.fetch_add(1, Ordering::SeqCst);
        let k = self.next.fetch_add(1, Ordering::SeqCst);
        let claimed = Instant::now();
        let others_in_flight = self.in_flight.load(Ordering::SeqCst);
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
        let claim = Claim {
            k,
            offset,
            claimed: claimed.saturating_duration_since(start),
            others_in_flight,
        };
        self.send(start, claim).await;
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    /// Counts a late send against the target or the generator (see [`pacing`]).
    fn count_lateness(&self, claim: &Claim, sent: Duration) {
        let cause = pacing::classify(
            claim.offset,
            claim.claimed,
            sent,
            claim.others_in_flight,
            self.users,
        );
        match cause {
            pacing::SendCause::OnTime => {}
            pacing::SendCause::TargetSaturated => {
                self.saturated.fetch_add(1, Ordering::Relaxed);
            }
            pacing::SendCause::GeneratorLate => {
                self.generator_late.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn send(&self, start: Instant, claim: Claim) {
        let (k, offset) = (claim.k, claim.offset);
        let intended = start + offset;
        // Sleep until due, or until Ctrl-C (goose's killswitch, which the ticker watches): one
        // wake-up per slot, however many thousand users sleep ahead.
        let mut stop = self.stop.subscribe();
        tokio::select! {
            _ = tokio::time::sleep_until(intended) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if goose::is_killswitch_triggered() {
            return;
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
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
        };
        let mut rb = self
            .client
            .request(method, format!("{}{path}", self.target))
            .timeout(self.scenario.timeout);
        for (k, v) in &headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b);
        }
        let sent_at = Instant::now();
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.count_lateness(&claim, sent_at.saturating_duration_since(start));
        let now_in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight
            .fetch_max(now_in_flight, Ordering::Relaxed);
        let (status, cold_start, instance) = exchange(rb).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
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

/// Sends one request and reads the whole body (as a client would wait for it): the status,
/// whether emu marked it a cold start, and which instance served it. `None` status: no answer.
async fn exchange(rb: reqwest::RequestBuilder) -> (Option<u16>, bool, Option<String>) {
    let Ok(resp) = rb.send().await else {
        return (None, false, None);
    };
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
    match resp.bytes().await {
        Ok(_) => (Some(status), cold, instance),
        Err(_) => (None, cold, instance),
    }
}

/// A slot as a user claimed it: which, when due, when claimed, and how many of the other
/// users' requests were in flight then.
struct Claim {
    k: u64,
    offset: Duration,
    claimed: Duration,
    others_in_flight: u64,
}

/// Runs the scenario's schedule against `target` with goose, `cap.max_in_flight` users and one
/// shared `client`. Never panics on the target's behaviour; a goose wiring error is returned
/// in `goose_error`.
pub async fn run(
    scenario: &Scenario,
    target: &str,
    client: reqwest::Client,
    cap: Pacing,
    progress: ProgressMode,
) -> EngineResult {
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
    let users = cap.max_in_flight;
    let shared = Arc::new(Shared {
        in_flight: AtomicU64::new(0),
        stop: tokio::sync::watch::Sender::new(false),
        done: tokio::sync::Notify::new(),
        peak_in_flight: AtomicU64::new(0),
        saturated: AtomicU64::new(0),
        generator_late: AtomicU64::new(0),
        users,
        client,
        target: target.to_string(),
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
    let step: TransactionFunction = Arc::new(move |_user| {
        let shared = step_shared.clone();
        Box::pin(async move {
            shared.step().await;
            Ok(())
        })
    });
    let goose_scenario = GooseScenario::new("loadtest")
        .register_transaction(Transaction::new(step).set_name("paced request"));

    let config = goose_config(scenario, target, users, shared.schedule.duration());
    let progress = Progress::new(progress, shared.schedule.duration());
    let ticker = spawn_ticker(shared.clone(), progress, scenario.timeout);

    // Goose's own client is never used (see `Shared::client`): one shared client, not one each.
    let attack = GooseAttack::initialize_with_config(config).and_then(|a| {
        a.set_client_builder_without_cookies(GooseClientBuilder::new().without_cookies())
            .map(|a| a.register_scenario(goose_scenario))
    });
    let goose_error = match attack {
        Err(e) => Some(format!("{e:?}")),
        Ok(a) => a.execute().await.err().map(|e| format!("{e:?}")),
    };
    shared.done.notify_one();
    if let Ok(progress) = ticker.await {
        progress.finish();
    }
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
    let pacing = Pacing {
        peak_in_flight: shared.peak_in_flight.load(Ordering::Relaxed),
        not_sent_target_saturated: shared.saturated.load(Ordering::Relaxed),
        sent_late_by_generator: shared.generator_late.load(Ordering::Relaxed),
        ..cap
    };
    EngineResult {
        pacing,
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

/// Every half second (or each progress interval, when shorter): packs the seconds no open
/// request can still land in (a soak keeps megabytes, not gigabytes) and shows the progress.
fn spawn_ticker(
    shared: Arc<Shared>,
    mut progress: Progress,
    timeout: Duration,
) -> tokio::task::JoinHandle<Progress> {
    let keep = timeout + Duration::from_secs(3);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(progress.tick());
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shared.done.notified() => return progress,
            }
            if goose::is_killswitch_triggered() {
                shared.stop.send_replace(true);
            }
            let Some((start, _)) = shared.start.get().copied() else {
                continue;
            };
            let elapsed = start.elapsed();
            let mut rec = shared.recorder.lock();
            rec.pack_before(elapsed.saturating_sub(keep));
            let p95_ms = record::pct_ms(&rec.overall, 0.95);
            let errors = rec.errors;
            drop(rec);
            progress.update(&Snapshot {
                elapsed,
                planned: shared.schedule.duration(),
                target_rps: shared.schedule.rate_at(elapsed.as_secs_f64()),
                sent: shared.sent.load(Ordering::Relaxed),
                p95_ms,
                errors,
                in_flight: shared.in_flight.load(Ordering::Relaxed),
            });
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
