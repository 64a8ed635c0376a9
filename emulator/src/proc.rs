//! Child processes that never outlive emu.
//!
//! Every process emu starts (instances, native PostgreSQL and Redis) goes through [`harden`]:
//! it gets its own process group, so stopping it reaches whatever it forked, and a parent-death
//! signal, so the kernel kills it even when emu itself is killed with SIGKILL and runs no cleanup.
//!
//! The parent-death signal fires when the *thread* that spawned the child exits. Spawn only from
//! async tasks (tokio worker threads live as long as the runtime), never from `spawn_blocking`.

use std::io;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Options for [`harden`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Hardening {
    /// Drop to this (uid, gid) before exec: PostgreSQL refuses to run as root.
    pub run_as: Option<(u32, u32)>,
}

/// Puts the child in its own process group and asks the kernel to SIGKILL it when emu dies.
#[allow(unsafe_code)]
pub fn harden(cmd: &mut tokio::process::Command, opts: Hardening) {
    let run_as = opts.run_as;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe syscalls
    // (setpgid, setgroups, setgid, setuid, prctl, getppid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some((uid, gid)) = run_as {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            // After any credential change: changing credentials clears the parent-death signal.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // emu may have died between fork and prctl; then nobody would ever signal us.
            if libc::getppid() == 1 {
                return Err(io::Error::other("parent exited before the child started"));
            }
            Ok(())
        });
    }
    cmd.kill_on_drop(true);
    // Inherited by whatever the child starts, so the watchdog finds the whole tree if emu dies.
    if let Some(token) = crate::watchdog::token() {
        cmd.env(crate::watchdog::TOKEN_VAR, token);
    }
}

/// Sends `signal` to the whole process group led by `pid`. A group that is already gone is fine.
pub fn signal_group(pid: u32, signal: Signal) -> io::Result<()> {
    let Ok(raw) = i32::try_from(pid) else {
        return Err(io::Error::other("pid out of range"));
    };
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Looks up a system user's (uid, gid), e.g. `postgres`, to run a server as when emu is root.
pub fn system_user(name: &str) -> Option<(u32, u32)> {
    let user = nix::unistd::User::from_name(name).ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// True when emu runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
