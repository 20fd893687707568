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

use serde::Serialize;
use serde_json::Value;

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
#[derive(Debug, Clone, Serialize)]
pub struct Expr {
    source: String,
}

impl Expr {
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        todo!("{src}")
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn eval(&self, ctx: &dyn Context) -> Result<Value, EvalError> {
        let _ = ctx;
        todo!()
    }
    /// Whether the expression calls `success`, `failure`, `always` or `cancelled`.
    pub fn uses_status_function(&self) -> bool {
        todo!()
    }
    /// Top-level context names the expression reads (lowercase), for validation.
    pub fn contexts_used(&self) -> Vec<String> {
        todo!()
    }
}

/// A string with zero or more `${{ }}` parts.
#[derive(Debug, Clone, Serialize)]
pub struct Template {
    source: String,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, ExprError> {
        todo!("{src}")
    }
    /// A template with no expressions.
    pub fn literal(s: &str) -> Template {
        Template { source: s.to_owned() }
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn is_literal(&self) -> bool {
        todo!()
    }
    pub fn eval(&self, ctx: &dyn Context) -> Result<Value, EvalError> {
        let _ = ctx;
        todo!()
    }
    pub fn eval_string(&self, ctx: &dyn Context) -> Result<String, EvalError> {
        let _ = ctx;
        todo!()
    }
    /// The parsed expressions inside, in order.
    pub fn exprs(&self) -> Vec<&Expr> {
        todo!()
    }
}

/// An `if:` condition.
#[derive(Debug, Clone, Serialize)]
pub struct Condition {
    source: String,
}

impl Condition {
    pub fn parse(src: &str) -> Result<Condition, ExprError> {
        todo!("{src}")
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn eval(&self, ctx: &dyn Context) -> Result<bool, EvalError> {
        let _ = ctx;
        todo!()
    }
}

/// Actions string coercion (`null` -> "", numbers as the runner prints them, objects/arrays -> "Object"/"Array").
pub fn to_string(v: &Value) -> String {
    let _ = v;
    todo!()
}

/// Actions truthiness (`false`, `0`, `-0`, `""`, `null`, `NaN` are falsy).
pub fn truthy(v: &Value) -> bool {
    let _ = v;
    todo!()
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
