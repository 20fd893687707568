//! The agent's HTTP API: token checks, unknown apps, bad request bodies, and several apps
//! in one agent (local target, real processes, a real `git daemon`).

#![allow(clippy::unwrap_used)]

use gitops::agent::{Agent, AgentOptions, AppSpec, TargetSpec};
use test_support::git::GitDaemon;
use tokio_util::sync::CancellationToken;

struct KillServices(std::path::PathBuf);

impl Drop for KillServices {
    fn drop(&mut self) {
        for app in ["one", "two"] {
            let pid_file = self.0.join(format!("local/{app}/job/service.pid"));
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|t| t.split_whitespace().next()?.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_checks_its_token_and_serves_several_apps() {
    let git = GitDaemon::start();
    let url = git.create_repo("deploy");
    let wt = git.work_tree("deploy");
    for app in ["one", "two"] {
        wt.write(
            &format!("{app}/app.yaml"),
            "services:\n  job:\n    command: exec sleep 120\n",
        );
    }
    let rev = wt.commit("two apps");
    wt.push("main");
    let data = test_support::tempdir();
    let _kill = KillServices(data.path().to_owned());
    let mut apps = Vec::new();
    for app in ["one", "two"] {
        let mut s = AppSpec::new(app, &url, app, "main", TargetSpec::Local { root: None });
        s.interval = std::time::Duration::from_secs(3600);
        apps.push(s);
    }
    let agent = Agent::new(AgentOptions {
        name: "t".into(),
        data_dir: data.path().to_owned(),
        apps,
        server: None,
        token: Some("agent-secret".into()),
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let a = agent.clone();
    let s = shutdown.clone();
    let served = tokio::spawn(async move { a.serve(listener, s).await });
    let http = reqwest::Client::new();

    assert_eq!(
        http.post(format!("{base}/hooks/sync"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.get(format!("{base}/api/apps"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let r = http
        .post(format!("{base}/hooks/sync"))
        .bearer_auth("agent-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["triggered"], serde_json::json!(["one", "two"]));
    let r = http
        .post(format!("{base}/hooks/sync?app=nope"))
        .bearer_auth("agent-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    for app in ["one", "two"] {
        let r = http
            .post(format!("{base}/api/apps/{app}/sync"))
            .bearer_auth("agent-secret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let s: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            (
                s["revision"].as_str(),
                s["sync"].as_str(),
                s["health"].as_str()
            ),
            (Some(rev.as_str()), Some("Synced"), Some("Healthy")),
            "{s}"
        );
    }
    let list: serde_json::Value = http
        .get(format!("{base}/api/apps"))
        .bearer_auth("agent-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);

    let r = http
        .post(format!("{base}/api/apps/one/rollback"))
        .bearer_auth("agent-secret")
        .body("{}")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{base}/api/apps/one/rollback"))
        .bearer_auth("agent-secret")
        .json(&serde_json::json!({"revision": "0000000000000000000000000000000000000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("unknown revision"),
        "{e}"
    );
    assert_eq!(
        http.get(format!("{base}/api/apps/nope"))
            .bearer_auth("agent-secret")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    shutdown.cancel();
    served.await.unwrap().unwrap();
}
