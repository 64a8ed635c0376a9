//! [`DockerInstance`]: a service image run as one instance, through the docker CLI (`docker run`).
//!
//! The backing stores go through the Engine API (see [`super::stores`]); instances still use
//! the CLI until the container runner moves to the Engine API as well (issue 18, part 4).

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::super::BackendError;

/// Bound on `docker run` (an image pull on first use included).
const UP_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on short docker commands.
const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `docker <args>` and returns stdout; a failure carries stderr.
async fn docker(
    args: &[&str],
    envs: &[(String, String)],
    timeout: Duration,
) -> Result<String, BackendError> {
    let mut cmd = Command::new("docker");
    cmd.args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let shown = format!("docker {}", args.join(" "));
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            return Err(BackendError::Docker(format!(
                "cannot run `{shown}`: {e}. Install the docker CLI, or use mode = \"native\""
            )))
        }
        Err(_) => {
            return Err(BackendError::Docker(format!(
                "`{shown}` took longer than {timeout:?}"
            )))
        }
    };
    if !out.status.success() {
        return Err(BackendError::Docker(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a docker command in the background and reaps it on a thread: for `Drop`, which cannot
/// wait.
fn spawn_detached(args: &[&str]) {
    if let Ok(mut child) = std::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        std::thread::spawn(move || {
            let _ = child.wait();
        });
    }
}

fn parse_port(out: &str) -> Option<u16> {
    // "127.0.0.1:49153" (maybe several lines, e.g. an IPv6 one too)
    out.lines()
        .find_map(|l| l.trim().rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
}

/// Extra options for [`DockerInstance::start_with`].
#[derive(Debug, Clone, Default)]
pub struct InstanceOptions {
    /// `--network`: e.g. [`super::compose_network`] so the instance reaches docker-mode stores by
    /// service name (`postgres:5432`, `redis:6379`).
    pub network: Option<String>,
    /// `--add-host host.docker.internal:host-gateway`, for reaching servers on the host that
    /// listen on more than loopback.
    pub host_gateway: bool,
    /// `--memory` (e.g. "512m") and `--cpus` (e.g. "1"), from the service's limits.
    pub memory: Option<String>,
    pub cpus: Option<String>,
    /// `-v HOST:CONTAINER:ro` read-only mounts (secret files at their declared paths).
    pub mounts: Vec<(std::path::PathBuf, String)>,
    /// `--network host` (Linux): the instance shares the host's network, so loopback URLs of
    /// native backends work unchanged. No port is published; `PORT` is a free host port and
    /// [`DockerInstance::host_port`] returns it.
    pub host_network: bool,
}

/// One service instance running as a container: `docker run -d --rm`, its port published on
/// 127.0.0.1. Stop with [`stop`](Self::stop) (`docker stop -t 10`: SIGTERM, SIGKILL after 10 s,
/// as Cloud Run does); dropping it without `stop` removes the container in the background.
#[derive(Debug)]
pub struct DockerInstance {
    name: String,
    host_port: u16,
    container_port: u16,
    stopped: bool,
}

impl DockerInstance {
    /// Runs `image` as container `name` with `env` (plus `PORT=<container_port>` unless given),
    /// publishing `container_port` on a free loopback port. Returns once the container runs;
    /// readiness of the app inside is the caller's startup probe.
    pub async fn start(
        image: &str,
        env: &[(String, String)],
        container_port: u16,
        name: &str,
    ) -> Result<Self, BackendError> {
        Self::start_with(
            image,
            env,
            container_port,
            name,
            &InstanceOptions::default(),
        )
        .await
    }

    /// [`start`](Self::start) with network, host-gateway and resource options.
    pub async fn start_with(
        image: &str,
        env: &[(String, String)],
        container_port: u16,
        name: &str,
        opts: &InstanceOptions,
    ) -> Result<Self, BackendError> {
        let container_port = if opts.host_network {
            super::super::native::free_port()?
        } else {
            container_port
        };
        crate::watchdog::remove_on_death(name);
        let args = run_args(image, env, container_port, name, opts);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args, &[], UP_TIMEOUT).await?;
        let mut instance = DockerInstance {
            name: name.to_string(),
            host_port: 0,
            container_port,
            stopped: false,
        };
        if opts.host_network {
            instance.host_port = container_port;
            return Ok(instance);
        }
        let out = docker(
            &["port", name, &format!("{container_port}/tcp")],
            &[],
            CMD_TIMEOUT,
        )
        .await?;
        match parse_port(&out) {
            Some(p) => instance.host_port = p,
            None => {
                let _ = instance.stop().await;
                return Err(BackendError::Docker(format!(
                    "cannot read the published port of container {name} from {out:?}"
                )));
            }
        }
        Ok(instance)
    }

    /// The loopback port the instance answers on.
    pub fn host_port(&self) -> u16 {
        self.host_port
    }

    /// The port inside the container (`PORT`).
    pub fn container_port(&self) -> u16 {
        self.container_port
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while the container runs.
    pub async fn is_running(&self) -> bool {
        docker(
            &["inspect", "-f", "{{.State.Running}}", &self.name],
            &[],
            CMD_TIMEOUT,
        )
        .await
        .is_ok_and(|o| o.trim() == "true")
    }

    /// `docker stop -t 10`: SIGTERM, SIGKILL after 10 s. `--rm` then removes the container.
    pub async fn stop(mut self) -> Result<(), BackendError> {
        self.stopped = true;
        match docker(
            &["stop", "-t", "10", &self.name],
            &[],
            Duration::from_secs(30),
        )
        .await
        {
            Ok(_) => Ok(()),
            // Already gone (exited and removed by --rm) is what we wanted.
            Err(BackendError::Docker(m)) if m.contains("No such container") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for DockerInstance {
    fn drop(&mut self) {
        if !self.stopped {
            spawn_detached(&["rm", "-f", &self.name]);
        }
    }
}

/// The `docker run` arguments for an instance (separate so tests can check them without Docker).
pub fn run_args(
    image: &str,
    env: &[(String, String)],
    container_port: u16,
    name: &str,
    opts: &InstanceOptions,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--rm".into(),
        "--name".into(),
        name.into(),
    ];
    if opts.host_network {
        args.push("--network".into());
        args.push("host".into());
    } else {
        args.push("-p".into());
        args.push(format!("127.0.0.1::{container_port}"));
    }
    if !env.iter().any(|(k, _)| k == "PORT") {
        args.push("-e".into());
        args.push(format!("PORT={container_port}"));
    }
    for (k, v) in env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    if let Some(n) = opts.network.as_ref().filter(|_| !opts.host_network) {
        args.push("--network".into());
        args.push(n.clone());
    }
    for (host, container) in &opts.mounts {
        args.push("-v".into());
        args.push(format!("{}:{container}:ro", host.display()));
    }
    if opts.host_gateway {
        args.push("--add-host".into());
        args.push("host.docker.internal:host-gateway".into());
    }
    if let Some(m) = &opts.memory {
        args.push("--memory".into());
        args.push(m.clone());
    }
    if let Some(c) = &opts.cpus {
        args.push("--cpus".into());
        args.push(c.clone());
    }
    args.push(image.into());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports() {
        assert_eq!(parse_port("127.0.0.1:49153\n"), Some(49153));
        assert_eq!(parse_port("[::]:1\n"), Some(1));
    }

    #[test]
    fn run_arguments() {
        let a = run_args(
            "img:1",
            &[("K_SERVICE".into(), "api".into())],
            8080,
            "emu-api-1",
            &InstanceOptions::default(),
        );
        assert_eq!(
            a.join(" "),
            "run -d --rm --name emu-api-1 -p 127.0.0.1::8080 -e PORT=8080 -e K_SERVICE=api img:1"
        );
        let host = run_args(
            "img:1",
            &[],
            41000,
            "emu-api-2",
            &InstanceOptions {
                host_network: true,
                ..Default::default()
            },
        );
        assert_eq!(
            host.join(" "),
            "run -d --rm --name emu-api-2 --network host -e PORT=41000 img:1"
        );
    }
}
