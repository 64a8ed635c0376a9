//! The floor under any reverse proxy: a TCP relay that knows nothing of HTTP.
//!
//! `bench-relay LISTEN UPSTREAM`: each client connection gets its own connection to UPSTREAM, and
//! bytes are copied both ways as they arrive (`tokio::io::copy_bidirectional`), on one
//! single-threaded event loop per core with its own `SO_REUSEPORT` listener. With a keep-alive
//! client that waits for each answer, every request costs exactly what any proxy that ends the
//! client's TCP connection and opens its own to the app must pay: one receive and one send on each
//! side, four TCP segments, and the wake-ups they cause. No parsing, no headers, no admission, no
//! pool. bench/frontdoor.sh measures it beside emu and nginx, so the report shows how far a proxy
//! can go on this machine at all, and how much of emu's cost is HTTP work on top of that floor.
//! Prints `listening on ADDR` once every loop is bound (LISTEN may use port 0).

use std::net::SocketAddr;

use tokio::net::{TcpSocket, TcpStream};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bench-relay LISTEN UPSTREAM   (e.g. bench-relay 127.0.0.1:18185 127.0.0.1:18181)");
        std::process::exit(2);
    };
    let parse = |what: &str, v: &str| -> SocketAddr {
        v.parse().unwrap_or_else(|e| {
            eprintln!("bench-relay: {what} {v:?} is not an address like 127.0.0.1:18185: {e}");
            std::process::exit(2);
        })
    };
    let listen = parse("LISTEN", &listen);
    let upstream = parse("UPSTREAM", &upstream);

    // The first loop binds LISTEN (port 0 picks one); the others bind the address it got.
    let loops = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut addr = listen;
    let mut threads = Vec::new();
    for _ in 0..loops {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<SocketAddr>>();
        threads.push(std::thread::spawn(move || serve(addr, upstream, ready_tx)));
        addr = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("relay loop died")))
            .unwrap_or_else(|e| {
                eprintln!("bench-relay: cannot listen on {addr}: {e}");
                std::process::exit(1);
            });
    }
    println!("listening on {addr}");
    for t in threads {
        let _ = t.join();
    }
}

/// One event loop: its own listener on `addr`, reported on `ready` once bound.
fn serve(
    addr: SocketAddr,
    upstream: SocketAddr,
    ready: std::sync::mpsc::Sender<std::io::Result<SocketAddr>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return ready.send(Err(e)).unwrap_or(()),
    };
    rt.block_on(async move {
        let listener = match bind(addr) {
            Ok(l) => l,
            Err(e) => return ready.send(Err(e)).unwrap_or(()),
        };
        let _ = ready.send(listener.local_addr());
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(relay(client, upstream));
        }
    })
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseport(true)?;
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(1024)
}

async fn relay(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut up) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
}
