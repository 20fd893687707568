//! The S3 backend against a real S3-compatible server (moto): push and pull through the
//! registry, multipart blobs, and garbage collection.

mod common;

use std::sync::Arc;

use common::*;
use registry::{gc, Options};
use reqwest::StatusCode;
use store::blob::{BlobStore, Digest, MetaStore, S3Options, S3Store};

async fn s3_server() -> Server {
    let endpoint = test_support::s3_endpoint();
    let bucket = format!("registry-{}", uuid::Uuid::new_v4().simple());
    let r = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.expect("creating the bucket");
    assert!(r.status().is_success(), "creating bucket {bucket}: {}", r.status());
    let dir = test_support::tempdir();
    let store = Arc::new(
        S3Store::open(S3Options {
            bucket,
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            prefix: Some("registry".into()),
            spool_dir: dir.path().join("spool"),
        })
        .expect("opening S3"),
    );
    let blobs: Arc<dyn BlobStore> = store.clone();
    let meta: Arc<dyn MetaStore> = store;
    Server::start_with(Options::default(), blobs, meta, dir).await
}

#[tokio::test]
async fn push_and_pull_through_s3() {
    let s = s3_server().await;
    let (manifest, digest) = s.push_image("team/app", "v1", b"small layer").await;

    // A chunked 20 MiB blob: committed as a multipart upload.
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let big_digest = Digest::of(&big);
    let start = s.client.post(s.v2("team/app/blobs/uploads/")).send().await.expect("POST");
    let mut location = header(&start, "location");
    let mut offset = 0;
    for chunk in big.chunks(7 << 20) {
        let r = s
            .client
            .patch(format!("{}{location}", s.url))
            .header("content-range", format!("{offset}-{}", offset + chunk.len() - 1))
            .body(chunk.to_vec())
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        location = header(&r, "location");
        offset += chunk.len();
    }
    let r = s.client.put(format!("{}{location}?digest={big_digest}", s.url)).send().await.expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);

    let got = s.client.get(s.v2(&format!("team/app/blobs/{big_digest}"))).send().await.expect("GET").bytes().await.expect("body");
    assert_eq!(Digest::of(&got), big_digest);
    let part = s.client.get(s.v2(&format!("team/app/blobs/{big_digest}"))).header("range", "bytes=1000-1999").send().await.expect("GET");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.expect("body").as_ref(), &big[1000..2000]);
    let r = s.client.get(s.v2("team/app/manifests/v1")).send().await.expect("GET");
    assert_eq!(header(&r, "docker-content-digest"), digest.to_string());
    assert_eq!(r.bytes().await.expect("body").as_ref(), manifest.as_slice());
    let tags: serde_json::Value = s.client.get(s.v2("team/app/tags/list")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    let catalog: serde_json::Value = s.client.get(s.v2("_catalog")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(catalog["repositories"], serde_json::json!(["team/app"]));
    // A digest mismatch stores nothing in the bucket.
    let r = s.client.post(s.v2(&format!("team/app/blobs/uploads/?digest={}", Digest::of(b"claimed")))).body(b"actual".to_vec()).send().await.expect("POST");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(s.blobs.stat(&Digest::of(b"actual")).await.expect("stat").is_none());
    assert!(s.blobs.stat(&Digest::of(b"claimed")).await.expect("stat").is_none());

    // Delete the manifest; gc with no grace removes its blobs and the unreferenced big one.
    let r = s.client.delete(s.v2(&format!("team/app/manifests/{digest}"))).send().await.expect("DELETE");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let before = s.blobs.list().await.expect("list").len();
    assert_eq!(before, 4);
    let report = gc::collect(s.blobs.as_ref(), s.meta.as_ref(), &gc::GcOptions { grace: std::time::Duration::ZERO, ..gc::GcOptions::default() })
        .await
        .expect("gc");
    assert_eq!(report.blobs_removed, 4, "{report:?}");
    assert!(s.blobs.list().await.expect("list").is_empty());
    s.stop().await;
}
