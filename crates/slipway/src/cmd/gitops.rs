//! `slipway gitops`: the pull-model deployment agent.

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum GitopsCommand {
    /// Watch a deployment repository and keep the target in sync with it.
    Run,
}

pub async fn main(_command: GitopsCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("slipway gitops: not built yet")
}
