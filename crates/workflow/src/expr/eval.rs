//! Evaluation of a parsed expression against a [`Context`].

use std::rc::Rc;

use serde_json::Value;

use super::parser::{CmpOp, Func, Node};
use super::value::{loose_cmp, loose_eq, upper, Val};
use super::{Context, EvalError, Status};

fn err<T>(message: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError { message: message.into() })
}

/// Evaluate `node`.
pub(crate) fn eval<'a>(node: &Node, ctx: &'a dyn Context) -> Result<Val<'a>, EvalError> {
    Ok(match node {
        Node::Null => Val::Null,
        Node::Bool(b) => Val::Bool(*b),
        Node::Num(n) => Val::Num(*n),
        Node::Str(s) => Val::Str(s.clone()),
        Node::Context(name) => {
            let found = ctx.context(name).or_else(|| match name.as_str() {
                "gitea" | "forge" | "forgejo" => ctx.context("github"),
                _ => None,
            });
            found.map_or(Val::Null, Val::borrowed)
        }
        Node::Index(target, index) => {
            let target = eval(target, ctx)?;
            let index = eval(index, ctx)?;
            index_value(&target, &index)
        }
        Node::Wildcard(target) => {
            let target = eval(target, ctx)?;
            wildcard(&target)
        }
        Node::Not(inner) => Val::Bool(!eval(inner, ctx)?.truthy()),
        Node::Cmp(op, l, r) => {
            let l = eval(l, ctx)?;
            let r = eval(r, ctx)?;
            let ord = || loose_cmp(&l, &r);
            Val::Bool(match op {
                CmpOp::Eq => loose_eq(&l, &r),
                CmpOp::Ne => !loose_eq(&l, &r),
                CmpOp::Lt => ord().is_some_and(|o| o.is_lt()),
                CmpOp::Gt => ord().is_some_and(|o| o.is_gt()),
                CmpOp::Le => loose_eq(&l, &r) || ord().is_some_and(|o| o.is_lt()),
                CmpOp::Ge => loose_eq(&l, &r) || ord().is_some_and(|o| o.is_gt()),
            })
        }
        Node::And(items) => {
            // The first falsy operand, else the last one.
            let mut last = Val::Bool(true);
            for item in items {
                last = eval(item, ctx)?;
                if !last.truthy() {
                    break;
                }
            }
            last
        }
        Node::Or(items) => {
            // The first truthy operand, else the last one.
            let mut last = Val::Bool(false);
            for item in items {
                last = eval(item, ctx)?;
                if last.truthy() {
                    break;
                }
            }
            last
        }
        Node::Call(func, args) => call(*func, args, ctx)?,
    })
}

/// Apply `index` (a key or a position) to `target`; GitHub's `Index` operator.
fn index_value<'a>(target: &Val<'a>, index: &Val<'a>) -> Val<'a> {
    if let Val::Filtered(items) = target {
        // Apply the index to every item; absent results are dropped.
        let mut out = Vec::new();
        for item in items.iter() {
            if item.is_array() {
                if let Some(v) = integer_index(index).and_then(|i| item.element(i)) {
                    out.push(v);
                }
            } else if let Some(v) = string_index(index).and_then(|key| item.property(&key)) {
                out.push(v);
            }
        }
        return Val::Filtered(Rc::new(out));
    }
    if target.is_array() {
        return integer_index(index).and_then(|i| target.element(i)).unwrap_or(Val::Null);
    }
    string_index(index).and_then(|key| target.property(&key)).unwrap_or(Val::Null)
}

/// `x.*` / `x[*]`: a new array of the elements (array), the values (object), or the items'
/// elements and values (a filtered array); empty for anything else.
fn wildcard<'a>(target: &Val<'a>) -> Val<'a> {
    let items = match target {
        Val::Filtered(items) => items
            .iter()
            .flat_map(|item| item.array_items().or_else(|| item.object_values()).unwrap_or_default())
            .collect(),
        _ => target.array_items().or_else(|| target.object_values()).unwrap_or_default(),
    };
    Val::Filtered(Rc::new(items))
}

/// A numeric index, floored; none when negative, NaN or too large.
fn integer_index(index: &Val<'_>) -> Option<usize> {
    let n = index.to_number().floor();
    if n.is_nan() || n < 0.0 || n > f64::from(i32::MAX) {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(n as usize)
}

/// A key: only primitives index objects.
fn string_index(index: &Val<'_>) -> Option<String> {
    index.is_primitive().then(|| index.to_string_value())
}

fn call<'a>(func: Func, args: &[Node], ctx: &'a dyn Context) -> Result<Val<'a>, EvalError> {
    let arg = |i: usize| -> Result<Val<'a>, EvalError> {
        match args.get(i) {
            Some(node) => eval(node, ctx),
            None => err(format!("{}: missing argument {}", func.name(), i + 1)),
        }
    };
    Ok(match func {
        // Arguments are evaluated only as far as GitHub's runner evaluates them, so that an
        // argument's error surfaces in the same cases.
        Func::Contains => {
            let hay = arg(0)?;
            if hay.is_primitive() {
                let needle = arg(1)?;
                // A non-primitive needle is never a substring.
                Val::Bool(
                    needle.is_primitive()
                        && upper(&hay.to_string_value()).contains(&upper(&needle.to_string_value())),
                )
            } else if let Some(items) = hay.array_items().filter(|items| !items.is_empty()) {
                let needle = arg(1)?;
                Val::Bool(items.iter().any(|item| loose_eq(item, &needle)))
            } else {
                Val::Bool(false)
            }
        }
        Func::StartsWith | Func::EndsWith => {
            let s = arg(0)?;
            if !s.is_primitive() {
                return Ok(Val::Bool(false));
            }
            let affix = arg(1)?;
            if !affix.is_primitive() {
                return Ok(Val::Bool(false));
            }
            let s = upper(&s.to_string_value());
            let affix = upper(&affix.to_string_value());
            Val::Bool(if func == Func::StartsWith { s.starts_with(&affix) } else { s.ends_with(&affix) })
        }
        Func::Format => {
            // The whole format string is checked before any argument is evaluated.
            let format = arg(0)?.to_string_value();
            let pieces = parse_format(&format, args.len() - 1)?;
            let mut cache: Vec<Option<String>> = vec![None; args.len() - 1];
            let mut out = String::new();
            for piece in pieces {
                match piece {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Arg(i) => {
                        if let Some(Some(s)) = cache.get(i) {
                            out.push_str(s);
                            continue;
                        }
                        let s = arg(i + 1)?.to_string_value();
                        out.push_str(&s);
                        if let Some(slot) = cache.get_mut(i) {
                            *slot = Some(s);
                        }
                    }
                }
            }
            Val::Str(out)
        }
        Func::Join => {
            let items = arg(0)?;
            if let Some(items) = items.array_items() {
                // The separator is evaluated only when there is something to separate.
                let sep = if items.len() > 1 && args.len() > 1 {
                    let sep = arg(1)?;
                    if sep.is_primitive() { sep.to_string_value() } else { ",".to_owned() }
                } else {
                    ",".to_owned()
                };
                let parts: Vec<String> = items.iter().map(Val::to_string_value).collect();
                Val::Str(parts.join(&sep))
            } else if items.is_primitive() {
                Val::Str(items.to_string_value())
            } else {
                Val::Str(String::new())
            }
        }
        Func::ToJson => {
            let v = arg(0)?.to_json();
            match serde_json::to_string_pretty(&v) {
                Ok(s) => Val::Str(s),
                Err(e) => return err(format!("toJSON: {e}")),
            }
        }
        Func::FromJson => {
            let s = arg(0)?.to_string_value();
            if s.trim().is_empty() {
                return err("fromJSON: empty input is not valid JSON");
            }
            match serde_json::from_str::<Value>(&s) {
                Ok(v) => Val::owned(v),
                Err(e) => return err(format!("fromJSON: invalid JSON: {e}")),
            }
        }
        Func::HashFiles => {
            let mut patterns = Vec::with_capacity(args.len());
            for i in 0..args.len() {
                patterns.push(arg(i)?.to_string_value());
            }
            match ctx.hash_files(&patterns) {
                Ok(digest) => Val::Str(digest),
                Err(message) => return err(format!("hashFiles({}): {message}", patterns.join(", "))),
            }
        }
        Func::Success => Val::Bool(ctx.status() == Status::Success),
        Func::Failure => Val::Bool(ctx.status() == Status::Failure),
        Func::Cancelled => Val::Bool(ctx.status() == Status::Cancelled),
        Func::Always => Val::Bool(true),
    })
}

/// A piece of a `format()` string.
enum Piece<'f> {
    Text(&'f str),
    Arg(usize),
}

/// Split a `format()` string into text and `{N}` placeholders (N < 256, below `arg_count`),
/// with `{{` and `}}` escapes. Messages match act's.
fn parse_format(format: &str, arg_count: usize) -> Result<Vec<Piece<'_>>, EvalError> {
    let invalid = || format!("The following format string is invalid: '{format}'");
    let b = format.as_bytes();
    let mut out = Vec::new();
    let mut index = 0;
    while index < b.len() {
        let lbrace = format[index..].find('{').map(|i| i + index);
        let rbrace = format[index..].find('}').map(|i| i + index);
        match (lbrace, rbrace) {
            (Some(l), r) if r.is_none_or(|r| r > l) => {
                if b.get(l + 1) == Some(&b'{') {
                    out.push(Piece::Text(&format[index..=l]));
                    index = l + 2;
                    continue;
                }
                let Some(r) = r else {
                    return err(format!("Unclosed brackets. {}", invalid()));
                };
                let digits = &format[l + 1..r];
                if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return err(invalid());
                }
                let Ok(n) = digits.parse::<u8>() else {
                    return err(invalid());
                };
                let n = usize::from(n);
                if n >= arg_count {
                    return err(format!(
                        "The following format string references more arguments than were supplied: '{format}'"
                    ));
                }
                out.push(Piece::Text(&format[index..l]));
                out.push(Piece::Arg(n));
                index = r + 1;
            }
            (_, Some(r)) => {
                if b.get(r + 1) == Some(&b'}') {
                    out.push(Piece::Text(&format[index..=r]));
                    index = r + 2;
                } else {
                    return err(format!("Closing bracket without opening one. {}", invalid()));
                }
            }
            (_, None) => {
                out.push(Piece::Text(&format[index..]));
                break;
            }
        }
    }
    Ok(out)
}
