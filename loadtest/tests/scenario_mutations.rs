//! A seeded mutation test of the scenario parser: thousands of broken variants of the
//! repository's `scenarios/*.toml`, each either accepted or refused with an error that names
//! `file:LINE` inside the file, and never a panic. The seed is fixed, so a failure reproduces:
//! the message prints the mutated text.
//!
//! A handful of the refused variants also go through the binary (`loadtest list FILE`): exit 2,
//! the same `file:LINE:` on stderr.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use common::*;
use loadtest::scenario;

/// Mutants per scenario file: 3,200 in all, about 2.5 s in a debug build.
const MUTANTS_PER_FILE: usize = 800;
const SEED: u64 = 0x005c_e7a2_1013;

/// splitmix64: a tiny, fixed generator, so the mutants never change with a dependency.
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

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// Values a key may be given instead of its own: wrong types, out of range, broken templates.
const VALUES: &[&str] = &[
    "-1",
    "0",
    "0.0",
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "-inf",
    "99999999999999999999",
    "true",
    "\"\"",
    "\"x\"",
    "\"1 parsec\"",
    "\"0s\"",
    "\"99999999h\"",
    "\"ftp://x\"",
    "\"http://\"",
    "\"/{{int:9..1}}\"",
    "\"/{{nope}}\"",
    "\"{{choice:}}\"",
    "\"BREW\"",
    "\"no-slash\"",
    "[]",
    "[1, \"a\"]",
    "[99, 600]",
    "{}",
    "{ \"bad header\" = \"x\" }",
    "{ a = \"{{int:5..1}}\" }",
    "1979-05-27T07:32:00Z",
    "'''multi\nline'''",
    "\"unterminated",
];

/// Lines to insert: plausible keys and tables in places they may not belong.
const LINES: &[&str] = &[
    "name = \"home\"",
    "name = \"\"",
    "path = \"/\"",
    "[[request]]",
    "[[stage]]",
    "[stage]",
    "[slo]",
    "[[slo]]",
    "[slo.request.nope]",
    "[slo.request.home]",
    "[slo.windowed]",
    "[slo.drift]",
    "window = \"0s\"",
    "max_ratio = 0",
    "p95_ms = 10",
    "p95_ms = -5",
    "weight = 0",
    "method = \"BREW\"",
    "expect_status = 99",
    "headers = { \"bad header\" = \"x\" }",
    "target = \"ftp://x\"",
    "max_in_flight = 0",
    "timeout = \"0s\"",
    "rps = 0",
    "hold = \"1s\"",
    "burst = 3",
    "body = { a = \"{{int:5..1}}\" }",
    "error_rate = 5",
    "min_rps = -1",
    "= 3",
    "key =",
    "[",
    "]]",
    "\"",
];

/// Characters to insert anywhere.
const CHARS: &[char] = &[
    '[', ']', '=', '"', '\'', '\n', '#', '{', '}', '.', ',', ' ', '\t', 'é', '\u{0}', '\u{7f}',
    '\\', '-', '0', 'x',
];

fn mutate_once(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    match rng.below(11) {
        0 => {
            lines.remove(rng.below(n));
        }
        1 => {
            let i = rng.below(n);
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => {
            let (a, b) = (rng.below(n), rng.below(n));
            lines.swap(a, b);
        }
        3 | 4 => {
            // Replace the value of a `key = value` line.
            let keyed: Vec<usize> = (0..n).filter(|i| lines[*i].contains(" = ")).collect();
            if !keyed.is_empty() {
                let i = *rng.pick(&keyed);
                let key = lines[i].split(" = ").next().unwrap_or("").to_string();
                lines[i] = format!("{key} = {}", rng.pick(VALUES));
            }
        }
        5 => {
            // A typo in a key.
            let keyed: Vec<usize> = (0..n).filter(|i| lines[*i].contains(" = ")).collect();
            if !keyed.is_empty() {
                let i = *rng.pick(&keyed);
                lines[i] = format!("x{}", lines[i].trim_start());
            }
        }
        6 => {
            let i = rng.below(n + 1);
            lines.insert(i, rng.pick(LINES).to_string());
        }
        7 => {
            // Copy a block of lines elsewhere (a second [[request]] of the same name, …).
            let a = rng.below(n);
            let len = 1 + rng.below(6);
            let block: Vec<String> = lines[a..(a + len).min(n)].to_vec();
            let at = rng.below(n + 1);
            for (k, l) in block.into_iter().enumerate() {
                lines.insert(at + k, l);
            }
        }
        8 => {
            // Drop a whole table: from a header to the next one.
            let headers: Vec<usize> = (0..n).filter(|i| lines[*i].starts_with('[')).collect();
            if !headers.is_empty() {
                let a = *rng.pick(&headers);
                let b = (a + 1..n).find(|i| lines[*i].starts_with('[')).unwrap_or(n);
                lines.drain(a..b);
            }
        }
        9 => {
            let mut s = lines.join("\n");
            let chars: Vec<(usize, char)> = s.char_indices().collect();
            if !chars.is_empty() {
                let (at, _) = *rng.pick(&chars);
                s.insert(at, *rng.pick(CHARS));
            }
            return s;
        }
        _ => {
            // Cut the file short, or cut a piece out of it.
            let s = lines.join("\n");
            let cuts: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
            if cuts.is_empty() {
                return s;
            }
            let a = *rng.pick(&cuts);
            if rng.below(2) == 0 {
                return s[..a].to_string();
            }
            let b = cuts
                .iter()
                .copied()
                .find(|i| *i > a + rng.below(40))
                .unwrap_or(s.len());
            return format!("{}{}", &s[..a], &s[b..]);
        }
    }
    lines.join("\n") + "\n"
}

/// One to three mutations of `text`.
fn mutant(text: &str, rng: &mut Rng) -> String {
    let mut s = text.to_string();
    for _ in 0..1 + rng.below(3) {
        s = mutate_once(&s, rng);
    }
    s
}

/// A mutant as the bytes of a file; one in twelve also gets a byte that is not UTF-8 (a file
/// saved as Latin-1, a stray binary byte).
fn mutant_bytes(text: &str, rng: &mut Rng) -> Vec<u8> {
    let mut b = mutant(text, rng).into_bytes();
    if rng.below(12) == 0 {
        let at = rng.below(b.len() + 1);
        b.insert(at, 0x80 + rng.below(0x80) as u8);
    }
    b
}

fn scenario_files() -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "scenarios/ has the four scenarios");
    files
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(p).unwrap())
        })
        .collect()
}

/// Checks one refusal: it names a line of the file, as `file:LINE: message`. (Every refusal of
/// text counts here: "no [[stage]]" names line 1; only a file that cannot be read at all is
/// about the file as a whole, and these mutants are all read.)
fn check_names_a_line(file: &str, text: &str, e: &scenario::ScenarioError) -> Result<(), String> {
    let lines = text.lines().count().max(1);
    let shown = e.to_string();
    if e.line == 0 || e.line > lines + 1 {
        return Err(format!("line {} of a {lines}-line file", e.line));
    }
    if !shown.starts_with(&format!("{file}:{}: ", e.line)) {
        return Err(format!("not `{file}:{}: …`", e.line));
    }
    if e.message.trim().is_empty() {
        return Err("an empty message".into());
    }
    Ok(())
}

#[test]
fn every_mutated_scenario_is_accepted_or_refused_naming_its_line_and_never_panics() {
    let mut rng = Rng(SEED);
    let (mut accepted, mut refused) = (0usize, 0usize);
    let mut problems = Vec::new();
    for (name, text) in scenario_files() {
        let file = format!("scenarios/{name}");
        for i in 0..MUTANTS_PER_FILE {
            let bytes = mutant_bytes(&text, &mut rng);
            let m = String::from_utf8_lossy(&bytes).into_owned();
            let parsed = catch_unwind(AssertUnwindSafe(|| {
                scenario::parse_bytes(Path::new(&file), &bytes)
            }));
            match parsed {
                Err(_) => problems.push(format!("{file} mutant {i} panicked:\n{m}")),
                Ok(Ok(_)) => accepted += 1,
                Ok(Err(e)) => {
                    refused += 1;
                    if let Err(why) = check_names_a_line(&file, &m, &e) {
                        problems.push(format!("{file} mutant {i}: {why}: {e}\n---\n{m}\n---"));
                    }
                }
            }
        }
    }
    eprintln!(
        "{} mutants: {accepted} accepted, {refused} refused",
        accepted + refused + problems.len()
    );
    assert!(
        problems.is_empty(),
        "{} of {} refusals without a line (or panics); the first ones:\n{}",
        problems.len(),
        refused,
        problems
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The mutations are strong enough to break most files, and mild enough to leave some valid.
    assert!(refused > accepted, "{refused} refused, {accepted} accepted");
    assert!(accepted > 100, "{accepted} accepted");
}

#[test]
fn invalid_utf8_is_refused_naming_the_line_it_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("latin1.toml");
    std::fs::write(
        &p,
        b"name = \"x\"\n\n[[stage]]\nrps = 1 # caf\xe9\nhold = \"1s\"\n",
    )
    .unwrap();
    let e = scenario::load(&p).unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    assert!(e.message.contains("UTF-8"), "{e}");
}

#[tokio::test]
async fn refused_mutants_exit_2_from_the_binary_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(SEED ^ 0xb1);
    let (name, text) = scenario_files().remove(0);
    let mut checked = 0;
    while checked < 12 {
        let m = mutant_bytes(&text, &mut rng);
        let Err(e) = scenario::parse_bytes(Path::new(&name), &m) else {
            continue;
        };
        let path = dir.path().join(format!("m{checked}.toml"));
        std::fs::write(&path, &m).unwrap();
        let o = loadtest_raw(&["list", path.to_str().unwrap()]).await;
        let err = stderr(&o);
        let m = String::from_utf8_lossy(&m);
        assert_eq!(o.status.code(), Some(2), "{err}\n---\n{m}");
        assert!(
            err.contains(&format!("{}:{}: ", path.display(), e.line)),
            "{err}\n---\n{m}"
        );
        assert!(!err.contains("panicked"), "{err}");
        checked += 1;
    }
}
