//! `loadtest run` against a local HTTPS server whose certificate is generated here (rcgen): a CA
//! given with `--ca-cert` is trusted beside the platform's roots, HTTP/2 is negotiated (ALPN),
//! `--header` and `{{env:NAME}}` reach the server; without the CA the run is refused before any
//! traffic, `--insecure` skips the check, and bad TLS or header input is exit 2.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Version};
use axum::routing::get;
use axum::Router;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};

/// What the server saw: HTTP versions and the two headers the test sends.
#[derive(Default)]
struct Seen {
    versions: HashMap<String, u64>,
    auth: HashMap<String, u64>,
    tenant: HashMap<String, u64>,
}

type Shared = Arc<Mutex<Seen>>;

async fn home(State(seen): State<Shared>, version: Version, headers: HeaderMap) -> &'static str {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let mut s = seen.lock().unwrap();
    *s.versions.entry(format!("{version:?}")).or_default() += 1;
    *s.auth.entry(h("authorization")).or_default() += 1;
    *s.tenant.entry(h("x-tenant")).or_default() += 1;
    "ok"
}

/// A CA and a certificate for 127.0.0.1 and localhost signed by it: (CA PEM, cert PEM, key PEM).
fn certificates() -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "loadtest test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// Serves `app` over TLS (h2 and http/1.1 offered) on 127.0.0.1:0; returns the https URL.
async fn serve_tls(app: Router, cert_pem: &str, key_pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    format!("https://127.0.0.1:{}", addr.port())
}

const SCENARIO: &str = r#"
[[stage]]
rps = 20
hold = "1s"

[[request]]
name = "home"
path = "/"
headers = { "X-Tenant" = "{{env:LOADTEST_TEST_TENANT}}", "Authorization" = "Bearer placeholder" }
"#;

/// `loadtest run` with `LOADTEST_TEST_TENANT` set in its environment.
async fn run_with_env(args: &[&str]) -> std::process::Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .arg("--no-progress")
        .env("LOADTEST_TEST_TENANT", "acme")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(std::time::Duration::from_secs(60), child)
        .await
        .expect("loadtest finished within 60 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_target_runs_over_http2_with_the_ca_headers_and_env() {
    let (ca, cert, key) = certificates();
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route("/", get(home))
        .route("/_emu/status", get(|| async { "not emu" }))
        .with_state(seen.clone());
    let target = serve_tls(app, &cert, &key).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let sc = write_scenario(dir.path(), "tls.toml", SCENARIO);
    let out = dir.path().join("out");
    let o = run_with_env(&[
        "run",
        &sc,
        "--target",
        &target,
        "--ca-cert",
        ca_file.to_str().unwrap(),
        "--header",
        "Authorization: Bearer from-the-command-line",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let r = read_json(&out);
    assert_eq!(r["verdict"], "pass");
    assert_eq!(r["totals"]["requests"], 20);
    assert_eq!(r["totals"]["errors"], 0);
    let s = seen.lock().unwrap();
    assert_eq!(s.versions.get("HTTP/2.0"), Some(&20), "{:?}", s.versions);
    // --header replaced the scenario's Authorization; {{env:…}} was read from the environment.
    assert_eq!(
        s.auth.get("Bearer from-the-command-line"),
        Some(&20),
        "{:?}",
        s.auth
    );
    assert_eq!(s.tenant.get("acme"), Some(&20), "{:?}", s.tenant);
    // The report keeps the template, never the value.
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(!json.contains("from-the-command-line") && !json.contains("acme"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused_before_traffic_unless_insecure() {
    let (_, cert, key) = certificates();
    let seen: Shared = Arc::default();
    let app = Router::new().route("/", get(home)).with_state(seen.clone());
    let target = serve_tls(app, &cert, &key).await;
    let dir = tempfile::tempdir().unwrap();
    let sc = write_scenario(dir.path(), "tls.toml", SCENARIO);
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let o = run_with_env(&["run", &sc, "--target", &target, "--out", out]).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("is unreachable") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(seen.lock().unwrap().versions.is_empty());
    let o = run_with_env(&["run", &sc, "--target", &target, "--insecure", "--out", out]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(seen.lock().unwrap().versions.get("HTTP/2.0"), Some(&20));
}

#[tokio::test]
async fn bad_tls_header_or_env_input_is_exit_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let sc = write_scenario(dir.path(), "tls.toml", SCENARIO);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let g = garbage.to_str().unwrap();
    let t = "https://127.0.0.1:1";
    for (args, needle) in [
        (
            vec!["--ca-cert", g],
            format!("--ca-cert {g}: no PEM certificate"),
        ),
        (
            vec!["--ca-cert", "/no/such/ca.pem"],
            "--ca-cert /no/such/ca.pem: cannot read it".to_string(),
        ),
        (
            vec!["--header", "no colon"],
            "must be \"Name: value\"".to_string(),
        ),
        (
            vec!["--header", "bad name: x"],
            "is not a header name".to_string(),
        ),
    ] {
        let mut a = vec!["run", sc.as_str(), "--target", t];
        a.extend(args);
        let o = run_with_env(&a).await;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(&needle), "{needle:?} not in {err}");
    }
    // Without the variable: the scenario's file and line, before any traffic.
    let o = loadtest(&["run", &sc, "--target", t]).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tls.toml:9:") && err.contains("LOADTEST_TEST_TENANT is not set"),
        "{err}"
    );
}
