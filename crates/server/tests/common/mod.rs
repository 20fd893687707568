//! Shared harness: a server on a free loopback port (its embedded agent included), a
//! stand-in forge that records commit-status requests, a real `git daemon`, and webhook
//! bodies in the forges' formats, signed as they sign them.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use serde_json::{Value, json};
use server::config::{Config, Forge, RepositoryConfig, ServerConfig};
use server::{AppState, Change, Options};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "hook-secret";
pub const FORGE_TOKEN: &str = "forge-token";

/// One request the stand-in forge received.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub private_token: Option<String>,
    pub body: Value,
}

#[derive(Clone)]
struct ForgeState {
    requests: Arc<Mutex<Vec<Recorded>>>,
    count: Arc<watch::Sender<usize>>,
    /// How many requests to answer 500 first (to exercise retries).
    fail_first: Arc<Mutex<usize>>,
}

/// A stand-in forge API that records status requests.
pub struct StandInForge {
    pub url: String,
    state: ForgeState,
    count: watch::Receiver<usize>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

async fn record(State(s): State<ForgeState>, uri: Uri, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    {
        let mut fail = s.fail_first.lock().expect("lock");
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let rec = Recorded {
        path: uri.path().to_owned(),
        authorization: h("authorization"),
        private_token: h("private-token"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let n = {
        let mut r = s.requests.lock().expect("lock");
        r.push(rec);
        r.len()
    };
    s.count.send_replace(n);
    StatusCode::CREATED
}

impl StandInForge {
    pub async fn start(fail_first: usize) -> StandInForge {
        let (tx, rx) = watch::channel(0);
        let state = ForgeState {
            requests: Arc::default(),
            count: Arc::new(tx),
            fail_first: Arc::new(Mutex::new(fail_first)),
        };
        let app = axum::Router::new().fallback(post(record)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let s = stop.clone();
        tasks.spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async move { s.cancelled().await }).await;
        });
        StandInForge { url, state, count: rx, stop, tasks }
    }

    /// Waits until `n` requests were recorded, and returns them all.
    pub async fn wait_for(&mut self, n: usize) -> Vec<Recorded> {
        self.count.wait_for(|c| *c >= n).await.expect("forge alive");
        self.state.requests.lock().expect("lock").clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("lock").clone()
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

pub fn repo_config(name: &str, clone_url: &str, forge: Forge, forge_api: Option<&str>) -> RepositoryConfig {
    RepositoryConfig {
        name: name.to_owned(),
        clone_url: clone_url.to_owned(),
        forge,
        forge_api: forge_api.map(str::to_owned),
        forge_token: Some(FORGE_TOKEN.to_owned()),
        webhook_secret: Some(SECRET.to_owned()),
        poll_interval: None,
        secrets: [("GREETING".to_owned(), "s3cr3t-value".to_owned())].into(),
        vars: Default::default(),
    }
}

/// A server running on a free loopback port until dropped via [`TestServer::stop`].
pub struct TestServer {
    pub url: String,
    pub state: AppState,
    pub changes: broadcast::Receiver<Change>,
    stop: CancellationToken,
    tasks: JoinSet<Result<(), server::ServerError>>,
    _data: tempfile::TempDir,
}

pub struct ServerSetup {
    pub repositories: Vec<RepositoryConfig>,
    pub embedded_agent: bool,
    pub database_url: Option<String>,
    pub lease_ttl: std::time::Duration,
    pub users: Vec<server::config::User>,
    pub body_limit: usize,
    pub agent_token: Option<String>,
    pub organizations: Vec<server::config::OrganizationConfig>,
}

impl Default for ServerSetup {
    fn default() -> Self {
        ServerSetup {
            repositories: Vec::new(),
            embedded_agent: true,
            database_url: None,
            lease_ttl: std::time::Duration::from_secs(30),
            users: Vec::new(),
            body_limit: 64 * 1024,
            agent_token: None,
            organizations: Vec::new(),
        }
    }
}

impl TestServer {
    pub async fn start(setup: ServerSetup) -> TestServer {
        Self::start_in(setup, test_support::tempdir()).await
    }

    /// Starts a server on the data directory `data` (a restart when another used it).
    pub async fn start_in(setup: ServerSetup, data: tempfile::TempDir) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let config = Config {
            server: ServerConfig {
                external_url: "https://ci.example.com".to_owned(),
                agent_token: setup.agent_token,
                lease_ttl: setup.lease_ttl,
                webhook_body_limit: setup.body_limit,
                ..ServerConfig::default()
            },
            users: setup.users,
            repositories: setup.repositories,
            organizations: setup.organizations,
            ..Config::default()
        };
        let mut options = Options::new(data.path().to_owned(), config);
        options.embedded_agent = setup.embedded_agent;
        options.database_url = setup.database_url;
        options.status_backoff = std::time::Duration::from_millis(10);
        let state = AppState::new(options).await.expect("server state");
        let changes = state.subscribe();
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(server::run(listener, state.clone(), stop.clone()));
        TestServer { url, state, changes, stop, tasks, _data: data }
    }

    /// Waits for run `id` to finish.
    pub async fn finished(&mut self, id: i64) -> store::sql::Run {
        loop {
            let run = self.state.db().run(store::sql::RunId(id)).await.expect("db").expect("run exists");
            if run.status == store::sql::RunStatus::Done {
                return run;
            }
            loop {
                match self.changes.recv().await {
                    Ok(Change::RunFinished(r)) if r == id => break,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(e) => panic!("change feed closed: {e}"),
                }
            }
        }
    }

    /// Waits until `pred` holds for the jobs of run `id`.
    pub async fn jobs_until(&mut self, id: i64, pred: impl Fn(&[store::sql::Job]) -> bool) -> Vec<store::sql::Job> {
        loop {
            let jobs = self.state.db().jobs(store::sql::RunId(id)).await.expect("db");
            if pred(&jobs) {
                return jobs;
            }
            match self.changes.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("change feed closed: {e}"),
            }
        }
    }

    pub async fn log_text(&self, id: i64) -> String {
        reqwest::get(format!("{}/api/v1/runs/{id}/logs", self.url)).await.expect("get logs").text().await.expect("text")
    }

    pub async fn stop(self) {
        self.stop_keeping_data().await;
    }

    /// Stops the server gracefully and returns its data directory.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        self.stop.cancel();
        while let Some(r) = self.tasks.join_next().await {
            r.expect("server task").expect("server ran");
        }
        self._data
    }
}

/// A Gitea push webhook body (the fields Gitea sends; see Gitea's `PushPayload`).
pub fn gitea_push(repo: &str, clone_url: &str, git_ref: &str, before: &str, after: &str, files: &[&str]) -> Value {
    let (owner, name) = repo.split_once('/').expect("owner/name");
    json!({
        "ref": git_ref,
        "before": before,
        "after": after,
        "compare_url": format!("http://gitea.example.com/{repo}/compare/{before}...{after}"),
        "commits": [{
            "id": after,
            "message": "change\n",
            "url": format!("http://gitea.example.com/{repo}/commit/{after}"),
            "author": {"name": "Alice", "email": "alice@example.com", "username": "alice"},
            "committer": {"name": "Alice", "email": "alice@example.com", "username": "alice"},
            "verification": null,
            "timestamp": "2026-11-29T03:00:00Z",
            "added": files,
            "removed": [],
            "modified": []
        }],
        "total_commits": 1,
        "head_commit": {"id": after, "message": "change\n"},
        "repository": {
            "id": 1,
            "owner": {"id": 1, "login": owner, "username": owner},
            "name": name,
            "full_name": repo,
            "private": false,
            "clone_url": clone_url,
            "default_branch": "main"
        },
        "pusher": {"id": 1, "login": "alice", "username": "alice", "email": "alice@example.com"},
        "sender": {"id": 1, "login": "alice", "username": "alice"}
    })
}

/// Posts a webhook to `/hooks/gitea` signed as Gitea signs it.
pub async fn post_gitea(url: &str, event: &str, delivery: &str, body: &[u8], secret: &str) -> reqwest::Response {
    let sig = server::hooks::sign(secret, body);
    reqwest::Client::new()
        .post(format!("{url}/hooks/gitea"))
        .header("content-type", "application/json")
        .header("X-Gitea-Event", event)
        .header("X-Gitea-Event-Type", event)
        .header("X-Gitea-Delivery", delivery)
        .header("X-Gitea-Signature", &sig)
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", format!("sha256={sig}"))
        .body(body.to_vec())
        .send()
        .await
        .expect("posting a webhook")
}

/// The run ids in a `202 Accepted` webhook reply.
pub async fn created(resp: reqwest::Response) -> Vec<i64> {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert_eq!(status, 202, "{text}");
    serde_json::from_str::<protocol::Created>(&text).expect("created json").runs
}

/// Headless Chromium (`SLIPWAY_CHROMIUM` or Debian `chromium`), `node` and the Playwright
/// scripts under `ui-tests/`; each missing one fails the test naming its package.
pub struct Browser {
    node: std::path::PathBuf,
    chromium: std::path::PathBuf,
    scripts: std::path::PathBuf,
}

impl Browser {
    pub fn require() -> Browser {
        let chromium = std::env::var_os("SLIPWAY_CHROMIUM")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| test_support::require_command("chromium", "chromium"));
        let node = test_support::require_command("node", "nodejs");
        let scripts = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ui-tests");
        assert!(
            scripts.join("node_modules/playwright-core/package.json").is_file(),
            "playwright-core is not installed: npm ci --prefix ui-tests (scripts/services install does this)"
        );
        Browser { node, chromium, scripts }
    }

    /// Runs `ui-tests/SCRIPT` against `base_url` with the extra `env` (and `SCREENSHOTS`
    /// from `SLIPWAY_UI_SCREENSHOTS`), failing the test if it takes longer than `limit`;
    /// prints its stdout and returns its output.
    pub async fn run(
        &self,
        script: &str,
        base_url: &str,
        env: &[(&str, &std::ffi::OsStr)],
        limit: std::time::Duration,
    ) -> std::process::Output {
        let mut cmd = tokio::process::Command::new(&self.node);
        cmd.arg(self.scripts.join(script))
            .current_dir(&self.scripts)
            .env("BASE_URL", base_url)
            .envs(env.iter().copied())
            .env("CHROMIUM", &self.chromium)
            .kill_on_drop(true);
        if let Some(dir) = std::env::var_os("SLIPWAY_UI_SCREENSHOTS") {
            cmd.env("SCREENSHOTS", dir);
        }
        let out = tokio::time::timeout(limit, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("the browser script {script} did not finish within {limit:?}"))
            .expect("running node");
        println!("{}", String::from_utf8_lossy(&out.stdout));
        out
    }

    /// [`Browser::run`], failing the test with the script's output when the script fails.
    pub async fn run_ok(
        &self,
        script: &str,
        base_url: &str,
        env: &[(&str, &std::ffi::OsStr)],
        limit: std::time::Duration,
    ) {
        let out = self.run(script, base_url, env, limit).await;
        assert!(
            out.status.success(),
            "the browser script failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Three users of the configuration file: alice (admin), mona (maintainer) and vic (viewer),
/// each with the token `NAME-token`.
pub const THREE_USERS: &str = r#"
[[user]]
name = "alice"
token = "alice-token"
role = "admin"

[[user]]
name = "mona"
token = "mona-token"
role = "maintainer"

[[user]]
name = "vic"
token = "vic-token"
role = "viewer"
"#;

/// The state of a server configured by the `slipway.toml` text `toml`, without the embedded
/// agent, on a fresh data directory (returned to keep it alive as long as the state).
pub async fn state_from_toml(toml: &str) -> (AppState, tempfile::TempDir) {
    let data = test_support::tempdir();
    let config = server::config::parse(toml, "slipway.toml", &|_| None).expect("config");
    let mut options = Options::new(data.path().to_owned(), config);
    options.embedded_agent = false;
    let state = AppState::new(options).await.expect("state");
    (state, data)
}

/// A fresh database named `PREFIX_<uuid>` on the test PostgreSQL server; its URL.
pub fn fresh_postgres(prefix: &str) -> String {
    let base = test_support::postgres();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let out = std::process::Command::new(test_support::require_command("psql", "postgresql-client"))
        .args([base.as_str(), "-v", "ON_ERROR_STOP=1", "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql");
    assert!(out.status.success(), "creating a database: {}", String::from_utf8_lossy(&out.stderr));
    let (prefix, _) = base.rsplit_once('/').expect("url with a path");
    format!("{prefix}/{name}")
}

/// Starts the runs of a push of `sha` to `main` of `repository` by `actor`, as a webhook
/// would; their ids.
pub async fn push_main(state: &AppState, repository: &str, sha: &str, actor: &str) -> Vec<i64> {
    let repo = state.repository(repository).expect("configured");
    let trigger = server::trigger::Trigger {
        repository: repository.into(),
        event: "push".into(),
        git_ref: "refs/heads/main".into(),
        sha: sha.into(),
        before: None,
        actor: actor.into(),
        payload: json!({"ref": "refs/heads/main", "after": sha, "repository": {"full_name": repository}}),
        payload_changed: None,
        action: None,
        base_ref: None,
        inputs: Default::default(),
        only_workflow: None,
    };
    server::trigger::start_runs(state, &repo, trigger).await.expect("runs")
}

/// Waits until run `run` is done, failing the test when 120 s pass without any change.
pub async fn finished_within(state: &AppState, changes: &mut broadcast::Receiver<Change>, run: i64) -> store::sql::Run {
    loop {
        let r = state.db().run(store::sql::RunId(run)).await.expect("db").expect("run");
        if r.status == store::sql::RunStatus::Done {
            return r;
        }
        if tokio::time::timeout(std::time::Duration::from_secs(120), changes.recv()).await.is_err() {
            panic!("run {run} did not finish: {r:?}");
        }
    }
}

/// Waits for the next change (a lag counts as one), failing the test with `seen` when 120 s
/// pass without any.
pub async fn next_change(changes: &mut broadcast::Receiver<Change>, seen: &impl std::fmt::Debug) {
    match tokio::time::timeout(std::time::Duration::from_secs(120), changes.recv()).await {
        Ok(Ok(_) | Err(broadcast::error::RecvError::Lagged(_))) => {}
        Ok(Err(e)) => panic!("change feed closed: {e}"),
        Err(_) => panic!("no change for 120s; deployments: {seen:#?}"),
    }
}

/// `(actor, action, detail)` of every audit event (up to 1000), oldest first.
pub async fn audit_triples(state: &AppState) -> Vec<(String, String, String)> {
    let events = state
        .db()
        .audit_events(&store::sql::AuditFilter { limit: 1000, ..store::sql::AuditFilter::default() })
        .await
        .expect("audit");
    events.into_iter().map(|e| (e.actor, e.action, e.detail.unwrap_or_default())).collect()
}

/// The Argon2 hash of `password`, as the configuration file's `passwords` hold it.
pub fn password_hash(password: &str) -> String {
    use argon2::PasswordHasher as _;
    argon2::Argon2::default().hash_password(password.as_bytes()).expect("hashing").to_string()
}
