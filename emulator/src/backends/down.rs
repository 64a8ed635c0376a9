//! `emu down`: stop the `emu up` running for a project (its pid is in `.emu/emu.pid`) and, with
//! `--volumes`, remove the stores' data (containers + volumes, native data folders).

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::docker::{remove_project, stop_project};
use super::native::process_alive;
use super::BackendError;

/// How long `down` waits for `emu up` to stop after SIGTERM before SIGKILL.
const DOWN_GRACE: Duration = Duration::from_secs(30);

/// Stops the project's `emu up` (SIGTERM, up to 30 s, then SIGKILL) and removes its pid file; a
/// stale pid file is just removed; the project's store containers are stopped (kept). With
/// `volumes`, also removes the docker containers and volumes (found by label) and the native
/// data under `.emu/postgres` and
/// `.emu/redis`. Asks nothing; returns a report of what it did, one line per action.
pub async fn down(project_dir: &Path, volumes: bool) -> Result<String, BackendError> {
    let project_dir = &std::path::absolute(project_dir)
        .map_err(|e| BackendError::io(format!("resolving {}", project_dir.display()), e))?;
    let emu_dir = project_dir.join(".emu");
    let mut report = stop_recorded_emu(project_dir, &emu_dir).await?;
    if !volumes {
        // No engine: no containers to stop, nothing to say.
        if let Ok(lines) = stop_project(project_dir).await {
            report.extend(lines);
        }
    }
    if volumes {
        remove_volumes(project_dir, &emu_dir, &mut report).await?;
    }
    Ok(report.join("\n"))
}

/// Stops the `emu up` recorded in `.emu/emu.pid` (a stale pid file is just removed).
async fn stop_recorded_emu(
    project_dir: &Path,
    emu_dir: &Path,
) -> Result<Vec<String>, BackendError> {
    let mut report: Vec<String> = Vec::new();
    let pid_file = emu_dir.join("emu.pid");
    match fs::read_to_string(&pid_file) {
        Err(_) => report.push(format!(
            "no emu running for {} (no {})",
            project_dir.display(),
            pid_file.display()
        )),
        Ok(text) => {
            match text.trim().parse::<i32>() {
                Ok(pid) if pid > 0 && process_alive(pid) && !started_after(pid, &pid_file) => {
                    report.push(stop_pid(pid).await);
                }
                Ok(pid) => report.push(format!(
                    "pid file named pid {pid}, which is not running: stale"
                )),
                Err(_) => report.push(format!("pid file held {:?}, not a pid: stale", text.trim())),
            }
            match fs::remove_file(&pid_file) {
                Ok(()) => report.push(format!("removed {}", pid_file.display())),
                // emu removes its own pid file on a clean exit.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(BackendError::io(
                        format!("removing {}", pid_file.display()),
                        e,
                    ))
                }
            }
        }
    }

    Ok(report)
}

/// Removes the docker containers and volumes and the native data folders of the project.
async fn remove_volumes(
    project_dir: &Path,
    emu_dir: &Path,
    report: &mut Vec<String>,
) -> Result<(), BackendError> {
    match remove_project(project_dir).await {
        Ok(lines) if lines.is_empty() => report.push("no docker containers or volumes".into()),
        Ok(lines) => report.extend(lines),
        Err(BackendError::NoEngine { .. }) => {
            report.push("no Docker engine answers: no containers to remove".into());
        }
        Err(e) => report.push(format!("removing docker containers failed: {e}")),
    }
    let pg = emu_dir.join("postgres");
    if let Ok(location) = fs::read_to_string(pg.join("location")) {
        let elsewhere = Path::new(location.trim());
        if elsewhere.starts_with("/var/lib/emu/postgres") && elsewhere.exists() {
            fs::remove_dir_all(elsewhere)
                .map_err(|e| BackendError::io(format!("removing {}", elsewhere.display()), e))?;
            report.push(format!("removed PostgreSQL data {}", elsewhere.display()));
        }
    }
    for dir in [pg, emu_dir.join("redis")] {
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .map_err(|e| BackendError::io(format!("removing {}", dir.display()), e))?;
            report.push(format!("removed {}", dir.display()));
        }
    }
    Ok(())
}

/// SIGTERM, wait up to [`DOWN_GRACE`], then SIGKILL.
async fn stop_pid(pid: i32) -> String {
    let target = Pid::from_raw(pid);
    if let Err(e) = kill(target, Signal::SIGTERM) {
        return format!("could not signal emu (pid {pid}): {e}");
    }
    let started = Instant::now();
    let deadline = started + DOWN_GRACE;
    while Instant::now() < deadline {
        if !process_alive(pid) {
            return format!(
                "stopped emu (pid {pid}) with SIGTERM in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = kill(target, Signal::SIGKILL);
    format!("emu (pid {pid}) did not stop within {DOWN_GRACE:?} of SIGTERM; killed it (SIGKILL)")
}

/// True when `pid` started clearly after the pid file was written: the pid was reused by an
/// unrelated process, which must not be signalled.
fn started_after(pid: i32, pid_file: &Path) -> bool {
    let Some(started) = process_start_unix(pid) else {
        return false;
    };
    let Ok(written) = fs::metadata(pid_file).and_then(|m| m.modified()) else {
        return false;
    };
    let written = written
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    started > written + 2.0
}

/// When `pid` started, in Unix seconds (from `/proc/<pid>/stat` and the boot time).
fn process_start_unix(pid: i32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Fields after "(comm)": state is field 3, starttime field 22 → index 19 here.
    let ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot: f64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // Linux reports starttime in USER_HZ, which is 100 on every mainstream configuration.
    Some(boot + ticks / 100.0)
}
