//! A registry client over `reqwest` (rustls): the OCI distribution API for pulling and pushing
//! blobs and manifests.
//!
//! - Blobs stream from and to files: a layer is never held in memory whole.
//! - Push skips blobs the registry has (`HEAD`), tries a cross-repository mount when a source
//!   repository on the same registry is known, and uploads monolithically (one streamed
//!   `PUT`) or in chunks (`PATCH` + `Content-Range`, then `PUT`).
//! - Auth: anonymous, basic, and the bearer-token challenge flow (`WWW-Authenticate`), with
//!   credentials from [`credentials::Credentials`].
//! - Pull verifies every manifest and blob against its digest before anything is stored; a
//!   mismatch is an error, never a warning.
//! - A manifest (and so a tag) is written only after all of its blobs are in place, so a
//!   failed push leaves no tag pointing at a partial image.

pub mod credentials;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use tokio::io::AsyncReadExt;

use crate::digest::Digest;
use crate::layout::{Layout, LayoutError};
use crate::manifest::{Descriptor, Index, Manifest, Platform, media};
use crate::reference::Reference;
use credentials::{Credentials, CredentialsError};

/// One entry of a registry's `{"errors": [...]}` body.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{method} {url}: {status}: {}", describe(errors, body))]
    Api {
        method: Method,
        url: String,
        status: StatusCode,
        errors: Vec<ApiError>,
        body: String,
    },
    #[error("{action} {url}")]
    Http {
        action: &'static str,
        url: String,
        source: reqwest::Error,
    },
    #[error("authenticating to {registry}: {message}")]
    Auth { registry: String, message: String },
    #[error("digest mismatch for {what}: the registry sent {actual}, expected {expected}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("size mismatch for {digest}: the registry sent {actual} bytes, expected {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("{url}: {message}")]
    Protocol { url: String, message: String },
    #[error("no manifest for {platform} in {reference} (it has: {available})")]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

fn describe(errors: &[ApiError], body: &str) -> String {
    if errors.is_empty() {
        let b = body.trim();
        if b.is_empty() {
            "no error body".into()
        } else {
            b.chars().take(300).collect()
        }
    } else {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl RegistryError {
    /// The registry's error codes (`UNAUTHORIZED`, `MANIFEST_UNKNOWN`, ...), if any.
    pub fn codes(&self) -> Vec<&str> {
        match self {
            RegistryError::Api { errors, .. } => errors.iter().map(|e| e.code.as_str()).collect(),
            _ => vec![],
        }
    }
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            RegistryError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How the client talks to registries.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Plain HTTP for every registry (loopback registries always use plain HTTP).
    pub insecure: bool,
    /// Upload blobs in chunks of this many bytes; `None` streams each blob in one `PUT`.
    pub chunk_size: Option<u64>,
    /// Blobs transferred at the same time.
    pub concurrency: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            chunk_size: None,
            concurrency: 4,
        }
    }
}

/// What happened to one blob during a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobPush {
    Exists,
    Mounted,
    Uploaded,
}

/// The outcome of a push.
#[derive(Clone, Debug)]
pub struct PushReport {
    pub manifest: Digest,
    pub blobs: Vec<(Digest, BlobPush)>,
}

/// A pulled image: its platform manifest (stored in the layout with all blobs).
#[derive(Clone, Debug)]
pub struct Pulled {
    pub descriptor: Descriptor,
    pub manifest: Manifest,
}

/// A registry client. Cheap to share behind an `Arc`; auth tokens are cached per scope.
pub struct Client {
    http: reqwest::Client,
    creds: Credentials,
    opts: ClientOptions,
    auth: Mutex<HashMap<String, HeaderValue>>,
}

const USER_AGENT: &str = concat!("slipway/", env!("CARGO_PKG_VERSION"));

impl Client {
    pub fn new(creds: Credentials, opts: ClientOptions) -> Result<Client, RegistryError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .build()
            .map_err(|source| RegistryError::Http {
                action: "creating the HTTP client",
                url: String::new(),
                source,
            })?;
        Ok(Client {
            http,
            creds,
            opts,
            auth: Mutex::new(HashMap::new()),
        })
    }

    fn base(&self, r: &Reference) -> String {
        let scheme = if self.opts.insecure || r.is_loopback() {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2", r.api_host())
    }

    fn cached_auth(&self, key: &str) -> Option<HeaderValue> {
        self.auth
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Sends a request built by `build` (called again for the retry after a 401 challenge).
    async fn send(
        &self,
        r: &Reference,
        scope: &str,
        method: Method,
        url: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let key = format!("{} {scope}", r.api_host());
        let mut retried = false;
        loop {
            let mut rb = build(self.http.request(method.clone(), url));
            if let Some(h) = self.cached_auth(&key) {
                rb = rb.header(header::AUTHORIZATION, h);
            }
            let resp = rb.send().await.map_err(|source| RegistryError::Http {
                action: "sending",
                url: url.into(),
                source,
            })?;
            if resp.status() == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                let challenge = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if let Some(ch) = challenge
                    && let Some(h) = self.authenticate(r, scope, &ch).await?
                {
                    self.auth
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key.clone(), h);
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// Answers a `WWW-Authenticate` challenge: basic credentials, or a bearer token from the
    /// realm. `None` when there is nothing to answer with (anonymous, basic without creds).
    async fn authenticate(
        &self,
        r: &Reference,
        scope: &str,
        challenge: &str,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let registry = r.registry.clone();
        let cred = self.creds.get(&r.registry)?;
        let (scheme, params) = parse_challenge(challenge);
        let auth_err = |message: String| RegistryError::Auth {
            registry: registry.clone(),
            message,
        };
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Ok(cred.map(|c| basic(&c.username, &c.password))),
            "bearer" => {
                let realm = params.get("realm").ok_or_else(|| {
                    auth_err(format!("bearer challenge without realm: {challenge}"))
                })?;
                let mut url = url::Url::parse(realm)
                    .map_err(|e| auth_err(format!("bad realm {realm:?}: {e}")))?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = params.get("service") {
                        q.append_pair("service", s);
                    }
                    for s in scope.split(' ').filter(|s| !s.is_empty()) {
                        q.append_pair("scope", s);
                    }
                }
                let mut rb = self.http.get(url.clone());
                if let Some(c) = &cred {
                    rb = rb.header(header::AUTHORIZATION, basic(&c.username, &c.password));
                }
                let resp = rb.send().await.map_err(|source| RegistryError::Http {
                    action: "requesting a token from",
                    url: url.to_string(),
                    source,
                })?;
                let resp = check(resp, Method::GET, url.as_str()).await?;
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Token = resp.json().await.map_err(|source| RegistryError::Http {
                    action: "reading the token from",
                    url: url.to_string(),
                    source,
                })?;
                let token = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| auth_err(format!("{url} returned no token")))?;
                let h = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| auth_err("the token is not a valid header value".into()))?;
                Ok(Some(h))
            }
            other => Err(auth_err(format!("unsupported auth scheme {other:?}"))),
        }
    }

    /// Checks that the registry accepts our credentials (`GET /v2/`).
    pub async fn ping(&self, r: &Reference) -> Result<(), RegistryError> {
        let url = format!("{}/", self.base(r));
        let resp = self.send(r, "", Method::GET, &url, |b| b).await?;
        check(resp, Method::GET, &url).await.map(drop)
    }

    /// Fetches a manifest or index: (bytes, media type, digest). The digest is verified when
    /// the reference carries one, and against `Docker-Content-Digest` when the registry sends it.
    pub async fn get_manifest(
        &self,
        r: &Reference,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let url = format!("{}/{}/manifests/{}", self.base(r), r.repository, r.target());
        let scope = pull_scope(r);
        let resp = self
            .send(r, &scope, Method::GET, &url, |b| {
                b.header(header::ACCEPT, media::MANIFEST_ACCEPT)
            })
            .await?;
        let resp = check(resp, Method::GET, &url).await?;
        let sent_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = resp.bytes().await.map_err(|source| RegistryError::Http {
            action: "reading",
            url: url.clone(),
            source,
        })?;
        let actual = Digest::of(&bytes);
        for expected in r.digest.iter().chain(sent_digest.iter()) {
            if *expected != actual {
                return Err(RegistryError::DigestMismatch {
                    what: format!("manifest {r}"),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let media_type = if ct.is_empty() || ct == "application/json" {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v.get("mediaType")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| media::OCI_MANIFEST.to_string())
        } else {
            ct.split(';').next().unwrap_or_default().trim().to_string()
        };
        Ok((bytes.to_vec(), media_type, actual))
    }

    /// Streams a blob into `layout`, verifying digest and size; nothing is stored on mismatch.
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        desc: &Descriptor,
        layout: &Layout,
    ) -> Result<(), RegistryError> {
        if layout.has_blob(&desc.digest) {
            return Ok(());
        }
        let url = format!("{}/{}/blobs/{}", self.base(r), r.repository, desc.digest);
        let scope = pull_scope(r);
        let resp = self.send(r, &scope, Method::GET, &url, |b| b).await?;
        let resp = check(resp, Method::GET, &url).await?;
        let mut writer = layout.blob_writer()?;
        let mut stream = resp.bytes_stream();
        let mut n: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| RegistryError::Http {
                action: "downloading",
                url: url.clone(),
                source,
            })?;
            n += chunk.len() as u64;
            if n > desc.size {
                break;
            }
            std::io::Write::write_all(&mut writer, &chunk).map_err(|source| RegistryError::Io {
                path: layout.dir().to_path_buf(),
                source,
            })?;
        }
        if n != desc.size {
            return Err(RegistryError::SizeMismatch {
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: n,
            });
        }
        writer.commit(Some(&desc.digest)).map_err(|e| match e {
            LayoutError::DigestMismatch {
                expected, actual, ..
            } => RegistryError::DigestMismatch {
                what: format!("blob from {url}"),
                expected,
                actual,
            },
            other => other.into(),
        })?;
        Ok(())
    }

    /// Pulls the image `r` for `platform` (resolving an index) with all its blobs into `layout`.
    pub async fn pull(
        &self,
        r: &Reference,
        platform: &Platform,
        layout: &Layout,
    ) -> Result<Pulled, RegistryError> {
        let (bytes, mt, digest) = self.get_manifest(r).await?;
        let (bytes, mt, digest) = if media::is_index(&mt) {
            let index: Index =
                serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
                    url: r.to_string(),
                    message: format!("unreadable index: {e}"),
                })?;
            let pick = index.manifests.iter().find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
            });
            let Some(pick) = pick else {
                let available = index
                    .manifests
                    .iter()
                    .filter_map(|d| {
                        d.platform
                            .as_ref()
                            .map(|p| format!("{}/{}", p.os, p.architecture))
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(RegistryError::NoPlatform {
                    reference: r.to_string(),
                    platform: format!("{}/{}", platform.os, platform.architecture),
                    available,
                });
            };
            layout.write_blob(&bytes)?;
            self.get_manifest(&r.with_digest(pick.digest.clone()))
                .await?
        } else {
            (bytes, mt, digest)
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
                url: r.to_string(),
                message: format!("unreadable manifest: {e}"),
            })?;
        let blobs: Vec<Descriptor> = std::iter::once(manifest.config.clone())
            .chain(manifest.layers.iter().cloned())
            .collect();
        let mut fetches = Vec::new();
        for d in &blobs {
            fetches.push(self.fetch_blob(r, d, layout));
        }
        bounded(fetches, self.opts.concurrency).await?;
        layout.write_blob(&bytes)?;
        let descriptor = Descriptor::new(&mt, digest, bytes.len() as u64);
        Ok(Pulled {
            descriptor,
            manifest,
        })
    }

    /// Whether the repository already has the blob.
    pub async fn has_blob(&self, r: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        let url = format!("{}/{}/blobs/{digest}", self.base(r), r.repository);
        let resp = self
            .send(r, &push_scope(r), Method::HEAD, &url, |b| b)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => check(resp, Method::HEAD, &url).await.map(|_| false),
        }
    }

    /// Pushes one blob from `path` (skip if present, mount if possible, else upload).
    pub async fn push_blob(
        &self,
        r: &Reference,
        desc: &Descriptor,
        path: &Path,
        mount_from: &[String],
    ) -> Result<BlobPush, RegistryError> {
        let local = tokio::fs::metadata(path)
            .await
            .map_err(|source| RegistryError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if local.len() != desc.size {
            return Err(RegistryError::Protocol {
                url: path.display().to_string(),
                message: format!(
                    "the local blob {} is {} bytes, its descriptor says {}",
                    desc.digest,
                    local.len(),
                    desc.size
                ),
            });
        }
        if self.has_blob(r, &desc.digest).await? {
            return Ok(BlobPush::Exists);
        }
        let uploads = format!("{}/{}/blobs/uploads/", self.base(r), r.repository);
        let mut location = None;
        // One mount attempt: a 202 opens an upload session, which we then use.
        if let Some(from) = mount_from.iter().find(|f| **f != r.repository) {
            let scope = format!("{} repository:{from}:pull", push_scope(r));
            let url = format!("{uploads}?mount={}&from={from}", desc.digest);
            let resp = self
                .send(r, &scope, Method::POST, &url, |b| {
                    b.header(header::CONTENT_LENGTH, "0")
                })
                .await?;
            if resp.status() == StatusCode::CREATED {
                return Ok(BlobPush::Mounted);
            }
            let resp = check(resp, Method::POST, &url).await?;
            location = Some(self.location(&url, resp.headers())?);
        }
        let mut location = match location {
            Some(l) => l,
            None => {
                let resp = self
                    .send(r, &push_scope(r), Method::POST, &uploads, |b| {
                        b.header(header::CONTENT_LENGTH, "0")
                    })
                    .await?;
                let resp = check(resp, Method::POST, &uploads).await?;
                self.location(&uploads, resp.headers())?
            }
        };
        let key = format!("{} {}", r.api_host(), push_scope(r));
        let auth = self.cached_auth(&key);
        let open = || async {
            tokio::fs::File::open(path)
                .await
                .map_err(|source| RegistryError::Io {
                    path: path.to_path_buf(),
                    source,
                })
        };
        let final_url = url::Url::parse(&location).map_err(|e| RegistryError::Protocol {
            url: location.clone(),
            message: format!("bad upload location: {e}"),
        })?;
        match self.opts.chunk_size {
            Some(chunk) if chunk > 0 && desc.size > chunk => {
                let mut offset = 0u64;
                while offset < desc.size {
                    let len = chunk.min(desc.size - offset);
                    let mut file = open().await?;
                    tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(offset))
                        .await
                        .map_err(|source| RegistryError::Io {
                            path: path.to_path_buf(),
                            source,
                        })?;
                    let body = reqwest::Body::wrap_stream(
                        tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024),
                    );
                    let mut rb = self
                        .http
                        .patch(&location)
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .header(header::CONTENT_LENGTH, len)
                        .header(
                            header::CONTENT_RANGE,
                            format!("{}-{}", offset, offset + len - 1),
                        )
                        .body(body);
                    if let Some(h) = &auth {
                        rb = rb.header(header::AUTHORIZATION, h.clone());
                    }
                    let resp = rb.send().await.map_err(|source| RegistryError::Http {
                        action: "uploading a chunk to",
                        url: location.clone(),
                        source,
                    })?;
                    let resp = check(resp, Method::PATCH, &location).await?;
                    location = self.location(&location, resp.headers())?;
                    offset += len;
                }
                let mut final_url =
                    url::Url::parse(&location).map_err(|e| RegistryError::Protocol {
                        url: location.clone(),
                        message: format!("bad upload location: {e}"),
                    })?;
                final_url
                    .query_pairs_mut()
                    .append_pair("digest", desc.digest.as_str());
                let mut rb = self
                    .http
                    .put(final_url.clone())
                    .header(header::CONTENT_LENGTH, "0");
                if let Some(h) = &auth {
                    rb = rb.header(header::AUTHORIZATION, h.clone());
                }
                let resp = rb.send().await.map_err(|source| RegistryError::Http {
                    action: "finishing the upload to",
                    url: final_url.to_string(),
                    source,
                })?;
                check(resp, Method::PUT, final_url.as_str()).await?;
            }
            _ => {
                let mut final_url = final_url;
                final_url
                    .query_pairs_mut()
                    .append_pair("digest", desc.digest.as_str());
                let file = open().await?;
                let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
                    file.take(desc.size),
                    256 * 1024,
                ));
                let mut rb = self
                    .http
                    .put(final_url.clone())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, desc.size)
                    .body(body);
                if let Some(h) = &auth {
                    rb = rb.header(header::AUTHORIZATION, h.clone());
                }
                let resp = rb.send().await.map_err(|source| RegistryError::Http {
                    action: "uploading to",
                    url: final_url.to_string(),
                    source,
                })?;
                check(resp, Method::PUT, final_url.as_str()).await?;
            }
        }
        Ok(BlobPush::Uploaded)
    }

    async fn push_one(
        &self,
        layout: &Layout,
        d: &Descriptor,
        r: &Reference,
        mount_from: &[String],
    ) -> Result<(Digest, BlobPush), RegistryError> {
        let path = layout.blob_path(&d.digest);
        let how = self.push_blob(r, d, &path, mount_from).await?;
        Ok((d.digest.clone(), how))
    }

    fn location(&self, request_url: &str, headers: &HeaderMap) -> Result<String, RegistryError> {
        let loc = headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                url: request_url.into(),
                message: "the registry sent no Location for the upload".into(),
            })?;
        let base = url::Url::parse(request_url).map_err(|e| RegistryError::Protocol {
            url: request_url.into(),
            message: e.to_string(),
        })?;
        base.join(loc)
            .map(|u| u.to_string())
            .map_err(|e| RegistryError::Protocol {
                url: request_url.into(),
                message: format!("bad Location {loc:?}: {e}"),
            })
    }

    /// Uploads a manifest under `r`'s tag (or digest).
    pub async fn put_manifest(
        &self,
        r: &Reference,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let url = format!("{}/{}/manifests/{}", self.base(r), r.repository, r.target());
        let body = bytes.to_vec();
        let resp = self
            .send(r, &push_scope(r), Method::PUT, &url, |b| {
                b.header(header::CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        check(resp, Method::PUT, &url).await?;
        Ok(Digest::of(bytes))
    }

    /// Pushes the image (manifest or index) `desc` from `layout` to `r`. Blobs first, the
    /// manifest last: a failure leaves the tag untouched.
    pub async fn push(
        &self,
        layout: &Layout,
        desc: &Descriptor,
        r: &Reference,
        mount_from: &[String],
    ) -> Result<PushReport, RegistryError> {
        let bytes = layout.read_blob(&desc.digest)?;
        let mut report = PushReport {
            manifest: desc.digest.clone(),
            blobs: Vec::new(),
        };
        if media::is_index(&desc.media_type) {
            let index: Index =
                serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
                    url: r.to_string(),
                    message: format!("unreadable index in the layout: {e}"),
                })?;
            for child in &index.manifests {
                let sub = Box::pin(self.push(
                    layout,
                    child,
                    &r.with_digest(child.digest.clone()),
                    mount_from,
                ))
                .await?;
                report.blobs.extend(sub.blobs);
            }
        } else {
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
                    url: r.to_string(),
                    message: format!("unreadable manifest in the layout: {e}"),
                })?;
            let blobs: Vec<Descriptor> = std::iter::once(manifest.config.clone())
                .chain(manifest.layers.iter().cloned())
                .collect();
            for d in &blobs {
                if !layout.has_blob(&d.digest) {
                    return Err(LayoutError::MissingBlob {
                        digest: d.digest.clone(),
                        dir: layout.dir().to_path_buf(),
                    }
                    .into());
                }
            }
            let mut pushes = Vec::new();
            for d in &blobs {
                pushes.push(self.push_one(layout, d, r, mount_from));
            }
            report.blobs = bounded(pushes, self.opts.concurrency).await?;
        }
        self.put_manifest(r, &desc.media_type, &bytes).await?;
        Ok(report)
    }
}

/// Runs `futs` with at most `n` in flight; the first error wins.
async fn bounded<T, F: std::future::Future<Output = Result<T, RegistryError>>>(
    futs: Vec<F>,
    n: usize,
) -> Result<Vec<T>, RegistryError> {
    let mut pending = futs.into_iter();
    let mut running = futures::stream::FuturesUnordered::new();
    for f in pending.by_ref().take(n.max(1)) {
        running.push(f);
    }
    let mut out = Vec::new();
    while let Some(r) = running.next().await {
        out.push(r?);
        if let Some(f) = pending.next() {
            running.push(f);
        }
    }
    Ok(out)
}

fn basic(user: &str, password: &str) -> HeaderValue {
    let v = format!("Basic {}", B64.encode(format!("{user}:{password}")));
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Basic"))
}

fn pull_scope(r: &Reference) -> String {
    format!("repository:{}:pull", r.repository)
}

fn push_scope(r: &Reference) -> String {
    format!("repository:{}:pull,push", r.repository)
}

/// Splits `Bearer realm="x",service="y"` into the scheme and its parameters.
fn parse_challenge(h: &str) -> (String, HashMap<String, String>) {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n)
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    (scheme.to_string(), params)
}

/// Turns a non-success response into [`RegistryError::Api`] with the registry's codes.
async fn check(resp: Response, method: Method, url: &str) -> Result<Response, RegistryError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<ApiError>,
    }
    let errors = serde_json::from_str::<Errors>(&body)
        .map(|e| e.errors)
        .unwrap_or_default();
    Err(RegistryError::Api {
        method,
        url: url.to_string(),
        status,
        errors,
        body,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm="slipway-test""#);
        assert_eq!(s, "Basic");
        assert_eq!(p["realm"], "slipway-test");
    }
}
