//! `loadtest list [PATH]`: every scenario with its load and SLOs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{bad_input, exit};
use crate::scenario;

/// `loadtest list`.
pub fn list(path: Option<&Path>) -> i32 {
    let mut files = Vec::new();
    let dirs: Vec<PathBuf> = match path {
        Some(p) if p.is_file() => {
            files.push(p.to_path_buf());
            vec![]
        }
        Some(p) if p.is_dir() => vec![p.to_path_buf()],
        Some(p) => {
            return bad_input(format!(
                "{} is neither a scenario file nor a folder",
                p.display()
            ))
        }
        None => scenario::search_dirs(),
    };
    let mut seen = std::collections::BTreeSet::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        found.sort();
        for f in found {
            let name = f.file_name().map(|n| n.to_os_string());
            if seen.insert(name) {
                files.push(f);
            }
        }
    }
    if files.is_empty() {
        return bad_input("no scenario files found: run from the repository, or pass a folder");
    }
    let mut code = exit::PASS;
    let mut out = String::new();
    for f in files {
        match scenario::load(&f) {
            Ok(s) => {
                let _ = writeln!(out, "{}  ({})", s.name, f.display());
                if !s.description.is_empty() {
                    let _ = writeln!(out, "    {}", s.description);
                }
                let _ = writeln!(out, "    load: {}", s.load_summary());
                let reqs: Vec<String> = s
                    .requests
                    .iter()
                    .map(|q| {
                        format!(
                            "{} {} {} ×{}",
                            q.name,
                            q.method.as_str(),
                            q.path_src,
                            q.weight
                        )
                    })
                    .collect();
                let _ = writeln!(out, "    requests: {}", reqs.join(", "));
                let slos = s.slo_summary();
                if slos.is_empty() {
                    let _ = writeln!(out, "    SLOs: none");
                } else {
                    let _ = writeln!(out, "    SLOs: {}", slos.join("; "));
                }
            }
            Err(e) => {
                eprintln!("loadtest: {e}");
                code = exit::BAD_INPUT;
            }
        }
    }
    super::print_stdout(&out);
    code
}
