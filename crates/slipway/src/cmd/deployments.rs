//! `slipway deployments`, `status`, `approve`, `reject`, `rollback`: the delivery side of the
//! server's API.

use std::process::ExitCode;

use crate::cmd::runs::ClientArgs;

#[derive(clap::Args, Debug)]
pub struct DeploymentsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only deployments to this environment.
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Print the deployments as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The environment.
    pub env: String,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct DecideArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The run that waits.
    pub run: i64,
    /// The environment whose gate to decide.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Why (kept in the audit trail).
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The environment to roll back.
    pub env: String,
    /// The deployment to go back to (default: the last successful one before the current).
    #[arg(long, value_name = "DEPLOYMENT")]
    pub to: Option<i64>,
}

pub async fn deployments(_args: DeploymentsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("slipway deployments: not built yet")
}

pub async fn status(_args: StatusArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("slipway status: not built yet")
}

pub async fn decide(_args: DecideArgs, _approve: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("slipway approve/reject: not built yet")
}

pub async fn rollback(_args: RollbackArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("slipway rollback: not built yet")
}
