//! `slipway gitops`: the pull-model deployment agent (Argo CD's role) and its client
//! commands. `run` keeps apps reconciled and serves the agent's API (webhook, status,
//! rollback, resume); `status`, `sync`, `rollback` and `resume` talk to that API.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use gitops::agent::{Agent, AgentOptions, AppSpec, AppStatus, ServerReport, TargetSpec, Trigger};
use gitops::model::{HealthStatus, SyncStatus};
use gitops::target::kubernetes::KubeOptions;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

#[derive(clap::Subcommand, Debug)]
pub enum GitopsCommand {
    /// Watch deployment repositories and keep their targets in sync (the agent).
    Run(Box<RunArgs>),
    /// Show the apps of a running agent: revision, sync and health status, last sync.
    Status(StatusArgs),
    /// Reconcile an app now (what a push webhook does).
    Sync(AppArgs),
    /// Sync an earlier revision of an app and pause its auto-sync until `resume`.
    Rollback(RollbackArgs),
    /// Resume an app's auto-sync (it follows its branch again).
    Resume(AppArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// A file of apps (`[[app]]` tables) and agent settings; instead of --repo etc.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The deployment repository (read-only access is enough).
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    pub repo: Option<String>,
    /// The app's directory in the repository.
    #[arg(long, value_name = "P", default_value = "")]
    pub path: String,
    #[arg(long, value_name = "B", default_value = "main")]
    pub branch: String,
    /// Where the app runs.
    #[arg(long, value_parser = ["local", "docker", "kubernetes"])]
    pub target: Option<String>,
    /// The app's name (default: the path's last component, or the repository's name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// How often to poll the repository (a webhook syncs at once).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Keep objects that left Git instead of deleting them.
    #[arg(long)]
    pub no_prune: bool,
    /// Report drift but do not revert it.
    #[arg(long)]
    pub no_self_heal: bool,
    /// docker target: the engine (`unix://...`, `tcp://...`; default DOCKER_HOST).
    #[arg(long, value_name = "URL")]
    pub docker_host: Option<String>,
    /// kubernetes target: the kubeconfig (default KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// kubernetes target: the namespace for objects without one.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// local target: where services' release directories go (default DATA/local).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Where the agent keeps its state file and repository mirrors.
    #[arg(long, value_name = "DIR", default_value = ".slipway-gitops")]
    pub data: PathBuf,
    /// The agent's API and webhook address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7979")]
    pub listen: SocketAddr,
    /// A token the agent's API and webhook require (Authorization: Bearer).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SLIPWAY_GITOPS_TOKEN",
        hide_env_values = true
    )]
    pub agent_token: Option<String>,
    /// Report sync status and history to this slipway server.
    #[arg(long, value_name = "URL", env = "SLIPWAY_SERVER")]
    pub server: Option<String>,
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SLIPWAY_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Reconcile every app once, print the statuses and exit (0: all Synced and Healthy).
    #[arg(long)]
    pub once: bool,
    #[arg(long)]
    pub json: bool,
}

/// How client commands reach a running agent.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentClient {
    /// The agent's API address.
    #[arg(
        long,
        value_name = "URL",
        env = "SLIPWAY_GITOPS_AGENT",
        default_value = "http://127.0.0.1:7979"
    )]
    pub agent: String,
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SLIPWAY_GITOPS_TOKEN",
        hide_env_values = true
    )]
    pub agent_token: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Only this app.
    pub app: Option<String>,
    #[command(flatten)]
    pub client: AgentClient,
}

#[derive(clap::Args, Debug)]
pub struct AppArgs {
    pub app: String,
    #[command(flatten)]
    pub client: AgentClient,
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    pub app: String,
    /// The revision (a commit of the deployment repository, or a prefix of one).
    #[arg(long, value_name = "REVISION")]
    pub to: String,
    #[command(flatten)]
    pub client: AgentClient,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    gitops_duration(s).ok_or_else(|| format!("{s:?} is not a duration like 30s, 5m or 1h"))
}

fn gitops_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    };
    Some(Duration::from_secs(secs)).filter(|d| !d.is_zero())
}

/// The `--config` file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    agent: AgentSection,
    #[serde(default)]
    app: Vec<AppSection>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct AgentSection {
    name: Option<String>,
    data: Option<PathBuf>,
    listen: Option<String>,
    token: Option<String>,
    server: Option<String>,
    server_token: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct AppSection {
    name: String,
    repo: String,
    #[serde(default)]
    path: String,
    branch: Option<String>,
    target: String,
    interval: Option<String>,
    prune: Option<bool>,
    self_heal: Option<bool>,
    health_timeout: Option<String>,
    docker_host: Option<String>,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    namespace: Option<String>,
    root: Option<PathBuf>,
}

/// `file:line:col: message` for a byte offset in `text`.
fn at(file: &str, text: &str, offset: usize, message: &str) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{file}:{line}:{col}: {message}")
}

/// `env:NAME` reads the environment.
fn resolve(v: Option<String>, what: &str) -> Result<Option<String>, String> {
    match v {
        Some(s) if s.starts_with("env:") => {
            let name = &s[4..];
            std::env::var(name)
                .map(Some)
                .map_err(|_| format!("{what}: the environment variable {name} is not set"))
        }
        other => Ok(other),
    }
}

fn target_spec(
    target: &str,
    docker_host: Option<String>,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    namespace: Option<String>,
    root: Option<PathBuf>,
) -> Result<TargetSpec, String> {
    Ok(match target {
        "local" => TargetSpec::Local { root },
        "docker" => TargetSpec::Docker {
            endpoint: docker_host,
        },
        "kubernetes" => TargetSpec::Kubernetes(KubeOptions {
            kubeconfig,
            context,
            namespace,
        }),
        other => {
            return Err(format!(
                "target {other:?} is not local, docker or kubernetes"
            ));
        }
    })
}

/// Agent options from the command line or the config file; `Err`: a message for exit 2.
fn options(args: &RunArgs) -> Result<(AgentOptions, SocketAddr), String> {
    let default_name = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gitops-agent".into());
    let server =
        |url: Option<String>, token: Option<String>| url.map(|url| ServerReport { url, token });
    let Some(path) = &args.config else {
        let Some(repo) = args.repo.clone() else {
            return Err("give --repo URL and --target, or --config FILE".into());
        };
        let Some(target) = &args.target else {
            return Err("--target is required with --repo (local, docker or kubernetes)".into());
        };
        let name = args.name.clone().unwrap_or_else(|| {
            let from_path = args
                .path
                .trim_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            if from_path.is_empty() || from_path == "." {
                repo.trim_end_matches('/')
                    .trim_end_matches(".git")
                    .rsplit(['/', ':'])
                    .next()
                    .unwrap_or("app")
                    .to_owned()
            } else {
                from_path
            }
        });
        let mut app = AppSpec::new(
            &name,
            &repo,
            &args.path,
            &args.branch,
            target_spec(
                target,
                args.docker_host.clone(),
                args.kubeconfig.clone(),
                args.context.clone(),
                args.namespace.clone(),
                args.root.clone(),
            )?,
        );
        app.interval = args.interval;
        app.prune = !args.no_prune;
        app.self_heal = !args.no_self_heal;
        return Ok((
            AgentOptions {
                name: default_name,
                data_dir: args.data.clone(),
                apps: vec![app],
                server: server(args.server.clone(), args.token.clone()),
                token: args.agent_token.clone(),
            },
            args.listen,
        ));
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        at(&shown, &text, offset, e.message())
    })?;
    if file.app.is_empty() {
        return Err(format!("{shown}: no [[app]] tables"));
    }
    let find = |needle: &str| text.find(needle).unwrap_or(0);
    let mut apps = Vec::new();
    for a in file.app {
        let here = |m: String| {
            at(
                &shown,
                &text,
                find(&format!("\"{}\"", a.name)),
                &format!("app {}: {m}", a.name),
            )
        };
        let duration = |v: &Option<String>, field: &str, default: Duration| match v {
            None => Ok(default),
            Some(s) => gitops_duration(s).ok_or_else(|| {
                here(format!(
                    "`{field}` {s:?} is not a duration like 30s, 5m or 1h"
                ))
            }),
        };
        let mut spec = AppSpec::new(
            &a.name,
            &a.repo,
            &a.path,
            a.branch.as_deref().unwrap_or("main"),
            target_spec(
                &a.target,
                a.docker_host.clone(),
                a.kubeconfig.clone(),
                a.context.clone(),
                a.namespace.clone(),
                a.root.clone(),
            )
            .map_err(here)?,
        );
        spec.interval = duration(&a.interval, "interval", gitops::agent::DEFAULT_INTERVAL)?;
        spec.health_timeout = duration(&a.health_timeout, "health_timeout", spec.health_timeout)?;
        spec.prune = a.prune.unwrap_or(true);
        spec.self_heal = a.self_heal.unwrap_or(true);
        apps.push(spec);
    }
    let listen = match &file.agent.listen {
        None => args.listen,
        Some(l) => l.parse().map_err(|_| {
            at(
                &shown,
                &text,
                find("listen"),
                &format!("listen {l:?} is not HOST:PORT"),
            )
        })?,
    };
    Ok((
        AgentOptions {
            name: file.agent.name.unwrap_or(default_name),
            data_dir: file.agent.data.unwrap_or_else(|| args.data.clone()),
            apps,
            server: server(
                file.agent.server.or_else(|| args.server.clone()),
                resolve(file.agent.server_token, &format!("{shown}: server_token"))?
                    .or_else(|| args.token.clone()),
            ),
            token: resolve(file.agent.token, &format!("{shown}: token"))?
                .or_else(|| args.agent_token.clone()),
        },
        listen,
    ))
}

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

fn print_statuses(statuses: &[AppStatus], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(statuses)?);
        return Ok(());
    }
    let color = std::io::stdout().is_terminal();
    println!(
        "{:<20} {:<10} {:<12} {:<12} {:<12} {:<7} MESSAGE",
        "APP", "TARGET", "REVISION", "SYNC", "HEALTH", "PAUSED"
    );
    for s in statuses {
        let r = &s.record;
        let rev: String = r
            .revision
            .as_deref()
            .unwrap_or("-")
            .chars()
            .take(12)
            .collect();
        let sync = format!("{:<12}", r.sync.as_str());
        let health = format!("{:<12}", r.health.as_str());
        let sync = paint(
            &sync,
            if r.sync == SyncStatus::Synced {
                "32"
            } else {
                "33"
            },
            color,
        );
        let health = paint(
            &health,
            if r.health == HealthStatus::Healthy {
                "32"
            } else {
                "31"
            },
            color,
        );
        println!(
            "{:<20} {:<10} {:<12} {sync} {health} {:<7} {}",
            s.app,
            s.target,
            rev,
            if r.paused { "yes" } else { "no" },
            r.message
        );
    }
    Ok(())
}

fn all_good(statuses: &[AppStatus]) -> bool {
    statuses
        .iter()
        .all(|s| s.record.sync == SyncStatus::Synced && s.record.health == HealthStatus::Healthy)
}

pub async fn main(command: GitopsCommand) -> anyhow::Result<ExitCode> {
    match command {
        GitopsCommand::Run(args) => run(*args).await,
        GitopsCommand::Status(a) => {
            let path = match &a.app {
                Some(app) => format!("/api/apps/{app}"),
                None => "/api/apps".into(),
            };
            let v = call(&a.client, reqwest::Method::GET, &path, None).await?;
            let statuses: Vec<AppStatus> = if a.app.is_some() {
                vec![serde_json::from_value(v)?]
            } else {
                serde_json::from_value(v)?
            };
            print_statuses(&statuses, a.client.json)?;
            Ok(ExitCode::SUCCESS)
        }
        GitopsCommand::Sync(a) => one(&a.client, &format!("/api/apps/{}/sync", a.app), None).await,
        GitopsCommand::Resume(a) => {
            one(&a.client, &format!("/api/apps/{}/resume", a.app), None).await
        }
        GitopsCommand::Rollback(a) => {
            one(
                &a.client,
                &format!("/api/apps/{}/rollback", a.app),
                Some(serde_json::json!({"revision": a.to})),
            )
            .await
        }
    }
}

async fn call(
    c: &AgentClient,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let url = format!("{}{path}", c.agent.trim_end_matches('/'));
    let mut req = reqwest::Client::new().request(method, &url);
    if let Some(t) = &c.agent_token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("calling the agent at {}", c.agent))?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "the agent answered {status}: {}",
            v["error"].as_str().unwrap_or("(no message)")
        );
    }
    Ok(v)
}

async fn one(
    c: &AgentClient,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<ExitCode> {
    let v = call(c, reqwest::Method::POST, path, body).await?;
    let s: AppStatus = serde_json::from_value(v)?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print_statuses(std::slice::from_ref(&s), false)?;
    }
    Ok(if all_good(std::slice::from_ref(&s)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (opts, listen) = match options(&args) {
        Ok(o) => o,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let names: Vec<String> = opts.apps.iter().map(|a| a.name.clone()).collect();
    let agent = match Agent::new(opts).await {
        Ok(a) => a,
        Err(
            e
            @ (gitops::agent::AgentError::App { .. } | gitops::agent::AgentError::DuplicateApp(_)),
        ) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(anyhow::anyhow!(gitops::chain(&e))),
    };
    if args.once {
        let mut statuses = Vec::new();
        for n in &names {
            statuses.push(
                agent
                    .reconcile(n, Trigger::Poll)
                    .await
                    .map_err(|e| anyhow::anyhow!(gitops::chain(&e)))?,
            );
        }
        print_statuses(&statuses, args.json)?;
        return Ok(if all_good(&statuses) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "slipway gitops: {} app(s); API and webhook on http://{addr} (POST /hooks/sync)",
        names.len()
    );
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        s.cancel();
    });
    agent
        .serve(listener, shutdown)
        .await
        .context("serving the agent's API")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(gitops_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(gitops_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(gitops_duration("0s"), None);
        assert_eq!(gitops_duration("soon"), None);
    }

    #[test]
    fn positions() {
        assert_eq!(at("a.toml", "x = 1\ny = 2\n", 8, "bad"), "a.toml:2:3: bad");
    }
}
