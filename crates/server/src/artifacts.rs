//! Artifacts through the server, so a job on one agent can download what a job of the same
//! run uploaded on another.
//!
//! An artifact is the runner's manifest (name; files with path, SHA-256, size, mode); the
//! contents are content-addressed blobs in the server's blob store (files under
//! `{data}/blobs`, or S3 with `[server.blob_store]`), the manifest is a row of the store.
//! After a job, its agent `HEAD`s each file's blob, `PUT`s the missing ones (verified against
//! their digest before they become visible), then `POST`s the manifest — which is refused
//! while any blob is missing, so an artifact is never visible half-uploaded. Before a job that
//! downloads artifacts, the agent `GET`s the run's manifests and the blobs it lacks.
//!
//! Agent routes (the agent must hold the job): `GET/POST /api/v1/agent/jobs/{id}/artifacts`,
//! `HEAD/PUT/GET /api/v1/agent/jobs/{id}/blobs/{digest}`. API routes (any role):
//! `GET /api/v1/runs/{id}/artifacts` (the list) and `GET /api/v1/runs/{id}/artifacts/{name}`
//! (the files as an uncompressed POSIX tar archive, `application/x-tar`, entries in manifest
//! order with their modes, mtime 0).
// The error of these helpers is the handler's reply (an axum `Response`).
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use protocol::{ArtifactManifest, ArtifactUpload};
use store::blob::{BlobStore, Digest};
use store::sql::{Agent, ArtifactRecord, Job, JobId, JobStatus, RunId};

use crate::agent_api::authenticate_agent;
use crate::api::{Need, authorize};
use crate::{AppState, error_response, internal, now_ms};

/// Most files in one artifact.
const MAX_FILES: usize = 100_000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/agent/jobs/{id}/artifacts", get(agent_list).post(agent_record))
        .route(
            "/api/v1/agent/jobs/{id}/blobs/{digest}",
            get(agent_get_blob).head(agent_has_blob).put(agent_put_blob).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/runs/{id}/artifacts", get(list))
        .route("/api/v1/runs/{id}/artifacts/{name}", get(download))
}

/// The job `id`, if `agent` is running it (any attempt).
pub(crate) async fn running_job(state: &AppState, headers: &HeaderMap, id: i64) -> Result<(Agent, Job), Response> {
    let agent = authenticate_agent(state, headers).await?;
    match state.db().job(JobId(id)).await {
        Ok(Some(job)) if job.agent == Some(agent.id) && job.status == JobStatus::Running => Ok((agent, job)),
        Ok(Some(_)) => Err(error_response(StatusCode::CONFLICT, format!("this agent is not running job {id}"))),
        Ok(None) => Err(error_response(StatusCode::NOT_FOUND, format!("no job {id}"))),
        Err(e) => Err(internal(e)),
    }
}

fn parse_digest(d: &str) -> Result<Digest, Response> {
    Digest::parse(d).map_err(|e| error_response(StatusCode::BAD_REQUEST, format!("digest `{d}`: {e}")))
}

/// The runner's rules for artifact names.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with("blobs")
        && !name.contains(['/', '\\', '"', ':', '<', '>', '|', '*', '?', '\r', '\n', '\0'])
}

/// Why a manifest cannot be stored, naming the field.
fn check_manifest(m: &ArtifactManifest) -> Result<(), String> {
    if !valid_name(&m.name) {
        return Err(format!("manifest.name: `{}` is not a valid artifact name", m.name));
    }
    if m.files.len() > MAX_FILES {
        return Err(format!("manifest.files: more than {MAX_FILES} files"));
    }
    for (i, f) in m.files.iter().enumerate() {
        let p = std::path::Path::new(&f.path);
        let unsafe_path = f.path.is_empty()
            || p.is_absolute()
            || p.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
            || f.path.contains('\0');
        if unsafe_path {
            return Err(format!("manifest.files[{i}].path: `{}` is not a relative path inside the artifact", f.path));
        }
        if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(format!("manifest.files[{i}].sha256: `{}` is not a SHA-256 in lowercase hex", f.sha256));
        }
    }
    Ok(())
}

async fn agent_list(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let (_, job) = match running_job(&state, &headers, id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match state.db().artifacts(job.run, None).await {
        Ok(list) => {
            let manifests: Vec<ArtifactManifest> = list.iter().filter_map(|a| serde_json::from_str(&a.manifest).ok()).collect();
            Json(manifests).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn agent_record(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<i64>, body: Bytes) -> Response {
    let (_, job) = match running_job(&state, &headers, id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let upload: ArtifactUpload = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    if upload.attempt != job.attempt {
        return error_response(StatusCode::CONFLICT, format!("this agent does not hold attempt {} of job {id}", upload.attempt));
    }
    let m = upload.manifest;
    if let Err(message) = check_manifest(&m) {
        return error_response(StatusCode::BAD_REQUEST, message);
    }
    let mut size = 0i64;
    for f in &m.files {
        let digest = match parse_digest(&format!("sha256:{}", f.sha256)) {
            Ok(d) => d,
            Err(r) => return r,
        };
        match state.blobs().stat(&digest).await {
            Ok(Some(meta)) => size += i64::try_from(meta.size).unwrap_or(i64::MAX),
            Ok(None) => {
                return error_response(StatusCode::BAD_REQUEST, format!("{}: blob {digest} was not uploaded", f.path));
            }
            Err(e) => return internal(e),
        }
    }
    let record = ArtifactRecord {
        run: job.run,
        name: m.name.clone(),
        job: job.id,
        attempt: job.attempt,
        manifest: serde_json::to_string(&m).unwrap_or_default(),
        files: i64::try_from(m.files.len()).unwrap_or(i64::MAX),
        size,
        created_at: now_ms(),
    };
    match state.db().put_artifact(&record).await {
        Ok(()) => {
            tracing::info!(run_id = %job.run, job_id = %job.id, artifact = %m.name, files = m.files.len(), "Artifact stored.");
            StatusCode::CREATED.into_response()
        }
        Err(e) => internal(e),
    }
}

async fn agent_has_blob(State(state): State<AppState>, headers: HeaderMap, Path((id, digest)): Path<(i64, String)>) -> Response {
    if let Err(r) = running_job(&state, &headers, id).await {
        return r;
    }
    let digest = match parse_digest(&digest) {
        Ok(d) => d,
        Err(r) => return r,
    };
    match state.blobs().stat(&digest).await {
        Ok(Some(meta)) => ([(header::CONTENT_LENGTH, meta.size.to_string())], StatusCode::OK).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => internal(e),
    }
}

async fn agent_put_blob(State(state): State<AppState>, headers: HeaderMap, Path((id, digest)): Path<(i64, String)>, body: Body) -> Response {
    if let Err(r) = running_job(&state, &headers, id).await {
        return r;
    }
    let digest = match parse_digest(&digest) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let blobs = state.blobs().clone();
    let spool_id = uuid::Uuid::new_v4().simple().to_string();
    let mut file = match blobs.spool().create(&spool_id).await {
        Ok(f) => f,
        Err(e) => return internal(e),
    };
    // Appending is not cancel safe: run it in a task of its own.
    let spooled = tokio::spawn(async move {
        match file.append(body.into_data_stream(), None).await {
            Ok(_) => file.finish().await,
            Err(e) => {
                file.discard().await;
                Err(e)
            }
        }
    })
    .await;
    let spooled = match spooled {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return error_response(StatusCode::BAD_REQUEST, format!("receiving blob {digest}: {e}")),
        Err(e) => return internal(e),
    };
    match blobs.commit(spooled, &digest).await {
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(e @ store::blob::BlobError::DigestMismatch { .. }) => error_response(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => internal(e),
    }
}

async fn agent_get_blob(State(state): State<AppState>, headers: HeaderMap, Path((id, digest)): Path<(i64, String)>) -> Response {
    if let Err(r) = running_job(&state, &headers, id).await {
        return r;
    }
    let digest = match parse_digest(&digest) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let size = match state.blobs().stat(&digest).await {
        Ok(Some(meta)) => meta.size,
        Ok(None) => return error_response(StatusCode::NOT_FOUND, format!("blob {digest} not found")),
        Err(e) => return internal(e),
    };
    match state.blobs().open(&digest, None).await {
        Ok(stream) => ([(header::CONTENT_LENGTH, size.to_string())], Body::from_stream(stream)).into_response(),
        Err(e) => internal(e),
    }
}

fn dto(state: &AppState, a: ArtifactRecord) -> protocol::Artifact {
    let name: String = url::form_urlencoded::byte_serialize(a.name.as_bytes()).collect();
    protocol::Artifact {
        url: format!("{}/api/v1/runs/{}/artifacts/{name}", state.external_url(), a.run.0),
        name: a.name,
        job_id: a.job.0,
        attempt: a.attempt,
        files: a.files,
        size: a.size,
        created_at: a.created_at,
    }
}

async fn list(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Read) {
        return r;
    }
    match state.db().run(RunId(id)).await {
        Ok(Some(_)) => {}
        Ok(None) => return error_response(StatusCode::NOT_FOUND, format!("no run {id}")),
        Err(e) => return internal(e),
    }
    match state.db().artifacts(RunId(id), None).await {
        Ok(list) => Json(list.into_iter().map(|a| dto(&state, a)).collect::<Vec<_>>()).into_response(),
        Err(e) => internal(e),
    }
}

async fn download(State(state): State<AppState>, headers: HeaderMap, Path((id, name)): Path<(i64, String)>) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Read) {
        return r;
    }
    let record = match state.db().artifacts(RunId(id), Some(&name)).await {
        Ok(mut list) if !list.is_empty() => list.remove(0),
        Ok(_) => return error_response(StatusCode::NOT_FOUND, format!("run {id} has no artifact `{name}`")),
        Err(e) => return internal(e),
    };
    let manifest: ArtifactManifest = match serde_json::from_str(&record.manifest) {
        Ok(m) => m,
        Err(e) => return internal(format!("artifact `{name}` of run {id} has an unreadable manifest: {e}")),
    };
    let blobs = state.blobs().clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::spawn(async move {
        if let Err(e) = write_tar(&blobs, &manifest, &tx).await {
            tracing::error!(artifact = %manifest.name, error = %e, "Streaming an artifact failed.");
            let _ = tx.send(Err(e)).await;
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }));
    let disposition = format!("attachment; filename=\"{}.tar\"", name.replace('"', ""));
    ([(header::CONTENT_TYPE, "application/x-tar".to_owned()), (header::CONTENT_DISPOSITION, disposition)], body).into_response()
}

type Tx = tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>;

async fn send(tx: &Tx, bytes: Vec<u8>) -> Result<(), std::io::Error> {
    tx.send(Ok(Bytes::from(bytes))).await.map_err(|_| std::io::Error::other("the client went away"))
}

/// One tar header block (GNU long-name entry first when the path does not fit).
fn headers_for(path: &str, size: u64, mode: u32) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::with_capacity(1024);
    let bytes = path.as_bytes();
    let mut h = tar::Header::new_gnu();
    if bytes.len() > 100 {
        let mut long = tar::Header::new_gnu();
        long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        long.set_entry_type(tar::EntryType::GNULongName);
        long.set_size(bytes.len() as u64 + 1);
        long.set_mode(0o644);
        long.set_mtime(0);
        long.set_cksum();
        out.extend_from_slice(long.as_bytes());
        out.extend_from_slice(bytes);
        out.push(0);
        out.resize(out.len().div_ceil(512) * 512, 0);
        h.as_old_mut().name.copy_from_slice(&bytes[..100]);
    } else {
        h.set_path(path)?;
    }
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(if mode == 0 { 0o644 } else { mode & 0o7777 });
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    Ok(out)
}

async fn write_tar(blobs: &std::sync::Arc<dyn BlobStore>, manifest: &ArtifactManifest, tx: &Tx) -> Result<(), std::io::Error> {
    for f in &manifest.files {
        let digest = Digest::parse(&format!("sha256:{}", f.sha256)).map_err(std::io::Error::other)?;
        let size = blobs.stat(&digest).await.map_err(std::io::Error::other)?.map(|m| m.size).ok_or_else(|| {
            std::io::Error::other(format!("blob {digest} of {} is missing", f.path))
        })?;
        send(tx, headers_for(&f.path, size, f.mode)?).await?;
        let mut stream = blobs.open(&digest, None).await.map_err(std::io::Error::other)?;
        let mut sent = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            sent += chunk.len() as u64;
            tx.send(Ok(chunk)).await.map_err(|_| std::io::Error::other("the client went away"))?;
        }
        if sent != size {
            return Err(std::io::Error::other(format!("blob {digest} changed size while read")));
        }
        let pad = (512 - (size % 512) as usize) % 512;
        if pad > 0 {
            send(tx, vec![0; pad]).await?;
        }
    }
    send(tx, vec![0; 1024]).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ArtifactFile;

    fn manifest(name: &str, path: &str, sha: &str) -> ArtifactManifest {
        ArtifactManifest { name: name.into(), files: vec![ArtifactFile { path: path.into(), sha256: sha.into(), size: 1, mode: 0o644 }] }
    }

    #[test]
    fn manifests_are_checked_field_by_field() {
        let sha = "a".repeat(64);
        assert!(check_manifest(&manifest("dist", "bin/app", &sha)).is_ok());
        let err = |m| check_manifest(&m).expect_err("invalid");
        assert!(err(manifest("a/b", "x", &sha)).starts_with("manifest.name"));
        assert!(err(manifest("d", "../x", &sha)).starts_with("manifest.files[0].path"));
        assert!(err(manifest("d", "/etc/passwd", &sha)).starts_with("manifest.files[0].path"));
        assert!(err(manifest("d", "x", "zz")).starts_with("manifest.files[0].sha256"));
    }

    #[test]
    fn long_paths_get_a_gnu_long_name_entry() {
        let long = "d/".repeat(80) + "file";
        let bytes = headers_for(&long, 3, 0o755).expect("headers");
        let mut data = bytes.clone();
        data.extend_from_slice(b"abc");
        data.resize(data.len().div_ceil(512) * 512, 0);
        data.extend_from_slice(&[0; 1024]);
        let mut archive = tar::Archive::new(&data[..]);
        let mut entries = archive.entries().expect("entries");
        let mut e = entries.next().expect("one").expect("entry");
        assert_eq!(e.path().expect("path").to_string_lossy(), long);
        assert_eq!(e.header().mode().expect("mode"), 0o755);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut e, &mut s).expect("read");
        assert_eq!(s, "abc");
    }
}
