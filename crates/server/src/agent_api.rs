//! The agent protocol, `/api/v1/agent/...` (types in the `protocol` crate).
//!
//! An agent registers with the server's agent token and gets its own token (stored as a
//! SHA-256 hash). It then long-polls `lease`: a queued job matching its labels is handed out
//! as soon as one exists (waiters are woken by a `Notify` when jobs are queued — there is no
//! polling interval). While running it heartbeats (the reply says whether the run was
//! cancelled; `409` means the lease is gone), reports what happened (`report`: the step
//! reports and log lines since the last report, in one request and one transaction, at most
//! every 200 ms while the job prints; it extends the lease too), and finishes the job
//! (`finish`: the result with the last report, one transaction). A quick job costs two
//! requests: the lease and the finish. Every report names the attempt; reports for an
//! attempt the agent no longer holds get `409 Conflict`. Resent reports store nothing
//! twice (log chunks by `(attempt, seq)`, steps are upserts, a finish answers again).
//! `logs` and `steps` (one chunk or step per call) are kept for older agents.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use protocol::{Assignment, Heartbeat, HeartbeatReply, JobFinished, JobReport, LeaseRequest, LogChunk, RegisterRequest, RegisterResponse, StepReport};
use sha2::{Digest, Sha256};
use store::sql::{Agent, Conclusion, Finished, Job, JobId, NewLog, Report, StepRecord};
use subtle::ConstantTimeEq;

use crate::trigger::RunSpec;
use crate::{AppState, error_response, internal, now_ms};

/// The largest report or finish body.
const REPORT_LIMIT: usize = 16 * 1024 * 1024;

/// The longest a lease request waits.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(protocol::paths::AGENT_REGISTER, post(register))
        .route(protocol::paths::AGENT_LEASE, post(lease))
        .route("/api/v1/agent/jobs/{id}/heartbeat", post(heartbeat))
        // A report or finish carries up to 1 MiB of step summary per step plus log lines.
        .route("/api/v1/agent/jobs/{id}/report", post(report).layer(DefaultBodyLimit::max(REPORT_LIMIT)))
        .route("/api/v1/agent/jobs/{id}/finish", post(finish).layer(DefaultBodyLimit::max(REPORT_LIMIT)))
        .route("/api/v1/agent/jobs/{id}/release", post(release))
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The agent whose token the request carries (`401` otherwise).
pub(crate) async fn authenticate_agent(state: &AppState, headers: &HeaderMap) -> Result<Agent, Response> {
    agent(state, headers).await
}

/// Agents authenticated recently, by token hash, with when their `last_seen_at` was last
/// written: the store is written at most every [`SEEN_EVERY_MS`] per agent, not on every call.
#[derive(Debug, Default)]
pub(crate) struct AgentCache(std::sync::Mutex<std::collections::HashMap<String, (Agent, i64)>>);

/// How often an agent's `last_seen_at` is written.
const SEEN_EVERY_MS: i64 = 5_000;

async fn agent(state: &AppState, headers: &HeaderMap) -> Result<Agent, Response> {
    let Some(token) = bearer(headers) else {
        return Err(error_response(StatusCode::UNAUTHORIZED, "missing agent token (Authorization: Bearer)"));
    };
    let hash = hash_token(token);
    let now = now_ms();
    {
        let cache = state.0.agents.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((agent, written)) = cache.get(&hash)
            && now - written < SEEN_EVERY_MS
        {
            return Ok(agent.clone());
        }
    }
    match state.db().agent_by_token(&hash, now).await {
        Ok(Some(a)) => {
            state.0.agents.0.lock().unwrap_or_else(|e| e.into_inner()).insert(hash, (a.clone(), now));
            Ok(a)
        }
        Ok(None) => Err(error_response(StatusCode::UNAUTHORIZED, "unknown agent token")),
        Err(e) => Err(internal(e)),
    }
}

async fn register(State(state): State<AppState>, headers: HeaderMap, Json(req): Json<RegisterRequest>) -> Response {
    let ok = bearer(&headers).is_some_and(|t| bool::from(t.as_bytes().ct_eq(state.agent_token().as_bytes())));
    if !ok {
        return error_response(StatusCode::UNAUTHORIZED, "bad agent registration token");
    }
    let token = crate::random_token();
    let labels = serde_json::json!(req.labels).to_string();
    match state.db().create_agent(&req.name, &labels, &hash_token(&token), now_ms()).await {
        Ok(id) => {
            if let Some(capacity) = req.capacity
                && let Err(e) = state.db().set_agent_capacity(id, i64::from(capacity)).await
            {
                return internal(e);
            }
            tracing::info!(agent_id = %id, name = %req.name, labels = %labels, capacity = ?req.capacity, "Agent registered.");
            Json(RegisterResponse { agent_id: id.0, token }).into_response()
        }
        Err(e) => internal(e),
    }
}

/// Whether an agent with `agent_labels` (empty: any) can run a job with `job_labels`.
fn labels_match(agent_labels: &[String], job_labels: &str) -> bool {
    if agent_labels.is_empty() {
        return true;
    }
    let job: Vec<String> = serde_json::from_str(job_labels).unwrap_or_default();
    job.iter().all(|l| agent_labels.iter().any(|a| a == l))
}

async fn lease(State(state): State<AppState>, headers: HeaderMap, Json(req): Json<LeaseRequest>) -> Response {
    let agent = match agent(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let labels: Vec<String> = serde_json::from_str(&agent.labels).unwrap_or_default();
    let matches = |job_labels: &str| labels_match(&labels, job_labels);
    let ttl = state.lease_ttl();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(req.wait_ms).min(MAX_WAIT);
    loop {
        // Register for a wake-up before looking, so a job queued in between is not missed.
        let queued = state.0.queue.notified();
        tokio::pin!(queued);
        queued.as_mut().enable();
        if state.0.shutdown.is_cancelled() {
            return StatusCode::NO_CONTENT.into_response();
        }
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let leased = if labels.is_empty() {
            state.db().lease_any(agent.id, now_ms(), ttl_ms).await
        } else {
            state.db().lease(agent.id, &matches, now_ms(), ttl_ms).await
        };
        match leased {
            // The lease-expiry task needs no wake-up: this lease ends after every other.
            Ok(Some(job)) => {
                return match assignment(&state, &job).await {
                    Ok(a) => {
                        tracing::info!(job_id = %job.id, run_id = %job.run, agent_id = %agent.id, attempt = job.attempt, "Job leased.");
                        state.changed(crate::Change::Run(job.run.0));
                        Json(a).into_response()
                    }
                    Err(r) => r,
                };
            }
            Ok(None) => {}
            Err(e) => return internal(e),
        }
        tokio::select! {
            _ = &mut queued => {}
            _ = state.0.shutdown.cancelled() => return StatusCode::NO_CONTENT.into_response(),
            _ = tokio::time::sleep_until(deadline) => return StatusCode::NO_CONTENT.into_response(),
        }
    }
}

async fn assignment(state: &AppState, job: &Job) -> Result<Assignment, Response> {
    let run = match state.db().run(job.run).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(error_response(StatusCode::INTERNAL_SERVER_ERROR, "the job's run is gone")),
        Err(e) => return Err(internal(e)),
    };
    if run.status == store::sql::RunStatus::Queued
        && let Err(e) = state.db().start_run(run.id, now_ms()).await
    {
        return Err(internal(e));
    }
    let spec: RunSpec = serde_json::from_str(&run.spec).map_err(internal)?;
    // The other jobs are read only for the needs' results and outputs.
    let needs = serde_json::from_str::<Vec<String>>(&job.needs).map_or(true, |n| !n.is_empty());
    let jobs = if needs { state.db().jobs(run.id).await.map_err(internal)? } else { Vec::new() };
    let repo = state.repository(&run.repository_name);
    // An environment's secrets and variables are released only to a job past its gate.
    let (secrets, vars) = crate::environments::released(
        state,
        job,
        repo.as_ref().map(|r| r.secrets.clone()).unwrap_or_default(),
        repo.as_ref().map(|r| r.vars.clone()).unwrap_or_default(),
    )
    .await;
    let ttl = state.lease_ttl();
    Ok(Assignment {
        job_id: job.id.0,
        run_id: run.id.0,
        attempt: job.attempt,
        job_key: job.key.clone(),
        github: crate::trigger::github_context(state, &run, &spec),
        workflow: spec.workflow,
        event_name: spec.event_name,
        event: spec.event,
        secrets,
        vars,
        inputs: spec.inputs,
        clone_url: spec.clone_url,
        sha: run.sha.clone(),
        needs: crate::scheduler::needs_context(job, &jobs),
        heartbeat_ms: u64::try_from((ttl / 3).as_millis()).unwrap_or(u64::MAX).max(1),
        lease_ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
    })
}

async fn heartbeat(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<i64>, Json(hb): Json<Heartbeat>) -> Response {
    let agent = match agent(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let ttl_ms = i64::try_from(state.lease_ttl().as_millis()).unwrap_or(i64::MAX);
    match state.db().heartbeat(JobId(id), hb.attempt, agent.id, now_ms(), ttl_ms).await {
        Ok(Some(cancel)) => Json(HeartbeatReply { cancel }).into_response(),
        Ok(None) => error_response(StatusCode::CONFLICT, format!("the lease on job {id} attempt {} is gone", hb.attempt)),
        Err(e) => internal(e),
    }
}

/// A step report as the store keeps it; `now` when the agent sent no time.
fn step_record(job: JobId, step: StepReport, now: i64) -> StepRecord {
    let at = if step.time_ms > 0 { step.time_ms } else { now };
    let done = step.state == protocol::StepState::Done;
    StepRecord {
        job,
        attempt: step.attempt,
        number: step.number,
        name: step.name,
        status: if done { "done" } else { "running" }.to_owned(),
        conclusion: step.conclusion.map(|c| c.as_str().to_owned()),
        started_at: (!done).then_some(at),
        finished_at: done.then_some(at),
        outputs: (!step.outputs.is_empty()).then(|| serde_json::Value::Object(step.outputs).to_string()),
        summary: step.summary.map(protocol::cap_summary),
    }
}

/// A log chunk as the store keeps it; `now` when the agent sent no time.
fn new_log(chunk: LogChunk, now: i64) -> NewLog {
    let mut data = chunk.lines.join("\n");
    data.push('\n');
    NewLog { seq: chunk.seq, data: data.into_bytes(), created_at: if chunk.time_ms > 0 { chunk.time_ms } else { now } }
}

/// The [`Report`] of an agent's steps and log chunk for attempt `attempt` (`400` when a
/// part names another attempt).
#[allow(clippy::result_large_err)]
fn to_report(job: JobId, attempt: i64, steps: Vec<StepReport>, logs: Option<LogChunk>, now: i64) -> Result<Report, Response> {
    if let Some(s) = steps.iter().find(|s| s.attempt != attempt) {
        return Err(error_response(StatusCode::BAD_REQUEST, format!("steps[{}]: attempt {} is not the report's attempt {attempt}", s.number, s.attempt)));
    }
    if let Some(l) = logs.as_ref().filter(|l| l.attempt != attempt) {
        return Err(error_response(StatusCode::BAD_REQUEST, format!("logs.attempt: {} is not the report's attempt {attempt}", l.attempt)));
    }
    // A step that started and finished within one report is stored once.
    let mut records: Vec<StepRecord> = Vec::with_capacity(steps.len());
    for s in steps {
        let r = step_record(job, s, now);
        match records.last_mut() {
            Some(last) if last.number == r.number && last.status == "running" => {
                let started_at = last.started_at;
                *last = StepRecord { started_at, ..r };
            }
            _ => records.push(r),
        }
    }
    Ok(Report {
        steps: records,
        log: logs.filter(|l| !l.lines.is_empty()).map(|l| new_log(l, now)),
    })
}

async fn report(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<i64>, Json(r): Json<JobReport>) -> Response {
    let agent = match agent(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let now = now_ms();
    let report = match to_report(JobId(id), r.attempt, r.steps, r.logs, now) {
        Ok(report) => report,
        Err(resp) => return resp,
    };
    let ttl_ms = i64::try_from(state.lease_ttl().as_millis()).unwrap_or(i64::MAX);
    match state.db().report(JobId(id), r.attempt, agent.id, &report, now.saturating_add(ttl_ms)).await {
        // A later lease end needs no wake-up of the expiry task: woken at the old end, it
        // finds nothing expired and looks again.
        Ok(Some((run, cancel))) => {
            if !report.steps.is_empty() {
                state.changed(crate::Change::Run(run.0));
            } else if report.log.is_some() {
                state.changed(crate::Change::Log(run.0));
            }
            Json(HeartbeatReply { cancel }).into_response()
        }
        Ok(None) => error_response(StatusCode::CONFLICT, format!("this agent does not hold attempt {} of job {id}", r.attempt)),
        Err(e) => internal(e),
    }
}

async fn finish(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<i64>, Json(done): Json<JobFinished>) -> Response {
    let agent = match agent(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let now = now_ms();
    let report = match to_report(JobId(id), done.attempt, done.steps, done.logs, now) {
        Ok(report) => report,
        Err(resp) => return resp,
    };
    let result = match done.result {
        protocol::Conclusion::Success => Conclusion::Success,
        protocol::Conclusion::Failure => Conclusion::Failure,
        protocol::Conclusion::Cancelled => Conclusion::Cancelled,
        protocol::Conclusion::Skipped => Conclusion::Skipped,
    };
    let outputs = serde_json::Value::Object(done.outputs).to_string();
    let job = match state.db().finish_reported(JobId(id), done.attempt, agent.id, &report, result, &outputs, now).await {
        Ok(Finished::Done(job)) => job,
        // A resent finish (its reply was lost): done already.
        Ok(Finished::AlreadyDone(_)) => return StatusCode::NO_CONTENT.into_response(),
        Ok(Finished::NotHeld) => return error_response(StatusCode::CONFLICT, format!("this agent does not hold attempt {} of job {id}", done.attempt)),
        Err(e) => return internal(e),
    };
    if !report.steps.is_empty() || report.log.is_some() {
        state.changed(crate::Change::Run(job.run.0));
    }
    tracing::info!(job_id = %job.id, run_id = %job.run, result = %result, "Job finished.");
    if let (Some(start), Some(end)) = (job.started_at, job.finished_at) {
        state.0.metrics.job_finished(result.as_str(), (end - start).max(0));
    }
    match crate::scheduler::advance(&state, job.run).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => internal(e),
    }
}

async fn release(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<i64>, Json(r): Json<protocol::Release>) -> Response {
    let agent = match agent(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match state.db().release_job(JobId(id), r.attempt, agent.id).await {
        Ok(true) => {
            tracing::info!(job_id = id, agent_id = %agent.id, "Job handed back; queued again.");
            state.jobs_queued();
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => error_response(StatusCode::CONFLICT, format!("this agent does not hold attempt {} of job {id}", r.attempt)),
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_matching() {
        let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(labels_match(&[], "[\"gpu\"]"));
        assert!(labels_match(&v(&["linux", "gpu"]), "[\"gpu\"]"));
        assert!(!labels_match(&v(&["linux"]), "[\"gpu\"]"));
        assert!(labels_match(&v(&["linux"]), "[]"));
    }
}
