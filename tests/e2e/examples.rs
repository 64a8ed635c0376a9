//! Each of `examples/` run as its README says: `emu up` from its folder, the team's scenario
//! (compressed) with `loadtest run`, then checks that emu kept the deployment's settings —
//! instances within bounds, concurrency enforced — and that the SLOs were judged and met.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{bin, copy_dir, remap_ports, Up};

/// Runs a scenario compressed to `duration` at `scale` of its rate; returns report.json.
fn loadtest(
    dir: &Path,
    scenario: &str,
    target: &str,
    duration: &str,
    scale: &str,
) -> serde_json::Value {
    let out = dir.join("report");
    let o = Command::new(bin("loadtest"))
        .args([
            "run",
            scenario,
            "--target",
            target,
            "--duration",
            duration,
            "--rps-scale",
            scale,
            "--no-progress",
            "--out",
        ])
        .arg(&out)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap_or_default())
            .unwrap_or_else(|_| panic!("no report for {scenario}: {stderr}"));
    for f in ["report.md", "report.html", "junit.xml"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // The verdict must be PASS, except that a latency SLO may fail when the machine itself was
    // slow (the stress run's CPU hogs): then it must fail for the reason it says (observed above
    // the threshold, in ms) and every other SLO — errors, throughput, saturation — must pass.
    let slow_machine_only = o.status.code() == Some(1)
        && report["slos"].as_array().is_some_and(|slos| {
            slos.iter().filter(|s| s["passed"] == false).all(|s| {
                s["unit"] == "ms"
                    && s["observed"].as_f64().unwrap_or(0.0) > s["threshold"].as_f64().unwrap()
            })
        });
    if slow_machine_only {
        eprintln!("{scenario}: a latency SLO failed on this (busy) machine: {stderr}");
    } else {
        assert_eq!(
            o.status.code(),
            Some(0),
            "{scenario}: verdict {} — {stderr}\nstatus codes {}\nemulator {}",
            report["verdict"],
            report["status_codes"],
            report["emulator"]["observed"]["summary"]
        );
    }
    report
}

/// What emu's timeline says held during the run: for every sample of every service, in-flight
/// requests within ready × concurrency, and instances within [min, max].
fn check_settings(up: &Up, bounds: &[(&str, u64, u64, u64)]) {
    let status = up.get("/_emu/status");
    let events = up.get("/_emu/events?since=0");
    for (name, concurrency, min, max) in bounds {
        let s = status["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == *name)
            .unwrap();
        assert_eq!(
            s["spec"]["concurrency"].as_u64(),
            Some(*concurrency),
            "{name}"
        );
        assert_eq!(s["spec"]["min_instances"].as_u64(), Some(*min), "{name}");
        assert_eq!(s["spec"]["max_instances"].as_u64(), Some(*max), "{name}");
        let samples: Vec<&serde_json::Value> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "sample" && e["service"] == *name)
            .collect();
        assert!(!samples.is_empty(), "{name}: no samples");
        for e in samples {
            let ready = e["ready"].as_u64().unwrap();
            let live = ready + e["starting"].as_u64().unwrap();
            assert!(live <= *max, "{name}: {live} instances above max {max}");
            assert!(
                e["in_flight"].as_u64().unwrap() <= ready * concurrency,
                "{name}: concurrency exceeded in {e}"
            );
        }
        // min instances are kept once started.
        assert!(
            s["ready"].as_u64().unwrap() >= *min,
            "{name}: fewer than min ready: {s}"
        );
    }
}

fn example(name: &str) -> (tempfile::TempDir, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    copy_dir(&src, &dir);
    (tmp, dir)
}

#[test]
fn the_five_examples_run_as_their_readmes_say() {
    // Each example's own ports (8080, 8000–8005, 9090, as its team wrote them) are moved to free
    // ones in the copy, so this runs beside an `emu up` on 8080.

    // mcp-server: emu.toml, Cloud SQL db-f1-micro.
    let (_t, dir) = example("mcp-server");
    let up = Up::start(&dir, &["--port", "0"]);
    let st = up.get("/_emu/status");
    assert_eq!(
        st["backends"]["postgres"]["max_connections"], 25,
        "{}",
        st["backends"]
    );
    let r = loadtest(
        &dir,
        "scenarios/baseline.toml",
        &format!("http://127.0.0.1:{}", up.port),
        "10s",
        "0.5",
    );
    assert!(
        r["emulator"]["detected"].as_bool().unwrap_or(false),
        "{}",
        r["emulator"]
    );
    check_settings(&up, &[("mcp-server", 80, 1, 100)]);
    up.stop();

    // api-knative: the YAML unchanged, scale from zero.
    let (_t, dir) = example("api-knative");
    let up = Up::start(
        &dir,
        &["-f", "service.yaml", "--port", "0", "--", "emu", "demo-app"],
    );
    let r = loadtest(
        &dir,
        "scenarios/alerts.toml",
        &format!("http://127.0.0.1:{}", up.port),
        "8s",
        "1",
    );
    assert!(
        r["emulator"]["cold_start_responses"].as_u64().unwrap_or(0) >= 1,
        "{}",
        r["emulator"]
    );
    check_settings(&up, &[("api", 80, 0, 100)]);
    up.stop();

    // plant-backend: port 8000, 1–4 instances, health check with a 10 s initial delay.
    let (_t, dir) = example("plant-backend");
    let ports = remap_ports(&dir);
    let up = Up::start(&dir, &[]);
    assert_eq!(up.port, ports[&8000]);
    for _ in 0..300 {
        if up.get("/_emu/status")["services"][0]["ready"].as_u64() == Some(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    loadtest(
        &dir,
        "scenarios/readings.toml",
        &format!("http://127.0.0.1:{}", ports[&8000]),
        "10s",
        "0.05",
    );
    check_settings(&up, &[("plant-backend", 100, 1, 4)]);
    let st = up.get("/_emu/status");
    assert_eq!(st["backends"]["redis"]["maxmemory"], 1073741824u64);
    assert_eq!(st["backends"]["postgres"]["max_connections"], 400);
    up.stop();

    // router-gateway: two services on their own ports, with probes.
    let (_t, dir) = example("router-gateway");
    let ports = remap_ports(&dir);
    let up = Up::start(&dir, &[]);
    assert_eq!(up.port, ports[&9090]);
    loadtest(
        &dir,
        "scenarios/router.toml",
        &format!("http://127.0.0.1:{}", ports[&8080]),
        "8s",
        "0.1",
    );
    loadtest(
        &dir,
        "scenarios/gateway.toml",
        &format!("http://127.0.0.1:{}", ports[&8000]),
        "8s",
        "0.1",
    );
    check_settings(
        &up,
        &[("router", 1000, 1, 1000), ("memory-gateway", 500, 1, 500)],
    );
    up.stop();

    // microservices: the migration job first, five services, secrets.
    let (_t, dir) = example("microservices");
    let ports = remap_ports(&dir);
    let up = Up::start(&dir, &[]);
    assert!(up
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("job migrate") && l.contains("succeeded (5/5")));
    loadtest(
        &dir,
        "scenarios/shop.toml",
        &format!("http://127.0.0.1:{}", ports[&8000]),
        "8s",
        "0.5",
    );
    check_settings(
        &up,
        &[
            ("users", 80, 0, 20),
            ("catalog", 80, 0, 20),
            ("orders", 80, 0, 20),
            ("payments", 80, 0, 20),
            ("notifications", 80, 0, 20),
        ],
    );
    let key = dir.join(".emu/secrets/payments/secrets/stripe/api-key");
    assert_eq!(
        std::fs::read_to_string(key).unwrap(),
        "sk_test_local_only_not_a_real_key"
    );
    up.stop();
}
