//! Auth: the bearer challenge flow, basic auth, per-repository pull/push, anonymous read.

mod common;

use base64::Engine;
use common::*;
use registry::{AuthOptions, Options, UserOptions};
use reqwest::StatusCode;

fn options(anonymous_read: bool) -> Options {
    Options {
        auth: AuthOptions {
            users: vec![
                UserOptions { name: "ci".into(), password: Some("ci-secret".into()), push: vec!["team/**".into()], ..UserOptions::default() },
                UserOptions { name: "deploy".into(), token: Some("deploy-token".into()), pull: vec!["team/*".into()], ..UserOptions::default() },
            ],
            anonymous_read,
            ..AuthOptions::default()
        },
        ..Options::default()
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Parse `Bearer realm="..",service="..",scope=".."`.
fn challenge(response: &reqwest::Response) -> std::collections::HashMap<String, String> {
    let value = header(response, "www-authenticate");
    let rest = value.strip_prefix("Bearer ").unwrap_or_else(|| panic!("not a bearer challenge: {value}"));
    rest.split("\",")
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

async fn token(s: &Server, authorization: Option<&str>, scope: &str) -> reqwest::Response {
    let mut request = s.client.get(format!("{}/v2/token?service=slipway-registry&scope={scope}", s.url));
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    request.send().await.expect("token request")
}

async fn bearer(s: &Server, authorization: Option<&str>, scope: &str) -> String {
    let r = token(s, authorization, scope).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.expect("json");
    format!("Bearer {}", body["token"].as_str().expect("token"))
}

#[tokio::test]
async fn bearer_flow_like_docker() {
    let s = Server::start(options(false)).await;
    // 1. The base endpoint challenges with the token endpoint.
    let r = s.client.get(s.v2("")).send().await.expect("GET /v2/");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = challenge(&r);
    assert_eq!(c["realm"], format!("{}/v2/token", s.url));
    assert_eq!(c["service"], "slipway-registry");
    // 2. A push attempt is challenged with the repository scope.
    let r = s.client.post(s.v2("team/app/blobs/uploads/")).send().await.expect("POST");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&r)["scope"], "repository:team/app:pull,push");
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    // 3. Wrong password: the token endpoint refuses.
    assert_eq!(token(&s, Some(&basic("ci", "wrong")), "repository:team/app:pull,push").await.status(), StatusCode::UNAUTHORIZED);
    // 4. The right one gets a token that pushes.
    let auth = bearer(&s, Some(&basic("ci", "ci-secret")), "repository:team/app:pull,push").await;
    let r = s.client.post(s.v2("team/app/blobs/uploads/")).header("authorization", &auth).send().await.expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(s.client.get(s.v2("")).header("authorization", &auth).send().await.expect("GET").status(), StatusCode::OK);
    // 5. The token does not cover another repository: challenged again for it.
    let r = s.client.get(s.v2("team/other/tags/list")).header("authorization", &auth).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&r)["error"], "insufficient_scope");
    // 6. A tampered token is refused.
    let r = s.client.get(s.v2("team/app/tags/list")).header("authorization", format!("{auth}x")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn pull_only_token_cannot_push() {
    let s = Server::start(options(false)).await;
    let ci = basic("ci", "ci-secret");
    // Push an image with basic auth directly.
    let push = bearer(&s, Some(&ci), "repository:team/app:pull,push").await;
    let blob = b"layer".to_vec();
    let digest = store::blob::Digest::of(&blob);
    let r = s.client.post(s.v2(&format!("team/app/blobs/uploads/?digest={digest}"))).header("authorization", &push).body(blob).send().await.expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);

    // The deploy user (token as password, as `docker login -p TOKEN` sends it) asks for push
    // and gets only pull.
    let deploy = bearer(&s, Some(&basic("deploy", "deploy-token")), "repository:team/app:pull,push").await;
    let r = s.client.head(s.v2(&format!("team/app/blobs/{digest}"))).header("authorization", &deploy).send().await.expect("HEAD");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.client.post(s.v2("team/app/blobs/uploads/")).header("authorization", &deploy).send().await.expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(r).await, "DENIED");
    let r = s.client.delete(s.v2(&format!("team/app/blobs/{digest}"))).header("authorization", &deploy).send().await.expect("DELETE");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Its static token also works directly as a bearer token, with the same limits.
    let r = s.client.head(s.v2(&format!("team/app/blobs/{digest}"))).header("authorization", "Bearer deploy-token").send().await.expect("HEAD");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.client.post(s.v2("team/app/blobs/uploads/")).header("authorization", "Bearer deploy-token").send().await.expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Outside its globs it cannot even pull (team/* does not cover team/a/b).
    let r = s.client.get(s.v2("team/a/b/tags/list")).header("authorization", &basic("deploy", "deploy-token")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Cross-repository mount needs pull on the source: the deploy user cannot mount into
    // anything (no push), and ci can mount from team/app.
    let ci_two = bearer(&s, Some(&ci), "repository:team/two:pull,push&scope=repository:team/app:pull").await;
    let r = s.client.post(s.v2(&format!("team/two/blobs/uploads/?mount={digest}&from=team/app"))).header("authorization", &ci_two).send().await.expect("mount");
    assert_eq!(r.status(), StatusCode::CREATED);
    s.stop().await;
}

#[tokio::test]
async fn anonymous_read_when_enabled() {
    let closed = Server::start(options(false)).await;
    let r = closed.client.get(closed.v2("team/app/tags/list")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let anon = bearer(&closed, None, "repository:team/app:pull").await;
    let r = closed.client.get(closed.v2("team/app/tags/list")).header("authorization", &anon).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "an anonymous token grants nothing here");
    let r = closed.client.get(closed.v2("_catalog")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    closed.stop().await;

    let open = Server::start(options(true)).await;
    let r = open.client.get(open.v2("team/app/tags/list")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "allowed, and the repository is unknown");
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
    let anon = bearer(&open, None, "repository:team/app:pull,push").await;
    let r = open.client.post(open.v2("team/app/blobs/uploads/")).header("authorization", &anon).send().await.expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "anonymous users never push");
    let r = open.client.post(open.v2("team/app/blobs/uploads/")).send().await.expect("POST");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // `docker login` must still verify credentials: /v2/ challenges anonymous callers.
    assert_eq!(open.client.get(open.v2("")).send().await.expect("GET").status(), StatusCode::UNAUTHORIZED);
    open.stop().await;
}

#[tokio::test]
async fn catalog_shows_only_pullable_repositories() {
    let s = Server::start(options(false)).await;
    let ci = basic("ci", "ci-secret");
    for name in ["team/app", "team/deep/app"] {
        let blob = format!("{name} layer");
        let digest = store::blob::Digest::of(blob.as_bytes());
        let r = s.client.post(s.v2(&format!("{name}/blobs/uploads/?digest={digest}"))).header("authorization", &ci).body(blob).send().await.expect("POST");
        assert_eq!(r.status(), StatusCode::CREATED);
        let config = oci_manifest(&digest, 0, &[], None, None);
        let r = s.client.put(s.v2(&format!("{name}/manifests/v1"))).header("authorization", &ci).header("content-type", OCI_MANIFEST).body(config).send().await.expect("PUT");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let all: serde_json::Value = s.client.get(s.v2("_catalog")).header("authorization", &ci).send().await.expect("GET").json().await.expect("json");
    assert_eq!(all["repositories"], serde_json::json!(["team/app", "team/deep/app"]));
    let deploy: serde_json::Value = s.client.get(s.v2("_catalog")).header("authorization", "Bearer deploy-token").send().await.expect("GET").json().await.expect("json");
    assert_eq!(deploy["repositories"], serde_json::json!(["team/app"]));
    s.stop().await;
}
