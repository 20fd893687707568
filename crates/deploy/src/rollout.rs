//! One release-directory deploy through any [`Host`]: install a new release, switch `current`,
//! restart the service, check its health, and switch back when anything fails.
//!
//! Order of events (each written to `releases.json` before the next, so a deploy killed
//! half-way leaves a `pending` release that never became `current`):
//!
//! 1. unpack the source into `releases/<id>` (all at once: staged, then renamed)
//! 2. `pre` in the release directory — a failure stops here; nothing serving changed
//! 3. stop the old service, point `current` at the new release, start the new service
//! 4. health check (HTTP GET 2xx, or a command exiting 0), retried until the timeout;
//!    then `post` in the release directory
//! 5. on a failure in 3–4: stop the new service, point `current` back, restart the previous
//!    release's service with its recorded command and environment; the error says so
//! 6. prune releases beyond `keep`

use std::path::PathBuf;
use std::time::Duration;

use crate::host::{Host, HostError};
use crate::release::{Releases, is_safe_id};
use crate::source::{Source, SourceError};
use crate::supervisor::{self, Service, SupervisorError};

/// Progress lines for the step log.
pub type Log<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// How long a health check may take when no timeout is given.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause between health check attempts.
const HEALTH_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("preparing {source_name}")]
    Source {
        source_name: String,
        source: SourceError,
    },
    #[error("{path} on {host} is not a valid releases file (fix or remove it)")]
    State {
        host: String,
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} on {host} names an unsafe release id {id:?}")]
    UnsafeId {
        host: String,
        path: String,
        id: String,
    },
    #[error(
        "`pre` failed in release {release} (exit status {status}): {output}; nothing was switched"
    )]
    Pre {
        release: String,
        status: i32,
        output: String,
    },
    #[error("release {release} failed: {reason}; rolled back: {previous} keeps serving")]
    RolledBack {
        release: String,
        reason: String,
        previous: String,
    },
    #[error(
        "release {release} failed: {reason}; there is no previous release, so nothing is serving"
    )]
    NoPrevious { release: String, reason: String },
    #[error(
        "release {release} failed: {reason}; rolling back to {previous} failed too: {rollback}"
    )]
    RollbackFailed {
        release: String,
        reason: String,
        previous: String,
        rollback: String,
    },
    #[error("unpacking {source_name} panicked")]
    Join { source_name: String },
}

/// What proves a release healthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// HTTP GET from the deploying machine; any 2xx passes.
    Url(String),
    /// `sh -c` on the target host, in the release directory; exit 0 passes.
    Command(String),
}

/// A deploy's settings (the action's inputs, parsed).
#[derive(Clone, Debug)]
pub struct Options {
    /// The release root (on the target host).
    pub root: String,
    /// The service command, run from the release directory; `None`: no service is managed.
    pub command: Option<String>,
    pub env: Vec<(String, String)>,
    pub pre: Option<String>,
    pub post: Option<String>,
    pub health: Option<Health>,
    pub health_timeout: Duration,
    /// How long a stopping service gets between SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
    pub keep: usize,
}

impl Options {
    pub fn new(root: impl Into<String>) -> Options {
        Options {
            root: root.into(),
            command: None,
            env: Vec::new(),
            pre: None,
            post: None,
            health: None,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            stop_timeout: Duration::from_secs(10),
            keep: crate::release::DEFAULT_KEEP,
        }
    }
}

/// A deploy that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    pub release: String,
    pub digest: String,
    pub previous: Option<String>,
    /// Release directories removed by pruning.
    pub pruned: Vec<String>,
}

fn state_path(root: &str) -> String {
    format!("{root}/releases.json")
}

async fn load(host: &dyn Host, root: &str) -> Result<Releases, RolloutError> {
    let path = state_path(root);
    let bytes = host.read_file(&path).await?;
    let r = Releases::parse(bytes.as_deref()).map_err(|source| RolloutError::State {
        host: host.name(),
        path: path.clone(),
        source,
    })?;
    for rel in &r.releases {
        if !is_safe_id(&rel.id) {
            return Err(RolloutError::UnsafeId {
                host: host.name(),
                path,
                id: rel.id.clone(),
            });
        }
    }
    Ok(r)
}

async fn save(host: &dyn Host, root: &str, r: &Releases) -> Result<(), HostError> {
    host.write_file(&state_path(root), &r.to_json()).await
}

/// Deploys `source` onto `host` under `opts.root`, holding the root's deploy lock: a second
/// deploy to the same root at the same time fails at once with [`HostError::Busy`].
pub async fn deploy(
    host: &dyn Host,
    source: &Source,
    opts: &Options,
    log: Log<'_>,
) -> Result<Deployed, RolloutError> {
    let root = opts.root.trim_end_matches('/');
    let root = if root.is_empty() { "/" } else { root };
    let lock = host.lock(root).await?;
    let result = deploy_locked(host, source, opts, root, log).await;
    host.unlock(lock).await;
    result
}

async fn deploy_locked(
    host: &dyn Host,
    source: &Source,
    opts: &Options,
    root: &str,
    log: Log<'_>,
) -> Result<Deployed, RolloutError> {
    host.mkdir_p(&format!("{root}/releases")).await?;
    let mut state = load(host, root).await?;

    let digest = {
        let s = source.clone();
        tokio::task::spawn_blocking(move || s.digest())
            .await
            .map_err(|_| RolloutError::Join {
                source_name: source.describe(),
            })?
            .map_err(|e| RolloutError::Source {
                source_name: source.describe(),
                source: e,
            })?
    };
    // A release directory that releases.json does not know (the file was lost or restored
    // from an older copy) is never overwritten: skip to a free id.
    let mut id = state.next_id(&digest);
    while state.get(&id).is_some()
        || host
            .exec(&format!("test -e releases/{id}"), root, &[])
            .await?
            .success()
    {
        state.next += 1;
        id = state.next_id(&digest);
    }
    log(&format!(
        "Installing {} ({digest}) as release {id} on {}",
        source.describe(),
        host.name()
    ));
    install(host, source, root, &id).await?;
    let id2 = state.begin(
        &digest,
        &source.describe(),
        opts.command.clone(),
        opts.env.clone(),
    );
    debug_assert_eq!(id, id2);
    if let Some(r) = state.releases.last_mut() {
        match &opts.health {
            Some(Health::Url(u)) => r.health_url = Some(u.clone()),
            Some(Health::Command(c)) => r.health_cmd = Some(c.clone()),
            None => {}
        }
    }
    save(host, root, &state).await?;
    let release_dir = format!("{root}/releases/{id}");

    if let Some(pre) = &opts.pre {
        log(&format!("Running pre in {release_dir}"));
        let out = host.exec(pre, &release_dir, &opts.env).await?;
        if !out.success() {
            state.fail(&id, state.current.clone().as_deref());
            save(host, root, &state).await?;
            return Err(RolloutError::Pre {
                release: id,
                status: out.status,
                output: out.tail(),
            });
        }
    }

    let previous = state.current.clone();
    let switched = switch_to(host, root, &id, opts, log).await;
    let outcome = match switched {
        Ok(svc) => check(host, root, &id, svc.as_ref(), opts, log).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(reason) = outcome {
        log(&format!("Release {id} failed: {reason}"));
        return Err(roll_back(
            host,
            root,
            &mut state,
            &id,
            previous.as_deref(),
            reason,
            opts,
            log,
        )
        .await);
    }

    state.activate(&id);
    let pruned = state.prune(opts.keep);
    save(host, root, &state).await?;
    for p in &pruned {
        log(&format!("Pruning release {p}"));
        host.remove_all(&format!("{root}/releases/{p}")).await?;
    }
    log(&format!("Release {id} is live ({})", host.name()));
    Ok(Deployed {
        release: id,
        digest,
        previous,
        pruned,
    })
}

async fn install(
    host: &dyn Host,
    source: &Source,
    root: &str,
    id: &str,
) -> Result<(), RolloutError> {
    let staging_parent = host.local_staging(root);
    let tmp = match &staging_parent {
        Some(p) => tempfile::Builder::new().prefix(".staging-").tempdir_in(p),
        None => tempfile::Builder::new()
            .prefix("slipway-release-")
            .tempdir(),
    }
    .map_err(|e| HostError::Io {
        action: "creating a staging directory for",
        path: PathBuf::from(root),
        source: e,
    })?;
    let staged = tmp.path().join("tree");
    {
        let (s, dst) = (source.clone(), staged.clone());
        tokio::task::spawn_blocking(move || s.unpack(&dst))
            .await
            .map_err(|_| RolloutError::Join {
                source_name: source.describe(),
            })?
            .map_err(|e| RolloutError::Source {
                source_name: source.describe(),
                source: e,
            })?;
    }
    let dst = format!("{root}/releases/{id}");
    host.remove_all(&dst).await?;
    host.install(&staged, &dst).await?;
    Ok(())
}

/// Stops what serves, points `current` at `id` and starts its service.
async fn switch_to(
    host: &dyn Host,
    root: &str,
    id: &str,
    opts: &Options,
    log: Log<'_>,
) -> Result<Option<Service>, RolloutError> {
    if let Some(old) = supervisor::stop(host, root, opts.stop_timeout).await? {
        log(&format!(
            "Stopped the service of release {} (pid {})",
            old.release, old.pid
        ));
    }
    host.point_symlink(&format!("{root}/current"), Some(&format!("releases/{id}")))
        .await?;
    log(&format!("current -> releases/{id}"));
    match &opts.command {
        Some(cmd) => {
            let svc = supervisor::start(host, root, id, cmd, &opts.env).await?;
            log(&format!(
                "Started the service of release {id} (pid {})",
                svc.pid
            ));
            Ok(Some(svc))
        }
        None => Ok(None),
    }
}

/// Health check, then `post`; the reason on failure.
async fn check(
    host: &dyn Host,
    root: &str,
    id: &str,
    svc: Option<&Service>,
    opts: &Options,
    log: Log<'_>,
) -> Result<(), String> {
    let dir = format!("{root}/releases/{id}");
    if let Some(health) = &opts.health {
        log(&format!(
            "Health check: {}",
            match health {
                Health::Url(u) => format!("GET {u}"),
                Health::Command(c) => format!("`{c}`"),
            }
        ));
        wait_healthy(host, root, &dir, health, svc, opts).await?;
        if let Some(svc) = svc
            && !supervisor::is_running(host, svc)
                .await
                .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "the health check passed but the service is not running (something else answered?); its log: {}",
                supervisor::log_tail(host, root, &svc.release).await
            ));
        }
        log("Healthy");
    } else if let Some(svc) = svc
        && !supervisor::is_running(host, svc)
            .await
            .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "the service exited at once; its log: {}",
            supervisor::log_tail(host, root, &svc.release).await
        ));
    }
    if let Some(post) = &opts.post {
        log(&format!("Running post in {dir}"));
        let out = host
            .exec(post, &dir, &opts.env)
            .await
            .map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(format!(
                "`post` exited with status {}: {}",
                out.status,
                out.tail()
            ));
        }
    }
    Ok(())
}

async fn wait_healthy(
    host: &dyn Host,
    root: &str,
    dir: &str,
    health: &Health,
    svc: Option<&Service>,
    opts: &Options,
) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("building an HTTP client: {e}"))?;
    let deadline = tokio::time::Instant::now() + opts.health_timeout;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last = match health {
            Health::Url(url) => match client.get(url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("GET {url} answered {}", r.status()),
                Err(e) => format!("GET {url}: {}", error_chain(&e)),
            },
            Health::Command(cmd) => match host.exec(cmd, dir, &opts.env).await {
                Ok(out) if out.success() => return Ok(()),
                Ok(out) => format!("`{cmd}` exited with status {}: {}", out.status, out.tail()),
                Err(e) => format!("`{cmd}`: {e}"),
            },
        };
        if let Some(svc) = svc
            && !supervisor::is_running(host, svc)
                .await
                .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "the service exited before it became healthy ({last}); its log: {}",
                supervisor::log_tail(host, root, &svc.release).await
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the health check did not pass within {:?} ({attempts} attempts; last: {last})",
                opts.health_timeout
            ));
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[allow(clippy::too_many_arguments)]
async fn roll_back(
    host: &dyn Host,
    root: &str,
    state: &mut Releases,
    id: &str,
    previous: Option<&str>,
    reason: String,
    opts: &Options,
    log: Log<'_>,
) -> RolloutError {
    // Set when the restored release does not pass the health check either.
    let mut unhealthy: Option<String> = None;
    let result: Result<(), RolloutError> = async {
        supervisor::stop(host, root, opts.stop_timeout).await?;
        let prev = previous.and_then(|p| state.get(p)).cloned();
        host.point_symlink(
            &format!("{root}/current"),
            prev.as_ref()
                .map(|p| format!("releases/{}", p.id))
                .as_deref(),
        )
        .await?;
        if let Some(p) = &prev {
            log(&format!("Rolled back: current -> releases/{}", p.id));
            if let Some(cmd) = &p.command {
                let svc = supervisor::start(host, root, &p.id, cmd, &p.env).await?;
                log(&format!(
                    "Restarted the service of release {} (pid {})",
                    p.id, svc.pid
                ));
                // The previous release is only said to serve once it passes the health
                // check it was deployed with.
                let health = match (&p.health_url, &p.health_cmd) {
                    (Some(u), _) => Some(Health::Url(u.clone())),
                    (None, Some(c)) => Some(Health::Command(c.clone())),
                    (None, None) => None,
                };
                if let Some(health) = &health {
                    let dir = format!("{root}/releases/{}", p.id);
                    match wait_healthy(host, root, &dir, health, Some(&svc), opts).await {
                        Ok(()) => log(&format!("Release {} is healthy again", p.id)),
                        Err(e) => {
                            unhealthy = Some(format!(
                                "release {} did not become healthy again: {e}",
                                p.id
                            ))
                        }
                    }
                }
            }
        }
        state.fail(id, prev.as_ref().map(|p| p.id.as_str()));
        save(host, root, state).await?;
        Ok(())
    }
    .await;
    match (result, previous) {
        (Ok(()), Some(p)) if unhealthy.is_some() => RolloutError::RollbackFailed {
            release: id.into(),
            reason,
            previous: format!("release {p}"),
            rollback: unhealthy.unwrap_or_default(),
        },
        (Ok(()), Some(p)) => RolloutError::RolledBack {
            release: id.into(),
            reason,
            previous: format!("release {p}"),
        },
        (Ok(()), None) => RolloutError::NoPrevious {
            release: id.into(),
            reason,
        },
        (Err(e), p) => RolloutError::RollbackFailed {
            release: id.into(),
            reason,
            previous: p.map_or_else(|| "nothing".into(), |p| format!("release {p}")),
            rollback: error_chain(&e),
        },
    }
}
