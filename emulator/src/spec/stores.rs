//! The `[postgres]` and `[redis]` sections of `emu.toml`: parse (serde, unknown keys refused),
//! then [`PostgresConfig::validate`] / [`RedisConfig::validate`], which name the key at fault.
//!
//! These are plain config: the spec reads and validates them, `backends` runs what they ask for
//! (data flows spec → backends, never back).

use serde::{Deserialize, Serialize};

/// How a backing store is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Containers when a Docker engine answers, else installed server binaries, else off (with
    /// the reason in `status`).
    #[default]
    Auto,
    /// Containers through the Docker Engine API (as `docker/compose.yaml` describes them).
    Docker,
    /// Server processes from the installed `postgres` / `redis-server`, data under `.emu/`.
    Native,
    /// A server someone else runs, reached through `url`.
    External,
    /// Off: services get no `DATABASE_URL` / `REDIS_URL`.
    None,
}

impl Mode {
    /// The word used in `emu.toml` and in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Docker => "docker",
            Mode::Native => "native",
            Mode::External => "external",
            Mode::None => "none",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// For `--backends auto|docker|native|external|none`.
impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Mode::Auto),
            "docker" => Ok(Mode::Docker),
            "native" => Ok(Mode::Native),
            "external" => Ok(Mode::External),
            "none" => Ok(Mode::None),
            other => Err(format!(
                "{other:?} is not a backends mode; use auto, docker, native, external or none"
            )),
        }
    }
}

/// A config value that cannot be used, with the key (e.g. `postgres.tier`) and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigIssue {
    /// Dotted key in `emu.toml`, e.g. `postgres.tier`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn issue(key: &str, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        key: key.into(),
        message: message.into(),
    }
}

/// `[postgres]`: a Cloud SQL for PostgreSQL stand-in.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    pub mode: Mode,
    /// Major version: 14, 15 or 16 (default 16).
    pub version: Option<u32>,
    /// Cloud SQL tier, e.g. `db-f1-micro`, `db-custom-2-8192`: sets `max_connections`.
    pub tier: Option<String>,
    /// `postgres://…` for `mode = "external"`.
    pub url: Option<String>,
    /// Host port to listen on (native/docker); a free one when unset.
    pub port: Option<u16>,
    /// Overrides the tier's `max_connections` (connections available to the app role).
    pub max_connections: Option<u32>,
    /// Docker mode: the image to run (default `postgres:<version>`).
    pub image: Option<String>,
}

/// `[redis]`: a Memorystore for Redis stand-in.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub mode: Mode,
    /// Major version: 6 or 7 (default 7).
    pub version: Option<u32>,
    /// Instance size in GB: becomes `maxmemory` (with `maxmemory-policy volatile-lru`).
    pub size_gb: Option<f64>,
    /// `redis://…` for `mode = "external"`.
    pub url: Option<String>,
    /// Host port to listen on (native/docker); a free one when unset.
    pub port: Option<u16>,
    /// Docker mode: the image to run (default `redis:<version>`).
    pub image: Option<String>,
    /// Let clients run the commands Memorystore blocks (`CONFIG`, `MONITOR`…), for local
    /// debugging with redis-cli or a GUI. Off by default: what fails on Memorystore fails here.
    pub allow_blocked_commands: bool,
}

/// Commands Memorystore blocks for clients, which emu's Redis blocks too (renamed away).
/// `CLIENT` stays: client libraries send `CLIENT SETINFO`/`SETNAME` on connect, and Memorystore
/// answers the subcommands they use.
pub const MEMORYSTORE_BLOCKED_COMMANDS: [&str; 9] = [
    "CONFIG",
    "MONITOR",
    "SAVE",
    "BGSAVE",
    "DEBUG",
    "CLUSTER",
    "ACL",
    "REPLICAOF",
    "SLAVEOF",
];

/// PostgreSQL major versions emu offers (the ones Cloud SQL and the `postgres` images share).
pub const POSTGRES_VERSIONS: [u32; 3] = [14, 15, 16];
/// Default PostgreSQL major version.
pub const DEFAULT_POSTGRES_VERSION: u32 = 16;
/// Redis major versions emu offers.
pub const REDIS_VERSIONS: [u32; 2] = [6, 7];
/// Default Redis major version.
pub const DEFAULT_REDIS_VERSION: u32 = 7;
/// `max_connections` when neither a tier nor `max_connections` is given (PostgreSQL's default).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 100;
/// Memorystore's largest basic-tier instance.
const MAX_SIZE_GB: f64 = 300.0;

impl PostgresConfig {
    /// Checks every field; the first problem is returned with its key.
    pub fn validate(&self) -> Result<(), ConfigIssue> {
        if let Some(v) = self.version {
            if !POSTGRES_VERSIONS.contains(&v) {
                return Err(issue(
                    "postgres.version",
                    format!("PostgreSQL {v} is not offered; use 14, 15 or 16 (default 16)"),
                ));
            }
        }
        if let Some(tier) = &self.tier {
            tier_max_connections(tier).map_err(|m| issue("postgres.tier", m))?;
        }
        if let Some(n) = self.max_connections {
            if !(1..=10_000).contains(&n) {
                return Err(issue(
                    "postgres.max_connections",
                    format!("{n} is out of range; use 1..=10000 or omit it to follow the tier"),
                ));
            }
        }
        if self.port == Some(0) {
            return Err(issue(
                "postgres.port",
                "0 is not a port; omit it to get a free port",
            ));
        }
        check_url(
            "postgres",
            self.mode,
            self.url.as_deref(),
            &["postgres://", "postgresql://"],
            "postgres://USER:PASSWORD@HOST:5432/DB",
        )
    }

    /// The version asked for, or the default.
    pub fn version_or_default(&self) -> u32 {
        self.version.unwrap_or(DEFAULT_POSTGRES_VERSION)
    }

    /// Connections the app role may open: `max_connections`, else the tier's, else 100.
    /// Call after [`validate`](Self::validate); an unknown tier falls back to the default.
    pub fn effective_max_connections(&self) -> u32 {
        if let Some(n) = self.max_connections {
            return n;
        }
        self.tier
            .as_deref()
            .and_then(|t| tier_max_connections(t).ok())
            .unwrap_or(DEFAULT_MAX_CONNECTIONS)
    }
}

impl RedisConfig {
    /// Checks every field; the first problem is returned with its key.
    pub fn validate(&self) -> Result<(), ConfigIssue> {
        if let Some(v) = self.version {
            if !REDIS_VERSIONS.contains(&v) {
                return Err(issue(
                    "redis.version",
                    format!("Redis {v} is not offered; use 6 or 7 (default 7)"),
                ));
            }
        }
        if let Some(gb) = self.size_gb {
            if !gb.is_finite() || gb <= 0.0 || gb > MAX_SIZE_GB {
                return Err(issue(
                    "redis.size_gb",
                    format!("{gb} is not an instance size; use a number of GB above 0 and at most 300 (Memorystore's range), e.g. 1"),
                ));
            }
        }
        if self.port == Some(0) {
            return Err(issue(
                "redis.port",
                "0 is not a port; omit it to get a free port",
            ));
        }
        check_url(
            "redis",
            self.mode,
            self.url.as_deref(),
            &["redis://", "rediss://"],
            "redis://HOST:6379",
        )
    }

    /// The version asked for, or the default.
    pub fn version_or_default(&self) -> u32 {
        self.version.unwrap_or(DEFAULT_REDIS_VERSION)
    }

    /// The commands emu's server renames away: Memorystore's, unless `allow_blocked_commands`.
    pub fn blocked_commands(&self) -> &'static [&'static str] {
        if self.allow_blocked_commands {
            &[]
        } else {
            &MEMORYSTORE_BLOCKED_COMMANDS
        }
    }

    /// `maxmemory` in bytes for `size_gb` (GiB, as Memorystore sizes are), or 0 (no limit).
    pub fn maxmemory_bytes(&self) -> u64 {
        match self.size_gb {
            // Validated to be within 0..=300, so the cast cannot overflow.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(gb) if gb > 0.0 => (gb * 1024.0 * 1024.0 * 1024.0).round() as u64,
            _ => 0,
        }
    }
}

fn check_url(
    section: &str,
    mode: Mode,
    url: Option<&str>,
    schemes: &[&str],
    example: &str,
) -> Result<(), ConfigIssue> {
    let key = format!("{section}.url");
    match (mode, url) {
        (Mode::External, None) => Err(issue(
            &key,
            format!("mode = \"external\" needs a url, e.g. url = \"{example}\""),
        )),
        (Mode::External, Some(u)) => {
            if schemes.iter().any(|s| u.starts_with(s)) && u.len() > schemes[0].len() {
                Ok(())
            } else {
                Err(issue(
                    &key,
                    format!(
                        "{} does not start with {}; use e.g. \"{example}\"",
                        mask_url(u),
                        schemes.join(" or ")
                    ),
                ))
            }
        }
        (other, Some(_)) => Err(issue(
            &key,
            format!(
                "url is only used with mode = \"external\" (mode is \"{}\"); set mode = \"external\" or remove url",
                other.as_str()
            ),
        )),
        (_, None) => Ok(()),
    }
}

/// Cloud SQL's default `max_connections` for a tier (Cloud SQL's documented table).
///
/// Accepts `db-f1-micro`, `db-g1-small`, `db-custom-<CPUS>-<MEMORY_MB>`,
/// `db-n1-standard-<N>` (3.75 GB per vCPU) and `db-n1-highmem-<N>` (6.5 GB per vCPU).
/// Below 3.75 GB Cloud SQL documents only the shared-core tiers; emu follows them by memory:
/// under 1.7 GB → 25 (like db-f1-micro), 1.7–3.75 GB → 50 (like db-g1-small).
pub fn tier_max_connections(tier: &str) -> Result<u32, String> {
    let help = "use db-f1-micro, db-g1-small, db-custom-<CPUS>-<MEMORY_MB> (e.g. db-custom-2-8192), db-n1-standard-<N> or db-n1-highmem-<N>";
    match tier {
        "db-f1-micro" => return Ok(25),
        "db-g1-small" => return Ok(50),
        _ => {}
    }
    let memory_mb: f64 = if let Some(rest) = tier.strip_prefix("db-custom-") {
        let (cpus, mem) = rest
            .split_once('-')
            .ok_or_else(|| format!("unknown tier {tier:?}; {help}"))?;
        let cpus: u32 = cpus
            .parse()
            .map_err(|_| format!("tier {tier:?}: {cpus:?} is not a vCPU count; {help}"))?;
        let mem: u32 = mem
            .parse()
            .map_err(|_| format!("tier {tier:?}: {mem:?} is not a memory size in MB; {help}"))?;
        if cpus == 0 || cpus > 96 {
            return Err(format!(
                "tier {tier:?}: Cloud SQL custom machines have 1 to 96 vCPUs"
            ));
        }
        if mem < 600 {
            return Err(format!(
                "tier {tier:?}: memory is in MB and must be at least 600 (e.g. db-custom-1-3840)"
            ));
        }
        f64::from(mem)
    } else if let Some(n) = tier.strip_prefix("db-n1-standard-") {
        let n: u32 = n
            .parse()
            .map_err(|_| format!("unknown tier {tier:?}; {help}"))?;
        f64::from(n) * 3.75 * 1024.0
    } else if let Some(n) = tier.strip_prefix("db-n1-highmem-") {
        let n: u32 = n
            .parse()
            .map_err(|_| format!("unknown tier {tier:?}; {help}"))?;
        f64::from(n) * 6.5 * 1024.0
    } else {
        return Err(format!("unknown tier {tier:?}; {help}"));
    };
    let gb = memory_mb / 1024.0;
    Ok(if gb < 1.7 {
        25
    } else if gb < 3.75 {
        50
    } else if gb < 6.0 {
        100
    } else if gb < 15.0 {
        400
    } else if gb < 30.0 {
        500
    } else if gb < 60.0 {
        600
    } else if gb < 120.0 {
        800
    } else {
        1000
    })
}

/// Hides the password of a URL: `postgres://user:pass@host/db` → `postgres://user:****@host/db`.
/// URLs without a password are returned unchanged. Lives with the config so that an error about
/// a configured URL never prints its password.
pub fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:****"),
        // `redis://secret@host`: a lone userinfo in a Redis URL is the password.
        None if url.starts_with("redis") => "****".to_string(),
        None => userinfo.to_string(),
    };
    format!("{}{}{}", &url[..scheme_end + 3], masked, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memorystore_blocked_commands_unless_allowed() {
        let blocked: RedisConfig = toml::from_str("mode = \"native\"").unwrap();
        assert!(blocked.blocked_commands().contains(&"CONFIG"));
        assert!(blocked.blocked_commands().contains(&"MONITOR"));
        assert!(!blocked.blocked_commands().contains(&"CLIENT"));
        let allowed: RedisConfig = toml::from_str("allow_blocked_commands = true").unwrap();
        assert!(allowed.blocked_commands().is_empty());
    }

    #[test]
    fn tiers() {
        assert_eq!(tier_max_connections("db-f1-micro"), Ok(25));
        assert_eq!(tier_max_connections("db-g1-small"), Ok(50));
        assert_eq!(tier_max_connections("db-custom-1-3840"), Ok(100));
        assert_eq!(tier_max_connections("db-custom-2-8192"), Ok(400));
        assert_eq!(tier_max_connections("db-custom-4-16384"), Ok(500));
        assert_eq!(tier_max_connections("db-custom-8-32768"), Ok(600));
        assert_eq!(tier_max_connections("db-custom-1-1024"), Ok(25));
        assert_eq!(tier_max_connections("db-custom-1-2048"), Ok(50));
        assert_eq!(tier_max_connections("db-n1-standard-1"), Ok(100));
        assert!(tier_max_connections("db-custom-2").is_err());
        assert!(tier_max_connections("db-large").is_err());
    }

    #[test]
    fn modes_round_trip() {
        for m in [
            Mode::Auto,
            Mode::Docker,
            Mode::Native,
            Mode::External,
            Mode::None,
        ] {
            assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
        }
        assert!("podman".parse::<Mode>().is_err());
    }

    #[test]
    fn masks_passwords() {
        assert_eq!(
            mask_url("postgres://app:secret@127.0.0.1:5432/app"),
            "postgres://app:****@127.0.0.1:5432/app"
        );
        assert_eq!(
            mask_url("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert_eq!(mask_url("redis://:pw@h:6379/0"), "redis://:****@h:6379/0");
        assert_eq!(mask_url("redis://pw@h:6379"), "redis://****@h:6379");
        assert_eq!(mask_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(mask_url("postgres://u:p@ss@h/db"), "postgres://u:****@h/db");
    }

    #[test]
    fn maxmemory() {
        let r = RedisConfig {
            size_gb: Some(1.0),
            ..Default::default()
        };
        assert_eq!(r.maxmemory_bytes(), 1 << 30);
    }
}
