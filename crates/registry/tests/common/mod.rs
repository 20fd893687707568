//! Shared helpers: a registry served in-process on 127.0.0.1:0, and small push helpers.
#![allow(dead_code)]

use std::sync::Arc;

use registry::{Options, Registry};
use reqwest::{Client, Response, StatusCode};
use store::blob::{BlobStore, Digest, FileStore, MetaStore};

use tokio_util::sync::CancellationToken;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub registry: Registry,
    pub blobs: Arc<dyn BlobStore>,
    pub meta: Arc<dyn MetaStore>,
    pub client: Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub async fn start(options: Options) -> Server {
        let dir = test_support::tempdir();
        let store = Arc::new(FileStore::open(dir.path().join("data")).expect("opening the store"));
        Self::start_with(options, store.clone(), store, dir).await
    }

    pub async fn start_with(options: Options, blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetaStore>, dir: tempfile::TempDir) -> Server {
        let registry = Registry::new(blobs.clone(), meta.clone(), options).expect("valid options");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(registry::serve(listener, registry.clone(), shutdown.clone()));
        Server { url, registry, blobs, meta, client: Client::new(), shutdown, task: Some(task), dir }
    }

    pub fn v2(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.url)
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }

    /// Push a blob monolithically (`POST ?digest=`).
    pub async fn push_blob(&self, name: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let response = self
            .client
            .post(self.v2(&format!("{name}/blobs/uploads/?digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("pushing a blob");
        assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap_or_default());
        digest
    }

    pub async fn put_manifest(&self, name: &str, reference: &str, media_type: &str, body: &[u8]) -> Response {
        self.client
            .put(self.v2(&format!("{name}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("pushing a manifest")
    }

    /// Push a config and one layer, then an OCI manifest tagged `tag`. Returns (manifest bytes, digest).
    pub async fn push_image(&self, name: &str, tag: &str, layer: &[u8]) -> (Vec<u8>, Digest) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#, Digest::of(layer));
        let config_digest = self.push_blob(name, config.as_bytes()).await;
        let layer_digest = self.push_blob(name, layer).await;
        let manifest = oci_manifest(&config_digest, config.len(), &[(layer_digest, layer.len())], None, None);
        let response = self.put_manifest(name, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap_or_default());
        let digest = Digest::of(&manifest);
        (manifest, digest)
    }
}

/// An OCI image manifest.
pub fn oci_manifest(config: &Digest, config_size: usize, layers: &[(Digest, usize)], subject: Option<(&Digest, usize)>, artifact_type: Option<&str>) -> Vec<u8> {
    let layers: Vec<_> = layers.iter().map(|(d, s)| serde_json::json!({"mediaType": OCI_LAYER, "digest": d.to_string(), "size": s})).collect();
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.to_string(), "size": config_size},
        "layers": layers,
    });
    if let Some((d, s)) = subject {
        m["subject"] = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": s});
    }
    if let Some(t) = artifact_type {
        m["artifactType"] = serde_json::json!(t);
    }
    serde_json::to_vec(&m).expect("serializing")
}

/// The spec error code of a response body.
pub async fn error_code(response: Response) -> String {
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    body["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
}

pub fn header(response: &Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}
