//! The one HTTP client of a run (probe, load and emu's events): HTTPS with rustls and the
//! platform's roots plus `--ca-cert`, or no certificate check at all with `--insecure`;
//! HTTP/2 when a TLS server offers it (ALPN); `--header` on every request.

use std::path::{Path, PathBuf};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// What `--header`, `--ca-cert` and `--insecure` asked for, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientOptions {
    /// Sent on every request; they replace a scenario header of the same name.
    pub headers: Vec<(String, String)>,
    /// Extra roots (PEM) trusted beside the platform's, and the file they came from.
    pub ca_cert: Option<(PathBuf, Vec<u8>)>,
    /// Accept any certificate (a test server's; never the real service's).
    pub insecure: bool,
}

/// `Name: value` → a valid header pair; the message says what is wrong.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once(':').ok_or_else(|| {
        format!("--header {s:?} must be \"Name: value\", e.g. \"Authorization: Bearer $TOKEN\"")
    })?;
    let (name, value) = (name.trim(), value.trim());
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("--header {s:?}: {name:?} is not a header name"))?;
    HeaderValue::from_str(value)
        .map_err(|_| format!("--header {s:?}: the value has a character a header cannot hold"))?;
    Ok((name.to_string(), value.to_string()))
}

/// Reads `--ca-cert FILE`: at least one PEM certificate, else a message naming the file.
pub fn read_ca_cert(path: &Path) -> Result<(PathBuf, Vec<u8>), String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("--ca-cert {}: cannot read it ({e})", path.display()))?;
    match reqwest::Certificate::from_pem_bundle(&bytes) {
        Ok(certs) if !certs.is_empty() => Ok((path.to_path_buf(), bytes)),
        _ => Err(format!(
            "--ca-cert {}: no PEM certificate in it (give the CA's -----BEGIN CERTIFICATE----- file)",
            path.display()
        )),
    }
}

/// The client for a run; an error only when TLS cannot be set up at all.
pub fn build(opts: &ClientOptions) -> Result<reqwest::Client, String> {
    let mut headers = HeaderMap::new();
    for (k, v) in &opts.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .user_agent(concat!("loadtest/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .tls_danger_accept_invalid_certs(opts.insecure);
    if let Some((path, pem)) = &opts.ca_cert {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
        b = b.tls_certs_merge(certs);
    }
    b.build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}
