//! The admin pages in a real browser: headless Chromium (Debian `chromium`) driven by
//! playwright-core (`npm ci --prefix ui-tests`) through `ui-tests/admin.mjs`, against a real
//! server on a loopback port.
//!
//! The script signs in as an admin, registers a repository (a bad value first: the form keeps
//! what was typed and focuses the field), adds a secret, creates a maintainer who then signs
//! in and is refused the admin pages — by keyboard — and checks a 375px-wide screen in dark
//! mode. This test then checks what the store holds and that the audit trail names the admin.
//! Set `SLIPWAY_UI_SCREENSHOTS=DIR` to save screenshots there.

mod common;

use std::time::Duration;

use server::config::{Config, ServerConfig, User};
use server::{AppState, Options};
use store::sql::AuditFilter;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_admin_in_a_real_browser() {
    let browser = common::Browser::require();

    let hash = common::password_hash("alice password");
    let config = Config {
        server: ServerConfig {
            external_url: "http://127.0.0.1".into(),
            ..ServerConfig::default()
        },
        users: vec![User {
            name: "alice".into(),
            token: "alice-token".into(),
            role: "admin".into(),
            groups: vec![],
        }],
        passwords: [("alice".to_owned(), hash)].into(),
        ..Config::default()
    };
    let data = test_support::tempdir();
    let mut options = Options::new(data.path().to_owned(), config);
    options.embedded_agent = false;
    let state = AppState::new(options).await.expect("server state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(server::run(listener, state.clone(), stop.clone()));

    browser
        .run_ok("admin.mjs", &url, &[], Duration::from_secs(180))
        .await;

    // What the browser did is in the store, and in the audit trail with alice's name.
    let repo = state.repository("team/app").expect("registered");
    assert_eq!(
        (
            repo.clone_url.as_str(),
            repo.forge_api.as_deref(),
            repo.webhook_secret.as_deref()
        ),
        (
            "git://127.0.0.1:9/app.git",
            Some("http://forge.example/api/v1"),
            Some("hook-secret-typed")
        )
    );
    assert_eq!(
        repo.secrets.get("DEPLOY_KEY").map(String::as_str),
        Some("ssh-key-material")
    );
    let max = state
        .db()
        .user("max")
        .await
        .expect("user")
        .expect("max exists");
    assert_eq!(
        (max.settings.role.as_str(), max.settings.groups.as_slice()),
        ("maintainer", ["releasers".to_owned()].as_slice())
    );
    let trail = state
        .db()
        .audit_events(&AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    let got: Vec<(&str, &str, &str)> = trail
        .iter()
        .map(|e| {
            (
                e.actor.as_str(),
                e.action.as_str(),
                e.detail.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("alice", "repository.create", "team/app"),
            ("alice", "secret.put", "repo:team/app DEPLOY_KEY"),
            ("alice", "user.create", "max (maintainer)"),
        ]
    );

    stop.cancel();
    while let Some(r) = tasks.join_next().await {
        r.expect("server task").expect("server ran");
    }
}
