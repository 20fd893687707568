//! Deployment environments: `[[environment]]` configuration and those defined through the
//! API (`stored`: kept in the store, merged over the file's), the gate a job with
//! `environment:` passes before an agent may take it (allowed refs, required reviewers, wait
//! timer, timeout, one deployment at a time per environment), approvals, and the API of
//! environments and deployment records (`deployments` below: records, audit trail, forge
//! deployment statuses, rollback).
//!
//! The gate runs in the scheduler: a job whose needs are done and whose `if:` holds is queued
//! only when [`gate`] says [`Gate::Open`]; until then it stays `pending` and its deployment
//! record says `waiting` and why. Everything the gate decides on is in the database, so a
//! server restarted while a deploy waits for approval still waits after the restart.

pub mod deployments;
pub mod stored;

use std::collections::BTreeMap;
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
    AuditEvent, Conclusion, Deployment, DeploymentStatus, Job, NewDeployment, Run, RunId,
};

use crate::config::{ConfigError, User};
use crate::{AppState, ServerError, error_response, internal, now_ms};

/// How long a deployment may wait for its reviewers by default (as GitHub: 30 days).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

/// One `[[environment]]` of the configuration.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentConfig {
    /// The repository (`owner/name`) it belongs to; `None`: every repository.
    pub repository: Option<String>,
    pub name: String,
    /// User names or group names; a deployment needs `required_approvals` of them. Empty:
    /// no approval (Continuous Deployment).
    pub reviewers: Vec<String>,
    pub required_approvals: u32,
    /// Whether the run's pusher may approve it.
    pub allow_self_approval: bool,
    /// A deployment starts no sooner than this after its job was reached.
    #[serde(serialize_with = "ser_ms")]
    pub wait_timer: Duration,
    /// A deployment waiting longer than this is rejected.
    #[serde(serialize_with = "ser_ms")]
    pub timeout: Duration,
    /// Branch patterns allowed to deploy (`refs/heads/...`); empty with `tags` empty: any ref.
    pub branches: Vec<String>,
    /// Tag patterns allowed to deploy.
    pub tags: Vec<String>,
    /// Released to the job only after the gate (never serialized).
    #[serde(skip)]
    pub secrets: BTreeMap<String, String>,
    pub vars: BTreeMap<String, String>,
    /// The environment's URL (a job's `environment.url` overrides it).
    pub url: Option<String>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl EnvironmentConfig {
    /// Whether the rules let `git_ref` deploy here.
    pub fn allows_ref(&self, git_ref: &str) -> bool {
        if self.branches.is_empty() && self.tags.is_empty() {
            return true;
        }
        if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
            return workflow::filter::filter_list(&self.branches, branch);
        }
        if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
            return workflow::filter::filter_list(&self.tags, tag);
        }
        false
    }

    /// Whether `user` is one of the reviewers (by name or by one of their groups).
    pub fn is_reviewer(&self, user: &User) -> bool {
        self.reviewers
            .iter()
            .any(|r| *r == user.name || user.groups.iter().any(|g| g == r))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvironment {
    repository: Option<String>,
    name: String,
    #[serde(default)]
    reviewers: Vec<String>,
    required_approvals: Option<u32>,
    #[serde(default)]
    allow_self_approval: bool,
    wait_timer: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    branches: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    url: Option<String>,
}

/// Reads the `[[environment]]` tables; `resolve` turns `env:NAME` values into their value.
pub(crate) fn parse_config(
    raw: Vec<toml::Value>,
    file: &str,
    resolve: &dyn Fn(&str, String) -> Result<String, ConfigError>,
) -> Result<Vec<EnvironmentConfig>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        file: file.to_owned(),
        message,
    };
    let mut out: Vec<EnvironmentConfig> = Vec::new();
    for (i, value) in raw.into_iter().enumerate() {
        let which = value.get("name").and_then(|v| v.as_str()).map_or_else(
            || format!("[[environment]] #{}", i + 1),
            |n| format!("environment {n}"),
        );
        let r: RawEnvironment = value
            .try_into()
            .map_err(|e: toml::de::Error| invalid(format!("{which}: {}", e.message())))?;
        if r.name.is_empty()
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(format!(
                "{which}: the name must be letters, digits, `-`, `_` or `.`"
            )));
        }
        if let Some(repo) = &r.repository
            && !repo.contains('/')
        {
            return Err(invalid(format!(
                "{which}: repository `{repo}` must be owner/name"
            )));
        }
        if out
            .iter()
            .any(|e| e.name == r.name && e.repository == r.repository)
        {
            return Err(invalid(format!(
                "{which} is listed twice for the same repository"
            )));
        }
        let duration = |what: &str, v: &Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(s) => crate::config::parse_duration(s).ok_or_else(|| {
                invalid(format!(
                    "{which}: {what} `{s}` is not a duration like 30s, 5m or 1h"
                ))
            }),
        };
        let wait_timer = duration("wait_timer", &r.wait_timer, Duration::ZERO)?;
        let timeout = duration("timeout", &r.timeout, DEFAULT_TIMEOUT)?;
        if timeout.is_zero() {
            return Err(invalid(format!("{which}: timeout must be more than 0s")));
        }
        let required_approvals = match r.required_approvals {
            None => u32::from(!r.reviewers.is_empty()),
            Some(0) if !r.reviewers.is_empty() => {
                return Err(invalid(format!(
                    "{which}: required_approvals must be at least 1 when reviewers are listed"
                )));
            }
            Some(n) if r.reviewers.is_empty() => {
                return Err(invalid(format!(
                    "{which}: required_approvals = {n} but no reviewers are listed"
                )));
            }
            Some(n) => n,
        };
        let mut secrets = BTreeMap::new();
        for (k, v) in r.secrets {
            secrets.insert(k.clone(), resolve(&format!("{which} secret {k}"), v)?);
        }
        out.push(EnvironmentConfig {
            repository: r.repository,
            name: r.name,
            reviewers: r.reviewers,
            required_approvals,
            allow_self_approval: r.allow_self_approval,
            wait_timer,
            timeout,
            branches: r.branches,
            tags: r.tags,
            secrets,
            vars: r.vars,
            url: r.url,
        });
    }
    Ok(out)
}

/// The rules of environment `name` of `repository`, from the configuration file or the API
/// (one naming the repository wins over one for every repository; the file's win over the
/// API's). `None`: not defined — no rules.
pub fn lookup(
    state: &AppState,
    repository: &str,
    name: &str,
) -> Option<std::sync::Arc<EnvironmentConfig>> {
    let all = stored::all(state);
    all.iter()
        .find(|d| d.config.name == name && d.config.repository.as_deref() == Some(repository))
        .or_else(|| {
            all.iter()
                .find(|d| d.config.name == name && d.config.repository.is_none())
        })
        .map(|d| d.config.clone())
}

// --- which environment a job targets ----------------------------------------------------------

/// A job's `environment:`, evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub name: String,
    pub url: Option<String>,
}

/// The expression context of the run at the server (`github`, `inputs`, `vars`, `needs`).
fn context(state: &AppState, run: &Run, job: &Job, jobs: &[Job]) -> workflow::expr::MapContext {
    let mut ctx = workflow::expr::MapContext::default();
    if let Ok(spec) = serde_json::from_str::<crate::trigger::RunSpec>(&run.spec) {
        ctx.contexts.insert(
            "github".into(),
            Value::Object(crate::trigger::github_context(state, run, &spec)),
        );
        ctx.contexts.insert("inputs".into(), json!(spec.inputs));
    }
    let vars = state
        .repository(&run.repository_name)
        .map(|r| r.vars)
        .unwrap_or_default();
    ctx.contexts.insert("vars".into(), json!(vars));
    ctx.contexts.insert(
        "needs".into(),
        json!(crate::scheduler::needs_context(job, jobs)),
    );
    ctx
}

/// The environment job `job` of `run` targets, from the run's workflow (compiled again:
/// compiling is deterministic and does no I/O). `Err`: the name does not evaluate.
pub(crate) fn target(
    state: &AppState,
    run: &Run,
    job: &Job,
    jobs: &[Job],
) -> Result<Option<Target>, String> {
    let Ok(spec) = serde_json::from_str::<crate::trigger::RunSpec>(&run.spec) else {
        return Ok(None);
    };
    let Ok(wf) = workflow::parse(&spec.workflow.source, &spec.workflow.file) else {
        return Ok(None);
    };
    let files = spec.workflow.files.clone();
    let loader = move |p: &str| files.get(p).cloned();
    let Ok(plan) = workflow::compile(
        &wf,
        &workflow::CompileOptions {
            event: &spec.event_name,
            loader: &loader,
        },
    ) else {
        return Ok(None);
    };
    let Some(env) = plan
        .jobs
        .iter()
        .find(|j| j.id == job.key)
        .and_then(|j| j.environment.clone())
    else {
        return Ok(None);
    };
    let ctx = context(state, run, job, jobs);
    let name = env
        .name
        .eval_string(&ctx)
        .map_err(|e| format!("evaluating environment: {e}"))?;
    if name.is_empty() {
        return Ok(None);
    }
    let url = env
        .url
        .as_ref()
        .and_then(|u| u.eval_string(&ctx).ok())
        .filter(|u| !u.is_empty());
    Ok(Some(Target { name, url }))
}

// --- the gate -------------------------------------------------------------------------------------

/// What the gate decided for a job that is otherwise ready to run.
pub(crate) enum Gate {
    /// Queue it (no environment, or every rule is satisfied).
    Open,
    /// Leave it pending: it waits for reviewers, the wait timer or another deployment.
    Wait,
    /// Finish it without running (a rule refused it).
    Settle(Conclusion, String),
}

pub(crate) fn audit_event(
    d: &Deployment,
    actor: &str,
    action: &str,
    detail: Option<String>,
) -> AuditEvent {
    AuditEvent {
        repository: Some(d.repository),
        environment: Some(d.environment.clone()),
        deployment: Some(d.id),
        run: Some(d.run),
        actor: actor.to_owned(),
        action: action.to_owned(),
        detail,
        ..AuditEvent::default()
    }
}

/// Moves `d` to `status` (if it is not final), writes the audit event and queues the forge
/// status. `false`: it was already final.
pub(crate) async fn transition(
    state: &AppState,
    d: &Deployment,
    status: DeploymentStatus,
    reason: Option<&str>,
    actor: &str,
) -> Result<bool, ServerError> {
    let now = now_ms();
    if !state
        .db()
        .set_deployment_status(d.id, status, reason, now)
        .await?
    {
        return Ok(false);
    }
    let action = format!("deployment.{}", status.as_str());
    state
        .db()
        .audit(
            &audit_event(d, actor, &action, reason.map(str::to_owned)),
            now,
        )
        .await?;
    tracing::info!(deployment_id = %d.id, environment = %d.environment, status = %status, reason = reason.unwrap_or(""), "Deployment changed.");
    deployments::forge_event(state, d, status, reason).await?;
    Ok(true)
}

/// Decides whether `job` (ready to run) may be queued: creates its deployment record when
/// the job is reached, then applies the environment's rules in order — allowed refs, a
/// rejection, the timeout, reviewers, the wait timer, one deployment at a time.
pub(crate) async fn gate(
    state: &AppState,
    run: &Run,
    job: &Job,
    jobs: &[Job],
) -> Result<Gate, ServerError> {
    let target = match target(state, run, job, jobs) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(Gate::Open),
        Err(e) => return Ok(Gate::Settle(Conclusion::Failure, e)),
    };
    // One gate decision at a time per environment, across every server replica sharing
    // the database, so two deployments to one environment never both pass the "nothing
    // else in progress" check.
    let lock = format!("environment:{}:{}", run.repository, target.name);
    let lock = crate::scheduler::StoreLock::acquire(state, lock).await?;
    let decided = gate_locked(state, run, job, target).await;
    lock.release().await;
    decided
}

async fn gate_locked(
    state: &AppState,
    run: &Run,
    job: &Job,
    target: Target,
) -> Result<Gate, ServerError> {
    let now = now_ms();
    let db = state.db();
    let d = match db.latest_deployment_of_job(job.id).await? {
        Some(d) if !d.status.is_final() => d,
        _ => {
            let rollback = db.rollback_request(run.id).await?;
            let config = lookup(state, &run.repository_name, &target.name);
            let new = NewDeployment {
                repository: run.repository,
                environment: target.name.clone(),
                run: run.id,
                job: job.id,
                job_key: job.key.clone(),
                sha: run.sha.clone(),
                git_ref: run.git_ref.clone(),
                pusher: run.actor.clone(),
                status: DeploymentStatus::Queued,
                reason: None,
                url: target
                    .url
                    .clone()
                    .or_else(|| config.and_then(|c| c.url.clone())),
                rollback_of: rollback.as_ref().map(|(to, _)| *to),
            };
            let id = db.create_deployment(&new, now).await?;
            let d = db
                .deployment(id)
                .await?
                .ok_or_else(|| ServerError::Internal("a new deployment vanished".into()))?;
            let detail = match &rollback {
                Some((to, by)) => format!("rollback to deployment {to}, requested by {by}"),
                None => format!("job {} of run {} at {}", job.key, run.id, short(&run.sha)),
            };
            db.audit(
                &audit_event(&d, "slipway", "deployment.created", Some(detail)),
                now,
            )
            .await?;
            deployments::forge_event(state, &d, DeploymentStatus::Queued, None).await?;
            d
        }
    };
    // The rules as they are now (an admin, maybe on another replica, may have changed them).
    stored::reload(state).await?;
    let Some(env) = lookup(state, &run.repository_name, &d.environment) else {
        return open(state, &d).await;
    };
    let env = &*env;
    if !env.allows_ref(&run.git_ref) {
        let reason = format!(
            "{} may not deploy to {} (allowed: {})",
            run.git_ref,
            d.environment,
            allowed(env)
        );
        transition(
            state,
            &d,
            DeploymentStatus::Rejected,
            Some(&reason),
            "slipway",
        )
        .await?;
        return Ok(Gate::Settle(Conclusion::Failure, reason));
    }
    let approvals = db.approvals(d.id).await?;
    if let Some(r) = approvals.iter().find(|a| a.decision == "rejected") {
        let reason = format!(
            "rejected by {}{}",
            r.user,
            r.comment
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        );
        transition(
            state,
            &d,
            DeploymentStatus::Rejected,
            Some(&reason),
            &r.user,
        )
        .await?;
        return Ok(Gate::Settle(Conclusion::Failure, reason));
    }
    let approved = approvals
        .iter()
        .filter(|a| a.decision == "approved")
        .count();
    let needs_review = approved < env.required_approvals as usize;
    let waited = Duration::from_millis(u64::try_from(now - d.created_at).unwrap_or(0));
    if needs_review && waited >= env.timeout {
        let reason = format!(
            "waited longer than the environment's timeout ({}s) for approval",
            env.timeout.as_secs()
        );
        transition(
            state,
            &d,
            DeploymentStatus::Rejected,
            Some(&reason),
            "slipway",
        )
        .await?;
        return Ok(Gate::Settle(Conclusion::Failure, reason));
    }
    if needs_review {
        let reason = format!(
            "waiting for {} of {} approval{} by {}",
            env.required_approvals - approved as u32,
            env.required_approvals,
            if env.required_approvals == 1 { "" } else { "s" },
            env.reviewers.join(", ")
        );
        return wait(state, &d, &reason).await;
    }
    if waited < env.wait_timer {
        let reason = format!(
            "wait timer: starts {}s after it was reached",
            env.wait_timer.as_secs()
        );
        return wait(state, &d, &reason).await;
    }
    open(state, &d).await
}

/// The last gate rule: nothing else in progress in the environment.
async fn open(state: &AppState, d: &Deployment) -> Result<Gate, ServerError> {
    let busy = state
        .db()
        .deployments(
            Some(&d.repository_name),
            Some(&d.environment),
            None,
            &[DeploymentStatus::InProgress],
            10,
        )
        .await?
        .into_iter()
        .find(|o| o.id != d.id);
    if let Some(other) = busy {
        let reason = format!(
            "deployment {} to {} is in progress",
            other.id, d.environment
        );
        return wait(state, d, &reason).await;
    }
    transition(state, d, DeploymentStatus::InProgress, None, "slipway").await?;
    Ok(Gate::Open)
}

async fn wait(state: &AppState, d: &Deployment, reason: &str) -> Result<Gate, ServerError> {
    if d.status != DeploymentStatus::Waiting || d.reason.as_deref() != Some(reason) {
        transition(state, d, DeploymentStatus::Waiting, Some(reason), "slipway").await?;
        // Its wait timer and timeout are armed by the background task.
        deployments::wake();
    }
    Ok(Gate::Wait)
}

fn allowed(env: &EnvironmentConfig) -> String {
    let mut parts: Vec<String> = env.branches.iter().map(|b| format!("branch {b}")).collect();
    parts.extend(env.tags.iter().map(|t| format!("tag {t}")));
    parts.join(", ")
}

pub(crate) fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The secrets and variables of a leased job: the repository's, plus its environment's once
/// its deployment passed the gate (environment values win).
pub(crate) async fn released(
    state: &AppState,
    job: &Job,
    mut secrets: BTreeMap<String, String>,
    mut vars: BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    if let Ok(Some(d)) = state.db().latest_deployment_of_job(job.id).await
        && d.status == DeploymentStatus::InProgress
        && let Some(env) = lookup(state, &d.repository_name, &d.environment)
    {
        secrets.extend(env.secrets.clone());
        vars.extend(env.vars.clone());
    }
    (secrets, vars)
}

// --- users ------------------------------------------------------------------------------------------

/// The caller (a user of the configuration file or of the store, see `crate::users`).
/// `Ok(None)`: there are no users (the API is open).
#[allow(clippy::result_large_err)]
pub(crate) fn caller(state: &AppState, headers: &HeaderMap) -> Result<Option<User>, Response> {
    crate::users::caller(state, headers)
}

fn name_of(user: Option<&User>) -> String {
    user.map_or_else(|| "anonymous".to_owned(), |u| u.name.clone())
}

// --- API ----------------------------------------------------------------------------------------------

/// The environments' and deployments' API routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/environments", get(list_environments))
        .route(
            "/api/v1/environments/{name}",
            get(get_environment)
                .put(stored::put_environment)
                .delete(stored::delete_environment),
        )
        .route("/api/v1/runs/{id}/approve", post(approve))
        .route("/api/v1/runs/{id}/reject", post(reject))
        .merge(deployments::routes())
        .merge(stored::routes())
}

/// An environment as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvironmentDto {
    pub repository: Option<String>,
    pub name: String,
    pub reviewers: Vec<String>,
    pub required_approvals: u32,
    pub allow_self_approval: bool,
    pub wait_timer_ms: u64,
    pub timeout_ms: u64,
    pub branches: Vec<String>,
    pub tags: Vec<String>,
    /// Names only.
    pub secrets: Vec<String>,
    pub vars: BTreeMap<String, String>,
    pub url: Option<String>,
    /// `config` (the configuration file; read-only through the API), `api`, or `none` (used
    /// by a workflow but not defined: no rules).
    #[serde(default)]
    pub managed_by: String,
    /// Who changed it last through the API, and when.
    #[serde(default)]
    pub updated_by: Option<String>,
    #[serde(default)]
    pub updated_at: Option<i64>,
    /// What is deployed there now (the newest successful deployment), per repository.
    pub current: Vec<deployments::DeploymentDto>,
    /// Deployments not finished yet.
    pub pending: Vec<deployments::DeploymentDto>,
}

#[derive(Deserialize)]
struct EnvQuery {
    repository: Option<String>,
}

async fn environment_dto(
    state: &AppState,
    name: &str,
    repository: Option<&str>,
) -> Result<EnvironmentDto, ServerError> {
    let all = stored::all(state);
    let defined = match repository {
        Some(r) => all
            .iter()
            .find(|d| d.config.name == name && d.config.repository.as_deref() == Some(r))
            .or_else(|| {
                all.iter()
                    .find(|d| d.config.name == name && d.config.repository.is_none())
            }),
        None => all
            .iter()
            .find(|d| d.config.name == name && d.config.repository.is_none())
            .or_else(|| all.iter().find(|d| d.config.name == name)),
    };
    let mut dto = match defined {
        Some(d) => {
            let c = &d.config;
            EnvironmentDto {
            repository: c.repository.clone(),
            name: c.name.clone(),
            reviewers: c.reviewers.clone(),
            required_approvals: c.required_approvals,
            allow_self_approval: c.allow_self_approval,
            wait_timer_ms: u64::try_from(c.wait_timer.as_millis()).unwrap_or(u64::MAX),
            timeout_ms: u64::try_from(c.timeout.as_millis()).unwrap_or(u64::MAX),
            branches: c.branches.clone(),
            tags: c.tags.clone(),
            secrets: c.secrets.keys().cloned().collect(),
            vars: c.vars.clone(),
            url: c.url.clone(),
            managed_by: d.managed_by.to_owned(),
            updated_by: d.updated_by.clone(),
            updated_at: d.updated_at,
            current: Vec::new(),
            pending: Vec::new(),
        }
        }
        None => EnvironmentDto {
            repository: repository.map(str::to_owned),
            name: name.to_owned(),
            reviewers: Vec::new(),
            required_approvals: 0,
            allow_self_approval: false,
            wait_timer_ms: 0,
            timeout_ms: u64::try_from(DEFAULT_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
            branches: Vec::new(),
            tags: Vec::new(),
            secrets: Vec::new(),
            vars: BTreeMap::new(),
            url: None,
            managed_by: "none".to_owned(),
            updated_by: None,
            updated_at: None,
            current: Vec::new(),
            pending: Vec::new(),
        },
    };
    let repo_filter = repository.or(dto.repository.as_deref()).map(str::to_owned);
    let all = state
        .db()
        .deployments(repo_filter.as_deref(), Some(name), None, &[], 500)
        .await?;
    let mut seen = Vec::new();
    for d in &all {
        if d.status == DeploymentStatus::Success && !seen.contains(&d.repository_name) {
            seen.push(d.repository_name.clone());
            dto.current.push(deployments::dto(state, d.clone()).await?);
        }
        if !d.status.is_final() {
            dto.pending.push(deployments::dto(state, d.clone()).await?);
        }
    }
    Ok(dto)
}

async fn list_environments(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EnvQuery>,
) -> Response {
    if let Err(r) = caller(&state, &headers) {
        return r;
    }
    // Another replica may have changed them.
    if let Err(e) = stored::reload(&state).await {
        return internal(e);
    }
    let mut names: Vec<(String, Option<String>)> = Vec::new();
    for d in stored::all(&state).iter() {
        let e = &d.config;
        if q.repository.is_none() || e.repository.is_none() || e.repository == q.repository {
            let entry = (
                e.name.clone(),
                q.repository.clone().or(e.repository.clone()),
            );
            if !names.contains(&entry) {
                names.push(entry);
            }
        }
    }
    // Environments used by workflows without configuration (no rules) are listed too.
    match state
        .db()
        .deployments(q.repository.as_deref(), None, None, &[], 1000)
        .await
    {
        Ok(all) => {
            for d in all {
                if !names.iter().any(|(n, _)| *n == d.environment) {
                    names.push((d.environment.clone(), q.repository.clone()));
                }
            }
        }
        Err(e) => return internal(e),
    }
    let mut out = Vec::new();
    for (name, repo) in names {
        match environment_dto(&state, &name, repo.as_deref()).await {
            Ok(d) => out.push(d),
            Err(e) => return internal(e),
        }
    }
    Json(out).into_response()
}

async fn get_environment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Response {
    if let Err(r) = caller(&state, &headers) {
        return r;
    }
    if let Err(e) = stored::reload(&state).await {
        return internal(e);
    }
    let known = stored::all(&state).iter().any(|d| d.config.name == name);
    match environment_dto(&state, &name, q.repository.as_deref()).await {
        Ok(d) if !known && d.current.is_empty() && d.pending.is_empty() => {
            let seen = state
                .db()
                .deployments(q.repository.as_deref(), Some(&name), None, &[], 1)
                .await;
            match seen {
                Ok(v) if v.is_empty() => {
                    error_response(StatusCode::NOT_FOUND, format!("no environment `{name}`"))
                }
                Ok(_) => Json(d).into_response(),
                Err(e) => internal(e),
            }
        }
        Ok(d) => Json(d).into_response(),
        Err(e) => internal(e),
    }
}

/// `POST /api/v1/runs/{id}/approve|reject`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionRequest {
    pub environment: String,
    #[serde(default)]
    pub comment: Option<String>,
}

/// The reply to a decision: the deployments it decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionReply {
    pub deployments: Vec<deployments::DeploymentDto>,
}

async fn approve(
    state: State<AppState>,
    headers: HeaderMap,
    id: Path<i64>,
    body: Json<DecisionRequest>,
) -> Response {
    decide(state, headers, id, body, true).await
}

async fn reject(
    state: State<AppState>,
    headers: HeaderMap,
    id: Path<i64>,
    body: Json<DecisionRequest>,
) -> Response {
    decide(state, headers, id, body, false).await
}

async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(req): Json<DecisionRequest>,
    approve: bool,
) -> Response {
    let user = match caller(&state, &headers) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = user.as_ref();
    let run = match state.db().run(RunId(id)).await {
        Ok(Some(r)) => r,
        Ok(None) => return error_response(StatusCode::NOT_FOUND, format!("no run {id}")),
        Err(e) => return internal(e),
    };
    let waiting = match state
        .db()
        .deployments(
            None,
            Some(&req.environment),
            Some(run.id),
            &[DeploymentStatus::Waiting],
            100,
        )
        .await
    {
        Ok(w) => w,
        Err(e) => return internal(e),
    };
    if waiting.is_empty() {
        return error_response(
            StatusCode::CONFLICT,
            format!(
                "run {id} has no deployment to {} waiting for a decision",
                req.environment
            ),
        );
    }
    let verb = if approve { "approve" } else { "reject" };
    let who = name_of(user);
    let env = lookup(&state, &run.repository_name, &req.environment);
    let refusal = match (user, env.as_deref()) {
        (None, _) => Some("decisions need a user: configure [[user]] tokens".to_owned()),
        (Some(_), None) => Some(format!("{} has no reviewers", req.environment)),
        (Some(u), Some(env)) if !env.is_reviewer(u) => Some(format!(
            "{} is not a reviewer of {} (reviewers: {})",
            u.name,
            env.name,
            env.reviewers.join(", ")
        )),
        (Some(u), Some(env)) if approve && u.name == run.actor && !env.allow_self_approval => {
            Some(format!(
                "{} pushed this run and may not approve it ({} does not allow self-approval)",
                u.name, env.name
            ))
        }
        _ => None,
    };
    let now = now_ms();
    if let Some(why) = refusal {
        for d in &waiting {
            let event = audit_event(d, &who, &format!("{verb}.refused"), Some(why.clone()));
            if let Err(e) = state.db().audit(&event, now).await {
                return internal(e);
            }
        }
        tracing::warn!(run_id = id, user = %who, environment = %req.environment, reason = %why, "Deployment decision refused.");
        return error_response(StatusCode::FORBIDDEN, why);
    }
    let decision = if approve { "approved" } else { "rejected" };
    for d in &waiting {
        let already = match state.db().approvals(d.id).await {
            Ok(a) => a.iter().any(|a| a.user == who),
            Err(e) => return internal(e),
        };
        if already {
            return error_response(
                StatusCode::CONFLICT,
                format!("{who} already decided on deployment {}", d.id),
            );
        }
        if let Err(e) = state
            .db()
            .add_approval(d.id, &who, decision, req.comment.as_deref(), now)
            .await
        {
            return internal(e);
        }
        let event = audit_event(
            d,
            &who,
            &format!("deployment.{decision}"),
            req.comment.clone(),
        );
        if let Err(e) = state.db().audit(&event, now).await {
            return internal(e);
        }
        tracing::info!(deployment_id = %d.id, user = %who, decision, "Deployment decision recorded.");
    }
    if let Err(e) = crate::scheduler::advance(&state, run.id).await {
        return internal(e);
    }
    let mut out = Vec::new();
    for d in &waiting {
        match state.db().deployment(d.id).await {
            Ok(Some(d)) => match deployments::dto(&state, d).await {
                Ok(d) => out.push(d),
                Err(e) => return internal(e),
            },
            Ok(None) => {}
            Err(e) => return internal(e),
        }
    }
    Json(DecisionReply { deployments: out }).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<EnvironmentConfig>, String> {
        let env = |n: &str| (n == "KEY").then(|| "k3y".to_owned());
        crate::config::parse(text, "slipway.toml", &env)
            .map(|c| c.environments)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_documented_environment_parses() {
        let envs = parse(
            "[[environment]]\nrepository = \"team/app\"\nname = \"production\"\nreviewers = [\"alice\", \"ops\"]\n\
             wait_timer = \"30s\"\nbranches = [\"main\"]\nsecrets = { DEPLOY_KEY = \"env:KEY\" }\nvars = { PORT = \"8082\" }\n\
             url = \"http://prod.example\"\n[[environment]]\nname = \"staging\"\n",
        )
        .expect("parses");
        let p = &envs[0];
        assert_eq!(
            (p.required_approvals, p.wait_timer, p.timeout),
            (1, Duration::from_secs(30), DEFAULT_TIMEOUT)
        );
        assert_eq!(p.secrets.get("DEPLOY_KEY").map(String::as_str), Some("k3y"));
        assert!(
            p.allows_ref("refs/heads/main")
                && !p.allows_ref("refs/heads/dev")
                && !p.allows_ref("refs/tags/v1")
        );
        let s = &envs[1];
        assert_eq!((s.required_approvals, s.repository.as_deref()), (0, None));
        assert!(s.allows_ref("refs/tags/v1"));
    }

    fn check_err(text: &str, expect: &str) {
        let e = parse(text).expect_err("invalid");
        assert!(e.contains(expect), "{e:?} should contain {expect:?}");
    }

    #[test]
    fn bad_environments_name_the_problem() {
        check_err(
            "[[environment]]\nreviewers = []\n",
            "[[environment]] #1: missing field `name`",
        );
        check_err(
            "[[environment]]\nname = \"prod\"\nreviewer = [\"a\"]\n",
            "environment prod: unknown field `reviewer`",
        );
        check_err(
            "[[environment]]\nname = \"prod\"\nwait_timer = \"soon\"\n",
            "environment prod: wait_timer `soon`",
        );
        check_err(
            "[[environment]]\nname = \"prod\"\nrequired_approvals = 2\n",
            "no reviewers are listed",
        );
        check_err("[[environment]]\nname = \"p r\"\n", "the name must be");
        check_err(
            "[[environment]]\nname = \"prod\"\nsecrets = { K = \"env:NOPE\" }\n",
            "NOPE, which is not set",
        );
        check_err(
            "[[environment]]\nname = \"prod\"\n[[environment]]\nname = \"prod\"\n",
            "listed twice",
        );
    }

    #[test]
    fn tag_rules() {
        let envs = parse("[[environment]]\nname = \"prod\"\ntags = [\"v*\", \"!v*-rc*\"]\n")
            .expect("parses");
        assert!(envs[0].allows_ref("refs/tags/v1.2"));
        assert!(!envs[0].allows_ref("refs/tags/v1.2-rc1"));
        assert!(!envs[0].allows_ref("refs/heads/main"));
    }
}
