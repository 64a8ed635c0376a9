//! End-to-end tests live in `tests/e2e/*.rs`: they drive the real `emu` and `loadtest` binaries
//! (built by `cargo test --workspace` before any test runs) against each other. This library is
//! their shared harness.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The workspace's binaries, beside this test's own executable (target/<profile>/deps/..).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo test --workspace`",
        p.display()
    );
    p
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == ".emu" {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if e.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A port no one listens on, on any interface (Cloud Run apps bind all of them), for a test
/// that must name a port in a config file.
///
/// Chosen below the kernel's ephemeral range (32768–60999 on Linux by default), so no
/// connection or `bind(0)` elsewhere on the machine can take it before emu binds it; spread by
/// pid so parallel tests rarely try the same ports.
pub fn free_port() -> u16 {
    // Each call in this process starts further on, so parallel tests never get the same port.
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 12;
    let start = 20_000 + (std::process::id() as u16 % 1000) * 12 + n;
    (start..32_000)
        .chain(20_000..start)
        .find(|&p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok())
        .expect("a free port between 20000 and 32000")
}

/// Gives every `port = N` line of `dir/emu.toml` a free port instead, so a test can run while
/// another emu (the README's `emu up` on 8080, say) holds the example's own ports. Returns each
/// old port's new one.
pub fn remap_ports(dir: &Path) -> std::collections::HashMap<u16, u16> {
    let path = dir.join("emu.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut map = std::collections::HashMap::new();
    let mut out = String::new();
    for line in text.lines() {
        let key_value = line.split('#').next().unwrap_or("");
        let old = key_value
            .trim()
            .strip_prefix("port")
            .and_then(|r| r.trim_start().strip_prefix('='))
            .and_then(|v| v.trim().parse::<u16>().ok());
        match old {
            Some(old) => {
                let new = *map.entry(old).or_insert_with(free_port);
                out.push_str(&format!("port = {new}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    std::fs::write(&path, out).unwrap();
    map
}

/// A running `emu up` (stderr kept), killed on drop.
pub struct Up {
    child: Child,
    pub port: u16,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Up {
    pub fn start(dir: &Path, args: &[&str]) -> Up {
        let mut child = Command::new(bin("emu"))
            .arg("up")
            .args(["--request-log", "off"])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("emu: front door on http://") {
                    let addr = rest.split_whitespace().next().unwrap_or("");
                    let _ = tx.send(addr.rsplit(':').next().unwrap().parse::<u16>().unwrap());
                }
                lines.lock().unwrap().push(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(port) => Up { child, port, log },
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "emu did not start in {}: {:?}",
                    dir.display(),
                    log.lock().unwrap()
                );
            }
        }
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{}{path}", self.port)])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..600 {
            if let Ok(Some(s)) = self.child.try_wait() {
                assert!(
                    s.success(),
                    "emu exited with {s}: {:?}",
                    self.log.lock().unwrap()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("emu did not stop within 30 s");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
