//! What a running `emu up` leaves in `.emu/` for the other commands of the same folder:
//! `emu.pid` (for `emu down`), `emu.json` (for `emu status`) and `backends.json` (for
//! `emu job run`, so a job reaches the same servers). Typed, so reader and writer agree.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `.emu/emu.json`: where the running emu's front door listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmuState {
    pub pid: u32,
    pub port: u16,
    pub host: IpAddr,
}

/// `.emu/backends.json`: the running emu's backend URLs, unmasked (the file is mode 0600).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendsState {
    pub pid: u32,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
}

fn emu_dir(project_dir: &Path) -> PathBuf {
    project_dir.join(".emu")
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn pid_alive(pid: u32) -> bool {
    i32::try_from(pid)
        .is_ok_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok())
}

impl EmuState {
    /// What the emu running for `project_dir` wrote, if any.
    pub fn read(project_dir: &Path) -> Option<EmuState> {
        read_json(&emu_dir(project_dir).join("emu.json"))
    }
}

impl BackendsState {
    /// The backends of the emu running for `project_dir`, if it is still alive.
    pub fn read_live(project_dir: &Path) -> Option<BackendsState> {
        read_json::<BackendsState>(&emu_dir(project_dir).join("backends.json"))
            .filter(|s| pid_alive(s.pid))
    }

    /// Writes `.emu/backends.json` (mode 0600: it holds passwords).
    pub fn write(&self, project_dir: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = emu_dir(project_dir);
        std::fs::create_dir_all(&dir)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join("backends.json"))?;
        let text = serde_json::to_string(self).map_err(std::io::Error::other)?;
        std::io::Write::write_all(&mut f, text.as_bytes())
    }
}

/// A state file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct StateError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Writes `.emu/emu.pid` and `.emu/emu.json` so `emu status` and `emu down` find this emu.
pub fn write_state(project_dir: &Path, addr: SocketAddr) -> Result<PathBuf, StateError> {
    let dir = emu_dir(project_dir);
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(fail(&dir))?;
    let pid = dir.join("emu.pid");
    std::fs::write(&pid, std::process::id().to_string()).map_err(fail(&pid))?;
    let json = dir.join("emu.json");
    let state = EmuState {
        pid: std::process::id(),
        port: addr.port(),
        host: addr.ip(),
    };
    let text = serde_json::to_string(&state).map_err(std::io::Error::other);
    text.and_then(|t| std::fs::write(&json, t))
        .map_err(fail(&json))?;
    Ok(dir)
}

/// Removes what [`write_state`] wrote, if it is still ours.
pub fn clear_state(project_dir: &Path) {
    let dir = emu_dir(project_dir);
    let ours = std::fs::read_to_string(dir.join("emu.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if ours {
        let _ = std::fs::remove_file(dir.join("emu.pid"));
        let _ = std::fs::remove_file(dir.join("emu.json"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_round_trip_and_a_dead_emus_backends_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:18080".parse().unwrap();
        write_state(dir.path(), addr).unwrap();
        let st = EmuState::read(dir.path()).unwrap();
        assert_eq!(
            (st.pid, st.port, st.host),
            (std::process::id(), 18080, addr.ip())
        );

        let live = BackendsState {
            pid: std::process::id(),
            database_url: Some("postgres://app:app@127.0.0.1:5432/app".into()),
            redis_url: None,
        };
        live.write(dir.path()).unwrap();
        assert_eq!(BackendsState::read_live(dir.path()), Some(live));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(".emu/backends.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A pid no process has: the emu that wrote it is gone.
        let dead = BackendsState {
            pid: i32::MAX as u32,
            database_url: None,
            redis_url: None,
        };
        dead.write(dir.path()).unwrap();
        assert_eq!(BackendsState::read_live(dir.path()), None);

        clear_state(dir.path());
        assert_eq!(EmuState::read(dir.path()), None);
    }
}
