//! Helpers shared by the gitops integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gitops::agent::{Agent, AgentOptions, AppSpec, AppStatus};
use tokio_util::sync::CancellationToken;

static N: AtomicU32 = AtomicU32::new(0);

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs the docker CLI against the test engine (with a private client config dir).
pub fn docker(args: &[&str]) -> String {
    let bin = test_support::require_command("docker", "docker.io");
    let cfg =
        std::env::temp_dir().join(format!("slipway-gitops-docker-cfg-{}", std::process::id()));
    let out = Command::new(bin)
        .env("DOCKER_CONFIG", &cfg)
        .arg("-H")
        .arg(test_support::docker_host())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A busybox image with `/www/index.html` = `body`, pushed to the test registry; its
/// `registry/repo@sha256:...` reference (which the engine then knows locally).
pub fn pushed_image(repo: &str, body: &str) -> String {
    let reg = test_support::distribution();
    let tmp = unique("slipway-gitops-build");
    let tag = format!("{}/{repo}:{}", reg.addr, unique("v"));
    docker(&[
        "run",
        "--network",
        "none",
        "--name",
        &tmp,
        &test_support::busybox_image(),
        "sh",
        "-c",
        &format!("mkdir -p /www && printf '{body}' > /www/index.html"),
    ]);
    docker(&["commit", &tmp, &tag]);
    docker(&["rm", "-f", &tmp]);
    docker(&["login", "-u", &reg.user, "-p", &reg.password, &reg.addr]);
    docker(&["push", "-q", &tag]);
    let digest = docker(&["inspect", "-f", "{{index .RepoDigests 0}}", &tag]);
    assert!(digest.contains("@sha256:"), "{digest}");
    digest
}

/// An agent serving its API on a loopback port, reconciling in the background.
pub struct Running {
    pub agent: Agent,
    pub url: String,
    pub shutdown: CancellationToken,
    pub data: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start_agent(apps: Vec<AppSpec>) -> Running {
    let data = test_support::tempdir();
    start_agent_in(apps, data).await
}

pub async fn start_agent_in(apps: Vec<AppSpec>, data: tempfile::TempDir) -> Running {
    let agent = Agent::new(AgentOptions {
        name: "test-agent".into(),
        data_dir: data.path().to_owned(),
        apps,
        server: None,
        token: None,
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let router = agent.router();
    let s = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(s.cancelled_owned())
            .await
    });
    let a = agent.clone();
    let s = shutdown.clone();
    tokio::spawn(async move { a.run(s).await });
    Running {
        agent,
        url,
        shutdown,
        data,
    }
}

impl Running {
    /// Stops the agent (as a crash would: no cleanup on the target); its data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        std::mem::replace(&mut self.data, test_support::tempdir())
    }

    /// POSTs the push webhook.
    pub async fn webhook(&self) {
        let r = reqwest::Client::new()
            .post(format!("{}/hooks/sync", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }

    /// Waits (up to 60 s) until `app`'s status passes `ok`; its status then.
    pub async fn wait(&self, app: &str, what: &str, ok: impl Fn(&AppStatus) -> bool) -> AppStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.agent.app_status(app).unwrap();
            if ok(&s) {
                return s;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out waiting for {what}; status: {}",
                    serde_json::to_string_pretty(&s).unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn synced_at(s: &AppStatus, rev: &str) -> bool {
    s.record.revision.as_deref() == Some(rev)
        && s.record.sync == gitops::model::SyncStatus::Synced
        && s.record.health == gitops::model::HealthStatus::Healthy
}
