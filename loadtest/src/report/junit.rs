//! `junit.xml`: one test case per SLO, plus one for the run's validity, so CI shows exactly
//! which objective broke.

use std::fmt::Write as _;

use super::Report;

/// Escapes text for XML attributes and content.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Renders the JUnit XML report.
pub fn render(r: &Report) -> String {
    let suite = format!("loadtest.{}", r.scenario.name);
    let failures = r.failed_slos().count();
    let errors = usize::from(!r.invalid_reasons.is_empty());
    let tests = r.slos.len() + 1;
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"loadtest\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{:.3}\">",
        r.duration_s
    );
    let _ = writeln!(
        s,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{:.3}\" timestamp=\"{}\">",
        xml_escape(&suite),
        r.duration_s,
        xml_escape(&r.started_at)
    );
    let _ = writeln!(
        s,
        "    <properties><property name=\"target\" value=\"{}\"/><property name=\"verdict\" value=\"{}\"/><property name=\"interrupted\" value=\"{}\"/></properties>",
        xml_escape(&r.target),
        r.verdict.as_str(),
        r.interrupted
    );
    let _ = write!(
        s,
        "    <testcase classname=\"{}\" name=\"run is valid\">",
        xml_escape(&suite)
    );
    if r.invalid_reasons.is_empty() {
        s.push_str("</testcase>\n");
    } else {
        let _ = writeln!(
            s,
            "\n      <error message=\"{}\"/>\n    </testcase>",
            xml_escape(&r.invalid_reasons.join("; "))
        );
    }
    for slo in &r.slos {
        let _ = write!(
            s,
            "    <testcase classname=\"{}\" name=\"{}: {}\">",
            xml_escape(&suite),
            xml_escape(&slo.name),
            xml_escape(&slo.description)
        );
        let observed = slo
            .observed
            .map(|o| format!("{o:.3}"))
            .unwrap_or_else(|| "none".into());
        if slo.passed {
            let _ = writeln!(
                s,
                "<system-out>observed {observed} {} (threshold {} {})</system-out></testcase>",
                xml_escape(&slo.unit),
                xml_escape(&slo.comparison),
                slo.threshold
            );
        } else {
            let msg = format!(
                "observed {observed} {}, wanted {} {}{}",
                slo.unit,
                slo.comparison,
                slo.threshold,
                slo.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                s,
                "\n      <failure message=\"{}\" type=\"slo\"/>\n    </testcase>",
                xml_escape(&msg)
            );
        }
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}
