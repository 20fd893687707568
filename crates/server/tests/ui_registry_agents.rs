//! The registry, agents and environment-admin pages over HTTP on a real server with the
//! registry under `/v2/`: images pushed with the OCI distribution API show with digest,
//! type, size, creation time, platforms and the deployments that use them; tags page;
//! agents show busy/online/offline with their jobs; roles decide who sees what; unknown
//! names are 404 pages; outside text (`<script>` in an agent's name and labels, in a typed
//! form value) is escaped; the admin forms keep what was typed when the API refuses it.

mod common;

mod ui_registry_agents {
    use std::sync::Arc;
    use std::time::Duration;

    use reqwest::StatusCode;
    use serde_json::{Value, json};
    use server::config::{Config, RepositoryConfig, ServerConfig, User};
    use server::{AppState, Options};
    use sha2::Digest as _;
    use store::sql::{JobStatus, NewJob, NewRun};
    use tokio::task::JoinSet;
    use tokio_util::sync::CancellationToken;

    fn user(name: &str, role: &str) -> User {
        User {
            name: name.to_owned(),
            token: format!("{name}-token"),
            role: role.to_owned(),
            groups: Vec::new(),
        }
    }

    struct Server {
        url: String,
        state: AppState,
        stop: CancellationToken,
        tasks: JoinSet<Result<(), server::ServerError>>,
        _data: tempfile::TempDir,
    }

    async fn start() -> Server {
        start_with("git://127.0.0.1:1/app.git", false).await
    }

    async fn start_with(clone_url: &str, embedded_agent: bool) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let config = Config {
            server: ServerConfig {
                external_url: url.clone(),
                lease_ttl: Duration::from_secs(30),
                webhook_body_limit: 64 * 1024,
                ..ServerConfig::default()
            },
            users: vec![user("root", "admin"), user("victor", "viewer")],
            repositories: vec![RepositoryConfig {
                name: "team/app".into(),
                clone_url: clone_url.into(),
                forge: server::config::Forge::Generic,
                forge_api: None,
                forge_token: None,
                webhook_secret: Some("s".into()),
                poll_interval: None,
                secrets: Default::default(),
                vars: Default::default(),
            }],
            ..Config::default()
        };
        let data = test_support::tempdir();
        let mut options = Options::new(data.path().to_owned(), config);
        options.embedded_agent = embedded_agent;
        let blobs = Arc::new(
            store::blob::FileStore::open(data.path().join("registry")).expect("registry storage"),
        );
        options.registry = Some(
            registry::Registry::new(blobs.clone(), blobs, registry::Options::default())
                .expect("registry"),
        );
        let state = AppState::new(options).await.expect("server state");
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(server::run(listener, state.clone(), stop.clone()));
        Server {
            url,
            state,
            stop,
            tasks,
            _data: data,
        }
    }

    fn digest(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
    }

    impl Server {
        async fn stop(mut self) {
            self.stop.cancel();
            while let Some(r) = self.tasks.join_next().await {
                r.expect("server task").expect("server ran");
            }
        }

        /// A page as `who` (`None`: not signed in): status and body.
        async fn page(&self, path: &str, who: Option<&str>) -> (StatusCode, String) {
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client");
            let mut req = client.get(format!("{}{path}", self.url));
            if let Some(w) = who {
                req = req.bearer_auth(format!("{w}-token"));
            }
            let resp = req.send().await.expect("GET");
            let status = resp.status();
            (status, resp.text().await.expect("text"))
        }

        /// Posts a form as `who`: status, `Location`, body.
        async fn form(
            &self,
            path: &str,
            who: &str,
            fields: &[(&str, &str)],
            extra: &[(&str, &str)],
        ) -> (StatusCode, String, String) {
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client");
            let body: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish();
            let mut req = client
                .post(format!("{}{path}", self.url))
                .bearer_auth(format!("{who}-token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
            for (k, v) in extra {
                req = req.header(*k, *v);
            }
            let resp = req.send().await.expect("POST");
            let status = resp.status();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (status, location, resp.text().await.expect("text"))
        }

        async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
            let d = digest(bytes);
            let resp = reqwest::Client::new()
                .post(format!("{}/v2/{repo}/blobs/uploads/?digest={d}", self.url))
                .header("content-type", "application/octet-stream")
                .body(bytes.to_vec())
                .send()
                .await
                .expect("blob upload");
            assert_eq!(resp.status(), StatusCode::CREATED, "blob {d}");
            d
        }

        async fn push_manifest(&self, repo: &str, reference: &str, manifest: &Value) -> String {
            let bytes = serde_json::to_vec(manifest).expect("json");
            let media_type = manifest["mediaType"].as_str().expect("mediaType");
            let resp = reqwest::Client::new()
                .put(format!("{}/v2/{repo}/manifests/{reference}", self.url))
                .header("content-type", media_type)
                .body(bytes.clone())
                .send()
                .await
                .expect("manifest");
            assert_eq!(
                resp.status(),
                StatusCode::CREATED,
                "{}",
                resp.text().await.unwrap_or_default()
            );
            digest(&bytes)
        }

        /// An image with one layer for `arch`; returns (manifest digest, manifest size, total size).
        async fn push_image(&self, repo: &str, tag: &str, arch: &str) -> (String, u64) {
            let config = serde_json::to_vec(&json!({
                "created": "2026-01-02T03:04:05Z", "architecture": arch, "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []}, "config": {}
            }))
            .expect("json");
            let layer = format!("layer of {arch}").repeat(100).into_bytes();
            let config_digest = self.push_blob(repo, &config).await;
            let layer_digest = self.push_blob(repo, &layer).await;
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}]
            });
            let manifest_len = serde_json::to_vec(&manifest).expect("json").len();
            let d = self.push_manifest(repo, tag, &manifest).await;
            (d, (manifest_len + config.len() + layer.len()) as u64)
        }

        /// A finished deployment of `digest` to `environment` (its run and job as records).
        async fn deployment(&self, environment: &str, digest: &str) -> i64 {
            let db = self.state.db();
            let repo = db
                .repository_by_name("team/app")
                .await
                .expect("db")
                .expect("repo")
                .id;
            let (run, jobs) = db
                .create_run(
                    &NewRun {
                        repository: repo,
                        workflow_file: ".slipway/workflows/deliver.yml".into(),
                        workflow_name: "deliver".into(),
                        event: "push".into(),
                        git_ref: "refs/heads/main".into(),
                        sha: "0123456789abcdef".into(),
                        actor: "alice".into(),
                        spec: "{}".into(),
                        concurrency_group: None,
                    },
                    &[NewJob {
                        key: "deploy".into(),
                        name: "deploy".into(),
                        needs: "[]".into(),
                        labels: "[]".into(),
                        condition: None,
                        status: JobStatus::Done,
                        result: Some((store::sql::Conclusion::Success, "done".into())),
                        log: None,
                    }],
                    server::now_ms(),
                )
                .await
                .expect("run");
            let id = db
                .create_deployment(
                    &store::sql::NewDeployment {
                        repository: repo,
                        environment: environment.into(),
                        run,
                        job: jobs[0],
                        job_key: "deploy".into(),
                        sha: "0123456789abcdef".into(),
                        git_ref: "refs/heads/main".into(),
                        pusher: "alice".into(),
                        status: store::sql::DeploymentStatus::Success,
                        reason: None,
                        url: None,
                        rollback_of: None,
                    },
                    server::now_ms(),
                )
                .await
                .expect("deployment");
            db.set_deployment_digests(
                id,
                &json!([{"source": "step deploy", "digest": digest}]).to_string(),
            )
            .await
            .expect("digests");
            run.0
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registry_pages_show_tags_digests_sizes_platforms_and_deployments() {
        let s = start().await;
        let (status, body) = s.page("/registry", Some("victor")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("No image pushed yet"), "{body}");

        let (amd64, amd64_size) = s.push_image("team/app", "v1", "amd64").await;
        let (arm64, arm64_size) = s.push_image("team/app", "arm", "arm64").await;
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd64, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm64, "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}
            ]
        });
        let index_digest = s.push_manifest("team/app", "multi", &index).await;
        let index_len = serde_json::to_vec(&index).expect("json").len() as u64;
        s.push_image("other", "latest", "amd64").await;
        let run = s.deployment("production", &amd64).await;

        // Not signed in: to the sign-in page. A viewer reads.
        let (status, _) = s.page("/registry", None).await;
        assert!(status.is_redirection(), "{status}");
        let (status, body) = s.page("/registry", Some("victor")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("href=\"/registry/team/app\""), "{body}");
        assert!(body.contains("href=\"/registry/other\""), "{body}");
        // team/app: 3 tags; its size counts shared blobs once (the index reaches both images).
        let total = amd64_size + arm64_size + index_len;
        let row = body
            .split("<tr>")
            .find(|r| r.contains("/registry/team/app"))
            .expect("team/app row");
        assert!(row.contains("<td>3</td>"), "{row}");
        let human = format!("{:.1} KiB", total as f64 / 1024.0);
        assert!(row.contains(&human), "{row} should show {human}");

        let (status, body) = s.page("/registry/team/app", Some("victor")).await;
        assert_eq!(status, StatusCode::OK);
        let tag_row = |tag: &str| -> String {
            body.split("<tr>")
                .find(|r| r.contains(&format!("<code>{tag}</code>")))
                .unwrap_or_else(|| panic!("row of {tag} in {body}"))
                .to_owned()
        };
        let v1 = tag_row("v1");
        assert!(v1.contains(&format!("data-digest=\"{amd64}\"")), "{v1}");
        assert!(v1.contains("image"), "{v1}");
        assert!(v1.contains("2026-01-02T03:04:05Z"), "{v1}");
        assert!(v1.contains("linux/amd64"), "{v1}");
        assert!(v1.contains("production"), "deployment shown: {v1}");
        assert!(v1.contains(&format!("href=\"/runs/{run}\"")), "{v1}");
        let multi = tag_row("multi");
        assert!(
            multi.contains(&format!("data-digest=\"{index_digest}\"")),
            "{multi}"
        );
        assert!(multi.contains("index"), "{multi}");
        assert!(multi.contains("linux/amd64, linux/arm64/v8"), "{multi}");
        assert!(
            multi.contains("production"),
            "an index is used where one of its images is deployed: {multi}"
        );
        let arm = tag_row("arm");
        assert!(!arm.contains("production"), "{arm}");

        // Unknown repositories are 404 pages.
        for path in [
            "/registry/nope",
            "/registry/team/app/nested",
            "/registry/..%2Fx",
        ] {
            let (status, body) = s.page(path, Some("victor")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            assert!(body.contains("<h1>404"), "{path}: a page, not a trace");
        }

        // Deleting a tag: admins only, from this site, audited.
        let (_, body) = s.page("/registry/team/app", Some("victor")).await;
        assert!(!body.contains("Delete tag"), "viewers get no delete button");
        let (_, body) = s.page("/registry/team/app", Some("root")).await;
        assert!(body.contains("aria-label=\"Delete tag arm\""), "{body}");
        let (status, _, _) = s
            .form("/registry/team/app", "victor", &[("tag", "arm")], &[])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = s
            .form(
                "/registry/team/app",
                "root",
                &[("tag", "arm")],
                &[("origin", "http://evil.example")],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "cross-site");
        let (status, _, body) = s
            .form("/registry/team/app", "root", &[("tag", "nope")], &[])
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, location, _) = s
            .form("/registry/team/app?page=1", "root", &[("tag", "arm")], &[])
            .await;
        assert_eq!(
            (status, location.as_str()),
            (StatusCode::SEE_OTHER, "/registry/team/app?page=1")
        );
        let (_, body) = s.page("/registry/team/app", Some("victor")).await;
        assert!(
            !body.contains("<code>arm</code>") && body.contains("2 tags"),
            "{body}"
        );
        let resp = reqwest::get(format!("{}/v2/team/app/manifests/arm", s.url))
            .await
            .expect("get");
        assert_eq!(
            resp.status(),
            StatusCode::NOT_FOUND,
            "the registry no longer has the tag"
        );
        let audit = s
            .state
            .db()
            .audit_events(&store::sql::AuditFilter {
                limit: 100,
                ..store::sql::AuditFilter::default()
            })
            .await
            .expect("audit");
        assert!(
            audit.iter().any(|e| e.actor == "root"
                && e.action == "registry.tag.deleted"
                && e.detail.as_deref() == Some(&format!("team/app:arm ({arm64})"))),
            "{audit:#?}"
        );
        s.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_tags_are_paginated() {
        let s = start().await;
        let (d, _) = s.push_image("big", "tag-000", "amd64").await;
        let manifest = reqwest::Client::new()
            .get(format!("{}/v2/big/manifests/{d}", s.url))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .expect("manifest")
            .json::<Value>()
            .await
            .expect("json");
        for i in 1..60 {
            s.push_manifest("big", &format!("tag-{i:03}"), &manifest)
                .await;
        }
        let (status, page1) = s.page("/registry/big", Some("victor")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page1.contains("60 tags"), "{page1}");
        assert!(
            page1.contains("<code>tag-049</code>") && !page1.contains("<code>tag-050</code>"),
            "50 per page"
        );
        assert!(page1.contains("href=\"/registry/big?page=2\""), "{page1}");
        let (_, page2) = s.page("/registry/big?page=2", Some("victor")).await;
        assert!(
            page2.contains("<code>tag-059</code>") && !page2.contains("<code>tag-049</code>"),
            "{page2}"
        );
        assert!(page2.contains("Page 2 of 2"), "{page2}");
        s.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn agents_page_shows_busy_online_and_offline_agents_escaped() {
        let s = start().await;
        let (status, body) = s.page("/agents", Some("victor")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("No agent seen"), "{body}");

        let register = |name: &'static str, labels: Vec<&'static str>, capacity: Option<u32>| {
            let url = s.url.clone();
            let token = s.state.agent_token().to_owned();
            async move {
                let resp = reqwest::Client::new()
                    .post(format!("{url}/api/v1/agent/register"))
                    .bearer_auth(token)
                    .json(&json!({"name": name, "labels": labels, "capacity": capacity}))
                    .send()
                    .await
                    .expect("register");
                assert!(resp.status().is_success());
                resp.json::<Value>().await.expect("json")["agent_id"]
                    .as_i64()
                    .expect("id")
            }
        };
        let busy = register("<b>builder</b>", vec!["<script>alert(1)</script>", "linux"], Some(4)).await;
        // An agent that does not say its capacity (an older one): none shown.
        let idle = register("idle-one", vec![], None).await;
        let now = server::now_ms();
        let gone = s
            .state
            .db()
            .create_agent("gone", "[]", "hash-of-gone", now - 3_600_000)
            .await
            .expect("agent")
            .0;
        let repo = s
            .state
            .db()
            .repository_by_name("team/app")
            .await
            .expect("db")
            .expect("repo")
            .id;
        let (run, _) = s
            .state
            .db()
            .create_run(
                &NewRun {
                    repository: repo,
                    workflow_file: "ci.yml".into(),
                    workflow_name: "ci".into(),
                    event: "push".into(),
                    git_ref: "refs/heads/main".into(),
                    sha: "abc".into(),
                    actor: "alice".into(),
                    spec: "{}".into(),
                    concurrency_group: None,
                },
                &[NewJob {
                    key: "build".into(),
                    name: "build <linux>".into(),
                    needs: "[]".into(),
                    labels: "[]".into(),
                    condition: None,
                    status: JobStatus::Queued,
                    result: None,
                    log: None,
                }],
                now,
            )
            .await
            .expect("run");
        let leased = s
            .state
            .db()
            .lease_any(store::sql::AgentId(busy), now, 60_000)
            .await
            .expect("lease")
            .expect("a job");

        let (status, body) = s.page("/agents", Some("victor")).await;
        assert_eq!(status, StatusCode::OK);
        let row = |id: i64| -> String {
            body.split("<tr ")
                .find(|r| r.contains(&format!("data-agent=\"{id}\"")))
                .unwrap_or_else(|| panic!("agent {id} in {body}"))
                .to_owned()
        };
        let b = row(busy);
        assert!(b.contains("data-state=\"busy\""), "{b}");
        assert!(
            b.contains(&format!("href=\"/runs/{}?job={}\"", run.0, leased.id.0)),
            "{b}"
        );
        assert!(b.contains("build &lt;linux&gt;"), "{b}");
        assert!(b.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{b}");
        assert!(b.contains("&lt;b&gt;builder&lt;/b&gt;"), "{b}");
        assert!(b.contains("1 of 4 slots busy"), "{b}");
        assert!(!body.contains("<script>alert(1)"), "escaped everywhere");
        let i = row(idle);
        assert!(i.contains("data-state=\"online\""), "{i}");
        assert!(i.contains("any label"), "{i}");
        assert!(!i.contains("slot"), "{i}");
        let g = row(gone);
        assert!(g.contains("data-state=\"offline\""), "{g}");
        assert!(body.contains("id=\"live\""), "follows /ui/events");

        let (status, _) = s.page("/agents", None).await;
        assert!(status.is_redirection(), "{status}");
        s.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admin_environment_forms_keep_what_was_typed_and_only_admins_use_them() {
        let s = start().await;
        for path in ["/admin/environments", "/admin/environments/new"] {
            let (status, body) = s.page(path, Some("victor")).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        }
        let (status, _, _) = s
            .form(
                "/admin/environments/new",
                "victor",
                &[("name", "production")],
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Refused by the API: the form comes back with the message and what was typed.
        let typed = [
            ("name", "production"),
            ("repository", "team/app"),
            ("reviewers", "alice, <script>x</script>ops"),
            ("wait_timer", "45s"),
            ("branches", "main, release/*"),
        ];
        let (status, _, body) = s.form("/admin/environments/new", "root", &typed, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("request field `reviewers`"), "{body}");
        assert!(
            body.contains("value=\"alice, &lt;script&gt;x&lt;/script&gt;ops\""),
            "{body}"
        );
        assert!(body.contains("value=\"45s\""), "{body}");
        assert!(body.contains("value=\"main, release/*\""), "{body}");
        assert!(
            body.contains("<option value=\"team/app\" selected>"),
            "{body}"
        );
        let typed = [
            ("name", "production"),
            ("repository", "team/app"),
            ("reviewers", "alice, ops"),
            ("wait_timer", "soon"),
        ];
        let (status, _, body) = s.form("/admin/environments/new", "root", &typed, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("request field `wait_timer`"), "{body}");
        assert!(
            body.contains("name=\"wait_timer\" value=\"soon\" aria-invalid=\"true\""),
            "the field in error is marked: {body}"
        );

        // A cross-site form is refused before anything happens.
        let (status, _, _) = s
            .form(
                "/admin/environments/new",
                "root",
                &[("name", "production")],
                &[("sec-fetch-site", "cross-site")],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let typed = [
            ("name", "production"),
            ("repository", "team/app"),
            ("reviewers", "alice, ops"),
            ("wait_timer", "30s"),
            ("allow_self_approval", "on"),
        ];
        let (status, location, body) = s.form("/admin/environments/new", "root", &typed, &[]).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        assert_eq!(
            location,
            "/admin/environments/edit?name=production&repository=team%2Fapp"
        );
        let env = s.state.db().stored_environments().await.expect("stored");
        assert_eq!(env.len(), 1);
        assert_eq!(
            (
                env[0].reviewers.as_str(),
                env[0].wait_timer_ms,
                env[0].allow_self_approval,
                env[0].updated_by.as_str()
            ),
            (r#"["alice","ops"]"#, 30_000, true, "root")
        );

        // Secrets and variables on the edit page; a bad name keeps what was typed.
        let (status, _, body) = s
            .form(
                &location,
                "root",
                &[
                    ("op", "variable"),
                    ("variable_name", "1BAD"),
                    ("variable_value", "eu-<1>"),
                ],
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("`1BAD` is not a valid name"), "{body}");
        assert!(body.contains("value=\"eu-&lt;1&gt;\""), "{body}");
        for fields in [
            [
                ("op", "variable"),
                ("variable_name", "REGION"),
                ("variable_value", "eu-1"),
            ],
            [
                ("op", "secret"),
                ("secret_name", "DEPLOY_KEY"),
                ("secret_value", "very-secret"),
            ],
        ] {
            let (status, _, body) = s.form(&location, "root", &fields, &[]).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        }
        let (status, page) = s.page(&location, Some("root")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("<code>DEPLOY_KEY</code>"), "{page}");
        assert!(!page.contains("very-secret"), "secrets are write-only");
        assert!(page.contains("<code>eu-1</code>"), "{page}");
        assert!(page.contains("value=\"30s\""), "{page}");
        let (_, envs) = s.page("/environments", Some("victor")).await;
        assert!(
            envs.contains("data-environment=\"production\"")
                && envs.contains("Protected: 1 approval(s) from alice, ops"),
            "the environments page shows the API's: {envs}"
        );
        let (_, list) = s.page("/admin/environments", Some("root")).await;
        assert!(list.contains("data-environment=\"production\""), "{list}");
        assert!(
            list.contains("1 approval(s) from alice, ops, self-approval allowed"),
            "{list}"
        );

        // The API sees the same environment; the page edits reach the gate's rules.
        let (status, _, body) = s
            .form(
                &location,
                "root",
                &[
                    ("op", "save"),
                    ("reviewers", ""),
                    ("required_approvals", ""),
                ],
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let env =
            server::environments::lookup(&s.state, "team/app", "production").expect("defined");
        assert!(
            env.reviewers.is_empty() && env.wait_timer.is_zero(),
            "{env:?}"
        );

        let (status, _) = s
            .page("/admin/environments/edit?name=nope", Some("root"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, location, body) = s.form(&location, "root", &[("op", "delete")], &[]).await;
        assert_eq!(
            (status, location.as_str()),
            (StatusCode::SEE_OTHER, "/admin/environments"),
            "{body}"
        );
        assert!(
            s.state
                .db()
                .stored_environments()
                .await
                .expect("stored")
                .is_empty()
        );
        s.stop().await;
    }

    /// `ui-tests/pages.mjs` in headless Chromium: sign in, the registry pages by keyboard,
    /// a narrow screen, the agents page turning a busy agent online live when its job ends,
    /// dark mode, an environment defined through the admin form (a refused form keeps what
    /// was typed). `SLIPWAY_UI_SCREENSHOTS=DIR` saves screenshots there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registry_and_agents_pages_in_a_real_browser() {
        let browser = super::common::Browser::require();
        let work = test_support::tempdir();
        let go_file = work.path().join("go");
        let git = test_support::git::GitDaemon::start();
        let clone_url = git.create_repo("app");
        let tree = git.work_tree("app");
        tree.write(
            ".slipway/workflows/ci.yml",
            &format!(
                "name: CI\non: push\njobs:\n  build:\n    runs-on: linux\n    steps:\n      - run: while [ ! -f \"{}\" ]; do sleep 0.1; done\n",
                go_file.display()
            ),
        );
        let sha = tree.commit("ci");
        tree.push("main");
        let s = start_with(&clone_url, true).await;

        let (amd64, _) = s.push_image("team/app", "v1", "amd64").await;
        let (arm64, _) = s.push_image("team/app", "arm", "arm64").await;
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd64, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm64, "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}
            ]
        });
        let index_digest = s.push_manifest("team/app", "multi", &index).await;
        s.deployment("production", &arm64).await;

        let runs = super::common::push_main(&s.state, "team/app", &sha, "root").await;
        let run = runs[0];
        let mut changes = s.state.subscribe();
        loop {
            let jobs = s
                .state
                .db()
                .jobs(store::sql::RunId(run))
                .await
                .expect("jobs");
            if jobs[0].status == JobStatus::Running {
                break;
            }
            tokio::time::timeout(Duration::from_secs(60), changes.recv())
                .await
                .expect("the embedded agent takes the job")
                .ok();
        }

        browser
            .run_ok(
                "pages.mjs",
                &s.url,
                &[
                    ("RUN_ID", run.to_string().as_ref()),
                    ("GO_FILE", go_file.as_ref()),
                    ("INDEX_DIGEST", index_digest.as_ref()),
                ],
                Duration::from_secs(180),
            )
            .await;
        s.stop().await;
        drop(git);
    }
}
