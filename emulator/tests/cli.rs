//! `emu` as a user runs it: bad config exits 2 naming file and line; a Cloud Run YAML runs as is;
//! the upstream runner models instances in front of an app the user runs.

mod common;

use std::time::Duration;

use common::{run_emu, write, Emu};

#[test]
fn validation_errors_exit_2_naming_file_and_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[service]]\nname = \"a\"\ncommand = [\"x\"]\n\n[service.env]\nPORT = \"1\"\n",
            "emu.toml:6:",
            "The following reserved env names were provided: PORT",
        ),
        (
            "[[service]]\nname = \"a\"\ncommand = [\"x\"]\nconcurrency = 0\n",
            "emu.toml:4:",
            "1 to 1000",
        ),
        (
            "[[service]]\nname = \"a\"\ncommand = [\"x\"]\ntimeout = 3601\n",
            "emu.toml:4:",
            "3600",
        ),
        (
            "[[service]]\nname = \"a\"\ncommand = [\"x\"]\nmax_instances = 0\n",
            "emu.toml:4:",
            "max instances",
        ),
        (
            "[[service]]\nname = \"a\"\ncommand = [\"x\"]\nmystery = 1\n",
            "emu.toml:4:",
            "unknown field `mystery`",
        ),
        (
            "[[service]]\nname = \"a\"\ncommand = [\"x\"]\ntimeout = \"soon\"\n",
            "emu.toml:4:",
            "not a duration",
        ),
    ];
    for (toml, at, what) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("emu.toml"), toml).unwrap();
        let (code, err) = run_emu(dir.path(), &["up", "--port", "0"]);
        assert_eq!(code, 2, "{toml}\n{err}");
        assert!(err.contains(at), "expected {at} in {err}");
        assert!(err.contains(what), "expected {what:?} in {err}");
    }

    // The same for a Cloud Run YAML.
    let dir = tempfile::tempdir().unwrap();
    let yaml = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: api\nspec:\n  template:\n    spec:\n      containers:\n      - image: hello\n        env:\n        - name: K_REVISION\n          value: x\n";
    write(dir.path(), "service.yaml", yaml);
    let (code, err) = run_emu(
        dir.path(),
        &["up", "--port", "0", "-f", "service.yaml", "--", "true"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("service.yaml:11:"), "{err}");
    assert!(
        err.contains("The following reserved env names were provided: K_REVISION"),
        "{err}"
    );

    let (code, err) = run_emu(dir.path(), &["up", "--port", "0", "-f", "missing.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.yaml"), "{err}");

    let (code, _) = run_emu(dir.path(), &["up", "--bogus-flag"]);
    assert_eq!(code, 2);
}

const EXPORTED: &str = r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  namespace: '123456789'
  labels:
    cloud.googleapis.com/location: europe-west1
  annotations:
    run.googleapis.com/ingress: all
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/maxScale: '3'
        run.googleapis.com/startup-cpu-boost: 'true'
    spec:
      containerConcurrency: 5
      timeoutSeconds: 30
      serviceAccountName: 123-compute@developer.gserviceaccount.com
      containers:
      - image: us-docker.pkg.dev/cloudrun/container/hello
        ports:
        - name: http1
          containerPort: 8080
        env:
        - name: DEMO_MODE
          value: yaml
        resources:
          limits:
            cpu: 1000m
            memory: 512Mi
        startupProbe:
          timeoutSeconds: 240
          periodSeconds: 240
          failureThreshold: 1
          tcpSocket:
            port: 8080
  traffic:
  - percent: 100
    latestRevision: true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn cloud_run_yaml_runs_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "service.yaml", EXPORTED);
    let emu = Emu::start_in(dir, &["-f", "service.yaml", "--", common::EMU, "demo-app"]);
    let v: serde_json::Value = reqwest::get(emu.url("/debug/request"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["env"]["K_SERVICE"], "hello");
    assert_eq!(v["env"]["DEMO_MODE"], "yaml");
    let st = emu.status().await;
    let s = &st["services"][0];
    assert_eq!(s["spec"]["concurrency"], 5);
    assert_eq!(s["spec"]["max_instances"], 3);
    assert_eq!(s["spec"]["timeout_s"], 30.0);
    // Unmodelled fields are listed once, as a warning.
    let err = emu.stderr_text();
    assert_eq!(err.matches("fields emu does not model").count(), 1, "{err}");
    assert!(err.contains("containers[].resources"), "{err}");
    // The export's project number, region and service account are what the metadata server
    // answers with.
    assert!(
        err.contains("(project emu-local, region europe-west1, service account 123-compute@developer.gserviceaccount.com)"),
        "{err}"
    );
    assert!(!err.contains("serviceAccountName"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_runner_models_instances_in_front_of_one_app() {
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // The user's own app, already running; it counts how many requests it holds at once.
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n, p) = (now.clone(), peak.clone());
    let app = axum::Router::new().route(
        "/",
        get(move || {
            let (n, p) = (n.clone(), p.clone());
            async move {
                let c = n.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(c, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                ([("set-cookie", "session=1")], "mine")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let emu = Emu::start_toml(&format!(
        r#"
[[service]]
name = "mine"
upstream = "http://127.0.0.1:{port}"
concurrency = 2
max_instances = 1
cold_start = "500ms"
queue_timeout = "20s"
"#
    ));
    let url = emu.url("/");
    let t = tokio::time::Instant::now();
    let results = futures_util::future::join_all((0..6).map(|_| reqwest::get(url.clone()))).await;
    let mut cold = 0;
    for r in results {
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers().get("cache-control").unwrap(),
            "private",
            "Set-Cookie gets Cache-Control: private"
        );
        assert_eq!(r.headers().get("x-emu-instance").unwrap(), "mine-1");
        cold += usize::from(r.headers().get("x-emu-cold-start").is_some());
        assert_eq!(r.text().await.unwrap(), "mine");
    }
    // One modelled instance with two slots: the app never holds more than two requests, and the
    // six take a cold start plus three rounds.
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(cold, 6, "all six waited for the first start");
    assert!(
        t.elapsed() >= Duration::from_millis(500 + 900),
        "{:?}",
        t.elapsed()
    );
    let st = emu.status().await;
    assert_eq!(st["services"][0]["runner"]["kind"], "upstream");
    assert_eq!(st["services"][0]["ready"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn http_startup_probe_gates_traffic_and_a_failing_one_is_explained() {
    // /health passes at once; the probe runs every 200 ms.
    let emu = Emu::start_toml(
        r#"
[[service]]
name = "p"
command = ["{EMU}", "demo-app"]
min_instances = 1
[service.startup_probe]
http_path = "/health"
period = "200ms"
timeout = "200ms"
failure_threshold = 20
"#,
    );
    emu.wait_ready("p", 1).await;
    assert_eq!(reqwest::get(emu.url("/")).await.unwrap().status(), 200);

    // A probe path that never passes: no instance becomes ready, and status says why.
    let emu = Emu::start_toml(
        r#"
[[service]]
name = "never"
command = ["{EMU}", "demo-app"]
min_instances = 1
queue_timeout = "1s"
[service.startup_probe]
http_path = "/nope"
period = "100ms"
timeout = "100ms"
failure_threshold = 3
"#,
    );
    let mut why = serde_json::Value::Null;
    for _ in 0..50 {
        let st = emu.status().await;
        why = st["services"][0]["last_failure"].clone();
        if why.is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let why = why.as_str().expect("a reason");
    assert!(
        why.contains("never became ready") && why.contains("/nope") && why.contains("404"),
        "{why}"
    );
    let r = reqwest::get(emu.url("/")).await.unwrap();
    assert_eq!(r.status(), 500, "no instance could start in time");
    assert!(r.text().await.unwrap().contains("no available instance"));
}

#[test]
fn demo_runs_with_no_config() {
    // `emu up` in an empty folder runs the demo as service `demo`: concurrency 80, 0..10.
    let dir = tempfile::tempdir().unwrap();
    let emu = Emu::start_in(dir, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = reqwest::get(emu.url("/")).await.unwrap();
        assert_eq!(r.text().await.unwrap(), "Hello from demo!\n");
        let st = emu.status().await;
        let s = &st["services"][0];
        assert_eq!(s["name"], "demo");
        assert_eq!(s["spec"]["concurrency"], 80);
        assert_eq!(s["spec"]["min_instances"], 0);
        assert_eq!(s["spec"]["max_instances"], 10);
        let w: serde_json::Value = reqwest::get(emu.url("/work?ms=50"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(w["slept_ms"], 50);
        let c = reqwest::get(emu.url("/cpu?ms=20")).await.unwrap();
        assert_eq!(c.status(), 200);
        assert_eq!(
            reqwest::get(emu.url("/health")).await.unwrap().status(),
            200
        );
    });
}

#[test]
fn bad_front_door_settings_in_the_environment_exit_2_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [("EMU_FRONTDOOR_THREADS", "two"), ("EMU_FRONTDOOR", "nginx")] {
        let (code, err) = common::run_emu_env(dir.path(), &["up", "--port", "0"], &[(var, value)]);
        assert_eq!(code, 2, "{var}={value}: {err}");
        assert!(err.contains(var) && err.contains(value), "{err}");
        assert!(err.contains("unset it"), "says what to do: {err}");
    }
    // The same settings in emu.toml, where a bad one names its line.
    common::write(
        dir.path(),
        "emu.toml",
        "[emu]\nfrontdoor = \"nginx\"\n\n[[service]]\nname = \"a\"\ncommand = [\"true\"]\n",
    );
    let (code, err) = common::run_emu(dir.path(), &["up", "--port", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("emu.toml:2") && err.contains("\"hyper\""),
        "{err}"
    );
    // The front door's limits too.
    common::write(
        dir.path(),
        "emu.toml",
        "[emu]\nport = 0\nheader_timeout = \"-3s\"\n\n[[service]]\nname = \"a\"\ncommand = [\"true\"]\n",
    );
    let (code, err) = common::run_emu(dir.path(), &["up", "--port", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("emu.toml:3") && err.contains("header_timeout"),
        "{err}"
    );
}

#[test]
fn command_line_settings_are_checked_with_the_config_naming_its_line() {
    // `--port N` while a service has `port = N`: a config error at the service's line, exit 2,
    // before anything binds (not "address in use", exit 1).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "emu.toml",
        &format!(
            "[[service]]\nname = \"api\"\ncommand = [\"{{EMU}}\", \"demo-app\"]\nport = {port}\n"
        ),
    );
    let p = port.to_string();
    let (code, err) = run_emu(dir.path(), &["up", "--port", &p]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("emu.toml:4:"),
        "names the service's port line: {err}"
    );
    assert!(
        err.contains(&format!("--port {port}")),
        "names the flag: {err}"
    );
    assert!(!err.contains("cannot listen"), "{err}");

    // `--backends native` over `[postgres] url = …`: the url's line.
    write(
        dir.path(),
        "emu.toml",
        "[[service]]\nname = \"api\"\ncommand = [\"x\"]\n\n[postgres]\nmode = \"external\"\nurl = \"postgres://u:p@127.0.0.1:1/db\"\n",
    );
    let (code, err) = run_emu(dir.path(), &["up", "--port", "0", "--backends", "native"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("emu.toml:7:") && err.contains("url"), "{err}");
    assert!(!err.contains("u:p@"), "no password in the error: {err}");

    // Two service YAMLs that name the same service: the second file's line, and the first's.
    let svc = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: api\nspec:\n  template:\n    spec:\n      containers:\n      - image: hello\n";
    write(dir.path(), "a.yaml", svc);
    write(
        dir.path(),
        "b.yaml",
        &format!("# the same service again\n{svc}"),
    );
    let (code, err) = run_emu(
        dir.path(),
        &[
            "up", "--port", "0", "-f", "a.yaml", "-f", "b.yaml", "--", "true",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("b.yaml:5:") && err.contains("a.yaml:4"),
        "{err}"
    );
}
