//! emu: Cloud Run on a laptop.
//!
//! Rooms, each with one job: `spec` turns config into validated services, `model` holds the
//! pure autoscaler, `frontdoor` is the proxy (routing, admission, forwarding, Cloud Run's
//! errors), `instances` starts and stops instances, `scaler` samples and decides, `backends` runs
//! PostgreSQL and Redis, `jobs` runs Cloud Run jobs, `admin` answers `/_emu/`, `demo` is the
//! built-in demo service, and `up` puts them together from one config (`cli` only parses the
//! command line).

pub mod admin;
pub mod backends;
pub mod cli;
pub mod demo;
pub mod frontdoor;
pub mod instances;
pub mod jobs;
pub mod model;
pub mod proc;
pub mod scaler;
pub mod secrets;
pub mod service;
pub mod simulate_cli;
pub mod spec;
pub mod state;
pub mod telemetry;
pub mod up;

/// Resolves on Ctrl-C or SIGTERM: the one shutdown signal every long-running part waits on.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
