//! Nothing of emu outlives a SIGKILL: not a server behind a wrapper (`sh -c "…; …"`, pyenv's
//! `python3` shim), not a daemon that left its process group with `setsid`, not the instance
//! and store containers. emu is the real binary, killed with SIGKILL so none of its own cleanup
//! runs; what is left is read from `/proc` and from the Docker engine.

mod common;

use std::time::Duration;

use common::{alive, Emu};

/// The pids of every process below `root`, read from /proc's parent links.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

async fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("after 30 s: {what}");
}

// The instance: a shell that is not exec'd away (it runs a command after the server), a server
// started through `python3` (a pyenv shim where pyenv is installed), and a daemon in its own
// session that writes its pid and sleeps.
const WRAPPED: &str = r#"
[[service]]
name = "wrapped"
command = '''sh -c 'setsid sh -c "echo \$\$ > daemon.pid; exec sleep 600" & python3 -m http.server "$PORT" --bind 127.0.0.1; echo server exited' '''
min_instances = 1
max_instances = 1
"#;

#[tokio::test(flavor = "multi_thread")]
async fn wrapped_and_daemonized_processes_die_with_a_sigkilled_emu() {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "emu.toml", WRAPPED);
    let mut emu = Emu::start_in(dir, &["--backends", "none"]);
    emu.wait_ready("wrapped", 1).await;
    let pid_file = emu.path().join("daemon.pid");
    poll_until("the daemon wrote its pid", || pid_file.exists()).await;
    let daemon: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let tree = descendants(emu.child.id());
    // emu's watchdog, the instance's shells, python and the server, but not the daemon
    // (setsid made it nobody's child below emu once its parent shell exited, or a sibling).
    assert!(tree.len() >= 3, "processes under emu: {tree:?}");
    assert!(alive(daemon), "the daemon runs");

    emu.child.kill().unwrap();
    emu.child.wait().unwrap();
    let mut left: Vec<u32> = tree.clone();
    left.push(daemon);
    poll_until("every process emu started is gone", || {
        left.retain(|p| alive(*p));
        left.is_empty()
    })
    .await;
    // The watchdog says so after its kills; its line reaches our reader a moment later.
    let said = "emu watchdog: emu exited without stopping its instances";
    poll_until("the watchdog said what it did", || {
        emu.stderr_text().contains(said)
    })
    .await;
}

const DOCKER: &str = r#"
[[service]]
name = "app"
image = "emu-test/app:latest"
min_instances = 1
max_instances = 1

[postgres]
mode = "docker"
version = 15
image = "emu-test/postgres:15"

[redis]
mode = "docker"
image = "emu-test/redis:7"
"#;

async fn running_containers(docker: &bollard::Docker, emu_pid: u32, project: &str) -> Vec<String> {
    let opts = bollard::query_parameters::ListContainersOptionsBuilder::default().build();
    let list = docker.list_containers(Some(opts)).await.unwrap();
    list.into_iter()
        .filter(|c| {
            let named_for_us = c
                .names
                .iter()
                .flatten()
                .any(|n| n.ends_with(&format!("-{emu_pid}")));
            let ours = c
                .labels
                .as_ref()
                .and_then(|l| l.get("dev.emu.project"))
                .is_some_and(|p| p == project);
            named_for_us || ours
        })
        .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_of_a_sigkilled_emu_stop() {
    let docker = match emulator::backends::docker::engine().await {
        Ok(d) => d,
        Err(e) if std::env::var("EMU_SKIP_DOCKER").as_deref() == Ok("1")
            && std::env::var_os("CI").is_none() =>
        {
            eprintln!("SKIPPED containers_of_a_sigkilled_emu_stop: EMU_SKIP_DOCKER=1 ({e})");
            return;
        }
        Err(e) => panic!("this test needs a Docker engine: {e}\nStart one: eval \"$(bash scripts/docker-engine.sh)\" && bash scripts/docker-images.sh"),
    };
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "emu.toml", DOCKER);
    let project = emulator::backends::docker::compose_project(dir.path());
    let mut emu = Emu::start_in(dir, &[]);
    emu.wait_ready("app", 1).await;
    let pid = emu.child.id();
    let before = running_containers(&docker, pid, &project).await;
    assert_eq!(
        before.len(),
        3,
        "the instance, PostgreSQL and Redis: {before:?}"
    );

    emu.child.kill().unwrap();
    emu.child.wait().unwrap();
    for _ in 0..300 {
        if running_containers(&docker, pid, &project).await.is_empty() {
            // Stopped stores stay for the next run; the next `emu down --volumes` removes them.
            let (code, out) = common::run_emu(emu.path(), &["down", "--volumes"]);
            assert_eq!(code, 0, "{out}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "still running 30 s after emu was killed: {:?}\n{}",
        running_containers(&docker, pid, &project).await,
        emu.stderr_text()
    );
}
