//! Starts the real `emu` binary in a temporary project folder and talks to it over loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const EMU: &str = env!("CARGO_BIN_EXE_emu");

/// The ways a request crosses the front door; every front-door behaviour test runs on each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// HTTP/1.1 on the fast path (the default).
    Fast,
    /// HTTP/1.1 on hyper's general path (`EMU_FRONTDOOR=hyper`).
    Hyper,
    /// HTTP/2 from the client (h2c, prior knowledge), which hyper serves.
    H2c,
}

impl Via {
    /// What emu is started with for this path.
    pub fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Via::Hyper => &[("EMU_FRONTDOOR", "hyper")],
            Via::Fast | Via::H2c => &[],
        }
    }

    /// A client that speaks this path's protocol.
    pub fn client(self) -> reqwest::Client {
        let b = reqwest::Client::builder();
        match self {
            Via::H2c => b.http2_prior_knowledge(),
            Via::Fast | Via::Hyper => b.http1_only(),
        }
        .build()
        .unwrap()
    }

    pub async fn get(self, url: &str) -> reqwest::Response {
        self.client().get(url).send().await.unwrap()
    }
}

/// Generates one `#[tokio::test]` per [`Via`] for each `async fn NAME(path: Via)` named: the
/// tests are `NAME::fast`, `NAME::hyper` and `NAME::h2c`.
#[macro_export]
macro_rules! on_every_path {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn fast() {
                super::$name($crate::common::Via::Fast).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn hyper() {
                super::$name($crate::common::Via::Hyper).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn h2c() {
                super::$name($crate::common::Via::H2c).await
            }
        }
    )*};
}

/// A running `emu up`, killed on drop.
pub struct Emu {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// emu's stdout (where instances' stdout goes), line by line.
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Set when emu's stderr reached its end: after exit, every line emu wrote has been read.
    stderr_done: Arc<std::sync::atomic::AtomicBool>,
}

/// `{EMU}` in a config stands for the emu binary (so `command = ["{EMU}", "demo-app"]` runs the demo).
pub fn config(text: &str) -> String {
    text.replace("{EMU}", EMU)
}

impl Emu {
    /// Writes `emu.toml` and runs `emu up --port 0` in a fresh folder.
    pub fn start_toml(toml: &str) -> Emu {
        Self::start_toml_with(toml, &[])
    }

    /// [`Emu::start_toml`] with the front door set up for `path`.
    pub fn start_toml_on(path: Via, toml: &str) -> Emu {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("emu.toml"), config(toml)).unwrap();
        Self::start_in_env(dir, &[], path.env())
    }

    pub fn start_toml_with(toml: &str, extra: &[&str]) -> Emu {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("emu.toml"), config(toml)).unwrap();
        Self::start_in(dir, extra)
    }

    /// Runs `emu up --port 0 ARGS` in `dir`.
    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Emu {
        Self::start_in_env(dir, args, &[])
    }

    /// [`Emu::start_in`] with extra environment variables for emu.
    pub fn start_in_env(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Emu {
        Self::start_cmd(dir, Command::new(EMU), args, env)
    }

    /// [`Emu::start_toml`] with emu's open-file limit (soft and hard) set to `files`, as on a
    /// machine whose limit is that low.
    pub fn start_toml_with_file_limit(toml: &str, files: u32) -> Emu {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("emu.toml"), config(toml)).unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.args([
            "-c",
            &format!("ulimit -n {files} && exec \"$0\" \"$@\""),
            EMU,
        ]);
        Self::start_cmd(dir, cmd, &[], &[])
    }

    fn start_cmd(
        dir: tempfile::TempDir,
        mut cmd: Command,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Emu {
        cmd.envs(env.iter().copied());
        cmd.arg("up").arg("--port").arg("0");
        if !args.contains(&"--request-log") {
            cmd.args(["--request-log", "off"]);
        }
        cmd.args(args)
            .current_dir(dir.path())
            .env(
                "EMU_LOG",
                std::env::var("TEST_EMU_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn emu");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let out_lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                out_lines.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = stderr.clone();
        let err = child.stderr.take().unwrap();
        let stderr_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = stderr_done.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("emu: front door on http://") {
                    let addr = rest.split_whitespace().next().unwrap_or("");
                    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
                    let _ = tx.send(port);
                }
                lines.lock().unwrap().push(line);
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                panic!("emu did not start: {:?}", stderr.lock().unwrap());
            }
        };
        Emu {
            child,
            port,
            dir,
            stderr,
            stdout,
            stderr_done,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub async fn status(&self) -> serde_json::Value {
        reqwest::get(self.url("/_emu/status"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until `service` has `n` ready instances.
    pub async fn wait_ready(&self, service: &str, n: u64) -> serde_json::Value {
        for _ in 0..300 {
            let st = self.status().await;
            let s = st["services"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == service)
                .cloned()
                .unwrap();
            if s["ready"].as_u64() == Some(n) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{service} never had {n} ready instances: {}",
            self.status().await
        );
    }

    /// Waits until `service`'s instances hold `n` requests in flight between them.
    pub async fn wait_in_flight(&self, service: &str, n: u64) {
        for _ in 0..600 {
            let st = self.status().await;
            let held: u64 = st["services"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["name"] == service)
                .flat_map(|s| s["instances"].as_array().cloned().unwrap_or_default())
                .map(|i| i["in_flight"].as_u64().unwrap_or(0))
                .sum();
            if held == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{service} never had {n} requests in flight: {}",
            self.status().await
        );
    }

    /// SIGTERM, then wait up to `within` for emu to exit (and for its last stderr lines to be
    /// read: the reader thread can trail the exit on a busy machine).
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                for _ in 0..200 {
                    if self.stderr_done.load(std::sync::atomic::Ordering::Acquire) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "emu did not stop within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Hands back the project folder (to start emu again in it); stops emu first if needed.
    pub fn into_dir(mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// `/_emu/metrics` as text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/_emu/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.terminate(Duration::from_secs(20));
        }
    }
}

/// True while a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next()
                .unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// Runs `emu ARGS` in `dir` to completion: (exit code, stderr). A run that has not ended
/// after two minutes is killed and fails the test, so a hang cannot stall the suite.
pub fn run_emu(dir: &Path, args: &[&str]) -> (i32, String) {
    run_emu_env(dir, args, &[])
}

/// [`run_emu`] with extra environment variables.
pub fn run_emu_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut child = Command::new(EMU)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let mut out = child.stdout.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "emu {args:?} did not finish within 2 minutes: {}",
                reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        reader.join().unwrap_or_default(),
    )
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, config(text)).unwrap();
    p
}

/// A port free on every IPv4 address, chosen below the kernel's ephemeral range (32768–60999 on
/// Linux by default), so no connection or `bind(0)` elsewhere on the machine can take it between
/// this check and the moment the test's process binds it. Spread by pid so parallel tests rarely
/// try the same ports.
pub fn free_port_outside_ephemeral() -> u16 {
    // Each call in this process starts further on, so parallel tests never get the same port.
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 12;
    let start = 20_000 + (std::process::id() as u16 % 1000) * 12 + n;
    (start..32_000)
        .chain(20_000..start)
        .find(|&p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok())
        .expect("a free port between 20000 and 32000")
}

/// `INFO` as a map (`maxmemory`, `maxmemory_policy`, `aof_enabled`…): how a client reads the
/// server's settings when `CONFIG` is blocked, as on Memorystore.
pub async fn redis_info(
    r: &mut redis::aio::MultiplexedConnection,
) -> std::collections::HashMap<String, String> {
    let text: String = redis::cmd("INFO")
        .arg("everything")
        .query_async(r)
        .await
        .unwrap();
    text.lines()
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Asserts that `CONFIG GET` is refused as Memorystore refuses it.
pub async fn assert_config_blocked(r: &mut redis::aio::MultiplexedConnection) {
    let got = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async::<Vec<String>>(r)
        .await;
    let err = got.expect_err("CONFIG is blocked as on Memorystore");
    assert!(
        err.to_string().to_lowercase().contains("unknown command"),
        "{err}"
    );
}

/// A service held to one slot on one instance, with `queue_timeout`.
pub fn one_slot(queue_timeout: &str) -> String {
    format!(
        r#"
[[service]]
name = "slow"
command = ["{{EMU}}", "demo-app"]
concurrency = 1
min_instances = 1
max_instances = 1
queue_timeout = "{queue_timeout}"
"#
    )
}

/// GET `url` on `path`: status, body, time taken and `x-emu-instance`.
pub async fn timed_get(path: Via, url: String) -> (u16, String, Duration, Option<String>) {
    let t = tokio::time::Instant::now();
    let r = path.get(&url).await;
    let status = r.status().as_u16();
    let inst = r
        .headers()
        .get("x-emu-instance")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.text().await.unwrap();
    (status, body, t.elapsed(), inst)
}

/// The passwords emu generated for the project in `dir` (`.emu/credentials.json`).
pub fn project_passwords(dir: &Path) -> Vec<String> {
    let path = emulator::backends::credentials_path(dir);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pws: Vec<String> = ["postgres_password", "app_password", "redis_password"]
        .iter()
        .map(|k| v[k].as_str().unwrap().to_string())
        .collect();
    assert!(pws.iter().all(|p| p.len() >= 24), "long passwords");
    pws
}

/// Panics when `text` (status, a log) holds any of `passwords`.
pub fn assert_no_password(what: &str, text: &str, passwords: &[String]) {
    for p in passwords {
        assert!(!text.contains(p.as_str()), "a password in {what}: {text}");
    }
}

/// emu's Redis at `url` (with its password) refuses a client without AUTH, as Memorystore with
/// AUTH does, and answers one with the URL's password.
pub async fn assert_redis_requires_auth(url: &str) {
    let mut bare = reqwest::Url::parse(url).unwrap();
    assert!(
        bare.password().is_some(),
        "the URL carries the password: {url}"
    );
    bare.set_password(None).unwrap();
    let client = redis::Client::open(bare.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let e = redis::cmd("PING")
        .query_async::<String>(&mut c)
        .await
        .expect_err("PING without AUTH");
    assert!(e.to_string().contains("NOAUTH"), "{e}");
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// emu's PostgreSQL at `url` refuses that URL's user with a wrong password (SQLSTATE 28P01)
/// and without one, and accepts the URL as given.
pub async fn assert_pg_requires_password(url: &str) {
    use sqlx::Connection;
    let mut wrong = reqwest::Url::parse(url).unwrap();
    wrong.set_password(Some("wrong")).unwrap();
    let mut none = wrong.clone();
    none.set_password(None).unwrap();
    for bad in [wrong, none] {
        let e = sqlx::PgConnection::connect(bad.as_str())
            .await
            .expect_err("a wrong or missing password is refused");
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("28P01"), "{e}");
    }
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(one, 1);
    c.close().await.unwrap();
}

/// Fails when no Docker engine answers (as every container test does in CI), unless the run opts
/// out with EMU_SKIP_DOCKER=1 outside CI; false then, and the test says it skipped.
pub async fn require_engine(test: &str) -> bool {
    let required = std::env::var_os("CI").is_some()
        || std::env::var("EMU_REQUIRE_DOCKER").as_deref() == Ok("1");
    if !required && std::env::var("EMU_SKIP_DOCKER").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: EMU_SKIP_DOCKER=1 (no Docker test ran)");
        return false;
    }
    if let Err(e) = emulator::backends::docker::engine().await {
        panic!("{test} needs a Docker engine: {e}\nStart one: eval \"$(bash scripts/docker-engine.sh)\" && bash scripts/docker-images.sh");
    }
    true
}

/// After emu gave a cluster new passwords: the app URL and the superuser (`superuser_password`)
/// both require them, and the table `old` made before is still there.
pub async fn assert_new_passwords_keep_old_data(url: &str, superuser_password: &str) {
    use sqlx::Connection;
    assert_pg_requires_password(url).await;
    let mut admin = reqwest::Url::parse(url).unwrap();
    admin.set_username("postgres").unwrap();
    admin.set_password(Some(superuser_password)).unwrap();
    assert_pg_requires_password(admin.as_str()).await;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM old")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 0, "the old table is still there");
    c.close().await.unwrap();
}
