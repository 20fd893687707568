//! A GitOps agent reports to a real `slipway server`: the server lists the app's
//! Synced/Healthy status and the sync of a promote commit, found by its source commit; bad
//! reports are refused with the field named.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use gitops::agent::{Agent, AgentOptions, AppSpec, ServerReport, TargetSpec, Trigger};
use gitops::promote::{Placement, Promote, promote};
use test_support::git::GitDaemon;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &std::path::Path) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["server", "--listen", "127.0.0.1:0", "--no-agent", "--data"])
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting slipway server");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let mut seen = Vec::new();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.strip_prefix("slipway server listening on ") {
                    break rest.split_whitespace().next().expect("url").to_owned();
                }
                seen.push(line);
            }
            _ => panic!("slipway server exited: {}", seen.join("\n")),
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (Proc(child), url)
}

const IMAGE: &str =
    "reg.example/team/job@sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

#[tokio::test(flavor = "multi_thread")]
async fn gitops_the_server_shows_what_the_agent_synced() {
    let dir = test_support::tempdir();
    let (_server, url) = start_server(dir.path());
    let git = GitDaemon::start();
    let repo = git.create_repo("deploy");
    let wt = git.work_tree("deploy");
    // A local service whose image reference lives in its environment (promoted by YAML path).
    wt.write(
        "job/app.yaml",
        "services:\n  job:\n    files: www\n    command: exec sleep 120\n    env: {IMAGE: \"reg.example/team/job@sha256:00\"}\n",
    )
    .write("job/www/index.html", "job");
    wt.commit("initial");
    wt.push("main");
    let promoted = promote(
        &Promote {
            repository: repo.clone(),
            branch: "main".into(),
            path: "job/app.yaml".into(),
            image: IMAGE.into(),
            placement: Placement::YamlPath("services.job.env.IMAGE".into()),
            source_commit: Some("feedface".into()),
            run: Some("99".into()),
            source_repository: Some("team/job".into()),
            attempts: 3,
        },
        &|_| {},
    )
    .await
    .expect("promote");

    let data = test_support::tempdir();
    let agent = Agent::new(AgentOptions {
        name: "lab".into(),
        data_dir: data.path().to_owned(),
        apps: vec![AppSpec::new(
            "job",
            &repo,
            "job",
            "main",
            TargetSpec::Local { root: None },
        )],
        server: Some(ServerReport {
            url: url.clone(),
            token: None,
        }),
        token: None,
    })
    .await
    .expect("agent");
    let status = agent
        .reconcile("job", Trigger::Webhook)
        .await
        .expect("reconcile");
    assert_eq!(
        (status.record.sync.as_str(), status.record.health.as_str()),
        ("Synced", "Healthy"),
        "{:?}",
        status.record
    );
    let http = reqwest::Client::new();
    let apps: serde_json::Value = http
        .get(format!("{url}/api/v1/gitops/apps"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let app = &apps[0];
    assert_eq!(app["agent"], "lab");
    assert_eq!(app["app"], "job");
    assert_eq!(
        (app["sync"].as_str(), app["health"].as_str()),
        (Some("Synced"), Some("Healthy")),
        "{app}"
    );
    assert_eq!(app["revision"], promoted.commit.as_str());
    let syncs: serde_json::Value = http
        .get(format!("{url}/api/v1/gitops/syncs?source_commit=feedface"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(syncs[0]["revision"], promoted.commit.as_str(), "{syncs}");
    assert_eq!(syncs[0]["run"], "99");

    // Kill the service the agent may have started, by its pid file.
    if let Ok(t) = std::fs::read_to_string(data.path().join("local/job/job/service.pid"))
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

    let bad = http
        .post(format!("{url}/api/v1/gitops/report"))
        .json(&serde_json::json!({"agent": "lab", "app": "x", "repository": "r", "branch": "main", "target": "docker", "sync": "Fine", "health": "Healthy"}))
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("field `sync`"),
        "{body}"
    );
    let bad = http
        .post(format!("{url}/api/v1/gitops/report"))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 400);
}
