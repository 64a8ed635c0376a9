//! bench-relay (bench/hello/src/bin/relay.rs) on io_uring instead of epoll: the same relay, one
//! loop per core with its own `SO_REUSEPORT` listener, one upstream connection per client
//! connection, a task per direction copying bytes as they come. tokio-uring submits the reads and
//! writes of every task that ran in one turn of the loop with a single `io_uring_enter`, so the
//! relay enters the kernel far less often than once per send or receive. The question it answers
//! is whether that lowers the floor under a proxy on this machine (bench/RESULTS.md: it does not).
//!
//! `uring-relay LISTEN UPSTREAM`

use std::net::SocketAddr;
use std::rc::Rc;

use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::{TcpListener, TcpStream};

fn main() {
    let mut args = std::env::args().skip(1);
    let parse = |v: Option<String>| v.and_then(|v| v.parse::<SocketAddr>().ok());
    let (Some(listen), Some(upstream)) = (parse(args.next()), parse(args.next())) else {
        eprintln!("usage: uring-relay LISTEN UPSTREAM   (e.g. uring-relay 127.0.0.1:18186 127.0.0.1:18181)");
        std::process::exit(2);
    };
    let loops = std::thread::available_parallelism().map_or(1, |n| n.get());
    let listeners: Vec<std::net::TcpListener> = (0..loops)
        .map(|_| bind(listen))
        .collect::<std::io::Result<_>>()
        .unwrap_or_else(|e| {
            eprintln!("uring-relay: cannot listen on {listen}: {e}");
            std::process::exit(1);
        });
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|l| std::thread::spawn(move || serve(l, upstream)))
        .collect();
    println!("listening on {listen}");
    for t in threads {
        let _ = t.join();
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    s.set_reuse_port(true)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

fn serve(listener: std::net::TcpListener, upstream: SocketAddr) {
    tokio_uring::start(async move {
        let listener = TcpListener::from_std(listener);
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            tokio_uring::spawn(async move {
                let Ok(up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let (client, up) = (Rc::new(client), Rc::new(up));
                tokio_uring::spawn(pipe(up.clone(), client.clone()));
                pipe(client, up).await;
            });
        }
    });
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s sending side.
async fn pipe(from: Rc<TcpStream>, to: Rc<TcpStream>) {
    let mut buf = vec![0u8; 8192];
    loop {
        let (read, b) = from.read(buf).await;
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        let (written, b) = to.write_all(b.slice(..n)).await;
        if written.is_err() {
            return;
        }
        buf = b.into_inner();
    }
}
