//! The agent: keeps each of its apps reconciled, on a poll interval and at once on a webhook,
//! and serves its status, rollback and resume over HTTP.
//!
//! One reconcile of an app ([`Agent::reconcile`]):
//!
//! 1. fetch the branch (Git unreachable: nothing on the target changes; the error is
//!    reported and the app keeps its last applied state)
//! 2. the target revision is the branch head, or the pinned revision while paused
//! 3. render it (all or nothing: an invalid file fails with `file:line:col` before anything
//!    is applied)
//! 4. observe the target (the inventory says where to look), diff
//! 5. apply when the revision is new (auto-sync), when the live state drifted and self-heal
//!    is on, or for a rollback; never while paused. The inventory is widened to the desired
//!    objects *before* applying, so a crash mid-sync leaves nothing untracked; after it is
//!    exactly what Git has (plus leftovers when pruning is off)
//! 6. observe again for the statuses, record history, save the state file, report to the
//!    slipway server

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::diff::{Change, DiffOptions, diff};
use crate::git::{Mirror, provenance};
use crate::model::{HealthStatus, Key, SyncStatus};
use crate::render::{RenderFor, render};
use crate::state::{AppRecord, HistoryEntry, ResourceStatus, StateFile};
use crate::target::Target;
use crate::target::docker::DockerTarget;
use crate::target::kubernetes::{KubeOptions, KubeTarget};
use crate::target::local::LocalTarget;

/// The default poll interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Where an app lands.
#[derive(Clone, Debug)]
pub enum TargetSpec {
    /// Services under `<data>/local` (or `root`).
    Local {
        root: Option<PathBuf>,
    },
    /// `endpoint`: `unix://`, `tcp://`; `None`: `DOCKER_HOST` or the default socket.
    Docker {
        endpoint: Option<String>,
    },
    Kubernetes(KubeOptions),
}

impl TargetSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            TargetSpec::Local { .. } => "local",
            TargetSpec::Docker { .. } => "docker",
            TargetSpec::Kubernetes(_) => "kubernetes",
        }
    }
}

/// One app: a Git repository + path + branch kept reconciled onto a target.
#[derive(Clone, Debug)]
pub struct AppSpec {
    pub name: String,
    pub repo: String,
    /// A directory of the repository (`""` or `.`: the root).
    pub path: String,
    pub branch: String,
    pub target: TargetSpec,
    /// Delete objects that left Git (default on).
    pub prune: bool,
    /// Revert live changes made by hand (default on).
    pub self_heal: bool,
    pub interval: Duration,
    /// How long a sync waits for the app to become healthy.
    pub health_timeout: Duration,
}

impl AppSpec {
    pub fn new(name: &str, repo: &str, path: &str, branch: &str, target: TargetSpec) -> AppSpec {
        AppSpec {
            name: name.into(),
            repo: repo.into(),
            path: path.into(),
            branch: branch.into(),
            target,
            prune: true,
            self_heal: true,
            interval: DEFAULT_INTERVAL,
            health_timeout: Duration::from_secs(120),
        }
    }
}

/// Where the agent reports to.
#[derive(Clone, Debug)]
pub struct ServerReport {
    /// `http://host:port` of `slipway server`.
    pub url: String,
    pub token: Option<String>,
}

#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The agent's name in reports (e.g. the host name).
    pub name: String,
    pub data_dir: PathBuf,
    pub apps: Vec<AppSpec>,
    pub server: Option<ServerReport>,
    /// Bearer token the agent's own HTTP API and webhook require (`None`: open).
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no app named {0:?}")]
    NoApp(String),
    #[error("two apps are named {0:?}")]
    DuplicateApp(String),
    #[error("app {app}: {message}")]
    App { app: String, message: String },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("app {app}: {source}")]
    Target {
        app: String,
        source: crate::target::TargetError,
    },
}

/// Why a reconcile runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    Poll,
    Webhook,
    /// Sync this revision and pause auto-sync.
    Rollback(String),
    /// Unpause and sync the branch head.
    Resume,
}

/// An app's status, as the agent's API and the server report show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AppStatus {
    pub app: String,
    pub repository: String,
    pub path: String,
    pub branch: String,
    pub target: String,
    #[serde(flatten)]
    pub record: AppRecord,
}

struct App {
    spec: AppSpec,
    target: Arc<dyn Target>,
    mirror: Mirror,
    wake: Notify,
    /// One reconcile at a time per app.
    busy: Mutex<()>,
}

struct Inner {
    options: AgentOptions,
    apps: BTreeMap<String, App>,
    state: std::sync::Mutex<StateFile>,
    http: reqwest::Client,
}

/// The GitOps agent (cheap to clone).
#[derive(Clone)]
pub struct Agent(Arc<Inner>);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Agent {
    /// Loads the state file and connects every app's target.
    pub async fn new(options: AgentOptions) -> Result<Agent, AgentError> {
        std::fs::create_dir_all(&options.data_dir).map_err(|source| {
            crate::state::StateError::Write {
                path: options.data_dir.clone(),
                source,
            }
        })?;
        let state = StateFile::load(&options.data_dir)?;
        let mut apps = BTreeMap::new();
        let mut dockers: HashMap<Option<String>, Arc<dyn Target>> = HashMap::new();
        for spec in &options.apps {
            if spec.name.is_empty()
                || !spec
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                || spec.name.starts_with(['-', '.', '_'])
            {
                return Err(AgentError::App {
                    app: spec.name.clone(),
                    message: "an app name is letters, digits, - _ . (not first)".into(),
                });
            }
            let target: Arc<dyn Target> = match &spec.target {
                TargetSpec::Local { root } => Arc::new(LocalTarget::new(
                    root.clone()
                        .unwrap_or_else(|| options.data_dir.join("local")),
                )),
                TargetSpec::Docker { endpoint } => match dockers.get(endpoint) {
                    Some(t) => t.clone(),
                    None => {
                        let t: Arc<dyn Target> =
                            Arc::new(DockerTarget::connect(endpoint.as_deref()).await.map_err(
                                |source| AgentError::Target {
                                    app: spec.name.clone(),
                                    source,
                                },
                            )?);
                        dockers.insert(endpoint.clone(), t.clone());
                        t
                    }
                },
                TargetSpec::Kubernetes(k) => Arc::new(KubeTarget::connect(k).await.map_err(
                    |source| AgentError::Target {
                        app: spec.name.clone(),
                        source,
                    },
                )?),
            };
            let app = App {
                mirror: Mirror::new(&options.data_dir.join("repos"), &spec.repo),
                spec: spec.clone(),
                target,
                wake: Notify::new(),
                busy: Mutex::new(()),
            };
            if apps.insert(spec.name.clone(), app).is_some() {
                return Err(AgentError::DuplicateApp(spec.name.clone()));
            }
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Ok(Agent(Arc::new(Inner {
            options,
            apps,
            state: std::sync::Mutex::new(state),
            http,
        })))
    }

    fn app(&self, name: &str) -> Result<&App, AgentError> {
        self.0
            .apps
            .get(name)
            .ok_or_else(|| AgentError::NoApp(name.to_owned()))
    }

    fn record(&self, name: &str) -> AppRecord {
        self.0
            .state
            .lock()
            .map(|s| s.apps.get(name).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    fn store(&self, name: &str, rec: AppRecord) -> Result<(), AgentError> {
        let snapshot = {
            let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
            s.apps.insert(name.to_owned(), rec);
            s.clone()
        };
        snapshot.save(&self.0.options.data_dir)?;
        Ok(())
    }

    /// The status of every app.
    pub fn status(&self) -> Vec<AppStatus> {
        self.0
            .apps
            .keys()
            .filter_map(|n| self.app_status(n).ok())
            .collect()
    }

    pub fn app_status(&self, name: &str) -> Result<AppStatus, AgentError> {
        let app = self.app(name)?;
        Ok(AppStatus {
            app: name.to_owned(),
            repository: app.spec.repo.clone(),
            path: app.spec.path.clone(),
            branch: app.spec.branch.clone(),
            target: app.spec.target.kind().to_owned(),
            record: self.record(name),
        })
    }

    /// Wakes the reconcile loop of `app` (all apps: `None`) at once.
    pub fn trigger(&self, app: Option<&str>) -> Vec<String> {
        self.0
            .apps
            .iter()
            .filter(|(n, _)| app.is_none_or(|a| a == n.as_str()))
            .map(|(n, a)| {
                a.wake.notify_one();
                n.clone()
            })
            .collect()
    }

    /// Syncs `revision` of `app` and pauses its auto-sync until [`Agent::resume`].
    pub async fn rollback(&self, app: &str, revision: &str) -> Result<AppStatus, AgentError> {
        self.reconcile(app, Trigger::Rollback(revision.to_owned()))
            .await
    }

    /// Resumes auto-sync of `app` and syncs the branch head.
    pub async fn resume(&self, app: &str) -> Result<AppStatus, AgentError> {
        self.reconcile(app, Trigger::Resume).await
    }

    /// One reconcile of `app`; the app's status afterwards. An `Err` is for the caller only
    /// (an unknown app, a rollback to an unknown revision, the state file unwritable);
    /// everything else is recorded in the status.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping it mid-apply leaves the target half-synced (the next
    /// reconcile converges it, as after a crash).
    pub async fn reconcile(&self, name: &str, trigger: Trigger) -> Result<AppStatus, AgentError> {
        let app = self.app(name)?;
        let _busy = app.busy.lock().await;
        let mut rec = self.record(name);
        let started = now_ms();
        let result = self
            .reconcile_locked(app, &mut rec, &trigger, started)
            .await;
        rec.reconciled_at = now_ms();
        if let Err(message) = &result {
            rec.message = message.clone();
        }
        self.store(name, rec)?;
        self.report(name).await;
        if let (Trigger::Rollback(_), Err(message)) = (&trigger, result) {
            return Err(AgentError::App {
                app: name.to_owned(),
                message,
            });
        }
        self.app_status(name)
    }

    async fn reconcile_locked(
        &self,
        app: &App,
        rec: &mut AppRecord,
        trigger: &Trigger,
        started: i64,
    ) -> Result<(), String> {
        let spec = &app.spec;
        let head = app.mirror.fetch(&spec.branch).await;
        let target_rev = match (trigger, &head) {
            (Trigger::Rollback(rev), _) => app
                .mirror
                .resolve(rev)
                .await
                .map_err(|e| format!("rollback to {rev}: {}", crate::chain(&e)))?,
            (_, Err(e)) => {
                // Keep the last applied state; say why nothing happens.
                rec.sync = SyncStatus::Unknown;
                return Err(format!(
                    "fetching {} ({}): {}",
                    spec.repo,
                    spec.branch,
                    crate::chain(e)
                ));
            }
            (Trigger::Resume, Ok(h)) => h.clone(),
            (_, Ok(h)) => match (&rec.paused, &rec.pinned) {
                (true, Some(p)) => p.clone(),
                _ => h.clone(),
            },
        };
        match trigger {
            Trigger::Rollback(_) => {
                rec.paused = true;
                rec.pinned = Some(target_rev.clone());
            }
            Trigger::Resume => {
                rec.paused = false;
                rec.pinned = None;
            }
            _ => {}
        }
        rec.target_revision = Some(target_rev.clone());

        // Render the revision: all or nothing.
        let checkout = tempfile::Builder::new()
            .prefix("checkout-")
            .tempdir_in(&self.0.options.data_dir)
            .map_err(|e| format!("creating a checkout directory: {e}"))?;
        let shown = if spec.path.trim_matches('/').is_empty() {
            ".".to_owned()
        } else {
            spec.path.trim_matches('/').to_owned()
        };
        let render_for = match &app.spec.target {
            TargetSpec::Local { .. } => RenderFor::Local,
            TargetSpec::Docker { .. } => RenderFor::Docker,
            TargetSpec::Kubernetes(_) => RenderFor::Kubernetes {
                app: spec.name.clone(),
                namespace: app.target.default_namespace().to_owned(),
            },
        };
        let rendered = async {
            app.mirror
                .export(&target_rev, &spec.path, checkout.path())
                .await
                .map_err(|e| crate::chain(&e))?;
            let d = render(checkout.path(), &shown, &render_for)
                .await
                .map_err(|e| e.to_string())?;
            crate::render::check_unique(&d.objects)?;
            Ok::<_, String>(d)
        }
        .await;
        let desired = match rendered {
            Ok(d) => d,
            Err(message) => {
                rec.sync = SyncStatus::Unknown;
                let failed_before = rec.history.last().is_some_and(|h| {
                    h.revision == target_rev && h.result == "failed" && h.message == message
                });
                if !failed_before {
                    let p = provenance(&app.mirror.message(&target_rev).await.unwrap_or_default());
                    rec.push_history(HistoryEntry {
                        id: 0,
                        revision: target_rev.clone(),
                        started_at: started,
                        finished_at: now_ms(),
                        result: "failed".into(),
                        trigger: trigger_name(trigger, rec, &target_rev).into(),
                        message: format!("nothing applied: {message}"),
                        changes: vec![],
                        source_commit: p.source_commit,
                        run: p.run,
                    });
                }
                return Err(format!("revision {}: {message}", short(&target_rev)));
            }
        };

        let known: Vec<Key> = desired
            .objects
            .iter()
            .map(|o| o.key.clone())
            .chain(rec.inventory.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let live = app
            .target
            .observe(&spec.name, &known)
            .await
            .map_err(|e| e.to_string())?;
        let options = DiffOptions { prune: spec.prune };
        let d = diff(&desired.objects, &live, options);
        let new_revision = rec.revision.as_deref() != Some(target_rev.as_str());
        let apply = match trigger {
            Trigger::Rollback(_) | Trigger::Resume => true,
            _ if rec.paused => false,
            _ => new_revision || (spec.self_heal && !d.is_synced()),
        };
        let mut sync_error = None;
        if apply && (new_revision || !d.changes.is_empty()) {
            let trigger_label = trigger_name(trigger, rec, &target_rev);
            let mut inventory: BTreeSet<Key> = rec.inventory.iter().cloned().collect();
            inventory.extend(desired.objects.iter().map(|o| o.key.clone()));
            rec.inventory = inventory.into_iter().collect();
            self.store(&spec.name, rec.clone())
                .map_err(|e| e.to_string())?;

            let lines = std::sync::Mutex::new(Vec::<String>::new());
            let log = |l: &str| {
                tracing::info!(app = %spec.name, "{l}");
                if let Ok(mut v) = lines.lock() {
                    v.push(l.to_owned());
                }
            };
            let mut done = Vec::new();
            for change in &d.changes {
                let r = match change {
                    Change::Create(o) | Change::Update { object: o, .. } => {
                        app.target.apply(&spec.name, o, &desired, &log).await
                    }
                    Change::Delete(k) => app.target.delete(&spec.name, k, &log).await,
                };
                match r {
                    Ok(()) => done.push(change.describe()),
                    Err(e) => {
                        sync_error = Some(format!("{} failed: {e}", change.describe()));
                        break;
                    }
                }
            }
            if sync_error.is_none() {
                let mut inv: Vec<Key> = desired.objects.iter().map(|o| o.key.clone()).collect();
                inv.extend(d.extra.iter().cloned());
                inv.sort();
                inv.dedup();
                rec.inventory = inv;
                rec.revision = Some(target_rev.clone());
            }
            // A new revision that changes nothing of this app (another app's commit in the
            // same repository) is followed silently; a sync that did something, failed, or
            // was asked for (rollback, resume) is history.
            let asked = matches!(trigger, Trigger::Rollback(_) | Trigger::Resume);
            if sync_error.is_some() || !done.is_empty() || asked {
                let p = provenance(&app.mirror.message(&target_rev).await.unwrap_or_default());
                let message = match &sync_error {
                    Some(e) => e.clone(),
                    None if done.is_empty() => "already in sync".into(),
                    None => format!("applied {} change(s)", done.len()),
                };
                rec.push_history(HistoryEntry {
                    id: 0,
                    revision: target_rev.clone(),
                    started_at: started,
                    finished_at: now_ms(),
                    result: if sync_error.is_none() {
                        "succeeded"
                    } else {
                        "failed"
                    }
                    .into(),
                    trigger: trigger_label.into(),
                    message,
                    changes: done,
                    source_commit: p.source_commit,
                    run: p.run,
                });
            }
        }

        // Statuses from a fresh look; wait out Progressing after a sync.
        let deadline = tokio::time::Instant::now() + spec.health_timeout;
        let (d, live) = loop {
            let live = app
                .target
                .observe(&spec.name, &known)
                .await
                .map_err(|e| e.to_string())?;
            let d = diff(&desired.objects, &live, options);
            let progressing = desired.objects.iter().any(|o| {
                live.get(&o.key)
                    .is_some_and(|l| l.health == HealthStatus::Progressing)
            });
            if !(apply && progressing) || tokio::time::Instant::now() >= deadline {
                break (d, live);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let changed: BTreeMap<&Key, &Change> = d.changes.iter().map(|c| (c.key(), c)).collect();
        rec.resources = desired
            .objects
            .iter()
            .map(|o| {
                let l = live.get(&o.key);
                ResourceStatus {
                    key: o.key.clone(),
                    sync: if changed.contains_key(&o.key) {
                        SyncStatus::OutOfSync
                    } else {
                        SyncStatus::Synced
                    },
                    health: l.map_or(HealthStatus::Missing, |l| l.health),
                    message: match (changed.get(&o.key), l) {
                        (Some(c), _) => c.describe(),
                        (None, Some(l)) => l.message.clone(),
                        (None, None) => String::new(),
                    },
                }
            })
            .chain(d.changes.iter().filter_map(|c| match c {
                Change::Delete(k) => Some(ResourceStatus {
                    key: k.clone(),
                    sync: SyncStatus::OutOfSync,
                    health: live.get(k).map_or(HealthStatus::Missing, |l| l.health),
                    message: "not in Git: to be pruned".into(),
                }),
                _ => None,
            }))
            .chain(d.extra.iter().map(|k| ResourceStatus {
                key: k.clone(),
                sync: SyncStatus::OutOfSync,
                health: live.get(k).map_or(HealthStatus::Missing, |l| l.health),
                message: "not in Git: kept (prune is off)".into(),
            }))
            .collect();
        rec.sync = if d.is_synced() && rec.revision.as_deref() == Some(target_rev.as_str()) {
            SyncStatus::Synced
        } else {
            SyncStatus::OutOfSync
        };
        rec.health = desired
            .objects
            .iter()
            .map(|o| live.get(&o.key).map_or(HealthStatus::Missing, |l| l.health))
            .max()
            .unwrap_or(HealthStatus::Healthy);
        rec.message = match (&sync_error, rec.paused) {
            (Some(e), _) => e.clone(),
            (None, true) => format!(
                "auto-sync paused at {} (resume to follow {})",
                short(&target_rev),
                spec.branch
            ),
            (None, false) if !d.is_synced() => {
                let mut parts: Vec<String> = d.changes.iter().map(Change::describe).collect();
                parts.extend(d.extra.iter().map(|k| format!("keep {k}")));
                format!("out of sync: {}", parts.join("; "))
            }
            _ => rec
                .resources
                .iter()
                .filter(|r| r.health != HealthStatus::Healthy)
                .map(|r| format!("{}: {} {}", r.key, r.health, r.message))
                .collect::<Vec<_>>()
                .join("; "),
        };
        match sync_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn report(&self, name: &str) {
        let Some(server) = &self.0.options.server else {
            return;
        };
        let Ok(status) = self.app_status(name) else {
            return;
        };
        let body = crate::report::of(&self.0.options.name, &status);
        let url = format!("{}/api/v1/gitops/report", server.url.trim_end_matches('/'));
        let mut req = self.0.http.post(&url).json(&body);
        if let Some(t) = &server.token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(app = %name, status = %r.status(), "The server refused the GitOps report.")
            }
            Err(error) => {
                tracing::warn!(app = %name, error = %crate::chain(&error), "Reporting to the server failed.")
            }
        }
    }

    /// Reconciles every app at once, then on its interval or when woken, until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for name in self.0.apps.keys() {
            let agent = self.clone();
            let name = name.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let mut trigger = Trigger::Poll;
                loop {
                    match agent.reconcile(&name, trigger.clone()).await {
                        Ok(s) => tracing::info!(app = %name, sync = %s.record.sync, health = %s.record.health, "Reconciled."),
                        Err(error) => tracing::warn!(app = %name, %error, "Reconcile failed."),
                    }
                    let Ok(app) = agent.app(&name) else { return };
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(app.spec.interval) => trigger = Trigger::Poll,
                        () = app.wake.notified() => trigger = Trigger::Webhook,
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Serves [`Agent::router`] on `listener` and runs [`Agent::run`] until `shutdown`.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let router = self.router();
        let s = shutdown.clone();
        let http = axum::serve(listener, router).with_graceful_shutdown(s.cancelled_owned());
        let (served, ()) = tokio::join!(http, self.run(shutdown.clone()));
        served
    }

    /// The agent's HTTP API: `POST /hooks/sync[?app=NAME]` (a push webhook: reconcile now;
    /// any forge's push payload is accepted and ignored), `GET /api/apps`,
    /// `GET /api/apps/{app}`, `POST /api/apps/{app}/sync`,
    /// `POST /api/apps/{app}/rollback` (`{"revision": "..."}`), `POST /api/apps/{app}/resume`.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/hooks/sync", post(hook))
            .route("/hooks/{forge}", post(hook))
            .route("/api/apps", get(list))
            .route("/api/apps/{app}", get(one))
            .route("/api/apps/{app}/sync", post(sync_now))
            .route("/api/apps/{app}/rollback", post(rollback))
            .route("/api/apps/{app}/resume", post(resume))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.clone())
    }
}

fn trigger_name(t: &Trigger, rec: &AppRecord, target_rev: &str) -> &'static str {
    match t {
        Trigger::Rollback(_) => "rollback",
        Trigger::Resume => "resume",
        _ if rec.revision.as_deref() != Some(target_rev) => "auto-sync",
        _ => "self-heal",
    }
}

fn short(rev: &str) -> &str {
    &rev[..rev.len().min(12)]
}

#[allow(clippy::result_large_err)] // a Response is what axum handlers return anyway
fn authorized(agent: &Agent, headers: &HeaderMap) -> Result<(), Response> {
    let Some(want) = &agent.0.options.token else {
        return Ok(());
    };
    let got = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if got.is_some_and(|g| constant_eq(g.as_bytes(), want.as_bytes())) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (Authorization: Bearer)".into(),
        ))
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({"error": message}))).into_response()
}

fn agent_error(e: AgentError) -> Response {
    match e {
        AgentError::NoApp(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        AgentError::App { .. } => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

#[derive(Deserialize)]
struct AppQuery {
    app: Option<String>,
}

async fn hook(
    State(agent): State<Agent>,
    headers: HeaderMap,
    Query(q): Query<AppQuery>,
) -> Response {
    if let Err(r) = authorized(&agent, &headers) {
        return r;
    }
    let woken = agent.trigger(q.app.as_deref());
    if woken.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no app named {:?}", q.app.unwrap_or_default()),
        );
    }
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"triggered": woken})),
    )
        .into_response()
}

async fn list(State(agent): State<Agent>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&agent, &headers) {
        return r;
    }
    Json(agent.status()).into_response()
}

async fn one(
    State(agent): State<Agent>,
    headers: HeaderMap,
    UrlPath(app): UrlPath<String>,
) -> Response {
    if let Err(r) = authorized(&agent, &headers) {
        return r;
    }
    match agent.app_status(&app) {
        Ok(s) => Json(s).into_response(),
        Err(e) => agent_error(e),
    }
}

async fn sync_now(
    State(agent): State<Agent>,
    headers: HeaderMap,
    UrlPath(app): UrlPath<String>,
) -> Response {
    if let Err(r) = authorized(&agent, &headers) {
        return r;
    }
    match agent.reconcile(&app, Trigger::Webhook).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => agent_error(e),
    }
}

#[derive(Deserialize)]
struct RollbackBody {
    revision: String,
}

async fn rollback(
    State(agent): State<Agent>,
    headers: HeaderMap,
    UrlPath(app): UrlPath<String>,
    body: Result<Json<RollbackBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = authorized(&agent, &headers) {
        return r;
    }
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "request body: expected {\"revision\": \"<commit>\"}".into(),
        );
    };
    if body.revision.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "request body: field `revision` is empty".into(),
        );
    }
    match agent.rollback(&app, body.revision.trim()).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => agent_error(e),
    }
}

async fn resume(
    State(agent): State<Agent>,
    headers: HeaderMap,
    UrlPath(app): UrlPath<String>,
) -> Response {
    if let Err(r) = authorized(&agent, &headers) {
        return r;
    }
    match agent.resume(&app).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => agent_error(e),
    }
}
