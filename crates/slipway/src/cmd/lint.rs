//! `slipway lint`: parse every workflow and compile it for each event it listens to, print
//! every problem as `file:line:col: error: ...` with a snippet; exit 2 on any error, else 0
//! and `N workflows ok`. Runs nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use super::workflows;

#[derive(clap::Args, Debug)]
pub struct LintArgs {
    /// A workflow file or a directory of them (default: the repository's workflow directory).
    #[arg(short = 'W', long = "workflows", value_name = "PATH")]
    pub workflows: Option<PathBuf>,
    /// Print the diagnostics as JSON, one object per line.
    #[arg(long = "json")]
    pub json: bool,
}

pub async fn main(args: LintArgs) -> anyhow::Result<ExitCode> {
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
    for wf in &parsed {
        for event in wf.on.events.keys() {
            let (_, d) = workflows::compile_for(std::slice::from_ref(wf), event, &loader);
            diagnostics.extend(d);
        }
    }
    let diagnostics = workflows::dedup(diagnostics);
    let errors = diagnostics.iter().filter(|d| d.severity == workflow::Severity::Error).count();
    let warnings = diagnostics.len() - errors;
    let mut out = std::io::stdout().lock();
    if args.json {
        use std::io::Write as _;
        for d in &diagnostics {
            serde_json::to_writer(&mut out, d)?;
            writeln!(out)?;
        }
    } else {
        workflows::print_diagnostics(&mut out, &diagnostics)?;
    }
    let n = found.files.len();
    let files = if n == 1 { "workflow" } else { "workflows" };
    if errors > 0 {
        let line = format!("{errors} error{} in {n} {files}", if errors == 1 { "" } else { "s" });
        if args.json {
            eprintln!("{line}");
        } else {
            use std::io::Write as _;
            writeln!(out, "{line}")?;
        }
        return Ok(ExitCode::from(2));
    }
    if !args.json {
        use std::io::Write as _;
        if warnings > 0 {
            writeln!(out, "{n} {files} ok ({warnings} warning{})", if warnings == 1 { "" } else { "s" })?;
        } else {
            writeln!(out, "{n} {files} ok")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
