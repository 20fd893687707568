//! An OCI distribution registry (spec v1.1): the routes of `slipway registry`, and the same
//! routes under `/v2/` of `slipway server`.
//!
//! - [`Registry`]: the state (stores, [`Options`], upload sessions, metrics); cheap to clone.
//! - [`router`]: the axum routes under `/v2/` (including the token endpoint `/v2/token`).
//! - [`serve`]: the standalone server on a listener, with `/metrics` and `/healthz`, plus
//!   the maintenance task that expires abandoned upload sessions.
//! - [`gc::collect`]: garbage collection of unreferenced blobs and abandoned uploads.
//!
//! Content lives in `store::blob`: blobs once per digest across repositories; per-repository
//! records (tags, manifest revisions, blob links, referrers) in the record store. Uploads
//! stream to a spool file, hashed as they arrive, and become blobs only once the digest
//! verifies. See `docs/registry.md` for configuration, the auth model and storage layout.
//!
//! What it does not do: TLS (put it behind a proxy), schema-1 manifests, sha512 digests.

mod api;
pub mod auth;
pub mod browse;
mod error;
pub mod gc;
mod manifest;
mod metrics;
pub mod path;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{any, get},
    Router,
};
use serde::{Deserialize, Serialize};
use store::blob::{BlobStore, MetaStore, SpoolFile};
use tokio_util::sync::CancellationToken;

pub use auth::AuthConfigError;
pub use error::{Code, Error};
pub use metrics::Metrics;

/// Registry configuration (the `[registry]` part of a config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    pub auth: AuthOptions,
    pub limits: Limits,
    /// An upload session not written to for this long is abandoned and removed.
    pub upload_expiry_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { auth: AuthOptions::default(), limits: Limits::default(), upload_expiry_secs: 3600 }
    }
}

/// Users, anonymous access and the token endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthOptions {
    /// No users: auth is off and anyone may pull and push.
    #[serde(rename = "user")]
    pub users: Vec<UserOptions>,
    /// With users configured: may unauthenticated clients pull?
    pub anonymous_read: bool,
    /// HMAC key for issued tokens; random per process when unset.
    pub token_key: Option<String>,
    pub token_ttl_secs: u64,
    /// The token endpoint URL in challenges; default `http://<Host header>/v2/token`.
    pub realm: Option<String>,
    pub service: String,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions { users: Vec::new(), anonymous_read: false, token_key: None, token_ttl_secs: 300, realm: None, service: "slipway-registry".to_owned() }
    }
}

/// One user: a password (for `docker login`) and/or a token (also usable as the password,
/// or directly as `Authorization: Bearer`), and the repositories it may pull and push
/// (globs: `*` matches within one path component, `**` across `/`; push implies pull).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserOptions {
    pub name: String,
    pub password: Option<String>,
    pub token: Option<String>,
    pub pull: Vec<String>,
    pub push: Vec<String>,
}

/// Size limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_manifest_bytes: u64,
    /// Largest blob accepted (`None`: unlimited).
    pub max_blob_bytes: Option<u64>,
    /// Most concurrent upload sessions.
    pub max_upload_sessions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_manifest_bytes: 4 << 20, max_blob_bytes: None, max_upload_sessions: 10_000 }
    }
}

/// An upload in progress.
pub(crate) struct Session {
    pub repo: String,
    pub file: tokio::sync::Mutex<Option<SpoolFile>>,
    pub last_active: Mutex<Instant>,
}

pub(crate) struct Inner {
    pub blobs: Arc<dyn BlobStore>,
    pub meta: Arc<dyn MetaStore>,
    pub options: Options,
    pub auth: auth::Auth,
    pub sessions: Mutex<HashMap<String, Arc<Session>>>,
    pub metrics: Metrics,
}

/// The registry: its stores, options, upload sessions and metrics.
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("blobs", &self.inner.blobs).field("auth", &self.inner.auth).finish()
    }
}

impl Registry {
    pub fn new(blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetaStore>, options: Options) -> Result<Self, AuthConfigError> {
        let auth = auth::Auth::new(&options.auth)?;
        Ok(Registry {
            inner: Arc::new(Inner { blobs, meta, options, auth, sessions: Mutex::new(HashMap::new()), metrics: Metrics::default() }),
        })
    }

    /// The Prometheus text exposition of this registry's metrics.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render(self.session_count())
    }

    pub fn session_count(&self) -> usize {
        self.inner.sessions.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Remove upload sessions idle for longer than `expiry` (and spool files left by
    /// sessions lost in a restart). Returns how many sessions were removed.
    pub async fn expire_sessions(&self, expiry: Duration) -> usize {
        let expired: Vec<(String, Arc<Session>)> = {
            let sessions = self.inner.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions
                .iter()
                .filter(|(_, s)| s.last_active.lock().unwrap_or_else(|p| p.into_inner()).elapsed() > expiry)
                .map(|(id, s)| (id.clone(), s.clone()))
                .collect()
        };
        let mut removed = 0;
        for (id, session) in expired {
            // A session busy with a request is not idle.
            let Ok(mut file) = session.file.try_lock() else { continue };
            self.inner.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            if let Some(file) = file.take() {
                file.discard().await;
            }
            tracing::info!(upload = %id, repository = %session.repo, "Upload session expired.");
            removed += 1;
        }
        // Spool files of sessions lost in a restart.
        let _ = self.inner.blobs.spool().remove_older_than(expiry).await;
        removed
    }

    /// Recount stored bytes for the storage gauge.
    pub async fn refresh_storage_gauge(&self) {
        if let Ok(blobs) = self.inner.blobs.list().await {
            let total: u64 = blobs.iter().map(|(_, m)| m.size).sum();
            self.inner.metrics.storage_bytes.store(i64::try_from(total).unwrap_or(i64::MAX), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Periodic upkeep until `shutdown`: expire sessions, recount storage.
    ///
    /// # Cancel safety
    /// Cancel safe: each round is idempotent.
    pub async fn maintain(&self, shutdown: CancellationToken) {
        let period = Duration::from_secs((self.inner.options.upload_expiry_secs / 4).clamp(1, 60));
        loop {
            self.expire_sessions(Duration::from_secs(self.inner.options.upload_expiry_secs)).await;
            self.refresh_storage_gauge().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    }
}

/// The registry's routes: `/v2/`, `/v2/token` and everything under `/v2/`.
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/v2/token", get(api::token))
        .route("/v2", any(api::dispatch_base))
        .route("/v2/", any(api::dispatch_base))
        .route("/v2/{*rest}", any(api::dispatch))
        .layer(axum::middleware::from_fn_with_state(registry.clone(), access_log))
        .with_state(registry)
}

/// Access log and request metrics for every registry request.
async fn access_log(State(registry): State<Registry>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = match path.strip_prefix("/v2/") {
        Some("token") => "token",
        Some(rest) => path::parse(rest).map_or("invalid", |r| r.label()),
        None => "base",
    };
    let response = next.run(request).await;
    let status = response.status().as_u16();
    registry.inner.metrics.request(method.as_str(), route, status);
    tracing::info!(
        target: "slipway::registry::access",
        method = %method,
        path = %path,
        route,
        status,
        elapsed_ms = start.elapsed().as_secs_f64() * 1000.0,
        "Request."
    );
    response
}

/// Serve the registry on `listener` until `shutdown`, with `/metrics` and `/healthz`.
/// Runs [`Registry::maintain`] alongside; both are drained before returning.
pub async fn serve(listener: tokio::net::TcpListener, registry: Registry, shutdown: CancellationToken) -> std::io::Result<()> {
    let metrics_registry = registry.clone();
    let app = router(registry.clone())
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let registry = metrics_registry.clone();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], registry.render_metrics()).into_response() }
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") });
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn({
        let shutdown = shutdown.clone();
        async move { registry.maintain(shutdown).await }
    });
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).await;
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    result
}
