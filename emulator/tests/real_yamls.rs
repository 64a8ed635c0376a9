//! Real Cloud Run service YAMLs from public repositories (tests/data/real-yamls, sources in its
//! SOURCES.md), each run unchanged under `emu up -f FILE -- CMD` with a generic app as CMD:
//! what emu runs must come up, answer through the front door and show the YAML's limits in
//! `/_emu/status`; what Cloud Run itself would refuse must be refused with exit 2 at file:line.

mod common;

use common::{run_emu, Emu};
use std::path::PathBuf;
use std::time::Duration;

/// What a file's YAML sets, as `/_emu/status` shows it in `spec`.
struct Limits {
    concurrency: u64,
    max_instances: u64,
    min_instances: u64,
    timeout_s: f64,
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/real-yamls")
        .join(name)
}

/// The Secret Manager names a YAML uses (env `secretKeyRef.name`, volume `secret.secretName`),
/// so each file gets a `secrets.toml` with a dummy value for each and nothing else.
fn secret_names(v: &serde_yaml_ng::Value, out: &mut Vec<String>) {
    match v {
        serde_yaml_ng::Value::Mapping(m) => {
            for (k, v) in m {
                let inner = |key: &str| v.get(key).and_then(|n| n.as_str()).map(String::from);
                let found = match k.as_str() {
                    Some("secretKeyRef") => inner("name"),
                    Some("secret") => inner("secretName"),
                    _ => None,
                };
                out.extend(found.filter(|n| !out.contains(n)));
                secret_names(v, out);
            }
        }
        serde_yaml_ng::Value::Sequence(s) => s.iter().for_each(|v| secret_names(v, out)),
        _ => {}
    }
}

/// A fresh folder holding `secrets.toml` for `file`'s secrets (none when it uses none).
fn project_dir(file: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(data(file)).unwrap();
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut names = Vec::new();
    secret_names(&yaml, &mut names);
    if !names.is_empty() {
        let entries: String = names
            .iter()
            .map(|n| format!("\"{n}\" = \"dummy-{n}\"\n"))
            .collect();
        std::fs::write(
            dir.path().join("secrets.toml"),
            format!("[secrets]\n{entries}"),
        )
        .unwrap();
    }
    dir
}

/// `-f FILE --backends none -- python3 ok_app.py`: the file as it is, a generic app as its image.
fn up_args(file: &str) -> Vec<String> {
    let app = data("ok_app.py");
    ["-f", data(file).to_str().unwrap(), "--backends", "none"]
        .into_iter()
        .chain(["--", "python3", app.to_str().unwrap()])
        .map(String::from)
        .collect()
}

/// Runs `file` and checks what a user would: `/` answers 200 through the front door (from the
/// app, with the YAML's service name), the status then shows a ready instance and the YAML's
/// limits, and SIGTERM stops emu with exit 0.
async fn runs(file: &str, service: &str, want: Limits) {
    let args = up_args(file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut emu = Emu::start_in(project_dir(file), &args);
    // minScale 0 starts nothing until a request: this one cold-starts the instance.
    let r = reqwest::get(emu.url("/")).await.unwrap();
    assert_eq!(r.status(), 200, "{}", emu.stderr_text());
    assert_eq!(r.text().await.unwrap(), format!("ok {service} /\n"));
    let s = emu.wait_ready(service, 1).await;
    let spec = &s["spec"];
    assert_eq!(spec["concurrency"], want.concurrency, "{file}: {spec}");
    assert_eq!(spec["max_instances"], want.max_instances, "{file}: {spec}");
    assert_eq!(spec["min_instances"], want.min_instances, "{file}: {spec}");
    assert_eq!(spec["timeout_s"], want.timeout_s, "{file}: {spec}");
    let status = emu.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{file}: {}", emu.stderr_text());
}

/// Runs `file` and checks emu refuses it as Cloud Run would: exit 2, the file and line of the
/// offending field, and the words that say what is wrong.
fn refused(file: &str, line: u32, says: &str) {
    let dir = project_dir(file);
    let mut args = vec!["up".to_string(), "--port".into(), "0".into()];
    args.extend(up_args(file));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, err) = run_emu(dir.path(), &args);
    assert_eq!(code, 2, "{file}: {err}");
    let at = format!("{}:{line}: ", data(file).display());
    assert!(err.contains(&at), "{file}: wanted {at:?} in {err}");
    assert!(err.contains(says), "{file}: wanted {says:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn merkl_dispute_quoted_numbers_and_nine_env_secrets() {
    let l = Limits {
        concurrency: 1,
        max_instances: 2,
        min_instances: 0,
        timeout_s: 600.0,
    };
    runs("01-merkl-dispute.yaml", "merkl-dispute-base", l).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gcloudmaps_gcloud_export() {
    let l = Limits {
        concurrency: 80,
        max_instances: 1,
        min_instances: 0,
        timeout_s: 300.0,
    };
    runs("02-gcloudmaps.yaml", "gcloudmaps-backend-test", l).await;
}

/// Cloud Run wants an email for `serviceAccountName`; this one is a bare account id.
#[test]
fn reports_app_bare_service_account_is_refused() {
    refused(
        "03-reports-app-cloudrun.yaml",
        25,
        "is not a service account's email",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn huibot_defaults_where_annotations_are_not_cloud_runs() {
    // run.googleapis.com/minInstances / maxInstances are not annotations Cloud Run reads: the
    // defaults hold (emu lists them as not modelled).
    let l = Limits {
        concurrency: 80,
        max_instances: 100,
        min_instances: 0,
        timeout_s: 300.0,
    };
    runs("04-huibot-cloudrun.yaml", "huibot", l).await;
}

/// Both containers declare a port: Cloud Run refuses it (exactly one may take requests).
#[test]
fn citizen_budget_lab_two_ingress_containers_are_refused() {
    refused(
        "05-citizen-budget-lab.yaml",
        13,
        "exactly one container with an exposed port",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn autodoc_scale_and_concurrency() {
    let l = Limits {
        concurrency: 10,
        max_instances: 3,
        min_instances: 0,
        timeout_s: 300.0,
    };
    runs("06-autodoc.yaml", "autodoc-mcp", l).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aidd_mcp_server_four_secrets_and_a_warm_instance() {
    let l = Limits {
        concurrency: 80,
        max_instances: 10,
        min_instances: 1,
        timeout_s: 300.0,
    };
    runs("07-aidd-mcp-server.yaml", "aidd-mcp", l).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn officeops_long_timeout_and_one_secret() {
    let l = Limits {
        concurrency: 20,
        max_instances: 100,
        min_instances: 0,
        timeout_s: 900.0,
    };
    runs("08-officeops-runtime-py.yaml", "officeops-runtime-py", l).await;
}

/// An unrendered template: `${MIN_INSTANCES}` is not a number.
#[test]
fn veria_unrendered_template_is_refused() {
    refused("09-veria.yaml", 14, "is not a whole number");
}

/// `envFrom` is in Cloud Run's API but "not supported by Cloud Run": refused, not ignored.
#[test]
fn fls_hackathon_env_from_is_refused() {
    refused(
        "10-fls-hackathon-saucerers.yaml",
        55,
        "envFrom is not supported by Cloud Run",
    );
}

/// `PORT` is reserved: Cloud Run refuses a service that sets it.
#[test]
fn bloocube_port_in_env_is_refused() {
    refused(
        "11-bloocube-backend.yaml",
        15,
        "reserved env names were provided: PORT",
    );
}
