//! The front door's event loops: one single-threaded tokio runtime per core, each on its own
//! thread, as nginx runs one worker per core. Accepted connections are dealt to them in turn and
//! stay on theirs, so a request and its connection to the instance are handled by one thread from
//! first byte to last, with no work stealing, no cross-thread wake-ups and a connection pool per
//! thread without a lock (bench/RESULTS.md).
//!
//! `EMU_FRONTDOOR_THREADS=N` sets how many (default: the cores available); `0` serves connections
//! on the caller's runtime instead.

use std::sync::OnceLock;

use tokio::runtime::Handle;

/// Round-robin over the loops' handles; empty when connections stay on the caller's runtime.
pub struct Loops {
    handles: &'static [Handle],
    next: usize,
}

impl Loops {
    /// The process's loops, started on first use.
    pub fn get() -> Loops {
        static HANDLES: OnceLock<Vec<Handle>> = OnceLock::new();
        let handles = HANDLES.get_or_init(start);
        Loops { handles, next: 0 }
    }

    /// The loop the next connection goes to, or `None` for the caller's runtime.
    pub fn pick(&mut self) -> Option<&'static Handle> {
        if self.handles.is_empty() {
            return None;
        }
        let h = &self.handles[self.next % self.handles.len()];
        self.next = self.next.wrapping_add(1);
        Some(h)
    }
}

/// Checks the front door's environment knobs (`EMU_FRONTDOOR_THREADS`, `EMU_FRONTDOOR`), so a
/// typo stops `emu up` with a message instead of being ignored.
pub fn check_env() -> Result<(), String> {
    threads_from_env()?;
    match std::env::var("EMU_FRONTDOOR") {
        Ok(v) if v != "hyper" && v != "fast" => Err(format!(
            "EMU_FRONTDOOR={v:?} is not a front-door path: set it to \"fast\" (the default) or \"hyper\", or unset it"
        )),
        _ => Ok(()),
    }
}

fn threads_from_env() -> Result<usize, String> {
    match std::env::var("EMU_FRONTDOOR_THREADS") {
        Ok(v) => v.trim().parse::<usize>().map_err(|_| {
            format!(
                "EMU_FRONTDOOR_THREADS={v:?} is not a number of threads: set a whole number (0 serves on the main runtime) or unset it for one per core"
            )
        }),
        Err(_) => Ok(cores()),
    }
}

fn start() -> Vec<Handle> {
    // `emu up` has checked the value (check_env); anything else falls back to one per core.
    let n = threads_from_env().unwrap_or_else(|_| cores());
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(
                    "cannot start front-door loop {i}: {e}; serving on the main runtime"
                );
                break;
            }
        };
        let handle = rt.handle().clone();
        let spawned = std::thread::Builder::new()
            .name(format!("emu-frontdoor-{i}"))
            .spawn(move || rt.block_on(std::future::pending::<()>()));
        match spawned {
            Ok(_) => handles.push(handle),
            Err(e) => {
                tracing::warn!(
                    "cannot start front-door thread {i}: {e}; serving on the main runtime"
                );
                break;
            }
        }
    }
    handles
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
