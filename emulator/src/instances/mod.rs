//! An instance and what it takes to run one: the instance's live state ([`instance`]), the
//! runners that start it as a process, a container or an upstream ([`runner`]), and its probes
//! ([`probe`]). Keeping a service's instances at a count is the supervisor's job, which lives
//! with the service (`service/supervisor.rs`), so this room knows nothing of services.

pub mod instance;
pub mod probe;
pub mod runner;

pub use instance::{Instance, InstanceState};
