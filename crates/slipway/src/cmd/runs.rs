//! `slipway runs`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct RunsArgs {}

pub async fn main(_args: RunsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
