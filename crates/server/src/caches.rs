//! `actions/cache` through the server, so that a job on one agent restores what a job on
//! another saved, with GitHub's rules.
//!
//! An entry is keyed by (repository, scope, key, version): the scope is the git ref of the
//! run that saved it; the version a digest of the cached paths (computed by the runner).
//! The archive is a content-addressed blob in the server's blob store (files under
//! `{data}/blobs`, or S3), the metadata a row of the store (`store::sql::CacheEntry`).
//!
//! Restore looks in the job's own ref, then (a pull request) its base branch, then the
//! repository's default branch — so a pull request reads its base's caches but never
//! another pull request's. In each scope the primary key matches exactly first, then every
//! key (primary, then restore-keys) as a prefix, newest entry first.
//!
//! Save is reserve → upload → commit: the reservation makes the first writer of a
//! (scope, key, version) win (a second gets 409 and saves nothing); the agent then uploads
//! the archive as a blob (`PUT .../blobs/{digest}`, verified against its digest) and commits
//! the reservation with the digest; an entry is visible only once committed, and never
//! changes after. A reservation whose job died is taken over after [`STALE_RESERVATION`].
//! After each commit the repository's entries beyond `[server] cache_size_limit` (default
//! 10 GiB) are evicted, least recently used first (a restore marks an entry used), and so are
//! entries unused for [`UNUSED_FOR`] and reservations never committed.
//!
//! Agent routes (the agent must hold the job, as for artifacts):
//! `POST /api/v1/agent/jobs/{id}/caches/lookup` (`{keys, version}` → the entry, or 204),
//! `POST /api/v1/agent/jobs/{id}/caches` (`{key, version}` → `{id}` 201, or 409),
//! `POST /api/v1/agent/jobs/{id}/caches/{cache}/commit` (`{digest, size}`); the archive
//! itself moves through `GET/HEAD/PUT /api/v1/agent/jobs/{id}/blobs/{digest}`.
//! API routes: `GET /api/v1/repositories/{owner}/{name}/caches` (any role; `?key=&ref=`
//! filter), `GET .../caches/{id}/archive` (the tar), `DELETE .../caches?key=K[&ref=R]` and
//! `DELETE .../caches/{id}` (admins).
// The error of these helpers is the handler's reply (an axum `Response`).
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use protocol::{Cache, CacheCommit, CacheFound, CacheLookup, CacheReserve, CacheReserved, CachesDeleted};
use serde::Deserialize;
use store::blob::Digest;
use store::sql::{CacheEntry, CacheReservation, Job, RepoId, Run};

use crate::api::{Need, authorize};
use crate::artifacts::running_job;
use crate::{AppState, error_response, internal, now_ms};

/// A reservation older than this, never committed, may be taken over by another job.
pub(crate) const STALE_RESERVATION: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// An entry not used (restored or saved) for this long is removed (as GitHub's 7 days).
pub(crate) const UNUSED_FOR: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Most keys in one lookup (the primary key and restore-keys, as actions/cache).
const MAX_KEYS: usize = 10;
/// Longest key (as actions/cache).
const MAX_KEY_LEN: usize = 512;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/agent/jobs/{id}/caches/lookup", post(agent_lookup))
        .route("/api/v1/agent/jobs/{id}/caches", post(agent_reserve))
        .route("/api/v1/agent/jobs/{id}/caches/{cache}/commit", post(agent_commit))
        .route("/api/v1/repositories/{owner}/{name}/caches", get(list).delete(delete_by_key))
        .route("/api/v1/repositories/{owner}/{name}/caches/{id}", axum::routing::delete(delete_one))
        .route("/api/v1/repositories/{owner}/{name}/caches/{id}/archive", get(download))
}

fn check_key(field: &str, key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err(format!("{field}: a key is not empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!("{field}: longer than {MAX_KEY_LEN} bytes"));
    }
    if key.contains(',') {
        return Err(format!("{field}: keys cannot contain commas"));
    }
    Ok(())
}

fn check_version(version: &str) -> Result<(), String> {
    if version.is_empty() || version.len() > 128 || !version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(format!("version: `{version}` is not 1 to 128 letters, digits, - or _"));
    }
    Ok(())
}

fn bad_request(message: String) -> Response {
    error_response(StatusCode::BAD_REQUEST, message)
}

/// The job that agent request `id` is made for (running on the calling agent) and the
/// request's JSON body.
async fn job_and_body<T: serde::de::DeserializeOwned>(state: &AppState, headers: &HeaderMap, id: i64, body: &Bytes) -> Result<(Job, T), Response> {
    let (_, job) = running_job(state, headers, id).await?;
    let req = serde_json::from_slice(body).map_err(|e| bad_request(format!("request body: {e}")))?;
    Ok((job, req))
}

/// The job's run.
async fn run_of(state: &AppState, job: &Job) -> Result<Run, Response> {
    match state.db().run(job.run).await {
        Ok(Some(run)) => Ok(run),
        Ok(None) => Err(internal(format!("job {} has no run {}", job.id, job.run))),
        Err(e) => Err(internal(e)),
    }
}

/// Where a run's jobs restore from, in order: its own ref, its base branch (a pull
/// request), the repository's default branch (from the event; `main` when it names none).
pub(crate) fn scopes(run: &Run) -> Vec<String> {
    let spec: serde_json::Value = serde_json::from_str(&run.spec).unwrap_or_default();
    let event = &spec["event"];
    let text = |p: &str| event.pointer(p).and_then(serde_json::Value::as_str).filter(|s| !s.is_empty());
    let branch = |b: &str| if b.starts_with("refs/") { b.to_owned() } else { format!("refs/heads/{b}") };
    let mut out = vec![run.git_ref.clone()];
    let base = text("/pull_request/base/ref").or_else(|| text("/object_attributes/target_branch"));
    if (run.event.starts_with("pull_request") || run.event == "merge_request")
        && let Some(base) = base
    {
        out.push(branch(base));
    }
    let default = text("/repository/default_branch").or_else(|| text("/project/default_branch")).unwrap_or("main");
    out.push(branch(default));
    let mut seen = std::collections::HashSet::new();
    out.retain(|s| seen.insert(s.clone()));
    out
}

async fn agent_lookup(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<i64>, body: Bytes) -> Response {
    let (job, req): (Job, CacheLookup) = match job_and_body(&state, &headers, id, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if req.keys.is_empty() || req.keys.len() > MAX_KEYS {
        return bad_request(format!("keys: 1 to {MAX_KEYS} keys, not {}", req.keys.len()));
    }
    for (i, k) in req.keys.iter().enumerate() {
        if let Err(m) = check_key(&format!("keys[{i}]"), k) {
            return bad_request(m);
        }
    }
    if let Err(m) = check_version(&req.version) {
        return bad_request(m);
    }
    let run = match run_of(&state, &job).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match state.db().find_cache(run.repository, &scopes(&run), &req.keys, &req.version).await {
        Ok(Some(entry)) => {
            if let Err(error) = state.db().touch_cache(entry.id, now_ms()).await {
                tracing::warn!(cache_id = entry.id, %error, "Marking a cache entry used failed.");
            }
            Json(CacheFound {
                id: entry.id,
                key: entry.key,
                version: entry.version,
                digest: entry.digest.unwrap_or_default(),
                size: entry.size,
            })
            .into_response()
        }
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => internal(e),
    }
}

async fn agent_reserve(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<i64>, body: Bytes) -> Response {
    let (job, req): (Job, CacheReserve) = match job_and_body(&state, &headers, id, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(m) = check_key("key", &req.key).and_then(|()| check_version(&req.version)) {
        return bad_request(m);
    }
    let run = match run_of(&state, &job).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let now = now_ms();
    let stale_before = now - i64::try_from(STALE_RESERVATION.as_millis()).unwrap_or(i64::MAX);
    let reservation = CacheReservation {
        repository: run.repository,
        scope: &run.git_ref,
        key: &req.key,
        version: &req.version,
        job: job.id.0,
    };
    match state.db().reserve_cache(&reservation, now, stale_before).await {
        Ok(Some(cache)) => (StatusCode::CREATED, Json(CacheReserved { id: cache })).into_response(),
        Ok(None) => error_response(
            StatusCode::CONFLICT,
            format!("cache entry `{}` exists for {} or another job is saving it", req.key, run.git_ref),
        ),
        Err(e) => internal(e),
    }
}

async fn agent_commit(State(state): State<AppState>, headers: HeaderMap, Path((id, cache)): Path<(i64, i64)>, body: Bytes) -> Response {
    let (job, req): (Job, CacheCommit) = match job_and_body(&state, &headers, id, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let digest = match Digest::parse(&req.digest) {
        Ok(d) => d,
        Err(e) => return bad_request(format!("digest: `{}`: {e}", req.digest)),
    };
    let reservation = match state.db().cache_reservation(cache, job.id.0).await {
        Ok(Some(r)) => r,
        Ok(None) => return error_response(StatusCode::CONFLICT, format!("job {id} holds no reservation {cache}")),
        Err(e) => return internal(e),
    };
    match state.blobs().stat(&digest).await {
        Ok(Some(meta)) if i64::try_from(meta.size).ok() == Some(req.size) => {}
        Ok(Some(meta)) => return bad_request(format!("size: {} but blob {digest} has {} bytes", req.size, meta.size)),
        Ok(None) => return bad_request(format!("digest: blob {digest} was not uploaded")),
        Err(e) => return internal(e),
    }
    let limit = i64::try_from(state.config().server.cache_size_limit).unwrap_or(i64::MAX);
    if req.size > limit {
        let refused = match state.db().delete_caches(reservation.repository, &[cache]).await {
            Ok(r) => r,
            Err(e) => return internal(e),
        };
        // The uploaded archive goes too, unless something else uses it.
        let refused: Vec<CacheEntry> = refused.into_iter().map(|e| CacheEntry { digest: Some(digest.to_string()), ..e }).collect();
        remove_blobs(&state, &refused).await;
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("size: {} bytes is over the repository's cache size limit of {limit} bytes", req.size),
        );
    }
    match state.db().commit_cache(cache, job.id.0, &digest.to_string(), req.size, now_ms()).await {
        Ok(true) => {}
        Ok(false) => return error_response(StatusCode::CONFLICT, format!("job {id} no longer holds reservation {cache}")),
        Err(e) => return internal(e),
    }
    tracing::info!(job_id = %job.id, cache_id = cache, key = %reservation.key, scope = %reservation.scope, size = req.size, "Cache entry saved.");
    match state.db().evict_caches(reservation.repository, limit).await {
        Ok(evicted) => remove_blobs(&state, &evicted).await,
        Err(error) => tracing::warn!(%error, "Evicting cache entries failed."),
    }
    let now = now_ms();
    let unused_before = now - i64::try_from(UNUSED_FOR.as_millis()).unwrap_or(i64::MAX);
    let stale_before = now - i64::try_from(STALE_RESERVATION.as_millis()).unwrap_or(i64::MAX);
    match state.db().expire_caches(reservation.repository, unused_before, stale_before).await {
        Ok(expired) => remove_blobs(&state, &expired).await,
        Err(error) => tracing::warn!(%error, "Expiring cache entries failed."),
    }
    StatusCode::CREATED.into_response()
}

/// Removes the archives of deleted entries that nothing else refers to.
async fn remove_blobs(state: &AppState, deleted: &[CacheEntry]) {
    for e in deleted {
        tracing::info!(cache_id = e.id, key = %e.key, scope = %e.scope, "Cache entry removed.");
        let Some(digest) = e.digest.as_deref() else { continue };
        match state.db().cache_blob_in_use(digest).await {
            Ok(false) => {}
            Ok(true) => continue,
            Err(error) => {
                tracing::warn!(%error, "Checking a cache archive's users failed; keeping it.");
                continue;
            }
        }
        let Ok(d) = Digest::parse(digest) else { continue };
        if let Err(error) = state.blobs().delete(&d).await {
            tracing::warn!(%digest, %error, "Removing a cache archive failed.");
        }
    }
}

#[derive(Debug, Deserialize)]
struct Filter {
    key: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
}

async fn repository(state: &AppState, owner: &str, name: &str) -> Result<RepoId, Response> {
    let full = format!("{owner}/{name}");
    match state.db().repository_by_name(&full).await {
        Ok(Some(r)) => Ok(r.id),
        Ok(None) => Err(error_response(StatusCode::NOT_FOUND, format!("no repository {full}"))),
        Err(e) => Err(internal(e)),
    }
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((owner, name)): Path<(String, String)>,
    Query(filter): Query<Filter>,
) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Read) {
        return r;
    }
    let repo = match repository(&state, &owner, &name).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match state.db().caches(repo, filter.key.as_deref(), filter.git_ref.as_deref()).await {
        Ok(entries) => {
            let base = format!("{}/api/v1/repositories/{owner}/{name}/caches", state.external_url());
            let out: Vec<Cache> = entries
                .into_iter()
                .map(|e| Cache {
                    archive_url: format!("{base}/{}/archive", e.id),
                    id: e.id,
                    key: e.key,
                    version: e.version,
                    git_ref: e.scope,
                    size: e.size,
                    created_at: e.created_at.unwrap_or(e.reserved_at),
                    last_used_at: e.last_used_at,
                })
                .collect();
            Json(out).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn delete_by_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((owner, name)): Path<(String, String)>,
    Query(filter): Query<Filter>,
) -> Response {
    let actor = match authorize(&state, &headers, Need::Admin) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(key) = filter.key.as_deref().filter(|k| !k.is_empty()) else {
        return bad_request("key: required (the query parameter `key`)".to_owned());
    };
    let repo = match repository(&state, &owner, &name).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let ids: Vec<i64> = match state.db().caches(repo, Some(key), filter.git_ref.as_deref()).await {
        Ok(entries) => entries.iter().map(|e| e.id).collect(),
        Err(e) => return internal(e),
    };
    delete_ids(&state, repo, &ids, &actor).await
}

async fn delete_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((owner, name, id)): Path<(String, String, i64)>,
) -> Response {
    let actor = match authorize(&state, &headers, Need::Admin) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let repo = match repository(&state, &owner, &name).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match state.db().delete_caches(repo, &[id]).await {
        Ok(deleted) if deleted.is_empty() => error_response(StatusCode::NOT_FOUND, format!("{owner}/{name} has no cache entry {id}")),
        Ok(deleted) => {
            tracing::info!(%actor, repository = %format!("{owner}/{name}"), "Cache entry deleted.");
            remove_blobs(&state, &deleted).await;
            Json(CachesDeleted { deleted: deleted.len() }).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn delete_ids(state: &AppState, repo: RepoId, ids: &[i64], actor: &str) -> Response {
    match state.db().delete_caches(repo, ids).await {
        Ok(deleted) => {
            tracing::info!(%actor, entries = deleted.len(), "Cache entries deleted.");
            remove_blobs(state, &deleted).await;
            Json(CachesDeleted { deleted: deleted.len() }).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((owner, name, id)): Path<(String, String, i64)>,
) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Read) {
        return r;
    }
    let repo = match repository(&state, &owner, &name).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let entry = match state.db().caches(repo, None, None).await {
        Ok(entries) => entries.into_iter().find(|e| e.id == id),
        Err(e) => return internal(e),
    };
    let Some(digest) = entry.and_then(|e| e.digest) else {
        return error_response(StatusCode::NOT_FOUND, format!("{owner}/{name} has no cache entry {id}"));
    };
    let digest = match Digest::parse(&digest) {
        Ok(d) => d,
        Err(e) => return internal(format!("cache entry {id} has an invalid digest: {e}")),
    };
    let size = match state.blobs().stat(&digest).await {
        Ok(Some(m)) => m.size,
        Ok(None) => return error_response(StatusCode::NOT_FOUND, format!("the archive of cache entry {id} is gone")),
        Err(e) => return internal(e),
    };
    match state.blobs().open(&digest, None).await {
        Ok(stream) => (
            [(header::CONTENT_TYPE, "application/x-tar".to_owned()), (header::CONTENT_LENGTH, size.to_string())],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

/// The API routes' part of the OpenAPI document: `(schemas, paths)` (merged by `openapi`).
pub(crate) fn openapi() -> (serde_json::Value, serde_json::Value) {
    use serde_json::json;
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
    let errors = |mut ok: serde_json::Value| {
        if let Some(map) = ok.as_object_mut() {
            map.insert("401".into(), json!({"description": "missing or unknown token", "content": error}));
            map.insert("404".into(), json!({"description": "no such repository or cache entry (named in the error)", "content": error}));
        }
        ok
    };
    let repo = json!([
        {"name": "owner", "in": "path", "required": true, "schema": {"type": "string"}},
        {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}
    ]);
    let mut with_id = repo.as_array().cloned().unwrap_or_default();
    with_id.push(json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}));
    let key = |required: bool| json!({"name": "key", "in": "query", "required": required, "schema": {"type": "string"}, "description": "exactly this key"});
    let git_ref = json!({"name": "ref", "in": "query", "required": false, "schema": {"type": "string"}, "description": "only entries saved by runs of this ref (refs/heads/main, refs/pull/7/head)"});
    let deleted = json!({"application/json": {"schema": {"$ref": "#/components/schemas/CachesDeleted"}}});
    let schemas = json!({
        "Cache": {"type": "object", "properties": {
            "id": {"type": "integer"}, "key": {"type": "string"},
            "version": {"type": "string", "description": "a digest of the cached paths"},
            "ref": {"type": "string", "description": "the git ref of the run that saved it (its scope)"},
            "size": {"type": "integer"}, "created_at": {"type": "integer"}, "last_used_at": {"type": "integer"},
            "archive_url": {"type": "string"}
        }},
        "CachesDeleted": {"type": "object", "properties": {"deleted": {"type": "integer"}}}
    });
    let paths = json!({
        "/api/v1/repositories/{owner}/{name}/caches": {
            "parameters": repo,
            "get": {"summary": "The repository's actions/cache entries, most recently used first",
                "parameters": [key(false), git_ref],
                "responses": errors(json!({"200": {"description": "entries", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Cache"}}}}}}))},
            "delete": {"summary": "Delete the entries of a key (admin), in every ref unless `ref` is given",
                "parameters": [key(true), git_ref],
                "responses": errors(json!({"200": {"description": "deleted", "content": deleted}, "400": {"description": "no key"}, "403": {"description": "not an admin"}}))}
        },
        "/api/v1/repositories/{owner}/{name}/caches/{id}": {
            "parameters": with_id,
            "delete": {"summary": "Delete one entry (admin)",
                "responses": errors(json!({"200": {"description": "deleted", "content": deleted}, "403": {"description": "not an admin"}}))}
        },
        "/api/v1/repositories/{owner}/{name}/caches/{id}/archive": {
            "parameters": with_id,
            "get": {"summary": "Download an entry: the archive actions/cache saved (an uncompressed tar; `w/` holds workspace paths, `a/` absolute ones)",
                "responses": errors(json!({"200": {"description": "the archive", "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}))}
        }
    });
    (schemas, paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::sql::{RunId, RunStatus};

    fn run(event: &str, git_ref: &str, payload: serde_json::Value) -> Run {
        Run {
            id: RunId(1),
            repository: RepoId(1),
            repository_name: "team/app".into(),
            workflow_file: "ci.yml".into(),
            workflow_name: "ci".into(),
            event: event.into(),
            git_ref: git_ref.into(),
            sha: "abc".into(),
            actor: "alice".into(),
            status: RunStatus::Running,
            conclusion: None,
            reason: None,
            spec: serde_json::json!({"event": payload}).to_string(),
            concurrency_group: None,
            cancel_requested: false,
            created_at: 0,
            started_at: None,
            finished_at: None,
        }
    }

    fn check(r: Run, expect: &[&str]) {
        assert_eq!(scopes(&r), expect);
    }

    #[test]
    fn a_run_reads_its_ref_then_its_base_then_the_default_branch() {
        let repo = serde_json::json!({"default_branch": "trunk"});
        check(run("push", "refs/heads/main", serde_json::json!({})), &["refs/heads/main"]);
        check(run("push", "refs/heads/feat", serde_json::json!({"repository": repo})), &["refs/heads/feat", "refs/heads/trunk"]);
        check(run("push", "refs/heads/trunk", serde_json::json!({"repository": repo})), &["refs/heads/trunk"]);
        check(
            run("pull_request", "refs/pull/7/head", serde_json::json!({"pull_request": {"base": {"ref": "release"}}, "repository": repo})),
            &["refs/pull/7/head", "refs/heads/release", "refs/heads/trunk"],
        );
        check(
            run("pull_request", "refs/merge-requests/3/head", serde_json::json!({"object_attributes": {"target_branch": "main"}})),
            &["refs/merge-requests/3/head", "refs/heads/main"],
        );
        check(run("push", "refs/tags/v1", serde_json::json!({})), &["refs/tags/v1", "refs/heads/main"]);
    }
}
