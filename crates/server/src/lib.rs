//! The slipway CI server as an axum application: webhooks in, runs out.
//!
//! A push webhook (`hooks`) becomes runs (`trigger`: fetch the commit into a bare mirror,
//! read and compile the workflows at it, apply `on:` filters); the runs' jobs wait in the SQL
//! store until an agent leases them over the agent protocol (`agent_api`, long-poll woken by a
//! `Notify`); results advance the run (`scheduler`: needs, job `if:`, lease expiry), and the
//! outcome goes back to the forge as a commit status (`status`). The REST API (`api`) lists
//! runs, jobs and logs (also live, as Server-Sent Events). The agent itself (`agent`) is the
//! same code whether embedded in the server or run as `slipway agent`.
//!
//! Entry points: [`AppState::new`], [`app`] (the `Router`, for tests with `oneshot`) and
//! [`run`] (serve on a listener you bind, with the background tasks, until `shutdown`).
//!
//! Repositories, their secrets and variables live in the store (`repos`: registered from the
//! configuration file and through the API, secrets sealed with the server key — `secrets`);
//! artifacts' contents in a blob store (files under `--data` or S3), their manifests in the
//! store (`artifacts`); `actions/cache` entries likewise (`caches`: archives in the blob store,
//! keys and scopes in the store, shared by every agent). Logs are not blobs: their chunks are
//! rows of the store, so that live followers read small appends. Environments come from the
//! configuration file and from the API (`environments::stored`, merged; re-read before every
//! gate decision).
//!
//! Users (`users`): the configuration file's `[[user]]`s and users created through the API
//! (kept in the store, with argon2 passwords and hashed API tokens), merged into one
//! in-memory directory that every permission check reads; changes through the API are in
//! the audit trail with the acting user (docs/admin.md).

pub mod agent;
mod agent_api;
mod agent_artifacts;
mod api;
mod artifacts;
mod caches;
pub mod config;
pub mod environments;
pub mod git;
mod gitops_api;
pub mod hooks;
mod metrics;
pub mod openapi;
mod poll;
mod repos;
mod scheduler;
pub mod secrets;
pub mod status;
pub mod trigger;
mod ui;
mod users;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use store::sql::{Db, RunId};
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, RepositoryConfig};
use crate::status::{StatusState, StatusUpdate};

/// An error of the server that is not a client's fault.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Sql(#[from] store::sql::SqlError),
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error(transparent)]
    Key(#[from] secrets::KeyError),
    #[error(transparent)]
    Blob(#[from] store::blob::BlobError),
    #[error("creating the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
    #[error("{0}")]
    Internal(String),
}

/// How to build an [`AppState`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Everything the server keeps on disk goes under here (SQLite file, git mirrors, agent
    /// work directories).
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; `None`: `{data_dir}/slipway.db`.
    pub database_url: Option<String>,
    pub config: Config,
    /// Run the embedded agent (serving every label on the host executor).
    pub embedded_agent: bool,
    /// Jobs the embedded agent runs at once.
    pub embedded_agent_capacity: usize,
    /// First delay between commit-status delivery attempts (doubles each retry).
    pub status_backoff: Duration,
    /// Attempts per commit status before giving up.
    pub status_attempts: u32,
    /// The OCI registry served under `/v2/` (the same routes as `slipway registry`).
    pub registry: Option<registry::Registry>,
}

impl Options {
    pub fn new(data_dir: PathBuf, config: Config) -> Options {
        Options {
            data_dir,
            database_url: None,
            config,
            embedded_agent: true,
            embedded_agent_capacity: 1,
            status_backoff: Duration::from_millis(500),
            status_attempts: 6,
            registry: None,
        }
    }
}

/// What changed (for SSE followers and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A step or a job of the run changed.
    Run(i64),
    /// Only log lines of the run arrived (its pages need not be redrawn; log followers wake).
    Log(i64),
    /// The run finished.
    RunFinished(i64),
    /// A poll of the repository (by name) completed.
    Polled(String),
}

/// Shared state of the server (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    db: Db,
    options: Options,
    /// Every active repository, secrets and variables merged (see `repos`).
    repositories: RwLock<repos::Snapshot>,
    /// Woken when the repositories snapshot changed (the polling supervisor follows it).
    repos_changed: Notify,
    /// Users of the configuration file and of the store, merged (see `users`).
    users: users::Directory,
    /// Seals secrets at rest.
    key: secrets::ServerKey,
    /// Artifacts' contents.
    blobs: Arc<dyn store::blob::BlobStore>,
    /// Recently authenticated agents.
    agents: agent_api::AgentCache,
    agent_token: String,
    mirrors: git::Mirrors,
    /// Woken when jobs become queued (long-polling agents wait on it).
    queue: Notify,
    /// Woken when a lease is taken (the lease reaper recomputes its deadline).
    leases: Notify,
    changes: broadcast::Sender<Change>,
    statuses: mpsc::UnboundedSender<StatusUpdate>,
    status_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<StatusUpdate>>>,
    metrics: metrics::Metrics,
    /// Environments of the configuration file and of the store, merged (see `environments::stored`).
    environments: environments::stored::Snapshot,
    shutdown: CancellationToken,
}

impl AppState {
    /// Opens the database (migrating it) and prepares the data directory.
    pub async fn new(options: Options) -> Result<AppState, ServerError> {
        let dir = &options.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| ServerError::DataDir { path: dir.clone(), source })?;
        let url = options.database_url.clone().unwrap_or_else(|| format!("sqlite://{}/slipway.db", dir.display()));
        let db = Db::connect(&url).await?;
        let key = match &options.config.server.secret_key {
            Some(text) => secrets::ServerKey::parse(text, "server.secret_key")?,
            None => secrets::ServerKey::load_or_create(&dir.join("secret.key"))?,
        };
        for repo in &options.config.repositories {
            db.save_repository(&repos::settings_of(&key, repo, "config"), now_ms()).await?;
        }
        let names: Vec<String> = options.config.repositories.iter().map(|r| r.name.clone()).collect();
        db.retire_config_repositories(&names).await?;
        let blobs: Arc<dyn store::blob::BlobStore> = match &options.config.server.blob_store {
            Some(s3) => {
                let mut s3 = s3.clone();
                s3.spool_dir = dir.join("blobs-spool");
                Arc::new(store::blob::S3Store::open(s3)?)
            }
            None => Arc::new(store::blob::FileStore::open(dir.join("blobs"))?),
        };
        let agent_token = options.config.server.agent_token.clone().unwrap_or_else(random_token);
        let (statuses, status_rx) = mpsc::unbounded_channel();
        let (changes, _) = broadcast::channel(1024);
        let state = AppState(Arc::new(Inner {
            db,
            mirrors: git::Mirrors::new(dir.join("git")),
            options,
            repositories: RwLock::new(Arc::default()),
            repos_changed: Notify::new(),
            users: users::Directory::default(),
            key,
            blobs,
            agents: agent_api::AgentCache::default(),
            agent_token,
            queue: Notify::new(),
            leases: Notify::new(),
            changes,
            statuses,
            status_rx: std::sync::Mutex::new(Some(status_rx)),
            metrics: metrics::Metrics::default(),
            environments: Default::default(),
            shutdown: CancellationToken::new(),
        }));
        state.reload_repositories().await?;
        state.reload_users().await?;
        environments::stored::reload(&state).await?;
        Ok(state)
    }

    pub fn db(&self) -> &Db {
        &self.0.db
    }

    /// An active repository, with its secrets and variables merged (organisation, then
    /// repository), from the in-memory snapshot.
    pub fn repository(&self, name: &str) -> Option<RepositoryConfig> {
        self.repositories().get(name).cloned()
    }

    /// [`repository`](Self::repository), reloading the snapshot from the store first when it
    /// does not know `name` (another replica may have registered it).
    pub async fn repository_fresh(&self, name: &str) -> Result<Option<RepositoryConfig>, ServerError> {
        if let Some(r) = self.repository(name) {
            return Ok(Some(r));
        }
        self.reload_repositories().await?;
        Ok(self.repository(name))
    }

    pub(crate) fn repositories(&self) -> repos::Snapshot {
        self.0.repositories.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Rebuilds the repositories snapshot from the store.
    pub async fn reload_repositories(&self) -> Result<(), ServerError> {
        let snapshot = repos::load(self).await?;
        *self.0.repositories.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
        self.0.repos_changed.notify_waiters();
        Ok(())
    }

    pub(crate) fn key(&self) -> &secrets::ServerKey {
        &self.0.key
    }

    pub(crate) fn blobs(&self) -> &Arc<dyn store::blob::BlobStore> {
        &self.0.blobs
    }

    /// The OCI registry served under `/v2/`, if any.
    pub(crate) fn registry(&self) -> Option<&registry::Registry> {
        self.0.options.registry.as_ref()
    }

    pub fn mirrors(&self) -> &git::Mirrors {
        &self.0.mirrors
    }

    pub fn external_url(&self) -> &str {
        &self.0.options.config.server.external_url
    }

    pub fn config(&self) -> &Config {
        &self.0.options.config
    }

    /// The token agents register with.
    pub fn agent_token(&self) -> &str {
        &self.0.agent_token
    }

    /// Subscribes to changes of runs.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.0.changes.subscribe()
    }

    fn lease_ttl(&self) -> Duration {
        self.0.options.config.server.lease_ttl
    }

    fn changed(&self, change: Change) {
        let _ = self.0.changes.send(change);
    }

    /// Wakes agents waiting for a job.
    fn jobs_queued(&self) {
        self.0.queue.notify_waiters();
    }

    /// The link to a run.
    pub fn run_url(&self, run: i64) -> String {
        format!("{}/runs/{run}", self.external_url())
    }

    /// Queues a commit status for `run`.
    async fn report_status(&self, run: RunId, state: StatusState) {
        let Ok(Some(r)) = self.db().run(run).await else { return };
        let Some(repo) = self.repository(&r.repository_name) else { return };
        if repo.forge_api.is_none() {
            return;
        }
        let description = match state {
            StatusState::Pending => "queued".to_owned(),
            StatusState::Success => "succeeded".to_owned(),
            StatusState::Failure => r.reason.clone().unwrap_or_else(|| "failed".to_owned()),
            StatusState::Error => r.reason.clone().unwrap_or_else(|| "error".to_owned()),
        };
        let update = StatusUpdate {
            repository: repo,
            sha: r.sha.clone(),
            state,
            context: format!("slipway/{} ({})", r.workflow_name, r.event),
            description,
            target_url: self.run_url(run.0),
        };
        let _ = self.0.statuses.send(update);
    }

    /// A run reached `done`: report it.
    async fn run_finished(&self, run: RunId) {
        let conclusion = self.db().run(run).await.ok().flatten().and_then(|r| r.conclusion);
        let state = match conclusion {
            Some(store::sql::Conclusion::Success | store::sql::Conclusion::Skipped) => StatusState::Success,
            Some(store::sql::Conclusion::Cancelled) => StatusState::Error,
            _ => StatusState::Failure,
        };
        self.report_status(run, state).await;
        self.changed(Change::RunFinished(run.0));
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// A JSON error reply.
pub(crate) fn error_response(status: StatusCode, error: impl Into<String>) -> Response {
    (status, Json(protocol::ErrorBody { error: error.into() })).into_response()
}

pub(crate) fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "Request failed.");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The HTTP surface: webhooks, the agent protocol, the API, `/healthz`, `/metrics`.
pub fn app(state: AppState) -> Router {
    let limit = state.config().server.webhook_body_limit;
    let hooks = Router::new().route("/hooks/{forge}", post(hooks::receive)).layer(DefaultBodyLimit::max(limit));
    let registry = state.0.options.registry.clone().map(registry::router).unwrap_or_default();
    Router::new()
        .merge(hooks)
        .merge(agent_api::routes())
        .merge(api::routes())
        .merge(scheduler::routes())
        .merge(users::audited(repos::routes(), &state))
        .merge(users::routes())
        .merge(artifacts::routes())
        .merge(users::audited(caches::routes(), &state))
        .merge(environments::routes())
        .merge(gitops_api::routes())
        .merge(ui::routes())
        .route("/api/v1/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics::render))
        .with_state(state)
        .merge(registry)
}

/// Serves [`app`] on `listener` and runs the background tasks (lease expiry, commit-status
/// delivery, the embedded agent) until `shutdown` is cancelled; then stops taking jobs,
/// lets the embedded agent hand its job back, and drains every task.
///
/// # Cancel safety
/// Don't drop this future to stop the server: cancel `shutdown` and await it.
pub async fn run(listener: TcpListener, state: AppState, shutdown: CancellationToken) -> Result<(), ServerError> {
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    let mut tasks: JoinSet<()> = JoinSet::new();
    let background = CancellationToken::new();
    tasks.spawn(scheduler::reap_leases(state.clone(), background.clone()));
    if let Some(registry) = state.0.options.registry.clone() {
        let stop = background.clone();
        tasks.spawn(async move { registry.maintain(stop).await });
    }
    tasks.spawn(repos::supervise(state.clone(), background.clone()));
    tasks.spawn(users::maintain(state.clone(), background.clone()));
    if let Some(rx) = state.0.status_rx.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let opts = status::Delivery { backoff: state.0.options.status_backoff, attempts: state.0.options.status_attempts };
        tasks.spawn(status::deliver(rx, opts, background.clone()));
    }
    let agent_stop = CancellationToken::new();
    let mut agent_task = JoinSet::new();
    if state.0.options.embedded_agent {
        let opts = agent::AgentOptions {
            server: format!("http://{addr}"),
            token: state.agent_token().to_owned(),
            name: "embedded".to_owned(),
            labels: Vec::new(),
            work_dir: state.0.options.data_dir.join("agent"),
            capacity: state.0.options.embedded_agent_capacity,
        };
        let stop = agent_stop.clone();
        agent_task.spawn(async move {
            if let Err(error) = agent::run(opts, stop).await {
                tracing::error!(%error, "The embedded agent stopped.");
            }
        });
    }
    let http_stop = CancellationToken::new();
    let mut serve = JoinSet::new();
    {
        let app = app(state.clone());
        let stop = http_stop.clone();
        serve.spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await
        });
    }
    tracing::info!(%addr, "Server listening.");
    shutdown.cancelled().await;
    // Stop taking jobs: long polls return, the agent hands back or finishes its job.
    state.0.shutdown.cancel();
    agent_stop.cancel();
    while agent_task.join_next().await.is_some() {}
    http_stop.cancel();
    let served = match serve.join_next().await {
        Some(joined) => joined.map_err(|e| ServerError::Internal(format!("the HTTP task: {e}")))?,
        None => Ok(()),
    };
    background.cancel();
    while tasks.join_next().await.is_some() {}
    state.db().close().await;
    served.map_err(ServerError::Serve)
}
