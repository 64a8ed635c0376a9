//! The one place where failures on the request path become Cloud Run's status codes and bodies:
//! one error value, rendered per protocol — a hyper response ([`ProxyError::into_response`], for
//! HTTP/1.1 and h2c alike; a gRPC client maps 429/503/504 to `UNAVAILABLE` by gRPC's
//! HTTP-status rules, as it does Cloud Run's) or HTTP/1.1 bytes on the fast path
//! ([`ProxyError::write_h1`]). Every answer names the instance involved: emu's own carry
//! `x-emu-instance: none`.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::wire::{push_date, push_status_line, put_decimal};
use crate::admission::AdmitError;

/// Cloud Run's sentence for a request that found no instance.
pub const NO_INSTANCE: &str = "The request was aborted because there was no available instance.";

/// Everything that can go wrong between the client and an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    Admit(AdmitError),
    /// The request timeout passed before the instance answered.
    UpstreamTimeout,
    /// Request body over 32 MiB.
    BodyTooLarge,
    /// The instance failed mid-request (crashed, reset the connection).
    InstanceFailed,
    /// No service matches the request's host.
    NoService(String),
    /// `/_emu/` from a non-loopback peer.
    Forbidden,
    /// The client's own framing is broken (a malformed chunked body, a Content-Length that is
    /// no number, a `PRI` that is no HTTP/2 preface): its fault, not the instance's.
    BadRequest,
    /// A path Google's front end keeps for itself (`/healthz`, `/_ah/…`, `/eventlog`).
    Reserved(String),
    /// A method Google's front end refuses (`TRACE`).
    MethodNotAllowed {
        method: String,
        path: String,
    },
    /// A new connection while the front door holds `[emu] max_connections`.
    TooManyConnections,
    /// A new connection from a client that holds `[emu] max_connections_per_client`.
    TooManyClientConnections,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Admit(AdmitError::NoAvailableInstance)
            | ProxyError::TooManyClientConnections => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Admit(AdmitError::NoInstanceStarted) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Admit(AdmitError::Timeout) | ProxyError::UpstreamTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::Admit(AdmitError::ShuttingDown)
            | ProxyError::InstanceFailed
            | ProxyError::TooManyConnections => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NoService(_) | ProxyError::Reserved(_) => StatusCode::NOT_FOUND,
            ProxyError::Forbidden => StatusCode::FORBIDDEN,
            ProxyError::BadRequest => StatusCode::BAD_REQUEST,
            ProxyError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn detail(&self) -> String {
        match self {
            ProxyError::Admit(AdmitError::NoAvailableInstance)
            | ProxyError::Admit(AdmitError::NoInstanceStarted) => NO_INSTANCE.into(),
            ProxyError::Admit(AdmitError::Timeout) | ProxyError::UpstreamTimeout => {
                "upstream request timeout".into()
            }
            ProxyError::Admit(AdmitError::ShuttingDown) => "The service is shutting down.".into(),
            ProxyError::InstanceFailed => {
                "The request failed because the instance serving it stopped or crashed.".into()
            }
            ProxyError::BodyTooLarge => {
                "Your client issued a request that was too large: HTTP/1 request bodies are limited to 32 MiB.".into()
            }
            ProxyError::NoService(host) => format!("No service matches host {host:?}."),
            ProxyError::Forbidden => "The /_emu/ endpoints answer only loopback clients.".into(),
            ProxyError::BadRequest => {
                "Your client has issued a malformed or illegal request.".into()
            }
            ProxyError::TooManyConnections => {
                "The front door holds as many connections as it takes (max_connections); try again when some have closed.".into()
            }
            ProxyError::TooManyClientConnections => {
                "Your client holds as many connections as one client may (max_connections_per_client); close some or reuse them.".into()
            }
            ProxyError::Reserved(_) | ProxyError::MethodNotAllowed { .. } => String::new(),
        }
    }

    /// The page Google's own front end answers with (reserved paths, refused methods).
    fn google_page(&self) -> Option<String> {
        let (code, reason, what) = match self {
            ProxyError::Reserved(path) => (
                404,
                "Not Found",
                format!(
                    "The requested URL <code>{}</code> was not found on this server.",
                    escape(path)
                ),
            ),
            ProxyError::MethodNotAllowed { method, path } => (
                405,
                "Method Not Allowed",
                format!(
                    "The request method <code>{}</code> is inappropriate for the URL <code>{}</code>.",
                    escape(method),
                    escape(path)
                ),
            ),
            _ => return None,
        };
        Some(format!(
            "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error {code} ({reason})!!1</title>\n  <p><b>{code}.</b> <ins>That’s an error.</ins>\n  <p>{what}  <ins>That’s all we know.</ins>\n"
        ))
    }

    /// A small HTML page shaped like Google's front end's error pages.
    pub fn html(&self) -> String {
        if let Some(page) = self.google_page() {
            return page;
        }
        let status = self.status();
        let reason = status.canonical_reason().unwrap_or("Error");
        format!(
            "<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n<title>{} {reason}</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n<h1>Error: {reason}</h1>\n<h2>{}</h2>\n</body></html>\n",
            status.as_u16(),
            self.detail()
        )
    }

    /// True when the connection is closed after this answer: the client's bytes can no longer
    /// be trusted to frame the next request.
    pub fn closes(&self) -> bool {
        matches!(
            self,
            ProxyError::BadRequest
                | ProxyError::TooManyConnections
                | ProxyError::TooManyClientConnections
        )
    }

    /// [`Self::html`] as a response (HTTP/1.1 or h2c).
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let mut resp = Response::new(Full::new(Bytes::from(self.html())));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=UTF-8"),
        );
        h.insert("x-emu-instance", HeaderValue::from_static("none"));
        if self.closes() {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    /// The answer as a gRPC client gets it: the same HTTP status as Cloud Run's, no body (a gRPC
    /// client would try to read an HTML page as messages) and the `grpc-status` that gRPC's
    /// HTTP-status rules give that status (429/502/503/504 → `UNAVAILABLE`, 404 →
    /// `UNIMPLEMENTED`, …), so every client library maps it the same way.
    pub fn into_grpc_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let code = match status.as_u16() {
            400 => 13,
            401 => 16,
            403 => 7,
            404 => 12,
            429 | 502 | 503 | 504 => 14,
            _ => 2,
        };
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", HeaderValue::from(code));
        if let Ok(v) = HeaderValue::from_str(&percent_encode(&self.detail())) {
            h.insert("grpc-message", v);
        }
        h.insert("x-emu-instance", HeaderValue::from_static("none"));
        resp
    }

    /// [`Self::into_response`] or [`Self::into_grpc_response`], as the request asked.
    pub fn render(self, grpc: bool) -> Response<Full<Bytes>> {
        if grpc {
            self.into_grpc_response()
        } else {
            self.into_response()
        }
    }

    /// [`Self::html`] as HTTP/1.1 bytes, into `out` (cleared first); the body left out for a
    /// HEAD request.
    pub fn write_h1(&self, out: &mut Vec<u8>, head_only: bool, close: bool) {
        let status = self.status();
        let body = self.html();
        out.clear();
        push_status_line(
            out,
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error").as_bytes(),
        );
        out.extend_from_slice(
            b"content-type: text/html; charset=UTF-8\r\nx-emu-instance: none\r\ncontent-length: ",
        );
        put_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
        push_date(out);
        if close || self.closes() {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(body.as_bytes());
        }
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2, "Responses").
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// True for a gRPC request (`content-type: application/grpc`, `application/grpc+proto`, …).
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// HTML-escapes what a client sent before it goes into a page.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl From<AdmitError> for ProxyError {
    fn from(e: AdmitError) -> Self {
        ProxyError::Admit(e)
    }
}
