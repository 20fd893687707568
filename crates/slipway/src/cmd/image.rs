//! `slipway image build|push|pull|inspect|login`: the daemonless builder and the registry
//! client from the `oci` crate on the command line. Progress goes to stderr; `build`, `push`
//! and `pull` print the image digest on stdout.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use oci::build::{self, BuildOptions};
use oci::layout::Layout;
use oci::manifest::{Compression, media};
use oci::output::{self, Output};
use oci::registry::credentials::{Credential, Credentials, DockerConfig};
use oci::registry::{Client, ClientOptions};
use oci::{Digest, Reference};

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Build an image from a Dockerfile, without a daemon; prints the image digest.
    Build(BuildArgs),
    /// Push an image from the local store (or an OCI layout) to a registry.
    Push(PushArgs),
    /// Pull an image into the local store (or an OCI layout); prints its digest.
    Pull(PullArgs),
    /// Show an image's manifest and config as JSON.
    Inspect(InspectArgs),
    /// Check credentials against a registry and store them in the docker config.
    Login(LoginArgs),
}

#[derive(clap::Args)]
pub struct ClientArgs {
    /// Use plain HTTP (loopback registries always do).
    #[arg(long)]
    insecure: bool,
    /// Upload blobs in chunks of this many bytes instead of one streamed PUT.
    #[arg(long, value_name = "BYTES")]
    chunk_size: Option<u64>,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Name the image (repeatable); these are the tags --push pushes.
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Set a build-time variable (repeatable).
    #[arg(long = "build-arg", value_name = "K=V")]
    build_args: Vec<String>,
    /// Add a label to the image (repeatable).
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// Build this stage instead of the last one.
    #[arg(long)]
    target: Option<String>,
    /// Write the image to oci:DIR or docker-archive:FILE (repeatable).
    #[arg(short = 'o', long = "output")]
    outputs: Vec<String>,
    /// Push every -t tag to its registry.
    #[arg(long)]
    push: bool,
    /// Do not use the layer cache.
    #[arg(long)]
    no_cache: bool,
    /// Pull base images even when the local store has them.
    #[arg(long)]
    pull: bool,
    /// Store and layer cache (default: $XDG_CACHE_HOME/slipway or ~/.cache/slipway).
    #[arg(long, env = "SLIPWAY_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Layer compression: none (default; fastest, deterministic) or gzip (deterministic).
    #[arg(long, default_value = "none", value_parser = ["none", "gzip"])]
    compression: String,
    /// No progress on stderr.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    client: ClientArgs,
    /// The build context directory.
    context: PathBuf,
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// Source: a reference tagged in the local store, or oci:DIR[:tag].
    source: String,
    /// Destination reference (default: the source reference).
    destination: Option<String>,
    #[arg(long, env = "SLIPWAY_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
pub struct PullArgs {
    reference: String,
    /// Also write the image to oci:DIR.
    #[arg(short = 'o', long = "output")]
    output: Option<String>,
    #[arg(long, env = "SLIPWAY_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A registry reference, or oci:DIR[:tag].
    reference: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
pub struct LoginArgs {
    /// Registry host (default: docker.io).
    registry: Option<String>,
    #[arg(short, long)]
    username: String,
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Use plain HTTP.
    #[arg(long)]
    insecure: bool,
}

pub async fn main(cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Build(a) => build_cmd(a).await,
        ImageCommand::Push(a) => push_cmd(a).await,
        ImageCommand::Pull(a) => pull_cmd(a).await,
        ImageCommand::Inspect(a) => inspect_cmd(a).await,
        ImageCommand::Login(a) => login_cmd(a).await,
    }
}

fn client(c: &ClientArgs) -> anyhow::Result<Client> {
    let creds = Credentials::from_docker_config().context("reading the docker config")?;
    let opts = ClientOptions {
        insecure: c.insecure,
        chunk_size: c.chunk_size,
        ..Default::default()
    };
    Ok(Client::new(creds, opts)?)
}

fn cache_dir(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(oci::action::cache_dir_from_env)
}

fn kv(items: &[String], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{what} {s:?}: expected KEY=VALUE"),
        })
        .collect()
}

async fn build_cmd(a: BuildArgs) -> anyhow::Result<ExitCode> {
    let tags: Vec<Reference> = a
        .tags
        .iter()
        .map(|t| t.parse::<Reference>())
        .collect::<Result<_, _>>()?;
    let outputs: Vec<Output> = a
        .outputs
        .iter()
        .map(|o| o.parse::<Output>())
        .collect::<Result<_, _>>()?;
    let push = a.push || outputs.contains(&Output::Registry);
    if push && tags.is_empty() {
        bail!("--push needs at least one -t REF");
    }
    let mut opts = BuildOptions::new(&a.context, cache_dir(a.cache_dir));
    opts.dockerfile = a.file;
    opts.build_args = kv(&a.build_args, "--build-arg")?;
    opts.labels = kv(&a.labels, "--label")?;
    opts.target = a.target;
    opts.tags = tags.iter().map(|t| t.to_string()).collect();
    opts.no_cache = a.no_cache;
    opts.pull = a.pull;
    opts.compression = if a.compression == "gzip" {
        Compression::Gzip
    } else {
        Compression::None
    };
    opts.source_date_epoch =
        oci::action::source_date_epoch_from_env().map_err(anyhow::Error::msg)?;
    let client = client(&a.client)?;
    let quiet = a.quiet;
    let log = move |l: &str| {
        if !quiet {
            eprintln!("{l}");
        }
    };
    let built = match build::build(&opts, &client, &log).await {
        Ok(b) => b,
        Err(e) if e.is_dockerfile_error() => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("building the image")),
    };
    let store = build::Store::open(&opts.cache_dir)?;
    for o in &outputs {
        output::write(&store.layout, &built, &tags, o)?;
    }
    if push {
        for (t, r) in tags
            .iter()
            .zip(output::push(&client, &store.layout, &built, &tags).await?)
        {
            log(&format!("pushed {t}@{}", r.manifest));
        }
    }
    println!("{}", built.manifest.digest);
    Ok(ExitCode::SUCCESS)
}

/// `oci:DIR[:tag]` → the layout and the optional tag.
fn oci_source(s: &str) -> Option<(PathBuf, Option<String>)> {
    let rest = s.strip_prefix("oci:")?;
    Some(match rest.rsplit_once(':') {
        Some((d, t)) if !t.contains('/') && !d.is_empty() => (d.into(), Some(t.to_string())),
        _ => (rest.into(), None),
    })
}

async fn push_cmd(a: PushArgs) -> anyhow::Result<ExitCode> {
    let client = client(&a.client)?;
    let (layout, desc, default_dest, sources) = match oci_source(&a.source) {
        Some((dir, tag)) => {
            let l = Layout::open(&dir)?;
            let d = l.resolve(tag.as_deref())?;
            let name = d.annotations.get(oci::layout::CONTAINERD_NAME).cloned();
            (l, d, name, vec![])
        }
        None => {
            let r: Reference = a.source.parse()?;
            let store = build::Store::open(&cache_dir(a.cache_dir))?;
            let d = store
                .layout
                .resolve(Some(&r.to_string()))
                .with_context(|| {
                    format!(
                        "{} is not in the local store; build or pull it first",
                        a.source
                    )
                })?;
            (store.layout, d, Some(r.to_string()), vec![])
        }
    };
    let dest = a
        .destination
        .or(default_dest)
        .context("name the destination: slipway image push SOURCE DESTINATION")?;
    let dest: Reference = dest.parse()?;
    let built = build::Built {
        manifest: desc.clone(),
        config: desc.clone(),
        image: Default::default(),
        sources,
    };
    let reports = output::push(&client, &layout, &built, std::slice::from_ref(&dest)).await?;
    for r in &reports {
        for (d, how) in &r.blobs {
            eprintln!("{d}: {how:?}");
        }
        println!("{}", r.manifest);
    }
    Ok(ExitCode::SUCCESS)
}

async fn pull_cmd(a: PullArgs) -> anyhow::Result<ExitCode> {
    let client = client(&a.client)?;
    let r: Reference = a.reference.parse()?;
    let store = build::Store::open(&cache_dir(a.cache_dir))?;
    let pulled = client
        .pull(&r, &oci::manifest::host_platform(), &store.layout)
        .await
        .with_context(|| format!("pulling {r}"))?;
    store
        .layout
        .set_ref(&r.to_string(), pulled.descriptor.clone(), None)?;
    if let Some(o) = a.output {
        let out: Output = o.parse()?;
        let built = build::Built {
            manifest: pulled.descriptor.clone(),
            config: pulled.manifest.config.clone(),
            image: Default::default(),
            sources: vec![],
        };
        output::write(&store.layout, &built, std::slice::from_ref(&r), &out)?;
    }
    println!("{}", pulled.descriptor.digest);
    Ok(ExitCode::SUCCESS)
}

async fn inspect_cmd(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let (digest, media_type, manifest_bytes, config) =
        if let Some((dir, tag)) = oci_source(&a.reference) {
            let l = Layout::open(&dir)?;
            let d = l.resolve(tag.as_deref())?;
            let bytes = l.read_blob(&d.digest)?;
            let config = config_of(&bytes, |cd| l.read_blob(cd).ok());
            (d.digest, d.media_type, bytes, config)
        } else {
            let client = client(&a.client)?;
            let r: Reference = a.reference.parse()?;
            let (bytes, mt, digest) = client
                .get_manifest(&r)
                .await
                .with_context(|| format!("inspecting {r}"))?;
            let mut config = None;
            if media::is_manifest(&mt)
                && let Ok(m) = serde_json::from_slice::<oci::manifest::Manifest>(&bytes)
            {
                let tmp = tempfile::tempdir()?;
                let l = Layout::create(tmp.path())?;
                client
                    .fetch_blob(&r, &m.config, &l)
                    .await
                    .with_context(|| format!("fetching the config of {r}"))?;
                config = l
                    .read_blob(&m.config.digest)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
            }
            (digest, mt, bytes, config)
        };
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest_bytes).context("the manifest is not JSON")?;
    let out = serde_json::json!({
        "reference": a.reference,
        "digest": digest.to_string(),
        "mediaType": media_type,
        "manifest": manifest,
        "config": config,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

fn config_of(
    manifest: &[u8],
    read: impl Fn(&Digest) -> Option<Vec<u8>>,
) -> Option<serde_json::Value> {
    let m: oci::manifest::Manifest = serde_json::from_slice(manifest).ok()?;
    serde_json::from_slice(&read(&m.config.digest)?).ok()
}

async fn login_cmd(a: LoginArgs) -> anyhow::Result<ExitCode> {
    let password = match (a.password, a.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the password from stdin")?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            if std::io::stdin().is_terminal() {
                bail!("give the password with --password-stdin (or -p)");
            }
            bail!("give the password with --password-stdin or -p");
        }
    };
    let registry = a.registry.unwrap_or_else(|| "docker.io".into());
    let config = DockerConfig::load_default()?;
    let path = config.path().to_path_buf();
    oci::action::login_and_store(
        &registry,
        Credential {
            username: a.username,
            password,
        },
        config,
        a.insecure,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    eprintln!("Login Succeeded (credentials stored in {})", path.display());
    Ok(ExitCode::SUCCESS)
}
