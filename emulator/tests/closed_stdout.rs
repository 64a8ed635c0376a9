//! emu whose reader has gone: `emu simulate | head`, `emu status | head` and `emu up | head`.
//! The first two end quietly instead of panicking in `println!`; `emu up` keeps draining its
//! instances' output, so an app that logs a lot keeps serving after the pipe closed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{write, Emu, EMU};

/// A pipe whose reading end is already closed: the first write to it meets EPIPE, as
/// `… | head -1` does once head has its line.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

fn assert_quiet_success(o: &std::process::Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}

#[test]
fn simulate_into_a_closed_pipe_is_no_panic() {
    let o = Command::new(EMU)
        .args([
            "simulate",
            "--stages",
            "50:0s:30s",
            "--service-time",
            "100ms",
        ])
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_quiet_success(&o);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_into_a_closed_pipe_is_no_panic() {
    let emu = Emu::start_toml(
        "[[service]]\nname = \"api\"\ncommand = [\"{EMU}\", \"demo-app\"]\nmin_instances = 1\n",
    );
    emu.wait_ready("api", 1).await;
    for extra in [&[][..], &["--json"][..]] {
        let o = Command::new(EMU)
            .args(["status", "--port", &emu.port.to_string()])
            .args(extra)
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_quiet_success(&o);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn up_into_a_closed_pipe_keeps_draining_an_app_that_logs_a_lot() {
    // 4 MB of log lines before it listens: far more than a pipe holds (64 KiB), so the app
    // blocks and never becomes ready unless emu keeps reading its stdout.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "emu.toml",
        r#"[[service]]
name = "chatty"
min_instances = 1
command = ["/bin/sh", "-c", "yes 'a log line from the app' | head -c 4000000; exec python3 -m http.server \"$PORT\""]
"#,
    );
    let mut child = Command::new(EMU)
        .args(["up", "--port", "0", "--request-log", "off"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut port = None;
    let mut seen = Vec::new();
    while port.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("emu did not start: {seen:?}"));
        port = line
            .strip_prefix("emu: front door on http://")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.rsplit(':').next()?.parse::<u16>().ok());
        seen.push(line);
    }
    let url = format!("http://127.0.0.1:{}/", port.unwrap());
    let client = reqwest::Client::new();
    let mut last = String::new();
    let mut served = false;
    for _ in 0..600 {
        match client.get(&url).send().await {
            Ok(r) if r.status() == 200 => {
                served = true;
                break;
            }
            Ok(r) => last = format!("{}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let stopped = child.wait().unwrap();
    let stderr: Vec<String> = rx.try_iter().collect();
    assert!(
        served,
        "never served (last: {last}); emu said {seen:?} {stderr:?}"
    );
    assert!(stopped.success(), "emu stopped with {stopped}: {stderr:?}");
    assert!(
        !stderr.iter().chain(&seen).any(|l| l.contains("panicked")),
        "{stderr:?}"
    );
}
