//! The ports instances get, against apps that bind every address as Cloud Run apps do: a port
//! another process holds on any address is never handed out, and a start that still loses its
//! port (EADDRINUSE) is retried on another one instead of counting as a crash.

mod common;

use std::net::TcpListener;

use common::Emu;

/// The kernel's ephemeral range, where `bind(port 0)` picks from.
fn ephemeral_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let mut it = text.split_whitespace().map(|p| p.parse::<u16>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Holds a third of the ephemeral range on 127.0.0.2 and a twentieth on 0.0.0.0, listening as a
/// real server would. A port picked on 127.0.0.1 alone lands on a held one about once in three.
fn hold_ports() -> Vec<TcpListener> {
    let (low, high) = ephemeral_range();
    (low..=high)
        .filter_map(|p| match p % 60 {
            r if r % 3 == 0 => TcpListener::bind(("127.0.0.2", p)).ok(),
            7 => TcpListener::bind(("0.0.0.0", p)).ok(),
            _ => None,
        })
        .collect()
}

async fn events(emu: &Emu) -> Vec<serde_json::Value> {
    let v: serde_json::Value = reqwest::get(emu.url("/_emu/events?since=0"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["events"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_of_twenty_starts_succeed_with_ports_held_on_other_addresses() {
    let held = hold_ports();
    assert!(held.len() > 5000, "held only {} ports", held.len());
    // Python's http.server binds every address (dual-stack `::`), as gunicorn `--bind :$PORT` does.
    let emu = Emu::start_toml(
        r#"
[[service]]
name = "py"
command = ["/bin/sh", "-c", "exec python3 -m http.server \"$PORT\""]
min_instances = 20
max_instances = 20
concurrency = 1
"#,
    );
    emu.wait_ready("py", 20).await;
    let ev = events(&emu).await;
    let count = |state: &str| {
        ev.iter()
            .filter(|e| e["kind"] == "instance" && e["state"] == state)
            .count()
    };
    // A start may still lose its port to another process between emu's check and the app's
    // bind (other tests bind ports too); that start is retried on another port within the same
    // start (a `port_taken` event, no second `starting`), never failed.
    assert_eq!(count("starting"), 20, "{ev:?}");
    assert_eq!(count("failed"), 0, "{ev:?}");
    assert_eq!(count("ready"), 20, "{ev:?}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_that_lost_its_port_is_retried_and_is_no_crash() {
    // The first start fails as an app does when another process took its port in between.
    let emu = Emu::start_toml(
        r#"
[[service]]
name = "racy"
command = ["/bin/sh", "-c", "if [ ! -e lost ]; then touch lost; echo 'OSError: [Errno 98] Address already in use' >&2; exit 1; fi; exec python3 -m http.server \"$PORT\""]
min_instances = 1
max_instances = 1
"#,
    );
    let status = emu.wait_ready("racy", 1).await;
    let ev = events(&emu).await;
    let instance = |state: &str| {
        ev.iter()
            .filter(|e| e["kind"] == "instance" && e["state"] == state)
            .count()
    };
    assert_eq!(instance("port_taken"), 1, "{ev:?}");
    assert_eq!(instance("failed"), 0, "{ev:?}");
    assert_eq!(instance("starting"), 1, "{ev:?}");
    assert!(status["last_failure"].is_null(), "{status}");
}

/// A Cloud Run service YAML whose app listens on `container_port`, probed on it. The startup
/// probe's budget (10 s) lets a python app that boots slowly on a busy machine bind before emu
/// gives up on it: emu names the port an app listens on only once the app listens.
fn yaml(container_port: u16, probe: &str) -> String {
    format!(
        r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: fixed
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/minScale: "1"
    spec:
      containers:
      - image: example/fixed
        ports:
        - containerPort: {container_port}
        startupProbe:
          periodSeconds: 1
          timeoutSeconds: 1
          failureThreshold: 10
          {probe}:
            port: {container_port}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_on_its_container_port_is_told_which_port_it_was_given() {
    // Outside the ephemeral range: another test's connection cannot take it before the app binds.
    let fixed = common::free_port_outside_ephemeral();
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "service.yaml", &yaml(fixed, "tcpSocket"));
    let port = fixed.to_string();
    let emu = Emu::start_in(
        dir,
        &[
            "-f",
            "service.yaml",
            "--",
            "python3",
            "-m",
            "http.server",
            &port,
        ],
    );
    let mut failure = String::new();
    for _ in 0..900 {
        let st = emu.status().await;
        failure = st["services"][0]["last_failure"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if !failure.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let given = failure
        .split("was given PORT=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or_else(|| panic!("no PORT in {failure:?}"));
    assert_ne!(given, port, "{failure}");
    assert!(
        failure.contains(&format!("listens on port {fixed} ")),
        "{failure}"
    );
    assert!(failure.contains("listen on $PORT"), "{failure}");
    // `emu status` prints it, and emu's log said it.
    let out = std::process::Command::new(common::EMU)
        .args(["status", "--port", &emu.port.to_string()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains(&format!(
            "listens on port {fixed} but was given PORT={given}"
        )),
        "{table}"
    );
    assert!(
        emu.stderr_text().contains("was given PORT="),
        "{}",
        emu.stderr_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_on_the_container_port_probes_the_instance_port() {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "service.yaml", &yaml(8080, "httpGet"));
    let emu = Emu::start_in(
        dir,
        &[
            "-f",
            "service.yaml",
            "--",
            "/bin/sh",
            "-c",
            "exec python3 -m http.server \"$PORT\"",
        ],
    );
    let s = emu.wait_ready("fixed", 1).await;
    assert!(s["last_failure"].is_null(), "{s}");
}
