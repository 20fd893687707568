//! The agent's side of artifacts through the server (see `artifacts` for the server's).
//!
//! The runner keeps a job's artifacts in a directory (`RunOptions::artifact_dir`):
//! `DIR/<name>/manifest.json` (name; files with path, sha256, size, mode) and the contents in
//! `DIR/blobs/sha256/<hex>`. Before a job that downloads artifacts, [`fetch`] fills that
//! directory with the run's artifacts from the server; after the job, [`upload`] sends the
//! artifacts the job made (or changed) — blobs the server lacks first, the manifest last.
//!
//! Also here: what a job's plan needs from the agent before it runs ([`plan_uses`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use protocol::{ArtifactManifest, ArtifactUpload};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// What talks to the server: the HTTP client, the server's base URL, the agent's token.
pub(crate) struct Http<'a> {
    pub client: &'a reqwest::Client,
    pub base: &'a str,
    pub token: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ArtifactError {
    #[error("calling {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: StatusCode, body: String },
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blob sha256:{expected} arrived with digest sha256:{actual}")]
    Digest { expected: String, actual: String },
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ArtifactError + 'a {
    move |source| ArtifactError::Io { action, path: path.to_owned(), source }
}

async fn check(url: &str, resp: reqwest::Response) -> Result<reqwest::Response, ArtifactError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    Err(ArtifactError::Status { url: url.to_owned(), status, body })
}

/// Whether any step of `plan` (called workflows included) uses the action `name`
/// (`actions/checkout`), or, for `"./"`, a local action.
pub(crate) fn plan_uses(plan: &workflow::Plan, name: &str) -> bool {
    plan.jobs.iter().any(|job| match &job.kind {
        workflow::JobKind::Steps(steps) => steps.iter().any(|s| match &s.kind {
            workflow::StepKind::Uses { action: workflow::ActionRef::Local { .. }, .. } => name == "./",
            workflow::StepKind::Uses { action, .. } => action.remote_name().as_deref() == Some(name),
            workflow::StepKind::Run { .. } => false,
        }),
        // A remote reusable workflow is fetched by the runner: assume the worst.
        workflow::JobKind::Call(call) => call.plan.as_ref().is_none_or(|p| plan_uses(p, name)),
    })
}

/// The artifacts the job's run has so far, written into `dir` in the runner's layout.
/// Returns their manifests by name (so [`upload`] can skip what did not change).
pub(crate) async fn fetch(http: &Http<'_>, job: i64, dir: &Path) -> Result<BTreeMap<String, ArtifactManifest>, ArtifactError> {
    let url = format!("{}{}", http.base, protocol::paths::agent_artifacts(job));
    let resp = http.client.get(&url).bearer_auth(http.token).send().await.map_err(|source| ArtifactError::Http { url: url.clone(), source })?;
    let manifests: Vec<ArtifactManifest> =
        check(&url, resp).await?.json().await.map_err(|source| ArtifactError::Http { url: url.clone(), source })?;
    let blobs = dir.join("blobs").join("sha256");
    tokio::fs::create_dir_all(&blobs).await.map_err(io("creating", &blobs))?;
    let mut out = BTreeMap::new();
    for m in manifests {
        for f in &m.files {
            let path = blobs.join(&f.sha256);
            if tokio::fs::try_exists(&path).await.unwrap_or(false) {
                continue;
            }
            fetch_blob(http, job, &f.sha256, &path).await?;
        }
        let body = serde_json::to_vec_pretty(&m).map_err(|e| ArtifactError::Manifest { path: dir.join(&m.name), message: e.to_string() })?;
        let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::create_dir_all(&tmp).await.map_err(io("creating", &tmp))?;
        tokio::fs::write(tmp.join("manifest.json"), &body).await.map_err(io("writing", &tmp))?;
        let dest = dir.join(&m.name);
        tokio::fs::rename(&tmp, &dest).await.map_err(io("publishing", &dest))?;
        out.insert(m.name.clone(), m);
    }
    Ok(out)
}

/// Downloads one blob to `path`, verifying its digest before the file appears.
async fn fetch_blob(http: &Http<'_>, job: i64, hex: &str, path: &Path) -> Result<(), ArtifactError> {
    let url = format!("{}{}", http.base, protocol::paths::agent_blob(job, &format!("sha256:{hex}")));
    let resp = http.client.get(&url).bearer_auth(http.token).send().await.map_err(|source| ArtifactError::Http { url: url.clone(), source })?;
    let mut resp = check(&url, resp).await?;
    let tmp = path.with_file_name(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let mut file = tokio::fs::File::create(&tmp).await.map_err(io("creating", &tmp))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = resp.chunk().await.map_err(|source| ArtifactError::Http { url: url.clone(), source })? {
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io("writing", &tmp))?;
    }
    file.sync_all().await.map_err(io("syncing", &tmp))?;
    drop(file);
    let actual = hex::encode(hasher.finalize());
    if actual != hex {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(ArtifactError::Digest { expected: hex.to_owned(), actual });
    }
    tokio::fs::rename(&tmp, path).await.map_err(io("publishing", path))
}

/// Sends the artifacts in `dir` that are not in `known` (unchanged ones the job downloaded)
/// to the server. Returns the names uploaded.
pub(crate) async fn upload(
    http: &Http<'_>,
    job: i64,
    attempt: i64,
    dir: &Path,
    known: &BTreeMap<String, ArtifactManifest>,
) -> Result<Vec<String>, ArtifactError> {
    let mut names = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else { return Ok(names) };
    while let Some(e) = entries.next_entry().await.map_err(io("listing", dir))? {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "blobs" {
            continue;
        }
        let path = e.path().join("manifest.json");
        let Ok(text) = tokio::fs::read(&path).await else { continue };
        let manifest: ArtifactManifest =
            serde_json::from_slice(&text).map_err(|e| ArtifactError::Manifest { path: path.clone(), message: e.to_string() })?;
        if known.get(&name) == Some(&manifest) {
            continue;
        }
        for f in &manifest.files {
            let url = format!("{}{}", http.base, protocol::paths::agent_blob(job, &format!("sha256:{}", f.sha256)));
            let head = http.client.head(&url).bearer_auth(http.token).send().await.map_err(|source| ArtifactError::Http { url: url.clone(), source })?;
            if head.status().is_success() {
                continue;
            }
            let blob = dir.join("blobs").join("sha256").join(&f.sha256);
            let file = tokio::fs::File::open(&blob).await.map_err(io("opening", &blob))?;
            let len = file.metadata().await.map_err(io("reading", &blob))?.len();
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
            let resp = http
                .client
                .put(&url)
                .bearer_auth(http.token)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(body)
                .send()
                .await
                .map_err(|source| ArtifactError::Http { url: url.clone(), source })?;
            check(&url, resp).await?;
        }
        let url = format!("{}{}", http.base, protocol::paths::agent_artifacts(job));
        let resp = http
            .client
            .post(&url)
            .bearer_auth(http.token)
            .json(&ArtifactUpload { attempt, manifest })
            .send()
            .await
            .map_err(|source| ArtifactError::Http { url: url.clone(), source })?;
        check(&url, resp).await?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}

// ---------------------------------------------------------------------------------------
// caches

/// `actions/cache` through the server (see `caches` for the server's side): the runner's
/// [`runner::CacheBackend`] for one job, authenticated by the job's lease.
#[derive(Debug)]
pub(crate) struct ServerCache {
    client: reqwest::Client,
    base: String,
    token: String,
    job: i64,
}

impl ServerCache {
    pub(crate) fn new(http: &Http<'_>, job: i64) -> ServerCache {
        ServerCache { client: http.client.clone(), base: http.base.to_owned(), token: http.token.to_owned(), job }
    }

    fn http(&self) -> Http<'_> {
        Http { client: &self.client, base: &self.base, token: &self.token }
    }

    async fn post<B: serde::Serialize>(&self, path: &str, body: &B) -> Result<reqwest::Response, ArtifactError> {
        let url = format!("{}{path}", self.base);
        self.client.post(&url).bearer_auth(&self.token).json(body).send().await.map_err(|source| ArtifactError::Http { url, source })
    }

    async fn find(&self, keys: &[String], version: &str) -> Result<Option<protocol::CacheFound>, ArtifactError> {
        let path = protocol::paths::agent_cache_lookup(self.job);
        let resp = self.post(&path, &protocol::CacheLookup { keys: keys.to_vec(), version: version.to_owned() }).await?;
        let url = format!("{}{path}", self.base);
        let resp = check(&url, resp).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        resp.json().await.map(Some).map_err(|source| ArtifactError::Http { url, source })
    }

    async fn store(&self, key: &str, version: &str, tar: &Path) -> Result<runner::CacheSaved, ArtifactError> {
        // Reserve first: a second writer of the key uploads nothing.
        let path = protocol::paths::agent_caches(self.job);
        let url = format!("{}{path}", self.base);
        let resp = self.post(&path, &protocol::CacheReserve { key: key.to_owned(), version: version.to_owned() }).await?;
        if resp.status() == StatusCode::CONFLICT {
            return Ok(runner::CacheSaved::Exists);
        }
        let reserved: protocol::CacheReserved =
            check(&url, resp).await?.json().await.map_err(|source| ArtifactError::Http { url: url.clone(), source })?;
        let (hex, size) = file_sha256(tar).await?;
        let digest = format!("sha256:{hex}");
        let blob_url = format!("{}{}", self.base, protocol::paths::agent_blob(self.job, &digest));
        let head = self.client.head(&blob_url).bearer_auth(&self.token).send().await.map_err(|source| ArtifactError::Http { url: blob_url.clone(), source })?;
        if !head.status().is_success() {
            let file = tokio::fs::File::open(tar).await.map_err(io("opening", tar))?;
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
            let resp = self
                .client
                .put(&blob_url)
                .bearer_auth(&self.token)
                .header(reqwest::header::CONTENT_LENGTH, size)
                .body(body)
                .send()
                .await
                .map_err(|source| ArtifactError::Http { url: blob_url.clone(), source })?;
            check(&blob_url, resp).await?;
        }
        let path = protocol::paths::agent_cache_commit(self.job, reserved.id);
        let url = format!("{}{path}", self.base);
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        let resp = self.post(&path, &protocol::CacheCommit { digest, size }).await?;
        if resp.status() == StatusCode::CONFLICT {
            return Ok(runner::CacheSaved::Exists);
        }
        check(&url, resp).await?;
        Ok(runner::CacheSaved::Saved)
    }
}

/// The SHA-256 (hex) and size of a file.
async fn file_sha256(path: &Path) -> Result<(String, u64), ArtifactError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&owned).map_err(io("opening", &owned))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = std::io::Read::read(&mut file, &mut buf).map_err(io("reading", &owned))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok((hex::encode(hasher.finalize()), size))
    })
    .await
    .map_err(|e| ArtifactError::Io { action: "hashing", path: path.to_owned(), source: std::io::Error::other(e) })?
}

/// The error and its sources, `: `-separated.
fn cache_error(e: ArtifactError) -> runner::CacheError {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    runner::CacheError(out)
}

#[async_trait::async_trait]
impl runner::CacheBackend for ServerCache {
    async fn lookup(&self, keys: &[String], version: &str) -> Result<Option<String>, runner::CacheError> {
        Ok(self.find(keys, version).await.map_err(cache_error)?.map(|f| f.key))
    }

    async fn restore(&self, keys: &[String], version: &str, scratch: &Path) -> Result<Option<runner::CacheHit>, runner::CacheError> {
        let Some(found) = self.find(keys, version).await.map_err(cache_error)? else { return Ok(None) };
        let Some(hex) = found.digest.strip_prefix("sha256:") else {
            return Err(runner::CacheError(format!("the server named the archive `{}`, not a sha256 digest", found.digest)));
        };
        let tar = scratch.join("restore.tar");
        fetch_blob(&self.http(), self.job, hex, &tar).await.map_err(cache_error)?;
        Ok(Some(runner::CacheHit { key: found.key, tar }))
    }

    async fn save(&self, key: &str, version: &str, tar: &Path) -> Result<runner::CacheSaved, runner::CacheError> {
        self.store(key, version, tar).await.map_err(cache_error)
    }
}
