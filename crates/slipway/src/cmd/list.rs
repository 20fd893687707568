//! `slipway list`: show the plan without running anything: per workflow, its jobs in the
//! order they run, their `needs`, `runs-on` and matrix legs (expanded when the matrix is
//! static, "(computed at run time)" when it depends on `needs`). `--json` prints the same
//! as one JSON document.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Map, Value, json};
use workflow::expr::{MapContext, Template};
use workflow::{Job, JobKind, Plan};

use super::workflows;

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only workflows that listen to this event, compiled for it. Default: every workflow,
    /// compiled for the first event it listens to.
    pub event: Option<String>,
    /// A workflow file or a directory of them (default: the repository's workflow directory).
    #[arg(short = 'W', long = "workflows", value_name = "PATH")]
    pub workflows: Option<PathBuf>,
    /// Print the plans as JSON.
    #[arg(long = "json")]
    pub json: bool,
}

pub async fn main(args: ListArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let found = match workflows::discover(args.workflows.as_deref(), &cwd) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let (parsed, mut diagnostics) = workflows::parse_all(&found.files, &cwd);
    let loader = workflows::FsLoader { root: found.repo_root.clone() };
    let mut plans = Vec::new();
    for wf in &parsed {
        let event = match &args.event {
            Some(e) => e.clone(),
            None => match wf.on.events.keys().next() {
                Some(e) => e.clone(),
                None => continue,
            },
        };
        let (p, d) = workflows::compile_for(std::slice::from_ref(wf), &event, &loader);
        plans.extend(p);
        diagnostics.extend(d);
    }
    let diagnostics = workflows::dedup(diagnostics);
    if !diagnostics.is_empty() {
        workflows::print_diagnostics(&mut std::io::stderr().lock(), &diagnostics)?;
        if workflows::has_errors(&diagnostics) {
            return Ok(ExitCode::from(2));
        }
    }
    let docs: Vec<Value> = plans.iter().map(plan_json).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&docs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if plans.is_empty() {
        match &args.event {
            Some(e) => println!("no workflow listens to the `{e}` event"),
            None => println!("no workflows"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default();
        text.push_str(&format!("{}: {} (on {})\n", s("file"), s("name"), s("event")));
        render_jobs(&mut text, doc.get("jobs"), 1);
    }
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn plan_json(plan: &Plan) -> Value {
    json!({
        "file": plan.file,
        "name": plan.name,
        "event": plan.event,
        "jobs": plan.jobs.iter().map(job_json).collect::<Vec<_>>(),
    })
}

fn job_json(job: &Job) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(job.id));
    if let Some(name) = &job.name {
        o.insert("name".into(), json!(name.source()));
    }
    o.insert("needs".into(), json!(job.needs));
    o.insert("runs_on".into(), json!(job.runs_on.iter().map(Template::source).collect::<Vec<_>>()));
    if let Some(matrix) = job.strategy.as_ref().and_then(|s| s.matrix.as_ref()) {
        o.insert("matrix".into(), legs(matrix));
    }
    if let JobKind::Call(call) = &job.kind {
        o.insert("uses".into(), json!(call.uses));
        if let Some(inner) = &call.plan {
            o.insert("jobs".into(), json!(inner.jobs.iter().map(job_json).collect::<Vec<_>>()));
        }
    }
    Value::Object(o)
}

/// The legs of a static matrix, or a string saying why they are not known yet.
fn legs(matrix: &Value) -> Value {
    if mentions_needs(matrix) {
        return json!("computed at run time");
    }
    let mut ctx = MapContext::default();
    for c in ["github", "inputs", "vars", "env"] {
        ctx.contexts.insert(c.to_owned(), json!({}));
    }
    match workflow::matrix::expand(matrix, &ctx) {
        Ok(legs) => json!(legs),
        Err(e) => json!(format!("computed at run time ({e})")),
    }
}

/// Whether any `${{ }}` in the matrix reads `needs` (or can't be parsed).
fn mentions_needs(v: &Value) -> bool {
    match v {
        Value::String(s) if s.contains("${{") => match Template::parse(s) {
            Ok(t) => t.exprs().iter().any(|e| e.contexts_used().iter().any(|c| c == "needs")),
            Err(_) => true,
        },
        Value::Array(a) => a.iter().any(mentions_needs),
        Value::Object(o) => o.values().any(mentions_needs),
        _ => false,
    }
}

fn render_jobs(text: &mut String, jobs: Option<&Value>, depth: usize) {
    let Some(jobs) = jobs.and_then(Value::as_array) else { return };
    let pad = "  ".repeat(depth);
    for job in jobs {
        let s = |k: &str| job.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let list = |k: &str| {
            job.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        };
        let mut line = format!("{pad}{}", s("id"));
        let name = s("name");
        if !name.is_empty() && name != s("id") {
            line.push_str(&format!(" \"{name}\""));
        }
        let needs = list("needs");
        if !needs.is_empty() {
            line.push_str(&format!("  needs: {needs}"));
        }
        let runs_on = list("runs_on");
        if !runs_on.is_empty() {
            line.push_str(&format!("  runs-on: {runs_on}"));
        }
        let uses = s("uses");
        if !uses.is_empty() {
            line.push_str(&format!("  calls: {uses}"));
        }
        text.push_str(&line);
        text.push('\n');
        match job.get("matrix") {
            Some(Value::String(why)) => text.push_str(&format!("{pad}  matrix: ({why})\n")),
            Some(Value::Array(legs)) => {
                if legs.is_empty() {
                    text.push_str(&format!("{pad}  matrix: no legs\n"));
                }
                for leg in legs {
                    let parts: Vec<String> = leg
                        .as_object()
                        .map(|o| o.iter().map(|(k, v)| format!("{k}={}", scalar(v))).collect())
                        .unwrap_or_default();
                    text.push_str(&format!("{pad}  - {}\n", parts.join(", ")));
                }
            }
            _ => {}
        }
        render_jobs(text, job.get("jobs"), depth + 1);
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
