//! The front door's sockets, bound before anything else starts so a taken port fails fast (and a
//! test can bind port 0 and learn the address).

use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::UpError;
use crate::spec::Config;

/// The main port and each service's own port, bound.
#[derive(Debug)]
pub struct Listeners {
    pub(super) main: TcpListener,
    pub(super) own: Vec<(String, TcpListener)>,
}

impl Listeners {
    /// The main port's address.
    pub fn main_addr(&self) -> std::io::Result<SocketAddr> {
        self.main.local_addr()
    }
}

/// Binds the main port and each service's own port.
pub async fn bind(cfg: &Config) -> Result<Listeners, UpError> {
    let main_addr = SocketAddr::new(cfg.frontdoor.host, cfg.frontdoor.port);
    let main = TcpListener::bind(main_addr)
        .await
        .map_err(|source| UpError::Bind {
            addr: main_addr,
            source,
        })?;
    let mut own = Vec::new();
    for s in &cfg.services {
        if let Some(p) = s.port {
            let addr = SocketAddr::new(cfg.frontdoor.host, p);
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| UpError::Bind { addr, source })?;
            own.push((s.name.clone(), l));
        }
    }
    Ok(Listeners { main, own })
}
