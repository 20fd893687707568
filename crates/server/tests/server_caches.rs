//! The agent's cache routes from the outside, with a raw agent holding a leased job: bad
//! requests get a 4xx naming the field and store nothing; reserve → upload → commit, first
//! writer wins and an entry is immutable and invisible until committed; only the agent
//! holding the job may use its routes; the repository's size limit evicts the least
//! recently used entry (and its archive) and refuses an archive over it.
//! (Two real agent processes sharing caches, PR scopes and S3: `crates/slipway/tests/server_caches.rs`.)

mod common;

use common::*;
use protocol::{Assignment, LeaseRequest, RegisterRequest, RegisterResponse};
use serde_json::{Value, json};
use server::config::{Config, Forge, ServerConfig};
use server::{AppState, Options};
use store::blob::Digest;
use test_support::git::GitDaemon;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const ONE_JOB: &str = "on: push\njobs:\n  build:\n    runs-on: linux\n    steps:\n      - run: echo hi\n";
const ZERO: &str = "0000000000000000000000000000000000000000";

struct Server {
    url: String,
    state: AppState,
    stop: CancellationToken,
    tasks: JoinSet<Result<(), server::ServerError>>,
    _data: tempfile::TempDir,
    _git: GitDaemon,
    clone_url: String,
    sha: String,
}

impl Server {
    async fn start(cache_size_limit: u64) -> Server {
        let git = GitDaemon::start();
        let clone_url = git.create_repo("app");
        let tree = git.work_tree("app");
        tree.write(".forgejo/workflows/one.yml", ONE_JOB);
        let sha = tree.commit("one");
        tree.push("main");
        let data = test_support::tempdir();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let config = Config {
            server: ServerConfig { agent_token: Some("agent-secret".into()), cache_size_limit, ..ServerConfig::default() },
            repositories: vec![repo_config("team/app", &clone_url, Forge::Forgejo, None)],
            ..Config::default()
        };
        let mut options = Options::new(data.path().to_owned(), config);
        options.embedded_agent = false;
        let state = AppState::new(options).await.expect("server state");
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(server::run(listener, state.clone(), stop.clone()));
        Server { url, state, stop, tasks, _data: data, _git: git, clone_url, sha }
    }

    /// Pushes (a new delivery) and leases the run's job with a new raw agent.
    async fn leased(&self, delivery: &str) -> (Agent, Assignment) {
        let body = gitea_push("team/app", &self.clone_url, "refs/heads/main", ZERO, &self.sha, &[]);
        created(post_gitea(&self.url, "push", delivery, body.to_string().as_bytes(), SECRET).await).await;
        let agent = Agent::new(&self.url).await;
        let resp = agent.post(protocol::paths::AGENT_LEASE, &LeaseRequest { wait_ms: 5_000 }).await;
        assert_eq!(resp.status(), 200, "lease");
        let job: Assignment = resp.json().await.expect("assignment");
        (agent, job)
    }

    async fn stop(mut self) {
        self.stop.cancel();
        while let Some(r) = self.tasks.join_next().await {
            r.expect("server task").expect("server ran");
        }
    }
}

struct Agent {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Agent {
    async fn new(url: &str) -> Agent {
        let resp = reqwest::Client::new()
            .post(format!("{url}{}", protocol::paths::AGENT_REGISTER))
            .bearer_auth("agent-secret")
            .json(&RegisterRequest { name: "raw".into(), labels: vec!["linux".into()], capacity: None })
            .send()
            .await
            .expect("register");
        let reg: RegisterResponse = resp.json().await.expect("json");
        Agent { url: url.to_owned(), token: reg.token, http: reqwest::Client::new() }
    }

    async fn post<B: serde::Serialize>(&self, path: &str, body: &B) -> reqwest::Response {
        self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.token).json(body).send().await.expect("post")
    }

    async fn post_raw(&self, path: &str, body: &'static str) -> reqwest::Response {
        self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.token).body(body).send().await.expect("post")
    }

    /// Status and JSON body (`null` when empty).
    async fn call(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self.post(path, &body).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn put_blob(&self, job: i64, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let resp = self
            .http
            .put(format!("{}{}", self.url, protocol::paths::agent_blob(job, &digest.to_string())))
            .bearer_auth(&self.token)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("put");
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap_or_default());
        digest
    }

    /// Reserves, uploads and commits `bytes` as `key`; returns the commit's status.
    async fn save(&self, job: i64, key: &str, bytes: &[u8]) -> u16 {
        let (status, reserved) = self.call(&format!("/api/v1/agent/jobs/{job}/caches"), json!({"key": key, "version": VERSION})).await;
        assert_eq!(status, 201, "{reserved}");
        let digest = self.put_blob(job, bytes).await;
        let commit = format!("/api/v1/agent/jobs/{job}/caches/{}/commit", reserved["id"]);
        self.call(&commit, json!({"digest": digest.to_string(), "size": bytes.len()})).await.0
    }
}

const VERSION: &str = "0123456789abcdef";

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn bad_requests_are_refused_and_the_first_committed_writer_wins() {
    let server = Server::start(10 << 30).await;
    let (agent, job) = server.leased("d1").await;
    let id = job.job_id;
    let lookup = format!("/api/v1/agent/jobs/{id}/caches/lookup");
    let reserve = format!("/api/v1/agent/jobs/{id}/caches");

    // Bad input: 400 naming the field.
    for (body, field) in [
        (json!({"keys": [], "version": VERSION}), "keys"),
        (json!({"keys": ["a", "b,c"], "version": VERSION}), "keys[1]"),
        (json!({"keys": ["a"], "version": "../x"}), "version"),
        (json!({"keys": [""], "version": VERSION}), "keys[0]"),
        (json!({"keys": ["x".repeat(513)], "version": VERSION}), "keys[0]"),
    ] {
        let (status, reply) = agent.call(&lookup, body.clone()).await;
        assert_eq!((status, error(&reply).starts_with(field)), (400, true), "{body} -> {reply}");
    }
    let resp = agent.post_raw(&lookup, "{not json").await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.expect("body").contains("request body"));
    let (status, reply) = agent.call(&reserve, json!({"key": "a,b", "version": VERSION})).await;
    assert_eq!((status, error(&reply).starts_with("key")), (400, true), "{reply}");

    // Reserve: first writer wins; nothing visible before the commit.
    let (status, first) = agent.call(&reserve, json!({"key": "deps-1", "version": VERSION})).await;
    assert_eq!(status, 201, "{first}");
    // Another job (of another run of the same ref) finds it taken; the same job (a retried
    // attempt) gets its own reservation back.
    let (agent2, job2) = server.leased("d2").await;
    let reserve2 = format!("/api/v1/agent/jobs/{}/caches", job2.job_id);
    let (status, reply) = agent2.call(&reserve2, json!({"key": "deps-1", "version": VERSION})).await;
    assert_eq!(status, 409, "{reply}");
    let (status, again) = agent.call(&reserve, json!({"key": "deps-1", "version": VERSION})).await;
    assert_eq!((status, &again["id"]), (201, &first["id"]));
    let commit = format!("/api/v1/agent/jobs/{id}/caches/{}/commit", first["id"]);
    let archive = b"pretend this is a tar".as_slice();
    let (status, reply) = agent.call(&commit, json!({"digest": Digest::of(archive).to_string(), "size": archive.len()})).await;
    assert_eq!((status, error(&reply).starts_with("digest")), (400, true), "not uploaded: {reply}");
    let (status, reply) = agent.call(&commit, json!({"digest": "sha256:nope", "size": 1})).await;
    assert_eq!((status, error(&reply).starts_with("digest")), (400, true), "{reply}");
    assert_eq!(agent.call(&lookup, json!({"keys": ["deps-1"], "version": VERSION})).await.0, 204);
    let digest = agent.put_blob(id, archive).await;
    let (status, reply) = agent.call(&commit, json!({"digest": digest.to_string(), "size": 3})).await;
    assert_eq!((status, error(&reply).starts_with("size")), (400, true), "{reply}");
    // Another agent may not use the job's routes.
    let other = Agent::new(&server.url).await;
    assert_eq!(other.call(&commit, json!({"digest": digest.to_string(), "size": archive.len()})).await.0, 409);
    assert_eq!(other.call(&lookup, json!({"keys": ["deps-1"], "version": VERSION})).await.0, 409);
    let (status, reply) = agent.call(&commit, json!({"digest": digest.to_string(), "size": archive.len()})).await;
    assert_eq!(status, 201, "{reply}");
    // Immutable: a second commit is refused.
    let other_archive = agent.put_blob(id, b"other").await;
    assert_eq!(agent.call(&commit, json!({"digest": other_archive.to_string(), "size": 5})).await.0, 409);

    let (status, found) = agent.call(&lookup, json!({"keys": ["deps-2", "deps-"], "version": VERSION})).await;
    assert_eq!(status, 200);
    assert_eq!((found["key"].as_str(), found["digest"].as_str()), (Some("deps-1"), Some(digest.to_string().as_str())));
    assert_eq!(agent.call(&lookup, json!({"keys": ["deps-1"], "version": "other"})).await.0, 204, "another version");
    let listed = server.state.db().repository_by_name("team/app").await.expect("db").expect("repo");
    assert_eq!(server.state.db().caches(listed.id, None, None).await.expect("list").len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn the_size_limit_evicts_the_least_recently_used_entry_and_refuses_larger_archives() {
    let server = Server::start(100).await;
    let (agent, job) = server.leased("d1").await;
    let id = job.job_id;
    let lookup = format!("/api/v1/agent/jobs/{id}/caches/lookup");
    let a = [b'a'; 40];
    let b = [b'b'; 40];
    let c = [b'c'; 40];
    assert_eq!(agent.save(id, "a", &a).await, 201);
    assert_eq!(agent.save(id, "b", &b).await, 201);
    // Using a makes b the least recently used.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(agent.call(&lookup, json!({"keys": ["a"], "version": VERSION})).await.0, 200);
    assert_eq!(agent.save(id, "c", &c).await, 201);
    assert_eq!(agent.call(&lookup, json!({"keys": ["b"], "version": VERSION})).await.0, 204, "b evicted");
    assert_eq!(agent.call(&lookup, json!({"keys": ["a"], "version": VERSION})).await.0, 200);
    assert_eq!(agent.call(&lookup, json!({"keys": ["c"], "version": VERSION})).await.0, 200);
    let blobs = server.state.db().repository_by_name("team/app").await.expect("db").expect("repo");
    assert_eq!(server.state.db().caches(blobs.id, None, None).await.expect("list").len(), 2);
    let head = reqwest::Client::new()
        .head(format!("{}{}", server.url, protocol::paths::agent_blob(id, &Digest::of(&b).to_string())))
        .bearer_auth(&agent.token)
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 404, "b's archive removed");
    // Over the limit on its own: refused, nothing kept.
    assert_eq!(agent.save(id, "huge", &[b'h'; 101]).await, 413);
    assert_eq!(agent.call(&lookup, json!({"keys": ["huge"], "version": VERSION})).await.0, 204);
    let (status, _) = agent.call(&format!("/api/v1/agent/jobs/{id}/caches"), json!({"key": "huge", "version": VERSION})).await;
    assert_eq!(status, 201, "the refused reservation is gone");
    server.stop().await;
}

#[test]
fn the_size_limit_comes_from_the_config_file() {
    let env = |_: &str| None;
    assert_eq!(ServerConfig::default().cache_size_limit, 10 << 30);
    let c = server::config::parse("[server]\ncache_size_limit = \"512MiB\"\n", "slipway.toml", &env).expect("valid");
    assert_eq!(c.server.cache_size_limit, 512 << 20);
    let c = server::config::parse("[server]\ncache_size_limit = \"2GB\"\n", "slipway.toml", &env).expect("valid");
    assert_eq!(c.server.cache_size_limit, 2_000_000_000);
    for bad in ["lots", "10 parsecs", "-1GiB", "99999999999TiB"] {
        let e = server::config::parse(&format!("[server]\ncache_size_limit = \"{bad}\"\n"), "slipway.toml", &env).expect_err(bad);
        assert!(e.to_string().starts_with("slipway.toml: error: server.cache_size_limit:"), "{e}");
    }
}
