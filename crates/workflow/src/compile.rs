//! Parsing (YAML -> Workflow) and compiling (Workflow + event -> Plan).

use std::collections::HashSet;

use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::parse::suggestion;
use crate::plan::{CallSecrets, Job, JobKind, Loader, Plan, Span, Workflow, WorkflowCall};

/// How deep local reusable workflows may call each other (GitHub allows 10 levels).
const MAX_CALL_DEPTH: usize = 10;

/// Parses one workflow file. `file` is only used in diagnostics. Checks syntax, unknown
/// keys (with a did-you-mean), types, expression syntax, `needs` naming unknown jobs and
/// `needs` cycles. Returns every error found, not just the first (warnings alone do not
/// fail: they are in [`Workflow::warnings`]).
pub fn parse(source: &str, file: &str) -> Result<Workflow, Diagnostics> {
    crate::parse::parse(source, file)
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
/// each compiled for `workflow_call`, cycles reported), checks `with:` against the callee's
/// inputs, orders jobs by `needs` (ties in file order).
///
/// Does not check that the workflow listens to `event` (see [`listens_to`]); the plan's
/// `trigger` is that event's entry in `on:` when there is one.
pub fn compile(workflow: &Workflow, opts: &CompileOptions<'_>) -> Result<Plan, Diagnostics> {
    let top = workflow.file.trim_start_matches("./").to_owned();
    let mut c = Compiler {
        loader: opts.loader,
        diags: Vec::new(),
        stack: vec![top],
    };
    let plan = c.plan(workflow, opts.event);
    if c.diags.iter().any(|d| d.severity == Severity::Error) {
        c.diags
            .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        Err(Diagnostics(c.diags))
    } else {
        Ok(plan)
    }
}

struct Compiler<'a> {
    loader: &'a dyn Loader,
    diags: Vec<Diagnostic>,
    /// Files of the workflows being compiled, outermost first (for cycle detection).
    stack: Vec<String>,
}

impl Compiler<'_> {
    fn err(&mut self, wf: &Workflow, at: Span, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(
            &wf.file, &wf.source, at.line, at.col, message,
        ));
    }

    fn plan(&mut self, wf: &Workflow, event: &str) -> Plan {
        let mut jobs = self.order(wf);
        let mut warnings = wf.warnings.clone();
        for job in &mut jobs {
            if let JobKind::Call(call) = &mut job.kind {
                self.resolve(wf, call);
                if let Some(plan) = &call.plan {
                    for w in &plan.warnings {
                        if !warnings.contains(w) {
                            warnings.push(w.clone());
                        }
                    }
                }
            }
        }
        Plan {
            file: wf.file.clone(),
            name: wf.name.clone().unwrap_or_else(|| wf.file.clone()),
            event: event.to_owned(),
            run_name: wf.run_name.clone(),
            env: wf.env.clone(),
            defaults: wf.defaults.clone(),
            concurrency: wf.concurrency.clone(),
            permissions: wf.permissions.clone(),
            trigger: wf.on.events.get(event).cloned(),
            jobs,
            warnings,
        }
    }

    /// Jobs so that each comes after the jobs it needs; among the jobs that are ready, the
    /// one first in the file goes first. Unknown `needs` (reported by `parse`) are ignored.
    fn order(&mut self, wf: &Workflow) -> Vec<Job> {
        let mut done: HashSet<&str> = HashSet::new();
        let mut out = Vec::with_capacity(wf.jobs.len());
        while out.len() < wf.jobs.len() {
            let ready = wf.jobs.iter().find(|(id, job)| {
                !done.contains(id.as_str())
                    && job
                        .needs
                        .iter()
                        .all(|n| done.contains(n.as_str()) || !wf.jobs.contains_key(n))
            });
            let Some((id, job)) = ready else {
                let stuck: Vec<&str> = wf
                    .jobs
                    .keys()
                    .map(String::as_str)
                    .filter(|id| !done.contains(id))
                    .collect();
                let at = wf
                    .jobs
                    .get(stuck.first().copied().unwrap_or_default())
                    .map(|j| j.span)
                    .unwrap_or_default();
                self.err(
                    wf,
                    at,
                    format!("'needs' cycle among jobs: {}", stuck.join(", ")),
                );
                break;
            };
            done.insert(id.as_str());
            out.push(job.clone());
        }
        out
    }

    fn resolve(&mut self, wf: &Workflow, call: &mut WorkflowCall) {
        let Some(path) = call.uses.strip_prefix("./") else {
            // Remote reusable workflow: fetched and compiled by the runner.
            return;
        };
        let path = path.to_owned();
        let same = |f: &String| *f == path || f.ends_with(&format!("/{path}"));
        if let Some(start) = self.stack.iter().position(same) {
            let mut cycle: Vec<&str> = self.stack[start..].iter().map(String::as_str).collect();
            cycle.push(&path);
            let msg = format!("reusable workflow call cycle: {}", cycle.join(" -> "));
            self.err(wf, call.uses_span, msg);
            return;
        }
        if self.stack.len() > MAX_CALL_DEPTH {
            self.err(
                wf,
                call.uses_span,
                format!("reusable workflows are nested more than {MAX_CALL_DEPTH} levels deep"),
            );
            return;
        }
        let Some(source) = self.loader.load(&path) else {
            self.err(
                wf,
                call.uses_span,
                format!("cannot read reusable workflow '{path}'"),
            );
            return;
        };
        let callee = match crate::parse::parse(&source, &path) {
            Ok(callee) => callee,
            Err(diags) => {
                self.diags.extend(diags.0);
                return;
            }
        };
        let Some(trigger) = callee.on.events.get("workflow_call") else {
            self.err(
                wf,
                call.uses_span,
                format!("'{path}' cannot be called: its 'on' does not list 'workflow_call'"),
            );
            return;
        };
        let declared: Vec<&str> = trigger.inputs.keys().map(String::as_str).collect();
        for name in call.with.keys() {
            if !declared.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                let at = call.with_spans.get(name).copied().unwrap_or(call.uses_span);
                let hint = suggestion(name, &declared);
                self.err(wf, at, format!("'{path}' has no input '{name}'{hint}"));
            }
        }
        for (name, spec) in &trigger.inputs {
            if spec.required
                && spec.default.is_none()
                && !call.with.keys().any(|k| k.eq_ignore_ascii_case(name))
            {
                self.err(
                    wf,
                    call.uses_span,
                    format!("'{path}' requires input '{name}', which 'with' does not give"),
                );
            }
        }
        if let CallSecrets::Map(given) = &call.secrets {
            for (name, required) in &trigger.secrets {
                if *required && !given.keys().any(|k| k.eq_ignore_ascii_case(name)) {
                    self.err(
                        wf,
                        call.uses_span,
                        format!("'{path}' requires secret '{name}', which 'secrets' does not give"),
                    );
                }
            }
        } else if matches!(call.secrets, CallSecrets::None) {
            for (name, required) in &trigger.secrets {
                if *required {
                    self.err(
                        wf,
                        call.uses_span,
                        format!("'{path}' requires secret '{name}', which 'secrets' does not give"),
                    );
                }
            }
        }
        self.stack.push(path);
        let plan = self.plan(&callee, "workflow_call");
        self.stack.pop();
        call.plan = Some(Box::new(plan));
    }
}
