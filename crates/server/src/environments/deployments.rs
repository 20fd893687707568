//! Deployment records: completing them when their job ends (with the digests the deploy
//! steps reported), their API and audit trail, rollback, the forge's deployment statuses, and
//! the background task that wakes deployments whose wait timer or timeout ends.
//!
//! Rollback (`POST /api/v1/deployments/rollback`, `slipway rollback ENV [--to ID]`) creates a
//! new run of the chosen deployment's workflow at its commit and ref, in which only that
//! deployment's job runs: the jobs it needs are copied from the original run as finished,
//! with their results and outputs (so `needs.<job>.outputs` hold the original image digest),
//! and the run's inputs carry `rollback-digest`, `rollback-image` and `rollback-to`. The job
//! passes the environment's gate like any other (reviewers included) and its deployment is
//! recorded with `rollback_of`.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::sql::{
    AuditEvent, AuditFilter, Conclusion, Deployment, DeploymentId, DeploymentStatus, Job,
    JobStatus, NewJob, NewRun, RunId,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{caller, lookup, short, transition};
use crate::config::Forge;
use crate::{AppState, ServerError, error_response, internal, now_ms};

/// Woken when a forge status is queued or a deployment starts waiting (every server in the
/// process wakes; each looks at its own database).
static WAKE: Notify = Notify::const_new();

/// What one deploy step reported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deployed {
    /// The step (or `job output NAME`) that reported it.
    pub source: String,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A decision on a deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalDto {
    pub user: String,
    pub decision: String,
    pub comment: Option<String>,
    pub at: i64,
}

/// A deployment as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentDto {
    pub id: i64,
    pub repository: String,
    pub environment: String,
    /// queued, waiting, in_progress, success, failure, rolled_back, rejected, cancelled
    pub status: String,
    pub reason: Option<String>,
    pub url: Option<String>,
    pub sha: String,
    pub git_ref: String,
    pub run_id: i64,
    pub run_url: String,
    pub job_id: i64,
    pub job_key: String,
    /// Who pushed the commit (the run's actor).
    pub pusher: String,
    /// Who approved it.
    pub approvers: Vec<String>,
    pub approvals: Vec<ApprovalDto>,
    /// Who may approve it (the environment's reviewers: users and groups).
    pub reviewers: Vec<String>,
    pub required_approvals: u32,
    pub digests: Vec<Deployed>,
    /// The deployment this one rolled back to.
    pub rollback_of: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// One audit-trail entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditDto {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub detail: Option<String>,
    pub environment: Option<String>,
    pub deployment_id: Option<i64>,
    pub run_id: Option<i64>,
}

/// A deployment with its approvals and audit trail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentDetail {
    #[serde(flatten)]
    pub deployment: DeploymentDto,
    pub audit: Vec<AuditDto>,
}

pub(crate) async fn dto(state: &AppState, d: Deployment) -> Result<DeploymentDto, ServerError> {
    let approvals = state.db().approvals(d.id).await?;
    let env = lookup(state, &d.repository_name, &d.environment);
    let env = env.as_deref();
    Ok(DeploymentDto {
        id: d.id.0,
        run_url: state.run_url(d.run.0),
        approvers: approvals
            .iter()
            .filter(|a| a.decision == "approved")
            .map(|a| a.user.clone())
            .collect(),
        approvals: approvals
            .into_iter()
            .map(|a| ApprovalDto {
                user: a.user,
                decision: a.decision,
                comment: a.comment,
                at: a.created_at,
            })
            .collect(),
        reviewers: env.map(|e| e.reviewers.clone()).unwrap_or_default(),
        required_approvals: env.map_or(0, |e| e.required_approvals),
        digests: serde_json::from_str(&d.digests).unwrap_or_default(),
        repository: d.repository_name,
        environment: d.environment,
        status: d.status.as_str().to_owned(),
        reason: d.reason,
        url: d.url,
        sha: d.sha,
        git_ref: d.git_ref,
        run_id: d.run.0,
        job_id: d.job.0,
        job_key: d.job_key,
        pusher: d.pusher,
        rollback_of: d.rollback_of.map(|r| r.0),
        created_at: d.created_at,
        started_at: d.started_at,
        finished_at: d.finished_at,
    })
}

fn audit_dto(e: AuditEvent) -> AuditDto {
    AuditDto {
        id: e.id,
        at: e.created_at,
        actor: e.actor,
        action: e.action,
        detail: e.detail,
        environment: e.environment,
        deployment_id: e.deployment.map(|d| d.0),
        run_id: e.run.map(|r| r.0),
    }
}

// --- completing deployments ---------------------------------------------------------------------

/// What the job's deploy steps reported: `digest` (with `image` and `target`) of each step's
/// outputs, and job outputs whose value is a digest.
async fn deployed_digests(state: &AppState, job: &Job) -> Vec<Deployed> {
    let mut out: Vec<Deployed> = Vec::new();
    for (source, outputs) in step_outputs(state, job).await {
        if let Some(digest) = outputs
            .get("digest")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
        {
            out.push(Deployed {
                source,
                digest: digest.to_owned(),
                image: outputs
                    .get("image")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
                target: outputs
                    .get("target")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            });
        }
    }
    let job_outputs: serde_json::Map<String, Value> = job
        .outputs
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or_default();
    for (name, value) in &job_outputs {
        let Some(v) = value.as_str() else { continue };
        let digest = v.rsplit_once('@').map_or(v, |(_, d)| d);
        if digest.starts_with("sha256:") && !out.iter().any(|d| d.digest == digest) {
            let image = job_outputs
                .get("image")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| v.contains('@').then(|| v.to_owned()));
            let target = job_outputs
                .get("target")
                .and_then(Value::as_str)
                .map(str::to_owned);
            out.push(Deployed {
                source: format!("job output {name}"),
                digest: digest.to_owned(),
                image,
                target,
            });
        }
    }
    out
}

/// The outputs of the steps of the job's last attempt, by step name.
async fn step_outputs(
    state: &AppState,
    job: &Job,
) -> Vec<(String, serde_json::Map<String, Value>)> {
    let Ok(steps) = state.db().steps(job.id).await else {
        return Vec::new();
    };
    steps
        .into_iter()
        .filter(|s| s.attempt == job.attempt)
        .filter_map(|s| {
            let outputs: serde_json::Map<String, Value> =
                serde_json::from_str(s.outputs.as_deref()?).ok()?;
            Some((s.name, outputs))
        })
        .collect()
}

/// Whether the job's last attempt logged an automatic rollback by a deploy action.
async fn rolled_back(state: &AppState, job: &Job) -> bool {
    let Ok(chunks) = state
        .db()
        .logs(job.id, Some((job.attempt - 1, i64::MAX)))
        .await
    else {
        return false;
    };
    chunks
        .iter()
        .any(|c| String::from_utf8_lossy(&c.data).contains("; rolled back: "))
}

/// Completes the open deployments of `run` whose jobs are done, then lets deployments that
/// waited for their environment go on. Called by the scheduler whenever a run advances.
pub(crate) async fn settle(state: &AppState, run: RunId, jobs: &[Job]) -> Result<(), ServerError> {
    let open = [
        DeploymentStatus::Queued,
        DeploymentStatus::Waiting,
        DeploymentStatus::InProgress,
    ];
    let deployments = state
        .db()
        .deployments(None, None, Some(run), &open, 100)
        .await?;
    let mut freed = Vec::new();
    for d in deployments {
        let Some(job) = jobs
            .iter()
            .find(|j| j.id == d.job && j.status == JobStatus::Done)
        else {
            continue;
        };
        let digests = deployed_digests(state, job).await;
        if !digests.is_empty() {
            let text = serde_json::to_string(&digests)
                .map_err(|e| ServerError::Internal(e.to_string()))?;
            state.db().set_deployment_digests(d.id, &text).await?;
        }
        let (status, reason) = match job.result {
            Some(Conclusion::Success) => (DeploymentStatus::Success, None),
            Some(Conclusion::Failure)
                if d.status == DeploymentStatus::InProgress && rolled_back(state, job).await =>
            {
                (
                    DeploymentStatus::RolledBack,
                    Some("the deploy failed and the previous release keeps serving".to_owned()),
                )
            }
            Some(Conclusion::Failure) => (
                DeploymentStatus::Failure,
                job.reason
                    .clone()
                    .or(Some("the deploy job failed".to_owned())),
            ),
            Some(Conclusion::Cancelled | Conclusion::Skipped) | None => {
                (DeploymentStatus::Cancelled, job.reason.clone())
            }
        };
        if transition(state, &d, status, reason.as_deref(), "slipway").await? {
            let detail = digests
                .iter()
                .map(|x| x.digest.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            if !detail.is_empty() {
                let event = super::audit_event(&d, "slipway", "deployment.digests", Some(detail));
                state.db().audit(&event, now_ms()).await?;
            }
            freed.push((d.repository_name.clone(), d.environment.clone()));
        }
    }
    for (repository, env) in freed {
        let waiting = state
            .db()
            .deployments(
                Some(&repository),
                Some(&env),
                None,
                &[DeploymentStatus::Waiting],
                100,
            )
            .await?;
        let mut runs: Vec<RunId> = waiting.iter().rev().map(|d| d.run).collect();
        runs.dedup();
        for r in runs.into_iter().filter(|r| *r != run) {
            Box::pin(crate::scheduler::advance(state, r)).await?;
        }
    }
    Ok(())
}

// --- forge deployment statuses -------------------------------------------------------------------

/// Queues the forge's view of a deployment change (when the repository reports to a forge).
pub(crate) async fn forge_event(
    state: &AppState,
    d: &Deployment,
    status: DeploymentStatus,
    reason: Option<&str>,
) -> Result<(), ServerError> {
    let Some(repo) = state.repository(&d.repository_name) else {
        return Ok(());
    };
    if repo.forge_api.is_none() || repo.forge == Forge::Generic {
        return Ok(());
    }
    let description = reason.map_or_else(
        || format!("{} to {}", status.as_str().replace('_', " "), d.environment),
        str::to_owned,
    );
    state
        .db()
        .queue_forge_event(d.id, status.as_str(), &description, now_ms())
        .await?;
    WAKE.notify_waiters();
    Ok(())
}

/// One HTTP request to the forge.
#[derive(Debug, Clone, PartialEq)]
pub struct ForgeRequest {
    pub method: &'static str,
    pub url: String,
    pub auth: Option<(&'static str, String)>,
    pub body: Value,
}

/// The request that creates the deployment on the forge (GitHub, GitLab; `None` for forges
/// without a deployments API, which get a commit status instead — see [`forge_status`]).
pub fn forge_create(
    forge: Forge,
    api: &str,
    token: Option<&str>,
    d: &Deployment,
) -> Option<ForgeRequest> {
    match forge {
        Forge::Github => Some(ForgeRequest {
            method: "POST",
            url: format!("{api}/repos/{}/deployments", d.repository_name),
            auth: token.map(|t| ("authorization", format!("Bearer {t}"))),
            body: json!({
                "ref": d.sha,
                "environment": d.environment,
                "description": format!("slipway deployment {} (run {})", d.id, d.run),
                "auto_merge": false,
                "required_contexts": [],
                "payload": {"slipway_deployment": d.id.0, "ref": d.git_ref},
                "production_environment": d.environment == "production",
            }),
        }),
        Forge::Gitlab => Some(ForgeRequest {
            method: "POST",
            url: format!(
                "{api}/projects/{}/deployments",
                d.repository_name.replace('/', "%2F")
            ),
            auth: token.map(|t| ("private-token", t.to_owned())),
            body: json!({
                "environment": d.environment,
                "sha": d.sha,
                "ref": d.git_ref.strip_prefix("refs/heads/").or_else(|| d.git_ref.strip_prefix("refs/tags/")).unwrap_or(&d.git_ref),
                "tag": d.git_ref.starts_with("refs/tags/"),
                "status": "created",
            }),
        }),
        Forge::Gitea | Forge::Forgejo | Forge::Generic => None,
    }
}

/// The request that reports `state` of a deployment: a deployment status (GitHub, GitLab,
/// with the forge's id) or, for Gitea and Forgejo (no deployments API), a commit status with
/// the context `slipway/deploy (ENV)`.
#[allow(clippy::too_many_arguments)]
pub fn forge_status(
    forge: Forge,
    api: &str,
    token: Option<&str>,
    d: &Deployment,
    forge_id: Option<&str>,
    state: &str,
    description: &str,
    log_url: &str,
) -> Option<ForgeRequest> {
    match forge {
        Forge::Github => {
            let gh = match state {
                "queued" => "queued",
                "waiting" => "pending",
                "in_progress" => "in_progress",
                "success" => "success",
                "failure" | "rolled_back" => "failure",
                _ => "error",
            };
            let mut body = json!({
                "state": gh,
                "description": truncate(description, 140),
                "log_url": log_url,
                "environment": d.environment,
            });
            if let Some(url) = &d.url {
                body["environment_url"] = json!(url);
            }
            Some(ForgeRequest {
                method: "POST",
                url: format!(
                    "{api}/repos/{}/deployments/{}/statuses",
                    d.repository_name, forge_id?
                ),
                auth: token.map(|t| ("authorization", format!("Bearer {t}"))),
                body,
            })
        }
        Forge::Gitlab => {
            let gl = match state {
                "queued" | "waiting" => "created",
                "in_progress" => "running",
                "success" => "success",
                "failure" | "rolled_back" => "failed",
                _ => "canceled",
            };
            Some(ForgeRequest {
                method: "PUT",
                url: format!(
                    "{api}/projects/{}/deployments/{}",
                    d.repository_name.replace('/', "%2F"),
                    forge_id?
                ),
                auth: token.map(|t| ("private-token", t.to_owned())),
                body: json!({"status": gl}),
            })
        }
        Forge::Gitea | Forge::Forgejo => {
            let st = match state {
                "queued" | "waiting" | "in_progress" => "pending",
                "success" => "success",
                "failure" | "rolled_back" => "failure",
                _ => "error",
            };
            Some(ForgeRequest {
                method: "POST",
                url: format!("{api}/repos/{}/statuses/{}", d.repository_name, d.sha),
                auth: token.map(|t| ("authorization", format!("token {t}"))),
                body: json!({
                    "state": st,
                    "target_url": log_url,
                    "description": truncate(&format!("{}: {description}", state.replace('_', " ")), 140),
                    "context": format!("slipway/deploy ({})", d.environment),
                }),
            })
        }
        Forge::Generic => None,
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

async fn send(client: &reqwest::Client, r: &ForgeRequest) -> Result<Value, String> {
    let mut req = match r.method {
        "PUT" => client.put(&r.url),
        _ => client.post(&r.url),
    }
    .json(&r.body)
    .header("accept", "application/json");
    if let Some((name, value)) = &r.auth {
        req = req.header(*name, value);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{} {}: {e}", r.method, r.url))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!(
            "{} {} answered {status}: {}",
            r.method,
            r.url,
            truncate(&text, 200)
        ));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// How many times a forge status is tried before it is given up.
const FORGE_ATTEMPTS: i64 = 6;

/// Delivers queued forge events in order. Returns when to try again (a failed delivery), if
/// anything is left.
async fn deliver_forge(state: &AppState, client: &reqwest::Client) -> Option<Duration> {
    let events = match state.db().pending_forge_events(100).await {
        Ok(e) => e,
        Err(error) => {
            tracing::error!(%error, "Reading forge deployment statuses failed.");
            return Some(Duration::from_secs(1));
        }
    };
    for e in events {
        let Ok(Some(d)) = state.db().deployment(e.deployment).await else {
            continue;
        };
        let Some(repo) = state.repository(&d.repository_name) else {
            let _ = state
                .db()
                .forge_event_done(e.id, Some("repository not configured"), now_ms())
                .await;
            continue;
        };
        let Some(api) = repo.forge_api.clone() else {
            let _ = state
                .db()
                .forge_event_done(e.id, Some("no forge_api"), now_ms())
                .await;
            continue;
        };
        let token = repo.forge_token.as_deref();
        let log_url = state.run_url(d.run.0);
        let mut forge_id = d.forge_id.clone();
        let result = async {
            if forge_id.is_none()
                && let Some(create) = forge_create(repo.forge, &api, token, &d)
            {
                let reply = send(client, &create).await?;
                let id = match &reply["id"] {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => return Err(format!("the forge's reply to {} has no id", create.url)),
                };
                state
                    .db()
                    .set_deployment_forge_id(d.id, &id)
                    .await
                    .map_err(|e| e.to_string())?;
                forge_id = Some(id);
            }
            if let Some(req) = forge_status(
                repo.forge,
                &api,
                token,
                &d,
                forge_id.as_deref(),
                &e.state,
                &e.description,
                &log_url,
            ) {
                send(client, &req).await?;
            }
            Ok::<(), String>(())
        }
        .await;
        match result {
            Ok(()) => {
                let _ = state.db().forge_event_done(e.id, None, now_ms()).await;
            }
            Err(error) if e.attempts + 1 >= FORGE_ATTEMPTS => {
                tracing::warn!(deployment_id = %d.id, %error, "Reporting a deployment to the forge failed; giving up.");
                let _ = state
                    .db()
                    .forge_event_done(e.id, Some(&error), now_ms())
                    .await;
            }
            Err(error) => {
                tracing::warn!(deployment_id = %d.id, %error, "Reporting a deployment to the forge failed; retrying.");
                let _ = state.db().forge_event_attempted(e.id, &error).await;
                let backoff = Duration::from_millis(250u64 << e.attempts.clamp(0, 10));
                return Some(backoff);
            }
        }
    }
    None
}

/// Advances the runs of waiting deployments whose wait timer or timeout ended after `since`
/// (and at or before `now`); returns when the next one ends.
async fn timers(state: &AppState, since: i64, now: i64) -> Option<Duration> {
    let waiting = match state
        .db()
        .deployments(None, None, None, &[DeploymentStatus::Waiting], 1000)
        .await
    {
        Ok(w) => w,
        Err(error) => {
            tracing::error!(%error, "Reading waiting deployments failed.");
            return Some(Duration::from_secs(1));
        }
    };
    let mut next: Option<i64> = None;
    for d in waiting {
        let Some(env) = lookup(state, &d.repository_name, &d.environment) else {
            continue;
        };
        let ms = |x: Duration| i64::try_from(x.as_millis()).unwrap_or(i64::MAX / 4);
        let deadlines = [
            d.created_at + ms(env.wait_timer),
            d.created_at.saturating_add(ms(env.timeout)),
        ];
        let due = deadlines
            .iter()
            .any(|t| *t > since && *t <= now && *t > d.created_at);
        if due
            && !waits_only_on_others(&d)
            && let Err(error) = crate::scheduler::advance(state, d.run).await
        {
            tracing::error!(%error, "Advancing a run after a deployment timer failed.");
        }
        for t in deadlines {
            if t > now {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
    }
    next.map(|t| Duration::from_millis(u64::try_from(t - now).unwrap_or(0) + 1))
}

/// A deployment waiting for another one to finish is woken by that one, not by a timer.
fn waits_only_on_others(d: &Deployment) -> bool {
    d.reason
        .as_deref()
        .is_some_and(|r| r.ends_with("is in progress"))
}

/// Wakes the background task (a deployment started waiting: its deadlines count).
pub(crate) fn wake() {
    WAKE.notify_waiters();
}

/// The delivery background task: forge deployment statuses (in order, retried with
/// backoff) and the environments' wait timers and timeouts. Runs until `stop`.
pub(crate) async fn background(state: AppState, stop: CancellationToken) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "Building the forge HTTP client failed; deployment statuses are not reported.");
            return;
        }
    };
    // Deadlines up to here were handled (0: after a start, every passed deadline once).
    let mut since = 0;
    loop {
        let woken = WAKE.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let retry = deliver_forge(&state, &client).await;
        let now = now_ms();
        let timer = timers(&state, since, now).await;
        since = now;
        let wait = [retry, timer]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = &mut woken => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

// --- API -----------------------------------------------------------------------------------------

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/deployments", get(list))
        .route("/api/v1/deployments/rollback", post(rollback))
        .route("/api/v1/deployments/{id}", get(one))
        .route("/api/v1/audit", get(audit))
}

#[derive(Deserialize)]
struct ListQuery {
    repository: Option<String>,
    environment: Option<String>,
    run: Option<i64>,
    status: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(r) = caller(&state, &headers) {
        return r;
    }
    let statuses: Vec<DeploymentStatus> = match q
        .status
        .as_deref()
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::parse)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
    {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("query parameter status: {e}"),
            );
        }
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let rows = match state
        .db()
        .deployments(
            q.repository.as_deref(),
            q.environment.as_deref(),
            q.run.map(RunId),
            &statuses,
            limit,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let mut out = Vec::with_capacity(rows.len());
    for d in rows {
        match dto(&state, d).await {
            Ok(d) => out.push(d),
            Err(e) => return internal(e),
        }
    }
    Json(out).into_response()
}

async fn one(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    if let Err(r) = caller(&state, &headers) {
        return r;
    }
    let d = match state.db().deployment(DeploymentId(id)).await {
        Ok(Some(d)) => d,
        Ok(None) => return error_response(StatusCode::NOT_FOUND, format!("no deployment {id}")),
        Err(e) => return internal(e),
    };
    let filter = AuditFilter {
        deployment: Some(d.id),
        limit: 1000,
        ..AuditFilter::default()
    };
    let audit = match state.db().audit_events(&filter).await {
        Ok(a) => a.into_iter().map(audit_dto).collect(),
        Err(e) => return internal(e),
    };
    match dto(&state, d).await {
        Ok(deployment) => Json(DeploymentDetail { deployment, audit }).into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct AuditQuery {
    environment: Option<String>,
    deployment: Option<i64>,
    run: Option<i64>,
    limit: Option<i64>,
}

async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    if let Err(r) = caller(&state, &headers) {
        return r;
    }
    let filter = AuditFilter {
        deployment: q.deployment.map(DeploymentId),
        run: q.run.map(RunId),
        environment: q.environment.as_deref(),
        limit: q.limit.unwrap_or(200).clamp(1, 5000),
    };
    match state.db().audit_events(&filter).await {
        Ok(a) => Json(a.into_iter().map(audit_dto).collect::<Vec<_>>()).into_response(),
        Err(e) => internal(e),
    }
}

/// `POST /api/v1/deployments/rollback`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRequest {
    pub environment: String,
    /// Needed when several repositories deploy to environments of this name.
    #[serde(default)]
    pub repository: Option<String>,
    /// The deployment to go back to (default: the newest successful one before the current).
    #[serde(default)]
    pub to: Option<i64>,
}

/// The reply: the run that rolls back, and the deployment it goes back to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackReply {
    pub run_id: i64,
    pub run_url: String,
    pub to: DeploymentDto,
}

async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<RollbackRequest>,
) -> Response {
    let user = match caller(&state, &headers) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = user.as_ref();
    if let Some(u) = user
        && u.role == "viewer"
    {
        return error_response(
            StatusCode::FORBIDDEN,
            format!("user {} is a viewer", u.name),
        );
    }
    let who = user.map_or_else(|| "anonymous".to_owned(), |u| u.name.clone());
    let env = req.environment.as_str();
    let target = match &req.to {
        Some(id) => match state.db().deployment(DeploymentId(*id)).await {
            Ok(Some(d)) if d.environment != env => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    format!("deployment {id} went to {}, not {env}", d.environment),
                );
            }
            Ok(Some(d)) if d.status != DeploymentStatus::Success => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "deployment {id} did not succeed ({}): only a successful deployment can be rolled back to",
                        d.status
                    ),
                );
            }
            Ok(Some(d)) => d,
            Ok(None) => {
                return error_response(
                    StatusCode::NOT_FOUND,
                    format!("field to: no deployment {id}"),
                );
            }
            Err(e) => return internal(e),
        },
        None => {
            let done = match state
                .db()
                .deployments(
                    req.repository.as_deref(),
                    Some(env),
                    None,
                    &[DeploymentStatus::Success],
                    1000,
                )
                .await
            {
                Ok(d) => d,
                Err(e) => return internal(e),
            };
            let repos: std::collections::BTreeSet<&str> =
                done.iter().map(|d| d.repository_name.as_str()).collect();
            if repos.len() > 1 {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "field repository: several repositories deploy to {env} ({}); name one",
                        repos.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            // The newest success is what runs now; go back to the newest one before it with
            // another commit or digest.
            let Some(current) = done.first() else {
                return error_response(
                    StatusCode::NOT_FOUND,
                    format!("nothing was deployed to {env} successfully yet"),
                );
            };
            match done
                .iter()
                .skip(1)
                .find(|d| d.sha != current.sha || d.digests != current.digests)
            {
                Some(d) => d.clone(),
                None => {
                    return error_response(
                        StatusCode::CONFLICT,
                        format!(
                            "{env} has no earlier successful deployment than {} to roll back to",
                            current.id
                        ),
                    );
                }
            }
        }
    };
    match start_rollback(&state, &target, &who).await {
        Ok(run) => {
            let to = match dto(&state, target).await {
                Ok(d) => d,
                Err(e) => return internal(e),
            };
            (
                StatusCode::CREATED,
                Json(RollbackReply {
                    run_id: run.0,
                    run_url: state.run_url(run.0),
                    to,
                }),
            )
                .into_response()
        }
        Err(e) => internal(e),
    }
}

/// Creates the rollback run for `target` (see the module docs).
async fn start_rollback(
    state: &AppState,
    target: &Deployment,
    who: &str,
) -> Result<RunId, ServerError> {
    let db = state.db();
    let original = db
        .run(target.run)
        .await?
        .ok_or_else(|| ServerError::Internal(format!("run {} is gone", target.run)))?;
    let jobs = db.jobs(original.id).await?;
    let mut spec: crate::trigger::RunSpec = serde_json::from_str(&original.spec)
        .map_err(|e| ServerError::Internal(format!("reading run {}: {e}", original.id)))?;
    let digests: Vec<Deployed> = serde_json::from_str(&target.digests).unwrap_or_default();
    if let Some(first) = digests.first() {
        spec.inputs
            .insert("rollback-digest".into(), first.digest.clone());
        let image = first.image.clone().map(|i| match i.split_once('@') {
            Some(_) => i,
            None => format!("{}@{}", strip_tag(&i), first.digest),
        });
        spec.inputs
            .insert("rollback-image".into(), image.unwrap_or_default());
    }
    spec.inputs
        .insert("rollback-to".into(), target.id.to_string());
    let new_run = NewRun {
        repository: original.repository,
        workflow_file: original.workflow_file.clone(),
        workflow_name: original.workflow_name.clone(),
        event: original.event.clone(),
        git_ref: original.git_ref.clone(),
        sha: original.sha.clone(),
        actor: who.to_owned(),
        spec: serde_json::to_string(&spec).map_err(|e| ServerError::Internal(e.to_string()))?,
        concurrency_group: None,
    };
    // Only the deployment's job runs; the others are carried over as they ended.
    let mut new_jobs = Vec::new();
    for j in &jobs {
        let rerun = j.key == target.job_key;
        new_jobs.push(NewJob {
            key: j.key.clone(),
            name: j.name.clone(),
            needs: j.needs.clone(),
            labels: j.labels.clone(),
            condition: j.condition.clone(),
            status: if rerun {
                JobStatus::Pending
            } else {
                JobStatus::Done
            },
            result: (!rerun).then(|| {
                let r = if j.key == target.job_key {
                    Conclusion::Success
                } else {
                    j.result.unwrap_or(Conclusion::Skipped)
                };
                (
                    r,
                    format!("carried over from run {} (rollback)", original.id),
                )
            }),
            log: (!rerun).then(|| {
                format!(
                    "carried over from run {}: not run again by the rollback\n",
                    original.id
                )
                .into_bytes()
            }),
        });
    }
    // Jobs that the deploy job does not need (and those after it) don't matter to it: they
    // are carried over too, so the rollback run's result is the deploy job's.
    let (run, ids) = db.create_run(&new_run, &new_jobs, now_ms()).await?;
    for (j, id) in jobs.iter().zip(&ids) {
        if j.key != target.job_key
            && let Some(outputs) = &j.outputs
        {
            db.set_job_outputs(*id, outputs).await?;
        }
    }
    db.record_rollback_request(run, target.id, who, now_ms())
        .await?;
    let event = AuditEvent {
        repository: Some(target.repository),
        environment: Some(target.environment.clone()),
        deployment: Some(target.id),
        run: Some(run),
        actor: who.to_owned(),
        action: "rollback.requested".into(),
        detail: Some(format!(
            "roll {} back to deployment {} ({} at {})",
            target.environment,
            target.id,
            digests
                .first()
                .map_or("no recorded digest", |d| d.digest.as_str()),
            short(&target.sha)
        )),
        ..AuditEvent::default()
    };
    db.audit(&event, now_ms()).await?;
    tracing::info!(run_id = %run, to = %target.id, environment = %target.environment, user = who, "Rollback run created.");
    crate::scheduler::advance(state, run).await?;
    Ok(run)
}

/// `host/repo:tag` → `host/repo` (a port's colon is kept).
fn strip_tag(image: &str) -> &str {
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Deployment {
        Deployment {
            id: DeploymentId(7),
            repository: store::sql::RepoId(1),
            repository_name: "team/app".into(),
            environment: "production".into(),
            run: RunId(3),
            job: store::sql::JobId(9),
            job_key: "deploy".into(),
            sha: "abc123".into(),
            git_ref: "refs/tags/v1".into(),
            pusher: "alice".into(),
            status: DeploymentStatus::InProgress,
            reason: None,
            url: Some("https://app.example".into()),
            digests: "[]".into(),
            rollback_of: None,
            forge_id: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
        }
    }

    /// `(forge, state) -> (method, path, auth header, body fields)`, one line per case.
    fn check(forge: Forge, state: &str, method: &str, url: &str, auth: (&str, &str), body: Value) {
        let d = deployment();
        let r = forge_status(
            forge,
            "http://f",
            Some("T"),
            &d,
            Some("55"),
            state,
            "why",
            "http://ci/runs/3",
        )
        .expect("a request");
        assert_eq!((r.method, r.url.as_str()), (method, url));
        assert_eq!(r.auth.as_ref().map(|(k, v)| (*k, v.as_str())), Some(auth));
        for (k, v) in body.as_object().expect("object") {
            assert_eq!(&r.body[k], v, "{forge:?} {state}: field {k} of {}", r.body);
        }
    }

    #[test]
    fn forge_deployment_statuses() {
        let gh = "http://f/repos/team/app/deployments/55/statuses";
        check(
            Forge::Github,
            "waiting",
            "POST",
            gh,
            ("authorization", "Bearer T"),
            json!({"state": "pending", "environment_url": "https://app.example"}),
        );
        check(
            Forge::Github,
            "rolled_back",
            "POST",
            gh,
            ("authorization", "Bearer T"),
            json!({"state": "failure", "log_url": "http://ci/runs/3"}),
        );
        check(
            Forge::Github,
            "rejected",
            "POST",
            gh,
            ("authorization", "Bearer T"),
            json!({"state": "error"}),
        );
        let gl = "http://f/projects/team%2Fapp/deployments/55";
        check(
            Forge::Gitlab,
            "in_progress",
            "PUT",
            gl,
            ("private-token", "T"),
            json!({"status": "running"}),
        );
        check(
            Forge::Gitlab,
            "failure",
            "PUT",
            gl,
            ("private-token", "T"),
            json!({"status": "failed"}),
        );
        let gt = "http://f/repos/team/app/statuses/abc123";
        check(
            Forge::Gitea,
            "waiting",
            "POST",
            gt,
            ("authorization", "token T"),
            json!({"state": "pending", "context": "slipway/deploy (production)"}),
        );
        check(
            Forge::Forgejo,
            "success",
            "POST",
            gt,
            ("authorization", "token T"),
            json!({"state": "success", "target_url": "http://ci/runs/3"}),
        );
        assert!(
            forge_status(
                Forge::Generic,
                "http://f",
                None,
                &deployment(),
                None,
                "success",
                "",
                ""
            )
            .is_none()
        );
        assert!(
            forge_status(
                Forge::Github,
                "http://f",
                None,
                &deployment(),
                None,
                "success",
                "",
                ""
            )
            .is_none(),
            "no id yet"
        );
    }

    #[test]
    fn forge_deployments_are_created_where_there_is_an_api() {
        let d = deployment();
        let gl = forge_create(Forge::Gitlab, "http://f", Some("T"), &d).expect("gitlab");
        assert_eq!(gl.url, "http://f/projects/team%2Fapp/deployments");
        assert_eq!(
            (gl.body["ref"].as_str(), gl.body["tag"].as_bool()),
            (Some("v1"), Some(true))
        );
        let gh = forge_create(Forge::Github, "http://f", Some("T"), &d).expect("github");
        assert_eq!(
            (
                gh.body["ref"].as_str(),
                gh.body["production_environment"].as_bool()
            ),
            (Some("abc123"), Some(true))
        );
        assert!(forge_create(Forge::Gitea, "http://f", Some("T"), &d).is_none());
    }

    #[test]
    fn tags_are_stripped_but_ports_kept() {
        assert_eq!(
            strip_tag("127.0.0.1:5000/team/app:1.2"),
            "127.0.0.1:5000/team/app"
        );
        assert_eq!(
            strip_tag("127.0.0.1:5000/team/app"),
            "127.0.0.1:5000/team/app"
        );
        assert_eq!(strip_tag("app:1"), "app");
    }
}
