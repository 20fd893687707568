//! `slipway run`: compile the repository's workflows for one event and run them locally,
//! with live per-job output (or `--json` events), a summary table and exit code 0 (every job
//! that ran succeeded), 1 (a job failed) or 2 (invalid workflow or command line).
//!
//! Flag spellings follow nektos/act. This module turns the command line, the event file,
//! dotenv files and the git checkout into [`runner::RunOptions`]; the runner does the rest.
//! Ctrl-C (or SIGTERM) once cancels the run (steps get SIGTERM then SIGKILL, `always()`
//! steps still run); a second Ctrl-C exits at once.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use indexmap::IndexMap;
use runner::{Platform, RunError, RunOptions};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use workflow::Plan;

use super::live::{Renderer, Style};
use super::workflows;

/// The image jobs run in with `--executor docker` when no `-P` mapping names one.
pub const DEFAULT_DOCKER_IMAGE: &str = "node:24-bookworm-slim";

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The event to run the workflows for.
    #[arg(default_value = "push")]
    pub event: String,
    /// A workflow file, or a directory whose *.yml/*.yaml files (not recursive) are the
    /// workflows. Default: the first existing of .slipway/workflows, .gitea/workflows,
    /// .forgejo/workflows, .github/workflows.
    #[arg(short = 'W', long = "workflows", value_name = "PATH")]
    pub workflows: Option<PathBuf>,
    /// Run only this job (and the jobs it needs).
    #[arg(short = 'j', long = "job", value_name = "JOB")]
    pub job: Option<String>,
    /// The event payload (github.event). Default: {} (or {"inputs": {...}} with --input).
    #[arg(short = 'e', long = "eventpath", visible_alias = "event-file", value_name = "EVENT.json")]
    pub event_path: Option<PathBuf>,
    /// A secret (repeatable).
    #[arg(short = 's', long = "secret", value_name = "K=V")]
    pub secrets: Vec<String>,
    /// A dotenv file of secrets.
    #[arg(long = "secret-file", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// A configuration variable, the `vars` context (repeatable).
    #[arg(long = "var", value_name = "K=V")]
    pub vars: Vec<String>,
    /// A dotenv file of variables.
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_file: Option<PathBuf>,
    /// An environment variable for every job (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// A dotenv file of environment variables for every job.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// A workflow_dispatch input (repeatable).
    #[arg(long = "input", value_name = "K=V")]
    pub inputs: Vec<String>,
    /// A dotenv file of inputs.
    #[arg(long = "input-file", value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// Keep only matrix legs whose KEY is one of the given values (repeatable, act's filter).
    #[arg(long = "matrix", value_name = "K:V")]
    pub matrix: Vec<String>,
    /// github.actor. Default: git config user.name, else $USER.
    #[arg(short = 'a', long = "actor", value_name = "NAME")]
    pub actor: Option<String>,
    /// Map a runs-on label to `host` or `docker://IMAGE` (repeatable). With any -P, jobs
    /// whose runs-on matches no mapping are skipped with a warning.
    #[arg(short = 'P', long = "platform", value_name = "LABEL=host|docker://IMAGE")]
    pub platforms: Vec<String>,
    /// Where jobs run when no -P is given (docker uses node:24-bookworm-slim).
    #[arg(long = "executor", value_enum, default_value = "host")]
    pub executor: ExecutorKind,
    /// Keep uploaded artifacts in this directory after the run.
    #[arg(long = "artifact-dir", visible_alias = "artifact-server-path", value_name = "DIR")]
    pub artifact_dir: Option<PathBuf>,
    /// Run host steps in a bubblewrap sandbox.
    #[arg(long = "sandbox")]
    pub sandbox: bool,
    /// Print the run's events as JSON, one object per line, and nothing else on stdout.
    #[arg(long = "json")]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutorKind {
    Host,
    Docker,
}

/// What the command line asked for, checked.
struct Inputs {
    secrets: IndexMap<String, String>,
    vars: IndexMap<String, String>,
    env: IndexMap<String, String>,
    inputs: IndexMap<String, String>,
    matrix: IndexMap<String, Vec<String>>,
    platforms: Vec<(String, Platform)>,
    event: Value,
    has_event_file: bool,
}

pub async fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let json_mode = args.json;

    // Everything that can make the invocation invalid (exit 2), before anything runs.
    let cli = match read_inputs(&args, &cwd) {
        Ok(cli) => cli,
        Err(e) => return Ok(invalid(&e)),
    };
    let found = match workflows::discover(args.workflows.as_deref(), &cwd) {
        Ok(found) => found,
        Err(e) => return Ok(invalid(&e)),
    };
    let git = GitProbe::start(&found.repo_root);
    let (parsed, mut diagnostics) = workflows::parse_all(&found.files, &cwd);
    let loader = workflows::FsLoader { root: found.repo_root.clone() };
    let (mut plans, compile_diags) = workflows::compile_for(&parsed, &args.event, &loader);
    diagnostics.extend(compile_diags);
    let diagnostics = workflows::dedup(diagnostics);
    if !diagnostics.is_empty() {
        let _ = workflows::print_diagnostics(&mut std::io::stderr().lock(), &diagnostics);
        if workflows::has_errors(&diagnostics) {
            return Ok(ExitCode::from(2));
        }
    }
    if plans.is_empty() {
        let msg = format!(
            "no workflow listens to the `{}` event ({} workflow file{} in {})",
            args.event,
            found.files.len(),
            if found.files.len() == 1 { "" } else { "s" },
            args.workflows.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_else(|| "the default directories".into())
        );
        if json_mode { eprintln!("{msg}") } else { println!("{msg}") }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(job) = &args.job {
        plans = select_job(plans, job);
        if plans.is_empty() {
            return Ok(invalid(&anyhow!(
                "no job `{job}` in the workflows that listen to the `{}` event",
                args.event
            )));
        }
    }

    let git = git.finish();
    let github = github_context(&args, &cli, &git, &found.repo_root);
    let work = match tempfile::Builder::new().prefix("slipway-run-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: creating the run directory in {}: {e}", std::env::temp_dir().display());
            return Ok(ExitCode::from(1));
        }
    };
    let default_platform = match args.executor {
        ExecutorKind::Host => Platform::Host,
        ExecutorKind::Docker => Platform::Docker { image: DEFAULT_DOCKER_IMAGE.to_owned() },
    };
    let options = RunOptions {
        repo_root: found.repo_root.clone(),
        work_root: work.path().to_path_buf(),
        event_name: args.event.clone(),
        event: cli.event,
        github,
        secrets: cli.secrets,
        vars: cli.vars,
        env: cli.env,
        inputs: cli.inputs,
        matrix_filter: cli.matrix,
        platforms: cli.platforms,
        default_platform,
        artifact_dir: args.artifact_dir.as_ref().map(|d| cwd.join(d)),
        cache_dir: cache_dir(),
        cache: None,
        actions_url: std::env::var("SLIPWAY_ACTIONS_URL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "https://github.com".to_owned()),
        sandbox: args.sandbox,
        docker_host: std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()),
        needs: Default::default(),
    };

    let style = Style {
        json: json_mode,
        color: !json_mode
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        progress: !json_mode && std::io::stderr().is_terminal(),
    };
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(Signals::install().watch(
        cancel.clone(),
        work.path().to_path_buf(),
        options.docker_host.clone(),
    ));
    let outcome = execute(plans, options, cancel, style).await;
    signals.abort();
    let code = match outcome {
        Ok(success) => ExitCode::from(if success { 0 } else { 1 }),
        Err(RunError::Invalid(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::new(e));
            ExitCode::from(1)
        }
    };
    if let Err(e) = work.close() {
        tracing::warn!(error = %e, "Removing the run directory failed.");
    }
    Ok(code)
}

/// Prints the error and returns exit code 2.
fn invalid(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::from(2)
}

/// Runs the plans, rendering events as they come. Returns whether the run succeeded.
async fn execute(
    plans: Vec<Plan>,
    options: RunOptions,
    cancel: CancellationToken,
    style: Style,
) -> Result<bool, RunError> {
    // A log event carries up to 64 KiB of lines (one read of a step's output): a short queue
    // bounds the memory a slow stdout can pile up.
    let (tx, mut rx) = mpsc::channel(256);
    let mut renderer = Renderer::new(
        style,
        std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout()),
        std::io::stderr(),
    );
    let run = runner::run(plans, options, tx, cancel);
    tokio::pin!(run);
    // Output is flushed at most FLUSH_AFTER after it was rendered (or when the buffer is
    // full): one write per many lines, yet live.
    const FLUSH_AFTER: Duration = Duration::from_millis(25);
    const BATCH: usize = 256;
    let mut batch = Vec::with_capacity(BATCH);
    let mut flush_at: Option<Instant> = None;
    let result = loop {
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(flush_at.unwrap_or(far)), if flush_at.is_some() => {
                renderer.flush();
                flush_at = None;
            }
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break (&mut run).await;
                }
                for event in batch.drain(..) {
                    renderer.event(&event);
                }
                flush_at.get_or_insert_with(|| Instant::now() + FLUSH_AFTER);
            }
            result = &mut run => break result,
        }
    };
    while let Ok(event) = rx.try_recv() {
        renderer.event(&event);
    }
    renderer.flush();
    let summary = result?;
    renderer.summary(&summary);
    if let Some(e) = renderer.broken {
        tracing::debug!(error = %e, "Writing the run's output failed.");
    }
    Ok(summary.success)
}

/// SIGINT (Ctrl-C) and SIGTERM handlers, installed before the run starts so that no signal
/// can hit the default action (which would leave steps running).
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals { interrupt: signal(SignalKind::interrupt()).ok(), terminate: signal(SignalKind::terminate()).ok() }
    }

    /// First Ctrl-C (or SIGTERM): cancel the run. Second Ctrl-C: exit at once (after
    /// removing the run's docker containers and networks, which would outlive it).
    async fn watch(mut self, cancel: CancellationToken, work_root: PathBuf, docker_host: Option<String>) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.interrupt) => {}
            () = recv(&mut self.terminate) => {}
        }
        eprintln!("\nslipway: cancelling the run (press Ctrl-C again to stop at once)");
        cancel.cancel();
        recv(&mut self.interrupt).await;
        eprintln!("\nslipway: stopped");
        let docker = runner::executor::docker::DockerExecutor::new(runner::executor::docker::DockerOptions {
            endpoint: docker_host,
            run_id: runner::executor::docker::run_id_for(&work_root),
            default_image: None,
        });
        if let Ok(docker) = docker {
            let _ = tokio::time::timeout(Duration::from_secs(3), docker.cleanup_run()).await;
        }
        let _ = std::fs::remove_dir_all(&work_root);
        std::process::exit(130);
    }
}

/// Keeps, in each plan, the job `job` and every job it needs (transitively); drops plans
/// that don't have it.
fn select_job(plans: Vec<Plan>, job: &str) -> Vec<Plan> {
    let mut out = Vec::new();
    for mut plan in plans {
        if !plan.jobs.iter().any(|j| j.id == job) {
            continue;
        }
        let mut keep = std::collections::HashSet::new();
        let mut todo = vec![job.to_owned()];
        while let Some(id) = todo.pop() {
            if keep.insert(id.clone()) {
                if let Some(j) = plan.jobs.iter().find(|j| j.id == id) {
                    todo.extend(j.needs.iter().cloned());
                }
            }
        }
        plan.jobs.retain(|j| keep.contains(&j.id));
        out.push(plan);
    }
    out
}

fn read_inputs(args: &RunArgs, cwd: &Path) -> anyhow::Result<Inputs> {
    let mut secrets = IndexMap::new();
    if let Some(file) = &args.secret_file {
        secrets.extend(read_dotenv(&cwd.join(file), file)?);
    }
    secrets.extend(pairs(&args.secrets, "--secret")?);
    let mut vars = IndexMap::new();
    if let Some(file) = &args.var_file {
        vars.extend(read_dotenv(&cwd.join(file), file)?);
    }
    vars.extend(pairs(&args.vars, "--var")?);
    let mut env = IndexMap::new();
    if let Some(file) = &args.env_file {
        env.extend(read_dotenv(&cwd.join(file), file)?);
    }
    env.extend(pairs(&args.env, "--env")?);
    let mut inputs = IndexMap::new();
    if let Some(file) = &args.input_file {
        inputs.extend(read_dotenv(&cwd.join(file), file)?);
    }
    inputs.extend(pairs(&args.inputs, "--input")?);
    let mut matrix: IndexMap<String, Vec<String>> = IndexMap::new();
    for m in &args.matrix {
        let Some((k, v)) = m.split_once(':') else {
            bail!("--matrix {m:?}: expected KEY:VALUE");
        };
        if k.is_empty() {
            bail!("--matrix {m:?}: the key is empty");
        }
        matrix.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    let platforms = args.platforms.iter().map(|p| parse_platform(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let (event, has_event_file) = match &args.event_path {
        Some(path) => (read_event(&cwd.join(path), path)?, true),
        None if inputs.is_empty() => (json!({}), false),
        None => (json!({ "inputs": inputs }), false),
    };
    Ok(Inputs { secrets, vars, env, inputs, matrix, platforms, event, has_event_file })
}

/// `K=V` arguments into a map (later ones win).
fn pairs(values: &[String], flag: &str) -> anyhow::Result<IndexMap<String, String>> {
    let mut out = IndexMap::new();
    for v in values {
        let Some((k, val)) = v.split_once('=') else {
            bail!("{flag} {v:?}: expected KEY=VALUE");
        };
        if k.is_empty() {
            bail!("{flag} {v:?}: the key is empty");
        }
        out.insert(k.to_owned(), val.to_owned());
    }
    Ok(out)
}

/// `-P LABEL=host`, `LABEL=docker://IMAGE`, act's `LABEL=-self-hosted` and `LABEL=IMAGE`.
fn parse_platform(spec: &str) -> anyhow::Result<(String, Platform)> {
    let Some((label, target)) = spec.split_once('=') else {
        bail!("-P {spec:?}: expected LABEL=host or LABEL=docker://IMAGE");
    };
    let label = label.trim();
    let target = target.trim();
    if label.is_empty() {
        bail!("-P {spec:?}: the label is empty");
    }
    let platform = match target {
        "host" | "-self-hosted" => Platform::Host,
        _ => {
            let image = target.strip_prefix("docker://").unwrap_or(target);
            if image.is_empty() {
                bail!("-P {spec:?}: expected LABEL=host or LABEL=docker://IMAGE");
            }
            Platform::Docker { image: image.to_owned() }
        }
    };
    Ok((label.to_owned(), platform))
}

fn read_event(path: &Path, shown: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the event file {}", shown.display()))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        anyhow!("{}:{}:{}: error: invalid JSON in the event file: {e}", shown.display(), e.line(), e.column())
    })?;
    if !value.is_object() {
        bail!("{}:1:1: error: the event payload must be a JSON object", shown.display());
    }
    Ok(value)
}

fn read_dotenv(path: &Path, shown: &Path) -> anyhow::Result<IndexMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", shown.display()))?;
    parse_dotenv(&text).map_err(|(line, msg)| anyhow!("{}:{line}:1: error: {msg}", shown.display()))
}

/// dotenv: `KEY=value`, an optional `export ` prefix, `#` comments, single quotes (literal),
/// double quotes (`\n`, `\t`, `\"`, `\\` escapes; may span lines), unquoted values end at ` #`.
pub fn parse_dotenv(text: &str) -> Result<IndexMap<String, String>, (usize, String)> {
    let mut out = IndexMap::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let line = lines[i].trim_start();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, rest)) = line.split_once('=') else {
            return Err((lineno, format!("expected KEY=value, found {line:?}")));
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err((lineno, format!("invalid key {key:?}")));
        }
        let rest = rest.trim_start();
        let value = if let Some(body) = rest.strip_prefix('"') {
            let mut raw = body.to_owned();
            loop {
                if let Some(end) = closing_quote(&raw) {
                    raw.truncate(end);
                    break;
                }
                if i >= lines.len() {
                    return Err((lineno, format!("unterminated double quote in the value of {key}")));
                }
                raw.push('\n');
                raw.push_str(lines[i]);
                i += 1;
            }
            unescape(&raw)
        } else if let Some(body) = rest.strip_prefix('\'') {
            match body.find('\'') {
                Some(end) => body[..end].to_owned(),
                None => return Err((lineno, format!("unterminated single quote in the value of {key}"))),
            }
        } else {
            let v = match rest.find(" #") {
                Some(p) => &rest[..p],
                None => rest,
            };
            v.trim_end().to_owned()
        };
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

/// The byte index of the first unescaped `"`.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// `$XDG_CACHE_HOME/slipway`, else `~/.cache/slipway`, else a directory in the temp dir.
fn cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(x).join("slipway");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(home).join(".cache/slipway");
    }
    std::env::temp_dir().join("slipway-cache")
}

/// What the git checkout says about itself.
#[derive(Debug, Default)]
struct GitFacts {
    sha: Option<String>,
    /// `refs/heads/X` (None when detached).
    git_ref: Option<String>,
    origin: Option<String>,
    user_name: Option<String>,
}

/// The two git commands, started together so they overlap with parsing.
struct GitProbe {
    rev: Option<std::process::Child>,
    config: Option<std::process::Child>,
}

impl GitProbe {
    fn start(dir: &Path) -> GitProbe {
        let spawn = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(dir)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .ok()
        };
        GitProbe {
            rev: spawn(&["rev-parse", "HEAD", "--symbolic-full-name", "HEAD"]),
            config: spawn(&["config", "--get-regexp", r"^(remote\.origin\.url|user\.name)$"]),
        }
    }

    fn finish(self) -> GitFacts {
        let output = |child: Option<std::process::Child>| {
            child.and_then(|c| c.wait_with_output().ok()).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let mut facts = GitFacts::default();
        if let Some(out) = output(self.rev) {
            let mut lines = out.lines();
            facts.sha = lines.next().filter(|s| s.len() >= 40).map(str::to_owned);
            facts.git_ref = lines.next().filter(|s| s.starts_with("refs/")).map(str::to_owned);
        }
        if let Some(out) = output(self.config) {
            for line in out.lines() {
                if let Some(v) = line.strip_prefix("remote.origin.url ") {
                    facts.origin = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("user.name ") {
                    facts.user_name = Some(v.trim().to_owned()).filter(|s| !s.is_empty());
                }
            }
        }
        facts
    }
}

/// `owner/name` from a git remote URL (`https://host/o/n(.git)`, `git@host:o/n.git`,
/// `ssh://git@host:22/o/n`).
fn repo_from_remote(url: &str) -> Option<(String, String)> {
    let url = url.trim().trim_end_matches('/');
    let path = if let Some((_, rest)) = url.split_once("://") {
        rest.split_once('/')?.1
    } else if let Some((_, rest)) = url.split_once(':') {
        rest
    } else {
        url
    };
    let path = path.strip_suffix(".git").unwrap_or(path);
    let mut parts = path.rsplit('/').filter(|p| !p.is_empty());
    let name = parts.next()?;
    let owner = parts.next()?;
    Some((owner.to_owned(), name.to_owned()))
}

fn string_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

/// The base `github` context: repository (event payload, else git remote `origin`, else the
/// directory name), actor, sha/ref, run ids, URLs.
fn github_context(args: &RunArgs, cli: &Inputs, git: &GitFacts, repo_root: &Path) -> Map<String, Value> {
    let event = &cli.event;
    let (owner, name) = string_at(event, &["repository", "full_name"])
        .and_then(|full| full.split_once('/').map(|(o, n)| (o.to_owned(), n.to_owned())))
        .or_else(|| git.origin.as_deref().and_then(repo_from_remote))
        .unwrap_or_else(|| {
            let dir = std::fs::canonicalize(repo_root).unwrap_or_else(|_| repo_root.to_path_buf());
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "repo".into());
            ("local".to_owned(), name)
        });
    let actor = args
        .actor
        .clone()
        .or_else(|| git.user_name.clone())
        .or_else(|| std::env::var("USER").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "slipway".to_owned());
    let is_pr = args.event.starts_with("pull_request");
    let pr_number = event.get("pull_request").and_then(|p| p.get("number")).or_else(|| event.get("number")).and_then(Value::as_u64);
    let git_ref = match (is_pr, pr_number, string_at(event, &["ref"])) {
        (true, Some(n), _) => format!("refs/pull/{n}/merge"),
        (_, _, Some(r)) if cli.has_event_file => r.to_owned(),
        _ => git.git_ref.clone().unwrap_or_default(),
    };
    let sha = string_at(event, &["after"])
        .filter(|s| s.len() == 40)
        .map(str::to_owned)
        .or_else(|| git.sha.clone())
        .unwrap_or_default();
    let (ref_name, ref_type) = if let Some(b) = git_ref.strip_prefix("refs/heads/") {
        (b.to_owned(), "branch")
    } else if let Some(t) = git_ref.strip_prefix("refs/tags/") {
        (t.to_owned(), "tag")
    } else if let Some(p) = git_ref.strip_prefix("refs/pull/") {
        (p.to_owned(), "branch")
    } else {
        (git_ref.clone(), "branch")
    };
    let (head_ref, base_ref) = if is_pr {
        (
            string_at(event, &["pull_request", "head", "ref"]).unwrap_or_default().to_owned(),
            string_at(event, &["pull_request", "base", "ref"]).unwrap_or_default().to_owned(),
        )
    } else {
        (String::new(), String::new())
    };
    let server_url = "https://github.com";
    let mut g = Map::new();
    let mut put = |k: &str, v: String| {
        g.insert(k.to_owned(), Value::String(v));
    };
    put("event_name", args.event.clone());
    put("repository", format!("{owner}/{name}"));
    put("repository_owner", owner.clone());
    put("repositoryUrl", format!("{server_url}/{owner}/{name}.git"));
    put("actor", actor.clone());
    put("triggering_actor", actor);
    put("sha", sha);
    put("ref", git_ref);
    put("ref_name", ref_name);
    put("ref_type", ref_type.to_owned());
    put("head_ref", head_ref);
    put("base_ref", base_ref);
    put("run_id", "1".to_owned());
    put("run_number", "1".to_owned());
    put("run_attempt", "1".to_owned());
    put("retention_days", "0".to_owned());
    put("server_url", server_url.to_owned());
    put("api_url", "https://api.github.com".to_owned());
    put("graphql_url", "https://api.github.com/graphql".to_owned());
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_forms() {
        let text = "# comment\n\nA=1\nexport B = two words # note\nC=\"x\\ny\"\nD='lit\\n'\nE=\"multi\nline\"\nF=\nG=a=b\n";
        let env = parse_dotenv(text).expect("parses");
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("A", "1"),
                ("B", "two words"),
                ("C", "x\ny"),
                ("D", "lit\\n"),
                ("E", "multi\nline"),
                ("F", ""),
                ("G", "a=b"),
            ]
        );
    }

    #[test]
    fn dotenv_errors_name_the_line() {
        assert_eq!(parse_dotenv("A=1\nnope\n").map_err(|e| e.0), Err(2));
        assert_eq!(parse_dotenv("A=\"open\n").map_err(|e| e.0), Err(1));
        assert_eq!(parse_dotenv("=x").map_err(|e| e.0), Err(1));
    }

    #[test]
    fn remotes() {
        let cases = [
            ("https://github.com/nektos/act", Some(("nektos", "act"))),
            ("https://github.com/nektos/act.git", Some(("nektos", "act"))),
            ("git@github.com:nektos/act.git", Some(("nektos", "act"))),
            ("ssh://git@gitea.local:2222/team/app.git", Some(("team", "app"))),
            ("http://127.0.0.1:3000/team/app/", Some(("team", "app"))),
            ("https://github.com/", None),
        ];
        for (url, want) in cases {
            let got = repo_from_remote(url);
            let want = want.map(|(o, n)| (o.to_owned(), n.to_owned()));
            assert_eq!(got, want, "{url}");
        }
    }

    #[test]
    fn platforms() {
        assert_eq!(parse_platform("ubuntu-latest=host").expect("ok"), ("ubuntu-latest".into(), Platform::Host));
        assert_eq!(parse_platform("self-hosted=-self-hosted").expect("ok").1, Platform::Host);
        assert_eq!(
            parse_platform("x=docker://node:24").expect("ok").1,
            Platform::Docker { image: "node:24".into() }
        );
        assert_eq!(parse_platform("x=alpine:3").expect("ok").1, Platform::Docker { image: "alpine:3".into() });
        assert!(parse_platform("nolabel").is_err());
        assert!(parse_platform("=host").is_err());
        assert!(parse_platform("x=docker://").is_err());
    }

    #[test]
    fn key_value_pairs() {
        assert!(pairs(&["A".into()], "--secret").is_err());
        let p = pairs(&["A=1".into(), "A=2=3".into()], "--secret").expect("ok");
        assert_eq!(p.get("A").map(String::as_str), Some("2=3"));
    }
}
