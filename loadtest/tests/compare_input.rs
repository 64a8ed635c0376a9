//! `loadtest compare`, `merge` and the new `run` flags refuse bad input with exit 2 and a
//! message naming the file.

mod common;

use std::path::Path;

use common::synthetic::write_report;
use common::*;

fn edit(src: &Path, dst: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(dst, serde_json::to_string(&v).unwrap()).unwrap();
}

const TINY: &str =
    "name = \"tiny\"\n[[stage]]\nrps = 20\nhold = \"1s\"\n[[request]]\nname = \"home\"\npath = \"/\"\n";

#[tokio::test]
async fn malformed_or_incompatible_reports_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sc = write_scenario(d, "tiny.toml", TINY);
    // A good report to break: what a run of `tiny` writes (its data fixed, see `synthetic`).
    let run = d.join("run");
    write_report(&run, TINY, 5.0, 1);
    let good = run.join("report.json");
    let good_s = good.to_str().unwrap();
    // The new fields are in the report and the schema accepts them.
    let r = read_json(&run);
    assert_schema_valid(&r);
    assert_eq!(r["verdict"], "pass");
    assert!(r["slo_rules"].is_object(), "{}", r["slo_rules"]);

    let v99 = d.join("v99.json");
    edit(&good, &v99, |v| v["schema_version"] = 99.into());
    let other = d.join("other.json");
    edit(&good, &other, |v| v["scenario"]["name"] = "other".into());
    let garbage = d.join("garbage.json");
    std::fs::write(&garbage, "{ not json").unwrap();
    let broken_hist = d.join("broken.json");
    edit(&good, &broken_hist, |v| {
        v["latency"]["histogram"] = "!!".into()
    });

    for (base, cur, needle) in [
        (v99.to_str().unwrap(), good_s, "schema_version 99"),
        (good_s, v99.to_str().unwrap(), "schema_version 99"),
        (other.to_str().unwrap(), good_s, "scenario \"other\""),
        (good_s, garbage.to_str().unwrap(), "not JSON"),
        (good_s, broken_hist.to_str().unwrap(), "histogram"),
        ("/no/such/report.json", good_s, "cannot read"),
    ] {
        let o = loadtest_raw(&[
            "compare",
            base,
            cur,
            "--out",
            d.join("cmp").to_str().unwrap(),
        ])
        .await;
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{base} vs {cur}: {e}");
        let bad = if base == good_s { cur } else { base };
        assert!(e.contains(bad) && e.contains(needle), "{needle}: {e}");
    }
    let o = loadtest_raw(&["compare", good_s, good_s, "--tolerance", "ten"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--tolerance"), "{}", stderr(&o));
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = loadtest_raw(&["compare", empty.to_str().unwrap(), good_s]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no report.json"), "{}", stderr(&o));

    // A report compared with itself: no regression, exit 0.
    let o = loadtest_raw(&[
        "compare",
        good_s,
        good_s,
        "--out",
        d.join("self").to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // merge: same checks, plus a shard given twice.
    let o = loadtest_raw(&[
        "merge",
        good_s,
        other.to_str().unwrap(),
        "--out",
        d.join("m").to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(other.to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    let o = loadtest_raw(&[
        "merge",
        v99.to_str().unwrap(),
        "--out",
        d.join("m").to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("schema_version 99"), "{}", stderr(&o));

    // run: a bad --shard or --baseline (missing, or of another scenario) is refused before any
    // traffic (the target is dead, so a run would leave an invalid report behind).
    let dead = dead_target();
    for (flag, value, needle) in [
        ("--shard", "3/2", "--shard"),
        ("--shard", "0/2", "--shard"),
        ("--shard", "1/0", "--shard"),
        ("--shard", "half", "--shard"),
        ("--baseline", "/no/such/dir", "/no/such/dir"),
        ("--baseline", other.to_str().unwrap(), "scenario \"other\""),
    ] {
        let o = loadtest(&[
            "run",
            &sc,
            "--target",
            &dead,
            "--out",
            d.join("r").to_str().unwrap(),
            flag,
            value,
        ])
        .await;
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{}", stderr(&o));
        assert!(
            !d.join("r").join("report.json").exists(),
            "no traffic for bad input"
        );
    }
}
