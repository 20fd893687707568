//! Environments managed through the API on a real server: only admins create, change and
//! delete them (and their secrets and variables), every change is in the audit trail, bad
//! input is a 4xx naming the field, the configuration file's environments are read-only, and
//! an environment created through the API gates a job (its reviewer must approve; its secret
//! reaches the job only then) without a restart — the embedded agent runs the jobs on this
//! host, the repository is served by a real `git daemon`.

mod common;

mod environments_api {
    use std::time::Duration;

    use reqwest::StatusCode;
    use serde_json::{Value, json};
    use server::config::{Config, Forge, RepositoryConfig, ServerConfig, User};
    use server::environments::EnvironmentConfig;
    use server::{AppState, Change, Options};
    use tokio::sync::broadcast;
    use tokio::task::JoinSet;
    use tokio_util::sync::CancellationToken;

    const WORKFLOW: &str = r#"name: Deliver
on: push
jobs:
  production:
    environment: production
    runs-on: linux
    steps:
      - env:
          KEY: ${{ secrets.DEPLOY_KEY }}
          REGION: ${{ vars.REGION }}
        run: |
          test -n "$KEY" && echo "key $KEY, region $REGION"
"#;

    fn user(name: &str, role: &str, groups: &[&str]) -> User {
        User {
            name: name.to_owned(),
            token: format!("{name}-token"),
            role: role.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    struct Server {
        url: String,
        state: AppState,
        changes: broadcast::Receiver<Change>,
        stop: CancellationToken,
        tasks: JoinSet<Result<(), server::ServerError>>,
        _data: tempfile::TempDir,
    }

    async fn start(clone_url: &str) -> Server {
        start_on(clone_url, None, true).await
    }

    /// A server on `database` (`None`: SQLite in its data directory).
    async fn start_on(clone_url: &str, database: Option<String>, embedded_agent: bool) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let config = Config {
            server: ServerConfig {
                external_url: "https://ci.example.com".to_owned(),
                lease_ttl: Duration::from_secs(30),
                webhook_body_limit: 64 * 1024,
                // Replicas share the key that seals secrets.
                secret_key: Some("11".repeat(32)),
                ..ServerConfig::default()
            },
            users: vec![
                user("root", "admin", &[]),
                user("alice", "maintainer", &["ops"]),
                user("bob", "maintainer", &[]),
                user("victor", "viewer", &[]),
            ],
            repositories: vec![RepositoryConfig {
                name: "team/app".into(),
                clone_url: clone_url.into(),
                forge: Forge::Generic,
                forge_api: None,
                forge_token: None,
                webhook_secret: Some("s".into()),
                poll_interval: None,
                secrets: Default::default(),
                vars: Default::default(),
            }],
            environments: vec![EnvironmentConfig {
                repository: None,
                name: "from-file".into(),
                reviewers: vec!["alice".into()],
                required_approvals: 1,
                allow_self_approval: false,
                wait_timer: Duration::ZERO,
                timeout: server::environments::DEFAULT_TIMEOUT,
                branches: vec![],
                tags: vec![],
                secrets: Default::default(),
                vars: Default::default(),
                url: None,
            }],
            ..Config::default()
        };
        let data = test_support::tempdir();
        let mut options = Options::new(data.path().to_owned(), config);
        options.database_url = database;
        options.embedded_agent = embedded_agent;
        let state = AppState::new(options).await.expect("server state");
        let changes = state.subscribe();
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(server::run(listener, state.clone(), stop.clone()));
        Server {
            url,
            state,
            changes,
            stop,
            tasks,
            _data: data,
        }
    }

    impl Server {
        async fn stop(mut self) {
            self.stop.cancel();
            while let Some(r) = self.tasks.join_next().await {
                r.expect("server task").expect("server ran");
            }
        }

        async fn call(
            &self,
            method: reqwest::Method,
            path: &str,
            who: &str,
            body: Option<Value>,
        ) -> (StatusCode, Value) {
            let mut req = reqwest::Client::new()
                .request(method, format!("{}{path}", self.url))
                .bearer_auth(format!("{who}-token"));
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.expect("request");
            let status = resp.status();
            let text = resp.text().await.expect("body");
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }

        async fn put(&self, path: &str, who: &str, body: Value) -> (StatusCode, Value) {
            self.call(reqwest::Method::PUT, path, who, Some(body)).await
        }

        async fn get(&self, path: &str, who: &str) -> (StatusCode, Value) {
            self.call(reqwest::Method::GET, path, who, None).await
        }

        async fn delete(&self, path: &str, who: &str) -> (StatusCode, Value) {
            self.call(reqwest::Method::DELETE, path, who, None).await
        }

        /// Creates `production` through the API (as root) with the reviewer `reviewer`, the
        /// secret `DEPLOY_KEY=api-key` and the variable `REGION=region`.
        async fn define_production(&self, reviewer: &str, region: &str) {
            let (status, body) = self
                .put(
                    "/api/v1/environments/production",
                    "root",
                    json!({"reviewers": [reviewer]}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            for (kind, name, value) in [
                ("secrets", "DEPLOY_KEY", "api-key"),
                ("variables", "REGION", region),
            ] {
                let (status, body) = self
                    .put(
                        &format!("/api/v1/environments/production/{kind}/{name}"),
                        "root",
                        json!({ "value": value }),
                    )
                    .await;
                assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
            }
        }

        async fn push(&self, sha: &str, actor: &str) -> i64 {
            let runs = super::common::push_main(&self.state, "team/app", sha, actor).await;
            assert_eq!(runs.len(), 1, "{runs:?}");
            runs[0]
        }

        /// Waits until the run's deployment to production satisfies `pred`.
        async fn deployment_until(&mut self, run: i64, pred: impl Fn(&Value) -> bool) -> Value {
            loop {
                let (_, list) = self.get("/api/v1/deployments?limit=100", "root").await;
                if let Some(d) = list
                    .as_array()
                    .and_then(|l| l.iter().find(|d| d["run_id"] == run))
                    && pred(d)
                {
                    return d.clone();
                }
                super::common::next_change(&mut self.changes, &list).await;
            }
        }

        async fn finished(&mut self, run: i64) -> store::sql::Run {
            super::common::finished_within(&self.state, &mut self.changes, run).await
        }

        async fn audit_actions(&self) -> Vec<(String, String)> {
            let (status, list) = self.get("/api/v1/audit?limit=200", "root").await;
            assert_eq!(status, StatusCode::OK, "{list}");
            list.as_array()
                .expect("audit list")
                .iter()
                .map(|e| {
                    (
                        e["actor"].as_str().unwrap_or("").to_owned(),
                        e["action"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        }
    }

    fn error(v: &Value) -> &str {
        v["error"].as_str().unwrap_or("")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_admins_manage_environments_and_every_change_is_audited() {
        let git = test_support::git::GitDaemon::start();
        let clone_url = git.create_repo("app");
        let s = start(&clone_url).await;
        let rules = json!({"reviewers": ["alice", "ops"], "wait_timer": "5s", "branches": ["main"], "url": "https://prod.example"});

        for who in ["victor", "alice"] {
            let (status, body) = s
                .put("/api/v1/environments/production", who, rules.clone())
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
        }
        let (status, _) = reqwest::Client::new()
            .put(format!("{}/api/v1/environments/production", s.url))
            .json(&rules)
            .send()
            .await
            .map(|r| (r.status(), ()))
            .expect("request");
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let (status, env) = s
            .put("/api/v1/environments/production", "root", rules.clone())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{env}");
        assert_eq!(env["managed_by"], "api");
        assert_eq!(env["updated_by"], "root");
        assert_eq!(env["reviewers"], json!(["alice", "ops"]));
        assert_eq!(
            (&env["required_approvals"], &env["wait_timer_ms"]),
            (&json!(1), &json!(5000))
        );
        let (status, env) = s
            .put(
                "/api/v1/environments/production",
                "root",
                json!({"reviewers": ["alice"], "required_approvals": 1, "timeout": "1h"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{env}");
        assert_eq!(
            (&env["wait_timer_ms"], &env["timeout_ms"], &env["branches"]),
            (&json!(0), &json!(3_600_000), &json!([]))
        );

        // Secrets and variables: admins only; secret values never come back.
        let (status, _) = s
            .put(
                "/api/v1/environments/production/secrets/DEPLOY_KEY",
                "alice",
                json!({"value": "x"}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = s
            .put(
                "/api/v1/environments/production/secrets/DEPLOY_KEY",
                "root",
                json!({"value": "api-key"}),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        let (status, body) = s
            .put(
                "/api/v1/environments/production/variables/REGION",
                "root",
                json!({"value": "eu-1"}),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        let (status, env) = s.get("/api/v1/environments/production", "victor").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(env["secrets"], json!(["DEPLOY_KEY"]));
        assert_eq!(env["vars"], json!({"REGION": "eu-1"}));
        assert!(!env.to_string().contains("api-key"), "{env}");
        let (_, list) = s.get("/api/v1/environments", "victor").await;
        let names: Vec<(&str, &str)> = list
            .as_array()
            .expect("list")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or(""),
                    e["managed_by"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert!(names.contains(&("production", "api")), "{names:?}");
        assert!(names.contains(&("from-file", "config")), "{names:?}");

        // Bad input: a 4xx that names the field; nothing saved.
        for (path, body, expect) in [
            (
                "/api/v1/environments/production",
                json!({"wait_timer": "soon"}),
                "request field `wait_timer`",
            ),
            (
                "/api/v1/environments/production",
                json!({"required_approvals": 3}),
                "request field `required_approvals`",
            ),
            (
                "/api/v1/environments/production",
                json!({"reviewer": ["alice"]}),
                "unknown field `reviewer`",
            ),
            (
                "/api/v1/environments/production",
                json!({"url": "ftp://x"}),
                "request field `url`",
            ),
            (
                "/api/v1/environments/bad%20name",
                json!({}),
                "environment name `bad name`",
            ),
            (
                "/api/v1/environments/production/secrets/1BAD",
                json!({"value": "v"}),
                "`1BAD` is not a valid name",
            ),
        ] {
            let (status, body) = s.put(path, "root", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert!(error(&body).contains(expect), "{path}: {body}");
        }
        let (_, env) = s.get("/api/v1/environments/production", "root").await;
        assert_eq!(env["timeout_ms"], json!(3_600_000), "unchanged: {env}");

        // Unknown things are 404; the configuration file's environment is read-only (409).
        let (status, body) = s
            .put(
                "/api/v1/environments/production?repository=team/nope",
                "root",
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(error(&body).contains("team/nope"), "{body}");
        let (status, _) = s.delete("/api/v1/environments/nowhere", "root").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = s.get("/api/v1/environments/nowhere", "root").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = s
            .put(
                "/api/v1/environments/nowhere/variables/X",
                "root",
                json!({"value": "v"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = s
            .delete("/api/v1/environments/production/secrets/NOPE", "root")
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = s
            .put("/api/v1/environments/from-file", "root", json!({}))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(error(&body).contains("configuration file"), "{body}");
        let (status, _) = s.delete("/api/v1/environments/from-file", "root").await;
        assert_eq!(status, StatusCode::CONFLICT);

        // A repository-scoped one next to the one for every repository.
        let (status, env) = s
            .put(
                "/api/v1/environments/production?repository=team/app",
                "root",
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{env}");
        assert_eq!(
            (&env["repository"], &env["required_approvals"]),
            (&json!("team/app"), &json!(0))
        );

        // Deleting takes the secrets and variables with it.
        let (status, _) = s
            .delete("/api/v1/environments/production/variables/REGION", "root")
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = s.delete("/api/v1/environments/production", "alice").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = s.delete("/api/v1/environments/production", "root").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(
            s.state
                .db()
                .environment_secrets()
                .await
                .expect("secrets")
                .is_empty()
        );

        let actions = s.audit_actions().await;
        for expect in [
            "environment.created",
            "environment.updated",
            "environment.secret.saved",
            "environment.variable.saved",
            "environment.variable.deleted",
            "environment.deleted",
        ] {
            assert!(
                actions.iter().any(|(a, x)| a == "root" && x == expect),
                "{expect} by root missing: {actions:?}"
            );
        }
        assert!(
            !actions.iter().any(|(a, _)| a == "alice" || a == "victor"),
            "refused requests changed nothing: {actions:?}"
        );
        s.stop().await;
    }

    /// A fresh database on the test PostgreSQL server.
    fn fresh_postgres() -> String {
        super::common::fresh_postgres("slipway_environments")
    }

    /// A repository with the workflow; returns the daemon (keep it) and the commit.
    fn repository() -> (test_support::git::GitDaemon, String, String) {
        let git = test_support::git::GitDaemon::start();
        let clone_url = git.create_repo("app");
        let tree = git.work_tree("app");
        tree.write(".slipway/workflows/deliver.yml", WORKFLOW)
            .write("VERSION", "1");
        let sha = tree.commit("version 1");
        tree.push("main");
        (git, clone_url, sha)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_environment_created_through_the_api_gates_a_job_until_its_reviewer_approves() {
        let (_git, clone_url, sha) = repository();
        for database in [None, Some(fresh_postgres())] {
            eprintln!("database: {database:?}");
            gates_a_job(&clone_url, &sha, database).await;
        }
    }

    async fn gates_a_job(clone_url: &str, sha: &str, database: Option<String>) {
        let sha = sha.to_owned();
        let mut s = start_on(clone_url, database, true).await;

        // No rules yet: production is Continuous Deployment, without the secret the step fails.
        let run = s.push(&sha, "bob").await;
        let r = s.finished(run).await;
        assert_eq!(
            r.conclusion,
            Some(store::sql::Conclusion::Failure),
            "no secret yet"
        );

        // Created through the API, no restart: the next run waits for alice (group ops).
        s.define_production("ops", "eu-1").await;
        let run = s.push(&sha, "bob").await;
        let d = s.deployment_until(run, |d| d["status"] == "waiting").await;
        assert!(
            d["reason"]
                .as_str()
                .unwrap_or("")
                .contains("waiting for 1 of 1 approval by ops"),
            "{d}"
        );
        assert_eq!(d["reviewers"], json!(["ops"]));
        let jobs = s
            .state
            .db()
            .jobs(store::sql::RunId(run))
            .await
            .expect("jobs");
        assert_eq!(jobs[0].status, store::sql::JobStatus::Pending, "gated");

        // bob is no reviewer; alice (in ops) approves and the job runs with the secret.
        let (status, body) = s
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/runs/{run}/approve"),
                "bob",
                Some(json!({"environment": "production"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = s
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/runs/{run}/approve"),
                "alice",
                Some(json!({"environment": "production", "comment": "ship it"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let r = s.finished(run).await;
        assert_eq!(r.conclusion, Some(store::sql::Conclusion::Success), "{r:?}");
        let d = s.deployment_until(run, |d| d["status"] == "success").await;
        assert_eq!(d["approvers"], json!(["alice"]));
        let (_, log) = s.get(&format!("/api/v1/runs/{run}/logs"), "root").await;
        let log = log.to_string();
        // Masked as `***` only when it is exactly the environment's secret.
        assert!(log.contains("key ***, region eu-1"), "{log}");

        // Lowering the rules releases a waiting deployment at once.
        let run = s.push(&sha, "bob").await;
        s.deployment_until(run, |d| d["status"] == "waiting").await;
        let (status, body) = s
            .put("/api/v1/environments/production", "root", json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let r = s.finished(run).await;
        assert_eq!(r.conclusion, Some(store::sql::Conclusion::Success), "{r:?}");
        s.stop().await;
    }

    /// Two servers sharing one PostgreSQL database: rules and a secret defined through one
    /// replica's API gate (and reach) a job the other replica schedules, without a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_environment_defined_on_one_replica_gates_jobs_on_another() {
        let (_git, clone_url, sha) = repository();
        let database = fresh_postgres();
        let a = start_on(&clone_url, Some(database.clone()), false).await;
        let mut b = start_on(&clone_url, Some(database), true).await;
        a.define_production("alice", "eu-2").await;
        // (Nothing on b has read the environments since it started: its gate must.)
        let run = b.push(&sha, "bob").await;
        let d = b.deployment_until(run, |d| d["status"] == "waiting").await;
        assert_eq!(d["reviewers"], json!(["alice"]), "{d}");
        let (status, body) = b
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/runs/{run}/approve"),
                "alice",
                Some(json!({"environment": "production"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let r = b.finished(run).await;
        assert_eq!(r.conclusion, Some(store::sql::Conclusion::Success), "{r:?}");
        let (_, log) = b.get(&format!("/api/v1/runs/{run}/logs"), "root").await;
        assert!(log.to_string().contains("key ***, region eu-2"), "{log}");
        let (_, env) = b.get("/api/v1/environments/production", "root").await;
        assert_eq!(
            env["managed_by"], "api",
            "b's API shows a's environment: {env}"
        );
        a.stop().await;
        b.stop().await;
    }
}
