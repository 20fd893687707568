//! The act compatibility corpus (`shared/compat/act/cases`): every workflow act expects to be
//! valid parses and compiles; the invalid ones produce the right diagnostic; random
//! truncations and mutations of all of them never panic.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use workflow::{CompileOptions, Diagnostics, compile, listens_to, parse};

fn cases_dir() -> PathBuf {
    test_support::shared_dir().join("compat/act/cases")
}

/// Every workflow file in the corpus (composite `action.yml` files excluded), relative to
/// `cases/`, sorted.
fn workflow_files() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("reading the cases dir")
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let path = e.path();
            if path.is_dir() {
                walk(&path, root, out);
                continue;
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let is_yaml = name.ends_with(".yml") || name.ends_with(".yaml");
            if is_yaml && name != "action.yml" && name != "action.yaml" {
                out.push(
                    path.strip_prefix(root)
                        .expect("under root")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let root = cases_dir();
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    assert!(
        out.len() > 30,
        "expected the act corpus, found {} workflow files",
        out.len()
    );
    out
}

/// The case directory a file belongs to (`steps-context/conclusion/push.yml` ->
/// `steps-context/conclusion`).
fn case_of(file: &str) -> String {
    Path::new(file)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The cases act expects to fail validation (see the corpus README).
const INVALID: &[&str] = &[
    "job-nil-step",
    "uses-and-run-in-one-step",
    "uses-github-empty",
    "uses-github-noref",
];

fn load_case_file(path: &str) -> Option<String> {
    std::fs::read_to_string(cases_dir().join(path)).ok()
}

/// The event each case runs with (cases.tsv), by case directory.
fn case_events() -> Vec<(String, String)> {
    let tsv = std::fs::read_to_string(test_support::shared_dir().join("compat/act/cases.tsv"))
        .expect("cases.tsv");
    tsv.lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split('\t');
            Some((cols.next()?.to_owned(), cols.next()?.to_owned()))
        })
        .collect()
}

fn compile_for(source: &str, file: &str, event: &str) -> Result<workflow::Plan, Diagnostics> {
    let wf = parse(source, file)?;
    let loader = |p: &str| load_case_file(p);
    compile(
        &wf,
        &CompileOptions {
            event,
            loader: &loader,
        },
    )
}

#[test]
fn valid_act_workflows_parse_and_compile() {
    let events = case_events();
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in workflow_files() {
        let case = case_of(&file);
        if INVALID.contains(&case.as_str()) {
            continue;
        }
        let source = load_case_file(&file).expect("readable");
        let wf = match parse(&source, &file) {
            Ok(wf) => wf,
            Err(d) => {
                failures.push(d.to_string());
                continue;
            }
        };
        checked += 1;
        for w in &wf.warnings {
            failures.push(format!("unexpected warning: {w}"));
        }
        // Compile for the case's event (and for workflow_call when it is a callee).
        let mut compile_events: Vec<&str> = events
            .iter()
            .filter(|(c, _)| *c == case)
            .map(|(_, e)| e.as_str())
            .collect();
        if listens_to(&wf, "workflow_call") {
            compile_events.push("workflow_call");
        }
        for event in compile_events {
            if !listens_to(&wf, event) {
                continue;
            }
            if let Err(d) = compile_for(&source, &file, event) {
                failures.push(format!("{file} for {event}:\n{d}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 30, "only {checked} valid workflows checked");
}

#[test]
fn invalid_act_workflows_report_where_and_why() {
    let mut out = String::new();
    for case in INVALID {
        let file = format!("{case}/push.yml");
        let source = load_case_file(&file).expect("readable");
        match compile_for(&source, &file, "push") {
            Ok(_) => out.push_str(&format!("{file}: accepted!\n")),
            Err(d) => out.push_str(&format!("{d}\n")),
        }
    }
    insta::assert_snapshot!(out);
}

#[test]
fn uses_workflow_case_resolves_its_local_reusable_workflows() {
    let file = "uses-workflow/local-workflow.yml";
    let source = load_case_file(file).expect("readable");
    let plan = compile_for(&source, file, "pull_request").expect("compiles");
    let json = serde_json::to_value(&plan).expect("a plan serializes");
    assert_eq!(
        json["jobs"][0]["kind"]["Call"]["plan"]["jobs"][0]["id"],
        "reusable_workflow_job"
    );
    let mut out = String::new();
    common::render_plan(&mut out, &plan, "");
    insta::assert_snapshot!(out);
}

/// A tiny deterministic generator (no dependency, reproducible failures).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const NOISE: &[&str] = &[
    ":",
    "-",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    "|",
    ">",
    "&a",
    "*a",
    "!!str ",
    "!",
    "%",
    "@",
    "`",
    "\t",
    "\n",
    "#",
    "${{",
    "}}",
    "${{ insert }}",
    "?",
    ",",
    " ",
    "\u{feff}",
    "é",
    "---\n",
    "...\n",
    "\r",
    "\\",
    "0x",
    "~",
    "needs: x",
];

fn mutate(src: &str, rng: &mut Lcg) -> String {
    let mut chars: Vec<char> = src.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(5) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 => {
                let noise = NOISE[rng.below(NOISE.len())];
                for (i, c) in noise.chars().enumerate() {
                    chars.insert((at + i).min(chars.len()), c);
                }
            }
            2 => {
                // Duplicate or drop a line.
                let text: String = chars.iter().collect();
                let mut lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let i = rng.below(lines.len());
                    if rng.below(2) == 0 {
                        lines.insert(i, lines[i]);
                    } else {
                        lines.remove(i);
                    }
                }
                chars = lines.join("\n").chars().collect();
            }
            3 => {
                // Re-indent a line.
                let text: String = chars.iter().collect();
                let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
                if !lines.is_empty() {
                    let i = rng.below(lines.len());
                    let n = rng.below(5);
                    lines[i] = format!("{}{}", " ".repeat(n), lines[i].trim_start());
                }
                chars = lines.join("\n").chars().collect();
            }
            _ if at < chars.len() => {
                chars[at] = NOISE[rng.below(NOISE.len())].chars().next().unwrap_or(' ');
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn must_not_panic(source: &str, file: &str) {
    let loader = |p: &str| load_case_file(p);
    let result = std::panic::catch_unwind(|| {
        let diags = match parse(source, file) {
            Ok(wf) => {
                for event in ["push", "pull_request", "workflow_call", "workflow_dispatch"] {
                    let _ = compile(
                        &wf,
                        &CompileOptions {
                            event,
                            loader: &loader,
                        },
                    );
                }
                return;
            }
            Err(d) => d,
        };
        assert!(!diags.0.is_empty(), "an error without diagnostics");
        for d in &diags.0 {
            assert!(
                d.line >= 1 && d.col >= 1,
                "diagnostic without a position: {d}"
            );
            let _ = d.to_string();
        }
    });
    if let Err(e) = result {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        panic!("parse/compile panicked ({msg}) on this input:\n-----\n{source}\n-----");
    }
}

#[test]
fn truncated_act_workflows_never_panic() {
    for file in workflow_files() {
        let source = load_case_file(&file).expect("readable");
        let chars: Vec<char> = source.chars().collect();
        let step = (chars.len() / 60).max(1);
        for cut in (0..chars.len()).step_by(step) {
            let truncated: String = chars[..cut].iter().collect();
            must_not_panic(&truncated, &file);
        }
    }
}

#[test]
fn mutated_act_workflows_never_panic() {
    let mut rng = Lcg(0x5eed_2026);
    for file in workflow_files() {
        let source = load_case_file(&file).expect("readable");
        for _ in 0..150 {
            let mutated = mutate(&source, &mut rng);
            must_not_panic(&mutated, &file);
        }
    }
}
