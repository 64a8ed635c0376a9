//! What the command line sets over the config (`--port`, `--host`, `--backends`). Applied to the
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
        if let Some(mode) = self.backends {
            cfg.postgres.get_or_insert_with(Default::default).mode = mode;
            cfg.redis.get_or_insert_with(Default::default).mode = mode;
        }
    }
}
