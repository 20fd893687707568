//! Request handlers: one function per route and method, dispatched from [`dispatch`].

use std::{collections::HashMap, sync::atomic::Ordering, sync::Arc, time::Instant};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, request::Parts, HeaderMap, HeaderName, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use store::blob::{BlobError, Digest, Spooled};

use crate::{
    auth::{Action, Identity},
    error::{bad_request, not_found, Code, Error},
    manifest::{self, Descriptor, Manifest},
    path::{self, parse_digest, parse_reference, validate_name, Reference, Route},
    Registry, Session,
};

const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

type Result<T, E = Error> = std::result::Result<T, E>;

fn tag_key(name: &str, tag: &str) -> String {
    format!("repositories/{name}/_manifests/tags/{tag}")
}
fn tags_prefix(name: &str) -> String {
    format!("repositories/{name}/_manifests/tags/")
}
fn revision_key(name: &str, d: &Digest) -> String {
    format!("repositories/{name}/_manifests/revisions/sha256/{}", d.hex())
}
fn layer_key(name: &str, d: &Digest) -> String {
    format!("repositories/{name}/_layers/sha256/{}", d.hex())
}
fn referrers_prefix(name: &str, subject: &Digest) -> String {
    format!("repositories/{name}/_referrers/sha256/{}/", subject.hex())
}
fn referrer_key(name: &str, subject: &Digest, d: &Digest) -> String {
    format!("{}{}", referrers_prefix(name, subject), d.hex())
}

/// What the record of a manifest revision holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Revision {
    media_type: String,
    size: u64,
}

fn response(status: StatusCode) -> axum::http::response::Builder {
    Response::builder().status(status).header(API_VERSION, "registry/2.0")
}

fn finish(builder: axum::http::response::Builder, body: Body) -> Response {
    builder.body(body).unwrap_or_else(|e| {
        tracing::error!(error = %e, "Building a response failed.");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    })
}

fn host(headers: &HeaderMap) -> String {
    headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned()
}

fn query(parts: &Parts) -> HashMap<String, String> {
    form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()).into_owned().collect()
}

/// `GET /v2/`.
pub async fn dispatch_base(State(registry): State<Registry>, request: Request) -> Response {
    let headers = request.headers();
    let host = host(headers);
    let auth = &registry.inner.auth;
    let result = auth.identify(headers, &host).and_then(|identity| auth.check_base(&identity, &host));
    match result {
        Ok(()) => finish(response(StatusCode::OK).header(header::CONTENT_TYPE, "application/json"), Body::from("{}")),
        Err(e) => with_api_version(e.into_response()),
    }
}

fn with_api_version(mut response: Response) -> Response {
    response.headers_mut().insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    response
}

/// `GET /v2/token`: the token endpoint of the bearer flow.
pub async fn token(State(registry): State<Registry>, request: Request) -> Response {
    let auth = &registry.inner.auth;
    let user = match auth.identify_for_token(request.headers()) {
        Ok(user) => user,
        Err(e) => return e.into_response(),
    };
    let scopes: Vec<String> =
        form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes()).filter(|(k, _)| k == "scope").map(|(_, v)| v.into_owned()).collect();
    let (token, ttl) = auth.issue(user, &scopes);
    let body = serde_json::json!({ "token": token, "access_token": token, "expires_in": ttl });
    finish(response(StatusCode::OK).header(header::CONTENT_TYPE, "application/json"), Body::from(body.to_string()))
}

/// Everything else under `/v2/`.
pub async fn dispatch(State(registry): State<Registry>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match handle(&registry, &parts, body).await {
        Ok(response) => response,
        Err(e) => with_api_version(e.into_response()),
    }
}

async fn handle(registry: &Registry, parts: &Parts, body: Body) -> Result<Response> {
    let rest = parts.uri.path().strip_prefix("/v2/").unwrap_or_default();
    let route = path::parse(rest)?;
    let host = host(&parts.headers);
    let auth = &registry.inner.auth;
    let identity = auth.identify(&parts.headers, &host)?;
    let check = |name: &str, action: Action| auth.check(&identity, name, action, &host);
    let method = &parts.method;
    let r = registry;
    match route {
        Route::Base => {
            auth.check_base(&identity, &host)?;
            Ok(finish(response(StatusCode::OK).header(header::CONTENT_TYPE, "application/json"), Body::from("{}")))
        }
        Route::Catalog if method == Method::GET => catalog(r, &identity, &host, parts).await,
        Route::Tags { name } if method == Method::GET => {
            check(&name, Action::Pull)?;
            tags(r, &name, parts).await
        }
        Route::Manifest { name, reference } => match *method {
            Method::GET | Method::HEAD => {
                check(&name, Action::Pull)?;
                get_manifest(r, &name, &reference, parts, method == Method::HEAD).await
            }
            Method::PUT => {
                check(&name, Action::Push)?;
                put_manifest(r, &name, &reference, parts, body).await
            }
            Method::DELETE => {
                check(&name, Action::Push)?;
                delete_manifest(r, &name, &reference).await
            }
            _ => Err(method_not_allowed()),
        },
        Route::Blob { name, digest } => match *method {
            Method::GET | Method::HEAD => {
                check(&name, Action::Pull)?;
                get_blob(r, &name, &digest, parts, method == Method::HEAD).await
            }
            Method::DELETE => {
                check(&name, Action::Push)?;
                delete_blob(r, &name, &digest).await
            }
            _ => Err(method_not_allowed()),
        },
        Route::UploadStart { name } if method == Method::POST => {
            check(&name, Action::Push)?;
            start_upload(r, &name, &identity, parts, body).await
        }
        Route::Upload { name, id } => {
            check(&name, Action::Push)?;
            match *method {
                Method::GET => upload_status(r, &name, &id).await,
                Method::PATCH => patch_upload(r, &name, &id, parts, body).await,
                Method::PUT => put_upload(r, &name, &id, parts, body).await,
                Method::DELETE => cancel_upload(r, &name, &id).await,
                _ => Err(method_not_allowed()),
            }
        }
        Route::Referrers { name, digest } if method == Method::GET => {
            check(&name, Action::Pull)?;
            referrers(r, &name, &digest, parts).await
        }
        _ => Err(method_not_allowed()),
    }
}

fn method_not_allowed() -> Error {
    Error::api(StatusCode::METHOD_NOT_ALLOWED, Code::Unsupported, "method not allowed on this route")
}

// ---------------------------------------------------------------- blobs

/// Is `digest` linked into repository `name` and stored?
async fn linked_blob(r: &Registry, name: &str, digest: &Digest) -> Result<Option<store::blob::BlobMeta>> {
    let i = &r.inner;
    if !i.meta.exists(&layer_key(name, digest)).await.map_err(Error::storage("reading blob link"))? {
        return Ok(None);
    }
    i.blobs.stat(digest).await.map_err(Error::storage("reading blob"))
}

async fn link_blob(r: &Registry, name: &str, digest: &Digest) -> Result<()> {
    r.inner.meta.put(&layer_key(name, digest), Bytes::new()).await.map_err(Error::storage("linking blob"))
}

/// Parse a single `Range: bytes=…` against a blob of `size` bytes.
fn parse_range(value: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return None;
        }
        return Some(size.saturating_sub(n)..size);
    }
    let start: u64 = a.parse().ok()?;
    let end = if b.is_empty() { size.checked_sub(1)? } else { b.parse::<u64>().ok()?.min(size.checked_sub(1)?) };
    (start <= end && start < size).then_some(start..end + 1)
}

async fn get_blob(r: &Registry, name: &str, digest: &str, parts: &Parts, head: bool) -> Result<Response> {
    let digest = parse_digest(digest)?;
    let Some(meta) = linked_blob(r, name, &digest).await? else {
        return Err(not_found(Code::BlobUnknown, format!("blob {digest} is not in {name}")));
    };
    let range = match parts.headers.get(header::RANGE) {
        Some(value) => match value.to_str().ok().and_then(|v| parse_range(v, meta.size)) {
            Some(range) => Some(range),
            None => {
                return Err(Error::api(StatusCode::RANGE_NOT_SATISFIABLE, Code::BlobUnknown, "invalid or unsatisfiable range")
                    .with_header(header::CONTENT_RANGE, &format!("bytes */{}", meta.size)));
            }
        },
        None => None,
    };
    let mut builder = response(if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{digest}\""));
    let length = match &range {
        Some(range) => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {}-{}/{}", range.start, range.end - 1, meta.size));
            range.end - range.start
        }
        None => meta.size,
    };
    builder = builder.header(header::CONTENT_LENGTH, length);
    if head {
        return Ok(finish(builder, Body::empty()));
    }
    let stream = r.inner.blobs.open(&digest, range).await.map_err(|e| match e {
        BlobError::NotFound { .. } => not_found(Code::BlobUnknown, format!("blob {digest} is not stored")),
        other => Error::Storage { context: format!("reading blob {digest}"), source: Box::new(other) },
    })?;
    let registry = r.clone();
    let counted = stream.inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            registry.inner.metrics.bytes_out.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    });
    Ok(finish(builder, Body::from_stream(counted)))
}

async fn delete_blob(r: &Registry, name: &str, digest: &str) -> Result<Response> {
    let digest = parse_digest(digest)?;
    let key = layer_key(name, &digest);
    if !r.inner.meta.exists(&key).await.map_err(Error::storage("reading blob link"))? {
        return Err(not_found(Code::BlobUnknown, format!("blob {digest} is not in {name}")));
    }
    r.inner.meta.delete(&key).await.map_err(Error::storage("unlinking blob"))?;
    Ok(finish(response(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, 0), Body::empty()))
}

// ---------------------------------------------------------------- uploads

fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_accepted(name: &str, id: &str, size: u64, status: StatusCode) -> Response {
    finish(
        response(status)
            .header(header::LOCATION, upload_location(name, id))
            .header(header::RANGE, range_header(size))
            .header(DOCKER_UPLOAD_UUID, id)
            .header(header::CONTENT_LENGTH, 0),
        Body::empty(),
    )
}

fn blob_created(name: &str, digest: &Digest) -> Response {
    finish(
        response(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
            .header(DOCKER_CONTENT_DIGEST, digest.as_str())
            .header(header::CONTENT_LENGTH, 0),
        Body::empty(),
    )
}

/// Commit a spooled upload as `digest` and link it into `name`.
async fn commit(r: &Registry, name: &str, spooled: Spooled, digest: &Digest) -> Result<()> {
    let committed = r.inner.blobs.commit(spooled, digest).await.map_err(|e| match e {
        BlobError::DigestMismatch { expected, actual } => {
            bad_request(Code::DigestInvalid, format!("digest mismatch: expected {expected}, content hashes to {actual}"))
        }
        other => Error::Storage { context: format!("storing blob {digest}"), source: Box::new(other) },
    })?;
    if committed.created {
        let m = &r.inner.metrics;
        m.blobs_committed.fetch_add(1, Ordering::Relaxed);
        m.storage_bytes.fetch_add(i64::try_from(committed.size).unwrap_or(0), Ordering::Relaxed);
    }
    link_blob(r, name, digest).await
}

async fn start_upload(r: &Registry, name: &str, identity: &Identity, parts: &Parts, body: Body) -> Result<Response> {
    let q = query(parts);
    let i = &r.inner;
    if let Some(mount) = q.get("mount") {
        let digest = parse_digest(mount)?;
        if let Some(from) = q.get("from") {
            let may_pull = validate_name(from).is_ok() && i.auth.allowed(identity, from, Action::Pull);
            if may_pull && linked_blob(r, from, &digest).await?.is_some() {
                i.blobs.touch(&digest).await.map_err(Error::storage("touching blob"))?;
                link_blob(r, name, &digest).await?;
                tracing::debug!(repository = name, from = %from, %digest, "Blob mounted.");
                return Ok(blob_created(name, &digest));
            }
        }
        // Not mountable: fall back to a new session, as the spec requires.
    } else if let Some(digest) = q.get("digest") {
        let digest = parse_digest(digest)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut file = i.blobs.spool().create(&id).await.map_err(spool_error("starting upload"))?;
        let limit = i.options.limits.max_blob_bytes;
        let registry = r.clone();
        let spooled = tokio::spawn(async move {
            let appended = file.append(body.into_data_stream(), limit).await;
            if let Ok(n) = &appended {
                registry.inner.metrics.bytes_in.fetch_add(*n, Ordering::Relaxed);
            }
            match appended {
                Ok(_) => file.finish().await,
                Err(e) => {
                    file.discard().await;
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| Error::Spool { context: "receiving blob".into(), source: Box::new(e.into()) })?
        .map_err(spool_error("receiving blob"))?;
        commit(r, name, spooled, &digest).await?;
        return Ok(blob_created(name, &digest));
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    {
        let sessions = i.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= i.options.limits.max_upload_sessions {
            return Err(Error::api(StatusCode::TOO_MANY_REQUESTS, Code::TooManyRequests, "too many upload sessions"));
        }
    }
    let file = i.blobs.spool().create(&id).await.map_err(spool_error("starting upload"))?;
    let session = Arc::new(Session {
        repo: name.to_owned(),
        file: tokio::sync::Mutex::new(Some(file)),
        last_active: std::sync::Mutex::new(Instant::now()),
    });
    i.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), session);
    drop(body);
    Ok(upload_accepted(name, &id, 0, StatusCode::ACCEPTED))
}

fn spool_error(context: &'static str) -> impl FnOnce(store::blob::SpoolError) -> Error {
    move |source| Error::Spool { context: context.to_owned(), source: Box::new(source) }
}

fn session(r: &Registry, name: &str, id: &str) -> Result<Arc<Session>> {
    let unknown = || not_found(Code::BlobUploadUnknown, format!("upload {} is unknown", id.chars().take(64).collect::<String>()));
    if !path::valid_upload_id(id) {
        return Err(unknown());
    }
    let sessions = r.inner.sessions.lock().unwrap_or_else(|p| p.into_inner());
    match sessions.get(id) {
        Some(s) if s.repo == name => {
            *s.last_active.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            Ok(s.clone())
        }
        _ => Err(unknown()),
    }
}

/// `Content-Range: <start>-<end>` (also `bytes <start>-<end>/<total>`, `bytes=…`).
fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let v = value.trim();
    let v = v.strip_prefix("bytes").map_or(v, |r| r.trim_start_matches([' ', '=']));
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

fn content_length(parts: &Parts) -> Option<u64> {
    parts.headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Append a request body to a session's file (in a task, so a disconnecting client
/// cannot leave the file half-updated). Checks `Content-Range` against the offset.
async fn append(r: &Registry, name: &str, id: &str, session: Arc<Session>, parts: &Parts, body: Body) -> Result<u64> {
    let range = match parts.headers.get(header::CONTENT_RANGE) {
        Some(v) => Some(
            v.to_str().ok().and_then(parse_content_range).ok_or_else(|| bad_request(Code::BlobUploadInvalid, "invalid Content-Range"))?,
        ),
        None => None,
    };
    let declared = content_length(parts);
    let limit = r.inner.options.limits.max_blob_bytes;
    let registry = r.clone();
    let (name, id) = (name.to_owned(), id.to_owned());
    tokio::spawn(async move {
        let mut guard = session.file.lock().await;
        let Some(file) = guard.as_mut() else {
            return Err(not_found(Code::BlobUploadUnknown, format!("upload {id} expired")));
        };
        let offset = file.size();
        if let Some((start, end)) = range {
            if start != offset {
                return Err(Error::api(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    Code::BlobUploadInvalid,
                    format!("chunk starts at {start}, but the upload has {offset} bytes"),
                )
                .with_header(header::RANGE, &range_header(offset))
                .with_header(header::LOCATION, &upload_location(&name, &id)));
            }
            if declared.is_some_and(|len| len != end - start + 1) {
                return Err(bad_request(Code::BlobUploadInvalid, "Content-Length does not match Content-Range"));
            }
        }
        let written = file.append(body.into_data_stream(), limit).await;
        if let Ok(n) = &written {
            registry.inner.metrics.bytes_in.fetch_add(*n, Ordering::Relaxed);
        }
        let size = file.size();
        written.map_err(spool_error("receiving chunk"))?;
        Ok(size)
    })
    .await
    .map_err(|e| Error::Spool { context: "receiving chunk".into(), source: Box::new(e.into()) })?
}

async fn patch_upload(r: &Registry, name: &str, id: &str, parts: &Parts, body: Body) -> Result<Response> {
    let s = session(r, name, id)?;
    let size = append(r, name, id, s, parts, body).await?;
    Ok(upload_accepted(name, id, size, StatusCode::ACCEPTED))
}

async fn put_upload(r: &Registry, name: &str, id: &str, parts: &Parts, body: Body) -> Result<Response> {
    let s = session(r, name, id)?;
    let q = query(parts);
    let digest = parse_digest(q.get("digest").map(String::as_str).unwrap_or_default())?;
    let has_body = content_length(parts).is_none_or(|n| n > 0) || parts.headers.contains_key(header::CONTENT_RANGE);
    if has_body {
        append(r, name, id, s.clone(), parts, body).await?;
    }
    let file = {
        let mut guard = s.file.lock().await;
        let file = guard.take();
        r.inner.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        file
    };
    let Some(file) = file else { return Err(not_found(Code::BlobUploadUnknown, format!("upload {id} expired"))) };
    let spooled = file.finish().await.map_err(spool_error("finishing upload"))?;
    commit(r, name, spooled, &digest).await?;
    Ok(blob_created(name, &digest))
}

async fn upload_status(r: &Registry, name: &str, id: &str) -> Result<Response> {
    let s = session(r, name, id)?;
    let size = s.file.lock().await.as_ref().map(|f| f.size());
    let Some(size) = size else { return Err(not_found(Code::BlobUploadUnknown, format!("upload {id} expired"))) };
    Ok(upload_accepted(name, id, size, StatusCode::NO_CONTENT))
}

async fn cancel_upload(r: &Registry, name: &str, id: &str) -> Result<Response> {
    let s = session(r, name, id)?;
    r.inner.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    if let Some(file) = s.file.lock().await.take() {
        file.discard().await;
    }
    Ok(finish(response(StatusCode::NO_CONTENT), Body::empty()))
}

// ---------------------------------------------------------------- manifests

async fn resolve(r: &Registry, name: &str, reference: &Reference) -> Result<Option<Digest>> {
    match reference {
        Reference::Digest(d) => Ok(Some(d.clone())),
        Reference::Tag(tag) => {
            let Some(value) = r.inner.meta.get(&tag_key(name, tag)).await.map_err(Error::storage("reading tag"))? else { return Ok(None) };
            Ok(std::str::from_utf8(&value).ok().and_then(|s| Digest::parse(s.trim()).ok()))
        }
    }
}

async fn revision(r: &Registry, name: &str, digest: &Digest) -> Result<Option<Revision>> {
    let Some(value) = r.inner.meta.get(&revision_key(name, digest)).await.map_err(Error::storage("reading manifest record"))? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&value).ok())
}

fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut any = false;
    for value in headers.get_all(header::ACCEPT) {
        for item in value.to_str().unwrap_or_default().split(',') {
            let item = item.split(';').next().unwrap_or_default().trim();
            if item.is_empty() {
                continue;
            }
            any = true;
            if item == media_type || item == "*/*" || item == "application/*" || item == "application/json" {
                return true;
            }
        }
    }
    !any
}

async fn get_manifest(r: &Registry, name: &str, reference: &str, parts: &Parts, head: bool) -> Result<Response> {
    let reference = parse_reference(reference).map_err(|e| match e {
        Error::Api { code: Code::ManifestInvalid, message, .. } => not_found(Code::ManifestUnknown, message),
        other => other,
    })?;
    let unknown = || not_found(Code::ManifestUnknown, format!("manifest unknown in {name}"));
    let digest = resolve(r, name, &reference).await?.ok_or_else(unknown)?;
    let rev = revision(r, name, &digest).await?.ok_or_else(unknown)?;
    if !accepts(&parts.headers, &rev.media_type) {
        return Err(not_found(Code::ManifestUnknown, format!("manifest is {}, which the Accept header does not include", rev.media_type)));
    }
    let builder = response(StatusCode::OK)
        .header(header::CONTENT_TYPE, &rev.media_type)
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::CONTENT_LENGTH, rev.size);
    if head {
        return Ok(finish(builder, Body::empty()));
    }
    let bytes = r.inner.blobs.read_bytes(&digest).await.map_err(Error::storage("reading manifest"))?.ok_or_else(unknown)?;
    Ok(finish(builder, Body::from(bytes)))
}

async fn put_manifest(r: &Registry, name: &str, reference: &str, parts: &Parts, body: Body) -> Result<Response> {
    let i = &r.inner;
    let reference = parse_reference(reference)?;
    let limit = i.options.limits.max_manifest_bytes;
    let too_large = || Error::api(StatusCode::PAYLOAD_TOO_LARGE, Code::ManifestInvalid, format!("manifest exceeds the limit of {limit} bytes"));
    if content_length(parts).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX)).await.map_err(|_| too_large())?;
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let invalid = |e: manifest::Invalid| bad_request(Code::ManifestInvalid, e.to_string());
    let (manifest, media_type) = Manifest::parse(&bytes, content_type).map_err(invalid)?;
    let refs = manifest.references().map_err(invalid)?;
    let digest = Digest::of(&bytes);
    if let Reference::Digest(d) = &reference
        && d != &digest {
            return Err(bad_request(Code::DigestInvalid, format!("manifest hashes to {digest}, not {d}")));
        }
    for blob in &refs.blobs {
        // Touch first, so a concurrent garbage collection keeps what this manifest uses.
        i.blobs.touch(blob).await.map_err(Error::storage("touching blob"))?;
        if linked_blob(r, name, blob).await?.is_none() {
            return Err(bad_request(Code::ManifestBlobUnknown, format!("blob {blob} is not in {name}")));
        }
    }
    for child in &refs.manifests {
        if revision(r, name, child).await?.is_none() {
            return Err(bad_request(Code::ManifestBlobUnknown, format!("manifest {child} is not in {name}")));
        }
        i.blobs.touch(child).await.map_err(Error::storage("touching manifest"))?;
    }
    let size = bytes.len() as u64;
    i.blobs.put_bytes(bytes).await.map_err(Error::storage("storing manifest"))?;
    let record = serde_json::to_vec(&Revision { media_type: media_type.clone(), size }).unwrap_or_default();
    i.meta.put(&revision_key(name, &digest), Bytes::from(record)).await.map_err(Error::storage("recording manifest"))?;
    if let Some(subject) = &refs.subject {
        let descriptor = Descriptor {
            media_type: Some(media_type.clone()),
            digest: digest.to_string(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            urls: None,
            annotations: manifest.annotations.clone().filter(|a| !a.is_empty()),
            artifact_type: manifest.artifact_type(),
        };
        let value = serde_json::to_vec(&descriptor).unwrap_or_default();
        i.meta.put(&referrer_key(name, subject, &digest), Bytes::from(value)).await.map_err(Error::storage("recording referrer"))?;
    }
    if let Reference::Tag(tag) = &reference {
        i.meta.put(&tag_key(name, tag), Bytes::from(digest.to_string())).await.map_err(Error::storage("writing tag"))?;
    }
    tracing::info!(repository = name, %digest, media_type = %media_type, "Manifest pushed.");
    let mut builder = response(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::CONTENT_LENGTH, 0);
    if let Some(subject) = &refs.subject {
        builder = builder.header(OCI_SUBJECT, subject.as_str());
    }
    Ok(finish(builder, Body::empty()))
}

async fn delete_manifest(r: &Registry, name: &str, reference: &str) -> Result<Response> {
    let i = &r.inner;
    let unknown = || not_found(Code::ManifestUnknown, format!("manifest unknown in {name}"));
    match parse_reference(reference)? {
        Reference::Tag(tag) => {
            let key = tag_key(name, &tag);
            if !i.meta.exists(&key).await.map_err(Error::storage("reading tag"))? {
                return Err(unknown());
            }
            i.meta.delete(&key).await.map_err(Error::storage("deleting tag"))?;
        }
        Reference::Digest(digest) => {
            if revision(r, name, &digest).await?.is_none() {
                return Err(unknown());
            }
            if let Some(bytes) = i.blobs.read_bytes(&digest).await.map_err(Error::storage("reading manifest"))?
                && let Ok((m, _)) = Manifest::parse(&bytes, None)
                    && let Ok(Some(subject)) = m.references().map(|refs| refs.subject) {
                        i.meta.delete(&referrer_key(name, &subject, &digest)).await.map_err(Error::storage("deleting referrer"))?;
                    }
            i.meta.delete(&revision_key(name, &digest)).await.map_err(Error::storage("deleting manifest"))?;
            for tag in i.meta.list(&tags_prefix(name)).await.map_err(Error::storage("listing tags"))? {
                let key = tag_key(name, &tag);
                if let Some(value) = i.meta.get(&key).await.map_err(Error::storage("reading tag"))?
                    && value.as_ref() == digest.as_str().as_bytes() {
                        i.meta.delete(&key).await.map_err(Error::storage("deleting tag"))?;
                    }
            }
        }
    }
    Ok(finish(response(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, 0), Body::empty()))
}

// ---------------------------------------------------------------- listings

/// `n` and `last` pagination over sorted `items`; returns the page and whether more follow.
fn paginate(items: Vec<String>, parts: &Parts) -> (Vec<String>, Option<usize>, bool) {
    let q = query(parts);
    let n = q.get("n").and_then(|n| n.parse::<usize>().ok());
    let mut items: Vec<String> = match q.get("last") {
        Some(last) => items.into_iter().filter(|t| t.as_str() > last.as_str()).collect(),
        None => items,
    };
    let more = n.is_some_and(|n| items.len() > n);
    if let Some(n) = n {
        items.truncate(n);
    }
    (items, n, more)
}

fn page_response(key: &str, mut body: serde_json::Value, page: Vec<String>, n: Option<usize>, more: bool, link_base: String) -> Response {
    let mut builder = response(StatusCode::OK).header(header::CONTENT_TYPE, "application/json");
    if let (true, Some(n), Some(last)) = (more, n, page.last()) {
        builder = builder.header(header::LINK, format!("<{link_base}?n={n}&last={last}>; rel=\"next\""));
    }
    body[key] = serde_json::json!(page);
    finish(builder, Body::from(body.to_string()))
}

async fn tags(r: &Registry, name: &str, parts: &Parts) -> Result<Response> {
    let i = &r.inner;
    let repo = i.meta.children(&format!("repositories/{name}/_manifests/")).await.map_err(Error::storage("reading repository"))?;
    if repo.prefixes.is_empty() {
        return Err(not_found(Code::NameUnknown, format!("repository {name} is unknown")));
    }
    let mut all = i.meta.list(&tags_prefix(name)).await.map_err(Error::storage("listing tags"))?;
    all.sort();
    let (page, n, more) = paginate(all, parts);
    Ok(page_response("tags", serde_json::json!({ "name": name }), page, n, more, format!("/v2/{name}/tags/list")))
}

/// Every repository name (with at least one manifest record), sorted.
pub(crate) async fn repositories(meta: &dyn store::blob::MetaStore) -> Result<Vec<String>, BlobError> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(prefix) = stack.pop() {
        let children = meta.children(&format!("repositories/{prefix}")).await?;
        if children.prefixes.iter().any(|p| p == "_manifests") {
            out.push(prefix.trim_end_matches('/').to_owned());
        }
        for child in children.prefixes {
            if !child.starts_with('_') {
                stack.push(format!("{prefix}{child}/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

async fn catalog(r: &Registry, identity: &Identity, host: &str, parts: &Parts) -> Result<Response> {
    let filter = r.inner.auth.catalog_filter(identity, host)?;
    let all = repositories(r.inner.meta.as_ref()).await.map_err(Error::storage("listing repositories"))?;
    let visible: Vec<String> = all.into_iter().filter(|name| filter(name)).collect();
    let (page, n, more) = paginate(visible, parts);
    Ok(page_response("repositories", serde_json::json!({}), page, n, more, "/v2/_catalog".to_owned()))
}

async fn referrers(r: &Registry, name: &str, digest: &str, parts: &Parts) -> Result<Response> {
    let subject = parse_digest(digest)?;
    let i = &r.inner;
    let q = query(parts);
    let filter = q.get("artifactType");
    let prefix = referrers_prefix(name, &subject);
    let mut manifests = Vec::new();
    for entry in i.meta.list(&prefix).await.map_err(Error::storage("listing referrers"))? {
        let Some(value) = i.meta.get(&format!("{prefix}{entry}")).await.map_err(Error::storage("reading referrer"))? else { continue };
        let Ok(descriptor) = serde_json::from_slice::<Descriptor>(&value) else { continue };
        if filter.is_some_and(|f| descriptor.artifact_type.as_ref() != Some(f)) {
            continue;
        }
        manifests.push(descriptor);
    }
    let body = serde_json::json!({ "schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": manifests });
    let mut builder = response(StatusCode::OK).header(header::CONTENT_TYPE, manifest::OCI_INDEX);
    if filter.is_some() {
        builder = builder.header(OCI_FILTERS_APPLIED, "artifactType");
    }
    Ok(finish(builder, Body::from(body.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let check = |v: &str, size: u64, want: Option<std::ops::Range<u64>>| assert_eq!(parse_range(v, size), want, "{v}");
        check("bytes=0-9", 100, Some(0..10));
        check("bytes=10-", 100, Some(10..100));
        check("bytes=-10", 100, Some(90..100));
        check("bytes=90-200", 100, Some(90..100));
        check("bytes=100-", 100, None);
        check("bytes=5-4", 100, None);
        check("bytes=0-1,3-4", 100, None);
        check("items=0-1", 100, None);
        check("bytes=0-0", 0, None);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(parse_content_range("bytes=5-9"), Some((5, 9)));
        assert_eq!(parse_content_range("9-5"), None);
        assert_eq!(parse_content_range("x"), None);
    }
}
