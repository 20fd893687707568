//! Shared by the tests that run `slipway server` and `slipway agent` as real processes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::json;

pub const SECRET: &str = "hook-secret";
pub const AGENT_TOKEN: &str = "agent-token-123";
pub const ALICE: &str = "alice-token";
pub const ZERO: &str = "0000000000000000000000000000000000000000";

/// Kills the process on drop (if the test did not stop it).
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).expect("pid fits"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        self.0.wait().expect("waiting")
    }
}

/// The slipway binary, logging at info, with no server/token from the environment.
pub fn slipway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slipway"));
    c.env("SLIPWAY_LOG", "info").env_remove("SLIPWAY_SERVER").env_remove("SLIPWAY_TOKEN");
    c
}

/// Starts `slipway server --no-agent` (data in `dir/data`; SQLite unless `database`) and
/// returns it with its URL (read from its stderr).
pub fn start_server_on(dir: &Path, config: &Path, database: Option<&str>, listen: &str) -> (Proc, String) {
    let mut cmd = slipway();
    cmd.args(["server", "--listen", listen, "--no-agent"]);
    if let Some(db) = database {
        cmd.args(["--database", db]);
    }
    let mut child = cmd
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(config)
        .env("HOOK_SECRET", SECRET)
        .env("AGENT_TOKEN", AGENT_TOKEN)
        .env("ALICE_TOKEN", ALICE)
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

/// Starts `slipway agent NAME` (work dir `dir/NAME`, its log in `dir/NAME.log`).
pub fn start_agent(dir: &Path, url: &str, name: &str, extra: &[&str]) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("agent log");
    Proc(
        slipway()
            .args(["agent", "--server", url, "--token", AGENT_TOKEN, "--name", name])
            .args(extra)
            .arg("--work-dir")
            .arg(dir.join(name))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting slipway agent"),
    )
}

/// Posts a Gitea-signed push webhook for `team/app` at `sha`; returns the first run's id.
pub async fn push_webhook(url: &str, clone_url: &str, sha: &str, delivery: &str) -> i64 {
    push_webhook_to(url, "team/app", clone_url, ZERO, sha, delivery).await
}

/// Posts a Gitea-signed push of `refs/heads/main` from `before` to `sha` in `repo`
/// (owner/name); returns the first run's id.
pub async fn push_webhook_to(url: &str, repo: &str, clone_url: &str, before: &str, sha: &str, delivery: &str) -> i64 {
    let (owner, name) = repo.split_once('/').expect("owner/name");
    let body = json!({
        "ref": "refs/heads/main", "before": before, "after": sha,
        "commits": [{"id": sha, "message": "m", "added": [], "removed": [], "modified": []}],
        "repository": {"full_name": repo, "name": name, "owner": {"login": owner}, "clone_url": clone_url},
        "pusher": {"login": "alice", "username": "alice"},
        "sender": {"login": "alice"}
    })
    .to_string();
    let resp = reqwest::Client::new()
        .post(format!("{url}/hooks/gitea"))
        .header("X-Gitea-Event", "push")
        .header("X-Gitea-Delivery", delivery)
        .header("X-Gitea-Signature", server::hooks::sign(SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(resp.status(), 202);
    resp.json::<protocol::Created>().await.expect("json").runs[0]
}
