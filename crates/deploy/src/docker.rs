//! The `docker` target: replace an app's container on a Docker (or Podman) engine.
//!
//! Every container of app `NAME` carries the label `slipway.app=NAME` and is named
//! `NAME-<12 hex of the image digest>`; once healthy it gets the restart policy
//! `unless-stopped`. A deploy:
//!
//! 1. makes sure the image is present (pulls it, with credentials when given, unless the
//!    engine has it; `pull: always` pulls anyway) and resolves its digest
//! 2. `start-first` (default without published ports or host networking): starts the new
//!    container beside the old one; `stop-first` (default with `ports` or `network: host`,
//!    where both cannot bind the same port): stops — not removes — the old one first
//! 3. checks the new container: `health-url` (HTTP GET from here, 2xx), `health-cmd` (exec in
//!    the container, exit 0), else the image's own HEALTHCHECK, else "still running";
//!    a container that exits or restarts fails at once
//! 4. success: removes the old containers. Failure: removes the new container and starts
//!    the old one again if it was stopped; the error says the old one keeps serving.

use std::collections::HashMap;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures::StreamExt;
use indexmap::IndexMap;

use crate::action::{ActionError, Inputs};

const HEALTH_INTERVAL: Duration = Duration::from_millis(200);
const APP_LABEL: &str = "slipway.app";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "unsupported docker-host {0:?} (use unix:///path/docker.sock, tcp://host:port or http://host:port)"
    )]
    Endpoint(String),
    #[error("connecting to the Docker engine at {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("{action}: {message}")]
    Api { action: String, message: String },
    #[error("pulling {image}: {message}")]
    Pull { image: String, message: String },
    #[error("invalid `ports` entry {0:?} (expected [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp])")]
    Port(String),
    #[error("container {container} failed: {reason}; rolled back: {old} keeps serving")]
    RolledBack {
        container: String,
        reason: String,
        old: String,
    },
    #[error(
        "container {container} failed: {reason}; it was removed (no earlier container of {app} was running)"
    )]
    FailedFirst {
        container: String,
        app: String,
        reason: String,
    },
    #[error("container {container} failed: {reason}; rolling back failed too: {rollback}")]
    RollbackFailed {
        container: String,
        reason: String,
        rollback: String,
    },
}

fn engine_message(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        other => other.to_string(),
    }
}

fn api(action: impl Into<String>) -> impl FnOnce(BollardError) -> DockerError {
    let action = action.into();
    move |e| DockerError::Api {
        action,
        message: engine_message(&e),
    }
}

/// How the old container makes way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    StartFirst,
    StopFirst,
}

/// A `docker` deploy's settings.
#[derive(Clone, Debug)]
pub struct DockerDeploy {
    /// `unix://...`, `tcp://...`; `None`: `DOCKER_HOST` or the default socket.
    pub endpoint: Option<String>,
    pub app: String,
    pub image: String,
    pub credentials: Option<(String, String)>,
    pub always_pull: bool,
    /// Overrides the image's command: run with `sh -c` (the image needs `/bin/sh`).
    pub command: Option<String>,
    pub env: Vec<(String, String)>,
    /// `[IP:]HOST:CONTAINER[/proto]`.
    pub ports: Vec<String>,
    pub network: Option<String>,
    pub health: Option<crate::rollout::Health>,
    pub health_timeout: Duration,
    pub stop_timeout: Duration,
    pub strategy: Option<Strategy>,
}

/// A finished deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    pub container: String,
    pub digest: String,
    /// The containers it replaced (removed).
    pub replaced: Vec<String>,
}

/// Connects to the engine and pings it, so an unreachable engine is reported as such.
pub async fn connect(endpoint: Option<&str>) -> Result<Docker, DockerError> {
    let shown = endpoint
        .map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    let docker = if let Some(path) = shown.strip_prefix("unix://") {
        Docker::connect_with_unix(path, 120, API_DEFAULT_VERSION)
    } else if shown.starts_with('/') {
        Docker::connect_with_unix(&shown, 120, API_DEFAULT_VERSION)
    } else if shown.starts_with("tcp://") || shown.starts_with("http://") {
        Docker::connect_with_http(&shown, 120, API_DEFAULT_VERSION)
    } else {
        return Err(DockerError::Endpoint(shown));
    };
    let docker = docker.map_err(|e| DockerError::Connect {
        endpoint: shown.clone(),
        message: e.to_string(),
    })?;
    docker.ping().await.map_err(|e| DockerError::Connect {
        endpoint: shown,
        message: engine_message(&e),
    })?;
    Ok(docker)
}

fn pull_reference(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_owned(), None);
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        (image.to_owned(), None)
    } else {
        (image.to_owned(), Some("latest".to_owned()))
    }
}

fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_owned()
        }
        _ => "https://index.docker.io/v1/".to_owned(),
    }
}

/// Pulls `image` when needed; returns its digest: the `@sha256:` of the reference, else the
/// registry digest the engine recorded, else the image id.
async fn ensure_image(
    docker: &Docker,
    d: &DockerDeploy,
    log: crate::rollout::Log<'_>,
) -> Result<String, DockerError> {
    let present = match docker.inspect_image(&d.image).await {
        Ok(_) => true,
        Err(BollardError::DockerResponseServerError {
            status_code: 404, ..
        }) => false,
        Err(e) => return Err(api(format!("inspecting image {}", d.image))(e)),
    };
    if !present || d.always_pull {
        log(&format!("Pulling {}", d.image));
        let (from_image, tag) = pull_reference(&d.image);
        let options = CreateImageOptions {
            from_image: Some(from_image),
            tag,
            ..Default::default()
        };
        let credentials = d
            .credentials
            .as_ref()
            .map(|(user, password)| DockerCredentials {
                username: Some(user.clone()),
                password: Some(password.clone()),
                serveraddress: Some(registry_of(&d.image)),
                ..Default::default()
            });
        let mut progress = docker.create_image(Some(options), None, credentials);
        while let Some(item) = progress.next().await {
            let message = match item {
                Ok(info) => info.error_detail.and_then(|e| e.message),
                Err(e) => Some(engine_message(&e)),
            };
            if let Some(message) = message {
                return Err(DockerError::Pull {
                    image: d.image.clone(),
                    message,
                });
            }
        }
    }
    let info = docker
        .inspect_image(&d.image)
        .await
        .map_err(|e| DockerError::Pull {
            image: d.image.clone(),
            message: engine_message(&e),
        })?;
    if let Some((_, digest)) = d.image.split_once('@') {
        return Ok(digest.to_owned());
    }
    let repo = d
        .image
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or(d.image.as_str(), |(r, _)| r);
    let from_repo = info
        .repo_digests
        .unwrap_or_default()
        .into_iter()
        .find_map(|rd| {
            rd.split_once('@')
                .filter(|(r, _)| *r == repo)
                .map(|(_, dg)| dg.to_owned())
        });
    Ok(from_repo.or(info.id).unwrap_or_default())
}

fn short(digest: &str) -> String {
    digest
        .rsplit(':')
        .next()
        .unwrap_or(digest)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect()
}

type PortBindings = HashMap<String, Option<Vec<PortBinding>>>;

/// The exposed container ports and their host bindings.
fn parse_ports(ports: &[String]) -> Result<(HashMap<String, ()>, PortBindings), DockerError> {
    let mut exposed = HashMap::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in ports {
        let (spec, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
        let parts: Vec<&str> = spec.split(':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [h, c] => (None, *h, *c),
            [ip, h, c] => (Some(*ip), *h, *c),
            _ => return Err(DockerError::Port(p.clone())),
        };
        if host.parse::<u16>().is_err()
            || container.parse::<u16>().is_err()
            || !matches!(proto, "tcp" | "udp" | "sctp")
        {
            return Err(DockerError::Port(p.clone()));
        }
        let key = format!("{container}/{proto}");
        exposed.insert(key.clone(), ());
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: ip.map(str::to_owned),
                host_port: Some(host.to_owned()),
            });
    }
    Ok((exposed, bindings))
}

async fn logs_tail(docker: &Docker, id: &str) -> String {
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        tail: "20".to_owned(),
        ..Default::default()
    };
    let mut logs = docker.logs(id, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    let t = text.trim();
    if t.is_empty() {
        "(no output)".into()
    } else {
        crate::host::tail_chars(t, 600)
    }
}

async fn remove(docker: &Docker, name: &str) -> Result<(), DockerError> {
    match docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
    {
        Ok(())
        | Err(BollardError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(api(format!("removing container {name}"))(e)),
    }
}

async fn stop(docker: &Docker, name: &str, grace: Duration) -> Result<(), DockerError> {
    let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
    match docker
        .stop_container(
            name,
            Some(StopContainerOptions {
                t: Some(t),
                ..Default::default()
            }),
        )
        .await
    {
        Ok(())
        | Err(BollardError::DockerResponseServerError {
            status_code: 304 | 404,
            ..
        }) => Ok(()),
        Err(e) => Err(api(format!("stopping container {name}"))(e)),
    }
}

/// The app's containers (name, running), oldest first.
async fn app_containers(docker: &Docker, app: &str) -> Result<Vec<(String, bool)>, DockerError> {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{APP_LABEL}={app}")])]);
    let mut list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(api(format!("listing the containers of {app}")))?;
    list.sort_by_key(|c| c.created.unwrap_or(0));
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let name = c.names?.first()?.trim_start_matches('/').to_owned();
            Some((name, c.state.is_some_and(|s| s.to_string() == "running")))
        })
        .collect())
}

/// Runs `cmd` with `sh -c` in the container; the exit code and output.
async fn exec(docker: &Docker, container: &str, cmd: &str) -> Result<(i64, String), DockerError> {
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(vec!["sh".to_owned(), "-c".to_owned(), cmd.to_owned()]),
                ..Default::default()
            },
        )
        .await
        .map_err(api(format!("creating an exec in {container}")))?;
    let started = docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                detach: false,
                ..Default::default()
            }),
        )
        .await
        .map_err(api(format!("starting an exec in {container}")))?;
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } = started {
        while let Some(Ok(chunk)) = output.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
    }
    let info = docker
        .inspect_exec(&exec.id)
        .await
        .map_err(api(format!("inspecting an exec in {container}")))?;
    Ok((
        info.exit_code.unwrap_or(-1),
        crate::host::tail_chars(text.trim(), 400),
    ))
}

/// Waits until `name` is healthy; the reason when it is not.
async fn wait_healthy(docker: &Docker, name: &str, d: &DockerDeploy) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + d.health_timeout;
    loop {
        let info = docker
            .inspect_container(name, None)
            .await
            .map_err(|e| engine_message(&e))?;
        let state = info.state.unwrap_or_default();
        let restarts = info.restart_count.unwrap_or(0);
        let status = state.status.map(|s| s.to_string()).unwrap_or_default();
        if !state.running.unwrap_or(false) || restarts > 0 || status == "restarting" {
            return Err(format!(
                "the container exited (exit code {}); its log: {}",
                state.exit_code.unwrap_or(-1),
                logs_tail(docker, name).await
            ));
        }
        let last = match &d.health {
            Some(crate::rollout::Health::Url(url)) => match client.get(url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("GET {url} answered {}", r.status()),
                Err(e) => format!("GET {url}: {e}"),
            },
            Some(crate::rollout::Health::Command(cmd)) => match exec(docker, name, cmd).await {
                Ok((0, _)) => return Ok(()),
                Ok((code, out)) => format!("`{cmd}` exited with {code}: {out}"),
                Err(e) => e.to_string(),
            },
            None => match state.health.and_then(|h| h.status).map(|s| s.to_string()) {
                Some(s) if s == "healthy" => return Ok(()),
                Some(s) if s == "unhealthy" => {
                    return Err("the image's HEALTHCHECK reports unhealthy".into());
                }
                Some(s) if !s.is_empty() && s != "none" => format!("HEALTHCHECK status {s}"),
                // No health check at all: running is all we can know.
                _ => return Ok(()),
            },
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the health check did not pass within {:?} (last: {last})",
                d.health_timeout
            ));
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}

/// Deploys `d.image` as app `d.app`.
pub async fn deploy(
    d: &DockerDeploy,
    log: crate::rollout::Log<'_>,
) -> Result<Deployed, DockerError> {
    let docker = connect(d.endpoint.as_deref()).await?;
    let digest = ensure_image(&docker, d, log).await?;
    let name = format!("{}-{}", d.app, short(&digest));
    let old: Vec<(String, bool)> = app_containers(&docker, &d.app)
        .await?
        .into_iter()
        .filter(|(n, _)| *n != name)
        .collect();
    // A leftover of the same digest (a failed or repeated deploy): start from scratch.
    remove(&docker, &name).await?;

    let (exposed, bindings) = parse_ports(&d.ports)?;
    let strategy = d.strategy.unwrap_or(
        if !d.ports.is_empty() || d.network.as_deref() == Some("host") {
            Strategy::StopFirst
        } else {
            Strategy::StartFirst
        },
    );
    let mut labels = HashMap::from([
        (APP_LABEL.to_owned(), d.app.clone()),
        ("slipway.digest".to_owned(), digest.clone()),
        ("slipway.image".to_owned(), d.image.clone()),
    ]);
    labels.retain(|_, v| !v.is_empty());
    let body = ContainerCreateBody {
        image: Some(d.image.clone()),
        cmd: d
            .command
            .as_ref()
            .map(|c| vec!["sh".to_owned(), "-c".to_owned(), c.clone()]),
        env: Some(d.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        exposed_ports: (!exposed.is_empty()).then(|| exposed.into_keys().collect()),
        host_config: Some(HostConfig {
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            network_mode: d.network.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };

    let running_old: Vec<String> = old
        .iter()
        .filter(|(_, r)| *r)
        .map(|(n, _)| n.clone())
        .collect();
    if strategy == Strategy::StopFirst {
        for o in &running_old {
            log(&format!("Stopping {o} (stop-first)"));
            stop(&docker, o, d.stop_timeout).await?;
        }
    }
    log(&format!("Starting {name} from {} ({digest})", d.image));
    let started: Result<(), String> = async {
        docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| format!("creating it: {}", engine_message(&e)))?;
        docker
            .start_container(&name, None)
            .await
            .map_err(|e| format!("starting it: {}", engine_message(&e)))?;
        wait_healthy(&docker, &name, d).await
    }
    .await;

    match started {
        Ok(()) => {
            log(&format!("{name} is healthy"));
            // Only now: with a restart policy from the start, a crashing container would be
            // restarted during the check and its exit code lost.
            let policy = RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            };
            let update = bollard::models::ContainerUpdateBody {
                restart_policy: Some(policy),
                ..Default::default()
            };
            docker
                .update_container(&name, update)
                .await
                .map_err(api(format!("setting the restart policy of {name}")))?;
            for (o, _) in &old {
                log(&format!("Removing {o}"));
                remove(&docker, o).await?;
            }
            Ok(Deployed {
                container: name,
                digest,
                replaced: old.into_iter().map(|(n, _)| n).collect(),
            })
        }
        Err(reason) => {
            log(&format!("{name} failed: {reason}"));
            let rollback: Result<(), DockerError> = async {
                remove(&docker, &name).await?;
                if strategy == Strategy::StopFirst {
                    for o in &running_old {
                        log(&format!("Restarting {o}"));
                        docker
                            .start_container(o, None)
                            .await
                            .map_err(api(format!("restarting {o}")))?;
                    }
                }
                Ok(())
            }
            .await;
            Err(match rollback {
                Err(e) => DockerError::RollbackFailed {
                    container: name,
                    reason,
                    rollback: e.to_string(),
                },
                Ok(()) if running_old.is_empty() => DockerError::FailedFirst {
                    container: name,
                    app: d.app.clone(),
                    reason,
                },
                Ok(()) => DockerError::RolledBack {
                    container: name,
                    reason,
                    old: running_old.join(", "),
                },
            })
        }
    }
}

pub(crate) async fn run_action(
    inp: &Inputs<'_>,
    log: crate::rollout::Log<'_>,
) -> Result<IndexMap<String, String>, ActionError> {
    let fail = |m: String| ActionError(format!("slipway/deploy-docker: {m}"));
    if inp.get("artifact").is_some() {
        return Err(fail(
            "takes `image` (a reference the engine has or can pull), not `artifact`".into(),
        ));
    }
    let image = inp.required("image")?.to_owned();
    let app = inp.required("name")?.to_owned();
    if !app
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || app.starts_with(['-', '.', '_'])
    {
        return Err(fail(format!(
            "input `name`: {app:?} is not a valid container name (letters, digits, - _ .)"
        )));
    }
    let credentials = match (inp.get("registry-username"), inp.get("registry-password")) {
        (Some(u), Some(p)) => Some((u.to_owned(), p.to_owned())),
        (None, None) => None,
        _ => {
            return Err(fail(
                "give both `registry-username` and `registry-password`, or neither".into(),
            ));
        }
    };
    let health = match (inp.get("health-url"), inp.get("health-cmd")) {
        (Some(_), Some(_)) => {
            return Err(fail("give `health-url` or `health-cmd`, not both".into()));
        }
        (Some(u), None) => Some(crate::rollout::Health::Url(u.to_owned())),
        (None, Some(c)) => Some(crate::rollout::Health::Command(c.to_owned())),
        (None, None) => None,
    };
    let strategy = match inp.get("strategy") {
        None => None,
        Some("start-first") => Some(Strategy::StartFirst),
        Some("stop-first") => Some(Strategy::StopFirst),
        Some(other) => {
            return Err(fail(format!(
                "input `strategy`: {other:?} is not start-first or stop-first"
            )));
        }
    };
    let always_pull = match inp.get("pull") {
        None | Some("missing") => false,
        Some("always") => true,
        Some(other) => {
            return Err(fail(format!(
                "input `pull`: {other:?} is not missing or always"
            )));
        }
    };
    let ports: Vec<String> = inp
        .get("ports")
        .map(|p| {
            p.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    parse_ports(&ports).map_err(|e| fail(e.to_string()))?;
    let d = DockerDeploy {
        endpoint: inp.get("docker-host").map(str::to_owned),
        app,
        image,
        credentials,
        always_pull,
        command: inp.get("command").map(str::to_owned),
        env: inp.env("env")?,
        ports,
        network: inp.get("network").map(str::to_owned),
        health,
        health_timeout: inp.duration("health-timeout", crate::rollout::DEFAULT_HEALTH_TIMEOUT)?,
        stop_timeout: inp.duration("stop-timeout", Duration::from_secs(10))?,
        strategy,
    };
    let target = format!("docker:{}@{}", d.app, d.endpoint.clone().unwrap_or_else(|| "default".to_owned()));
    let image = d.image.clone();
    let done = deploy(&d, log).await.map_err(|e| fail(e.to_string()))?;
    let mut out = IndexMap::new();
    out.insert("image".into(), image);
    out.insert("target".into(), target);
    out.insert("release".into(), done.container.clone());
    out.insert("container".into(), done.container);
    out.insert("digest".into(), done.digest);
    out.insert("previous".into(), done.replaced.join(","));
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let (e, b) = parse_ports(&["8080:80".into(), "127.0.0.1:9000:9000/udp".into()]).unwrap();
        assert!(e.contains_key("80/tcp") && e.contains_key("9000/udp"));
        let pb = b["9000/udp"].as_ref().unwrap();
        assert_eq!(pb[0].host_ip.as_deref(), Some("127.0.0.1"));
        for bad in ["80", "a:b", "1:2/xyz", "1:2:3:4"] {
            assert!(parse_ports(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn short_digests() {
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
    }
}
