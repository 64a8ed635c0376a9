//! Jobs (migrations that must succeed first, `emu job run`) and secrets (env and files), with
//! real processes.

mod common;

use common::{run_emu, write, Emu};

const WITH_JOB: &str = r#"
[secrets]
db-password = "hunter2-secret"
api-key = { file = "api-key.txt" }

[[job]]
name = "migrate"
command = ["/bin/sh", "-c", "echo \"$CLOUD_RUN_JOB $CLOUD_RUN_TASK_INDEX $CLOUD_RUN_TASK_ATTEMPT $CLOUD_RUN_TASK_COUNT ${CLOUD_RUN_EXECUTION%-*} $JOB_PW\" >> tasks.txt"]
tasks = 3
parallelism = 2
secrets = { JOB_PW = "db-password:latest" }

[[service]]
name = "app"
command = ["/bin/sh", "-c", "echo \"$DEMO_DB_PASSWORD $EMU_SECRETS_ROOT\" > seen.txt; exec {EMU} demo-app"]
depends_on = ["migrate"]
secrets = { DEMO_DB_PASSWORD = "db-password:latest", "/secrets/api/key" = "api-key:latest" }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn migration_job_runs_first_and_secrets_reach_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "api-key.txt", "k-987");
    write(dir.path(), "emu.toml", WITH_JOB);
    let emu = Emu::start_in(dir, &[]);
    // The job ran to success before the front door opened: three tasks, with the job contract.
    let mut lines: Vec<String> = std::fs::read_to_string(emu.path().join("tasks.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "migrate 0 0 3 migrate hunter2-secret",
            "migrate 1 0 3 migrate hunter2-secret",
            "migrate 2 0 3 migrate hunter2-secret"
        ]
    );
    let v: serde_json::Value = reqwest::get(emu.url("/debug/request"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The instance got the secret (it wrote what it saw), and the demo's debug endpoint, which
    // any client can call, says it is set without showing it.
    let seen = std::fs::read_to_string(emu.path().join("seen.txt")).unwrap();
    let (password, root) = seen.trim().split_once(' ').unwrap();
    assert_eq!(password, "hunter2-secret");
    assert_eq!(v["env"]["DEMO_DB_PASSWORD"], "(set; value hidden)", "{v}");
    assert!(!v.to_string().contains("hunter2"), "{v}");
    assert_eq!(v["env"]["EMU_SECRETS_ROOT"], root, "{v}");
    let key = std::path::Path::new(root).join("secrets/api/key");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "k-987");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Values never in status or logs.
    let st = reqwest::get(emu.url("/_emu/status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!st.contains("hunter2"), "{st}");
    assert!(
        !emu.stderr_text().contains("hunter2"),
        "{}",
        emu.stderr_text()
    );
}

#[test]
fn a_failed_job_stops_emu_up_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "emu.toml",
        r#"
[[job]]
name = "migrate"
command = ["/bin/sh", "-c", "echo relation users already exists >&2; exit 3"]
max_retries = 1

[[service]]
name = "app"
command = ["/bin/sh", "-c", "echo \"$DEMO_DB_PASSWORD $EMU_SECRETS_ROOT\" > seen.txt; exec {EMU} demo-app"]
depends_on = ["migrate"]
"#,
    );
    let (code, err) = run_emu(dir.path(), &["up", "--port", "0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("relation users already exists"), "{err}");
    assert!(err.contains("failed after 2 attempt(s)"), "{err}");
    assert!(err.contains("not starting: job migrate failed"), "{err}");
    assert!(!err.contains("front door on"), "no service started: {err}");
}

#[test]
fn emu_job_run_runs_an_execution_with_retries_and_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "emu.toml",
        r#"
[[job]]
name = "flaky"
# Fails on the first attempt of each task, succeeds on the retry.
command = ["/bin/sh", "-c", "test \"$CLOUD_RUN_TASK_ATTEMPT\" = 1"]
tasks = 2
max_retries = 2

[[job]]
name = "slow"
command = ["sleep", "30"]
timeout = "1s"
max_retries = 0

[[service]]
name = "app"
command = ["{EMU}", "demo-app"]
"#,
    );
    let (code, err) = run_emu(dir.path(), &["job", "run", "flaky"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("succeeded (2/2 tasks succeeded"), "{err}");
    let (code, err) = run_emu(dir.path(), &["job", "run", "slow"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("timed out"), "{err}");
    let (code, err) = run_emu(dir.path(), &["job", "run", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("flaky, slow"), "{err}");
}

#[test]
fn cloud_run_job_yaml_runs() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "job.yaml",
        r#"apiVersion: run.googleapis.com/v1
kind: Job
metadata:
  name: report
spec:
  template:
    spec:
      parallelism: 1
      taskCount: 2
      template:
        spec:
          maxRetries: 0
          timeoutSeconds: '60'
          containers:
          - image: gcr.io/p/report
            command: ["/bin/sh", "-c"]
            args: ["echo task $CLOUD_RUN_TASK_INDEX of $CLOUD_RUN_TASK_COUNT >> out.txt"]
"#,
    );
    let (code, err) = run_emu(dir.path(), &["job", "run", "-f", "job.yaml"]);
    assert_eq!(code, 0, "{err}");
    let out = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    assert!(
        out.contains("task 0 of 2") && out.contains("task 1 of 2"),
        "{out}"
    );
}

#[test]
fn bad_job_and_secret_config_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "emu.toml",
        "[[service]]\nname = \"a\"\ncommand = [\"x\"]\ndepends_on = [\"migrate\"]\n",
    );
    let (code, err) = run_emu(dir.path(), &["up", "--port", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("depends on job \"migrate\""), "{err}");

    write(
        dir.path(),
        "emu.toml",
        "[[service]]\nname = \"a\"\ncommand = [\"x\"]\nsecrets = { TOKEN = \"missing:latest\" }\n",
    );
    let (code, err) = run_emu(dir.path(), &["up", "--port", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("secret \"missing\""), "{err}");

    // A secret file that is missing or is a directory: its line in [secrets], before anything
    // starts, and what to do.
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    for file in ["nope.txt", "keys"] {
        write(
            dir.path(),
            "emu.toml",
            &format!("[secrets]\nok = \"v\"\napi-key = {{ file = \"{file}\" }}\n\n[[service]]\nname = \"a\"\ncommand = [\"x\"]\nsecrets = {{ K = \"api-key:latest\" }}\n"),
        );
        let (code, err) = run_emu(dir.path(), &["up", "--port", "0"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("emu.toml:3:"), "{err}");
        assert!(
            err.contains(file) && err.contains("create the file"),
            "{err}"
        );
    }

    write(dir.path(), "emu.toml", "[[job]]\nname = \"j\"\ncommand = [\"true\"]\ntasks = 0\n\n[[service]]\nname = \"a\"\ncommand = [\"x\"]\n");
    let (code, err) = run_emu(dir.path(), &["up", "--port", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("emu.toml:4:") && err.contains("tasks"),
        "{err}"
    );
}
