//! `slipway registry`: serve a standalone OCI distribution registry, and
//! `slipway registry gc`: remove unreferenced blobs and abandoned uploads.
//!
//! Storage is a directory (`--storage`, default `./.slipway-data/registry`) or an
//! S3-compatible bucket (`--s3-bucket`, with the directory as the local upload spool).
//! Users, permissions and limits come from `--config FILE` (a TOML file with a `[registry]`
//! table; values `env:NAME` are read from the environment). See `docs/registry.md`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use registry::{gc, AuthOptions, Limits, Options, Registry};
use serde::Deserialize;
use store::blob::{BlobStore, FileStore, MetaStore, S3Options, S3Store};
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct RegistryArgs {
    #[command(subcommand)]
    pub command: Option<RegistryCommand>,
    /// Address to listen on (port 0 picks a free port; the address is printed on stderr).
    #[arg(long, value_name = "ADDR", env = "SLIPWAY_REGISTRY_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// A TOML file with a `[registry]` table (users, permissions, limits, storage).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Default)]
pub struct StorageArgs {
    /// Storage directory (with S3: the local spool for uploads in progress).
    #[arg(long, alias = "root", value_name = "DIR", env = "SLIPWAY_REGISTRY_STORAGE", global = true)]
    pub storage: Option<PathBuf>,
    /// Keep blobs and records in this S3 bucket instead of the storage directory.
    #[arg(long, value_name = "BUCKET", env = "SLIPWAY_REGISTRY_S3_BUCKET", global = true)]
    pub s3_bucket: Option<String>,
    /// S3-compatible endpoint, e.g. http://127.0.0.1:9000 (default: AWS).
    #[arg(long, value_name = "URL", env = "SLIPWAY_REGISTRY_S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,
    #[arg(long, value_name = "REGION", env = "AWS_REGION", global = true)]
    pub s3_region: Option<String>,
    #[arg(long, value_name = "KEY", env = "AWS_ACCESS_KEY_ID", global = true, hide_env_values = true)]
    pub s3_access_key_id: Option<String>,
    #[arg(long, value_name = "SECRET", env = "AWS_SECRET_ACCESS_KEY", global = true, hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long, value_name = "PREFIX", global = true)]
    pub s3_prefix: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum RegistryCommand {
    /// Remove blobs no manifest references and abandoned uploads (safe while serving).
    Gc(GcArgs),
}

#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Keep unreferenced blobs younger than this (e.g. 30m, 1h, 90s).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub grace: Duration,
    /// Remove upload files idle for longer than this.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub upload_expiry: Duration,
    /// Report what would be removed without removing it.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().map_err(|_| format!("invalid duration {s:?}: expected e.g. 90s, 30m, 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("invalid duration unit in {s:?}: use s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

/// The config file: a `[registry]` table (other tables belong to other commands).
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    registry: RegistrySection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrySection {
    listen: Option<SocketAddr>,
    storage: Option<PathBuf>,
    s3: Option<S3Section>,
    #[serde(default)]
    auth: AuthOptions,
    #[serde(default)]
    limits: Limits,
    upload_expiry_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Section {
    bucket: String,
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    prefix: Option<String>,
}

/// `env:NAME` → the variable's value.
fn resolve(value: &mut Option<String>, what: &str) -> anyhow::Result<()> {
    if let Some(v) = value {
        if let Some(var) = v.strip_prefix("env:") {
            *value = Some(std::env::var(var).with_context(|| format!("{what}: environment variable {var} is not set"))?);
        }
    }
    Ok(())
}

fn load_config(path: &Path) -> anyhow::Result<RegistrySection> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(":{line}:{col}")
        });
        anyhow::anyhow!("{}{}: error: {}", path.display(), at.unwrap_or_default(), e.message())
    })?;
    let mut section = file.registry;
    resolve(&mut section.auth.token_key, "registry.auth.token_key")?;
    for user in &mut section.auth.users {
        resolve(&mut user.password, &format!("registry.auth.user {}", user.name))?;
        resolve(&mut user.token, &format!("registry.auth.user {}", user.name))?;
    }
    if let Some(s3) = &mut section.s3 {
        resolve(&mut s3.access_key_id, "registry.s3.access_key_id")?;
        resolve(&mut s3.secret_access_key, "registry.s3.secret_access_key")?;
    }
    Ok(section)
}

struct Stores {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetaStore>,
    description: String,
}

fn open_stores(args: &StorageArgs, config: &RegistrySection) -> anyhow::Result<Stores> {
    let dir = args.storage.clone().or_else(|| config.storage.clone()).unwrap_or_else(|| PathBuf::from("./.slipway-data/registry"));
    let s3 = match (&args.s3_bucket, &config.s3) {
        (Some(bucket), section) => Some(S3Options {
            bucket: bucket.clone(),
            endpoint: args.s3_endpoint.clone().or_else(|| section.as_ref().and_then(|s| s.endpoint.clone())),
            region: args.s3_region.clone().or_else(|| section.as_ref().and_then(|s| s.region.clone())),
            access_key_id: args.s3_access_key_id.clone().or_else(|| section.as_ref().and_then(|s| s.access_key_id.clone())),
            secret_access_key: args.s3_secret_access_key.clone().or_else(|| section.as_ref().and_then(|s| s.secret_access_key.clone())),
            prefix: args.s3_prefix.clone().or_else(|| section.as_ref().and_then(|s| s.prefix.clone())),
            spool_dir: dir.join("uploads"),
        }),
        (None, Some(s)) => Some(S3Options {
            bucket: s.bucket.clone(),
            endpoint: args.s3_endpoint.clone().or_else(|| s.endpoint.clone()),
            region: args.s3_region.clone().or_else(|| s.region.clone()),
            access_key_id: args.s3_access_key_id.clone().or_else(|| s.access_key_id.clone()),
            secret_access_key: args.s3_secret_access_key.clone().or_else(|| s.secret_access_key.clone()),
            prefix: args.s3_prefix.clone().or_else(|| s.prefix.clone()),
            spool_dir: dir.join("uploads"),
        }),
        (None, None) => None,
    };
    match s3 {
        Some(options) => {
            let description = format!("s3 bucket {} (spool {})", options.bucket, options.spool_dir.display());
            let store = Arc::new(S3Store::open(options).context("opening the S3 storage")?);
            Ok(Stores { blobs: store.clone(), meta: store, description })
        }
        None => {
            let store = Arc::new(FileStore::open(&dir).with_context(|| format!("opening the storage directory {}", dir.display()))?);
            Ok(Stores { blobs: store.clone(), meta: store, description: format!("directory {}", dir.display()) })
        }
    }
}

pub async fn main(args: RegistryArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => load_config(path)?,
        None => RegistrySection::default(),
    };
    let stores = open_stores(&args.storage, &config)?;
    match &args.command {
        Some(RegistryCommand::Gc(gc_args)) => run_gc(&stores, gc_args).await,
        None => serve(&args, config, stores).await,
    }
}

async fn run_gc(stores: &Stores, args: &GcArgs) -> anyhow::Result<ExitCode> {
    let options = gc::GcOptions { grace: args.grace, upload_expiry: args.upload_expiry, dry_run: args.dry_run };
    let report = gc::collect(stores.blobs.as_ref(), stores.meta.as_ref(), &options).await.context("garbage collection")?;
    if args.json {
        let json = serde_json::json!({
            "repositories": report.repositories,
            "manifests": report.manifests,
            "blobs_kept": report.blobs_kept,
            "blobs_removed": report.blobs_removed,
            "bytes_removed": report.bytes_removed,
            "uploads_removed": report.uploads_removed,
            "dry_run": args.dry_run,
        });
        println!("{json}");
    } else {
        println!(
            "{}{} blobs removed ({} bytes), {} kept; {} abandoned uploads removed; {} manifests in {} repositories",
            if args.dry_run { "dry run: " } else { "" },
            report.blobs_removed,
            report.bytes_removed,
            report.blobs_kept,
            report.uploads_removed,
            report.manifests,
            report.repositories
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: &RegistryArgs, config: RegistrySection, stores: Stores) -> anyhow::Result<ExitCode> {
    let listen = args.listen.or(config.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5000)));
    let mut options = Options { auth: config.auth, limits: config.limits, ..Options::default() };
    if let Some(expiry) = config.upload_expiry_secs {
        options.upload_expiry_secs = expiry;
    }
    if options.auth.users.is_empty() && !listen.ip().is_loopback() {
        tracing::warn!(%listen, "No users configured: anyone who can reach the registry may push.");
    }
    let registry = Registry::new(stores.blobs, stores.meta, options).context("invalid registry configuration")?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr().context("reading the listening address")?;
    eprintln!("slipway registry listening on http://{local} (storage: {})", stores.description);
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            wait_for_signal().await;
            shutdown.cancel();
        }
    });
    let result = registry::serve(listener, registry, shutdown.clone()).await;
    signals.abort();
    result.context("serving the registry")?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("h").is_err());
    }
}
