//! Parsing (YAML -> Workflow) and compiling (Workflow + event -> Plan).

use crate::diag::Diagnostics;
use crate::plan::{Loader, Plan, Workflow};

/// Parses one workflow file. `file` is only used in diagnostics. Checks syntax, unknown
/// keys (with a did-you-mean), types, expression syntax, `needs` naming unknown jobs and
/// `needs` cycles. Returns every error found, not just the first.
pub fn parse(source: &str, file: &str) -> Result<Workflow, Diagnostics> {
    let _ = (source, file);
    todo!()
}

/// Options for [`compile`].
pub struct CompileOptions<'a> {
    /// The event name (`push`, `pull_request`, `workflow_dispatch`, `workflow_call`, ...).
    pub event: &'a str,
    /// Reads local reusable workflows (`uses: ./.github/workflows/x.yml` → `load(".github/workflows/x.yml")`).
    pub loader: &'a dyn Loader,
}

/// Whether the workflow's `on:` lists this event at all (filters such as branches/paths are
/// not applied here; see [`crate::plan::Triggers`]).
pub fn listens_to(workflow: &Workflow, event: &str) -> bool {
    workflow.on.events.contains_key(event)
}

/// Compiles a parsed workflow for one event: resolves local reusable workflows (recursively,
/// each compiled for `workflow_call`, cycles reported), orders jobs by `needs`.
pub fn compile(workflow: &Workflow, opts: &CompileOptions<'_>) -> Result<Plan, Diagnostics> {
    let _ = (workflow, opts);
    todo!()
}
