//! Nothing outlives emu: when the process that started native PostgreSQL and Redis is killed
//! with SIGKILL (no cleanup runs), the kernel's parent-death signal takes the servers down too.
//!
//! The test runs itself as the "emu" child: `holder` (ignored, so it never runs by itself)
//! starts the servers and waits to be killed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use emulator::backends::{self, BackendsPlan, Mode, PostgresConfig, RedisConfig};

const DIR_VAR: &str = "EMU_ORPHAN_TEST_DIR";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the \"emu\" child that `servers_die_with_a_killed_emu` starts and SIGKILLs; not a test by itself"]
async fn holder() {
    let Some(dir) = std::env::var_os(DIR_VAR).map(PathBuf::from) else {
        panic!("run by servers_die_with_a_killed_emu with {DIR_VAR} set");
    };
    let b = backends::start(BackendsPlan {
        postgres: PostgresConfig {
            mode: Mode::Native,
            ..Default::default()
        },
        redis: RedisConfig {
            mode: Mode::Native,
            ..Default::default()
        },
        project_dir: dir.clone(),
        databases: vec![],
    })
    .await
    .expect("native backends in the child");
    let s = b.status();
    let pids = format!("{} {}", s["postgres"]["pid"], s["redis"]["pid"]);
    std::fs::write(dir.join("pids.tmp"), pids).unwrap();
    std::fs::rename(dir.join("pids.tmp"), dir.join("pids")).unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    b.stop().await;
}

fn alive(pid: i32) -> bool {
    // Zombies count as gone: they have exited.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn servers_die_with_a_killed_emu() {
    if std::env::var_os(DIR_VAR).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "holder",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pids_file = dir.path().join("pids");
    let mut waited = 0;
    while !pids_file.exists() {
        assert!(
            waited < 600,
            "the child did not start its servers within 60 s"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let pids: Vec<i32> = std::fs::read_to_string(&pids_file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|p| alive(*p)), "servers run: {pids:?}");

    child.start_kill().unwrap(); // SIGKILL: no destructor, no stop()
    child.wait().await.unwrap();

    let mut left = pids.clone();
    for _ in 0..100 {
        left.retain(|p| alive(*p));
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Clean up before asserting, so a failure leaves nothing behind either.
    for p in &left {
        let _ = emulator::proc::signal_group(
            u32::try_from(*p).unwrap(),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = backends::down(dir.path(), true).await;
    assert!(left.is_empty(), "servers outlived emu: {left:?}");
}
