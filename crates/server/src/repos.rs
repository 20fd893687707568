//! The repositories the server builds, their secrets and variables: kept in the store and
//! registered from the configuration file (at every start: `managed_by = config`) or through
//! the API (`managed_by = api`); organisation-level secrets and variables apply to every
//! repository of an owner, and a repository's own of the same name win.
//!
//! The server works from an in-memory snapshot (`name -> RepositoryConfig`, secrets and
//! variables already merged and decrypted), rebuilt from the store whenever the API changes
//! something, when a webhook names a repository the snapshot does not know (another replica
//! may have registered it), and every [`REFRESH`]. Polling follows the snapshot: a repository
//! registered with `poll_interval` starts being polled without a restart.
//!
//! Routes (admin role for every change and for secrets/variables; reading repositories needs
//! any role):
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/repositories` | every repository (no secrets) |
//! | `POST /api/v1/repositories` | register (`name` in the body); `409` when it exists |
//! | `GET/PUT/DELETE /api/v1/repositories/{owner}/{name}` | one repository |
//! | `GET /api/v1/repositories/{owner}/{name}/secrets` | names only |
//! | `PUT/DELETE /api/v1/repositories/{owner}/{name}/secrets/{NAME}` | `{"value": ...}` |
//! | `GET /api/v1/repositories/{owner}/{name}/variables`, `PUT/DELETE .../variables/{NAME}` | |
//! | `/api/v1/organizations/{owner}/secrets[/{NAME}]`, `.../variables[/{NAME}]` | the same for an owner |
// The error of these helpers is the handler's reply (an axum `Response`).
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use protocol::{RepositoryRequest, SecretInfo, SettingValue, Variable};
use store::sql::RepositorySettings;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{Need, authorize};
use crate::config::{Forge, RepositoryConfig, parse_duration};
use crate::secrets::{KeyError, ServerKey};
use crate::{AppState, ServerError, error_response, internal, now_ms};

/// How often the snapshot is rebuilt from the store even when nothing here changed it.
pub(crate) const REFRESH: Duration = Duration::from_secs(15);

/// The in-memory view of every active repository.
pub(crate) type Snapshot = Arc<HashMap<String, RepositoryConfig>>;

fn secret_aad(scope: &str, name: &str) -> String {
    format!("secret:{scope}/{name}")
}

fn repo_aad(name: &str, field: &str) -> String {
    format!("repository:{name}:{field}")
}

pub(crate) fn parse_forge(s: &str) -> Option<Forge> {
    Some(match s {
        "gitea" => Forge::Gitea,
        "forgejo" => Forge::Forgejo,
        "github" => Forge::Github,
        "gitlab" => Forge::Gitlab,
        "generic" => Forge::Generic,
        _ => return None,
    })
}

/// What the store keeps for `repo`, with its token and webhook secret sealed.
pub(crate) fn settings_of(key: &ServerKey, repo: &RepositoryConfig, managed_by: &str) -> RepositorySettings {
    RepositorySettings {
        name: repo.name.clone(),
        clone_url: repo.clone_url.clone(),
        forge: repo.forge.as_str().to_owned(),
        forge_api: repo.forge_api.clone(),
        forge_token: repo.forge_token.as_ref().map(|t| key.seal(&repo_aad(&repo.name, "forge_token"), t.as_bytes())),
        webhook_secret: repo
            .webhook_secret
            .as_ref()
            .map(|t| key.seal(&repo_aad(&repo.name, "webhook_secret"), t.as_bytes())),
        poll_interval_ms: repo.poll_interval.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        managed_by: managed_by.to_owned(),
    }
}

/// Builds the snapshot: every active repository of the store, its token and webhook secret
/// opened, with the merged secrets and variables (organisation from the file, organisation
/// through the API, repository from the file, repository through the API; later wins).
pub(crate) async fn load(state: &AppState) -> Result<Snapshot, ServerError> {
    let key = state.key();
    let config = state.config();
    let db = state.db();
    let sealed = db.secrets(None).await?;
    let variables = db.variables(None).await?;
    let open = |aad: String, v: &[u8]| key.open_string(&aad, v).map_err(|e: KeyError| ServerError::Internal(e.to_string()));
    let mut api_secrets: HashMap<&str, BTreeMap<String, String>> = HashMap::new();
    for s in &sealed {
        let value = open(secret_aad(&s.scope, &s.name), &s.value)?;
        api_secrets.entry(s.scope.as_str()).or_default().insert(s.name.clone(), value);
    }
    let mut api_vars: HashMap<&str, BTreeMap<String, String>> = HashMap::new();
    for v in &variables {
        api_vars.entry(v.scope.as_str()).or_default().insert(v.name.clone(), v.value.clone());
    }
    let mut out = HashMap::new();
    for row in db.repositories().await? {
        let Some(forge) = parse_forge(&row.forge) else {
            tracing::error!(repository = %row.name, forge = %row.forge, "Stored repository has an unknown forge; skipped.");
            continue;
        };
        let owner = row.name.split_once('/').map_or(row.name.as_str(), |(o, _)| o);
        let file_repo = config.repositories.iter().find(|r| r.name == row.name && row.managed_by == "config");
        let file_org = config.organizations.iter().find(|o| o.name == owner);
        let org_scope = format!("org:{owner}");
        let repo_scope = format!("repo:{}", row.name);
        let mut secrets = BTreeMap::new();
        let mut vars = BTreeMap::new();
        if let Some(o) = file_org {
            secrets.extend(o.secrets.clone());
            vars.extend(o.vars.clone());
        }
        secrets.extend(api_secrets.get(org_scope.as_str()).cloned().unwrap_or_default());
        vars.extend(api_vars.get(org_scope.as_str()).cloned().unwrap_or_default());
        if let Some(r) = file_repo {
            secrets.extend(r.secrets.clone());
            vars.extend(r.vars.clone());
        }
        secrets.extend(api_secrets.get(repo_scope.as_str()).cloned().unwrap_or_default());
        vars.extend(api_vars.get(repo_scope.as_str()).cloned().unwrap_or_default());
        let forge_token = row.forge_token.as_deref().map(|v| open(repo_aad(&row.name, "forge_token"), v)).transpose()?;
        let webhook_secret =
            row.webhook_secret.as_deref().map(|v| open(repo_aad(&row.name, "webhook_secret"), v)).transpose()?;
        out.insert(
            row.name.clone(),
            RepositoryConfig {
                name: row.name.clone(),
                clone_url: row.clone_url,
                forge,
                forge_api: row.forge_api,
                forge_token,
                webhook_secret,
                poll_interval: row.poll_interval_ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
                secrets,
                vars,
            },
        );
    }
    Ok(Arc::new(out))
}

/// Keeps the snapshot fresh (every [`REFRESH`]) and one polling task per repository that has
/// a `poll_interval`, started, restarted and stopped as the snapshot changes.
pub(crate) async fn supervise(state: AppState, stop: CancellationToken) {
    let mut pollers: HashMap<String, (String, Duration, CancellationToken)> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        let changed = state.0.repos_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let snapshot = state.repositories();
        pollers.retain(|name, (url, interval, token)| {
            let keep = snapshot.get(name).is_some_and(|r| r.poll_interval == Some(*interval) && &r.clone_url == url);
            if !keep {
                token.cancel();
            }
            keep
        });
        for repo in snapshot.values() {
            if let Some(interval) = repo.poll_interval
                && !pollers.contains_key(&repo.name)
            {
                let token = stop.child_token();
                pollers.insert(repo.name.clone(), (repo.clone_url.clone(), interval, token.clone()));
                tasks.spawn(crate::poll::run(state.clone(), repo.name.clone(), interval, token));
            }
        }
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = &mut changed => {}
            _ = tokio::time::sleep(REFRESH) => {
                if let Err(error) = state.reload_repositories().await {
                    tracing::error!(%error, "Reloading repositories failed.");
                }
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(protocol::paths::REPOSITORIES, get(list).post(create))
        .route("/api/v1/repositories/{owner}/{name}", get(show).put(put).delete(delete))
        .route("/api/v1/repositories/{owner}/{name}/secrets", get(list_repo_secrets))
        .route("/api/v1/repositories/{owner}/{name}/secrets/{secret}", axum::routing::put(put_repo_secret).delete(delete_repo_secret))
        .route("/api/v1/repositories/{owner}/{name}/variables", get(list_repo_vars))
        .route("/api/v1/repositories/{owner}/{name}/variables/{var}", axum::routing::put(put_repo_var).delete(delete_repo_var))
        .route("/api/v1/organizations/{org}/secrets", get(list_org_secrets))
        .route("/api/v1/organizations/{org}/secrets/{secret}", axum::routing::put(put_org_secret).delete(delete_org_secret))
        .route("/api/v1/organizations/{org}/variables", get(list_org_vars))
        .route("/api/v1/organizations/{org}/variables/{var}", axum::routing::put(put_org_var).delete(delete_org_var))
}

fn bad_request(message: String) -> Response {
    error_response(StatusCode::BAD_REQUEST, message)
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn dto(state: &AppState, name: &str) -> Option<protocol::Repository> {
    let repos = state.repositories();
    let r = repos.get(name)?;
    let managed_by = if state.config().repositories.iter().any(|c| c.name == name) { "config" } else { "api" };
    Some(protocol::Repository {
        name: r.name.clone(),
        clone_url: r.clone_url.clone(),
        forge: r.forge.as_str().to_owned(),
        forge_api: r.forge_api.clone(),
        has_forge_token: r.forge_token.is_some(),
        has_webhook_secret: r.webhook_secret.is_some(),
        poll_interval_ms: r.poll_interval.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        managed_by: managed_by.to_owned(),
    })
}

async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Read) {
        return r;
    }
    let mut names: Vec<String> = state.repositories().keys().cloned().collect();
    names.sort();
    Json(names.iter().filter_map(|n| dto(&state, n)).collect::<Vec<_>>()).into_response()
}

async fn show(State(state): State<AppState>, headers: HeaderMap, Path((owner, name)): Path<(String, String)>) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Read) {
        return r;
    }
    let full = format!("{owner}/{name}");
    match dto(&state, &full) {
        Some(d) => Json(d).into_response(),
        None => error_response(StatusCode::NOT_FOUND, format!("unknown repository `{full}`")),
    }
}

/// Checks a request and turns it into the repository it describes; `existing` supplies the
/// write-only fields the request leaves out (omitted: kept; `""`: removed).
fn validate(name: &str, req: RepositoryRequest, existing: Option<&RepositoryConfig>) -> Result<RepositoryConfig, Response> {
    let Some((owner, repo)) = name.split_once('/').filter(|(o, r)| valid_segment(o) && valid_segment(r)) else {
        return Err(bad_request(format!(
            "request field `name`: `{name}` is not owner/name (letters, digits, `.`, `_`, `-`)"
        )));
    };
    let _ = (owner, repo);
    if req.clone_url.trim().is_empty() {
        return Err(bad_request("request field `clone_url`: must not be empty".to_owned()));
    }
    let Some(forge) = parse_forge(&req.forge) else {
        return Err(bad_request(format!(
            "request field `forge`: `{}` is not gitea, forgejo, github, gitlab or generic",
            req.forge
        )));
    };
    if let Some(api) = &req.forge_api
        && !(api.starts_with("http://") || api.starts_with("https://"))
    {
        return Err(bad_request(format!("request field `forge_api`: `{api}` is not an http(s) URL")));
    }
    let poll_interval = match &req.poll_interval {
        None => None,
        Some(p) => Some(parse_duration(p).filter(|d| !d.is_zero()).ok_or_else(|| {
            bad_request(format!("request field `poll_interval`: `{p}` is not a duration like 30s"))
        })?),
    };
    let keep = |given: Option<String>, old: Option<&String>| match given {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(v),
        None => old.cloned(),
    };
    Ok(RepositoryConfig {
        name: name.to_owned(),
        clone_url: req.clone_url.trim().to_owned(),
        forge,
        forge_api: req.forge_api.map(|u| u.trim_end_matches('/').to_owned()),
        forge_token: keep(req.forge_token, existing.and_then(|e| e.forge_token.as_ref())),
        webhook_secret: keep(req.webhook_secret, existing.and_then(|e| e.webhook_secret.as_ref())),
        poll_interval,
        secrets: BTreeMap::new(),
        vars: BTreeMap::new(),
    })
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("request body: {e}")))
}

fn config_managed(state: &AppState, name: &str) -> Option<Response> {
    state.config().repositories.iter().any(|r| r.name == name).then(|| {
        error_response(
            StatusCode::CONFLICT,
            format!("repository `{name}` is defined in the configuration file; change it there"),
        )
    })
}

async fn save(state: &AppState, name: &str, req: RepositoryRequest, must_be_new: bool) -> Response {
    if let Some(r) = config_managed(state, name) {
        return r;
    }
    let existing = state.repositories().get(name).cloned();
    if must_be_new && existing.is_some() {
        return error_response(StatusCode::CONFLICT, format!("repository `{name}` already exists"));
    }
    let repo = match validate(name, req, existing.as_ref()) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(e) = state.db().save_repository(&settings_of(state.key(), &repo, "api"), now_ms()).await {
        return internal(e);
    }
    if let Err(e) = state.reload_repositories().await {
        return internal(e);
    }
    tracing::info!(repository = %name, created = existing.is_none(), "Repository saved through the API.");
    let status = if existing.is_none() { StatusCode::CREATED } else { StatusCode::OK };
    match dto(state, name) {
        Some(d) => (status, Json(d)).into_response(),
        None => internal("the saved repository is not in the snapshot"),
    }
}

async fn create(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Admin) {
        return r;
    }
    let req: RepositoryRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(name) = req.name.clone() else {
        return bad_request("request field `name`: required (owner/name)".to_owned());
    };
    save(&state, &name, req, true).await
}

async fn put(State(state): State<AppState>, headers: HeaderMap, Path((owner, name)): Path<(String, String)>, body: Bytes) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Admin) {
        return r;
    }
    let req: RepositoryRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let full = format!("{owner}/{name}");
    if req.name.as_ref().is_some_and(|n| *n != full) {
        return bad_request(format!("request field `name`: does not match the path ({full})"));
    }
    save(&state, &full, req, false).await
}

async fn delete(State(state): State<AppState>, headers: HeaderMap, Path((owner, name)): Path<(String, String)>) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Admin) {
        return r;
    }
    let full = format!("{owner}/{name}");
    if let Some(r) = config_managed(&state, &full) {
        return r;
    }
    match state.db().delete_repository(&full).await {
        Ok(true) => {}
        Ok(false) => return error_response(StatusCode::NOT_FOUND, format!("unknown repository `{full}`")),
        Err(e) => return internal(e),
    }
    tracing::info!(repository = %full, "Repository deleted through the API.");
    match state.reload_repositories().await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => internal(e),
    }
}

// --- secrets and variables ---------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Secret,
    Variable,
}

/// GitHub's rules for secret and variable names.
fn valid_setting_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.to_ascii_uppercase().starts_with("GITHUB_")
        && name.len() <= 255
}

/// Largest secret or variable value.
const MAX_VALUE: usize = 64 * 1024;

/// The scope of a path, checked: `repo:owner/name` (an existing repository) or `org:owner`.
fn scope_of(state: &AppState, owner: &str, repo: Option<&str>) -> Result<String, Response> {
    match repo {
        Some(name) => {
            let full = format!("{owner}/{name}");
            if !state.repositories().contains_key(&full) {
                return Err(error_response(StatusCode::NOT_FOUND, format!("unknown repository `{full}`")));
            }
            Ok(format!("repo:{full}"))
        }
        None if valid_segment(owner) => Ok(format!("org:{owner}")),
        None => Err(bad_request(format!("`{owner}` is not an organisation name"))),
    }
}

/// What the configuration file sets in a scope (listed with `source: config`).
fn from_file(state: &AppState, scope: &str, kind: Kind) -> BTreeMap<String, String> {
    let config = state.config();
    let pick = |s: &BTreeMap<String, String>, v: &BTreeMap<String, String>| if kind == Kind::Secret { s.clone() } else { v.clone() };
    if let Some(repo) = scope.strip_prefix("repo:") {
        config.repositories.iter().find(|r| r.name == repo).map(|r| pick(&r.secrets, &r.vars)).unwrap_or_default()
    } else {
        let org = scope.trim_start_matches("org:");
        config.organizations.iter().find(|o| o.name == org).map(|o| pick(&o.secrets, &o.vars)).unwrap_or_default()
    }
}

async fn list_settings(state: &AppState, headers: &HeaderMap, owner: &str, repo: Option<&str>, kind: Kind) -> Response {
    if let Err(r) = authorize(state, headers, Need::Admin) {
        return r;
    }
    let scope = match scope_of(state, owner, repo) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let file = from_file(state, &scope, kind);
    match kind {
        Kind::Secret => {
            let stored = match state.db().secrets(Some(&scope)).await {
                Ok(s) => s,
                Err(e) => return internal(e),
            };
            let mut out: Vec<SecretInfo> =
                file.keys().map(|k| SecretInfo { name: k.clone(), source: "config".into(), updated_at: None }).collect();
            out.extend(stored.into_iter().map(|s| SecretInfo { name: s.name, source: "api".into(), updated_at: Some(s.updated_at) }));
            Json(out).into_response()
        }
        Kind::Variable => {
            let stored = match state.db().variables(Some(&scope)).await {
                Ok(s) => s,
                Err(e) => return internal(e),
            };
            let mut out: Vec<Variable> = file
                .into_iter()
                .map(|(k, v)| Variable { name: k, value: v, source: "config".into(), updated_at: None })
                .collect();
            out.extend(
                stored.into_iter().map(|s| Variable { name: s.name, value: s.value, source: "api".into(), updated_at: Some(s.updated_at) }),
            );
            Json(out).into_response()
        }
    }
}

async fn put_setting(
    state: &AppState,
    headers: &HeaderMap,
    owner: &str,
    repo: Option<&str>,
    name: &str,
    kind: Kind,
    body: &Bytes,
) -> Response {
    if let Err(r) = authorize(state, headers, Need::Admin) {
        return r;
    }
    let scope = match scope_of(state, owner, repo) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !valid_setting_name(name) {
        return bad_request(format!(
            "`{name}` is not a valid name: letters, digits and `_`, not starting with a digit or GITHUB_"
        ));
    }
    let value: SettingValue = match parse_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if value.value.len() > MAX_VALUE {
        return bad_request(format!("request field `value`: longer than {MAX_VALUE} bytes"));
    }
    let existed = match kind {
        Kind::Secret => state.db().secrets(Some(&scope)).await.map(|s| s.iter().any(|x| x.name == name)),
        Kind::Variable => state.db().variables(Some(&scope)).await.map(|s| s.iter().any(|x| x.name == name)),
    };
    let existed = match existed {
        Ok(e) => e,
        Err(e) => return internal(e),
    };
    let saved = match kind {
        Kind::Secret => {
            let sealed = state.key().seal(&secret_aad(&scope, name), value.value.as_bytes());
            state.db().put_secret(&scope, name, &sealed, now_ms()).await
        }
        Kind::Variable => state.db().put_variable(&scope, name, &value.value, now_ms()).await,
    };
    if let Err(e) = saved {
        return internal(e);
    }
    if let Err(e) = state.reload_repositories().await {
        return internal(e);
    }
    tracing::info!(%scope, %name, secret = (kind == Kind::Secret), "Setting saved through the API.");
    if existed { StatusCode::NO_CONTENT.into_response() } else { StatusCode::CREATED.into_response() }
}

async fn delete_setting(state: &AppState, headers: &HeaderMap, owner: &str, repo: Option<&str>, name: &str, kind: Kind) -> Response {
    if let Err(r) = authorize(state, headers, Need::Admin) {
        return r;
    }
    let scope = match scope_of(state, owner, repo) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let deleted = match kind {
        Kind::Secret => state.db().delete_secret(&scope, name).await,
        Kind::Variable => state.db().delete_variable(&scope, name).await,
    };
    match deleted {
        Ok(true) => {}
        Ok(false) => return error_response(StatusCode::NOT_FOUND, format!("no `{name}` stored in {scope}")),
        Err(e) => return internal(e),
    }
    match state.reload_repositories().await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => internal(e),
    }
}

async fn list_repo_secrets(State(s): State<AppState>, h: HeaderMap, Path((o, r)): Path<(String, String)>) -> Response {
    list_settings(&s, &h, &o, Some(&r), Kind::Secret).await
}
async fn list_repo_vars(State(s): State<AppState>, h: HeaderMap, Path((o, r)): Path<(String, String)>) -> Response {
    list_settings(&s, &h, &o, Some(&r), Kind::Variable).await
}
async fn list_org_secrets(State(s): State<AppState>, h: HeaderMap, Path(o): Path<String>) -> Response {
    list_settings(&s, &h, &o, None, Kind::Secret).await
}
async fn list_org_vars(State(s): State<AppState>, h: HeaderMap, Path(o): Path<String>) -> Response {
    list_settings(&s, &h, &o, None, Kind::Variable).await
}
async fn put_repo_secret(State(s): State<AppState>, h: HeaderMap, Path((o, r, n)): Path<(String, String, String)>, b: Bytes) -> Response {
    put_setting(&s, &h, &o, Some(&r), &n, Kind::Secret, &b).await
}
async fn put_repo_var(State(s): State<AppState>, h: HeaderMap, Path((o, r, n)): Path<(String, String, String)>, b: Bytes) -> Response {
    put_setting(&s, &h, &o, Some(&r), &n, Kind::Variable, &b).await
}
async fn put_org_secret(State(s): State<AppState>, h: HeaderMap, Path((o, n)): Path<(String, String)>, b: Bytes) -> Response {
    put_setting(&s, &h, &o, None, &n, Kind::Secret, &b).await
}
async fn put_org_var(State(s): State<AppState>, h: HeaderMap, Path((o, n)): Path<(String, String)>, b: Bytes) -> Response {
    put_setting(&s, &h, &o, None, &n, Kind::Variable, &b).await
}
async fn delete_repo_secret(State(s): State<AppState>, h: HeaderMap, Path((o, r, n)): Path<(String, String, String)>) -> Response {
    delete_setting(&s, &h, &o, Some(&r), &n, Kind::Secret).await
}
async fn delete_repo_var(State(s): State<AppState>, h: HeaderMap, Path((o, r, n)): Path<(String, String, String)>) -> Response {
    delete_setting(&s, &h, &o, Some(&r), &n, Kind::Variable).await
}
async fn delete_org_secret(State(s): State<AppState>, h: HeaderMap, Path((o, n)): Path<(String, String)>) -> Response {
    delete_setting(&s, &h, &o, None, &n, Kind::Secret).await
}
async fn delete_org_var(State(s): State<AppState>, h: HeaderMap, Path((o, n)): Path<(String, String)>) -> Response {
    delete_setting(&s, &h, &o, None, &n, Kind::Variable).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_names_follow_githubs_rules() {
        for good in ["TOKEN", "_x", "a1_B"] {
            assert!(valid_setting_name(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "GITHUB_TOKEN", "github_x", "A B"] {
            assert!(!valid_setting_name(bad), "{bad}");
        }
    }
}
