//! YAML -> [`Workflow`]: structure, types, unknown keys (with a did-you-mean), expression
//! syntax, step/`uses` validity, job ids, and the `needs` graph (unknown jobs, cycles).
//!
//! Every problem becomes a [`Diagnostic`] at the offending key or value; parsing goes on
//! after an error so that one run reports them all.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;

use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::expr::{Condition, Expr, ExprError, Template};
use crate::plan::{
    ActionRef, BoolOrExpr, CallSecrets, Concurrency, Container, Defaults, Env, EnvironmentRef,
    EventTrigger, InputSpec, Job, JobKind, NumberOrExpr, Permissions, Span, Step, StepKind,
    Strategy, Triggers, Workflow, WorkflowCall, WorkflowOutput,
};
use crate::yaml::{self, Kind, Node, Pos, Scalar};

const WORKFLOW_KEYS: &[&str] = &[
    "name",
    "run-name",
    "on",
    "env",
    "defaults",
    "concurrency",
    "permissions",
    "jobs",
];
const JOB_KEYS: &[&str] = &[
    "name",
    "needs",
    "if",
    "runs-on",
    "environment",
    "container",
    "services",
    "strategy",
    "outputs",
    "env",
    "defaults",
    "timeout-minutes",
    "continue-on-error",
    "concurrency",
    "permissions",
    "steps",
    "uses",
    "with",
    "secrets",
];
/// Keys a job that calls a reusable workflow (`uses:`) may not have.
const STEPS_JOB_ONLY: &[&str] = &[
    "runs-on",
    "environment",
    "container",
    "services",
    "outputs",
    "env",
    "defaults",
    "timeout-minutes",
    "continue-on-error",
    "steps",
];
const STEP_KEYS: &[&str] = &[
    "id",
    "name",
    "if",
    "run",
    "shell",
    "working-directory",
    "uses",
    "with",
    "env",
    "continue-on-error",
    "timeout-minutes",
];
const CONTAINER_KEYS: &[&str] = &["image", "credentials", "env", "ports", "volumes", "options"];
const KNOWN_EVENTS: &[&str] = &[
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "create",
    "delete",
    "deployment",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "fork",
    "gollum",
    "issue_comment",
    "issues",
    "label",
    "merge_group",
    "milestone",
    "page_build",
    "project",
    "project_card",
    "project_column",
    "public",
    "pull_request",
    "pull_request_comment",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_target",
    "push",
    "registry_package",
    "release",
    "repository_dispatch",
    "schedule",
    "status",
    "watch",
    "workflow_call",
    "workflow_dispatch",
    "workflow_run",
];
const PERMISSION_SCOPES: &[&str] = &[
    "actions",
    "attestations",
    "checks",
    "contents",
    "deployments",
    "discussions",
    "id-token",
    "issues",
    "models",
    "packages",
    "pages",
    "pull-requests",
    "repository-projects",
    "security-events",
    "statuses",
];

/// Which contexts an expression may read where (GitHub's "context availability" table).
/// Reading another one is a warning: GitHub rejects the workflow, the runner would see null.
mod scope {
    pub type Scope = &'static [&'static str];
    pub const RUN_NAME: Scope = &["github", "inputs", "vars"];
    pub const WORKFLOW_ENV: Scope = &["github", "secrets", "inputs", "vars"];
    pub const INPUT_DEFAULT: Scope = &["github", "inputs", "vars"];
    pub const WORKFLOW_OUTPUT: Scope = &["github", "jobs", "vars", "inputs"];
    pub const JOB_IF: Scope = &["github", "needs", "vars", "inputs"];
    pub const JOB_STRATEGY: Scope = &["github", "needs", "vars", "inputs"];
    pub const JOB: Scope = &["github", "needs", "strategy", "matrix", "vars", "inputs"];
    pub const JOB_ENV: Scope = &[
        "github", "needs", "strategy", "matrix", "vars", "secrets", "inputs",
    ];
    pub const JOB_DEFAULTS: Scope = &[
        "github", "needs", "strategy", "matrix", "env", "vars", "inputs",
    ];
    pub const CALL_SECRETS: Scope = &[
        "github", "needs", "strategy", "matrix", "secrets", "inputs", "vars",
    ];
    pub const CREDENTIALS: Scope = &[
        "github", "needs", "strategy", "matrix", "env", "vars", "secrets", "inputs",
    ];
    pub const CONTAINER_ENV: Scope = &[
        "github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets",
        "inputs",
    ];
    pub const STEP_IF: Scope = &[
        "github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "steps", "inputs",
    ];
    pub const ENVIRONMENT_URL: Scope = STEP_IF;
    pub const STEP: Scope = &[
        "github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets",
        "steps", "inputs",
    ];
    pub const JOB_OUTPUTS: Scope = STEP;
}
use scope::Scope;

/// Byte offset of the first use of context `name` in `text` (a word, followed by `.`, `[`,
/// a space or the end), for pointing at it.
fn find_context(text: &str, name: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name).map(|i| i + from) {
        let before_ok = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || matches!(bytes[i - 1], b'_' | b'-' | b'.'));
        let after = bytes.get(i + name.len()).copied();
        let after_ok = matches!(
            after,
            None | Some(b'.' | b'[' | b' ' | b'}' | b')' | b',' | b'\n')
        );
        if before_ok && after_ok {
            return Some(i);
        }
        from = i + name.len();
    }
    None
}

/// The closest of `candidates` to `word`, if close enough to be a plausible typo.
pub(crate) fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let lower = word.to_lowercase();
    let mut best: Option<(&str, usize)> = None;
    for c in candidates {
        let d = strsim::damerau_levenshtein(&lower, &c.to_lowercase());
        if best.is_none_or(|(_, bd)| d < bd) {
            best = Some((c, d));
        }
    }
    let (c, d) = best?;
    let limit = (word.chars().count().max(c.len()) / 3).max(1);
    (d <= limit).then_some(c)
}

/// `" (did you mean 'x'?)"` or nothing.
pub(crate) fn suggestion(word: &str, candidates: &[&str]) -> String {
    did_you_mean(word, candidates)
        .map(|c| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}

/// `^[A-Za-z_][A-Za-z0-9_-]*$`: the form of job and step ids.
pub(crate) fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parses a step's `uses:` string.
pub(crate) fn parse_action_ref(uses: &str) -> Result<ActionRef, String> {
    const FORMS: &str = "expected 'owner/repo[/path]@ref', './path' or 'docker://image'";
    if uses.trim().is_empty() {
        return Err(format!("'uses' is empty: {FORMS}"));
    }
    if uses.contains("${{") {
        return Err("expressions are not allowed in 'uses'".to_owned());
    }
    if uses.starts_with("./") || uses == "." {
        return Ok(ActionRef::Local {
            path: uses.to_owned(),
        });
    }
    if let Some(image) = uses.strip_prefix("docker://") {
        if image.is_empty() {
            return Err(format!("'{uses}' names no image: {FORMS}"));
        }
        return Ok(ActionRef::Docker {
            image: image.to_owned(),
        });
    }
    let Some((name, git_ref)) = uses.split_once('@') else {
        return Err(format!("'{uses}' has no '@ref': {FORMS}"));
    };
    let mut parts = name.split('/');
    let owner = parts.next().unwrap_or_default();
    let repo = parts.next().unwrap_or_default();
    let path: Vec<&str> = parts.collect();
    if owner.is_empty() || repo.is_empty() || path.iter().any(|p| p.is_empty()) {
        return Err(format!("'{uses}' is not a valid action reference: {FORMS}"));
    }
    if git_ref.is_empty() {
        return Err(format!("'{uses}' has an empty ref after '@': {FORMS}"));
    }
    Ok(ActionRef::Remote {
        owner: owner.to_owned(),
        repo: repo.to_owned(),
        path: if path.is_empty() {
            None
        } else {
            Some(path.join("/"))
        },
        git_ref: git_ref.to_owned(),
    })
}

/// Whether a mapping key is act's `${{ insert }}` directive.
pub(crate) fn is_insert_key(key: &str) -> bool {
    let t = key.trim();
    t.strip_prefix("${{")
        .and_then(|t| t.strip_suffix("}}"))
        .is_some_and(|inner| inner.trim() == "insert")
}

fn span(p: Pos) -> Span {
    Span {
        line: p.line,
        col: p.col,
    }
}

/// Parses one workflow file (see [`crate::compile::parse`]).
pub(crate) fn parse(source: &str, file: &str) -> Result<Workflow, Diagnostics> {
    let mut p = Parser::new(source, file);
    let loaded = match yaml::load(source) {
        Ok(l) => l,
        Err(e) => {
            p.err(e.pos, format!("invalid YAML: {}", e.message));
            return Err(Diagnostics(p.diags));
        }
    };
    for problem in loaded.problems {
        p.err(problem.pos, problem.message);
    }
    let Some(root) = loaded.root else {
        p.err(
            Pos {
                line: 1,
                col: 1,
                index: 0,
            },
            "the workflow file is empty",
        );
        return Err(Diagnostics(p.diags));
    };
    let wf = p.workflow(&root);
    p.finish(wf)
}

pub(crate) struct Parser<'a> {
    file: &'a str,
    source: &'a str,
    diags: Vec<Diagnostic>,
    /// `needs:` entries per job, with their positions, for the graph checks.
    needs: Vec<(String, Vec<(String, Pos)>)>,
    /// The contexts expressions may read where the parser is (None: not checked).
    scope: Option<Scope>,
}

impl<'a> Parser<'a> {
    fn new(source: &'a str, file: &'a str) -> Self {
        Parser {
            file,
            source,
            diags: Vec::new(),
            needs: Vec::new(),
            scope: None,
        }
    }

    fn finish(mut self, mut wf: Workflow) -> Result<Workflow, Diagnostics> {
        self.diags.sort_by_key(|d| (d.line, d.col));
        let (errors, warnings): (Vec<_>, Vec<_>) = self
            .diags
            .into_iter()
            .partition(|d| d.severity == Severity::Error);
        if errors.is_empty() {
            wf.warnings = warnings;
            Ok(wf)
        } else {
            let mut all = errors;
            all.extend(warnings);
            all.sort_by_key(|d| (d.line, d.col));
            Err(Diagnostics(all))
        }
    }

    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(
            self.file,
            self.source,
            pos.line,
            pos.col,
            message,
        ));
    }

    fn warn(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic::warning(
            self.file,
            self.source,
            pos.line,
            pos.col,
            message,
        ));
    }

    // ----- generic helpers -------------------------------------------------------------

    /// A mapping's entries; `null` is an empty mapping; anything else is a type error.
    fn entries<'n>(&mut self, n: &'n Node, what: &str) -> &'n [(Node, Node)] {
        match &n.kind {
            Kind::Map(entries) => entries,
            _ if n.is_null() => &[],
            _ => {
                self.err(
                    n.start,
                    format!("expected a mapping for {what}, found {}", n.describe()),
                );
                &[]
            }
        }
    }

    /// A sequence's items; `null` is empty; anything else is a type error.
    fn items<'n>(&mut self, n: &'n Node, what: &str) -> &'n [Node] {
        match &n.kind {
            Kind::Seq(items) => items,
            _ if n.is_null() => &[],
            _ => {
                self.err(
                    n.start,
                    format!("expected a sequence for {what}, found {}", n.describe()),
                );
                &[]
            }
        }
    }

    /// A mapping key as a string.
    fn key<'n>(&mut self, k: &'n Node) -> Option<&'n str> {
        match &k.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => {
                self.err(
                    k.start,
                    format!("a key must be a string, found {}", k.describe()),
                );
                None
            }
        }
    }

    fn unknown(&mut self, k: &Node, key: &str, allowed: &[&str], what: &str) {
        let hint = suggestion(key, allowed);
        self.err(k.start, format!("unknown key '{key}' in {what}{hint}"));
    }

    /// A scalar converted to a string (null -> "", booleans lowercased, numbers as written).
    fn string(&mut self, n: &Node, what: &str) -> Option<String> {
        match n.as_string() {
            Some(s) => Some(s),
            None => {
                self.err(
                    n.start,
                    format!("expected a string for {what}, found {}", n.describe()),
                );
                None
            }
        }
    }

    /// A string that must not be empty or contain expressions (names, shells, ...).
    fn plain_string(&mut self, n: &Node, what: &str) -> Option<String> {
        let s = self.string(n, what)?;
        if s.contains("${{") {
            self.err(n.start, format!("expressions are not allowed in {what}"));
        }
        Some(s)
    }

    /// Where byte `offset` of `text` (the value of scalar `n`) is in the file: exact when the
    /// scalar is written on one line exactly as its value (plain, or quoted without
    /// escapes), else the scalar's start.
    fn offset_pos(&self, n: &Node, text: &str, offset: usize) -> Pos {
        if n.start.line != n.end.line {
            return self.block_offset_pos(n, text, offset).unwrap_or(n.start);
        }
        let raw: String = self
            .source
            .chars()
            .skip(n.start.index)
            .take(n.end.index.saturating_sub(n.start.index))
            .collect();
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = u32::try_from(text[..offset].chars().count()).unwrap_or(0);
        let shift = if raw == text {
            0
        } else if raw.chars().count() == text.chars().count() + 2
            && raw
                .chars()
                .skip(1)
                .take(text.chars().count())
                .eq(text.chars())
        {
            1
        } else {
            return n.start;
        };
        Pos {
            line: n.start.line,
            col: n.start.col + shift + before,
            index: n.start.index,
        }
    }

    /// For an empty sequence item, the position of its `-` (the empty scalar starts after it).
    fn dash_before(&self, p: Pos) -> Pos {
        let before = p
            .index
            .checked_sub(1)
            .and_then(|i| self.source.chars().nth(i));
        if before == Some('-') && p.col > 1 {
            Pos {
                line: p.line,
                col: p.col - 1,
                index: p.index - 1,
            }
        } else {
            p
        }
    }

    /// For a literal block scalar (`|`), whose lines are the source lines minus a fixed
    /// indentation: the position of byte `offset`, checked against the source.
    fn block_offset_pos(&self, n: &Node, text: &str, offset: usize) -> Option<Pos> {
        if n.style() != Some(saphyr_parser::ScalarStyle::Literal) {
            return None;
        }
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_in_text = before.matches('\n').count();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let rest_of_line = text[line_start..].split('\n').next().unwrap_or_default();
        let col_in_line = u32::try_from(text[line_start..offset].chars().count()).ok()?;
        let line = n
            .start
            .line
            .checked_add(u32::try_from(line_in_text).ok()?)?;
        let source_line = self
            .source
            .lines()
            .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
        let indent = usize::try_from(n.start.col).ok()?.checked_sub(1)?;
        let in_source: String = source_line.chars().skip(indent).collect();
        if in_source.trim_end_matches('\r') != rest_of_line {
            return None;
        }
        Some(Pos {
            line,
            col: n.start.col + col_in_line,
            index: n.start.index,
        })
    }

    fn expr_error(&mut self, n: &Node, text: &str, e: &ExprError, what: &str) {
        let pos = self.offset_pos(n, text, e.offset);
        self.err(pos, format!("invalid expression in {what}: {}", e.message));
    }

    /// Runs `f` with expressions checked against `scope`.
    fn scoped<T>(&mut self, scope: Option<Scope>, f: impl FnOnce(&mut Self) -> T) -> T {
        let prev = std::mem::replace(&mut self.scope, scope);
        let out = f(self);
        self.scope = prev;
        out
    }

    fn check_contexts(&mut self, n: &Node, text: &str, exprs: Vec<&Expr>, what: &str) {
        let Some(allowed) = self.scope else { return };
        let mut reported: Vec<String> = Vec::new();
        for e in exprs {
            for name in e.contexts_used() {
                if allowed.contains(&name.as_str()) || reported.contains(&name) {
                    continue;
                }
                let pos = match find_context(text, &name) {
                    Some(offset) => self.offset_pos(n, text, offset),
                    None => n.start,
                };
                self.warn(
                    pos,
                    format!(
                        "context '{name}' is not available in {what} (available: {})",
                        allowed.join(", ")
                    ),
                );
                reported.push(name);
            }
        }
    }

    fn template_text(&mut self, n: &Node, text: &str, what: &str) -> Option<Template> {
        match Template::parse(text) {
            Ok(t) => {
                self.check_contexts(n, text, t.exprs(), what);
                Some(t)
            }
            Err(e) => {
                self.expr_error(n, text, &e, what);
                None
            }
        }
    }

    fn template(&mut self, n: &Node, what: &str) -> Option<Template> {
        let text = self.string(n, what)?;
        self.template_text(n, &text, what)
    }

    fn condition(&mut self, n: &Node, what: &str) -> Option<Condition> {
        if n.is_null() {
            return None;
        }
        let text = self.string(n, what)?;
        match Condition::parse(&text) {
            Ok(c) => {
                self.check_contexts(n, &text, c.exprs(), what);
                Some(c)
            }
            Err(e) => {
                self.expr_error(n, &text, &e, what);
                None
            }
        }
    }

    fn bool(&mut self, n: &Node, what: &str) -> Option<bool> {
        match n.scalar() {
            Some(Scalar::Bool(b)) => Some(b),
            _ => {
                self.err(
                    n.start,
                    format!("expected a boolean for {what}, found {}", n.describe()),
                );
                None
            }
        }
    }

    fn bool_or_expr(&mut self, n: &Node, what: &str) -> Option<BoolOrExpr> {
        match n.scalar() {
            Some(Scalar::Bool(b)) => Some(BoolOrExpr::Bool(b)),
            Some(Scalar::Str) => {
                let text = n.text().unwrap_or_default();
                match text {
                    "true" => Some(BoolOrExpr::Bool(true)),
                    "false" => Some(BoolOrExpr::Bool(false)),
                    _ if text.contains("${{") => {
                        self.template_text(n, text, what).map(BoolOrExpr::Expr)
                    }
                    _ => {
                        self.err(
                            n.start,
                            format!(
                                "expected a boolean or an expression for {what}, found '{text}'"
                            ),
                        );
                        None
                    }
                }
            }
            _ => {
                self.err(
                    n.start,
                    format!(
                        "expected a boolean or an expression for {what}, found {}",
                        n.describe()
                    ),
                );
                None
            }
        }
    }

    fn number_or_expr(&mut self, n: &Node, what: &str) -> Option<NumberOrExpr> {
        match n.scalar() {
            Some(Scalar::Int(i)) => Some(NumberOrExpr::Number(i as f64)),
            Some(Scalar::Float(f)) if f.is_finite() => Some(NumberOrExpr::Number(f)),
            Some(Scalar::Str) => {
                let text = n.text().unwrap_or_default();
                if let Ok(f) = text.trim().parse::<f64>()
                    && f.is_finite()
                {
                    return Some(NumberOrExpr::Number(f));
                }
                if text.contains("${{") {
                    return self.template_text(n, text, what).map(NumberOrExpr::Expr);
                }
                self.err(
                    n.start,
                    format!("expected a number or an expression for {what}, found '{text}'"),
                );
                None
            }
            _ => {
                self.err(
                    n.start,
                    format!(
                        "expected a number or an expression for {what}, found {}",
                        n.describe()
                    ),
                );
                None
            }
        }
    }

    /// A string or a sequence of strings, with positions.
    fn strings_pos(&mut self, n: &Node, what: &str) -> Vec<(String, Pos)> {
        match &n.kind {
            Kind::Seq(items) => items
                .iter()
                .filter_map(|i| self.string(i, what).map(|s| (s, i.start)))
                .collect(),
            _ if n.is_null() => Vec::new(),
            _ => self
                .string(n, what)
                .map(|s| vec![(s, n.start)])
                .unwrap_or_default(),
        }
    }

    fn strings(&mut self, n: &Node, what: &str) -> Vec<String> {
        self.strings_pos(n, what)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// A sequence of scalars (or one scalar), each a template.
    fn templates(&mut self, n: &Node, what: &str) -> Vec<Template> {
        match &n.kind {
            Kind::Seq(items) => items
                .iter()
                .filter_map(|i| self.template(i, what))
                .collect(),
            _ if n.is_null() => Vec::new(),
            _ => self.template(n, what).into_iter().collect(),
        }
    }

    /// A mapping of string -> template (`with:`, `outputs:`), with key positions.
    fn template_map_pos(
        &mut self,
        n: &Node,
        what: &str,
    ) -> (IndexMap<String, Template>, IndexMap<String, Span>) {
        let mut out = IndexMap::new();
        let mut spans = IndexMap::new();
        for (k, v) in self.entries(n, what) {
            let Some(key) = self.key(k) else { continue };
            let item = format!("'{key}' in {what}");
            if let Some(t) = self.template(v, &item) {
                out.insert(key.to_owned(), t);
                spans.insert(key.to_owned(), span(k.start));
            }
        }
        (out, spans)
    }

    fn template_map(&mut self, n: &Node, what: &str) -> IndexMap<String, Template> {
        self.template_map_pos(n, what).0
    }

    /// A `shell:` value: a built-in name or a command template with `{0}`.
    fn shell(&mut self, n: &Node) -> Option<String> {
        const BUILT_IN: &[&str] = &["bash", "sh", "pwsh", "powershell", "cmd", "python", "node"];
        let shell = self.plain_string(n, "'shell'")?;
        if shell.trim().is_empty() {
            self.err(n.start, "'shell' is empty");
        } else if !BUILT_IN.contains(&shell.as_str()) && !shell.contains("{0}") {
            let hint = suggestion(&shell, BUILT_IN);
            self.warn(
                n.start,
                format!(
                    "shell '{shell}' is neither a built-in shell ({}) nor a command with '{{0}}' for the script file{hint}",
                    BUILT_IN.join(", ")
                ),
            );
        }
        Some(shell)
    }

    fn env(&mut self, n: &Node, what: &str) -> Env {
        if let Some(Scalar::Str) = n.scalar() {
            let text = n.text().unwrap_or_default();
            if text.contains("${{") {
                return Env {
                    vars: IndexMap::new(),
                    expr: self.template_text(n, text, what),
                };
            }
            self.err(
                n.start,
                format!("expected a mapping or an expression for {what}, found a string"),
            );
            return Env::default();
        }
        Env {
            vars: self.template_map(n, what),
            expr: None,
        }
    }

    // ----- workflow --------------------------------------------------------------------

    fn workflow(&mut self, root: &Node) -> Workflow {
        let mut wf = Workflow {
            file: self.file.to_owned(),
            name: None,
            run_name: None,
            on: Triggers::default(),
            env: Env::default(),
            defaults: Defaults::default(),
            concurrency: None,
            permissions: None,
            jobs: IndexMap::new(),
            source: self.source.to_owned(),
            warnings: Vec::new(),
        };
        let Kind::Map(entries) = &root.kind else {
            self.err(
                root.start,
                format!("a workflow must be a mapping, found {}", root.describe()),
            );
            return wf;
        };
        let (mut has_on, mut has_jobs) = (false, false);
        for (k, v) in entries {
            let Some(key) = self.key(k) else { continue };
            self.scope = match key {
                "run-name" | "concurrency" => Some(scope::RUN_NAME),
                "env" => Some(scope::WORKFLOW_ENV),
                "on" => Some(scope::INPUT_DEFAULT),
                _ => None,
            };
            match key {
                "name" => wf.name = self.string(v, "'name'"),
                "run-name" => wf.run_name = self.template(v, "'run-name'"),
                "on" => {
                    has_on = true;
                    wf.on = self.triggers(k, v);
                }
                "env" => wf.env = self.env(v, "'env'"),
                "defaults" => wf.defaults = self.defaults(v, "'defaults'"),
                "concurrency" => wf.concurrency = self.concurrency(v, "'concurrency'"),
                "permissions" => wf.permissions = self.permissions(v, "'permissions'"),
                "jobs" => {
                    has_jobs = true;
                    wf.jobs = self.jobs(k, v);
                }
                _ => self.unknown(k, key, WORKFLOW_KEYS, "the workflow"),
            }
        }
        self.scope = None;
        if !has_on {
            self.err(
                root.start,
                "the workflow has no 'on' (the events that trigger it)",
            );
        }
        if !has_jobs {
            self.err(root.start, "the workflow has no 'jobs'");
        }
        self.check_needs(&wf);
        self.check_concurrency(&wf);
        wf
    }

    /// The same literal group at the workflow level and on a job: the job would wait for its
    /// own run, which GitHub (and slipway) cancels as a deadlock.
    fn check_concurrency(&mut self, wf: &Workflow) {
        let Some(top) = wf.concurrency.as_ref().filter(|c| c.group.is_literal()) else {
            return;
        };
        let top = top.group.source().to_lowercase();
        for (id, job) in &wf.jobs {
            if let Some(c) = &job.concurrency
                && c.group.is_literal()
                && c.group.source().to_lowercase() == top
            {
                let pos = Pos {
                    line: c.span.line,
                    col: c.span.col,
                    index: 0,
                };
                self.warn(
                    pos,
                    format!(
                        "job '{id}' uses the workflow's concurrency group '{}': it would wait for its own run, so it is cancelled as a deadlock",
                        c.group.source()
                    ),
                );
            }
        }
    }

    fn defaults(&mut self, n: &Node, what: &str) -> Defaults {
        let mut out = Defaults::default();
        for (k, v) in self.entries(n, what) {
            let Some(key) = self.key(k) else { continue };
            if key != "run" {
                self.unknown(k, key, &["run"], what);
                continue;
            }
            for (k, v) in self.entries(v, "'defaults.run'") {
                let Some(key) = self.key(k) else { continue };
                match key {
                    "shell" => out.shell = self.shell(v),
                    "working-directory" => {
                        out.working_directory = self.template(v, "'working-directory'")
                    }
                    _ => self.unknown(k, key, &["shell", "working-directory"], "'defaults.run'"),
                }
            }
        }
        out
    }

    fn concurrency(&mut self, n: &Node, what: &str) -> Option<Concurrency> {
        if let Kind::Map(entries) = &n.kind {
            let mut group = None;
            let mut at = span(n.start);
            let mut cancel = BoolOrExpr::Bool(false);
            for (k, v) in entries {
                let Some(key) = self.key(k) else { continue };
                match key {
                    "group" => {
                        at = span(v.start);
                        group = self.template(v, "'concurrency.group'");
                    }
                    "cancel-in-progress" => {
                        cancel = self
                            .bool_or_expr(v, "'cancel-in-progress'")
                            .unwrap_or_default();
                    }
                    _ => self.unknown(k, key, &["group", "cancel-in-progress"], what),
                }
            }
            if group.is_none() && !entries.iter().any(|(k, _)| k.text() == Some("group")) {
                self.err(n.start, format!("{what} needs a 'group'"));
            }
            return group.map(|group| Concurrency {
                group,
                span: at,
                cancel_in_progress: cancel,
            });
        }
        let group = self.template(n, what)?;
        Some(Concurrency {
            group,
            span: span(n.start),
            cancel_in_progress: BoolOrExpr::Bool(false),
        })
    }

    fn permissions(&mut self, n: &Node, what: &str) -> Option<Permissions> {
        match &n.kind {
            Kind::Map(entries) if entries.is_empty() => Some(Permissions::All("none".to_owned())),
            Kind::Map(entries) => {
                let mut scopes = IndexMap::new();
                for (k, v) in entries {
                    let Some(key) = self.key(k) else { continue };
                    if !PERMISSION_SCOPES.contains(&key) {
                        let hint = suggestion(key, PERMISSION_SCOPES);
                        self.err(k.start, format!("unknown permission '{key}'{hint}"));
                        continue;
                    }
                    let Some(level) = self.string(v, &format!("permission '{key}'")) else {
                        continue;
                    };
                    if !matches!(level.as_str(), "read" | "write" | "none") {
                        self.err(
                            v.start,
                            format!("invalid level '{level}' for permission '{key}': expected 'read', 'write' or 'none'"),
                        );
                        continue;
                    }
                    scopes.insert(key.to_owned(), level);
                }
                Some(Permissions::Scopes(scopes))
            }
            _ => {
                let s = self.string(n, what)?;
                if s == "read-all" || s == "write-all" {
                    Some(Permissions::All(s))
                } else {
                    self.err(n.start, format!("invalid value '{s}' for {what}: expected 'read-all', 'write-all' or a mapping"));
                    None
                }
            }
        }
    }

    // ----- on --------------------------------------------------------------------------

    fn event_name(&mut self, n: &Node) -> Option<String> {
        let name = self.string(n, "an event name")?;
        if name.is_empty() {
            self.err(n.start, "an event name is empty");
            return None;
        }
        if !KNOWN_EVENTS.contains(&name.as_str())
            && let Some(s) = did_you_mean(&name, KNOWN_EVENTS)
        {
            self.warn(
                n.start,
                format!("unknown event '{name}' (did you mean '{s}'?)"),
            );
        }
        Some(name)
    }

    fn triggers(&mut self, key: &Node, n: &Node) -> Triggers {
        let mut on = Triggers::default();
        match &n.kind {
            Kind::Seq(items) => {
                for item in items {
                    if let Some(name) = self.event_name(item) {
                        on.events.insert(name, EventTrigger::default());
                    }
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries {
                    if let Some(name) = self.event_name(k) {
                        let trigger = self.event(&name, v);
                        on.events.insert(name, trigger);
                    }
                }
            }
            _ if n.is_null() => {}
            _ => {
                if let Some(name) = self.event_name(n) {
                    on.events.insert(name, EventTrigger::default());
                }
            }
        }
        if on.events.is_empty() {
            self.err(key.start, "'on' lists no events");
        }
        on
    }

    fn event(&mut self, name: &str, n: &Node) -> EventTrigger {
        let mut t = EventTrigger::default();
        if name == "schedule" {
            for item in self.items(n, "'schedule'") {
                for (k, v) in self.entries(item, "a 'schedule' entry") {
                    let Some(key) = self.key(k) else { continue };
                    if key == "cron" {
                        if let Some(c) = self.plain_string(v, "'cron'") {
                            if let Err(msg) = check_cron(&c) {
                                self.err(v.start, format!("invalid cron expression '{c}': {msg}"));
                            }
                            t.cron.push(c);
                        }
                    } else {
                        self.unknown(k, key, &["cron"], "a 'schedule' entry");
                    }
                }
            }
            return t;
        }
        let allowed: &[&str] = match name {
            "push" => &[
                "branches",
                "branches-ignore",
                "tags",
                "tags-ignore",
                "paths",
                "paths-ignore",
            ],
            "pull_request" | "pull_request_target" => &[
                "types",
                "branches",
                "branches-ignore",
                "paths",
                "paths-ignore",
            ],
            "workflow_dispatch" => &["inputs"],
            "workflow_call" => &["inputs", "outputs", "secrets"],
            "workflow_run" => &["types", "workflows", "branches", "branches-ignore"],
            _ => &["types"],
        };
        let what = format!("event '{name}'");
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in self.entries(n, &what) {
            let Some(key) = self.key(k) else { continue };
            if !allowed.contains(&key) {
                self.unknown(k, key, allowed, &what);
                continue;
            }
            for (a, b) in [
                ("branches", "branches-ignore"),
                ("tags", "tags-ignore"),
                ("paths", "paths-ignore"),
            ] {
                if (key == a && seen.contains(&b)) || (key == b && seen.contains(&a)) {
                    self.err(
                        k.start,
                        format!("'{a}' and '{b}' cannot both be used for {what}"),
                    );
                }
            }
            seen.push(key);
            let item = format!("'{key}'");
            match key {
                "types" => t.types = self.strings(v, &item),
                "branches" => t.branches = self.strings(v, &item),
                "branches-ignore" => t.branches_ignore = self.strings(v, &item),
                "tags" => t.tags = self.strings(v, &item),
                "tags-ignore" => t.tags_ignore = self.strings(v, &item),
                "paths" => t.paths = self.strings(v, &item),
                "paths-ignore" => t.paths_ignore = self.strings(v, &item),
                "workflows" => t.workflows = self.strings(v, &item),
                "inputs" => t.inputs = self.inputs(v, name == "workflow_call"),
                "outputs" => t.outputs = self.outputs(v),
                "secrets" => t.secrets = self.secrets(v),
                _ => {}
            }
        }
        t
    }

    fn inputs(&mut self, n: &Node, call: bool) -> IndexMap<String, InputSpec> {
        let mut out = IndexMap::new();
        let keys: &[&str] = if call {
            &["description", "required", "type", "default"]
        } else {
            &["description", "required", "type", "default", "options"]
        };
        let kinds: &[&str] = if call {
            &["string", "boolean", "number"]
        } else {
            &["string", "boolean", "number", "choice", "environment"]
        };
        for (k, v) in self.entries(n, "'inputs'") {
            let Some(name) = self.key(k) else { continue };
            let what = format!("input '{name}'");
            let mut spec = InputSpec {
                description: None,
                required: false,
                kind: "string".to_owned(),
                default: None,
                options: Vec::new(),
            };
            for (k, v) in self.entries(v, &what) {
                let Some(key) = self.key(k) else { continue };
                match key {
                    _ if !keys.contains(&key) => self.unknown(k, key, keys, &what),
                    "description" => spec.description = self.string(v, "'description'"),
                    "required" => spec.required = self.bool(v, "'required'").unwrap_or(false),
                    "type" => {
                        if let Some(kind) = self.string(v, "'type'") {
                            if kinds.contains(&kind.as_str()) {
                                spec.kind = kind;
                            } else {
                                let hint = suggestion(&kind, kinds);
                                self.err(
                                    v.start,
                                    format!("unknown type '{kind}' for {what}{hint}"),
                                );
                            }
                        }
                    }
                    "default" => spec.default = self.template(v, "'default'"),
                    "options" => spec.options = self.strings(v, "'options'"),
                    _ => {}
                }
            }
            if spec.kind == "choice" && spec.options.is_empty() {
                self.err(
                    k.start,
                    format!("{what} is a 'choice' but has no 'options'"),
                );
            }
            out.insert(name.to_owned(), spec);
        }
        out
    }

    fn outputs(&mut self, n: &Node) -> IndexMap<String, WorkflowOutput> {
        let mut out = IndexMap::new();
        for (k, v) in self.entries(n, "'outputs'") {
            let Some(name) = self.key(k) else { continue };
            let what = format!("output '{name}'");
            let mut description = None;
            let mut value = None;
            for (k, v) in self.entries(v, &what) {
                let Some(key) = self.key(k) else { continue };
                match key {
                    "description" => description = self.string(v, "'description'"),
                    "value" => {
                        value =
                            self.scoped(Some(scope::WORKFLOW_OUTPUT), |p| p.template(v, "'value'"))
                    }
                    _ => self.unknown(k, key, &["description", "value"], &what),
                }
            }
            match value {
                Some(value) => {
                    out.insert(name.to_owned(), WorkflowOutput { description, value });
                }
                None => {
                    if !self.entries_have(v, "value") {
                        self.err(k.start, format!("{what} has no 'value'"));
                    }
                }
            }
        }
        out
    }

    fn entries_have(&self, n: &Node, key: &str) -> bool {
        matches!(&n.kind, Kind::Map(e) if e.iter().any(|(k, _)| k.text() == Some(key)))
    }

    fn secrets(&mut self, n: &Node) -> IndexMap<String, bool> {
        let mut out = IndexMap::new();
        for (k, v) in self.entries(n, "'secrets'") {
            let Some(name) = self.key(k) else { continue };
            let what = format!("secret '{name}'");
            let mut required = false;
            for (k, v) in self.entries(v, &what) {
                let Some(key) = self.key(k) else { continue };
                match key {
                    "description" => {
                        self.string(v, "'description'");
                    }
                    "required" => required = self.bool(v, "'required'").unwrap_or(false),
                    _ => self.unknown(k, key, &["description", "required"], &what),
                }
            }
            out.insert(name.to_owned(), required);
        }
        out
    }

    // ----- jobs ------------------------------------------------------------------------

    fn jobs(&mut self, key: &Node, n: &Node) -> IndexMap<String, Job> {
        let mut jobs = IndexMap::new();
        for (k, v) in self.entries(n, "'jobs'") {
            let Some(id) = self.key(k) else { continue };
            if !valid_id(id) {
                self.err(
                    k.start,
                    format!(
                        "invalid job id '{id}': it must start with a letter or '_' and contain only letters, digits, '-' and '_'"
                    ),
                );
            }
            let job = self.job(id, k, v);
            jobs.insert(id.to_owned(), job);
        }
        if (jobs.is_empty() && matches!(n.kind, Kind::Map(_))) || n.is_null() {
            self.err(key.start, "the workflow has no jobs");
        }
        jobs
    }

    fn job(&mut self, id: &str, key: &Node, n: &Node) -> Job {
        let mut job = Job {
            id: id.to_owned(),
            span: span(key.start),
            name: None,
            needs: Vec::new(),
            condition: None,
            runs_on: Vec::new(),
            environment: None,
            container: None,
            services: IndexMap::new(),
            strategy: None,
            outputs: IndexMap::new(),
            env: Env::default(),
            defaults: Defaults::default(),
            timeout_minutes: None,
            continue_on_error: BoolOrExpr::Bool(false),
            concurrency: None,
            permissions: None,
            kind: JobKind::Steps(Vec::new()),
        };
        let what = format!("job '{id}'");
        if n.is_null() {
            self.err(
                key.start,
                format!("{what} is empty: it needs 'runs-on' and 'steps', or 'uses'"),
            );
            return job;
        }
        if !matches!(n.kind, Kind::Map(_)) {
            self.err(
                n.start,
                format!("expected a mapping for {what}, found {}", n.describe()),
            );
            return job;
        }
        // Keys that a misspelt key was taken for: no "missing" error for those.
        let mut suggested: Vec<&str> = Vec::new();
        let mut steps: Option<Vec<Step>> = None;
        let mut has_runs_on = false;
        let mut uses: Option<(String, Pos)> = None;
        let mut with: Option<(&Node, Pos)> = None;
        let mut secrets: Option<(&Node, Pos)> = None;
        let mut steps_only: Vec<(&str, Pos)> = Vec::new();
        for (k, v) in self.entries(n, &what) {
            let Some(key) = self.key(k) else { continue };
            if STEPS_JOB_ONLY.contains(&key) {
                steps_only.push((key, k.start));
            }
            self.scope = Some(match key {
                "if" => scope::JOB_IF,
                "env" => scope::JOB_ENV,
                "strategy" => scope::JOB_STRATEGY,
                "outputs" => scope::JOB_OUTPUTS,
                "defaults" => scope::JOB_DEFAULTS,
                "steps" => scope::STEP,
                _ => scope::JOB,
            });
            match key {
                "name" => job.name = self.template(v, "'name'"),
                "needs" => {
                    let needs = self.strings_pos(v, "'needs'");
                    job.needs = needs.iter().map(|(s, _)| s.clone()).collect();
                    self.needs.push((id.to_owned(), needs));
                }
                "if" => job.condition = self.condition(v, "'if'"),
                "runs-on" => {
                    has_runs_on = true;
                    job.runs_on = self.runs_on(v);
                }
                "environment" => job.environment = self.environment(v),
                "container" => job.container = self.container(v, "'container'"),
                "services" => {
                    for (k, v) in self.entries(v, "'services'") {
                        let Some(name) = self.key(k) else { continue };
                        if let Some(c) = self.container(v, &format!("service '{name}'")) {
                            job.services.insert(name.to_owned(), c);
                        }
                    }
                }
                "strategy" => job.strategy = self.strategy(v),
                "outputs" => job.outputs = self.template_map(v, "'outputs'"),
                "env" => job.env = self.env(v, "'env'"),
                "defaults" => job.defaults = self.defaults(v, "'defaults'"),
                "timeout-minutes" => {
                    job.timeout_minutes = self.number_or_expr(v, "'timeout-minutes'")
                }
                "continue-on-error" => {
                    job.continue_on_error = self
                        .bool_or_expr(v, "'continue-on-error'")
                        .unwrap_or_default();
                }
                "concurrency" => job.concurrency = self.concurrency(v, "'concurrency'"),
                "permissions" => job.permissions = self.permissions(v, "'permissions'"),
                "steps" => steps = Some(self.steps(id, v)),
                "uses" => {
                    if let Some(s) = self.string(v, "'uses'") {
                        uses = Some((s, v.start));
                    }
                }
                "with" => with = Some((v, k.start)),
                "secrets" => secrets = Some((v, k.start)),
                _ => {
                    suggested.extend(did_you_mean(key, JOB_KEYS));
                    self.unknown(k, key, JOB_KEYS, &what);
                }
            }
        }
        self.scope = None;
        if let Some((uses, uses_pos)) = uses {
            for (key, pos) in steps_only {
                self.err(
                    pos,
                    format!(
                        "'{key}' cannot be used in a job that calls a reusable workflow ('uses')"
                    ),
                );
            }
            if let Err(msg) = check_workflow_ref(&uses) {
                self.err(uses_pos, msg);
            }
            let (with, with_spans) = match with {
                Some((v, _)) => self.scoped(Some(scope::JOB), |p| p.template_map_pos(v, "'with'")),
                None => Default::default(),
            };
            let secrets = match secrets {
                None => CallSecrets::None,
                Some((v, _)) if v.text() == Some("inherit") => CallSecrets::Inherit,
                Some((v, _)) if v.is_null() => CallSecrets::None,
                Some((v, _)) => {
                    if matches!(v.kind, Kind::Scalar { .. }) {
                        self.err(v.start, "expected 'inherit' or a mapping for 'secrets'");
                        CallSecrets::None
                    } else {
                        CallSecrets::Map(self.scoped(Some(scope::CALL_SECRETS), |p| {
                            p.template_map(v, "'secrets'")
                        }))
                    }
                }
            };
            job.kind = JobKind::Call(WorkflowCall {
                uses,
                with,
                secrets,
                plan: None,
                uses_span: span(uses_pos),
                with_spans,
            });
        } else {
            for (name, found) in [("with", with), ("secrets", secrets)] {
                if let Some((_, pos)) = found {
                    self.err(pos, format!("'{name}' can only be used in a job that calls a reusable workflow ('uses')"));
                }
            }
            match steps {
                Some(steps) => job.kind = JobKind::Steps(steps),
                None if suggested.contains(&"steps") => {}
                None => self.err(
                    key.start,
                    format!("{what} has no 'steps' (or 'uses' to call a reusable workflow)"),
                ),
            }
            if !has_runs_on && !suggested.contains(&"runs-on") {
                self.err(key.start, format!("{what} has no 'runs-on'"));
            }
        }
        job
    }

    fn runs_on(&mut self, n: &Node) -> Vec<Template> {
        if let Kind::Map(entries) = &n.kind {
            let mut labels = Vec::new();
            let mut group = None;
            for (k, v) in entries {
                let Some(key) = self.key(k) else { continue };
                match key {
                    "group" => group = self.template(v, "'runs-on.group'"),
                    "labels" => labels = self.templates(v, "'runs-on.labels'"),
                    _ => self.unknown(k, key, &["group", "labels"], "'runs-on'"),
                }
            }
            if labels.is_empty() {
                labels.extend(group);
            }
            return labels;
        }
        let labels = self.templates(n, "'runs-on'");
        if labels.is_empty() {
            self.err(n.start, "'runs-on' names no runner label");
        }
        labels
    }

    fn environment(&mut self, n: &Node) -> Option<EnvironmentRef> {
        if let Kind::Map(entries) = &n.kind {
            let (mut name, mut url) = (None, None);
            for (k, v) in entries {
                let Some(key) = self.key(k) else { continue };
                match key {
                    "name" => name = self.template(v, "'environment.name'"),
                    "url" => {
                        url = self.scoped(Some(scope::ENVIRONMENT_URL), |p| {
                            p.template(v, "'environment.url'")
                        })
                    }
                    _ => self.unknown(k, key, &["name", "url"], "'environment'"),
                }
            }
            if name.is_none() && !self.entries_have(n, "name") {
                self.err(n.start, "'environment' needs a 'name'");
            }
            return name.map(|name| EnvironmentRef { name, url });
        }
        Some(EnvironmentRef {
            name: self.template(n, "'environment'")?,
            url: None,
        })
    }

    fn container(&mut self, n: &Node, what: &str) -> Option<Container> {
        let mut c = Container {
            image: Template::literal(""),
            credentials: None,
            env: Env::default(),
            ports: Vec::new(),
            volumes: Vec::new(),
            options: None,
        };
        let Kind::Map(entries) = &n.kind else {
            c.image = self.template(n, what)?;
            return Some(c);
        };
        let mut has_image = false;
        for (k, v) in entries {
            let Some(key) = self.key(k) else { continue };
            match key {
                "image" => {
                    has_image = true;
                    if let Some(i) = self.template(v, "'image'") {
                        c.image = i;
                    }
                }
                "credentials" => {
                    let (mut user, mut pass) = (None, None);
                    let prev = self.scope.replace(scope::CREDENTIALS);
                    for (k, v) in self.entries(v, "'credentials'") {
                        let Some(key) = self.key(k) else { continue };
                        match key {
                            "username" => user = self.template(v, "'username'"),
                            "password" => pass = self.template(v, "'password'"),
                            _ => self.unknown(k, key, &["username", "password"], "'credentials'"),
                        }
                    }
                    self.scope = prev;
                    match (user, pass) {
                        (Some(u), Some(p)) => c.credentials = Some((u, p)),
                        _ => self.err(k.start, "'credentials' needs a 'username' and a 'password'"),
                    }
                }
                "env" => c.env = self.scoped(Some(scope::CONTAINER_ENV), |p| p.env(v, "'env'")),
                "ports" => c.ports = self.templates(v, "'ports'"),
                "volumes" => c.volumes = self.templates(v, "'volumes'"),
                "options" => c.options = self.template(v, "'options'"),
                _ => self.unknown(k, key, CONTAINER_KEYS, what),
            }
        }
        if !has_image {
            self.err(n.start, format!("{what} has no 'image'"));
        }
        Some(c)
    }

    fn strategy(&mut self, n: &Node) -> Option<Strategy> {
        let mut s = Strategy {
            matrix: None,
            fail_fast: BoolOrExpr::Bool(true),
            max_parallel: None,
        };
        for (k, v) in self.entries(n, "'strategy'") {
            let Some(key) = self.key(k) else { continue };
            match key {
                "matrix" => s.matrix = self.matrix(v),
                "fail-fast" => {
                    s.fail_fast = self
                        .bool_or_expr(v, "'fail-fast'")
                        .unwrap_or(BoolOrExpr::Bool(true))
                }
                "max-parallel" => s.max_parallel = self.number_or_expr(v, "'max-parallel'"),
                _ => self.unknown(
                    k,
                    key,
                    &["matrix", "fail-fast", "max-parallel"],
                    "'strategy'",
                ),
            }
        }
        Some(s)
    }

    /// Checks every string inside a matrix value for expression syntax and every key for
    /// being a plain name or `${{ insert }}`.
    fn check_matrix_value(&mut self, n: &Node) {
        match &n.kind {
            Kind::Scalar { text, .. } => {
                if n.scalar() == Some(Scalar::Str) && text.contains("${{") {
                    self.template_text(n, text, "the matrix");
                }
            }
            Kind::Seq(items) => items.iter().for_each(|i| self.check_matrix_value(i)),
            Kind::Map(entries) => {
                for (k, v) in entries {
                    if let Some(key) = self.key(k)
                        && key.contains("${{")
                        && !is_insert_key(key)
                    {
                        self.err(
                            k.start,
                            "expressions are not allowed in matrix keys (except '${{ insert }}')",
                        );
                    }
                    self.check_matrix_value(v);
                }
            }
        }
    }

    fn matrix(&mut self, n: &Node) -> Option<serde_json::Value> {
        match &n.kind {
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let Some(key) = self.key(k) else { continue };
                    let is_expr = v.scalar() == Some(Scalar::Str)
                        && v.text().is_some_and(|t| t.contains("${{"));
                    match (&v.kind, key) {
                        (_, _) if is_expr => {}
                        (Kind::Seq(items), "include" | "exclude") => {
                            for item in items {
                                let item_expr =
                                    item.scalar() == Some(Scalar::Str) && item.text().is_some_and(|t| t.contains("${{"));
                                if !item_expr && !matches!(item.kind, Kind::Map(_)) {
                                    self.err(
                                        item.start,
                                        format!("each '{key}' entry must be a mapping, found {}", item.describe()),
                                    );
                                }
                            }
                        }
                        (Kind::Seq(items), _) => {
                            if items.is_empty() {
                                self.err(v.start, format!("matrix key '{key}' has no values"));
                            }
                        }
                        (_, "include" | "exclude") => self.err(
                            v.start,
                            format!("matrix '{key}' must be a sequence of mappings or an expression, found {}", v.describe()),
                        ),
                        _ => self.err(
                            v.start,
                            format!("matrix key '{key}' must be a sequence or an expression, found {}", v.describe()),
                        ),
                    }
                }
                let defines_legs = entries.iter().any(|(k, v)| {
                    k.text() != Some("exclude") && !(k.text() == Some("include") && v.is_null())
                });
                if !defines_legs {
                    self.err(n.start, "the matrix defines no values: it needs at least one key with a list, or 'include'");
                }
                self.check_matrix_value(n);
                Some(n.to_json())
            }
            Kind::Scalar { text, .. }
                if n.scalar() == Some(Scalar::Str) && text.contains("${{") =>
            {
                self.template_text(n, text, "the matrix")?;
                Some(n.to_json())
            }
            _ => {
                self.err(
                    n.start,
                    format!(
                        "expected a mapping or an expression for 'matrix', found {}",
                        n.describe()
                    ),
                );
                None
            }
        }
    }

    // ----- steps -----------------------------------------------------------------------

    fn steps(&mut self, job: &str, n: &Node) -> Vec<Step> {
        let mut out = Vec::new();
        let mut ids: HashMap<String, u32> = HashMap::new();
        for (i, item) in self.items(n, "'steps'").iter().enumerate() {
            let number = i + 1;
            if item.is_null() {
                let at = self.dash_before(item.start);
                self.err(
                    at,
                    format!("step {number} of job '{job}' is empty: a step needs 'run' or 'uses'"),
                );
                continue;
            }
            if let Some(step) = self.step(job, number, item, &mut ids) {
                out.push(step);
            }
        }
        out
    }

    fn step(
        &mut self,
        job: &str,
        number: usize,
        n: &Node,
        ids: &mut HashMap<String, u32>,
    ) -> Option<Step> {
        let what = format!("step {number} of job '{job}'");
        let Kind::Map(entries) = &n.kind else {
            self.err(
                n.start,
                format!("expected a mapping for {what}, found {}", n.describe()),
            );
            return None;
        };
        let mut step = Step {
            id: None,
            span: span(n.start),
            name: None,
            condition: None,
            env: Env::default(),
            continue_on_error: BoolOrExpr::Bool(false),
            timeout_minutes: None,
            working_directory: None,
            kind: StepKind::Run {
                script: Template::literal(""),
                shell: None,
            },
        };
        let mut run: Option<Template> = None;
        let mut has_run = false;
        let mut uses: Option<ActionRef> = None;
        let mut has_uses = false;
        let mut shell: Option<(String, Pos)> = None;
        let mut workdir_pos = None;
        let mut with: Option<(IndexMap<String, Template>, Pos)> = None;
        let outer = self.scope;
        for (k, v) in entries {
            let Some(key) = self.key(k) else { continue };
            self.scope = Some(if key == "if" {
                scope::STEP_IF
            } else {
                scope::STEP
            });
            match key {
                "id" => {
                    if let Some(id) = self.plain_string(v, "'id'") {
                        if !valid_id(&id) {
                            self.err(
                                v.start,
                                format!("invalid step id '{id}': it must start with a letter or '_' and contain only letters, digits, '-' and '_'"),
                            );
                        }
                        if let Some(line) = ids.get(&id) {
                            self.err(v.start, format!("duplicate step id '{id}' in job '{job}' (first used on line {line})"));
                        } else {
                            ids.insert(id.clone(), v.start.line);
                        }
                        step.id = Some(id);
                    }
                }
                "name" => step.name = self.template(v, "'name'"),
                "if" => step.condition = self.condition(v, "'if'"),
                "run" => {
                    has_run = true;
                    run = self.template(v, "'run'");
                }
                "shell" => shell = self.shell(v).map(|s| (s, k.start)),
                "working-directory" => {
                    workdir_pos = Some(k.start);
                    step.working_directory = self.template(v, "'working-directory'");
                }
                "uses" => {
                    has_uses = true;
                    if let Some(s) = self.string(v, "'uses'") {
                        match parse_action_ref(&s) {
                            Ok(a) => uses = Some(a),
                            Err(msg) => self.err(v.start, msg),
                        }
                    }
                }
                "with" => with = Some((self.template_map(v, "'with'"), k.start)),
                "env" => step.env = self.env(v, "'env'"),
                "continue-on-error" => {
                    step.continue_on_error = self
                        .bool_or_expr(v, "'continue-on-error'")
                        .unwrap_or_default();
                }
                "timeout-minutes" => {
                    step.timeout_minutes = self.number_or_expr(v, "'timeout-minutes'")
                }
                _ => self.unknown(k, key, STEP_KEYS, &what),
            }
        }
        self.scope = outer;
        match (has_run, has_uses) {
            (true, true) => {
                self.err(n.start, format!("{what} has both 'run' and 'uses': a step runs a script or uses an action, not both"));
                return None;
            }
            (false, false) => {
                self.err(n.start, format!("{what} has neither 'run' nor 'uses'"));
                return None;
            }
            (true, false) => {
                if let Some((_, pos)) = &with {
                    self.err(*pos, "'with' can only be used with 'uses'");
                }
                step.kind = StepKind::Run {
                    script: run?,
                    shell: shell.map(|(s, _)| s),
                };
            }
            (false, true) => {
                if let Some((_, pos)) = &shell {
                    self.err(*pos, "'shell' can only be used with 'run'");
                }
                if let Some(pos) = workdir_pos {
                    self.err(pos, "'working-directory' can only be used with 'run'");
                }
                step.kind = StepKind::Uses {
                    action: uses?,
                    with: with.map(|(w, _)| w).unwrap_or_default(),
                };
            }
        }
        Some(step)
    }

    // ----- needs graph -----------------------------------------------------------------

    fn check_needs(&mut self, wf: &Workflow) {
        let needs = std::mem::take(&mut self.needs);
        for (job, list) in &needs {
            let mut seen = HashSet::new();
            for (need, pos) in list {
                if !wf.jobs.contains_key(need) {
                    let ids: Vec<&str> = wf
                        .jobs
                        .keys()
                        .map(String::as_str)
                        .filter(|j| j != job)
                        .collect();
                    let hint = suggestion(need, &ids);
                    self.err(
                        *pos,
                        format!(
                            "job '{job}' needs '{need}', which is not a job in this workflow{hint}"
                        ),
                    );
                } else if !seen.insert(need) {
                    self.warn(*pos, format!("job '{job}' lists '{need}' in 'needs' twice"));
                }
            }
        }
        for cycle in find_cycles(wf) {
            let Some(first) = cycle.first() else { continue };
            let Some(job) = wf.jobs.get(first) else {
                continue;
            };
            let pos = Pos {
                line: job.span.line,
                col: job.span.col,
                index: 0,
            };
            let mut path = cycle.join(" -> ");
            path.push_str(" -> ");
            path.push_str(first);
            self.err(pos, format!("'needs' cycle: {path}"));
        }
    }
}

/// Checks a 5-field POSIX cron line (`minute hour day-of-month month day-of-week`), as
/// GitHub's `schedule` accepts it: numbers, `*`, ranges, steps, lists, and month/day names.
fn check_cron(line: &str) -> Result<(), String> {
    const FIELDS: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 0, 6),
    ];
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let parts: Vec<&str> = line.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!("expected 5 fields, found {}", parts.len()));
    }
    for (part, (name, min, max)) in parts.iter().zip(FIELDS) {
        let value = |v: &str| -> Result<u32, String> {
            let lower = v.to_ascii_lowercase();
            let named = match name {
                "month" => MONTHS
                    .iter()
                    .position(|m| *m == lower)
                    .map(|i| i as u32 + 1),
                "day of week" => DAYS.iter().position(|d| *d == lower).map(|i| i as u32),
                _ => None,
            };
            let n = match named {
                Some(n) => n,
                None => v
                    .parse::<u32>()
                    .map_err(|_| format!("'{v}' is not a valid {name}"))?,
            };
            // Day of week 7 is Sunday too.
            let max = if name == "day of week" { 7 } else { max };
            if n < min || n > max {
                return Err(format!("{name} {n} is out of range {min}-{max}"));
            }
            Ok(n)
        };
        for item in part.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            if let Some(step) = step {
                match step.parse::<u32>() {
                    Ok(s) if s > 0 => {}
                    _ => return Err(format!("'{step}' is not a valid step in the {name} field")),
                }
            }
            if range == "*" {
                continue;
            }
            match range.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (value(a)?, value(b)?);
                    if a > b {
                        return Err(format!("range {a}-{b} in the {name} field is backwards"));
                    }
                }
                None => {
                    value(range)?;
                }
            }
        }
    }
    Ok(())
}

/// Checks a job-level `uses:` (a reusable workflow): `./path` or `owner/repo/path@ref`.
fn check_workflow_ref(uses: &str) -> Result<(), String> {
    const FORMS: &str = "expected './.github/workflows/<file>.yml' or 'owner/repo/.github/workflows/<file>.yml@ref'";
    if uses.contains("${{") {
        return Err("expressions are not allowed in 'uses'".to_owned());
    }
    if uses.starts_with("./") {
        if uses.ends_with(".yml") || uses.ends_with(".yaml") {
            return Ok(());
        }
        return Err(format!("'{uses}' is not a workflow file: {FORMS}"));
    }
    match parse_action_ref(uses) {
        Ok(ActionRef::Remote { path: Some(_), .. }) => Ok(()),
        Ok(_) => Err(format!("'{uses}' does not name a workflow file: {FORMS}")),
        Err(_) if !uses.contains('@') && !uses.is_empty() => {
            Err(format!("'{uses}' has no '@ref': {FORMS}"))
        }
        Err(_) => Err(format!(
            "'{uses}' is not a valid reusable workflow reference: {FORMS}"
        )),
    }
}

/// Every cycle in the `needs` graph (one per strongly connected group found by a depth-first
/// search), each as the list of job ids along it, starting at the job that comes first in
/// the file. Iterative, so deep chains cannot overflow the stack.
pub(crate) fn find_cycles(wf: &Workflow) -> Vec<Vec<String>> {
    let index: HashMap<&str, usize> = wf
        .jobs
        .keys()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let edges: Vec<Vec<usize>> = wf
        .jobs
        .values()
        .map(|j| {
            j.needs
                .iter()
                .filter_map(|n| index.get(n.as_str()).copied())
                .collect()
        })
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; edges.len()];
    let mut cycles = Vec::new();
    for root in 0..edges.len() {
        if state[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        state[root] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&to) = edges[node].get(*next) {
                *next += 1;
                match state[to] {
                    0 => {
                        state[to] = 1;
                        stack.push((to, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|(n, _)| *n == to).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|(n, _)| *n).collect();
                        // Start at the job that comes first in the file.
                        let min = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| **n)
                            .map(|(i, _)| i)
                            .unwrap_or(0);
                        cycle.rotate_left(min);
                        let ids: Vec<String> = cycle
                            .iter()
                            .filter_map(|i| wf.jobs.get_index(*i).map(|(k, _)| k.clone()))
                            .collect();
                        if !cycles.contains(&ids) {
                            cycles.push(ids);
                        }
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
    cycles
}
