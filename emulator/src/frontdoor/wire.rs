//! Small pieces of HTTP/1.1's wire form the front door writes by hand on its hot path: no
//! formatting machinery, nothing allocated per request.

use std::time::SystemTime;

use bytes::BufMut;

/// A request's 32-hex-digit trace id, kept on the stack: it becomes a `String` only for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TraceId([u8; 32]);

impl TraceId {
    /// From 32 hex digits; anything else is not a trace id.
    pub(crate) fn from_hex(s: &[u8]) -> Option<TraceId> {
        let id = <[u8; 32]>::try_from(s).ok()?;
        id.iter().all(u8::is_ascii_hexdigit).then_some(TraceId(id))
    }
    pub(crate) fn random() -> TraceId {
        let mut out = [0u8; 32];
        hex_into(rand::random::<u128>(), &mut out);
        TraceId(out)
    }
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub(crate) fn to_log(self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// A request's trace as its log entry carries it: the trace, the span emu gave the request (the
/// one in the headers it made, else a fresh one), and whether the trace is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Trace {
    pub id: TraceId,
    pub span: u64,
    pub sampled: bool,
}

/// `00-TRACE-SPAN-FLAGS`: the trace, and the sampled bit of its flags.
pub(crate) fn trace_from_traceparent(v: &[u8]) -> Option<(TraceId, bool)> {
    let mut parts = v.trim_ascii().split(|b| *b == b'-');
    let _version = parts.next()?;
    let id = parts.next()?;
    parts.next()?;
    let flags = parts.next()?;
    let sampled = std::str::from_utf8(flags)
        .ok()
        .and_then(|f| u8::from_str_radix(f, 16).ok())
        .is_some_and(|f| f & 1 == 1);
    Some((TraceId::from_hex(id)?, sampled))
}

/// `TRACE/SPAN;o=1`: the trace, sampled when `o=1`.
pub(crate) fn trace_from_cloud(v: &[u8]) -> Option<(TraceId, bool)> {
    let v = v.trim_ascii();
    let sampled = v.ends_with(b";o=1");
    Some((TraceId::from_hex(v.split(|b| *b == b'/').next()?)?, sampled))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `v`, zero-padded to fill `out`.
pub(crate) fn hex_into(mut v: u128, out: &mut [u8]) {
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

pub(crate) fn put_decimal(buf: &mut impl BufMut, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.put_slice(&digits[i..]);
}

pub(crate) fn push_status_line(out: &mut Vec<u8>, status: u16, reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    put_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// `date: <IMF-fixdate>\r\n`, formatted once a second per thread.
pub(crate) fn push_date(out: &mut Vec<u8>) {
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

/// A Content-Length value: digits only, and it fits in a u64.
pub(crate) fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}
