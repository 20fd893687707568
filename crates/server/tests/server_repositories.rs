//! Repositories, secrets and variables through the API: a repository registered at run time
//! gets webhooks, runs and commit statuses without a restart; secrets (repository and
//! organisation level) reach the job masked and are stored encrypted — the database file
//! holds none of the plaintext; bad requests name the field; only admins may change anything.

mod common;

use common::*;
use protocol::{RepositoryRequest, SecretInfo, SettingValue, Variable};
use server::config::{OrganizationConfig, User};
use store::sql::Conclusion;
use test_support::git::GitDaemon;

const ZERO: &str = "0000000000000000000000000000000000000000";
const REPO_SECRET: &str = "repo-secret-Zq81";
const ORG_SECRET: &str = "org-secret-Wp44";
const FORGE_SECRET_TOKEN: &str = "forge-token-Kx07";
const HOOK_SECRET: &str = "hook-secret-Jm52";

fn users() -> Vec<User> {
    vec![
        User { name: "root".into(), token: "root-token".into(), role: "admin".into(), groups: vec![] },
        User { name: "mia".into(), token: "maintainer-token".into(), role: "maintainer".into(), groups: vec![] },
    ]
}

struct Api {
    url: String,
    http: reqwest::Client,
}

impl Api {
    async fn put<T: serde::Serialize>(&self, path: &str, token: &str, body: &T) -> reqwest::Response {
        self.http.put(format!("{}{path}", self.url)).bearer_auth(token).json(body).send().await.expect("put")
    }
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.url)).bearer_auth("root-token").send().await.expect("get")
    }
    async fn delete(&self, path: &str) -> reqwest::Response {
        self.http.delete(format!("{}{path}", self.url)).bearer_auth("root-token").send().await.expect("delete")
    }
    async fn set(&self, path: &str, value: &str) -> u16 {
        self.put(path, "root-token", &SettingValue { value: value.into() }).await.status().as_u16()
    }
}

async fn error_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: protocol::ErrorBody = resp.json().await.expect("error json");
    (status, body.error)
}

#[tokio::test]
async fn a_repository_registered_through_the_api_builds_with_encrypted_secrets() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("api-app");
    let tree = git.work_tree("api-app");
    tree.write(
        ".gitea/workflows/ci.yml",
        "name: ci\non: push\njobs:\n  show:\n    runs-on: x\n    steps:\n      - run: |\n          echo \"repo=${{ secrets.TOKEN }} org=${{ secrets.SHARED }}\"\n          printf %s \"${{ secrets.TOKEN }}\" | sha256sum\n          printf %s \"${{ secrets.SHARED }}\" | sha256sum\n          echo \"region=${{ vars.REGION }} tier=${{ vars.TIER }} team=${{ vars.TEAM }}\"\n",
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let mut forge = StandInForge::start(0).await;
    let mut server = TestServer::start(ServerSetup {
        users: users(),
        organizations: vec![OrganizationConfig {
            name: "team".into(),
            secrets: Default::default(),
            vars: [("TEAM".to_owned(), "from-config".to_owned()), ("TIER".to_owned(), "org-tier".to_owned())].into(),
        }],
        ..ServerSetup::default()
    })
    .await;
    let api = Api { url: server.url.clone(), http: reqwest::Client::new() };
    let request = RepositoryRequest {
        name: None,
        clone_url: clone_url.clone(),
        forge: "gitea".into(),
        forge_api: Some(format!("{}/api/v1", forge.url)),
        forge_token: Some(FORGE_SECRET_TOKEN.into()),
        webhook_secret: Some(HOOK_SECRET.into()),
        poll_interval: None,
    };

    // Only admins register repositories; bad requests name the field.
    let path = "/api/v1/repositories/team/api-app";
    assert_eq!(api.put(path, "maintainer-token", &request).await.status(), 403);
    let bad = RepositoryRequest { forge: "svn".into(), ..request.clone() };
    let (status, error) = error_of(api.put(path, "root-token", &bad).await).await;
    assert_eq!(status, 400);
    assert!(error.contains("request field `forge`") && error.contains("svn"), "{error}");
    let bad = RepositoryRequest { poll_interval: Some("soon".into()), ..request.clone() };
    let (status, error) = error_of(api.put(path, "root-token", &bad).await).await;
    assert!(status == 400 && error.contains("poll_interval"), "{error}");
    let resp = api.http.put(format!("{}{path}", server.url)).bearer_auth("root-token").body("{\"clone_url\": 1}").send().await.expect("put");
    let (status, error) = error_of(resp).await;
    assert!(status == 400 && error.starts_with("request body:"), "{error}");

    let resp = api.put(path, "root-token", &request).await;
    assert_eq!(resp.status(), 201);
    let shown: protocol::Repository = resp.json().await.expect("repository json");
    assert_eq!((shown.has_forge_token, shown.has_webhook_secret, shown.managed_by.as_str()), (true, true, "api"));
    let listed: Vec<protocol::Repository> = api.get("/api/v1/repositories").await.json().await.expect("list");
    assert_eq!(listed, vec![shown.clone()]);
    let text = api.get(path).await.text().await.expect("text");
    assert!(!text.contains(FORGE_SECRET_TOKEN) && !text.contains(HOOK_SECRET), "write-only: {text}");

    // Secrets and variables, repository and organisation level.
    assert_eq!(api.set("/api/v1/repositories/team/api-app/secrets/TOKEN", REPO_SECRET).await, 201);
    assert_eq!(api.set("/api/v1/repositories/team/api-app/secrets/TOKEN", REPO_SECRET).await, 204, "replaced");
    assert_eq!(api.set("/api/v1/organizations/team/secrets/SHARED", ORG_SECRET).await, 201);
    assert_eq!(api.set("/api/v1/organizations/team/secrets/TOKEN", "org-token-loses").await, 201);
    assert_eq!(api.set("/api/v1/organizations/team/variables/REGION", "org-region").await, 201);
    assert_eq!(api.set("/api/v1/repositories/team/api-app/variables/REGION", "eu-west").await, 201);
    assert_eq!(api.set("/api/v1/repositories/team/api-app/secrets/GITHUB_TOKEN", "x").await, 400);
    assert_eq!(api.set("/api/v1/repositories/team/nope/secrets/X", "x").await, 404);
    let resp = api.put("/api/v1/organizations/team/secrets/X", "maintainer-token", &SettingValue { value: "x".into() }).await;
    assert_eq!(resp.status(), 403);
    let secrets: Vec<SecretInfo> = api.get("/api/v1/repositories/team/api-app/secrets").await.json().await.expect("secrets");
    assert_eq!(secrets.iter().map(|s| (s.name.as_str(), s.source.as_str())).collect::<Vec<_>>(), [("TOKEN", "api")]);
    let raw = api.get("/api/v1/organizations/team/secrets").await.text().await.expect("text");
    assert!(!raw.contains(ORG_SECRET), "secret values are never returned: {raw}");
    let vars: Vec<Variable> = api.get("/api/v1/organizations/team/variables").await.json().await.expect("vars");
    let vars: Vec<_> = vars.iter().map(|v| (v.name.as_str(), v.value.as_str(), v.source.as_str())).collect();
    assert_eq!(vars, [("TEAM", "from-config", "config"), ("TIER", "org-tier", "config"), ("REGION", "org-region", "api")]);

    // A webhook for it, signed with the secret given through the API: a run, statuses sent
    // with the token given through the API.
    let body = gitea_push("team/api-app", &clone_url, "refs/heads/main", ZERO, &sha, &[]);
    let wrong = post_gitea(&server.url, "push", "d0", body.to_string().as_bytes(), SECRET).await;
    assert_eq!(wrong.status(), 401);
    let run = created(post_gitea(&server.url, "push", "d1", body.to_string().as_bytes(), HOOK_SECRET).await).await[0];
    let done = server.finished(run).await;
    assert_eq!(done.conclusion, Some(Conclusion::Success));
    let log = api.get(&format!("/api/v1/runs/{run}/logs")).await.text().await.expect("log text");
    assert!(log.contains("repo=*** org=***"), "secrets are masked: {log}");
    // (The workflow must not hold the plaintext: it is stored with the run.)
    let sha256 = |s: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(s.as_bytes()))
    };
    assert!(log.contains(&sha256(REPO_SECRET)) && log.contains(&sha256(ORG_SECRET)), "the job got both secrets: {log}");
    assert!(log.contains("region=eu-west tier=org-tier team=from-config"), "repository variables win: {log}");
    assert!(!log.contains(REPO_SECRET) && !log.contains(ORG_SECRET), "{log}");
    let statuses = forge.wait_for(2).await;
    assert_eq!(statuses[0].path, format!("/api/v1/repos/team/api-app/statuses/{sha}"));
    assert_eq!(statuses[1].authorization.as_deref(), Some(format!("token {FORGE_SECRET_TOKEN}").as_str()));
    assert_eq!(statuses[1].body["state"], "success");

    // At rest: the database file (and its WAL) hold none of the plaintext.
    let data = server.stop_keeping_data().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(data.path()).expect("data dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if name.starts_with("slipway.db") {
            bytes.extend(std::fs::read(&path).expect("db file"));
        }
    }
    assert!(bytes.len() > 4096, "read the database");
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    for plain in [REPO_SECRET, ORG_SECRET, FORGE_SECRET_TOKEN, HOOK_SECRET, "org-token-loses"] {
        assert!(!contains(plain), "{plain} is stored in plaintext");
    }
    assert!(contains("eu-west"), "variables are not secret (the scan does see stored text)");
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(data.path().join("secret.key")).expect("key file").permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);

    // After a restart everything opens again with the key file; deleting stops webhooks.
    let server = TestServer::start_in(ServerSetup { users: users(), ..ServerSetup::default() }, data).await;
    let again = server.state.repository("team/api-app").expect("still registered");
    assert_eq!(again.secrets.get("TOKEN").map(String::as_str), Some(REPO_SECRET));
    assert_eq!(again.webhook_secret.as_deref(), Some(HOOK_SECRET));
    let api = Api { url: server.url.clone(), http: reqwest::Client::new() };
    assert_eq!(api.delete("/api/v1/repositories/team/api-app/secrets/TOKEN").await.status(), 204);
    assert_eq!(api.delete("/api/v1/repositories/team/api-app/secrets/TOKEN").await.status(), 404);
    assert_eq!(
        server.state.repository("team/api-app").expect("repo").secrets.get("TOKEN").map(String::as_str),
        Some("org-token-loses"),
        "the organisation's TOKEN shows through"
    );
    assert_eq!(api.delete(path).await.status(), 204);
    let gone = post_gitea(&server.url, "push", "d2", body.to_string().as_bytes(), HOOK_SECRET).await;
    assert_eq!(gone.status(), 404);
    assert_eq!(api.get(path).await.status(), 404);
    server.stop().await;
    forge.stop().await;
}

#[tokio::test]
async fn repositories_from_the_config_file_are_read_only_through_the_api() {
    let server = TestServer::start(ServerSetup {
        users: users(),
        embedded_agent: false,
        repositories: vec![repo_config("team/app", "git://127.0.0.1:1/app.git", server::config::Forge::Gitea, None)],
        ..ServerSetup::default()
    })
    .await;
    let api = Api { url: server.url.clone(), http: reqwest::Client::new() };
    let shown: protocol::Repository = api.get("/api/v1/repositories/team/app").await.json().await.expect("json");
    assert_eq!(shown.managed_by, "config");
    let req = RepositoryRequest { clone_url: "git://x/y.git".into(), forge: "gitea".into(), ..RepositoryRequest::default() };
    let (status, error) = error_of(api.put("/api/v1/repositories/team/app", "root-token", &req).await).await;
    assert!(status == 409 && error.contains("configuration file"), "{error}");
    assert_eq!(api.delete("/api/v1/repositories/team/app").await.status(), 409);
    // POST needs a name, and refuses an existing one.
    let resp = api.http.post(format!("{}/api/v1/repositories", server.url)).bearer_auth("root-token").json(&req).send().await.expect("post");
    assert_eq!(resp.status(), 400);
    let named = RepositoryRequest { name: Some("team/new".into()), ..req.clone() };
    let post = |r: RepositoryRequest| {
        api.http.post(format!("{}/api/v1/repositories", server.url)).bearer_auth("root-token").json(&r).send()
    };
    assert_eq!(post(named.clone()).await.expect("post").status(), 201);
    assert_eq!(post(named).await.expect("post").status(), 409);
    let bad = RepositoryRequest { name: Some("no-slash".into()), ..req };
    let (status, error) = error_of(post(bad).await.expect("post")).await;
    assert!(status == 400 && error.contains("request field `name`"), "{error}");
    server.stop().await;
}
