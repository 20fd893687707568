//! `slipway registry`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct RegistryArgs {}

pub async fn main(_args: RegistryArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
