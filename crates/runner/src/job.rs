//! One job leg on an executor: its directories, environment, steps (run scripts and
//! actions), environment files, workflow commands, masking, post steps and outputs.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde_json::{Map, Value, json};
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;
use workflow::expr::{Condition, Status, Template};
use workflow::{ActionRef, Job, JobKind, Step, StepKind};

use crate::actions::{self, ActionDef, Runs};
use crate::commands;
use crate::context::Ctx;
use crate::executor::{
    Command, ContainerSpec, ExecError, Executor as _, JobHost, JobSpec, Process,
};
use crate::mask::{LineReader, Masker};
use crate::schedule::{PlanScope, Shared, eval_number};
use crate::{Event, JobResult, LogLines, LogStream, Platform, StepOutcome};

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Directories of one job leg (all on the host, visible at the same path in containers).
#[derive(Debug, Clone)]
pub(crate) struct JobDirs {
    pub root: PathBuf,
    pub workspace: PathBuf,
    pub temp: PathBuf,
    pub files: PathBuf,
    pub tool_cache: PathBuf,
}

/// The result of one step (or action).
#[derive(Debug, Clone)]
pub(crate) struct StepResult {
    pub outcome: StepOutcome,
    pub outputs: Map<String, Value>,
}

impl StepResult {
    pub fn ok(outputs: Map<String, Value>) -> StepResult {
        StepResult {
            outcome: StepOutcome::Success,
            outputs,
        }
    }
    pub fn failed() -> StepResult {
        StepResult {
            outcome: StepOutcome::Failure,
            outputs: Map::new(),
        }
    }
}

/// Steps of one level (the job, or a composite action).
pub(crate) struct Scope {
    pub steps: Map<String, Value>,
    /// The `inputs` context (a composite action's inputs; else the workflow's).
    pub inputs: Option<Value>,
    /// Env every step of this scope gets (a composite's caller step env and `INPUT_*`).
    pub env: IndexMap<String, String>,
    pub failed: bool,
    pub action_path: Option<PathBuf>,
    /// The event step number logs are attributed to (composite steps: the outer step).
    pub event_step: Option<usize>,
    pub depth: usize,
}

/// Work to do after the main steps (in reverse order of registration).
pub(crate) enum PostStep {
    Node {
        name: String,
        action: Arc<ActionDef>,
        script: String,
        condition: Option<String>,
        env: IndexMap<String, String>,
        state_key: String,
    },
    Cache {
        name: String,
        save: crate::builtin::CacheSave,
    },
}

/// A step's environment files.
struct StepFiles {
    env: PathBuf,
    output: PathBuf,
    state: PathBuf,
    path: PathBuf,
    summary: PathBuf,
}

/// How a step's process ended.
enum ProcEnd {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
    Error(String),
}

/// State of the workflow-command parser for one step.
#[derive(Default)]
struct CmdState {
    stop_token: Option<String>,
    outputs: Map<String, Value>,
    state: IndexMap<String, String>,
    env: IndexMap<String, String>,
    paths: Vec<String>,
    allow_unsecure: bool,
}

pub(crate) struct JobRun {
    pub shared: Arc<Shared>,
    pub host: Box<dyn JobHost>,
    pub id: String,
    pub dirs: JobDirs,
    pub base: Ctx,
    /// Job env: `--env` < workflow env < job env < GITHUB_ENV additions (also the `env` context).
    pub env: IndexMap<String, String>,
    /// Environment every process starts from (host env, defaults).
    pub process_base: IndexMap<String, String>,
    pub path_adds: Vec<String>,
    pub masker: Masker,
    pub cancel: CancellationToken,
    pub step_no: usize,
    pub post: Vec<PostStep>,
    pub defaults_shell: Option<String>,
    pub defaults_wd: Option<Template>,
    pub states: IndexMap<String, IndexMap<String, String>>,
    pub action_seq: usize,
    pub is_host: bool,
    pub pre_done: IndexMap<usize, Arc<ActionDef>>,
    pub has_bash: Option<bool>,
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(crate) fn eval_env(
    env: &workflow::Env,
    ctx: &mut Ctx,
) -> Result<IndexMap<String, String>, String> {
    let mut out = IndexMap::new();
    if let Some(t) = &env.expr {
        match t
            .eval(ctx)
            .map_err(|e| format!("evaluating env `{}`: {e}", t.source()))?
        {
            Value::Object(m) => {
                for (k, v) in m {
                    out.insert(k, workflow::expr::to_string(&v));
                }
            }
            Value::Null => {}
            _ => return Err(format!("env `{}` is not a mapping", t.source())),
        }
    }
    for (k, t) in &env.vars {
        let v = t
            .eval_string(ctx)
            .map_err(|e| format!("evaluating env.{k} `{}`: {e}", t.source()))?;
        // Later keys may read earlier ones of the same level (like the runner).
        if let Some(Value::Object(m)) = ctx.contexts.get_mut("env") {
            m.insert(k.clone(), Value::String(v.clone()));
        }
        out.insert(k.clone(), v);
    }
    Ok(out)
}

fn to_env_ctx(env: &IndexMap<String, String>) -> Value {
    Value::Object(
        env.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn gh_str(ctx: &Ctx, key: &str) -> String {
    ctx.contexts
        .get("github")
        .and_then(|g| g.get(key))
        .map(workflow::expr::to_string)
        .unwrap_or_default()
}

/// Runs a steps job leg. Returns its result and evaluated outputs.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_steps_job(
    shared: Arc<Shared>,
    scope: Arc<PlanScope>,
    job: &Job,
    leg_id: &str,
    mut ctx: Ctx,
    platform: Platform,
    labels: Vec<String>,
    matrix_cancel: CancellationToken,
) -> (JobResult, Map<String, Value>) {
    let JobKind::Steps(steps) = &job.kind else {
        return (JobResult::Failure, Map::new());
    };
    let n = shared.next_id();
    let root = shared
        .run_dir
        .join("jobs")
        .join(format!("{n}-{}", sanitize(leg_id)));
    let dirs = JobDirs {
        workspace: root.join("workspace"),
        temp: root.join("temp"),
        files: root.join("temp").join("_runner_file_commands"),
        tool_cache: shared.run_dir.join("tool_cache"),
        root,
    };
    let system = |msg: String| {
        let shared = shared.clone();
        let id = leg_id.to_owned();
        async move {
            shared
                .emit(Event::Annotation {
                    job: id,
                    step: None,
                    level: "error".into(),
                    message: msg,
                    file: None,
                    line: None,
                    col: None,
                })
                .await;
        }
    };
    for d in [&dirs.workspace, &dirs.temp, &dirs.files, &dirs.tool_cache] {
        if let Err(e) = std::fs::create_dir_all(d) {
            system(format!("creating {}: {e}", d.display())).await;
            return (JobResult::Failure, Map::new());
        }
    }
    let event_path = dirs.temp.join("event.json");
    let event_json = serde_json::to_vec_pretty(&shared.options.event).unwrap_or_default();
    if let Err(e) = std::fs::write(&event_path, event_json) {
        system(format!("writing {}: {e}", event_path.display())).await;
        return (JobResult::Failure, Map::new());
    }

    // github/runner/job contexts.
    let ws = dirs.workspace.to_string_lossy().into_owned();
    if let Some(Value::Object(g)) = ctx.contexts.get_mut("github") {
        g.insert("job".into(), Value::String(job.id.clone()));
        g.insert("workspace".into(), Value::String(ws.clone()));
        g.insert(
            "event_path".into(),
            Value::String(event_path.to_string_lossy().into_owned()),
        );
        g.insert("action".into(), Value::String(String::new()));
        g.insert("action_path".into(), Value::String(String::new()));
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "X64",
        "aarch64" => "ARM64",
        "arm" => "ARM",
        "x86" => "X86",
        other => other,
    };
    let runner_name = labels.first().cloned().unwrap_or_else(|| "slipway".into());
    ctx.set(
        "runner",
        json!({
            "os": "Linux",
            "arch": arch,
            "name": runner_name,
            "temp": dirs.temp.to_string_lossy(),
            "tool_cache": dirs.tool_cache.to_string_lossy(),
            "workspace": dirs.root.to_string_lossy(),
            "debug": if shared.debug { "1" } else { "" },
            "environment": "self-hosted",
        }),
    );
    ctx.set(
        "job",
        json!({ "status": "success", "container": { "id": "", "network": "" }, "services": {} }),
    );
    ctx.workspace = dirs.workspace.clone();

    // Env: --env < workflow env < job env.
    let mut env: IndexMap<String, String> = shared.options.env.clone();
    ctx.set("env", to_env_ctx(&env));
    let wf_env = eval_env(&scope.plan.env, &mut ctx);
    let job_env = wf_env.and_then(|w| {
        env.extend(w);
        ctx.set("env", to_env_ctx(&env));
        eval_env(&job.env, &mut ctx)
    });
    match job_env {
        Ok(j) => env.extend(j),
        Err(e) => {
            system(e).await;
            return (JobResult::Failure, Map::new());
        }
    }
    ctx.set("env", to_env_ctx(&env));

    // Timeout and cancellation.
    let cancel = matrix_cancel.child_token();
    let timeout = match job.timeout_minutes.as_ref().map(|t| eval_number(t, &ctx)) {
        Some(Ok(m)) if m > 0.0 => Duration::from_secs_f64(m * 60.0),
        Some(Err(e)) => {
            system(e).await;
            return (JobResult::Failure, Map::new());
        }
        _ => Duration::from_secs(360 * 60),
    };
    let timed_out = CancellationToken::new();
    let timer = {
        let cancel = cancel.clone();
        let timed_out = timed_out.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(timeout) => { timed_out.cancel(); cancel.cancel(); }
                _ = cancel.cancelled() => {}
            }
        })
    };

    // Executor.
    let (container, services) = match job_containers(job, &mut ctx) {
        Ok(c) => c,
        Err(e) => {
            system(e).await;
            timer.abort();
            return (JobResult::Failure, Map::new());
        }
    };
    let docker_available = shared.options.docker_host.is_some()
        || shared
            .host_env
            .get("DOCKER_HOST")
            .is_some_and(|h| !h.is_empty());
    // A job with `container:`/`services:` needs a container engine even when its label
    // maps to the host.
    let platform = match platform {
        Platform::Host if (container.is_some() || !services.is_empty()) && docker_available => {
            Platform::Docker {
                image: String::new(),
            }
        }
        p => p,
    };
    let is_host = platform == Platform::Host;
    let spec = JobSpec {
        job_id: leg_id.to_owned(),
        mounts: vec![
            dirs.root.clone(),
            dirs.tool_cache.clone(),
            shared.options.cache_dir.clone(),
            shared.artifact_dir.clone(),
        ],
        container,
        services,
    };
    let prepared = match &platform {
        Platform::Host => shared.host.prepare(spec).await,
        Platform::Docker { image } => {
            crate::executor::prepare_docker(&shared.docker, &shared.options, image, spec).await
        }
    };
    let host = match prepared {
        Ok(h) => h,
        Err(e) => {
            system(format!("preparing the job environment: {e}")).await;
            timer.abort();
            let _ = std::fs::remove_dir_all(&dirs.root);
            return (JobResult::Failure, Map::new());
        }
    };

    let mut process_base = if is_host {
        shared.host_env.clone()
    } else {
        IndexMap::new()
    };
    if !process_base.contains_key("PATH") {
        process_base.insert(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    let mut masker = Masker::new();
    for v in scope.secrets.values() {
        masker.add(v);
    }
    let mut run = JobRun {
        shared: shared.clone(),
        host,
        id: leg_id.to_owned(),
        dirs: dirs.clone(),
        base: ctx,
        env,
        process_base,
        path_adds: Vec::new(),
        masker,
        cancel: cancel.clone(),
        step_no: 0,
        post: Vec::new(),
        defaults_shell: job
            .defaults
            .shell
            .clone()
            .or_else(|| scope.plan.defaults.shell.clone()),
        defaults_wd: job
            .defaults
            .working_directory
            .clone()
            .or_else(|| scope.plan.defaults.working_directory.clone()),
        states: IndexMap::new(),
        action_seq: 0,
        is_host,
        pre_done: IndexMap::new(),
        has_bash: None,
    };
    let mut top = Scope {
        steps: Map::new(),
        inputs: None,
        env: IndexMap::new(),
        failed: false,
        action_path: None,
        event_step: None,
        depth: 0,
    };
    if !run.is_host {
        run.probe_container().await;
    }
    run.run_pre_steps(steps, &mut top).await;
    run.run_steps(steps, &mut top).await;
    run.run_post_steps(&mut top).await;

    // Outputs.
    let mut outputs = Map::new();
    let mut octx = run.step_ctx(&top, &IndexMap::new());
    octx.status = run.status(&top);
    for (k, t) in &job.outputs {
        match t.eval_string(&octx) {
            Ok(v) => {
                if run.masker.matches(&v) {
                    run.log_system(
                        None,
                        format!("Skip output '{k}' since it may contain secret."),
                    )
                    .await;
                } else {
                    outputs.insert(k.clone(), Value::String(v));
                }
            }
            Err(e) => {
                run.log_system(None, format!("evaluating output `{k}`: {e}"))
                    .await
            }
        }
    }
    let result = if timed_out.is_cancelled() {
        run.annotate(
            None,
            "error",
            format!(
                "the job exceeded its timeout of {} minutes",
                timeout.as_secs_f64() / 60.0
            ),
        )
        .await;
        JobResult::Failure
    } else if run.cancel.is_cancelled()
        && !shared.cancel.is_cancelled()
        && !matrix_cancel.is_cancelled()
    {
        JobResult::Failure
    } else if run.cancel.is_cancelled() {
        JobResult::Cancelled
    } else if top.failed {
        JobResult::Failure
    } else {
        JobResult::Success
    };
    timer.abort();
    run.host.cleanup().await;
    let _ = std::fs::remove_dir_all(&dirs.root);
    (result, outputs)
}

impl JobRun {
    pub(crate) async fn emit(&self, event: Event) {
        self.shared.emit(event).await;
    }

    pub(crate) async fn log_system(&self, step: Option<usize>, line: String) {
        let line = self.masker.mask(&line);
        self.emit(Event::Log {
            job: self.id.clone(),
            step,
            stream: LogStream::System,
            lines: LogLines::one(&line),
        })
        .await;
    }

    pub(crate) async fn annotate(&self, step: Option<usize>, level: &str, message: String) {
        let message = self.masker.mask(&message).into_owned();
        self.emit(Event::Annotation {
            job: self.id.clone(),
            step,
            level: level.to_owned(),
            message,
            file: None,
            line: None,
            col: None,
        })
        .await;
    }

    fn status(&self, scope: &Scope) -> Status {
        if self.cancel.is_cancelled() {
            Status::Cancelled
        } else if scope.failed {
            Status::Failure
        } else {
            Status::Success
        }
    }

    /// The expression context for a step of `scope` with the step's own env.
    pub(crate) fn step_ctx(&self, scope: &Scope, step_env: &IndexMap<String, String>) -> Ctx {
        let mut ctx = self.base.clone();
        let mut env = self.env.clone();
        env.extend(scope.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(step_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        ctx.set("env", to_env_ctx(&env));
        ctx.set("steps", Value::Object(scope.steps.clone()));
        if let Some(inputs) = &scope.inputs {
            ctx.set("inputs", inputs.clone());
        }
        let status = self.status(scope);
        if let Some(Value::Object(j)) = ctx.contexts.get_mut("job") {
            let s = match status {
                Status::Success => "success",
                Status::Failure => "failure",
                Status::Cancelled => "cancelled",
            };
            j.insert("status".into(), Value::String(s.into()));
        }
        if let Some(p) = &scope.action_path
            && let Some(Value::Object(g)) = ctx.contexts.get_mut("github")
        {
            g.insert(
                "action_path".into(),
                Value::String(p.to_string_lossy().into_owned()),
            );
        }
        ctx.status = status;
        ctx
    }

    /// The complete process environment for a step.
    pub(crate) fn process_env(
        &self,
        scope: &Scope,
        step_env: &IndexMap<String, String>,
        files: Option<&StepFilesPaths>,
        action: &str,
    ) -> IndexMap<String, String> {
        let mut env = self.process_base.clone();
        let g = |k: &str| gh_str(&self.base, k);
        for (k, v) in [
            ("CI", "true".to_owned()),
            ("GITHUB_ACTIONS", "true".to_owned()),
            ("GITHUB_WORKSPACE", g("workspace")),
            ("GITHUB_EVENT_PATH", g("event_path")),
            ("GITHUB_EVENT_NAME", g("event_name")),
            ("GITHUB_SHA", g("sha")),
            ("GITHUB_REF", g("ref")),
            ("GITHUB_REF_NAME", g("ref_name")),
            ("GITHUB_REF_TYPE", g("ref_type")),
            ("GITHUB_HEAD_REF", g("head_ref")),
            ("GITHUB_BASE_REF", g("base_ref")),
            ("GITHUB_REPOSITORY", g("repository")),
            ("GITHUB_REPOSITORY_OWNER", g("repository_owner")),
            ("GITHUB_ACTOR", g("actor")),
            ("GITHUB_TRIGGERING_ACTOR", g("actor")),
            ("GITHUB_RUN_ID", g("run_id")),
            ("GITHUB_RUN_NUMBER", g("run_number")),
            ("GITHUB_RUN_ATTEMPT", g("run_attempt")),
            ("GITHUB_RETENTION_DAYS", g("retention_days")),
            ("GITHUB_JOB", g("job")),
            ("GITHUB_WORKFLOW", g("workflow")),
            ("GITHUB_SERVER_URL", g("server_url")),
            ("GITHUB_API_URL", g("api_url")),
            ("GITHUB_GRAPHQL_URL", g("graphql_url")),
            ("GITHUB_ACTION", action.to_owned()),
            ("RUNNER_OS", "Linux".to_owned()),
            ("RUNNER_ARCH", self.runner_str("arch")),
            ("RUNNER_NAME", self.runner_str("name")),
            ("RUNNER_TEMP", self.dirs.temp.to_string_lossy().into_owned()),
            (
                "RUNNER_TOOL_CACHE",
                self.dirs.tool_cache.to_string_lossy().into_owned(),
            ),
            (
                "RUNNER_WORKSPACE",
                self.dirs.root.to_string_lossy().into_owned(),
            ),
            ("RUNNER_ENVIRONMENT", "self-hosted".to_owned()),
        ] {
            env.insert(k.to_owned(), v);
        }
        if self.shared.debug {
            env.insert("RUNNER_DEBUG".into(), "1".into());
        }
        if let Some(p) = &scope.action_path {
            env.insert(
                "GITHUB_ACTION_PATH".into(),
                p.to_string_lossy().into_owned(),
            );
        }
        env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(scope.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(step_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(f) = files {
            env.insert("GITHUB_ENV".into(), f.env.clone());
            env.insert("GITHUB_OUTPUT".into(), f.output.clone());
            env.insert("GITHUB_STATE".into(), f.state.clone());
            env.insert("GITHUB_PATH".into(), f.path.clone());
            env.insert("GITHUB_STEP_SUMMARY".into(), f.summary.clone());
        }
        if !self.path_adds.is_empty() {
            let mut parts: Vec<String> = self.path_adds.iter().rev().cloned().collect();
            if let Some(p) = env.get("PATH").filter(|p| !p.is_empty()) {
                parts.push(p.clone());
            }
            env.insert("PATH".into(), parts.join(":"));
        }
        env
    }

    fn runner_str(&self, key: &str) -> String {
        self.base
            .contexts
            .get("runner")
            .and_then(|r| r.get(key))
            .map(workflow::expr::to_string)
            .unwrap_or_default()
    }

    /// Runs `pre` of the node actions referenced by remote `uses:` steps, before any step.
    async fn run_pre_steps(&mut self, steps: &[Step], scope: &mut Scope) {
        for (pos, step) in steps.iter().enumerate() {
            let StepKind::Uses {
                action: action_ref @ ActionRef::Remote { .. },
                with,
            } = &step.kind
            else {
                continue;
            };
            if action_ref
                .remote_name()
                .is_some_and(|n| crate::builtin::is_builtin(&n))
            {
                continue;
            }
            let Ok(def) = actions::fetch_remote(&self.shared.options, action_ref).await else {
                continue;
            };
            let def = Arc::new(def);
            self.pre_done.insert(pos, def.clone());
            let Runs::Node {
                pre: Some(pre),
                pre_if,
                ..
            } = &def.runs
            else {
                continue;
            };
            let step_no = self.next_step_no();
            let name = format!(
                "Pre {}",
                step_display_name(step, &self.step_ctx(scope, &IndexMap::new()))
            );
            let started = Instant::now();
            self.emit(Event::StepStarted {
                job: self.id.clone(),
                step: step_no,
                name,
            })
            .await;
            let ctx = self.step_ctx(scope, &IndexMap::new());
            let run = match pre_if {
                Some(c) => Condition::parse(c)
                    .map_err(|e| e.to_string())
                    .and_then(|c| c.eval(&ctx).map_err(|e| e.to_string())),
                None => Ok(true),
            };
            let outcome = match run {
                Ok(false) => StepOutcome::Skipped,
                Err(e) => {
                    self.annotate(Some(step_no), "error", format!("pre-if: {e}"))
                        .await;
                    StepOutcome::Failure
                }
                Ok(true) => {
                    let step_env = eval_env(&step.env, &mut ctx.clone()).unwrap_or_default();
                    match self.action_inputs(&def, with, &ctx) {
                        Ok(inputs) => {
                            let state_key = format!("pre-{pos}");
                            let r = self
                                .run_node(
                                    &def,
                                    pre,
                                    &inputs,
                                    &step_env,
                                    scope,
                                    step_no,
                                    &state_key,
                                    &format!("pre_{pos}"),
                                )
                                .await;
                            r.outcome
                        }
                        Err(e) => {
                            self.annotate(Some(step_no), "error", e).await;
                            StepOutcome::Failure
                        }
                    }
                }
            };
            if outcome == StepOutcome::Failure {
                scope.failed = true;
            }
            self.emit(Event::StepFinished {
                job: self.id.clone(),
                step: step_no,
                outcome,
                conclusion: outcome,
                duration_ms: started.elapsed().as_millis() as u64,
                outputs: IndexMap::new(),
            })
            .await;
        }
    }

    async fn run_post_steps(&mut self, scope: &mut Scope) {
        while let Some(post) = self.post.pop() {
            let step_no = self.next_step_no();
            let started = Instant::now();
            let name = match &post {
                PostStep::Node { name, .. } | PostStep::Cache { name, .. } => {
                    format!("Post {name}")
                }
            };
            self.emit(Event::StepStarted {
                job: self.id.clone(),
                step: step_no,
                name,
            })
            .await;
            let ctx = self.step_ctx(scope, &IndexMap::new());
            let outcome = match post {
                PostStep::Node {
                    action,
                    script,
                    condition,
                    env,
                    state_key,
                    ..
                } => {
                    let cond = condition.unwrap_or_else(|| "always()".into());
                    match Condition::parse(&cond)
                        .map_err(|e| e.to_string())
                        .and_then(|c| c.eval(&ctx).map_err(|e| e.to_string()))
                    {
                        Ok(false) => StepOutcome::Skipped,
                        Err(e) => {
                            self.annotate(Some(step_no), "error", format!("post-if: {e}"))
                                .await;
                            StepOutcome::Failure
                        }
                        Ok(true) => {
                            let inputs = IndexMap::new();
                            self.run_node(
                                &action, &script, &inputs, &env, scope, step_no, &state_key, "post",
                            )
                            .await
                            .outcome
                        }
                    }
                }
                PostStep::Cache { save, .. } => {
                    if ctx.status == Status::Success {
                        match crate::builtin::cache_save(self, &save, step_no).await {
                            Ok(()) => StepOutcome::Success,
                            Err(e) => {
                                self.annotate(
                                    Some(step_no),
                                    "warning",
                                    format!("saving the cache: {e}"),
                                )
                                .await;
                                StepOutcome::Success
                            }
                        }
                    } else {
                        StepOutcome::Skipped
                    }
                }
            };
            if outcome == StepOutcome::Failure {
                scope.failed = true;
            }
            self.emit(Event::StepFinished {
                job: self.id.clone(),
                step: step_no,
                outcome,
                conclusion: outcome,
                duration_ms: started.elapsed().as_millis() as u64,
                outputs: IndexMap::new(),
            })
            .await;
        }
    }

    fn next_step_no(&mut self) -> usize {
        let n = self.step_no;
        self.step_no += 1;
        n
    }

    /// Runs the steps of one scope (the job's, or a composite action's).
    pub(crate) fn run_steps<'a>(
        &'a mut self,
        steps: &'a [Step],
        scope: &'a mut Scope,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            for (pos, step) in steps.iter().enumerate() {
                self.run_step(pos, step, scope).await;
            }
        })
    }

    async fn run_step(&mut self, pos: usize, step: &Step, scope: &mut Scope) {
        let started = Instant::now();
        let top = scope.event_step.is_none();
        let step_no = match scope.event_step {
            Some(n) => n,
            None => self.next_step_no(),
        };
        let ctx = self.step_ctx(scope, &IndexMap::new());
        let name = step_display_name(step, &ctx);
        if top {
            self.emit(Event::StepStarted {
                job: self.id.clone(),
                step: step_no,
                name: name.clone(),
            })
            .await;
        }
        // `if:`
        let cond = match &step.condition {
            Some(c) => c
                .eval(&ctx)
                .map_err(|e| format!("evaluating `if: {}`: {e}", c.source())),
            None => Ok(ctx.status == Status::Success),
        };
        let continue_on_error = match &step.continue_on_error {
            workflow::BoolOrExpr::Bool(b) => *b,
            workflow::BoolOrExpr::Expr(t) => t
                .eval(&ctx)
                .map(|v| workflow::expr::truthy(&v))
                .unwrap_or(false),
        };
        let result = match cond {
            Ok(false) => StepResult {
                outcome: StepOutcome::Skipped,
                outputs: Map::new(),
            },
            Err(e) => {
                self.annotate(Some(step_no), "error", e).await;
                StepResult::failed()
            }
            Ok(true) => {
                if !top {
                    self.log_system(Some(step_no), format!("Run {name}")).await;
                }
                self.exec_step(pos, step, scope, step_no).await
            }
        };
        let outcome = result.outcome;
        let conclusion = if outcome == StepOutcome::Failure && continue_on_error {
            StepOutcome::Success
        } else {
            outcome
        };
        if conclusion == StepOutcome::Failure
            || (conclusion == StepOutcome::Cancelled && !self.cancel.is_cancelled())
        {
            scope.failed = true;
        }
        let outputs: IndexMap<String, String> = if top {
            result
                .outputs
                .iter()
                .map(|(k, v)| {
                    let v = workflow::expr::to_string(v);
                    (k.clone(), self.masker.mask(&v).into_owned())
                })
                .collect()
        } else {
            IndexMap::new()
        };
        if let Some(id) = &step.id {
            let s = |o: StepOutcome| match o {
                StepOutcome::Success => "success",
                StepOutcome::Failure => "failure",
                StepOutcome::Cancelled => "cancelled",
                StepOutcome::Skipped => "skipped",
            };
            scope.steps.insert(
                id.clone(),
                json!({ "outputs": Value::Object(result.outputs), "outcome": s(outcome), "conclusion": s(conclusion) }),
            );
        }
        if top {
            self.emit(Event::StepFinished {
                job: self.id.clone(),
                step: step_no,
                outcome,
                conclusion,
                duration_ms: started.elapsed().as_millis() as u64,
                outputs,
            })
            .await;
        }
    }

    /// Runs a step whose `if:` passed.
    async fn exec_step(
        &mut self,
        pos: usize,
        step: &Step,
        scope: &mut Scope,
        step_no: usize,
    ) -> StepResult {
        let mut ctx = self.step_ctx(scope, &IndexMap::new());
        let step_env = match eval_env(&step.env, &mut ctx) {
            Ok(e) => e,
            Err(e) => {
                self.annotate(Some(step_no), "error", e).await;
                return StepResult::failed();
            }
        };
        let ctx = self.step_ctx(scope, &step_env);
        let timeout = match step.timeout_minutes.as_ref().map(|t| eval_number(t, &ctx)) {
            Some(Ok(m)) if m > 0.0 => Some(Duration::from_secs_f64(m * 60.0)),
            Some(Err(e)) => {
                self.annotate(Some(step_no), "error", e).await;
                return StepResult::failed();
            }
            _ => None,
        };
        self.action_seq += 1;
        let action_name = match &step.id {
            Some(id) => id.clone(),
            None => format!("__run_{}", self.action_seq),
        };
        match &step.kind {
            StepKind::Run { script, shell } => {
                let script = match script.eval_string(&ctx) {
                    Ok(s) => s,
                    Err(e) => {
                        self.annotate(
                            Some(step_no),
                            "error",
                            format!("evaluating the script: {e}"),
                        )
                        .await;
                        return StepResult::failed();
                    }
                };
                let wd = match self.working_dir(step, &ctx) {
                    Ok(wd) => wd,
                    Err(e) => {
                        self.annotate(Some(step_no), "error", e).await;
                        return StepResult::failed();
                    }
                };
                let shell = shell.clone().or_else(|| {
                    if scope.depth == 0 {
                        self.defaults_shell.clone()
                    } else {
                        None
                    }
                });
                self.run_script(
                    &script,
                    shell.as_deref(),
                    &wd,
                    &step_env,
                    scope,
                    step_no,
                    timeout,
                    &action_name,
                )
                .await
            }
            StepKind::Uses { action, with } => {
                let uses = uses_string(action);
                let prefetched = if scope.depth == 0 {
                    self.pre_done.get(&pos).cloned()
                } else {
                    None
                };
                let state_key = format!("{}-{pos}-{step_no}", scope.depth);
                let state_key = if scope.depth == 0 && prefetched.is_some() {
                    format!("pre-{pos}")
                } else {
                    state_key
                };
                let res = self
                    .run_action(
                        action, &uses, with, &ctx, &step_env, scope, step_no, timeout, prefetched,
                        &state_key, step,
                    )
                    .await;
                match res {
                    Ok(r) => r,
                    Err(e) => {
                        self.annotate(Some(step_no), "error", e).await;
                        StepResult::failed()
                    }
                }
            }
        }
    }

    fn working_dir(&self, step: &Step, ctx: &Ctx) -> Result<PathBuf, String> {
        let t = step
            .working_directory
            .as_ref()
            .or(self.defaults_wd.as_ref());
        let Some(t) = t else {
            return Ok(self.dirs.workspace.clone());
        };
        let wd = t
            .eval_string(ctx)
            .map_err(|e| format!("evaluating working-directory: {e}"))?;
        if wd.is_empty() {
            return Ok(self.dirs.workspace.clone());
        }
        Ok(self.dirs.workspace.join(wd))
    }

    /// Creates a fresh set of environment files for one step.
    fn step_files(&self) -> Result<(StepFiles, StepFilesPaths), String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let f = |kind: &str| self.dirs.files.join(format!("{kind}_{id}"));
        let files = StepFiles {
            env: f("set_env"),
            output: f("set_output"),
            state: f("save_state"),
            path: f("add_path"),
            summary: f("step_summary"),
        };
        for p in [
            &files.env,
            &files.output,
            &files.state,
            &files.path,
            &files.summary,
        ] {
            std::fs::write(p, b"").map_err(|e| format!("creating {}: {e}", p.display()))?;
        }
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let paths = StepFilesPaths {
            env: s(&files.env),
            output: s(&files.output),
            state: s(&files.state),
            path: s(&files.path),
            summary: s(&files.summary),
        };
        Ok((files, paths))
    }

    /// Reads a step's environment files (env and path persist to the job).
    async fn read_step_files(
        &mut self,
        files: &StepFiles,
        step_no: usize,
        cmd: &mut CmdState,
    ) -> Result<(), String> {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let parse = |p: &Path| {
            commands::parse_env_file(&read(p)).map_err(|e| format!("{}: {e}", p.display()))
        };
        for (k, v) in parse(&files.env)? {
            self.env.insert(k, v);
        }
        for (k, v) in parse(&files.output)? {
            cmd.outputs.insert(k, Value::String(v));
        }
        for (k, v) in parse(&files.state)? {
            cmd.state.insert(k, v);
        }
        for line in read(&files.path).lines() {
            let line = line.trim();
            if !line.is_empty() {
                self.path_adds.push(line.to_owned());
            }
        }
        let summary = read(&files.summary);
        if !summary.trim().is_empty() {
            let markdown = self.masker.mask(&summary).into_owned();
            self.emit(Event::StepSummary {
                job: self.id.clone(),
                step: step_no,
                markdown,
            })
            .await;
        }
        for (k, v) in std::mem::take(&mut cmd.env) {
            self.env.insert(k, v);
        }
        self.path_adds.append(&mut cmd.paths);
        let _ = std::fs::remove_file(&files.env);
        let _ = std::fs::remove_file(&files.output);
        let _ = std::fs::remove_file(&files.state);
        let _ = std::fs::remove_file(&files.path);
        let _ = std::fs::remove_file(&files.summary);
        Ok(())
    }

    /// Runs a `run:` script with its shell.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run_script(
        &mut self,
        script: &str,
        shell: Option<&str>,
        wd: &Path,
        step_env: &IndexMap<String, String>,
        scope: &Scope,
        step_no: usize,
        timeout: Option<Duration>,
        action_name: &str,
    ) -> StepResult {
        let (files, paths) = match self.step_files() {
            Ok(f) => f,
            Err(e) => {
                self.annotate(Some(step_no), "error", e).await;
                return StepResult::failed();
            }
        };
        let env = self.process_env(scope, step_env, Some(&paths), action_name);
        let shell_name = match shell {
            Some(s) => s.to_owned(),
            None => {
                let bash = if self.is_host {
                    crate::executor::host::which("bash", env.get("PATH").map(String::as_str), wd)
                        .is_some()
                } else {
                    self.container_has_bash(&env).await
                };
                if bash {
                    "bash".to_owned()
                } else {
                    "sh".to_owned()
                }
            }
        };
        let (program, template, ext) = shell_template(&shell_name);
        let script_path = self
            .dirs
            .temp
            .join(format!("{}{ext}", uuid::Uuid::new_v4().simple()));
        let body = if ext == ".ps1" {
            format!(
                "$ErrorActionPreference = 'stop'\n{script}\nif ((Test-Path -LiteralPath variable:\\LASTEXITCODE)) {{ exit $LASTEXITCODE }}\n"
            )
        } else {
            script.to_owned()
        };
        if let Err(e) = std::fs::write(&script_path, body) {
            self.annotate(
                Some(step_no),
                "error",
                format!("writing {}: {e}", script_path.display()),
            )
            .await;
            return StepResult::failed();
        }
        let sp = script_path.to_string_lossy().into_owned();
        let args: Vec<String> = template.iter().map(|a| a.replace("{0}", &sp)).collect();
        if self.shared.debug {
            self.log_system(
                Some(step_no),
                format!("##[debug]{program} {}", args.join(" ")),
            )
            .await;
        }
        let command = Command {
            program: program.clone(),
            args,
            env: env.clone(),
            cwd: wd.to_path_buf(),
        };
        let mut cmd = CmdState {
            allow_unsecure: allow_unsecure(&env),
            ..CmdState::default()
        };
        let end = match self.host.spawn(command).await {
            Ok(proc) => self.drive(proc, step_no, timeout, &mut cmd).await,
            Err(ExecError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                if !wd.is_dir() {
                    ProcEnd::Error(format!(
                        "the working directory {} does not exist",
                        wd.display()
                    ))
                } else {
                    ProcEnd::Error(format!("shell `{program}` not found on PATH"))
                }
            }
            Err(e) => ProcEnd::Error(format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            )),
        };
        let _ = std::fs::remove_file(&script_path);
        let files_res = self.read_step_files(&files, step_no, &mut cmd).await;
        self.finish_process(end, files_res, step_no, cmd).await
    }

    async fn finish_process(
        &mut self,
        end: ProcEnd,
        files_res: Result<(), String>,
        step_no: usize,
        cmd: CmdState,
    ) -> StepResult {
        let outcome = match end {
            ProcEnd::Exited(status) if status.success() => StepOutcome::Success,
            ProcEnd::Exited(status) => {
                use std::os::unix::process::ExitStatusExt;
                let msg = match (status.code(), status.signal()) {
                    (Some(c), _) => format!("Process completed with exit code {c}."),
                    (None, Some(s)) => format!("Process was killed by signal {s}."),
                    _ => "Process failed.".to_owned(),
                };
                self.annotate(Some(step_no), "error", msg).await;
                StepOutcome::Failure
            }
            ProcEnd::TimedOut => {
                self.annotate(
                    Some(step_no),
                    "error",
                    "The step exceeded its timeout and was killed.".into(),
                )
                .await;
                StepOutcome::Failure
            }
            ProcEnd::Cancelled => StepOutcome::Cancelled,
            ProcEnd::Error(e) => {
                self.annotate(Some(step_no), "error", e).await;
                StepOutcome::Failure
            }
        };
        let outcome = match files_res {
            Err(e) if outcome == StepOutcome::Success => {
                self.annotate(Some(step_no), "error", e).await;
                StepOutcome::Failure
            }
            _ => outcome,
        };
        StepResult {
            outcome,
            outputs: cmd.outputs_with_state(self, step_no),
        }
    }

    /// Reads a process's output (masking, workflow commands) until it exits; enforces the
    /// timeout and cancellation (SIGTERM, then SIGKILL after the grace period).
    async fn drive(
        &mut self,
        mut proc: Box<dyn Process>,
        step_no: usize,
        timeout: Option<Duration>,
        cmd: &mut CmdState,
    ) -> ProcEnd {
        let mut out = proc.take_stdout().map(LineReader::new);
        let mut err = proc.take_stderr().map(LineReader::new);
        let mut batch = LogBatch::default();
        let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let deadline = sleep_until(
            timeout
                .map(|t| tokio::time::Instant::now() + t)
                .unwrap_or(far),
        );
        let kill_timer = sleep_until(far);
        let drain_timer = sleep_until(far);
        tokio::pin!(deadline, kill_timer, drain_timer);
        let mut reason: Option<ProcEnd> = None;
        let mut killed = false;
        let mut status: Option<ExitStatus> = None;
        let cancel = self.cancel.clone();
        // A step started after cancellation (`always()`, `cancelled()`) runs to its end.
        let watch_cancel = !cancel.is_cancelled();
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        loop {
            if status.is_some() && out.is_none() && err.is_none() {
                break;
            }
            tokio::select! {
                _ = &mut cancelled, if reason.is_none() && watch_cancel => {
                    proc.terminate();
                    reason = Some(ProcEnd::Cancelled);
                    kill_timer.as_mut().reset(tokio::time::Instant::now() + self.shared.tuning.kill_grace);
                }
                _ = &mut deadline, if reason.is_none() => {
                    proc.terminate();
                    reason = Some(ProcEnd::TimedOut);
                    kill_timer.as_mut().reset(tokio::time::Instant::now() + self.shared.tuning.kill_grace);
                }
                _ = &mut kill_timer, if reason.is_some() && !killed => {
                    proc.kill();
                    killed = true;
                }
                _ = &mut drain_timer, if status.is_some() => {
                    break;
                }
                r = next_line(&mut out), if out.is_some() => {
                    match r {
                        Ok(true) => {
                            if let Some(reader) = out.as_mut() {
                                batch.start(LogStream::Stdout, reader.buffered_len());
                                while let Some(block) = reader.buffered_lines() {
                                    self.handle_block(block, step_no, cmd, &mut batch).await;
                                }
                            }
                        }
                        _ => {
                            if let Some(mut reader) = out.take() {
                                batch.start(LogStream::Stdout, reader.buffered_len());
                                while let Ok(Some(line)) = reader.next_line().await {
                                    self.handle_line(line, step_no, cmd, &mut batch).await;
                                }
                            }
                        }
                    }
                    self.flush_log(step_no, &mut batch).await;
                }
                r = next_line(&mut err), if err.is_some() => {
                    match r {
                        Ok(true) => {
                            if let Some(reader) = err.as_mut() {
                                batch.start(LogStream::Stderr, reader.buffered_len());
                                while let Some(block) = reader.buffered_lines() {
                                    self.handle_block(block, step_no, cmd, &mut batch).await;
                                }
                            }
                        }
                        _ => {
                            if let Some(mut reader) = err.take() {
                                batch.start(LogStream::Stderr, reader.buffered_len());
                                while let Ok(Some(line)) = reader.next_line().await {
                                    self.handle_line(line, step_no, cmd, &mut batch).await;
                                }
                            }
                        }
                    }
                    self.flush_log(step_no, &mut batch).await;
                }
                s = proc.wait(), if status.is_none() => {
                    match s {
                        Ok(s) => status = Some(s),
                        Err(e) => return ProcEnd::Error(e.to_string()),
                    }
                    drain_timer.as_mut().reset(tokio::time::Instant::now() + self.shared.tuning.drain_after_exit);
                    if reason.is_some() {
                        // Whatever the group left behind dies with it.
                        proc.kill();
                    }
                }
            }
        }
        match (reason, status) {
            (Some(r), _) => r,
            (None, Some(s)) => ProcEnd::Exited(s),
            (None, None) => ProcEnd::Error("the process vanished".into()),
        }
    }

    /// One line of output: a workflow command is handled (after the lines before it are
    /// sent, so that `::add-mask::` and groups apply from the right line on), any other
    /// line joins the batch.
    async fn handle_line(
        &mut self,
        raw: &[u8],
        step_no: usize,
        cmd: &mut CmdState,
        batch: &mut LogBatch,
    ) {
        let text = match std::str::from_utf8(raw) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(raw),
        };
        if let Some(token) = &cmd.stop_token {
            let t = text.trim();
            if t.strip_prefix("::")
                .and_then(|t| t.strip_suffix("::"))
                .is_some_and(|t| t == token)
            {
                cmd.stop_token = None;
                return;
            }
        } else if looks_like_command(raw)
            && let Some(c) = commands::parse(&text)
        {
            self.flush_log(step_no, batch).await;
            if self.handle_command(c, step_no, cmd).await {
                return;
            }
        }
        if batch.text.len() + text.len() >= LOG_BATCH_MAX {
            self.flush_log(step_no, batch).await;
        }
        batch.text.push_str(&text);
        batch.text.push('\n');
    }

    /// A block of `\n`-terminated lines (or one piece of an over-long line without `\n`):
    /// runs of plain lines join the batch in one copy; workflow commands, lines ending in
    /// `\r` and the piece go through [`JobRun::handle_line`].
    async fn handle_block(
        &mut self,
        block: &[u8],
        step_no: usize,
        cmd: &mut CmdState,
        batch: &mut LogBatch,
    ) {
        let mut plain = 0;
        let mut pos = 0;
        while pos < block.len() {
            let nl = memchr::memchr(b'\n', &block[pos..]).map(|i| pos + i);
            let end = nl.unwrap_or(block.len());
            let line = &block[pos..end];
            let next = nl.map_or(block.len(), |nl| nl + 1);
            if nl.is_none() || line.last() == Some(&b'\r') || looks_like_command(line) {
                self.push_plain(&block[plain..pos], step_no, batch).await;
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                self.handle_line(line, step_no, cmd, batch).await;
                plain = next;
            }
            pos = next;
        }
        self.push_plain(&block[plain..], step_no, batch).await;
    }

    /// Plain `\n`-terminated lines into the batch (flushing whenever it is full).
    async fn push_plain(&mut self, run: &[u8], step_no: usize, batch: &mut LogBatch) {
        let Ok(mut text) = std::str::from_utf8(run) else {
            // Invalid UTF-8 somewhere: line by line, each made valid on its own.
            for line in run.split_inclusive(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(line);
                Box::pin(self.push_plain(line.as_bytes(), step_no, batch)).await;
            }
            return;
        };
        while batch.text.len() + text.len() > LOG_BATCH_MAX {
            let room = LOG_BATCH_MAX
                .saturating_sub(batch.text.len())
                .min(text.len());
            let cut = match memchr::memrchr(b'\n', &text.as_bytes()[..room]) {
                Some(i) => i + 1,
                // A line longer than a batch goes alone.
                None if batch.text.is_empty() => {
                    memchr::memchr(b'\n', text.as_bytes()).map_or(text.len(), |i| i + 1)
                }
                None => 0,
            };
            batch.text.push_str(&text[..cut]);
            text = &text[cut..];
            self.flush_log(step_no, batch).await;
            if text.is_empty() {
                return;
            }
        }
        batch.text.push_str(text);
    }

    /// Sends the batched lines as one masked [`Event::Log`].
    async fn flush_log(&mut self, step_no: usize, batch: &mut LogBatch) {
        if batch.text.is_empty() {
            return;
        }
        let text = std::mem::take(&mut batch.text);
        let masked = match self.masker.mask_lines(&text) {
            std::borrow::Cow::Owned(m) => Some(m),
            std::borrow::Cow::Borrowed(_) => None,
        };
        self.emit(Event::Log {
            job: self.id.clone(),
            step: Some(step_no),
            stream: batch.stream,
            lines: LogLines::from_text(masked.unwrap_or(text)),
        })
        .await;
    }

    /// Handles a workflow command; false when it is not one (the line is logged as is).
    async fn handle_command(
        &mut self,
        c: commands::WorkflowCommand,
        step_no: usize,
        cmd: &mut CmdState,
    ) -> bool {
        let job = self.id.clone();
        match c.name.as_str() {
            "group" => {
                let title = self.masker.mask(&c.message).into_owned();
                self.emit(Event::GroupStarted {
                    job,
                    step: Some(step_no),
                    title,
                })
                .await;
            }
            "endgroup" => {
                self.emit(Event::GroupEnded {
                    job,
                    step: Some(step_no),
                })
                .await
            }
            "add-mask" => {
                self.masker.add(&c.message);
            }
            "error" | "warning" | "notice" => {
                let message = self.masker.mask(&c.message).into_owned();
                self.emit(Event::Annotation {
                    job,
                    step: Some(step_no),
                    level: c.name.clone(),
                    message,
                    file: c.prop("file").map(str::to_owned),
                    line: c.prop("line").and_then(|l| l.parse().ok()),
                    col: c.prop("col").and_then(|l| l.parse().ok()),
                })
                .await;
            }
            "debug" => {
                if self.shared.debug {
                    let line = format!("##[debug]{}", self.masker.mask(&c.message));
                    self.emit(Event::Log {
                        job,
                        step: Some(step_no),
                        stream: LogStream::Stdout,
                        lines: LogLines::one(&line),
                    })
                    .await;
                }
            }
            "stop-commands" => {
                if !c.message.is_empty() {
                    cmd.stop_token = Some(c.message.clone());
                }
            }
            "set-output" => {
                if let Some(name) = c.prop("name") {
                    cmd.outputs
                        .insert(name.to_owned(), Value::String(c.message.clone()));
                }
            }
            "save-state" => {
                if let Some(name) = c.prop("name") {
                    cmd.state.insert(name.to_owned(), c.message.clone());
                }
            }
            "set-env" | "add-path" => {
                if cmd.allow_unsecure {
                    if c.name == "set-env" {
                        if let Some(name) = c.prop("name") {
                            cmd.env.insert(name.to_owned(), c.message.clone());
                        }
                    } else {
                        cmd.paths.push(c.message.clone());
                    }
                } else {
                    self.annotate(
                        Some(step_no),
                        "error",
                        format!(
                            "The `{}` command is disabled. Please upgrade to using Environment Files or opt into unsecure command execution by setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` environment variable to `true`.",
                            c.name
                        ),
                    )
                    .await;
                }
            }
            "echo" | "add-matcher" | "remove-matcher" => {}
            _ => return false,
        }
        true
    }
}

impl CmdState {
    fn outputs_with_state(self, run: &mut JobRun, _step_no: usize) -> Map<String, Value> {
        if !self.state.is_empty() {
            run.states
                .entry(String::new())
                .or_default()
                .extend(self.state);
        }
        self.outputs
    }
}

/// A [`Event::Log`] batch holds at most this much text (so that the events a slow consumer
/// has not taken yet stay small).
const LOG_BATCH_MAX: usize = 64 * 1024;

/// Lines of one stream waiting to become one [`Event::Log`].
struct LogBatch {
    stream: LogStream,
    /// `\n`-terminated lines, not masked yet.
    text: String,
}

impl Default for LogBatch {
    fn default() -> Self {
        LogBatch {
            stream: LogStream::Stdout,
            text: String::new(),
        }
    }
}

impl LogBatch {
    /// Starts collecting lines of `stream` (the previous batch was flushed), about `bytes`.
    fn start(&mut self, stream: LogStream, bytes: usize) {
        debug_assert!(self.text.is_empty());
        self.stream = stream;
        self.text.reserve(bytes.min(LOG_BATCH_MAX));
    }
}

/// The paths of a step's environment files, as strings for the process env.
pub(crate) struct StepFilesPaths {
    pub env: String,
    pub output: String,
    pub state: String,
    pub path: String,
    pub summary: String,
}

/// Waits until `reader` has a complete line buffered (`Ok(true)`), or reached EOF/an error
/// (`Ok(false)`/`Err`; the rest is then read with `next_line`).
async fn next_line<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut Option<LineReader<R>>,
) -> std::io::Result<bool> {
    match reader {
        Some(r) => r.fill_line().await,
        None => std::future::pending().await,
    }
}

fn looks_like_command(raw: &[u8]) -> bool {
    let t = raw
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| &raw[i..])
        .unwrap_or(&[]);
    t.starts_with(b"::")
}

fn allow_unsecure(env: &IndexMap<String, String>) -> bool {
    env.get("ACTIONS_ALLOW_UNSECURE_COMMANDS")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// `(program, args with {0}, script file extension)` for a `shell:` value.
pub(crate) fn shell_template(shell: &str) -> (String, Vec<String>, &'static str) {
    let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    match shell {
        "bash" => (
            "bash".into(),
            s(&["--noprofile", "--norc", "-eo", "pipefail", "{0}"]),
            ".sh",
        ),
        "sh" => ("sh".into(), s(&["-e", "{0}"]), ".sh"),
        "python" => ("python".into(), s(&["{0}"]), ".py"),
        "pwsh" => ("pwsh".into(), s(&["-command", ". '{0}'"]), ".ps1"),
        "powershell" => ("powershell".into(), s(&["-command", ". '{0}'"]), ".ps1"),
        "node" => ("node".into(), s(&["{0}"]), ".js"),
        custom => {
            let mut words = split_words(custom);
            if words.is_empty() {
                return ("sh".into(), s(&["-e", "{0}"]), ".sh");
            }
            let program = words.remove(0);
            if !words.iter().any(|w| w.contains("{0}")) && !custom.contains("{0}") {
                words.push("{0}".into());
            }
            let ext = match program.rsplit('/').next().unwrap_or(&program) {
                "python" | "python3" => ".py",
                "pwsh" | "powershell" => ".ps1",
                "node" => ".js",
                _ => ".sh",
            };
            (program, words, ext)
        }
    }
}

/// Splits a command template into words (double and single quotes group).
fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for ch in s.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(ch);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

pub(crate) fn uses_string(a: &ActionRef) -> String {
    match a {
        ActionRef::Local { path } => path.clone(),
        ActionRef::Remote {
            owner,
            repo,
            path,
            git_ref,
        } => match path {
            Some(p) => format!("{owner}/{repo}/{p}@{git_ref}"),
            None => format!("{owner}/{repo}@{git_ref}"),
        },
        ActionRef::Docker { image } => format!("docker://{image}"),
    }
}

fn step_display_name(step: &Step, ctx: &Ctx) -> String {
    if let Some(n) = &step.name {
        return n.eval_string(ctx).unwrap_or_else(|_| n.source().to_owned());
    }
    match &step.kind {
        StepKind::Run { script, .. } => {
            let first = script
                .source()
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            format!("Run {first}")
        }
        StepKind::Uses { action, .. } => format!("Run {}", uses_string(action)),
    }
}

/// A container spec for a docker step sharing the job's directories and env.
pub(crate) fn run_container_spec(
    image: &str,
    env: IndexMap<String, String>,
    entrypoint: Option<Vec<String>>,
    args: Vec<String>,
    workspace: &Path,
) -> ContainerSpec {
    ContainerSpec {
        image: image.to_owned(),
        env,
        entrypoint,
        args,
        workdir: Some(workspace.to_path_buf()),
        ..ContainerSpec::default()
    }
}

impl JobRun {
    /// Whether `bash` is on the PATH of the job container (see [`JobRun::probe_container`]).
    async fn container_has_bash(&mut self, _env: &IndexMap<String, String>) -> bool {
        if self.has_bash.is_none() {
            self.probe_container().await;
        }
        self.has_bash.unwrap_or(false)
    }

    /// Asks the job container for its `PATH` (the image's, which the step env must keep)
    /// and whether it has `bash`.
    pub(crate) async fn probe_container(&mut self) {
        use tokio::io::AsyncReadExt;
        let probe = Command {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "printf '%s\\n' \"$PATH\"; command -v bash || true".into(),
            ],
            env: IndexMap::new(),
            cwd: self.dirs.workspace.clone(),
        };
        let mut text = String::new();
        if let Ok(mut p) = self.host.spawn(probe).await {
            drop(p.take_stderr());
            if let Some(mut out) = p.take_stdout() {
                let _ = out.read_to_string(&mut text).await;
            }
            let _ = p.wait().await;
        }
        let mut lines = text.lines();
        if let Some(path) = lines.next().map(str::trim).filter(|p| !p.is_empty()) {
            self.process_base.insert("PATH".into(), path.to_owned());
        }
        self.has_bash = Some(lines.next().is_some_and(|l| !l.trim().is_empty()));
    }

    /// Runs a container step (`docker://` or a docker action) and reads its output.
    pub(crate) async fn run_container_step(
        &mut self,
        mut spec: ContainerSpec,
        step_no: usize,
        timeout: Option<Duration>,
    ) -> StepResult {
        let (files, paths) = match self.step_files() {
            Ok(f) => f,
            Err(e) => {
                self.annotate(Some(step_no), "error", e).await;
                return StepResult::failed();
            }
        };
        for (k, v) in [
            ("GITHUB_ENV", &paths.env),
            ("GITHUB_OUTPUT", &paths.output),
            ("GITHUB_STATE", &paths.state),
            ("GITHUB_PATH", &paths.path),
            ("GITHUB_STEP_SUMMARY", &paths.summary),
        ] {
            spec.env.insert(k.to_owned(), v.clone());
        }
        let mut cmd = CmdState {
            allow_unsecure: allow_unsecure(&spec.env),
            ..CmdState::default()
        };
        let end = match self.host.run_container(spec).await {
            Ok(proc) => self.drive(proc, step_no, timeout, &mut cmd).await,
            Err(e) => ProcEnd::Error(e.to_string()),
        };
        let files_res = self.read_step_files(&files, step_no, &mut cmd).await;
        self.finish_process(end, files_res, step_no, cmd).await
    }

    /// Runs a node script of an action (`main`, `pre` or `post`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run_node(
        &mut self,
        def: &ActionDef,
        script: &str,
        inputs: &IndexMap<String, String>,
        step_env: &IndexMap<String, String>,
        scope: &Scope,
        step_no: usize,
        state_key: &str,
        action_name: &str,
    ) -> StepResult {
        let (files, paths) = match self.step_files() {
            Ok(f) => f,
            Err(e) => {
                self.annotate(Some(step_no), "error", e).await;
                return StepResult::failed();
            }
        };
        let action_scope = Scope {
            steps: Map::new(),
            inputs: None,
            env: scope.env.clone(),
            failed: false,
            action_path: Some(def.dir.clone()),
            event_step: Some(step_no),
            depth: scope.depth + 1,
        };
        let mut env = self.process_env(&action_scope, step_env, Some(&paths), action_name);
        for (k, v) in inputs {
            env.insert(input_env_name(k), v.clone());
        }
        if let Some((repo, git_ref)) = &def.repository {
            env.insert("GITHUB_ACTION_REPOSITORY".into(), repo.clone());
            env.insert("GITHUB_ACTION_REF".into(), git_ref.clone());
        }
        if let Some(state) = self.states.get(state_key) {
            for (k, v) in state {
                env.insert(format!("STATE_{k}"), v.clone());
            }
        }
        let command = Command {
            program: "node".into(),
            args: vec![def.dir.join(script).to_string_lossy().into_owned()],
            env: env.clone(),
            cwd: self.dirs.workspace.clone(),
        };
        let mut cmd = CmdState {
            allow_unsecure: allow_unsecure(&env),
            ..CmdState::default()
        };
        let end = match self.host.spawn(command).await {
            Ok(proc) => self.drive(proc, step_no, None, &mut cmd).await,
            Err(ExecError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ProcEnd::Error(
                    "`node` not found on PATH: node actions need Node.js (apt-get install nodejs)"
                        .into(),
                )
            }
            Err(e) => ProcEnd::Error(e.to_string()),
        };
        let files_res = self.read_step_files(&files, step_no, &mut cmd).await;
        let state = std::mem::take(&mut cmd.state);
        if !state.is_empty() {
            self.states
                .entry(state_key.to_owned())
                .or_default()
                .extend(state);
        }
        self.finish_process(end, files_res, step_no, cmd).await
    }
}

/// The job's `container:` and `services:` as executor specs.
fn job_containers(
    job: &Job,
    ctx: &mut Ctx,
) -> Result<(Option<ContainerSpec>, IndexMap<String, ContainerSpec>), String> {
    let one = |c: &workflow::Container, alias: Option<&str>| -> Result<ContainerSpec, String> {
        let ev = |t: &Template| {
            t.eval_string(&*ctx)
                .map_err(|e| format!("evaluating `{}`: {e}", t.source()))
        };
        let image = ev(&c.image)?;
        let credentials = match &c.credentials {
            Some((u, p)) => Some((ev(u)?, ev(p)?)),
            None => None,
        };
        let ports = c.ports.iter().map(ev).collect::<Result<Vec<_>, _>>()?;
        let volumes = c.volumes.iter().map(ev).collect::<Result<Vec<_>, _>>()?;
        let options = c.options.as_ref().map(ev).transpose()?;
        let env = eval_env(&c.env, &mut ctx.clone())?;
        Ok(ContainerSpec {
            image,
            env,
            ports,
            volumes,
            options: options.filter(|o| !o.trim().is_empty()),
            credentials,
            alias: alias.map(str::to_owned),
            ..ContainerSpec::default()
        })
    };
    let container = match &job.container {
        Some(c) => Some(one(c, None)?).filter(|c| !c.image.is_empty()),
        None => None,
    };
    let mut services = IndexMap::new();
    for (k, c) in &job.services {
        let spec = one(c, Some(k))?;
        if !spec.image.is_empty() {
            services.insert(k.clone(), spec);
        }
    }
    Ok((container, services))
}

pub(crate) fn input_env_name(name: &str) -> String {
    format!("INPUT_{}", name.replace(' ', "_").to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(shell: &str, program: &str, args: &[&str], ext: &str) {
        let (p, a, e) = shell_template(shell);
        assert_eq!(
            (
                p.as_str(),
                a.iter().map(String::as_str).collect::<Vec<_>>(),
                e
            ),
            (program, args.to_vec(), ext),
            "shell {shell:?}"
        );
    }

    #[test]
    fn shells() {
        check(
            "bash",
            "bash",
            &["--noprofile", "--norc", "-eo", "pipefail", "{0}"],
            ".sh",
        );
        check("sh", "sh", &["-e", "{0}"], ".sh");
        check("python", "python", &["{0}"], ".py");
        check("pwsh", "pwsh", &["-command", ". '{0}'"], ".ps1");
        check("node", "node", &["{0}"], ".js");
        check("bash -x {0}", "bash", &["-x", "{0}"], ".sh");
        check("cp {0} action.yml", "cp", &["{0}", "action.yml"], ".sh");
        check("python3 -u {0}", "python3", &["-u", "{0}"], ".py");
        check("perl \"-e\" '{0}'", "perl", &["-e", "{0}"], ".sh");
    }
}
