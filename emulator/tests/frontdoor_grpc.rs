//! gRPC through the front door, end to end over h2c: a real tonic server as the instance
//! (`protocol = "h2c"`), a real tonic client at emu's port. Unary, server-streaming,
//! client-streaming and bidi calls; grpc-status and its message in trailers; the client's
//! deadline; and emu's own 429/504 arriving as `UNAVAILABLE`, as gRPC clients map Cloud Run's.
//! Messages are raw bytes (a codec of the test's own), so no protobuf compiler is needed.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use common::Emu;
use futures_util::{Stream, StreamExt};
use http::uri::PathAndQuery;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::{Code, Request, Response, Status};

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

type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;
type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// The echo service: `/echo.Echo/{Unary,Count,Sum,Chat,Slow,Fail}`.
#[derive(Clone)]
struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "echo.Echo";
}

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        use tower::service_fn;
        let mut grpc = tonic::server::Grpc::new(Raw);
        match req.uri().path() {
            "/echo.Echo/Unary" => Box::pin(async move {
                let svc = service_fn(|r: Request<Bytes>| async move {
                    Ok::<_, Status>(Response::new(r.into_inner()))
                });
                Ok(grpc.unary(svc, req).await)
            }),
            "/echo.Echo/Slow" => Box::pin(async move {
                let svc = service_fn(|r: Request<Bytes>| async move {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    Ok::<_, Status>(Response::new(r.into_inner()))
                });
                Ok(grpc.unary(svc, req).await)
            }),
            "/echo.Echo/Fail" => Box::pin(async move {
                let svc = service_fn(|_: Request<Bytes>| async move {
                    Err::<Response<Bytes>, _>(Status::not_found("no such plant"))
                });
                Ok(grpc.unary(svc, req).await)
            }),
            // Server streaming: the request is a count, answered with that many messages.
            "/echo.Echo/Count" => Box::pin(async move {
                let svc = service_fn(|r: Request<Bytes>| async move {
                    let n: u32 = String::from_utf8_lossy(&r.into_inner())
                        .parse()
                        .unwrap_or(0);
                    let s = futures_util::stream::iter(
                        (1..=n).map(|i| Ok(Bytes::from(format!("{i}")))),
                    );
                    Ok::<_, Status>(Response::new(Box::pin(s) as BoxStream))
                });
                Ok(grpc.server_streaming(svc, req).await)
            }),
            // Client streaming: the messages' total length.
            "/echo.Echo/Sum" => Box::pin(async move {
                let svc = service_fn(|r: Request<Streaming<Bytes>>| async move {
                    let mut s = r.into_inner();
                    let mut total = 0usize;
                    while let Some(m) = s.next().await {
                        total += m?.len();
                    }
                    Ok::<_, Status>(Response::new(Bytes::from(total.to_string())))
                });
                Ok(grpc.client_streaming(svc, req).await)
            }),
            // Bidi: every message echoed as it comes.
            "/echo.Echo/Chat" => Box::pin(async move {
                let svc = service_fn(|r: Request<Streaming<Bytes>>| async move {
                    let s = r
                        .into_inner()
                        .map(|m| m.map(|b| Bytes::from([&b[..], b"!"].concat())));
                    Ok::<_, Status>(Response::new(Box::pin(s) as BoxStream))
                });
                Ok(grpc.streaming(svc, req).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// A tonic server on a free port; the emu.toml that puts an h2c service in front of it.
async fn echo_server(extra: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(Echo)
            .serve_with_incoming(tokio_stream_of(listener))
            .await
            .unwrap();
    });
    format!(
        "[[service]]\nname = \"grpc\"\nupstream = \"http://127.0.0.1:{port}\"\nprotocol = \"h2c\"\n{extra}"
    )
}

fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |l| async move {
        let s = l.accept().await.map(|(s, _)| s);
        Some((s, l))
    })
}

async fn client(emu: &Emu) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", emu.port))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

fn path(method: &str) -> PathAndQuery {
    PathAndQuery::try_from(format!("/echo.Echo/{method}")).unwrap()
}

async fn unary(
    g: &mut tonic::client::Grpc<tonic::transport::Channel>,
    method: &str,
    msg: &str,
    deadline: Option<Duration>,
) -> Result<Response<Bytes>, Status> {
    g.ready().await.unwrap();
    let mut req = Request::new(Bytes::from(msg.to_string()));
    if let Some(d) = deadline {
        req.set_timeout(d);
    }
    g.unary(req, path(method), Raw).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_four_kinds_of_call_and_grpc_status_pass_through() {
    let emu = Emu::start_toml(&echo_server("").await);
    let mut g = client(&emu).await;

    let r = unary(&mut g, "Unary", "hello", None).await.unwrap();
    assert_eq!(r.metadata().get("x-emu-instance").unwrap(), "grpc-1");
    assert_eq!(&r.into_inner()[..], b"hello");

    g.ready().await.unwrap();
    let r = g
        .server_streaming(Request::new(Bytes::from("5")), path("Count"), Raw)
        .await
        .unwrap();
    let got: Vec<Bytes> = r.into_inner().map(|m| m.unwrap()).collect().await;
    assert_eq!(got, ["1", "2", "3", "4", "5"].map(Bytes::from));

    g.ready().await.unwrap();
    let msgs = futures_util::stream::iter((0..10).map(|_| Bytes::from_static(b"abc")));
    let r = g
        .client_streaming(Request::new(msgs), path("Sum"), Raw)
        .await
        .unwrap();
    assert_eq!(&r.into_inner()[..], b"30");

    // Bidi: each answer comes back before the next message is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    g.ready().await.unwrap();
    let r = g
        .streaming(Request::new(tokio_stream_from(rx)), path("Chat"), Raw)
        .await
        .unwrap();
    let mut answers = r.into_inner();
    for i in 0..100 {
        tx.send(Bytes::from(format!("m{i}"))).await.unwrap();
        let a = answers.next().await.unwrap().unwrap();
        assert_eq!(&a[..], format!("m{i}!").as_bytes());
    }
    drop(tx);
    assert!(answers.next().await.is_none());

    // A plain HTTP/1.1 client reaches the h2c instance too (tonic answers an unknown path with
    // grpc-status 12, UNIMPLEMENTED, over HTTP/2).
    let r = reqwest::Client::builder()
        .http1_only()
        .build()
        .unwrap()
        .post(emu.url("/no.Such/Method"))
        .header("content-type", "application/grpc")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), http::Version::HTTP_11);
    assert_eq!(
        r.headers()["x-emu-instance"],
        "grpc-1",
        "{:?} {}",
        r.headers(),
        emu.stderr_text()
    );
    assert_eq!(r.headers()["grpc-status"], "12", "{:?}", r.headers());

    // grpc-status and its message travel in the trailers.
    let e = unary(&mut g, "Fail", "x", None).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(e.message(), "no such plant");

    // The client's deadline ends the call (tonic reports its own timer as CANCELLED, a server
    // that enforces grpc-timeout as DEADLINE_EXCEEDED) and the slot comes free at once.
    let e = unary(&mut g, "Slow", "x", Some(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    emu.wait_in_flight("grpc", 0).await;
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl Stream<Item = Bytes> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

#[tokio::test(flavor = "multi_thread")]
async fn emus_own_429_and_504_reach_a_grpc_client_as_unavailable() {
    let cfg = echo_server(
        "concurrency = 1\nmax_instances = 1\nqueue_timeout = \"1s\"\ntimeout = \"3s\"\n",
    )
    .await;
    let emu = Emu::start_toml(&cfg);
    let mut slow = client(&emu).await;
    let mut other = client(&emu).await;
    // One stream is one request: the slow call holds the only slot.
    let held = tokio::spawn(async move { unary(&mut slow, "Slow", "x", None).await });
    emu.wait_in_flight("grpc", 1).await;
    let e = unary(&mut other, "Unary", "y", None).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "429 → UNAVAILABLE: {e:?}");
    // The slow call meets the service's request timeout: 504 → UNAVAILABLE.
    let e = held.await.unwrap().unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "504 → UNAVAILABLE: {e:?}");
    let st = emu.status().await;
    assert_eq!(st["services"][0]["rejected_429"], 1, "{st}");
    assert_eq!(st["services"][0]["timeouts_504"], 1, "{st}");
}

/// Set in emu's environment (which instances inherit) so [`grpc_instance_process`] serves.
const INSTANCE_VAR: &str = "EMU_TEST_GRPC_INSTANCE";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "the gRPC instance process that `a_grpc_service_runs_from_its_cloud_run_yaml` has emu start; not a test by itself"]
async fn grpc_instance_process() {
    let (Ok(port), Some(_)) = (std::env::var("PORT"), std::env::var_os(INSTANCE_VAR)) else {
        panic!("run by emu as an instance: PORT and {INSTANCE_VAR} are not set");
    };
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port.parse::<u16>().unwrap()))
        .await
        .unwrap();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    tonic::transport::Server::builder()
        .add_service(Echo)
        .serve_with_incoming_shutdown(tokio_stream_of(listener), async move {
            term.recv().await;
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_service_runs_from_its_cloud_run_yaml() {
    let dir = tempfile::tempdir().unwrap();
    common::write(
        dir.path(),
        "service.yaml",
        r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: plants
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/maxScale: "2"
    spec:
      containerConcurrency: 10
      timeoutSeconds: 30
      containers:
      - image: europe-docker.pkg.dev/acme/plants/grpc:1.4.2
        ports:
        - name: h2c
          containerPort: 8080
"#,
    );
    let me = std::env::current_exe().unwrap().display().to_string();
    let emu = Emu::start_in_env(
        dir,
        &[
            "-f",
            "service.yaml",
            "--",
            &me,
            "--exact",
            "grpc_instance_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
        &[(INSTANCE_VAR, "1")],
    );
    let mut g = client(&emu).await;
    // Scale from zero: the first call waits out the instance's cold start.
    let r = unary(&mut g, "Unary", "from yaml", None).await.unwrap();
    assert_eq!(r.metadata().get("x-emu-instance").unwrap(), "plants-1");
    assert_eq!(&r.into_inner()[..], b"from yaml");
    g.ready().await.unwrap();
    let r = g
        .server_streaming(Request::new(Bytes::from("3")), path("Count"), Raw)
        .await
        .unwrap();
    let got: Vec<Bytes> = r.into_inner().map(|m| m.unwrap()).collect().await;
    assert_eq!(got.len(), 3);
    assert!(
        !emu.stderr_text().contains("ports[].name"),
        "the h2c port name is used, not warned about: {}",
        emu.stderr_text()
    );
}

#[test]
fn a_port_name_cloud_run_does_not_know_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    common::write(
        dir.path(),
        "service.yaml",
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: p\nspec:\n  template:\n    spec:\n      containers:\n      - image: x\n        ports:\n        - name: http2\n          containerPort: 8080\n",
    );
    let (code, err) = common::run_emu(
        dir.path(),
        &["up", "--port", "0", "-f", "service.yaml", "--", "true"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("service.yaml:11"), "{err}");
    assert!(err.contains("\"h2c\""), "{err}");
    common::write(
        dir.path(),
        "emu.toml",
        "[[service]]\nname = \"p\"\ncommand = [\"true\"]\nprotocol = \"grpc\"\n",
    );
    let (code, err) = common::run_emu(dir.path(), &["up", "--port", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("emu.toml:4"), "{err}");
}
