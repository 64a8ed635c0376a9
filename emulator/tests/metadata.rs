//! The metadata server, as a Cloud Run service meets it: a real instance runs Python with
//! Google's `google-auth` library, which finds the project through it and fetches an ID token
//! that verifies (with google-auth and PyJWT in the instance, and jsonwebtoken here) against
//! the JWKS emu serves. Plus Google's rules a client can see: the Metadata-Flavor header both
//! ways, 403 without it, 404 for what is not there.

mod common;

use std::time::Duration;

use common::{run_emu, write, Emu};
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};

const APP: &str = include_str!("data/metadata_app.py");
const ACCOUNT: &str = "api@shop-test-1.iam.gserviceaccount.com";
const AUDIENCE: &str = "https://aud.example";

const TOML: &str = r#"
[project]
id = "shop-test-1"
number = 987654321098
region = "europe-west4"
service_account = "api@shop-test-1.iam.gserviceaccount.com"

[[service]]
name = "api"
command = ["python3", "app.py"]
# No gcloud login of the developer's may stand in for the metadata server.
env = { CLOUDSDK_CONFIG = "/nonexistent/emu-test-gcloud" }
"#;

/// The Python packages the instance needs; missing ones fail the test (scripts/test.sh
/// installs them), they never skip it.
fn require_python_packages() {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import google.auth, google.oauth2.id_token, requests, jwt, cryptography",
        ])
        .output()
        .expect("python3 must be installed for the metadata server's test");
    assert!(
        out.status.success(),
        "the metadata test needs Python's google-auth, requests, pyjwt and cryptography: run `python3 -m pip install google-auth requests pyjwt cryptography` (scripts/test.sh does)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GETs `url` from the instance until it answers (the first request starts it), up to a minute;
/// an answer other than 200 or a busy front door's 429/503/504 fails at once, with its body.
async fn get_json(url: &str) -> serde_json::Value {
    let client = reqwest::Client::new();
    let mut last = String::new();
    for _ in 0..120 {
        match client.get(url).send().await {
            Ok(r) if r.status() == 200 => return r.json().await.unwrap(),
            Ok(r) if ![429, 503, 504].contains(&r.status().as_u16()) => {
                panic!(
                    "{url}: {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )
            }
            Ok(r) => last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{url} never answered 200; last: {last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn google_auth_in_an_instance_finds_the_project_and_a_verifiable_id_token() {
    require_python_packages();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "app.py", APP);
    write(dir.path(), "emu.toml", TOML);
    let mut emu = Emu::start_in(dir, &[]);
    let seen = get_json(&emu.url(&format!("/?audience={AUDIENCE}"))).await;

    // google.auth.default(): compute-engine credentials, the configured project and account,
    // and an access token from the token endpoint.
    assert_eq!(seen["project_id"], "shop-test-1", "{seen}");
    assert_eq!(
        seen["credentials"],
        "google.auth.compute_engine.credentials"
    );
    assert_eq!(seen["email"], ACCOUNT);
    assert!(
        seen["access_token"].as_str().unwrap().starts_with("ya29."),
        "{seen}"
    );
    // google-auth verified the ID token against emu's JWKS (with PyJWT): audience and account.
    let claims = &seen["verified_claims"];
    assert_eq!(claims["aud"], AUDIENCE, "{seen}");
    assert_eq!(claims["email"], ACCOUNT);
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["iss"], "https://accounts.google.com");

    // The instance was pointed at the server emu said it started, and both names agree.
    let host = seen["metadata_host"].as_str().unwrap().to_string();
    assert_eq!(seen["metadata_ip"], host.as_str());
    assert!(host.starts_with("127.0.0.1:"), "{host}");
    assert!(
        emu.stderr_text().contains(&format!(
            "emu: metadata server on http://{host} (project shop-test-1"
        )),
        "{}",
        emu.stderr_text()
    );
    let status = emu.status().await;
    assert_eq!(status["metadata"]["address"], host.as_str(), "{status}");
    assert_eq!(status["metadata"]["project_id"], "shop-test-1");

    // The same token verifies here, with another library, against the served key set.
    let jwks: JwkSet = reqwest::get(format!("http://{host}/emu/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = seen["id_token"].as_str().unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let jwk = jwks.find(&kid).expect("the token's key is in the JWKS");
    let mut rules = Validation::new(Algorithm::ES256);
    rules.set_audience(&[AUDIENCE]);
    rules.set_issuer(&["https://accounts.google.com"]);
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &rules).unwrap();
    assert_eq!(data.claims["email"], ACCOUNT);
    let mut wrong = rules.clone();
    wrong.set_audience(&["https://other.example"]);
    assert!(jsonwebtoken::decode::<serde_json::Value>(token, &key, &wrong).is_err());

    google_rules(&host).await;

    // The server lives as long as its run.
    emu.terminate(Duration::from_secs(30));
    assert!(
        std::net::TcpStream::connect(&host).is_err(),
        "{host} still answers after emu stopped"
    );
}

/// What any client of the server sees: the header rule, content types, values, 404s.
async fn google_rules(host: &str) {
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://{host}/computeMetadata/v1/{p}");
    let plain = client.get(url("project/project-id")).send().await.unwrap();
    assert_eq!(plain.status(), 403);
    assert!(plain.text().await.unwrap().contains("Metadata-Flavor"));

    let get = |p: &str| {
        client
            .get(url(p))
            .header("Metadata-Flavor", "Google")
            .send()
    };
    let r = get("project/project-id").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["metadata-flavor"], "Google");
    assert_eq!(r.headers()["content-type"], "application/text");
    assert_eq!(r.text().await.unwrap(), "shop-test-1");
    for (path, want) in [
        ("project/numeric-project-id", "987654321098"),
        (
            "instance/region",
            "projects/987654321098/regions/europe-west4",
        ),
        (
            "instance/zone",
            "projects/987654321098/zones/europe-west4-1",
        ),
        ("instance/service-accounts/default/email", ACCOUNT),
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.text().await.unwrap(), want, "{path}");
    }
    let token: serde_json::Value = get("instance/service-accounts/default/token")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["token_type"], "Bearer");
    assert!(token["expires_in"].as_u64().unwrap() > 3000, "{token}");
    let r = get("instance/service-accounts/default/identity")
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "an ID token needs an audience");
    let r = get("instance/no-such-thing").await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["metadata-flavor"], "Google");
}

#[test]
fn a_bad_project_value_is_a_file_line_error_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = TOML.replace("\"europe-west4\"", "\"Europe West\"");
    write(dir.path(), "emu.toml", &bad);
    let (code, stderr) = run_emu(dir.path(), &["up", "--port", "0"]);
    assert_eq!(code, 2, "{stderr}");
    let line = bad.lines().position(|l| l.starts_with("region")).unwrap() + 1;
    assert!(
        stderr.contains(&format!("emu.toml:{line}: region \"Europe West\"")),
        "{stderr}"
    );
}

/// Reads the project id from the metadata server, the way a library would (stdlib only, as the
/// test image has no google-auth).
const READ_PROJECT_ID: &str = "import os, urllib.request as u; print(u.urlopen(u.Request('http://' + os.environ['GCE_METADATA_HOST'] + '/computeMetadata/v1/project/project-id', headers={'Metadata-Flavor': 'Google'})).read().decode())";

#[tokio::test(flavor = "multi_thread")]
async fn a_container_instance_reaches_the_metadata_server() {
    if !common::require_engine("a_container_instance_reaches_the_metadata_server").await {
        return;
    }
    let emu = Emu::start_toml(
        "[project]\nid = \"shop-test-2\"\n\n[[service]]\nname = \"app\"\nimage = \"emu-test/app:latest\"\n",
    );
    let client = reqwest::Client::new();
    let mut instance = None;
    for _ in 0..120 {
        if let Ok(r) = client.get(emu.url("/")).send().await {
            if r.status() == 200 {
                instance = r.headers().get("x-emu-instance").cloned();
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let instance = instance.expect("the container instance never answered");
    // Containers share the host's network, so 127.0.0.1:PORT in their env is the server.
    let name = format!("emu-{}-{}", instance.to_str().unwrap(), emu.child.id());
    let out = std::process::Command::new("docker")
        .args(["exec", &name, "python3", "-c", READ_PROJECT_ID])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "shop-test-2");
}

#[test]
fn a_job_run_on_its_own_has_a_metadata_server_too() {
    let dir = tempfile::tempdir().unwrap();
    let script = READ_PROJECT_ID.replace('\'', "\\\"");
    write(
        dir.path(),
        "emu.toml",
        &format!("[project]\nid = \"shop-test-3\"\n\n[[service]]\nname = \"api\"\ncommand = [\"true\"]\n\n[[job]]\nname = \"report\"\ncommand = [\"/bin/sh\", \"-c\", \"python3 -c '{script}' > project.txt\"]\n"),
    );
    let (code, stderr) = run_emu(dir.path(), &["job", "run", "report"]);
    assert_eq!(code, 0, "{stderr}");
    let seen = std::fs::read_to_string(dir.path().join("project.txt")).unwrap();
    assert_eq!(seen.trim(), "shop-test-3");
}
