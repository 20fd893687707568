//! Setting one scalar in a YAML file in place: the file is parsed into a tree with spans and
//! only the scalar's characters are replaced, so comments and layout survive a promote.

use saphyr_parser::{Event, Parser, ScalarStyle};

/// One step of a path: a mapping key, a list index, or the list item whose `key` is `value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
    Match(String, String),
}

/// Parses `a.b[0].c`, `spec.containers[name=web].image`, `images[1]`.
pub fn parse_path(p: &str) -> Result<Vec<Seg>, String> {
    let mut out = Vec::new();
    for part in p.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && rest.is_empty() {
            return Err(format!("path {p:?} has an empty segment"));
        }
        if !key.is_empty() {
            out.push(Seg::Key(key.to_owned()));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("path {p:?}: unclosed ["))?;
            let inner = &r[..end];
            out.push(match inner.split_once('=') {
                Some((k, v)) => Seg::Match(
                    k.trim().to_owned(),
                    v.trim().trim_matches(['"', '\'']).to_owned(),
                ),
                None => {
                    Seg::Index(inner.trim().parse().map_err(|_| {
                        format!("path {p:?}: [{inner}] is not an index or key=value")
                    })?)
                }
            });
            rest = &r[end + 1..];
        }
        if !rest.is_empty() {
            return Err(format!("path {p:?}: unexpected {rest:?}"));
        }
    }
    Ok(out)
}

#[derive(Debug)]
enum Node {
    Scalar {
        value: String,
        start: usize,
        end: usize,
        style: ScalarStyle,
    },
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
    Other,
}

impl Node {
    fn get(&self, seg: &Seg) -> Option<&Node> {
        match (self, seg) {
            (Node::Map(m), Seg::Key(k)) => m.iter().find(|(kk, _)| kk == k).map(|(_, v)| v),
            (Node::Seq(s), Seg::Index(i)) => s.get(*i),
            (Node::Seq(s), Seg::Match(k, v)) => s.iter().find(|item| {
                matches!(item.get(&Seg::Key(k.clone())), Some(Node::Scalar { value, .. }) if value == v)
            }),
            _ => None,
        }
    }
}

/// The documents of `text` as trees (char offsets in spans).
fn parse(text: &str) -> Result<Vec<Node>, String> {
    let mut events = Vec::new();
    for e in Parser::new_from_str(text) {
        let (ev, span) = e.map_err(|e| {
            format!(
                "{}:{}: {}",
                e.marker().line(),
                e.marker().col() + 1,
                e.info()
            )
        })?;
        events.push((ev, span));
    }
    let mut pos = 0;
    let mut docs = Vec::new();
    while pos < events.len() {
        if matches!(events[pos].0, Event::DocumentStart(_)) {
            pos += 1;
            docs.push(node(&events, &mut pos));
        } else {
            pos += 1;
        }
    }
    Ok(docs)
}

fn node(events: &[(Event<'_>, saphyr_parser::Span)], pos: &mut usize) -> Node {
    let Some((ev, span)) = events.get(*pos) else {
        return Node::Other;
    };
    *pos += 1;
    match ev {
        Event::Scalar(v, style, _, _) => Node::Scalar {
            value: v.to_string(),
            start: span.start.index(),
            end: span.end.index(),
            style: *style,
        },
        Event::MappingStart(..) => {
            let mut entries = Vec::new();
            while *pos < events.len() && !matches!(events[*pos].0, Event::MappingEnd) {
                let k = match node(events, pos) {
                    Node::Scalar { value, .. } => value,
                    _ => String::new(),
                };
                let v = node(events, pos);
                entries.push((k, v));
            }
            *pos += 1;
            Node::Map(entries)
        }
        Event::SequenceStart(..) => {
            let mut items = Vec::new();
            while *pos < events.len() && !matches!(events[*pos].0, Event::SequenceEnd) {
                items.push(node(events, pos));
            }
            *pos += 1;
            Node::Seq(items)
        }
        _ => Node::Other,
    }
}

/// The scalar at `path` in the first document that has it: its value.
pub fn get(text: &str, path: &[Seg]) -> Result<Option<String>, String> {
    for doc in parse(text)? {
        if let Some(Node::Scalar { value, .. }) = path.iter().try_fold(&doc, |n, s| n.get(s)) {
            return Ok(Some(value.clone()));
        }
    }
    Ok(None)
}

/// `text` with the scalar at `path` (in the first document that has it) set to `value`;
/// `None` when no document has a scalar there.
pub fn set(text: &str, path: &[Seg], value: &str) -> Result<Option<String>, String> {
    for doc in parse(text)? {
        if let Some(Node::Scalar {
            start, end, style, ..
        }) = path.iter().try_fold(&doc, |n, s| n.get(s))
        {
            let chars: Vec<(usize, char)> = text.char_indices().collect();
            let byte = |i: usize| chars.get(i).map_or(text.len(), |(b, _)| *b);
            let (mut b0, mut b1) = (byte(*start), byte(*end));
            let original = &text[b0..b1];
            // Spans of quoted scalars may or may not include the quotes: normalize to without.
            let quote = match style {
                ScalarStyle::SingleQuoted => Some('\''),
                ScalarStyle::DoubleQuoted => Some('"'),
                _ => None,
            };
            if let Some(q) = quote
                && original.starts_with(q)
                && original.len() >= 2
            {
                b0 += 1;
                b1 -= 1;
            }
            let needs_quotes = quote.is_none()
                && (value.is_empty()
                    || value.contains(": ")
                    || value.contains(" #")
                    || value.starts_with([
                        '@', '`', '!', '&', '*', '{', '[', '"', '\'', '#', '|', '>', '%',
                    ]));
            let replacement = if needs_quotes {
                format!("\"{value}\"")
            } else {
                value.to_owned()
            };
            let mut out = String::with_capacity(text.len() + value.len());
            out.push_str(&text[..b0]);
            out.push_str(&replacement);
            out.push_str(&text[b1..]);
            return Ok(Some(out));
        }
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(text: &str, path: &str, value: &str, expect: &str) {
        let out = set(text, &parse_path(path).unwrap(), value)
            .unwrap()
            .expect("path found");
        assert_eq!(out, expect);
    }

    #[test]
    fn sets_plain_and_quoted_scalars_keeping_comments() {
        check(
            "# app\nservices:\n  web:\n    image: reg/web@sha256:aa  # pinned\n    env: {A: b}\n",
            "services.web.image",
            "reg/web@sha256:bb",
            "# app\nservices:\n  web:\n    image: reg/web@sha256:bb  # pinned\n    env: {A: b}\n",
        );
        check("a:\n  b: \"x\"\n", "a.b", "y", "a:\n  b: \"y\"\n");
        check("a:\n  b: 'x'\n", "a.b", "y", "a:\n  b: 'y'\n");
        check(
            "l:\n- {name: a, image: i1}\n- {name: b, image: i2}\n",
            "l[name=b].image",
            "i3",
            "l:\n- {name: a, image: i1}\n- {name: b, image: i3}\n",
        );
        check("l: [x, y]\n", "l[1]", "z", "l: [x, z]\n");
        check("é: ü\nk: v\n", "k", "w", "é: ü\nk: w\n");
        check("---\na: 1\n---\nb: 2\n", "b", "3", "---\na: 1\n---\nb: 3\n");
    }

    #[test]
    fn missing_paths_and_bad_paths() {
        assert_eq!(set("a: 1\n", &parse_path("b").unwrap(), "x").unwrap(), None);
        assert_eq!(
            set("a: {b: 1}\n", &parse_path("a").unwrap(), "x").unwrap(),
            None,
            "not a scalar"
        );
        assert!(parse_path("a..b").is_err());
        assert!(parse_path("a[x").is_err());
        assert_eq!(
            parse_path("a[2].b[k=v]").unwrap(),
            [
                Seg::Key("a".into()),
                Seg::Index(2),
                Seg::Key("b".into()),
                Seg::Match("k".into(), "v".into())
            ]
        );
        assert_eq!(
            get("a: {b: c}\n", &parse_path("a.b").unwrap())
                .unwrap()
                .as_deref(),
            Some("c")
        );
    }
}
