//! A YAML document as a tree whose every node knows its line: what serde's `Value` lacks, so
//! that an error about any field (a duplicate, a value out of range, a missing key) names where
//! it is. Built from the events of `yaml-rust2`'s parser, which carry positions; scalars are
//! typed by YAML 1.2's core schema, as serde_yaml does.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// More nodes than this (aliases can multiply a small text) is refused, not expanded.
const MAX_NODES: usize = 100_000;
/// Deeper nesting than this is refused: nothing Cloud Run reads is nested this deep.
const MAX_DEPTH: usize = 128;

/// A typed scalar.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in the order written; keys are unique.
    Map(Vec<(Node, Node)>),
}

/// A node and the (1-based) line it starts on.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub line: usize,
    pub kind: Kind,
}

/// Why a text is not one YAML document, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ParseError {
    pub line: usize,
    pub message: String,
}

impl Node {
    /// The entry `key` of a mapping: (key node, value).
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// The value at `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The line of `key` in this mapping, if it is written.
    pub fn key_line(&self, key: &str) -> Option<usize> {
        self.entry(key).map(|(k, _)| k.line)
    }

    /// The line of `key` in this mapping, else this node's own line (its first entry's).
    pub fn line_of(&self, key: &str) -> usize {
        self.key_line(key).unwrap_or(self.line)
    }

    /// A child mapping.
    pub fn map_at(&self, key: &str) -> Option<&Node> {
        self.get(key).filter(|n| n.as_map().is_some())
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// A string scalar (not a number or a boolean written bare).
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(Scalar::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A whole number written as one.
    pub fn as_i64(&self) -> Option<i64> {
        match &self.kind {
            Kind::Scalar(Scalar::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// A whole number, or a string holding one (`'60'`, as Kubernetes exports some).
    pub fn int(&self) -> Option<i64> {
        match &self.kind {
            Kind::Scalar(Scalar::Int(i)) => Some(*i),
            Kind::Scalar(Scalar::Str(s)) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// Any scalar as text (a null is empty); None for a mapping or sequence.
    pub fn text(&self) -> Option<String> {
        match &self.kind {
            Kind::Scalar(Scalar::Str(s)) => Some(s.clone()),
            Kind::Scalar(Scalar::Int(i)) => Some(i.to_string()),
            Kind::Scalar(Scalar::Float(f)) => Some(float_text(*f)),
            Kind::Scalar(Scalar::Bool(b)) => Some(b.to_string()),
            Kind::Scalar(Scalar::Null) => Some(String::new()),
            _ => None,
        }
    }
}

fn float_text(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.into()
    } else if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        f.to_string()
    }
}

/// A collection being built.
enum Frame {
    Seq {
        line: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        line: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        /// Each scalar key written so far (typed, as text) and its line.
        seen: HashMap<String, usize>,
    },
}

/// Builds the tree from the parser's events.
struct Builder {
    frames: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes made so far, aliases counted as what they expand to.
    nodes: usize,
    /// Nodes in each open frame, for an anchored collection's weight.
    weights: Vec<usize>,
    root: Option<Node>,
    documents: usize,
}

fn error(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

/// Parses one YAML document (an empty text is a null document).
pub(super) fn parse(src: &str) -> Result<Node, ParseError> {
    // A byte order mark (editors on Windows write one) is not part of the first key.
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let mut parser = Parser::new_from_str(src);
    let mut b = Builder {
        frames: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        weights: Vec::new(),
        root: None,
        documents: 0,
    };
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|e| error(e.marker().line().max(1), e.info()))?;
        if b.on_event(event, mark)? {
            break;
        }
    }
    Ok(b.root.unwrap_or(Node {
        line: 1,
        kind: Kind::Scalar(Scalar::Null),
    }))
}

impl Builder {
    /// Takes one event; true at the end of the stream.
    fn on_event(&mut self, event: Event, mark: Marker) -> Result<bool, ParseError> {
        let line = mark.line().max(1);
        match event {
            Event::StreamEnd => return Ok(true),
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(error(
                        line,
                        "a second YAML document: emu reads one service (or job) per file",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let node = Node {
                    line,
                    kind: Kind::Scalar(resolve(text, style, tag.as_ref())),
                };
                self.count(1, line)?;
                self.remember(anchor, &node, 1);
                self.add(node)?;
            }
            Event::Alias(id) => {
                let Some((node, weight)) = self.anchors.get(&id).cloned() else {
                    return Err(error(line, "an alias to an anchor that is not defined"));
                };
                self.count(weight, line)?;
                self.add(Node { line, ..node })?;
            }
            Event::SequenceStart(anchor, _) => self.open(
                Frame::Seq {
                    line,
                    anchor,
                    items: Vec::new(),
                },
                line,
            )?,
            Event::MappingStart(anchor, _) => self.open(
                Frame::Map {
                    line,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    seen: HashMap::new(),
                },
                line,
            )?,
            Event::SequenceEnd | Event::MappingEnd => self.close()?,
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
        }
        Ok(false)
    }

    fn count(&mut self, n: usize, line: usize) -> Result<(), ParseError> {
        self.nodes = self.nodes.saturating_add(n);
        if let Some(w) = self.weights.last_mut() {
            *w = w.saturating_add(n);
        }
        if self.nodes > MAX_NODES {
            return Err(error(
                line,
                format!("the YAML expands to more than {MAX_NODES} nodes (through its aliases): emu refuses it"),
            ));
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node, weight: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), weight));
        }
    }

    fn open(&mut self, frame: Frame, line: usize) -> Result<(), ParseError> {
        if self.frames.len() >= MAX_DEPTH {
            return Err(error(
                line,
                format!("nested deeper than {MAX_DEPTH} levels: emu refuses it"),
            ));
        }
        self.count(1, line)?;
        self.frames.push(frame);
        self.weights.push(1);
        Ok(())
    }

    fn close(&mut self) -> Result<(), ParseError> {
        let (Some(frame), Some(weight)) = (self.frames.pop(), self.weights.pop()) else {
            return Ok(());
        };
        // The parent counts this collection's nodes too.
        if let Some(w) = self.weights.last_mut() {
            *w = w.saturating_add(weight - 1);
        }
        let (node, anchor) = match frame {
            Frame::Seq {
                line,
                anchor,
                items,
            } => (
                Node {
                    line,
                    kind: Kind::Seq(items),
                },
                anchor,
            ),
            Frame::Map {
                line,
                anchor,
                entries,
                ..
            } => (
                Node {
                    line,
                    kind: Kind::Map(entries),
                },
                anchor,
            ),
        };
        self.remember(anchor, &node, weight);
        self.add(node)
    }

    /// Puts a finished node into its parent (or makes it the document).
    fn add(&mut self, node: Node) -> Result<(), ParseError> {
        match self.frames.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries, key, seen, ..
            }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if let Kind::Scalar(scalar) = &k.kind {
                        if let Some(first) = seen.insert(format!("{scalar:?}"), k.line) {
                            return Err(error(
                                k.line,
                                format!(
                                    "duplicate key {:?} (first at line {first}): each key may appear once",
                                    k.text().unwrap_or_default()
                                ),
                            ));
                        }
                    }
                    entries.push((k, node));
                }
            },
        }
        Ok(())
    }
}

/// Types a scalar by YAML 1.2's core schema (a quoted or block scalar is a string).
fn resolve(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Scalar {
    if let Some(tag) = tag.filter(|t| t.handle == "tag:yaml.org,2002:" || t.handle == "!!") {
        return match tag.suffix.as_str() {
            "str" => Scalar::Str(text),
            "null" => Scalar::Null,
            "int" => int(&text).map_or(Scalar::Str(text), Scalar::Int),
            "float" => float(&text).map_or(Scalar::Str(text), Scalar::Float),
            "bool" => match text.as_str() {
                "true" | "True" | "TRUE" => Scalar::Bool(true),
                "false" | "False" | "FALSE" => Scalar::Bool(false),
                _ => Scalar::Str(text),
            },
            _ => plain(text),
        };
    }
    if style != TScalarStyle::Plain {
        return Scalar::Str(text);
    }
    plain(text)
}

fn plain(text: String) -> Scalar {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        _ => {}
    }
    if let Some(i) = int(&text) {
        return Scalar::Int(i);
    }
    match float(&text) {
        Some(f) => Scalar::Float(f),
        None => Scalar::Str(text),
    }
}

/// `[-+]?[0-9]+`, `0o[0-7]+`, `0x[0-9a-fA-F]+`.
fn int(t: &str) -> Option<i64> {
    if let Some(oct) = t.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    if let Some(hex) = t.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, `.inf`, `.nan` (and a whole number
/// too large for an i64).
fn float(t: &str) -> Option<f64> {
    match t {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok =
        digits(whole) && digits(fraction) && (!whole.is_empty() || !fraction.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if mantissa_ok && exponent_ok {
        t.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_lines_and_types() {
        let doc =
            parse("a: 1\nb:\n  c: 'x'\n  d: [true, ~, 1.5, 0x10, \"2\"]\ne: &v\n  f: 3\ng: *v\n")
                .unwrap();
        assert_eq!(doc.get("a").unwrap().as_i64(), Some(1));
        assert_eq!(doc.line_of("b"), 2);
        let b = doc.get("b").unwrap();
        assert_eq!(b.get("c").unwrap().as_str(), Some("x"));
        assert_eq!(b.line_of("d"), 4);
        let d = b.get("d").unwrap().as_seq().unwrap();
        assert_eq!(d[0].text().as_deref(), Some("true"));
        assert_eq!(d[1].text().as_deref(), Some(""));
        assert_eq!(d[2].text().as_deref(), Some("1.5"));
        assert_eq!(d[3].as_i64(), Some(16));
        assert_eq!(d[4].as_str(), Some("2"));
        assert_eq!(d[4].int(), Some(2));
        let g = doc.get("g").unwrap();
        assert_eq!(g.get("f").unwrap().as_i64(), Some(3));
        assert_eq!(g.line, 7);
    }

    #[test]
    fn bad_documents_name_their_line() {
        let e = parse("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.line, 3, "{e:?}");
        assert!(e.message.contains("first at line 1"), "{e:?}");
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(e.line, 2, "{e:?}");
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
        let e = parse(bomb).unwrap_err();
        assert!(e.message.contains("nodes"), "{e:?}");
        let deep = "[".repeat(1000);
        assert!(parse(&deep).is_err());
        assert!(matches!(
            parse("").unwrap().kind,
            Kind::Scalar(Scalar::Null)
        ));
    }

    #[test]
    fn a_byte_order_mark_and_crlf_are_read_as_editors_write_them() {
        let doc = parse("\u{feff}a: 1\r\nb: 2\r\n").unwrap();
        assert_eq!(doc.get("a").unwrap().as_i64(), Some(1));
        assert_eq!(doc.line_of("b"), 2);
    }
}
