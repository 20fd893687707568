//! Webhook refusals: each gets a 4xx with a reason and queues nothing.

mod common;

use common::*;
use serde_json::json;
use server::config::Forge;

async fn no_runs(server: &TestServer) {
    assert_eq!(server.state.db().runs(None, 10).await.expect("runs"), []);
}

#[tokio::test]
async fn bad_webhooks_are_refused_with_a_reason_and_nothing_is_queued() {
    let server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", "git://127.0.0.1:1/app.git", Forge::Gitea, None)],
        embedded_agent: false,
        body_limit: 4096,
        ..ServerSetup::default()
    })
    .await;
    let push = |repo: &str| gitea_push(repo, "git://x", "refs/heads/main", "0", "abc", &[]).to_string();
    let check = async |resp: reqwest::Response, status: u16, reason: &str| {
        assert_eq!(resp.status(), status);
        let body: serde_json::Value = resp.json().await.expect("json error body");
        let error = body["error"].as_str().expect("error field");
        assert!(error.contains(reason), "{error}");
    };
    let url = server.url.clone();
    check(post_gitea(&url, "push", "d1", push("team/app").as_bytes(), "wrong-secret").await, 401, "bad or missing signature").await;
    check(post_gitea(&url, "push", "d2", push("team/nope").as_bytes(), SECRET).await, 404, "unknown repository `team/nope`").await;
    check(post_gitea(&url, "push", "d3", b"{not json", SECRET).await, 400, "malformed JSON").await;
    let big = json!({"repository": {"full_name": "team/app"}, "pad": "x".repeat(5000)}).to_string();
    assert_eq!(post_gitea(&url, "push", "d4", big.as_bytes(), SECRET).await.status(), 413);
    // An unsigned request.
    let resp = reqwest::Client::new()
        .post(format!("{url}/hooks/gitea"))
        .header("X-Gitea-Event", "push")
        .header("X-Gitea-Delivery", "d5")
        .body(push("team/app"))
        .send()
        .await
        .expect("post");
    check(resp, 401, "bad or missing signature").await;
    // A ping is accepted (and starts nothing); replaying its delivery id is refused.
    let ping = json!({"repository": {"full_name": "team/app"}, "hook_id": 1}).to_string();
    assert_eq!(created(post_gitea(&url, "ping", "d6", ping.as_bytes(), SECRET).await).await, Vec::<i64>::new());
    check(post_gitea(&url, "ping", "d6", ping.as_bytes(), SECRET).await, 409, "already received").await;
    // GitLab's token is compared as a whole.
    let gitlab = json!({"object_kind": "push", "project": {"path_with_namespace": "team/app"}}).to_string();
    let resp = reqwest::Client::new()
        .post(format!("{url}/hooks/gitlab"))
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", "hook-secre")
        .header("X-Gitlab-Event-UUID", "g1")
        .body(gitlab)
        .send()
        .await
        .expect("post");
    check(resp, 401, "bad or missing signature").await;
    // The repository can't be fetched: 502, and the forge's redelivery is not a "replay".
    let fetchable = gitea_push("team/app", "git://x", "refs/heads/main", "0", "0123456789abcdef0123456789abcdef01234567", &[]).to_string();
    check(post_gitea(&url, "push", "d7", fetchable.as_bytes(), SECRET).await, 502, "git").await;
    check(post_gitea(&url, "push", "d7", fetchable.as_bytes(), SECRET).await, 502, "git").await;
    no_runs(&server).await;
    server.stop().await;
}
