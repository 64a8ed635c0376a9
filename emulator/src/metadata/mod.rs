//! The metadata server every Cloud Run instance can reach: the project, region and service
//! account it runs as, and tokens for that account — what Google's client libraries ask for
//! (`google.auth.default()`, `fetch_id_token`, the Go and Node metadata clients).
//!
//! One per `emu up`, on a loopback port chosen by the kernel. Instances find it the way Google's
//! libraries look for an override: `GCE_METADATA_HOST` (paths) and `GCE_METADATA_IP` (the
//! detection ping), both `127.0.0.1:PORT`. Container instances share the host's network
//! (`instances/runner.rs`), so the same address reaches it from inside a container.
//!
//! As Google's server: every request must carry `Metadata-Flavor: Google` (403 otherwise, which
//! is what keeps a browser or an SSRF'd request from reading tokens), and every answer carries
//! it back. One difference: all instances of a run share one server, so `instance/id` names the
//! run, not the instance. ID tokens are signed by a key made at start; `/emu/jwks.json` (no
//! header needed, like Google's certificate URL) publishes it for verifiers.

mod tokens;
mod tree;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::spec::ProjectSettings;
pub use tokens::{KeyError, ISSUER};
pub use tree::Identity;

/// Where verifiers fetch the keys that sign this run's ID tokens.
pub const JWKS_PATH: &str = "/emu/jwks.json";
const FLAVOR: &str = "metadata-flavor";
const ROOT: &str = "/computeMetadata/v1";

/// Why the metadata server could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot listen for the metadata server on 127.0.0.1: {0}")]
    Bind(std::io::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A running metadata server; [`MetadataServer::stop`] ends it.
#[derive(Debug)]
pub struct MetadataServer {
    addr: SocketAddr,
    identity: Identity,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    identity: Identity,
    signer: tokens::Signer,
}

/// Generates the run's key, binds `127.0.0.1:0` and serves until stopped.
pub async fn start(project: &ProjectSettings) -> Result<MetadataServer, MetadataError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(MetadataError::Bind)?;
    let addr = listener.local_addr().map_err(MetadataError::Bind)?;
    let identity = Identity::new(project);
    let shared = Arc::new(Shared {
        identity: identity.clone(),
        signer: tokens::Signer::generate()?,
    });
    let app = axum::Router::new().fallback(handle).with_state(shared);
    let stop = CancellationToken::new();
    let until = stop.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(until)
            .await
        {
            tracing::warn!("metadata server stopped: {e}");
        }
    });
    Ok(MetadataServer {
        addr,
        identity,
        stop,
        task,
    })
}

impl MetadataServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The env that points Google's client libraries at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        let at = self.addr.to_string();
        vec![
            ("GCE_METADATA_HOST".into(), at.clone()),
            ("GCE_METADATA_IP".into(), at),
        ]
    }

    /// Stops serving and waits until it has; called after the last instance has stopped (one
    /// may ask while it drains). Dropping the server stops it too, without waiting.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for MetadataServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Every request: the JWKS, or the header check and then the tree.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "Method Not Allowed\n",
        );
    }
    let path = uri.path();
    if path == JWKS_PATH {
        let body = serde_json::to_string(shared.signer.jwks()).unwrap_or_default();
        return reply(StatusCode::OK, "application/json", body);
    }
    if headers.get(FLAVOR).and_then(|v| v.to_str().ok()) != Some("Google") {
        // Cloud Run's server sends this without a Metadata-Flavor of its own.
        let mut r = (
            StatusCode::FORBIDDEN,
            "Missing required header \"Metadata-Flavor\": \"Google\"\n",
        )
            .into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return r;
    }
    let answer = match path {
        // What google-auth pings to tell it runs on Google Cloud.
        "/" => tree::Reply::Text("computeMetadata/\n".into()),
        "/computeMetadata" | "/computeMetadata/" => tree::Reply::Text("v1/\n".into()),
        p => match p.strip_prefix(ROOT) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                tree::answer(&shared.identity, &shared.signer, rest, &query)
            }
            _ => tree::Reply::NotFound,
        },
    };
    match answer {
        tree::Reply::Text(t) => reply(StatusCode::OK, "application/text", t),
        tree::Reply::Json(v) => reply(StatusCode::OK, "application/json", v.to_string()),
        tree::Reply::NotFound => reply(StatusCode::NOT_FOUND, "text/plain", "Not Found\n"),
        tree::Reply::BadRequest(why) => reply(StatusCode::BAD_REQUEST, "text/plain", why + "\n"),
        tree::Reply::Failed(why) => {
            reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", why + "\n")
        }
    }
}

/// A response with Google's `Metadata-Flavor` header.
fn reply(status: StatusCode, content_type: &'static str, body: impl Into<String>) -> Response {
    let mut r = (status, body.into()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(FLAVOR, HeaderValue::from_static("Google"));
    r
}
