//! `slipway server`: the CI server (webhooks, API, scheduler, embedded agent) on one port.
//! State lives under `--data` (SQLite by default) or in `--database postgres://...`; the
//! repositories, users and agent token come from `--config slipway.toml` (see docs/server.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed on stderr).
    #[arg(long, value_name = "ADDR", env = "SLIPWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the server keeps its state (SQLite file, git mirrors, agent work directories).
    #[arg(long, value_name = "DIR", env = "SLIPWAY_DATA", default_value = "./.slipway-data")]
    pub data: PathBuf,
    /// `sqlite://PATH` or `postgres://...` (default: a SQLite file in the data directory).
    #[arg(long, value_name = "URL", env = "SLIPWAY_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// The server configuration (repositories, users, agent token).
    #[arg(long, value_name = "FILE", env = "SLIPWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Don't run the embedded agent (jobs then need `slipway agent`s).
    #[arg(long)]
    pub no_agent: bool,
}

pub async fn main(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let env = |name: &str| std::env::var(name).ok();
            match server::config::parse(&text, &path.display().to_string(), &env) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        None => server::config::Config::default(),
    };
    if config.users.is_empty() {
        tracing::warn!("No [[user]] is configured: the API is open to anyone who can reach it.");
    }
    let mut options = server::Options::new(args.data.clone(), config);
    options.database_url = args.database.clone();
    options.embedded_agent = !args.no_agent;
    let registry_dir = args.data.join("registry");
    let registry_store = std::sync::Arc::new(
        store::blob::FileStore::open(&registry_dir)
            .with_context(|| format!("opening the registry storage {}", registry_dir.display()))?,
    );
    options.registry = Some(
        registry::Registry::new(registry_store.clone(), registry_store, registry::Options::default())
            .context("configuring the registry")?,
    );
    let state = server::AppState::new(options).await.context("starting the server")?;
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr().context("reading the listening address")?;
    eprintln!("slipway server listening on http://{local} (data: {})", args.data.display());
    if args.config.as_ref().is_some_and(|_| state.config().server.agent_token.is_some()) {
        eprintln!("agents register with the agent_token from the config file");
    }
    let shutdown = CancellationToken::new();
    let mut signals = tokio::task::JoinSet::new();
    {
        let shutdown = shutdown.clone();
        signals.spawn(async move {
            wait_for_signal().await;
            shutdown.cancel();
        });
    }
    let served = server::run(listener, state, shutdown).await;
    signals.abort_all();
    served.context("serving")?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
