//! The parser on good and bad files: lines named, never a panic.

use super::*;

const GOOD: &str = r#"
name = "t"
[[stage]]
rps = 10
ramp = "2s"
hold = "8s"

[[request]]
name = "home"
path = "/x/{{int:1..3}}"
weight = 2

[slo]
p95_ms = 100
error_rate = 0.01
[slo.request.home]
p99_ms = 200
[slo.windowed]
window = "5s"
p95_ms = 150
[slo.drift]
max_ratio = 1.5
"#;

#[test]
fn parses_a_good_scenario() {
    let s = parse(Path::new("t.toml"), GOOD).unwrap();
    assert_eq!(s.duration(), Duration::from_secs(10));
    assert_eq!(s.requests[0].weight, 2);
    assert_eq!(s.slos.drift, Some((Duration::from_secs(5), 1.5)));
    assert_eq!(s.slo_summary().len(), 5);
}

#[test]
fn a_per_request_slo_needs_no_slo_table_of_its_own() {
    let text = "[[stage]]\nrps = 10\nhold = \"1s\"\n[[request]]\nname = \"home\"\npath = \"/\"\n[slo.request.home]\np95_ms = 100\n";
    let s = parse(Path::new("t.toml"), text).unwrap();
    assert_eq!(s.slo_summary(), ["home: p95 < 100 ms"]);
}

#[test]
fn unknown_key_names_file_and_line() {
    let text = GOOD.replace("ramp = \"2s\"", "rmap = \"2s\"");
    let e = parse(Path::new("scenarios/t.toml"), &text).unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(e.to_string().starts_with("scenarios/t.toml:5: "), "{e}");
    assert!(e.message.contains("rmap"), "{e}");
}

#[test]
fn bad_values_name_the_line() {
    let text = GOOD.replace("weight = 2", "weight = 0");
    let e = parse(Path::new("t.toml"), &text).unwrap_err();
    assert!(e.message.contains("weight"), "{e}");
    assert!((8..=12).contains(&e.line), "{e}");
    let text = GOOD.replace("hold = \"8s\"", "hold = \"8 parsecs\"");
    let e = parse(Path::new("t.toml"), &text).unwrap_err();
    assert!(e.message.contains("duration"), "{e}");
    let text = GOOD.replace("[slo.request.home]", "[slo.request.nope]");
    assert!(parse(Path::new("t.toml"), &text).is_err());
}

#[test]
fn bad_input_is_an_error_never_a_panic() {
    let cases = [
        "",
        "\u{0}\u{1}garbage",
        "[[stage]]\nrps = \"fast\"\nhold = \"1s\"",
        "[[stage]]\nrps = -1\nhold = \"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"",
        "[[stage]]\nrps = 1e300\nhold = \"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"",
        "[[stage]]\nrps = 1\nhold = \"99999999999h\"\n[[request]]\nname=\"a\"\npath=\"/\"",
        "[[stage]]\nrps = 1\n[[request]]\nname=\"a\"\npath=\"/\"",
        "[[stage]]\nrps = 1\nhold=\"1s\"\n[[request]]\nname=\"a\"\npath=\"x\"",
        "[[stage]]\nrps = 1\nhold=\"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"\nmethod=\"BREW\"",
        "[[stage]]\nrps = 1\nhold=\"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"\nexpect_status=[99]",
        "[[stage]]\nrps = 1\nhold=\"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"\n[slo]\nerror_rate=5",
        "[[stage]]\nrps = 1\nhold=\"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"\n[slo]\np95_ms=-1",
        "[[stage]]\nrps = 1\nhold=\"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"\nheaders={\"bad header\"=\"x\"}",
        "target = \"ftp://x\"\n[[stage]]\nrps = 1\nhold=\"1s\"",
        "stage = 3",
    ];
    for text in cases {
        let e = parse(Path::new("x.toml"), text).unwrap_err();
        assert!(e.line >= 1, "{text:?} → {e}");
        assert!(!e.message.is_empty());
    }
}

#[test]
fn compress_and_scale() {
    let mut s = parse(Path::new("t.toml"), GOOD).unwrap();
    s.compress_to(Duration::from_secs(5));
    assert_eq!(s.duration(), Duration::from_secs(5));
    assert_eq!(s.slos.windowed.unwrap().0, Duration::from_millis(2500));
    s.scale_rps(2.0);
    assert_eq!(s.peak_rps(), 20.0);
}

#[test]
fn every_refusal_names_the_line_of_the_value_it_is_about() {
    // GOOD's lines: 4 rps, 5 ramp, 6 hold, 9 name, 10 path, 11 weight, 14 p95_ms,
    // 15 error_rate, 16 [slo.request.home], 17 p99_ms, 19 window, 20 windowed p95_ms,
    // 22 max_ratio.
    let cases: &[(&str, &str, usize, &str)] = &[
        ("rps = 10", "rps = -1", 4, "rps = -1"),
        ("ramp = \"2s\"", "ramp = \"2 parsecs\"", 5, "not a duration"),
        (
            "hold = \"8s\"",
            "hold = \"99999999h\"",
            6,
            "longer than 30 days",
        ),
        (
            "path = \"/x/{{int:1..3}}\"",
            "path = \"x\"",
            10,
            "must start with '/'",
        ),
        (
            "path = \"/x/{{int:1..3}}\"",
            "path = \"/{{int:9..1}}\"",
            10,
            "path:",
        ),
        ("weight = 2", "weight = 0", 11, "weight = 0"),
        ("weight = 2", "weight = 2\nmethod = \"BREW\"", 12, "BREW"),
        (
            "weight = 2",
            "weight = 2\nexpect_status = [200, 99]",
            12,
            "expect_status 99",
        ),
        (
            "weight = 2",
            "weight = 2\nheaders = { \"bad header\" = \"x\" }",
            12,
            "header name",
        ),
        (
            "weight = 2",
            "weight = 2\nbody = { a = \"{{int:5..1}}\" }",
            12,
            "body:",
        ),
        (
            "[slo]",
            "[[request]]\nname = \"home\"\npath = \"/\"\n[slo]",
            14,
            "used twice",
        ),
        (
            "name = \"t\"",
            "name = \"t\"\ntarget = \"ftp://x\"",
            3,
            "http://",
        ),
        (
            "name = \"t\"",
            "name = \"t\"\nmax_in_flight = 0",
            3,
            "max_in_flight",
        ),
        (
            "name = \"t\"",
            "name = \"t\"\ntimeout = \"0s\"",
            3,
            "timeout",
        ),
        ("p95_ms = 100", "p95_ms = -1", 14, "p95_ms = -1"),
        ("error_rate = 0.01", "error_rate = 5", 15, "error_rate"),
        ("error_rate = 0.01", "min_rps = -1", 15, "min_rps"),
        (
            "[slo.request.home]",
            "[slo.request.nope]",
            16,
            "names no request",
        ),
        ("p99_ms = 200", "p99_ms = 0", 17, "request.home.p99_ms"),
        ("window = \"5s\"", "window = \"0s\"", 19, "at least 1s"),
        ("p95_ms = 150", "p95_ms = -3", 20, "windowed.p95_ms"),
        ("max_ratio = 1.5", "max_ratio = 0", 22, "max_ratio"),
        (
            "max_ratio = 1.5",
            "max_ratio = 1.5\nwindow = \"0.5s\"",
            23,
            "drift.window",
        ),
        (
            "ramp = \"2s\"\nhold = \"8s\"",
            "hold = \"0s\"",
            3,
            "neither ramp nor hold",
        ),
        ("rps = 10", "rps = 0", 3, "every stage has rps = 0"),
    ];
    for (from, to, line, needle) in cases {
        assert!(GOOD.contains(from), "{from}");
        let text = GOOD.replacen(from, to, 1);
        let e = parse(Path::new("t.toml"), &text).unwrap_err();
        assert_eq!((e.line, from, to), (*line, from, to), "{e}");
        assert!(e.message.contains(needle), "{needle:?} not in {e}");
        assert!(
            e.to_string().starts_with(&format!("t.toml:{line}: ")),
            "{e}"
        );
    }
}

#[test]
fn a_file_that_is_not_utf8_is_refused_at_the_line_of_the_first_bad_byte() {
    let e = parse_bytes(Path::new("t.toml"), b"name = \"t\"\n# caf\xe9\n").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    assert!(e.to_string().starts_with("t.toml:2: "), "{e}");
}
