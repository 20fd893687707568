//! The compiled form of a workflow: what the runner and the server consume.
//!
//! `parse` turns YAML into a [`Workflow`]; `compile` checks it against one event,
//! resolves local reusable workflows through a [`Loader`], orders the jobs by `needs` and
//! returns a [`Plan`]. Everything that depends on run-time values (matrix entries computed
//! from `needs`, `if:` conditions, `${{ }}` in scripts) stays an [`Template`]/[`Condition`]
//! here and is evaluated by the runner with [`crate::expr`].

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::expr::{Condition, Template};

/// A position in a source file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Span {
    pub line: u32,
    pub col: u32,
}

/// A parsed workflow file (syntax and structure checked, nothing resolved).
#[derive(Debug, Clone, Serialize)]
pub struct Workflow {
    /// The path the file was read from, as given to `parse` (used in diagnostics).
    pub file: String,
    pub name: Option<String>,
    /// `run-name:`.
    pub run_name: Option<Template>,
    pub on: Triggers,
    pub env: Env,
    pub defaults: Defaults,
    pub concurrency: Option<Concurrency>,
    pub permissions: Option<Permissions>,
    /// Jobs in file order.
    pub jobs: IndexMap<String, Job>,
    /// The file's text (for diagnostics that `compile` reports against this file).
    #[serde(skip)]
    pub source: String,
    /// Warnings `parse` found (things GitHub accepts but that are probably mistakes).
    pub warnings: Vec<crate::diag::Diagnostic>,
}

/// `env:` maps: values are templates (non-string YAML scalars are converted to their
/// string form at parse time, like the Actions runner does). An `env:` that is a single
/// `${{ }}` expression evaluating to an object is kept as `Expr`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Env {
    pub vars: IndexMap<String, Template>,
    /// `env: ${{ fromJSON(...) }}` form, evaluated to a map at run time.
    pub expr: Option<Template>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Defaults {
    pub shell: Option<String>,
    pub working_directory: Option<Template>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Concurrency {
    pub group: Template,
    /// Where the group is written (for errors met when it is evaluated).
    pub span: Span,
    pub cancel_in_progress: BoolOrExpr,
}

#[derive(Debug, Clone, Serialize)]
pub enum Permissions {
    /// `read-all`, `write-all`, or `none` (written as `permissions: {}`).
    All(String),
    /// scope (`contents`, `id-token`, ...) -> `read` | `write` | `none`.
    Scopes(IndexMap<String, String>),
}

/// `on:` — every event the workflow listens to, with its filters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Triggers {
    pub events: IndexMap<String, EventTrigger>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EventTrigger {
    pub types: Vec<String>,
    pub branches: Vec<String>,
    pub branches_ignore: Vec<String>,
    pub tags: Vec<String>,
    pub tags_ignore: Vec<String>,
    pub paths: Vec<String>,
    pub paths_ignore: Vec<String>,
    /// `workflow_dispatch` / `workflow_call` inputs.
    pub inputs: IndexMap<String, InputSpec>,
    /// `workflow_call` outputs (`value:` templates evaluated against the `jobs` context).
    pub outputs: IndexMap<String, WorkflowOutput>,
    /// `workflow_call` secrets (name -> required).
    pub secrets: IndexMap<String, bool>,
    /// `schedule` cron lines.
    pub cron: Vec<String>,
    /// `workflow_run` workflow names.
    pub workflows: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputSpec {
    pub description: Option<String>,
    pub required: bool,
    /// `string`, `boolean`, `number`, `choice`, `environment`.
    pub kind: String,
    pub default: Option<Template>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkflowOutput {
    pub description: Option<String>,
    pub value: Template,
}

/// A boolean setting that may be an expression (`continue-on-error: ${{ matrix.experimental }}`).
#[derive(Debug, Clone, Serialize)]
pub enum BoolOrExpr {
    Bool(bool),
    Expr(Template),
}

impl Default for BoolOrExpr {
    fn default() -> Self {
        BoolOrExpr::Bool(false)
    }
}

/// A number setting that may be an expression (`timeout-minutes`, `max-parallel`).
#[derive(Debug, Clone, Serialize)]
pub enum NumberOrExpr {
    Number(f64),
    Expr(Template),
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// The key under `jobs:`.
    pub id: String,
    pub span: Span,
    pub name: Option<Template>,
    pub needs: Vec<String>,
    pub condition: Option<Condition>,
    /// `runs-on:` labels (a string, a list, or `{group, labels}`), each a template.
    pub runs_on: Vec<Template>,
    pub environment: Option<EnvironmentRef>,
    pub container: Option<Container>,
    pub services: IndexMap<String, Container>,
    pub strategy: Option<Strategy>,
    pub outputs: IndexMap<String, Template>,
    pub env: Env,
    pub defaults: Defaults,
    pub timeout_minutes: Option<NumberOrExpr>,
    pub continue_on_error: BoolOrExpr,
    pub concurrency: Option<Concurrency>,
    pub permissions: Option<Permissions>,
    pub kind: JobKind,
}

#[derive(Debug, Clone, Serialize)]
#[allow(clippy::large_enum_variant)] // a job is either; boxing would only add indirection
pub enum JobKind {
    Steps(Vec<Step>),
    /// `uses: ./.github/workflows/x.yml` (or `owner/repo/.github/workflows/x.yml@ref`).
    Call(WorkflowCall),
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkflowCall {
    /// The `uses:` string as written.
    pub uses: String,
    pub with: IndexMap<String, Template>,
    pub secrets: CallSecrets,
    /// Filled in by `compile` (the called workflow compiled for `workflow_call`) for local
    /// (`./`) workflows; `None` for remote ones, which the runner must fetch and compile.
    pub plan: Option<Box<Plan>>,
    /// Where the `uses:` value is (for diagnostics).
    pub uses_span: Span,
    /// Where each `with:` key is (for diagnostics).
    #[serde(skip)]
    pub with_spans: IndexMap<String, Span>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub enum CallSecrets {
    #[default]
    None,
    Inherit,
    Map(IndexMap<String, Template>),
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentRef {
    pub name: Template,
    pub url: Option<Template>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Container {
    pub image: Template,
    pub credentials: Option<(Template, Template)>,
    pub env: Env,
    pub ports: Vec<Template>,
    pub volumes: Vec<Template>,
    pub options: Option<Template>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Strategy {
    /// The raw `matrix:` value (YAML converted to JSON; strings may hold `${{ }}`),
    /// expanded at run time by [`crate::matrix::expand`].
    pub matrix: Option<Value>,
    pub fail_fast: BoolOrExpr,
    pub max_parallel: Option<NumberOrExpr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub id: Option<String>,
    pub span: Span,
    pub name: Option<Template>,
    pub condition: Option<Condition>,
    pub env: Env,
    pub continue_on_error: BoolOrExpr,
    pub timeout_minutes: Option<NumberOrExpr>,
    pub working_directory: Option<Template>,
    pub kind: StepKind,
}

#[derive(Debug, Clone, Serialize)]
pub enum StepKind {
    Run {
        script: Template,
        shell: Option<String>,
    },
    Uses {
        action: ActionRef,
        with: IndexMap<String, Template>,
    },
}

/// What `uses:` on a step points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ActionRef {
    /// `./path` relative to the workspace (or the repository root).
    Local { path: String },
    /// `owner/repo[/path]@ref`.
    Remote {
        owner: String,
        repo: String,
        path: Option<String>,
        git_ref: String,
    },
    /// `docker://image`.
    Docker { image: String },
}

impl ActionRef {
    /// `owner/repo` for remote actions, lowercased (built-in lookup key), else `None`.
    pub fn remote_name(&self) -> Option<String> {
        match self {
            ActionRef::Remote { owner, repo, .. } => {
                Some(format!("{}/{}", owner.to_lowercase(), repo.to_lowercase()))
            }
            _ => None,
        }
    }
}

/// A workflow compiled for one event: jobs ordered so that every job comes after its needs.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub file: String,
    pub name: String,
    pub event: String,
    pub run_name: Option<Template>,
    pub env: Env,
    pub defaults: Defaults,
    pub concurrency: Option<Concurrency>,
    pub permissions: Option<Permissions>,
    /// The `workflow_call`/`workflow_dispatch` trigger, if this plan was compiled for one
    /// (its inputs/outputs/secrets).
    pub trigger: Option<EventTrigger>,
    /// Topologically ordered (needs first), ties in file order.
    pub jobs: Vec<Job>,
    /// Warnings of this workflow and of the reusable workflows it calls (compiling succeeded).
    pub warnings: Vec<crate::diag::Diagnostic>,
}

/// Supplies the contents of other files (local reusable workflows) to `compile`, which does
/// no I/O itself. `path` is as written after `./` in `uses:`, relative to the repository root.
pub trait Loader {
    fn load(&self, path: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Loader for F {
    fn load(&self, path: &str) -> Option<String> {
        self(path)
    }
}
