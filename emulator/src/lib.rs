//! emu: Cloud Run on a laptop.
//!
//! Rooms, each with one job (docs/ARCHITECTURE.md): `spec` turns config into one validated
//! `Config`, `up` puts everything together from it (`cli` only parses the command line),
//! `model` (the `emu-model` crate) holds the pure autoscaler and admission rules, `frontdoor` is
//! the proxy (Cloud Run's rules, forwarding, errors), `admission` is the live queue, `service`
//! a running service and its supervisor, `instances` an instance and its runners and probes,
//! `scaler` samples and decides, `timeline` records what happened, `backends` runs PostgreSQL
//! and Redis, `jobs` runs Cloud Run jobs, `admin` answers `/_emu/`, `demo` is the built-in demo.

pub mod admin;
pub mod admission;
pub mod backends;
pub mod cli;
pub mod console;
pub mod demo;
pub mod frontdoor;
pub mod instances;
pub mod jobs;
pub mod metadata;
pub use emu_model as model;
pub mod ports;
pub mod proc;
pub mod scaler;
pub mod secrets;
pub mod service;
pub mod simulate_cli;
pub mod spec;
pub mod state;
pub mod telemetry;
pub mod timeline;
pub mod up;
pub mod watchdog;

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
