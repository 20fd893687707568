//! Shared test helpers: render a parse/compile result as compact text for snapshots.

#![allow(dead_code, clippy::unwrap_used)]

use std::fmt::Write;

use workflow::{
    ActionRef, BoolOrExpr, CallSecrets, CompileOptions, Env, Job, JobKind, NumberOrExpr,
    Permissions, Plan, StepKind, compile, parse,
};

/// Parses and compiles `files[0]` for `event`, with the other files reachable through the
/// loader; renders the diagnostics (if any) or a plan summary.
pub fn check_files(event: &str, files: &[(&str, &str)]) -> String {
    let (file, source) = files[0];
    let loader = |path: &str| {
        files
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, s)| (*s).to_owned())
    };
    let wf = match parse(source, file) {
        Ok(wf) => wf,
        Err(d) => return d.to_string(),
    };
    let mut out = String::new();
    match compile(
        &wf,
        &CompileOptions {
            event,
            loader: &loader,
        },
    ) {
        Ok(plan) => {
            for w in &plan.warnings {
                writeln!(out, "{w}").unwrap();
            }
            render_plan(&mut out, &plan, "");
        }
        Err(d) => {
            for w in &wf.warnings {
                writeln!(out, "{w}").unwrap();
            }
            out.push_str(&d.to_string());
        }
    }
    out
}

/// One workflow (`wf.yml`) compiled for `push`.
pub fn check(source: &str) -> String {
    check_files("push", &[("wf.yml", source)])
}

fn bool_or_expr(b: &BoolOrExpr) -> String {
    match b {
        BoolOrExpr::Bool(b) => b.to_string(),
        BoolOrExpr::Expr(t) => t.source().to_owned(),
    }
}

fn number_or_expr(n: &NumberOrExpr) -> String {
    match n {
        NumberOrExpr::Number(n) => n.to_string(),
        NumberOrExpr::Expr(t) => t.source().to_owned(),
    }
}

fn env(e: &Env) -> String {
    let mut parts: Vec<String> = e
        .vars
        .iter()
        .map(|(k, v)| format!("{k}={:?}", v.source()))
        .collect();
    if let Some(x) = &e.expr {
        parts.push(format!("<{}>", x.source()));
    }
    parts.join(" ")
}

pub fn render_plan(out: &mut String, plan: &Plan, indent: &str) {
    writeln!(
        out,
        "{indent}plan {:?} for {} ({})",
        plan.name, plan.event, plan.file
    )
    .unwrap();
    if let Some(r) = &plan.run_name {
        writeln!(out, "{indent}  run-name: {}", r.source()).unwrap();
    }
    if !plan.env.vars.is_empty() || plan.env.expr.is_some() {
        writeln!(out, "{indent}  env: {}", env(&plan.env)).unwrap();
    }
    if plan.defaults.shell.is_some() || plan.defaults.working_directory.is_some() {
        writeln!(
            out,
            "{indent}  defaults: shell={:?} working-directory={:?}",
            plan.defaults.shell,
            plan.defaults.working_directory.as_ref().map(|t| t.source())
        )
        .unwrap();
    }
    if let Some(c) = &plan.concurrency {
        writeln!(
            out,
            "{indent}  concurrency: {} cancel={}",
            c.group.source(),
            bool_or_expr(&c.cancel_in_progress)
        )
        .unwrap();
    }
    if let Some(p) = &plan.permissions {
        writeln!(out, "{indent}  permissions: {}", permissions(p)).unwrap();
    }
    if let Some(t) = &plan.trigger {
        let mut parts = Vec::new();
        for (name, v) in [
            ("types", &t.types),
            ("branches", &t.branches),
            ("branches-ignore", &t.branches_ignore),
            ("tags", &t.tags),
            ("tags-ignore", &t.tags_ignore),
            ("paths", &t.paths),
            ("paths-ignore", &t.paths_ignore),
            ("cron", &t.cron),
            ("workflows", &t.workflows),
        ] {
            if !v.is_empty() {
                parts.push(format!("{name}={v:?}"));
            }
        }
        for (name, i) in &t.inputs {
            parts.push(format!(
                "input {name}:{}{}{}{}",
                i.kind,
                if i.required { " required" } else { "" },
                i.default
                    .as_ref()
                    .map(|d| format!(" default={:?}", d.source()))
                    .unwrap_or_default(),
                if i.options.is_empty() {
                    String::new()
                } else {
                    format!(" options={:?}", i.options)
                }
            ));
        }
        for (name, o) in &t.outputs {
            parts.push(format!("output {name}={:?}", o.value.source()));
        }
        for (name, req) in &t.secrets {
            parts.push(format!(
                "secret {name}{}",
                if *req { " required" } else { "" }
            ));
        }
        writeln!(out, "{indent}  trigger: {}", parts.join("; ")).unwrap();
    }
    for job in &plan.jobs {
        render_job(out, job, &format!("{indent}  "));
    }
}

fn permissions(p: &Permissions) -> String {
    match p {
        Permissions::All(s) => s.clone(),
        Permissions::Scopes(m) => m
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn render_job(out: &mut String, job: &Job, indent: &str) {
    write!(
        out,
        "{indent}job {} @{}:{}",
        job.id, job.span.line, job.span.col
    )
    .unwrap();
    if let Some(n) = &job.name {
        write!(out, " name={:?}", n.source()).unwrap();
    }
    if !job.needs.is_empty() {
        write!(out, " needs={:?}", job.needs).unwrap();
    }
    if let Some(c) = &job.condition {
        write!(out, " if={:?}", c.source()).unwrap();
    }
    if !job.runs_on.is_empty() {
        let labels: Vec<&str> = job.runs_on.iter().map(|t| t.source()).collect();
        write!(out, " runs-on={labels:?}").unwrap();
    }
    writeln!(out).unwrap();
    let i = format!("{indent}  ");
    if let Some(e) = &job.environment {
        writeln!(
            out,
            "{i}environment: {} url={:?}",
            e.name.source(),
            e.url.as_ref().map(|u| u.source())
        )
        .unwrap();
    }
    if let Some(c) = &job.container {
        writeln!(
            out,
            "{i}container: {} creds={} env=[{}] ports={:?} volumes={:?} options={:?}",
            c.image.source(),
            c.credentials.is_some(),
            env(&c.env),
            c.ports.iter().map(|p| p.source()).collect::<Vec<_>>(),
            c.volumes.iter().map(|p| p.source()).collect::<Vec<_>>(),
            c.options.as_ref().map(|o| o.source())
        )
        .unwrap();
    }
    for (name, c) in &job.services {
        writeln!(
            out,
            "{i}service {name}: {} env=[{}]",
            c.image.source(),
            env(&c.env)
        )
        .unwrap();
    }
    if let Some(s) = &job.strategy {
        writeln!(
            out,
            "{i}strategy: fail-fast={} max-parallel={} matrix={}",
            bool_or_expr(&s.fail_fast),
            s.max_parallel
                .as_ref()
                .map(number_or_expr)
                .unwrap_or_else(|| "-".into()),
            s.matrix
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_else(|| "-".into())
        )
        .unwrap();
    }
    if !job.outputs.is_empty() {
        let o: Vec<String> = job
            .outputs
            .iter()
            .map(|(k, v)| format!("{k}={:?}", v.source()))
            .collect();
        writeln!(out, "{i}outputs: {}", o.join(" ")).unwrap();
    }
    if !job.env.vars.is_empty() || job.env.expr.is_some() {
        writeln!(out, "{i}env: {}", env(&job.env)).unwrap();
    }
    if job.defaults.shell.is_some() || job.defaults.working_directory.is_some() {
        writeln!(
            out,
            "{i}defaults: shell={:?} working-directory={:?}",
            job.defaults.shell,
            job.defaults.working_directory.as_ref().map(|t| t.source())
        )
        .unwrap();
    }
    if let Some(t) = &job.timeout_minutes {
        writeln!(out, "{i}timeout-minutes: {}", number_or_expr(t)).unwrap();
    }
    if !matches!(job.continue_on_error, BoolOrExpr::Bool(false)) {
        writeln!(
            out,
            "{i}continue-on-error: {}",
            bool_or_expr(&job.continue_on_error)
        )
        .unwrap();
    }
    if let Some(c) = &job.concurrency {
        writeln!(
            out,
            "{i}concurrency: {} cancel={}",
            c.group.source(),
            bool_or_expr(&c.cancel_in_progress)
        )
        .unwrap();
    }
    if let Some(p) = &job.permissions {
        writeln!(out, "{i}permissions: {}", permissions(p)).unwrap();
    }
    match &job.kind {
        JobKind::Steps(steps) => {
            for (n, s) in steps.iter().enumerate() {
                write!(out, "{i}step {} @{}:{}", n + 1, s.span.line, s.span.col).unwrap();
                if let Some(id) = &s.id {
                    write!(out, " id={id}").unwrap();
                }
                if let Some(name) = &s.name {
                    write!(out, " name={:?}", name.source()).unwrap();
                }
                if let Some(c) = &s.condition {
                    write!(out, " if={:?}", c.source()).unwrap();
                }
                match &s.kind {
                    StepKind::Run { script, shell } => {
                        write!(out, " run={:?}", script.source()).unwrap();
                        if let Some(sh) = shell {
                            write!(out, " shell={sh:?}").unwrap();
                        }
                    }
                    StepKind::Uses { action, with } => {
                        let a = match action {
                            ActionRef::Local { path } => format!("local {path}"),
                            ActionRef::Docker { image } => format!("docker {image}"),
                            ActionRef::Remote {
                                owner,
                                repo,
                                path,
                                git_ref,
                            } => {
                                format!("remote {owner}/{repo} path={path:?} ref={git_ref}")
                            }
                        };
                        write!(out, " uses=[{a}]").unwrap();
                        if !with.is_empty() {
                            let w: Vec<String> = with
                                .iter()
                                .map(|(k, v)| format!("{k}={:?}", v.source()))
                                .collect();
                            write!(out, " with=[{}]", w.join(" ")).unwrap();
                        }
                    }
                }
                if let Some(wd) = &s.working_directory {
                    write!(out, " working-directory={:?}", wd.source()).unwrap();
                }
                if !s.env.vars.is_empty() || s.env.expr.is_some() {
                    write!(out, " env=[{}]", env(&s.env)).unwrap();
                }
                if !matches!(s.continue_on_error, BoolOrExpr::Bool(false)) {
                    write!(
                        out,
                        " continue-on-error={}",
                        bool_or_expr(&s.continue_on_error)
                    )
                    .unwrap();
                }
                if let Some(t) = &s.timeout_minutes {
                    write!(out, " timeout-minutes={}", number_or_expr(t)).unwrap();
                }
                writeln!(out).unwrap();
            }
        }
        JobKind::Call(call) => {
            let with: Vec<String> = call
                .with
                .iter()
                .map(|(k, v)| format!("{k}={:?}", v.source()))
                .collect();
            let secrets = match &call.secrets {
                CallSecrets::None => "none".to_owned(),
                CallSecrets::Inherit => "inherit".to_owned(),
                CallSecrets::Map(m) => m.keys().cloned().collect::<Vec<_>>().join(","),
            };
            writeln!(
                out,
                "{i}calls {} with=[{}] secrets={}",
                call.uses,
                with.join(" "),
                secrets
            )
            .unwrap();
            match &call.plan {
                Some(p) => render_plan(out, p, &format!("{i}  ")),
                None => writeln!(out, "{i}  (not resolved at compile time)").unwrap(),
            }
        }
    }
}
