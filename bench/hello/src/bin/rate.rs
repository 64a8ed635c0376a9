//! A fixed-rate HTTP/1.1 load client (what wrk2 does; neither wrk2 nor oha is packaged for Debian).
//!
//! `bench-rate URL RATE DURATION_S [CONNECTIONS] [WARMUP_S]`
//!
//! A pacing thread schedules request *i* at `start + i / RATE` and hands it to whichever of the
//! keep-alive connections is free; latency is measured from that intended send time, so a stall
//! in the server shows up as the queue it causes (no coordinated omission). Requests scheduled
//! during the warm-up are sent but not recorded. Prints one line of `key=value` pairs:
//! `sent ok errors achieved_rps p50_us p90_us p99_us p999_us max_us late_p99_us`, where
//! `late_p99_us` is how far behind schedule the pacing itself ran (the client's own error).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{header, Request};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

struct Args {
    host: String,
    addr: String,
    path: String,
    rate: f64,
    duration: Duration,
    connections: usize,
    warmup: Duration,
}

fn parse_args() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 3 {
        return Err(
            "usage: bench-rate URL RATE DURATION_S [CONNECTIONS=16] [WARMUP_S=1]".to_string(),
        );
    }
    let uri: http::Uri = a[0].parse().map_err(|e| format!("bad URL {}: {e}", a[0]))?;
    let auth = uri
        .authority()
        .ok_or_else(|| format!("URL {} has no host", a[0]))?;
    let port = auth.port_u16().unwrap_or(80);
    let num = |s: &str, what: &str| -> Result<f64, String> {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{what} {s:?} is not a number"))
    };
    Ok(Args {
        host: auth.as_str().to_string(),
        addr: format!("{}:{port}", auth.host()),
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
        rate: num(&a[1], "RATE")?.max(1.0),
        duration: Duration::from_secs_f64(num(&a[2], "DURATION_S")?),
        connections: a
            .get(3)
            .map(|s| num(s, "CONNECTIONS"))
            .transpose()?
            .map_or(16, |c| (c as usize).max(1)),
        warmup: Duration::from_secs_f64(
            a.get(4)
                .map(|s| num(s, "WARMUP_S"))
                .transpose()?
                .unwrap_or(1.0),
        ),
    })
}

/// One scheduled request: when it should have been sent, and whether it counts.
#[derive(Clone, Copy)]
struct Slot {
    intended: Instant,
    recorded: bool,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    sent: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

async fn connect(args: &Args) -> Option<http1::SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(&args.addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(send)
}

async fn worker(
    args: Arc<Args>,
    rx: Arc<Mutex<mpsc::UnboundedReceiver<Slot>>>,
) -> (Histogram<u64>, Histogram<u64>, Tally) {
    let mut lat = histogram();
    let mut late = histogram();
    let mut tally = Tally::default();
    let mut conn = connect(&args).await;
    loop {
        let slot = { rx.lock().await.recv().await };
        let Some(slot) = slot else { break };
        let started = Instant::now();
        let ok = async {
            if conn.is_none() {
                conn = connect(&args).await;
            }
            let send = conn.as_mut()?;
            send.ready().await.ok()?;
            let req = Request::get(args.path.as_str())
                .header(header::HOST, args.host.as_str())
                .body(Empty::<Bytes>::new())
                .ok()?;
            let resp = send.send_request(req).await.ok()?;
            let status = resp.status();
            resp.into_body().collect().await.ok()?;
            Some(status.is_success())
        }
        .await;
        let done = Instant::now();
        if ok.is_none() {
            conn = None;
        }
        if slot.recorded {
            tally.sent += 1;
            if ok == Some(true) {
                tally.ok += 1;
                let us = (done - slot.intended).as_micros().max(1) as u64;
                let _ = lat.record(us.min(120_000_000));
            } else {
                tally.errors += 1;
            }
            let behind = started.saturating_duration_since(slot.intended);
            let _ = late.record((behind.as_micros() as u64).clamp(1, 120_000_000));
        }
    }
    (lat, late, tally)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("bench-rate: {e}");
            std::process::exit(2);
        }
    };
    // One thread for the connections: at the rates this is for it is idle most of the time, and
    // it leaves the cores to what is being measured.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-rate: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let (tx, rx) = mpsc::unbounded_channel::<Slot>();
    let rx = Arc::new(Mutex::new(rx));
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let total = args.warmup + args.duration;
    let warmup = args.warmup;
    let start = Instant::now() + Duration::from_millis(100);
    // The pacer: a plain thread, because tokio's timer has a 1 ms tick and the schedule needs
    // better than that.
    let pacer = std::thread::spawn(move || {
        let mut i: u64 = 0;
        loop {
            let offset = interval.mul_f64(i as f64);
            if offset >= total {
                break;
            }
            let intended = start + offset;
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            if tx
                .send(Slot {
                    intended,
                    recorded: offset >= warmup,
                })
                .is_err()
            {
                break;
            }
            i += 1;
        }
    });
    let (lat, late, tally) = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..args.connections {
            tasks.push(tokio::spawn(worker(args.clone(), rx.clone())));
        }
        let mut lat = histogram();
        let mut late = histogram();
        let mut tally = Tally::default();
        for t in tasks {
            if let Ok((l, g, c)) = t.await {
                let _ = lat.add(&l);
                let _ = late.add(&g);
                tally.ok += c.ok;
                tally.errors += c.errors;
                tally.sent += c.sent;
            }
        }
        (lat, late, tally)
    });
    let _ = pacer.join();
    let secs = args.duration.as_secs_f64().max(1e-9);
    println!(
        "sent={} ok={} errors={} achieved_rps={:.1} p50_us={} p90_us={} p99_us={} p999_us={} max_us={} late_p99_us={}",
        tally.sent,
        tally.ok,
        tally.errors,
        tally.ok as f64 / secs,
        lat.value_at_quantile(0.50),
        lat.value_at_quantile(0.90),
        lat.value_at_quantile(0.99),
        lat.value_at_quantile(0.999),
        lat.max(),
        late.value_at_quantile(0.99),
    );
}
