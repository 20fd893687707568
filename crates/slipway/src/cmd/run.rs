//! `slipway run`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct RunArgs {}

pub async fn main(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
