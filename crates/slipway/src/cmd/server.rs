//! `slipway server`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ServerArgs {}

pub async fn main(_args: ServerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
