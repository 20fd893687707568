//! The whole seed, end to end, through a real `slipway server` process: the examples/
//! repository is pushed to a real `git daemon`, a Gitea-signed push webhook starts its
//! pipeline (build → test → package + image pushed into the server's own registry under
//! `/v2/` → staging → production), staging deploys at once (no rules), the run stops at
//! production, `slipway approve` releases it, the service answers on its production port with
//! the new version, `slipway deployments` shows both deployments with commit, digest, pusher
//! and approver, and `slipway status production` says what runs there. The server is killed
//! (SIGKILL) while production waits and still waits after the restart. A second version then
//! goes through the same gate, and `slipway rollback production` brings the first back.

mod common;

/// Test names start with `delivery::` (so `cargo nextest run delivery` selects them).
mod delivery {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};
    use test_support::git::GitDaemon;

    use crate::common::{Proc, SECRET, ZERO, push_webhook_to, slipway};

    /// Stops the services deploy-local left running under these roots (on drop too).
    struct Services(Vec<PathBuf>);

    impl Drop for Services {
        fn drop(&mut self) {
            for root in &self.0 {
                if let Ok(text) = std::fs::read_to_string(root.join("service.pid"))
                    && let Some(pid) = text.split_whitespace().next()
                {
                    let _ = Command::new("kill")
                        .args(["-TERM", "--", &format!("-{pid}")])
                        .status();
                }
            }
        }
    }

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .expect("repository root")
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    }

    fn cli(server: &str, token: &str, args: &[&str]) -> (bool, String) {
        let out = slipway()
            .args(args)
            .args(["--server", server, "--token", token])
            .output()
            .expect("running slipway");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn http_get(port: u16, path: &str) -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    fn copy_tree(from: &Path, to: &Path) {
        let status = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(to)
            .status()
            .expect("cp");
        assert!(status.success());
    }

    async fn api(url: &str, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{url}{path}"))
            .bearer_auth("alice-token")
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json")
    }

    /// Polls the API (the server is another process) until `pred` holds.
    async fn until(url: &str, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let v = api(url, path).await;
            if pred(&v) {
                return v;
            }
            if Instant::now() > deadline {
                let runs = api(url, "/api/v1/runs?limit=5").await;
                let newest = runs[0]["id"].as_i64().unwrap_or(0);
                panic!(
                    "waited 240s for {what}: {v:#}\nruns: {runs:#}\nlog of run {newest}:\n{}",
                    run_log(url, newest).await
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn deployment<'a>(list: &'a Value, env: &str, run: i64) -> Option<&'a Value> {
        list.as_array()?
            .iter()
            .find(|d| d["environment"] == env && d["run_id"] == run)
    }

    async fn run_log(url: &str, run: i64) -> String {
        reqwest::Client::new()
            .get(format!("{url}/api/v1/runs/{run}/logs"))
            .bearer_auth("alice-token")
            .send()
            .await
            .expect("logs")
            .text()
            .await
            .unwrap_or_default()
    }

    async fn finished(url: &str, run: i64) -> Value {
        let r = until(
            url,
            &format!("/api/v1/runs/{run}"),
            "the run to finish",
            |r| r["status"] == "done",
        )
        .await;
        assert_eq!(
            r["conclusion"],
            "success",
            "{r:#}\n{}",
            run_log(url, run).await
        );
        r
    }

    fn commit_all(dir: &Path, message: &str) -> String {
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args(args)
                .current_dir(dir)
                .env("GIT_AUTHOR_NAME", "Alice")
                .env("GIT_AUTHOR_EMAIL", "alice@example.com")
                .env("GIT_COMMITTER_NAME", "Alice")
                .env("GIT_COMMITTER_EMAIL", "alice@example.com")
                .output()
                .expect("git");
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", message]);
        git(&["push", "-q", "origin", "HEAD:refs/heads/main"]);
        git(&["rev-parse", "HEAD"])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn examples_pipeline_deploys_to_staging_then_production_after_approval() {
        test_support::require_command("python3", "python3");
        let dir = test_support::tempdir();
        let git = GitDaemon::start();
        let clone_url = git.create_repo("wordcount");
        let tree = git.work_tree("wordcount");
        copy_tree(&root().join("examples"), &tree.path());
        std::fs::write(tree.path().join("VERSION"), "1.2.0\n").expect("VERSION");
        let first = commit_all(&tree.path(), "wordcount 1.2.0");

        let port = free_port();
        let (staging_port, production_port) = (free_port(), free_port());
        let deploy_root = dir.path().join("deploy");
        let _services = Services(vec![
            deploy_root.join("staging"),
            deploy_root.join("production"),
        ]);
        let config = dir.path().join("slipway.toml");
        std::fs::write(
        &config,
        format!(
            r#"[server]
external_url = "http://127.0.0.1:{port}"

[[user]]
name = "alice"
token = "alice-token"
role = "admin"

[[user]]
name = "bob"
token = "env:BOB_TOKEN"
role = "maintainer"
groups = ["ops"]

[[repository]]
name = "team/wordcount"
clone_url = "{clone_url}"
forge = "gitea"
webhook_secret = "env:HOOK_SECRET"
vars = {{ REGISTRY = "127.0.0.1:{port}", DEPLOY_ROOT = "{root}", STAGING_PORT = "{staging_port}", PRODUCTION_PORT = "{production_port}" }}

[[environment]]
repository = "team/wordcount"
name = "staging"

[[environment]]
repository = "team/wordcount"
name = "production"
reviewers = ["ops"]
branches = ["main"]
"#,
            root = deploy_root.display()
        ),
    )
    .expect("config");
        let start = || {
            let mut child = slipway()
                .args(["server", "--listen", &format!("127.0.0.1:{port}")])
                .arg("--data")
                .arg(dir.path().join("data"))
                .arg("--config")
                .arg(&config)
                .env("HOOK_SECRET", SECRET)
                .env("BOB_TOKEN", "bob-token")
                .env("XDG_CACHE_HOME", dir.path().join("cache"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting slipway server");
            let stderr = child.stderr.take().expect("piped");
            let mut lines = BufReader::new(stderr).lines();
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
        };
        let (mut server, url) = start();

        // Push: staging deploys on its own, production waits for a reviewer.
        let run = push_webhook_to(&url, "team/wordcount", &clone_url, ZERO, &first, "d-1").await;
        let list = until(&url, "/api/v1/deployments", "production to wait", |l| {
            deployment(l, "production", run).is_some_and(|d| d["status"] == "waiting")
        })
        .await;
        let staging = deployment(&list, "staging", run).expect("staging deployment");
        assert_eq!(staging["status"], "success", "{staging:#}");
        let answer = http_get(staging_port, "/version").unwrap_or_default();
        assert!(
            answer.contains("wordcount 1.2.0"),
            "staging serves 1.2.0: {answer}"
        );
        assert!(
            http_get(production_port, "/version").is_none(),
            "production is not deployed before approval"
        );

        // The server is killed while production waits: after a restart it still waits.
        server.0.kill().expect("SIGKILL");
        let _ = server.0.wait();
        let (restarted, url) = start();
        server = restarted;
        let list = api(&url, "/api/v1/deployments").await;
        assert_eq!(
            deployment(&list, "production", run).expect("production")["status"],
            "waiting",
            "{list:#}"
        );

        // alice pushed it: she may not approve her own run (and is no reviewer anyway).
        let (ok, out) = cli(
            &url,
            "alice-token",
            &["approve", &run.to_string(), "--env", "production"],
        );
        assert!(!ok && out.contains("403"), "{out}");
        let (ok, out) = cli(
            &url,
            "bob-token",
            &[
                "approve",
                &run.to_string(),
                "--env",
                "production",
                "--comment",
                "release 1.2.0",
            ],
        );
        assert!(ok, "{out}");
        assert!(out.contains("production"), "{out}");
        finished(&url, run).await;
        let answer = http_get(production_port, "/version").unwrap_or_default();
        assert!(
            answer.contains("wordcount 1.2.0"),
            "production serves 1.2.0: {answer}"
        );

        let (ok, out) = cli(&url, "alice-token", &["deployments", "--json"]);
        assert!(ok, "{out}");
        let list: Value = serde_json::from_str(&out).expect("deployments JSON");
        for env in ["staging", "production"] {
            let d = deployment(&list, env, run).unwrap_or_else(|| panic!("{env}: {list:#}"));
            assert_eq!(d["status"], "success", "{d:#}");
            assert_eq!(d["sha"], first.as_str());
            assert_eq!(d["pusher"], "alice");
            let digest = d["digests"][0]["digest"].as_str().unwrap_or_default();
            assert!(
                digest.starts_with("sha256:") && digest.len() == 71,
                "{env} digest: {d:#}"
            );
        }
        let prod = deployment(&list, "production", run).expect("production");
        assert_eq!(prod["approvers"], json!(["bob"]));
        assert_eq!(
            deployment(&list, "staging", run).expect("staging")["approvers"],
            json!([])
        );
        let first_digest = prod["digests"][0]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (ok, out) = cli(&url, "alice-token", &["deployments", "--env", "production"]);
        assert!(
            ok && out.contains("bob")
                && out.contains(&first[..7])
                && out.contains(&first_digest[..19]),
            "{out}"
        );
        let (ok, out) = cli(&url, "alice-token", &["status", "production"]);
        assert!(
            ok && out.contains(&first_digest) && out.contains("approved by bob"),
            "{out}"
        );

        // A new version goes through the same gate; then production is rolled back to 1.2.0.
        std::fs::write(tree.path().join("VERSION"), "1.3.0\n").expect("VERSION");
        let second = commit_all(&tree.path(), "wordcount 1.3.0");
        let run2 = push_webhook_to(&url, "team/wordcount", &clone_url, &first, &second, "d-2").await;
        until(
            &url,
            "/api/v1/deployments",
            "production to wait again",
            |l| deployment(l, "production", run2).is_some_and(|d| d["status"] == "waiting"),
        )
        .await;
        assert!(
            http_get(staging_port, "/version")
                .unwrap_or_default()
                .contains("wordcount 1.3.0")
        );
        assert!(
            http_get(production_port, "/version")
                .unwrap_or_default()
                .contains("wordcount 1.2.0"),
            "still the old release"
        );
        let (ok, out) = cli(
            &url,
            "bob-token",
            &["approve", &run2.to_string(), "--env", "production"],
        );
        assert!(ok, "{out}");
        finished(&url, run2).await;
        assert!(
            http_get(production_port, "/version")
                .unwrap_or_default()
                .contains("wordcount 1.3.0")
        );

        let (ok, out) = cli(&url, "alice-token", &["rollback", "production", "--json"]);
        assert!(ok, "{out}");
        let reply: Value = serde_json::from_str(&out).expect("rollback JSON");
        assert_eq!(reply["to"]["id"], prod["id"], "{reply:#}");
        let run3 = reply["run_id"].as_i64().expect("run id");
        until(
            &url,
            "/api/v1/deployments",
            "the rollback to wait for approval",
            |l| deployment(l, "production", run3).is_some_and(|d| d["status"] == "waiting"),
        )
        .await;
        let (ok, out) = cli(
            &url,
            "bob-token",
            &["approve", &run3.to_string(), "--env", "production"],
        );
        assert!(ok, "{out}");
        finished(&url, run3).await;
        assert!(
            http_get(production_port, "/version")
                .unwrap_or_default()
                .contains("wordcount 1.2.0"),
            "rolled back"
        );
        let list = api(&url, "/api/v1/deployments?environment=production").await;
        let rb = deployment(&list, "production", run3).expect("rollback deployment");
        assert_eq!(rb["rollback_of"], prod["id"]);
        assert_eq!(
            rb["digests"][0]["digest"],
            first_digest.as_str(),
            "the same digest as the first deployment: {rb:#}"
        );
        drop(server);
    }
}
