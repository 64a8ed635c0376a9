//! What the command line sets over the config (`--port`, `--host`, `--backends`, `--postgres`,
//! `--redis`). Applied to the
//! parsed config *before* the whole-config checks, so that a clash (`--port 8080` while a
//! service has `port = 8080`) is a config error naming the line, exit 2, not a bind error.

use std::net::IpAddr;

use super::stores::Mode;
use super::types::{Config, PortFrom};

/// The command line's settings over the config file's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// The front door's port (`--port`; 0 picks a free one).
    pub port: Option<u16>,
    /// The front door's address (`--host`).
    pub host: Option<IpAddr>,
    /// How PostgreSQL and Redis are provided, for both (`--backends`).
    pub backends: Option<Mode>,
    /// How PostgreSQL alone is provided (`--postgres`; over `--backends`).
    pub postgres: Option<Mode>,
    /// How Redis alone is provided (`--redis`; over `--backends`).
    pub redis: Option<Mode>,
    /// The fast path on or off (`EMU_FRONTDOOR=fast|hyper`).
    pub fast_path: Option<bool>,
    /// The front door's event loops (`EMU_FRONTDOOR_THREADS`).
    pub loops: Option<usize>,
}

impl Overrides {
    /// The front door's settings from the environment (`EMU_FRONTDOOR`, `EMU_FRONTDOOR_THREADS`),
    /// one way to set them besides emu.toml's `[emu]`; a value that is not one stops with a
    /// message naming the variable.
    pub fn frontdoor_from_env(mut self) -> Result<Self, String> {
        if let Ok(v) = std::env::var("EMU_FRONTDOOR_THREADS") {
            self.loops = Some(v.trim().parse::<usize>().map_err(|_| {
                format!(
                    "EMU_FRONTDOOR_THREADS={v:?} is not a number of threads: set a whole number (0 serves on the main runtime) or unset it for one per core"
                )
            })?);
        }
        match std::env::var("EMU_FRONTDOOR") {
            Ok(v) if v == "fast" => self.fast_path = Some(true),
            Ok(v) if v == "hyper" => self.fast_path = Some(false),
            Ok(v) => {
                return Err(format!(
                    "EMU_FRONTDOOR={v:?} is not a front-door path: set it to \"fast\" (the default) or \"hyper\", or unset it"
                ))
            }
            Err(_) => {}
        }
        Ok(self)
    }
}

impl Overrides {
    /// Sets what the command line gives over what `cfg` says.
    pub fn apply(&self, cfg: &mut Config) {
        if let Some(port) = self.port {
            cfg.frontdoor.port = port;
            cfg.frontdoor.port_from = PortFrom::CommandLine;
        }
        if let Some(host) = self.host {
            cfg.frontdoor.host = host;
        }
        if let Some(on) = self.fast_path {
            cfg.frontdoor.fast_path = on;
        }
        if let Some(n) = self.loops {
            cfg.frontdoor.loops = Some(n);
        }
        if let Some(mode) = self.postgres.or(self.backends) {
            cfg.postgres.get_or_insert_with(Default::default).mode = mode;
        }
        if let Some(mode) = self.redis.or(self.backends) {
            cfg.redis.get_or_insert_with(Default::default).mode = mode;
        }
    }
}
