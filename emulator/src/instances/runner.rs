//! Runners: how an instance is started and stopped. A process per instance (the command, with
//! Cloud Run's env), a modelled instance in front of an app the user runs (upstream), or a
//! container (Docker).

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use nix::sys::signal::Signal;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::console::Stream;
use crate::proc::{harden, signal_group, Hardening};
use crate::spec::{RunnerSpec, ServiceSpec};
use crate::telemetry::LogFormat;

/// The last lines an instance printed, kept to explain a failed start.
#[derive(Debug, Clone, Default)]
pub struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    const LINES: usize = 20;
    fn push(&self, line: String) {
        let mut q = self.0.lock();
        if q.len() == Self::LINES {
            q.pop_front();
        }
        q.push_back(line);
    }
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().iter().cloned().collect()
    }
}

/// Why an instance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start {command:?}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("no free port: {0}")]
    Port(std::io::Error),
    #[error("{0}")]
    Unsupported(String),
}

/// What an instance runs once started: its process, its container, or (upstream) the address of
/// an app the user runs. (One per instance, never on the request path: size does not matter.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum StartedInstance {
    Process {
        child: Child,
        pid: u32,
        authority: Authority,
        tail: Tail,
        /// The tasks copying its stdout and stderr.
        readers: Vec<tokio::task::JoinHandle<()>>,
    },
    /// Slots modelled in front of one address the user runs; nothing to start or stop.
    Upstream { authority: Authority },
    /// A container (`docker run`), sharing the host's network so loopback backends work.
    Container {
        instance: Option<crate::backends::docker::DockerInstance>,
        authority: Authority,
        name: String,
    },
}

impl StartedInstance {
    pub fn authority(&self) -> &Authority {
        match self {
            StartedInstance::Process { authority, .. }
            | StartedInstance::Upstream { authority }
            | StartedInstance::Container { authority, .. } => authority,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            StartedInstance::Process { pid, .. } => Some(*pid),
            StartedInstance::Upstream { .. } | StartedInstance::Container { .. } => None,
        }
    }

    pub fn tail(&self) -> Vec<String> {
        match self {
            StartedInstance::Process { tail, .. } => tail.lines(),
            StartedInstance::Upstream { .. } | StartedInstance::Container { .. } => Vec::new(),
        }
    }

    /// Waits (a second at most) for an exited process's output to be read to its end, so that
    /// [`StartedInstance::tail`] holds its last words.
    pub async fn drain_output(&mut self) {
        if let StartedInstance::Process { readers, .. } = self {
            let all = futures_util::future::join_all(readers.drain(..));
            let _ = tokio::time::timeout(Duration::from_secs(1), all).await;
        }
    }

    /// Resolves when the instance's process exits (never, for an upstream).
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            StartedInstance::Process { child, .. } => child.wait().await,
            StartedInstance::Upstream { .. } => std::future::pending().await,
            StartedInstance::Container { name, .. } => {
                // `docker wait` returns when the container stops, printing its exit code.
                let out = Command::new("docker")
                    .args(["wait", name.as_str()])
                    .output()
                    .await?;
                let code: i32 = String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(1);
                use std::os::unix::process::ExitStatusExt;
                Ok(ExitStatus::from_raw(code << 8))
            }
        }
    }

    /// Cloud Run's shutdown: SIGTERM to the instance's process group, SIGKILL after `grace`.
    /// Returns true when the process stopped within the grace period.
    pub async fn stop(&mut self, grace: Duration) -> bool {
        let StartedInstance::Process { child, pid, .. } = self else {
            return true;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        let _ = signal_group(*pid, Signal::SIGTERM);
        let graceful = tokio::time::timeout(grace, child.wait()).await.is_ok();
        // Whatever else the instance forked goes too.
        let _ = signal_group(*pid, Signal::SIGKILL);
        if !graceful {
            let _ = child.wait().await;
        }
        graceful
    }
}

/// The program to run: `emu` means this emu's own executable (so `command = ["emu", "demo-app"]`
/// works from any folder, whether or not emu is on PATH).
pub fn program(word: &str) -> std::ffi::OsString {
    if word == "emu" {
        if let Ok(exe) = std::env::current_exe() {
            return exe.into_os_string();
        }
    }
    word.into()
}

/// Cloud Run's container contract: PORT, K_SERVICE, K_REVISION, K_CONFIGURATION.
pub fn contract_env(spec: &ServiceSpec, port: u16) -> Vec<(String, String)> {
    vec![
        ("PORT".into(), port.to_string()),
        ("K_SERVICE".into(), spec.name.clone()),
        ("K_REVISION".into(), spec.revision.clone()),
        ("K_CONFIGURATION".into(), spec.name.clone()),
    ]
}

/// Starts one instance. `extra_env` carries the backends' URLs; the spec's env comes after it so
/// a service may override them.
pub async fn start(
    spec: &ServiceSpec,
    id: &str,
    extra_env: &[(String, String)],
    secret_mounts: &[(std::path::PathBuf, String)],
    output: LogFormat,
) -> Result<StartedInstance, StartError> {
    match &spec.runner {
        RunnerSpec::Upstream { url } => {
            let authority = url
                .authority()
                .cloned()
                .ok_or_else(|| StartError::Unsupported(format!("upstream {url} has no host")))?;
            Ok(StartedInstance::Upstream { authority })
        }
        RunnerSpec::Container { image } => {
            use crate::backends::docker::{docker_available, DockerInstance, InstanceOptions};
            if !docker_available().await {
                return Err(StartError::Unsupported(format!(
                    "service {} runs image {image:?}: container instances need a Docker engine, and none answers here. Run a local command instead: `emu up -f FILE -- CMD ARGS…`, or `command = [...]` in emu.toml",
                    spec.name
                )));
            }
            let mut env: Vec<(String, String)> = extra_env.to_vec();
            env.extend(spec.env.iter().cloned());
            // PORT is chosen by the runner (host network); the rest of the contract is ours.
            env.extend(
                contract_env(spec, 0)
                    .into_iter()
                    .filter(|(k, _)| k != "PORT"),
            );
            let name = format!("emu-{id}-{}", std::process::id());
            let opts = InstanceOptions {
                host_network: true,
                mounts: secret_mounts.to_vec(),
                ..InstanceOptions::default()
            };
            let instance =
                DockerInstance::start_with(image, &env, spec.container_port, &name, &opts)
                    .await
                    .map_err(|e| StartError::Unsupported(e.to_string()))?;
            let authority =
                Authority::try_from(format!("127.0.0.1:{}", instance.host_port()).as_str())
                    .map_err(|e| StartError::Unsupported(e.to_string()))?;
            Ok(StartedInstance::Container {
                instance: Some(instance),
                authority,
                name,
            })
        }
        RunnerSpec::Process { command } => {
            let port = crate::ports::free_port().map_err(StartError::Port)?;
            let mut cmd = Command::new(program(&command[0]));
            cmd.args(&command[1..])
                .envs(extra_env.iter().map(|(k, v)| (k, v)))
                .envs(spec.env.iter().map(|(k, v)| (k, v)))
                .envs(contract_env(spec, port))
                .env("EMU_INSTANCE_ID", id)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if let Some(dir) = &spec.workdir {
                cmd.current_dir(dir);
            }
            harden(&mut cmd, Hardening::default());
            let mut child = cmd.spawn().map_err(|source| StartError::Spawn {
                command: command.join(" "),
                source,
            })?;
            let pid = child.id().unwrap_or(0);
            let tail = Tail::default();
            let mut readers = Vec::new();
            if let Some(out) = child.stdout.take() {
                readers.push(forward_lines(
                    out,
                    id.to_string(),
                    tail.clone(),
                    false,
                    output,
                ));
            }
            if let Some(err) = child.stderr.take() {
                readers.push(forward_lines(
                    err,
                    id.to_string(),
                    tail.clone(),
                    true,
                    output,
                ));
            }
            let authority = Authority::try_from(format!("127.0.0.1:{port}").as_str())
                .map_err(|e| StartError::Unsupported(e.to_string()))?;
            Ok(StartedInstance::Process {
                child,
                pid,
                authority,
                tail,
                readers,
            })
        }
    }
}

/// Copies an instance's output to emu's: each line prefixed with the instance id, or with
/// `--log-format json` as one JSON object per line ([`crate::telemetry::instance_line`]).
fn forward_lines<R>(
    stream: R,
    id: String,
    tail: Tail,
    stderr: bool,
    output: LogFormat,
) -> tokio::task::JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let shown = match output {
                LogFormat::Text => format!("[{id}] {line}"),
                LogFormat::Json => crate::telemetry::instance_line(&id, &line),
            };
            let stream = if stderr {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            crate::console::line(stream, &shown);
            tail.push(line);
        }
    })
}
