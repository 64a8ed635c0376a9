//! A seeded mutation test of reading reports back: thousands of broken variants of a real
//! `report.json` (wrong types, out-of-range numbers, missing fields, cut or duplicated arrays,
//! values swapped between fields), each put through what `loadtest merge` and `loadtest
//! compare` do — load, merge, compare, write every report. Each is either accepted or refused
//! with an error that names the file and the field, and never a panic. The seed is fixed, so a
//! failure reproduces: the message prints the mutation.
//!
//! A handful of the refused variants also go through the binary: exit 2, the file and the field
//! on stderr, no panic.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use common::synthetic::write_report;
use common::*;
use loadtest::report::{self, load_report, Loaded};
use loadtest::{compare, merge};
use serde_json::Value;

const MUTANTS: usize = 2_000;
const SEED: u64 = 0x0e7a_b0a2_d019;

/// Two request names, every kind of SLO, a ramp and a hold: most of the report's shape.
const SCENARIO: &str = r#"
name = "mutants"
[[stage]]
rps = 40
ramp = "1s"
hold = "3s"
[[request]]
name = "home"
path = "/"
weight = 3
[[request]]
name = "item"
path = "/items/{{int:1..9}}"
[slo]
p95_ms = 50
error_rate = 0.01
min_rps = 30
[slo.request.home]
p99_ms = 80
[slo.windowed]
window = "1s"
p95_ms = 60
[slo.drift]
window = "1s"
max_ratio = 2
"#;

/// splitmix64, as in `scenario_mutations.rs`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values a field may be given instead of its own.
fn values() -> Vec<Value> {
    use serde_json::json;
    vec![
        json!(null),
        json!(-1),
        json!(0),
        json!(1),
        json!(-1.5),
        json!(1e300),
        json!(-1e300),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(4_294_967_296u64),
        json!(1e15),
        json!(""),
        json!("x"),
        json!("!!"),
        json!("HISTFAAAA"),
        json!(true),
        json!([]),
        json!({}),
        json!([1, "a"]),
        json!({ "a": 1 }),
    ]
}

/// Every path to a value in `v`: object keys and array indices.
fn paths(v: &Value, at: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                at.push(PathStep::Key(k.clone()));
                out.push(at.clone());
                paths(x, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                at.push(PathStep::Index(i));
                out.push(at.clone());
                paths(x, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn shown(path: &[PathStep]) -> String {
    let mut s = String::new();
    for p in path {
        match p {
            PathStep::Key(k) if s.is_empty() => s.push_str(k),
            PathStep::Key(k) => s.push_str(&format!(".{k}")),
            PathStep::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn at_mut<'a>(v: &'a mut Value, path: &[PathStep]) -> Option<&'a mut Value> {
    let mut cur = v;
    for p in path {
        cur = match p {
            PathStep::Key(k) => cur.get_mut(k.as_str())?,
            PathStep::Index(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

/// One mutation of `v`; returns what it did.
fn mutate_once(v: &mut Value, rng: &mut Rng, values: &[Value]) -> String {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = all[rng.below(all.len())].clone();
    let name = shown(&path);
    match rng.below(6) {
        0 | 1 => {
            let new = values[rng.below(values.len())].clone();
            let what = format!("{name} = {new}");
            if let Some(x) = at_mut(v, &path) {
                *x = new;
            }
            what
        }
        2 => {
            // Remove the field (or the array element).
            let (last, parent) = path.split_last().expect("a path has a step");
            match (at_mut(v, parent), last) {
                (Some(Value::Object(m)), PathStep::Key(k)) => {
                    m.remove(k);
                }
                (Some(Value::Array(a)), PathStep::Index(i)) => {
                    a.remove(*i);
                }
                _ => {}
            }
            format!("{name} removed")
        }
        3 => {
            // Another field's value here (a histogram where a count was, a string for a list).
            let other = all[rng.below(all.len())].clone();
            let copy = at_mut(v, &other).map(|x| x.clone()).unwrap_or(Value::Null);
            if let Some(x) = at_mut(v, &path) {
                *x = copy;
            }
            format!("{name} = the value of {}", shown(&other))
        }
        4 => {
            // An array cut short, emptied or with an element twice.
            if let Some(Value::Array(a)) = at_mut(v, &path) {
                match rng.below(3) {
                    0 => a.truncate(rng.below(a.len() + 1)),
                    1 => a.clear(),
                    _ if !a.is_empty() => {
                        let i = rng.below(a.len());
                        let x = a[i].clone();
                        a.insert(i, x);
                    }
                    _ => {}
                }
                format!("{name} (an array) cut or doubled")
            } else {
                let new = values[rng.below(values.len())].clone();
                if let Some(x) = at_mut(v, &path) {
                    *x = new.clone();
                }
                format!("{name} = {new}")
            }
        }
        _ => {
            // A number scaled far up or made negative.
            if let Some(x) = at_mut(v, &path) {
                if let Some(n) = x.as_f64() {
                    let f = [-1.0, 1e6, 1e12, 0.5][rng.below(4)];
                    *x = serde_json::json!(n * f);
                }
            }
            format!("{name} scaled")
        }
    }
}

/// What `merge` and `compare` do with a loaded mutant and a good report, end to end.
fn merge_and_compare(good: &Loaded, bad: &Loaded, out: &Path) -> Result<(), String> {
    match merge::merge(&[good.clone(), bad.clone()]) {
        Ok((m, _)) => report::write_all(&m, out).map_err(|e| format!("write_all: {e}"))?,
        Err(e) => check_names_file(&e.to_string(), &bad.path)?,
    }
    let opts = compare::Options {
        resamples: 50,
        ..compare::Options::default()
    };
    for (base, cur) in [(good, bad), (bad, good)] {
        match compare::compare(std::slice::from_ref(base), cur, &opts) {
            Ok(c) => compare::write_all(&c, std::slice::from_ref(base), cur, out)
                .map_err(|e| format!("compare write_all: {e}"))?,
            Err(e) => check_names_file(&e.to_string(), &bad.path)?,
        }
    }
    Ok(())
}

fn check_names_file(msg: &str, file: &Path) -> Result<(), String> {
    if msg.contains(&file.display().to_string()) {
        Ok(())
    } else {
        Err(format!("refused without naming {}: {msg}", file.display()))
    }
}

/// A load refusal names the file and the field it is about: one mutated field's top-level key
/// (where the message is about the field itself or one it must agree with).
fn check_refusal(msg: &str, file: &Path, mutated: &[String]) -> Result<(), String> {
    check_names_file(msg, file)?;
    let tops: Vec<&str> = mutated
        .iter()
        .map(|m| m.split(['.', '[', ' ']).next().unwrap_or(m))
        .collect();
    let named = tops
        .iter()
        .any(|top| msg.contains(&format!("`{top}")) || msg.contains(&format!(" {top}")));
    if named {
        Ok(())
    } else {
        Err(format!("refused without naming a field of {tops:?}: {msg}"))
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    good: Loaded,
    text: Value,
    dir: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    write_report(&a, SCENARIO, 8.0, 1);
    write_report(&b, SCENARIO, 9.0, 2);
    let good = load_report(&a).unwrap();
    let text: Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("report.json")).unwrap()).unwrap();
    let dir_path = dir.path().to_path_buf();
    Fixture {
        _dir: dir,
        good,
        text,
        dir: dir_path,
    }
}

#[test]
fn every_mutated_report_is_merged_compared_or_refused_naming_file_and_field_never_a_panic() {
    let f = fixture();
    let values = values();
    // Another seed explores further: LOADTEST_MUTATION_SEED=7 cargo test --test report_mutations
    let seed = std::env::var("LOADTEST_MUTATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    let mut rng = Rng(seed);
    let (mut accepted, mut refused) = (0usize, 0usize);
    let mut problems = Vec::new();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..MUTANTS {
        let mut v = f.text.clone();
        let mut what = Vec::new();
        for _ in 0..1 + rng.below(2) {
            what.push(mutate_once(&mut v, &mut rng, &values));
        }
        let fields = what.clone();
        let what = what.join("; ");
        let path = f.dir.join(format!("m{}.json", i % 8));
        std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
        let out = f.dir.join("out");
        let outcome = catch_unwind(AssertUnwindSafe(|| match load_report(&path) {
            Err(e) => check_refusal(&e.to_string(), &path, &fields).map(|_| false),
            Ok(bad) => merge_and_compare(&f.good, &bad, &out).map(|_| true),
        }));
        match outcome {
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                problems.push(format!("mutant {i} ({what}) panicked: {msg}"));
            }
            Ok(Err(why)) => problems.push(format!("mutant {i} ({what}): {why}")),
            Ok(Ok(true)) => accepted += 1,
            Ok(Ok(false)) => refused += 1,
        }
    }
    std::panic::set_hook(hook);
    eprintln!("{MUTANTS} mutants: {accepted} accepted, {refused} refused");
    assert!(
        problems.is_empty(),
        "{} of {MUTANTS} mutants panicked or were refused without file and field; the first:\n{}",
        problems.len(),
        problems
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        refused > 200 && accepted > 200,
        "{refused} refused, {accepted} accepted"
    );
}

#[tokio::test]
async fn refused_mutants_exit_2_from_the_binary_naming_file_and_field() {
    let f = fixture();
    let values = values();
    let mut rng = Rng(SEED ^ 0x5eed);
    let good = f.good.path.to_str().unwrap().to_string();
    let mut checked = 0;
    while checked < 8 {
        let mut v = f.text.clone();
        let what = mutate_once(&mut v, &mut rng, &values);
        let path = f.dir.join(format!("bin{checked}.json"));
        std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
        let Err(e) = load_report(&path) else {
            continue;
        };
        let p = path.to_str().unwrap();
        let out = f.dir.join("bin-out");
        let args: [&[&str]; 2] = [
            &["merge", &good, p, "--out", out.to_str().unwrap()],
            &["compare", &good, p, "--out", out.to_str().unwrap()],
        ];
        for a in args {
            let o = loadtest_raw(a).await;
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{what}: {err}");
            assert!(err.contains(&e.to_string()), "{what}: {err}");
            assert!(!err.contains("panicked"), "{what}: {err}");
        }
        checked += 1;
    }
}
