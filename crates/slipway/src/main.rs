//! The `slipway` binary: command line, tracing, signals; every subcommand lives in `cmd/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// slipway — from `git push` to "it's running", in one binary.
#[derive(Parser)]
#[command(name = "slipway", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the workflows of the repository in the current directory for an event.
    Run(cmd::run::RunArgs),
    /// Check workflows and report problems as file:line:col.
    Lint(cmd::lint::LintArgs),
    /// Show the plan: jobs, their needs, matrix legs.
    List(cmd::list::ListArgs),
    /// Build, push, pull and inspect OCI images.
    #[command(subcommand)]
    Image(cmd::image::ImageCommand),
    /// Serve a standalone OCI distribution registry.
    Registry(cmd::registry::RegistryArgs),
    /// Run the CI/CD server (webhooks, API, scheduler, registry, embedded agent).
    Server(cmd::server::ServerArgs),
    /// Lease jobs from a server and run them.
    Agent(cmd::agent::AgentArgs),
    /// List runs on a server.
    Runs(cmd::runs::RunsArgs),
    /// Show (and follow) the logs of a run.
    Logs(cmd::logs::LogsArgs),
    /// List deployments (what went where, from which commit, approved by whom).
    Deployments(cmd::deployments::DeploymentsArgs),
    /// What is deployed in an environment now.
    Status(cmd::deployments::StatusArgs),
    /// Approve a run that waits on an environment's protection rules.
    Approve(cmd::deployments::DecideArgs),
    /// Reject a run that waits on an environment's protection rules.
    Reject(cmd::deployments::DecideArgs),
    /// Re-deploy an environment's previous (or a named) deployment.
    Rollback(cmd::deployments::RollbackArgs),
    /// The GitOps agent: keep a target in sync with a deployment repository.
    #[command(subcommand)]
    Gitops(cmd::gitops::GitopsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => cmd::run::main(args).await,
            Command::Lint(args) => cmd::lint::main(args).await,
            Command::List(args) => cmd::list::main(args).await,
            Command::Image(args) => cmd::image::main(args).await,
            Command::Registry(args) => cmd::registry::main(args).await,
            Command::Server(args) => cmd::server::main(args).await,
            Command::Agent(args) => cmd::agent::main(args).await,
            Command::Runs(args) => cmd::runs::main(args).await,
            Command::Logs(args) => cmd::logs::main(args).await,
            Command::Deployments(args) => cmd::deployments::deployments(args).await,
            Command::Status(args) => cmd::deployments::status(args).await,
            Command::Approve(args) => cmd::deployments::decide(args, true).await,
            Command::Reject(args) => cmd::deployments::decide(args, false).await,
            Command::Rollback(args) => cmd::deployments::rollback(args).await,
            Command::Gitops(args) => cmd::gitops::main(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
