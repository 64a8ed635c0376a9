//! Finding the line of a field in the text of a config file, for error messages.
//!
//! serde tells where a *syntax* or *type* error is; a validation error (a reserved env name, a
//! value out of range) is found afterwards, so its line is looked up in the text by key.

/// 1-based line of byte offset `pos` in `src`.
pub fn line_of_offset(src: &str, pos: usize) -> usize {
    src[..pos.min(src.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Line ranges (0-based, end exclusive) of each `[[service]]` block in a TOML file.
fn toml_blocks(src: &str, header: &str) -> Vec<(usize, usize)> {
    let lines: Vec<&str> = src.lines().collect();
    let mut starts = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.trim() == format!("[[{header}]]") {
            starts.push(i);
        }
    }
    let mut blocks = Vec::new();
    for (n, &s) in starts.iter().enumerate() {
        // A block runs to the next top-level table that is not one of its sub-tables.
        let mut end = lines.len();
        for (j, l) in lines.iter().enumerate().skip(s + 1) {
            let t = l.trim();
            if t.starts_with('[') && !t.starts_with(&format!("[{header}.")) {
                end = j;
                break;
            }
            if starts.get(n + 1) == Some(&j) {
                end = j;
                break;
            }
        }
        blocks.push((s, end));
    }
    blocks
}

/// The line of `key` (a key name, or a dotted sub-table `startup_probe`) within the `index`-th
/// `[[header]]` block, or the block's header line when the key is not written there.
pub fn toml_key_line(src: &str, header: &str, index: usize, key: &str) -> Option<usize> {
    let (start, end) = *toml_blocks(src, header).get(index)?;
    // Settings known by their annotation (`autoscaling.knative.dev/scale-down-delay`) are written
    // `scale_down_delay` in emu.toml.
    let short;
    let key = match key.rsplit_once('/') {
        Some((_, name)) => {
            short = name.replace('-', "_");
            short.as_str()
        }
        None => key,
    };
    let lines: Vec<&str> = src.lines().collect();
    for (i, l) in lines.iter().enumerate().take(end).skip(start) {
        let t = l.trim_start();
        let bare = t.trim_start_matches('"');
        if let Some(rest) = bare.strip_prefix(key) {
            let rest = rest.trim_start_matches('"').trim_start();
            if rest.starts_with('=') {
                return Some(i + 1);
            }
        }
        if t.starts_with(&format!("[{header}.{key}]")) {
            return Some(i + 1);
        }
        // Inline tables: `env = { PORT = "1" }`.
        if let Some(pos) = l
            .find(&format!("{key} ="))
            .or_else(|| l.find(&format!("{key}=")))
        {
            let before = l[..pos].chars().last();
            if matches!(before, Some('{') | Some(' ') | Some(',') | Some('"')) && l.contains('{') {
                return Some(i + 1);
            }
        }
    }
    Some(start + 1)
}

/// The line of the first occurrence of each needle in order (each searched after the last),
/// in a YAML file: `yaml_line(src, &["containers:", "env:", "name: PORT"])`.
pub fn yaml_line(src: &str, needles: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = src.lines().collect();
    let mut from = 0;
    let mut found = None;
    for needle in needles {
        let hit = lines
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, l)| {
                let t = l.trim_start().trim_start_matches("- ").trim_start();
                t.starts_with(needle) || t.replace(['"', '\''], "").starts_with(needle)
            })
            .map(|(i, _)| i);
        match hit {
            Some(i) => {
                found = Some(i + 1);
                from = i + 1;
            }
            None => return found,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_in_the_right_service() {
        let src = "[emu]\nport = 1\n\n[[service]]\nname = \"a\"\nconcurrency = 5\n\n[[service]]\nname = \"b\"\nconcurrency = 0\n[service.env]\nPORT = \"1\"\n";
        assert_eq!(toml_key_line(src, "service", 0, "concurrency"), Some(6));
        assert_eq!(toml_key_line(src, "service", 1, "concurrency"), Some(10));
        assert_eq!(toml_key_line(src, "service", 1, "PORT"), Some(12));
        assert_eq!(toml_key_line(src, "service", 1, "missing"), Some(8));
    }

    #[test]
    fn follows_yaml_paths() {
        let src = "spec:\n  template:\n    spec:\n      containers:\n      - image: x\n        env:\n        - name: FOO\n          value: a\n        - name: PORT\n          value: '1'\n";
        assert_eq!(
            yaml_line(src, &["containers:", "env:", "name: PORT"]),
            Some(9)
        );
    }
}
