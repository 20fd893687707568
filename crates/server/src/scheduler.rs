//! Moving runs forward: when a job finishes, its dependents whose needs are all done are
//! queued or skipped (their `if:` evaluated here with `workflow::expr`), and a run whose
//! jobs are all done is finished. Leases that stop heart-beating expire (retried once, then
//! failed as "agent lost").
//!
//! Job-level `concurrency:` is decided here too, when a job becomes runnable: its group is
//! evaluated (with `github`, `inputs`, `vars`, `needs` and, per matrix leg, `matrix`), then
//! the store admits it (it holds the group until done), keeps it waiting (at most one per
//! group: a newer job replaces the waiting one) or, with `cancel-in-progress`, asks the
//! running job to stop. A job that ends frees its groups: the runs waiting there advance.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use store::sql::{Conclusion, Expired, Job, JobId, JobStatus, RunId};
use tokio_util::sync::CancellationToken;
use workflow::expr::{Condition, MapContext, Status};

use crate::environments::Gate;
use crate::trigger::RunSpec;
use crate::{AppState, Change, ServerError, now_ms};

fn needs_of(job: &Job) -> Vec<String> {
    serde_json::from_str(&job.needs).unwrap_or_default()
}

fn outputs_of(job: &Job) -> Map<String, Value> {
    job.outputs
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or_default()
}

/// `needs.<key>` for the jobs `job` needs.
pub(crate) fn needs_context(job: &Job, jobs: &[Job]) -> BTreeMap<String, protocol::NeedResult> {
    let mut out = BTreeMap::new();
    for key in needs_of(job) {
        if let Some(need) = jobs.iter().find(|j| j.key == key) {
            let result = match need.result {
                Some(Conclusion::Success) => protocol::Conclusion::Success,
                Some(Conclusion::Failure) => protocol::Conclusion::Failure,
                Some(Conclusion::Cancelled) => protocol::Conclusion::Cancelled,
                Some(Conclusion::Skipped) | None => protocol::Conclusion::Skipped,
            };
            out.insert(
                key,
                protocol::NeedResult {
                    result,
                    outputs: outputs_of(need),
                },
            );
        }
    }
    out
}

enum Decision {
    Queue,
    Settle(Conclusion, Option<String>),
}

/// Whether a job whose needs are all done runs, following Actions: without a status
/// function in `if:`, it runs only when every need succeeded; otherwise its `if:` decides,
/// with `failure()` true when a need failed and `cancelled()` when the run was cancelled.
fn decide(state: &AppState, run: &store::sql::Run, job: &Job, jobs: &[Job]) -> Decision {
    let needs = needs_context(job, jobs);
    let any = |c: protocol::Conclusion| needs.values().any(|n| n.result == c);
    let status = if run.cancel_requested || any(protocol::Conclusion::Cancelled) {
        Status::Cancelled
    } else if any(protocol::Conclusion::Failure) {
        Status::Failure
    } else {
        Status::Success
    };
    let condition = match job.condition.as_deref().map(Condition::parse) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            return Decision::Settle(Conclusion::Failure, Some(format!("invalid if: {e}")));
        }
    };
    let uses_status = condition
        .as_ref()
        .is_some_and(Condition::uses_status_function);
    if !uses_status && (status != Status::Success || any(protocol::Conclusion::Skipped)) {
        return Decision::Settle(Conclusion::Skipped, None);
    }
    let Some(condition) = condition else {
        return Decision::Queue;
    };
    let mut ctx = job_context(state, run, job, jobs);
    ctx.status = status;
    match condition.eval(&ctx) {
        Ok(true) => Decision::Queue,
        Ok(false) => Decision::Settle(Conclusion::Skipped, None),
        Err(e) => Decision::Settle(Conclusion::Failure, Some(format!("evaluating if: {e}"))),
    }
}

/// The contexts a job's `if:` and `concurrency:` see on the server: `github`, `inputs`,
/// `vars` and `needs`.
fn job_context(state: &AppState, run: &store::sql::Run, job: &Job, jobs: &[Job]) -> MapContext {
    let mut ctx = MapContext::default();
    if let Ok(spec) = serde_json::from_str::<RunSpec>(&run.spec) {
        ctx.contexts.insert(
            "github".into(),
            Value::Object(crate::trigger::github_context(state, run, &spec)),
        );
        ctx.contexts.insert("inputs".into(), json!(spec.inputs));
    }
    ctx.contexts
        .insert("needs".into(), json!(needs_context(job, jobs)));
    let vars = state
        .repository(&run.repository_name)
        .map(|r| r.vars)
        .unwrap_or_default();
    ctx.contexts.insert("vars".into(), json!(vars));
    ctx
}

/// A job's `concurrency:` as stored at run creation (`job_concurrency`), evaluated when the
/// job becomes runnable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobConcurrency {
    /// The group template's source.
    group: String,
    /// `cancel-in-progress`: a boolean or an expression's source.
    cancel_in_progress: Value,
    /// Where the group is written: `file:line:col`.
    at: String,
    /// The job's `strategy.matrix` (the group is evaluated for each leg).
    matrix: Option<Value>,
    /// `strategy.fail-fast` and `strategy.max-parallel` when they are literals (for the
    /// `strategy` context).
    #[serde(default = "yes")]
    fail_fast: bool,
    #[serde(default)]
    max_parallel: Option<f64>,
}

fn yes() -> bool {
    true
}

impl JobConcurrency {
    /// The `concurrency:` of a planned job, if it has one.
    pub(crate) fn of(file: &str, job: &workflow::Job) -> Option<JobConcurrency> {
        let c = job.concurrency.as_ref()?;
        Some(JobConcurrency {
            group: c.group.source().to_owned(),
            cancel_in_progress: match &c.cancel_in_progress {
                workflow::BoolOrExpr::Bool(b) => Value::Bool(*b),
                workflow::BoolOrExpr::Expr(t) => Value::String(t.source().to_owned()),
            },
            at: format!("{file}:{}:{}", c.span.line, c.span.col),
            matrix: job.strategy.as_ref().and_then(|s| s.matrix.clone()),
            fail_fast: !matches!(
                job.strategy.as_ref().map(|s| &s.fail_fast),
                Some(workflow::BoolOrExpr::Bool(false))
            ),
            max_parallel: match job.strategy.as_ref().and_then(|s| s.max_parallel.as_ref()) {
                Some(workflow::NumberOrExpr::Number(n)) => Some(*n),
                _ => None,
            },
        })
    }

    /// The distinct non-empty groups (one per matrix leg; compared without case, as GitHub
    /// does: lowercased) and whether any leg cancels jobs in progress. `Err`: a message saying
    /// where and what failed.
    fn evaluate(&self, mut ctx: MapContext) -> Result<(Vec<String>, bool), String> {
        let fail =
            |what: &str, e: &dyn std::fmt::Display| format!("{}: evaluating {what}: {e}", self.at);
        let group = workflow::expr::Template::parse(&self.group)
            .map_err(|e| fail("the concurrency group", &e))?;
        let cancel = match &self.cancel_in_progress {
            Value::String(src) => Some(
                workflow::expr::Template::parse(src).map_err(|e| fail("cancel-in-progress", &e))?,
            ),
            _ => None,
        };
        let legs = match &self.matrix {
            Some(m) => workflow::matrix::expand(m, &ctx)
                .map_err(|e| fail("the matrix for the concurrency group", &e))?
                .into_iter()
                .map(|leg| Value::Object(leg.into_iter().collect()))
                .collect(),
            None => vec![Value::Object(Map::new())],
        };
        let mut groups = Vec::new();
        let mut cancels = self.cancel_in_progress == Value::Bool(true);
        let total = legs.len();
        for (index, leg) in legs.into_iter().enumerate() {
            ctx.contexts.insert("matrix".into(), leg);
            ctx.contexts.insert(
                "strategy".into(),
                json!({
                    "fail-fast": self.fail_fast, "job-index": index, "job-total": total,
                    "max-parallel": self.max_parallel.unwrap_or(total as f64),
                }),
            );
            let g = group
                .eval_string(&ctx)
                .map_err(|e| fail(&format!("the concurrency group `{}`", self.group), &e))?;
            if let Some(c) = &cancel {
                let v = c
                    .eval(&ctx)
                    .map_err(|e| fail(&format!("cancel-in-progress `{}`", c.source()), &e))?;
                cancels |= workflow::expr::truthy(&v);
            }
            let g = g.to_lowercase();
            if !g.is_empty() && !groups.contains(&g) {
                groups.push(g);
            }
        }
        Ok((groups, cancels))
    }
}

/// Runs that one advance touched in their concurrency groups: to advance (jobs replaced or
/// cancelled, jobs waiting in groups that were freed) and to cancel (runs whose
/// workflow-level group a job entered).
#[derive(Default)]
struct Touched {
    advance: Vec<RunId>,
    cancel: Vec<RunId>,
}

/// The job-level concurrency rule for a runnable job: `Open` when it has no group or holds
/// its groups now, `Wait` while another job (or another run's workflow-level group) holds
/// one, `Settle` when the group cannot be evaluated (failure) or is its own run's
/// workflow-level group (a deadlock: cancelled, as on GitHub).
async fn concurrency_gate(
    state: &AppState,
    run: &store::sql::Run,
    job: &Job,
    jobs: &[Job],
    spec: &JobConcurrency,
    touched: &mut Touched,
) -> Result<Gate, ServerError> {
    let (groups, cancel_in_progress) = match spec.evaluate(job_context(state, run, job, jobs)) {
        Ok(g) => g,
        Err(reason) => {
            let log = format!("##[error]{reason}\n");
            state
                .db()
                .append_log(job.id, 0, 0, log.as_bytes(), now_ms())
                .await?;
            return Ok(Gate::Settle(Conclusion::Failure, reason));
        }
    };
    if groups.is_empty() {
        return Ok(Gate::Open);
    }
    // The run holds its workflow-level group until it ends, and would wait for this job.
    if let Some(group) = &run.concurrency_group
        && groups.contains(group)
    {
        let reason = format!(
            "Canceling since a deadlock for concurrency group '{group}' was detected between 'top level workflow' and '{}'",
            job.key
        );
        return Ok(Gate::Settle(Conclusion::Cancelled, reason));
    }
    let reason = format!(
        "superseded by job {} of run {} in concurrency group {}",
        job.key,
        run.id,
        groups.join(", ")
    );
    let entered = state
        .db()
        .enter_groups(
            job.id,
            &store::sql::EnterOptions {
                repository: run.repository,
                run: run.id,
                groups: &groups,
                waiting: &format!("waiting for concurrency group {}", groups.join(", ")),
                cancel_in_progress,
                reason: &reason,
                now: now_ms(),
            },
        )
        .await?;
    for (id, other) in entered.replaced.iter().chain(&entered.cancelled) {
        tracing::info!(job_id = %id, run_id = %other, by_job = %job.id, groups = ?groups, "Job cancelled by a concurrency group.");
        if !touched.advance.contains(other) {
            touched.advance.push(*other);
        }
    }
    for other in entered.runs {
        tracing::info!(run_id = %other, by_job = %job.id, groups = ?groups, "Run cancelled by a job's concurrency group.");
        if !touched.cancel.contains(&other) {
            touched.cancel.push(other);
        }
    }
    if entered.admitted {
        Ok(Gate::Open)
    } else {
        tracing::debug!(job_id = %job.id, groups = ?groups, "Job waits for its concurrency group.");
        Ok(Gate::Wait)
    }
}

/// `POST /api/v1/jobs/{id}/cancel`: cancels one job (maintainer or admin).
pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new().route(
        "/api/v1/jobs/{id}/cancel",
        axum::routing::post(cancel_job_route),
    )
}

async fn cancel_job_route(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let actor = match crate::api::authorize(&state, &headers, crate::api::Need::Write) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let job = match state.db().job(JobId(id)).await {
        Ok(Some(j)) => j,
        Ok(None) => return crate::error_response(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => return crate::internal(e),
    };
    match cancel_job(&state, job.id, &actor).await {
        Ok(true) => {}
        Ok(false) => {
            return crate::error_response(
                StatusCode::CONFLICT,
                format!("job {id} has already finished"),
            );
        }
        Err(e) => return crate::internal(e),
    }
    if let Ok(Some(run)) = state.db().run(job.run).await {
        crate::api::audit_run(&state, &actor, &run, &format!("job.cancel {}", job.key)).await;
    }
    StatusCode::ACCEPTED.into_response()
}

/// Cancels one job: not started, it ends now (and its run advances); running, its agent
/// stops it at its next heartbeat. `false`: unknown or already finished.
pub(crate) async fn cancel_job(
    state: &AppState,
    job: JobId,
    by: &str,
) -> Result<bool, ServerError> {
    let reason = format!("cancelled by {by}");
    let Some(settled) = state.db().cancel_job(job, &reason, now_ms()).await? else {
        return Ok(false);
    };
    tracing::info!(job_id = %job, by, "Job cancelled.");
    if let Some(j) = state.db().job(job).await? {
        if settled {
            advance(state, j.run).await?;
        } else {
            state.changed(Change::Run(j.run.0));
        }
    }
    Ok(true)
}

/// Whether an older run of the same concurrency group is still active (then this run waits).
async fn gated(state: &AppState, run: &store::sql::Run) -> Result<bool, ServerError> {
    let Some(group) = &run.concurrency_group else {
        return Ok(false);
    };
    if state
        .db()
        .active_in_group(run.repository, group)
        .await?
        .iter()
        .any(|r| r.id < run.id)
    {
        return Ok(true);
    }
    // Or a job of another run holds the group (one namespace for both levels).
    Ok(state
        .db()
        .group_held_by_a_job(run.repository, group, run.id)
        .await?)
}

/// Cancels a run: waiting jobs end now; running ones when their agents hear of it. When
/// nothing is running the run finishes at once. `false`: unknown or already finished.
pub(crate) async fn cancel(state: &AppState, run: RunId) -> Result<bool, ServerError> {
    if !state.db().cancel_run(run, now_ms()).await? {
        return Ok(false);
    }
    tracing::info!(run_id = %run, "Run cancelled.");
    let running = state
        .db()
        .jobs(run)
        .await?
        .iter()
        .any(|j| j.status == JobStatus::Running);
    if !running {
        Box::pin(advance(state, run)).await?;
    }
    state.changed(Change::Run(run.0));
    Ok(true)
}

/// Re-runs the failed (or cancelled) jobs of a finished run — or, with `all`, every job — and
/// every job that depends on them; the other jobs keep their results. Returns the keys of the
/// re-run jobs (`None`: the run is not finished).
pub(crate) async fn rerun(
    state: &AppState,
    run: RunId,
    all: bool,
) -> Result<Option<Vec<String>>, ServerError> {
    let jobs = state.db().jobs(run).await?;
    let mut chosen: Vec<&Job> = jobs
        .iter()
        .filter(|j| all || matches!(j.result, Some(Conclusion::Failure | Conclusion::Cancelled)))
        .collect();
    loop {
        let before = chosen.len();
        for j in &jobs {
            if !chosen.iter().any(|c| c.id == j.id)
                && needs_of(j)
                    .iter()
                    .any(|n| chosen.iter().any(|c| &c.key == n))
            {
                chosen.push(j);
            }
        }
        if chosen.len() == before {
            break;
        }
    }
    // A workflow that did not compile has nothing to re-run.
    chosen.retain(|j| j.key != "(workflow)");
    let ids: Vec<_> = chosen.iter().map(|j| j.id).collect();
    let keys: Vec<String> = jobs
        .iter()
        .filter(|j| ids.contains(&j.id))
        .map(|j| j.key.clone())
        .collect();
    // They enter their concurrency groups again when they become runnable.
    state.db().reset_job_concurrency(&ids).await?;
    if ids.is_empty() || !state.db().rerun(run, &ids).await? {
        return Ok(if ids.is_empty() {
            Some(Vec::new())
        } else {
            None
        });
    }
    tracing::info!(run_id = %run, jobs = ?keys, all, "Re-running jobs.");
    state
        .report_status(run, crate::status::StatusState::Pending)
        .await;
    advance(state, run).await?;
    Ok(Some(keys))
}

/// Queues or skips the pending jobs of `run` whose needs are done (repeatedly, as skipping
/// one may settle others), and finishes the run when every job is done.
pub(crate) async fn advance(state: &AppState, run_id: RunId) -> Result<(), ServerError> {
    advance_at(state, run_id, 0).await
}

/// How deep runs advancing each other (through concurrency groups) may go in one call; what
/// is left is picked up by the next event of those runs.
const MAX_DEPTH: u32 = 4;

async fn advance_at(state: &AppState, run_id: RunId, depth: u32) -> Result<(), ServerError> {
    let Some(run) = state.db().run(run_id).await? else {
        return Ok(());
    };
    let waits = gated(state, &run).await?;
    let first = state.db().jobs(run_id).await?;
    // Deployments whose jobs ended are completed first (and free their environments).
    crate::environments::deployments::settle(state, run_id, &first).await?;
    // Jobs' `concurrency:`, read only when some job may become runnable.
    let specs: BTreeMap<JobId, JobConcurrency> =
        if first.iter().any(|j| j.status == JobStatus::Pending) {
            state
                .db()
                .job_concurrency(run_id)
                .await?
                .into_iter()
                .filter_map(|(id, spec)| Some((id, serde_json::from_str(&spec).ok()?)))
                .collect()
        } else {
            BTreeMap::new()
        };
    let mut touched = Touched::default();
    let mut queued = false;
    loop {
        let mut jobs = state.db().jobs(run_id).await?;
        if jobs
            .iter()
            .any(|j| j.result == Some(Conclusion::Cancelled) && j.reason.is_none())
        {
            state.db().apply_cancel_reasons(run_id).await?;
            jobs = state.db().jobs(run_id).await?;
        }
        let mut progressed = false;
        for job in jobs.iter().filter(|j| j.status == JobStatus::Pending) {
            let needs = needs_of(job);
            if waits && needs.is_empty() && !run.cancel_requested {
                continue;
            }
            let ready = needs.iter().all(|n| {
                jobs.iter()
                    .find(|j| &j.key == n)
                    .is_none_or(|j| j.status == JobStatus::Done)
            });
            if !ready {
                continue;
            }
            let decision = match decide(state, &run, job, &jobs) {
                // A job with `concurrency:` enters its groups first, then a job with
                // `environment:` passes its environment's gate.
                Decision::Queue => {
                    let mut gate = Gate::Open;
                    if let Some(spec) = specs.get(&job.id) {
                        let before = touched.advance.len();
                        gate =
                            concurrency_gate(state, &run, job, &jobs, spec, &mut touched).await?;
                        // It replaced a job of this very run: look at the jobs again.
                        if touched.advance[before..].contains(&run_id) {
                            touched.advance.retain(|r| *r != run_id);
                            progressed = true;
                        }
                    }
                    if matches!(gate, Gate::Open) {
                        gate = crate::environments::gate(state, &run, job, &jobs).await?;
                    }
                    match gate {
                        Gate::Open => Decision::Queue,
                        Gate::Wait => continue,
                        Gate::Settle(result, reason) => Decision::Settle(result, Some(reason)),
                    }
                }
                settle => settle,
            };
            match decision {
                Decision::Queue => {
                    if state.db().queue_job(job.id).await? {
                        queued = true;
                    }
                }
                Decision::Settle(result, reason) => {
                    state
                        .db()
                        .settle_job(job.id, result, reason.as_deref(), now_ms())
                        .await?;
                    progressed = true;
                }
            }
        }
        if !progressed {
            if jobs.iter().all(|j| j.status == JobStatus::Done) {
                let run = state.db().run(run_id).await?.unwrap_or(run);
                let failed = jobs.iter().any(|j| j.result == Some(Conclusion::Failure));
                let with_reason = |j: &Job, what: &str| {
                    format!(
                        "job {} {what}{}",
                        j.key,
                        j.reason
                            .as_deref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    )
                };
                // As on GitHub: a failed job fails the run; else a cancelled one (by the
                // run's cancellation, a concurrency group or the API) cancels it.
                let cancelled = jobs
                    .iter()
                    .find(|j| j.result == Some(Conclusion::Cancelled));
                let (conclusion, reason) = if run.cancel_requested {
                    (Conclusion::Cancelled, Some("cancelled".to_owned()))
                } else if failed {
                    let reason = jobs
                        .iter()
                        .find(|j| j.result == Some(Conclusion::Failure))
                        .map(|j| with_reason(j, "failed"));
                    (Conclusion::Failure, reason)
                } else if let Some(j) = cancelled {
                    (Conclusion::Cancelled, Some(with_reason(j, "was cancelled")))
                } else {
                    (Conclusion::Success, None)
                };
                if state
                    .db()
                    .finish_run(run_id, conclusion, reason.as_deref(), now_ms())
                    .await?
                {
                    tracing::info!(run_id = %run_id, conclusion = %conclusion, "Run finished.");
                    state.run_finished(run_id).await;
                    // The next run of its concurrency group may start now.
                    if let Some(group) = &run.concurrency_group
                        && let Some(next) = state
                            .db()
                            .active_in_group(run.repository, group)
                            .await?
                            .first()
                    {
                        Box::pin(advance_at(state, next.id, depth + 1)).await?;
                    }
                }
            }
            break;
        }
    }
    if queued {
        state.jobs_queued();
    }
    state.changed(Change::Run(run_id.0));
    // Runs whose workflow-level group a job of this run entered are cancelled.
    for other in touched.cancel {
        Box::pin(cancel(state, other)).await?;
    }
    // Jobs this run replaced or cancelled in their groups, and jobs waiting in the groups
    // this run's finished jobs held, may go on.
    if depth < MAX_DEPTH {
        for waiting in state.db().runs_waiting_on(run_id).await? {
            if waiting != run_id && !touched.advance.contains(&waiting) {
                touched.advance.push(waiting);
            }
        }
        for other in touched.advance {
            Box::pin(advance_at(state, other, depth + 1)).await?;
        }
    }
    Ok(())
}

/// The scheduler's background work until `stop`: lease expiry, and the delivery side
/// (environments' wait timers and timeouts, forge deployment statuses).
pub(crate) async fn reap_leases(state: AppState, stop: CancellationToken) {
    recheck_groups(&state).await;
    tokio::join!(
        expire_leases(state.clone(), stop.clone()),
        crate::environments::deployments::background(state, stop)
    );
}

/// At start: advances the runs that may wait in a concurrency group, in case the server
/// stopped after a group was freed but before its waiter was woken.
async fn recheck_groups(state: &AppState) {
    let runs = match state.db().runs_in_groups().await {
        Ok(r) => r,
        Err(error) => {
            tracing::error!(%error, "Reading the runs in concurrency groups failed.");
            return;
        }
    };
    for run in runs {
        if let Err(error) = advance(state, run).await {
            tracing::error!(%error, run_id = %run, "Advancing a run in a concurrency group failed.");
        }
    }
}

/// Expires leases when they end: sleeps until the earliest lease end (with no lease, one lease
/// TTL: a lease taken meanwhile ends later, so leases need not wake it), then requeues or
/// fails the expired jobs.
async fn expire_leases(state: AppState, stop: CancellationToken) {
    loop {
        let leases = state.0.leases.notified();
        tokio::pin!(leases);
        leases.as_mut().enable();
        let wait = match state.db().next_lease_expiry().await {
            Ok(Some(at)) => {
                Duration::from_millis(u64::try_from((at - now_ms()).max(0)).unwrap_or(0) + 1)
            }
            Ok(None) => state.lease_ttl(),
            Err(error) => {
                tracing::error!(%error, "Reading lease expiries failed.");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = &mut leases => continue,
            _ = tokio::time::sleep(wait) => {}
        }
        match state.db().expire_leases(now_ms()).await {
            Ok(expired) => {
                let mut requeued = false;
                for e in expired {
                    let id = match e {
                        Expired::Requeued(id) => {
                            tracing::warn!(job_id = %id, "Lease expired; job queued again.");
                            requeued = true;
                            id
                        }
                        Expired::Failed(id) => {
                            tracing::warn!(job_id = %id, "Lease expired again; job failed (agent lost).");
                            id
                        }
                    };
                    if let Ok(Some(job)) = state.db().job(id).await
                        && let Err(error) = advance(&state, job.run).await
                    {
                        tracing::error!(%error, "Advancing a run after lease expiry failed.");
                    }
                }
                if requeued {
                    state.jobs_queued();
                }
            }
            Err(error) => tracing::error!(%error, "Expiring leases failed."),
        }
    }
}

/// How long a [`StoreLock`] is held at most when its holder dies without releasing it.
const LOCK_TTL_MS: i64 = 30_000;

/// A lock in the store (`named_locks`), so that server replicas sharing one database
/// serialize on it: held until dropped (released by a spawned task) or, if this process
/// dies, until it expires.
pub(crate) struct StoreLock {
    state: AppState,
    name: String,
    holder: String,
    released: bool,
}

impl StoreLock {
    /// Waits until the lock `name` is free and takes it.
    ///
    /// # Cancel safety
    /// Cancel-safe: a lock taken by a cancelled call expires after [`LOCK_TTL_MS`].
    pub(crate) async fn acquire(state: &AppState, name: String) -> Result<StoreLock, ServerError> {
        let holder = uuid::Uuid::new_v4().simple().to_string();
        let mut pause = Duration::from_millis(1);
        while !state
            .db()
            .try_lock(&name, &holder, now_ms(), LOCK_TTL_MS)
            .await?
        {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        Ok(StoreLock {
            state: state.clone(),
            name,
            holder,
            released: false,
        })
    }

    /// Releases the lock.
    pub(crate) async fn release(mut self) {
        self.released = true;
        if let Err(error) = self.state.db().unlock(&self.name, &self.holder).await {
            tracing::warn!(%error, lock = %self.name, "Releasing a lock failed; it expires on its own.");
        }
    }
}

impl Drop for StoreLock {
    /// A lock not released (its holder's future was dropped) is released by a task, so
    /// that it does not wait for its expiry.
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let state = self.state.clone();
        let name = std::mem::take(&mut self.name);
        let holder = std::mem::take(&mut self.holder);
        let release = async move {
            if let Err(error) = state.db().unlock(&name, &holder).await {
                tracing::warn!(%error, lock = %name, "Releasing a lock failed; it expires on its own.");
            }
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(release);
        }
    }
}
