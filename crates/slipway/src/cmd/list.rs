//! `slipway list`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ListArgs {}

pub async fn main(_args: ListArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
