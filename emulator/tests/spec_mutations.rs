//! A seeded mutation test of the config readers: the examples' emu.toml and service YAMLs and
//! the fixtures in tests/data/spec, each changed in small random ways (lines deleted, doubled,
//! swapped or re-indented, blocks repeated, values and keys replaced, characters inserted or
//! removed, text cut short). emu must never panic on any of them, and every rejection must name
//! a line of the file it read: a config error is always about a place in the text.
//!
//! Deterministic: the same seed gives the same inputs on every run, so a failure names an input
//! that reproduces. Bounded: a fixed number of cases (a few seconds in a debug build).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use emulator::spec::{self, ConfigSource, Overrides, SpecError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 0x0013_5eed;
/// Mutated inputs per source file.
const CASES_PER_FILE: usize = 400;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Toml,
    Yaml,
}

fn sources() -> Vec<(PathBuf, Kind)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples = root.join("../examples");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&examples).unwrap().flatten() {
        let dir = entry.path();
        if dir.join("emu.toml").is_file() {
            out.push((dir.join("emu.toml"), Kind::Toml));
        }
        if dir.join("service.yaml").is_file() {
            out.push((dir.join("service.yaml"), Kind::Yaml));
        }
    }
    let data = root.join("tests/data/spec");
    out.push((data.join("everything.toml"), Kind::Toml));
    out.push((data.join("service-secrets.yaml"), Kind::Yaml));
    out.push((data.join("job.yaml"), Kind::Yaml));
    out.sort();
    out
}

/// Values people (and typos) put where another was expected.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "1001",
    "65536",
    "99999999999999999999",
    "4294967295",
    "1.5",
    "-0.5",
    "1e400",
    "nan",
    "\"\"",
    "\"x\"",
    "\"bad name\"",
    "\"PORT\"",
    "\"K_SERVICE\"",
    "\"5m\"",
    "\"-3s\"",
    "\"soon\"",
    "\"http://\"",
    "\"/no/scheme\"",
    "\"db-huge\"",
    "\"external\"",
    "\"none\"",
    "\"migrate\"",
    "\"api\"",
    "8080",
    "9001",
    "true",
    "false",
    "[]",
    "[\"\"]",
    "{}",
    "{ a = 1 }",
    "null",
    "~",
    "'1'",
    "'0'",
    "[1, 2",
    "&a x",
    "*a",
    "|",
    "\"p50=2s,p99=1s\"",
    "'p50=1s'",
    "\"nope:latest\"",
    "\"/etc/../passwd\"",
];

/// Characters that break structure.
const CHARS: &[char] = &[
    '[', ']', '{', '}', '"', '\'', '=', ':', '-', ' ', '\t', '\n', '#', ',', '&', '*', '!', '|',
    '>', '%', '@', '`', '\\', '\u{0}', 'é',
];

fn lines_of(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

fn join(lines: &[String]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// A char boundary at or before `i`.
fn boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The byte range of the value on a `key = value` or `key: value` line.
fn value_range(line: &str) -> Option<std::ops::Range<usize>> {
    let sep = line.find(" = ").map(|i| i + 3).or_else(|| {
        line.find(": ")
            .map(|i| i + 2)
            .or_else(|| line.find('=').map(|i| i + 1))
    })?;
    Some(sep..line.len())
}

/// The key of a `key = value` / `key: value` line.
fn key_of(line: &str) -> Option<&str> {
    let t = line.trim_start().trim_start_matches("- ");
    let end = t.find([' ', '=', ':'])?;
    let k = &t[..end];
    (!k.is_empty()).then_some(k)
}

/// One random change to `text`.
fn mutate(text: &str, rng: &mut StdRng) -> String {
    let mut lines = lines_of(text);
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    let pick = |rng: &mut StdRng| rng.random_range(0..n);
    match rng.random_range(0..11) {
        0 => {
            lines.remove(pick(rng));
        }
        1 => {
            let i = pick(rng);
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => {
            let (a, b) = (pick(rng), pick(rng));
            lines.swap(a, b);
        }
        3 => {
            // Repeat a block (a service, a job, a YAML subtree) at its end or the file's.
            let a = pick(rng);
            let len = rng.random_range(1..=12.min(n - a));
            let block: Vec<String> = lines[a..a + len].to_vec();
            let at = if rng.random_bool(0.5) { a + len } else { n };
            for (k, l) in block.into_iter().enumerate() {
                lines.insert(at + k, l);
            }
        }
        4 | 5 => {
            let i = pick(rng);
            if let Some(r) = value_range(&lines[i]) {
                let v = VALUES[rng.random_range(0..VALUES.len())];
                lines[i].replace_range(r, v);
            }
        }
        6 => {
            // Another key of the file in this line's place.
            let keys: Vec<String> = lines
                .iter()
                .filter_map(|l| key_of(l).map(str::to_string))
                .collect();
            let i = pick(rng);
            if let (Some(k), false) = (key_of(&lines[i]).map(str::to_string), keys.is_empty()) {
                let other = &keys[rng.random_range(0..keys.len())];
                lines[i] = lines[i].replacen(&k, other, 1);
            }
        }
        7 => {
            let i = pick(rng);
            let indent = ["", " ", "  ", "    ", "\t"][rng.random_range(0..5)];
            lines[i] = format!("{indent}{}", lines[i].trim_start());
        }
        8 => {
            let mut s = join(&lines);
            let at = boundary(&s, rng.random_range(0..=s.len()));
            s.insert(at, CHARS[rng.random_range(0..CHARS.len())]);
            return s;
        }
        9 => {
            let s = join(&lines);
            let a = boundary(&s, rng.random_range(0..=s.len()));
            let b = boundary(&s, (a + rng.random_range(1..=20)).min(s.len()));
            return format!("{}{}", &s[..a], &s[b..]);
        }
        _ => {
            let s = join(&lines);
            let at = boundary(&s, rng.random_range(0..=s.len()));
            return s[..at].to_string();
        }
    }
    join(&lines)
}

/// What one parse did.
enum Outcome {
    Accepted,
    Rejected(SpecError),
}

fn parse(text: &str, kind: Kind, file: &Path) -> Outcome {
    let result = match kind {
        Kind::Toml => spec::parse_toml(text, file),
        Kind::Yaml => spec::parse_yaml(text, file, &["./app".to_string()]),
    };
    match result {
        Ok(_) => Outcome::Accepted,
        Err(e) => Outcome::Rejected(e),
    }
}

/// The line an error names is one the file has (or just past its end, for text cut short).
/// Only an error about the command line itself (`--backends external` over a file with no
/// `[postgres]` to give the url) concerns no place in the file.
fn check_line(e: &SpecError, text: &str, input: &str) {
    if e.line.is_none() && e.message.contains("comes from --backends") {
        return;
    }
    let line = e
        .line
        .unwrap_or_else(|| panic!("a rejection without a line: {e}\n--- input ---\n{input}\n---"));
    let last = text.lines().count().max(1) + 1;
    assert!(
        (1..=last).contains(&line),
        "line {line} is not in the file ({last} lines): {e}\n--- input ---\n{input}\n---"
    );
}

#[test]
fn mutated_configs_never_panic_and_every_rejection_names_a_line() {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut rejected: BTreeMap<String, usize> = BTreeMap::new();
    let mut totals = (0usize, 0usize);
    for (path, kind) in sources() {
        let original = std::fs::read_to_string(&path).unwrap();
        // The file as it is must be accepted (else the mutations test nothing).
        if let Outcome::Rejected(e) = parse(&original, kind, &path) {
            panic!("{} is rejected as it is: {e}", path.display());
        }
        for _ in 0..CASES_PER_FILE {
            let mut text = original.clone();
            for _ in 0..rng.random_range(1..=3) {
                text = mutate(&text, &mut rng);
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| parse(&text, kind, &path)))
                .unwrap_or_else(|_| {
                    panic!("emu panicked on a mutation of {}:\n{text}", path.display())
                });
            totals.0 += 1;
            if let Outcome::Rejected(e) = outcome {
                totals.1 += 1;
                check_line(&e, &text, &text);
                let what: String = e.message.chars().take(40).collect();
                *rejected.entry(what).or_default() += 1;
            }
        }
    }
    eprintln!(
        "{} mutated configs, {} rejected, {} kinds of rejection, each with a line",
        totals.0,
        totals.1,
        rejected.len()
    );
    // The mutations must reach the checks, not only the parsers: a healthy share is rejected,
    // for many different reasons.
    assert!(totals.1 * 4 > totals.0, "{totals:?}");
    assert!(rejected.len() > 40, "{rejected:#?}");
}

/// The checks that run once the command line's settings are in (`--port`, `--backends`) name
/// a line too, on mutated files read from disk as `emu up` reads them.
#[test]
fn mutated_configs_with_command_line_settings_name_a_line() {
    let mut rng = StdRng::seed_from_u64(SEED ^ 1);
    let dir = tempfile::tempdir().unwrap();
    let overrides = [
        Overrides {
            port: Some(9001),
            ..Overrides::default()
        },
        Overrides {
            port: Some(8000),
            backends: Some(emulator::backends::Mode::Native),
            ..Overrides::default()
        },
        Overrides {
            backends: Some(emulator::backends::Mode::External),
            ..Overrides::default()
        },
    ];
    let mut rejected = 0;
    for (path, kind) in sources().into_iter().filter(|(_, k)| *k == Kind::Toml) {
        let original = std::fs::read_to_string(&path).unwrap();
        for case in 0..40 {
            let text = if case == 0 {
                original.clone()
            } else {
                mutate(&original, &mut rng)
            };
            let file = dir.path().join("emu.toml");
            std::fs::write(&file, &text).unwrap();
            for o in &overrides {
                let loaded = catch_unwind(AssertUnwindSafe(|| {
                    spec::load(&ConfigSource::Toml(file.clone()), o, dir.path())
                }))
                .unwrap_or_else(|_| panic!("emu panicked on {o:?} over:\n{text}"));
                if let Err(e) = loaded {
                    rejected += 1;
                    check_line(&e, &text, &format!("{o:?} over\n{text}"));
                }
            }
        }
        let _ = kind;
    }
    assert!(rejected > 0);
}
