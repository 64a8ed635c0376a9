//! Request and answer heads on the fast path: parsed with httparse, checked for what this path
//! takes (HTTP/1.1 instances only: a request for an h2c one goes hyper's way), and rewritten by the front door's one set of Cloud Run rules ([`crate::frontdoor::rules`]).

use httparse::Header;

use super::chunked::ChunkScanner;
use super::{MAX_HEAD, MAX_HEADERS, MAX_INLINE_BODY};
use crate::admission::Permit;
use crate::frontdoor::errors::ProxyError;
use crate::frontdoor::proxy::MAX_BODY;
use crate::frontdoor::rules::{self, Answerer, Exchange, LogFields, Pass};
use crate::frontdoor::wire::{parse_length, push_date, push_status_line};
use crate::frontdoor::{FrontDoor, Route};
use crate::spec::Protocol;

/// What the head at the front of `cbuf` asks for.
pub(super) enum Plan {
    NeedMore,
    Handoff,
    Forward(Req),
    /// Answered by the front door itself (no such service, a reserved path, bad framing).
    Local(Req, ProxyError),
}

/// One parsed request, its upstream head already written to `out`.
pub(super) struct Req {
    pub head_len: usize,
    pub body_len: usize,
    pub is_head: bool,
    pub idempotent: bool,
    pub close: bool,
    /// Where in `out` the head's final CRLF starts (a Host header may go there).
    pub head_end: usize,
    pub has_host: bool,
    pub ex: Exchange,
}

/// How an answer's body ends.
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked(ChunkScanner),
    UntilClose,
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// What the request's own headers say about framing and routing.
struct Facts<'h> {
    length: Option<u64>,
    close: bool,
    host: Option<&'h [u8]>,
    user_agent: Option<&'h [u8]>,
}

/// `Err(None)`: the general path takes it; `Err(Some(e))`: answered with `e`.
fn facts<'h>(headers: &[Header<'h>]) -> Result<Facts<'h>, Option<ProxyError>> {
    let mut f = Facts {
        length: None,
        close: false,
        host: None,
        user_agent: None,
    };
    for h in headers {
        let n = h.name;
        if eq(n, "content-length") {
            match (parse_length(h.value), f.length) {
                (Some(v), None) => f.length = Some(v),
                (Some(v), Some(prev)) if v == prev => {}
                // No number, or two that differ: the body's end is unknowable (RFC 9112 §6.3).
                _ => return Err(Some(ProxyError::BadRequest)),
            }
        } else if eq(n, "transfer-encoding") || eq(n, "upgrade") || eq(n, "expect") {
            return Err(None);
        } else if eq(n, "connection") {
            f.close |= rules::tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"close"));
        } else if eq(n, "host") {
            if f.host.is_some() {
                // Two Hosts: which one routes is ambiguous; the general path decides.
                return Err(None);
            }
            f.host = Some(h.value);
        } else if eq(n, "user-agent") {
            f.user_agent = Some(h.value);
        }
    }
    Ok(f)
}

/// Reads the head at the front of `cbuf`; for a request the fast path takes, writes the head to
/// send the instance into `out` (without its final CRLF at `head_end`).
pub(super) fn plan(
    cbuf: &[u8],
    out: &mut Vec<u8>,
    fd: &FrontDoor,
    route: &Route,
    peer: std::net::SocketAddr,
    peer_ip: &str,
) -> Plan {
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
    let (f, refused) = match facts(req.headers) {
        Ok(f) => {
            let refused = rules::refuse(method.as_bytes(), target.as_bytes());
            (f, refused)
        }
        Err(None) => return Plan::Handoff,
        Err(Some(e)) => (
            Facts {
                length: Some(0),
                close: true,
                host: None,
                user_agent: None,
            },
            Some(e),
        ),
    };
    let body_len = f.length.unwrap_or(0);
    let too_large = body_len > MAX_BODY as u64;
    if body_len > MAX_INLINE_BODY as u64 && !too_large {
        return Plan::Handoff;
    }
    let log = fd.logger.enabled().then(|| {
        let mut fields = LogFields::new(method.as_bytes(), target.as_bytes(), f.host, f.user_agent);
        fields.request_size = f.length;
        fields
    });
    let mut r = Req {
        head_len,
        // An answer that refuses the body does not wait for it.
        body_len: if too_large || refused.is_some() {
            0
        } else {
            body_len as usize
        },
        is_head: method == "HEAD",
        idempotent: matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE"),
        close: f.close || too_large || refused.as_ref().is_some_and(ProxyError::closes),
        head_end: 0,
        has_host: f.host.is_some(),
        ex: Exchange::new(fd, peer, log),
    };
    if let Some(e) = refused {
        return Plan::Local(r, e);
    }
    let service = match fd.route_host(route, f.host) {
        Ok(s) => s.clone(),
        Err(e) => return Plan::Local(r, e),
    };
    if service.spec.protocol == Protocol::H2c {
        // This path writes HTTP/1.1 to instances; hyper's speaks HTTP/2 to an h2c one.
        return Plan::Handoff;
    }
    r.ex.service = Some(service);
    if too_large {
        return Plan::Local(r, ProxyError::BodyTooLarge);
    }

    // The head the instance is sent.
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let pairs = req.headers.iter().map(|h| (h.name.as_bytes(), h.value));
    r.ex.trace = Some(rules::rewrite_request(pairs, peer_ip, Pass::default(), out));
    r.head_end = out.len();
    out.extend_from_slice(b"\r\n");
    Plan::Forward(r)
}

pub(super) struct AnswerHead {
    pub len: usize,
    pub status: u16,
    pub framing: Framing,
    pub upstream_keep: bool,
    pub close: bool,
}

/// How the answer's body is framed, and whether the instance keeps its connection open.
fn framing_of(resp: &httparse::Response<'_, '_>, req: &Req) -> Option<(Framing, bool)> {
    let status = resp.code?;
    let http10 = resp.version == Some(0);
    let mut length: Option<u64> = None;
    let (mut chunked, mut te) = (false, false);
    let mut upstream_keep = !http10;
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
            chunked = rules::tokens(h.value)
                .last()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if eq(n, "connection") {
            for t in rules::tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    upstream_keep = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    upstream_keep = upstream_keep || http10;
                }
            }
        }
    }
    let framing = if (100..200).contains(&status) || req.is_head || status == 204 || status == 304 {
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
    Some((framing, upstream_keep))
}

/// Parses the answer head at the front of `ubuf` and writes the one the client gets to `out`.
pub(super) fn answer_head(
    ubuf: &[u8],
    out: &mut Vec<u8>,
    req: &Req,
    permit: &Permit,
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
    let (framing, upstream_keep) = framing_of(&resp, req)?;
    let informational = (100..200).contains(&status);
    let close =
        !informational && (req.close || shutting_down || matches!(framing, Framing::UntilClose));

    out.clear();
    push_status_line(out, status, resp.reason.unwrap_or("").as_bytes());
    let pairs = resp.headers.iter().map(|h| (h.name.as_bytes(), h.value));
    let id = permit.slot.id_header();
    let answerer = Answerer {
        instance: id.map_or(permit.slot.id.as_bytes(), |v| v.as_bytes()),
        cold: permit.cold,
        upgrade: false,
    };
    let seen = rules::rewrite_response(pairs, (!informational).then_some(&answerer), out);
    if !informational {
        if !seen.date {
            push_date(out);
        }
        if matches!(framing, Framing::Chunked(_)) {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
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
