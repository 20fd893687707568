//! `slipway server` + `slipway agent` processes on PostgreSQL, end to end: a commit pushed to
//! a real `git daemon`, a Gitea-signed push webhook, jobs spread over two external agents,
//! commit statuses recorded by a stand-in forge, `slipway runs`/`slipway logs`, and an agent
//! killed with SIGKILL mid-job whose job is retried on another agent.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::*;
use futures::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use test_support::git::GitDaemon;
use tokio::sync::watch;

fn fresh_postgres() -> String {
    let base = test_support::postgres();
    let name = format!("slipway_cli_{}", std::process::id());
    let name = format!("{name}_{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos());
    let out = Command::new(test_support::require_command("psql", "postgresql-client"))
        .args([base.as_str(), "-v", "ON_ERROR_STOP=1", "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql");
    assert!(out.status.success(), "creating a database: {}", String::from_utf8_lossy(&out.stderr));
    let (prefix, _) = base.rsplit_once('/').expect("url with a path");
    format!("{prefix}/{name}")
}

fn start_server(dir: &Path, config: &Path, database: &str) -> (Proc, String) {
    start_server_on(dir, config, Some(database), "127.0.0.1:0")
}

/// A stand-in forge that records the JSON bodies of status requests (by path).
struct Forge {
    url: String,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    count: watch::Receiver<usize>,
    _task: tokio::task::JoinSet<()>,
}

async fn start_forge() -> Forge {
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let (tx, rx) = watch::channel(0usize);
    let tx = Arc::new(tx);
    let app = {
        let seen = seen.clone();
        axum::Router::new().fallback(axum::routing::post(move |uri: axum::http::Uri, body: axum::body::Bytes| {
            let seen = seen.clone();
            let tx = tx.clone();
            async move {
                let n = {
                    let mut s = seen.lock().expect("lock");
                    s.push((uri.path().to_owned(), serde_json::from_slice(&body).unwrap_or(Value::Null)));
                    s.len()
                };
                tx.send_replace(n);
                axum::http::StatusCode::CREATED
            }
        }))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut task = tokio::task::JoinSet::new();
    task.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Forge { url, seen, count: rx, _task: task }
}

impl Forge {
    async fn wait_for(&mut self, n: usize) -> Vec<(String, Value)> {
        self.count.wait_for(|c| *c >= n).await.expect("forge alive");
        self.seen.lock().expect("lock").clone()
    }
}

fn write_config(dir: &Path, clone_url: &str, forge_api: &str, lease_ttl: &str) -> std::path::PathBuf {
    let path = dir.join("slipway.toml");
    std::fs::write(
        &path,
        format!(
            r#"[server]
external_url = "http://ci.test"
agent_token = "env:AGENT_TOKEN"
lease_ttl = "{lease_ttl}"

[[user]]
name = "alice"
token = "env:ALICE_TOKEN"
role = "admin"

[[repository]]
name = "team/app"
clone_url = "{clone_url}"
forge = "gitea"
forge_api = "{forge_api}"
forge_token = "forge-token"
webhook_secret = "env:HOOK_SECRET"
"#
        ),
    )
    .expect("writing the config");
    path
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = slipway().args(args).output().expect("running slipway");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_green_check_with_external_agents_on_postgres() {
    let dir = test_support::tempdir();
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".gitea/workflows/ci.yml",
        r#"name: ci
on: push
jobs:
  lint:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "lint $(cat VERSION)"
  unit:
    runs-on: ubuntu-latest
    steps:
      - run: echo unit-ok
  package:
    needs: [lint, unit]
    runs-on: ubuntu-latest
    steps:
      - run: echo "package ${{ github.sha }}"
"#,
    );
    tree.write("VERSION", "1.2.3\n");
    let sha = tree.commit("ci");
    tree.push("main");
    let mut forge = start_forge().await;
    let config = write_config(dir.path(), &clone_url, &format!("{}/api/v1", forge.url), "30s");
    let (mut server, url) = start_server(dir.path(), &config, &fresh_postgres());
    let mut a1 = start_agent(dir.path(), &url, "a1", &[]);
    let mut a2 = start_agent(dir.path(), &url, "a2", &[]);

    let run = push_webhook(&url, &clone_url, &sha, "delivery-1").await;
    let statuses = forge.wait_for(2).await;
    let path = format!("/api/v1/repos/team/app/statuses/{sha}");
    assert_eq!(statuses[0], (path.clone(), json!({"state": "pending", "target_url": format!("http://ci.test/runs/{run}"), "description": "queued", "context": "slipway/ci (push)"})));
    assert_eq!(statuses[1], (path, json!({"state": "success", "target_url": format!("http://ci.test/runs/{run}"), "description": "succeeded", "context": "slipway/ci (push)"})));

    let (ok, out) = cli(&["runs", "--json", "--server", &url, "--token", ALICE]);
    assert!(ok, "{out}");
    let runs: Vec<protocol::Run> = serde_json::from_str(&out).expect("runs json");
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].id, runs[0].conclusion), (run, Some(protocol::Conclusion::Success)));
    let (ok, out) = cli(&["logs", &run.to_string(), "--server", &url, "--token", ALICE]);
    assert!(ok, "{out}");
    assert!(out.contains("lint 1.2.3") && out.contains("unit-ok") && out.contains(&format!("package {sha}")), "{out}");
    let (ok, out) = cli(&["logs", &run.to_string(), "--follow", "--server", &url, "--token", ALICE]);
    assert!(ok && out.contains(&format!("=== run {run} success ===")), "{out}");
    let (ok, out) = cli(&["runs", "--server", &url]);
    assert!(!ok && out.contains("401"), "no token: {out}");

    assert!(a1.terminate().success());
    assert!(a2.terminate().success());
    assert!(server.terminate().success(), "the server shuts down cleanly on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_an_agent_killed_with_sigkill_is_retried_on_another_agent() {
    let dir = test_support::tempdir();
    let mark = dir.path().join("first-attempt");
    let pidfile = dir.path().join("sleep.pid");
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".gitea/workflows/ci.yml",
        &format!(
            "name: ci\non: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: |\n          if [ -e {mark} ]; then echo second-attempt; exit 0; fi\n          touch {mark}; echo first-attempt\n          echo $$ > {pid}\n          exec sleep 120\n",
            mark = mark.display(),
            pid = pidfile.display()
        ),
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let mut forge = start_forge().await;
    let config = write_config(dir.path(), &clone_url, &format!("{}/api/v1", forge.url), "2s");
    let (mut server, url) = start_server(dir.path(), &config, &fresh_postgres());
    let mut doomed = start_agent(dir.path(), &url, "doomed", &[]);
    let run = push_webhook(&url, &clone_url, &sha, "delivery-1").await;
    // Follow the logs until the first attempt is running.
    let resp = reqwest::Client::new()
        .get(format!("{url}/api/v1/runs/{run}/logs?follow=true"))
        .bearer_auth(ALICE)
        .send()
        .await
        .expect("follow");
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("first-attempt") {
        let bytes = stream.next().await.expect("the stream goes on").expect("bytes");
        seen.push_str(&String::from_utf8_lossy(&bytes));
    }
    doomed.0.kill().expect("SIGKILL");
    doomed.0.wait().expect("reaped");
    let mut rescuer = start_agent(dir.path(), &url, "rescuer", &[]);
    let statuses = forge.wait_for(2).await;
    assert_eq!(statuses[1].1["state"], "success", "{statuses:?}");
    let jobs: Vec<protocol::Job> = reqwest::Client::new()
        .get(format!("{url}/api/v1/runs/{run}/jobs"))
        .bearer_auth(ALICE)
        .send()
        .await
        .expect("jobs")
        .json()
        .await
        .expect("json");
    assert_eq!((jobs[0].attempt, jobs[0].result), (2, Some(protocol::Conclusion::Success)));
    let (ok, out) = cli(&["logs", &run.to_string(), "--server", &url, "--token", ALICE]);
    assert!(ok && out.contains("first-attempt") && out.contains("second-attempt"), "both attempts' logs are kept: {out}");
    // The orphaned step of the killed agent.
    if let Ok(pid) = std::fs::read_to_string(&pidfile) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    assert!(rescuer.terminate().success());
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_with_sigkill_loses_nothing_and_its_running_job_ends_after_restart() {
    let dir = test_support::tempdir();
    let go = dir.path().join("go");
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".gitea/workflows/ci.yml",
        &format!(
            "name: ci\non: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: |\n          echo before-kill\n          while [ ! -e {go} ]; do sleep 0.05; done\n          echo after-restart\n",
            go = go.display()
        ),
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let mut forge = start_forge().await;
    let config = write_config(dir.path(), &clone_url, &format!("{}/api/v1", forge.url), "30s");
    // SQLite in the data directory this time.
    let (mut server, url) = start_server_on(dir.path(), &config, None, "127.0.0.1:0");
    let mut agent = start_agent(dir.path(), &url, "a1", &[]);
    let run = push_webhook(&url, &clone_url, &sha, "delivery-1").await;
    forge.wait_for(1).await;
    let resp = reqwest::Client::new()
        .get(format!("{url}/api/v1/runs/{run}/logs?follow=true"))
        .bearer_auth(ALICE)
        .send()
        .await
        .expect("follow");
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("before-kill") {
        let bytes = stream.next().await.expect("the stream goes on").expect("bytes");
        seen.push_str(&String::from_utf8_lossy(&bytes));
    }
    drop(stream);
    server.0.kill().expect("SIGKILL");
    server.0.wait().expect("reaped");
    let listen = url.trim_start_matches("http://").to_owned();
    let (mut server, _) = start_server_on(dir.path(), &config, None, &listen);
    std::fs::write(&go, "").expect("releasing the step");
    let statuses = forge.wait_for(2).await;
    assert_eq!(statuses[1].1["state"], "success", "{statuses:?}");
    let (ok, out) = cli(&["logs", &run.to_string(), "--server", &url, "--token", ALICE]);
    assert!(ok && out.contains("before-kill") && out.contains("after-restart"), "{out}");
    let jobs: Vec<protocol::Job> = reqwest::Client::new()
        .get(format!("{url}/api/v1/runs/{run}/jobs"))
        .bearer_auth(ALICE)
        .send()
        .await
        .expect("jobs")
        .json()
        .await
        .expect("json");
    assert_eq!((jobs[0].attempt, jobs[0].result), (1, Some(protocol::Conclusion::Success)), "the lease outlived the restart");
    assert!(agent.terminate().success());
    assert!(server.terminate().success());
}
