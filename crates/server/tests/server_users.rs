//! Users through the API (`app(state).oneshot`): the first user of an open server, roles
//! (viewer, maintainer, admin) from the configuration file and from the store in one check,
//! bad input answered with the field, tokens (shown once, stored hashed, last-used time,
//! revoked), disabling, the last admin kept, my own password and tokens, a user of the store
//! approving as a member of a reviewer group, and every change in the audit trail with the
//! user who made it (the repositories' API too).

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::THREE_USERS;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use server::{AppState, app};
use store::sql::{AuditFilter, DeploymentStatus, JobStatus, NewDeployment, NewJob, NewRun};
use tower::ServiceExt;

struct Server {
    state: AppState,
    _data: tempfile::TempDir,
}

async fn server(toml: &str) -> Server {
    let (state, _data) = common::state_from_toml(toml).await;
    Server { state, _data }
}

impl Server {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let resp = app(self.state.clone())
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// `(actor, action, detail)` of every audit event, oldest first.
    async fn audit(&self) -> Vec<(String, String, String)> {
        common::audit_triples(&self.state).await
    }

    async fn has_audit(&self, actor: &str, action: &str, detail: &str) -> bool {
        let all = self.audit().await;
        all.iter()
            .any(|(a, b, d)| a == actor && b == action && d == detail)
    }
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("")
}

#[tokio::test]
async fn users_the_first_user_of_an_open_server_is_an_admin_and_closes_it() {
    let s = server("").await;
    // Open: anyone is the anonymous admin.
    let (status, me) = s.call("GET", "/api/v1/user", None, None).await;
    assert_eq!(
        (status, me["source"].as_str()),
        (StatusCode::OK, Some("open"))
    );
    let (status, body) = s
        .call(
            "POST",
            "/api/v1/users",
            None,
            Some(json!({"name": "root", "role": "viewer", "password": "long enough"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error_of(&body).starts_with("request field `role`: the first user must be an admin"),
        "{body}"
    );

    let (status, created) = s
        .call(
            "POST",
            "/api/v1/users",
            None,
            Some(
                json!({"name": "root", "role": "admin", "password": "long enough", "token": "cli"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"]["token"]
        .as_str()
        .expect("the token's value, once")
        .to_owned();
    assert!(token.starts_with("slw_") && token.len() > 40, "{token}");
    assert_eq!(created["user"]["has_password"], true);

    // Closed now.
    let (status, _) = s.call("GET", "/api/v1/runs", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, me) = s.call("GET", "/api/v1/user", Some(&token), None).await;
    assert_eq!(
        (status, me["name"].as_str(), me["source"].as_str()),
        (StatusCode::OK, Some("root"), Some("api"))
    );
    // The token is stored as a hash only.
    let stored = s.state.db().tokens(Some("root")).await.expect("tokens");
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].token_hash, token);
    assert_eq!(stored[0].token_hash.len(), 64);

    // The only admin cannot be demoted, disabled or deleted.
    for (method, body) in [
        ("PATCH", Some(json!({"role": "maintainer"}))),
        ("PATCH", Some(json!({"disabled": true}))),
        ("DELETE", None),
    ] {
        let (status, body) = s
            .call(method, "/api/v1/users/root", Some(&token), body)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{method} {body}");
        assert!(error_of(&body).contains("last enabled admin"), "{body}");
    }
    assert!(
        s.has_audit("anonymous", "user.create", "root (admin)")
            .await,
        "{:?}",
        s.audit().await
    );
    assert!(
        s.has_audit("anonymous", "token.create", "root: cli").await,
        "{:?}",
        s.audit().await
    );
}

#[tokio::test]
async fn users_roles_from_the_file_and_the_store_are_checked_alike() {
    let s = server(THREE_USERS).await;
    for (token, expect) in [
        ("vic-token", StatusCode::FORBIDDEN),
        ("mona-token", StatusCode::FORBIDDEN),
        ("alice-token", StatusCode::OK),
    ] {
        let (status, body) = s.call("GET", "/api/v1/users", Some(token), None).await;
        assert_eq!(status, expect, "{token}: {body}");
    }
    let (status, _) = s.call("GET", "/api/v1/users", Some("nope"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = s
        .call("GET", "/api/v1/users", Some("slipway-session.AAAA"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a forged session bearer is refused"
    );

    // Users of the store: a viewer and a maintainer, token only.
    let mut tokens = std::collections::HashMap::new();
    for (name, role) in [("val", "viewer"), ("max", "maintainer"), ("ada", "admin")] {
        let (status, created) = s
            .call(
                "POST",
                "/api/v1/users",
                Some("alice-token"),
                Some(json!({"name": name, "role": role, "token": "cli"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["user"]["has_password"], false);
        tokens.insert(
            name,
            created["token"]["token"]
                .as_str()
                .expect("token")
                .to_owned(),
        );
    }
    // Reading needs any role; cancelling needs a maintainer (the run does not exist: 404 is
    // the answer once the role passed); managing users needs an admin.
    for (name, cancel, users) in [
        ("val", StatusCode::FORBIDDEN, StatusCode::FORBIDDEN),
        ("max", StatusCode::NOT_FOUND, StatusCode::FORBIDDEN),
        ("ada", StatusCode::NOT_FOUND, StatusCode::OK),
    ] {
        let t = tokens[name].as_str();
        assert_eq!(
            s.call("GET", "/api/v1/runs", Some(t), None).await.0,
            StatusCode::OK,
            "{name} reads"
        );
        assert_eq!(
            s.call("POST", "/api/v1/runs/999/cancel", Some(t), None)
                .await
                .0,
            cancel,
            "{name} cancels"
        );
        assert_eq!(
            s.call("GET", "/api/v1/users", Some(t), None).await.0,
            users,
            "{name} lists users"
        );
    }
    let (_, all) = s
        .call("GET", "/api/v1/users", Some("alice-token"), None)
        .await;
    let listed: Vec<(&str, &str)> = all
        .as_array()
        .expect("list")
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap_or(""),
                u["source"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("ada", "api"),
            ("alice", "config"),
            ("max", "api"),
            ("mona", "config"),
            ("val", "api"),
            ("vic", "config")
        ]
    );
    // A user of the file cannot be changed here.
    let (status, body) = s
        .call(
            "PATCH",
            "/api/v1/users/mona",
            Some("alice-token"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(error_of(&body).contains("configuration file"), "{body}");
    // A maintainer of the store is promoted, and may then manage users.
    let (status, u) = s
        .call(
            "PATCH",
            "/api/v1/users/max",
            Some("alice-token"),
            Some(json!({"role": "admin", "groups": ["ops"]})),
        )
        .await;
    assert_eq!(
        (status, u["role"].as_str()),
        (StatusCode::OK, Some("admin")),
        "{u}"
    );
    assert_eq!(
        s.call("GET", "/api/v1/users", Some(&tokens["max"]), None)
            .await
            .0,
        StatusCode::OK
    );
    assert!(
        s.has_audit(
            "alice",
            "user.update",
            "max: role maintainer -> admin; groups [ops]"
        )
        .await,
        "{:?}",
        s.audit().await
    );
}

#[tokio::test]
async fn users_bad_input_names_the_field() {
    let s = server(THREE_USERS).await;
    for (body, status, expect) in [
        (
            json!({"name": "bob", "role": "root", "password": "long enough"}),
            StatusCode::BAD_REQUEST,
            "request field `role`: `root` is not",
        ),
        (
            json!({"name": "bob", "password": ""}),
            StatusCode::BAD_REQUEST,
            "request field `password`: give a password",
        ),
        (
            json!({"name": "bob", "password": "short"}),
            StatusCode::BAD_REQUEST,
            "request field `password`: must be at least 8",
        ),
        (
            json!({"name": "b b", "password": "long enough"}),
            StatusCode::BAD_REQUEST,
            "request field `name`",
        ),
        (
            json!({"name": "anonymous", "password": "long enough"}),
            StatusCode::BAD_REQUEST,
            "is reserved",
        ),
        (
            json!({"name": "bob", "password": "long enough", "groups": ["ok", "not ok"]}),
            StatusCode::BAD_REQUEST,
            "request field `groups[1]`",
        ),
        (
            json!({"name": "bob", "pasword": "long enough"}),
            StatusCode::BAD_REQUEST,
            "request body: unknown field `pasword`",
        ),
        (
            json!({"name": "alice", "password": "long enough"}),
            StatusCode::CONFLICT,
            "request field `name`: user `alice` already exists",
        ),
        (
            json!({"name": "bob", "password": "long enough"}),
            StatusCode::CREATED,
            "",
        ),
        (
            json!({"name": "bob", "password": "long enough"}),
            StatusCode::CONFLICT,
            "already exists",
        ),
    ] {
        let (got, reply) = s
            .call(
                "POST",
                "/api/v1/users",
                Some("alice-token"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(got, status, "{body} -> {reply}");
        assert!(error_of(&reply).contains(expect), "{body} -> {reply}");
    }
    // Nothing half-made: only bob exists, once.
    let stored = s.state.db().users().await.expect("users");
    assert_eq!(
        stored.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["bob"]
    );

    let (status, body) = s
        .call(
            "PATCH",
            "/api/v1/users/bob",
            Some("alice-token"),
            Some(json!({"password": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = s
        .call(
            "PATCH",
            "/api/v1/users/nobody",
            Some("alice-token"),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = s
        .call(
            "POST",
            "/api/v1/users/bob/tokens",
            Some("alice-token"),
            Some(json!({"name": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("request field `name`"), "{body}");
    let (status, _) = s
        .call(
            "POST",
            "/api/v1/users/alice/tokens",
            Some("alice-token"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a [[user]]'s token is in the file"
    );
}

#[tokio::test]
async fn users_tokens_are_shown_once_used_revoked_and_disabled_users_are_locked_out() {
    let s = server(THREE_USERS).await;
    let (status, _) = s
        .call(
            "POST",
            "/api/v1/users",
            Some("alice-token"),
            Some(json!({"name": "bob", "role": "maintainer", "password": "bob's password"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, t1) = s
        .call(
            "POST",
            "/api/v1/users/bob/tokens",
            Some("alice-token"),
            Some(json!({"name": "laptop"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t1}");
    let v1 = t1["token"].as_str().expect("value").to_owned();
    let (status, body) = s
        .call(
            "POST",
            "/api/v1/users/bob/tokens",
            Some("alice-token"),
            Some(json!({"name": "laptop"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Listed without the value; last use recorded.
    let (_, list) = s
        .call("GET", "/api/v1/users/bob/tokens", Some("alice-token"), None)
        .await;
    assert_eq!(list[0]["last_used_at"], Value::Null);
    assert!(list[0].get("token").is_none(), "{list}");
    assert_eq!(
        s.call("GET", "/api/v1/runs", Some(&v1), None).await.0,
        StatusCode::OK
    );
    let (_, list) = s
        .call("GET", "/api/v1/users/bob/tokens", Some("alice-token"), None)
        .await;
    assert!(list[0]["last_used_at"].as_i64().is_some(), "{list}");

    // Bob manages his own tokens and password.
    let (status, t2) = s
        .call(
            "POST",
            "/api/v1/user/tokens",
            Some(&v1),
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t2}");
    let v2 = t2["token"].as_str().expect("value").to_owned();
    let (_, mine) = s.call("GET", "/api/v1/user/tokens", Some(&v2), None).await;
    assert_eq!(mine.as_array().map(Vec::len), Some(2));
    let (status, body) = s
        .call(
            "PUT",
            "/api/v1/user/password",
            Some(&v2),
            Some(json!({"password": "a new password"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_of(&body).contains("current_password"), "{body}");
    let (status, _) = s
        .call(
            "PUT",
            "/api/v1/user/password",
            Some(&v2),
            Some(json!({"current_password": "wrong one", "password": "a new password"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .call(
            "PUT",
            "/api/v1/user/password",
            Some(&v2),
            Some(json!({"current_password": "bob's password", "password": "a new password"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s
        .call(
            "PUT",
            "/api/v1/user/password",
            Some("vic-token"),
            Some(json!({"password": "a new password"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a [[user]]'s password is in the file"
    );
    // Revoking one token leaves the other working; bob revokes his own.
    let id1 = t1["id"].as_i64().expect("id");
    assert_eq!(
        s.call(
            "DELETE",
            &format!("/api/v1/user/tokens/{id1}"),
            Some(&v2),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.call("GET", "/api/v1/runs", Some(&v1), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.call("GET", "/api/v1/runs", Some(&v2), None).await.0,
        StatusCode::OK
    );
    let id2 = t2["id"].as_i64().expect("id");
    assert_eq!(
        s.call(
            "DELETE",
            &format!("/api/v1/user/tokens/{id2}"),
            Some("vic-token"),
            None
        )
        .await
        .0,
        StatusCode::CONFLICT
    );

    // Disabled: locked out; enabled again: back.
    assert_eq!(
        s.call(
            "PATCH",
            "/api/v1/users/bob",
            Some("alice-token"),
            Some(json!({"disabled": true}))
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        s.call("GET", "/api/v1/runs", Some(&v2), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.call(
            "PATCH",
            "/api/v1/users/bob",
            Some("alice-token"),
            Some(json!({"disabled": false}))
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        s.call("GET", "/api/v1/runs", Some(&v2), None).await.0,
        StatusCode::OK
    );
    // Deleted: the token goes with the user.
    assert_eq!(
        s.call("DELETE", "/api/v1/users/bob", Some("alice-token"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.call("GET", "/api/v1/runs", Some(&v2), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(s.state.db().tokens(None).await.expect("tokens").is_empty());

    let trail = s.audit().await;
    for (actor, action, detail) in [
        ("alice", "user.create", "bob (maintainer)"),
        ("alice", "token.create", "bob: laptop"),
        ("bob", "token.create", "bob: ci"),
        ("bob", "user.password", "bob: changed their password"),
        ("bob", "token.revoke", "bob: laptop"),
        ("alice", "user.update", "bob: disabled"),
        ("alice", "user.update", "bob: enabled"),
        ("alice", "user.delete", "bob"),
    ] {
        assert!(
            trail
                .iter()
                .any(|(a, b, d)| a == actor && b == action && d == detail),
            "{actor} {action} {detail}: {trail:#?}"
        );
    }
    assert!(
        !trail
            .iter()
            .any(|(_, _, d)| d.contains("slw_") || d.contains("password\"")),
        "no secret in the trail: {trail:#?}"
    );
}

#[tokio::test]
async fn users_the_repositories_api_audits_changes_with_the_user_but_never_a_value() {
    let s = server(THREE_USERS).await;
    let repo = json!({"name": "team/app", "clone_url": "git://127.0.0.1:1/app.git", "forge": "gitea", "webhook_secret": "hook-s3cret"});
    assert_eq!(
        s.call(
            "POST",
            "/api/v1/repositories",
            Some("mona-token"),
            Some(repo.clone())
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = s
        .call(
            "POST",
            "/api/v1/repositories",
            Some("alice-token"),
            Some(repo),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = json!({"value": "very-secret-value"});
    assert_eq!(
        s.call(
            "PUT",
            "/api/v1/repositories/team/app/secrets/DEPLOY_KEY",
            Some("alice-token"),
            Some(secret)
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.call(
            "PUT",
            "/api/v1/organizations/team/variables/REGION",
            Some("alice-token"),
            Some(json!({"value": "eu"}))
        )
        .await
        .0,
        StatusCode::CREATED
    );
    // A refused change is not recorded as made.
    assert_eq!(
        s.call(
            "PUT",
            "/api/v1/repositories/team/app/secrets/1BAD",
            Some("alice-token"),
            Some(json!({"value": "x"}))
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    let (status, body) = s
        .call(
            "DELETE",
            "/api/v1/repositories/team/app/caches?key=npm-",
            Some("alice-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        s.call(
            "DELETE",
            "/api/v1/repositories/team/app",
            Some("alice-token"),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    let trail = s.audit().await;
    let expected = [
        ("alice", "repository.create", "team/app"),
        ("alice", "secret.put", "repo:team/app DEPLOY_KEY"),
        ("alice", "variable.put", "org:team REGION"),
        ("alice", "cache.delete", "team/app key=npm-"),
        ("alice", "repository.delete", "team/app"),
    ];
    let got: Vec<(&str, &str, &str)> = trail
        .iter()
        .map(|(a, b, d)| (a.as_str(), b.as_str(), d.as_str()))
        .collect();
    assert_eq!(got, expected);
    let events = s
        .state
        .db()
        .audit_events(&AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert!(
        events[0].repository.is_some(),
        "the repository's events carry its id"
    );
    assert!(
        !format!("{events:?}").contains("very-secret-value")
            && !format!("{events:?}").contains("hook-s3cret")
    );
}

#[tokio::test]
async fn users_of_the_store_approve_as_reviewers_by_name_or_group() {
    let s = server(&format!(
        "{THREE_USERS}\n[[environment]]\nrepository = \"team/app\"\nname = \"production\"\nreviewers = [\"releasers\"]\n"
    ))
    .await;
    let mut tokens = std::collections::HashMap::new();
    for (name, groups) in [("rita", vec!["releasers"]), ("otto", vec!["ops"])] {
        let (status, c) = s
            .call(
                "POST",
                "/api/v1/users",
                Some("alice-token"),
                Some(json!({"name": name, "role": "maintainer", "groups": groups, "token": "t"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        tokens.insert(
            name,
            c["token"]["token"].as_str().expect("token").to_owned(),
        );
    }
    // A run whose production job waits for a reviewer.
    let db = s.state.db();
    let repo = db
        .upsert_repository("team/app", "git://127.0.0.1:1/app.git", "gitea", 1)
        .await
        .expect("repo");
    let (run, jobs) = db
        .create_run(
            &NewRun {
                repository: repo,
                workflow_file: ".slipway/workflows/deliver.yml".into(),
                workflow_name: "deliver".into(),
                event: "push".into(),
                git_ref: "refs/heads/main".into(),
                sha: "a".repeat(40),
                actor: "carol".into(),
                spec: "{}".into(),
                concurrency_group: None,
            },
            &[NewJob {
                key: "production".into(),
                name: "production".into(),
                needs: "[]".into(),
                labels: "[]".into(),
                condition: None,
                status: JobStatus::Pending,
                result: None,
                log: None,
            }],
            1,
        )
        .await
        .expect("run");
    let d = db
        .create_deployment(
            &NewDeployment {
                repository: repo,
                environment: "production".into(),
                run,
                job: jobs[0],
                job_key: "production".into(),
                sha: "a".repeat(40),
                git_ref: "refs/heads/main".into(),
                pusher: "carol".into(),
                status: DeploymentStatus::Queued,
                reason: None,
                url: None,
                rollback_of: None,
            },
            2,
        )
        .await
        .expect("deployment");
    db.set_deployment_status(d, DeploymentStatus::Waiting, Some("needs a reviewer"), 3)
        .await
        .expect("waiting");
    let approve = json!({"environment": "production", "comment": "ship it"});
    let path = format!("/api/v1/runs/{}/approve", run.0);
    let (status, body) = s
        .call("POST", &path, Some(&tokens["otto"]), Some(approve.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        error_of(&body).contains("otto is not a reviewer of production"),
        "{body}"
    );
    let (status, body) = s
        .call("POST", &path, Some(&tokens["rita"]), Some(approve))
        .await;
    assert!(status.is_success(), "{status} {body}");
    let approvals = db.approvals(d).await.expect("approvals");
    assert_eq!(
        approvals
            .iter()
            .map(|a| (a.user.as_str(), a.decision.as_str()))
            .collect::<Vec<_>>(),
        [("rita", "approved")]
    );
}

#[tokio::test]
async fn users_a_dispatch_is_audited_with_the_user_who_dispatched() {
    let git = test_support::git::GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".slipway/workflows/manual.yml",
        "on: workflow_dispatch\njobs:\n  hello:\n    runs-on: linux\n    steps:\n      - run: echo hi\n",
    );
    tree.commit("a manual workflow");
    tree.push("main");
    let s = server(&format!(
        "{THREE_USERS}\n[[repository]]\nname = \"team/app\"\nclone_url = \"{clone_url}\"\nforge = \"gitea\"\n"
    ))
    .await;
    let (status, c) = s
        .call(
            "POST",
            "/api/v1/users",
            Some("alice-token"),
            Some(json!({"name": "max", "role": "maintainer", "token": "t"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let token = c["token"]["token"].as_str().expect("token").to_owned();
    let body = json!({"repository": "team/app", "workflow": "manual.yml", "ref": "main"});
    assert_eq!(
        s.call(
            "POST",
            "/api/v1/dispatch",
            Some("vic-token"),
            Some(body.clone())
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (status, created) = s
        .call("POST", "/api/v1/dispatch", Some(&token), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let run = created["runs"][0].as_i64().expect("a run");
    let stored = s
        .state
        .db()
        .run(store::sql::RunId(run))
        .await
        .expect("run")
        .expect("exists");
    assert_eq!(stored.actor, "max");
    let events = s
        .state
        .db()
        .audit_events(&AuditFilter {
            run: Some(stored.id),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert_eq!(
        events
            .iter()
            .map(|e| (e.actor.as_str(), e.action.as_str()))
            .collect::<Vec<_>>(),
        [("max", "run.dispatch")]
    );
}
