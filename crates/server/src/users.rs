//! Users: the configuration file's `[[user]]`s (read-only, "from config") and users managed
//! through the API (kept in the store, with argon2 password hashes and named API tokens
//! stored as SHA-256 hashes), merged into one directory that every permission check reads
//! (`api::authorize`, the UI's viewer, the environments' reviewer checks).
//!
//! The server works from an in-memory [`Snapshot`] (name → user, token hash → user), rebuilt
//! after every change made here and every [`REFRESH`] (another replica may have changed
//! something), so a check never waits on the database. When a token is used, the time is
//! noted in memory and written to the store every [`REFRESH`] (and before a token list is
//! shown).
//!
//! The server is open (no authentication, everyone acts as `anonymous` with every right)
//! only while there is no user at all: none in the file and none in the store. The first
//! user created through the open API must be an admin, and no change may leave the server
//! without an enabled admin.
//!
//! The web UI acts through the API in process with a session bearer
//! (`slipway-session.<sealed name and expiry>`, sealed with the server key), so a user
//! signed in with a password needs no API token for the pages to work.
//!
//! Routes (details in `docs/admin.md`):
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /api/v1/user` | anyone signed in | me |
//! | `PUT /api/v1/user/password` | a user of the store | change my password |
//! | `GET/POST /api/v1/user/tokens`, `DELETE /api/v1/user/tokens/{id}` | a user of the store | my tokens |
//! | `GET/POST /api/v1/users` | admin | list, create (with a password and/or a token) |
//! | `GET/PATCH/DELETE /api/v1/users/{name}` | admin | one user: role, groups, password, disabled |
//! | `GET/POST /api/v1/users/{name}/tokens`, `DELETE .../tokens/{id}` | admin | a user's tokens |
// The error of these helpers is the handler's reply (an axum `Response`).
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::sql::{TokenId, TokenRecord, UserRecord, UserSettings};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::api::{Need, authorize};
use crate::config::{Config, User};
use crate::{AppState, ServerError, error_response, internal, now_ms};

/// How often the snapshot is rebuilt from the store and token use is written back.
pub(crate) const REFRESH: Duration = Duration::from_secs(5);

/// The prefix of a session bearer (the UI acting through the API as a signed-in user).
pub(crate) const SESSION_PREFIX: &str = "slipway-session.";
const SESSION_AAD: &str = "slipway-api-session";
/// How long a session bearer is valid (the UI makes a new one for every request).
const SESSION_BEARER_MS: i64 = 10 * 60 * 1000;

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;

/// Names the server uses for itself in the audit trail.
const RESERVED: &[&str] = &["anonymous", "slipway"];

/// Where a user is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A `[[user]]` of the configuration file (read-only here).
    Config,
    /// Created through the API (kept in the store).
    Store,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Store => "api",
        }
    }
}

/// One user of the merged directory.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// For users of the store `token` is empty (their tokens are in [`Snapshot::tokens`]).
    pub user: User,
    pub source: Source,
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// What a token hash leads to.
#[derive(Debug, Clone)]
struct Credential {
    name: String,
    /// `None` for a `[[user]]`'s configured token.
    token: Option<TokenId>,
}

/// Every user and token, as of the last reload.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    members: BTreeMap<String, Member>,
    tokens: HashMap<[u8; 32], Credential>,
}

impl Snapshot {
    /// Merges the file's users (which win on a name clash) with the store's.
    fn build(config: &Config, stored: Vec<UserRecord>, tokens: Vec<TokenRecord>) -> Snapshot {
        let mut s = Snapshot::default();
        for u in &config.users {
            s.members.insert(
                u.name.clone(),
                Member {
                    user: u.clone(),
                    source: Source::Config,
                    password_hash: config.passwords.get(&u.name).cloned(),
                    disabled: false,
                    created_at: None,
                    updated_at: None,
                },
            );
            s.tokens.insert(
                digest(&u.token),
                Credential {
                    name: u.name.clone(),
                    token: None,
                },
            );
        }
        for r in stored {
            if s.members.contains_key(&r.name) {
                tracing::warn!(user = %r.name, "A user of the store has the name of a [[user]] of the configuration file; the file's wins.");
                continue;
            }
            let user = User {
                name: r.name.clone(),
                token: String::new(),
                role: r.settings.role,
                groups: r.settings.groups,
            };
            s.members.insert(
                r.name,
                Member {
                    user,
                    source: Source::Store,
                    password_hash: r.settings.password_hash,
                    disabled: r.settings.disabled,
                    created_at: Some(r.created_at),
                    updated_at: Some(r.updated_at),
                },
            );
        }
        for t in tokens {
            let Ok(bytes) = hex::decode(&t.token_hash) else {
                continue;
            };
            let Ok(hash) = <[u8; 32]>::try_from(bytes.as_slice()) else {
                continue;
            };
            if s.members
                .get(&t.user_name)
                .is_some_and(|m| m.source == Source::Store)
            {
                s.tokens.entry(hash).or_insert(Credential {
                    name: t.user_name,
                    token: Some(t.id),
                });
            }
        }
        s
    }

    /// No user at all: the server is open.
    pub(crate) fn is_open(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn member(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Enabled admins other than `except`.
    fn admins_besides(&self, except: &str) -> usize {
        self.members
            .values()
            .filter(|m| m.user.role == "admin" && !m.disabled && m.user.name != except)
            .count()
    }
}

/// The server's user directory (part of [`AppState`]).
#[derive(Default)]
pub(crate) struct Directory {
    current: RwLock<Arc<Snapshot>>,
    /// Token id → when it was last used, not yet written to the store.
    used: Mutex<HashMap<TokenId, i64>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl AppState {
    /// The user directory as of the last reload.
    pub(crate) fn users(&self) -> Arc<Snapshot> {
        self.0
            .users
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// No user at all (none in the configuration file, none in the store): the server is
    /// open, everyone acts as an anonymous admin.
    pub fn is_open(&self) -> bool {
        self.users().is_open()
    }

    /// Rebuilds the user directory from the configuration and the store.
    pub(crate) async fn reload_users(&self) -> Result<(), ServerError> {
        let stored = self.db().users().await?;
        let tokens = self.db().tokens(None).await?;
        let snapshot = Snapshot::build(self.config(), stored, tokens);
        *self
            .0
            .users
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        Ok(())
    }
}

/// The enabled user `name`.
pub(crate) fn by_name(state: &AppState, name: &str) -> Option<User> {
    state
        .users()
        .member(name)
        .filter(|m| !m.disabled)
        .map(|m| m.user.clone())
}

/// The enabled user a bearer token (an API token or a session bearer) belongs to.
pub(crate) fn by_token(state: &AppState, token: &str) -> Option<User> {
    if let Some(sealed) = token.strip_prefix(SESSION_PREFIX) {
        let sealed = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let text = state.key().open_string(SESSION_AAD, &sealed).ok()?;
        let (name, expires) = text.split_once('\n')?;
        if expires.parse::<i64>().ok()? < now_ms() {
            return None;
        }
        return by_name(state, name);
    }
    let snapshot = state.users();
    let credential = snapshot.tokens.get(&digest(token))?;
    let member = snapshot.member(&credential.name).filter(|m| !m.disabled)?;
    if member.source == Source::Config
        && !bool::from(member.user.token.as_bytes().ct_eq(token.as_bytes()))
    {
        return None;
    }
    if let Some(id) = credential.token {
        state
            .0
            .users
            .used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, now_ms());
    }
    Some(member.user.clone())
}

/// The caller of an API request: `Ok(None)` on an open server, `401` without a valid token.
pub(crate) fn caller(state: &AppState, headers: &HeaderMap) -> Result<Option<User>, Response> {
    if state.users().is_open() {
        return Ok(None);
    }
    let Some(token) = crate::agent_api::bearer(headers) else {
        return Err(error_response(
            StatusCode::UNAUTHORIZED,
            "missing token (Authorization: Bearer)",
        ));
    };
    match by_token(state, token) {
        Some(u) => Ok(Some(u)),
        None => Err(error_response(StatusCode::UNAUTHORIZED, "unknown token")),
    }
}

/// What a session cookie of `name` must carry to stay valid: a short digest of the user's
/// password hash (empty without one), so a new password ends older sessions. `None` when
/// the user is unknown or disabled.
pub(crate) fn session_stamp(state: &AppState, name: &str) -> Option<String> {
    let snapshot = state.users();
    let member = snapshot.member(name).filter(|m| !m.disabled)?;
    let hash = member.password_hash.as_deref().unwrap_or("");
    Some(hex::encode(&Sha256::digest(hash.as_bytes())[..8]))
}

/// A bearer that acts as `name` for a few minutes (for the UI's in-process API calls).
pub(crate) fn session_bearer(state: &AppState, name: &str) -> String {
    let expires = now_ms() + SESSION_BEARER_MS;
    let sealed = state
        .key()
        .seal(SESSION_AAD, format!("{name}\n{expires}").as_bytes());
    format!("{SESSION_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
}

/// Whether `password` signs `name` in: the argon2 hash when the user has one, else one of
/// their API tokens. Slow on purpose (argon2): call it from a blocking task.
pub(crate) fn check_password(state: &AppState, name: &str, password: &str) -> bool {
    let snapshot = state.users();
    let member = snapshot.member(name).filter(|m| !m.disabled);
    match member.and_then(|m| m.password_hash.as_deref()) {
        Some(hash) => Argon2::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok(),
        None => {
            // As slow as a real check, so the time does not tell which names exist.
            let _ = Argon2::default().verify_password(password.as_bytes(), dummy_hash());
            match member {
                None => false,
                Some(m) if m.source == Source::Config => {
                    bool::from(m.user.token.as_bytes().ct_eq(password.as_bytes()))
                }
                Some(_) => snapshot
                    .tokens
                    .get(&digest(password))
                    .is_some_and(|c| c.name == name),
            }
        }
    }
}

/// An argon2 hash of nothing in particular (made once), to verify against when there is no
/// real one.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        Argon2::default()
            .hash_password(b"no such user")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Writes noted token use to the store.
pub(crate) async fn flush_token_use(state: &AppState) {
    let used: Vec<(TokenId, i64)> = state
        .0
        .users
        .used
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    if let Err(error) = state.db().touch_tokens(&used).await {
        tracing::error!(%error, "Recording when tokens were used failed.");
    }
}

/// Keeps the directory fresh and writes token use back, every [`REFRESH`], until `stop`.
pub(crate) async fn maintain(state: AppState, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(REFRESH) => {}
        }
        flush_token_use(&state).await;
        if let Err(error) = state.reload_users().await {
            tracing::error!(%error, "Reloading users failed.");
        }
    }
    flush_token_use(&state).await;
}

// --- API ----------------------------------------------------------------------------------------

/// A user as the API shows it (never a password or token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserDto {
    pub name: String,
    pub role: String,
    pub groups: Vec<String>,
    /// `config` (the configuration file; read-only), `api` (the store) or `open` (no users:
    /// the anonymous user of an open server).
    pub source: String,
    pub has_password: bool,
    pub disabled: bool,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// An API token as listed (never its value).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenDto {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A token just created: the only time its value is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewTokenDto {
    pub id: i64,
    pub name: String,
    pub token: String,
    pub created_at: i64,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub name: String,
    /// `admin`, `maintainer` or `viewer` (default).
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Hashed with argon2 before it is stored.
    #[serde(default)]
    pub password: Option<String>,
    /// Create an API token of this name too (its value is in the reply, once).
    #[serde(default)]
    pub token: Option<String>,
}

/// The reply to `POST /api/v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedUser {
    pub user: UserDto,
    pub token: Option<NewTokenDto>,
}

/// `PATCH /api/v1/users/{name}`: the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// A new password (reset by an admin).
    #[serde(default)]
    pub password: Option<String>,
    /// `true`: the user can no longer sign in or use a token (sessions end too).
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// `POST .../tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    pub name: String,
}

/// `PUT /api/v1/user/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// Needed when the user has a password.
    #[serde(default)]
    pub current_password: Option<String>,
    pub password: String,
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/user", get(me))
        .route("/api/v1/user/password", put(change_my_password))
        .route("/api/v1/user/tokens", get(my_tokens).post(create_my_token))
        .route("/api/v1/user/tokens/{id}", delete(revoke_my_token))
        .route("/api/v1/users", get(list).post(create))
        .route(
            "/api/v1/users/{name}",
            get(show).patch(update).delete(remove),
        )
        .route(
            "/api/v1/users/{name}/tokens",
            get(user_tokens).post(create_user_token),
        )
        .route(
            "/api/v1/users/{name}/tokens/{id}",
            delete(revoke_user_token),
        )
}

fn bad_request(message: impl Into<String>) -> Response {
    error_response(StatusCode::BAD_REQUEST, message)
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("request body: {e}")))
}

fn dto(m: &Member) -> UserDto {
    UserDto {
        name: m.user.name.clone(),
        role: m.user.role.clone(),
        groups: m.user.groups.clone(),
        source: m.source.as_str().to_owned(),
        has_password: m.password_hash.is_some(),
        disabled: m.disabled,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn token_dto(t: TokenRecord) -> TokenDto {
    TokenDto {
        id: t.id.0,
        name: t.name,
        created_at: t.created_at,
        last_used_at: t.last_used_at,
    }
}

/// Letters, digits, `.`, `_`, `-`; 1 to 64 characters.
fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn check_name(name: &str) -> Result<(), Response> {
    if !valid_name(name) {
        return Err(bad_request(format!(
            "request field `name`: `{name}` is not a user name (1 to 64 letters, digits, `.`, `_`, `-`)"
        )));
    }
    if RESERVED.contains(&name) {
        return Err(bad_request(format!(
            "request field `name`: `{name}` is reserved"
        )));
    }
    Ok(())
}

fn check_role(role: &str) -> Result<(), Response> {
    if matches!(role, "admin" | "maintainer" | "viewer") {
        Ok(())
    } else {
        Err(bad_request(format!(
            "request field `role`: `{role}` is not admin, maintainer or viewer"
        )))
    }
}

fn check_groups(groups: &[String]) -> Result<Vec<String>, Response> {
    let mut out: Vec<String> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let g = g.trim();
        if !valid_name(g) {
            return Err(bad_request(format!(
                "request field `groups[{i}]`: `{g}` is not a group name (1 to 64 letters, digits, `.`, `_`, `-`)"
            )));
        }
        if !out.iter().any(|x| x == g) {
            out.push(g.to_owned());
        }
    }
    Ok(out)
}

fn check_password_rules(field: &str, password: &str) -> Result<(), Response> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(bad_request(format!(
            "request field `{field}`: must be at least {MIN_PASSWORD} characters"
        )));
    }
    if password.len() > 1024 {
        return Err(bad_request(format!(
            "request field `{field}`: longer than 1024 bytes"
        )));
    }
    Ok(())
}

fn check_token_name(name: &str) -> Result<String, Response> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(bad_request(
            "request field `name`: a token name is 1 to 64 printable characters",
        ));
    }
    Ok(name.to_owned())
}

/// Hashes a password with argon2 (on a blocking thread).
async fn hash_password(password: String) -> Result<String, Response> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
    })
    .await
    .map_err(internal)?
    .map_err(internal)
}

async fn verify_password(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

fn new_token_value() -> String {
    format!(
        "slw_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Records `actor`'s change of users in the audit trail.
async fn audit(
    state: &AppState,
    actor: &str,
    action: &str,
    detail: String,
) -> Result<(), Response> {
    let event = store::sql::AuditEvent {
        actor: actor.to_owned(),
        action: action.to_owned(),
        detail: Some(detail),
        ..store::sql::AuditEvent::default()
    };
    state.db().audit(&event, now_ms()).await.map_err(internal)
}

async fn reload(state: &AppState) -> Result<(), Response> {
    state.reload_users().await.map_err(internal)
}

/// The user `name` of the store (a `[[user]]` of the file: `409`; unknown: `404`).
fn stored_member(state: &AppState, name: &str) -> Result<Member, Response> {
    match state.users().member(name) {
        None => Err(error_response(
            StatusCode::NOT_FOUND,
            format!("no user `{name}`"),
        )),
        Some(m) if m.source == Source::Config => Err(error_response(
            StatusCode::CONFLICT,
            format!("user `{name}` is defined in the configuration file; change it there"),
        )),
        Some(m) => Ok(m.clone()),
    }
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let name = match authorize(&state, &headers, Need::Read) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match state.users().member(&name) {
        Some(m) => Json(dto(m)).into_response(),
        None => Json(UserDto {
            name,
            role: "admin".into(),
            groups: vec![],
            source: "open".into(),
            has_password: false,
            disabled: false,
            created_at: None,
            updated_at: None,
        })
        .into_response(),
    }
}

async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Admin) {
        return r;
    }
    Json(state.users().members().map(dto).collect::<Vec<_>>()).into_response()
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Admin) {
        return r;
    }
    match state.users().member(&name) {
        Some(m) => Json(dto(m)).into_response(),
        None => error_response(StatusCode::NOT_FOUND, format!("no user `{name}`")),
    }
}

/// Creates a token for the store's user `name` (after the caller's checks) and audits it.
async fn add_token(
    state: &AppState,
    actor: &str,
    name: &str,
    token_name: &str,
) -> Result<NewTokenDto, Response> {
    let token_name = check_token_name(token_name)?;
    let value = new_token_value();
    let now = now_ms();
    let id = match state
        .db()
        .create_token(name, &token_name, &hex::encode(digest(&value)), now)
        .await
    {
        Ok(Some(id)) => id,
        Ok(None) => {
            return Err(error_response(
                StatusCode::CONFLICT,
                format!(
                    "request field `name`: user `{name}` already has a token named `{token_name}`"
                ),
            ));
        }
        Err(e) => return Err(internal(e)),
    };
    audit(
        state,
        actor,
        "token.create",
        format!("{name}: {token_name}"),
    )
    .await?;
    reload(state).await?;
    Ok(NewTokenDto {
        id: id.0,
        name: token_name,
        token: value,
        created_at: now,
    })
}

async fn create(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let actor = match authorize(&state, &headers, Need::Admin) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let req: CreateUserRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match create_user(&state, &actor, req).await {
        Ok(created) => (StatusCode::CREATED, Json(created)).into_response(),
        Err(r) => r,
    }
}

async fn create_user(
    state: &AppState,
    actor: &str,
    req: CreateUserRequest,
) -> Result<CreatedUser, Response> {
    let name = req.name.trim().to_owned();
    check_name(&name)?;
    let role = req
        .role
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("viewer")
        .to_owned();
    check_role(&role)?;
    let groups = check_groups(&req.groups)?;
    let password = req.password.filter(|p| !p.is_empty());
    let token = req.token.filter(|t| !t.trim().is_empty());
    if password.is_none() && token.is_none() {
        return Err(bad_request(
            "request field `password`: give a password, a token name (`token`), or both",
        ));
    }
    if let Some(p) = &password {
        check_password_rules("password", p)?;
    }
    if let Some(t) = &token {
        check_token_name(t)?;
    }
    let snapshot = state.users();
    if snapshot.member(&name).is_some() {
        return Err(error_response(
            StatusCode::CONFLICT,
            format!("request field `name`: user `{name}` already exists"),
        ));
    }
    if snapshot.is_open() && role != "admin" {
        return Err(bad_request(format!(
            "request field `role`: the first user must be an admin (a {role} alone could not manage the server)"
        )));
    }
    let password_hash = match password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    let settings = UserSettings {
        role: role.clone(),
        groups,
        password_hash,
        disabled: false,
    };
    match state.db().create_user(&name, &settings, now_ms()).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(error_response(
                StatusCode::CONFLICT,
                format!("request field `name`: user `{name}` already exists"),
            ));
        }
        Err(e) => return Err(internal(e)),
    }
    audit(state, actor, "user.create", format!("{name} ({role})")).await?;
    reload(state).await?;
    let token = match token {
        Some(t) => Some(add_token(state, actor, &name, &t).await?),
        None => None,
    };
    tracing::info!(user = %name, %role, by = %actor, "User created.");
    let user = state
        .users()
        .member(&name)
        .map(dto)
        .ok_or_else(|| internal("the new user is not in the directory"))?;
    Ok(CreatedUser { user, token })
}

async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let actor = match authorize(&state, &headers, Need::Admin) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let req: UpdateUserRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match update_user(&state, &actor, &name, req).await {
        Ok(user) => Json(user).into_response(),
        Err(r) => r,
    }
}

async fn update_user(
    state: &AppState,
    actor: &str,
    name: &str,
    req: UpdateUserRequest,
) -> Result<UserDto, Response> {
    let member = stored_member(state, name)?;
    let mut settings = UserSettings {
        role: member.user.role.clone(),
        groups: member.user.groups.clone(),
        password_hash: member.password_hash.clone(),
        disabled: member.disabled,
    };
    let mut changes = Vec::new();
    if let Some(role) = req.role.as_deref().map(str::trim) {
        check_role(role)?;
        if role != settings.role {
            changes.push(format!("role {} -> {role}", settings.role));
            settings.role = role.to_owned();
        }
    }
    if let Some(groups) = &req.groups {
        let groups = check_groups(groups)?;
        if groups != settings.groups {
            changes.push(format!("groups [{}]", groups.join(", ")));
            settings.groups = groups;
        }
    }
    if let Some(disabled) = req.disabled
        && disabled != settings.disabled
    {
        changes.push(if disabled {
            "disabled".to_owned()
        } else {
            "enabled".to_owned()
        });
        settings.disabled = disabled;
    }
    if let Some(p) = &req.password {
        check_password_rules("password", p)?;
    }
    let was_admin = member.user.role == "admin" && !member.disabled;
    let is_admin = settings.role == "admin" && !settings.disabled;
    if was_admin && !is_admin && state.users().admins_besides(name) == 0 {
        return Err(error_response(
            StatusCode::CONFLICT,
            format!("user `{name}` is the last enabled admin; make another admin first"),
        ));
    }
    if let Some(p) = req.password {
        settings.password_hash = Some(hash_password(p).await?);
        changes.push("password reset".to_owned());
    }
    if changes.is_empty() {
        return Ok(dto(&member));
    }
    match state.db().update_user(name, &settings, now_ms()).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(error_response(
                StatusCode::NOT_FOUND,
                format!("no user `{name}`"),
            ));
        }
        Err(e) => return Err(internal(e)),
    }
    audit(
        state,
        actor,
        "user.update",
        format!("{name}: {}", changes.join("; ")),
    )
    .await?;
    reload(state).await?;
    state
        .users()
        .member(name)
        .map(dto)
        .ok_or_else(|| internal("the updated user is not in the directory"))
}

async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let actor = match authorize(&state, &headers, Need::Admin) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let member = match stored_member(&state, &name) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if member.user.role == "admin" && !member.disabled && state.users().admins_besides(&name) == 0 {
        return error_response(
            StatusCode::CONFLICT,
            format!("user `{name}` is the last enabled admin; make another admin first"),
        );
    }
    match state.db().delete_user(&name).await {
        Ok(true) => {}
        Ok(false) => return error_response(StatusCode::NOT_FOUND, format!("no user `{name}`")),
        Err(e) => return internal(e),
    }
    if let Err(r) = audit(&state, &actor, "user.delete", name.clone()).await {
        return r;
    }
    if let Err(r) = reload(&state).await {
        return r;
    }
    tracing::info!(user = %name, by = %actor, "User deleted.");
    StatusCode::NO_CONTENT.into_response()
}

async fn list_tokens(state: &AppState, name: &str) -> Response {
    if let Err(r) = stored_member(state, name) {
        return r;
    }
    flush_token_use(state).await;
    match state.db().tokens(Some(name)).await {
        Ok(t) => Json(t.into_iter().map(token_dto).collect::<Vec<_>>()).into_response(),
        Err(e) => internal(e),
    }
}

async fn revoke(state: &AppState, actor: &str, name: &str, id: i64) -> Response {
    if let Err(r) = stored_member(state, name) {
        return r;
    }
    let tokens = match state.db().tokens(Some(name)).await {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    let Some(token) = tokens.into_iter().find(|t| t.id.0 == id) else {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("user `{name}` has no token {id}"),
        );
    };
    match state.db().revoke_token(name, token.id).await {
        Ok(true) => {}
        Ok(false) => {
            return error_response(
                StatusCode::NOT_FOUND,
                format!("user `{name}` has no token {id}"),
            );
        }
        Err(e) => return internal(e),
    }
    if let Err(r) = audit(
        state,
        actor,
        "token.revoke",
        format!("{name}: {}", token.name),
    )
    .await
    {
        return r;
    }
    if let Err(r) = reload(state).await {
        return r;
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn create_token_for(state: &AppState, actor: &str, name: &str, body: &Bytes) -> Response {
    if let Err(r) = stored_member(state, name) {
        return r;
    }
    let req: CreateTokenRequest = match parse_body(body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match add_token(state, actor, name, &req.name).await {
        Ok(t) => (StatusCode::CREATED, Json(t)).into_response(),
        Err(r) => r,
    }
}

async fn user_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Admin) {
        return r;
    }
    list_tokens(&state, &name).await
}

async fn create_user_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    match authorize(&state, &headers, Need::Admin) {
        Ok(actor) => create_token_for(&state, &actor, &name, &body).await,
        Err(r) => r,
    }
}

async fn revoke_user_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, i64)>,
) -> Response {
    match authorize(&state, &headers, Need::Admin) {
        Ok(actor) => revoke(&state, &actor, &name, id).await,
        Err(r) => r,
    }
}

/// The signed-in user of a self-service request (an open server has none: `409`).
fn myself(state: &AppState, headers: &HeaderMap) -> Result<String, Response> {
    let name = authorize(state, headers, Need::Read)?;
    if state.users().is_open() {
        return Err(error_response(
            StatusCode::CONFLICT,
            "the server has no users (it is open): create an admin first",
        ));
    }
    Ok(name)
}

async fn my_tokens(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match myself(&state, &headers) {
        Ok(me) => list_tokens(&state, &me).await,
        Err(r) => r,
    }
}

async fn create_my_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match myself(&state, &headers) {
        Ok(me) => create_token_for(&state, &me, &me, &body).await,
        Err(r) => r,
    }
}

async fn revoke_my_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    match myself(&state, &headers) {
        Ok(me) => revoke(&state, &me, &me, id).await,
        Err(r) => r,
    }
}

async fn change_my_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let me = match myself(&state, &headers) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let member = match stored_member(&state, &me) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let req: ChangePasswordRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Some(hash) = member.password_hash.clone() {
        let current = req.current_password.clone().unwrap_or_default();
        if current.is_empty() {
            return bad_request("request field `current_password`: required to change a password");
        }
        if !verify_password(hash, current).await {
            return error_response(
                StatusCode::FORBIDDEN,
                "request field `current_password`: wrong password",
            );
        }
    }
    if let Err(r) = check_password_rules("password", &req.password) {
        return r;
    }
    let hash = match hash_password(req.password).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let settings = UserSettings {
        role: member.user.role.clone(),
        groups: member.user.groups.clone(),
        password_hash: Some(hash),
        disabled: member.disabled,
    };
    match state.db().update_user(&me, &settings, now_ms()).await {
        Ok(true) => {}
        Ok(false) => return error_response(StatusCode::NOT_FOUND, format!("no user `{me}`")),
        Err(e) => return internal(e),
    }
    if let Err(r) = audit(
        &state,
        &me,
        "user.password",
        format!("{me}: changed their password"),
    )
    .await
    {
        return r;
    }
    if let Err(r) = reload(&state).await {
        return r;
    }
    StatusCode::NO_CONTENT.into_response()
}

// --- auditing the repositories' admin API ------------------------------------------------------

/// What a successful mutating request of the repositories' API did, for the audit trail:
/// `(action, repository or None, detail)`. `None` for anything else.
fn admin_action(
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Option<(&'static str, Option<String>, String)> {
    let rest = path.strip_prefix("/api/v1/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let verb = match *method {
        Method::POST => "create",
        Method::PUT => "put",
        Method::DELETE => "delete",
        _ => return None,
    };
    match parts.as_slice() {
        ["repositories"] if verb == "create" => {
            let name = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_owned))
                .unwrap_or_default();
            Some(("repository.create", Some(name.clone()), name))
        }
        ["repositories", owner, name] => {
            let full = format!("{owner}/{name}");
            let action = if verb == "delete" {
                "repository.delete"
            } else {
                "repository.update"
            };
            Some((action, Some(full.clone()), full))
        }
        [
            "repositories",
            owner,
            name,
            kind @ ("secrets" | "variables"),
            setting,
        ] => {
            let full = format!("{owner}/{name}");
            Some((
                setting_action(kind, verb)?,
                Some(full.clone()),
                format!("repo:{full} {setting}"),
            ))
        }
        [
            "organizations",
            org,
            kind @ ("secrets" | "variables"),
            setting,
        ] => Some((
            setting_action(kind, verb)?,
            None,
            format!("org:{org} {setting}"),
        )),
        ["repositories", owner, name, "caches"] if verb == "delete" => {
            let full = format!("{owner}/{name}");
            let filter = query.unwrap_or("");
            Some((
                "cache.delete",
                Some(full.clone()),
                format!("{full} {filter}"),
            ))
        }
        ["repositories", owner, name, "caches", id] if verb == "delete" => {
            let full = format!("{owner}/{name}");
            Some((
                "cache.delete",
                Some(full.clone()),
                format!("{full} entry {id}"),
            ))
        }
        _ => None,
    }
}

fn setting_action(kind: &str, verb: &str) -> Option<&'static str> {
    Some(match (kind, verb) {
        ("secrets", "put") => "secret.put",
        ("secrets", "delete") => "secret.delete",
        ("variables", "put") => "variable.put",
        ("variables", "delete") => "variable.delete",
        _ => return None,
    })
}

/// Middleware: records every successful change through the repositories' API (repositories,
/// secrets, variables) in the audit trail with the acting user. Never a secret's value.
pub(crate) async fn audit_admin_changes(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    // Anything else (reads, the agents' uploads) passes untouched.
    if admin_action(req.method(), req.uri().path(), req.uri().query(), b"").is_none() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    // Only a repository's creation needs the body (its name): small JSON.
    let (body, bytes) = if parts.uri.path() == "/api/v1/repositories" {
        match axum::body::to_bytes(body, 1024 * 1024).await {
            Ok(b) => (Body::from(b.clone()), b),
            Err(e) => return bad_request(format!("request body: {e}")),
        }
    } else {
        (body, Bytes::new())
    };
    let actor = authorize(&state, &parts.headers, Need::Read).ok();
    let action = admin_action(&parts.method, parts.uri.path(), parts.uri.query(), &bytes);
    let response = next.run(Request::from_parts(parts, body)).await;
    if response.status().is_success()
        && let (Some(actor), Some((action, repository, detail))) = (actor, action)
    {
        let repository = match repository {
            Some(name) => state
                .db()
                .repository_by_name(&name)
                .await
                .ok()
                .flatten()
                .map(|r| r.id),
            None => None,
        };
        let event = store::sql::AuditEvent {
            repository,
            actor,
            action: action.to_owned(),
            detail: Some(detail),
            ..store::sql::AuditEvent::default()
        };
        if let Err(error) = state.db().audit(&event, now_ms()).await {
            tracing::error!(%error, "Recording an audit event failed.");
        }
    }
    response
}

/// `router` with [`audit_admin_changes`] around it.
pub(crate) fn audited(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    router.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        audit_admin_changes,
    ))
}

// --- OpenAPI ------------------------------------------------------------------------------------

/// The users' schemas for the OpenAPI document.
pub(crate) fn openapi_schemas() -> serde_json::Value {
    serde_json::json!({
        "User": {"type": "object", "properties": {
            "name": {"type": "string"}, "role": {"type": "string", "enum": ["admin", "maintainer", "viewer"]},
            "groups": {"type": "array", "items": {"type": "string"}},
            "source": {"type": "string", "enum": ["config", "api", "open"], "description": "config: a [[user]] of the configuration file (read-only); api: kept in the store; open: the anonymous user of a server without users"},
            "has_password": {"type": "boolean"}, "disabled": {"type": "boolean"},
            "created_at": {"type": ["integer", "null"]}, "updated_at": {"type": ["integer", "null"]}
        }},
        "CreateUserRequest": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
            "role": {"type": "string", "enum": ["admin", "maintainer", "viewer"], "default": "viewer"},
            "groups": {"type": "array", "items": {"type": "string"}},
            "password": {"type": "string", "writeOnly": true, "minLength": MIN_PASSWORD, "description": "hashed with argon2"},
            "token": {"type": "string", "description": "also create an API token of this name (its value is in the reply, once)"}
        }, "description": "a password, a token name, or both"},
        "CreatedUser": {"type": "object", "properties": {
            "user": {"$ref": "#/components/schemas/User"},
            "token": {"oneOf": [{"$ref": "#/components/schemas/NewToken"}, {"type": "null"}]}
        }},
        "UpdateUserRequest": {"type": "object", "additionalProperties": false, "properties": {
            "role": {"type": "string", "enum": ["admin", "maintainer", "viewer"]},
            "groups": {"type": "array", "items": {"type": "string"}},
            "password": {"type": "string", "writeOnly": true, "minLength": MIN_PASSWORD},
            "disabled": {"type": "boolean"}
        }},
        "Token": {"type": "object", "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"}, "created_at": {"type": "integer"},
            "last_used_at": {"type": ["integer", "null"]}
        }},
        "NewToken": {"type": "object", "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"}, "created_at": {"type": "integer"},
            "token": {"type": "string", "description": "the value: shown this once, stored only as a SHA-256 hash"}
        }},
        "CreateTokenRequest": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {"name": {"type": "string"}}},
        "ChangePasswordRequest": {"type": "object", "required": ["password"], "additionalProperties": false, "properties": {
            "current_password": {"type": "string", "writeOnly": true, "description": "required when the user has a password"},
            "password": {"type": "string", "writeOnly": true, "minLength": MIN_PASSWORD}
        }}
    })
}

/// The users' paths for the OpenAPI document.
pub(crate) fn openapi_paths() -> serde_json::Value {
    use serde_json::json;
    let body = |s: &str| json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{s}")}}}});
    let one = |s: &str| json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{s}")}}});
    let many = |s: &str| json!({"application/json": {"schema": {"type": "array", "items": {"$ref": format!("#/components/schemas/{s}")}}}});
    let err = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
    let errors = |mut ok: serde_json::Value| {
        if let Some(map) = ok.as_object_mut() {
            map.insert(
                "400".into(),
                json!({"description": "invalid field (named in the error)", "content": err}),
            );
            map.insert(
                "401".into(),
                json!({"description": "missing or unknown token", "content": err}),
            );
            map.insert("403".into(), json!({"description": "not allowed (the role is named in the error)", "content": err}));
            map.insert(
                "404".into(),
                json!({"description": "no such user or token", "content": err}),
            );
            map.insert("409".into(), json!({"description": "a name that exists, a user of the configuration file, or the last enabled admin", "content": err}));
        }
        ok
    };
    let name =
        json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}});
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}});
    json!({
        "/api/v1/user": {"get": {
            "summary": "Who I am (any signed-in user; the anonymous admin on an open server)",
            "responses": errors(json!({"200": {"description": "me", "content": one("User")}}))
        }},
        "/api/v1/user/password": {"put": {
            "summary": "Change my password (a user of the store; the current password when there is one)",
            "requestBody": body("ChangePasswordRequest"),
            "responses": errors(json!({"204": {"description": "changed"}}))
        }},
        "/api/v1/user/tokens": {
            "get": {"summary": "My API tokens (never their values)", "responses": errors(json!({"200": {"description": "tokens", "content": many("Token")}}))},
            "post": {"summary": "Create an API token for me; its value is in the reply, once", "requestBody": body("CreateTokenRequest"),
                "responses": errors(json!({"201": {"description": "the token", "content": one("NewToken")}}))}
        },
        "/api/v1/user/tokens/{id}": {"delete": {
            "summary": "Revoke one of my tokens", "parameters": [id],
            "responses": errors(json!({"204": {"description": "revoked"}}))
        }},
        "/api/v1/users": {
            "get": {"summary": "Every user, from the configuration file and the store (admin)", "responses": errors(json!({"200": {"description": "users", "content": many("User")}}))},
            "post": {"summary": "Create a user with a password and/or an API token (admin; on an open server the first user, an admin)", "requestBody": body("CreateUserRequest"),
                "responses": errors(json!({"201": {"description": "the user (and the token's value, once)", "content": one("CreatedUser")}}))}
        },
        "/api/v1/users/{name}": {
            "get": {"summary": "One user (admin)", "parameters": [name], "responses": errors(json!({"200": {"description": "the user", "content": one("User")}}))},
            "patch": {"summary": "Change a user's role, groups or password, disable or enable them (admin)", "parameters": [name], "requestBody": body("UpdateUserRequest"),
                "responses": errors(json!({"200": {"description": "the user", "content": one("User")}}))},
            "delete": {"summary": "Delete a user and their tokens (admin)", "parameters": [name], "responses": errors(json!({"204": {"description": "deleted"}}))}
        },
        "/api/v1/users/{name}/tokens": {
            "get": {"summary": "A user's API tokens (admin)", "parameters": [name], "responses": errors(json!({"200": {"description": "tokens", "content": many("Token")}}))},
            "post": {"summary": "Create an API token for a user (admin); its value is in the reply, once", "parameters": [name], "requestBody": body("CreateTokenRequest"),
                "responses": errors(json!({"201": {"description": "the token", "content": one("NewToken")}}))}
        },
        "/api/v1/users/{name}/tokens/{id}": {"delete": {
            "summary": "Revoke a user's token (admin)", "parameters": [name, id],
            "responses": errors(json!({"204": {"description": "revoked"}}))
        }}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, token: &str, role: &str) -> User {
        User {
            name: name.into(),
            token: token.into(),
            role: role.into(),
            groups: vec![],
        }
    }

    fn stored(id: i64, name: &str, role: &str, disabled: bool) -> UserRecord {
        UserRecord {
            id: store::sql::UserId(id),
            name: name.into(),
            settings: UserSettings {
                role: role.into(),
                groups: vec!["ops".into()],
                password_hash: None,
                disabled,
            },
            created_at: 1,
            updated_at: 2,
        }
    }

    fn token(id: i64, user: &str, value: &str) -> TokenRecord {
        TokenRecord {
            id: TokenId(id),
            user: store::sql::UserId(0),
            user_name: user.into(),
            name: "t".into(),
            token_hash: hex::encode(digest(value)),
            created_at: 1,
            last_used_at: None,
        }
    }

    #[test]
    fn the_file_and_the_store_merge_and_the_file_wins() {
        let config = Config {
            users: vec![user("alice", "a-token", "admin")],
            ..Config::default()
        };
        let s = Snapshot::build(
            &config,
            vec![
                stored(1, "alice", "viewer", false),
                stored(2, "bob", "maintainer", false),
                stored(3, "dan", "admin", true),
            ],
            vec![token(1, "alice", "shadowed"), token(2, "bob", "b-token")],
        );
        assert!(!s.is_open());
        assert_eq!(
            s.member("alice").map(|m| (m.source, m.user.role.as_str())),
            Some((Source::Config, "admin"))
        );
        assert_eq!(
            s.member("bob").map(|m| m.user.groups.clone()),
            Some(vec!["ops".to_owned()])
        );
        assert!(
            !s.tokens.contains_key(&digest("shadowed")),
            "a hidden user's tokens are not usable"
        );
        assert_eq!(
            s.tokens.get(&digest("b-token")).map(|c| c.name.as_str()),
            Some("bob")
        );
        assert_eq!(
            s.tokens.get(&digest("a-token")).map(|c| c.name.as_str()),
            Some("alice")
        );
        assert_eq!(s.admins_besides("alice"), 0, "dan is disabled");
        assert_eq!(s.admins_besides("bob"), 1);
        assert!(Snapshot::build(&Config::default(), vec![], vec![]).is_open());
    }

    #[test]
    fn repository_api_changes_are_named_for_the_audit_trail() {
        let check = |m: Method, p: &str, body: &str, expect: Option<(&str, Option<&str>, &str)>| {
            let got = admin_action(&m, p, None, body.as_bytes());
            let got = got.as_ref().map(|(a, r, d)| (*a, r.as_deref(), d.as_str()));
            assert_eq!(got, expect, "{m} {p}");
        };
        check(
            Method::POST,
            "/api/v1/repositories",
            r#"{"name":"team/app"}"#,
            Some(("repository.create", Some("team/app"), "team/app")),
        );
        check(
            Method::PUT,
            "/api/v1/repositories/team/app",
            "",
            Some(("repository.update", Some("team/app"), "team/app")),
        );
        check(
            Method::DELETE,
            "/api/v1/repositories/team/app",
            "",
            Some(("repository.delete", Some("team/app"), "team/app")),
        );
        check(
            Method::PUT,
            "/api/v1/repositories/team/app/secrets/TOKEN",
            r#"{"value":"x"}"#,
            Some(("secret.put", Some("team/app"), "repo:team/app TOKEN")),
        );
        check(
            Method::DELETE,
            "/api/v1/organizations/team/variables/V",
            "",
            Some(("variable.delete", None, "org:team V")),
        );
        check(
            Method::POST,
            "/api/v1/repositories/team/app/secrets/TOKEN",
            "",
            None,
        );
        check(Method::PUT, "/api/v1/runs/1", "", None);
        check(
            Method::DELETE,
            "/api/v1/repositories/team/app/caches/7",
            "",
            Some(("cache.delete", Some("team/app"), "team/app entry 7")),
        );
        check(
            Method::POST,
            "/api/v1/agent/jobs/1/caches/2/commit",
            "",
            None,
        );
        let by_key = admin_action(
            &Method::DELETE,
            "/api/v1/repositories/team/app/caches",
            Some("key=npm"),
            b"",
        );
        assert_eq!(
            by_key.map(|(a, _, d)| (a, d)),
            Some(("cache.delete", "team/app key=npm".to_owned()))
        );
    }

    #[test]
    fn names_roles_and_passwords_are_checked() {
        assert!(check_name("bob.smith-2_x").is_ok());
        for bad in ["", "a b", "a/b", "anonymous", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_role("maintainer").is_ok());
        assert!(check_role("root").is_err());
        assert!(check_password_rules("password", "1234567").is_err());
        assert!(check_password_rules("password", "12345678").is_ok());
        assert_eq!(
            check_groups(&[" ops ".into(), "ops".into(), "dev".into()]).ok(),
            Some(vec!["ops".into(), "dev".into()])
        );
        assert!(check_groups(&["a b".into()]).is_err());
    }
}
