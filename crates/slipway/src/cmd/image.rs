//! `slipway image ...`.

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Build an image from a Dockerfile.
    Build {},
}

pub async fn main(_cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
