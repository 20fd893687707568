//! `slipway run` end to end with the built binary and the host executor: exit codes 0/1/2,
//! `--json`, bad command lines, the github context, `-j`, dotenv files, secrets masking.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    /// A directory with `.github/workflows/<name>` files.
    fn new(workflows: &[(&str, &str)]) -> Repo {
        let dir = test_support::tempdir();
        let wf = dir.path().join(".github/workflows");
        std::fs::create_dir_all(&wf).expect("mkdir");
        for (name, text) in workflows {
            std::fs::write(wf.join(name), text).expect("write workflow");
        }
        Repo { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path().join(rel), text).expect("write");
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .current_dir(self.path())
            .env("XDG_CACHE_HOME", self.path().join(".cache"))
            .env_remove("SLIPWAY_LOG")
            .output()
            .expect("running slipway")
    }
}

fn text(o: &Output) -> String {
    format!("--- stdout\n{}--- stderr\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn events(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{}", text(o))))
        .collect()
}

fn log_lines(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "log")
        .flat_map(|e| e["lines"].as_array().cloned().unwrap_or_default())
        .filter_map(|l| l.as_str().map(str::to_owned))
        .collect()
}

const OK: &str = "on: push\njobs:\n  hello:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hello-from-step\n";
const FAILING: &str = "on: push\njobs:\n  boom:\n    runs-on: ubuntu-latest\n    steps:\n      - run: exit 3\n  after:\n    needs: boom\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo never\n";

#[test]
fn passing_run_exits_0_with_prefixed_output_and_summary() {
    let repo = Repo::new(&[("ci.yml", OK)]);
    let o = repo.run(&["run"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().any(|l| l == "[hello] hello-from-step"), "{}", text(&o));
    assert!(out.lines().any(|l| l.starts_with("hello") && l.contains("success")), "summary table: {}", text(&o));
    assert!(!out.contains("\x1b["), "no colour off a TTY: {}", text(&o));
}

#[test]
fn failing_job_exits_1_and_skips_dependents() {
    let repo = Repo::new(&[("ci.yml", FAILING)]);
    let o = repo.run(&["run", "--json"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let ev = events(&o);
    let result = |job: &str| {
        ev.iter()
            .find(|e| e["type"] == "job_finished" && e["job"] == job)
            .map(|e| e["result"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(result("boom").as_deref(), Some("failure"), "{}", text(&o));
    assert_eq!(result("after").as_deref(), Some("skipped"), "{}", text(&o));
    assert!(!log_lines(&ev).iter().any(|l| l == "never"));
}

#[test]
fn invalid_workflow_exits_2_naming_file_line_col() {
    let repo = Repo::new(&[("bad.yml", "on: push\njobs:\n  a:\n    runs-onn: ubuntu-latest\n    steps:\n      - run: echo\n")]);
    let o = repo.run(&["run"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(".github/workflows/bad.yml:4:5: error:"), "{}", text(&o));
}

#[test]
fn malformed_yaml_exits_2() {
    let repo = Repo::new(&[("bad.yml", "on: push\njobs: [\n")]);
    let o = repo.run(&["run"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains(".github/workflows/bad.yml:"), "{}", text(&o));
}

#[test]
fn json_mode_prints_only_events() {
    let repo = Repo::new(&[("ci.yml", OK)]);
    let o = repo.run(&["run", "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let ev = events(&o);
    assert!(ev.iter().all(|e| e["type"].is_string()), "{}", text(&o));
    assert_eq!(ev.first().map(|e| e["type"].clone()), Some("run_started".into()), "{}", text(&o));
    assert_eq!(ev.last().map(|e| e["type"].clone()), Some("run_finished".into()), "{}", text(&o));
    assert!(log_lines(&ev).iter().any(|l| l == "hello-from-step"), "{}", text(&o));
}

#[test]
fn bad_command_lines_exit_2() {
    let repo = Repo::new(&[("ci.yml", OK)]);
    for (args, needle) in [
        (vec!["run", "--secret", "NOEQUALS"], "--secret"),
        (vec!["run", "--env", "=x"], "--env"),
        (vec!["run", "--matrix", "novalue"], "--matrix"),
        (vec!["run", "-P", "ubuntu-latest"], "-P"),
        (vec!["run", "-e", "missing.json"], "missing.json"),
        (vec!["run", "--secret-file", "missing.env"], "missing.env"),
        (vec!["run", "-W", "nowhere"], "nowhere"),
        (vec!["run", "-j", "nosuchjob"], "nosuchjob"),
    ] {
        let o = repo.run(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(needle), "{args:?}: {}", text(&o));
    }
    repo.write("event.json", "{\n  \"a\": oops\n}\n");
    let o = repo.run(&["run", "-e", "event.json"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("event.json:2:"), "{}", text(&o));
}

#[test]
fn no_workflow_for_the_event_exits_0() {
    let repo = Repo::new(&[("ci.yml", OK)]);
    let o = repo.run(&["run", "pull_request"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no workflow listens to the `pull_request` event"), "{}", text(&o));
}

#[test]
fn no_workflow_directory_exits_2() {
    let dir = test_support::tempdir();
    let o = Command::new(env!("CARGO_BIN_EXE_slipway")).arg("run").current_dir(dir.path()).output().expect("run");
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains(".github/workflows"), "{}", text(&o));
}

#[test]
fn job_filter_runs_the_job_and_its_needs() {
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ran-a\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ran-b\n  c:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ran-c\n";
    let repo = Repo::new(&[("ci.yml", wf)]);
    let o = repo.run(&["run", "-j", "b", "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let lines = log_lines(&events(&o));
    assert!(lines.iter().any(|l| l == "ran-a"), "{}", text(&o));
    assert!(lines.iter().any(|l| l == "ran-b"), "{}", text(&o));
    assert!(!lines.iter().any(|l| l == "ran-c"), "{}", text(&o));
}

#[test]
fn github_context_comes_from_git_and_flags() {
    let wf = r#"on: push
jobs:
  ctx:
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo "repo=${{ github.repository }} owner=${{ github.repository_owner }}"
          echo "actor=${{ github.actor }} ref=${{ github.ref }} run=${{ github.run_number }}"
          echo "sha=${{ github.sha }}"
"#;
    let repo = Repo::new(&[("ci.yml", wf)]);
    let git = |args: &[&str]| {
        let s = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(repo.path())
            .output()
            .expect("git");
        assert!(s.status.success(), "git {args:?}");
        String::from_utf8_lossy(&s.stdout).trim().to_owned()
    };
    git(&["init", "-q", "-b", "trunk"]);
    git(&["remote", "add", "origin", "git@gitea.example:team/app.git"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "init"]);
    let sha = git(&["rev-parse", "HEAD"]);
    let o = repo.run(&["run", "--actor", "alice", "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let lines = log_lines(&events(&o));
    assert!(lines.iter().any(|l| l == "repo=team/app owner=team"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "actor=alice ref=refs/heads/trunk run=1"), "{lines:?}");
    assert!(lines.iter().any(|l| *l == format!("sha={sha}")), "{lines:?}");

    // The event payload wins over the remote.
    repo.write("event.json", r#"{"repository": {"full_name": "octo/cat"}}"#);
    let o = repo.run(&["run", "-e", "event.json", "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(log_lines(&events(&o)).iter().any(|l| l == "repo=octo/cat owner=octo"), "{}", text(&o));
}

#[test]
fn inputs_env_files_vars_and_masked_secrets() {
    let wf = r#"on: workflow_dispatch
jobs:
  show:
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo "input=${{ github.event.inputs.who }}"
          echo "env=$FROM_FILE/$FROM_FLAG"
          echo "var=${{ vars.COLOR }}"
          echo "multi=$(printf '%s\n' "$MULTI" | wc -l)"
          echo "secret=${{ secrets.TOKEN }} other=${{ secrets.FILE_SECRET }}"
"#;
    let repo = Repo::new(&[("ci.yml", wf)]);
    repo.write("vars.env", "# env file\nexport FROM_FILE=\"from file\"\nMULTI=\"a\\nb\"\n");
    repo.write("secrets.env", "FILE_SECRET='s3cr3t-file'\n");
    let o = repo.run(&[
        "run",
        "workflow_dispatch",
        "--input",
        "who=world",
        "--env-file",
        "vars.env",
        "--env",
        "FROM_FLAG=flag",
        "--var",
        "COLOR=blue",
        "--secret",
        "TOKEN=hunter2-token",
        "--secret-file",
        "secrets.env",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let lines = log_lines(&events(&o));
    assert!(lines.iter().any(|l| l == "input=world"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "env=from file/flag"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "var=blue"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "multi=2"), "{lines:?}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(!stdout.contains("hunter2-token") && !stdout.contains("s3cr3t-file"), "secrets leaked: {lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("secret=") && l.contains("other=")), "{lines:?}");
}

#[test]
fn unmapped_runs_on_is_skipped_with_a_warning() {
    let wf = "on: push\njobs:\n  mac:\n    runs-on: macos-latest\n    steps:\n      - run: echo on-mac\n  linux:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo on-linux\n";
    let repo = Repo::new(&[("ci.yml", wf)]);
    let o = repo.run(&["run", "-P", "ubuntu-latest=host", "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let ev = events(&o);
    let lines = log_lines(&ev);
    assert!(lines.iter().any(|l| l == "on-linux"), "{}", text(&o));
    assert!(!lines.iter().any(|l| l == "on-mac"), "{}", text(&o));
    assert!(
        ev.iter().any(|e| e["type"] == "job_finished" && e["job"] == "mac" && e["result"] == "skipped"),
        "{}",
        text(&o)
    );
}
