//! Connections from the front door to the instances: pooled keep-alive HTTP/1.1 (no Nagle),
//! one shared HTTP/2 connection per h2c instance, and fresh HTTP/1.1 connections for WebSocket
//! handshakes (an upgraded connection is never pooled).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::proxy::UpstreamBody;

/// How long an unused connection to an instance is kept.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Most idle connections kept per instance address.
pub(crate) const MAX_IDLE_PER_HOST: usize = 1024;
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pooled keep-alive HTTP/1.1 connections to the instances (no Nagle), cheap to clone.
///
/// A connection goes back to the pool when its response body has been read to the end, from the
/// response body itself; one whose body was cut short is dropped, which closes it.
#[derive(Clone, Default)]
pub struct UpstreamClient {
    pool: Arc<ConnPool>,
    h2: Arc<H2Conns>,
}

/// Idle connections by instance address. A list, not a map: there are a few addresses, and
/// comparing one costs less than hashing it (`Authority` hashes byte by byte, case-folded).
#[derive(Default)]
struct ConnPool {
    idle: Mutex<Vec<(Authority, Vec<IdleConn>)>>,
}

/// The idle list for `addr`, if there is one.
fn idle_for<'a>(
    idle: &'a mut [(Authority, Vec<IdleConn>)],
    addr: &Authority,
) -> Option<&'a mut Vec<IdleConn>> {
    idle.iter_mut()
        .find(|(a, _)| a.as_str() == addr.as_str())
        .map(|(_, l)| l)
}

/// The connection to an instance as hyper's client sees it. A write the instance refused (it
/// answered early, say 405 to an upload it does not want, and closed with the body unread) counts
/// as written, so the answer already on its way back is read and forwarded rather than lost to a
/// write error and turned into a 503.
struct UpstreamIo {
    inner: TokioIo<TcpStream>,
    broken: bool,
}

impl UpstreamIo {
    fn swallow(
        &mut self,
        r: Poll<std::io::Result<usize>>,
        len: usize,
    ) -> Poll<std::io::Result<usize>> {
        match r {
            Poll::Ready(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                self.broken = true;
                Poll::Ready(Ok(len))
            }
            other => other,
        }
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.broken {
            return Poll::Ready(Ok(buf.len()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.swallow(r, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.broken {
            return Poll::Ready(Ok(len));
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.swallow(r, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.broken {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.broken {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct IdleConn {
    send: http1::SendRequest<UpstreamBody>,
    since: Instant,
}

/// A connection on loan to one request.
pub(super) struct Conn {
    send: http1::SendRequest<UpstreamBody>,
    addr: Authority,
    pool: Arc<ConnPool>,
}

impl Conn {
    /// Back to the pool, for the next request to the same address.
    pub(super) fn check_in(self) {
        if self.send.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.pool.idle.lock();
        if idle_for(&mut idle, &self.addr).is_none() {
            idle.push((self.addr.clone(), Vec::new()));
        }
        let Some(list) = idle_for(&mut idle, &self.addr) else {
            return;
        };
        // The oldest connection sits at the bottom: drop it once it is stale.
        if list
            .first()
            .is_some_and(|c| c.send.is_closed() || now - c.since > IDLE_TIMEOUT)
        {
            list.remove(0);
        }
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(IdleConn {
                send: self.send,
                since: now,
            });
        }
    }
}

/// Why a request could not be sent to an instance.
pub(super) enum SendError {
    Connect,
    Http(hyper::Error),
}

impl ConnPool {
    /// The most recently used open connection to `addr`.
    fn check_out(&self, addr: &Authority) -> Option<http1::SendRequest<UpstreamBody>> {
        let mut idle = self.idle.lock();
        let list = idle_for(&mut idle, addr)?;
        let now = Instant::now();
        while let Some(c) = list.pop() {
            if !c.send.is_closed() && now - c.since <= IDLE_TIMEOUT {
                return Some(c.send);
            }
        }
        None
    }
}

/// A new TCP connection to an instance (no Nagle), within [`CONNECT_TIMEOUT`].
pub(crate) async fn connect_tcp(addr: &Authority) -> Option<TcpStream> {
    let host = addr.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = addr.port_u16().unwrap_or(80);
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .ok()?
        .ok()?;
    let _ = s.set_nodelay(true);
    Some(s)
}

async fn connect(addr: &Authority) -> Result<http1::SendRequest<UpstreamBody>, SendError> {
    let stream = connect_tcp(addr).await.ok_or(SendError::Connect)?;
    let io = UpstreamIo {
        inner: TokioIo::new(stream),
        broken: false,
    };
    let (send, conn) = http1::Builder::new()
        .writev(false)
        .handshake(io)
        .await
        .map_err(SendError::Http)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

impl UpstreamClient {
    /// Sends `req` (origin-form URI, Host set) to `addr` over a pooled connection, or a new one.
    /// A request that never left because a pooled connection had closed is retried, as
    /// hyper-util's client does.
    pub(super) async fn send(
        &self,
        addr: &Authority,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Conn), SendError> {
        loop {
            let (mut send, reused) = match self.pool.check_out(addr) {
                Some(s) => (s, true),
                // Boxed: a rare path whose state would otherwise make every request's future
                // (moved into hyper's dispatcher per request) larger.
                None => (Box::pin(connect(addr)).await?, false),
            };
            if let Err(e) = send.ready().await {
                if reused {
                    continue;
                }
                return Err(SendError::Http(e));
            }
            match send.try_send_request(req).await {
                Ok(resp) => {
                    let conn = Conn {
                        send,
                        addr: addr.clone(),
                        pool: self.pool.clone(),
                    };
                    return Ok((resp, conn));
                }
                // A request whose own body failed (the client's framing) is never resent: its
                // body has been read from and would wait forever the second time.
                Err(e) if e.error().is_user() => return Err(SendError::Http(e.into_error())),
                Err(mut e) => match e.take_message() {
                    Some(r) if reused => req = r,
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
    }
}

/// A client that reuses connections to instances (HTTP/1.1 keep-alive, no Nagle).
pub fn upstream_client() -> UpstreamClient {
    UpstreamClient::default()
}

/// One HTTP/2 connection per h2c instance, shared by all of its streams (as Cloud Run's proxy
/// multiplexes them); a closed one is replaced on next use.
#[derive(Default)]
struct H2Conns {
    conns: Mutex<Vec<(Authority, http2::SendRequest<UpstreamBody>)>>,
}

impl H2Conns {
    fn get(&self, addr: &Authority) -> Option<http2::SendRequest<UpstreamBody>> {
        let mut conns = self.conns.lock();
        conns.retain(|(_, s)| !s.is_closed());
        conns
            .iter()
            .find(|(a, _)| a.as_str() == addr.as_str())
            .map(|(_, s)| s.clone())
    }

    async fn connect(
        &self,
        addr: &Authority,
    ) -> Result<http2::SendRequest<UpstreamBody>, SendError> {
        let stream = connect_tcp(addr).await.ok_or(SendError::Connect)?;
        let (send, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.conns.lock().push((addr.clone(), send.clone()));
        Ok(send)
    }
}

impl UpstreamClient {
    /// Sends `req` (absolute URI) to an h2c instance as one stream of its shared connection.
    pub(super) async fn send_h2(
        &self,
        addr: &Authority,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut send = match self.h2.get(addr) {
            Some(s) => s,
            None => self.h2.connect(addr).await?,
        };
        send.ready().await.map_err(SendError::Http)?;
        send.send_request(req).await.map_err(SendError::Http)
    }

    /// Sends a WebSocket handshake over a connection of its own, which may then be upgraded.
    pub(super) async fn send_upgrade(
        &self,
        addr: &Authority,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let stream = connect_tcp(addr).await.ok_or(SendError::Connect)?;
        let (mut send, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        send.send_request(req).await.map_err(SendError::Http)
    }
}
