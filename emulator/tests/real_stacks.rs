//! Issue 15's three stacks, each a tiny real app (tests/data/stacks) under
//! `emu up -f STACK.yaml --backends native -- CMD` with nothing changed but CMD: FastAPI on
//! uvicorn with asyncpg and redis-py, Flask under gunicorn's sync workers with psycopg2 and
//! redis-py, express with pg and ioredis. Each must reach PostgreSQL and Redis through the
//! DATABASE_URL / REDIS_URL emu derives from the YAML, and hold the YAML's containerConcurrency:
//! with one slot on one instance, a second request waits and gets Cloud Run's 429.
//!
//! The stacks' packages come from `scripts/test-deps.sh`; a missing one fails the test (it never
//! skips) with the step to run.

mod common;

use common::Emu;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn stacks() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/stacks")
}

/// Fails, naming the install step, unless `program args` succeeds.
fn require(program: &str, args: &[&str], what: &str) {
    let ok = Command::new(program)
        .args(args)
        .current_dir(stacks())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{what} is missing: run `source scripts/test-deps.sh` (it installs the stacks' packages: \
         pip install fastapi uvicorn asyncpg redis flask gunicorn psycopg2-binary, and \
         npm install in emulator/tests/data/stacks)"
    );
}

async fn get_json(emu: &Emu, path: &str) -> serde_json::Value {
    let r = reqwest::get(emu.url(path)).await.unwrap();
    assert_eq!(r.status(), 200, "{path}: {}", emu.stderr_text());
    r.json().await.unwrap()
}

/// Runs `yaml` with `cmd` and checks: `/visit` writes to PostgreSQL and counts in Redis (twice,
/// so both stores keep state), and with the slot held by a slow request a second one is
/// answered 429 after the YAML's queue timeout while the first still ends in 200.
async fn stack(yaml: &str, service: &str, stack_name: &str, cmd: &[&str]) {
    let file = stacks().join(yaml);
    let mut args = vec!["-f", file.to_str().unwrap(), "--backends", "native", "--"];
    args.extend_from_slice(cmd);
    let mut emu = Emu::start_in(tempfile::tempdir().unwrap(), &args);
    // minScale 0: the first request cold-starts the instance (and waits for it to be ready).
    let first = get_json(&emu, "/visit").await;
    let s = emu.wait_ready(service, 1).await;
    assert_eq!(s["spec"]["concurrency"], 1, "{s}");
    assert_eq!(s["spec"]["max_instances"], 1, "{s}");
    let second = get_json(&emu, "/visit").await;
    assert_eq!(first["stack"], stack_name, "{first}");
    assert!(
        first["pg_version"].as_str().is_some_and(|v| !v.is_empty()),
        "{first}"
    );
    assert_eq!(
        second["row_id"].as_i64(),
        first["row_id"].as_i64().map(|i| i + 1),
        "{second}"
    );
    assert_eq!(second["redis_hits"].as_i64(), Some(2), "{second}");

    // One slot, one instance: hold it, and the next request can only queue.
    let held = tokio::spawn(reqwest::get(emu.url("/slow?s=8")));
    emu.wait_in_flight(service, 1).await;
    let refused = reqwest::get(emu.url("/slow?s=0")).await.unwrap();
    assert_eq!(refused.status(), 429, "{}", emu.stderr_text());
    let body = refused.text().await.unwrap();
    assert!(body.contains("no available instance"), "{body}");
    let held = held.await.unwrap().unwrap();
    assert_eq!(held.status(), 200);

    let status = emu.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", emu.stderr_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn fastapi_uvicorn_asyncpg_redis() {
    let imports = "import fastapi, uvicorn, asyncpg, redis";
    require(
        "python3",
        &["-c", imports],
        "FastAPI, uvicorn, asyncpg or redis-py",
    );
    let d = stacks();
    let run = format!(
        "exec python3 -m uvicorn --app-dir '{}' fastapi_app:app --host 127.0.0.1 --port \"$PORT\"",
        d.display()
    );
    stack(
        "fastapi.yaml",
        "fastapi-stack",
        "fastapi",
        &["/bin/sh", "-c", &run],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn flask_gunicorn_sync_workers_psycopg2_redis() {
    let imports = "import flask, gunicorn, psycopg2, redis";
    require(
        "python3",
        &["-c", imports],
        "Flask, gunicorn, psycopg2 or redis-py",
    );
    let run = format!(
        "exec python3 -m gunicorn --chdir '{}' --bind \":$PORT\" -w 2 flask_app:app",
        stacks().display()
    );
    stack(
        "flask.yaml",
        "flask-stack",
        "flask",
        &["/bin/sh", "-c", &run],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn express_pg_ioredis() {
    let resolve = "require.resolve('express'); require.resolve('pg'); require.resolve('ioredis')";
    require(
        "node",
        &["-e", resolve],
        "Node.js, or express, pg or ioredis",
    );
    let app = stacks().join("express_app.js");
    stack(
        "express.yaml",
        "express-stack",
        "express",
        &["node", app.to_str().unwrap()],
    )
    .await;
}
