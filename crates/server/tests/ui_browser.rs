//! The web UI in a real browser: headless Chromium (Debian `chromium`) driven by
//! playwright-core (`npm ci --prefix ui-tests`) through `ui-tests/run.mjs`, against a real
//! server (embedded agent, host executor) building a real `git daemon` repository.
//!
//! The script signs in (a wrong password first), watches the run's boxes change colour and
//! icon while the build log streams over SSE, approves the waiting production deployment with
//! the button (by keyboard), sees the environments page change, opens a run with a
//! 100,000-line log (search, line links, scrolling; only the visible rows in the DOM), and
//! checks a 375px-wide screen and dark mode. This test then checks the audit trail names the
//! user who approved. Set `SLIPWAY_UI_SCREENSHOTS=DIR` to save screenshots there.

use std::path::PathBuf;
use std::time::Duration;

use argon2::PasswordHasher;
use serde_json::json;
use server::config::{Config, Forge, RepositoryConfig, ServerConfig, User};
use server::environments::EnvironmentConfig;
use server::{AppState, Options};
use store::sql::{AuditFilter, Conclusion, JobStatus, NewJob, NewRun, RunId};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

fn workflow(go_file: &str) -> String {
    format!(
        r#"name: Deliver
on: push
jobs:
  build:
    runs-on: linux
    steps:
      - name: Compile
        run: |
          echo "::group::Toolchain"
          echo "rustc 1.95"
          echo "::endgroup::"
          printf '\033[32mgreen compile output\033[0m\n'
          echo "::warning file=src/main.rs,line=3::unused variable"
          echo "waiting for the go file"
          while [ ! -f "{go_file}" ]; do sleep 0.1; done
          echo "built after the go file"
  test:
    needs: build
    runs-on: linux
    steps:
      - run: echo "tests pass"
  production:
    needs: test
    environment: production
    runs-on: linux
    steps:
      - run: echo "deploying"
"#
    )
}

fn user(name: &str, role: &str) -> User {
    User {
        name: name.into(),
        token: format!("{name}-token"),
        role: role.into(),
        groups: vec![],
    }
}

/// Where `ui-tests/` is, with playwright-core installed; panics naming the fix otherwise.
fn ui_tests_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ui-tests");
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed: npm ci --prefix ui-tests (scripts/services install does this)"
    );
    dir
}

/// A 50-job graph: `log` (which gets the big log) and 49 jobs in 7 columns, each needing
/// the jobs of the column before.
fn big_jobs() -> Vec<NewJob> {
    let job = |key: String, needs: Vec<String>| NewJob {
        name: key.clone(),
        key,
        needs: serde_json::to_string(&needs).expect("json"),
        labels: "[]".into(),
        condition: None,
        status: JobStatus::Done,
        result: Some((Conclusion::Success, String::new())),
        log: None,
    };
    let mut jobs = vec![job("log".into(), vec![])];
    for col in 0..7 {
        for row in 0..7 {
            let needs = if col == 0 {
                vec!["log".to_owned()]
            } else {
                (0..7).map(|r| format!("stage-{}-{r}", col - 1)).collect()
            };
            jobs.push(job(format!("stage-{col}-{row}"), needs));
        }
    }
    jobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_in_a_real_browser() {
    let chromium = std::env::var_os("SLIPWAY_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| test_support::require_command("chromium", "chromium"));
    let node = test_support::require_command("node", "nodejs");
    let scripts = ui_tests_dir();

    let work = test_support::tempdir();
    let go_file = work.path().join("go");
    let git = test_support::git::GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".slipway/workflows/deliver.yml",
        &workflow(&go_file.display().to_string()),
    );
    let sha = tree.commit("add the pipeline");
    tree.push("main");

    let hash = argon2::Argon2::default()
        .hash_password(b"correct horse")
        .expect("hashing")
        .to_string();
    let config = Config {
        server: ServerConfig {
            external_url: "http://127.0.0.1".into(),
            ..ServerConfig::default()
        },
        users: vec![user("alice", "maintainer"), user("bob", "viewer")],
        passwords: [("alice".to_owned(), hash)].into(),
        repositories: vec![RepositoryConfig {
            name: "team/app".into(),
            clone_url: clone_url.clone(),
            forge: Forge::Gitea,
            forge_api: None,
            forge_token: None,
            webhook_secret: None,
            poll_interval: None,
            secrets: Default::default(),
            vars: Default::default(),
        }],
        environments: vec![EnvironmentConfig {
            repository: Some("team/app".into()),
            name: "production".into(),
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
    let state = AppState::new(Options::new(data.path().to_owned(), config))
        .await
        .expect("server state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(server::run(listener, state.clone(), stop.clone()));

    // The pushed run (carol pushed, so alice may approve it).
    let repo = state.repository("team/app").expect("configured");
    let trigger = server::trigger::Trigger {
        repository: "team/app".into(),
        event: "push".into(),
        git_ref: "refs/heads/main".into(),
        sha: sha.clone(),
        before: None,
        actor: "carol".into(),
        payload: json!({
            "ref": "refs/heads/main", "after": sha, "repository": {"full_name": "team/app"},
            "head_commit": {"message": "add <script>window.__xss=1</script> to the page\n\nbody"}
        }),
        payload_changed: None,
        action: None,
        base_ref: None,
        inputs: Default::default(),
        only_workflow: None,
    };
    let runs = server::trigger::start_runs(&state, &repo, trigger)
        .await
        .expect("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = runs[0];

    // A finished run of 50 jobs whose first job has a 100,000-line log in 100 chunks.
    let db = state.db();
    let repo_id = db
        .upsert_repository("team/app", &clone_url, "gitea", server::now_ms())
        .await
        .expect("repository");
    let (big, jobs) = db
        .create_run(
            &NewRun {
                repository: repo_id,
                workflow_file: ".slipway/workflows/big.yml".into(),
                workflow_name: "Big log".into(),
                event: "push".into(),
                git_ref: "refs/heads/big".into(),
                sha: "0".repeat(40),
                actor: "carol".into(),
                spec: "{}".into(),
                concurrency_group: None,
            },
            &big_jobs(),
            server::now_ms(),
        )
        .await
        .expect("big run");
    let job = db.job(jobs[0]).await.expect("job").expect("job exists");
    for chunk in 0..100 {
        let mut text = String::new();
        for i in 0..1000 {
            let n = chunk * 1000 + i + 1;
            text.push_str(&format!("line {n} \u{1b}[36mlorem ipsum dolor sit amet\u{1b}[0m, consectetur adipiscing elit\n"));
        }
        db.append_log(
            job.id,
            job.attempt,
            chunk,
            text.as_bytes(),
            server::now_ms(),
        )
        .await
        .expect("log chunk");
    }
    db.finish_run(big, Conclusion::Success, None, server::now_ms())
        .await
        .expect("finish big run");

    let mut cmd = tokio::process::Command::new(node);
    cmd.arg(scripts.join("run.mjs"))
        .current_dir(&scripts)
        .env("BASE_URL", &url)
        .env("RUN_ID", run.to_string())
        .env("BIG_RUN_ID", big.0.to_string())
        .env("GO_FILE", &go_file)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true);
    if let Some(dir) = std::env::var_os("SLIPWAY_UI_SCREENSHOTS") {
        cmd.env("SCREENSHOTS", dir);
    }
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the browser script finished within 5 minutes")
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser script failed:\n{stdout}\n{stderr}"
    );

    // The approval is in the audit trail with the user who clicked.
    let audit = db
        .audit_events(&AuditFilter {
            run: Some(RunId(run)),
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert!(
        audit.iter().any(|e| e.actor == "alice"
            && e.action == "deployment.approved"
            && e.detail.as_deref() == Some("ship it")),
        "{audit:#?}"
    );

    stop.cancel();
    while let Some(r) = tasks.join_next().await {
        r.expect("server task").expect("server ran");
    }
    drop(git);
}
