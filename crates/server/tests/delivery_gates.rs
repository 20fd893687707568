//! Environments' gates through a real server (its embedded agent running the jobs on this
//! host) and a real `git daemon`: a job with `environment: production` waits for a reviewer;
//! refused decisions (not a reviewer, the pusher approving their own run) are 403 and in the
//! audit trail; an approval by a group member releases the job with the environment's secrets;
//! the deployment records carry commit, digest, pusher and approver; the forge gets GitHub
//! deployment requests (recorded by a stand-in forge); a waiting deploy survives a server
//! restart; a rejection fails the run; a timeout rejects; rollback re-runs an earlier
//! deployment's job through the same gate.

mod common;

/// Test names start with `delivery::` (so `cargo nextest run delivery` selects them).
mod delivery {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
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
  build:
    runs-on: linux
    outputs:
      digest: ${{ steps.d.outputs.digest }}
    steps:
      - uses: actions/checkout@v4
      - id: d
        run: echo "digest=sha256:$(sha256sum < VERSION | cut -d' ' -f1)" >> "$GITHUB_OUTPUT"
  staging:
    needs: build
    environment: staging
    runs-on: linux
    outputs:
      digest: ${{ steps.d.outputs.digest }}
    steps:
      - uses: actions/checkout@v4
      - id: d
        env:
          KEY: ${{ secrets.DEPLOY_KEY }}
        run: |
          if [ -z "$KEY" ]; then echo "staging has no production key"; else echo "LEAKED"; fi
          echo "digest=sha256:$(sha256sum < VERSION | cut -d' ' -f1)" >> "$GITHUB_OUTPUT"
  production:
    needs: staging
    environment:
      name: production
      url: https://prod.example/app
    runs-on: linux
    outputs:
      digest: ${{ steps.d.outputs.digest }}
    steps:
      - uses: actions/checkout@v4
      - id: d
        env:
          KEY: ${{ secrets.DEPLOY_KEY }}
          REGION: ${{ vars.REGION }}
          ROLLBACK: ${{ inputs.rollback-digest }}
        run: |
          test "$KEY" = "prod-key" && echo "key ok, region $REGION, rollback '$ROLLBACK'"
          echo "digest=sha256:$(sha256sum < VERSION | cut -d' ' -f1)" >> "$GITHUB_OUTPUT"
"#;

    // --- a stand-in GitHub that records deployment requests ----------------------------------------

    #[derive(Debug, Clone)]
    struct Recorded {
        method: String,
        path: String,
        authorization: Option<String>,
        body: Value,
    }

    #[derive(Clone, Default)]
    struct ForgeState {
        requests: Arc<Mutex<Vec<Recorded>>>,
    }

    async fn record(
        State(s): State<ForgeState>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> (StatusCode, axum::Json<Value>) {
        let rec = Recorded {
            method: method.to_string(),
            path: uri.path().to_owned(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        };
        let n = {
            let mut r = s.requests.lock().expect("lock");
            r.push(rec);
            r.len()
        };
        if uri.path().ends_with("/deployments") {
            (StatusCode::CREATED, axum::Json(json!({"id": 4000 + n})))
        } else {
            (StatusCode::CREATED, axum::Json(json!({})))
        }
    }

    async fn start_forge() -> (String, ForgeState, CancellationToken) {
        let state = ForgeState::default();
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await;
        });
        (url, state, stop)
    }

    // --- the server -------------------------------------------------------------------------------------

    fn user(name: &str, role: &str, groups: &[&str]) -> User {
        User {
            name: name.to_owned(),
            token: format!("{name}-token"),
            role: role.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn environments(timeout: Duration) -> Vec<EnvironmentConfig> {
        vec![
            EnvironmentConfig {
                repository: Some("team/app".into()),
                name: "staging".into(),
                reviewers: vec![],
                required_approvals: 0,
                allow_self_approval: false,
                wait_timer: Duration::ZERO,
                timeout,
                branches: vec![],
                tags: vec![],
                secrets: Default::default(),
                vars: Default::default(),
                url: None,
            },
            EnvironmentConfig {
                repository: Some("team/app".into()),
                name: "production".into(),
                reviewers: vec!["alice".into(), "ops".into()],
                required_approvals: 1,
                allow_self_approval: false,
                wait_timer: Duration::ZERO,
                timeout,
                branches: vec!["main".into()],
                tags: vec![],
                secrets: [("DEPLOY_KEY".to_owned(), "prod-key".to_owned())].into(),
                vars: [("REGION".to_owned(), "eu".to_owned())].into(),
                url: None,
            },
        ]
    }

    struct Server {
        url: String,
        state: AppState,
        changes: broadcast::Receiver<Change>,
        stop: CancellationToken,
        tasks: JoinSet<Result<(), server::ServerError>>,
        data: tempfile::TempDir,
    }

    async fn start(
        clone_url: &str,
        forge_api: &str,
        timeout: Duration,
        data: tempfile::TempDir,
    ) -> Server {
        start_with(clone_url, forge_api, environments(timeout), data).await
    }

    async fn start_with(
        clone_url: &str,
        forge_api: &str,
        environments: Vec<EnvironmentConfig>,
        data: tempfile::TempDir,
    ) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let config = Config {
            server: ServerConfig {
                external_url: "https://ci.example.com".to_owned(),
                agent_token: None,
                lease_ttl: Duration::from_secs(30),
                webhook_body_limit: 64 * 1024,
                ..ServerConfig::default()
            },
            users: vec![
                user("alice", "maintainer", &[]),
                user("bob", "maintainer", &["ops"]),
                user("mallory", "viewer", &[]),
            ],
            repositories: vec![RepositoryConfig {
                name: "team/app".into(),
                clone_url: clone_url.into(),
                forge: Forge::Github,
                forge_api: Some(forge_api.into()),
                forge_token: Some("gh-token".into()),
                webhook_secret: Some("s".into()),
                poll_interval: None,
                secrets: Default::default(),
                vars: Default::default(),
            }],
            environments,
            ..Config::default()
        };
        let mut options = Options::new(data.path().to_owned(), config);
        options.status_backoff = Duration::from_millis(10);
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
            data,
        }
    }

    impl Server {
        async fn stop(mut self) -> tempfile::TempDir {
            self.stop.cancel();
            while let Some(r) = self.tasks.join_next().await {
                r.expect("server task").expect("server ran");
            }
            self.data
        }

        async fn push(&self, sha: &str, actor: &str) -> i64 {
            let runs = super::common::push_main(&self.state, "team/app", sha, actor).await;
            assert_eq!(runs.len(), 1, "{runs:?}");
            runs[0]
        }

        /// Waits until `pred` holds for the deployments (newest first).
        async fn deployments_until(&mut self, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
            loop {
                let list = self.get("/api/v1/deployments?limit=100", "alice").await;
                let list = list.as_array().cloned().unwrap_or_default();
                if pred(&list) {
                    return list;
                }
                super::common::next_change(&mut self.changes, &list).await;
            }
        }

        async fn finished(&mut self, run: i64) -> store::sql::Run {
            super::common::finished_within(&self.state, &mut self.changes, run).await
        }

        async fn get(&self, path: &str, who: &str) -> Value {
            let resp = reqwest::Client::new()
                .get(format!("{}{path}", self.url))
                .bearer_auth(format!("{who}-token"))
                .send()
                .await
                .expect("GET");
            assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
            resp.json().await.expect("json")
        }

        async fn post(&self, path: &str, who: &str, body: Value) -> (StatusCode, Value) {
            let resp = reqwest::Client::new()
                .post(format!("{}{path}", self.url))
                .bearer_auth(format!("{who}-token"))
                .json(&body)
                .send()
                .await
                .expect("POST");
            let status = resp.status();
            (status, resp.json().await.unwrap_or(Value::Null))
        }

        async fn log(&self, run: i64) -> String {
            reqwest::Client::new()
                .get(format!("{}/api/v1/runs/{run}/logs", self.url))
                .bearer_auth("alice-token")
                .send()
                .await
                .expect("logs")
                .text()
                .await
                .expect("text")
        }
    }

    fn of<'a>(list: &'a [Value], env: &str, run: i64) -> Option<&'a Value> {
        list.iter()
            .find(|d| d["environment"] == env && d["run_id"] == run)
    }

    fn status_of(list: &[Value], env: &str, run: i64) -> String {
        of(list, env, run)
            .and_then(|d| d["status"].as_str())
            .unwrap_or("-")
            .to_owned()
    }

    struct Repo {
        _git: test_support::git::GitDaemon,
        tree: test_support::git::WorkTree,
        clone_url: String,
    }

    fn repo() -> Repo {
        let git = test_support::git::GitDaemon::start();
        let clone_url = git.create_repo("app");
        let tree = git.work_tree("app");
        Repo {
            _git: git,
            tree,
            clone_url,
        }
    }

    impl Repo {
        fn commit(&self, version: &str) -> String {
            self.tree
                .write(".slipway/workflows/deliver.yml", WORKFLOW)
                .write("VERSION", version);
            let sha = self.tree.commit(&format!("version {version}"));
            self.tree.push("main");
            sha
        }
    }

    impl Repo {
        fn commit_files(&self, files: &[(&str, &str)]) -> String {
            for (path, text) in files {
                self.tree.write(path, text);
            }
            let sha = self.tree.commit("change");
            self.tree.push("main");
            sha
        }
    }

    fn digest(version: &str) -> String {
        use sha2::Digest;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(version.as_bytes()))
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn production_waits_for_a_reviewer_and_records_who_decided() {
        let repo = repo();
        let (forge_url, forge, forge_stop) = start_forge().await;
        let mut s = start(
            &repo.clone_url,
            &forge_url,
            server::environments::DEFAULT_TIMEOUT,
            test_support::tempdir(),
        )
        .await;
        let sha = repo.commit("1.0\n");
        let run = s.push(&sha, "alice").await;

        let list = s
            .deployments_until(|l| status_of(l, "production", run) == "waiting")
            .await;
        assert_eq!(status_of(&list, "staging", run), "success", "{list:#?}");
        let staging = of(&list, "staging", run).expect("staging");
        assert_eq!(staging["digests"][0]["digest"], digest("1.0\n"));
        let prod = of(&list, "production", run).expect("production").clone();
        assert_eq!(prod["reviewers"], json!(["alice", "ops"]));
        assert_eq!(prod["pusher"], "alice");
        assert_eq!(prod["url"], "https://prod.example/app");
        assert!(
            prod["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("waiting for 1 of 1 approval by alice, ops"),
            "{prod}"
        );
        let env = s
            .get(
                "/api/v1/environments/production?repository=team/app",
                "mallory",
            )
            .await;
        assert_eq!(env["pending"][0]["status"], "waiting", "{env}");
        assert_eq!(
            env["secrets"],
            json!(["DEPLOY_KEY"]),
            "secret names only: {env}"
        );

        // Refused: not a reviewer; the pusher approving their own run. Both are logged.
        let (code, body) = s
            .post(
                &format!("/api/v1/runs/{run}/approve"),
                "mallory",
                json!({"environment": "production"}),
            )
            .await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("mallory is not a reviewer of production"),
            "{body}"
        );
        let (code, body) = s
            .post(
                &format!("/api/v1/runs/{run}/approve"),
                "alice",
                json!({"environment": "production"}),
            )
            .await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("pushed this run"),
            "{body}"
        );
        let (code, _) = s
            .post(
                &format!("/api/v1/runs/{run}/approve"),
                "bob",
                json!({"environment": "nowhere"}),
            )
            .await;
        assert_eq!(code, StatusCode::CONFLICT);

        // bob is in the `ops` group.
        let (code, body) = s
            .post(
                &format!("/api/v1/runs/{run}/approve"),
                "bob",
                json!({"environment": "production", "comment": "ship it"}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let r = s.finished(run).await;
        assert_eq!(
            r.conclusion,
            Some(store::sql::Conclusion::Success),
            "{r:?}\n{}",
            s.log(run).await
        );
        let log = s.log(run).await;
        assert!(
            log.contains("key ok, region eu, rollback ''"),
            "production got its environment's secret and vars: {log}"
        );
        assert!(
            log.contains("staging has no production key")
                && !log.lines().any(|l| l.trim() == "LEAKED"),
            "{log}"
        );

        let detail = s
            .get(&format!("/api/v1/deployments/{}", prod["id"]), "alice")
            .await;
        assert_eq!(detail["status"], "success", "{detail:#}");
        assert_eq!(detail["approvers"], json!(["bob"]));
        assert_eq!(detail["approvals"][0]["comment"], "ship it");
        assert_eq!(detail["sha"], sha.as_str());
        assert_eq!(detail["digests"][0]["digest"], digest("1.0\n"));
        let trail: Vec<(String, String)> = detail["audit"]
            .as_array()
            .expect("audit")
            .iter()
            .map(|e| {
                (
                    e["actor"].as_str().unwrap_or_default().to_owned(),
                    e["action"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let want = [
            ("slipway", "deployment.created"),
            ("slipway", "deployment.waiting"),
            ("mallory", "approve.refused"),
            ("alice", "approve.refused"),
            ("bob", "deployment.approved"),
            ("slipway", "deployment.in_progress"),
            ("slipway", "deployment.success"),
            ("slipway", "deployment.digests"),
        ];
        let got: Vec<(&str, &str)> = trail
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(got, want);

        // The forge: one GitHub deployment per environment, then its statuses in order.
        let requests = loop {
            let r = forge.requests.lock().expect("lock").clone();
            if r.iter().filter(|x| x.body["state"] == "success").count() >= 2 {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let creates: Vec<&Recorded> = requests
            .iter()
            .filter(|r| r.path == "/repos/team/app/deployments")
            .collect();
        assert_eq!(creates.len(), 2, "{requests:#?}");
        assert!(
            creates.iter().all(
                |c| c.method == "POST" && c.authorization.as_deref() == Some("Bearer gh-token")
            )
        );
        let prod_create = creates
            .iter()
            .find(|c| c.body["environment"] == "production")
            .expect("production created");
        assert_eq!(prod_create.body["ref"], sha.as_str());
        assert_eq!(prod_create.body["required_contexts"], json!([]));
        let prod_index = requests
            .iter()
            .position(|r| r.body["environment"] == "production" && r.path.ends_with("/deployments"))
            .expect("index");
        let prod_id = 4000 + prod_index + 1;
        let states: Vec<&str> = requests
            .iter()
            .filter(|r| r.path == format!("/repos/team/app/deployments/{prod_id}/statuses"))
            .map(|r| r.body["state"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            states,
            ["queued", "pending", "in_progress", "success"],
            "{requests:#?}"
        );
        let last = requests
            .iter()
            .rfind(|r| r.path.ends_with(&format!("/{prod_id}/statuses")))
            .expect("last");
        assert_eq!(last.body["environment_url"], "https://prod.example/app");
        assert_eq!(
            last.body["log_url"],
            format!("https://ci.example.com/runs/{run}")
        );

        s.stop().await;
        forge_stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_deploy_survives_a_restart_and_a_rejection_fails_the_run() {
        let repo = repo();
        let (forge_url, _forge, forge_stop) = start_forge().await;
        let mut s = start(
            &repo.clone_url,
            &forge_url,
            server::environments::DEFAULT_TIMEOUT,
            test_support::tempdir(),
        )
        .await;
        let sha = repo.commit("2.0\n");
        let run = s.push(&sha, "alice").await;
        s.deployments_until(|l| status_of(l, "production", run) == "waiting")
            .await;

        let data = s.stop().await;
        let mut s = start(
            &repo.clone_url,
            &forge_url,
            server::environments::DEFAULT_TIMEOUT,
            data,
        )
        .await;
        let list = s.get("/api/v1/deployments", "alice").await;
        assert_eq!(
            status_of(list.as_array().expect("list"), "production", run),
            "waiting",
            "{list:#}"
        );
        let r = s
            .state
            .db()
            .run(store::sql::RunId(run))
            .await
            .expect("db")
            .expect("run");
        assert_ne!(r.status, store::sql::RunStatus::Done);

        let (code, body) = s
            .post(
                &format!("/api/v1/runs/{run}/reject"),
                "bob",
                json!({"environment": "production", "comment": "not today"}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert_eq!(body["deployments"][0]["status"], "rejected", "{body}");
        let r = s.finished(run).await;
        assert_eq!(r.conclusion, Some(store::sql::Conclusion::Failure));
        assert!(
            r.reason
                .as_deref()
                .unwrap_or_default()
                .contains("rejected by bob: not today"),
            "{r:?}"
        );
        s.stop().await;
        forge_stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deploy_waiting_past_the_timeout_is_rejected() {
        let repo = repo();
        let (forge_url, _forge, forge_stop) = start_forge().await;
        let mut s = start(
            &repo.clone_url,
            &forge_url,
            Duration::from_millis(1500),
            test_support::tempdir(),
        )
        .await;
        let run = s.push(&repo.commit("3.0\n"), "alice").await;
        let list = s
            .deployments_until(|l| status_of(l, "production", run) == "rejected")
            .await;
        let reason = of(&list, "production", run)
            .and_then(|d| d["reason"].as_str())
            .unwrap_or_default()
            .to_owned();
        assert!(reason.contains("timeout"), "{reason}");
        let r = s.finished(run).await;
        assert_eq!(r.conclusion, Some(store::sql::Conclusion::Failure));
        s.stop().await;
        forge_stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rollback_redeploys_an_earlier_deployment_through_the_gate() {
        let repo = repo();
        let (forge_url, _forge, forge_stop) = start_forge().await;
        let mut s = start(
            &repo.clone_url,
            &forge_url,
            server::environments::DEFAULT_TIMEOUT,
            test_support::tempdir(),
        )
        .await;
        let mut prod_ids = Vec::new();
        for version in ["1.0\n", "1.1\n"] {
            let run = s.push(&repo.commit(version), "alice").await;
            let list = s
                .deployments_until(|l| status_of(l, "production", run) == "waiting")
                .await;
            prod_ids.push(of(&list, "production", run).expect("prod")["id"].clone());
            let (code, body) = s
                .post(
                    &format!("/api/v1/runs/{run}/approve"),
                    "bob",
                    json!({"environment": "production"}),
                )
                .await;
            assert_eq!(code, StatusCode::OK, "{body}");
            assert_eq!(
                s.finished(run).await.conclusion,
                Some(store::sql::Conclusion::Success)
            );
        }
        let (code, body) = s
            .post(
                "/api/v1/deployments/rollback",
                "mallory",
                json!({"environment": "production"}),
            )
            .await;
        assert_eq!(
            code,
            StatusCode::FORBIDDEN,
            "viewers may not roll back: {body}"
        );
        let (code, body) = s
            .post(
                "/api/v1/deployments/rollback",
                "alice",
                json!({"environment": "production", "to": 999}),
            )
            .await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
        let (code, body) = s
            .post(
                "/api/v1/deployments/rollback",
                "alice",
                json!({"environment": "production"}),
            )
            .await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
        assert_eq!(
            body["to"]["id"], prod_ids[0],
            "back to the first production deployment: {body}"
        );
        let run = body["run_id"].as_i64().expect("run id");
        // The same rules: it waits for a reviewer (alice asked, so bob approves).
        let list = s
            .deployments_until(|l| status_of(l, "production", run) == "waiting")
            .await;
        assert_eq!(
            of(&list, "production", run).expect("rollback")["rollback_of"],
            prod_ids[0]
        );
        assert!(
            of(&list, "staging", run).is_none(),
            "only the production job runs again"
        );
        let (code, body) = s
            .post(
                &format!("/api/v1/runs/{run}/approve"),
                "bob",
                json!({"environment": "production"}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert_eq!(
            s.finished(run).await.conclusion,
            Some(store::sql::Conclusion::Success),
            "{}",
            s.log(run).await
        );
        let log = s.log(run).await;
        assert!(
            log.contains(&format!("rollback '{}'", digest("1.0\n"))),
            "the run knows the digest it rolls back to: {log}"
        );
        let env = s
            .get(
                "/api/v1/environments/production?repository=team/app",
                "alice",
            )
            .await;
        assert_eq!(env["current"][0]["rollback_of"], prod_ids[0], "{env:#}");
        s.stop().await;
        forge_stop.cancel();
    }

    /// A deploy whose health check never passes: the deploy action switches back, the
    /// deployment ends `rolled_back`, and the previous release keeps serving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_health_check_rolls_back_and_the_previous_release_keeps_serving() {
        test_support::require_command("python3", "python3");
        let repo = repo();
        let (forge_url, _forge, forge_stop) = start_forge().await;
        let mut s = start(
            &repo.clone_url,
            &forge_url,
            server::environments::DEFAULT_TIMEOUT,
            test_support::tempdir(),
        )
        .await;
        let root = test_support::tempdir();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let workflow = |command: &str| {
            format!(
                r#"on: push
jobs:
  deploy:
    runs-on: linux
    environment: canary
    steps:
      - uses: actions/checkout@v4
      - uses: slipway/deploy-local@v1
        with:
          artifact: site
          root: {root}
          command: {command}
          health-url: http://127.0.0.1:{port}/VERSION
          health-timeout: 3s
"#,
                root = root.path().display()
            )
        };
        let good = format!("python3 -m http.server {port} --bind 127.0.0.1");
        let run1 = s
            .push(
                &repo.commit_files(&[
                    (".slipway/workflows/deliver.yml", &workflow(&good)),
                    ("site/VERSION", "v1\n"),
                ]),
                "alice",
            )
            .await;
        assert_eq!(
            s.finished(run1).await.conclusion,
            Some(store::sql::Conclusion::Success),
            "{}",
            s.log(run1).await
        );
        // v2 serves on the wrong port: its health check never passes.
        let bad = format!("python3 -m http.server {} --bind 127.0.0.1", port + 1);
        let run2 = s
            .push(
                &repo.commit_files(&[
                    (".slipway/workflows/deliver.yml", &workflow(&bad)),
                    ("site/VERSION", "v2\n"),
                ]),
                "alice",
            )
            .await;
        let r = s.finished(run2).await;
        let log2 = s.log(run2).await;
        let serving = match reqwest::get(format!("http://127.0.0.1:{port}/VERSION")).await {
            Ok(r) => r.text().await.expect("text"),
            Err(e) => panic!("v1 is not serving ({e}); the deploy's log:\n{log2}"),
        };
        if let Ok(text) = std::fs::read_to_string(root.path().join("service.pid"))
            && let Some(pid) = text.split_whitespace().next()
        {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .status();
        }
        assert_eq!(r.conclusion, Some(store::sql::Conclusion::Failure));
        assert_eq!(serving, "v1\n");
        let list = s
            .get("/api/v1/deployments?environment=canary", "alice")
            .await;
        let list = list.as_array().expect("list");
        assert_eq!(status_of(list, "canary", run1), "success");
        assert_eq!(status_of(list, "canary", run2), "rolled_back", "{list:#?}");
        let first = of(list, "canary", run1).expect("first");
        assert!(
            first["digests"][0]["digest"]
                .as_str()
                .unwrap_or_default()
                .starts_with("sha256:"),
            "{first:#}"
        );
        assert_eq!(
            first["digests"][0]["target"],
            format!("local:{}", root.path().join("").display()).trim_end_matches('/')
        );
        let env = s.get("/api/v1/environments/canary", "alice").await;
        assert_eq!(
            env["current"][0]["run_id"], run1,
            "what runs in canary now is the first deployment: {env:#}"
        );
        s.stop().await;
        forge_stop.cancel();
    }

    /// The same gate in front of the real remote targets: an SSH host (a real OpenSSH server;
    /// the key is an environment secret, the host key an environment variable) and a Docker
    /// engine (the private dockerd). Both deployments are recorded with their digest and target.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deploys_over_ssh_and_to_docker_behind_the_gate() {
        test_support::require_command("python3", "python3");
        let docker = test_support::docker_host();
        let busybox = test_support::busybox_image();
        let sshd = test_support::sshd::Sshd::start();
        let repo = repo();
        let (forge_url, _forge, forge_stop) = start_forge().await;
        let remote = test_support::tempdir();
        let root = remote.path().join("app");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let app = format!("delivery-{}", std::process::id());
        let key = std::fs::read_to_string(sshd.client_key()).expect("client key");
        let env =
            |name: &str, secrets: &[(&str, &str)], vars: &[(&str, String)]| EnvironmentConfig {
                repository: None,
                name: name.into(),
                reviewers: vec!["ops".into()],
                required_approvals: 1,
                allow_self_approval: false,
                wait_timer: Duration::ZERO,
                timeout: server::environments::DEFAULT_TIMEOUT,
                branches: vec![],
                tags: vec![],
                secrets: secrets
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                vars: vars
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
                url: None,
            };
        let envs = vec![
            env(
                "remote",
                &[("SSH_KEY", key.as_str())],
                &[
                    ("KNOWN_HOSTS", sshd.known_hosts_line()),
                    ("SSH_PORT", sshd.port().to_string()),
                    ("SSH_USER", sshd.user().to_owned()),
                ],
            ),
            env("containers", &[], &[("DOCKER", docker.clone())]),
        ];
        let mut s = start_with(&repo.clone_url, &forge_url, envs, test_support::tempdir()).await;
        let workflow = format!(
            r#"on: push
jobs:
  ssh:
    runs-on: linux
    environment: remote
    steps:
      - uses: actions/checkout@v4
      - uses: slipway/deploy-ssh@v1
        with:
          artifact: site
          host: 127.0.0.1
          port: ${{{{ vars.SSH_PORT }}}}
          user: ${{{{ vars.SSH_USER }}}}
          key: ${{{{ secrets.SSH_KEY }}}}
          known-hosts: ${{{{ vars.KNOWN_HOSTS }}}}
          root: {root}
          command: python3 -m http.server {port} --bind 127.0.0.1
          health-url: http://127.0.0.1:{port}/VERSION
  docker:
    runs-on: linux
    environment: containers
    steps:
      - uses: slipway/deploy-docker@v1
        with:
          image: {busybox}
          name: {app}
          docker-host: ${{{{ vars.DOCKER }}}}
          command: sleep 3600
          network: none
          health-cmd: "true"
"#,
            root = root.display()
        );
        let sha = repo.commit_files(&[
            (".slipway/workflows/deliver.yml", &workflow),
            ("site/VERSION", "remote v1\n"),
        ]);
        let run = s.push(&sha, "alice").await;
        s.deployments_until(|l| {
            status_of(l, "remote", run) == "waiting" && status_of(l, "containers", run) == "waiting"
        })
        .await;
        for env in ["remote", "containers"] {
            let (code, body) = s
                .post(
                    &format!("/api/v1/runs/{run}/approve"),
                    "bob",
                    json!({"environment": env}),
                )
                .await;
            assert_eq!(code, StatusCode::OK, "{body}");
        }
        let r = s.finished(run).await;
        let log = s.log(run).await;
        let serving = match reqwest::get(format!("http://127.0.0.1:{port}/VERSION")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if let Ok(text) = std::fs::read_to_string(root.join("service.pid"))
            && let Some(pid) = text.split_whitespace().next()
        {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .status();
        }
        let ids = std::process::Command::new("docker")
            .args([
                "-H",
                &docker,
                "ps",
                "-aq",
                "--filter",
                &format!("label=slipway.app={app}"),
            ])
            .output()
            .expect("docker ps");
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = std::process::Command::new("docker")
                .args(["-H", &docker, "rm", "-f", id])
                .output();
        }
        assert_eq!(r.conclusion, Some(store::sql::Conclusion::Success), "{log}");
        assert_eq!(serving, "remote v1\n");
        assert!(
            !String::from_utf8_lossy(&ids.stdout).trim().is_empty(),
            "the container ran"
        );
        let list = s.get("/api/v1/deployments", "alice").await;
        let list = list.as_array().expect("list");
        let ssh = of(list, "remote", run).expect("ssh deployment");
        assert_eq!(ssh["status"], "success");
        assert_eq!(ssh["approvers"], json!(["bob"]));
        let want = format!(
            "ssh://{}@127.0.0.1:{}{}",
            sshd.user(),
            sshd.port(),
            root.display()
        );
        assert_eq!(ssh["digests"][0]["target"], want.as_str(), "{ssh:#}");
        assert!(
            ssh["digests"][0]["digest"]
                .as_str()
                .unwrap_or_default()
                .starts_with("sha256:")
        );
        let dk = of(list, "containers", run).expect("docker deployment");
        assert_eq!(dk["status"], "success");
        assert_eq!(dk["digests"][0]["image"], busybox.as_str(), "{dk:#}");
        assert!(
            dk["digests"][0]["target"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!("docker:{app}@")),
            "{dk:#}"
        );
        assert!(
            dk["digests"][0]["digest"]
                .as_str()
                .unwrap_or_default()
                .starts_with("sha256:"),
            "{dk:#}"
        );
        s.stop().await;
        forge_stop.cancel();
    }

    /// A wait timer holds a deployment (without reviewers) until it has passed, then the
    /// background task lets it go on its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_timer_holds_the_deployment_then_lets_it_go() {
        let repo = repo();
        let (forge_url, _forge, forge_stop) = start_forge().await;
        let mut envs = environments(server::environments::DEFAULT_TIMEOUT);
        envs.retain(|e| e.name == "staging");
        envs[0].wait_timer = Duration::from_millis(1500);
        let mut s = start_with(&repo.clone_url, &forge_url, envs, test_support::tempdir()).await;
        let run = s.push(&repo.commit("4.0\n"), "alice").await;
        let list = s
            .deployments_until(|l| status_of(l, "staging", run) == "waiting")
            .await;
        let reason = of(&list, "staging", run)
            .and_then(|d| d["reason"].as_str())
            .unwrap_or_default()
            .to_owned();
        assert!(reason.starts_with("wait timer"), "{reason}");
        // production is not configured: no rules, so the run completes once the timer passed.
        let r = s.finished(run).await;
        assert_eq!(
            r.conclusion,
            Some(store::sql::Conclusion::Success),
            "{}",
            s.log(run).await
        );
        let list = s.get("/api/v1/deployments", "alice").await;
        let staging = of(list.as_array().expect("list"), "staging", run)
            .expect("staging")
            .clone();
        let held = staging["started_at"].as_i64().unwrap_or(0)
            - staging["created_at"].as_i64().unwrap_or(0);
        assert!(held >= 1500, "started {held} ms after it was reached");
        assert_eq!(
            status_of(list.as_array().expect("list"), "production", run),
            "success"
        );
        s.stop().await;
        forge_stop.cancel();
    }
}
