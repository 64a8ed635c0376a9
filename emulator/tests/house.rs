//! The house rules, checked so they stay true: no import circle between the rooms of either
//! crate (data flows one way), a model crate that can do no I/O, and nothing that points at
//! documents a user's clone does not have.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Each top-level module of the crate in `src` and the top-level modules it names as
/// `crate::<module>`.
fn room_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let room = first.trim_end_matches(".rs").to_string();
        if room == "lib" || room == "main" {
            continue;
        }
        // Code only: a doc comment may name a room without depending on it.
        let text: String = std::fs::read_to_string(&f)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let uses = graph.entry(room.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let before = text[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let rest = &text[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != room && name != "model" {
                uses.insert(name);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the rooms along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        room: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|r| r == room) {
            let mut cycle = path[at..].to_vec();
            cycle.push(room.to_string());
            return Some(cycle);
        }
        if done.contains(room) {
            return None;
        }
        path.push(room.to_string());
        for next in graph.get(room).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(room.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|r| visit(r, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_rooms_of_both_crates_import_one_way() {
    for krate in ["emulator", "loadtest", "model"] {
        let graph = room_graph(&workspace().join(krate).join("src"));
        assert!(graph.len() > 3, "{krate}: no rooms found");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{krate}: import circle {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    g.get_mut("c").unwrap().clear();
    assert!(find_cycle(&g).is_none());
}

#[test]
fn the_model_crate_can_do_no_io() {
    let manifest = std::fs::read_to_string(workspace().join("model/Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    for io in [
        "tokio", "hyper", "reqwest", "mio", "socket2", "sqlx", "redis",
    ] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(io)),
            "model depends on {io}"
        );
    }
    let mut files = Vec::new();
    rust_files(&workspace().join("model/src"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for io in [
            "std::fs",
            "std::net",
            "Instant::now",
            "SystemTime::now",
            "std::thread::sleep",
        ] {
            assert!(!text.contains(io), "{} uses {io}", f.display());
        }
    }
}

#[test]
fn nothing_points_outside_the_repository() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in [
        "emulator", "loadtest", "model", "tests", "bench", "scripts", "docs", "docker",
    ] {
        let d = root.join(dir);
        if d.exists() {
            walk_text(&d, &mut files);
        }
    }
    files.push(root.join("README.md"));
    let needle = ["..", "/shared/"].concat();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        assert!(
            !text.contains(&needle),
            "{} refers to {needle}",
            f.display()
        );
        let docs = ["shared", "/docs/design.md"].concat();
        assert!(!text.contains(&docs), "{} refers to {docs}", f.display());
    }
}

fn walk_text(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy();
        if name == "target" || name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            walk_text(&p, out);
        } else if ["rs", "md", "sh", "toml", "yaml"]
            .iter()
            .any(|x| p.extension().is_some_and(|e| e == *x))
        {
            out.push(p);
        }
    }
}
