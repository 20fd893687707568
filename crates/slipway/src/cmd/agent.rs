//! `slipway agent`: lease jobs from a server and run them (host executor).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The server's base URL.
    #[arg(long, value_name = "URL", env = "SLIPWAY_SERVER")]
    pub server: String,
    /// The server's agent registration token (`[server] agent_token`).
    #[arg(long, value_name = "TOKEN", env = "SLIPWAY_AGENT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// `runs-on` labels this agent serves (comma-separated); none: every label.
    #[arg(long, value_name = "L,...", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Where jobs run: `host` (processes on this machine).
    #[arg(long, value_name = "host|docker", default_value = "host")]
    pub executor: String,
    /// The name the agent registers under.
    #[arg(long, value_name = "NAME", default_value = "agent")]
    pub name: String,
    /// Per-job work directories are created under here.
    #[arg(long, value_name = "DIR", default_value = "./.slipway-agent")]
    pub work_dir: PathBuf,
    /// How many jobs to run at once.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub capacity: u16,
}

pub async fn main(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if args.executor != "host" {
        eprintln!("error: --executor {}: only `host` is supported by `slipway agent` so far", args.executor);
        return Ok(ExitCode::from(2));
    }
    let work_dir = std::path::absolute(&args.work_dir).with_context(|| format!("resolving {}", args.work_dir.display()))?;
    let opts = server::agent::AgentOptions {
        server: args.server.clone(),
        token: args.token,
        name: args.name,
        labels: args.labels.into_iter().filter(|l| !l.is_empty()).collect(),
        work_dir,
        capacity: usize::from(args.capacity),
    };
    let stop = CancellationToken::new();
    let mut signals = tokio::task::JoinSet::new();
    {
        let stop1 = stop.clone();
        signals.spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop1.cancel();
        });
        let stop2 = stop.clone();
        signals.spawn(async move {
            if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                term.recv().await;
                stop2.cancel();
            }
        });
    }
    eprintln!("slipway agent serving {}", args.server);
    let result = server::agent::run(opts, stop).await;
    signals.abort_all();
    result.context("running the agent")?;
    Ok(ExitCode::SUCCESS)
}
