//! `junit.xml`: one test case per SLO, plus one for the run's validity, so CI shows exactly
//! which objective broke.
//!
//! Written by quick-junit (nextest's crate) with everything the strict Apache Ant schema
//! requires: `hostname`, `timestamp`, `package` and `id` on the suite, `time` and `classname`
//! on every case, a `type` on every `<failure>` and `<error>`, and the suite's `<properties>`,
//! `<system-out>` and `<system-err>`. The strict schema allows no `<system-out>` inside a case,
//! so what each objective observed is in the suite's `<system-out>` (and in a failure's
//! message). `loadtest/tests/junit.rs` checks the file with xmllint against
//! `loadtest/tests/data/junit-ant-strict.xsd`.

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use quick_junit::{NonSuccessKind, Property, Report as JUnit, TestCase, TestCaseStatus, TestSuite};

use super::Report;
use crate::slo::SloResult;

/// The host the file is written on; `localhost` when it cannot be told (as Ant's schema asks).
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn observed(slo: &SloResult) -> String {
    slo.observed
        .map(|o| format!("{o:.3}"))
        .unwrap_or_else(|| "none".into())
}

/// One objective as a test case; the judgement takes no time of its own (`time` 0: the run's
/// time is the validity case's).
fn slo_case(classname: &str, slo: &SloResult) -> TestCase {
    let status = if slo.passed {
        TestCaseStatus::success()
    } else {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
        st.set_type("slo").set_message(format!(
            "observed {} {}, wanted {} {}{}",
            observed(slo),
            slo.unit,
            slo.comparison,
            slo.threshold,
            slo.detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
        st
    };
    let mut case = TestCase::new(format!("{}: {}", slo.name, slo.description), status);
    case.set_classname(classname).set_time(Duration::ZERO);
    case
}

/// Renders the JUnit XML report.
pub fn render(r: &Report) -> String {
    let suite_name = format!("loadtest.{}", r.scenario.name);
    let started: Option<DateTime<FixedOffset>> = DateTime::parse_from_rfc3339(&r.started_at).ok();
    let time = Duration::try_from_secs_f64(r.duration_s).unwrap_or_default();
    let mut suite = TestSuite::new(suite_name.as_str());
    suite.set_time(time);
    // The strict schema requires a timestamp; a report without a readable one gets the epoch.
    suite.set_timestamp(started.unwrap_or_default());
    suite.extra.insert("hostname".into(), hostname().into());
    suite.extra.insert("package".into(), "loadtest".into());
    suite.extra.insert("id".into(), "0".into());
    suite.add_properties([
        Property::new("target", r.target.as_str()),
        Property::new("verdict", r.verdict.as_str()),
        Property::new("interrupted", r.interrupted.to_string()),
    ]);
    let valid = if r.invalid_reasons.is_empty() {
        TestCaseStatus::success()
    } else {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
        st.set_type("invalid_run")
            .set_message(r.invalid_reasons.join("; "));
        st
    };
    let mut case = TestCase::new("run is valid", valid);
    case.set_classname(suite_name.as_str()).set_time(time);
    suite.add_test_case(case);
    let mut out = vec![r.headline()];
    for slo in &r.slos {
        suite.add_test_case(slo_case(&suite_name, slo));
        out.push(format!(
            "{} {}: observed {} {} (wanted {} {})",
            if slo.passed { "PASS" } else { "FAIL" },
            slo.name,
            observed(slo),
            slo.unit,
            slo.comparison,
            slo.threshold
        ));
    }
    suite.set_system_out(out.join("\n"));
    suite.set_system_err(r.invalid_reasons.join("\n"));
    let mut report = JUnit::new("loadtest");
    report.set_time(time);
    if let Some(t) = started {
        report.set_timestamp(t);
    }
    report.add_test_suite(suite);
    let mut xml = report
        .to_string()
        .unwrap_or_else(|e| format!("<!-- junit.xml could not be written: {e} -->"));
    xml.push('\n');
    xml
}
