//! `slipway agent`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct AgentArgs {}

pub async fn main(_args: AgentArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
