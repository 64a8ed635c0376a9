//! Idle keep-alive connections to the instances for the fast path, one pool per front-door
//! thread.

use std::cell::RefCell;
use std::time::Duration;

use http::uri::Authority;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::frontdoor::upstream::{IDLE_TIMEOUT, MAX_IDLE_PER_HOST};

const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Idle keep-alive connections to the instances, by address (a list: there are a few). One
/// per thread: each front-door thread runs its own event loop, and a connection stays with the
/// loop that registered it.
struct Upstreams {
    idle: Vec<(Authority, Vec<(TcpStream, Instant)>)>,
    /// When stale connections were last looked for: instances come and go (each on a port of
    /// its own), and a stopped one's connections must not keep their sockets open.
    swept: Instant,
}

thread_local! {
    static UPSTREAMS: RefCell<Upstreams> = RefCell::new(Upstreams {
        idle: Vec::new(),
        swept: Instant::now(),
    });
}

/// True while the instance has not closed `s` (it has nothing to say between answers). No
/// system call unless the reactor has seen the socket become readable.
fn still_open(s: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// The most recently used connection to `addr` that is still open.
pub(super) fn check_out(addr: &Authority) -> Option<TcpStream> {
    let now = Instant::now();
    UPSTREAMS.with(|u| {
        let mut u = u.borrow_mut();
        let list = u
            .idle
            .iter_mut()
            .find(|(a, _)| a.as_str() == addr.as_str())
            .map(|(_, l)| l)?;
        while let Some((s, since)) = list.pop() {
            if now - since <= IDLE_TIMEOUT && still_open(&s) {
                return Some(s);
            }
        }
        None
    })
}

pub(super) fn check_in(addr: &Authority, s: TcpStream) {
    let now = Instant::now();
    UPSTREAMS.with(|u| {
        let mut u = u.borrow_mut();
        if now - u.swept > SWEEP_EVERY {
            u.swept = now;
            for (_, list) in &mut u.idle {
                list.retain(|(s, t)| now - *t <= IDLE_TIMEOUT && still_open(s));
            }
            u.idle.retain(|(_, list)| !list.is_empty());
        }
        let i = match u.idle.iter().position(|(a, _)| a.as_str() == addr.as_str()) {
            Some(i) => i,
            None => {
                u.idle.push((addr.clone(), Vec::new()));
                u.idle.len() - 1
            }
        };
        let list = &mut u.idle[i].1;
        if list.first().is_some_and(|(_, t)| now - *t > IDLE_TIMEOUT) {
            list.remove(0);
        }
        if list.len() < MAX_IDLE_PER_HOST {
            list.push((s, now));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{check_in, check_out, UPSTREAMS};
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (http::uri::Authority, TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        let (srv, _) = l.accept().await.unwrap();
        (addr.to_string().parse().unwrap(), c, srv)
    }

    #[tokio::test]
    async fn the_pool_never_lends_a_connection_its_instance_closed() {
        let (addr, c, srv) = pair().await;
        check_in(&addr, c);
        drop(srv);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(check_out(&addr).is_none());

        let (addr, c, _srv) = pair().await;
        check_in(&addr, c);
        assert!(check_out(&addr).is_some(), "an open one is lent");
    }

    #[tokio::test]
    async fn a_stopped_instances_connections_are_closed_within_seconds() {
        let (gone, c1, srv1) = pair().await;
        let (live, c2, _srv2) = pair().await;
        check_in(&gone, c1);
        drop(srv1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // Traffic to another instance sweeps the pool.
        check_in(&live, c2);
        let addrs: Vec<String> =
            UPSTREAMS.with(|u| u.borrow().idle.iter().map(|(a, _)| a.to_string()).collect());
        assert_eq!(addrs, vec![live.to_string()]);
    }
}
