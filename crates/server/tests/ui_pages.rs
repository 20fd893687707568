//! The web UI's HTTP behaviour without a browser (`app(state).oneshot`): sign-in (argon2
//! password, API token, wrong password keeps the name), redirects to sign-in, 404 pages,
//! escaping of commit messages, branch and job names, viewers cannot act, maintainers can
//! and the action is in the audit trail with the user, the cross-site guard, the job log
//! resumes after `Last-Event-ID` (each chunk with its time), step summaries rendered as
//! markdown with HTML escaped, the Run workflow page.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use server::config::{Config, User};
use server::{AppState, Options, app};
use store::sql::{AuditFilter, JobStatus, NewJob, NewRun, RunId};
use tower::ServiceExt;

struct Ui {
    state: AppState,
    _data: tempfile::TempDir,
    run: i64,
    job: i64,
}

fn user(name: &str, role: &str) -> User {
    User {
        name: name.into(),
        token: format!("{name}-token"),
        role: role.into(),
        groups: vec![],
    }
}

async fn setup() -> Ui {
    let data = test_support::tempdir();
    let hash = common::password_hash("pw-alice");
    let config = Config {
        users: vec![user("alice", "maintainer"), user("victor", "viewer")],
        passwords: [("alice".to_owned(), hash)].into(),
        ..Config::default()
    };
    let mut options = Options::new(data.path().to_owned(), config);
    options.embedded_agent = false;
    let state = AppState::new(options).await.expect("state");
    let db = state.db();
    let repo = db
        .upsert_repository("team/app", "git://127.0.0.1:1/app.git", "gitea", 1)
        .await
        .expect("repo");
    let spec =
        serde_json::json!({"event": {"head_commit": {"message": "fix <script>alert(1)</script>"}}});
    let (run, jobs) = db
        .create_run(
            &NewRun {
                repository: repo,
                workflow_file: ".slipway/workflows/ci.yml".into(),
                workflow_name: "CI".into(),
                event: "push".into(),
                git_ref: "refs/heads/<b>evil</b>".into(),
                sha: "a".repeat(40),
                actor: "carol".into(),
                spec: spec.to_string(),
                concurrency_group: None,
            },
            &[
                NewJob {
                    key: "build".into(),
                    name: "<img src=x onerror=alert(2)>".into(),
                    needs: "[]".into(),
                    labels: "[]".into(),
                    condition: None,
                    status: JobStatus::Queued,
                    result: None,
                    log: None,
                },
                NewJob {
                    key: "test".into(),
                    name: "test".into(),
                    needs: "[\"build\"]".into(),
                    labels: "[]".into(),
                    condition: None,
                    status: JobStatus::Pending,
                    result: None,
                    log: None,
                },
            ],
            2,
        )
        .await
        .expect("run");
    Ui {
        state,
        _data: data,
        run: run.0,
        job: jobs[0].0,
    }
}

async fn send(ui: &Ui, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app(ui.state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).expect("request")
}

fn login(name: &str, password: &str) -> Request<Body> {
    Request::post("/login?next=/runs/1")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("name={name}&password={password}")))
        .expect("request")
}

async fn session(ui: &Ui, name: &str, password: &str) -> String {
    let (status, headers, body) = send(ui, login(name, password)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[header::LOCATION], "/runs/1");
    let cookie = headers[header::SET_COOKIE].to_str().expect("ascii");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().expect("name=value").to_owned()
}

#[tokio::test]
async fn ui_pages_need_a_session_and_sign_in_checks_the_password() {
    let ui = setup().await;
    let (status, headers, _) = send(&ui, get(&format!("/runs/{}", ui.run), None)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[header::LOCATION],
        format!("/login?next=%2Fruns%2F{}", ui.run)
    );

    let (status, _, body) = send(&ui, login("alice", "nope")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body.contains("Wrong user name or password") && body.contains("value=\"alice\""),
        "{body}"
    );
    // A user without a password signs in with their API token.
    let _ = session(&ui, "victor", "victor-token").await;
    let (status, _, _) = send(&ui, login("victor", "pw-alice")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let cookie = session(&ui, "alice", "pw-alice").await;
    let (status, _, body) = send(&ui, get(&format!("/runs/{}", ui.run), Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("alice <small>(maintainer)</small>"), "{body}");
    // A tampered cookie is no session.
    let (status, _, _) = send(&ui, get("/", Some(&format!("{cookie}x")))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // An API token works on pages too.
    let req = Request::get("/")
        .header(header::AUTHORIZATION, "Bearer victor-token")
        .body(Body::empty())
        .expect("req");
    let (status, _, body) = send(&ui, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("team/app"), "{body}");
}

#[tokio::test]
async fn ui_html_in_messages_branches_and_job_names_is_escaped() {
    let ui = setup().await;
    let cookie = session(&ui, "alice", "pw-alice").await;
    for path in [
        format!("/runs/{}", ui.run),
        "/".to_owned(),
        "/repos/team/app".to_owned(),
    ] {
        let (status, _, body) = send(&ui, get(&path, Some(&cookie))).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(!body.contains("<script>alert"), "{path}: {body}");
        assert!(!body.contains("<b>evil"), "{path}: {body}");
        assert!(!body.contains("<img src=x"), "{path}: {body}");
        assert!(
            body.contains("fix &lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn ui_unknown_ids_are_404_pages() {
    let ui = setup().await;
    let cookie = session(&ui, "alice", "pw-alice").await;
    for path in [
        "/runs/424242",
        "/runs/not-a-number",
        "/repos/no/such",
        "/repos/no/such/dispatch",
    ] {
        let (status, headers, body) = send(&ui, get(path, Some(&cookie))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap_or("")
                .starts_with("text/html"),
            "{path}"
        );
        assert!(body.contains("<h1>404 Not Found</h1>"), "{path}: {body}");
    }
}

fn action(path: &str, cookie: &str, guard: bool) -> Request<Body> {
    let mut b = Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/json");
    if guard {
        b = b.header("x-slipway-ui", "1");
    }
    b.body(Body::from("{}")).expect("request")
}

#[tokio::test]
async fn ui_viewers_read_maintainers_cancel_and_the_audit_trail_names_them() {
    let ui = setup().await;
    let viewer = session(&ui, "victor", "victor-token").await;
    let (_, _, body) = send(&ui, get(&format!("/runs/{}", ui.run), Some(&viewer))).await;
    assert!(
        !body.contains("data-action=\"cancel\""),
        "a viewer gets no cancel button: {body}"
    );
    let (status, _, body) = send(
        &ui,
        action(&format!("/ui/api/runs/{}/cancel", ui.run), &viewer, true),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let alice = session(&ui, "alice", "pw-alice").await;
    let (_, _, body) = send(&ui, get(&format!("/runs/{}", ui.run), Some(&alice))).await;
    assert!(body.contains("data-action=\"cancel\""), "{body}");
    // Without the header a cross-site form could send, nothing happens.
    let (status, _, _) = send(
        &ui,
        action(&format!("/ui/api/runs/{}/cancel", ui.run), &alice, false),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, body) = send(
        &ui,
        action(&format!("/ui/api/runs/{}/cancel", ui.run), &alice, true),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run = ui
        .state
        .db()
        .run(RunId(ui.run))
        .await
        .expect("db")
        .expect("run");
    assert!(
        run.cancel_requested || run.status == store::sql::RunStatus::Done,
        "{run:?}"
    );
    let audit = ui
        .state
        .db()
        .audit_events(&AuditFilter {
            run: Some(RunId(ui.run)),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.actor == "alice" && e.action == "run.cancel"),
        "{audit:#?}"
    );
    assert!(
        !audit.iter().any(|e| e.actor == "victor"),
        "a refused action is not recorded as done: {audit:#?}"
    );
}

#[tokio::test]
async fn ui_the_job_log_resumes_after_the_last_event_id() {
    let ui = setup().await;
    let db = ui.state.db();
    let job = db
        .job(store::sql::JobId(ui.job))
        .await
        .expect("db")
        .expect("job");
    for seq in 0..3 {
        db.append_log(
            job.id,
            job.attempt,
            seq,
            format!("chunk {seq}\n").as_bytes(),
            3,
        )
        .await
        .expect("log");
    }
    db.settle_job(job.id, store::sql::Conclusion::Success, None, 4)
        .await
        .expect("settle");
    let cookie = session(&ui, "alice", "pw-alice").await;
    let req = Request::get(format!("/ui/jobs/{}/log?follow=1", ui.job))
        .header(header::COOKIE, &cookie)
        .header("last-event-id", format!("{}.0", job.attempt))
        .body(Body::empty())
        .expect("req");
    let (status, _, body) = send(&ui, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("chunk 0"), "{body}");
    assert!(
        body.contains("chunk 1") && body.contains("chunk 2"),
        "{body}"
    );
    assert!(body.contains(&format!("id: {}.2", job.attempt)), "{body}");
    assert!(
        body.contains("\"time\":3"),
        "each chunk carries its time: {body}"
    );
    assert!(body.contains("event: end"), "{body}");
    let (_, _, text) = send(&ui, get(&format!("/ui/jobs/{}/log", ui.job), Some(&cookie))).await;
    assert_eq!(text, "chunk 0\nchunk 1\nchunk 2\n");
}

#[tokio::test]
async fn ui_rerun_all_needs_a_maintainer_and_a_finished_run_and_is_audited() {
    let ui = setup().await;
    let alice = session(&ui, "alice", "pw-alice").await;
    let viewer = session(&ui, "victor", "victor-token").await;
    let path = format!("/ui/api/runs/{}/rerun?all=true", ui.run);
    let (status, _, body) = send(&ui, action(&path, &alice, true)).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the run has not finished: {body}"
    );
    ui.state
        .db()
        .finish_run(
            RunId(ui.run),
            store::sql::Conclusion::Failure,
            Some("test"),
            5,
        )
        .await
        .expect("finish");
    let (status, _, _) = send(&ui, action(&path, &viewer, true)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = send(&ui, action(&path, &alice, false)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the cross-site guard");
    let (status, _, body) = send(&ui, action(&path, &alice, true)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run = ui
        .state
        .db()
        .run(RunId(ui.run))
        .await
        .expect("db")
        .expect("run");
    assert_ne!(run.status, store::sql::RunStatus::Done, "{run:?}");
    let audit = ui
        .state
        .db()
        .audit_events(&AuditFilter {
            run: Some(RunId(ui.run)),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.actor == "alice" && e.action == "run.rerun_all"),
        "{audit:#?}"
    );
    let (status, _, body) = send(&ui, get(&format!("/runs/{}", ui.run), Some(&alice))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("data-action=\"cancel\""),
        "a re-opened run can be cancelled again: {body}"
    );
}

#[tokio::test]
async fn ui_step_summaries_are_markdown_with_html_shown_as_text() {
    let ui = setup().await;
    let db = ui.state.db();
    let job = db
        .job(store::sql::JobId(ui.job))
        .await
        .expect("db")
        .expect("job");
    db.record_step(&store::sql::StepRecord {
        job: job.id,
        attempt: job.attempt,
        number: 0,
        name: "Report".into(),
        status: "done".into(),
        conclusion: Some("success".into()),
        started_at: Some(3),
        finished_at: Some(4),
        outputs: None,
        summary: Some(
            "### Coverage 93%\n\n| file | lines |\n|---|---|\n| a.rs | 10 |\n\n<script>window.x=1</script>\n\n[go](javascript:alert(1)) [docs](https://example.com/x)\n"
                .into(),
        ),
    })
    .await
    .expect("step");
    let cookie = session(&ui, "alice", "pw-alice").await;
    let (status, _, body) = send(
        &ui,
        get(&format!("/runs/{}?job={}", ui.run, ui.job), Some(&cookie)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let summary = &body[body.find("class=\"summary\"").expect("a job summary")..];
    assert!(summary.contains("<h3>Coverage 93%</h3>"), "{summary}");
    assert!(summary.contains("<td>a.rs</td>"), "{summary}");
    assert!(
        summary.contains("&lt;script&gt;window.x=1&lt;/script&gt;"),
        "{summary}"
    );
    assert!(!body.contains("<script>window.x"), "{body}");
    assert!(!summary.contains("javascript:"), "{summary}");
    assert!(
        summary.contains("<a href=\"https://example.com/x\">docs</a>"),
        "{summary}"
    );
}

#[tokio::test]
async fn ui_the_run_workflow_page_says_when_a_branch_cannot_be_read() {
    let ui = setup().await;
    let cookie = session(&ui, "alice", "pw-alice").await;
    // team/app is in the store but not configured: unknown to the server as a repository.
    let (status, _, body) = send(
        &ui,
        get("/repos/team/app/dispatch?ref=%3Cb%3Ex", Some(&cookie)),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(!body.contains("<b>x"), "{body}");
    // The repository page links to it for those who may start runs.
    let (_, _, page) = send(&ui, get("/repos/team/app", Some(&cookie))).await;
    assert!(page.contains("href=\"/repos/team/app/dispatch\""), "{page}");
    let victor = session(&ui, "victor", "victor-token").await;
    let (_, _, page) = send(&ui, get("/repos/team/app", Some(&victor))).await;
    assert!(
        !page.contains("/dispatch\""),
        "a viewer is not offered it: {page}"
    );
}
