//! Bad input and faults: the spec's error code and a 4xx, and nothing stored.

mod common;

use common::*;
use registry::{Limits, Options};
use reqwest::{Method, StatusCode};
use store::blob::Digest;

/// Nothing visible: no blob files, no records, no upload sessions.
async fn assert_nothing_stored(s: &Server) {
    assert_eq!(s.blobs.list().await.expect("list blobs"), vec![], "no blob may be stored");
    assert_eq!(s.meta.list("repositories/").await.expect("list records"), Vec::<String>::new(), "no record may be written");
}

/// (method, path, content-type, body, expected status, expected code)
type Case = (Method, String, &'static str, Vec<u8>, StatusCode, &'static str);

/// Send a request with the path exactly as given (HTTP clients normalize `..` away).
async fn raw(s: &Server, method: &Method, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.url.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let request = format!("{method} /v2/{path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

async fn check(s: &Server, (method, path, content_type, body, status, code): Case) {
    if path.contains("..") || path.contains("%2") {
        let (got, body) = raw(s, &method, &path).await;
        assert_eq!(got, status.as_u16(), "{method} {path}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"));
        assert_eq!(body["errors"][0]["code"], code, "{method} {path}");
        return;
    }
    let mut request = s.client.request(method.clone(), s.v2(&path)).body(body);
    if !content_type.is_empty() {
        request = request.header("content-type", content_type);
    }
    let r = request.send().await.expect("request");
    assert_eq!(r.status(), status, "{method} {path}");
    assert_eq!(error_code(r).await, code, "{method} {path}");
}

#[tokio::test]
async fn bad_requests_get_spec_codes_and_store_nothing() {
    let s = Server::start(Options { limits: Limits { max_manifest_bytes: 1024, ..Limits::default() }, ..Options::default() }).await;
    let good = Digest::of(b"content");
    let missing = Digest::of(b"missing blob");
    let manifest_missing_blob = oci_manifest(&missing, 12, &[], None, None);
    let big_manifest = format!(r#"{{"schemaVersion":2,"annotations":{{"x":"{}"}}}}"#, "a".repeat(2000));
    let cases: Vec<Case> = vec![
        // Digest mismatch on a monolithic push.
        (Method::POST, format!("a/blobs/uploads/?digest={good}"), "application/octet-stream", b"other content".to_vec(), StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        // Malformed and unsupported digests.
        (Method::POST, "a/blobs/uploads/?digest=sha256:xyz".into(), "", vec![], StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (Method::POST, format!("a/blobs/uploads/?digest=sha512:{}", "0".repeat(128)), "", vec![], StatusCode::BAD_REQUEST, "UNSUPPORTED"),
        (Method::GET, "a/blobs/sha256:..".into(), "", vec![], StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (Method::GET, "a/blobs/sha256:../../etc/passwd".into(), "", vec![], StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        // Unknown upload sessions.
        (Method::PATCH, format!("a/blobs/uploads/{}", "0".repeat(32)), "", b"x".to_vec(), StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        (Method::PUT, format!("a/blobs/uploads/../../x?digest={good}"), "", vec![], StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        (Method::PUT, format!("a/../../x/blobs/uploads/{}?digest={good}", "0".repeat(32)), "", vec![], StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (Method::GET, "a/blobs/uploads/not-a-session".into(), "", vec![], StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        // Manifests: missing blobs, malformed JSON, wrong schema, oversized, bad reference.
        (Method::PUT, "a/manifests/v1".into(), OCI_MANIFEST, manifest_missing_blob, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
        (Method::PUT, "a/manifests/v1".into(), OCI_MANIFEST, b"{\"schemaVersion\":2,".to_vec(), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        (Method::PUT, "a/manifests/v1".into(), OCI_MANIFEST, b"[1,2,3]".to_vec(), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        (Method::PUT, "a/manifests/v1".into(), OCI_MANIFEST, b"{\"schemaVersion\":1}".to_vec(), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        (Method::PUT, "a/manifests/v1".into(), OCI_MANIFEST, big_manifest.into_bytes(), StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID"),
        (Method::PUT, "a/manifests/-bad-tag".into(), OCI_MANIFEST, b"{}".to_vec(), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        // Pushed by a digest the content does not hash to.
        (Method::PUT, format!("a/manifests/{good}"), OCI_MANIFEST, oci_manifest(&good, 7, &[], None, None), StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        // Path traversal and invalid names.
        (Method::GET, "../secret/manifests/latest".into(), "", vec![], StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (Method::GET, "a/..%2f..%2fetc/manifests/latest".into(), "", vec![], StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (Method::GET, "a/%2e%2e/tags/list".into(), "", vec![], StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (Method::GET, "UPPER/tags/list".into(), "", vec![], StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (Method::GET, format!("{}/tags/list", "a".repeat(300)), "", vec![], StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (Method::GET, "a/manifests/..".into(), "", vec![], StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        // Unsupported method on a route.
        (Method::POST, "a/manifests/v1".into(), "", vec![], StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
    ];
    for case in cases {
        check(&s, case).await;
    }
    assert_nothing_stored(&s).await;
    assert_eq!(s.registry.session_count(), 0);
    s.stop().await;
}

#[tokio::test]
async fn digest_mismatch_on_finishing_an_upload_stores_nothing() {
    let s = Server::start(Options::default()).await;
    let start = s.client.post(s.v2("a/blobs/uploads/")).send().await.expect("POST");
    let location = header(&start, "location");
    let r = s.client.patch(format!("{}{location}", s.url)).body(b"actual bytes".to_vec()).send().await.expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s.client.put(format!("{}{location}?digest={}", s.url, Digest::of(b"claimed bytes"))).send().await.expect("PUT");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    assert_nothing_stored(&s).await;
    // The spool file is gone too.
    let spooled: Vec<_> = std::fs::read_dir(s.blobs.spool().dir()).expect("spool dir").collect();
    assert_eq!(spooled.len(), 0);
    s.stop().await;
}

#[tokio::test]
async fn oversized_blob_is_refused() {
    let s = Server::start(Options { limits: Limits { max_blob_bytes: Some(1000), ..Limits::default() }, ..Options::default() }).await;
    let blob = vec![1u8; 5000];
    let r = s.client.post(s.v2(&format!("a/blobs/uploads/?digest={}", Digest::of(&blob)))).body(blob.clone()).send().await.expect("POST");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
    let start = s.client.post(s.v2("a/blobs/uploads/")).send().await.expect("POST");
    let r = s.client.patch(format!("{}{}", s.url, header(&start, "location"))).body(blob).send().await.expect("PATCH");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
    assert_nothing_stored(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn killed_client_leaves_a_session_that_expires() {
    let s = Server::start(Options::default()).await;
    let start = s.client.post(s.v2("a/blobs/uploads/")).send().await.expect("POST");
    let location = header(&start, "location");
    // A client that sends part of a chunk and dies: a raw connection closed mid-body.
    {
        use tokio::io::AsyncWriteExt;
        let addr = s.url.trim_start_matches("http://").to_owned();
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let request = format!("PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100000\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.expect("write");
        tcp.write_all(&[9u8; 5000]).await.expect("write");
        tcp.shutdown().await.expect("shutdown");
        // The server answers the truncated body once it has handled it.
        let mut response = String::new();
        use tokio::io::AsyncReadExt;
        tcp.read_to_string(&mut response).await.expect("read");
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    }
    // The session survives the dead client (resumable) until it expires.
    let status = s.client.get(format!("{}{location}", s.url)).send().await.expect("GET");
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&status, "range"), "0-4999", "bytes received before the client died are kept");
    assert_eq!(s.registry.session_count(), 1);
    assert_eq!(s.registry.expire_sessions(std::time::Duration::from_secs(3600)).await, 0, "not idle yet");
    assert_eq!(s.registry.expire_sessions(std::time::Duration::ZERO).await, 1);
    assert_eq!(s.registry.session_count(), 0);
    let r = s.client.get(format!("{}{location}", s.url)).send().await.expect("GET");
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let spooled: Vec<_> = std::fs::read_dir(s.blobs.spool().dir()).expect("spool dir").collect();
    assert_eq!(spooled.len(), 0, "the spool file is removed with the session");
    assert_nothing_stored(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn concurrent_pushes_of_the_same_blob_and_different_tags() {
    let s = std::sync::Arc::new(Server::start(Options::default()).await);
    let layer = vec![42u8; 1 << 20];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let s = s.clone();
        let layer = layer.clone();
        tasks.spawn(async move {
            // Same layer and config, different tags, all at once.
            s.push_image("race", &format!("t{i}"), &layer).await
        });
    }
    let mut digests = Vec::new();
    while let Some(result) = tasks.join_next().await {
        digests.push(result.expect("push task").1);
    }
    digests.dedup();
    assert_eq!(digests.len(), 1, "same content, same manifest digest");
    let tags: serde_json::Value = s.client.get(s.v2("race/tags/list")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(tags["tags"].as_array().map(Vec::len), Some(8));
    let blobs = s.blobs.list().await.expect("list");
    assert_eq!(blobs.len(), 3, "config, layer and manifest stored once each: {blobs:?}");
    let got = s.client.get(s.v2(&format!("race/blobs/{}", Digest::of(&layer)))).send().await.expect("GET").bytes().await.expect("body");
    assert_eq!(got.len(), layer.len());
    assert!(got.iter().all(|b| *b == 42));
}
