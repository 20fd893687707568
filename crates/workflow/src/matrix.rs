//! Matrix expansion (`strategy.matrix` with include/exclude and expressions).

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::expr::{Context, Template};
use crate::parse::is_insert_key;

/// One matrix leg: key -> value, in declaration order.
pub type Leg = IndexMap<String, Value>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct MatrixError(pub String);

/// Expands a raw `matrix:` value (as stored in `Strategy::matrix`) into legs, the way
/// GitHub does:
///
/// 1. `${{ }}` strings are evaluated with `ctx` (the runner's context once the job's needs
///    are done: `needs`, `github`, `inputs`, `vars`, ...). The whole matrix, one key's
///    array, one entry or one nested value may be an expression (e.g.
///    `fromJSON(needs.a.outputs.m)`). An array entry that is a single expression returning
///    an array is spliced into the array (act's behaviour). act's `${{ insert }}` key merges
///    its mapping (literal or computed) into the enclosing mapping. Values computed by an
///    expression are not evaluated again.
/// 2. The cartesian product of the keys' arrays, in key order (no keys: no legs).
/// 3. `exclude`: drop every leg that an entry matches (all the entry's keys equal; nested
///    mappings match partially).
/// 4. `include`: merge each entry into every product leg whose original values it does not
///    change (values added by earlier includes may be overwritten); an entry that fits no
///    leg becomes a leg of its own.
///
/// Errors: the matrix (after evaluation) is not a mapping, a key's value is not a non-empty
/// array, `include`/`exclude` are not arrays of mappings, a matrix with neither keys nor
/// `include`, more than 256 legs (GitHub's limit), or an expression failing. When
/// `exclude` removes every leg and nothing is included the result is empty (the job has
/// nothing to run). A job with no `strategy` is not expanded at all.
pub fn expand(matrix: &Value, ctx: &dyn Context) -> Result<Vec<Leg>, MatrixError> {
    let value = eval(matrix, ctx)?;
    let Value::Object(obj) = value else {
        return Err(MatrixError(format!(
            "the matrix must be a mapping, found {}",
            kind(&value)
        )));
    };
    let mut vectors: Vec<(String, Vec<Value>)> = Vec::new();
    let mut include: Vec<Map<String, Value>> = Vec::new();
    let mut exclude: Vec<Map<String, Value>> = Vec::new();
    for (key, value) in obj {
        match key.as_str() {
            "include" | "exclude" => {
                let entries = match value {
                    Value::Null => Vec::new(),
                    Value::Array(items) => items,
                    Value::Object(_) => vec![value],
                    other => {
                        return Err(MatrixError(format!(
                            "matrix '{key}' must be a list of mappings, found {}",
                            kind(&other)
                        )));
                    }
                };
                let mut maps = Vec::new();
                for entry in entries {
                    match entry {
                        Value::Object(m) => maps.push(m),
                        other => {
                            return Err(MatrixError(format!(
                                "each matrix '{key}' entry must be a mapping, found {}",
                                kind(&other)
                            )));
                        }
                    }
                }
                if key == "include" {
                    include = maps;
                } else {
                    exclude = maps;
                }
            }
            _ => match value {
                Value::Array(items) if items.is_empty() => {
                    return Err(MatrixError(format!(
                        "matrix vector '{key}' does not contain any values"
                    )));
                }
                Value::Array(items) => vectors.push((key, items)),
                other => {
                    return Err(MatrixError(format!(
                        "matrix vector '{key}' must be a list, found {}",
                        kind(&other)
                    )));
                }
            },
        }
    }
    if vectors.is_empty() && include.is_empty() {
        return Err(MatrixError(
            "the matrix must define at least one vector or include entry".to_owned(),
        ));
    }

    let mut legs: Vec<Leg> = Vec::new();
    if !vectors.is_empty() {
        legs.push(Leg::new());
        for (key, values) in &vectors {
            if legs.len().saturating_mul(values.len()) > MAX_LEGS {
                return Err(MatrixError(format!(
                    "the matrix has more than {MAX_LEGS} combinations (GitHub's limit)"
                )));
            }
            let mut next = Vec::with_capacity(legs.len() * values.len());
            for leg in &legs {
                for v in values {
                    let mut l = leg.clone();
                    l.insert(key.clone(), v.clone());
                    next.push(l);
                }
            }
            legs = next;
        }
    }
    legs.retain(|leg| {
        !exclude.iter().any(|ex| {
            ex.iter()
                .all(|(k, v)| leg.get(k).is_some_and(|lv| matches(v, lv)))
        })
    });

    let original = legs.len();
    for entry in include {
        let mut fitted = false;
        for leg in legs.iter_mut().take(original) {
            let fits = entry.iter().all(|(k, v)| {
                if vectors.iter().any(|(vk, _)| vk == k) {
                    leg.get(k).is_some_and(|lv| equal(v, lv))
                } else {
                    true
                }
            });
            if fits {
                fitted = true;
                for (k, v) in &entry {
                    leg.insert(k.clone(), v.clone());
                }
            }
        }
        if !fitted {
            legs.push(entry.into_iter().collect());
        }
    }
    if legs.len() > MAX_LEGS {
        return Err(MatrixError(format!(
            "the matrix has more than {MAX_LEGS} combinations (GitHub's limit)"
        )));
    }
    Ok(legs)
}

/// GitHub's limit on the number of jobs one matrix may generate.
const MAX_LEGS: usize = 256;

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Whether `s` is exactly one `${{ }}` expression (whose value is then used raw).
fn is_whole_expression(s: &str) -> bool {
    s.contains("${{") && Template::parse(s).is_ok_and(|t| t.as_single_expr().is_some())
}

fn eval_string(s: &str, ctx: &dyn Context) -> Result<Value, MatrixError> {
    if !s.contains("${{") {
        return Ok(Value::String(s.to_owned()));
    }
    let t = Template::parse(s)
        .map_err(|e| MatrixError(format!("invalid expression in the matrix: {e}")))?;
    t.eval(ctx)
        .map_err(|e| MatrixError(format!("evaluating '{s}' in the matrix: {e}")))
}

/// Evaluates the literal parts of a matrix value (see [`expand`]).
fn eval(v: &Value, ctx: &dyn Context) -> Result<Value, MatrixError> {
    match v {
        Value::String(s) => eval_string(s, ctx),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let whole = matches!(item, Value::String(s) if is_whole_expression(s));
                match eval(item, ctx)? {
                    Value::Array(inner) if whole => out.extend(inner),
                    other => out.push(other),
                }
            }
            Ok(Value::Array(out))
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                if is_insert_key(k) {
                    match eval(v, ctx)? {
                        Value::Object(inserted) => out.extend(inserted),
                        Value::Null => {}
                        other => {
                            return Err(MatrixError(format!(
                                "'{k}' needs a mapping to insert, found {}",
                                kind(&other)
                            )));
                        }
                    }
                } else {
                    out.insert(k.clone(), eval(v, ctx)?);
                }
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// Scalar equality that does not care whether YAML or an expression made a value a number
/// or a string (`8` matches `"8"`); arrays and mappings compare exactly.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => a == b,
        _ => a == b || scalar_string(a) == scalar_string(b),
    }
}

/// `exclude` matching: mappings match partially (every key of the pattern matches).
fn matches(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Object(p), Value::Object(v)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| matches(pv, vv))),
        _ => equal(pattern, value),
    }
}

fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// act's `--matrix key:value` filter: keep a leg iff, for every key it has that appears in
/// `filter`, its value (as a string) is one of the filter's values. Keys the leg lacks are
/// ignored; an empty filter keeps every leg.
pub fn filter(legs: Vec<Leg>, filter: &IndexMap<String, Vec<String>>) -> Vec<Leg> {
    legs.into_iter()
        .filter(|leg| {
            leg.iter().all(|(k, v)| match filter.get(k) {
                Some(allowed) => allowed.contains(&scalar_string(v)),
                None => true,
            })
        })
        .collect()
}
