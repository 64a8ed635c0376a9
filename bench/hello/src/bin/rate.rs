//! A fixed-rate HTTP/1.1 load client (what wrk2 does; neither wrk2 nor oha is packaged for Debian).
//!
//! `bench-rate URL[,URL...] RATE DURATION_S [CONNECTIONS] [WARMUP_S]`
//!
//! A pacing thread schedules request *i* at `start + i / RATE` and hands it to whichever of the
//! keep-alive connections is free; latency is measured from that intended send time, so a stall
//! in the server shows up as the queue it causes (no coordinated omission). Requests scheduled
//! during the warm-up are sent but not recorded.
//!
//! Several URLs are measured side by side: each gets RATE requests/s over CONNECTIONS connections
//! of its own, on one schedule staggered evenly between them (URL *j* of *k* at
//! `start + (i + j/k) / RATE`). A stall of the machine then lands on every target alike, so the
//! difference between two targets' percentiles is what one adds to the other, not which of them
//! ran during the hiccup (bench/frontdoor.sh measures direct, emu, nginx and the relay this way).
//!
//! Prints one line of `key=value` pairs per URL, in the order given:
//! `url sent ok errors achieved_rps p50_us p90_us p99_us p999_us max_us late_p99_us`, where
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
    targets: Vec<Arc<Target>>,
    rate: f64,
    duration: Duration,
    connections: usize,
    warmup: Duration,
}

struct Target {
    url: String,
    host: String,
    addr: String,
    path: String,
}

fn parse_target(url: &str) -> Result<Target, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
    let auth = uri
        .authority()
        .ok_or_else(|| format!("URL {url:?} has no host"))?;
    let port = auth.port_u16().unwrap_or(80);
    Ok(Target {
        url: url.to_string(),
        host: auth.as_str().to_string(),
        addr: format!("{}:{port}", auth.host()),
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
    })
}

fn parse_args() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 3 {
        return Err(
            "usage: bench-rate URL[,URL...] RATE DURATION_S [CONNECTIONS=16] [WARMUP_S=1]"
                .to_string(),
        );
    }
    let targets = a[0]
        .split(',')
        .map(|u| parse_target(u).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let num = |s: &str, what: &str| -> Result<f64, String> {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{what} {s:?} is not a number"))
    };
    Ok(Args {
        targets,
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

async fn connect(target: &Target) -> Option<http1::SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(&target.addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(send)
}

async fn worker(
    target: Arc<Target>,
    rx: Arc<Mutex<mpsc::UnboundedReceiver<Slot>>>,
) -> (Histogram<u64>, Histogram<u64>, Tally) {
    let mut lat = histogram();
    let mut late = histogram();
    let mut tally = Tally::default();
    let mut conn = connect(&target).await;
    loop {
        let slot = { rx.lock().await.recv().await };
        let Some(slot) = slot else { break };
        let started = Instant::now();
        let ok = async {
            if conn.is_none() {
                conn = connect(&target).await;
            }
            let send = conn.as_mut()?;
            send.ready().await.ok()?;
            let req = Request::get(target.path.as_str())
                .header(header::HOST, target.host.as_str())
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
    let k = args.targets.len();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..k)
        .map(|_| {
            let (tx, rx) = mpsc::unbounded_channel::<Slot>();
            (tx, Arc::new(Mutex::new(rx)))
        })
        .unzip();
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let total = args.warmup + args.duration;
    let warmup = args.warmup;
    let start = Instant::now() + Duration::from_millis(100);
    // The pacer: a plain thread, because tokio's timer has a 1 ms tick and the schedule needs
    // better than that.
    let pacer = std::thread::spawn(move || {
        let mut i: u64 = 0;
        loop {
            for (j, tx) in txs.iter().enumerate() {
                let offset = interval.mul_f64(i as f64 + j as f64 / k as f64);
                if offset >= total {
                    return;
                }
                let intended = start + offset;
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                let slot = Slot {
                    intended,
                    recorded: offset >= warmup,
                };
                if tx.send(slot).is_err() {
                    return;
                }
            }
            i += 1;
        }
    });
    let results = rt.block_on(async {
        let mut per_target = Vec::new();
        for (target, rx) in args.targets.iter().zip(&rxs) {
            let tasks: Vec<_> = (0..args.connections)
                .map(|_| tokio::spawn(worker(target.clone(), rx.clone())))
                .collect();
            per_target.push(tasks);
        }
        let mut results = Vec::new();
        for tasks in per_target {
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
            results.push((lat, late, tally));
        }
        results
    });
    let _ = pacer.join();
    let secs = args.duration.as_secs_f64().max(1e-9);
    for (target, (lat, late, tally)) in args.targets.iter().zip(results) {
        println!(
            "url={} sent={} ok={} errors={} achieved_rps={:.1} p50_us={} p90_us={} p99_us={} p999_us={} max_us={} late_p99_us={}",
            target.url,
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
}
