//! Garbage collection: unreferenced blobs and abandoned uploads go, referenced content and
//! in-flight pushes stay.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use registry::{gc, Options};
use reqwest::StatusCode;
use store::blob::Digest;

/// Age a stored blob file (files backend) by moving its modification time back.
fn age_blob(s: &Server, digest: &Digest, by: Duration) {
    let path = s.dir.path().join("data/blobs/sha256").join(&digest.hex()[..2]).join(digest.hex());
    let file = std::fs::File::options().write(true).open(&path).expect("blob file");
    file.set_modified(SystemTime::now() - by).expect("set mtime");
}

fn options(grace: Duration) -> gc::GcOptions {
    gc::GcOptions { grace, upload_expiry: Duration::from_secs(3600), dry_run: false }
}

#[tokio::test]
async fn removes_unreferenced_blobs_older_than_the_grace_period() {
    let s = Server::start(Options::default()).await;
    let (_, kept_manifest) = s.push_image("keep", "v1", b"kept layer").await;
    let (_, dropped_manifest) = s.push_image("drop", "v1", b"dropped layer").await;
    let stray = s.push_blob("keep", b"never referenced").await;
    let young_stray = s.push_blob("keep", b"uploaded just now").await;
    let r = s.client.delete(s.v2(&format!("drop/manifests/{dropped_manifest}"))).send().await.expect("DELETE");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let old = Duration::from_secs(7200);
    for (digest, _) in s.blobs.list().await.expect("list") {
        if digest != young_stray {
            age_blob(&s, &digest, old);
        }
    }

    let dry = gc::collect(s.blobs.as_ref(), s.meta.as_ref(), &gc::GcOptions { dry_run: true, ..options(Duration::from_secs(3600)) }).await.expect("gc");
    assert_eq!(dry.blobs_removed, 4);
    assert_eq!(s.blobs.list().await.expect("list").len(), 8, "a dry run removes nothing");

    let report = gc::collect(s.blobs.as_ref(), s.meta.as_ref(), &options(Duration::from_secs(3600))).await.expect("gc");
    // Removed: the stray blob, and the deleted manifest with its layer and config.
    assert_eq!(report.blobs_removed, 4, "{report:?}");
    let mut left: Vec<Digest> = s.blobs.list().await.expect("list").into_iter().map(|(d, _)| d).collect();
    left.sort();
    let mut want = vec![kept_manifest.clone(), Digest::of(b"kept layer"), young_stray];
    let kept_config = left.iter().find(|d| !want.contains(d)).cloned().expect("the kept config");
    want.push(kept_config);
    want.sort();
    assert_eq!(left, want);
    assert!(!left.contains(&stray));
    // What is referenced still pulls.
    let r = s.client.get(s.v2("keep/manifests/v1")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.client.get(s.v2(&format!("keep/blobs/{}", Digest::of(b"kept layer")))).send().await.expect("GET");
    assert_eq!(r.bytes().await.expect("body").as_ref(), b"kept layer");
    // A second run finds nothing more.
    let again = gc::collect(s.blobs.as_ref(), s.meta.as_ref(), &options(Duration::from_secs(3600))).await.expect("gc");
    assert_eq!(again.blobs_removed, 0);
    s.stop().await;
}

#[tokio::test]
async fn safe_while_pushes_run() {
    let s = std::sync::Arc::new(Server::start(Options::default()).await);
    // An upload in flight: its spool file is kept.
    let start = s.client.post(s.v2("busy/blobs/uploads/")).send().await.expect("POST");
    let location = header(&start, "location");
    let part = b"first half ".to_vec();
    let r = s.client.patch(format!("{}{location}", s.url)).body(part.clone()).send().await.expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // An old blob that a new push is about to reuse (HEAD says it exists, so the client
    // skips uploading it): the manifest push touches it, so gc keeps it.
    let reused = s.push_blob("busy", b"reused layer").await;
    age_blob(&s, &reused, Duration::from_secs(7200));

    // Pushes and collections at the same time.
    let mut pushes = tokio::task::JoinSet::new();
    for i in 0..6 {
        let s = s.clone();
        pushes.spawn(async move { s.push_image("busy", &format!("t{i}"), format!("layer {i}").as_bytes()).await });
    }
    let config = s.push_blob("busy", b"{}").await;
    let manifest = oci_manifest(&config, 2, &[(reused.clone(), 12)], None, None);
    let r = s.put_manifest("busy", "reuse", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let touched = s.blobs.stat(&reused).await.expect("stat").expect("stored").modified;
    assert!(touched > SystemTime::now() - Duration::from_secs(600), "pushing a manifest refreshes the blobs it uses");
    for _ in 0..3 {
        gc::collect(s.blobs.as_ref(), s.meta.as_ref(), &options(Duration::from_secs(3600))).await.expect("gc");
    }
    while let Some(done) = pushes.join_next().await {
        done.expect("push");
    }
    gc::collect(s.blobs.as_ref(), s.meta.as_ref(), &options(Duration::from_secs(3600))).await.expect("gc");

    // Every pushed image is complete.
    for tag in ["t0", "t1", "t2", "t3", "t4", "t5", "reuse"] {
        let m: serde_json::Value = s.client.get(s.v2(&format!("busy/manifests/{tag}"))).send().await.expect("GET").json().await.expect("json");
        for layer in m["layers"].as_array().expect("layers") {
            let r = s.client.head(s.v2(&format!("busy/blobs/{}", layer["digest"].as_str().expect("digest")))).send().await.expect("HEAD");
            assert_eq!(r.status(), StatusCode::OK, "{tag}");
        }
    }
    // The in-flight upload finishes.
    let rest = b"second half".to_vec();
    let whole = [part, rest.clone()].concat();
    let r = s.client.put(format!("{}{location}?digest={}", s.url, Digest::of(&whole))).body(rest).send().await.expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn abandoned_upload_files_are_removed() {
    let s = Server::start(Options::default()).await;
    let start = s.client.post(s.v2("a/blobs/uploads/")).send().await.expect("POST");
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let spool = s.blobs.spool().dir().to_owned();
    let files: Vec<_> = std::fs::read_dir(&spool).expect("spool").flatten().collect();
    assert_eq!(files.len(), 1);
    let kept = gc::collect(s.blobs.as_ref(), s.meta.as_ref(), &options(Duration::from_secs(3600))).await.expect("gc");
    assert_eq!(kept.uploads_removed, 0);
    let file = std::fs::File::options().write(true).open(files[0].path()).expect("open");
    file.set_modified(SystemTime::now() - Duration::from_secs(7200)).expect("mtime");
    let report = gc::collect(s.blobs.as_ref(), s.meta.as_ref(), &options(Duration::from_secs(3600))).await.expect("gc");
    assert_eq!(report.uploads_removed, 1);
    assert_eq!(std::fs::read_dir(&spool).expect("spool").count(), 0);
    s.stop().await;
}
