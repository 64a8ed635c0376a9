//! A Cloud Run YAML's backends: a service whose env names Memorystore gets a local Redis, set
//! where the YAML named the production address; `--postgres` and `--redis` choose each store.

mod common;

use common::Emu;

const YAML: &str = r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: cache
spec:
  template:
    metadata:
      annotations:
        run.googleapis.com/cloudsql-instances: proj:us-central1:db
        autoscaling.knative.dev/minScale: '1'
    spec:
      containers:
      - image: us-docker.pkg.dev/example/cache:latest
        env:
        - name: REDIS_HOST
          value: 10.0.0.3
        - name: REDIS_PORT
          value: '6379'
"#;

/// Answers GET with what a PING to $REDIS_HOST:$REDIS_PORT got back, after AUTH with the
/// $REDIS_PASSWORD emu sets beside them (Memorystore's AUTH string).
const APP: &str = r#"
import http.server, os, socket

class Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        s = socket.create_connection((os.environ["REDIS_HOST"], int(os.environ["REDIS_PORT"])), timeout=5)
        s.sendall(b"AUTH " + os.environ["REDIS_PASSWORD"].encode() + b"\r\n")
        assert s.recv(64) == b"+OK\r\n"
        s.sendall(b"PING\r\n")
        body = s.recv(64) + (b"db" if "DATABASE_URL" in os.environ else b"no-db")
        s.close()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Ping).serve_forever()
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_yaml_naming_memorystore_reaches_a_local_redis_and_postgres_can_be_left_off() {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "service.yaml", YAML);
    common::write(dir.path(), "app.py", APP);
    let emu = Emu::start_in(
        dir,
        &[
            "-f",
            "service.yaml",
            "--postgres",
            "none",
            "--redis",
            "native",
            "--",
            "python3",
            "app.py",
        ],
    );
    emu.wait_ready("cache", 1).await;
    let body = reqwest::get(emu.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "+PONG\r\nno-db", "{}", emu.stderr_text());
    let st = emu.status().await;
    assert_eq!(st["backends"]["redis"]["mode"], "native", "{st}");
    assert_ne!(st["backends"]["postgres"]["mode"], "native", "{st}");
    let err = emu.stderr_text();
    assert!(err.contains("REDIS_HOST, REDIS_PORT"), "{err}");
}
