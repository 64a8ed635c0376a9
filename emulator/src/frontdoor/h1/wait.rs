//! What a fast-path connection does between messages: waits for the next request's bytes,
//! under the header timeout while a head is arriving and the idle timeout before its first
//! byte, holding no buffer until bytes are there.

use std::pin::Pin;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFuture;

use super::{bufs, Client, READ_CHUNK};
use crate::frontdoor::limits::Limits;

/// What a connection waits for between messages, and since when.
#[derive(Clone, Copy)]
pub(super) enum Wait {
    /// A request head (under the header timeout).
    Head(Instant),
    /// The first byte of the next request (under the idle timeout).
    Idle(Instant),
}

pub(super) enum Read {
    Data,
    Closed,
    TimedOut,
}

impl Client {
    /// Reads what the client sends next into `cbuf`, until `wait`'s bound. A buffer is only
    /// taken once bytes are there ([`bufs`]), so an idle connection holds none. Shutting down, a
    /// connection with no whole request closes (as hyper's graceful shutdown does), whether it is
    /// idle or half-way through a head.
    pub(super) async fn read_more(
        &mut self,
        limits: &Limits,
        wait: Wait,
        mut timer: Pin<&mut Sleep>,
        mut stop: Pin<&mut WaitForCancellationFuture<'_>>,
    ) -> Read {
        let deadline = match wait {
            Wait::Head(t) => t + limits.header_timeout,
            Wait::Idle(t) => t + limits.idle_timeout,
        };
        timer.as_mut().reset(deadline);
        loop {
            tokio::select! {
                biased;
                () = &mut stop => return Read::Closed,
                r = self.stream.readable() => if r.is_err() { return Read::Closed },
                () = &mut timer => return Read::TimedOut,
            }
            bufs::take_bytes(&mut self.cbuf);
            self.cbuf.reserve(READ_CHUNK);
            match self.stream.try_read_buf(&mut self.cbuf) {
                Ok(0) => return Read::Closed,
                Ok(_) => return Read::Data,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Read::Closed,
            }
        }
    }
}
