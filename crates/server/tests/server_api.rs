//! The REST API: token auth and roles, runs and jobs, logs as text and as live SSE,
//! workflow_dispatch with inputs, /healthz and /metrics.

mod common;

use common::*;
use server::config::{Forge, User};
use test_support::git::GitDaemon;

const ZERO: &str = "0000000000000000000000000000000000000000";

fn users() -> Vec<User> {
    vec![
        User { name: "alice".into(), token: "alice-token".into(), role: "admin".into(), groups: vec![] },
        User { name: "victor".into(), token: "viewer-token".into(), role: "viewer".into(), groups: vec![] },
    ]
}

#[tokio::test]
async fn the_api_needs_a_token_and_viewers_cannot_write() {
    let server = TestServer::start(ServerSetup { users: users(), embedded_agent: false, ..ServerSetup::default() }).await;
    let http = reqwest::Client::new();
    let runs = format!("{}/api/v1/runs", server.url);
    assert_eq!(http.get(&runs).send().await.expect("get").status(), 401);
    assert_eq!(http.get(&runs).bearer_auth("nope").send().await.expect("get").status(), 401);
    let ok = http.get(&runs).bearer_auth("viewer-token").send().await.expect("get");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Vec<protocol::Run>>().await.expect("json"), []);
    let cancel = format!("{}/api/v1/runs/1/cancel", server.url);
    assert_eq!(http.post(&cancel).bearer_auth("viewer-token").send().await.expect("post").status(), 403);
    assert_eq!(http.post(&cancel).bearer_auth("alice-token").send().await.expect("post").status(), 404);
    assert_eq!(http.get(format!("{}/healthz", server.url)).send().await.expect("get").status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn runs_jobs_logs_sse_dispatch_and_metrics() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".gitea/workflows/ci.yml",
        "name: ci\non: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - name: Greet\n        run: echo line-one; echo line-two\n",
    );
    tree.write(
        ".gitea/workflows/deploy.yml",
        "name: deploy\non:\n  workflow_dispatch:\n    inputs:\n      who:\n        required: true\njobs:\n  d:\n    runs-on: x\n    steps:\n      - run: echo \"hello ${{ inputs.who }}\"\n",
    );
    let sha = tree.commit("two workflows");
    tree.push("main");
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        users: users(),
        ..ServerSetup::default()
    })
    .await;
    let http = reqwest::Client::new();
    let body = gitea_push("team/app", &clone_url, "refs/heads/main", ZERO, &sha, &[]);
    let runs = created(post_gitea(&server.url, "push", "d1", body.to_string().as_bytes(), SECRET).await).await;
    assert_eq!(runs.len(), 1, "deploy.yml does not listen to push");
    let id = runs[0];
    // Follow live from the start: log events, then `end`.
    let sse = http
        .get(format!("{}/api/v1/runs/{id}/logs?follow=true", server.url))
        .bearer_auth("viewer-token")
        .send()
        .await
        .expect("follow");
    assert_eq!(sse.status(), 200);
    let stream = sse.text().await.expect("the stream ends when the run does");
    let one = stream.find("line-one").expect("line-one streamed");
    let two = stream.find("line-two").expect("line-two streamed");
    let end = stream.find("event: end").expect("an end event");
    assert!(one < two && two < end, "{stream}");
    server.finished(id).await;

    let run: protocol::Run =
        http.get(format!("{}/api/v1/runs/{id}", server.url)).bearer_auth("viewer-token").send().await.expect("get").json().await.expect("json");
    assert_eq!((run.status.as_str(), run.conclusion, run.sha.as_str()), ("done", Some(protocol::Conclusion::Success), sha.as_str()));
    assert_eq!(run.url, format!("https://ci.example.com/runs/{id}"));
    let jobs: Vec<protocol::Job> =
        http.get(format!("{}/api/v1/runs/{id}/jobs", server.url)).bearer_auth("viewer-token").send().await.expect("get").json().await.expect("json");
    assert_eq!(jobs.len(), 1);
    let steps: Vec<_> = jobs[0].steps.iter().map(|s| (s.name.as_str(), s.status.as_str(), s.conclusion.as_deref())).collect();
    assert_eq!(steps, [("Greet", "done", Some("success"))]);
    let text = http.get(format!("{}/api/v1/runs/{id}/logs", server.url)).bearer_auth("viewer-token").send().await.expect("get").text().await.expect("text");
    assert!(text.starts_with("=== build ===\n") && text.contains("line-one\nline-two\n"), "{text}");
    assert_eq!(http.get(format!("{}/api/v1/runs/999/logs", server.url)).bearer_auth("viewer-token").send().await.expect("get").status(), 404);

    // workflow_dispatch with inputs.
    let dispatch = protocol::DispatchRequest {
        repository: "team/app".into(),
        workflow: "deploy.yml".into(),
        git_ref: "main".into(),
        inputs: [("who".to_owned(), "bob".to_owned())].into(),
    };
    let url = format!("{}{}", server.url, protocol::paths::DISPATCH);
    assert_eq!(http.post(&url).bearer_auth("viewer-token").json(&dispatch).send().await.expect("post").status(), 403);
    let resp = http.post(&url).bearer_auth("alice-token").json(&dispatch).send().await.expect("post");
    assert_eq!(resp.status(), 201);
    let created: protocol::Created = resp.json().await.expect("json");
    let run = server.finished(created.runs[0]).await;
    assert_eq!((run.event.as_str(), run.conclusion), ("workflow_dispatch", Some(store::sql::Conclusion::Success)));
    let text = http.get(format!("{}/api/v1/runs/{}/logs", server.url, run.id)).bearer_auth("alice-token").send().await.expect("get").text().await.expect("text");
    assert!(text.contains("hello bob"), "{text}");
    let missing = protocol::DispatchRequest { workflow: "nope.yml".into(), ..dispatch };
    assert_eq!(http.post(&url).bearer_auth("alice-token").json(&missing).send().await.expect("post").status(), 404);

    let listed: Vec<protocol::Run> =
        http.get(format!("{}/api/v1/runs?repository=team/app", server.url)).bearer_auth("viewer-token").send().await.expect("get").json().await.expect("json");
    assert_eq!(listed.iter().map(|r| r.id).collect::<Vec<_>>(), [run.id.0, id]);

    let metrics = http.get(format!("{}/metrics", server.url)).send().await.expect("get").text().await.expect("text");
    assert!(metrics.contains("slipway_queue_depth 0\n"), "{metrics}");
    assert!(metrics.contains("slipway_agents 1\n"), "{metrics}");
    assert!(metrics.contains("slipway_jobs_finished_total{result=\"success\"} 2\n"), "{metrics}");
    assert!(metrics.contains("slipway_job_duration_seconds_count 2\n"), "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn the_log_stream_takes_the_token_as_a_query_parameter_for_event_source() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(".gitea/workflows/ci.yml", "name: ci\non: push\njobs:\n  b:\n    runs-on: x\n    steps:\n      - run: echo '<b>bold</b>'\n");
    let sha = tree.commit("ci");
    tree.push("main");
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        users: users(),
        ..ServerSetup::default()
    })
    .await;
    let body = gitea_push("team/app", &clone_url, "refs/heads/main", ZERO, &sha, &[]);
    let id = created(post_gitea(&server.url, "push", "d1", body.to_string().as_bytes(), SECRET).await).await[0];
    server.finished(id).await;
    // (The run page itself is the web UI's, tested in ui_pages.rs.)
    let http = reqwest::Client::new();
    let anonymous = http.get(format!("{}/api/v1/runs/{id}/logs?follow=true", server.url)).send().await.expect("get");
    assert_eq!(anonymous.status(), 401);
    let sse = http.get(format!("{}/api/v1/runs/{id}/logs?follow=true&token=viewer-token", server.url)).send().await.expect("get");
    assert_eq!(sse.status(), 200);
    assert!(sse.text().await.expect("text").contains("event: end"));
    server.stop().await;
}

#[tokio::test]
async fn step_outputs_reach_the_store_and_the_api() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".gitea/workflows/ci.yml",
        "on: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: echo no-outputs\n      - id: image\n        run: |\n          echo \"digest=sha256:0123abcd\" >> \"$GITHUB_OUTPUT\"\n          echo \"tag=v1\" >> \"$GITHUB_OUTPUT\"\n",
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        ..ServerSetup::default()
    })
    .await;
    let body = gitea_push("team/app", &clone_url, "refs/heads/main", ZERO, &sha, &[]);
    let run = created(post_gitea(&server.url, "push", "d1", body.to_string().as_bytes(), SECRET).await).await[0];
    assert_eq!(server.finished(run).await.conclusion, Some(store::sql::Conclusion::Success));
    let jobs = server.state.db().jobs(store::sql::RunId(run)).await.expect("jobs");
    let steps = server.state.db().steps(jobs[0].id).await.expect("steps");
    let stored: Vec<Option<serde_json::Value>> =
        steps.iter().map(|s| s.outputs.as_deref().map(|o| serde_json::from_str(o).expect("json"))).collect();
    assert!(stored.contains(&Some(serde_json::json!({"digest": "sha256:0123abcd", "tag": "v1"}))), "{stored:?}");
    let api: Vec<protocol::Job> =
        reqwest::get(format!("{}/api/v1/runs/{run}/jobs", server.url)).await.expect("get").json().await.expect("json");
    let with_outputs: Vec<_> = api[0].steps.iter().filter(|s| !s.outputs.is_empty()).collect();
    assert_eq!(with_outputs.len(), 1, "{:?}", api[0].steps);
    assert_eq!(with_outputs[0].outputs["digest"], "sha256:0123abcd");
    server.stop().await;
}
