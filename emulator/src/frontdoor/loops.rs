//! The front door's event loops: one single-threaded tokio runtime per core, each on its own
//! thread, as nginx runs one worker per core. Accepted connections are dealt to them in turn and
//! stay on theirs, so a request and its connection to the instance are handled by one thread from
//! first byte to last, with no work stealing, no cross-thread wake-ups and a connection pool per
//! thread without a lock (bench/RESULTS.md).
//!
//! `[emu] frontdoor_threads` (or `EMU_FRONTDOOR_THREADS`) sets how many (default: the cores
//! available); `0` serves connections on the caller's runtime instead.

use std::sync::Arc;

use tokio::runtime::Handle;

/// Round-robin over the loops' handles; empty when connections stay on the caller's runtime.
#[derive(Clone)]
pub struct Loops {
    handles: Arc<[Handle]>,
    next: usize,
}

impl Loops {
    /// Starts `n` loops (one per core when `None`); they run as long as the process.
    pub fn start(n: Option<usize>) -> Loops {
        Loops {
            handles: start(n.unwrap_or_else(cores)).into(),
            next: 0,
        }
    }

    /// The loop the next connection goes to, or `None` for the caller's runtime.
    pub fn pick(&mut self) -> Option<&Handle> {
        if self.handles.is_empty() {
            return None;
        }
        let h = &self.handles[self.next % self.handles.len()];
        self.next = self.next.wrapping_add(1);
        Some(h)
    }
}

fn start(n: usize) -> Vec<Handle> {
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
