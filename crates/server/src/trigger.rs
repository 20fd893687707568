//! From an event to runs: fetch the commit, read the workflows at it, apply `on:` filters,
//! compile, and create one run per workflow (with its jobs) — or a failed run whose log holds
//! the `file:line:col` diagnostics when a workflow does not compile.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use store::sql::{Conclusion, JobStatus, NewJob, NewRun};

use crate::config::RepositoryConfig;
use crate::status::StatusState;
use crate::{AppState, ServerError, now_ms};

/// An event, normalized across forges.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub repository: String,
    /// `push`, `pull_request`, `workflow_dispatch`.
    pub event: String,
    pub git_ref: String,
    pub sha: String,
    pub before: Option<String>,
    pub actor: String,
    /// `github.event`.
    pub payload: Value,
    /// Changed files the forge listed (used when the mirror cannot diff).
    pub payload_changed: Option<Vec<String>>,
    /// `pull_request` activity type.
    pub action: Option<String>,
    /// `pull_request` base branch.
    pub base_ref: Option<String>,
    pub inputs: BTreeMap<String, String>,
    /// Only this workflow (a file name like `ci.yml` or a path), for `workflow_dispatch`.
    pub only_workflow: Option<String>,
}

/// What a run needs later (stored as the run's spec; no secrets in here).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    pub workflow: protocol::WorkflowSource,
    pub event_name: String,
    pub event: Value,
    pub clone_url: String,
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
}

/// Fetches the trigger's commit and creates the runs it starts. Returns their ids.
pub async fn start_runs(state: &AppState, repo: &RepositoryConfig, trigger: Trigger) -> Result<Vec<i64>, ServerError> {
    let (sha, git_dir) = state.mirrors().fetch(&repo.name, &repo.clone_url, &trigger.sha).await?;
    let files = crate::git::workflow_files(&git_dir, &sha).await?;
    let changed = match &trigger.before {
        Some(before) => crate::git::changed_files(&git_dir, before, &sha).await.or(trigger.payload_changed.clone()),
        None => trigger.payload_changed.clone(),
    };
    let repo_id = state.db().upsert_repository(&repo.name, &repo.clone_url, repo.forge.as_str(), now_ms()).await?;
    let mut created = Vec::new();
    for (path, source) in files {
        if let Some(only) = &trigger.only_workflow
            && path != *only
            && !path.ends_with(&format!("/{only}"))
        {
            continue;
        }
        let planned = {
            let git_dir = git_dir.clone();
            let sha = sha.clone();
            let trigger = trigger.clone();
            let changed = changed.clone();
            let file = path.clone();
            tokio::task::spawn_blocking(move || plan_workflow(&git_dir, &sha, &file, &source, &trigger, changed.as_deref()))
                .await
                .map_err(|e| ServerError::Internal(format!("compiling {path}: {e}")))?
        };
        let mut specs = Vec::new();
        let (run, jobs) = match planned {
            Planned::NotTriggered => continue,
            Planned::Invalid { name, diagnostics, source } => {
                let run = new_run(repo_id, &path, &name, &trigger, &sha, repo, source, BTreeMap::new())?;
                let job = NewJob {
                    key: "(workflow)".to_owned(),
                    name: format!("{path} is invalid"),
                    needs: "[]".to_owned(),
                    labels: "[]".to_owned(),
                    condition: None,
                    status: JobStatus::Done,
                    result: Some((Conclusion::Failure, "the workflow does not compile".to_owned())),
                    log: Some(format!("{diagnostics}\n").into_bytes()),
                };
                (run, vec![job])
            }
            Planned::Ok { plan, source, files } => {
                let mut run = new_run(repo_id, &path, &plan.name, &trigger, &sha, repo, source, files)?;
                let mut jobs = jobs_of(&plan);
                specs = plan.jobs.iter().map(|j| crate::scheduler::JobConcurrency::of(&path, j)).collect();
                if let Some((group, cancel_in_progress)) = concurrency(state, repo, &plan, &trigger, &sha) {
                    for older in state.db().active_in_group(repo_id, &group).await? {
                        // cancel-in-progress: every older run; else only those not started
                        // (at most one running and one waiting per group).
                        if cancel_in_progress || older.status == store::sql::RunStatus::Queued {
                            crate::scheduler::cancel(state, older.id).await?;
                        }
                    }
                    // Job-level groups share the namespace (as on GitHub): a job waiting in the
                    // group is replaced, one holding it is cancelled with cancel-in-progress, else
                    // this run waits for it.
                    let reason = format!("superseded by a run of {} at {} in concurrency group {group}", plan.name, &sha[..sha.len().min(7)]);
                    for (job, job_run, admitted) in state.db().jobs_in_group(repo_id, &group).await? {
                        if (!admitted || cancel_in_progress) && state.db().cancel_job(job, &reason, now_ms()).await? == Some(true) {
                            crate::scheduler::advance(state, job_run).await?;
                        }
                    }
                    let held = state.db().group_held_by_a_job(repo_id, &group, store::sql::RunId(0)).await?;
                    if held || !state.db().active_in_group(repo_id, &group).await?.is_empty() {
                        for job in &mut jobs {
                            job.status = JobStatus::Pending;
                        }
                    }
                    run.concurrency_group = Some(group);
                }
                (run, jobs)
            }
        };
        let (run_id, job_ids) = state.db().create_run(&run, &jobs, now_ms()).await?;
        // Jobs' `concurrency:`, evaluated by the scheduler when each becomes runnable.
        for (id, spec) in job_ids.iter().zip(&specs) {
            if let Some(spec) = spec {
                let spec = serde_json::to_string(spec).map_err(|e| ServerError::Internal(format!("encoding a job's concurrency: {e}")))?;
                state.db().put_job_concurrency(*id, &spec).await?;
            }
        }
        // Jobs with `environment:` wait in pending for their environment's gate.
        crate::scheduler::advance(state, run_id).await?;
        tracing::info!(run_id = %run_id, repository = %repo.name, workflow = %path, sha = %sha, "Run created.");
        created.push(run_id.0);
        state.report_status(run_id, StatusState::Pending).await;
        if jobs.iter().all(|j| j.status == JobStatus::Done) {
            state.run_finished(run_id).await;
        }
    }
    state.jobs_queued();
    Ok(created)
}

/// The workflow's `concurrency:` group (evaluated with `github`, `inputs` and `vars`) and
/// whether it cancels runs in progress.
fn concurrency(
    state: &AppState,
    repo: &RepositoryConfig,
    plan: &workflow::Plan,
    trigger: &Trigger,
    sha: &str,
) -> Option<(String, bool)> {
    let c = plan.concurrency.as_ref()?;
    let mut ctx = workflow::expr::MapContext::default();
    let ref_name = trigger
        .git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| trigger.git_ref.strip_prefix("refs/tags/"))
        .unwrap_or(&trigger.git_ref);
    ctx.contexts.insert(
        "github".into(),
        json!({
            "repository": repo.name, "ref": trigger.git_ref, "ref_name": ref_name, "sha": sha,
            "event_name": trigger.event, "actor": trigger.actor, "workflow": plan.name,
            "server_url": state.external_url(), "event": trigger.payload,
        }),
    );
    ctx.contexts.insert("inputs".into(), json!(trigger.inputs));
    ctx.contexts.insert("vars".into(), json!(repo.vars));
    // Group names are compared without case, as on GitHub.
    let group = match c.group.eval_string(&ctx) {
        Ok(g) if !g.is_empty() => g.to_lowercase(),
        Ok(_) => return None,
        Err(error) => {
            tracing::warn!(repository = %repo.name, %error, "Evaluating the concurrency group failed; ignoring it.");
            return None;
        }
    };
    let cancel = match &c.cancel_in_progress {
        workflow::BoolOrExpr::Bool(b) => *b,
        workflow::BoolOrExpr::Expr(t) => t.eval(&ctx).is_ok_and(|v| workflow::expr::truthy(&v)),
    };
    Some((group, cancel))
}

enum Planned {
    NotTriggered,
    Invalid { name: String, diagnostics: String, source: String },
    Ok { plan: Box<workflow::Plan>, source: String, files: BTreeMap<String, String> },
}

fn plan_workflow(
    git_dir: &std::path::Path,
    sha: &str,
    path: &str,
    source: &str,
    trigger: &Trigger,
    changed: Option<&[String]>,
) -> Planned {
    let wf = match workflow::parse(source, path) {
        Ok(wf) => wf,
        Err(diags) => {
            return Planned::Invalid { name: path.to_owned(), diagnostics: diags.to_string(), source: source.to_owned() };
        }
    };
    let Some(on) = wf.on.events.get(&trigger.event) else { return Planned::NotTriggered };
    let git_ref = match trigger.event.as_str() {
        "push" => Some(trigger.git_ref.as_str()),
        "pull_request" | "pull_request_target" => trigger.base_ref.as_deref(),
        _ => None,
    };
    let action = match trigger.event.as_str() {
        "pull_request" | "pull_request_target" => Some(trigger.action.as_deref().unwrap_or("opened")),
        _ => trigger.action.as_deref(),
    };
    let info = workflow::filter::EventInfo {
        event: &trigger.event,
        git_ref,
        action,
        changed_paths: changed,
        workflow_name: None,
    };
    let fires = workflow::filter::trigger_matches(on, &info);
    if !fires {
        return Planned::NotTriggered;
    }
    let loaded: Mutex<BTreeMap<String, String>> = Mutex::default();
    let loader = |p: &str| {
        let text = crate::git::show_blocking(git_dir, sha, p)?;
        loaded.lock().unwrap_or_else(|e| e.into_inner()).insert(p.to_owned(), text.clone());
        Some(text)
    };
    match workflow::compile(&wf, &workflow::CompileOptions { event: &trigger.event, loader: &loader }) {
        Ok(plan) => Planned::Ok {
            plan: Box::new(plan),
            source: source.to_owned(),
            files: loaded.into_inner().unwrap_or_else(|e| e.into_inner()),
        },
        Err(diags) => Planned::Invalid {
            name: wf.name.clone().unwrap_or_else(|| path.to_owned()),
            diagnostics: diags.to_string(),
            source: source.to_owned(),
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn new_run(
    repository: store::sql::RepoId,
    path: &str,
    name: &str,
    trigger: &Trigger,
    sha: &str,
    repo: &RepositoryConfig,
    source: String,
    files: BTreeMap<String, String>,
) -> Result<NewRun, ServerError> {
    let spec = RunSpec {
        workflow: protocol::WorkflowSource { file: path.to_owned(), source, files },
        event_name: trigger.event.clone(),
        event: trigger.payload.clone(),
        clone_url: repo.clone_url.clone(),
        inputs: trigger.inputs.clone(),
    };
    Ok(NewRun {
        repository,
        workflow_file: path.to_owned(),
        workflow_name: name.to_owned(),
        event: trigger.event.clone(),
        git_ref: trigger.git_ref.clone(),
        sha: sha.to_owned(),
        actor: trigger.actor.clone(),
        concurrency_group: None,
        spec: serde_json::to_string(&spec).map_err(|e| ServerError::Internal(format!("encoding a run spec: {e}")))?,
    })
}

/// The jobs of a plan as stored: queued when they need nothing (and target no environment),
/// else pending. When a job has `concurrency:`, every job starts pending: the scheduler
/// queues them once their groups are stored.
fn jobs_of(plan: &workflow::Plan) -> Vec<NewJob> {
    let grouped = plan.jobs.iter().any(|j| j.concurrency.is_some());
    plan.jobs
        .iter()
        .map(|job| {
            // Labels with expressions (`runs-on: ${{ matrix.os }}`) are known only at run
            // time: they don't restrict which agent takes the job.
            let labels: Vec<&str> = job.runs_on.iter().filter(|t| t.is_literal()).map(|t| t.source()).collect();
            NewJob {
                key: job.id.clone(),
                name: job.name.as_ref().map_or_else(|| job.id.clone(), |n| n.source().to_owned()),
                needs: json!(job.needs).to_string(),
                labels: json!(labels).to_string(),
                condition: job.condition.as_ref().map(|c| c.source().to_owned()),
                status: if job.needs.is_empty() && job.environment.is_none() && !grouped { JobStatus::Queued } else { JobStatus::Pending },
                result: None,
                log: None,
            }
        })
        .collect()
}

/// The base `github` context of a run.
pub fn github_context(state: &AppState, run: &store::sql::Run, spec: &RunSpec) -> Map<String, Value> {
    let (owner, _) = run.repository_name.split_once('/').unwrap_or((&run.repository_name, ""));
    let ref_name = run
        .git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| run.git_ref.strip_prefix("refs/tags/"))
        .unwrap_or(&run.git_ref);
    let ref_type = if run.git_ref.starts_with("refs/tags/") { "tag" } else { "branch" };
    let mut g = Map::new();
    for (k, v) in [
        ("repository", run.repository_name.as_str()),
        ("repository_owner", owner),
        ("sha", run.sha.as_str()),
        ("ref", run.git_ref.as_str()),
        ("ref_name", ref_name),
        ("ref_type", ref_type),
        ("actor", run.actor.as_str()),
        ("event_name", spec.event_name.as_str()),
        ("workflow", run.workflow_name.as_str()),
        ("server_url", state.external_url()),
    ] {
        g.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    g.insert("run_id".to_owned(), Value::String(run.id.to_string()));
    g.insert("run_number".to_owned(), Value::String(run.id.to_string()));
    g.insert("event".to_owned(), spec.event.clone());
    g
}
