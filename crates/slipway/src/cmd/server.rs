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
    /// Where artifacts and caches go: `s3://BUCKET[/PREFIX]?endpoint=URL&region=R` (keys from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), instead of files under `--data`. Overrides
    /// the config's `[server.blob_store]`.
    #[arg(long, value_name = "URL", env = "SLIPWAY_BLOB_STORE")]
    pub blob_store: Option<String>,
}

/// `s3://BUCKET[/PREFIX]?endpoint=URL&region=R` as S3 options (keys from `env`).
pub fn parse_blob_store(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<store::blob::S3Options, String> {
    let url = url::Url::parse(text).map_err(|e| format!("--blob-store `{text}`: {e}"))?;
    if url.scheme() != "s3" {
        return Err(format!("--blob-store `{text}`: expected s3://BUCKET[/PREFIX]?endpoint=URL"));
    }
    let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| format!("--blob-store `{text}`: no bucket"))?;
    let prefix = url.path().trim_matches('/');
    let mut options = store::blob::S3Options {
        bucket: bucket.to_owned(),
        endpoint: None,
        region: None,
        access_key_id: env("AWS_ACCESS_KEY_ID"),
        secret_access_key: env("AWS_SECRET_ACCESS_KEY"),
        prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
        // Set by the server to a directory under its data directory.
        spool_dir: PathBuf::new(),
    };
    for (k, v) in url.query_pairs() {
        match &*k {
            "endpoint" => options.endpoint = Some(v.trim_end_matches('/').to_owned()),
            "region" => options.region = Some(v.into_owned()),
            other => return Err(format!("--blob-store `{text}`: unknown parameter `{other}` (endpoint, region)")),
        }
    }
    Ok(options)
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
    let mut config = config;
    if let Some(text) = &args.blob_store {
        let env = |name: &str| std::env::var(name).ok();
        match parse_blob_store(text, &env) {
            Ok(s3) => config.server.blob_store = Some(s3),
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(ExitCode::from(2));
            }
        }
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
    if state.is_open() {
        tracing::warn!(
            "No user is configured ([[user]] or created through the API): the API is open to anyone who can reach it; create the first admin at /admin/users or with POST /api/v1/users."
        );
    }
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

#[cfg(test)]
mod tests {
    use super::parse_blob_store;

    #[test]
    fn blob_store_urls() {
        let env = |name: &str| (name == "AWS_ACCESS_KEY_ID").then(|| "key".to_owned());
        let s3 = parse_blob_store("s3://ci-blobs/slipway/prod?endpoint=http://127.0.0.1:9000/&region=eu-west-1", &env).expect("valid");
        assert_eq!(s3.bucket, "ci-blobs");
        assert_eq!(s3.prefix.as_deref(), Some("slipway/prod"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!((s3.access_key_id.as_deref(), s3.secret_access_key.as_deref()), (Some("key"), None));
        let plain = parse_blob_store("s3://b", &env).expect("valid");
        assert_eq!((plain.prefix, plain.endpoint), (None, None));
        for bad in ["/tmp/blobs", "file:///tmp", "s3://b?endpont=x", "s3:///x"] {
            assert!(parse_blob_store(bad, &env).is_err(), "{bad}");
        }
    }
}
