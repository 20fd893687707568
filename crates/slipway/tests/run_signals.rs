//! Ctrl-C during `slipway run`: the first SIGINT cancels the run (running steps are
//! terminated, `always()` steps still run, nothing is left running, exit 1); a second one
//! exits at once (130).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn start(dir: &Path, marks: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["run", "--json", "--env"])
        .arg(format!("MARKS={}", marks.display()))
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join(".cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting slipway")
}

/// Reads JSON event lines until a log line equal to `wanted`; returns the lines read. The
/// reader keeps going in a thread afterwards (collecting the rest) and reports the lines
/// through the returned channel at EOF.
fn wait_for_log(child: &mut Child, wanted: &'static str) -> mpsc::Receiver<Vec<String>> {
    let stdout = child.stdout.take().expect("piped");
    let (seen_tx, seen_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut seen = Some(seen_tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["type"] == "log" && v["lines"].as_array().is_some_and(|l| l.iter().any(|l| l == wanted)) {
                    if let Some(tx) = seen.take() {
                        let _ = tx.send(());
                    }
                }
            }
            lines.push(line);
        }
        let _ = done_tx.send(lines);
    });
    seen_rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("the step never printed {wanted:?}")
    });
    done_rx
}

fn wait_exit(mut child: Child) -> (Option<i32>, String) {
    let mut stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        let _ = tx.send((child.wait().ok().and_then(|s| s.code()), s));
    });
    rx.recv_timeout(Duration::from_secs(90)).unwrap_or_else(|_| {
        let _ = kill(pid, Signal::SIGKILL);
        panic!("slipway did not exit after SIGINT")
    })
}

/// Alive = /proc/PID exists and the process is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .expect("a pid")
}

fn repo(workflow: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = test_support::tempdir();
    let wf = dir.path().join(".github/workflows");
    std::fs::create_dir_all(&wf).expect("mkdir");
    std::fs::write(wf.join("ci.yml"), workflow).expect("write");
    let marks = dir.path().join("marks");
    std::fs::create_dir_all(&marks).expect("mkdir");
    (dir, marks)
}

const LONG: &str = r#"on: push
jobs:
  long:
    runs-on: ubuntu-latest
    steps:
      - run: |
          sleep 600 &
          echo "$!" > "$MARKS/sleep.pid"
          echo "$$" > "$MARKS/shell.pid"
          echo started
          wait
      - run: echo not-reached > "$MARKS/next"
      - if: always()
        run: echo cleaned > "$MARKS/always"
"#;

#[test]
fn ctrl_c_cancels_runs_always_steps_and_leaves_nothing_running() {
    let (dir, marks) = repo(LONG);
    let mut child = start(dir.path(), &marks);
    let events = wait_for_log(&mut child, "started");
    kill(Pid::from_raw(i32::try_from(child.id()).expect("pid")), Signal::SIGINT).expect("SIGINT");
    let (code, stderr) = wait_exit(child);
    let lines = events.recv_timeout(Duration::from_secs(30)).expect("stdout closed");
    assert_eq!(code, Some(1), "stderr: {stderr}\nevents: {lines:#?}");
    assert_eq!(std::fs::read_to_string(marks.join("always")).ok().as_deref(), Some("cleaned\n"), "the always() step ran: {lines:#?}");
    assert!(!marks.join("next").exists(), "a step after the cancelled one ran");
    for f in ["sleep.pid", "shell.pid"] {
        let pid = read_pid(&marks.join(f));
        assert!(!alive(pid), "{f}: process {pid} is still running after the run ended");
    }
    for l in &lines {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
    }
}

const SLOW_CLEANUP: &str = r#"on: push
jobs:
  long:
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo started
          sleep 600
      - if: always()
        run: |
          echo "$$" > "$MARKS/cleanup.pid"
          echo cleaning
          sleep 600
"#;

#[test]
fn second_ctrl_c_exits_at_once() {
    let (dir, marks) = repo(SLOW_CLEANUP);
    let mut child = start(dir.path(), &marks);
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["type"] == "log" {
                    for l in v["lines"].as_array().into_iter().flatten() {
                        let _ = tx.send(l.as_str().unwrap_or_default().to_owned());
                    }
                }
            }
        }
    });
    let wait_line = |wanted: &str| loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if l == wanted => break,
            Ok(_) => {}
            Err(_) => {
                let _ = kill(pid, Signal::SIGKILL);
                panic!("never saw {wanted:?}");
            }
        }
    };
    wait_line("started");
    kill(pid, Signal::SIGINT).expect("first SIGINT");
    wait_line("cleaning");
    kill(pid, Signal::SIGINT).expect("second SIGINT");
    let (code, stderr) = wait_exit(child);
    // The always() step was abandoned on purpose: stop it ourselves.
    if let Ok(text) = std::fs::read_to_string(marks.join("cleanup.pid")) {
        if let Ok(p) = text.trim().parse::<i32>() {
            let _ = kill(Pid::from_raw(-p), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
    assert_eq!(code, Some(130), "stderr: {stderr}");
}
