//! bench-relay, the bench's floor target, must pass requests through unchanged on a kept-alive
//! connection, and refuse bad arguments with exit 2.

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
