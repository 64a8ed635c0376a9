//! How many requests may be in flight, and whose fault a late send is.
//!
//! Pure: the open-file limit and every instant are passed in, so the rules are tested without
//! a clock, a socket or a slow machine.
//!
//! # Whose fault a late send is
//!
//! Every goose user claims the next slot as soon as it is free, then sleeps until the slot is
//! due. So a slot claimed *before* it was due and sent late was held up by the generator
//! itself (its timer or its CPU woke the user late). A slot claimed *after* it was due found no
//! free user: when every other user was waiting on the target at that moment, the target held
//! all `max_in_flight` requests and the slot could not be sent — the service's failure, not the
//! generator's. A late claim with users not in flight (still waking, still recording) is the
//! generator's again.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;

/// Sends later than this against their slot are late (timer jitter on a busy machine is below).
pub const LATE: Duration = Duration::from_millis(5);

/// The most users (requests in flight) a run gets, whatever the scenario asks.
pub const HARD_MAX: usize = 10_000;
/// The fewest users a run gets by default.
const MIN_DEFAULT: usize = 16;
/// File descriptors kept for everything that is not a connection to the target.
const FD_RESERVE: u64 = 64;

/// Why a slot was sent when it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendCause {
    OnTime,
    /// Every allowed request was in flight when the slot came due.
    TargetSaturated,
    /// The generator's own timer or CPU held it up.
    GeneratorLate,
}

/// Classifies one send. Offsets are from the run's start; `others_in_flight` counts the other
/// users' requests sent and not yet answered when this slot was claimed.
pub fn classify(
    due: Duration,
    claimed: Duration,
    sent: Duration,
    others_in_flight: u64,
    users: usize,
) -> SendCause {
    if sent.saturating_sub(due) <= LATE {
        SendCause::OnTime
    } else if claimed.saturating_sub(due) > LATE && others_in_flight + 1 >= users as u64 {
        SendCause::TargetSaturated
    } else {
        SendCause::GeneratorLate
    }
}

/// What the pacing of a run came to: its in-flight cap and who made sends late. Flattened
/// into the report's `load`; every field defaults, so reports written before it still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pacing {
    /// Most requests allowed in flight at once (= goose users).
    pub max_in_flight: usize,
    /// How `max_in_flight` was chosen, in words.
    pub max_in_flight_basis: String,
    /// The process's open-file limit (soft, after raising it to the hard limit), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_file_limit: Option<u64>,
    /// Most requests seen in flight at once.
    pub peak_in_flight: u64,
    /// Slots that could not be sent on time because the target held every allowed request.
    pub not_sent_target_saturated: u64,
    /// Slots the generator itself sent late (its timer or CPU).
    pub sent_late_by_generator: u64,
}

/// The cap: the scenario's `max_in_flight`, else enough for every request of the peak second
/// to wait the whole request timeout (Little's law: in flight = rate × time in the system), so
/// that a slow target shows up as timeouts and latency rather than as a cap; at least 16, at
/// most [`HARD_MAX`] and at most what the open-file limit leaves for connections.
///
/// Returns a [`Pacing`] with the cap filled in and nothing counted yet.
pub fn in_flight_cap(scenario: &Scenario, open_file_limit: Option<u64>) -> Pacing {
    let fd_room = open_file_limit.map(|n| n.saturating_sub(FD_RESERVE).max(1) as usize);
    let (wanted, mut basis) = match scenario.max_in_flight {
        Some(m) => (m, format!("max_in_flight = {m} in the scenario")),
        None => {
            let rate = scenario.peak_rps();
            let secs = scenario.timeout.as_secs_f64();
            let n = ((rate * secs).ceil() as usize).clamp(MIN_DEFAULT, HARD_MAX);
            (
                n,
                format!(
                    "peak {} rps × {} s request timeout (at least {MIN_DEFAULT}, at most {HARD_MAX})",
                    crate::scenario::fmt_num(rate),
                    crate::scenario::fmt_num(secs)
                ),
            )
        }
    };
    let mut max = wanted.min(HARD_MAX);
    if let Some(room) = fd_room.filter(|room| *room < max) {
        max = room;
        basis.push_str(&format!(
            ", bounded by the open-file limit {} (less {FD_RESERVE} kept)",
            open_file_limit.unwrap_or(0)
        ));
    }
    Pacing {
        max_in_flight: max.max(1),
        max_in_flight_basis: basis,
        open_file_limit,
        ..Pacing::default()
    }
}

/// Raises the soft open-file limit to the hard one (each request in flight is a socket) and
/// returns it; `None` where the limit cannot be read.
pub fn open_file_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_late_claim_with_every_user_in_flight_is_the_targets() {
        // Claimed 300 ms after it was due while the 3 other users all waited on the target.
        assert_eq!(
            classify(ms(100), ms(400), ms(400), 3, 4),
            SendCause::TargetSaturated
        );
        // The same late claim with a user free (waking, recording): the generator's.
        assert_eq!(
            classify(ms(100), ms(400), ms(400), 2, 4),
            SendCause::GeneratorLate
        );
        // Claimed in time but woken late: the generator's timer or CPU, whatever is in flight.
        assert_eq!(
            classify(ms(100), ms(50), ms(400), 3, 4),
            SendCause::GeneratorLate
        );
        // Within the tolerance is on time.
        assert_eq!(classify(ms(100), ms(104), ms(104), 3, 4), SendCause::OnTime);
        assert_eq!(classify(ms(100), ms(20), ms(101), 0, 4), SendCause::OnTime);
    }

    fn scenario(extra: &str) -> Scenario {
        let text = format!(
            "{extra}\n[[stage]]\nrps = 200\nhold = \"10s\"\n[[request]]\nname = \"a\"\npath = \"/\"\n"
        );
        crate::scenario::parse(Path::new("t.toml"), &text).unwrap()
    }

    #[test]
    fn the_default_cap_is_peak_rate_times_timeout_within_the_open_file_limit() {
        let sc = scenario("timeout = \"2s\"");
        let cap = in_flight_cap(&sc, Some(1_048_576));
        assert_eq!(cap.max_in_flight, 400);
        assert!(
            cap.max_in_flight_basis.contains("peak 200 rps × 2 s"),
            "{}",
            cap.max_in_flight_basis
        );
        // 30 s default timeout: 6000.
        assert_eq!(in_flight_cap(&scenario(""), None).max_in_flight, 6000);
        // A 1024 open-file limit leaves 960 sockets.
        let cap = in_flight_cap(&scenario(""), Some(1024));
        assert_eq!(cap.max_in_flight, 960);
        assert!(
            cap.max_in_flight_basis.contains("open-file limit 1024"),
            "{}",
            cap.max_in_flight_basis
        );
        assert_eq!(cap.open_file_limit, Some(1024));
        // Tiny loads still get 16.
        let tiny = scenario("timeout = \"10ms\"");
        assert_eq!(in_flight_cap(&tiny, None).max_in_flight, 16);
    }

    #[test]
    fn the_scenarios_cap_wins_but_not_over_the_open_file_limit() {
        let sc = scenario("max_in_flight = 3");
        let cap = in_flight_cap(&sc, Some(1024));
        assert_eq!(cap.max_in_flight, 3);
        assert_eq!(cap.max_in_flight_basis, "max_in_flight = 3 in the scenario");
        let sc = scenario("max_in_flight = 5000");
        assert_eq!(in_flight_cap(&sc, Some(1000)).max_in_flight, 936);
    }

    #[test]
    fn the_open_file_limit_is_read() {
        let n = open_file_limit().expect("Linux has RLIMIT_NOFILE");
        assert!(n >= 16, "{n}");
    }
}
