//! A small YAML tree with positions, built from `saphyr-parser` events.
//!
//! Only what the workflow parser needs: scalars keep their text and style (types are
//! resolved lazily with the YAML 1.2 core schema, so `on:` stays a string), every node
//! knows where it starts and ends, aliases are expanded (with a budget), duplicate mapping
//! keys are reported. Only the first document of a stream is used.

use std::borrow::Cow;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Tag};

/// A position in the source: 1-based line and column (in characters), and the character
/// index from the start of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub col: u32,
    pub index: usize,
}

impl Pos {
    fn from_marker(m: &Marker) -> Pos {
        Pos {
            line: u32::try_from(m.line()).unwrap_or(u32::MAX),
            col: u32::try_from(m.col().saturating_add(1)).unwrap_or(u32::MAX),
            index: m.index(),
        }
    }
}

/// The resolved type of a scalar (YAML 1.2 core schema).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Scalar {
        text: String,
        style: ScalarStyle,
        tagged_str: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    pub start: Pos,
    pub end: Pos,
}

impl Node {
    /// What the node is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Seq(_) => "a sequence",
            Kind::Map(_) => "a mapping",
            Kind::Scalar { .. } => match self.scalar() {
                Some(Scalar::Null) => "nothing (null)",
                Some(Scalar::Bool(_)) => "a boolean",
                Some(Scalar::Int(_)) | Some(Scalar::Float(_)) => "a number",
                _ => "a string",
            },
        }
    }

    /// The scalar's resolved type, or `None` for collections.
    pub fn scalar(&self) -> Option<Scalar> {
        match &self.kind {
            Kind::Scalar {
                text,
                style,
                tagged_str,
            } => {
                if *tagged_str || *style != ScalarStyle::Plain {
                    Some(Scalar::Str)
                } else {
                    Some(resolve_plain(text))
                }
            }
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        self.scalar() == Some(Scalar::Null)
    }

    /// The raw text of a scalar.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The scalar as a string the way the Actions runner converts it: null -> "",
    /// booleans lowercased, numbers as written. `None` for collections.
    pub fn as_string(&self) -> Option<String> {
        match self.scalar()? {
            Scalar::Null => Some(String::new()),
            Scalar::Bool(b) => Some(b.to_string()),
            _ => self.text().map(str::to_owned),
        }
    }

    pub fn style(&self) -> Option<ScalarStyle> {
        match &self.kind {
            Kind::Scalar { style, .. } => Some(*style),
            _ => None,
        }
    }

    /// The node as JSON: scalars typed by the core schema (non-finite floats stay strings).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    let key = k.as_string().unwrap_or_default();
                    map.insert(key, v.to_json());
                }
                Value::Object(map)
            }
            Kind::Scalar { text, .. } => match self.scalar() {
                Some(Scalar::Null) => Value::Null,
                Some(Scalar::Bool(b)) => Value::Bool(b),
                Some(Scalar::Int(i)) => Value::from(i),
                Some(Scalar::Float(f)) => serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .unwrap_or_else(|| Value::String(text.clone())),
                _ => Value::String(text.clone()),
            },
        }
    }
}

fn resolve_plain(text: &str) -> Scalar {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    let bytes = text.as_bytes();
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    for (prefix, radix) in [("0x", 16), ("0o", 8)] {
        if let Some(rest) = text.strip_prefix(prefix)
            && digits(rest, radix)
        {
            return i64::from_str_radix(rest, radix)
                .map(Scalar::Int)
                .unwrap_or(Scalar::Str);
        }
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits(unsigned, 10) {
        return match text.parse::<i64>() {
            Ok(i) => Scalar::Int(i),
            Err(_) => text
                .parse::<f64>()
                .map(Scalar::Float)
                .unwrap_or(Scalar::Str),
        };
    }
    // Core-schema float: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let first = bytes.first().copied().unwrap_or(b' ');
    if (first.is_ascii_digit() || first == b'.' || first == b'-' || first == b'+')
        && is_float(text)
        && let Ok(f) = text.parse::<f64>()
    {
        return Scalar::Float(f);
    }
    Scalar::Str
}

fn is_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            int.chars().all(|c| c.is_ascii_digit())
                && frac.chars().all(|c| c.is_ascii_digit())
                && !(int.is_empty() && frac.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.chars().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = match exp {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
        }
    };
    mantissa_ok && exp_ok
}

/// A problem found while reading the YAML (the message and where).
#[derive(Debug, Clone)]
pub(crate) struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// The first document (or `None` when the stream has no document), plus non-fatal
/// problems (duplicate keys, extra documents). `Err` is a syntax error.
pub(crate) struct Loaded {
    pub root: Option<Node>,
    pub problems: Vec<YamlError>,
}

/// How deep sequences and mappings may nest (the tree is walked recursively).
const MAX_DEPTH: usize = 200;

/// Nodes that alias expansion may copy in total (guards against "billion laughs").
const ALIAS_BUDGET: usize = 100_000;

enum Frame {
    Seq {
        items: Vec<Node>,
        start: Pos,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        start: Pos,
        anchor: usize,
    },
}

fn count_nodes(n: &Node) -> usize {
    match &n.kind {
        Kind::Scalar { .. } => 1,
        Kind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Kind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
    }
}

fn is_str_tag(tag: &Option<Cow<'_, Tag>>) -> bool {
    tag.as_ref()
        .is_some_and(|t| t.suffix == "str" && (t.handle == "!!" || t.is_yaml_core_schema()))
}

/// Parses `source` into a tree.
pub(crate) fn load(source: &str) -> Result<Loaded, YamlError> {
    let mut parser = Parser::new_from_str(source);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: std::collections::HashMap<usize, Node> = std::collections::HashMap::new();
    let mut root: Option<Node> = None;
    let mut problems = Vec::new();
    let mut docs = 0usize;
    let mut budget = ALIAS_BUDGET;

    while let Some(item) = parser.next_event() {
        let (event, span) = item.map_err(|e| YamlError {
            pos: Pos::from_marker(e.marker()),
            message: e.info().to_owned(),
        })?;
        let start = Pos::from_marker(&span.start);
        let end = Pos::from_marker(&span.end);
        let complete: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => None,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                docs += 1;
                if docs == 2 {
                    problems.push(YamlError {
                        pos: start,
                        message: "a workflow file must hold a single YAML document".to_owned(),
                    });
                }
                anchors.clear();
                None
            }
            Event::Scalar(text, style, anchor, tag) => {
                let tagged_str = is_str_tag(&tag);
                Some((
                    Node {
                        kind: Kind::Scalar {
                            text: text.into_owned(),
                            style,
                            tagged_str,
                        },
                        start,
                        end,
                    },
                    anchor,
                ))
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => {
                    let cost = count_nodes(n);
                    if cost > budget {
                        return Err(YamlError {
                            pos: start,
                            message: "too many alias expansions".to_owned(),
                        });
                    }
                    budget -= cost;
                    let mut n = n.clone();
                    n.start = start;
                    n.end = end;
                    Some((n, 0))
                }
                None => {
                    return Err(YamlError {
                        pos: start,
                        message: "unknown alias".to_owned(),
                    });
                }
            },
            Event::SequenceStart(..) | Event::MappingStart(..) if stack.len() >= MAX_DEPTH => {
                return Err(YamlError {
                    pos: start,
                    message: format!("nesting deeper than {MAX_DEPTH} levels"),
                });
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    start,
                    anchor,
                });
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    start,
                    anchor,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    items,
                    start,
                    anchor,
                }) => Some((
                    Node {
                        kind: Kind::Seq(items),
                        start,
                        end,
                    },
                    anchor,
                )),
                _ => {
                    return Err(YamlError {
                        pos: start,
                        message: "unbalanced sequence".to_owned(),
                    });
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    entries,
                    start,
                    anchor,
                    ..
                }) => Some((
                    Node {
                        kind: Kind::Map(entries),
                        start,
                        end,
                    },
                    anchor,
                )),
                _ => {
                    return Err(YamlError {
                        pos: start,
                        message: "unbalanced mapping".to_owned(),
                    });
                }
            },
        };
        let Some((node, anchor)) = complete else {
            continue;
        };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => {
                if docs <= 1 && root.is_none() {
                    root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if let Some(text) = k.text()
                        && entries.iter().any(|(prev, _)| prev.text() == Some(text))
                    {
                        problems.push(YamlError {
                            pos: k.start,
                            message: format!("duplicate key '{text}'"),
                        });
                    }
                    entries.push((k, node));
                }
            },
        }
    }
    Ok(Loaded { root, problems })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_resolve_with_the_core_schema() {
        let cases = [
            ("", Scalar::Null),
            ("~", Scalar::Null),
            ("null", Scalar::Null),
            ("true", Scalar::Bool(true)),
            ("False", Scalar::Bool(false)),
            ("on", Scalar::Str),
            ("yes", Scalar::Str),
            ("42", Scalar::Int(42)),
            ("-7", Scalar::Int(-7)),
            ("0x1f", Scalar::Int(31)),
            ("0o17", Scalar::Int(15)),
            ("1.5", Scalar::Float(1.5)),
            ("1e3", Scalar::Float(1000.0)),
            (".5", Scalar::Float(0.5)),
            ("8.x", Scalar::Str),
            ("1.2.3", Scalar::Str),
            ("-", Scalar::Str),
            (".", Scalar::Str),
            ("ubuntu-18.04", Scalar::Str),
            ("99999999999999999999", Scalar::Float(1e20)),
        ];
        for (text, want) in cases {
            assert_eq!(resolve_plain(text), want, "{text:?}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // Flow style: the parser's own limit.
        let src = "[".repeat(100_000);
        assert!(load(&src).is_err());
        // Block style: ours.
        let src: String = (0..300)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let err = load(&src).err().map(|e| e.message);
        assert_eq!(err.as_deref(), Some("nesting deeper than 200 levels"));
        let src = "- ".repeat(300);
        assert!(load(&src).is_err());
    }

    #[test]
    fn alias_bombs_are_stopped() {
        let mut src = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 {
                "a".to_owned()
            } else {
                format!("l{}", i - 1)
            };
            src.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let err = load(&src).err().map(|e| e.message);
        assert_eq!(err.as_deref(), Some("too many alias expansions"));
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_second_key() {
        let loaded = load("a: 1\nb: 2\na: 3\n").expect("valid YAML");
        let p = &loaded.problems[0];
        assert_eq!(
            (p.pos.line, p.pos.col, p.message.as_str()),
            (3, 1, "duplicate key 'a'")
        );
    }
}
