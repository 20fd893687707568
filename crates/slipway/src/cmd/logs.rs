//! `slipway logs`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct LogsArgs {}

pub async fn main(_args: LogsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
