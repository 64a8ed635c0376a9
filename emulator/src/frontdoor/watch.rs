//! Timeouts on hyper's path, kept the way the fast path keeps them: a request head must arrive
//! within `header_timeout` (from the connection's start, or from the first byte of a later
//! request), and a connection with no request in flight closes after `idle_timeout`. hyper's
//! own `header_read_timeout` cannot say this: it starts when hyper begins waiting for the next
//! head, so it would close every idle keep-alive connection at the header timeout.
//!
//! [`Watched`] wraps the connection and notes bytes that arrive while no request is in flight;
//! [`Busy`] rides in each response body and counts the request as in flight until hyper has
//! sent it; [`Activity::expired`] resolves when one of the two bounds has passed.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Which bound passed.
#[derive(Debug, PartialEq, Eq)]
pub enum Expired {
    /// A head was still arriving at the header timeout: closed at once.
    Head,
    /// Nothing in flight for the idle timeout: closed gracefully (HTTP/2: GOAWAY).
    Idle,
}

/// One connection's requests in flight and since when it waits.
pub struct Activity {
    state: Mutex<State>,
    changed: Notify,
    header_timeout: Duration,
    idle_timeout: Duration,
}

struct State {
    busy: usize,
    idle_since: Instant,
    /// When the head being read began; a new connection owes its first head from the start.
    head_since: Option<Instant>,
    /// HTTP/2 (its connection preface seen): frames between requests are no head.
    h2: Option<bool>,
}

impl Activity {
    pub fn new(header_timeout: Duration, idle_timeout: Duration) -> Arc<Activity> {
        let now = Instant::now();
        Arc::new(Activity {
            state: Mutex::new(State {
                busy: 0,
                idle_since: now,
                head_since: Some(now),
                h2: None,
            }),
            changed: Notify::new(),
            header_timeout,
            idle_timeout,
        })
    }

    /// A request has begun; it is in flight until the returned value is dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        let mut s = self.state.lock();
        s.busy += 1;
        s.head_since = None;
        Busy(self.clone())
    }

    fn read(&self, bytes: &[u8]) {
        let mut s = self.state.lock();
        let h2 = *s
            .h2
            .get_or_insert_with(|| bytes.starts_with(b"PRI * HTTP/2.0"));
        if h2 {
            if s.head_since.take().is_some() {
                s.idle_since = Instant::now();
            }
        } else if s.busy == 0 && s.head_since.is_none() {
            s.head_since = Some(Instant::now());
            self.changed.notify_one();
        }
    }

    /// Resolves when the connection has waited past a bound.
    pub async fn expired(&self) -> Expired {
        loop {
            let (deadline, kind) = {
                let s = self.state.lock();
                match (s.busy, s.head_since) {
                    (0, Some(t)) => (Some(t + self.header_timeout), Expired::Head),
                    (0, None) => (Some(s.idle_since + self.idle_timeout), Expired::Idle),
                    _ => (None, Expired::Idle),
                }
            };
            match deadline {
                Some(d) if d <= Instant::now() => return kind,
                Some(d) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(d) => {}
                        () = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// A request in flight on its connection.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = self.0.state.lock();
        s.busy -= 1;
        if s.busy == 0 {
            s.idle_since = Instant::now();
            self.0.changed.notify_one();
        }
    }
}

pin_project! {
    /// A connection whose reads are noted in its [`Activity`].
    pub struct Watched<I> {
        #[pin]
        pub inner: I,
        pub activity: Arc<Activity>,
    }
}

impl<I: AsyncRead> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read(&buf.filled()[before..]);
        }
        r
    }
}

impl<I: AsyncWrite> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

pin_project! {
    /// A response body that keeps its request in flight until hyper has sent (or dropped) it.
    pub struct Guarded<B> {
        #[pin]
        pub inner: B,
        pub busy: Busy,
    }
}

impl<B: Body> Body for Guarded<B>
where
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(600);

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_owes_its_head_within_the_header_timeout() {
        let a = Activity::new(HEAD, IDLE);
        let t = Instant::now();
        assert_eq!(a.expired().await, Expired::Head);
        assert_eq!(t.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn between_requests_the_idle_timeout_runs_until_a_byte_arrives() {
        let a = Activity::new(HEAD, IDLE);
        drop(a.begin());
        let t = Instant::now();
        let waiting = {
            let a = a.clone();
            tokio::spawn(async move { a.expired().await })
        };
        tokio::time::sleep(Duration::from_secs(100)).await;
        a.read(b"GET / HT");
        assert_eq!(waiting.await.unwrap(), Expired::Head);
        assert_eq!(t.elapsed(), Duration::from_secs(100) + HEAD);

        let b = Activity::new(HEAD, IDLE);
        drop(b.begin());
        let t = Instant::now();
        assert_eq!(b.expired().await, Expired::Idle);
        assert_eq!(t.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_idle() {
        let a = Activity::new(HEAD, IDLE);
        let busy = a.begin();
        let waiting = {
            let a = a.clone();
            tokio::spawn(async move { a.expired().await })
        };
        tokio::time::sleep(IDLE * 3).await;
        assert!(!waiting.is_finished());
        let t = Instant::now();
        drop(busy);
        assert_eq!(waiting.await.unwrap(), Expired::Idle);
        assert_eq!(t.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_frames_between_requests_are_no_head() {
        let a = Activity::new(HEAD, IDLE);
        a.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        a.read(b"ping");
        let t = Instant::now();
        assert_eq!(a.expired().await, Expired::Idle);
        assert_eq!(t.elapsed(), IDLE);
    }
}
