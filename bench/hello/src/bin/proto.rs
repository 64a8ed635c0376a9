//! WebSocket and gRPC over h2c for bench/protocols.sh: an upstream for each and a client that
//! drives it for a fixed time and reports what got through, so the bench can put emu beside a
//! direct connection for the two protocols the HTTP/1.1 bench does not cover.
//!
//! ```text
//! bench-proto ws-serve ADDR                    WebSocket echo server
//! bench-proto grpc-serve ADDR                  gRPC (h2c) unary echo server
//! bench-proto ws URL CONNS SECONDS             CONNS sockets, each: send 32 bytes, await the echo
//! bench-proto grpc URL CHANNELS CALLS SECONDS  CHANNELS h2c connections × CALLS concurrent unary
//!                                              calls each, every call awaited before the next
//! ```
//!
//! Clients print one line: `url=… ok=… errors=… rate=… p50_us=… p99_us=…`, where `rate` is
//! round trips (messages echoed, calls answered) per second and the percentiles are round-trip
//! times. Closed-loop on purpose: the figure is how many round trips the path sustains, which is
//! what a WebSocket or gRPC user asks of a proxy. Messages are raw bytes (a codec of our own), so
//! no protobuf compiler is needed; the tonic server and client are the real ones.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures_util::{SinkExt, Stream, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};

const PAYLOAD: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

/// Messages as they are: bytes in, bytes out.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `/bench.Echo/Unary`: the request's bytes back; anything else is UNIMPLEMENTED.
#[derive(Clone)]
struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "bench.Echo";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() != "/bench.Echo/Unary" {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        Box::pin(async move {
            let svc = tower::service_fn(|r: Request<Bytes>| async move {
                Ok::<_, Status>(Response::new(r.into_inner()))
            });
            Ok(tonic::server::Grpc::new(Raw).unary(svc, req).await)
        })
    }
}

fn incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |l| async move {
        let s = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((s, l))
    })
}

async fn grpc_serve(addr: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).await.map_err(|e| e.to_string())?;
    println!(
        "listening on {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tonic::transport::Server::builder()
        .add_service(Echo)
        .serve_with_incoming(incoming(listener))
        .await
        .map_err(|e| e.to_string())
}

async fn ws_serve(addr: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).await.map_err(|e| e.to_string())?;
    println!(
        "listening on {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_close() || ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Round-trip times and failures, shared by every connection of one run.
struct Tally {
    rtt_us: Histogram<u64>,
    errors: u64,
}

impl Tally {
    fn new() -> Arc<Mutex<Tally>> {
        let rtt_us = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        Arc::new(Mutex::new(Tally { rtt_us, errors: 0 }))
    }
}

/// Records one round trip started at `t0` (or an error) into a connection-local histogram; the
/// local one is merged at the end so connections never contend on the shared lock.
fn record(local: &mut Histogram<u64>, t0: Instant) {
    let us = t0.elapsed().as_micros().max(1) as u64;
    let _ = local.record(us.min(60_000_000));
}

async fn ws_conn(url: String, until: Instant, tally: Arc<Mutex<Tally>>) {
    let mut local = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut errors = 0;
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(_) => errors += 1,
        Ok((mut ws, _)) => {
            while Instant::now() < until {
                let t0 = Instant::now();
                let sent = ws.send(Message::binary(&PAYLOAD[..])).await;
                match (sent, ws.next().await) {
                    (Ok(()), Some(Ok(Message::Binary(b)))) if b[..] == PAYLOAD[..] => {
                        record(&mut local, t0)
                    }
                    _ => {
                        errors += 1;
                        break;
                    }
                }
            }
            let _ = ws.close(None).await;
        }
    }
    let mut t = tally.lock().await;
    t.errors += errors;
    let _ = t.rtt_us.add(&local);
}

async fn grpc_caller(
    mut g: tonic::client::Grpc<tonic::transport::Channel>,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let path = http::uri::PathAndQuery::from_static("/bench.Echo/Unary");
    let mut local = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut errors = 0;
    while Instant::now() < until {
        let t0 = Instant::now();
        let ok = match g.ready().await {
            Err(_) => false,
            Ok(()) => {
                let req = Request::new(Bytes::from_static(PAYLOAD));
                matches!(g.unary(req, path.clone(), Raw).await, Ok(r) if r.get_ref()[..] == PAYLOAD[..])
            }
        };
        if ok {
            record(&mut local, t0);
        } else {
            errors += 1;
        }
    }
    let mut t = tally.lock().await;
    t.errors += errors;
    let _ = t.rtt_us.add(&local);
}

fn report(url: &str, tally: &Tally, seconds: f64) {
    let h = &tally.rtt_us;
    println!(
        "url={url} ok={} errors={} rate={:.0} p50_us={} p99_us={}",
        h.len(),
        tally.errors,
        h.len() as f64 / seconds,
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99)
    );
}

async fn drive_ws(url: &str, conns: usize, seconds: f64) -> Result<(), String> {
    let tally = Tally::new();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(ws_conn(url.to_string(), until, tally.clone())))
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    report(url, &*tally.lock().await, start.elapsed().as_secs_f64());
    Ok(())
}

async fn drive_grpc(url: &str, channels: usize, calls: usize, seconds: f64) -> Result<(), String> {
    let tally = Tally::new();
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..channels {
        let ch = tonic::transport::Channel::from_shared(url.to_string())
            .map_err(|e| format!("bad URL {url:?}: {e}"))?
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        clients.push(tonic::client::Grpc::new(ch));
    }
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    for g in &clients {
        for _ in 0..calls {
            tasks.push(tokio::spawn(grpc_caller(g.clone(), until, tally.clone())));
        }
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    report(url, &*tally.lock().await, start.elapsed().as_secs_f64());
    Ok(())
}

fn num<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    let v = args.get(i).ok_or(format!("missing {what}"))?;
    v.parse()
        .map_err(|_| format!("{what} {v:?} is not a number"))
}

async fn run(args: Vec<String>) -> Result<(), String> {
    let arg = |i: usize, what: &str| args.get(i).cloned().ok_or(format!("missing {what}"));
    match args.get(1).map(String::as_str) {
        Some("ws-serve") => ws_serve(&arg(2, "ADDR")?).await,
        Some("grpc-serve") => grpc_serve(&arg(2, "ADDR")?).await,
        Some("ws") => {
            let (conns, secs) = (num(&args, 3, "CONNS")?, num(&args, 4, "SECONDS")?);
            drive_ws(&arg(2, "URL")?, conns, secs).await
        }
        Some("grpc") => {
            let (ch, calls) = (num(&args, 3, "CHANNELS")?, num(&args, 4, "CALLS")?);
            drive_grpc(&arg(2, "URL")?, ch, calls, num(&args, 5, "SECONDS")?).await
        }
        _ => Err("usage: bench-proto ws-serve ADDR | grpc-serve ADDR | ws URL CONNS SECONDS | grpc URL CHANNELS CALLS SECONDS".into()),
    }
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    if let Err(e) = rt.block_on(run(std::env::args().collect())) {
        eprintln!("bench-proto: {e}");
        std::process::exit(2);
    }
}
