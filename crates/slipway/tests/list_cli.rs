//! `slipway list`: the plan without running it — jobs in order, needs, matrix legs
//! (expanded when static, "computed at run time" when they depend on `needs`).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn list(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slipway")).arg("list").args(args).current_dir(dir).output().expect("running slipway")
}

fn text(o: &Output) -> String {
    format!("--- stdout\n{}--- stderr\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn examples_plan() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let o = list(&examples, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let build = out.find("  build").expect("build listed");
    let test = out.find("  test  needs: build").expect("test listed with its needs");
    let package = out.find("  package  needs: build, test").expect("package listed with its needs");
    let image = out.find("  image  needs: build, test").expect("image listed with its needs");
    assert!(build < test && test < package && package < image, "{out}");
    for leg in ["- suite=unit", "- suite=cli", "- suite=doc"] {
        assert!(out.contains(leg), "{leg}: {out}");
    }

    let o = list(&examples, &["push", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let plans: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let jobs = plans[0]["jobs"].as_array().expect("jobs");
    let ids: Vec<&str> = jobs.iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(ids, ["build", "test", "package", "image", "staging", "production"]);
    assert_eq!(jobs[1]["matrix"].as_array().map(Vec::len), Some(3), "{}", jobs[1]);
}

#[test]
fn matrix_from_needs_is_computed_at_run_time() {
    let dir = test_support::tempdir();
    let wf = r#"on: push
jobs:
  plan:
    runs-on: x
    outputs:
      m: ${{ steps.s.outputs.m }}
    steps:
      - id: s
        run: echo 'm=["a","b"]' >> "$GITHUB_OUTPUT"
  fan:
    needs: plan
    runs-on: x
    strategy:
      matrix:
        v: ${{ fromJSON(needs.plan.outputs.m) }}
    steps:
      - run: echo ${{ matrix.v }}
"#;
    std::fs::write(dir.path().join("w.yml"), wf).expect("write");
    let o = list(dir.path(), &["-W", "w.yml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("matrix: (computed at run time)"), "{}", text(&o));
}

#[test]
fn event_filter_and_errors() {
    let dir = test_support::tempdir();
    std::fs::write(dir.path().join("w.yml"), "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo\n").expect("write");
    let o = list(dir.path(), &["-W", "w.yml", "pull_request"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no workflow listens"), "{}", text(&o));
    std::fs::write(dir.path().join("bad.yml"), "on: push\njobs: [\n").expect("write");
    let o = list(dir.path(), &["-W", "bad.yml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.yml:"), "{}", text(&o));
}
