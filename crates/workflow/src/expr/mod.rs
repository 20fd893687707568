//! The GitHub Actions expression language: `${{ ... }}`.
//!
//! Values are `serde_json::Value`. Contexts are supplied by the caller through [`Context`];
//! this module does no I/O (`hashFiles` is delegated to the context).
//!
//! CONTRACT (other crates code against exactly these names; implementation is free):
//! - `Expr::parse(src)` parses one expression (no `${{ }}`); `expr.eval(&ctx)`.
//! - `Template::parse(src)` parses a string that may contain `${{ }}` parts.
//!   `eval(&ctx)` returns the raw value when the whole string is one `${{ }}`, else a string;
//!   `eval_string(&ctx)` always coerces to a string (Actions string coercion).
//! - `Condition::parse(src)` parses an `if:` value (with or without `${{ }}`); `eval(&ctx)`
//!   applies the implicit `success() &&` when no status function is used.
//! - `to_string(&Value)` / `truthy(&Value)`: the language's coercions.
//!
//! Semantics are GitHub's runner's (`DTExpressions2`), not nektos/act's where they differ
//! (see COMPATIBILITY.md): loose `==` with number coercion, case-insensitive string
//! comparison, objects and arrays equal only to themselves (by reference), `&&`/`||`
//! returning an operand, `*` filters, numbers printed with 15 significant digits. Unknown
//! functions and context names are parse errors, as are trees deeper than 50.
//!
//! NaN and ±Infinity have no JSON form: where a result leaves the evaluator as a `Value`
//! they become the strings `"NaN"`, `"Infinity"`, `"-Infinity"` (what they print as).
//! Integral numbers come out as JSON integers.

mod eval;
mod parser;
mod value;

use serde::Serialize;
use serde_json::Value;

use parser::Node;
use value::Val;

/// Job status seen by `success()`, `failure()`, `cancelled()`, `always()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    #[default]
    Success,
    Failure,
    Cancelled,
}

/// What an expression is evaluated against.
pub trait Context {
    /// A top-level context (`github`, `env`, `matrix`, ...) by lowercase name; `None` = absent (null).
    fn context(&self, name: &str) -> Option<&Value>;
    /// The current job's (or step's) status for the status functions.
    fn status(&self) -> Status {
        Status::Success
    }
    /// `hashFiles(patterns...)`: the hex digest, or an error message.
    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        let _ = patterns;
        Err("hashFiles is not available here".to_owned())
    }
}

/// A parse error, with the byte offset in the expression source.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (at offset {offset} in '{source_text}')")]
pub struct ExprError {
    pub message: String,
    pub offset: usize,
    pub source_text: String,
}

/// An evaluation error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

/// One parsed expression.
///
/// Serializes as its source text (and deserializes by parsing it).
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    node: Node,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Expr {
    /// Parse one expression (the text between `${{` and `}}`, without them). Error offsets
    /// are byte offsets into `src`.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        match parser::parse(src) {
            Ok(node) => Ok(Expr { source: src.to_owned(), node }),
            Err(f) => Err(ExprError { message: f.message, offset: f.offset, source_text: src.to_owned() }),
        }
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn eval(&self, ctx: &dyn Context) -> Result<Value, EvalError> {
        Ok(eval::eval(&self.node, ctx)?.to_json())
    }
    /// Evaluate and coerce to a string (Actions string coercion).
    pub fn eval_string(&self, ctx: &dyn Context) -> Result<String, EvalError> {
        Ok(eval::eval(&self.node, ctx)?.to_string_value())
    }
    /// Evaluate and coerce to a boolean (Actions truthiness).
    pub fn eval_bool(&self, ctx: &dyn Context) -> Result<bool, EvalError> {
        Ok(eval::eval(&self.node, ctx)?.truthy())
    }
    /// Whether the expression calls `success`, `failure`, `always` or `cancelled`.
    pub fn uses_status_function(&self) -> bool {
        let mut found = false;
        self.node.walk(&mut |n| {
            if let Node::Call(f, _) = n {
                found |= f.is_status();
            }
        });
        found
    }
    /// Top-level context names the expression reads (lowercase, first use first, no duplicates),
    /// for validation.
    pub fn contexts_used(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        self.node.walk(&mut |n| {
            if let Node::Context(name) = n
                && !out.contains(name)
            {
                out.push(name.clone());
            }
        });
        out
    }
    /// Names of the functions the expression calls (canonical spelling, e.g. `hashFiles`),
    /// first use first, no duplicates.
    pub fn functions_used(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        self.node.walk(&mut |n| {
            if let Node::Call(f, _) = n
                && !out.contains(&f.name())
            {
                out.push(f.name());
            }
        });
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Expr(Expr),
}

/// A string with zero or more `${{ }}` parts.
///
/// Serializes as its source text (and deserializes by parsing it).
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
}

const OPEN: &str = "${{";

impl Template {
    /// Parse a string with `${{ expr }}` parts. A `}}` inside a quoted string literal of the
    /// expression does not close it. Error offsets are byte offsets into `src`, and the
    /// error's `source_text` is `src`.
    pub fn parse(src: &str) -> Result<Template, ExprError> {
        let error = |message: String, offset: usize| ExprError { message, offset, source_text: src.to_owned() };
        let bytes = src.as_bytes();
        let mut segments = Vec::new();
        let mut pos = 0;
        while let Some(found) = src[pos..].find(OPEN) {
            let start = pos + found;
            let body = start + OPEN.len();
            let mut in_string = false;
            let mut end = None;
            let mut j = body;
            while j < bytes.len() {
                match bytes[j] {
                    b'\'' => in_string = !in_string,
                    b'}' if !in_string && bytes.get(j + 1) == Some(&b'}') => {
                        end = Some(j);
                        break;
                    }
                    _ => {}
                }
                j += 1;
            }
            let Some(end) = end else {
                return Err(error("unclosed expression: '${{' without a matching '}}'".to_owned(), start));
            };
            if start > pos {
                segments.push(Segment::Literal(src[pos..start].to_owned()));
            }
            let inner = &src[body..end];
            let lead = inner.len() - inner.trim_start().len();
            let text = inner.trim();
            if text.is_empty() {
                return Err(error("an expression was expected inside '${{ }}'".to_owned(), start));
            }
            let expr = Expr::parse(text).map_err(|e| error(e.message, body + lead + e.offset))?;
            segments.push(Segment::Expr(expr));
            pos = end + 2;
        }
        if pos < src.len() {
            segments.push(Segment::Literal(src[pos..].to_owned()));
        }
        Ok(Template { source: src.to_owned(), segments })
    }
    /// A template with no expressions.
    pub fn literal(s: &str) -> Template {
        let segments = if s.is_empty() { Vec::new() } else { vec![Segment::Literal(s.to_owned())] };
        Template { source: s.to_owned(), segments }
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn is_literal(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Literal(_)))
    }
    /// The raw value when the whole string is exactly one `${{ }}` (nothing around it, not
    /// even spaces), else the concatenation as a string.
    pub fn eval(&self, ctx: &dyn Context) -> Result<Value, EvalError> {
        if let [Segment::Expr(e)] = self.segments.as_slice() {
            return e.eval(ctx);
        }
        Ok(Value::String(self.eval_string(ctx)?))
    }
    pub fn eval_string(&self, ctx: &dyn Context) -> Result<String, EvalError> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(s) => out.push_str(s),
                Segment::Expr(e) => out.push_str(&e.eval_string(ctx)?),
            }
        }
        Ok(out)
    }
    /// The parsed expressions inside, in order.
    pub fn exprs(&self) -> Vec<&Expr> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Expr(e) => Some(e),
                Segment::Literal(_) => None,
            })
            .collect()
    }
    /// The single expression when the whole template is exactly one `${{ }}`.
    pub fn as_single_expr(&self) -> Option<&Expr> {
        match self.segments.as_slice() {
            [Segment::Expr(e)] => Some(e),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum CondKind {
    /// Empty `if:`: `success()`.
    Empty,
    Expr(Expr),
    /// Text mixed with `${{ }}`: GitHub evaluates it as a string (truthy unless empty).
    Template(Template),
}

/// An `if:` condition.
///
/// Serializes as its source text (and deserializes by parsing it).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    source: String,
    kind: CondKind,
}

impl Condition {
    /// Parse an `if:` value: a bare expression, or `${{ expr }}` (surrounding whitespace
    /// ignored). Text mixed with `${{ }}` parts (`${{ a }} && b`) is, as on GitHub, a string
    /// whose truthiness decides. Empty means `success()`.
    pub fn parse(src: &str) -> Result<Condition, ExprError> {
        let trimmed = src.trim();
        let kind = if trimmed.is_empty() {
            CondKind::Empty
        } else if src.contains(OPEN) {
            let template = Template::parse(src)?;
            let mut exprs = template.segments.iter().filter(|s| match s {
                Segment::Literal(text) => !text.trim().is_empty(),
                Segment::Expr(_) => true,
            });
            match (exprs.next(), exprs.next()) {
                (Some(Segment::Expr(e)), None) => CondKind::Expr(e.clone()),
                _ => CondKind::Template(template),
            }
        } else {
            CondKind::Expr(Expr::parse(src)?)
        };
        Ok(Condition { source: src.to_owned(), kind })
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    /// Whether a status function appears (else `success() &&` is implied).
    pub fn uses_status_function(&self) -> bool {
        match &self.kind {
            CondKind::Empty => false,
            CondKind::Expr(e) => e.uses_status_function(),
            CondKind::Template(t) => t.exprs().iter().any(|e| e.uses_status_function()),
        }
    }
    /// The parsed expressions inside, in order.
    pub fn exprs(&self) -> Vec<&Expr> {
        match &self.kind {
            CondKind::Empty => Vec::new(),
            CondKind::Expr(e) => vec![e],
            CondKind::Template(t) => t.exprs(),
        }
    }
    pub fn eval(&self, ctx: &dyn Context) -> Result<bool, EvalError> {
        if !self.uses_status_function() && ctx.status() != Status::Success {
            return Ok(false);
        }
        match &self.kind {
            CondKind::Empty => Ok(true),
            CondKind::Expr(e) => e.eval_bool(ctx),
            CondKind::Template(t) => Ok(!t.eval_string(ctx)?.is_empty()),
        }
    }
}

macro_rules! serde_as_source {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.source)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_source!(Expr);
serde_as_source!(Template);
serde_as_source!(Condition);

/// Actions string coercion (`null` -> "", numbers as the runner prints them, objects/arrays -> "Object"/"Array").
pub fn to_string(v: &Value) -> String {
    Val::borrowed(v).to_string_value()
}

/// Actions truthiness (`false`, `0`, `-0`, `""`, `null`, `NaN` are falsy).
pub fn truthy(v: &Value) -> bool {
    Val::borrowed(v).truthy()
}

/// A ready-made [`Context`] over a map of lowercase context names.
#[derive(Debug, Clone, Default)]
pub struct MapContext {
    pub contexts: std::collections::BTreeMap<String, Value>,
    pub status: Status,
}

impl Context for MapContext {
    fn context(&self, name: &str) -> Option<&Value> {
        self.contexts.get(name)
    }
    fn status(&self) -> Status {
        self.status
    }
}
