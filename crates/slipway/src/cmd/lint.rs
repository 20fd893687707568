//! `slipway lint`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct LintArgs {}

pub async fn main(_args: LintArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
