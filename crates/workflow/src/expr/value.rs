//! Runtime values and the language's coercions (GitHub's runner semantics).
//!
//! A [`Val`] borrows arrays and objects from the caller's contexts instead of copying them,
//! so that `==` can compare objects by identity as GitHub does. Arrays and objects created
//! during evaluation (`fromJSON`) are reference-counted and addressed by a path from their
//! root, which keeps identity stable for sub-objects too.

use std::cmp::Ordering;
use std::rc::Rc;

use serde_json::Value;

static NULL: Value = Value::Null;

/// One step from a JSON value to a child.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seg {
    Idx(usize),
    Key(String),
}

/// An array or object living in JSON.
#[derive(Debug, Clone)]
pub(crate) enum JsonRef<'a> {
    Borrowed(&'a Value),
    Owned { root: Rc<Value>, path: Vec<Seg> },
}

impl JsonRef<'_> {
    pub(crate) fn get(&self) -> &Value {
        match self {
            JsonRef::Borrowed(v) => v,
            JsonRef::Owned { root, path } => {
                let mut v: &Value = root;
                for seg in path {
                    v = match (seg, v) {
                        (Seg::Idx(i), Value::Array(a)) => a.get(*i).unwrap_or(&NULL),
                        (Seg::Key(k), Value::Object(o)) => o.get(k).unwrap_or(&NULL),
                        _ => &NULL,
                    };
                }
                v
            }
        }
    }
}

/// A value during evaluation.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    /// Always an array or an object.
    Json(JsonRef<'a>),
    /// The result of a `*` filter: a new array.
    Filtered(Rc<Vec<Val<'a>>>),
}

/// Primitive conversion of a JSON scalar; `None` for arrays and objects.
fn scalar(v: &Value) -> Option<Val<'static>> {
    Some(match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Val::Str(s.clone()),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

impl<'a> Val<'a> {
    pub(crate) fn borrowed(v: &'a Value) -> Val<'a> {
        scalar(v).unwrap_or(Val::Json(JsonRef::Borrowed(v)))
    }

    pub(crate) fn owned(v: Value) -> Val<'a> {
        scalar(&v).unwrap_or_else(|| Val::Json(JsonRef::Owned { root: Rc::new(v), path: Vec::new() }))
    }

    pub(crate) fn is_primitive(&self) -> bool {
        matches!(self, Val::Null | Val::Bool(_) | Val::Num(_) | Val::Str(_))
    }

    pub(crate) fn is_array(&self) -> bool {
        match self {
            Val::Json(j) => j.get().is_array(),
            Val::Filtered(_) => true,
            _ => false,
        }
    }

    /// The child at `seg` of a JSON collection (null when absent).
    fn json_child(j: &JsonRef<'a>, seg: Seg) -> Val<'a> {
        match j {
            JsonRef::Borrowed(v) => {
                let child = match (&seg, v) {
                    (Seg::Idx(i), Value::Array(a)) => a.get(*i),
                    (Seg::Key(k), Value::Object(o)) => o.get(k),
                    _ => None,
                };
                child.map_or(Val::Null, Val::borrowed)
            }
            JsonRef::Owned { root, path } => {
                let mut path = path.clone();
                path.push(seg);
                let r = JsonRef::Owned { root: root.clone(), path };
                match scalar(r.get()) {
                    Some(v) => v,
                    None => Val::Json(r),
                }
            }
        }
    }

    /// Items of an array (JSON or filtered); `None` for anything else.
    pub(crate) fn array_items(&self) -> Option<Vec<Val<'a>>> {
        match self {
            Val::Filtered(items) => Some(items.as_ref().clone()),
            Val::Json(j) => match j.get() {
                Value::Array(a) => Some((0..a.len()).map(|i| Val::json_child(j, Seg::Idx(i))).collect()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Values of an object, in key order; `None` for anything else.
    pub(crate) fn object_values(&self) -> Option<Vec<Val<'a>>> {
        match self {
            Val::Json(j) => match j.get() {
                Value::Object(o) => {
                    Some(o.keys().map(|k| Val::json_child(j, Seg::Key(k.clone()))).collect())
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Property lookup, case-insensitive (an exact match wins). `None` when absent or not an object.
    pub(crate) fn property(&self, key: &str) -> Option<Val<'a>> {
        let Val::Json(j) = self else { return None };
        let Value::Object(o) = j.get() else { return None };
        let actual = if o.contains_key(key) {
            key.to_owned()
        } else {
            o.keys().find(|k| k.eq_ignore_ascii_case(key) || k.to_lowercase() == key.to_lowercase())?.clone()
        };
        Some(Val::json_child(j, Seg::Key(actual)))
    }

    /// Array element; `None` when out of range or not a JSON array.
    pub(crate) fn element(&self, index: usize) -> Option<Val<'a>> {
        match self {
            Val::Filtered(items) => items.get(index).cloned(),
            Val::Json(j) => match j.get() {
                Value::Array(a) if index < a.len() => Some(Val::json_child(j, Seg::Idx(index))),
                _ => None,
            },
            _ => None,
        }
    }

    pub(crate) fn truthy(&self) -> bool {
        match self {
            Val::Null => false,
            Val::Bool(b) => *b,
            Val::Num(n) => !(*n == 0.0 || n.is_nan()),
            Val::Str(s) => !s.is_empty(),
            Val::Json(_) | Val::Filtered(_) => true,
        }
    }

    pub(crate) fn to_number(&self) -> f64 {
        match self {
            Val::Null => 0.0,
            Val::Bool(b) => f64::from(u8::from(*b)),
            Val::Num(n) => *n,
            Val::Str(s) => parse_number(s),
            Val::Json(_) | Val::Filtered(_) => f64::NAN,
        }
    }

    pub(crate) fn to_string_value(&self) -> String {
        match self {
            Val::Null => String::new(),
            Val::Bool(b) => b.to_string(),
            Val::Num(n) => format_number(*n),
            Val::Str(s) => s.clone(),
            Val::Json(_) | Val::Filtered(_) => {
                if self.is_array() { "Array" } else { "Object" }.to_owned()
            }
        }
    }

    /// Convert to plain JSON. Integral numbers become JSON integers; NaN and the
    /// infinities (not representable in JSON) become the strings "NaN", "Infinity", "-Infinity".
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Num(n) => number_to_json(*n),
            Val::Str(s) => Value::String(s.clone()),
            Val::Json(j) => j.get().clone(),
            Val::Filtered(items) => Value::Array(items.iter().map(Val::to_json).collect()),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Val::Null => Kind::Null,
            Val::Bool(_) => Kind::Bool,
            Val::Num(_) => Kind::Num,
            Val::Str(_) => Kind::Str,
            Val::Json(_) | Val::Filtered(_) => {
                if self.is_array() {
                    Kind::Array
                } else {
                    Kind::Object
                }
            }
        }
    }
}

fn number_to_json(n: f64) -> Value {
    if n.is_nan() {
        Value::String("NaN".into())
    } else if n.is_infinite() {
        Value::String(if n > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        // Exactly representable integer: print without a fraction.
        #[allow(clippy::cast_possible_truncation)]
        let i = n as i64;
        Value::from(i)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Num,
    Str,
    Array,
    Object,
}

/// Both sides after GitHub's `CoerceTypes`: equal kinds unchanged; number/string -> numbers;
/// a boolean or null side -> number, then again.
fn coerce<'a>(l: Val<'a>, r: Val<'a>) -> (Val<'a>, Val<'a>) {
    let (lk, rk) = (l.kind(), r.kind());
    if lk == rk {
        (l, r)
    } else if lk == Kind::Num && rk == Kind::Str {
        let n = r.to_number();
        (l, Val::Num(n))
    } else if lk == Kind::Str && rk == Kind::Num {
        (Val::Num(l.to_number()), r)
    } else if matches!(lk, Kind::Bool | Kind::Null) {
        coerce(Val::Num(l.to_number()), r)
    } else if matches!(rk, Kind::Bool | Kind::Null) {
        let n = r.to_number();
        coerce(l, Val::Num(n))
    } else {
        (l, r)
    }
}

/// Simple (one-to-one) upper-casing per character, like .NET's `OrdinalIgnoreCase`
/// (`ß` stays `ß`; it does not become `SS`).
pub(crate) fn upper(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// Loose equality: GitHub's `AbstractEqual`.
pub(crate) fn loose_eq(l: &Val<'_>, r: &Val<'_>) -> bool {
    let (l, r) = coerce(l.clone(), r.clone());
    match (&l, &r) {
        (Val::Null, Val::Null) => true,
        (Val::Num(a), Val::Num(b)) => a == b,
        (Val::Str(a), Val::Str(b)) => a == b || upper(a) == upper(b),
        (Val::Bool(a), Val::Bool(b)) => a == b,
        (Val::Json(a), Val::Json(b)) => std::ptr::eq(a.get(), b.get()),
        (Val::Filtered(a), Val::Filtered(b)) => Rc::ptr_eq(a, b),
        _ => false,
    }
}

/// Ordering for `<`, `>`: `None` when the values are not comparable (then every
/// comparison is false).
pub(crate) fn loose_cmp(l: &Val<'_>, r: &Val<'_>) -> Option<Ordering> {
    let (l, r) = coerce(l.clone(), r.clone());
    match (&l, &r) {
        (Val::Num(a), Val::Num(b)) => a.partial_cmp(b),
        (Val::Str(a), Val::Str(b)) => Some(upper(a).cmp(&upper(b))),
        (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// String to number, following GitHub's `ParseNumber` (JavaScript's `Number()` mostly):
/// trimmed; empty -> 0; decimal with optional sign, point and exponent; `0x` hex and `0o`
/// octal (32-bit); `Infinity`, `-Infinity`; anything else NaN.
pub(crate) fn parse_number(s: &str) -> f64 {
    let s = s.trim();
    if s.is_empty() {
        return 0.0;
    }
    if is_decimal(s) {
        return s.parse::<f64>().unwrap_or(f64::NAN);
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return u32::from_str_radix(hex, 16).map_or(f64::NAN, |v| f64::from(v as i32));
        }
        return f64::NAN;
    }
    if let Some(oct) = s.strip_prefix("0o") {
        if !oct.is_empty() && oct.chars().all(|c| ('0'..='7').contains(&c)) {
            return i32::from_str_radix(oct, 8).map_or(f64::NAN, f64::from);
        }
        return f64::NAN;
    }
    match s {
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        _ => f64::NAN,
    }
}

/// `[+-]? digits? (. digits?)? ([eE] [+-]? digits)?` with at least one mantissa digit.
fn is_decimal(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let mut digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

/// Number to string as GitHub's runner prints it: .NET's `G15` format (15 significant
/// digits, no trailing zeros; scientific `1.5E+15` when the exponent is below -4 or above 14).
pub(crate) fn format_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if n == 0.0 {
        return "0".into();
    }
    // 15 significant digits, correctly rounded: "d.dddddddddddddde<exp>".
    let sci = format!("{:.14e}", n.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let sign = if n < 0.0 { "-" } else { "" };
    if (-4..15).contains(&exp) {
        let len = digits.len() as i32;
        if exp >= 0 {
            let int_len = (exp + 1) as usize;
            if digits.len() <= int_len {
                format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
            } else {
                format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
            }
        } else {
            let _ = len;
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}E{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_like_the_runner() {
        for (n, s) in [
            (1.0, "1"),
            (1.1, "1.1"),
            (-3.25, "-3.25"),
            (1_234_567_890.0, "1234567890"),
            (12_345_678_901_234_567_890.0, "1.23456789012346E+19"),
            (0.1 + 0.2, "0.3"),
            (1e15, "1E+15"),
            (1e14, "100000000000000"),
            (0.0001, "0.0001"),
            (0.00001, "1E-05"),
            (-0.0299, "-0.0299"),
            (255.0, "255"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(format_number(n), s, "{n}");
        }
    }

    #[test]
    fn strings_to_numbers() {
        for (s, n) in [
            ("", 0.0),
            ("  ", 0.0),
            (" 12 ", 12.0),
            ("-1.5e2", -150.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("0xff", 255.0),
            ("0o17", 15.0),
            ("Infinity", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
        ] {
            assert_eq!(parse_number(s), n, "{s:?}");
        }
        for s in ["abc", "1e", "0x", "inf", "nan", "1-2", "--1", "0xfg", "+"] {
            assert!(parse_number(s).is_nan(), "{s:?}");
        }
    }

    #[test]
    fn coercion_table() {
        let s = |v: &str| Val::Str(v.into());
        let obj = serde_json::json!({"a": 1});
        let arr = serde_json::json!([1]);
        let o = Val::borrowed(&obj);
        let a = Val::borrowed(&arr);
        let eq = [
            (Val::Null, Val::Num(0.0), true),
            (Val::Null, s(""), true),
            (Val::Null, Val::Bool(false), true),
            (Val::Bool(true), Val::Num(1.0), true),
            (Val::Bool(true), s("1"), true),
            (Val::Bool(true), s("true"), false),
            (s("3"), Val::Num(3.0), true),
            (s(" 3 "), Val::Num(3.0), true),
            (s("abc"), s("ABC"), true),
            (s("straße"), s("STRASSE"), false),
            (Val::Num(f64::NAN), Val::Num(f64::NAN), false),
            (o.clone(), o.clone(), true),
            (o.clone(), Val::Null, false),
            (o.clone(), s("Object"), false),
            (a.clone(), a.clone(), true),
            (a.clone(), o.clone(), false),
            (Val::owned(obj.clone()), Val::owned(obj.clone()), false),
        ];
        for (l, r, want) in eq {
            assert_eq!(loose_eq(&l, &r), want, "{l:?} == {r:?}");
            assert_eq!(loose_eq(&r, &l), want, "{r:?} == {l:?}");
        }
        assert_eq!(loose_cmp(&s("b"), &s("A")), Some(Ordering::Greater));
        assert_eq!(loose_cmp(&Val::Bool(true), &Val::Bool(false)), Some(Ordering::Greater));
        assert_eq!(loose_cmp(&s("10"), &Val::Num(9.0)), Some(Ordering::Greater));
        assert_eq!(loose_cmp(&o, &Val::Num(9.0)), None);
        assert_eq!(loose_cmp(&Val::Num(f64::NAN), &Val::Num(9.0)), None);
    }

    #[test]
    fn owned_sub_objects_keep_identity() {
        let root = Val::owned(serde_json::json!({"a": {"b": 1}, "c": {"b": 1}}));
        let a1 = root.property("a").expect("a");
        let a2 = root.property("A").expect("a, case-insensitive");
        let c = root.property("c").expect("c");
        assert!(loose_eq(&a1, &a2));
        assert!(!loose_eq(&a1, &c));
        assert_eq!(a1.to_json(), serde_json::json!({"b": 1}));
    }
}
