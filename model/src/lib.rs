//! Pure models: the autoscaler, its windows, cold-start delays, admission and queueing, and the
//! `emu simulate` engine.
//!
//! Nothing here does I/O or reads a clock: every function takes `now` (time since an arbitrary
//! origin) and its inputs and returns a decision, so tests replay traces with no sleeping and the
//! simulator can run an hour of load in milliseconds.

pub mod admission;
pub mod annotations;
pub mod autoscaler;
pub mod coldstart;
pub mod config;
pub mod load;
pub mod simulate;
pub mod window;

pub use admission::{
    Admission, AdmitError, Arrival, GiveUp, Occupancy, QueueSnapshot, StartId, Ticket, Waiting,
};
pub use annotations::{overrides_from_annotations, AnnotationError};
pub use autoscaler::{Autoscaler, Decision, Reason};
pub use coldstart::ColdStartDelay;
pub use config::{AutoscalerConfig, AutoscalerOverrides, Profile};
pub use load::{load_from_report_json, parse_trace_csv, Load, ServiceTime, Stage, TraceSecond};
pub use simulate::{render_table, simulate, SimResult, SimSecond, SimService, SimTotals};

/// Errors from the model: a configuration out of range, or load input that cannot be read.
/// Each says which field or line is wrong so the user can fix the input (exit code 2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// An autoscaler or simulation setting outside the range Knative / Cloud Run accept.
    #[error("invalid autoscaler setting `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    /// A profile name that is neither `cloud-run` nor `knative`.
    #[error("unknown profile {0:?}: expected \"cloud-run\" or \"knative\"")]
    Profile(String),
    /// A load trace (CSV) line that cannot be read; `line` is 1-based.
    #[error("trace line {line}: {reason}")]
    Trace { line: usize, reason: String },
    /// A loadtest `report.json` whose timeline cannot be turned into load.
    #[error("report.json: {0}")]
    Report(String),
}
