//! Lexer and recursive-descent parser for one expression (the text inside `${{ }}`).
//!
//! The token rules follow GitHub's runner: a number token starts with a digit, `-`, `+`
//! (or `.` where an operand is expected) and runs to the next token boundary; keywords
//! are `[A-Za-z_][A-Za-z0-9_-]*`; `null`, `true`, `false`, `NaN` and `Infinity` are
//! case-sensitive literals; function and context names are case-insensitive.

use super::value::parse_number;

/// Deepest nesting accepted (GitHub's `MaxDepth`); also keeps recursion bounded.
const MAX_DEPTH: usize = 50;

/// Contexts an expression may name (lowercase). `gitea`/`forge`/`forgejo` are aliases of
/// `github` on Gitea and Forgejo.
pub(crate) const KNOWN_CONTEXTS: &[&str] = &[
    "github", "env", "vars", "job", "jobs", "steps", "runner", "secrets", "strategy", "matrix",
    "needs", "inputs", "gitea", "forge", "forgejo",
];

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Contains,
    StartsWith,
    EndsWith,
    Format,
    Join,
    ToJson,
    FromJson,
    HashFiles,
    Success,
    Failure,
    Cancelled,
    Always,
}

impl Func {
    fn lookup(name: &str) -> Option<Func> {
        Some(match name.to_ascii_lowercase().as_str() {
            "contains" => Func::Contains,
            "startswith" => Func::StartsWith,
            "endswith" => Func::EndsWith,
            "format" => Func::Format,
            "join" => Func::Join,
            "tojson" => Func::ToJson,
            "fromjson" => Func::FromJson,
            "hashfiles" => Func::HashFiles,
            "success" => Func::Success,
            "failure" => Func::Failure,
            "cancelled" => Func::Cancelled,
            "always" => Func::Always,
            _ => return None,
        })
    }

    /// Minimum and maximum number of arguments.
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Contains | Func::StartsWith | Func::EndsWith => (2, 2),
            Func::Format | Func::HashFiles => (1, usize::MAX),
            Func::Join => (1, 2),
            Func::ToJson | Func::FromJson => (1, 1),
            Func::Success | Func::Failure | Func::Cancelled | Func::Always => (0, 0),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Func::Contains => "contains",
            Func::StartsWith => "startsWith",
            Func::EndsWith => "endsWith",
            Func::Format => "format",
            Func::Join => "join",
            Func::ToJson => "toJSON",
            Func::FromJson => "fromJSON",
            Func::HashFiles => "hashFiles",
            Func::Success => "success",
            Func::Failure => "failure",
            Func::Cancelled => "cancelled",
            Func::Always => "always",
        }
    }

    pub(crate) fn is_status(self) -> bool {
        matches!(self, Func::Success | Func::Failure | Func::Cancelled | Func::Always)
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The syntax tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    /// A top-level context, lowercase.
    Context(String),
    /// `a[b]` and `a.b` (the property name becomes a string literal).
    Index(Box<Node>, Box<Node>),
    /// `a.*` and `a[*]`.
    Wildcard(Box<Node>),
    Not(Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    /// `a && b && ...` (flattened, as GitHub's parser does).
    And(Vec<Node>),
    /// `a || b || ...` (flattened).
    Or(Vec<Node>),
    Call(Func, Vec<Node>),
}

impl Node {
    /// Visit every node, parents before children.
    pub(crate) fn walk(&self, f: &mut dyn FnMut(&Node)) {
        f(self);
        match self {
            Node::Null | Node::Bool(_) | Node::Num(_) | Node::Str(_) | Node::Context(_) => {}
            Node::Index(a, b) | Node::Cmp(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Node::Wildcard(a) | Node::Not(a) => a.walk(f),
            Node::And(args) | Node::Or(args) | Node::Call(_, args) => args.iter().for_each(|a| a.walk(f)),
        }
    }
}

/// A parse failure: message and byte offset in the parsed text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) offset: usize,
}

fn fail<T>(offset: usize, message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure { message: message.into(), offset })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Star,
    Not,
    Cmp(CmpOp),
    And,
    Or,
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Word(String),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    offset: usize,
    raw: String,
}

fn is_boundary(c: char) -> bool {
    matches!(c, '(' | '[' | ')' | ']' | ',' | '.' | '!' | '>' | '<' | '=' | '&' | '|') || c.is_whitespace()
}

fn is_keyword(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn lex(src: &str) -> Result<Vec<Token>, Failure> {
    let mut out: Vec<Token> = Vec::new();
    let bytes: Vec<(usize, char)> = src.char_indices().collect();
    let end_of = |i: usize| bytes.get(i).map_or(src.len(), |(o, _)| *o);
    let mut i = 0;
    while i < bytes.len() {
        let (off, c) = bytes[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = bytes.get(i + 1).map(|(_, c)| *c);
        let last = out.last().map(|t| &t.tok);
        let operand_expected = matches!(
            last,
            None | Some(
                Tok::Comma | Tok::LParen | Tok::LBracket | Tok::Not | Tok::Cmp(_) | Tok::And | Tok::Or
            )
        );
        let simple = |tok: Tok, len: usize| Token { tok, offset: off, raw: src[off..off + len].to_owned() };
        let token = match c {
            '(' => simple(Tok::LParen, 1),
            ')' => simple(Tok::RParen, 1),
            '[' => simple(Tok::LBracket, 1),
            ']' => simple(Tok::RBracket, 1),
            ',' => simple(Tok::Comma, 1),
            '*' => simple(Tok::Star, 1),
            '.' if !operand_expected => simple(Tok::Dot, 1),
            '!' if next == Some('=') => simple(Tok::Cmp(CmpOp::Ne), 2),
            '!' => simple(Tok::Not, 1),
            '<' if next == Some('=') => simple(Tok::Cmp(CmpOp::Le), 2),
            '<' => simple(Tok::Cmp(CmpOp::Lt), 1),
            '>' if next == Some('=') => simple(Tok::Cmp(CmpOp::Ge), 2),
            '>' => simple(Tok::Cmp(CmpOp::Gt), 1),
            '=' if next == Some('=') => simple(Tok::Cmp(CmpOp::Eq), 2),
            '&' if next == Some('&') => simple(Tok::And, 2),
            '|' if next == Some('|') => simple(Tok::Or, 2),
            '=' | '&' | '|' => return fail(off, format!("unexpected symbol '{c}'")),
            '\'' => {
                let mut value = String::new();
                let mut j = i + 1;
                let mut closed = false;
                while j < bytes.len() {
                    let ch = bytes[j].1;
                    j += 1;
                    if ch == '\'' {
                        if bytes.get(j).map(|(_, c)| *c) == Some('\'') {
                            j += 1;
                        } else {
                            closed = true;
                            break;
                        }
                    }
                    value.push(ch);
                }
                if !closed {
                    return fail(off, format!("unterminated string literal {}", &src[off..]));
                }
                let raw = src[off..end_of(j)].to_owned();
                let t = Token { tok: Tok::Str(value), offset: off, raw };
                i = j;
                out.push(t);
                continue;
            }
            _ if c == '.' || c == '-' || c == '+' || c.is_ascii_digit() => {
                let mut j = i + 1;
                while j < bytes.len() && (!is_boundary(bytes[j].1) || bytes[j].1 == '.') {
                    j += 1;
                }
                let raw = &src[off..end_of(j)];
                let n = parse_number(raw);
                if n.is_nan() {
                    return fail(off, format!("unexpected symbol '{raw}'"));
                }
                let t = Token { tok: Tok::Num(n), offset: off, raw: raw.to_owned() };
                i = j;
                out.push(t);
                continue;
            }
            _ => {
                let mut j = i + 1;
                while j < bytes.len() && !is_boundary(bytes[j].1) {
                    j += 1;
                }
                let raw = &src[off..end_of(j)];
                if !is_keyword(raw) {
                    return fail(off, format!("unexpected symbol '{raw}'"));
                }
                let after_dot = matches!(last, Some(Tok::Dot));
                let tok = match raw {
                    _ if after_dot => Tok::Word(raw.to_owned()),
                    "null" => Tok::Null,
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "NaN" => Tok::Num(f64::NAN),
                    "Infinity" => Tok::Num(f64::INFINITY),
                    _ => Tok::Word(raw.to_owned()),
                };
                let t = Token { tok, offset: off, raw: raw.to_owned() };
                i = j;
                out.push(t);
                continue;
            }
        };
        i += token.raw.chars().count();
        out.push(token);
    }
    Ok(out)
}

/// Parse one expression.
pub(crate) fn parse(src: &str) -> Result<Node, Failure> {
    let tokens = lex(src)?;
    if tokens.is_empty() {
        return fail(0, "expected an expression");
    }
    let mut p = Parser { tokens, pos: 0, len: src.len() };
    let sub = p.expr(0)?;
    if let Some(t) = p.peek() {
        return fail(t.offset, format!("unexpected token '{}'", t.raw));
    }
    Ok(sub.node)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_tok(&self) -> Option<&Tok> {
        self.peek().map(|t| &t.tok)
    }

    fn next(&mut self) -> Result<Token, Failure> {
        match self.tokens.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok(t.clone())
            }
            None => fail(self.len, "unexpected end of expression"),
        }
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<Token, Failure> {
        let t = self.next()?;
        if &t.tok == want {
            Ok(t)
        } else {
            fail(t.offset, format!("unexpected token '{}', expected {what}", t.raw))
        }
    }

    /// Nesting guard for the recursive descent (groups, arguments, indexes).
    fn expr(&mut self, nesting: usize) -> Result<Sub, Failure> {
        if nesting > MAX_DEPTH {
            let off = self.peek().map_or(self.len, |t| t.offset);
            return fail(off, format!("exceeded max expression depth {MAX_DEPTH}"));
        }
        self.or(nesting)
    }

    fn or(&mut self, nesting: usize) -> Result<Sub, Failure> {
        let first = self.and(nesting)?;
        let Some(op) = self.peek().filter(|t| t.tok == Tok::Or).map(|t| t.offset) else {
            return Ok(first);
        };
        let mut items = vec![first];
        while self.peek_tok() == Some(&Tok::Or) {
            self.pos += 1;
            items.push(self.and(nesting)?);
        }
        Sub::nary(items, Node::Or, op)
    }

    fn and(&mut self, nesting: usize) -> Result<Sub, Failure> {
        let first = self.equality(nesting)?;
        let Some(op) = self.peek().filter(|t| t.tok == Tok::And).map(|t| t.offset) else {
            return Ok(first);
        };
        let mut items = vec![first];
        while self.peek_tok() == Some(&Tok::And) {
            self.pos += 1;
            items.push(self.equality(nesting)?);
        }
        Sub::nary(items, Node::And, op)
    }

    fn equality(&mut self, nesting: usize) -> Result<Sub, Failure> {
        let mut left = self.comparison(nesting)?;
        while let Some(Token { tok: Tok::Cmp(op @ (CmpOp::Eq | CmpOp::Ne)), offset, .. }) = self.peek() {
            let (op, offset) = (*op, *offset);
            self.pos += 1;
            let right = self.comparison(nesting)?;
            left = Sub::binary(left, right, offset, |a, b| Node::Cmp(op, a, b))?;
        }
        Ok(left)
    }

    fn comparison(&mut self, nesting: usize) -> Result<Sub, Failure> {
        let mut left = self.unary(nesting)?;
        while let Some(Token { tok: Tok::Cmp(op @ (CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge)), offset, .. }) =
            self.peek()
        {
            let (op, offset) = (*op, *offset);
            self.pos += 1;
            let right = self.unary(nesting)?;
            left = Sub::binary(left, right, offset, |a, b| Node::Cmp(op, a, b))?;
        }
        Ok(left)
    }

    fn unary(&mut self, nesting: usize) -> Result<Sub, Failure> {
        if self.peek_tok() == Some(&Tok::Not) {
            let t = self.next()?;
            if nesting + 1 > MAX_DEPTH {
                return fail(t.offset, format!("exceeded max expression depth {MAX_DEPTH}"));
            }
            let inner = self.unary(nesting + 1)?;
            return Sub::unary(inner, t.offset, Node::Not);
        }
        self.postfix(nesting)
    }

    fn postfix(&mut self, nesting: usize) -> Result<Sub, Failure> {
        let (mut sub, can_index) = self.primary(nesting)?;
        if !can_index {
            return Ok(sub);
        }
        loop {
            match self.peek_tok() {
                Some(Tok::Dot) => {
                    self.pos += 1;
                    let t = self.next()?;
                    sub = match t.tok {
                        Tok::Star => Sub::unary(sub, t.offset, Node::Wildcard)?,
                        Tok::Word(w) => {
                            Sub::binary(sub, Sub::leaf(Node::Str(w)), t.offset, Node::Index)?
                        }
                        _ => return fail(t.offset, format!("unexpected token '{}' after '.'", t.raw)),
                    };
                }
                Some(Tok::LBracket) => {
                    let open = self.next()?;
                    if self.peek_tok() == Some(&Tok::Star) {
                        self.pos += 1;
                        self.expect(&Tok::RBracket, "']'")?;
                        sub = Sub::unary(sub, open.offset, Node::Wildcard)?;
                    } else {
                        let index = self.expr(nesting + 1)?;
                        self.expect(&Tok::RBracket, "']'")?;
                        sub = Sub::binary(sub, index, open.offset, Node::Index)?;
                    }
                }
                _ => return Ok(sub),
            }
        }
    }

    /// A primary expression, and whether `.`/`[ ]` may follow it (not after a literal).
    fn primary(&mut self, nesting: usize) -> Result<(Sub, bool), Failure> {
        let t = self.next()?;
        Ok(match t.tok {
            Tok::Null => (Sub::leaf(Node::Null), false),
            Tok::Bool(b) => (Sub::leaf(Node::Bool(b)), false),
            Tok::Num(n) => (Sub::leaf(Node::Num(n)), false),
            Tok::Str(s) => (Sub::leaf(Node::Str(s)), false),
            Tok::LParen => {
                let inner = self.expr(nesting + 1)?;
                self.expect(&Tok::RParen, "')'")?;
                (inner, true)
            }
            Tok::Word(w) => {
                if self.peek_tok() == Some(&Tok::LParen) {
                    let Some(func) = Func::lookup(&w) else {
                        return fail(t.offset, format!("unrecognized function '{w}'"));
                    };
                    let open = self.next()?;
                    let mut args = Vec::new();
                    if self.peek_tok() == Some(&Tok::RParen) {
                        self.pos += 1;
                    } else {
                        loop {
                            args.push(self.expr(nesting + 1)?);
                            let sep = self.next()?;
                            match sep.tok {
                                Tok::Comma => continue,
                                Tok::RParen => break,
                                _ => {
                                    return fail(
                                        sep.offset,
                                        format!("unexpected token '{}', expected ',' or ')'", sep.raw),
                                    );
                                }
                            }
                        }
                    }
                    let (min, max) = func.arity();
                    if args.len() < min {
                        return fail(open.offset, format!("too few parameters supplied to '{}'", func.name()));
                    }
                    if args.len() > max {
                        return fail(open.offset, format!("too many parameters supplied to '{}'", func.name()));
                    }
                    (Sub::nary(args, |a| Node::Call(func, a), t.offset)?, true)
                } else {
                    let name = w.to_ascii_lowercase();
                    if !KNOWN_CONTEXTS.contains(&name.as_str()) {
                        return fail(t.offset, format!("unrecognized named-value '{w}'"));
                    }
                    (Sub::leaf(Node::Context(name)), true)
                }
            }
            _ => return fail(t.offset, format!("unexpected token '{}'", t.raw)),
        })
    }
}

/// A parsed sub-tree and its depth (a leaf is 1). GitHub rejects trees deeper than
/// [`MAX_DEPTH`]; bounding the depth also keeps evaluation's recursion bounded.
struct Sub {
    node: Node,
    depth: usize,
}

impl Sub {
    fn leaf(node: Node) -> Sub {
        Sub { node, depth: 1 }
    }

    fn checked(node: Node, depth: usize, offset: usize) -> Result<Sub, Failure> {
        if depth > MAX_DEPTH {
            return fail(offset, format!("exceeded max expression depth {MAX_DEPTH}"));
        }
        Ok(Sub { node, depth })
    }

    fn unary(inner: Sub, offset: usize, make: impl FnOnce(Box<Node>) -> Node) -> Result<Sub, Failure> {
        Sub::checked(make(Box::new(inner.node)), inner.depth + 1, offset)
    }

    fn binary(
        a: Sub,
        b: Sub,
        offset: usize,
        make: impl FnOnce(Box<Node>, Box<Node>) -> Node,
    ) -> Result<Sub, Failure> {
        let depth = a.depth.max(b.depth) + 1;
        Sub::checked(make(Box::new(a.node), Box::new(b.node)), depth, offset)
    }

    fn nary(items: Vec<Sub>, make: impl FnOnce(Vec<Node>) -> Node, offset: usize) -> Result<Sub, Failure> {
        let depth = items.iter().map(|s| s.depth).max().unwrap_or(0) + 1;
        Sub::checked(make(items.into_iter().map(|s| s.node).collect()), depth, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> Failure {
        match parse(src) {
            Ok(n) => panic!("{src:?} parsed as {n:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn precedence() {
        let n = parse("a || b && !c == d").err();
        assert!(n.is_some(), "unknown contexts are rejected");
        let n = parse("github.a || github.b && !github.c == 1").expect("parses");
        let Node::Or(items) = n else { panic!("or at the top: {n:?}") };
        let Node::And(items) = &items[1] else { panic!("and under or") };
        assert!(matches!(&items[1], Node::Cmp(CmpOp::Eq, l, _) if matches!(**l, Node::Not(_))));
        let n = parse("1 || 2 || 3 && 4 && 5").expect("parses");
        let Node::Or(items) = n else { panic!("or at the top") };
        assert_eq!(items.len(), 3, "flattened");
        assert!(matches!(&items[2], Node::And(a) if a.len() == 3));
    }

    #[test]
    fn errors_have_offsets() {
        let e = err("(1 + 2");
        assert_eq!(e.offset, 3);
        let e = err("1 == )");
        assert_eq!((e.offset, e.message.as_str()), (5, "unexpected token ')'"));
        let e = err("github.sha ==");
        assert_eq!((e.offset, e.message.as_str()), (13, "unexpected end of expression"));
        let e = err("foo(1)");
        assert_eq!(e.message, "unrecognized function 'foo'");
        let e = err("contains(1)");
        assert_eq!(e.message, "too few parameters supplied to 'contains'");
        let e = err("'abc");
        assert!(e.message.starts_with("unterminated string"), "{e:?}");
        let e = err("");
        assert_eq!(e.message, "expected an expression");
        let e = err("github.sha = 1");
        assert_eq!((e.offset, e.message.as_str()), (11, "unexpected symbol '='"));
        let e = err("1 2");
        assert_eq!((e.offset, e.message.as_str()), (2, "unexpected token '2'"));
        let e = err("'a'[0]");
        assert_eq!(e.offset, 3);
    }

    #[test]
    fn depth_is_bounded() {
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        assert!(err(&deep).message.contains("max expression depth"));
        let nots = format!("{}1", "!".repeat(500));
        assert!(err(&nots).message.contains("max expression depth"));
        // Long chains do not nest deeper than GitHub allows, except where GitHub's tree does too.
        let ors = vec!["github.a"; 5000].join(" || ");
        assert!(parse(&ors).is_ok(), "|| chains are flat");
        let derefs = format!("github{}", ".a".repeat(49));
        assert!(parse(&derefs).is_ok());
        let derefs = format!("github{}", ".a".repeat(50));
        assert!(err(&derefs).message.contains("max expression depth"));
        let eqs = vec!["1"; 5000].join(" == ");
        assert!(err(&eqs).message.contains("max expression depth"));
    }

    #[test]
    fn literals() {
        assert_eq!(parse("0xff"), Ok(Node::Num(255.0)));
        assert_eq!(parse("-2.99e-2"), Ok(Node::Num(-0.0299)));
        assert_eq!(parse("'it''s'"), Ok(Node::Str("it's".into())));
        assert_eq!(parse(".5"), Ok(Node::Num(0.5)));
        assert!(matches!(parse("NaN"), Ok(Node::Num(n)) if n.is_nan()));
        assert_eq!(parse("github.true"), Ok(Node::Index(Box::new(Node::Context("github".into())), Box::new(Node::Str("true".into())))));
        assert_eq!(parse("GitHub.SHA"), Ok(Node::Index(Box::new(Node::Context("github".into())), Box::new(Node::Str("SHA".into())))));
    }
}
