//! Off a terminal (a CI log: here stderr is a pipe), `loadtest run` prints one plain progress
//! line every `--progress-interval`; `--no-progress` prints none.

mod common;

use axum::routing::get;
use axum::Router;
use common::*;

const SCENARIO: &str = r#"
[[stage]]
rps = 20
hold = "3s"

[[request]]
name = "home"
path = "/"
"#;

fn progress_lines(err: &str) -> Vec<&str> {
    err.lines()
        .filter(|l| l.starts_with("loadtest: ") && l.contains(" s / 3 s"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_log_gets_a_plain_line_every_interval() {
    let target = serve(Router::new().route("/", get(|| async { "ok" }))).await;
    let dir = tempfile::tempdir().unwrap();
    let sc = write_scenario(dir.path(), "p.toml", SCENARIO);
    let out = dir.path().join("out");
    let o = loadtest_raw(&[
        "run",
        &sc,
        "--target",
        &target,
        "--out",
        out.to_str().unwrap(),
        "--progress-interval",
        "500ms",
    ])
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let lines = progress_lines(&err);
    // 3 s at one line per 500 ms: about six; a stalled machine may merge a few, never all.
    assert!(lines.len() >= 3, "{err}");
    for l in &lines {
        // Past the planned 3 s (requests still finishing on a slow machine) the target is 0.
        let elapsed: f64 = l["loadtest: ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let in_plan = elapsed < 2.95;
        if in_plan {
            assert!(l.contains("target 20 rps"), "target missing in {l:?}");
        }
        for part in ["achieved ", " rps  p95 ", "errors 0", "in flight "] {
            assert!(l.contains(part), "{part:?} missing in {l:?}");
        }
    }
    // No terminal escape codes in a log.
    assert!(!err.contains('\u{1b}'), "{err:?}");
    // Elapsed moves forward line by line.
    let secs: Vec<f64> = lines
        .iter()
        .map(|l| {
            l["loadtest: ".len()..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(secs.windows(2).all(|w| w[0] < w[1]), "{secs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_progress_means_no_lines_and_a_bad_interval_is_exit_2() {
    let target = serve(Router::new().route("/", get(|| async { "ok" }))).await;
    let dir = tempfile::tempdir().unwrap();
    let sc = write_scenario(dir.path(), "p.toml", SCENARIO);
    let out = dir.path().join("out");
    let o = loadtest(&[
        "run",
        &sc,
        "--target",
        &target,
        "--out",
        out.to_str().unwrap(),
        "--progress-interval",
        "500ms",
    ])
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(progress_lines(&err).is_empty(), "{err}");
    for bad in ["0s", "soon", "2h"] {
        let o = loadtest_raw(&["run", &sc, "--progress-interval", bad]).await;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--progress-interval"), "{err}");
    }
}
