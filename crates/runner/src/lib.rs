//! Runs compiled workflow [`workflow::Plan`]s: jobs in `needs` order, matrix legs in
//! parallel, steps as shell scripts or actions, on an [`executor::Executor`].
//!
//! CONTRACT used by the binary and the server's agent: [`run`], [`RunOptions`], [`Event`],
//! [`RunSummary`]. Events are the one stream both the local CLI and the server consume.
//! This crate installs no tracing subscriber and reads no config file; cancellation comes in
//! as a `CancellationToken`.
//!
//! Inside: `schedule` orders jobs by `needs`, expands matrices at job-ready time, maps
//! `runs-on` to a [`Platform`] and runs reusable workflows; `job` runs one job leg's steps
//! (script files run by their shell, environment files, workflow commands, masking, post
//! steps, outputs); [`actions`] resolves and runs composite/node/docker actions (remote ones
//! fetched with git into `cache_dir/actions`); [`builtin`] holds the Rust built-in actions;
//! [`mask`] and [`commands`] are the log hot path (line splitting, Aho-Corasick masking,
//! `::command::` parsing); [`executor`] is where processes run (host, docker).
//!
//! Invariants: every line a step prints goes through the [`mask::Masker`] before it becomes
//! an [`Event`]; every process a job starts is in a process group the job kills at its end;
//! an artifact or cache entry becomes visible only once complete (a rename; through the
//! server, a commit after the upload). Where `actions/cache` keeps entries is a
//! [`CacheBackend`] (`RunOptions::cache`): a directory by default, the server for an agent.

pub mod actions;
pub mod builtin;
pub mod commands;
pub mod context;
pub mod event;
pub mod executor;
pub mod hashfiles;
mod job;
pub mod mask;
mod schedule;

pub use builtin::{CacheBackend, CacheError, CacheHit, CacheSaved, LocalCache, cache_version};
pub use event::{Event, JobResult, LogLines, LogStream, StepOutcome};

use std::path::PathBuf;

use indexmap::IndexMap;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Where a `runs-on` label runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platform {
    /// Processes on this machine.
    Host,
    /// A container from this image per job (Docker Engine API).
    Docker { image: String },
}

/// Everything a run needs besides the plans.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The repository (or directory) the run is for: local actions and `actions/checkout`
    /// read from here.
    pub repo_root: PathBuf,
    /// Directory under which per-job workspaces and temp dirs are created (removed after the run).
    pub work_root: PathBuf,
    pub event_name: String,
    /// `github.event`.
    pub event: Value,
    /// Base `github` context fields (repository, repository_owner, actor, sha, ref, ref_name,
    /// run_id, run_number, server_url, api_url, ...). The runner adds job/workspace/action fields.
    pub github: serde_json::Map<String, Value>,
    pub secrets: IndexMap<String, String>,
    pub vars: IndexMap<String, String>,
    /// Extra environment for every job (`--env`, `--env-file`), lowest precedence after the host's.
    pub env: IndexMap<String, String>,
    /// `workflow_dispatch` inputs (`--input`).
    pub inputs: IndexMap<String, String>,
    /// act's `--matrix` filter.
    pub matrix_filter: IndexMap<String, Vec<String>>,
    /// `-P label=...` mappings. Empty: every label runs on `default_platform`.
    /// Non-empty: a job whose runs-on matches no mapping is skipped with a warning.
    pub platforms: Vec<(String, Platform)>,
    pub default_platform: Platform,
    /// Keep artifacts here after the run (else a temp dir under `work_root`).
    pub artifact_dir: Option<PathBuf>,
    /// Cache directory for `actions/cache` and fetched remote actions.
    pub cache_dir: PathBuf,
    /// Where `actions/cache` keeps entries; `None`: a [`LocalCache`] in `cache_dir/cache`
    /// (the server's agent passes one that talks to the server).
    pub cache: Option<std::sync::Arc<dyn CacheBackend>>,
    /// Base URL remote actions are cloned from (`https://github.com`).
    pub actions_url: String,
    /// Run host steps in a bubblewrap sandbox.
    pub sandbox: bool,
    /// Docker Engine endpoint (`unix:///var/run/docker.sock`); `None` = `DOCKER_HOST` or default.
    pub docker_host: Option<String>,
    /// Results of jobs outside the plans, by job id (the agent runs one job of a run whose
    /// other jobs ran elsewhere). A top-level job whose `needs` names an id that is not in
    /// its plan does not wait for it and sees it as `needs.<id>` (result and outputs); it
    /// counts for the job's default `if:` like any need.
    pub needs: IndexMap<String, JobOutcome>,
}

/// The result of a job (all its matrix legs), as `needs.<id>` sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    pub result: JobResult,
    /// `needs.<id>.outputs` (string values, as Actions job outputs are).
    pub outputs: serde_json::Map<String, Value>,
}

/// The end of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub jobs: Vec<JobSummary>,
    /// true iff every job that ran succeeded (skipped jobs don't fail a run).
    pub success: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct JobSummary {
    /// Unique job id within the run (`build`, `test (ubuntu, 18)`, `call / inner`).
    pub id: String,
    pub name: String,
    pub result: JobResult,
    pub duration_ms: u64,
}

/// A problem that stops the run before or outside any job (bad options, a workspace that
/// can't be created). Job failures are not errors: they are in [`RunSummary`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("creating the run directory {path}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Runs the plans (all for the same event) to completion or cancellation, sending every
/// [`Event`] to `events`. On cancellation running steps get SIGTERM then SIGKILL and
/// `always()` steps still run.
///
/// # Cancel safety
/// Don't drop this future to cancel a run: cancel the token and await it.
pub async fn run(
    plans: Vec<workflow::Plan>,
    options: RunOptions,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
) -> Result<RunSummary, RunError> {
    schedule::run(plans, options, RunTuning::default(), events, cancel).await
}

/// Knobs of the runner that have sensible defaults (not part of [`RunOptions`]).
#[derive(Debug, Clone)]
pub struct RunTuning {
    /// Time between SIGTERM and SIGKILL when a step is cancelled or times out.
    pub kill_grace: std::time::Duration,
    /// How long to keep reading a step's output after its main process exited (a
    /// background process may hold the pipe open).
    pub drain_after_exit: std::time::Duration,
}

impl Default for RunTuning {
    fn default() -> Self {
        RunTuning {
            kill_grace: std::time::Duration::from_secs(5),
            drain_after_exit: std::time::Duration::from_millis(500),
        }
    }
}

/// [`run`] with explicit [`RunTuning`].
///
/// # Cancel safety
/// As [`run`].
pub async fn run_tuned(
    plans: Vec<workflow::Plan>,
    options: RunOptions,
    tuning: RunTuning,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
) -> Result<RunSummary, RunError> {
    schedule::run(plans, options, tuning, events, cancel).await
}

/// `hashFiles` for expression contexts, delegated to [`hashfiles`].
pub(crate) fn hashfiles_bridge(
    root: &std::path::Path,
    patterns: &[String],
) -> Result<String, String> {
    hashfiles::hash_files(root, patterns).map_err(|e| e.to_string())
}
