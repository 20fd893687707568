//! End to end: a commit pushed to a real `git daemon`, a Gitea-signed push webhook, the run
//! on the embedded agent, and the commit statuses recorded by a stand-in forge.

mod common;

use common::*;
use serde_json::json;
use server::config::Forge;
use store::sql::{Conclusion, JobStatus};
use test_support::git::GitDaemon;

const CI: &str = r#"name: ci
on:
  push:
    branches: [main]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Show the file
        run: cat hello.txt && echo "built ${{ github.sha }} on ${{ github.ref_name }}"
  test:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo "secret is ${{ secrets.GREETING }}"
"#;

const ZERO: &str = "0000000000000000000000000000000000000000";

#[tokio::test]
async fn push_webhook_runs_the_workflow_and_reports_pending_then_success() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(".gitea/workflows/ci.yml", CI).write("hello.txt", "hello world\n");
    let sha = tree.commit("first");
    tree.push("main");
    let mut forge = StandInForge::start(1).await;
    let api = format!("{}/api/v1", forge.url);
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, Some(&api))],
        ..ServerSetup::default()
    })
    .await;

    let body = gitea_push("team/app", &clone_url, "refs/heads/main", ZERO, &sha, &[".gitea/workflows/ci.yml", "hello.txt"]);
    let runs = created(post_gitea(&server.url, "push", "delivery-1", body.to_string().as_bytes(), SECRET).await).await;
    assert_eq!(runs.len(), 1);
    let id = runs[0];
    let run = server.finished(id).await;
    let log = server.log_text(id).await;
    assert_eq!(run.conclusion, Some(Conclusion::Success), "{log}");
    assert_eq!((run.sha.as_str(), run.actor.as_str(), run.workflow_name.as_str()), (sha.as_str(), "alice", "ci"));
    assert!(log.contains("hello world"), "{log}");
    assert!(log.contains(&format!("built {sha} on main")), "{log}");
    assert!(log.contains("secret is ***"), "secrets are masked: {log}");
    let jobs = server.state.db().jobs(store::sql::RunId(id)).await.expect("jobs");
    let results: Vec<_> = jobs.iter().map(|j| (j.key.as_str(), j.status, j.result)).collect();
    assert_eq!(results, [("build", JobStatus::Done, Some(Conclusion::Success)), ("test", JobStatus::Done, Some(Conclusion::Success))]);

    // The first delivery attempt got a 500 and was retried.
    let requests = forge.wait_for(2).await;
    let expect = |state: &str, description: &str| Recorded {
        path: format!("/api/v1/repos/team/app/statuses/{sha}"),
        authorization: Some(format!("token {FORGE_TOKEN}")),
        private_token: None,
        body: json!({
            "state": state,
            "target_url": format!("https://ci.example.com/runs/{id}"),
            "description": description,
            "context": "slipway/ci (push)",
        }),
    };
    assert_eq!(requests, [expect("pending", "queued"), expect("success", "succeeded")]);
    server.stop().await;
    forge.stop().await;
}

#[tokio::test]
async fn a_workflow_that_does_not_compile_gives_a_failed_run_with_file_line_col() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(".gitea/workflows/bad.yml", "on: push\njobs:\n  build:\n    runs-on: x\n    stepz: []\n");
    let sha = tree.commit("bad");
    tree.push("main");
    let mut forge = StandInForge::start(0).await;
    let api = format!("{}/api/v1", forge.url);
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, Some(&api))],
        ..ServerSetup::default()
    })
    .await;
    let body = gitea_push("team/app", &clone_url, "refs/heads/main", ZERO, &sha, &[]);
    let runs = created(post_gitea(&server.url, "push", "d-bad", body.to_string().as_bytes(), SECRET).await).await;
    let run = server.finished(runs[0]).await;
    assert_eq!(run.conclusion, Some(Conclusion::Failure));
    let log = server.log_text(runs[0]).await;
    assert!(log.contains(".gitea/workflows/bad.yml:5:5: error:"), "{log}");
    let states: Vec<_> = forge.wait_for(2).await.iter().map(|r| r.body["state"].clone()).collect();
    assert_eq!(states, [json!("pending"), json!("failure")]);
    server.stop().await;
    forge.stop().await;
}

#[tokio::test]
async fn a_failed_job_skips_its_dependents_unless_their_if_says_otherwise() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".github/workflows/ci.yml",
        r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo failing; exit 3
  deploy:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo should not run
  report:
    needs: build
    if: failure()
    runs-on: ubuntu-latest
    steps:
      - run: echo "reporting ${{ needs.build.result }}"
  after:
    needs: deploy
    runs-on: ubuntu-latest
    steps:
      - run: echo nor this
"#,
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        ..ServerSetup::default()
    })
    .await;
    let body = gitea_push("team/app", &clone_url, "refs/heads/main", ZERO, &sha, &[]);
    let runs = created(post_gitea(&server.url, "push", "d-1", body.to_string().as_bytes(), SECRET).await).await;
    let run = server.finished(runs[0]).await;
    assert_eq!(run.conclusion, Some(Conclusion::Failure));
    assert_eq!(run.reason.as_deref(), Some("job build failed"));
    let jobs = server.state.db().jobs(run.id).await.expect("jobs");
    let results: Vec<_> = jobs.iter().map(|j| (j.key.as_str(), j.result)).collect();
    assert_eq!(
        results,
        [
            ("build", Some(Conclusion::Failure)),
            ("deploy", Some(Conclusion::Skipped)),
            ("report", Some(Conclusion::Success)),
            ("after", Some(Conclusion::Skipped)),
        ]
    );
    let log = server.log_text(run.id.0).await;
    assert!(log.contains("failing") && log.contains("reporting") && !log.contains("should not run"), "{log}");
    server.stop().await;
}

#[tokio::test]
async fn on_filters_decide_which_workflows_run() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(".gitea/workflows/ci.yml", CI).write("hello.txt", "hi\n");
    tree.write(
        ".gitea/workflows/docs.yml",
        "on:\n  push:\n    paths: ['docs/**']\njobs:\n  d:\n    runs-on: x\n    steps:\n      - run: echo docs\n",
    );
    let first = tree.commit("first");
    tree.push("main");
    tree.write("docs/index.md", "# docs\n");
    let second = tree.commit("docs");
    tree.push("dev");
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        ..ServerSetup::default()
    })
    .await;
    // dev: ci.yml only runs on main; docs.yml runs because docs/ changed (diffed in the mirror).
    let body = gitea_push("team/app", &clone_url, "refs/heads/dev", &first, &second, &[]);
    let runs = created(post_gitea(&server.url, "push", "d-dev", body.to_string().as_bytes(), SECRET).await).await;
    assert_eq!(runs.len(), 1);
    let run = server.finished(runs[0]).await;
    assert_eq!((run.workflow_file.as_str(), run.conclusion), (".gitea/workflows/docs.yml", Some(Conclusion::Success)));
    // A tag push: neither workflow has tag filters, but ci.yml has branch filters, and docs.yml
    // path filters don't apply to tags: only docs.yml runs.
    let body = gitea_push("team/app", &clone_url, "refs/tags/v1", ZERO, &first, &[]);
    let runs = created(post_gitea(&server.url, "push", "d-tag", body.to_string().as_bytes(), SECRET).await).await;
    assert_eq!(runs.len(), 1);
    server.stop().await;
}

const SMALL: &str = "name: ci\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ok\n";

async fn small_repo(git: &GitDaemon) -> (String, String) {
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(".github/workflows/ci.yml", SMALL);
    let sha = tree.commit("ci");
    tree.push("main");
    (clone_url, sha)
}

#[tokio::test]
async fn github_push_reports_statuses_the_github_way() {
    let git = GitDaemon::start();
    let (clone_url, sha) = small_repo(&git).await;
    let mut forge = StandInForge::start(0).await;
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Github, Some(&forge.url))],
        ..ServerSetup::default()
    })
    .await;
    // GitHub's push payload (trimmed to the documented fields slipway reads and a few more).
    let body = json!({
        "ref": "refs/heads/main", "before": ZERO, "after": sha, "created": true, "deleted": false, "forced": false,
        "compare": "https://github.com/team/app/compare/x", "base_ref": null,
        "commits": [{"id": sha, "message": "ci", "added": [".github/workflows/ci.yml"], "removed": [], "modified": []}],
        "head_commit": {"id": sha, "message": "ci"},
        "repository": {"id": 1, "name": "app", "full_name": "team/app", "owner": {"login": "team"}, "clone_url": clone_url},
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"login": "octocat", "id": 1}
    })
    .to_string();
    let sig = server::hooks::sign(SECRET, body.as_bytes());
    let resp = reqwest::Client::new()
        .post(format!("{}/hooks/github", server.url))
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/abc")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .header("X-Hub-Signature-256", format!("sha256={sig}"))
        .body(body)
        .send()
        .await
        .expect("post");
    let id = created(resp).await[0];
    let run = server.finished(id).await;
    assert_eq!((run.conclusion, run.actor.as_str()), (Some(Conclusion::Success), "octocat"));
    let requests = forge.wait_for(2).await;
    let expect = |state: &str, description: &str| Recorded {
        path: format!("/repos/team/app/statuses/{sha}"),
        authorization: Some(format!("Bearer {FORGE_TOKEN}")),
        private_token: None,
        body: json!({"state": state, "target_url": format!("https://ci.example.com/runs/{id}"), "description": description, "context": "slipway/ci (push)"}),
    };
    assert_eq!(requests, [expect("pending", "queued"), expect("success", "succeeded")]);
    server.stop().await;
    forge.stop().await;
}

#[tokio::test]
async fn gitlab_push_reports_statuses_the_gitlab_way() {
    let git = GitDaemon::start();
    let (clone_url, sha) = small_repo(&git).await;
    let mut forge = StandInForge::start(0).await;
    let api = format!("{}/api/v4", forge.url);
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitlab, Some(&api))],
        ..ServerSetup::default()
    })
    .await;
    // GitLab's "Push Hook" payload.
    let body = json!({
        "object_kind": "push", "event_name": "push", "before": ZERO, "after": sha, "ref": "refs/heads/main",
        "ref_protected": true, "checkout_sha": sha, "user_id": 4, "user_name": "John Smith", "user_username": "jsmith",
        "project_id": 15,
        "project": {"id": 15, "name": "app", "path_with_namespace": "team/app", "git_http_url": clone_url, "default_branch": "main"},
        "commits": [{"id": sha, "message": "ci", "added": [".github/workflows/ci.yml"], "modified": [], "removed": []}],
        "total_commits_count": 1
    })
    .to_string();
    let resp = reqwest::Client::new()
        .post(format!("{}/hooks/gitlab", server.url))
        .header("content-type", "application/json")
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", SECRET)
        .header("X-Gitlab-Event-UUID", "9cebe914-4827-408f-b014-cfa23a47a35f")
        .body(body)
        .send()
        .await
        .expect("post");
    let id = created(resp).await[0];
    let run = server.finished(id).await;
    assert_eq!((run.conclusion, run.actor.as_str()), (Some(Conclusion::Success), "jsmith"));
    let requests = forge.wait_for(2).await;
    let expect = |state: &str, description: &str| Recorded {
        path: format!("/api/v4/projects/team%2Fapp/statuses/{sha}"),
        authorization: None,
        private_token: Some(FORGE_TOKEN.to_owned()),
        body: json!({"state": state, "target_url": format!("https://ci.example.com/runs/{id}"), "description": description, "name": "slipway/ci (push)"}),
    };
    assert_eq!(requests, [expect("pending", "queued"), expect("success", "succeeded")]);
    server.stop().await;
    forge.stop().await;
}

#[tokio::test]
async fn pull_request_webhooks_run_for_matching_types_and_base_branches() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".gitea/workflows/pr.yml",
        "name: pr\non:\n  pull_request:\n    branches: [main]\njobs:\n  check:\n    runs-on: x\n    steps:\n      - run: echo \"checking ${{ github.event.pull_request.head.ref }} into ${{ github.event.pull_request.base.ref }}\"\n",
    );
    let base = tree.commit("base");
    tree.push("main");
    tree.write("feature.txt", "f\n");
    let head = tree.commit("feature");
    tree.push("feature");
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        ..ServerSetup::default()
    })
    .await;
    let pr = |action: &str, base_ref: &str| {
        json!({
            "action": action,
            "number": 7,
            "pull_request": {
                "id": 70, "number": 7, "title": "feature", "state": "open",
                "head": {"ref": "feature", "sha": head, "repo": {"full_name": "team/app"}},
                "base": {"ref": base_ref, "sha": base, "repo": {"full_name": "team/app"}},
                "merged": false
            },
            "repository": {"id": 1, "name": "app", "full_name": "team/app", "clone_url": clone_url},
            "sender": {"login": "bob"}
        })
        .to_string()
    };
    let runs = created(post_gitea(&server.url, "pull_request", "p1", pr("opened", "main").as_bytes(), SECRET).await).await;
    assert_eq!(runs.len(), 1);
    let run = server.finished(runs[0]).await;
    assert_eq!((run.event.as_str(), run.git_ref.as_str(), run.sha.as_str(), run.actor.as_str()), ("pull_request", "refs/pull/7/head", head.as_str(), "bob"));
    assert_eq!(run.conclusion, Some(Conclusion::Success));
    assert!(server.log_text(runs[0]).await.contains("checking feature into main"));
    let none = created(post_gitea(&server.url, "pull_request", "p2", pr("closed", "main").as_bytes(), SECRET).await).await;
    assert_eq!(none, Vec::<i64>::new(), "closed is not a default type");
    let none = created(post_gitea(&server.url, "pull_request", "p3", pr("opened", "release").as_bytes(), SECRET).await).await;
    assert_eq!(none, Vec::<i64>::new(), "base branch filter");
    server.stop().await;
}

#[tokio::test]
async fn the_generic_and_forgejo_endpoints_take_their_own_headers() {
    let git = GitDaemon::start();
    let (clone_url, sha) = small_repo(&git).await;
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Generic, None)],
        ..ServerSetup::default()
    })
    .await;
    let body = json!({"repository": "team/app", "ref": "refs/heads/main", "sha": sha, "before": ZERO, "actor": "ci-bot"}).to_string();
    let sig = server::hooks::sign(SECRET, body.as_bytes());
    let resp = reqwest::Client::new()
        .post(format!("{}/hooks/generic", server.url))
        .header("X-Slipway-Delivery", "g-1")
        .header("X-Slipway-Signature", format!("sha256={sig}"))
        .body(body)
        .send()
        .await
        .expect("post");
    let id = created(resp).await[0];
    let run = server.finished(id).await;
    assert_eq!((run.actor.as_str(), run.conclusion), ("ci-bot", Some(Conclusion::Success)));
    // Forgejo signs with X-Forgejo-Signature and names the delivery X-Forgejo-Delivery.
    let body = gitea_push("team/app", &clone_url, "refs/heads/main", ZERO, &sha, &[]).to_string();
    let sig = server::hooks::sign(SECRET, body.as_bytes());
    let resp = reqwest::Client::new()
        .post(format!("{}/hooks/forgejo", server.url))
        .header("X-Forgejo-Event", "push")
        .header("X-Forgejo-Delivery", "f-1")
        .header("X-Forgejo-Signature", sig)
        .body(body)
        .send()
        .await
        .expect("post");
    let id = created(resp).await[0];
    assert_eq!(server.finished(id).await.conclusion, Some(Conclusion::Success));
    server.stop().await;
}
