//! Moving runs forward: when a job finishes, its dependents whose needs are all done are
//! queued or skipped (their `if:` evaluated here with `workflow::expr`), and a run whose
//! jobs are all done is finished. Leases that stop heart-beating expire (retried once, then
//! failed as "agent lost").

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};
use store::sql::{Conclusion, Expired, Job, JobStatus, RunId};
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
    let spec: Option<RunSpec> = serde_json::from_str(&run.spec).ok();
    let mut ctx = MapContext {
        status,
        ..MapContext::default()
    };
    if let Some(spec) = &spec {
        ctx.contexts.insert(
            "github".into(),
            Value::Object(crate::trigger::github_context(state, run, spec)),
        );
        ctx.contexts.insert("inputs".into(), json!(spec.inputs));
    }
    ctx.contexts.insert("needs".into(), json!(needs));
    let vars = state
        .repository(&run.repository_name)
        .map(|r| r.vars)
        .unwrap_or_default();
    ctx.contexts.insert("vars".into(), json!(vars));
    match condition.eval(&ctx) {
        Ok(true) => Decision::Queue,
        Ok(false) => Decision::Settle(Conclusion::Skipped, None),
        Err(e) => Decision::Settle(Conclusion::Failure, Some(format!("evaluating if: {e}"))),
    }
}

/// Whether an older run of the same concurrency group is still active (then this run waits).
async fn gated(state: &AppState, run: &store::sql::Run) -> Result<bool, ServerError> {
    let Some(group) = &run.concurrency_group else {
        return Ok(false);
    };
    Ok(state
        .db()
        .active_in_group(run.repository, group)
        .await?
        .iter()
        .any(|r| r.id < run.id))
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
    let Some(run) = state.db().run(run_id).await? else {
        return Ok(());
    };
    let waits = gated(state, &run).await?;
    // Deployments whose jobs ended are completed first (and free their environments).
    crate::environments::deployments::settle(state, run_id, &state.db().jobs(run_id).await?)
        .await?;
    let mut queued = false;
    loop {
        let jobs = state.db().jobs(run_id).await?;
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
                // A job with `environment:` passes its environment's gate first.
                Decision::Queue => {
                    match crate::environments::gate(state, &run, job, &jobs).await? {
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
                let failed = jobs
                    .iter()
                    .any(|j| matches!(j.result, Some(Conclusion::Failure | Conclusion::Cancelled)));
                let (conclusion, reason) = if run.cancel_requested {
                    (Conclusion::Cancelled, Some("cancelled".to_owned()))
                } else if failed {
                    let reason = jobs
                        .iter()
                        .find(|j| j.result == Some(Conclusion::Failure))
                        .map(|j| {
                            format!(
                                "job {} failed{}",
                                j.key,
                                j.reason
                                    .as_deref()
                                    .map(|r| format!(": {r}"))
                                    .unwrap_or_default()
                            )
                        });
                    (Conclusion::Failure, reason)
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
                        Box::pin(advance(state, next.id)).await?;
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
    Ok(())
}

/// The scheduler's background work until `stop`: lease expiry, and the delivery side
/// (environments' wait timers and timeouts, forge deployment statuses).
pub(crate) async fn reap_leases(state: AppState, stop: CancellationToken) {
    tokio::join!(
        expire_leases(state.clone(), stop.clone()),
        crate::environments::deployments::background(state, stop)
    );
}

/// Expires leases when they end: sleeps until the earliest lease end (woken early when a
/// new lease is taken), then requeues or fails the expired jobs.
async fn expire_leases(state: AppState, stop: CancellationToken) {
    loop {
        let leases = state.0.leases.notified();
        tokio::pin!(leases);
        leases.as_mut().enable();
        let wait = match state.db().next_lease_expiry().await {
            Ok(Some(at)) => {
                Duration::from_millis(u64::try_from((at - now_ms()).max(0)).unwrap_or(0) + 1)
            }
            Ok(None) => Duration::from_secs(3600),
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
