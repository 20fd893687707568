//! Environments defined through the API, merged with the configuration file's.
//!
//! The merged list is an in-memory snapshot in [`AppState`] (configuration file first, then
//! the store's), rebuilt from the store after every change through the API and before every
//! gate decision, so the gate reads the current rules without a restart (also when another
//! replica changed them). An environment of the configuration file is read-only through the
//! API (409: change the file); one defined through the API may use any name the file does
//! not define for the same repository scope.
//!
//! Secrets are sealed with the server key (AES-256-GCM) with the row's identity
//! (`environment-secret:{repository or *}/{environment}/{name}`) as associated data, like
//! repository secrets (see `secrets`), and released to a job only after its gate opened.
// The error of these helpers is the handler's reply (an axum `Response`).
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use serde::{Deserialize, Serialize};
use store::sql::{AuditEvent, DeploymentStatus, StoredEnvironment};

use super::{DEFAULT_TIMEOUT, EnvironmentConfig};
use crate::api::{Need, authorize};
use crate::{AppState, ServerError, error_response, internal, now_ms};

/// One environment of the merged list.
#[derive(Debug, Clone)]
pub(crate) struct Defined {
    pub config: Arc<EnvironmentConfig>,
    /// `config` (the file; read-only here) or `api`.
    pub managed_by: &'static str,
    /// Who saved it last and when (`api` only).
    pub updated_by: Option<String>,
    pub updated_at: Option<i64>,
}

/// The merged environments (configuration file first).
#[derive(Debug, Default)]
pub(crate) struct Snapshot(RwLock<Arc<Vec<Defined>>>);

/// Every environment: the configuration file's, then those defined through the API.
pub(crate) fn all(state: &AppState) -> Arc<Vec<Defined>> {
    state
        .0
        .environments
        .0
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// The associated data a stored environment's secret is sealed with.
fn secret_aad(repository: Option<&str>, environment: &str, name: &str) -> String {
    format!(
        "environment-secret:{}/{environment}/{name}",
        repository.unwrap_or("*")
    )
}

fn json_list(text: &str, what: &str) -> Result<Vec<String>, ServerError> {
    serde_json::from_str(text).map_err(|e| ServerError::Internal(format!("stored {what}: {e}")))
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

/// Rebuilds the snapshot from the configuration and the store.
pub(crate) async fn reload(state: &AppState) -> Result<(), ServerError> {
    let db = state.db();
    let rows = db.stored_environments().await?;
    let mut secrets: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
    let mut vars: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
    let names: BTreeMap<i64, &StoredEnvironment> = rows.iter().map(|r| (r.id, r)).collect();
    for s in db.environment_secrets().await? {
        let Some(row) = names.get(&s.environment) else {
            continue;
        };
        let aad = secret_aad(row.repository.as_deref(), &row.name, &s.name);
        let value = state.key().open_string(&aad, &s.value)?;
        secrets
            .entry(s.environment)
            .or_default()
            .insert(s.name, value);
    }
    for v in db.environment_variables().await? {
        vars.entry(v.environment)
            .or_default()
            .insert(v.name, v.value);
    }
    let mut out: Vec<Defined> = state
        .config()
        .environments
        .iter()
        .map(|e| Defined {
            config: Arc::new(e.clone()),
            managed_by: "config",
            updated_by: None,
            updated_at: None,
        })
        .collect();
    for row in &rows {
        let config = EnvironmentConfig {
            repository: row.repository.clone(),
            name: row.name.clone(),
            reviewers: json_list(&row.reviewers, "reviewers")?,
            required_approvals: u32::try_from(row.required_approvals).unwrap_or(0),
            allow_self_approval: row.allow_self_approval,
            wait_timer: ms(row.wait_timer_ms),
            timeout: ms(row.timeout_ms),
            branches: json_list(&row.branches, "branches")?,
            tags: json_list(&row.tags, "tags")?,
            secrets: secrets.remove(&row.id).unwrap_or_default(),
            vars: vars.remove(&row.id).unwrap_or_default(),
            url: row.url.clone(),
        };
        out.push(Defined {
            config: Arc::new(config),
            managed_by: "api",
            updated_by: Some(row.updated_by.clone()),
            updated_at: Some(row.updated_at),
        });
    }
    *state
        .0
        .environments
        .0
        .write()
        .unwrap_or_else(|e| e.into_inner()) = Arc::new(out);
    Ok(())
}

// --- API ----------------------------------------------------------------------------------------

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/environments/{name}/secrets/{secret}",
            put(put_secret).delete(delete_secret),
        )
        .route(
            "/api/v1/environments/{name}/variables/{var}",
            put(put_variable).delete(delete_variable),
        )
}

/// `PUT /api/v1/environments/{name}`: the rules (every field optional; absent means none).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    #[serde(default)]
    pub reviewers: Vec<String>,
    /// Default: 1 with reviewers, 0 without.
    #[serde(default)]
    pub required_approvals: Option<u32>,
    #[serde(default)]
    pub allow_self_approval: bool,
    /// A duration like `30s`, `5m`, `1h` (or `wait_timer_ms`).
    #[serde(default)]
    pub wait_timer: Option<String>,
    #[serde(default)]
    pub wait_timer_ms: Option<u64>,
    /// Default 30 days (`timeout` or `timeout_ms`).
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub branches: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// `?repository=owner/name` (absent: every repository).
#[derive(Debug, Deserialize)]
pub(crate) struct Scope {
    pub repository: Option<String>,
}

/// A client error naming the request field.
fn field_error(field: &str, message: impl std::fmt::Display) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        format!("request field `{field}`: {message}"),
    )
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn valid_setting_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.to_ascii_uppercase().starts_with("GITHUB_")
        && name.len() <= 255
}

const MAX_VALUE: usize = 64 * 1024;

/// Checks a spec; `Err`: the field and what is wrong with it.
pub(crate) fn validate(
    spec: &EnvironmentSpec,
) -> Result<StoredEnvironment, (&'static str, String)> {
    let duration = |field: &'static str,
                    text: &Option<String>,
                    millis: Option<u64>,
                    default: Duration|
     -> Result<Duration, (&'static str, String)> {
        match (text.as_deref().map(str::trim), millis) {
            (Some(t), Some(_)) if !t.is_empty() => Err((
                field,
                format!("give either {field} or {field}_ms, not both"),
            )),
            (Some(t), _) if !t.is_empty() => crate::config::parse_duration(t)
                .ok_or_else(|| (field, format!("`{t}` is not a duration like 30s, 5m or 1h"))),
            (_, Some(ms)) => Ok(Duration::from_millis(ms)),
            _ => Ok(default),
        }
    };
    let wait_timer = duration(
        "wait_timer",
        &spec.wait_timer,
        spec.wait_timer_ms,
        Duration::ZERO,
    )?;
    let timeout = duration("timeout", &spec.timeout, spec.timeout_ms, DEFAULT_TIMEOUT)?;
    if timeout.is_zero() {
        return Err(("timeout", "must be more than 0s".into()));
    }
    let clean =
        |field: &'static str, list: &[String]| -> Result<Vec<String>, (&'static str, String)> {
            let mut out: Vec<String> = Vec::new();
            for item in list {
                let item = item.trim();
                if item.is_empty() {
                    continue;
                }
                if item.len() > 255 || item.chars().any(char::is_control) {
                    return Err((field, format!("`{item}` is not a valid entry")));
                }
                if !out.iter().any(|o| o == item) {
                    out.push(item.to_owned());
                }
            }
            Ok(out)
        };
    let reviewers = clean("reviewers", &spec.reviewers)?;
    if let Some(bad) = reviewers.iter().find(|r| {
        !r.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    }) {
        return Err(("reviewers", format!("`{bad}` is not a user or group name")));
    }
    let branches = clean("branches", &spec.branches)?;
    let tags = clean("tags", &spec.tags)?;
    let required_approvals = match spec.required_approvals {
        None => u32::from(!reviewers.is_empty()),
        Some(0) if !reviewers.is_empty() => {
            return Err((
                "required_approvals",
                "must be at least 1 when reviewers are listed".into(),
            ));
        }
        Some(n) if reviewers.is_empty() && n > 0 => {
            return Err((
                "required_approvals",
                format!("is {n} but no reviewers are listed"),
            ));
        }
        Some(n) => n,
    };
    let url = spec.url.as_deref().map(str::trim).filter(|u| !u.is_empty());
    if let Some(u) = url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(("url", format!("`{u}` is not an http:// or https:// URL")));
    }
    let list = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Ok(StoredEnvironment {
        reviewers: list(&reviewers),
        required_approvals: i64::from(required_approvals),
        allow_self_approval: spec.allow_self_approval,
        wait_timer_ms: millis(wait_timer),
        timeout_ms: millis(timeout),
        branches: list(&branches),
        tags: list(&tags),
        url: url.map(str::to_owned),
        ..StoredEnvironment::default()
    })
}

/// Checks the path's name and `?repository=`: `Err` is the reply (400, 404).
fn scope(state: &AppState, name: &str, q: &Scope) -> Result<Option<String>, Response> {
    if !valid_name(name) {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            format!("environment name `{name}`: must be letters, digits, `-`, `_` or `.`"),
        ));
    }
    match q.repository.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(r) => {
            if state.repository(r).is_none() {
                return Err(error_response(
                    StatusCode::NOT_FOUND,
                    format!("unknown repository `{r}` (query parameter `repository`)"),
                ));
            }
            Ok(Some(r.to_owned()))
        }
    }
}

fn from_file(state: &AppState, repository: Option<&str>, name: &str) -> bool {
    state
        .config()
        .environments
        .iter()
        .any(|e| e.name == name && e.repository.as_deref() == repository)
}

fn config_managed(name: &str) -> Response {
    error_response(
        StatusCode::CONFLICT,
        format!("environment `{name}` is defined in the configuration file; change it there"),
    )
}

async fn audit(
    state: &AppState,
    actor: &str,
    repository: Option<&str>,
    name: &str,
    action: &str,
    detail: Option<String>,
) -> Result<(), ServerError> {
    let repository = match repository {
        Some(r) => state.db().repository_by_name(r).await?.map(|r| r.id),
        None => None,
    };
    let event = AuditEvent {
        repository,
        environment: Some(name.to_owned()),
        actor: actor.to_owned(),
        action: action.to_owned(),
        detail,
        ..AuditEvent::default()
    };
    state.db().audit(&event, now_ms()).await?;
    Ok(())
}

/// After a change of rules: reload the snapshot and let deployments waiting in `name` be
/// decided again (fewer reviewers, a shorter wait timer...).
async fn changed(state: &AppState, name: &str) -> Result<(), ServerError> {
    reload(state).await?;
    let waiting = state
        .db()
        .deployments(None, Some(name), None, &[DeploymentStatus::Waiting], 1000)
        .await?;
    let mut runs: Vec<_> = waiting.iter().map(|d| d.run).collect();
    runs.dedup();
    for run in runs {
        crate::scheduler::advance(state, run).await?;
    }
    super::deployments::wake();
    Ok(())
}

/// `PUT /api/v1/environments/{name}[?repository=owner/name]` (admin).
pub(super) async fn put_environment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<Scope>,
    body: Bytes,
) -> Response {
    let actor = match authorize(&state, &headers, Need::Admin) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let repository = match scope(&state, &name, &q) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if from_file(&state, repository.as_deref(), &name) {
        return config_managed(&name);
    }
    let spec: EnvironmentSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return error_response(StatusCode::BAD_REQUEST, format!("request body: {e}"));
        }
    };
    let mut row = match validate(&spec) {
        Ok(r) => r,
        Err((field, message)) => return field_error(field, message),
    };
    row.repository = repository.clone();
    row.name = name.clone();
    row.updated_by = actor.clone();
    let created = match state.db().put_environment(&row, now_ms()).await {
        Ok((_, created)) => created,
        Err(e) => return internal(e),
    };
    let detail = serde_json::json!({
        "reviewers": serde_json::from_str::<serde_json::Value>(&row.reviewers).unwrap_or_default(),
        "required_approvals": row.required_approvals,
        "allow_self_approval": row.allow_self_approval,
        "wait_timer_ms": row.wait_timer_ms,
        "timeout_ms": row.timeout_ms,
        "branches": serde_json::from_str::<serde_json::Value>(&row.branches).unwrap_or_default(),
        "tags": serde_json::from_str::<serde_json::Value>(&row.tags).unwrap_or_default(),
        "url": row.url,
    });
    let action = if created {
        "environment.created"
    } else {
        "environment.updated"
    };
    if let Err(e) = audit(
        &state,
        &actor,
        repository.as_deref(),
        &name,
        action,
        Some(detail.to_string()),
    )
    .await
    {
        return internal(e);
    }
    if let Err(e) = changed(&state, &name).await {
        return internal(e);
    }
    tracing::info!(environment = %name, repository = repository.as_deref().unwrap_or("*"), user = %actor, action, "Environment saved through the API.");
    match super::environment_dto(&state, &name, repository.as_deref()).await {
        Ok(dto) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, axum::Json(dto)).into_response()
        }
        Err(e) => internal(e),
    }
}

/// `DELETE /api/v1/environments/{name}[?repository=owner/name]` (admin).
pub(super) async fn delete_environment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<Scope>,
) -> Response {
    let actor = match authorize(&state, &headers, Need::Admin) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let repository = match scope(&state, &name, &q) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if from_file(&state, repository.as_deref(), &name) {
        return config_managed(&name);
    }
    match state
        .db()
        .delete_environment(repository.as_deref(), &name)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return error_response(
                StatusCode::NOT_FOUND,
                format!("no environment `{name}` defined through the API"),
            );
        }
        Err(e) => return internal(e),
    }
    if let Err(e) = audit(
        &state,
        &actor,
        repository.as_deref(),
        &name,
        "environment.deleted",
        None,
    )
    .await
    {
        return internal(e);
    }
    if let Err(e) = changed(&state, &name).await {
        return internal(e);
    }
    tracing::info!(environment = %name, user = %actor, "Environment deleted through the API.");
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingValue {
    value: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Secret,
    Variable,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Variable => "variable",
        }
    }
}

/// The stored environment a setting belongs to: `Err` is the reply (400, 404, 409).
async fn owner(
    state: &AppState,
    name: &str,
    q: &Scope,
    setting: &str,
) -> Result<(Option<String>, i64), Response> {
    let repository = scope(state, name, q)?;
    if !valid_setting_name(setting) {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            format!(
                "`{setting}` is not a valid name: letters, digits and `_`, not starting with a digit or GITHUB_"
            ),
        ));
    }
    if from_file(state, repository.as_deref(), name) {
        return Err(config_managed(name));
    }
    match state.db().environment_id(repository.as_deref(), name).await {
        Ok(Some(id)) => Ok((repository, id)),
        Ok(None) => Err(error_response(
            StatusCode::NOT_FOUND,
            format!("no environment `{name}` defined through the API (create it with PUT first)"),
        )),
        Err(e) => Err(internal(e)),
    }
}

async fn put_setting(
    state: AppState,
    headers: HeaderMap,
    name: String,
    setting: String,
    q: Scope,
    body: Bytes,
    kind: Kind,
) -> Response {
    let actor = match authorize(&state, &headers, Need::Admin) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (repository, id) = match owner(&state, &name, &q, &setting).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let value: SettingValue = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    if value.value.len() > MAX_VALUE {
        return field_error("value", format!("longer than {MAX_VALUE} bytes"));
    }
    let now = now_ms();
    let saved = match kind {
        Kind::Secret => {
            let aad = secret_aad(repository.as_deref(), &name, &setting);
            let sealed = state.key().seal(&aad, value.value.as_bytes());
            state
                .db()
                .put_environment_secret(id, &setting, &sealed, now)
                .await
        }
        Kind::Variable => {
            state
                .db()
                .put_environment_variable(id, &setting, &value.value, now)
                .await
        }
    };
    if let Err(e) = saved {
        return internal(e);
    }
    let action = format!("environment.{}.saved", kind.word());
    if let Err(e) = audit(
        &state,
        &actor,
        repository.as_deref(),
        &name,
        &action,
        Some(setting.clone()),
    )
    .await
    {
        return internal(e);
    }
    if let Err(e) = reload(&state).await {
        return internal(e);
    }
    tracing::info!(environment = %name, setting = %setting, kind = kind.word(), user = %actor, "Environment setting saved.");
    StatusCode::NO_CONTENT.into_response()
}

async fn delete_setting(
    state: AppState,
    headers: HeaderMap,
    name: String,
    setting: String,
    q: Scope,
    kind: Kind,
) -> Response {
    let actor = match authorize(&state, &headers, Need::Admin) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (repository, id) = match owner(&state, &name, &q, &setting).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let deleted = match kind {
        Kind::Secret => state.db().delete_environment_secret(id, &setting).await,
        Kind::Variable => state.db().delete_environment_variable(id, &setting).await,
    };
    match deleted {
        Ok(true) => {}
        Ok(false) => {
            return error_response(
                StatusCode::NOT_FOUND,
                format!("environment `{name}` has no {} `{setting}`", kind.word()),
            );
        }
        Err(e) => return internal(e),
    }
    let action = format!("environment.{}.deleted", kind.word());
    if let Err(e) = audit(
        &state,
        &actor,
        repository.as_deref(),
        &name,
        &action,
        Some(setting.clone()),
    )
    .await
    {
        return internal(e);
    }
    if let Err(e) = reload(&state).await {
        return internal(e);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn put_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, secret)): Path<(String, String)>,
    Query(q): Query<Scope>,
    body: Bytes,
) -> Response {
    put_setting(state, headers, name, secret, q, body, Kind::Secret).await
}

async fn delete_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, secret)): Path<(String, String)>,
    Query(q): Query<Scope>,
) -> Response {
    delete_setting(state, headers, name, secret, q, Kind::Secret).await
}

async fn put_variable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, var)): Path<(String, String)>,
    Query(q): Query<Scope>,
    body: Bytes,
) -> Response {
    put_setting(state, headers, name, var, q, body, Kind::Variable).await
}

async fn delete_variable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, var)): Path<(String, String)>,
    Query(q): Query<Scope>,
) -> Response {
    delete_setting(state, headers, name, var, q, Kind::Variable).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: serde_json::Value, expect: Result<(i64, i64, i64), (&str, &str)>) {
        let spec: EnvironmentSpec = serde_json::from_value(spec).expect("spec");
        match (validate(&spec), expect) {
            (Ok(row), Ok((approvals, wait, timeout))) => assert_eq!(
                (row.required_approvals, row.wait_timer_ms, row.timeout_ms),
                (approvals, wait, timeout)
            ),
            (Err((field, message)), Err((f, m))) => {
                assert_eq!(field, f);
                assert!(message.contains(m), "{message:?} should contain {m:?}");
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    const DAY30: i64 = 30 * 24 * 3600 * 1000;

    #[test]
    fn specs_are_checked_field_by_field() {
        use serde_json::json;
        check(json!({}), Ok((0, 0, DAY30)));
        check(json!({"reviewers": ["alice"]}), Ok((1, 0, DAY30)));
        check(
            json!({"reviewers": ["alice", "ops"], "required_approvals": 2, "wait_timer": "30s", "timeout_ms": 5000}),
            Ok((2, 30_000, 5000)),
        );
        check(
            json!({"wait_timer": "soon"}),
            Err(("wait_timer", "`soon` is not a duration")),
        );
        check(
            json!({"wait_timer": "1s", "wait_timer_ms": 5}),
            Err(("wait_timer", "not both")),
        );
        check(json!({"timeout": "0s"}), Err(("timeout", "more than 0s")));
        check(
            json!({"required_approvals": 2}),
            Err(("required_approvals", "no reviewers")),
        );
        check(
            json!({"reviewers": ["a"], "required_approvals": 0}),
            Err(("required_approvals", "at least 1")),
        );
        check(
            json!({"reviewers": ["a b"]}),
            Err(("reviewers", "`a b` is not a user")),
        );
        check(
            json!({"url": "javascript:alert(1)"}),
            Err(("url", "not an http")),
        );
        assert!(serde_json::from_value::<EnvironmentSpec>(json!({"reviewer": []})).is_err());
    }
}
