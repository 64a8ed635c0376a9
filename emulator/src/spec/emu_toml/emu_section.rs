//! `[emu]`: the front door's own settings (port, host, path, threads, limits and timeouts),
//! each checked where it is written so a bad value is an error naming its line.

use std::path::Path;
use std::time::Duration;

use super::positions::{Positions, Seg};
use super::schema::EmuSection;
use crate::spec::types::{FrontdoorSettings, PortFrom};
use crate::spec::SpecError;

/// Longest `header_timeout` or `idle_timeout` taken: past a day a typo is likelier than intent.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Sets `fd` from `[emu]`.
pub(super) fn apply(
    emu: &EmuSection,
    fd: &mut FrontdoorSettings,
    path: &Path,
    positions: &Positions<'_>,
) -> Result<(), SpecError> {
    let line = |key: &str| positions.line(&[Seg::Key("emu"), Seg::Key(key)]);
    let err = |key: &str, msg: String| SpecError::new(path, line(key), msg);
    if let Some(p) = emu.port {
        fd.port = p;
        fd.port_from = PortFrom::File { line: line("port") };
    }
    if let Some(chosen) = &emu.frontdoor {
        fd.fast_path = match chosen.as_str() {
            "fast" => true,
            "hyper" => false,
            other => {
                return Err(err(
                    "frontdoor",
                    format!("frontdoor = {other:?} is not a front-door path: use \"fast\" (the default) or \"hyper\""),
                ))
            }
        };
    }
    fd.loops = emu.frontdoor_threads.or(fd.loops);
    if let Some(h) = &emu.host {
        fd.host = h.parse().map_err(|_| {
            err(
                "host",
                format!("host {h:?} is not an IP address: use 127.0.0.1 or ::1"),
            )
        })?;
    }
    for (key, field, slot) in [
        (
            "header_timeout",
            &emu.header_timeout,
            &mut fd.header_timeout,
        ),
        ("idle_timeout", &emu.idle_timeout, &mut fd.idle_timeout),
    ] {
        if let Some(v) = field {
            let d = v
                .to_duration()
                .map_err(|e| err(key, format!("{key}: {e}")))?;
            if d.is_zero() || d > MAX_TIMEOUT {
                return Err(err(
                    key,
                    format!("{key} must be more than 0 and at most 24h (like \"10s\" or \"10m\")"),
                ));
            }
            *slot = d;
        }
    }
    for (key, field, slot) in [
        (
            "max_connections",
            emu.max_connections,
            &mut fd.max_connections,
        ),
        (
            "max_connections_per_client",
            emu.max_connections_per_client,
            &mut fd.max_connections_per_client,
        ),
    ] {
        if let Some(n) = field {
            if !(1..=10_000_000).contains(&n) {
                return Err(err(
                    key,
                    format!("{key} = {n} is not a number of connections: use a whole number from 1 (leave it out for one derived from the open-file limit)"),
                ));
            }
            *slot = Some(n as usize);
        }
    }
    if let (Some(all), Some(one)) = (fd.max_connections, fd.max_connections_per_client) {
        if one > all {
            return Err(err(
                "max_connections_per_client",
                format!("max_connections_per_client = {one} is more than max_connections = {all}: one client cannot hold more than all of them"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::spec::parse_toml;

    const SERVICE: &str = "\n[[service]]\nname = \"a\"\ncommand = [\"true\"]\n";

    fn emu(section: &str) -> Result<crate::spec::Config, crate::spec::SpecError> {
        parse_toml(&format!("[emu]\n{section}{SERVICE}"), Path::new("emu.toml"))
    }

    #[test]
    fn limits_default_to_cloud_runs_timeouts_and_caps_from_the_file_limit() {
        let fd = emu("").unwrap().frontdoor;
        assert_eq!(fd.header_timeout, Duration::from_secs(10));
        assert_eq!(fd.idle_timeout, Duration::from_secs(600));
        assert_eq!(fd.max_connections, None);
        assert_eq!(fd.max_connections_per_client, None);
    }

    #[test]
    fn limits_are_read_as_written() {
        let fd = emu("header_timeout = \"2s\"\nidle_timeout = 90\nmax_connections = 500\nmax_connections_per_client = 100\n")
            .unwrap()
            .frontdoor;
        assert_eq!(fd.header_timeout, Duration::from_secs(2));
        assert_eq!(fd.idle_timeout, Duration::from_secs(90));
        assert_eq!(fd.max_connections, Some(500));
        assert_eq!(fd.max_connections_per_client, Some(100));
    }

    #[test]
    fn bad_limits_name_their_line() {
        for (text, line, says) in [
            ("header_timeout = \"soon\"\n", 2, "not a duration"),
            ("port = 1\nidle_timeout = 0\n", 3, "more than 0"),
            ("max_connections = 0\n", 2, "whole number from 1"),
            (
                "max_connections = 10\nmax_connections_per_client = 20\n",
                3,
                "more than max_connections",
            ),
        ] {
            let e = emu(text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text}: {e:?}");
            assert!(e.message.contains(says), "{text}: {}", e.message);
        }
    }
}
