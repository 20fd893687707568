//! `slipway lint`: every problem as `file:line:col: error: ...`, exit 2 on any error, else
//! exit 0 and "N workflows ok".

use std::path::Path;
use std::process::{Command, Output};

fn lint(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slipway")).arg("lint").args(args).current_dir(dir).output().expect("running slipway")
}

fn text(o: &Output) -> String {
    format!("--- stdout\n{}--- stderr\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = test_support::tempdir();
    for (name, body) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
    }
    dir
}

const GOOD: &str = "on: [push, pull_request]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n";

#[test]
fn clean_workflows_report_ok() {
    let dir = repo(&[(".gitea/workflows/a.yml", GOOD), (".gitea/workflows/b.yaml", GOOD)]);
    let o = lint(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 workflows ok"), "{}", text(&o));
}

#[test]
fn every_error_is_reported_with_file_line_col() {
    let dir = repo(&[
        (".github/workflows/a.yml", GOOD),
        (".github/workflows/b.yml", "on: push\njobs:\n  a:\n    runs-onn: ubuntu-latest\n    steps:\n      - run: echo\n"),
        (".github/workflows/c.yml", "on: push\njobs:\n  x:\n    needs: nope\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo\n"),
    ]);
    let o = lint(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(".github/workflows/b.yml:4:5: error:"), "{}", text(&o));
    assert!(out.lines().any(|l| l.starts_with(".github/workflows/c.yml:4:") && l.contains("error:")), "{}", text(&o));
    assert!(!out.contains("a.yml"), "{}", text(&o));
}

#[test]
fn needs_cycle_is_an_error() {
    let wf = "on: push\njobs:\n  a:\n    needs: b\n    runs-on: x\n    steps:\n      - run: echo\n  b:\n    needs: a\n    runs-on: x\n    steps:\n      - run: echo\n";
    let dir = repo(&[("wf/cycle.yml", wf)]);
    let o = lint(dir.path(), &["-W", "wf"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("wf/cycle.yml:"), "{}", text(&o));
}

#[test]
fn json_diagnostics() {
    let dir = repo(&[("w.yml", "on: push\njobs:\n  a:\n    runs-onn: x\n    steps:\n      - run: echo\n")]);
    let o = lint(dir.path(), &["-W", "w.yml", "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let first = String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_owned).expect("a diagnostic");
    let d: serde_json::Value = serde_json::from_str(&first).expect("JSON");
    assert_eq!((d["file"].as_str(), d["line"].as_u64(), d["col"].as_u64()), (Some("w.yml"), Some(4), Some(5)), "{d}");
}

#[test]
fn missing_path_exits_2() {
    let dir = repo(&[]);
    let o = lint(dir.path(), &["-W", "missing"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn the_examples_lint_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let o = lint(&root, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 workflow ok"), "{}", text(&o));
}
