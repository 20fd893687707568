//! Blob bytes end to end: large blobs in odd-sized chunks (the spool writes whole aligned
//! blocks and keeps a partial last block between chunks; large blobs are read back with
//! direct I/O), ranges at unaligned offsets, and what a restart does to an upload session.

mod common;

use std::sync::Arc;

use common::*;
use registry::Options;
use reqwest::StatusCode;
use store::blob::{Digest, FileStore};

/// Deterministic bytes that don't repeat on any block boundary.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

async fn patch(s: &Server, location: &str, offset: usize, chunk: &[u8]) -> reqwest::Response {
    s.client
        .patch(format!("{}{location}", s.url))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{offset}-{}", offset + chunk.len() - 1))
        .header("content-length", chunk.len())
        .body(chunk.to_vec())
        .send()
        .await
        .expect("PATCH")
}

#[tokio::test]
async fn large_blob_in_odd_chunks_round_trips_with_ranges() {
    let s = Server::start(Options::default()).await;
    let blob = pattern((3 << 20) + 12_345);
    let digest = Digest::of(&blob);
    let start = s.client.post(s.v2("big/blobs/uploads/")).send().await.expect("POST");
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let mut location = header(&start, "location");
    let mut offset = 0;
    // Chunks that end inside a block, a 1-byte chunk, one that ends exactly on a block.
    for len in [1_000_003, 4095, 1, 48_477, 2_000_000] {
        let r = patch(&s, &location, offset, &blob[offset..offset + len]).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", r.text().await.unwrap_or_default());
        offset += len;
        assert_eq!(header(&r, "range"), format!("0-{}", offset - 1));
        location = header(&r, "location");
        let status = s.client.get(format!("{}{location}", s.url)).send().await.expect("GET status");
        assert_eq!(header(&status, "range"), format!("0-{}", offset - 1), "status counts bytes not yet on disk");
    }
    // The rest with the PUT that finishes the upload.
    let last = &blob[offset..];
    let put = s
        .client
        .put(format!("{}{location}?digest={digest}", s.url))
        .header("content-range", format!("{offset}-{}", blob.len() - 1))
        .header("content-length", last.len())
        .body(last.to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), StatusCode::CREATED, "{}", put.text().await.unwrap_or_default());
    assert_eq!(s.blobs.stat(&digest).await.expect("stat").map(|m| m.size), Some(blob.len() as u64), "no padding left on disk");

    let url = s.v2(&format!("big/blobs/{digest}"));
    let whole = s.client.get(&url).send().await.expect("GET");
    assert_eq!(header(&whole, "content-length"), blob.len().to_string());
    assert!(whole.bytes().await.expect("body").as_ref() == blob.as_slice(), "whole blob differs");
    let n = blob.len();
    for (range, from, to) in [
        ("bytes=1-4096".to_owned(), 1, 4097),
        ("bytes=4095-1048577".to_owned(), 4095, 1_048_578),
        ("bytes=262143-524289".to_owned(), 262_143, 524_290),
        ("bytes=-7".to_owned(), n - 7, n),
        (format!("bytes={}-", n - 5000), n - 5000, n),
        ("bytes=3000000-3000000".to_owned(), 3_000_000, 3_000_001),
    ] {
        let r = s.client.get(&url).header("range", &range).send().await.expect("GET range");
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(header(&r, "content-range"), format!("bytes {from}-{}/{n}", to - 1), "{range}");
        let body = r.bytes().await.expect("body");
        assert!(body.as_ref() == &blob[from..to], "{range}: wrong bytes");
    }
    s.stop().await;
}

#[tokio::test]
async fn monolithic_large_blob_of_unaligned_size() {
    let s = Server::start(Options::default()).await;
    let blob = pattern((1 << 20) + 1);
    let digest = s.push_blob("mono", &blob).await;
    let got = s.client.get(s.v2(&format!("mono/blobs/{digest}"))).send().await.expect("GET").bytes().await.expect("body");
    assert!(got.as_ref() == blob.as_slice());
    s.stop().await;
}

/// Upload sessions live in memory: after a restart the spec's answer is
/// `BLOB_UPLOAD_UNKNOWN`, clients start the blob again, and the orphaned spool file goes
/// with the expiry sweep.
#[tokio::test]
async fn restart_mid_upload_forgets_the_session() {
    let data = test_support::tempdir();
    let root = data.path().join("data");
    let blob = pattern(600_000);
    let digest = Digest::of(&blob);

    let store = Arc::new(FileStore::open(&root).expect("store"));
    let s = Server::start_with(Options::default(), store.clone(), store, test_support::tempdir()).await;
    let start = s.client.post(s.v2("r/blobs/uploads/")).send().await.expect("POST");
    let location = header(&start, "location");
    let r = patch(&s, &location, 0, &blob[..300_001]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    s.stop().await;

    let store = Arc::new(FileStore::open(&root).expect("store"));
    let s = Server::start_with(Options::default(), store.clone(), store, test_support::tempdir()).await;
    let spool = s.blobs.spool().dir().to_owned();
    assert_eq!(std::fs::read_dir(&spool).expect("spool dir").count(), 1, "the old spool file is still there");
    let status = s.client.get(format!("{}{location}", s.url)).send().await.expect("GET status");
    assert_eq!(status.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(status).await, "BLOB_UPLOAD_UNKNOWN");
    let r = patch(&s, &location, 300_001, &blob[300_001..]).await;
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let put = s.client.put(format!("{}{location}?digest={digest}", s.url)).send().await.expect("PUT");
    assert_eq!(error_code(put).await, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(s.blobs.stat(&digest).await.expect("stat"), None, "nothing half-uploaded becomes a blob");

    // What clients do next: the whole blob again, in a new session.
    assert_eq!(s.push_blob("r", &blob).await, digest);
    // The orphan goes with the expiry sweep (here: anything idle at all).
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    s.registry.expire_sessions(std::time::Duration::from_millis(10)).await;
    assert_eq!(std::fs::read_dir(&spool).expect("spool dir").count(), 0, "the orphaned spool file is removed");
    s.stop().await;
}
