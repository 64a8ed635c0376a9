//! The supervisor: keeps a service's instances at the count the scaler asks for — start
//! (cold-start delay, process, startup probe), watch (exit, liveness), and stop (drain,
//! SIGTERM, SIGKILL).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::ServiceRuntime;
use crate::instances::{probe, runner, Instance, InstanceState};
use crate::ports;
use crate::telemetry::LogFormat;
use crate::timeline::Timeline;

/// How many times one instance is started again after losing its port to another process.
const PORT_RETRIES: u32 = 5;

/// How an instance's life ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Stopped because the supervisor asked (scale-in or shutdown).
    Stopped,
    /// Exited by itself, failed its probe, or could not start.
    Failed(String),
}

struct Handle {
    instance: Arc<Instance>,
    stop: CancellationToken,
}

/// Keeps a service's instances at the desired count.
pub struct Supervisor {
    svc: Arc<ServiceRuntime>,
    events: Arc<Timeline>,
    extra_env: Arc<Vec<(String, String)>>,
    mounts: Arc<Vec<(std::path::PathBuf, String)>>,
    live: HashMap<Arc<str>, Handle>,
    tasks: JoinSet<(Arc<str>, Ended)>,
    seq: u64,
    rng: rand::rngs::StdRng,
    probe_client: probe::ProbeClient,
    /// Consecutive failed starts, to back off instead of spinning on a broken command.
    failures_in_row: u32,
    /// How instances' output is written.
    output: LogFormat,
}

/// Messages to a supervisor.
#[derive(Debug)]
pub enum Command {
    /// Re-read `desired` and act on it.
    Reconcile,
}

impl Supervisor {
    /// `extra_env` (backends' URLs, secrets) and `mounts` (secret files, for containers) go to
    /// every instance.
    pub fn new(
        svc: Arc<ServiceRuntime>,
        events: Arc<Timeline>,
        extra_env: Vec<(String, String)>,
        mounts: Vec<(std::path::PathBuf, String)>,
    ) -> Self {
        Supervisor {
            svc,
            events,
            extra_env: Arc::new(extra_env),
            mounts: Arc::new(mounts),
            live: HashMap::new(),
            tasks: JoinSet::new(),
            seq: 0,
            rng: rand::rngs::StdRng::from_os_rng(),
            probe_client: probe::probe_client(),
            failures_in_row: 0,
            output: LogFormat::Text,
        }
    }

    /// Instances' output as `format` says (`--log-format json`: JSON lines).
    pub fn with_output(mut self, format: LogFormat) -> Self {
        self.output = format;
        self
    }

    /// Runs until `shutdown`, then drains and stops every instance.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        self.reconcile();
        let pool = self.svc.pool.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = pool.demanded() => self.on_demand(),
                Some(cmd) = commands.recv() => match cmd {
                    Command::Reconcile => self.reconcile(),
                },
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok((id, ended)) = done {
                        self.on_ended(id, ended).await;
                    }
                }
            }
        }
        self.svc.pool.close();
        for h in self.live.values() {
            h.stop.cancel();
        }
        while let Some(done) = self.tasks.join_next().await {
            if let Ok((id, _)) = done {
                self.live.remove(&id);
            }
        }
        self.svc.instances.lock().clear();
    }

    fn live_count(&self) -> u32 {
        self.live
            .values()
            .filter(|h| !h.stop.is_cancelled())
            .count() as u32
    }

    /// A request is waiting. From zero, start instances at once, as Cloud Run's activator does
    /// (only a request scales a service up from zero); otherwise the autoscaler's next decision,
    /// which counts queued requests as demand, scales out.
    fn on_demand(&mut self) {
        if self.live_count() == 0 && self.svc.pool.queue_depth() > 0 {
            let spec = &self.svc.spec;
            let want = spec
                .autoscaler
                .activation_scale
                .max(1)
                .min(spec.max_instances);
            if want > self.svc.desired() {
                self.svc.desired.store(want, Ordering::Relaxed);
            }
            self.svc.activated.store(true, Ordering::Release);
        }
        self.reconcile();
    }

    fn reconcile(&mut self) {
        let spec = &self.svc.spec;
        let desired = self
            .svc
            .desired()
            .clamp(spec.min_instances, spec.max_instances);
        let live = self.live_count();
        if live < desired {
            for _ in live..desired {
                self.start_one();
            }
        } else if live > desired && self.svc.pool.queue_depth() == 0 {
            // Stop starting instances first (they serve nobody yet), then the least busy.
            let mut candidates: Vec<&Handle> = self
                .live
                .values()
                .filter(|h| !h.stop.is_cancelled())
                .collect();
            candidates.sort_by_key(|h| {
                (
                    h.instance.state() != InstanceState::Starting,
                    h.instance.in_flight(),
                )
            });
            for h in candidates.into_iter().take((live - desired) as usize) {
                h.stop.cancel();
            }
        }
    }

    fn start_one(&mut self) {
        self.seq += 1;
        let id: Arc<str> = format!("{}-{}", self.svc.spec.name, self.seq).into();
        let instance = Instance::new(id.clone());
        let stop = CancellationToken::new();
        self.svc.instances.lock().push(instance.clone());
        self.live.insert(
            id.clone(),
            Handle {
                instance: instance.clone(),
                stop: stop.clone(),
            },
        );
        let delay = self.svc.spec.cold_start.sample(&mut self.rng);
        // Back off after repeated failures so a broken command does not spin.
        let backoff = match self.failures_in_row {
            0 => Duration::ZERO,
            n => Duration::from_millis(250 * 2u64.pow(n.min(6))).min(Duration::from_secs(10)),
        };
        let life = InstanceLife {
            svc: self.svc.clone(),
            events: self.events.clone(),
            extra_env: self.extra_env.clone(),
            mounts: self.mounts.clone(),
            instance,
            stop,
            delay: delay + backoff,
            probe_client: self.probe_client.clone(),
            output: self.output,
        };
        self.tasks.spawn(async move {
            let ended = life.run().await;
            (id, ended)
        });
    }

    async fn on_ended(&mut self, id: Arc<str>, ended: Ended) {
        let Some(h) = self.live.remove(&id) else {
            return;
        };
        self.svc
            .instances
            .lock()
            .retain(|s| !Arc::ptr_eq(s, &h.instance));
        match ended {
            Ended::Stopped => {
                self.failures_in_row = 0;
            }
            Ended::Failed(why) => {
                let served = h.instance.served() > 0;
                self.failures_in_row = if served { 0 } else { self.failures_in_row + 1 };
                *self.svc.last_failure.lock() = Some(why);
                // A replacement keeps the count the scaler asked for.
            }
        }
        self.reconcile();
    }
}

/// One instance from start to stop.
struct InstanceLife {
    svc: Arc<ServiceRuntime>,
    events: Arc<Timeline>,
    extra_env: Arc<Vec<(String, String)>>,
    mounts: Arc<Vec<(std::path::PathBuf, String)>>,
    instance: Arc<Instance>,
    stop: CancellationToken,
    delay: Duration,
    probe_client: probe::ProbeClient,
    output: LogFormat,
}

impl InstanceLife {
    fn event(&self, state: &str, extra: serde_json::Value) {
        let mut fields = json!({ "instance": &*self.instance.id, "state": state });
        if let (Some(f), serde_json::Value::Object(e)) = (fields.as_object_mut(), extra) {
            f.extend(e);
        }
        self.events.push("instance", &self.svc.spec.name, fields);
    }

    async fn run(self) -> Ended {
        let spec = &self.svc.spec;
        self.event(
            "starting",
            json!({ "cold_start_delay_ms": self.delay.as_millis() as u64 }),
        );
        tracing::info!(instance = %self.instance.id, "starting");

        // Requests wait for this start past their queue timeout while it is within budget;
        // dropping `start` (on every way out of this function) ends that.
        let start = self
            .svc
            .pool
            .start_began(self.delay + spec.startup_probe.budget());
        // The extra cold-start delay stands for image pull and container start.
        tokio::select! {
            () = tokio::time::sleep(self.delay) => {},
            () = self.stop.cancelled() => return self.finish(Ended::Stopped, None),
        }
        let mut running = match self.start_until_ready().await {
            Ok(r) => r,
            Err(ended) => return ended,
        };
        let addr = running.authority().clone();
        self.instance.set_addr(addr.clone());

        self.svc.pool.add_ready(self.instance.clone());
        drop(start);
        *self.svc.last_failure.lock() = None;
        let startup_ms = self
            .instance
            .startup_duration()
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.event("ready", json!({ "startup_ms": startup_ms }));
        tracing::info!(instance = %self.instance.id, startup_ms, "ready");

        let liveness = async {
            match &spec.liveness_probe {
                Some(p) => probe::liveness(p, &addr, &self.probe_client).await,
                None => std::future::pending().await,
            }
        };
        let readiness = async {
            let Some(p) = &spec.readiness_probe else {
                return std::future::pending::<()>().await;
            };
            tokio::time::sleep(p.initial_delay).await;
            let mut failures = 0;
            loop {
                tokio::time::sleep(p.period).await;
                match probe::attempt(p, &addr, &self.probe_client).await {
                    Ok(()) => {
                        failures = 0;
                        if self.instance.state() == InstanceState::Unready {
                            self.svc.pool.resume(&self.instance);
                            self.event("ready", json!({ "reason": "readiness probe passed" }));
                        }
                    }
                    Err(why) => {
                        failures += 1;
                        if failures >= p.failure_threshold
                            && self.instance.state() == InstanceState::Ready
                        {
                            self.svc.pool.suspend(&self.instance);
                            tracing::warn!(instance = %self.instance.id, "readiness probe failed: {why}; no new requests");
                            self.event("unready", json!({ "reason": why }));
                        }
                    }
                }
            }
        };
        tokio::select! {
            // The readiness loop never ends; this arm only completes the select.
            () = readiness => self.finish(Ended::Stopped, None),
            exit = running.exited() => {
                // Crashed: its in-flight requests fail (their connections drop) and it is replaced.
                self.svc.pool.remove(&self.instance, InstanceState::Stopped);
                let why = format!("instance {} exited ({})", self.instance.id, describe_exit(exit));
                tracing::warn!("{why}");
                self.finish(Ended::Failed(why), Some(running.tail()))
            }
            why = liveness => {
                self.svc.pool.remove(&self.instance, InstanceState::Stopped);
                tracing::warn!(instance = %self.instance.id, "{why}; restarting");
                running.stop(spec.shutdown_grace).await;
                self.finish(Ended::Failed(why), None)
            }
            () = self.stop.cancelled() => {
                // Scale-in or shutdown: no new requests, in-flight ones finish, then SIGTERM.
                self.svc.pool.remove(&self.instance, InstanceState::Draining);
                self.event("draining", json!({ "in_flight": self.instance.in_flight() }));
                let _ = tokio::time::timeout(spec.timeout, self.instance.wait_idle()).await;
                let graceful = running.stop(spec.shutdown_grace).await;
                self.svc.pool.remove(&self.instance, InstanceState::Stopped);
                if !graceful {
                    tracing::warn!(instance = %self.instance.id, "did not stop within {:?} of SIGTERM: killed", spec.shutdown_grace);
                }
                self.finish(Ended::Stopped, None)
            }
        }
    }

    /// Starts the instance and runs its startup probe. A start that lost its port to another
    /// process (EADDRINUSE between emu's check and the app's bind) is no crash: it is retried at
    /// once on another port, up to [`PORT_RETRIES`] times.
    async fn start_until_ready(&self) -> Result<runner::StartedInstance, Ended> {
        let spec = &self.svc.spec;
        let mut retries = 0;
        loop {
            let mut running = match runner::start(
                spec,
                &self.instance.id,
                &self.extra_env,
                &self.mounts,
                self.output,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    let why = e.to_string();
                    tracing::error!(instance = %self.instance.id, "{why}");
                    return Err(self.finish(Ended::Failed(why), None));
                }
            };
            if let Some(pid) = running.pid() {
                self.instance.set_pid(pid);
            }
            let addr = running.authority().clone();
            let mut exited = false;
            let started = tokio::select! {
                r = probe::startup(&spec.startup_probe, &addr, &self.probe_client) => r,
                exit = running.exited() => {
                    exited = true;
                    Err(format!("exited during startup ({})", describe_exit(exit)))
                }
                () = self.stop.cancelled() => {
                    running.stop(spec.shutdown_grace).await;
                    return Err(self.finish(Ended::Stopped, None));
                }
            };
            let Err(mut why) = started else {
                return Ok(running);
            };
            let port = addr.port_u16().unwrap_or(0);
            if let Some(pid) = running.pid().filter(|_| !exited) {
                let listening = ports::listening_ports(pid);
                if let Some(advice) = ports::wrong_port(port, &listening, spec.container_port) {
                    why = format!("{why}. {advice}");
                }
            }
            running.stop(spec.shutdown_grace).await;
            running.drain_output().await;
            let tail = running.tail();
            if exited
                && running.pid().is_some()
                && retries < PORT_RETRIES
                && ports::lost_port_race(&tail, port)
            {
                retries += 1;
                tracing::warn!(instance = %self.instance.id, "port {port} was taken by another process before the instance bound it; starting again on another port");
                self.event("port_taken", json!({ "port": port }));
                continue;
            }
            let mut msg = format!("instance {} never became ready: {why}", self.instance.id);
            if !tail.is_empty() {
                msg.push_str("; its last output:\n  ");
                msg.push_str(&tail.join("\n  "));
            }
            tracing::error!("{msg}");
            return Err(self.finish(Ended::Failed(msg), Some(tail)));
        }
    }

    fn finish(&self, ended: Ended, _tail: Option<Vec<String>>) -> Ended {
        self.svc.pool.remove(&self.instance, InstanceState::Stopped);
        let (state, reason) = match &ended {
            Ended::Stopped => ("stopped", None),
            Ended::Failed(why) => ("failed", Some(why.clone())),
        };
        self.event(
            state,
            json!({ "reason": reason, "served": self.instance.served() }),
        );
        ended
    }
}

fn describe_exit(exit: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match exit {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (_, Some(sig)) => format!("killed by signal {sig}"),
            _ => s.to_string(),
        },
        Err(e) => e.to_string(),
    }
}
