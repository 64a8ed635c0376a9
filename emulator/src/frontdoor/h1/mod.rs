//! The fast path for HTTP/1.1: one task per client connection parses each request head itself,
//! admits it, writes it to a pooled connection to the instance and copies the answer back, so a
//! request never crosses from one task (or worker thread) to another and no `Request` or
//! `Response` is built on either side (bench/RESULTS.md: hyper's server and client dispatch,
//! and the hop between their two tasks, were most of the front door's own cost).
//!
//! It takes the common case: HTTP/1.1, origin-form target, no body or a `Content-Length` body
//! of at most [`MAX_INLINE_BODY`]. Anything else — h2c, HTTP/1.0, chunked or large uploads,
//! `Expect`, `Upgrade`, `/_emu/`, a head it cannot parse — hands the connection, with every
//! byte read so far, to the general path (hyper, [`super::proxy::forward`]) at a message
//! boundary, and it stays there. `[emu] frontdoor = "hyper"` (or `EMU_FRONTDOOR=hyper`) sends
//! every connection there (for A/B benchmarks).
//!
//! Behaviour matches the general path: Cloud Run's request headers (X-Forwarded-For/-Proto,
//! traceparent, X-Cloud-Trace-Context), hop-by-hop headers stripped both ways, `x-emu-instance`
//! and `x-emu-cold-start` on answers, 429/500/503/504 from [`ProxyError`], the slot held until the
//! answer's body has been sent, a request dropped while queued when its client goes away, and the
//! request timeout cutting a body that is still streaming.

mod bufs;
mod chunked;
mod head;
mod pool;
mod rewind;
mod wait;

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use http::uri::Authority;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::errors::ProxyError;
use super::upstream::connect_tcp;
use super::{FrontDoor, HyperBuilder, Route};
use head::{answer_head, plan, Framing, Plan, Req};
use pool::{check_in, check_out};
use rewind::linger_close;
pub use rewind::Rewind;
use wait::{Read, Wait};

/// Longest request or response head read before giving up on it.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// Request bodies up to this size are read whole and sent with their head; larger ones go the
/// general path, which streams them.
pub const MAX_INLINE_BODY: usize = 64 * 1024;
/// Response bytes at most this many are copied behind the head so both leave in one write.
const COALESCE: usize = 16 * 1024;
const READ_CHUNK: usize = 8 * 1024;

/// Serves one client connection: the fast path while it can, then the general path.
pub async fn serve_conn(
    fd: Arc<FrontDoor>,
    route: Route,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
    hyper: Arc<HyperBuilder>,
) {
    let mut conn = Client {
        stream,
        peer,
        peer_ip: peer.ip().to_string(),
        cbuf: BytesMut::new(),
        ubuf: BytesMut::new(),
        out: Vec::new(),
    };
    // A token of the connection's own: waiting on it touches only this connection's lock, not
    // the one every connection on every thread shares.
    let own = shutdown.child_token();
    if fd.fast_path {
        let end = conn.run(&fd, &route, &own).await;
        if end != End::Handoff {
            conn.cbuf.clear();
            conn.give_back();
        }
        match end {
            End::Close => return linger_close(conn.stream),
            End::Drop => return,
            End::Handoff => {}
        }
    }
    let io = Rewind {
        pre: conn.cbuf.freeze(),
        inner: Some(conn.stream),
    };
    // Boxed: hyper's connection state would otherwise be part of every connection's task,
    // the many that never leave the fast path included (an idle one then costs that much more).
    Box::pin(super::serve_hyper(fd, route, io, peer, shutdown, &hyper)).await;
}

#[derive(PartialEq, Eq, Debug)]
enum End {
    Close,
    /// Closed without lingering: nothing was answered (a head that never arrived).
    Drop,
    Handoff,
}

struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    peer_ip: String,
    /// Bytes from the client not yet handled.
    cbuf: BytesMut,
    /// Bytes from the instance not yet sent on.
    ubuf: BytesMut,
    /// The message being written: the request to the instance, then the answer's head.
    out: Vec<u8>,
}

impl Client {
    async fn run(&mut self, fd: &FrontDoor, route: &Route, shutdown: &CancellationToken) -> End {
        let mut stop = pin!(shutdown.cancelled());
        let mut timer = pin!(tokio::time::sleep_until(Instant::now()));
        // A new connection owes its first head from its start; later ones owe theirs from
        // their first byte, and until it comes the idle timeout runs.
        let mut wait = Wait::Head(Instant::now());
        loop {
            let req = loop {
                if !self.cbuf.is_empty() {
                    bufs::take_vec(&mut self.out);
                    match plan(
                        &self.cbuf,
                        &mut self.out,
                        fd,
                        route,
                        self.peer,
                        &self.peer_ip,
                    ) {
                        Plan::NeedMore => {}
                        Plan::Handoff => return End::Handoff,
                        Plan::Forward(r) => break Ok(r),
                        Plan::Local(r, e) => break Err((r, e)),
                    }
                }
                match self
                    .read_more(&fd.limits, wait, timer.as_mut(), stop.as_mut())
                    .await
                {
                    Read::Data => {
                        if let Wait::Idle(_) = wait {
                            wait = Wait::Head(Instant::now());
                        }
                    }
                    Read::Closed => return End::Close,
                    Read::TimedOut => return End::Drop,
                }
            };
            let (req, local) = match req {
                Ok(r) => (r, None),
                Err((r, e)) => (r, Some(e)),
            };
            if !self.read_body(fd, &req, shutdown).await {
                return End::Close;
            }
            let keep = match local {
                Some(e) => self.answer_error(fd, &req, e, shutdown).await,
                None => {
                    bufs::take_bytes(&mut self.ubuf);
                    self.forward(fd, req, shutdown).await
                }
            };
            self.give_back();
            if !keep {
                return End::Close;
            }
            wait = if self.cbuf.is_empty() {
                Wait::Idle(Instant::now())
            } else {
                Wait::Head(Instant::now())
            };
        }
    }

    /// Returns the buffers it does not need between requests ([`bufs`]).
    fn give_back(&mut self) {
        bufs::give_bytes(&mut self.cbuf);
        self.ubuf.clear();
        bufs::give_bytes(&mut self.ubuf);
        bufs::give_vec(&mut self.out);
    }

    /// Reads the request's body, whole (at most [`MAX_INLINE_BODY`]), behind its head in `out`.
    /// A client that stops half-way through its body gets the request timeout's 504, as on the
    /// general path; false when the connection is to close.
    async fn read_body(&mut self, fd: &FrontDoor, req: &Req, shutdown: &CancellationToken) -> bool {
        let total = req.head_len + req.body_len;
        let timeout = req
            .ex
            .service
            .as_ref()
            .map_or(crate::spec::limits::DEFAULT_TIMEOUT, |s| s.spec.timeout);
        let body_deadline = req.ex.arrived + timeout;
        while self.cbuf.len() < total {
            self.cbuf.reserve(total - self.cbuf.len());
            let read =
                tokio::time::timeout_at(body_deadline, self.stream.read_buf(&mut self.cbuf)).await;
            match read {
                Ok(Ok(1..)) => {}
                Ok(_) => return false,
                Err(_) => {
                    self.close_with(fd, req, ProxyError::UpstreamTimeout, shutdown)
                        .await;
                    return false;
                }
            }
        }
        self.out.extend_from_slice(&self.cbuf[req.head_len..total]);
        self.cbuf.advance(total);
        true
    }

    /// Answers with emu's own error and closes, whatever the request asked.
    async fn close_with(
        &mut self,
        fd: &FrontDoor,
        req: &Req,
        e: ProxyError,
        shutdown: &CancellationToken,
    ) {
        self.write_error(fd, req, e, true, shutdown).await;
    }

    /// Writes emu's own answer; false when the connection is to close.
    async fn answer_error(
        &mut self,
        fd: &FrontDoor,
        req: &Req,
        e: ProxyError,
        shutdown: &CancellationToken,
    ) -> bool {
        self.write_error(fd, req, e, req.close, shutdown).await
    }

    async fn write_error(
        &mut self,
        fd: &FrontDoor,
        req: &Req,
        e: ProxyError,
        close: bool,
        shutdown: &CancellationToken,
    ) -> bool {
        req.ex.finish(
            fd,
            e.status().as_u16(),
            None,
            false,
            Some(e.html().len() as u64),
        );
        let close = close || shutdown.is_cancelled() || e.closes();
        e.write_h1(&mut self.out, req.is_head, close);
        self.stream.write_all(&self.out).await.is_ok() && !close
    }

    /// Admits the request in `out`, sends it to an instance and streams the answer back; false
    /// when the connection is to close.
    async fn forward(
        &mut self,
        fd: &FrontDoor,
        mut req: Req,
        shutdown: &CancellationToken,
    ) -> bool {
        let Some(service) = req.ex.service.clone() else {
            return false;
        };
        let deadline = req.ex.arrived + service.spec.timeout;
        let acquired = {
            let gone = pin!(client_gone(&self.stream, &mut self.cbuf));
            tokio::select! {
                biased;
                r = service.pool.acquire(deadline) => r,
                () = gone => return false,
            }
        };
        let permit = match acquired {
            Ok(p) => p,
            Err(e) => return self.answer_error(fd, &req, e.into(), shutdown).await,
        };
        let slot = permit.slot.clone();
        let Some(addr) = slot.addr() else {
            return self
                .answer_error(fd, &req, ProxyError::InstanceFailed, shutdown)
                .await;
        };
        if !req.has_host {
            let mut h = Vec::with_capacity(addr.as_str().len() + 10);
            h.extend_from_slice(b"host: ");
            h.extend_from_slice(addr.as_str().as_bytes());
            h.extend_from_slice(b"\r\n");
            self.out.splice(req.head_end..req.head_end, h);
            req.has_host = true;
        }

        let mut timer = pin!(tokio::time::sleep_until(deadline));
        let exchanged = {
            let gone = pin!(client_gone(&self.stream, &mut self.cbuf));
            tokio::select! {
                biased;
                r = exchange(addr, &self.out, &mut self.ubuf, req.idempotent) => Ok(r),
                () = &mut timer => Err(ProxyError::UpstreamTimeout),
                () = gone => return false,
            }
        };
        let (mut upstream, reusable) = match exchanged {
            Ok(Some(s)) => s,
            Ok(None) => {
                tracing::debug!(instance = %permit.slot.id, state = ?permit.slot.state(), "upstream request failed");
                return self
                    .answer_error(fd, &req, ProxyError::InstanceFailed, shutdown)
                    .await;
            }
            Err(e) => return self.answer_error(fd, &req, e, shutdown).await,
        };

        // The answer's head; 1xx heads (103 Early Hints) go on ahead of it.
        let (framing, upstream_keep, close, status) = loop {
            let head = answer_head(
                &self.ubuf,
                &mut self.out,
                &req,
                &permit,
                shutdown.is_cancelled(),
            );
            let Some(head) = head else {
                return self
                    .answer_error(fd, &req, ProxyError::InstanceFailed, shutdown)
                    .await;
            };
            self.ubuf.advance(head.len);
            if (100..200).contains(&head.status) {
                if self.stream.write_all(&self.out).await.is_err() {
                    return false;
                }
                let more = tokio::select! {
                    biased;
                    r = read_head(&mut upstream, &mut self.ubuf) => r,
                    () = &mut timer => Err(HeadError::Timeout),
                };
                let e = match more {
                    Ok(()) => continue,
                    Err(HeadError::Timeout) => ProxyError::UpstreamTimeout,
                    Err(_) => ProxyError::InstanceFailed,
                };
                // The final answer never came, and none has been sent (1xx don't count).
                self.close_with(fd, &req, e, shutdown).await;
                return false;
            }
            break (head.framing, head.upstream_keep, head.close, head.status);
        };
        let size = match &framing {
            Framing::Length(n) => Some(*n),
            Framing::None => Some(0),
            Framing::Chunked(_) | Framing::UntilClose => None,
        };
        req.ex
            .finish(fd, status, Some(permit.slot.id.clone()), permit.cold, size);

        // A client that leaves mid-body (a long stream, server-sent events) frees its slot at once.
        let pumped = {
            let gone = pin!(client_gone(&self.stream, &mut self.cbuf));
            tokio::select! {
                biased;
                r = pump(&mut upstream, &self.stream, &mut self.ubuf, &mut self.out, framing) => r,
                () = &mut timer => Err(()),
                () = gone => Err(()),
            }
        };
        drop(permit);
        match pumped {
            Ok(clean) => {
                if clean && upstream_keep && reusable && self.ubuf.is_empty() {
                    check_in(addr, upstream);
                }
                self.ubuf.clear();
                !close
            }
            Err(()) => false,
        }
    }
}

/// `write_all` through a shared reference, so the same connection can be watched for its
/// client leaving ([`client_gone`]) while an answer is copied to it.
async fn write_all(s: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Resolves when the client has closed its side (or reset). Bytes it sends meanwhile (a
/// pipelined request) are kept in `cbuf`, up to [`MAX_HEAD`].
async fn client_gone(stream: &TcpStream, cbuf: &mut BytesMut) {
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        if cbuf.len() >= MAX_HEAD {
            std::future::pending::<()>().await;
        }
        cbuf.reserve(READ_CHUNK);
        match stream.try_read_buf(cbuf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

enum HeadError {
    /// The connection closed (or reset) before a byte of the answer came.
    ClosedEarly,
    Broken,
    Timeout,
}

/// Reads until `ubuf` holds a whole answer head.
async fn read_head(s: &mut TcpStream, ubuf: &mut BytesMut) -> Result<(), HeadError> {
    loop {
        if !ubuf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::Response::new(&mut headers).parse(ubuf) {
                Ok(httparse::Status::Complete(_)) => return Ok(()),
                Ok(httparse::Status::Partial) if ubuf.len() < MAX_HEAD => {}
                _ => return Err(HeadError::Broken),
            }
        }
        ubuf.reserve(READ_CHUNK);
        match s.read_buf(ubuf).await {
            Ok(1..) => {}
            _ if ubuf.is_empty() => return Err(HeadError::ClosedEarly),
            _ => return Err(HeadError::Broken),
        }
    }
}

/// Sends `request` to `addr` over a pooled connection (or a new one) and reads the answer's
/// head into `ubuf`. A pooled connection the instance had closed is retried on another when
/// nothing was written, or when nothing came back and resending is safe (an idempotent method).
async fn exchange(
    addr: &Authority,
    request: &[u8],
    ubuf: &mut BytesMut,
    idempotent: bool,
) -> Option<(TcpStream, bool)> {
    loop {
        let (mut s, reused) = match check_out(addr) {
            Some(s) => (s, true),
            // Boxed: rare, and its state would otherwise ride in every request's future.
            None => (Box::pin(connect_tcp(addr)).await?, false),
        };
        ubuf.clear();
        let wrote = s.write_all(request).await.is_ok();
        if !wrote && reused {
            continue;
        }
        // Even when the write failed, an answer may be on its way (an instance that refused the
        // body and closed): read it, but don't pool that connection again.
        match read_head(&mut s, ubuf).await {
            Ok(()) => return Some((s, wrote)),
            Err(HeadError::ClosedEarly) if reused && idempotent => continue,
            Err(_) => return None,
        }
    }
}

/// Copies the answer's body from the instance to the client, the pending head in `out` first.
/// `Ok(true)` when the body ended where its framing said (the connection can be reused),
/// `Ok(false)` when it ended with the instance's connection, `Err` when either side broke.
async fn pump(
    up: &mut TcpStream,
    client: &TcpStream,
    ubuf: &mut BytesMut,
    out: &mut Vec<u8>,
    framing: Framing,
) -> Result<bool, ()> {
    async fn send(client: &TcpStream, out: &mut Vec<u8>, body: &[u8]) -> Result<(), ()> {
        let r = if out.is_empty() {
            write_all(client, body).await
        } else if body.len() <= COALESCE {
            out.extend_from_slice(body);
            write_all(client, out).await
        } else {
            match write_all(client, out).await {
                Ok(()) => write_all(client, body).await,
                e => e,
            }
        };
        out.clear();
        r.map_err(|_| ())
    }
    async fn fill(up: &mut TcpStream, ubuf: &mut BytesMut) -> std::io::Result<usize> {
        ubuf.reserve(READ_CHUNK);
        up.read_buf(ubuf).await
    }
    match framing {
        Framing::None => {
            send(client, out, &[]).await?;
            Ok(true)
        }
        Framing::Length(mut left) => loop {
            let k = (ubuf.len() as u64).min(left) as usize;
            if k > 0 || !out.is_empty() {
                send(client, out, &ubuf[..k]).await?;
                ubuf.advance(k);
                left -= k as u64;
            }
            if left == 0 {
                return Ok(true);
            }
            if !matches!(fill(up, ubuf).await, Ok(1..)) {
                return Err(());
            }
        },
        Framing::Chunked(mut scan) => loop {
            let (k, done) = scan.scan(ubuf)?;
            if k > 0 || !out.is_empty() {
                send(client, out, &ubuf[..k]).await?;
                ubuf.advance(k);
            }
            if done {
                return Ok(true);
            }
            if !matches!(fill(up, ubuf).await, Ok(1..)) {
                return Err(());
            }
        },
        Framing::UntilClose => loop {
            let k = ubuf.len();
            if k > 0 || !out.is_empty() {
                send(client, out, &ubuf[..k]).await?;
                ubuf.advance(k);
            }
            match fill(up, ubuf).await {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(_) => return Err(()),
            }
        },
    }
}
