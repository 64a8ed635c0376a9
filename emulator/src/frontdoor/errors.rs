//! The one place where failures on the request path become Cloud Run's status codes and bodies.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;

use super::admission::AdmitError;

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
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Admit(AdmitError::NoAvailableInstance) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Admit(AdmitError::NoInstanceStarted) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Admit(AdmitError::Timeout) | ProxyError::UpstreamTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::Admit(AdmitError::ShuttingDown) | ProxyError::InstanceFailed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NoService(_) => StatusCode::NOT_FOUND,
            ProxyError::Forbidden => StatusCode::FORBIDDEN,
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
        }
    }

    /// A small HTML page shaped like Google's front end's error pages.
    pub fn html(&self) -> String {
        let status = self.status();
        let reason = status.canonical_reason().unwrap_or("Error");
        format!(
            "<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n<title>{} {reason}</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n<h1>Error: {reason}</h1>\n<h2>{}</h2>\n</body></html>\n",
            status.as_u16(),
            self.detail()
        )
    }

    /// [`Self::html`] as a response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let mut resp = Response::new(Full::new(Bytes::from(self.html())));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/html; charset=UTF-8"),
        );
        resp
    }
}

impl From<AdmitError> for ProxyError {
    fn from(e: AdmitError) -> Self {
        ProxyError::Admit(e)
    }
}
