//! The REST API under `/api/v1` (DTOs in the `protocol` crate): runs, jobs, logs (also live
//! as Server-Sent Events with `?follow=true`), cancel, and `workflow_dispatch`.
//!
//! Auth: `Authorization: Bearer TOKEN` of a `[[user]]`; reading needs any role, cancelling
//! and dispatching need `maintainer` or `admin`. With no `[[user]]` configured the API is
//! open (a laptop default; the server logs a warning at start).
// The error of these helpers is the handler's reply (an axum `Response`).
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use serde::Deserialize;
use store::sql::{RunId, RunStatus};
use tokio::sync::broadcast;

use crate::{AppState, Change, error_response, internal};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(protocol::paths::RUNS, get(list_runs))
        .route("/api/v1/runs/{id}", get(get_run))
        .route("/api/v1/runs/{id}/jobs", get(get_jobs))
        .route("/api/v1/runs/{id}/logs", get(get_logs))
        .route("/api/v1/runs/{id}/cancel", post(cancel))
        .route("/api/v1/runs/{id}/rerun", post(rerun))
        .route(protocol::paths::DISPATCH, post(dispatch))
}

/// What a request needs: any role, `maintainer` or `admin`, or `admin`.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Need {
    Read,
    Write,
    Admin,
}

/// Read access (for the run page).
pub(crate) fn authorize_read(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    authorize(state, headers, Need::Read).map(|_| ())
}

/// Checks the bearer token against the users (`[[user]]`s and users of the store, see
/// `users`); returns who is acting (`anonymous` when there are no users and the API is open).
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap, need: Need) -> Result<String, Response> {
    let Some(user) = crate::users::caller(state, headers)? else {
        return Ok("anonymous".to_owned());
    };
    if need == Need::Write && user.role == "viewer" {
        return Err(error_response(StatusCode::FORBIDDEN, format!("user {} is a viewer", user.name)));
    }
    if need == Need::Admin && user.role != "admin" {
        return Err(error_response(StatusCode::FORBIDDEN, format!("user {} is not an admin", user.name)));
    }
    Ok(user.name.clone())
}

/// Records `actor`'s `action` on run `run` in the audit trail (a failure is logged, not
/// returned: the action itself already happened).
pub(crate) async fn audit_run(state: &AppState, actor: &str, run: &store::sql::Run, action: &str) {
    let event = store::sql::AuditEvent {
        repository: Some(run.repository),
        run: Some(run.id),
        actor: actor.to_owned(),
        action: action.to_owned(),
        ..store::sql::AuditEvent::default()
    };
    if let Err(error) = state.db().audit(&event, crate::now_ms()).await {
        tracing::error!(%error, run_id = %run.id, "Recording an audit event failed.");
    }
}

fn run_dto(state: &AppState, r: store::sql::Run) -> protocol::Run {
    protocol::Run {
        id: r.id.0,
        url: state.run_url(r.id.0),
        repository: r.repository_name,
        workflow_file: r.workflow_file,
        workflow_name: r.workflow_name,
        event: r.event,
        git_ref: r.git_ref,
        sha: r.sha,
        actor: r.actor,
        status: r.status.as_str().to_owned(),
        conclusion: r.conclusion.map(conclusion),
        reason: r.reason,
        cancel_requested: r.cancel_requested,
        created_at: r.created_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
    }
}

fn conclusion(c: store::sql::Conclusion) -> protocol::Conclusion {
    match c {
        store::sql::Conclusion::Success => protocol::Conclusion::Success,
        store::sql::Conclusion::Failure => protocol::Conclusion::Failure,
        store::sql::Conclusion::Cancelled => protocol::Conclusion::Cancelled,
        store::sql::Conclusion::Skipped => protocol::Conclusion::Skipped,
    }
}

#[derive(Deserialize)]
struct ListQuery {
    repository: Option<String>,
    limit: Option<i64>,
}

async fn list_runs(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Read) {
        return r;
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    match state.db().runs(q.repository.as_deref(), limit).await {
        Ok(runs) => Json(runs.into_iter().map(|r| run_dto(&state, r)).collect::<Vec<_>>()).into_response(),
        Err(e) => internal(e),
    }
}

async fn find_run(state: &AppState, id: i64) -> Result<store::sql::Run, Response> {
    match state.db().run(RunId(id)).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(error_response(StatusCode::NOT_FOUND, format!("no run {id}"))),
        Err(e) => Err(internal(e)),
    }
}

async fn get_run(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Read) {
        return r;
    }
    match find_run(&state, id).await {
        Ok(r) => Json(run_dto(&state, r)).into_response(),
        Err(r) => r,
    }
}

async fn get_jobs(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    if let Err(r) = authorize(&state, &headers, Need::Read) {
        return r;
    }
    if let Err(r) = find_run(&state, id).await {
        return r;
    }
    let jobs = match state.db().jobs(RunId(id)).await {
        Ok(j) => j,
        Err(e) => return internal(e),
    };
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        let steps = match state.db().steps(j.id).await {
            Ok(s) => s,
            Err(e) => return internal(e),
        };
        out.push(protocol::Job {
            id: j.id.0,
            run_id: j.run.0,
            needs: serde_json::from_str(&j.needs).unwrap_or_default(),
            labels: serde_json::from_str(&j.labels).unwrap_or_default(),
            key: j.key,
            name: j.name,
            status: j.status.as_str().to_owned(),
            result: j.result.map(conclusion),
            reason: j.reason,
            attempt: j.attempt,
            started_at: j.started_at,
            finished_at: j.finished_at,
            steps: steps
                .into_iter()
                .map(|s| protocol::Step {
                    attempt: s.attempt,
                    number: s.number,
                    name: s.name,
                    status: s.status,
                    conclusion: s.conclusion,
                    outputs: s.outputs.as_deref().and_then(|o| serde_json::from_str(o).ok()).unwrap_or_default(),
                    summary: s.summary,
                })
                .collect(),
        });
    }
    Json(out).into_response()
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    follow: bool,
    /// For `EventSource`, which cannot set headers.
    token: Option<String>,
}

/// New log chunks of every job of a run, after the per-job cursors (which advance).
async fn new_chunks(
    state: &AppState,
    run: RunId,
    cursors: &mut HashMap<i64, (i64, i64)>,
) -> Result<Vec<protocol::LogText>, store::sql::SqlError> {
    let mut out = Vec::new();
    for job in state.db().jobs(run).await? {
        let after = cursors.get(&job.id.0).copied();
        for chunk in state.db().logs(job.id, after).await? {
            cursors.insert(job.id.0, (chunk.attempt, chunk.seq));
            out.push(protocol::LogText {
                job_id: job.id.0,
                job_key: job.key.clone(),
                attempt: chunk.attempt,
                seq: chunk.seq,
                text: String::from_utf8_lossy(&chunk.data).into_owned(),
                time_ms: chunk.created_at,
            });
        }
    }
    Ok(out)
}

async fn get_logs(State(state): State<AppState>, mut headers: HeaderMap, Path(id): Path<i64>, Query(q): Query<LogQuery>) -> Response {
    if let Some(token) = &q.token
        && let Ok(v) = axum::http::HeaderValue::from_str(&format!("Bearer {token}"))
    {
        headers.insert(header::AUTHORIZATION, v);
    }
    if let Err(r) = authorize(&state, &headers, Need::Read) {
        return r;
    }
    if let Err(r) = find_run(&state, id).await {
        return r;
    }
    if q.follow {
        return Sse::new(follow(state, RunId(id))).into_response();
    }
    let chunks = match new_chunks(&state, RunId(id), &mut HashMap::new()).await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let wants_json = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/json"));
    if wants_json {
        return Json(chunks).into_response();
    }
    let mut text = String::new();
    let mut last = None;
    for c in chunks {
        if last != Some(c.job_id) {
            text.push_str(&format!("=== {} ===\n", c.job_key));
            last = Some(c.job_id);
        }
        text.push_str(&c.text);
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

struct Follow {
    state: AppState,
    run: RunId,
    rx: broadcast::Receiver<Change>,
    cursors: HashMap<i64, (i64, i64)>,
    pending: VecDeque<protocol::LogText>,
    ended: bool,
}

/// `log` events (data: [`protocol::LogText`]) as chunks arrive, then one `end` event (data:
/// the run) when the run is done and every chunk was sent.
fn follow(state: AppState, run: RunId) -> impl Stream<Item = Result<Event, Infallible>> {
    let rx = state.subscribe();
    let init = Follow { state, run, rx, cursors: HashMap::new(), pending: VecDeque::new(), ended: false };
    futures::stream::unfold(init, |mut f| async move {
        loop {
            if f.ended {
                return None;
            }
            if let Some(chunk) = f.pending.pop_front() {
                let event = Event::default().event("log").json_data(&chunk).unwrap_or_else(|_| Event::default().comment("bad chunk"));
                return Some((Ok(event), f));
            }
            let done = matches!(f.state.db().run(f.run).await, Ok(Some(r)) if r.status == RunStatus::Done);
            match new_chunks(&f.state, f.run, &mut f.cursors).await {
                Ok(chunks) if !chunks.is_empty() => {
                    f.pending.extend(chunks);
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(%error, "Following logs failed.");
                    f.ended = true;
                    return Some((Ok(Event::default().event("error").data(error.to_string())), f));
                }
            }
            if done {
                f.ended = true;
                let run = f.state.db().run(f.run).await.ok().flatten().map(|r| run_dto(&f.state, r));
                let event = Event::default().event("end").json_data(&run).unwrap_or_else(|_| Event::default().event("end"));
                return Some((Ok(event), f));
            }
            loop {
                match f.rx.recv().await {
                    Ok(Change::Run(id) | Change::RunFinished(id) | Change::Log(id)) if id == f.run.0 => break,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => {
                        f.ended = true;
                        break;
                    }
                }
            }
        }
    })
}

async fn cancel(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let actor = match authorize(&state, &headers, Need::Write) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let run = match find_run(&state, id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if run.status == RunStatus::Done {
        return error_response(StatusCode::CONFLICT, format!("run {id} has already finished"));
    }
    match crate::scheduler::cancel(&state, run.id).await {
        Ok(true) => {}
        Ok(false) => return error_response(StatusCode::CONFLICT, format!("run {id} has already finished")),
        Err(e) => return internal(e),
    }
    audit_run(&state, &actor, &run, "run.cancel").await;
    StatusCode::ACCEPTED.into_response()
}

#[derive(serde::Deserialize)]
struct RerunQuery {
    #[serde(default)]
    all: bool,
}

/// `POST /api/v1/runs/{id}/rerun[?all=true]`: re-run the failed jobs (or, with `all`, every
/// job) of a finished run, and their dependents.
async fn rerun(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(query): Query<RerunQuery>,
) -> Response {
    let actor = match authorize(&state, &headers, Need::Write) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let run = match find_run(&state, id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match crate::scheduler::rerun(&state, run.id, query.all).await {
        Ok(Some(keys)) if keys.is_empty() => error_response(StatusCode::CONFLICT, format!("run {id} has no failed jobs to re-run")),
        Ok(Some(keys)) => {
            audit_run(&state, &actor, &run, if query.all { "run.rerun_all" } else { "run.rerun" }).await;
            (StatusCode::ACCEPTED, Json(serde_json::json!({ "jobs": keys }))).into_response()
        }
        Ok(None) => error_response(StatusCode::CONFLICT, format!("run {id} has not finished")),
        Err(e) => internal(e),
    }
}

async fn dispatch(State(state): State<AppState>, headers: HeaderMap, Json(req): Json<protocol::DispatchRequest>) -> Response {
    // The run's actor (`github.actor`, the deployment's pusher) is who dispatched it.
    let actor = match authorize(&state, &headers, Need::Write) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let repo = match state.repository_fresh(&req.repository).await {
        Ok(Some(r)) => r,
        Ok(None) => return error_response(StatusCode::NOT_FOUND, format!("unknown repository `{}`", req.repository)),
        Err(e) => return internal(e),
    };
    let full_ref = if req.git_ref.starts_with("refs/") { req.git_ref.clone() } else { format!("refs/heads/{}", req.git_ref) };
    let (sha, _) = match state.mirrors().fetch(&repo.name, &repo.clone_url, &full_ref).await {
        Ok(x) => x,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, format!("cannot fetch `{full_ref}`: {e}")),
    };
    let payload = serde_json::json!({
        "ref": full_ref,
        "inputs": req.inputs,
        "workflow": req.workflow,
        "repository": {"full_name": repo.name},
    });
    let trigger = crate::trigger::Trigger {
        repository: repo.name.clone(),
        event: "workflow_dispatch".to_owned(),
        git_ref: full_ref,
        sha,
        before: None,
        actor,
        payload,
        payload_changed: None,
        action: None,
        base_ref: None,
        inputs: req.inputs,
        only_workflow: Some(req.workflow.clone()),
    };
    match crate::trigger::start_runs(&state, &repo, trigger).await {
        Ok(runs) if runs.is_empty() => error_response(
            StatusCode::NOT_FOUND,
            format!("no workflow `{}` with a workflow_dispatch trigger in {}", req.workflow, repo.name),
        ),
        Ok(runs) => {
            for id in &runs {
                if let Ok(Some(run)) = state.db().run(RunId(*id)).await {
                    audit_run(&state, &run.actor, &run, "run.dispatch").await;
                }
            }
            (StatusCode::CREATED, Json(protocol::Created { runs })).into_response()
        }
        Err(e) => error_response(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}
