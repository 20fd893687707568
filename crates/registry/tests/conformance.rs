//! The OCI distribution conformance categories, as our own tests: pull, push (monolithic,
//! chunked, streamed), content discovery (tags, referrers, catalog, pagination), content
//! management (deletes), and error codes. Each runs against a registry on 127.0.0.1:0.

mod common;

use common::*;
use registry::Options;
use reqwest::StatusCode;
use store::blob::Digest;

#[tokio::test]
async fn base_endpoint_answers() {
    let s = Server::start(Options::default()).await;
    let r = s.client.get(s.v2("")).send().await.expect("GET /v2/");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-distribution-api-version"), "registry/2.0");
    s.stop().await;
}

#[tokio::test]
async fn pull_blobs_and_manifests() {
    let s = Server::start(Options::default()).await;
    let layer = b"layer content for pulling".repeat(100);
    let (manifest, digest) = s.push_image("team/app", "v1", &layer).await;
    let layer_digest = Digest::of(&layer);

    // Manifest by tag and by digest, HEAD and GET.
    for reference in ["v1".to_owned(), digest.to_string()] {
        let url = s.v2(&format!("team/app/manifests/{reference}"));
        let head = s.client.head(&url).header("accept", OCI_MANIFEST).send().await.expect("HEAD");
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(header(&head, "docker-content-digest"), digest.to_string());
        assert_eq!(header(&head, "content-length"), manifest.len().to_string());
        assert_eq!(header(&head, "content-type"), OCI_MANIFEST);
        let get = s.client.get(&url).header("accept", OCI_MANIFEST).send().await.expect("GET");
        assert_eq!(get.status(), StatusCode::OK);
        assert_eq!(get.bytes().await.expect("body").as_ref(), manifest.as_slice());
    }

    // Blob HEAD, GET, and ranges.
    let url = s.v2(&format!("team/app/blobs/{layer_digest}"));
    let head = s.client.head(&url).send().await.expect("HEAD blob");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length"), layer.len().to_string());
    assert_eq!(header(&head, "docker-content-digest"), layer_digest.to_string());
    let get = s.client.get(&url).send().await.expect("GET blob");
    assert_eq!(get.bytes().await.expect("body").as_ref(), layer.as_slice());
    let part = s.client.get(&url).header("range", "bytes=10-19").send().await.expect("range");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&part, "content-range"), format!("bytes 10-19/{}", layer.len()));
    assert_eq!(part.bytes().await.expect("body").as_ref(), &layer[10..20]);
    let bad = s.client.get(&url).header("range", format!("bytes={}-", layer.len() + 5)).send().await.expect("range");
    assert_eq!(bad.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&bad, "content-range"), format!("bytes */{}", layer.len()));

    // Unknowns.
    let r = s.client.get(s.v2("team/app/manifests/nope")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let r = s.client.get(s.v2(&format!("team/app/blobs/{}", Digest::of(b"absent")))).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    // A blob stored for another repository is not visible here.
    let r = s.client.get(s.v2(&format!("other/app/blobs/{layer_digest}"))).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn push_monolithic_with_post_then_put() {
    let s = Server::start(Options::default()).await;
    let blob = b"two-step monolithic".to_vec();
    let digest = Digest::of(&blob);
    let start = s.client.post(s.v2("a/blobs/uploads/")).send().await.expect("POST");
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let location = header(&start, "location");
    assert!(location.starts_with("/v2/a/blobs/uploads/"), "{location}");
    let put = s
        .client
        .put(format!("{}{location}?digest={digest}", s.url))
        .header("content-type", "application/octet-stream")
        .body(blob.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), StatusCode::CREATED);
    assert_eq!(header(&put, "location"), format!("/v2/a/blobs/{digest}"));
    assert_eq!(header(&put, "docker-content-digest"), digest.to_string());
    let got = s.client.get(s.v2(&format!("a/blobs/{digest}"))).send().await.expect("GET").bytes().await.expect("body");
    assert_eq!(got.as_ref(), blob.as_slice());
    assert_eq!(s.registry.session_count(), 0);
    s.stop().await;
}

#[tokio::test]
async fn push_chunked_with_status_and_out_of_order_chunk() {
    let s = Server::start(Options::default()).await;
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::of(&blob);
    let start = s.client.post(s.v2("nested/deep/repo/blobs/uploads/")).send().await.expect("POST");
    let mut location = header(&start, "location");
    let mut offset = 0usize;
    for chunk in blob.chunks(100_000) {
        let end = offset + chunk.len() - 1;
        let r = s
            .client
            .patch(format!("{}{location}", s.url))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{offset}-{end}"))
            .header("content-length", chunk.len())
            .body(chunk.to_vec())
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&r, "range"), format!("0-{end}"));
        location = header(&r, "location");
        offset += chunk.len();
        if offset == 100_000 {
            // A chunk that does not continue where the upload is: 416, nothing appended.
            let bad = s
                .client
                .patch(format!("{}{location}", s.url))
                .header("content-range", "500-599")
                .header("content-length", 100)
                .body(vec![0u8; 100])
                .send()
                .await
                .expect("PATCH");
            assert_eq!(bad.status(), StatusCode::RANGE_NOT_SATISFIABLE);
            assert_eq!(header(&bad, "range"), "0-99999");
            let status = s.client.get(format!("{}{location}", s.url)).send().await.expect("GET status");
            assert_eq!(status.status(), StatusCode::NO_CONTENT);
            assert_eq!(header(&status, "range"), "0-99999");
        }
    }
    let put = s.client.put(format!("{}{location}?digest={digest}", s.url)).send().await.expect("PUT");
    assert_eq!(put.status(), StatusCode::CREATED);
    let got = s.client.get(s.v2(&format!("nested/deep/repo/blobs/{digest}"))).send().await.expect("GET").bytes().await.expect("body");
    assert_eq!(got.as_ref(), blob.as_slice());
    s.stop().await;
}

#[tokio::test]
async fn push_streamed_without_content_range() {
    let s = Server::start(Options::default()).await;
    let blob = vec![7u8; 2 << 20];
    let digest = Digest::of(&blob);
    let start = s.client.post(s.v2("streamed/blobs/uploads/")).send().await.expect("POST");
    let location = header(&start, "location");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = blob.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let r = s.client.patch(format!("{}{location}", s.url)).header("content-type", "application/octet-stream").body(body).send().await.expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), format!("0-{}", blob.len() - 1));
    let put = s.client.put(format!("{}{}?digest={digest}", s.url, header(&r, "location"))).send().await.expect("PUT");
    assert_eq!(put.status(), StatusCode::CREATED);
    assert_eq!(s.blobs.stat(&digest).await.expect("stat").map(|m| m.size), Some(blob.len() as u64));
    s.stop().await;
}

#[tokio::test]
async fn cross_repository_mount() {
    let s = Server::start(Options::default()).await;
    let digest = s.push_blob("source/repo", b"shared layer").await;
    let r = s.client.post(s.v2(&format!("target/repo/blobs/uploads/?mount={digest}&from=source/repo"))).send().await.expect("mount");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/target/repo/blobs/{digest}"));
    let head = s.client.head(s.v2(&format!("target/repo/blobs/{digest}"))).send().await.expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK);
    // Unknown source: falls back to a new upload session.
    let absent = Digest::of(b"not there");
    let r = s.client.post(s.v2(&format!("target/repo/blobs/uploads/?mount={absent}&from=source/repo"))).send().await.expect("mount");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "location").starts_with("/v2/target/repo/blobs/uploads/"));
    // Stored once: one blob file for both repositories.
    let blobs = s.blobs.list().await.expect("list");
    assert_eq!(blobs.iter().filter(|(d, _)| d == &digest).count(), 1);
    s.stop().await;
}

#[tokio::test]
async fn tags_list_paginates_with_link() {
    let s = Server::start(Options::default()).await;
    let (manifest, _) = s.push_image("paged", "a", b"x").await;
    for tag in ["b", "c", "d", "e"] {
        assert_eq!(s.put_manifest("paged", tag, OCI_MANIFEST, &manifest).await.status(), StatusCode::CREATED);
    }
    let all: serde_json::Value = s.client.get(s.v2("paged/tags/list")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(all, serde_json::json!({"name": "paged", "tags": ["a", "b", "c", "d", "e"]}));
    let page = s.client.get(s.v2("paged/tags/list?n=2")).send().await.expect("GET");
    assert_eq!(header(&page, "link"), "</v2/paged/tags/list?n=2&last=b>; rel=\"next\"");
    let body: serde_json::Value = page.json().await.expect("json");
    assert_eq!(body["tags"], serde_json::json!(["a", "b"]));
    let page = s.client.get(s.v2("paged/tags/list?n=2&last=d")).send().await.expect("GET");
    assert_eq!(header(&page, "link"), "");
    let body: serde_json::Value = page.json().await.expect("json");
    assert_eq!(body["tags"], serde_json::json!(["e"]));
    let zero: serde_json::Value = s.client.get(s.v2("paged/tags/list?n=0")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(zero["tags"], serde_json::json!([]));
    let unknown = s.client.get(s.v2("never/pushed/tags/list")).send().await.expect("GET");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(unknown).await, "NAME_UNKNOWN");
    s.stop().await;
}

#[tokio::test]
async fn catalog_lists_nested_repositories_with_pagination() {
    let s = Server::start(Options::default()).await;
    for name in ["zeta", "alpha/one", "alpha/two/three", "beta"] {
        s.push_image(name, "latest", name.as_bytes()).await;
    }
    let all: serde_json::Value = s.client.get(s.v2("_catalog")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(all["repositories"], serde_json::json!(["alpha/one", "alpha/two/three", "beta", "zeta"]));
    let page = s.client.get(s.v2("_catalog?n=3")).send().await.expect("GET");
    assert_eq!(header(&page, "link"), "</v2/_catalog?n=3&last=beta>; rel=\"next\"");
    let next: serde_json::Value = s.client.get(s.v2("_catalog?n=3&last=beta")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(next["repositories"], serde_json::json!(["zeta"]));
    s.stop().await;
}

#[tokio::test]
async fn referrers_with_artifact_type_filter_and_subject_header() {
    let s = Server::start(Options::default()).await;
    let (subject, subject_digest) = s.push_image("app", "v1", b"subject layer").await;
    let empty = s.push_blob("app", b"{}").await;
    let mut referrers = Vec::new();
    for (i, artifact_type) in ["application/vnd.example.sbom", "application/vnd.example.signature"].iter().enumerate() {
        let layer = s.push_blob("app", format!("artifact {i}").as_bytes()).await;
        let m = oci_manifest(&empty, 2, &[(layer, 10)], Some((&subject_digest, subject.len())), Some(artifact_type));
        let digest = Digest::of(&m);
        let r = s.put_manifest("app", &digest.to_string(), OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(header(&r, "oci-subject"), subject_digest.to_string());
        referrers.push(digest);
    }
    let r = s.client.get(s.v2(&format!("app/referrers/{subject_digest}"))).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    let index: serde_json::Value = r.json().await.expect("json");
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let mut listed: Vec<String> = index["manifests"].as_array().expect("array").iter().map(|m| m["digest"].as_str().unwrap_or_default().to_owned()).collect();
    listed.sort();
    let mut want: Vec<String> = referrers.iter().map(ToString::to_string).collect();
    want.sort();
    assert_eq!(listed, want);

    let r = s.client.get(s.v2(&format!("app/referrers/{subject_digest}?artifactType=application/vnd.example.sbom"))).send().await.expect("GET");
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let index: serde_json::Value = r.json().await.expect("json");
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(index["manifests"][0]["artifactType"], "application/vnd.example.sbom");
    assert_eq!(index["manifests"][0]["digest"], referrers[0].to_string());

    // No referrers: an empty index, not a 404.
    let none: serde_json::Value = s.client.get(s.v2(&format!("app/referrers/{}", Digest::of(b"x")))).send().await.expect("GET").json().await.expect("json");
    assert_eq!(none["manifests"], serde_json::json!([]));

    // Deleting a referrer removes it from the listing.
    let r = s.client.delete(s.v2(&format!("app/manifests/{}", referrers[1]))).send().await.expect("DELETE");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let index: serde_json::Value = s.client.get(s.v2(&format!("app/referrers/{subject_digest}"))).send().await.expect("GET").json().await.expect("json");
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(1));
    s.stop().await;
}

#[tokio::test]
async fn index_and_docker_manifests() {
    let s = Server::start(Options::default()).await;
    let (amd, amd_digest) = s.push_image("multi", "amd64", b"amd64 layer").await;
    let (arm, arm_digest) = s.push_image("multi", "arm64", b"arm64 layer").await;
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd_digest.to_string(), "size": amd.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm_digest.to_string(), "size": arm.len(), "platform": {"architecture": "arm64", "os": "linux"}},
        ]
    });
    let index = serde_json::to_vec(&index).expect("json");
    assert_eq!(s.put_manifest("multi", "latest", OCI_INDEX, &index).await.status(), StatusCode::CREATED);
    // Content negotiation: an Accept without the index type does not get it.
    let r = s.client.get(s.v2("multi/manifests/latest")).header("accept", DOCKER_MANIFEST).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s.client.get(s.v2("multi/manifests/latest")).header("accept", format!("{DOCKER_MANIFEST}, {OCI_INDEX}")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);

    // A Docker schema-2 manifest.
    let config = s.push_blob("docker", b"{\"os\":\"linux\"}").await;
    let layer = s.push_blob("docker", b"docker layer").await;
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config.to_string(), "size": 15},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer.to_string(), "size": 12}]
    });
    let m = serde_json::to_vec(&m).expect("json");
    assert_eq!(s.put_manifest("docker", "v1", DOCKER_MANIFEST, &m).await.status(), StatusCode::CREATED);
    let r = s.client.get(s.v2("docker/manifests/v1")).header("accept", DOCKER_MANIFEST).send().await.expect("GET");
    assert_eq!(header(&r, "content-type"), DOCKER_MANIFEST);

    // An index whose child manifest is not in the repository.
    let bad = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": Digest::of(b"missing").to_string(), "size": 3}]});
    let r = s.put_manifest("multi", "bad", OCI_INDEX, &serde_json::to_vec(&bad).expect("json")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    s.stop().await;
}

#[tokio::test]
async fn content_management_deletes() {
    let s = Server::start(Options::default()).await;
    let (manifest, digest) = s.push_image("del", "one", b"delete me").await;
    assert_eq!(s.put_manifest("del", "two", OCI_MANIFEST, &manifest).await.status(), StatusCode::CREATED);

    // Delete a tag: the other tag and the digest still resolve.
    let r = s.client.delete(s.v2("del/manifests/one")).send().await.expect("DELETE tag");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(s.client.head(s.v2("del/manifests/one")).send().await.expect("HEAD").status(), StatusCode::NOT_FOUND);
    assert_eq!(s.client.head(s.v2("del/manifests/two")).send().await.expect("HEAD").status(), StatusCode::OK);

    // Delete by digest: every tag pointing at it goes too.
    let r = s.client.delete(s.v2(&format!("del/manifests/{digest}"))).send().await.expect("DELETE");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(s.client.head(s.v2("del/manifests/two")).send().await.expect("HEAD").status(), StatusCode::NOT_FOUND);
    let r = s.client.get(s.v2(&format!("del/manifests/{digest}"))).send().await.expect("GET");
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let tags: serde_json::Value = s.client.get(s.v2("del/tags/list")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(tags["tags"], serde_json::json!([]));
    let again = s.client.delete(s.v2(&format!("del/manifests/{digest}"))).send().await.expect("DELETE");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // Delete a blob from the repository.
    let layer = Digest::of(b"delete me");
    let r = s.client.delete(s.v2(&format!("del/blobs/{layer}"))).send().await.expect("DELETE blob");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s.client.head(s.v2(&format!("del/blobs/{layer}"))).send().await.expect("HEAD");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s.client.delete(s.v2(&format!("del/blobs/{layer}"))).send().await.expect("DELETE blob");
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");

    // Cancel an upload.
    let start = s.client.post(s.v2("del/blobs/uploads/")).send().await.expect("POST");
    let location = header(&start, "location");
    assert_eq!(s.registry.session_count(), 1);
    let r = s.client.delete(format!("{}{location}", s.url)).send().await.expect("DELETE upload");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.registry.session_count(), 0);
    let r = s.client.get(format!("{}{location}", s.url)).send().await.expect("GET upload");
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    s.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_bytes_and_sessions() {
    let s = Server::start(Options::default()).await;
    s.push_image("metered", "v1", &[1u8; 1000]).await;
    s.client.get(s.v2(&format!("metered/blobs/{}", Digest::of(&[1u8; 1000])))).send().await.expect("GET").bytes().await.expect("body");
    s.client.post(s.v2("metered/blobs/uploads/")).send().await.expect("POST");
    let text = s.client.get(format!("{}/metrics", s.url)).send().await.expect("metrics").text().await.expect("text");
    for line in [
        "slipway_registry_requests_total{method=\"PUT\",route=\"manifest\",status=\"201\"} 1",
        "slipway_registry_requests_total{method=\"POST\",route=\"upload\",status=\"202\"} 1",
        "slipway_registry_sent_bytes_total 1000",
        "slipway_registry_upload_sessions 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    let received: u64 = text.lines().find_map(|l| l.strip_prefix("slipway_registry_received_bytes_total ")).and_then(|v| v.parse().ok()).expect("received");
    assert!(received >= 1000, "{received}");
    let stored: u64 = text.lines().find_map(|l| l.strip_prefix("slipway_registry_storage_bytes ")).and_then(|v| v.parse().ok()).expect("storage");
    assert!(stored >= 1000, "{stored}");
    s.stop().await;
}
