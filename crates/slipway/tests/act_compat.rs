//! nektos/act compatibility: every case of `../shared/compat/act/cases.tsv`, run exactly as
//! that directory's README describes ("How to run a case") with the built `slipway` binary:
//! a fresh copy of `cases/` per case, made a git repository whose `origin` is nektos/act,
//! `slipway run <event> -W <case>/ --env ACT=true --actor nektos/act -P ubuntu-latest=host
//! -P self-hosted=host` plus the extras of `case-config.json`, scored on pass/fail like act.
//!
//! Each known case is its own test (so nextest shows each); `cases_not_listed_here` runs
//! whatever else `cases.tsv` holds and fails listing every failing case with its output.
//! The data is read from the shared directory, never copied into the project.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);

fn act_dir() -> PathBuf {
    test_support::shared_dir().join("compat/act")
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    event: String,
    expect_ok: bool,
    expected_error: String,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(act_dir().join("cases.tsv")).expect("reading cases.tsv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("cases.tsv has a header").split('\t').collect();
    assert_eq!(&header[..3], &["case", "event", "expect"], "unexpected cases.tsv columns");
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let expect = cols.get(2).copied().unwrap_or_default();
            assert!(expect == "ok" || expect == "error", "bad expect column in {l:?}");
            Case {
                name: cols[0].to_owned(),
                event: cols[1].to_owned(),
                expect_ok: expect == "ok",
                expected_error: cols.get(3).copied().unwrap_or_default().to_owned(),
            }
        })
        .collect()
}

fn case_config(case: &Case) -> Value {
    let text = std::fs::read_to_string(act_dir().join("case-config.json")).expect("reading case-config.json");
    let all: Value = serde_json::from_str(&text).expect("case-config.json is JSON");
    all["cases"].get(format!("{}@{}", case.name, case.event)).cloned().unwrap_or(Value::Null)
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=act", "-c", "user.email=act@example.invalid", "-c", "init.defaultBranch=master"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The command line for one case (relative to the workspace copy).
fn command_line(case: &Case, ws: &Path) -> Vec<String> {
    let mut args = vec![
        "run".to_owned(),
        case.event.clone(),
        "-W".to_owned(),
        format!("{}/", case.name),
        "--env".to_owned(),
        "ACT=true".to_owned(),
        "--actor".to_owned(),
        "nektos/act".to_owned(),
        "-P".to_owned(),
        "ubuntu-latest=host".to_owned(),
        "-P".to_owned(),
        "self-hosted=host".to_owned(),
    ];
    let config = case_config(case);
    let event_path = config["event_path"].as_str().map(str::to_owned).or_else(|| {
        let default = format!("{}/event.json", case.name);
        ws.join(&default).is_file().then_some(default)
    });
    if let Some(p) = event_path {
        args.extend(["-e".to_owned(), p]);
    }
    if let Some(secrets) = config["secrets"].as_object() {
        for (k, v) in secrets {
            args.extend(["--secret".to_owned(), format!("{k}={}", v.as_str().unwrap_or_default())]);
        }
    }
    if let Some(f) = config["secret_file"].as_str() {
        args.extend(["--secret-file".to_owned(), f.to_owned()]);
    }
    if let Some(f) = config["env_file"].as_str() {
        args.extend(["--env-file".to_owned(), f.to_owned()]);
    }
    if let Some(inputs) = config["inputs"].as_object() {
        for (k, v) in inputs {
            args.extend(["--input".to_owned(), format!("{k}={}", v.as_str().unwrap_or_default())]);
        }
    }
    if let Some(matrix) = config["matrix"].as_object() {
        for (k, values) in matrix {
            for v in values.as_array().into_iter().flatten() {
                let v = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
                args.extend(["--matrix".to_owned(), format!("{k}:{v}")]);
            }
        }
    }
    args
}

struct Outcome {
    code: Option<i32>,
    output: String,
    timed_out: bool,
}

/// Runs the binary with a timeout; on timeout SIGTERM (slipway cancels its steps), then
/// SIGKILL if it still hasn't exited.
fn run_with_timeout(mut cmd: Command) -> Outcome {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting slipway");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        let status = child.wait();
        let _ = tx.send((s, status));
    });
    let mut timed_out = false;
    let (out, status) = match rx.recv_timeout(TIMEOUT) {
        Ok(r) => r,
        Err(_) => {
            timed_out = true;
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            match rx.recv_timeout(Duration::from_secs(15)) {
                Ok(r) => r,
                Err(_) => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    rx.recv().expect("the waiter thread reports")
                }
            }
        }
    };
    let err = err_reader.join().unwrap_or_default();
    let mut output = String::from_utf8_lossy(&out).into_owned();
    output.push_str(&String::from_utf8_lossy(&err));
    Outcome { code: status.ok().and_then(|s| s.code()), output, timed_out }
}

/// Runs one case; `Err` describes the failure with the tail of the output.
fn run_case(case: &Case) -> Result<(), String> {
    let tmp = tempfile::Builder::new().prefix("slipway-act-").tempdir().expect("tempdir");
    let ws = tmp.path().join("ws");
    let status = Command::new("cp")
        .arg("-a")
        .arg(act_dir().join("cases"))
        .arg(&ws)
        .status()
        .expect("running cp");
    assert!(status.success(), "copying cases/");
    git(&ws, &["init", "-q"]);
    git(&ws, &["remote", "add", "origin", "https://github.com/nektos/act"]);
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-q", "-m", "act testdata"]);

    let args = command_line(case, &ws);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.args(&args).current_dir(&ws).env("XDG_CACHE_HOME", tmp.path().join("cache")).env_remove("SLIPWAY_LOG");
    let outcome = run_with_timeout(cmd);

    let verdict = match (outcome.timed_out, outcome.code, case.expect_ok) {
        (true, _, _) => Err(format!("timed out after {}s", TIMEOUT.as_secs())),
        (false, Some(0), true) => Ok(()),
        (false, Some(1 | 2), false) => Ok(()),
        (false, Some(0), false) => Err(format!("expected an error ({:?}), the run succeeded", case.expected_error)),
        (false, code, _) => Err(format!("expected {}, exit code {code:?}", if case.expect_ok { "ok" } else { "an error" })),
    };
    verdict.map_err(|why| {
        let tail: Vec<&str> = outcome.output.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{}@{}: {why}\n  command: slipway {}\n  --- last lines of output ---\n{}\n",
            case.name,
            case.event,
            args.join(" "),
            tail.join("\n")
        )
    })
}

fn check(name: &str, event: &str) {
    let case = cases()
        .into_iter()
        .find(|c| c.name == name && c.event == event)
        .unwrap_or_else(|| panic!("{name}@{event} is not in cases.tsv any more: update the list in act_compat.rs"));
    if let Err(report) = run_case(&case) {
        panic!("{report}");
    }
}

macro_rules! act_cases {
    ($($test:ident: $case:literal @ $event:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check($case, $event);
            }
        )*
        const LISTED: &[(&str, &str)] = &[$(($case, $event)),*];
    };
}

act_cases! {
    act_composite_env_test: "act-composite-env-test" @ "push",
    composite_fail_with_output: "composite-fail-with-output" @ "push",
    do_not_leak_step_env_in_composite: "do-not-leak-step-env-in-composite" @ "push",
    environment_files: "environment-files" @ "push",
    environment_files_parser_bug: "environment-files-parser-bug" @ "push",
    evalmatrix: "evalmatrix" @ "push",
    evalmatrix_merge_array: "evalmatrix-merge-array" @ "push",
    evalmatrix_merge_map: "evalmatrix-merge-map" @ "push",
    input_from_cli: "input-from-cli" @ "workflow_dispatch",
    inputs_via_env_context: "inputs-via-env-context" @ "push",
    issue_1195: "issue-1195" @ "push",
    job_needs_context_contains_result: "job-needs-context-contains-result" @ "push",
    job_nil_step: "job-nil-step" @ "push",
    job_status_check: "job-status-check" @ "push",
    mask_values: "mask-values" @ "push",
    matrix_with_user_inclusions: "matrix-with-user-inclusions" @ "push",
    nix_prepend_path: "nix-prepend-path" @ "push",
    non_existent_action: "non-existent-action" @ "push",
    pull_request: "pull-request" @ "pull_request",
    set_env_new_env_file_per_step: "set-env-new-env-file-per-step" @ "push",
    set_env_step_env_override: "set-env-step-env-override" @ "push",
    steps_context_conclusion: "steps-context/conclusion" @ "push",
    uses_and_run_in_one_step: "uses-and-run-in-one-step" @ "push",
    uses_composite_with_error: "uses-composite-with-error" @ "push",
    uses_github_empty: "uses-github-empty" @ "push",
    uses_github_noref: "uses-github-noref" @ "push",
    uses_github_root: "uses-github-root" @ "push",
    uses_workflow: "uses-workflow" @ "pull_request",
    workdir: "workdir" @ "push",
    workflow_dispatch_scalar_composite_action: "workflow_dispatch-scalar-composite-action" @ "workflow_dispatch",
    workflow_dispatch_no_inputs_mapping: "workflow_dispatch_no_inputs_mapping" @ "workflow_dispatch",
}

/// Every case of cases.tsv that has no test of its own above (the corpus may grow): one
/// failure message listing every failing case with the tail of its output.
#[test]
fn cases_not_listed_here() {
    let all = cases();
    let others: Vec<&Case> =
        all.iter().filter(|c| !LISTED.contains(&(c.name.as_str(), c.event.as_str()))).collect();
    let failures: Vec<String> = others.iter().filter_map(|c| run_case(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} further act cases failed:\n\n{}",
        failures.len(),
        others.len(),
        failures.join("\n")
    );
}

#[test]
fn command_lines_follow_the_readme() {
    let case = Case {
        name: "matrix-with-user-inclusions".into(),
        event: "push".into(),
        expect_ok: true,
        expected_error: String::new(),
    };
    let args = command_line(&case, &act_dir().join("cases"));
    let line = args.join(" ");
    assert!(line.starts_with("run push -W matrix-with-user-inclusions/ --env ACT=true --actor nektos/act -P ubuntu-latest=host -P self-hosted=host"), "{line}");
    assert!(line.contains("--matrix node:8 --matrix node:8.x --matrix os:ubuntu-18.04"), "{line}");
    let pr = Case { name: "pull-request".into(), event: "pull_request".into(), expect_ok: true, expected_error: String::new() };
    assert!(command_line(&pr, &act_dir().join("cases")).join(" ").contains("-e pull-request/event.json"));
}
