//! Where GitOps agents report their applications' sync status and history.
//!
//! - `POST /api/v1/gitops/report`: an agent's report of one app ([`protocol::gitops::Report`]). Auth: the agent registration token, or a user token that may write
//!   (open when no `[[user]]` is configured, like the rest of the API).
//! - `GET /api/v1/gitops/apps`: every app's last reported status.
//! - `GET /api/v1/gitops/syncs?app=&agent=&revision=&source_commit=&limit=`: sync history,
//!   newest first. `source_commit` joins a CI run's commit to the agent's sync of the promote
//!   commit that carried it.

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use protocol::gitops::Report;
use serde::{Deserialize, Serialize};
use store::sql::{GitopsApp, GitopsSync, SyncFilter};
use subtle::ConstantTimeEq;

use crate::agent_api::bearer;
use crate::{AppState, error_response, internal, now_ms};

/// The GitOps reporting routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/gitops/report", post(report))
        .route("/api/v1/gitops/apps", get(apps))
        .route("/api/v1/gitops/syncs", get(syncs))
}

#[derive(Serialize)]
struct AppDto {
    agent: String,
    app: String,
    repository: String,
    path: String,
    branch: String,
    target: String,
    revision: Option<String>,
    target_revision: Option<String>,
    sync: String,
    health: String,
    paused: bool,
    message: String,
    reconciled_at: i64,
    reported_at: i64,
}

#[derive(Serialize)]
struct SyncDto {
    agent: String,
    app: String,
    id: i64,
    revision: String,
    source_commit: Option<String>,
    run: Option<String>,
    trigger: String,
    result: String,
    message: String,
    changes: Vec<String>,
    started_at: i64,
    finished_at: i64,
}

/// The agent registration token, or a user who may write (the API's own check).
#[allow(clippy::result_large_err)] // the response is what the handler returns
fn may_report(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let token = bearer(headers);
    if token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(state.agent_token().as_bytes()))) {
        return Ok(());
    }
    crate::api::authorize(state, headers, crate::api::Need::Write).map(|_| ())
}

const SYNC_STATUSES: &[&str] = &["Synced", "OutOfSync", "Unknown"];
const HEALTH_STATUSES: &[&str] = &["Healthy", "Progressing", "Missing", "Degraded"];

async fn report(State(state): State<AppState>, headers: HeaderMap, body: Result<Json<Report>, JsonRejection>) -> Response {
    if let Err(r) = may_report(&state, &headers) {
        return r;
    }
    let r = match body {
        Ok(Json(r)) => r,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, format!("request body: {}", e.body_text())),
    };
    for (field, value) in [("agent", &r.agent), ("app", &r.app), ("repository", &r.repository), ("target", &r.target)] {
        if value.trim().is_empty() {
            return error_response(StatusCode::BAD_REQUEST, format!("request body: field `{field}` is empty"));
        }
    }
    if !SYNC_STATUSES.contains(&r.sync.as_str()) {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("request body: field `sync`: {:?} is not one of {}", r.sync, SYNC_STATUSES.join(", ")),
        );
    }
    if !HEALTH_STATUSES.contains(&r.health.as_str()) {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("request body: field `health`: {:?} is not one of {}", r.health, HEALTH_STATUSES.join(", ")),
        );
    }
    let app = GitopsApp {
        agent: r.agent.clone(),
        app: r.app.clone(),
        repository: r.repository,
        path: r.path,
        branch: r.branch,
        target: r.target,
        revision: r.revision,
        target_revision: r.target_revision,
        sync_status: r.sync,
        health_status: r.health,
        paused: r.paused,
        message: r.message,
        reconciled_at: r.reconciled_at,
        reported_at: now_ms(),
    };
    let syncs: Vec<GitopsSync> = r
        .history
        .into_iter()
        .map(|h| GitopsSync {
            agent: r.agent.clone(),
            app: r.app.clone(),
            entry_id: i64::try_from(h.id).unwrap_or(i64::MAX),
            revision: h.revision,
            source_commit: h.source_commit,
            source_run: h.run,
            trigger: h.trigger,
            result: h.result,
            message: h.message,
            changes: h.changes.join("\n"),
            started_at: h.started_at,
            finished_at: h.finished_at,
        })
        .collect();
    match state.db().record_gitops_report(&app, &syncs).await {
        Ok(new) => Json(serde_json::json!({"recorded": new})).into_response(),
        Err(e) => internal(e),
    }
}

async fn apps(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = crate::api::authorize_read(&state, &headers) {
        return r;
    }
    match state.db().gitops_apps().await {
        Ok(apps) => Json(
            apps.into_iter()
                .map(|a| AppDto {
                    agent: a.agent,
                    app: a.app,
                    repository: a.repository,
                    path: a.path,
                    branch: a.branch,
                    target: a.target,
                    revision: a.revision,
                    target_revision: a.target_revision,
                    sync: a.sync_status,
                    health: a.health_status,
                    paused: a.paused,
                    message: a.message,
                    reconciled_at: a.reconciled_at,
                    reported_at: a.reported_at,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct SyncQuery {
    agent: Option<String>,
    app: Option<String>,
    revision: Option<String>,
    source_commit: Option<String>,
    limit: Option<i64>,
}

async fn syncs(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<SyncQuery>) -> Response {
    if let Err(r) = crate::api::authorize_read(&state, &headers) {
        return r;
    }
    let filter = SyncFilter {
        agent: q.agent,
        app: q.app,
        revision: q.revision,
        source_commit: q.source_commit,
        limit: q.limit.unwrap_or(50).clamp(1, 500),
    };
    match state.db().gitops_syncs(&filter).await {
        Ok(rows) => Json(
            rows.into_iter()
                .map(|s| SyncDto {
                    agent: s.agent,
                    app: s.app,
                    id: s.entry_id,
                    revision: s.revision,
                    source_commit: s.source_commit,
                    run: s.source_run,
                    trigger: s.trigger,
                    result: s.result,
                    message: s.message,
                    changes: s.changes.lines().map(str::to_owned).filter(|l| !l.is_empty()).collect(),
                    started_at: s.started_at,
                    finished_at: s.finished_at,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}
