//! A flood of idle connections, for bench/connflood.sh: what holding many connections costs a
//! front door, and whether it gives the memory back once they close.
//!
//! `bench-flood ADDR N`: opens N connections to ADDR (at most 500 connecting at once), sends one
//! `GET /` on each and reads its answer, so each connection has served a request and is now an
//! idle keep-alive connection; prints `open OK FAILED` and holds them all until stdin closes (or a
//! line is read), then closes them and prints `closed`.

use std::net::SocketAddr;

use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: bench-flood ADDR N   (e.g. bench-flood 127.0.0.1:18182 10000)");
        std::process::exit(2);
    };
    let (Ok(addr), Ok(n)) = (addr.parse::<SocketAddr>(), n.parse::<usize>()) else {
        eprintln!(
            "bench-flood: {addr:?} is not an address like 127.0.0.1:18182, or {n:?} no count"
        );
        std::process::exit(2);
    };
    let held: Vec<_> = futures_util::stream::iter(0..n)
        .map(|_| one(addr))
        .buffer_unordered(500)
        .collect()
        .await;
    let ok = held.iter().filter(|c| c.is_some()).count();
    println!("open {ok} {}", n - ok);
    let mut line = String::new();
    let _ = tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await;
    drop(held);
    println!("closed");
}

/// One connection that has had one `200` answer, or None.
async fn one(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: hello\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    // bench-hello answers `hello\n` with a content-length: the whole answer is the head and 6.
    loop {
        let k = s.read(&mut chunk).await.ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..k]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if buf.len() >= end + 4 + 6 {
                return buf.starts_with(b"HTTP/1.1 200").then_some(s);
            }
        }
    }
}
