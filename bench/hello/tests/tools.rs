//! The bench's own tools: bench-relay (the floor target) passes requests through on a kept-alive
//! connection and refuses bad arguments with exit 2; bench-rate measures several targets at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a bench binary that prints `listening on ADDR`, and returns it with ADDR.
fn start(bin: &str, args: &[&str]) -> (Killed, String) {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{bin} printed {line:?}"))
        .to_string();
    (Killed(child), addr)
}

#[test]
fn requests_pass_through_the_relay_on_one_connection() {
    let (_hello, hello) = start(env!("CARGO_BIN_EXE_bench-hello"), &["127.0.0.1:0"]);
    let (_relay, relay) = start(
        env!("CARGO_BIN_EXE_bench-relay"),
        &["127.0.0.1:0", hello.as_str()],
    );
    assert_ne!(relay, "127.0.0.1:0", "the relay reports the port it got");
    let mut s = TcpStream::connect(&relay).expect("connect to the relay");
    for i in 0..3 {
        write!(s, "GET /{i} HTTP/1.1\r\nhost: x\r\n\r\n").expect("write");
        // bench-hello answers `hello\n` with a content-length; read until the body is in.
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"hello\n") {
            let n = s.read(&mut buf).expect("read");
            assert!(
                n > 0,
                "relay closed the connection after {i} answers: {got:?}"
            );
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    }
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench-relay"))
        .args(["127.0.0.1:0", "not-an-address"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UPSTREAM \"not-an-address\""), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_bench-relay"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: bench-relay"));
}

#[test]
fn bench_rate_measures_several_targets_side_by_side() {
    let (_a, a) = start(env!("CARGO_BIN_EXE_bench-hello"), &["127.0.0.1:0"]);
    let (_b, b) = start(env!("CARGO_BIN_EXE_bench-hello"), &["127.0.0.1:0"]);
    let urls = format!("http://{a}/,http://{b}/x");
    let out = Command::new(env!("CARGO_BIN_EXE_bench-rate"))
        .args([urls.as_str(), "200", "1", "2", "0"])
        .output()
        .expect("run bench-rate");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one line per URL: {text}");
    for (line, url) in lines
        .iter()
        .zip([format!("http://{a}/"), format!("http://{b}/x")])
    {
        assert!(line.starts_with(&format!("url={url} ")), "{line}");
        // 200 requests/s for 1 s to each target, all answered.
        assert!(line.contains(" sent=200 ok=200 errors=0 "), "{line}");
    }
}
