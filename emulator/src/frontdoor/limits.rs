//! How many connections the front door holds: a cap on all of them, below the open-file limit,
//! and a smaller one per client address. Over either, a new connection is answered at once —
//! 503 when the front door is full, 429 when that one client holds its share — and closed, so
//! `accept` never fails for everyone because one client opened thousands of sockets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::errors::ProxyError;
use crate::spec::FrontdoorSettings;

/// The most connections a default cap allows, whatever the open-file limit: each idle one
/// costs a few KiB, and a laptop has other uses for its memory.
const DEFAULT_CEILING: usize = 100_000;
/// Shed connections that may linger at once, reading what their client still sends so it
/// reads the answer instead of a reset.
const MAX_LINGERING: usize = 64;
const LINGER: Duration = Duration::from_secs(1);

/// The front door's limits and the connections it holds now, shared by every listener.
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max: usize,
    pub per_client: usize,
    open: Mutex<Open>,
    lingering: AtomicUsize,
    warned_full: AtomicBool,
    warned_client: AtomicBool,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropped when it closes, which frees its place.
pub struct Admitted {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Limits {
    /// The limits `settings` ask for; the unset caps derive from the open-file limit, which is
    /// first raised to its hard limit.
    pub fn new(settings: &FrontdoorSettings) -> Arc<Limits> {
        let max = settings
            .max_connections
            .unwrap_or_else(|| default_max(open_file_limit()));
        let per_client = settings
            .max_connections_per_client
            .unwrap_or((max / 4 * 3).max(1))
            .min(max);
        if let (Some(set), Some(files)) = (settings.max_connections, open_file_limit()) {
            if set as u64 * 2 > files {
                tracing::warn!("max_connections = {set} with an open-file limit of {files}: a flood of connections can still run emu out of file descriptors (each connection may need a second one to its instance)");
            }
        }
        Arc::new(Limits {
            header_timeout: settings.header_timeout,
            idle_timeout: settings.idle_timeout,
            max,
            per_client,
            open: Mutex::new(Open::default()),
            lingering: AtomicUsize::new(0),
            warned_full: AtomicBool::new(false),
            warned_client: AtomicBool::new(false),
        })
    }

    /// Takes a place for a connection from `ip`, or says which answer sheds it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, ProxyError> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock();
        if open.total >= self.max {
            drop(open);
            self.warn_once(&self.warned_full, || format!("the front door holds its max_connections = {}: new connections are answered 503 until some close", self.max));
            return Err(ProxyError::TooManyConnections);
        }
        let mine = open.by_client.entry(ip).or_insert(0);
        if *mine >= self.per_client {
            drop(open);
            self.warn_once(&self.warned_client, || format!("client {ip} holds max_connections_per_client = {}: its new connections are answered 429 until some close", self.per_client));
            return Err(ProxyError::TooManyClientConnections);
        }
        *mine += 1;
        open.total += 1;
        Ok(Admitted {
            limits: self.clone(),
            ip,
        })
    }

    fn warn_once(&self, flag: &AtomicBool, msg: impl FnOnce() -> String) {
        if !flag.swap(true, Ordering::Relaxed) {
            tracing::warn!("{}", msg());
        }
    }

    /// Answers a connection that was not admitted with `e` and closes it.
    pub fn shed(self: &Arc<Self>, stream: TcpStream, e: &ProxyError) {
        // What the client already sent is read first: closing over unread bytes is a reset,
        // and a reset can destroy the answer before the client reads it.
        let mut sink = [0u8; 4096];
        while matches!(stream.try_read(&mut sink), Ok(1..)) {}
        let mut out = Vec::with_capacity(512);
        e.write_h1(&mut out, false, true);
        let _ = stream.try_write(&out);
        if self.lingering.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING {
            self.lingering.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let limits = self.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let _ = stream.shutdown().await;
            let _ = tokio::time::timeout(LINGER, async {
                while matches!(stream.read(&mut sink).await, Ok(1..)) {}
            })
            .await;
            limits.lingering.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Connections open now (for tests and status).
    pub fn open(&self) -> usize {
        self.open.lock().total
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock();
        open.total -= 1;
        if let Some(n) = open.by_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(&self.ip);
            }
        }
    }
}

/// The cap when none is set: half of what the open-file limit leaves after a reserve for
/// everything else emu holds (instances' pipes, backends, logs), since each client connection
/// may need a second descriptor to its instance.
fn default_max(files: Option<u64>) -> usize {
    let Some(files) = files else {
        return 10_000;
    };
    let files = usize::try_from(files).unwrap_or(usize::MAX);
    let reserve = 256 + files / 16;
    (files.saturating_sub(reserve) / 2).clamp(16, DEFAULT_CEILING)
}

/// The open-file soft limit, raised to the hard limit first (once per process; Linux's
/// default soft limit, 1024, is far below what a front door needs).
fn open_file_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    static RAISED: std::sync::Once = std::sync::Once::new();
    RAISED.call_once(|| {
        if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            // An unlimited hard limit is not a value setrlimit takes for open files.
            let target = if hard == RLIM_INFINITY { 1 << 20 } else { hard };
            if soft < target {
                let _ = setrlimit(Resource::RLIMIT_NOFILE, target, hard);
            }
        }
    });
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_client: usize) -> Arc<Limits> {
        Limits::new(&FrontdoorSettings {
            max_connections: Some(max),
            max_connections_per_client: Some(per_client),
            ..FrontdoorSettings::default()
        })
    }

    #[test]
    fn one_client_cannot_take_the_places_of_others() {
        let l = limits(4, 2);
        let a: Vec<_> = (0..2)
            .map(|_| l.admit([127, 0, 0, 1].into()).unwrap())
            .collect();
        assert_eq!(
            l.admit([127, 0, 0, 1].into()).err(),
            Some(ProxyError::TooManyClientConnections)
        );
        let b: Vec<_> = (0..2)
            .map(|_| l.admit([127, 0, 0, 2].into()).unwrap())
            .collect();
        assert_eq!(
            l.admit([127, 0, 0, 3].into()).err(),
            Some(ProxyError::TooManyConnections)
        );
        drop(a);
        assert_eq!(l.open(), 2);
        assert!(l.admit([127, 0, 0, 1].into()).is_ok());
        drop(b);
    }

    #[test]
    fn the_default_cap_leaves_descriptors_for_the_instances_side() {
        assert_eq!(default_max(Some(20_000)), 9_247);
        assert_eq!(default_max(Some(1024)), 352);
        assert_eq!(default_max(Some(300)), 16);
        assert_eq!(default_max(Some(1 << 30)), DEFAULT_CEILING);
        assert!(default_max(Some(20_000)) * 2 < 20_000);
    }
}
