//! Handing a connection from the fast path to hyper with what was already read, and closing a
//! client connection without resetting it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::READ_CHUNK;

/// A connection's first bytes, already read, put back in front of the rest for the general path.
///
/// Dropped, it closes the connection the way nginx's `lingering_close` does: hyper may end a
/// connection while the client is still sending a request body (an upload answered 413), and a
/// socket closed with unread data is reset — the client then sees a broken pipe instead of the
/// answer. So it sends FIN, then reads and discards what still comes, for [`LINGER`] at most.
pub struct Rewind {
    pub(super) pre: Bytes,
    pub(super) inner: Option<TcpStream>,
}

/// Longest a closed connection keeps reading what its client still sends.
const LINGER: Duration = Duration::from_secs(5);

impl Rewind {
    fn io(&mut self) -> std::io::Result<Pin<&mut TcpStream>> {
        self.inner
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| std::io::ErrorKind::NotConnected.into())
    }
}

impl Drop for Rewind {
    fn drop(&mut self) {
        if let Some(s) = self.inner.take() {
            linger_close(s);
        }
    }
}

/// Closes a client connection without resetting it: FIN first, then what the client still sends
/// is read and dropped (for [`LINGER`] at most), so an answer already written is not lost to a
/// reset caused by unread bytes (a pipelined request, the rest of an upload).
pub(super) fn linger_close(mut s: TcpStream) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let _ = s.shutdown().await;
        let until = Instant::now() + LINGER;
        let mut sink = vec![0u8; READ_CHUNK];
        while let Ok(Ok(1..)) = tokio::time::timeout_at(until, s.read(&mut sink)).await {}
    });
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        match self.io() {
            Ok(io) => io.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.io() {
            Ok(io) => io.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.io() {
            Ok(io) => io.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.io() {
            Ok(io) => io.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.io() {
            Ok(io) => io.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}
