//! The bench's upstream: the least an HTTP/1.1 server can do (every request gets `200 hello`), so
//! what the bench measures is the proxy in front of it, not the app.
//!
//! `bench-hello [ADDR]` (default 127.0.0.1:18081); worker threads follow `BENCH_WORKERS`, else the
//! core count. Prints `listening on ADDR` once bound.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

static HELLO: &[u8] = b"hello\n";

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::new(Full::new(Bytes::from_static(HELLO)));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        rt.worker_threads(n.max(1));
    }
    rt.enable_all().build()?.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(a) => a,
                Err(_) => continue,
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
            });
        }
    })
}
