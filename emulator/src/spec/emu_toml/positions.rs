//! Where each key of an emu.toml is written, from the spanned document the TOML parser builds
//! (`toml_edit`'s, which `toml` itself deserializes from): serde reports the line of a syntax or
//! type error, and this index gives the line of anything found wrong afterwards.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

use super::super::types::SectionLines;
use std::path::Path;

/// One step of a path into the document.
#[derive(Debug, Clone, Copy)]
pub(super) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The parsed document and its text.
pub(super) struct Positions<'a> {
    src: &'a str,
    doc: &'a ImDocument<String>,
}

/// A node of the document while walking a path.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Positions<'a> {
    pub fn new(src: &'a str, doc: &'a ImDocument<String>) -> Self {
        Positions { src, doc }
    }

    /// The line of the key at `path`; where the path leaves the document, the line of the
    /// deepest key or table header on it that is written (None only when not even the first
    /// step is).
    pub fn line(&self, path: &[Seg<'_>]) -> Option<usize> {
        let mut node = Node::Table(self.doc.as_table());
        let mut line = None;
        for seg in path {
            let Some((next, span)) = child(node, *seg) else {
                break;
            };
            if let Some(span) = span {
                line = Some(line_of_offset(self.src, span.start));
            }
            node = next;
        }
        line
    }

    /// The lines of a top-level table's keys (`[postgres]`).
    pub fn section(&self, file: &Path, name: &str) -> SectionLines {
        let header = self.line(&[Seg::Key(name)]);
        let keys = self
            .doc
            .as_table()
            .get(name)
            .and_then(Item::as_table_like)
            .map(|t| {
                t.iter()
                    .filter_map(|(k, _)| {
                        let line = self.line(&[Seg::Key(name), Seg::Key(k)])?;
                        Some((k.to_string(), line))
                    })
                    .collect()
            })
            .unwrap_or_default();
        SectionLines {
            file: file.to_path_buf(),
            header,
            keys,
        }
    }
}

/// The child at `seg` and the span that names it (its key, or an array-of-tables' header).
fn child<'a>(node: Node<'a>, seg: Seg<'_>) -> Option<(Node<'a>, Option<Range<usize>>)> {
    match (node, seg) {
        (Node::Table(t), Seg::Key(k)) => {
            let (key, item) = t.get_key_value(k)?;
            Some((Node::Item(item), key.span().or_else(|| item.span())))
        }
        (Node::Item(Item::Table(t)), seg) => child(Node::Table(t), seg),
        (Node::Item(Item::ArrayOfTables(a)), Seg::Index(i)) => {
            let t = a.get(i)?;
            Some((Node::Table(t), t.span()))
        }
        (Node::Item(Item::Value(v)), seg) => child(Node::Value(v), seg),
        (Node::Value(Value::InlineTable(t)), Seg::Key(k)) => {
            let (key, item) = t.get_key_value(k)?;
            Some((Node::Item(item), key.span().or_else(|| item.span())))
        }
        (Node::Value(Value::Array(a)), Seg::Index(i)) => {
            let v = a.get(i)?;
            Some((Node::Value(v), v.span()))
        }
        _ => None,
    }
}

/// 1-based line of byte offset `pos` in `src`.
pub(super) fn line_of_offset(src: &str, pos: usize) -> usize {
    src.as_bytes()[..pos.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(src: &str, path: &[Seg<'_>]) -> Option<usize> {
        let doc = ImDocument::parse(src.to_string()).unwrap();
        Positions::new(src, &doc).line(path)
    }

    #[test]
    fn finds_keys_in_the_right_service() {
        use Seg::{Index, Key};
        let src = "[emu]\nport = 1\n\n[[service]]\nname = \"a\"\nconcurrency = 5\n\n[[service]]\nname = \"b\"\nconcurrency = 0\n[service.env]\nPORT = \"1\"\n[service.autoscaling]\nwindow = \"6s\"\n";
        let svc = |i, k| lines(src, &[Key("service"), Index(i), Key(k)]);
        assert_eq!(svc(0, "concurrency"), Some(6));
        assert_eq!(svc(1, "concurrency"), Some(10));
        assert_eq!(
            lines(src, &[Key("service"), Index(1), Key("env"), Key("PORT")]),
            Some(12)
        );
        // Not written: the service's header.
        assert_eq!(svc(1, "missing"), Some(8));
        assert_eq!(
            lines(
                src,
                &[Key("service"), Index(1), Key("autoscaling"), Key("window")]
            ),
            Some(14)
        );
        // A key's name inside a string is not the key.
        let src = "[[service]]\nname = \"timeout = 3\"\ncommand = [\"x\"]\ntimeout = 4\n";
        assert_eq!(
            lines(src, &[Key("service"), Index(0), Key("timeout")]),
            Some(4)
        );
        let src = "[[service]]\nname = \"a\"\nenv = { A = \"1\", PORT = \"2\" }\n";
        assert_eq!(
            lines(src, &[Key("service"), Index(0), Key("env"), Key("PORT")]),
            Some(3)
        );
    }
}
