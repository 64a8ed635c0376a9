//! Nothing of emu outlives it, even when it is killed with SIGKILL and runs no cleanup.
//!
//! The kernel's parent-death signal ([`crate::proc::harden`]) reaches only emu's direct
//! children. A server started through a wrapper (`sh -c "…; …"`, `npm start`), a server that
//! forks and daemonizes, and containers (which the engine runs, not emu) would survive. So
//! `emu up` starts one watchdog: a second `emu` process in its own session whose stdin is a pipe
//! from emu. Only emu holds the pipe's write end (Rust opens pipes close-on-exec), so the
//! watchdog reads end-of-file exactly when emu is gone, however it died. Then it:
//!
//! - SIGKILLs every process whose environment carries this run's token ([`TOKEN_VAR`], which
//!   `harden` puts into everything emu starts and which wrappers, forks and daemons inherit),
//!   rescanning `/proc` until none is left;
//! - removes the instance containers and stops the store containers emu told it about (stores
//!   are stopped, not removed: their data and the container are reused by the next `emu up`).
//!
//! A clean exit says `bye` first and the watchdog leaves everything alone (emu has already
//! stopped it all in order). This is the job testcontainers' Ryuk does for containers, done for
//! processes too. Its one gap: a process that clears its environment *and* was not started by
//! emu directly escapes; only a cgroup would hold it, and emu does not require one.
//!
//! The watchdog is process-wide on purpose: it watches this OS process, whatever in it starts a
//! child, so it is a global set once by [`start`] rather than a value threaded through every
//! spawner.

use std::io::{BufRead, Write};
use std::process::{ChildStdin, Command, ExitCode, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The environment variable that marks every process of one emu run.
pub const TOKEN_VAR: &str = "EMU_RUN_TOKEN";

struct Watchdog {
    token: String,
    pipe: Mutex<ChildStdin>,
}

static WATCHDOG: OnceLock<Watchdog> = OnceLock::new();

/// Starts the watchdog for this process (once; later calls do nothing).
pub fn start() -> std::io::Result<()> {
    if WATCHDOG.get().is_some() {
        return Ok(());
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("__watchdog")
        .env(TOKEN_VAR, &token)
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    new_session(&mut cmd);
    let mut child = cmd.spawn()?;
    let pipe = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no pipe"))?;
    let _ = WATCHDOG.set(Watchdog {
        token,
        pipe: Mutex::new(pipe),
    });
    Ok(())
}

/// Its own session: Ctrl-C in emu's terminal (SIGINT to the foreground group) must not stop the
/// watchdog before emu has said whether it exited cleanly.
#[allow(unsafe_code)]
fn new_session(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

/// This run's token, for [`crate::proc::harden`] to put into a child's environment; `None` when
/// no watchdog runs (library use, tests that start parts of emu directly).
pub fn token() -> Option<&'static str> {
    WATCHDOG.get().map(|w| w.token.as_str())
}

fn tell(line: &str) {
    if let Some(w) = WATCHDOG.get() {
        if let Ok(mut pipe) = w.pipe.lock() {
            let _ = writeln!(pipe, "{line}");
        }
    }
}

/// An instance container: removed if emu dies without stopping it.
pub fn remove_on_death(container: &str) {
    tell(&format!("rm {container}"));
}

/// A store container: stopped (kept for the next run) if emu dies without stopping it.
pub fn stop_on_death(container: &str) {
    tell(&format!("stop {container}"));
}

/// emu stopped everything itself; the watchdog leaves without touching anything.
pub fn dismiss() {
    tell("bye");
}

/// What the watchdog was told before the pipe closed.
#[derive(Debug, Default, PartialEq)]
struct Orders {
    remove: Vec<String>,
    stop: Vec<String>,
    dismissed: bool,
}

fn read_orders(input: impl BufRead) -> Orders {
    let mut o = Orders::default();
    for line in input.lines().map_while(Result::ok) {
        match line.split_once(' ') {
            Some(("rm", id)) => o.remove.push(id.to_string()),
            Some(("stop", id)) => o.stop.push(id.to_string()),
            _ if line == "bye" => o.dismissed = true,
            _ => {}
        }
    }
    o
}

/// `emu __watchdog`: waits for emu to go, then cleans up after it unless dismissed.
pub fn run_watchdog() -> ExitCode {
    let Ok(token) = std::env::var(TOKEN_VAR) else {
        eprintln!("emu __watchdog is started by `emu up`, not by hand");
        return ExitCode::from(2);
    };
    let orders = read_orders(std::io::stdin().lock());
    if orders.dismissed {
        return ExitCode::SUCCESS;
    }
    let killed = kill_marked(&token);
    let containers = stop_containers(&orders);
    if killed + containers == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "emu watchdog: emu exited without stopping its instances; killed {killed} processes, \
         stopped or removed {containers} containers"
    );
    ExitCode::SUCCESS
}

/// SIGKILLs every process carrying `TOKEN_VAR=token` until a scan finds none (a dying parent
/// may fork once more), for at most ~10 s. Returns how many were killed.
fn kill_marked(token: &str) -> usize {
    let needle = format!("{TOKEN_VAR}={token}");
    let me = std::process::id();
    let mut killed = 0;
    for _ in 0..100 {
        let found: Vec<i32> = marked_pids(&needle).filter(|&p| p as u32 != me).collect();
        if found.is_empty() {
            break;
        }
        for pid in &found {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        killed += found.len();
        std::thread::sleep(Duration::from_millis(100));
    }
    killed
}

/// Processes whose environment holds `needle` as one whole entry. Zombies have no environment
/// left, so a killed process stops matching as soon as it is dead.
fn marked_pids(needle: &str) -> impl Iterator<Item = i32> + '_ {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(move |pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
        })
}

/// Removes and stops the containers in `orders` through the engine; returns how many it reached.
fn stop_containers(orders: &Orders) -> usize {
    if orders.remove.is_empty() && orders.stop.is_empty() {
        return 0;
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 0;
    };
    rt.block_on(async {
        // bollard directly, not `backends::docker`: backends tell the watchdog what they start,
        // so the watchdog must not depend on them. `connect_with_defaults` honours DOCKER_HOST.
        let Ok(docker) = bollard::Docker::connect_with_defaults() else {
            return 0;
        };
        // The engine may speak an older API than bollard's default (Debian's 20.10: 1.41).
        let Ok(docker) = docker.negotiate_version().await else {
            return 0;
        };
        let mut done = 0;
        for id in &orders.remove {
            let opts = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                .force(true)
                .build();
            done += usize::from(docker.remove_container(id, Some(opts)).await.is_ok());
        }
        for id in &orders.stop {
            let opts = bollard::query_parameters::StopContainerOptionsBuilder::default()
                .t(2)
                .build();
            done += usize::from(docker.stop_container(id, Some(opts)).await.is_ok());
        }
        done
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_read_line_by_line_and_bye_dismisses() {
        let o = read_orders("rm emu-a-1\nstop emu-pg\nnonsense\n".as_bytes());
        assert_eq!(o.remove, ["emu-a-1"]);
        assert_eq!(o.stop, ["emu-pg"]);
        assert!(!o.dismissed);
        assert!(read_orders("rm x\nbye\n".as_bytes()).dismissed);
    }

    #[test]
    fn a_token_matches_only_as_a_whole_environment_entry() {
        // This test process carries no token, so a made-up one matches nothing.
        let needle = format!("{TOKEN_VAR}=not-a-real-run");
        assert_eq!(marked_pids(&needle).count(), 0);
    }
}
