//! The `${{ }}` language against act's expression corpus
//! (`shared/compat/act/expressions.json`, 384 cases) and against GitHub behaviour the
//! corpus does not cover.
//!
//! Where act's expectation is not GitHub's, the case is listed in [`GITHUB_OVERRIDES`] with
//! GitHub's result, and in COMPATIBILITY.md ("Expressions").

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value};
use workflow::expr::{self, Condition, Context, Expr, MapContext, Status, Template};

/// act cases whose expectation is act-specific: slipway asserts GitHub's behaviour instead.
/// (case id, GitHub's result, why)
const GITHUB_OVERRIDES: &[(&str, &str, &str)] = &[
    (
        "TestOperators/006",
        "1",
        "GitHub floors a fractional array index (`[1.1]` is `[1]`); act returns null",
    ),
    (
        "TestOperators/007",
        "[]",
        "GitHub applies an index to each element of a filtered array, and a string has no \
         element 0; act indexes the filtered array itself (\"someone\")",
    ),
    (
        "TestOperators/026",
        "false",
        "both sides are null (missing properties) and null == null on GitHub; act says they differ",
    ),
    (
        "TestOperators/027",
        "true",
        "GitHub compares objects by reference (two different objects are not equal); act raises \
         'Compare not implemented for types: left: map, right: map'",
    ),
    (
        "TestContexts/003",
        "[]",
        "GitHub's `*` filter on null yields an empty array; act returns null",
    ),
    (
        "TestFunctionContains/017",
        "false",
        "`.first` on an array is null on GitHub (only `*` maps over elements), so \
         contains(null, 'success') is false; act maps the property over the array",
    ),
];

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Value(Value),
    Error(String),
}

/// A context whose `hashFiles` records the patterns it was asked for (the workflow crate
/// does no I/O; the digests themselves are checked in `runner/tests/hashfiles.rs`).
struct Recording {
    inner: MapContext,
    hash_calls: Mutex<Vec<Vec<String>>>,
}

impl Context for Recording {
    fn context(&self, name: &str) -> Option<&Value> {
        self.inner.context(name)
    }
    fn status(&self) -> Status {
        self.inner.status
    }
    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        self.hash_calls.lock().expect("not poisoned").push(patterns.to_vec());
        Ok(format!("hash-of:{}", patterns.join("|")))
    }
}

fn map_context(contexts: &Value) -> MapContext {
    let mut ctx = MapContext::default();
    if let Value::Object(map) = contexts {
        for (k, v) in map {
            ctx.contexts.insert(k.to_lowercase(), v.clone());
        }
    }
    ctx
}

/// The quoted string literals of an expression, in order (for the hashFiles cases).
fn string_literals(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            let mut s = String::new();
            while let Some(c) = chars.next() {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                    } else {
                        break;
                    }
                }
                s.push(c);
            }
            out.push(s);
        }
    }
    out
}

fn same_value(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => got == want,
    }
}

fn run(expr_src: &str, ctx: &dyn Context) -> Outcome {
    match Expr::parse(expr_src) {
        Err(e) => Outcome::Error(e.message),
        Ok(e) => match e.eval(ctx) {
            Ok(v) => Outcome::Value(v),
            Err(e) => Outcome::Error(e.message),
        },
    }
}

#[test]
fn act_expression_corpus() {
    let path = test_support::shared_dir().join("compat/act/expressions.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let cases: Vec<Value> = serde_json::from_str(&text).expect("expressions.json is JSON");
    assert_eq!(cases.len(), 384, "the corpus has 384 cases");

    let mut failures = Vec::new();
    let mut executed = 0;
    let mut overridden = 0;
    let mut hash_delegated = 0;
    for case in &cases {
        let id = case["id"].as_str().expect("id");
        let src = case["expr"].as_str().expect("expr");
        let act_expect = match case["expect"].as_str() {
            Some("value") => Outcome::Value(case["expected"].clone()),
            Some("error") => Outcome::Error(case["error"].as_str().expect("error message").to_owned()),
            other => panic!("{id}: unknown expect {other:?}"),
        };
        let want = match GITHUB_OVERRIDES.iter().find(|(oid, _, _)| *oid == id) {
            Some((_, github, _)) => {
                overridden += 1;
                Outcome::Value(serde_json::from_str(github).expect("override is JSON"))
            }
            None => act_expect,
        };
        let ctx = Recording { inner: map_context(&case["contexts"]), hash_calls: Mutex::new(Vec::new()) };
        let is_hash = case.get("working_directory").is_some();
        let want = if is_hash {
            // act's digest is checked in the runner crate; here: the call is delegated with
            // exactly the patterns written.
            hash_delegated += 1;
            Outcome::Value(Value::String(format!("hash-of:{}", string_literals(src).join("|"))))
        } else {
            want
        };
        let got = run(src, &ctx);
        executed += 1;
        let ok = match (&got, &want) {
            (Outcome::Value(g), Outcome::Value(w)) => same_value(g, w),
            (Outcome::Error(g), Outcome::Error(w)) => g == w,
            _ => false,
        };
        if is_hash && ctx.hash_calls.lock().expect("not poisoned").len() != 1 {
            failures.push(format!("{id}: `{src}`: hashFiles was not delegated exactly once"));
        }
        if !ok {
            failures.push(format!("{id}: `{src}`\n    want {want:?}\n    got  {got:?}"));
        }
    }
    assert_eq!(executed, cases.len(), "every row was executed");
    assert_eq!(overridden, GITHUB_OVERRIDES.len(), "every override names a case of the corpus");
    assert_eq!(hash_delegated, 8, "the 8 hashFiles cases");
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Every `${{ }}` and every `if:` in act's workflow corpus (`shared/compat/act/cases`)
/// parses: the parser rejects nothing that act and GitHub accept.
#[test]
fn every_expression_in_acts_workflows_parses() {
    fn yaml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                yaml_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                out.push(path);
            }
        }
    }
    let root = test_support::shared_dir().join("compat/act/cases");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    files.sort();
    let (mut templates, mut conditions) = (0, 0);
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let at = format!("{}:{}", file.strip_prefix(&root).unwrap_or(file).display(), i + 1);
            // act's `${{ insert }}` mapping-key directive is not an expression.
            if line.contains("${{") && !line.replace(' ', "").contains("${{insert}}") {
                templates += 1;
                // An expression may continue on the next lines (a multi-line flow scalar).
                let mut chunk = (*line).to_owned();
                let mut next = i + 1;
                let mut result = Template::parse(&chunk);
                while matches!(&result, Err(e) if e.message.starts_with("unclosed")) && next < lines.len() {
                    chunk.push('\n');
                    chunk.push_str(lines[next]);
                    next += 1;
                    result = Template::parse(&chunk);
                }
                if let Err(e) = result {
                    failures.push(format!("{at}: {chunk:?}: {e}"));
                }
            }
            let trimmed = line.trim_start().trim_start_matches("- ");
            let Some(value) = trimmed.strip_prefix("if:") else { continue };
            let value = value.split(" #").next().unwrap_or_default().trim();
            let condition = if value == "|" || value == ">" {
                let indent = line.len() - line.trim_start().len();
                lines[i + 1..]
                    .iter()
                    .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                    .map(|l| l.trim())
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                value.trim_matches('"').to_owned()
            };
            conditions += 1;
            if let Err(e) = Condition::parse(&condition) {
                failures.push(format!("{at}: if: {condition:?}: {e}"));
            }
        }
    }
    assert!(templates >= 60 && conditions >= 15, "found {templates} templates and {conditions} conditions");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- behaviour act's corpus misses -------------------------------------------------------

fn ctx(contexts: Value) -> MapContext {
    map_context(&contexts)
}

fn eval(src: &str, ctx: &MapContext) -> Value {
    Expr::parse(src).unwrap_or_else(|e| panic!("{src}: {e}")).eval(ctx).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn check(cases: &[(&str, Value)], ctx: &MapContext) {
    let mut failures = Vec::new();
    for (src, want) in cases {
        match Expr::parse(src).map_err(|e| e.to_string()).and_then(|e| e.eval(ctx).map_err(|e| e.to_string())) {
            Ok(got) if same_value(&got, want) => {}
            other => failures.push(format!("`{src}`: want {want}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn event_ctx() -> MapContext {
    ctx(json!({
        "github": {
            "event_name": "push",
            "Ref": "refs/heads/main",
            "event": {
                "commits": [
                    {"id": "a", "author": {"username": "mona", "email": "m@x"}, "files": ["x.rs", "y.rs"]},
                    {"id": "b", "author": {"username": "octo"}, "files": ["z.rs"]},
                    {"id": "c", "author": null}
                ],
                "labels": {"bug": {"name": "bug"}, "ui": {"name": "ui"}}
            }
        },
        "needs": {
            "build": {"result": "success", "outputs": {"digest": "sha256:1"}},
            "test": {"result": "failure", "outputs": {}}
        },
        "matrix": {"os": "linux", "node": 18, "flags": ["a", "b"]},
        "env": {"Mixed_Case": "yes"},
        "secrets": {},
        "vars": {}
    }))
}

#[test]
fn object_filters() {
    let c = event_ctx();
    check(
        &[
            ("github.event.commits.*.author.username", json!(["mona", "octo"])),
            ("github.event.commits[*].id", json!(["a", "b", "c"])),
            ("github.event.commits.*.files.*", json!(["x.rs", "y.rs", "z.rs"])),
            ("github.event.commits.*.files[0]", json!(["x.rs", "z.rs"])),
            ("github.event.labels.*.name", json!(["bug", "ui"])),
            ("needs.*.result", json!(["success", "failure"])),
            ("needs.*.outputs.digest", json!(["sha256:1"])),
            ("github.nothing.*", json!([])),
            ("github.nothing.*.x", json!([])),
            ("github.event_name.*", json!([])),
            // GitHub applies an index to each element of a filtered array (strings have none).
            ("(github.event.commits.*.author.username)[1]", json!([])),
            ("github.event.commits.*.files[1]", json!(["y.rs"])),
            ("join(github.event.commits.*.id, '+')", json!("a+b+c")),
            ("contains(needs.*.result, 'FAILURE')", json!(true)),
            ("contains(github.event.commits.*.author.username, 'nobody')", json!(false)),
            ("toJSON(matrix.flags.*)", json!("[\n  \"a\",\n  \"b\"\n]")),
        ],
        &c,
    );
}

#[test]
fn case_insensitivity() {
    let c = event_ctx();
    check(
        &[
            ("GITHUB.EVENT_NAME", json!("push")),
            ("github.ref", json!("refs/heads/main")),
            ("github['REF']", json!("refs/heads/main")),
            ("env.mixed_case", json!("yes")),
            ("ENV.MIXED_CASE", json!("yes")),
            ("Contains('Hello', 'LL')", json!(true)),
            ("STARTSWITH('Hello', 'he')", json!(true)),
            ("endswith('Hello', 'LO')", json!(true)),
            ("'abc' == 'ABC'", json!(true)),
            ("'abc' < 'ABD'", json!(true)),
            ("'Z' > 'a'", json!(true)),
            ("FromJson('{\"A\":1}').a", json!(1)),
            // Gitea/Forgejo spell the github context `gitea`/`forge`/`forgejo`.
            ("gitea.event_name", json!("push")),
            ("Forgejo.event_name", json!("push")),
            ("forge.ref", json!("refs/heads/main")),
        ],
        &c,
    );
}

#[test]
fn format_escapes_and_errors() {
    let c = MapContext::default();
    check(
        &[
            ("format('{{}}')", json!("{}")),
            ("format('{{{0}}}', 1)", json!("{1}")),
            ("format('{0}{0}{1}', 'a', 'b')", json!("aab")),
            ("format('{1}-{0}', 'a', 'b')", json!("b-a")),
            ("format('x {0}', fromJSON('{}'))", json!("x Object")),
            ("format('{0}', 0.1)", json!("0.1")),
            ("format('{0}', 1e21)", json!("1E+21")),
            ("format('{0}', 0.00001)", json!("1E-05")),
            ("format('{0}', -0.5)", json!("-0.5")),
            ("format('{0}', 0xff)", json!("255")),
            ("format('{0}', '}}')", json!("}}")),
        ],
        &c,
    );
    for (src, message) in [
        ("format('{0:x}', 1)", "The following format string is invalid: '{0:x}'"),
        ("format('{}', 1)", "The following format string is invalid: '{}'"),
        ("format('{a}', 1)", "The following format string is invalid: '{a}'"),
        ("format('{256}', 1)", "The following format string is invalid: '{256}'"),
        ("format('{1}', 1)", "The following format string references more arguments than were supplied: '{1}'"),
        ("format('a}b')", "Closing bracket without opening one. The following format string is invalid: 'a}b'"),
        ("format('{0', 1)", "Unclosed brackets. The following format string is invalid: '{0'"),
    ] {
        let e = Expr::parse(src).expect("parses").eval(&c).expect_err(src);
        assert_eq!(e.message, message, "{src}");
    }
}

#[test]
fn format_255_placeholders_needs_256_arguments() {
    let args: Vec<String> = (0..=255).map(|i| i.to_string()).collect();
    let src = format!("format('{{255}}', {})", args.join(", "));
    assert_eq!(eval(&src, &MapContext::default()), json!("255"));
}

#[test]
fn coercion_table() {
    let c = event_ctx();
    check(
        &[
            // loose equality
            ("null == ''", json!(true)),
            ("null == false", json!(true)),
            ("false == ''", json!(true)),
            ("true == 'true'", json!(false)),
            ("'1' == true", json!(true)),
            ("' 42 ' == 42", json!(true)),
            ("'0x10' == 16", json!(true)),
            ("'abc' == 0", json!(false)),
            ("NaN == NaN", json!(false)),
            ("Infinity == 'Infinity'", json!(true)),
            ("fromJSON('[]') == fromJSON('[]')", json!(false)),
            ("github == github", json!(true)),
            ("github.event == github['event']", json!(true)),
            ("github.event.commits[0] == github.event.commits[1]", json!(false)),
            ("contains(github.event.commits, github.event.commits[1])", json!(true)),
            ("secrets == vars", json!(false)),
            ("secrets != vars", json!(true)),
            ("github == 'Object'", json!(false)),
            ("matrix.node == '18'", json!(true)),
            // ordering
            ("1 < '2'", json!(true)),
            ("null < 1", json!(true)),
            ("false < true", json!(true)),
            ("'a' < 1", json!(false)),
            ("'a' >= 1", json!(false)),
            ("github < 1", json!(false)),
            ("github >= github", json!(true)),
            ("'10' > 9", json!(true)),
            ("'10' > '9'", json!(false)),
            // truthiness and operand-returning && / ||
            ("!github", json!(false)),
            ("!NaN", json!(true)),
            ("!-0", json!(true)),
            ("github.nothing || 'default'", json!("default")),
            ("matrix.os == 'linux' && 'on linux' || 'elsewhere'", json!("on linux")),
            ("matrix.os == 'mac' && 'on mac' || 'elsewhere'", json!("elsewhere")),
            // string coercion
            ("format('{0}|{1}|{2}|{3}', null, true, github, matrix.flags)", json!("|true|Object|Array")),
            ("join(fromJSON('[1, 2.5, true, null, [1], {}]'), ' ')", json!("1 2.5 true  Array Object")),
            ("join(github)", json!("")),
            ("join(fromJSON('[\"a\",\"b\"]'), fromJSON('{}'))", json!("a,b")),
            // indexing
            ("fromJSON('[10,20]')['1']", json!(20)),
            ("fromJSON('[10,20]')[true]", json!(20)),
            ("fromJSON('[10,20]')[1.9]", json!(20)),
            ("fromJSON('[10,20]')[-0.5]", json!(null)),
            ("fromJSON('{\"1\":\"one\"}')[1]", json!("one")),
            ("github.event.commits[2].author.username", json!(null)),
            ("github.event_name[0]", json!(null)),
        ],
        &c,
    );
}

#[test]
fn functions() {
    let c = event_ctx();
    check(
        &[
            ("toJSON(fromJSON('{\"a\":[1,{\"b\":null}]}'))", json!("{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ]\n}")),
            ("toJSON('x')", json!("\"x\"")),
            ("toJSON(1.5)", json!("1.5")),
            ("toJSON(fromJSON('[]'))", json!("[]")),
            ("fromJSON('true')", json!(true)),
            ("fromJSON(' 12 ')", json!(12)),
            ("fromJSON('\"s\"')", json!("s")),
            ("fromJSON(toJSON(matrix)).node", json!(18)),
            ("contains(github, 'x')", json!(false)),
            ("contains(matrix.flags, 'B')", json!(true)),
            ("startsWith(matrix.flags, 'a')", json!(false)),
            ("success()", json!(true)),
            ("failure()", json!(false)),
            ("always()", json!(true)),
            ("cancelled()", json!(false)),
        ],
        &c,
    );
    for src in ["fromJSON('{')", "fromJSON('')", "hashFiles('x')", "contains('a', fromJSON('{'))"] {
        let e = Expr::parse(src).expect("parses").eval(&c);
        assert!(e.is_err(), "{src} should fail, got {e:?}");
    }
    // Arguments GitHub's runner never evaluates cannot fail.
    check(
        &[
            ("format('{0}', 'a', fromJSON('{'))", json!("a")),
            ("join(fromJSON('[1]'), fromJSON('{'))", json!("1")),
            ("startsWith(github, fromJSON('{'))", json!(false)),
            ("contains(github, fromJSON('{'))", json!(false)),
            ("contains(fromJSON('[]'), fromJSON('{'))", json!(false)),
            ("false && fromJSON('{')", json!(false)),
            ("true || fromJSON('{')", json!(true)),
            // A non-primitive needle is never a substring.
            ("contains('Array', fromJSON('[]'))", json!(false)),
        ],
        &c,
    );
    // The format string is checked before its arguments are evaluated.
    let e = Expr::parse("format('{0} {', fromJSON('{'))").expect("parses").eval(&c).expect_err("bad format");
    assert!(e.message.starts_with("Unclosed brackets."), "{e}");
}

/// The corpus leaves out act's rows whose result is not plain JSON (NaN, Infinity, objects).
#[test]
fn non_plain_results() {
    let c = MapContext::default();
    let string = |src: &str| Expr::parse(src).expect("parses").eval_string(&c).expect("evaluates");
    assert_eq!(string("true && Infinity"), "Infinity");
    assert_eq!(string("false || NaN"), "NaN");
    assert_eq!(string("-Infinity"), "-Infinity");
    assert_eq!(string("Infinity || 1"), "Infinity");
    assert_eq!(string("fromJSON('{}') || false"), "Object");
    // NaN and the infinities have no JSON form: as values they are their strings.
    assert_eq!(eval("NaN", &c), json!("NaN"));
    assert_eq!(eval("'x' && -Infinity", &c), json!("-Infinity"));
    assert_eq!(eval("fromJSON('{}') || false", &c), json!({}));
    assert_eq!(eval("fromJSON('{\"foo\":\"bar\"}')", &c), json!({"foo": "bar"}));
    assert_eq!(eval("fromJSON('[1,[2]]')[1]", &c), json!([2]));
    assert!(!Expr::parse("NaN").expect("parses").eval_bool(&c).expect("evaluates"));
    assert!(Expr::parse("Infinity").expect("parses").eval_bool(&c).expect("evaluates"));
}

#[test]
fn status_functions_follow_the_context() {
    for (status, want) in [
        (Status::Success, [true, false, false, true]),
        (Status::Failure, [false, true, false, true]),
        (Status::Cancelled, [false, false, true, true]),
    ] {
        let c = MapContext { contexts: BTreeMap::new(), status };
        let got = ["success()", "failure()", "cancelled()", "always()"].map(|s| eval(s, &c) == json!(true));
        assert_eq!(got, want, "{status:?}");
    }
}

#[test]
fn parse_errors_name_the_offset() {
    for (src, message, offset) in [
        ("1 == )", "unexpected token ')'", 5),
        ("github.sha ==", "unexpected end of expression", 13),
        ("(github.sha", "unexpected end of expression", 11),
        ("github.sha == 'x", "unterminated string literal 'x", 14),
        ("github.", "unexpected end of expression", 7),
        ("github.[0]", "unexpected token '[' after '.'", 7),
        ("foo.bar", "unrecognized named-value 'foo'", 0),
        ("nope()", "unrecognized function 'nope'", 0),
        ("success(1)", "too many parameters supplied to 'success'", 7),
        ("join()", "too few parameters supplied to 'join'", 4),
        ("contains('a', 'b', 'c')", "too many parameters supplied to 'contains'", 8),
        ("a = b", "unexpected symbol '='", 2),
        ("github.sha = 'x'", "unexpected symbol '='", 11),
        ("1 2", "unexpected token '2'", 2),
        ("github.sha #", "unexpected symbol '#'", 11),
        ("1abc", "unexpected symbol '1abc'", 0),
        ("True", "unrecognized named-value 'True'", 0),
        ("  ", "expected an expression", 0),
        ("fromJSON('[1]')[0", "unexpected end of expression", 17),
        ("'a'.length", "unexpected token '.'", 3),
    ] {
        let e = Expr::parse(src).expect_err(src);
        assert_eq!((e.message.as_str(), e.offset), (message, offset), "{src}");
        assert_eq!(e.source_text, src);
    }
    let e = Expr::parse("1 == )").expect_err("bad");
    assert_eq!(e.to_string(), "unexpected token ')' (at offset 5 in '1 == )')");
}

#[test]
fn contexts_and_functions_used() {
    let e = Expr::parse("success() && github.ref == 'x' || contains(needs.*.result, env.X) && GITHUB.sha")
        .expect("parses");
    assert_eq!(e.contexts_used(), ["github", "needs", "env"]);
    assert_eq!(e.functions_used(), ["success", "contains"]);
    assert!(e.uses_status_function());
    assert!(!Expr::parse("github.ref").expect("parses").uses_status_function());
    assert!(Expr::parse("ALWAYS()").expect("parses").uses_status_function());
}

#[test]
fn templates() {
    let c = event_ctx();
    let t = |s: &str| Template::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    // One expression, nothing around it: the raw value.
    assert_eq!(t("${{ matrix.node }}").eval(&c).expect("evals"), json!(18));
    assert_eq!(t("${{ matrix.flags }}").eval(&c).expect("evals"), json!(["a", "b"]));
    assert_eq!(t("${{ github.nothing }}").eval(&c).expect("evals"), json!(null));
    // Anything around it: a string.
    assert_eq!(t(" ${{ matrix.node }}").eval(&c).expect("evals"), json!(" 18"));
    assert_eq!(t("node-${{ matrix.node }}-${{ matrix.os }}").eval(&c).expect("evals"), json!("node-18-linux"));
    assert_eq!(t("${{ matrix.node }}${{ matrix.os }}").eval(&c).expect("evals"), json!("18linux"));
    assert_eq!(t("x ${{ github }} ${{ null }}.").eval_string(&c).expect("evals"), "x Object .");
    assert_eq!(t("${{ 1.50 }}").eval_string(&c).expect("evals"), "1.5");
    // `}}` inside a string literal does not close the expression.
    assert_eq!(t("${{ format('{{{0}}}', 'x') }}").eval(&c).expect("evals"), json!("{x}"));
    assert_eq!(t("a ${{ '}}' }} b").eval(&c).expect("evals"), json!("a }} b"));
    assert_eq!(t("${{ 'it''s }}' }}").eval(&c).expect("evals"), json!("it's }}"));
    // Literal templates.
    let lit = t("plain } text {{ }}");
    assert!(lit.is_literal());
    assert!(lit.exprs().is_empty());
    assert_eq!(lit.eval(&c).expect("evals"), json!("plain } text {{ }}"));
    assert!(Template::literal("${{ not parsed }}").is_literal());
    assert_eq!(Template::literal("${{ x }}").eval(&c).expect("evals"), json!("${{ x }}"));
    assert_eq!(t("").eval(&c).expect("evals"), json!(""));
    let two = t("${{ github.ref }}/${{ env.x }}");
    assert!(!two.is_literal());
    assert_eq!(two.exprs().iter().map(|e| e.source()).collect::<Vec<_>>(), ["github.ref", "env.x"]);
    // Errors carry offsets into the template.
    for (src, message, offset) in [
        ("abc ${{ github.sha ==  }}", "unexpected end of expression", 21),
        ("abc ${{ 1 == ) }}", "unexpected token ')'", 13),
        ("x ${{ github.sha", "unclosed expression: '${{' without a matching '}}'", 2),
        ("x ${{ 'a }}", "unclosed expression: '${{' without a matching '}}'", 2),
        ("x ${{ }}", "an expression was expected inside '${{ }}'", 2),
        ("ok ${{ 1 }} ${{ nope }}", "unrecognized named-value 'nope'", 16),
    ] {
        let e = Template::parse(src).expect_err(src);
        assert_eq!((e.message.as_str(), e.offset), (message, offset), "{src}");
        assert_eq!(e.source_text, src);
    }
}

#[test]
fn conditions() {
    let run = |src: &str, status: Status| -> bool {
        let mut c = event_ctx();
        c.status = status;
        Condition::parse(src).unwrap_or_else(|e| panic!("{src}: {e}")).eval(&c).unwrap_or_else(|e| panic!("{src}: {e}"))
    };
    for (src, on_success, on_failure) in [
        ("", true, false),
        ("github.ref == 'refs/heads/main'", true, false),
        ("${{ github.ref == 'refs/heads/main' }}", true, false),
        ("  ${{ github.ref == 'refs/heads/main' }}\n", true, false),
        ("github.ref == 'refs/heads/other'", false, false),
        ("${{ false }}", false, false),
        ("always()", true, true),
        ("${{ always() }}", true, true),
        ("failure()", false, true),
        ("success() || failure()", true, true),
        ("!cancelled()", true, true),
        ("cancelled()", false, false),
        ("github.ref == 'refs/heads/main' && always()", true, true),
        // GitHub: text around `${{ }}` makes the value a string: truthy unless empty.
        ("${{ false }} && true", true, false),
        ("${{ false }} || ${{ false }}", true, false),
        ("${{ always() }} extra", true, true),
        ("${{ github.nothing }}${{ '' }}", false, false),
    ] {
        assert_eq!(run(src, Status::Success), on_success, "{src:?} on success");
        assert_eq!(run(src, Status::Failure), on_failure, "{src:?} on failure");
    }
    let e = Condition::parse("github.ref == )").expect_err("bad");
    assert_eq!((e.message.as_str(), e.offset), ("unexpected token ')'", 14));
    let e = Condition::parse("  ${{ github.ref == ) }}").expect_err("bad");
    assert_eq!((e.message.as_str(), e.offset), ("unexpected token ')'", 20));
    let c = Condition::parse("${{ success() }}").expect("parses");
    assert!(c.uses_status_function());
    assert_eq!(c.exprs().len(), 1);
}

#[test]
fn serialize_as_source() {
    let t = Template::parse("a ${{ github.sha }}").expect("parses");
    let c = Condition::parse("always()").expect("parses");
    let e = Expr::parse("1 == 1").expect("parses");
    let v = serde_json::to_value((&t, &c, &e)).expect("serializes");
    assert_eq!(v, json!(["a ${{ github.sha }}", "always()", "1 == 1"]));
    let back: (Template, Condition, Expr) = serde_json::from_value(v).expect("deserializes");
    assert_eq!(back.0.source(), t.source());
    assert!(back.1.uses_status_function());
    assert!(serde_json::from_value::<Expr>(json!("1 ==")).is_err());
}

#[test]
fn public_coercions() {
    for (v, s, truthy) in [
        (json!(null), "", false),
        (json!(true), "true", true),
        (json!(false), "false", false),
        (json!(0), "0", false),
        (json!(-0.0), "0", false),
        (json!(2.5), "2.5", true),
        (json!(100), "100", true),
        (json!(""), "", false),
        (json!("0"), "0", true),
        (json!([]), "Array", true),
        (json!({}), "Object", true),
    ] {
        assert_eq!(expr::to_string(&v), s, "{v}");
        assert_eq!(expr::truthy(&v), truthy, "{v}");
    }
}
