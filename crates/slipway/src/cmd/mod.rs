//! One module per subcommand. Each exposes its clap `Args`/`Subcommand` type and
//! `pub async fn main(args) -> anyhow::Result<ExitCode>`.

pub mod image;
pub mod lint;
pub mod list;
pub mod live;
pub mod registry;
pub mod run;
pub mod workflows;
pub mod server;
pub mod agent;
pub mod runs;
pub mod logs;
pub mod deployments;
pub mod gitops;
