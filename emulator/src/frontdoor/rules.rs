//! Cloud Run's rules of the request path, written once. Every forwarding path — the HTTP/1.1
//! fast path ([`super::h1`]), hyper for HTTP/1.1 and h2c ([`super::proxy`]), WebSocket tunnels
//! and gRPC — calls these phases in order and itself only moves bytes and frames:
//!
//! 1. [`refuse`]: what Google's front end answers before any service is chosen (reserved paths,
//!    `TRACE`, a bogus `PRI`);
//! 2. [`FrontDoor::route_host`]: which service, by host or by the port the request came in on;
//! 3. [`rewrite_request`]: the head the instance gets (hop-by-hop headers out, X-Forwarded-*,
//!    trace context in);
//! 4. [`rewrite_response`]: the head the client gets (hop-by-hop out, `x-emu-instance`,
//!    `x-emu-cold-start`, `cache-control: private` beside a cookie);
//! 5. [`Exchange::finish`]: the status counted and the request log entry written.
//!
//! Headers come in as `(name, value)` byte pairs and go out through a [`HeadSink`], so the fast
//! path writes them straight into its output buffer while hyper's path fills a `HeaderMap`: one
//! rule, no copy of it per path (pingora's phases; linkerd renders one error value per protocol
//! the same way, see [`super::errors`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

use super::errors::ProxyError;
use super::wire::{
    hex_into, put_decimal, trace_from_cloud, trace_from_traceparent, Trace, TraceId,
};
use super::{FrontDoor, Route};
use crate::service::ServiceRuntime;
use crate::telemetry::{RequestLog, RequestLogger};

/// Where a rewritten head's headers go.
pub(crate) trait HeadSink {
    fn put(&mut self, name: &[u8], value: &[u8]);
}

/// HTTP/1.1 wire form, `name: value\r\n`.
impl HeadSink for Vec<u8> {
    fn put(&mut self, name: &[u8], value: &[u8]) {
        self.extend_from_slice(name);
        self.extend_from_slice(b": ");
        self.extend_from_slice(value);
        self.extend_from_slice(b"\r\n");
    }
}

impl HeadSink for HeaderMap {
    fn put(&mut self, name: &[u8], value: &[u8]) {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            self.append(n, v);
        }
    }
}

/// A header map's entries as the rules read them (collected: the rules walk them more than
/// once, and `HeaderMap`'s iterator cannot be cloned).
pub(crate) fn pairs(h: &HeaderMap) -> std::vec::IntoIter<(&[u8], &[u8])> {
    h.iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        .collect::<Vec<_>>()
        .into_iter()
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The comma-separated tokens of a header value, trimmed.
pub(crate) fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| *b == b',').map(|t| t.trim_ascii())
}

/// Connection-level headers (RFC 9110 §7.6.1): never forwarded, whichever way.
const HOP_BY_HOP: [&[u8]; 8] = [
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
];

pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| eq(name, h))
}

/// Paths Google's front end answers itself with its own 404; the request never reaches the
/// container. Cloud Run's container contract names `/eventlog`, everything under `/_ah/` and
/// "some paths ending in z"; the `z` paths listed are the ones Google's serving stack exports
/// (`/healthz` and its kin), which Cloud Run users have seen answered by Google.
const RESERVED_Z: [&str; 12] = [
    "/healthz",
    "/readyz",
    "/livez",
    "/statusz",
    "/varz",
    "/streamz",
    "/configz",
    "/flagz",
    "/rpcz",
    "/tracez",
    "/requestz",
    "/profilez",
];

/// Phase 1: what is answered before any service is chosen.
pub(crate) fn refuse(method: &[u8], target: &[u8]) -> Option<ProxyError> {
    if method == b"TRACE" {
        return Some(ProxyError::MethodNotAllowed {
            method: "TRACE".into(),
            path: path_of(target).into(),
        });
    }
    if method == b"PRI" {
        // Not a valid HTTP/2 preface (that one never gets here): a broken request.
        return Some(ProxyError::BadRequest);
    }
    let path = path_of(target);
    let reserved = path == "/eventlog"
        || path.starts_with("/_ah/")
        || RESERVED_Z.contains(&path.trim_end_matches('/'));
    reserved.then(|| ProxyError::Reserved(path.into()))
}

/// The path of a request target (origin or absolute form), without its query.
fn path_of(target: &[u8]) -> &str {
    let t = std::str::from_utf8(target).unwrap_or("/");
    let t = match t.find("://") {
        Some(i) => t[i + 3..].find('/').map_or("/", |j| &t[i + 3 + j..]),
        None => t,
    };
    t.split(['?', '#']).next().unwrap_or("/")
}

impl FrontDoor {
    /// Phase 2: the service a request is for — the listener's own, the only one there is, or
    /// the one its host names (`api.localhost:8080` → `api`).
    pub(crate) fn route_host<'a>(
        &'a self,
        route: &'a Route,
        host: Option<&[u8]>,
    ) -> Result<&'a Arc<ServiceRuntime>, ProxyError> {
        match route {
            Route::Fixed(s) => Ok(s),
            Route::ByHost if self.services.len() == 1 => Ok(&self.services[0]),
            Route::ByHost => {
                let h = host.and_then(|h| std::str::from_utf8(h).ok()).unwrap_or("");
                let label = h.split([':', '.']).next().unwrap_or("");
                self.by_name
                    .get(label)
                    .ok_or_else(|| ProxyError::NoService(h.to_string()))
            }
        }
    }
}

/// What a path forwards besides the plain message headers.
#[derive(Clone, Copy, Default)]
pub(crate) struct Pass {
    /// A WebSocket handshake: `Upgrade` and `Connection: upgrade` go through.
    pub upgrade: bool,
    /// The instance speaks HTTP/2: `te: trailers` goes through (gRPC servers look for it).
    pub te_trailers: bool,
}

/// Headers a `Connection` header names as hop-by-hop, kept on the stack (at most eight).
struct Named<'h> {
    names: [&'h [u8]; 8],
    len: usize,
}

impl<'h> Named<'h> {
    fn collect(headers: impl Iterator<Item = (&'h [u8], &'h [u8])>) -> Self {
        let mut n = Named {
            names: [b""; 8],
            len: 0,
        };
        for (name, value) in headers {
            if !eq(name, b"connection") {
                continue;
            }
            for t in tokens(value) {
                // Framing headers are never dropped on a peer's say-so.
                let framing = eq(t, b"content-length") || eq(t, b"transfer-encoding");
                if n.len < n.names.len() && !t.is_empty() && !framing {
                    n.names[n.len] = t;
                    n.len += 1;
                }
            }
        }
        n
    }

    fn contains(&self, name: &[u8]) -> bool {
        self.names[..self.len].iter().any(|x| eq(name, x))
    }
}

/// True for a WebSocket handshake: `Upgrade: websocket` with `Connection: upgrade`.
pub(crate) fn is_websocket<'h>(headers: impl Iterator<Item = (&'h [u8], &'h [u8])>) -> bool {
    let (mut upgrade, mut connection) = (false, false);
    for (n, v) in headers {
        if eq(n, b"upgrade") {
            upgrade |= tokens(v).any(|t| eq(t, b"websocket"));
        } else if eq(n, b"connection") {
            connection |= tokens(v).any(|t| eq(t, b"upgrade"));
        }
    }
    upgrade && connection
}

static X_FORWARDED_FOR: &[u8] = b"x-forwarded-for";

/// Phase 3: the head the instance is sent, as Cloud Run sends it. `X-Forwarded-For` is what the
/// client sent, then the client; `X-Forwarded-Proto` is kept or set; the first valid
/// `traceparent` and `X-Cloud-Trace-Context` are kept and a missing one is made from the same
/// trace. Returns the request's trace (the log's `trace`, `spanId` and `traceSampled`).
pub(crate) fn rewrite_request<'h, I, S>(headers: I, peer_ip: &str, pass: Pass, out: &mut S) -> Trace
where
    I: Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
    S: HeadSink,
{
    let named = Named::collect(headers.clone());
    let (mut xff_seen, mut proto_seen) = (false, false);
    let (mut from_traceparent, mut from_cloud) = (None, None);
    for (n, v) in headers.clone() {
        if is_hop_by_hop(n) || named.contains(n) {
            let keep = (pass.upgrade && (eq(n, b"upgrade") || eq(n, b"connection")))
                || (pass.te_trailers && eq(n, b"te") && tokens(v).any(|t| eq(t, b"trailers")));
            if keep {
                out.put(n, if eq(n, b"te") { b"trailers" } else { v });
            }
            continue;
        }
        if eq(n, X_FORWARDED_FOR) {
            xff_seen = true;
            continue;
        }
        if eq(n, b"x-forwarded-proto") {
            proto_seen = true;
        } else if eq(n, b"traceparent") {
            keep_first_valid(out, &mut from_traceparent, trace_from_traceparent, n, v);
            continue;
        } else if eq(n, b"x-cloud-trace-context") {
            keep_first_valid(out, &mut from_cloud, trace_from_cloud, n, v);
            continue;
        }
        out.put(n, v);
    }
    let mut xff = Vec::with_capacity(64);
    if xff_seen {
        for (_, v) in headers.filter(|(n, _)| eq(n, X_FORWARDED_FOR)) {
            xff.extend_from_slice(v.trim_ascii());
            xff.extend_from_slice(b", ");
        }
    }
    xff.extend_from_slice(peer_ip.as_bytes());
    out.put(X_FORWARDED_FOR, &xff);
    if !proto_seen {
        out.put(b"x-forwarded-proto", b"http");
    }
    let (trace, sampled) = from_traceparent
        .or(from_cloud)
        .unwrap_or_else(|| (TraceId::random(), true));
    let span: u64 = rand::random::<u64>() | 1;
    let mut buf = Vec::with_capacity(64);
    if from_cloud.is_none() {
        // `{trace}/{span};o=1`, span in decimal.
        buf.extend_from_slice(trace.as_bytes());
        buf.push(b'/');
        put_decimal(&mut buf, span);
        buf.extend_from_slice(b";o=1");
        out.put(b"x-cloud-trace-context", &buf);
    }
    if from_traceparent.is_none() {
        // `00-{trace}-{span:016x}-01`.
        let mut span_hex = [0u8; 16];
        hex_into(u128::from(span), &mut span_hex);
        buf.clear();
        buf.extend_from_slice(b"00-");
        buf.extend_from_slice(trace.as_bytes());
        buf.push(b'-');
        buf.extend_from_slice(&span_hex);
        buf.extend_from_slice(b"-01");
        out.put(b"traceparent", &buf);
    }
    Trace {
        id: trace,
        span,
        sampled,
    }
}

/// Sends a trace header on only if it is the first valid one (`found` then holds its trace id);
/// without a valid one, a fresh header is made after the others.
fn keep_first_valid(
    out: &mut impl HeadSink,
    found: &mut Option<(TraceId, bool)>,
    parse: fn(&[u8]) -> Option<(TraceId, bool)>,
    name: &[u8],
    value: &[u8],
) {
    if found.is_none() {
        *found = parse(value);
        if found.is_some() {
            out.put(name, value);
        }
    }
}

/// What the client is told about the instance that answered.
pub(crate) struct Answerer<'a> {
    /// `x-emu-instance`: the instance's id.
    pub instance: &'a [u8],
    /// The request waited for this instance to start.
    pub cold: bool,
    /// A `101 Switching Protocols` to a WebSocket handshake: `Upgrade` and `Connection` stay.
    pub upgrade: bool,
}

/// What [`rewrite_response`] saw that the path still needs.
pub(crate) struct ResponseSeen {
    pub date: bool,
}

/// Phase 4: the head the client gets: hop-by-hop headers (and those the instance's
/// `Connection` names) out, a `Content-Length` beside `Transfer-Encoding` out (RFC 9112 §6.3),
/// then `x-emu-instance`, `x-emu-cold-start: true` after a cold start, and `cache-control:
/// private` when the answer sets a cookie and says nothing of caching. Informational answers
/// (`answerer` None) only lose their hop-by-hop headers.
pub(crate) fn rewrite_response<'h, I, S>(
    headers: I,
    answerer: Option<&Answerer<'_>>,
    out: &mut S,
) -> ResponseSeen
where
    I: Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
    S: HeadSink,
{
    let named = Named::collect(headers.clone());
    let te = headers.clone().any(|(n, _)| eq(n, b"transfer-encoding"));
    let upgrade = answerer.is_some_and(|a| a.upgrade);
    let (mut cookie, mut cache, mut date) = (false, false, false);
    for (n, v) in headers {
        let pass_upgrade = upgrade && (eq(n, b"upgrade") || eq(n, b"connection"));
        if !pass_upgrade && (is_hop_by_hop(n) || named.contains(n)) {
            continue;
        }
        if te && eq(n, b"content-length") {
            continue;
        }
        cookie |= eq(n, b"set-cookie");
        cache |= eq(n, b"cache-control");
        date |= eq(n, b"date");
        out.put(n, v);
    }
    if let Some(a) = answerer {
        out.put(b"x-emu-instance", a.instance);
        if a.cold {
            out.put(b"x-emu-cold-start", b"true");
        }
        if cookie && !cache {
            out.put(b"cache-control", b"private");
        }
    }
    ResponseSeen { date }
}

/// One request as the request log and the service's counters see it, from arrival to answer.
/// One dropped before its answer's status was known (the client left while it queued or while
/// the instance worked) is logged and counted as 499, client closed, when it drops.
pub(crate) struct Exchange {
    pub arrived: Instant,
    pub peer: SocketAddr,
    pub service: Option<Arc<ServiceRuntime>>,
    pub trace: Option<Trace>,
    /// Copied only when the request log is on.
    pub log: Option<LogFields>,
    /// Set by [`Exchange::finish`]. Atomic only so that `&Exchange` may be held across awaits.
    finished: AtomicBool,
    /// For the entry of an exchange dropped unanswered (only when the log is on).
    logger: Option<RequestLogger>,
}

/// The status a request whose client left before the answer is logged and counted with (nginx's
/// "client closed request"; Cloud Run's log shows such requests with their latency too).
pub(crate) const CLIENT_CLOSED: u16 = 499;

/// What only the request log needs.
pub(crate) struct LogFields {
    pub method: http::Method,
    pub url: String,
    pub user_agent: Option<HeaderValue>,
    /// `HTTP/1.1`, `HTTP/2`: what the client spoke.
    pub protocol: &'static str,
    /// The request body's declared length.
    pub request_size: Option<u64>,
}

impl LogFields {
    /// From a request's method, target and Host.
    pub(crate) fn new(
        method: &[u8],
        target: &[u8],
        host: Option<&[u8]>,
        user_agent: Option<&[u8]>,
    ) -> Self {
        let target = String::from_utf8_lossy(target);
        let url = if target.starts_with('/') {
            let host = host.map_or("localhost".into(), String::from_utf8_lossy);
            format!("http://{host}{target}")
        } else {
            target.into_owned()
        };
        LogFields {
            method: http::Method::from_bytes(method).unwrap_or(http::Method::GET),
            url,
            user_agent: user_agent.and_then(|u| HeaderValue::from_bytes(u).ok()),
            protocol: "HTTP/1.1",
            request_size: None,
        }
    }
}

impl Exchange {
    /// A request that arrived now from `peer`; `log` when the request log is on.
    pub(crate) fn new(fd: &FrontDoor, peer: SocketAddr, log: Option<LogFields>) -> Self {
        Exchange {
            arrived: Instant::now(),
            peer,
            service: None,
            trace: None,
            logger: log.as_ref().map(|_| fd.logger.clone()),
            log,
            finished: AtomicBool::new(false),
        }
    }

    /// Phase 5: counts the answer's status on its service and writes the request log entry
    /// (`response_size`: the answer's body length when its head says it).
    pub(crate) fn finish(
        &self,
        fd: &FrontDoor,
        status: u16,
        instance: Option<Arc<str>>,
        cold: bool,
        response_size: Option<u64>,
    ) {
        self.finished.store(true, Ordering::Relaxed);
        self.record(&fd.logger, status, instance, cold, response_size);
    }

    fn record(
        &self,
        logger: &RequestLogger,
        status: u16,
        instance: Option<Arc<str>>,
        cold: bool,
        response_size: Option<u64>,
    ) {
        if let Some(s) = &self.service {
            s.pool.counters.record_status(status);
        }
        let Some(info) = &self.log else { return };
        let (service, revision) = match &self.service {
            Some(s) => (s.spec.name.clone(), s.spec.revision.clone()),
            None => ("-".into(), "-".into()),
        };
        logger.log(RequestLog {
            service,
            revision,
            method: info.method.clone(),
            url: info.url.clone(),
            status,
            latency: self.arrived.elapsed(),
            remote_ip: self.peer.ip(),
            user_agent: info.user_agent.clone(),
            trace: self.trace.map(|t| t.id.to_log()),
            span_id: self.trace.map(|t| format!("{:016x}", t.span)),
            trace_sampled: self.trace.is_some_and(|t| t.sampled),
            protocol: info.protocol,
            request_size: info.request_size,
            response_size,
            instance,
            cold_start: cold,
        });
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.finished.load(Ordering::Relaxed) || self.service.is_none() {
            return;
        }
        let logger = self.logger.take().unwrap_or_else(RequestLogger::off);
        self.record(&logger, CLIENT_CLOSED, None, false, None);
    }
}

#[cfg(test)]
mod tests;
