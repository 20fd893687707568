//! The registry client against the real CNCF distribution registry (htpasswd auth), and
//! against small in-test servers for what the real one cannot be made to do (serve a tampered
//! blob, issue bearer tokens).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use oci::layer::{Entry, Kind};
use oci::layout::Layout;
use oci::manifest::{Compression, Descriptor, ImageConfig, Manifest, RootFs, media};
use oci::registry::credentials::{Credential, Credentials};
use oci::registry::{BlobPush, Client, ClientOptions, RegistryError};
use oci::{Digest, Reference};

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn client(opts: ClientOptions) -> Client {
    let d = test_support::distribution();
    let creds = Credentials::none().with(
        &d.addr,
        Credential {
            username: d.user,
            password: d.password,
        },
    );
    Client::new(creds, opts).expect("client")
}

/// An image with one layer of `size` pseudo-random bytes (different on every call).
fn make_image(layout: &Layout, size: usize) -> Descriptor {
    let dir = tempfile::tempdir().expect("tmp");
    let seed = unique("seed");
    let mut data = Vec::with_capacity(size);
    let mut x: u64 = seed.bytes().fold(1469598103934665603, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1099511628211)
    });
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    std::fs::write(dir.path().join("data"), &data).expect("write");
    let entry = Entry {
        path: "data".into(),
        kind: Kind::File {
            source: dir.path().join("data"),
        },
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    let blob = oci::layer::write_layer(layout, vec![entry], 0, Compression::None).expect("layer");
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![blob.diff_id.clone()],
        },
        ..Default::default()
    };
    let config = layout
        .write_json(media::OCI_CONFIG, &config)
        .expect("config");
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config,
        layers: vec![blob.descriptor],
        annotations: BTreeMap::new(),
    };
    layout
        .write_json(media::OCI_MANIFEST, &manifest)
        .expect("manifest")
}

fn reference(repo: &str) -> Reference {
    format!("{}/{repo}:v1", test_support::distribution().addr)
        .parse()
        .expect("reference")
}

#[tokio::test]
async fn chunked_upload_then_mount_then_skip_then_verified_pull() {
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = Layout::create(tmp.path()).expect("layout");
    let desc = make_image(&layout, 300 * 1024 + 17);
    let chunked = client(ClientOptions {
        chunk_size: Some(64 * 1024),
        ..Default::default()
    });
    let a = reference(&unique("slipway-test/chunked"));
    let report = chunked
        .push(&layout, &desc, &a, &[])
        .await
        .expect("chunked push");
    assert_eq!(report.manifest, desc.digest);
    assert!(
        report.blobs.iter().all(|(_, p)| *p == BlobPush::Uploaded),
        "{:?}",
        report.blobs
    );

    // Another repository on the same registry: the blobs are mounted, not uploaded.
    let b = reference(&unique("slipway-test/mounted"));
    let c = client(ClientOptions::default());
    let report = c
        .push(&layout, &desc, &b, std::slice::from_ref(&a.repository))
        .await
        .expect("mount push");
    assert!(
        report.blobs.iter().all(|(_, p)| *p == BlobPush::Mounted),
        "{:?}",
        report.blobs
    );

    // Pushing again finds everything in place.
    let report = c.push(&layout, &desc, &b, &[]).await.expect("re-push");
    assert!(
        report.blobs.iter().all(|(_, p)| *p == BlobPush::Exists),
        "{:?}",
        report.blobs
    );

    // And it pulls back, verified, into an empty layout.
    let tmp2 = tempfile::tempdir().expect("tmp");
    let fresh = Layout::create(tmp2.path()).expect("layout");
    let pulled = c
        .pull(&b, &oci::manifest::host_platform(), &fresh)
        .await
        .expect("pull");
    assert_eq!(pulled.descriptor.digest, desc.digest);
    for l in &pulled.manifest.layers {
        assert!(fresh.has_blob(&l.digest));
    }
}

#[tokio::test]
async fn a_failed_push_leaves_no_tag() {
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = Layout::create(tmp.path()).expect("layout");
    let desc = make_image(&layout, 4096);
    let manifest: Manifest =
        serde_json::from_slice(&layout.read_blob(&desc.digest).expect("read")).expect("json");
    // Corrupt the layer in the local layout: the registry must refuse the upload.
    let path = layout.blob_path(&manifest.layers[0].digest);
    let mut bytes = std::fs::read(&path).expect("read layer");
    bytes[600] ^= 0xff; // same size, different content
    std::fs::write(&path, bytes).expect("corrupt");
    let r = reference(&unique("slipway-test/failed"));
    let c = client(ClientOptions::default());
    let err = c
        .push(&layout, &desc, &r, &[])
        .await
        .expect_err("the push must fail");
    assert!(
        err.codes().contains(&"DIGEST_INVALID") || err.to_string().contains("DIGEST_INVALID"),
        "{err}"
    );
    let err = c
        .get_manifest(&r)
        .await
        .expect_err("no tag after a failed push");
    assert_eq!(err.status(), Some(reqwest::StatusCode::NOT_FOUND), "{err}");
    assert!(
        err.to_string().contains("MANIFEST_UNKNOWN") || err.to_string().contains("NAME_UNKNOWN"),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_password_reports_unauthorized() {
    let d = test_support::distribution();
    let creds = Credentials::none().with(
        &d.addr,
        Credential {
            username: d.user,
            password: "wrong".into(),
        },
    );
    let c = Client::new(creds, ClientOptions::default()).expect("client");
    let err = c.ping(&reference("x/y")).await.expect_err("wrong password");
    assert_eq!(err.codes(), ["UNAUTHORIZED"], "{err}");
    assert!(err.to_string().contains("UNAUTHORIZED"), "{err}");
    let anon = Client::new(Credentials::none(), ClientOptions::default()).expect("client");
    let err = anon
        .get_manifest(&reference("x/y"))
        .await
        .expect_err("anonymous");
    assert_eq!(
        err.status(),
        Some(reqwest::StatusCode::UNAUTHORIZED),
        "{err}"
    );
}

/// Serves `app` on a free loopback port.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr.to_string()
}

#[tokio::test]
async fn a_tampered_blob_is_never_accepted() {
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = Layout::create(tmp.path()).expect("layout");
    let desc = make_image(&layout, 2048);
    let manifest_bytes = layout.read_blob(&desc.digest).expect("manifest");
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).expect("json");
    let config_bytes = layout.read_blob(&manifest.config.digest).expect("config");
    let mut tampered_layer = layout.read_blob(&manifest.layers[0].digest).expect("layer");
    let last = tampered_layer.len() - 1024 - 10;
    tampered_layer[last] ^= 0xff; // same size, different content
    let (m, c, l) = (
        manifest_bytes.clone(),
        config_bytes.clone(),
        tampered_layer.clone(),
    );
    let config_digest = manifest.config.digest.to_string();
    let app = Router::new().route(
        "/v2/{*rest}",
        get(
            move |axum::extract::Path(rest): axum::extract::Path<String>| {
                let (m, c, l, cd) = (m.clone(), c.clone(), l.clone(), config_digest.clone());
                async move {
                    if rest.contains("/manifests/") {
                        ([(header::CONTENT_TYPE, media::OCI_MANIFEST)], m).into_response()
                    } else if rest.ends_with(&cd) {
                        c.into_response()
                    } else {
                        l.into_response()
                    }
                }
            },
        ),
    );
    let addr = serve(app).await;
    let r: Reference = format!("{addr}/evil/image:v1").parse().expect("ref");
    let c = Client::new(Credentials::none(), ClientOptions::default()).expect("client");
    let tmp2 = tempfile::tempdir().expect("tmp");
    let fresh = Layout::create(tmp2.path()).expect("layout");
    let err = c
        .pull(&r, &oci::manifest::host_platform(), &fresh)
        .await
        .expect_err("tampered layer");
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(
        !fresh.has_blob(&manifest.layers[0].digest),
        "nothing stored under the expected digest"
    );
    let stray = std::fs::read_dir(tmp2.path().join("blobs/sha256"))
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ingest"))
        .count();
    assert_eq!(stray, 0, "no temporary blob left behind");
    // A manifest whose bytes do not match the digest asked for is refused too.
    let wrong: Digest = Digest::of(b"something else");
    let err = c
        .get_manifest(&r.with_digest(wrong))
        .await
        .expect_err("manifest digest");
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
}

#[tokio::test]
async fn bearer_token_challenge_flow() {
    let token_requests = Arc::new(AtomicUsize::new(0));
    let seen = token_requests.clone();
    let addr_cell: Arc<std::sync::OnceLock<String>> = Arc::new(std::sync::OnceLock::new());
    let cell = addr_cell.clone();
    let app = Router::new()
        .route(
            "/token",
            get(move |q: axum::extract::RawQuery, h: HeaderMap| {
                let seen = seen.clone();
                async move {
                    seen.fetch_add(1, Ordering::SeqCst);
                    // user:secret
                    let ok = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some("Basic dXNlcjpzZWNyZXQ=");
                    let q = q.0.unwrap_or_default();
                    let scope_ok = q.contains("scope=repository%3Ateam%2Fapp%3Apull") && q.contains("service=fake");
                    if ok && scope_ok {
                        (StatusCode::OK, r#"{"token":"t0k3n"}"#).into_response()
                    } else {
                        (StatusCode::UNAUTHORIZED, r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#).into_response()
                    }
                }
            }),
        )
        .route(
            "/v2/{*rest}",
            get(move |h: HeaderMap| {
                let cell = cell.clone();
                async move {
                    if h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some("Bearer t0k3n") {
                        ([(header::CONTENT_TYPE, media::OCI_MANIFEST)], r#"{"schemaVersion":2}"#).into_response()
                    } else {
                        let realm = format!(
                            "Bearer realm=\"http://{}/token\",service=\"fake\",scope=\"repository:team/app:pull\"",
                            cell.get().expect("addr set")
                        );
                        (
                            StatusCode::UNAUTHORIZED,
                            [(header::WWW_AUTHENTICATE, realm)],
                            r#"{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}"#,
                        )
                            .into_response()
                    }
                }
            }),
        );
    let addr = serve(app).await;
    addr_cell.set(addr.clone()).expect("once");
    let r: Reference = format!("{addr}/team/app:v1").parse().expect("ref");
    let good = Credentials::none().with(
        &addr,
        Credential {
            username: "user".into(),
            password: "secret".into(),
        },
    );
    let c = Client::new(good, ClientOptions::default()).expect("client");
    let (bytes, mt, _) = c.get_manifest(&r).await.expect("bearer flow");
    assert_eq!(bytes, br#"{"schemaVersion":2}"#);
    assert_eq!(mt, media::OCI_MANIFEST);
    // The token is cached for the scope: a second request asks for no new token.
    c.get_manifest(&r).await.expect("cached token");
    assert_eq!(token_requests.load(Ordering::SeqCst), 1);

    let bad = Credentials::none().with(
        &addr,
        Credential {
            username: "user".into(),
            password: "nope".into(),
        },
    );
    let c = Client::new(bad, ClientOptions::default()).expect("client");
    let err = c.get_manifest(&r).await.expect_err("bad credentials");
    assert!(
        err.to_string().contains("UNAUTHORIZED: bad credentials"),
        "{err}"
    );
}
