//! `loadtest`: drive a scenario at a service with goose, judge it against SLOs, join what an
//! emu front door saw, and write reports.
//!
//! Layers, each using only those below it: [`cli`] (clap, flag text) → [`commands`] (typed
//! options in, terminal output and exit code out) → the libraries: [`run`], [`compare`],
//! [`merge`], over [`scenario`], [`engine`], [`slo`], [`emu`] and [`report`]. `main.rs` only
//! parses arguments, so tests drive the same code the binary does.

pub mod cli;
pub mod commands;
pub mod compare;
pub mod emu;
pub mod engine;
pub mod merge;
pub mod report;
pub mod run;
pub mod scenario;
pub mod slo;
