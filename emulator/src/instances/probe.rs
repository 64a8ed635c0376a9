//! Startup and liveness probes, as Cloud Run runs them: a TCP connect or an HTTP GET on PORT,
//! first after `initial_delay`, then every `period`, failing after `failure_threshold` misses.

use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::spec::{Probe, ProbeAction};

/// The client probes use (no keep-alive across probes: each is a fresh check).
pub type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

pub fn probe_client() -> ProbeClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(HttpConnector::new())
}

/// How often a TCP probe retries its connect within one attempt.
const TCP_RETRY: Duration = Duration::from_millis(50);

/// One probe attempt: Ok when it passes, Err with what it saw.
pub async fn attempt(probe: &Probe, addr: &Authority, client: &ProbeClient) -> Result<(), String> {
    let deadline = Instant::now() + probe.timeout;
    let target = target(probe, addr);
    let addr = &target;
    match &probe.action {
        ProbeAction::Tcp => {
            // Cloud Run keeps trying to connect until the attempt's timeout.
            loop {
                match tokio::time::timeout_at(deadline, TcpStream::connect(addr.as_str())).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) if Instant::now() + TCP_RETRY >= deadline => {
                        return Err(format!("TCP connect to {addr} failed: {e}"))
                    }
                    Ok(Err(_)) => tokio::time::sleep(TCP_RETRY).await,
                    Err(_) => return Err(format!("TCP connect to {addr} timed out")),
                }
            }
        }
        ProbeAction::Http { path } => {
            let uri = format!("http://{addr}{path}");
            let req = match http::Request::get(&uri)
                .header(http::header::USER_AGENT, "emu-probe")
                .body(Empty::new())
            {
                Ok(r) => r,
                Err(e) => return Err(format!("bad probe URL {uri}: {e}")),
            };
            match tokio::time::timeout_at(deadline, client.request(req)).await {
                Ok(Ok(resp)) if (200..400).contains(&resp.status().as_u16()) => Ok(()),
                Ok(Ok(resp)) => Err(format!("GET {path} answered {}", resp.status())),
                Ok(Err(e)) => Err(format!("GET {path} failed: {e}")),
                Err(_) => Err(format!("GET {path} timed out after {:?}", probe.timeout)),
            }
        }
    }
}

/// Where a probe goes: the instance's address, or the same host on the probe's own port.
fn target(probe: &Probe, addr: &Authority) -> Authority {
    probe
        .port
        .and_then(|p| Authority::try_from(format!("{}:{p}", addr.host()).as_str()).ok())
        .unwrap_or_else(|| addr.clone())
}

/// Runs a startup probe to its end: Ok once an attempt passes, Err after `failure_threshold`
/// consecutive failures.
pub async fn startup(probe: &Probe, addr: &Authority, client: &ProbeClient) -> Result<(), String> {
    tokio::time::sleep(probe.initial_delay).await;
    let mut failures = 0;
    loop {
        let started = Instant::now();
        match attempt(probe, addr, client).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                failures += 1;
                if failures >= probe.failure_threshold {
                    return Err(format!(
                        "startup probe failed {failures} time(s), last: {e}"
                    ));
                }
            }
        }
        tokio::time::sleep_until(started + probe.period).await;
    }
}

/// Runs a liveness probe until it fails `failure_threshold` times in a row; returns why.
pub async fn liveness(probe: &Probe, addr: &Authority, client: &ProbeClient) -> String {
    tokio::time::sleep(probe.initial_delay).await;
    let mut failures = 0;
    loop {
        tokio::time::sleep(probe.period).await;
        match attempt(probe, addr, client).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures >= probe.failure_threshold {
                    return format!("liveness probe failed {failures} time(s), last: {e}");
                }
            }
        }
    }
}
