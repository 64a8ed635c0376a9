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
//! boundary, and it stays there. `EMU_FRONTDOOR=hyper` sends every connection there (for A/B
//! benchmarks).
//!
//! Behaviour matches the general path: Cloud Run's request headers (X-Forwarded-For/-Proto,
//! traceparent, X-Cloud-Trace-Context), hop-by-hop headers stripped both ways, `x-emu-instance`
//! and `x-emu-cold-start` on answers, 429/500/503/504 from [`ProxyError`], the slot held until the
//! answer's body has been sent, a request dropped while queued when its client goes away, and the
//! request timeout cutting a body that is still streaming.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use http::uri::Authority;
use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::errors::ProxyError;
use super::proxy::{connect_tcp, hex_into, put_decimal, TraceId, IDLE_TIMEOUT, MAX_IDLE_PER_HOST};
use super::{FrontDoor, HyperBuilder, Route};
use crate::service::ServiceRuntime;
use crate::telemetry::RequestLog;

/// Longest request or response head read before giving up on it.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// Request bodies up to this size are read whole and sent with their head; larger ones go the
/// general path, which streams them.
pub const MAX_INLINE_BODY: usize = 64 * 1024;
/// Response bytes at most this many are copied behind the head so both leave in one write.
const COALESCE: usize = 16 * 1024;
const READ_CHUNK: usize = 8 * 1024;
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// False when `EMU_FRONTDOOR=hyper` asks for the general path only.
fn fast_path_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("EMU_FRONTDOOR").map_or(true, |v| v != "hyper"))
}

/// Idle keep-alive connections to the instances, by address (a list: there are a few). One
/// per thread: each front-door thread runs its own event loop, and a connection stays with the
/// loop that registered it.
struct Upstreams {
    idle: Vec<(Authority, Vec<(TcpStream, Instant)>)>,
    /// When stale connections were last looked for: instances come and go (each on a port of
    /// its own), and a stopped one's connections must not keep their sockets open.
    swept: Instant,
}

thread_local! {
    static UPSTREAMS: RefCell<Upstreams> = RefCell::new(Upstreams {
        idle: Vec::new(),
        swept: Instant::now(),
    });
}

/// True while the instance has not closed `s` (it has nothing to say between answers). No
/// system call unless the reactor has seen the socket become readable.
fn still_open(s: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// The most recently used connection to `addr` that is still open.
fn check_out(addr: &Authority) -> Option<TcpStream> {
    let now = Instant::now();
    UPSTREAMS.with(|u| {
        let mut u = u.borrow_mut();
        let list = u
            .idle
            .iter_mut()
            .find(|(a, _)| a.as_str() == addr.as_str())
            .map(|(_, l)| l)?;
        while let Some((s, since)) = list.pop() {
            if now - since <= IDLE_TIMEOUT && still_open(&s) {
                return Some(s);
            }
        }
        None
    })
}

fn check_in(addr: &Authority, s: TcpStream) {
    let now = Instant::now();
    UPSTREAMS.with(|u| {
        let mut u = u.borrow_mut();
        if now - u.swept > SWEEP_EVERY {
            u.swept = now;
            for (_, list) in &mut u.idle {
                list.retain(|(s, t)| now - *t <= IDLE_TIMEOUT && still_open(s));
            }
            u.idle.retain(|(_, list)| !list.is_empty());
        }
        let i = match u.idle.iter().position(|(a, _)| a.as_str() == addr.as_str()) {
            Some(i) => i,
            None => {
                u.idle.push((addr.clone(), Vec::new()));
                u.idle.len() - 1
            }
        };
        let list = &mut u.idle[i].1;
        if list.first().is_some_and(|(_, t)| now - *t > IDLE_TIMEOUT) {
            list.remove(0);
        }
        if list.len() < MAX_IDLE_PER_HOST {
            list.push((s, now));
        }
    });
}

/// A connection's first bytes, already read, put back in front of the rest for the general path.
///
/// Dropped, it closes the connection the way nginx's `lingering_close` does: hyper may end a
/// connection while the client is still sending a request body (an upload answered 413), and a
/// socket closed with unread data is reset — the client then sees a broken pipe instead of the
/// answer. So it sends FIN, then reads and discards what still comes, for [`LINGER`] at most.
pub struct Rewind {
    pre: Bytes,
    inner: Option<TcpStream>,
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
fn linger_close(mut s: TcpStream) {
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
    if fast_path_on() && conn.run(&fd, &route, &own).await == End::Close {
        linger_close(conn.stream);
        return;
    }
    let io = Rewind {
        pre: conn.cbuf.freeze(),
        inner: Some(conn.stream),
    };
    super::serve_hyper(fd, route, io, peer, shutdown, &hyper).await;
}

#[derive(PartialEq, Eq, Debug)]
enum End {
    Close,
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

/// What the head at the front of `cbuf` asks for.
enum Plan {
    NeedMore,
    Handoff,
    Forward(Req),
    /// Answered by the front door itself (no service for the host).
    Local(Req, ProxyError),
}

/// One parsed request, its upstream head already written to `out`.
struct Req {
    head_len: usize,
    body_len: usize,
    service: Option<Arc<ServiceRuntime>>,
    is_head: bool,
    idempotent: bool,
    close: bool,
    /// Where in `out` the head's final CRLF starts (a Host header may go there).
    head_end: usize,
    has_host: bool,
    trace: Option<TraceId>,
    log: Option<LogInfo>,
}

struct LogInfo {
    method: http::Method,
    url: String,
    user_agent: Option<HeaderValue>,
}

/// How an answer's body ends.
enum Framing {
    None,
    Length(u64),
    Chunked(ChunkScanner),
    UntilClose,
}

impl Client {
    async fn run(&mut self, fd: &FrontDoor, route: &Route, shutdown: &CancellationToken) -> End {
        let mut stop = pin!(shutdown.cancelled());
        loop {
            let arrived;
            let req = loop {
                if !self.cbuf.is_empty() {
                    match plan(&self.cbuf, &mut self.out, fd, route, &self.peer_ip) {
                        Plan::NeedMore => {}
                        Plan::Handoff => return End::Handoff,
                        Plan::Forward(r) => {
                            arrived = Instant::now();
                            break Ok(r);
                        }
                        Plan::Local(r, e) => {
                            arrived = Instant::now();
                            break Err((r, e));
                        }
                    }
                }
                self.cbuf.reserve(READ_CHUNK);
                // Shutting down: a connection with no whole request closes (as hyper's graceful
                // shutdown does), whether it is idle or half-way through a head.
                let n = tokio::select! {
                    biased;
                    () = &mut stop => return End::Close,
                    r = self.stream.read_buf(&mut self.cbuf) => r,
                };
                if !matches!(n, Ok(1..)) {
                    return End::Close;
                }
            };
            let (req, local) = match req {
                Ok(r) => (r, None),
                Err((r, e)) => (r, Some(e)),
            };
            // The body, whole (at most MAX_INLINE_BODY), behind the head in `out`.
            // A client that stops half-way through its body gets the request timeout's 504, as
            // on the general path.
            let total = req.head_len + req.body_len;
            let body_deadline = arrived
                + req
                    .service
                    .as_ref()
                    .map_or(Duration::from_secs(300), |s| s.spec.timeout);
            while self.cbuf.len() < total {
                self.cbuf.reserve(total - self.cbuf.len());
                let read =
                    tokio::time::timeout_at(body_deadline, self.stream.read_buf(&mut self.cbuf))
                        .await;
                match read {
                    Ok(Ok(1..)) => {}
                    Ok(_) => return End::Close,
                    Err(_) => {
                        let mut req = req;
                        req.close = true;
                        self.answer_error(fd, &req, ProxyError::UpstreamTimeout, arrived, shutdown)
                            .await;
                        return End::Close;
                    }
                }
            }
            self.out.extend_from_slice(&self.cbuf[req.head_len..total]);
            self.cbuf.advance(total);

            let keep = match local {
                Some(e) => self.answer_error(fd, &req, e, arrived, shutdown).await,
                None => self.forward(fd, req, arrived, shutdown).await,
            };
            if !keep {
                return End::Close;
            }
        }
    }

    /// Writes emu's own answer; false when the connection is to close.
    async fn answer_error(
        &mut self,
        fd: &FrontDoor,
        req: &Req,
        e: ProxyError,
        arrived: Instant,
        shutdown: &CancellationToken,
    ) -> bool {
        let status = e.status().as_u16();
        if let Some(s) = &req.service {
            s.pool.counters.record_status(status);
        }
        self.log(fd, req, status, arrived, None, false);
        let close = req.close || shutdown.is_cancelled();
        self.out.clear();
        let status_code = e.status();
        let body = e.html();
        push_status_line(
            &mut self.out,
            status_code.as_u16(),
            status_code.canonical_reason().unwrap_or("Error").as_bytes(),
        );
        self.out
            .extend_from_slice(b"content-type: text/html; charset=UTF-8\r\ncontent-length: ");
        put_decimal(&mut self.out, body.len() as u64);
        self.out.extend_from_slice(b"\r\n");
        push_date(&mut self.out);
        if close {
            self.out.extend_from_slice(b"connection: close\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        if !req.is_head {
            self.out.extend_from_slice(body.as_bytes());
        }
        self.stream.write_all(&self.out).await.is_ok() && !close
    }

    fn log(
        &self,
        fd: &FrontDoor,
        req: &Req,
        status: u16,
        arrived: Instant,
        instance: Option<Arc<str>>,
        cold: bool,
    ) {
        let Some(info) = &req.log else { return };
        let (service, revision) = match &req.service {
            Some(s) => (s.spec.name.clone(), s.spec.revision.clone()),
            None => ("-".into(), "-".into()),
        };
        fd.logger.log(RequestLog {
            service,
            revision,
            method: info.method.clone(),
            url: info.url.clone(),
            status,
            latency: arrived.elapsed(),
            remote_ip: self.peer.ip(),
            user_agent: info.user_agent.clone(),
            trace: req.trace.map(TraceId::to_log),
            instance,
            cold_start: cold,
        });
    }

    /// Admits the request in `out`, sends it to an instance and streams the answer back; false
    /// when the connection is to close.
    async fn forward(
        &mut self,
        fd: &FrontDoor,
        mut req: Req,
        arrived: Instant,
        shutdown: &CancellationToken,
    ) -> bool {
        let Some(service) = req.service.clone() else {
            return false;
        };
        let deadline = arrived + service.spec.timeout;
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
            Err(e) => {
                return self
                    .answer_error(fd, &req, e.into(), arrived, shutdown)
                    .await
            }
        };
        let slot = permit.slot.clone();
        let Some(addr) = slot.addr() else {
            return self
                .answer_error(fd, &req, ProxyError::InstanceFailed, arrived, shutdown)
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
                    .answer_error(fd, &req, ProxyError::InstanceFailed, arrived, shutdown)
                    .await;
            }
            Err(e) => return self.answer_error(fd, &req, e, arrived, shutdown).await,
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
                    .answer_error(fd, &req, ProxyError::InstanceFailed, arrived, shutdown)
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
                req.close = true;
                return self.answer_error(fd, &req, e, arrived, shutdown).await;
            }
            break (head.framing, head.upstream_keep, head.close, head.status);
        };
        service.pool.counters.record_status(status);
        let instance = permit.slot.id.clone();
        self.log(fd, &req, status, arrived, Some(instance), permit.cold);

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

/// Finds where a chunked body ends while its bytes are copied through unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size { val: u64, digits: u8 },
    Ext(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    LineStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

#[derive(Debug)]
pub(crate) struct ChunkScanner(Chunk);

impl ChunkScanner {
    pub(crate) fn new() -> Self {
        ChunkScanner(Chunk::Size { val: 0, digits: 0 })
    }

    /// How many of `buf`'s bytes belong to the body, and whether the body ends there; `Err` for
    /// a malformed body.
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<(usize, bool), ()> {
        let mut i = 0;
        while i < buf.len() {
            if let Chunk::Data(n) = self.0 {
                let k = n.min((buf.len() - i) as u64);
                i += k as usize;
                self.0 = if k == n {
                    Chunk::DataCr
                } else {
                    Chunk::Data(n - k)
                };
                continue;
            }
            let b = buf[i];
            i += 1;
            self.0 = match (self.0, b) {
                (Chunk::Size { val, digits }, _) if b.is_ascii_hexdigit() && digits < 15 => {
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    Chunk::Size {
                        val: val * 16 + d,
                        digits: digits + 1,
                    }
                }
                (Chunk::Size { val, digits }, b';' | b' ' | b'\t') if digits > 0 => Chunk::Ext(val),
                (Chunk::Size { val, digits }, b'\r') if digits > 0 => Chunk::SizeLf(val),
                (Chunk::Ext(val), b'\r') => Chunk::SizeLf(val),
                (Chunk::Ext(_), b'\n') => return Err(()),
                (Chunk::Ext(val), _) => Chunk::Ext(val),
                (Chunk::SizeLf(0), b'\n') => Chunk::LineStart,
                (Chunk::SizeLf(n), b'\n') => Chunk::Data(n),
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataLf, b'\n') => Chunk::Size { val: 0, digits: 0 },
                (Chunk::LineStart, b'\r') => Chunk::EndLf,
                (Chunk::LineStart, b'\n') => return Err(()),
                (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
                (Chunk::Trailer, b'\n') => return Err(()),
                (Chunk::LineStart | Chunk::Trailer, _) => Chunk::Trailer,
                (Chunk::TrailerLf, b'\n') => Chunk::LineStart,
                (Chunk::EndLf, b'\n') => {
                    self.0 = Chunk::Done;
                    return Ok((i, true));
                }
                (Chunk::Done, _) => return Ok((i - 1, true)),
                _ => return Err(()),
            };
        }
        Ok((i, self.0 == Chunk::Done))
    }
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The comma-separated tokens of a header value, trimmed.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| *b == b',').map(|t| t.trim_ascii())
}

/// Connection-level headers (RFC 9110 §7.6.1), never forwarded.
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ]
    .iter()
    .any(|h| eq(name, h))
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Reads the head at the front of `cbuf`; for a request the fast path takes, writes the head to
/// send the instance into `out` (without its final CRLF at `head_end`).
fn plan(cbuf: &[u8], out: &mut Vec<u8>, fd: &FrontDoor, route: &Route, peer_ip: &str) -> Plan {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(cbuf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if cbuf.len() < MAX_HEAD => return Plan::NeedMore,
        // h2c's preface, a broken or huge head: hyper answers (or speaks HTTP/2).
        _ => return Plan::Handoff,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Plan::Handoff;
    };
    if method == "CONNECT" || !target.starts_with('/') || target.starts_with("/_emu/") {
        return Plan::Handoff;
    }
    let mut length: Option<u64> = None;
    let mut close = false;
    let mut host: Option<&[u8]> = None;
    for h in req.headers.iter() {
        let n = h.name;
        if eq(n, "content-length") {
            match (parse_length(h.value), length) {
                (Some(v), None) => length = Some(v),
                (Some(v), Some(prev)) if v == prev => {}
                _ => return Plan::Handoff,
            }
        } else if eq(n, "transfer-encoding") || eq(n, "upgrade") || eq(n, "expect") {
            return Plan::Handoff;
        } else if eq(n, "connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !t.eq_ignore_ascii_case(b"keep-alive") && !t.is_empty() {
                    // Names other headers as hop-by-hop: rare, the general path strips them.
                    return Plan::Handoff;
                }
            }
        } else if eq(n, "host") {
            if host.is_some() {
                // Two Hosts: which one routes is ambiguous; the general path decides.
                return Plan::Handoff;
            }
            host = Some(h.value);
        }
    }
    let body_len = length.unwrap_or(0);
    if body_len > MAX_INLINE_BODY as u64 {
        return Plan::Handoff;
    }
    let log = fd.logger.enabled().then(|| LogInfo {
        method: http::Method::from_bytes(method.as_bytes()).unwrap_or(http::Method::GET),
        url: format!(
            "http://{}{target}",
            host.and_then(|h| std::str::from_utf8(h).ok())
                .unwrap_or("localhost")
        ),
        user_agent: req
            .headers
            .iter()
            .find(|h| eq(h.name, "user-agent"))
            .and_then(|h| HeaderValue::from_bytes(h.value).ok()),
    });
    let mut r = Req {
        head_len,
        body_len: body_len as usize,
        service: None,
        is_head: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        ),
        close,
        head_end: 0,
        has_host: host.is_some(),
        trace: None,
        log,
    };
    let service = match route {
        Route::Fixed(s) => s.clone(),
        Route::ByHost if fd.services.len() == 1 => fd.services[0].clone(),
        Route::ByHost => {
            let h = host.and_then(|h| std::str::from_utf8(h).ok()).unwrap_or("");
            let label = h.split([':', '.']).next().unwrap_or("");
            match fd.by_name.get(label) {
                Some(s) => s.clone(),
                None => return Plan::Local(r, ProxyError::NoService(h.to_string())),
            }
        }
    };
    r.service = Some(service);

    // The head the instance is sent.
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut xff_seen = false;
    let mut proto_seen = false;
    let mut from_traceparent = None;
    let mut from_cloud = None;
    for h in req.headers.iter() {
        let n = h.name;
        if hop_by_hop(n) {
            continue;
        }
        if eq(n, "x-forwarded-for") {
            xff_seen = true;
            continue;
        }
        if eq(n, "x-forwarded-proto") {
            proto_seen = true;
        } else if eq(n, "traceparent") {
            keep_first_valid(out, &mut from_traceparent, trace_from_traceparent, h);
            continue;
        } else if eq(n, "x-cloud-trace-context") {
            keep_first_valid(out, &mut from_cloud, trace_from_cloud, h);
            continue;
        }
        push_header(out, n.as_bytes(), h.value);
    }
    // X-Forwarded-For: what the client sent, then the client.
    out.extend_from_slice(b"x-forwarded-for: ");
    if xff_seen {
        for h in req.headers.iter().filter(|h| eq(h.name, "x-forwarded-for")) {
            out.extend_from_slice(h.value.trim_ascii());
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(peer_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !proto_seen {
        out.extend_from_slice(b"x-forwarded-proto: http\r\n");
    }
    let trace = from_traceparent
        .or(from_cloud)
        .unwrap_or_else(TraceId::random);
    let span: u64 = rand::random::<u64>() | 1;
    if from_cloud.is_none() {
        out.extend_from_slice(b"x-cloud-trace-context: ");
        out.extend_from_slice(trace.as_bytes());
        out.push(b'/');
        put_decimal(out, span);
        out.extend_from_slice(b";o=1\r\n");
    }
    if from_traceparent.is_none() {
        let mut span_hex = [0u8; 16];
        hex_into(u128::from(span), &mut span_hex);
        out.extend_from_slice(b"traceparent: 00-");
        out.extend_from_slice(trace.as_bytes());
        out.push(b'-');
        out.extend_from_slice(&span_hex);
        out.extend_from_slice(b"-01\r\n");
    }
    r.trace = Some(trace);
    r.head_end = out.len();
    out.extend_from_slice(b"\r\n");
    Plan::Forward(r)
}

/// Sends a trace header on only if it is the first valid one (`found` then holds its trace id);
/// without a valid one, a fresh header is made after the others.
fn keep_first_valid(
    out: &mut Vec<u8>,
    found: &mut Option<TraceId>,
    parse: fn(&[u8]) -> Option<TraceId>,
    h: &httparse::Header<'_>,
) {
    if found.is_none() {
        *found = parse(h.value);
        if found.is_some() {
            push_header(out, h.name.as_bytes(), h.value);
        }
    }
}

fn trace_from_traceparent(v: &[u8]) -> Option<TraceId> {
    let mut parts = v.trim_ascii().split(|b| *b == b'-');
    let _version = parts.next()?;
    let id = parts.next()?;
    parts.next()?;
    parts.next()?;
    TraceId::from_slice(id)
}

fn trace_from_cloud(v: &[u8]) -> Option<TraceId> {
    let t = v.trim_ascii().split(|b| *b == b'/').next()?;
    if t.len() == 32 && t.iter().all(u8::is_ascii_hexdigit) {
        TraceId::from_slice(t)
    } else {
        None
    }
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_status_line(out: &mut Vec<u8>, status: u16, reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    put_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// `date: <IMF-fixdate>\r\n`, formatted once a second per thread.
fn push_date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, [u8; 29])> = const { std::cell::RefCell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        out.extend_from_slice(b"date: ");
        if c.0 != secs {
            let s = httpdate::fmt_http_date(now);
            if s.len() != 29 {
                out.extend_from_slice(s.as_bytes());
                out.extend_from_slice(b"\r\n");
                return;
            }
            c.1.copy_from_slice(s.as_bytes());
            c.0 = secs;
        }
        out.extend_from_slice(&c.1);
        out.extend_from_slice(b"\r\n");
    });
}

struct AnswerHead {
    len: usize,
    status: u16,
    framing: Framing,
    upstream_keep: bool,
    close: bool,
}

/// Parses the answer head at the front of `ubuf` and writes the one the client gets to `out`.
fn answer_head(
    ubuf: &[u8],
    out: &mut Vec<u8>,
    req: &Req,
    permit: &super::admission::Permit,
    shutting_down: bool,
) -> Option<AnswerHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(ubuf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let status = resp.code?;
    if status == 101 {
        // Never asked for (Upgrade goes the general path).
        return None;
    }
    let http10 = resp.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te = false;
    let mut upstream_keep = !http10;
    // Headers the instance's Connection header names, stripped too (at most a few).
    let mut named: [&[u8]; 8] = [b""; 8];
    let mut n_named = 0;
    let (mut cookie, mut cache, mut date) = (false, false, false);
    for h in resp.headers.iter() {
        let n = h.name;
        if eq(n, "content-length") {
            match (parse_length(h.value), length) {
                (Some(v), None) => length = Some(v),
                (Some(v), Some(p)) if v == p => {}
                _ => return None,
            }
        } else if eq(n, "transfer-encoding") {
            te = true;
            chunked = tokens(h.value)
                .last()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if eq(n, "connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    upstream_keep = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    upstream_keep = upstream_keep || http10;
                } else if n_named < named.len()
                    && !t.eq_ignore_ascii_case(b"content-length")
                    && !t.eq_ignore_ascii_case(b"transfer-encoding")
                {
                    // Framing headers are never dropped on the instance's say-so.
                    named[n_named] = t;
                    n_named += 1;
                }
            }
        } else if eq(n, "set-cookie") {
            cookie = true;
        } else if eq(n, "cache-control") {
            cache = true;
        } else if eq(n, "date") {
            date = true;
        }
    }
    let informational = (100..200).contains(&status);
    let framing = if informational || req.is_head || status == 204 || status == 304 {
        Framing::None
    } else if te {
        if chunked {
            Framing::Chunked(ChunkScanner::new())
        } else {
            Framing::UntilClose
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let close = req.close || shutting_down || matches!(framing, Framing::UntilClose);

    out.clear();
    push_status_line(out, status, resp.reason.unwrap_or("").as_bytes());
    for h in resp.headers.iter() {
        let n = h.name;
        if hop_by_hop(n)
            || named[..n_named]
                .iter()
                .any(|x| n.as_bytes().eq_ignore_ascii_case(x))
            // Transfer-Encoding frames the body: a Content-Length beside it must not reach the
            // client (RFC 9112 §6.3).
            || (te && eq(n, "content-length"))
        {
            continue;
        }
        push_header(out, n.as_bytes(), h.value);
    }
    if informational {
        out.extend_from_slice(b"\r\n");
        return Some(AnswerHead {
            len,
            status,
            framing,
            upstream_keep,
            close: false,
        });
    }
    if let Some(v) = permit.slot.id_header() {
        push_header(out, b"x-emu-instance", v.as_bytes());
    }
    if permit.cold {
        out.extend_from_slice(b"x-emu-cold-start: true\r\n");
    }
    if cookie && !cache {
        out.extend_from_slice(b"cache-control: private\r\n");
    }
    if !date {
        push_date(out);
    }
    if matches!(framing, Framing::Chunked(_)) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(AnswerHead {
        len,
        status,
        framing,
        upstream_keep,
        close,
    })
}

#[cfg(test)]
mod tests {
    use super::{check_in, check_out, ChunkScanner, UPSTREAMS};
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (http::uri::Authority, TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        let (srv, _) = l.accept().await.unwrap();
        (addr.to_string().parse().unwrap(), c, srv)
    }

    #[tokio::test]
    async fn the_pool_never_lends_a_connection_its_instance_closed() {
        let (addr, c, srv) = pair().await;
        check_in(&addr, c);
        drop(srv);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(check_out(&addr).is_none());

        let (addr, c, _srv) = pair().await;
        check_in(&addr, c);
        assert!(check_out(&addr).is_some(), "an open one is lent");
    }

    #[tokio::test]
    async fn a_stopped_instances_connections_are_closed_within_seconds() {
        let (gone, c1, srv1) = pair().await;
        let (live, c2, _srv2) = pair().await;
        check_in(&gone, c1);
        drop(srv1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // Traffic to another instance sweeps the pool.
        check_in(&live, c2);
        let addrs: Vec<String> =
            UPSTREAMS.with(|u| u.borrow().idle.iter().map(|(a, _)| a.to_string()).collect());
        assert_eq!(addrs, vec![live.to_string()]);
    }

    const BODY: &[u8] =
        b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nx-checksum: 12\r\n\r\n";

    #[test]
    fn finds_the_end_of_a_chunked_body_however_it_is_split() {
        let mut next = b"HTTP/1.1 200 OK\r\n".to_vec();
        let mut all = BODY.to_vec();
        all.append(&mut next);
        for split in 0..=BODY.len() {
            let mut s = ChunkScanner::new();
            let (a, done) = s.scan(&all[..split]).unwrap();
            assert_eq!(a, split, "split at {split}: all of the first piece is body");
            assert_eq!(done, split == BODY.len());
            if done {
                continue;
            }
            let (b, done) = s.scan(&all[split..]).unwrap();
            assert!(done, "split at {split}");
            assert_eq!(
                split + b,
                BODY.len(),
                "split at {split}: stops where the body ends"
            );
        }
        // Byte by byte.
        let mut s = ChunkScanner::new();
        for (i, b) in BODY.iter().enumerate() {
            let (n, done) = s.scan(std::slice::from_ref(b)).unwrap();
            assert_eq!(n, 1);
            assert_eq!(done, i == BODY.len() - 1);
        }
    }

    #[test]
    fn an_empty_body_ends_at_once() {
        let mut s = ChunkScanner::new();
        assert_eq!(s.scan(b"0\r\n\r\nrest").unwrap(), (5, true));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"4\r\nWikiXX",
            b"4\nWiki",
            b"fffffffffffffffff\r\n",
            b"0\r\n\n",
            b"0\r\nx: a\n\r\n",
        ] {
            assert!(ChunkScanner::new().scan(bad).is_err(), "{bad:?}");
        }
    }
}
