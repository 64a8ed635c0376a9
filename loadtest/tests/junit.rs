//! `junit.xml` against the strict Ant JUnit schema (`tests/data/junit-ant-strict.xsd`), checked
//! by xmllint (Debian's libxml2-utils; scripts/test.sh installs it): a passing, a failing and an
//! invalid run are valid, and the schema refuses what the strict format refuses (a case without
//! `time`, a suite without `hostname`, a `<failure>` without `type`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::synthetic::write_report;
use loadtest::report::{junit, load_report};

fn xsd() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/junit-ant-strict.xsd")
}

/// xmllint's verdict on `xml`: `Ok` when valid, else what it said.
fn xmllint(dir: &Path, name: &str, xml: &str) -> Result<(), String> {
    let file = dir.join(name);
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(xsd())
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "xmllint cannot be run ({e}): install Debian's libxml2-utils (scripts/test.sh \
                 installs it when missing); this test checks junit.xml against the strict Ant schema"
            )
        });
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

const SCENARIO: &str = r#"
name = "junit"
[[stage]]
rps = 20
hold = "2s"
[[request]]
name = "home"
path = "/"
[slo]
p95_ms = 1000
error_rate = 0.01
"#;

#[test]
fn junit_of_passing_failing_and_invalid_runs_is_valid_strict_ant() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Passing: every objective met.
    write_report(&d.join("pass"), SCENARIO, 5.0, 1);
    let pass = load_report(&d.join("pass")).unwrap().report;
    let xml = junit::render(&pass);
    xmllint(d, "pass.xml", &xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert!(xml.contains("tests=\"4\""), "{xml}");
    assert!(xml.contains("failures=\"0\""), "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");

    // Failing: p95 of ~5 ms against 1 ms, with a detail full of characters XML must escape.
    write_report(&d.join("fail"), &SCENARIO.replace("1000", "1"), 5.0, 1);
    let mut fail = load_report(&d.join("fail")).unwrap().report;
    fail.slos[0].detail = Some("worst <window> & \"quotes\" 'here'".into());
    let xml = junit::render(&fail);
    xmllint(d, "fail.xml", &xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
    assert!(xml.contains("type=\"slo\""), "{xml}");
    assert!(xml.contains("worst &lt;window&gt; &amp;"), "{xml}");
    // The suite's system-out says what every objective observed.
    assert!(xml.contains("FAIL p95_ms: observed"), "{xml}");
    assert!(xml.contains("PASS error_rate: observed"), "{xml}");

    // Invalid: an error with a type on the validity case.
    let mut invalid = pass.clone();
    invalid.invalid_reasons = vec!["target http://x is unreachable".into()];
    let xml = junit::render(&invalid);
    xmllint(d, "invalid.xml", &xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert!(
        xml.contains("<error message=\"target http://x is unreachable\" type=\"invalid_run\""),
        "{xml}"
    );
    assert!(xml.contains("errors=\"1\""), "{xml}");
}

#[test]
fn the_schema_refuses_what_strict_ant_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_report(&d.join("fail"), &SCENARIO.replace("1000", "1"), 5.0, 1);
    let xml = junit::render(&load_report(&d.join("fail")).unwrap().report);
    xmllint(d, "good.xml", &xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let host = xml
        .split("hostname=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a hostname");
    // What the issue found in the old junit.xml, each refused.
    let broken = [
        (
            "no hostname",
            xml.replace(&format!(" hostname=\"{host}\""), ""),
        ),
        ("no time on a case", xml.replacen(" time=\"0.000\"", "", 1)),
        ("a failure without type", xml.replace(" type=\"slo\"", "")),
        (
            "system-out inside a case",
            xml.replacen("</testcase>", "<system-out>x</system-out></testcase>", 1),
        ),
    ];
    for (what, bad) in broken {
        assert_ne!(bad, xml, "{what}: the edit changed nothing");
        let r = xmllint(d, "bad.xml", &bad);
        assert!(r.is_err(), "{what} was accepted:\n{bad}");
    }
}
