//! Scheduling: jobs in `needs` order, independent jobs and matrix legs in parallel, job
//! `if:`, `runs-on` mapping, fail-fast, reusable workflow calls.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use indexmap::IndexMap;
use serde_json::{Map, Value, json};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use workflow::expr::{Status, Template};
use workflow::matrix::Leg;
use workflow::{BoolOrExpr, CallSecrets, Job, JobKind, NumberOrExpr, Plan};

use crate::context::Ctx;
use crate::executor::RunDocker;
use crate::executor::host::{HostExecutor, HostOptions};
use crate::{
    Event, JobOutcome, JobResult, JobSummary, RunError, RunOptions, RunSummary, RunTuning,
};

/// What every job of a run shares.
pub(crate) struct Shared {
    pub options: RunOptions,
    pub tuning: RunTuning,
    pub events: mpsc::Sender<Event>,
    pub cancel: CancellationToken,
    pub host: HostExecutor,
    /// Every docker engine the run uses, with the run's id (one sweep removes it all).
    pub docker: Arc<RunDocker>,
    pub run_dir: PathBuf,
    pub artifact_dir: PathBuf,
    pub host_env: IndexMap<String, String>,
    pub debug: bool,
    pub counter: AtomicUsize,
    pub summaries: Mutex<Vec<(JobSummary, bool)>>,
}

impl Shared {
    /// Sends an event; waits only when the channel is full (a closed channel drops it).
    pub async fn emit(&self, event: Event) {
        match self.events.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                let _ = self.events.send(event).await;
            }
        }
    }

    pub fn next_id(&self) -> usize {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }
}

/// One plan being run (the top-level workflow or a called one).
pub(crate) struct PlanScope {
    pub plan: Arc<Plan>,
    /// Prefix of job ids (`call / ` for jobs of a called workflow).
    pub prefix: String,
    /// A plan passed to [`crate::run`] (not a called workflow): its needs outside the plan
    /// come from `RunOptions::needs`.
    pub top_level: bool,
    pub inputs: Value,
    pub secrets: IndexMap<String, String>,
}

fn outcome_value(o: &JobOutcome) -> Value {
    json!({ "result": result_str(o.result), "outputs": Value::Object(o.outputs.clone()) })
}

pub(crate) fn result_str(r: JobResult) -> &'static str {
    match r {
        JobResult::Success => "success",
        JobResult::Failure => "failure",
        JobResult::Cancelled => "cancelled",
        JobResult::Skipped => "skipped",
    }
}

pub(crate) async fn run(
    plans: Vec<Plan>,
    options: RunOptions,
    tuning: RunTuning,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
) -> Result<RunSummary, RunError> {
    let run_dir = options
        .work_root
        .join(format!("run-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&run_dir).map_err(|source| RunError::WorkDir {
        path: run_dir.clone(),
        source,
    })?;
    let artifact_dir = options
        .artifact_dir
        .clone()
        .unwrap_or_else(|| run_dir.join("artifacts"));
    std::fs::create_dir_all(&artifact_dir).map_err(|source| RunError::WorkDir {
        path: artifact_dir.clone(),
        source,
    })?;
    let host_env: IndexMap<String, String> = std::env::vars().collect();
    let flag = |k: &str| {
        options
            .env
            .get(k)
            .or(options.vars.get(k))
            .or(options.secrets.get(k))
            .is_some_and(|v| v == "true" || v == "1")
    };
    let debug = flag("ACTIONS_STEP_DEBUG") || flag("RUNNER_DEBUG");
    let docker = Arc::new(RunDocker::new(
        crate::executor::docker::run_id_for(&options.work_root),
    ));
    let host = HostExecutor::with_docker(
        HostOptions {
            sandbox: options.sandbox,
            docker_host: options.docker_host.clone(),
        },
        docker.clone(),
    );
    let shared = Arc::new(Shared {
        options,
        tuning,
        events,
        cancel,
        host,
        docker,
        run_dir: run_dir.clone(),
        artifact_dir,
        host_env,
        debug,
        counter: AtomicUsize::new(0),
        summaries: Mutex::new(Vec::new()),
    });

    let many = plans.len() > 1;
    let mut all_jobs = Vec::new();
    let mut scopes = Vec::new();
    for plan in plans {
        let prefix = if many {
            format!("{} / ", plan_stem(&plan.file))
        } else {
            String::new()
        };
        all_jobs.extend(plan.jobs.iter().map(|j| format!("{prefix}{}", j.id)));
        let inputs = dispatch_inputs(&plan, &shared.options);
        scopes.push(Arc::new(PlanScope {
            plan: Arc::new(plan),
            prefix,
            top_level: true,
            inputs,
            secrets: shared.options.secrets.clone(),
        }));
    }
    shared
        .emit(Event::RunStarted {
            workflows: scopes.iter().map(|s| s.plan.file.clone()).collect(),
            jobs: all_jobs,
        })
        .await;
    let mut set = JoinSet::new();
    for scope in scopes {
        set.spawn(run_plan(shared.clone(), scope));
    }
    while set.join_next().await.is_some() {}
    // Whatever a job could not remove (a cancelled prepare) goes with the run.
    shared.docker.cleanup().await;

    let summaries = std::mem::take(&mut *shared.summaries.lock().await);
    let success = summaries.iter().all(|(s, allowed)| {
        *allowed || !matches!(s.result, JobResult::Failure | JobResult::Cancelled)
    });
    shared.emit(Event::RunFinished { success }).await;
    if shared.options.artifact_dir.is_some() {
        let _ = std::fs::remove_dir_all(run_dir.join("jobs"));
    }
    let _ = std::fs::remove_dir_all(&run_dir);
    Ok(RunSummary {
        jobs: summaries.into_iter().map(|(s, _)| s).collect(),
        success,
    })
}

fn plan_stem(file: &str) -> String {
    let name = file.rsplit('/').next().unwrap_or(file);
    name.trim_end_matches(".yml")
        .trim_end_matches(".yaml")
        .to_owned()
}

/// The `inputs` context of a top-level plan: `workflow_dispatch` inputs with defaults and
/// types, overridden by `--input`.
fn dispatch_inputs(plan: &Plan, options: &RunOptions) -> Value {
    let mut out = Map::new();
    let mut ctx = Ctx::default();
    ctx.set("github", Value::Object(options.github.clone()));
    if let Some(trigger) = &plan.trigger {
        for (name, spec) in &trigger.inputs {
            if let Some(d) = &spec.default {
                let v = d.eval_string(&ctx).unwrap_or_default();
                out.insert(name.clone(), typed_input(&spec.kind, v));
            }
        }
        for (name, v) in &options.inputs {
            let kind = trigger
                .inputs
                .get(name)
                .map(|s| s.kind.as_str())
                .unwrap_or("string");
            out.insert(name.clone(), typed_input(kind, v.clone()));
        }
    } else {
        for (name, v) in &options.inputs {
            out.insert(name.clone(), Value::String(v.clone()));
        }
    }
    Value::Object(out)
}

pub(crate) fn typed_input(kind: &str, v: String) -> Value {
    match kind {
        "boolean" => match v.trim() {
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" | "" => Value::Bool(false),
            _ => Value::String(v),
        },
        "number" => v
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
            .map_or_else(
                || Value::String(v.clone()),
                |n| match n {
                    Value::Number(num)
                        if num
                            .as_f64()
                            .is_some_and(|f| f.fract() == 0.0 && f.abs() < 9e15) =>
                    {
                        json!(num.as_f64().map(|f| f as i64).unwrap_or_default())
                    }
                    other => other,
                },
            ),
        _ => Value::String(v),
    }
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs every job of a plan in needs order; returns the outcome by (unprefixed) job id.
pub(crate) fn run_plan(
    shared: Arc<Shared>,
    scope: Arc<PlanScope>,
) -> BoxFut<'static, IndexMap<String, JobOutcome>> {
    Box::pin(async move {
        let plan = scope.plan.clone();
        let ids: HashSet<&str> = plan.jobs.iter().map(|j| j.id.as_str()).collect();
        let mut done: IndexMap<String, JobOutcome> = IndexMap::new();
        let mut started: HashSet<String> = HashSet::new();
        let mut set: JoinSet<JobOutcome> = JoinSet::new();
        let mut task_job: HashMap<tokio::task::Id, String> = HashMap::new();
        for job in plan
            .jobs
            .iter()
            .filter(|j| j.strategy.as_ref().is_none_or(|s| s.matrix.is_none()))
        {
            shared
                .emit(Event::JobQueued {
                    job: format!("{}{}", scope.prefix, job.id),
                    name: job
                        .name
                        .as_ref()
                        .map_or_else(|| job.id.clone(), |n| n.source().to_owned()),
                    needs: job
                        .needs
                        .iter()
                        .map(|n| format!("{}{n}", scope.prefix))
                        .collect(),
                })
                .await;
        }
        loop {
            for job in &plan.jobs {
                if started.contains(&job.id) {
                    continue;
                }
                let ready = job
                    .needs
                    .iter()
                    .all(|n| done.contains_key(n) || !ids.contains(n.as_str()));
                if !ready {
                    continue;
                }
                started.insert(job.id.clone());
                // A need outside the plan was decided by the caller (`RunOptions::needs`).
                let outcome = |n: &str| {
                    done.get(n).or_else(|| {
                        (scope.top_level && !ids.contains(n))
                            .then(|| shared.options.needs.get(n))
                            .flatten()
                    })
                };
                let needs: IndexMap<String, JobOutcome> = job
                    .needs
                    .iter()
                    .filter_map(|n| outcome(n).map(|o| (n.clone(), o.clone())))
                    .collect();
                let ancestors_failed = ancestors(&plan, &job.id).iter().any(|a| {
                    outcome(a).is_some_and(|o| {
                        matches!(o.result, JobResult::Failure | JobResult::Cancelled)
                    })
                });
                let handle = set.spawn(run_job(
                    shared.clone(),
                    scope.clone(),
                    job.clone(),
                    needs,
                    ancestors_failed,
                ));
                task_job.insert(handle.id(), job.id.clone());
            }
            let Some(joined) = set.join_next_with_id().await else {
                break;
            };
            match joined {
                Ok((id, outcome)) => {
                    if let Some(job) = task_job.remove(&id) {
                        done.insert(job, outcome);
                    }
                }
                Err(e) => {
                    if let Some(job) = task_job.remove(&e.id()) {
                        tracing::error!(job = %job, error = %e, "Job task failed.");
                        done.insert(
                            job,
                            JobOutcome {
                                result: JobResult::Failure,
                                outputs: Map::new(),
                            },
                        );
                    }
                }
            }
        }
        done
    })
}

fn ancestors(plan: &Plan, id: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut stack = vec![id.to_owned()];
    while let Some(cur) = stack.pop() {
        if let Some(job) = plan.jobs.iter().find(|j| j.id == cur) {
            for n in &job.needs {
                if out.insert(n.clone()) {
                    stack.push(n.clone());
                }
            }
        }
    }
    out
}

/// The contexts every job-level expression sees.
pub(crate) fn job_ctx(
    shared: &Shared,
    scope: &PlanScope,
    needs: &IndexMap<String, JobOutcome>,
) -> Ctx {
    let mut ctx = Ctx::default();
    let mut github = shared.options.github.clone();
    github
        .entry("event")
        .or_insert_with(|| shared.options.event.clone());
    github
        .entry("event_name")
        .or_insert_with(|| Value::String(shared.options.event_name.clone()));
    github
        .entry("workflow")
        .or_insert_with(|| Value::String(scope.plan.name.clone()));
    // Pull request refs come from the payload when the caller did not set them.
    if let Some(pr) = shared.options.event.get("pull_request") {
        for (key, side) in [("head_ref", "head"), ("base_ref", "base")] {
            let unset = github
                .get(key)
                .is_none_or(|v| v.as_str().is_some_and(str::is_empty));
            if unset
                && let Some(r) = pr
                    .get(side)
                    .and_then(|s| s.get("ref"))
                    .and_then(Value::as_str)
            {
                github.insert(key.into(), Value::String(r.to_owned()));
            }
        }
    }
    for (k, v) in [
        ("server_url", "https://github.com"),
        ("api_url", "https://api.github.com"),
        ("graphql_url", "https://api.github.com/graphql"),
        ("run_id", "1"),
        ("run_number", "1"),
        ("run_attempt", "1"),
        ("retention_days", "90"),
        ("repository", ""),
        ("repository_owner", ""),
        ("actor", ""),
        ("sha", ""),
        ("ref", ""),
        ("ref_name", ""),
        ("ref_type", "branch"),
        ("head_ref", ""),
        ("base_ref", ""),
    ] {
        github
            .entry(k)
            .or_insert_with(|| Value::String(v.to_owned()));
    }
    github.entry("token").or_insert_with(|| {
        Value::String(
            scope
                .secrets
                .get("GITHUB_TOKEN")
                .cloned()
                .unwrap_or_default(),
        )
    });
    ctx.set("github", Value::Object(github));
    ctx.set("inputs", scope.inputs.clone());
    ctx.set("vars", json!(shared.options.vars));
    let mut secrets: Map<String, Value> = scope
        .secrets
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    secrets
        .entry("GITHUB_TOKEN")
        .or_insert_with(|| Value::String(String::new()));
    ctx.set("secrets", Value::Object(secrets));
    ctx.set(
        "needs",
        Value::Object(
            needs
                .iter()
                .map(|(k, o)| (k.clone(), outcome_value(o)))
                .collect(),
        ),
    );
    ctx.set("env", json!(shared.options.env));
    ctx.set("matrix", Value::Object(Map::new()));
    ctx.set("strategy", Value::Object(Map::new()));
    ctx
}

fn eval_bool(b: &BoolOrExpr, ctx: &Ctx) -> Result<bool, String> {
    match b {
        BoolOrExpr::Bool(b) => Ok(*b),
        BoolOrExpr::Expr(t) => t
            .eval(ctx)
            .map(|v| workflow::expr::truthy(&v))
            .map_err(|e| format!("evaluating `{}`: {e}", t.source())),
    }
}

pub(crate) fn eval_number(n: &NumberOrExpr, ctx: &Ctx) -> Result<f64, String> {
    match n {
        NumberOrExpr::Number(n) => Ok(*n),
        NumberOrExpr::Expr(t) => {
            let v = t
                .eval(ctx)
                .map_err(|e| format!("evaluating `{}`: {e}", t.source()))?;
            match &v {
                Value::Number(n) => n.as_f64().ok_or_else(|| "not a number".to_owned()),
                other => workflow::expr::to_string(other)
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| format!("`{}` is not a number", t.source())),
            }
        }
    }
}

/// Whether a job condition may run the job although a needed job did not succeed
/// (`always()`, `failure()`, `cancelled()`; a plain or `success()` condition may not).
fn overrides_success(src: &str) -> bool {
    let s = src.to_ascii_lowercase();
    ["always(", "failure(", "cancelled("]
        .iter()
        .any(|f| s.contains(f))
}

/// Runs one job (all its matrix legs).
async fn run_job(
    shared: Arc<Shared>,
    scope: Arc<PlanScope>,
    job: Job,
    needs: IndexMap<String, JobOutcome>,
    ancestors_failed: bool,
) -> JobOutcome {
    let job_id = format!("{}{}", scope.prefix, job.id);
    let mut ctx = job_ctx(&shared, &scope, &needs);
    ctx.status = if shared.cancel.is_cancelled() {
        Status::Cancelled
    } else if ancestors_failed {
        Status::Failure
    } else {
        Status::Success
    };
    let skipped_need = needs.values().any(|o| o.result == JobResult::Skipped);
    let run = match &job.condition {
        _ if skipped_need
            && !job
                .condition
                .as_ref()
                .is_some_and(|c| overrides_success(c.source())) =>
        {
            Ok(false)
        }
        Some(c) => c
            .eval(&ctx)
            .map_err(|e| format!("evaluating `if: {}`: {e}", c.source())),
        None => Ok(ctx.status == Status::Success),
    };
    let skip = |result: JobResult, message: Option<String>| {
        let shared = shared.clone();
        let job_id = job_id.clone();
        let name = job
            .name
            .as_ref()
            .and_then(|n| n.eval_string(&ctx).ok())
            .unwrap_or_else(|| job.id.clone());
        async move {
            if let Some(message) = message {
                shared
                    .emit(Event::Annotation {
                        job: job_id.clone(),
                        step: None,
                        level: if result == JobResult::Failure {
                            "error".into()
                        } else {
                            "warning".into()
                        },
                        message,
                        file: None,
                        line: None,
                        col: None,
                    })
                    .await;
            }
            finish(&shared, &job_id, &name, result, 0, Map::new(), false).await;
            JobOutcome {
                result,
                outputs: Map::new(),
            }
        }
    };
    match run {
        Ok(true) => {}
        Ok(false) => {
            let result = if shared.cancel.is_cancelled() {
                JobResult::Cancelled
            } else {
                JobResult::Skipped
            };
            return skip(result, None).await;
        }
        Err(e) => return skip(JobResult::Failure, Some(e)).await,
    }

    // Matrix legs.
    let legs: Vec<Option<Leg>> = match job.strategy.as_ref().and_then(|s| s.matrix.as_ref()) {
        Some(matrix) => match workflow::matrix::expand(matrix, &ctx) {
            Ok(legs) => {
                let legs = workflow::matrix::filter(legs, &shared.options.matrix_filter);
                if legs.is_empty() {
                    return skip(
                        JobResult::Skipped,
                        Some(format!("job `{job_id}`: the matrix has no legs")),
                    )
                    .await;
                }
                legs.into_iter().map(Some).collect()
            }
            Err(e) => {
                return skip(
                    JobResult::Failure,
                    Some(format!("job `{job_id}`: matrix: {e}")),
                )
                .await;
            }
        },
        None => vec![None],
    };
    let fail_fast = match job.strategy.as_ref().map(|s| eval_bool(&s.fail_fast, &ctx)) {
        None => true,
        Some(Ok(b)) => b,
        Some(Err(e)) => return skip(JobResult::Failure, Some(e)).await,
    };
    // `fail-fast` defaults to true only when not written; BoolOrExpr::default() is false, so
    // an absent key must be distinguished by the compiler: it stores `Bool(true)` by default.
    let max_parallel = match job
        .strategy
        .as_ref()
        .and_then(|s| s.max_parallel.as_ref())
        .map(|m| eval_number(m, &ctx))
    {
        None => legs.len().max(1),
        Some(Ok(n)) if n >= 1.0 => n as usize,
        Some(Ok(_)) => legs.len().max(1),
        Some(Err(e)) => return skip(JobResult::Failure, Some(e)).await,
    };
    for leg in legs.iter().flatten() {
        shared
            .emit(Event::JobQueued {
                job: if leg.is_empty() {
                    job_id.clone()
                } else {
                    format!("{job_id} ({})", leg_suffix(leg))
                },
                name: job
                    .name
                    .as_ref()
                    .map_or_else(|| job.id.clone(), |n| n.source().to_owned()),
                needs: job
                    .needs
                    .iter()
                    .map(|n| format!("{}{n}", scope.prefix))
                    .collect(),
            })
            .await;
    }
    let semaphore = Arc::new(Semaphore::new(max_parallel));
    let matrix_cancel = shared.cancel.child_token();
    let total = legs.len();
    let mut set = JoinSet::new();
    for (index, leg) in legs.into_iter().enumerate() {
        let mut leg_ctx = ctx.clone();
        let leg_id = match &leg {
            Some(l) if !l.is_empty() => format!("{job_id} ({})", leg_suffix(l)),
            _ => job_id.clone(),
        };
        if let Some(l) = &leg {
            leg_ctx.set(
                "matrix",
                Value::Object(l.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            );
        }
        leg_ctx.set(
            "strategy",
            json!({ "fail-fast": fail_fast, "job-index": index, "job-total": total, "max-parallel": max_parallel }),
        );
        let shared = shared.clone();
        let scope = scope.clone();
        let job = job.clone();
        let semaphore = semaphore.clone();
        let matrix_cancel = matrix_cancel.clone();
        let has_matrix = leg.is_some();
        set.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            if matrix_cancel.is_cancelled() {
                let name = leg_name(&job, &leg_ctx, leg.as_ref(), has_matrix);
                finish(
                    &shared,
                    &leg_id,
                    &name,
                    JobResult::Cancelled,
                    0,
                    Map::new(),
                    false,
                )
                .await;
                return (JobResult::Cancelled, Map::new(), false);
            }
            let name = leg_name(&job, &leg_ctx, leg.as_ref(), has_matrix);
            let (result, outputs, allowed) = run_leg(
                shared.clone(),
                scope,
                &job,
                leg_id.clone(),
                name,
                leg_ctx,
                matrix_cancel.clone(),
            )
            .await;
            if fail_fast && result == JobResult::Failure && !allowed {
                matrix_cancel.cancel();
            }
            (result, outputs, allowed)
        });
    }
    let mut results = Vec::new();
    let mut outputs = Map::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((result, out, allowed)) => {
                results.push(if allowed { JobResult::Success } else { result });
                outputs.extend(out);
            }
            Err(_) => results.push(JobResult::Failure),
        }
    }
    let result = if results.contains(&JobResult::Failure) {
        JobResult::Failure
    } else if results.contains(&JobResult::Cancelled) {
        JobResult::Cancelled
    } else if results.iter().all(|r| *r == JobResult::Skipped) {
        JobResult::Skipped
    } else {
        JobResult::Success
    };
    JobOutcome { result, outputs }
}

fn leg_suffix(leg: &Leg) -> String {
    leg.values()
        .map(|v| match v {
            Value::Object(_) | Value::Array(_) => serde_json::to_string(v).unwrap_or_default(),
            other => workflow::expr::to_string(other),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn leg_name(job: &Job, ctx: &Ctx, leg: Option<&Leg>, has_matrix: bool) -> String {
    let suffix = leg.filter(|l| !l.is_empty()).map(leg_suffix);
    match &job.name {
        Some(t) if !t.is_literal() => t.eval_string(ctx).unwrap_or_else(|_| job.id.clone()),
        Some(t) => match suffix {
            Some(s) if has_matrix => format!("{} ({s})", t.source()),
            _ => t.source().to_owned(),
        },
        None => match suffix {
            Some(s) => format!("{} ({s})", job.id),
            None => job.id.clone(),
        },
    }
}

pub(crate) async fn finish(
    shared: &Shared,
    id: &str,
    name: &str,
    result: JobResult,
    duration_ms: u64,
    outputs: Map<String, Value>,
    allowed_failure: bool,
) {
    shared
        .emit(Event::JobFinished {
            job: id.to_owned(),
            result,
            duration_ms,
            outputs,
        })
        .await;
    shared.summaries.lock().await.push((
        JobSummary {
            id: id.to_owned(),
            name: name.to_owned(),
            result,
            duration_ms,
        },
        allowed_failure,
    ));
}

/// Runs one leg: steps on an executor, or a called workflow. Returns (result, outputs,
/// whether a failure is allowed by `continue-on-error`).
async fn run_leg(
    shared: Arc<Shared>,
    scope: Arc<PlanScope>,
    job: &Job,
    leg_id: String,
    name: String,
    mut ctx: Ctx,
    cancel: CancellationToken,
) -> (JobResult, Map<String, Value>, bool) {
    let started = Instant::now();
    let continue_on_error = eval_bool(&job.continue_on_error, &ctx).unwrap_or(false);
    match &job.kind {
        JobKind::Call(call) => {
            shared
                .emit(Event::JobStarted {
                    job: leg_id.clone(),
                    name: name.clone(),
                })
                .await;
            let (result, outputs) = match run_call(&shared, &scope, call, &leg_id, &mut ctx).await {
                Ok(r) => r,
                Err(message) => {
                    shared
                        .emit(Event::Annotation {
                            job: leg_id.clone(),
                            step: None,
                            level: "error".into(),
                            message,
                            file: None,
                            line: None,
                            col: None,
                        })
                        .await;
                    (JobResult::Failure, Map::new())
                }
            };
            let allowed = result == JobResult::Failure && continue_on_error;
            let ms = started.elapsed().as_millis() as u64;
            finish(
                &shared,
                &leg_id,
                &name,
                result,
                ms,
                outputs.clone(),
                allowed,
            )
            .await;
            (result, outputs, allowed)
        }
        JobKind::Steps(_) => {
            // runs-on -> platform.
            let mut labels = Vec::new();
            for t in &job.runs_on {
                match t.eval(&ctx) {
                    Ok(Value::Array(a)) => labels.extend(a.iter().map(workflow::expr::to_string)),
                    Ok(v) => labels.push(workflow::expr::to_string(&v)),
                    Err(e) => labels.push(format!("<{e}>")),
                }
            }
            let platform = if shared.options.platforms.is_empty() {
                Some(shared.options.default_platform.clone())
            } else {
                labels.iter().find_map(|l| {
                    shared
                        .options
                        .platforms
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(l))
                        .map(|(_, p)| p.clone())
                })
            };
            let Some(platform) = platform else {
                shared
                    .emit(Event::Annotation {
                        job: leg_id.clone(),
                        step: None,
                        level: "warning".into(),
                        message: format!(
                            "skipping job `{leg_id}`: no platform is mapped for runs-on {} (use -P {}=host)",
                            labels.join(", "),
                            labels.first().map(String::as_str).unwrap_or("LABEL")
                        ),
                        file: None,
                        line: None,
                        col: None,
                    })
                    .await;
                finish(
                    &shared,
                    &leg_id,
                    &name,
                    JobResult::Skipped,
                    0,
                    Map::new(),
                    false,
                )
                .await;
                return (JobResult::Skipped, Map::new(), false);
            };
            shared
                .emit(Event::JobStarted {
                    job: leg_id.clone(),
                    name: name.clone(),
                })
                .await;
            let (result, outputs) = crate::job::run_steps_job(
                shared.clone(),
                scope.clone(),
                job,
                &leg_id,
                ctx,
                platform,
                labels,
                cancel,
            )
            .await;
            let allowed = result == JobResult::Failure && continue_on_error;
            let ms = started.elapsed().as_millis() as u64;
            finish(
                &shared,
                &leg_id,
                &name,
                result,
                ms,
                outputs.clone(),
                allowed,
            )
            .await;
            (result, outputs, allowed)
        }
    }
}

/// Runs a reusable workflow for one leg of a calling job.
async fn run_call(
    shared: &Arc<Shared>,
    scope: &Arc<PlanScope>,
    call: &workflow::WorkflowCall,
    leg_id: &str,
    ctx: &mut Ctx,
) -> Result<(JobResult, Map<String, Value>), String> {
    let plan = call
        .plan
        .as_ref()
        .ok_or_else(|| format!("the called workflow `{}` was not compiled", call.uses))?;
    let trigger = plan.trigger.clone().unwrap_or_default();
    let mut inputs = Map::new();
    for (name, spec) in &trigger.inputs {
        if let Some(d) = &spec.default {
            let v = d
                .eval_string(ctx)
                .map_err(|e| format!("input `{name}` default: {e}"))?;
            inputs.insert(name.clone(), typed_input(&spec.kind, v));
        }
    }
    for (name, t) in &call.with {
        let v = t.eval(ctx).map_err(|e| format!("with.{name}: {e}"))?;
        // Input names are case-insensitive (as `compile` checks them): a `with:` key fills
        // the declared input, whatever its spelling.
        let declared = trigger
            .inputs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name));
        let kind = declared.map(|(_, s)| s.kind.as_str()).unwrap_or("string");
        let v = match (&v, kind) {
            (Value::String(s), "boolean" | "number") => typed_input(kind, s.clone()),
            _ => v,
        };
        inputs.insert(declared.map_or(name, |(k, _)| k).clone(), v);
    }
    for (name, spec) in &trigger.inputs {
        if spec.required && !inputs.contains_key(name) {
            return Err(format!(
                "the called workflow `{}` requires the input `{name}`",
                call.uses
            ));
        }
    }
    let secrets = match &call.secrets {
        CallSecrets::Inherit => scope.secrets.clone(),
        CallSecrets::None => IndexMap::new(),
        CallSecrets::Map(m) => {
            let mut out = IndexMap::new();
            for (k, t) in m {
                out.insert(
                    k.clone(),
                    t.eval_string(ctx)
                        .map_err(|e| format!("secrets.{k}: {e}"))?,
                );
            }
            out
        }
    };
    let nested = Arc::new(PlanScope {
        plan: Arc::new((**plan).clone()),
        prefix: format!("{leg_id} / "),
        top_level: false,
        inputs: Value::Object(inputs),
        secrets,
    });
    let done = run_plan(shared.clone(), nested.clone()).await;
    let result = if done.values().any(|o| o.result == JobResult::Failure) {
        JobResult::Failure
    } else if done.values().any(|o| o.result == JobResult::Cancelled) {
        JobResult::Cancelled
    } else {
        JobResult::Success
    };
    let mut jobs_ctx = job_ctx(shared, &nested, &IndexMap::new());
    jobs_ctx.set(
        "jobs",
        Value::Object(
            done.iter()
                .map(|(k, o)| (k.clone(), outcome_value(o)))
                .collect(),
        ),
    );
    let mut outputs = Map::new();
    for (name, out) in &trigger.outputs {
        let v = eval_template(&out.value, &jobs_ctx).unwrap_or_default();
        outputs.insert(name.clone(), Value::String(v));
    }
    Ok((result, outputs))
}

fn eval_template(t: &Template, ctx: &dyn workflow::expr::Context) -> Result<String, String> {
    t.eval_string(ctx).map_err(|e| e.to_string())
}
