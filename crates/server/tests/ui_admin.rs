//! The admin pages over HTTP (`app(state).oneshot`, no browser): only admins get them (403
//! pages otherwise, and no Admin link); registering and editing a repository, its secrets and
//! variables and an organisation's, with forms that keep what was typed on an error (but never
//! a password or secret) and mark the field; creating a maintainer who then signs in, manages
//! their own password and tokens, and is locked out when disabled; the first user of an open
//! server; cross-site posts refused; every change in the audit trail with the admin's name.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::THREE_USERS;
use http_body_util::BodyExt;
use server::{AppState, app};
use tower::ServiceExt;

struct Ui {
    state: AppState,
    _data: tempfile::TempDir,
}

struct Page {
    status: StatusCode,
    location: String,
    cookie: Option<String>,
    html: String,
}

/// How a request authenticates.
#[derive(Clone, Copy)]
enum As<'a> {
    Nobody,
    Token(&'a str),
    Cookie(&'a str),
}

async fn ui(config: &str) -> Ui {
    let (state, _data) = common::state_from_toml(config).await;
    Ui { state, _data }
}

impl Ui {
    async fn send(
        &self,
        method: &str,
        path: &str,
        who: As<'_>,
        form: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut req = Request::builder().method(method).uri(path);
        match who {
            As::Nobody => {}
            As::Token(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
            As::Cookie(c) => req = req.header(header::COOKIE, c),
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let body = match form {
            Some(f) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(f.to_owned())
            }
            None => Body::empty(),
        };
        let resp = app(self.state.clone())
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("response");
        let h = |n: header::HeaderName| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = h(header::LOCATION).unwrap_or_default();
        let cookie = h(header::SET_COOKIE).and_then(|c| c.split(';').next().map(str::to_owned));
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        Page {
            status,
            location,
            cookie,
            html: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, who: As<'_>) -> Page {
        self.send("GET", path, who, None, &[]).await
    }

    async fn post(&self, path: &str, who: As<'_>, form: &str) -> Page {
        self.send("POST", path, who, Some(form), &[]).await
    }

    async fn audit(&self) -> Vec<(String, String, String)> {
        common::audit_triples(&self.state).await
    }
}

fn assert_has(html: &str, needle: &str) {
    assert!(html.contains(needle), "expected {needle:?} in:\n{html}");
}

/// The new token a page shows once (in its read-only `token` field).
fn shown_token(html: &str) -> String {
    html.split("class=\"token\" readonly value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("token shown")
        .to_owned()
}

fn assert_lacks(html: &str, needle: &str) {
    assert!(
        !html.contains(needle),
        "did not expect {needle:?} in:\n{html}"
    );
}

#[tokio::test]
async fn ui_admin_pages_are_for_admins_only() {
    let ui = ui(THREE_USERS).await;
    for token in ["vic-token", "mona-token"] {
        for path in [
            "/admin",
            "/admin/repositories",
            "/admin/users",
            "/admin/users/alice",
            "/admin/organizations/team",
        ] {
            let p = ui.get(path, As::Token(token)).await;
            assert_eq!(p.status, StatusCode::FORBIDDEN, "{token} {path}");
            assert_has(&p.html, "Only admins manage");
            assert_lacks(&p.html, "href=\"/admin\"");
        }
        let p = ui
            .post(
                "/admin/users",
                As::Token(token),
                "name=evil&role=admin&password=long+enough",
            )
            .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN);
        // Everyone has an account page.
        assert_eq!(
            ui.get("/account", As::Token(token)).await.status,
            StatusCode::OK
        );
    }
    assert!(
        ui.state.db().users().await.expect("users").is_empty(),
        "nothing was created"
    );
    let p = ui.get("/admin", As::Token("alice-token")).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_has(&p.html, "href=\"/admin\" aria-current=\"page\"");
    for link in [
        "/admin/repositories",
        "/admin/organizations",
        "/admin/environments",
        "/admin/users",
    ] {
        assert_has(&p.html, &format!("href=\"{link}\""));
    }
    let p = ui.get("/admin", As::Nobody).await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (StatusCode::SEE_OTHER, "/login?next=%2Fadmin")
    );
    // A cross-site form post is refused even for an admin.
    let p = ui
        .send(
            "POST",
            "/admin/users",
            As::Token("alice-token"),
            Some("name=x&password=long+enough"),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(ui.state.db().users().await.expect("users").is_empty());
}

#[tokio::test]
async fn ui_admin_registers_a_repository_with_secrets_and_variables_keeping_what_was_typed() {
    let ui = ui(THREE_USERS).await;
    let alice = As::Token("alice-token");
    // An empty clone URL: the form comes back with what was typed, the field marked, and the
    // secret not sent back.
    let p = ui
        .post(
            "/admin/repositories",
            alice,
            "name=team%2Fapp&clone_url=&forge=github&forge_api=http%3A%2F%2Fforge%2Fapi&webhook_secret=hunter2&forge_token=&poll_interval=",
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert_has(&p.html, "request field `clone_url`: must not be empty");
    assert_has(&p.html, "name=\"name\" type=\"text\" value=\"team/app\"");
    assert_has(&p.html, "value=\"http://forge/api\"");
    assert_has(&p.html, "<option value=\"github\" selected>");
    assert_has(
        &p.html,
        "name=\"clone_url\" type=\"text\" value=\"\" aria-describedby=\"register-error\" aria-invalid=\"true\" autofocus",
    );
    assert_lacks(&p.html, "hunter2");
    assert!(
        ui.state.repository("team/app").is_none(),
        "nothing half-registered"
    );

    let p = ui
        .post("/admin/repositories", alice, "name=team%2Fapp&clone_url=git%3A%2F%2F127.0.0.1%3A1%2Fapp.git&forge=gitea&webhook_secret=hunter2&poll_interval=soon")
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert_has(&p.html, "request field `poll_interval`");
    assert_has(
        &p.html,
        "value=\"soon\" aria-describedby=\"register-poll_interval-hint register-error\" aria-invalid=\"true\"",
    );

    let p = ui
        .post("/admin/repositories", alice, "name=team%2Fapp&clone_url=git%3A%2F%2F127.0.0.1%3A1%2Fapp.git&forge=gitea&webhook_secret=hunter2&poll_interval=")
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (
            StatusCode::SEE_OTHER,
            "/admin/repositories/team/app?done=registered"
        )
    );
    let repo = ui.state.repository("team/app").expect("registered");
    assert_eq!(repo.webhook_secret.as_deref(), Some("hunter2"));
    let p = ui.get(&p.location, alice).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_has(&p.html, "Repository registered.");
    assert_has(&p.html, "Set. Leave empty to keep it.");
    assert_lacks(&p.html, "hunter2");

    // Edit: a bad forge API URL keeps the typed values; then saved.
    let p = ui
        .post(
            "/admin/repositories/team/app",
            alice,
            "clone_url=git%3A%2F%2Fnew&forge=gitlab&forge_api=ftp%3A%2F%2Fx&poll_interval=30s",
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert_has(&p.html, "request field `forge_api`");
    assert_has(&p.html, "value=\"ftp://x\"");
    assert_has(&p.html, "<option value=\"gitlab\" selected>");
    let p = ui
        .post(
            "/admin/repositories/team/app",
            alice,
            "clone_url=git%3A%2F%2Fnew&forge=gitlab&forge_api=&poll_interval=30s",
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    let repo = ui.state.repository("team/app").expect("kept");
    assert_eq!(
        (repo.clone_url.as_str(), repo.webhook_secret.as_deref()),
        ("git://new", Some("hunter2")),
        "an empty secret field keeps it"
    );
    let p = ui.get("/admin/repositories/team/app", alice).await;
    assert_has(&p.html, "value=\"30s\"");

    // Secrets (write-only) and variables.
    let p = ui
        .post(
            "/admin/repositories/team/app/secrets",
            alice,
            "name=1BAD&value=s3cr3t-value",
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert_has(
        &p.html,
        "value=\"1BAD\" aria-describedby=\"secret-name-hint secret-error\" aria-invalid=\"true\"",
    );
    assert_lacks(&p.html, "s3cr3t-value");
    let p = ui
        .post(
            "/admin/repositories/team/app/secrets",
            alice,
            "name=DEPLOY_KEY&value=s3cr3t-value",
        )
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (
            StatusCode::SEE_OTHER,
            "/admin/repositories/team/app?done=secret"
        )
    );
    let p = ui
        .post(
            "/admin/repositories/team/app/variables",
            alice,
            "name=REGION&value=eu-west",
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let p = ui.get("/admin/repositories/team/app", alice).await;
    assert_has(&p.html, "<code>DEPLOY_KEY</code>");
    assert_has(&p.html, "<code>eu-west</code>");
    assert_lacks(&p.html, "s3cr3t-value");
    assert_eq!(
        ui.state
            .repository("team/app")
            .and_then(|r| r.secrets.get("DEPLOY_KEY").cloned())
            .as_deref(),
        Some("s3cr3t-value")
    );

    // Deleting asks first.
    let p = ui
        .post(
            "/admin/repositories/team/app/secrets/DEPLOY_KEY/delete",
            alice,
            "",
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert_has(&p.html, "Delete DEPLOY_KEY?");
    assert!(
        ui.state
            .repository("team/app")
            .is_some_and(|r| r.secrets.contains_key("DEPLOY_KEY"))
    );
    let p = ui
        .post(
            "/admin/repositories/team/app/secrets/DEPLOY_KEY/delete",
            alice,
            "confirm=yes",
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(
        ui.state
            .repository("team/app")
            .is_some_and(|r| !r.secrets.contains_key("DEPLOY_KEY"))
    );

    // An organisation's secret reaches the repository.
    let p = ui.get("/admin/organizations", alice).await;
    assert_has(&p.html, "href=\"/admin/organizations/team\"");
    let p = ui
        .post(
            "/admin/organizations/team/secrets",
            alice,
            "name=ORG_TOKEN&value=org-value",
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        ui.state
            .repository("team/app")
            .and_then(|r| r.secrets.get("ORG_TOKEN").cloned())
            .as_deref(),
        Some("org-value")
    );

    // The repository goes, after confirming.
    let p = ui
        .post("/admin/repositories/team/app/delete", alice, "confirm=yes")
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (StatusCode::SEE_OTHER, "/admin/repositories?done=deleted")
    );
    assert!(ui.state.repository("team/app").is_none());
    assert_eq!(
        ui.get("/admin/repositories/team/app", alice).await.status,
        StatusCode::NOT_FOUND
    );

    let trail = ui.audit().await;
    let got: Vec<(&str, &str, &str)> = trail
        .iter()
        .map(|(a, b, d)| (a.as_str(), b.as_str(), d.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("alice", "repository.create", "team/app"),
            ("alice", "repository.update", "team/app"),
            ("alice", "secret.put", "repo:team/app DEPLOY_KEY"),
            ("alice", "variable.put", "repo:team/app REGION"),
            ("alice", "secret.delete", "repo:team/app DEPLOY_KEY"),
            ("alice", "secret.put", "org:team ORG_TOKEN"),
            ("alice", "repository.delete", "team/app"),
        ]
    );
    let p = ui.get("/admin", alice).await;
    assert_has(&p.html, "<code>repository.delete</code>");
}

#[tokio::test]
async fn ui_admin_creates_a_maintainer_who_signs_in_and_manages_their_account() {
    let ui = ui(THREE_USERS).await;
    let alice = As::Token("alice-token");
    let p = ui
        .post(
            "/admin/users",
            alice,
            "name=max&role=maintainer&groups=ops%2C+dev&password=short&token=",
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert_has(
        &p.html,
        "request field `password`: must be at least 8 characters",
    );
    assert_has(&p.html, "value=\"max\"");
    assert_has(&p.html, "value=\"ops, dev\"");
    assert_has(&p.html, "<option value=\"maintainer\" selected>");
    assert_has(&p.html, "name=\"password\" type=\"password\" value=\"\"");
    assert_has(
        &p.html,
        "aria-invalid=\"true\" autofocus autocomplete=\"new-password\"",
    );

    let p = ui
        .post(
            "/admin/users",
            alice,
            "name=max&role=maintainer&groups=ops%2C+dev&password=max+password&token=cli",
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.html);
    assert_has(&p.html, "User max created.");
    assert_has(&p.html, "Copy it now: it is not shown again.");
    let token = shown_token(&p.html);
    assert!(token.starts_with("slw_"), "{token}");
    let p = ui.get("/admin/users/max", alice).await;
    assert_has(&p.html, "<td>cli</td>");
    assert_lacks(&p.html, &token);

    let p = ui
        .post(
            "/admin/users",
            alice,
            "name=max&role=viewer&password=another+one",
        )
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT);
    assert_has(&p.html, "already exists");

    // max signs in with the password; he is a maintainer: no admin pages.
    let p = ui
        .post(
            "/login?next=/admin",
            As::Nobody,
            "name=max&password=max+password",
        )
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (StatusCode::SEE_OTHER, "/admin")
    );
    let cookie = p.cookie.expect("session cookie");
    let max = As::Cookie(&cookie);
    let p = ui.get("/admin", max).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_has(&p.html, "max is a maintainer");
    let p = ui.get("/", max).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_has(&p.html, "href=\"/account\"");
    assert_lacks(&p.html, "href=\"/admin\"");
    // The token signs in too, and works on the API.
    assert_eq!(
        ui.get("/api/v1/user", As::Token(&token)).await.status,
        StatusCode::OK
    );

    // His account: a wrong current password, then a new one; a token of his own.
    let p = ui
        .post(
            "/account/password",
            max,
            "current_password=nope+nope&password=brand+new+pw",
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_has(&p.html, "request field `current_password`: wrong password");
    let p = ui
        .post(
            "/account/password",
            max,
            "current_password=max+password&password=brand+new+pw",
        )
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (StatusCode::SEE_OTHER, "/account?done=password")
    );
    let renewed = p.cookie.expect("this session goes on with a new cookie");
    assert_eq!(
        ui.get("/", max).await.status,
        StatusCode::SEE_OTHER,
        "sessions made with the old password ended"
    );
    let max = As::Cookie(&renewed);
    assert_eq!(ui.get("/", max).await.status, StatusCode::OK);
    assert_eq!(
        ui.post("/login", As::Nobody, "name=max&password=max+password")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        ui.post("/login", As::Nobody, "name=max&password=brand+new+pw")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let p = ui.post("/account/tokens", max, "name=laptop").await;
    assert_eq!(p.status, StatusCode::CREATED);
    assert_has(&p.html, "New token “laptop”");
    let p = ui.get("/account", max).await;
    assert_has(&p.html, "<td>laptop</td>");
    assert_has(&p.html, "<td>cli</td>");

    // alice demotes him and resets his password, then disables him: his session ends.
    let p = ui
        .post("/admin/users/max", alice, "role=viewer&groups=ops")
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let p = ui
        .post("/admin/users/max/password", alice, "password=")
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    let p = ui
        .post(
            "/admin/users/max/password",
            alice,
            "password=reset+by+alice",
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let p = ui.get("/admin/users/max", alice).await;
    assert_has(&p.html, "<option value=\"viewer\" selected>");
    assert_has(&p.html, "value=\"ops\"");
    assert_eq!(
        ui.get("/", max).await.status,
        StatusCode::SEE_OTHER,
        "an admin's password reset ends the user's sessions"
    );
    let p = ui
        .post("/login", As::Nobody, "name=max&password=reset+by+alice")
        .await;
    let again = p.cookie.expect("signed in with the reset password");
    let max = As::Cookie(&again);
    assert_eq!(ui.get("/", max).await.status, StatusCode::OK);
    let p = ui
        .post("/admin/users/max/disabled", alice, "disabled=true")
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let p = ui.get("/", max).await;
    assert_eq!(
        p.status,
        StatusCode::SEE_OTHER,
        "a disabled user's session ends"
    );
    assert_eq!(
        ui.get("/api/v1/user", As::Token(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        ui.post("/login", As::Nobody, "name=max&password=reset+by+alice")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // The token revoked, the user deleted (after confirming).
    let id = ui.state.db().tokens(Some("max")).await.expect("tokens")[0]
        .id
        .0;
    let p = ui
        .post(&format!("/admin/users/max/tokens/{id}/revoke"), alice, "")
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let p = ui.post("/admin/users/max/delete", alice, "").await;
    assert_has(&p.html, "Delete max?");
    let p = ui
        .post("/admin/users/max/delete", alice, "confirm=yes")
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (StatusCode::SEE_OTHER, "/admin/users?done=deleted")
    );
    assert_eq!(
        ui.get("/admin/users/max", alice).await.status,
        StatusCode::NOT_FOUND
    );

    let trail = ui.audit().await;
    for (actor, action, detail) in [
        ("alice", "user.create", "max (maintainer)"),
        ("alice", "token.create", "max: cli"),
        ("max", "user.password", "max: changed their password"),
        ("max", "token.create", "max: laptop"),
        (
            "alice",
            "user.update",
            "max: role maintainer -> viewer; groups [ops]",
        ),
        ("alice", "user.update", "max: password reset"),
        ("alice", "user.update", "max: disabled"),
        ("alice", "token.revoke", "max: cli"),
        ("alice", "user.delete", "max"),
    ] {
        assert!(
            trail
                .iter()
                .any(|(a, b, d)| a == actor && b == action && d == detail),
            "{actor} {action} {detail}: {trail:#?}"
        );
    }
}

#[tokio::test]
async fn ui_admin_the_first_user_closes_an_open_server() {
    let ui = ui("").await;
    let p = ui.get("/admin/users", As::Nobody).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_has(&p.html, "the server is open");
    assert_has(&p.html, "<option value=\"admin\" selected>");
    let p = ui
        .post(
            "/admin/users",
            As::Nobody,
            "name=root&role=viewer&password=long+enough",
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert_has(&p.html, "the first user must be an admin");
    let p = ui
        .post(
            "/admin/users",
            As::Nobody,
            "name=root&role=admin&password=long+enough",
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.html);
    assert_has(&p.html, "no longer open: sign in as root");
    let p = ui.get("/admin", As::Nobody).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let p = ui
        .post(
            "/login?next=/admin",
            As::Nobody,
            "name=root&password=long+enough",
        )
        .await;
    let cookie = p.cookie.expect("session");
    let root = As::Cookie(&cookie);
    assert_eq!(ui.get("/admin", root).await.status, StatusCode::OK);

    // A token-only user signs in with the token (and not with another's).
    let p = ui
        .post(
            "/admin/users",
            root,
            "name=bot&role=viewer&password=&token=ci",
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.html);
    assert_has(&p.html, "token only");
    let token = shown_token(&p.html);
    let p = ui
        .post("/login", As::Nobody, &format!("name=bot&password={token}"))
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(p.cookie.is_some());
    let p = ui
        .post("/login", As::Nobody, "name=bot&password=long+enough")
        .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    let p = ui
        .post("/login", As::Nobody, &format!("name=root&password={token}"))
        .await;
    assert_eq!(
        p.status,
        StatusCode::UNAUTHORIZED,
        "bot's token does not sign root in"
    );
}
