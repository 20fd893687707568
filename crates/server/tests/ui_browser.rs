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

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use server::config::{Config, Forge, RepositoryConfig, ServerConfig, User};
use server::environments::EnvironmentConfig;
use server::{AppState, Options};
use store::sql::{AuditFilter, Conclusion, JobStatus, NewJob, NewRun, RunId};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

fn workflow(go_file: &str) -> String {
    format!(
        r####"name: Deliver
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
          echo "### Build report <script>window.__xss2=1</script>" >> "$GITHUB_STEP_SUMMARY"
          echo "- **rustc** 1.95" >> "$GITHUB_STEP_SUMMARY"
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
"####
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
    let browser = common::Browser::require();

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

    let hash = common::password_hash("correct horse");
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

    browser
        .run_ok(
            "run.mjs",
            &url,
            &[
                ("RUN_ID", run.to_string().as_ref()),
                ("BIG_RUN_ID", big.0.to_string().as_ref()),
                ("GO_FILE", go_file.as_ref()),
            ],
            Duration::from_secs(300),
        )
        .await;

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

/// Stops the services `slipway/deploy-local` left running under these roots (on drop too).
struct Services(Vec<PathBuf>);

impl Drop for Services {
    fn drop(&mut self) {
        for root in &self.0 {
            if let Ok(text) = std::fs::read_to_string(root.join("service.pid"))
                && let Some(pid) = text.split_whitespace().next()
            {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", "--", &format!("-{pid}")])
                    .status();
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
}

/// The seed's whole path followed and driven from the web UI alone (`ui-tests/seed.mjs`):
/// the examples/ repository is pushed to a real `git daemon` and its Gitea-signed push webhook
/// starts the pipeline (build → a matrix of three test suites → package + an OCI image pushed
/// into this server's own registry → staging → production) with the embedded agent. In the
/// browser: alice (who pushed) follows the run from the repositories page, sees the matrix
/// legs grouped in the graph, is not offered the approval; bob (the production reviewer)
/// approves by keyboard and the environments page shows what runs where. Then alice starts
/// runs with the *Run workflow* form: one with `break-tests` (a leg fails, package is
/// skipped), one that bob rejects by keyboard, and she rolls staging back with the button by
/// keyboard. This test checks the deployed service answers on its production port and that
/// the audit trail names who approved, rejected and rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_path_driven_from_the_ui() {
    let browser = common::Browser::require();
    test_support::require_command("python3", "python3");
    // The server's warnings (a gate that errs, a failed job) in the test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,server=info")
        .with_test_writer()
        .try_init();

    let work = test_support::tempdir();
    let git = test_support::git::GitDaemon::start();
    let clone_url = git.create_repo("wordcount");
    let tree = git.work_tree("wordcount");
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    copy_tree(&examples, &tree.path());
    tree.write("VERSION", "1.2.0\n");
    let sha = tree.commit("wordcount 1.2.0 <script>window.__xss=1</script>");
    tree.push("main");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}");
    let (staging_port, production_port) = (free_port(), free_port());
    let deploy_root = work.path().join("deploy");
    let _services = Services(vec![
        deploy_root.join("staging"),
        deploy_root.join("production"),
    ]);
    let hash = common::password_hash("correct horse");
    let vars = [
        ("REGISTRY", format!("127.0.0.1:{port}")),
        ("DEPLOY_ROOT", deploy_root.display().to_string()),
        ("STAGING_PORT", staging_port.to_string()),
        ("PRODUCTION_PORT", production_port.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let environment = |name: &str, reviewers: Vec<String>| EnvironmentConfig {
        repository: Some("team/wordcount".into()),
        name: name.into(),
        required_approvals: u32::from(!reviewers.is_empty()),
        reviewers,
        allow_self_approval: false,
        wait_timer: Duration::ZERO,
        timeout: server::environments::DEFAULT_TIMEOUT,
        branches: vec!["main".into()],
        tags: vec![],
        secrets: Default::default(),
        vars: Default::default(),
        url: None,
    };
    let config = Config {
        server: ServerConfig {
            external_url: url.clone(),
            ..ServerConfig::default()
        },
        users: vec![user("alice", "admin"), user("bob", "maintainer")],
        passwords: [("alice".to_owned(), hash)].into(),
        repositories: vec![RepositoryConfig {
            name: "team/wordcount".into(),
            clone_url: clone_url.clone(),
            forge: Forge::Gitea,
            forge_api: None,
            forge_token: None,
            webhook_secret: Some(common::SECRET.into()),
            poll_interval: None,
            secrets: Default::default(),
            vars,
        }],
        environments: vec![
            environment("staging", vec![]),
            environment("production", vec!["bob".into()]),
        ],
        ..Config::default()
    };
    let data = test_support::tempdir();
    let mut options = Options::new(data.path().to_owned(), config);
    options.embedded_agent = true;
    // The server's own registry under /v2/, where the image job pushes (as `slipway server`).
    let blobs = std::sync::Arc::new(
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

    // The push: a real commit in a real repository, announced by a signed Gitea webhook.
    let body = serde_json::to_vec(&common::gitea_push(
        "team/wordcount",
        &clone_url,
        "refs/heads/main",
        &"0".repeat(40),
        &sha,
        &["VERSION"],
    ))
    .expect("json");
    let runs =
        common::created(common::post_gitea(&url, "push", "seed-1", &body, common::SECRET).await)
            .await;
    assert_eq!(runs.len(), 1, "{runs:?}");

    let out = browser
        .run(
            "seed.mjs",
            &url,
            &[("RUN_ID", runs[0].to_string().as_ref())],
            Duration::from_secs(540),
        )
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // What the server saw: every run's jobs and the end of each job's log.
        let mut seen = String::new();
        for r in state.db().runs(None, 20).await.unwrap_or_default() {
            seen.push_str(&format!(
                "run {} {:?} {:?}\n",
                r.id.0, r.status, r.conclusion
            ));
            for j in state.db().jobs(r.id).await.unwrap_or_default() {
                let log: Vec<u8> = state
                    .db()
                    .logs(j.id, None)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|c| c.data)
                    .collect();
                let log = String::from_utf8_lossy(&log);
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                seen.push_str(&format!(
                    "  job {} {:?} {:?} {:?}\n    {}\n",
                    j.key,
                    j.status,
                    j.result,
                    j.reason,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
                ));
            }
        }
        panic!("the browser script failed:\n{stdout}\n{stderr}\n{seen}");
    }

    // What the clicks did, seen from outside the browser.
    let answer = http_get(production_port, "/version").unwrap_or_default();
    assert!(
        answer.contains("wordcount 1.2.0"),
        "production serves 1.2.0 after bob's approval: {answer}"
    );
    let audit = state
        .db()
        .audit_events(&AuditFilter {
            limit: 500,
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    for (actor, action) in [
        ("bob", "deployment.approved"),
        ("bob", "deployment.rejected"),
        ("alice", "rollback.requested"),
    ] {
        assert!(
            audit.iter().any(|e| e.actor == actor && e.action == action),
            "{actor} {action} in {audit:#?}"
        );
    }

    stop.cancel();
    while let Some(r) = tasks.join_next().await {
        r.expect("server task").expect("server ran");
    }
    drop(git);
}
