//! `emu down`: stops the process named in `.emu/emu.pid`, removes stale pid files, and with
//! `volumes` removes native data.

use std::process::Stdio;

use emulator::backends;

#[tokio::test]
async fn down_terminates_the_recorded_process() {
    let dir = tempfile::tempdir().unwrap();
    let emu_dir = dir.path().join(".emu");
    std::fs::create_dir_all(&emu_dir).unwrap();
    let mut child = tokio::process::Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    std::fs::write(emu_dir.join("emu.pid"), format!("{pid}\n")).unwrap();

    let report = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        backends::down(dir.path(), false),
    )
    .await
    .expect("down returns promptly after SIGTERM")
    .unwrap();
    assert!(
        report.contains(&format!("stopped emu (pid {pid})")),
        "{report}"
    );
    assert!(!emu_dir.join("emu.pid").exists(), "{report}");
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "sleep was terminated, not finished");
}

#[tokio::test]
async fn down_removes_stale_pid_file_and_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let emu_dir = dir.path().join(".emu");
    std::fs::create_dir_all(emu_dir.join("redis")).unwrap();
    std::fs::create_dir_all(emu_dir.join("postgres/data")).unwrap();
    std::fs::write(emu_dir.join("redis/appendonly.aof"), "x").unwrap();
    // A pid that cannot be running (beyond pid_max).
    std::fs::write(emu_dir.join("emu.pid"), "2147483647\n").unwrap();

    let report = backends::down(dir.path(), true).await.unwrap();
    assert!(report.contains("stale"), "{report}");
    assert!(!emu_dir.join("emu.pid").exists(), "{report}");
    assert!(!emu_dir.join("redis").exists(), "{report}");
    assert!(!emu_dir.join("postgres").exists(), "{report}");
    assert!(report.contains("removed"), "{report}");

    // Nothing to do is fine too.
    let again = backends::down(dir.path(), false).await.unwrap();
    assert!(again.contains("no emu running"), "{again}");
}
