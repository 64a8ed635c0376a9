//! Cloud Run jobs: an execution runs `tasks` tasks (at most `parallelism` at once), each retried
//! up to `max_retries` times, each bounded by `timeout`. Tasks are real processes with the job
//! contract's env (`CLOUD_RUN_JOB`, `CLOUD_RUN_EXECUTION`, `CLOUD_RUN_TASK_INDEX`,
//! `CLOUD_RUN_TASK_ATTEMPT`, `CLOUD_RUN_TASK_COUNT`).

mod standalone;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use rand::Rng;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::Semaphore;

use crate::console::Stream as Out;
use crate::proc::{harden, signal_group, Hardening};
use crate::spec::JobSpec;
pub use standalone::{run_outside_up, JobRunError};

/// How one task ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskOutcome {
    pub index: u32,
    pub attempts: u32,
    pub succeeded: bool,
    /// The last attempt's failure, and its last lines of output.
    pub failure: Option<String>,
}

/// An execution's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Execution {
    pub job: String,
    pub execution: String,
    pub tasks: Vec<TaskOutcome>,
    pub succeeded: bool,
    pub duration_ms: u64,
}

impl Execution {
    /// A summary line, and for a failed execution the failing tasks with their output.
    pub fn describe(&self) -> String {
        let ok = self.tasks.iter().filter(|t| t.succeeded).count();
        let mut s = format!(
            "job {} execution {}: {} ({ok}/{} tasks succeeded, {:.1} s)",
            self.job,
            self.execution,
            if self.succeeded {
                "succeeded"
            } else {
                "FAILED"
            },
            self.tasks.len(),
            self.duration_ms as f64 / 1000.0
        );
        for t in self.tasks.iter().filter(|t| !t.succeeded) {
            s.push_str(&format!(
                "\n  task {} failed after {} attempt(s): {}",
                t.index,
                t.attempts,
                t.failure.as_deref().unwrap_or("?")
            ));
        }
        s
    }
}

/// Runs one execution of `job` with `env` (backends' URLs, secrets) added to the job's own.
pub async fn run(job: &JobSpec, env: &[(String, String)]) -> Execution {
    let started = tokio::time::Instant::now();
    let suffix: String = {
        let mut rng = rand::rng();
        (0..5)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect()
    };
    let execution = format!("{}-{suffix}", job.name);
    let parallel = if job.parallelism == 0 {
        job.tasks
    } else {
        job.parallelism
    };
    let gate = Arc::new(Semaphore::new(parallel.max(1) as usize));
    let mut set = tokio::task::JoinSet::new();
    for index in 0..job.tasks {
        let gate = gate.clone();
        let job = job.clone();
        let env = env.to_vec();
        let execution = execution.clone();
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            run_task(&job, &env, &execution, index).await
        });
    }
    let mut tasks = Vec::new();
    while let Some(t) = set.join_next().await {
        if let Ok(t) = t {
            tasks.push(t);
        }
    }
    tasks.sort_by_key(|t| t.index);
    let succeeded = tasks.len() == job.tasks as usize && tasks.iter().all(|t| t.succeeded);
    Execution {
        job: job.name.clone(),
        execution,
        tasks,
        succeeded,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

async fn run_task(
    job: &JobSpec,
    env: &[(String, String)],
    execution: &str,
    index: u32,
) -> TaskOutcome {
    let mut failure = None;
    for attempt in 0..=job.max_retries {
        match run_attempt(job, env, execution, index, attempt).await {
            Ok(()) => {
                return TaskOutcome {
                    index,
                    attempts: attempt + 1,
                    succeeded: true,
                    failure: None,
                }
            }
            Err(why) => {
                tracing::warn!(job = %job.name, task = index, attempt, "{}", why.lines().next().unwrap_or(""));
                failure = Some(why);
            }
        }
    }
    TaskOutcome {
        index,
        attempts: job.max_retries + 1,
        succeeded: false,
        failure,
    }
}

async fn run_attempt(
    job: &JobSpec,
    env: &[(String, String)],
    execution: &str,
    index: u32,
    attempt: u32,
) -> Result<(), String> {
    let mut cmd = Command::new(crate::instances::runner::program(&job.command[0]));
    cmd.args(&job.command[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .env("CLOUD_RUN_JOB", &job.name)
        .env("CLOUD_RUN_EXECUTION", execution)
        .env("CLOUD_RUN_TASK_INDEX", index.to_string())
        .env("CLOUD_RUN_TASK_ATTEMPT", attempt.to_string())
        .env("CLOUD_RUN_TASK_COUNT", job.tasks.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &job.workdir {
        cmd.current_dir(dir);
    }
    harden(&mut cmd, Hardening::default());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", job.command.join(" ")))?;
    let pid = child.id().unwrap_or(0);
    let tail: Tail = Arc::default();
    let readers = forward_output(&mut child, &format!("{execution}-task{index}"), &tail);
    let status = tokio::time::timeout(job.timeout, child.wait()).await;
    let result = match status {
        Ok(Ok(s)) if s.success() => Ok(()),
        Ok(Ok(s)) => Err(format!("attempt {attempt} exited with {s}")),
        Ok(Err(e)) => Err(format!("attempt {attempt}: {e}")),
        Err(_) => {
            // Cloud Run stops a task at its timeout: SIGTERM, then SIGKILL after 10 s.
            let _ = signal_group(pid, Signal::SIGTERM);
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = signal_group(pid, Signal::SIGKILL);
                let _ = child.wait().await;
            }
            Err(format!(
                "attempt {attempt} timed out after {:?}",
                job.timeout
            ))
        }
    };
    let _ = signal_group(pid, Signal::SIGKILL);
    for r in readers {
        let _ = r.await;
    }
    result.map_err(|why| {
        let t = tail.lock();
        if t.is_empty() {
            why
        } else {
            format!(
                "{why}; last output:\n    {}",
                t.iter().cloned().collect::<Vec<_>>().join("\n    ")
            )
        }
    })
}

/// The last lines a task printed, for the failure message.
type Tail = Arc<parking_lot::Mutex<std::collections::VecDeque<String>>>;

/// Copies a task's stdout and stderr to emu's, each line prefixed with the task, keeping the
/// last 20 lines in `tail`.
fn forward_output(
    child: &mut tokio::process::Child,
    prefix: &str,
    tail: &Tail,
) -> Vec<tokio::task::JoinHandle<()>> {
    type Stream = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
    let stdout = child.stdout.take().map(|s| Box::new(s) as Stream);
    let stderr = child.stderr.take().map(|s| Box::new(s) as Stream);
    let mut readers = Vec::new();
    for (stream, is_err) in [(stdout, false), (stderr, true)] {
        let Some(stream) = stream else { continue };
        let tail = tail.clone();
        let prefix = prefix.to_string();
        readers.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let to = if is_err { Out::Stderr } else { Out::Stdout };
                crate::console::line(to, &format!("[{prefix}] {line}"));
                let mut t = tail.lock();
                if t.len() == 20 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }));
    }
    readers
}
