//! `slipway gitops` end to end on the local target: a real `git daemon` serves the deployment
//! repository, the agent runs as its own process, services are real processes (busybox
//! httpd) checked over HTTP. Covers `run --once`, the webhook, self-heal of a killed
//! service, `rollback` (pauses auto-sync), `status`, `resume`, and a bad config file.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use test_support::git::GitDaemon;

fn slipway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .output()
        .expect("running slipway")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.split("\r\n\r\n").nth(1).map(|b| b.trim().to_owned())
}

fn wait_for(port: u16, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = get(port);
    while got.as_deref() != Some(want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        got = get(port);
    }
    assert_eq!(got.as_deref(), Some(want));
}

fn app_file(port: u16) -> String {
    let busybox = test_support::require_command("busybox", "busybox-static");
    format!(
        "services:\n  web:\n    files: site\n    command: exec timeout 300 {} httpd -f -p 127.0.0.1:{port} -h .\n    health: {{url: \"http://127.0.0.1:{port}/index.html\", timeout: 10s}}\n",
        busybox.display()
    )
}

/// Kills the agent (by pid) and the service's process group at the end.
struct Cleanup {
    agent: Option<Child>,
    service_root: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = &mut self.agent {
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_service(&self.service_root);
    }
}

fn kill_service(root: &Path) {
    if let Ok(t) = std::fs::read_to_string(root.join("service.pid"))
        && let Some(pid) = t
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<i32>().ok())
    {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn gitops_run_once_webhook_heal_rollback_resume_on_the_local_target() {
    let port = free_port();
    let git = GitDaemon::start();
    let url = git.create_repo("deploy");
    let wt = git.work_tree("deploy");
    wt.write("apps/web/app.yaml", &app_file(port))
        .write("apps/web/site/index.html", "v1");
    let first = wt.commit("v1");
    wt.push("main");
    let data = test_support::tempdir();
    let d = data.path().to_str().expect("utf8").to_owned();
    let mut cleanup = Cleanup {
        agent: None,
        service_root: data.path().join("local/web/web"),
    };

    let out = slipway(&[
        "gitops", "run", "--once", "--json", "--repo", &url, "--path", "apps/web", "--target",
        "local", "--data", &d,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = &json(&out)[0];
    assert_eq!(
        (s["app"].as_str(), s["sync"].as_str(), s["health"].as_str()),
        (Some("web"), Some("Synced"), Some("Healthy")),
        "{s}"
    );
    assert_eq!(s["revision"], first.as_str());
    wait_for(port, "v1");

    // The agent as a daemon: a push + webhook is applied at once.
    let api_port = free_port();
    let agent_url = format!("http://127.0.0.1:{api_port}");
    let child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args([
            "gitops",
            "run",
            "--repo",
            &url,
            "--path",
            "apps/web",
            "--target",
            "local",
            "--data",
            &d,
            "--interval",
            "1h",
        ])
        .args(["--listen", &format!("127.0.0.1:{api_port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the agent");
    cleanup.agent = Some(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", api_port)).is_err() {
        assert!(Instant::now() < deadline, "the agent never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    wt.write("apps/web/site/index.html", "v2");
    let second = wt.commit("v2");
    wt.push("main");
    let hook = slipway(&["gitops", "sync", "web", "--agent", &agent_url, "--json"]);
    assert!(
        hook.status.success(),
        "{}",
        String::from_utf8_lossy(&hook.stderr)
    );
    assert_eq!(json(&hook)["revision"], second.as_str());
    wait_for(port, "v2");

    // Killed by hand: the next reconcile restarts it (self-heal).
    kill_service(&data.path().join("local/web/web"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(port).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let healed = slipway(&["gitops", "sync", "web", "--agent", &agent_url, "--json"]);
    assert!(
        healed.status.success(),
        "{}",
        String::from_utf8_lossy(&healed.stdout)
    );
    let h = json(&healed);
    assert_eq!(
        h["history"]
            .as_array()
            .and_then(|a| a.last())
            .map(|e| e["trigger"].clone()),
        Some("self-heal".into()),
        "{h}"
    );
    wait_for(port, "v2");

    // Rollback pauses auto-sync; status shows it; resume follows the branch again.
    let rb = slipway(&[
        "gitops",
        "rollback",
        "web",
        "--to",
        &first[..8],
        "--agent",
        &agent_url,
        "--json",
    ]);
    assert!(
        rb.status.success(),
        "{}",
        String::from_utf8_lossy(&rb.stderr)
    );
    assert_eq!(json(&rb)["paused"], true);
    wait_for(port, "v1");
    let st = slipway(&["gitops", "status", "--agent", &agent_url]);
    let table = String::from_utf8_lossy(&st.stdout);
    assert!(
        table.contains("web") && table.contains("yes") && table.contains("auto-sync paused"),
        "{table}"
    );
    let bad = slipway(&[
        "gitops",
        "rollback",
        "web",
        "--to",
        "notarevision",
        "--agent",
        &agent_url,
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("unknown revision notarevision"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let res = slipway(&["gitops", "resume", "web", "--agent", &agent_url, "--json"]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(json(&res)["paused"], false);
    wait_for(port, "v2");
}

#[test]
fn gitops_bad_command_lines_and_config_files_exit_2_with_a_position() {
    let dir = test_support::tempdir();
    let cfg = dir.path().join("apps.toml");
    std::fs::write(&cfg, "[[app]]\nname = \"web\"\nrepo = \"git://x/y.git\"\ntarget = \"docker\"\nintervl = \"5s\"\n").expect("write");
    let out = slipway(&["gitops", "run", "--config", cfg.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("apps.toml:5:1:") && err.contains("intervl"),
        "{err}"
    );
    std::fs::write(&cfg, "[[app]]\nname = \"web\"\nrepo = \"git://x/y.git\"\ntarget = \"docker\"\ninterval = \"soon\"\n").expect("write");
    let err = String::from_utf8_lossy(
        &slipway(&["gitops", "run", "--config", cfg.to_str().expect("utf8")]).stderr,
    )
    .into_owned();
    assert!(
        err.contains("apps.toml:2:8: app web: `interval` \"soon\""),
        "{err}"
    );
    let out = slipway(&["gitops", "run", "--repo", "git://x/y.git"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--target is required"));
}
