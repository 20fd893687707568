//! The Docker executor: a container per job through the Docker Engine API (bollard). Podman's
//! Docker-compatible socket speaks the same API.
//!
//! For each job, [`DockerExecutor::prepare`] creates
//! - a bridge network `slipway-<run>-<job>`,
//! - one container per `services:` entry on it, reachable by its service key (network alias),
//!   and waits until every service that has a health check (its `--health-*` options or its
//!   image's `HEALTHCHECK`) reports healthy,
//! - the job container: the job's image with a keep-alive shell as entrypoint, every
//!   [`JobSpec::mounts`] directory bind-mounted **at the same absolute path**.
//!
//! Steps run as `docker exec`s in the job container ([`JobHost::spawn`]); docker actions and
//! `docker://` steps run as one-off containers on the job network with the same mounts
//! ([`JobHost::run_container`]). Every object carries the labels `slipway.run=<run id>` and
//! `slipway.job=<job id>`; [`JobHost::cleanup`] removes everything with them.
//!
//! Images are pulled only when the engine does not have them. Not done here: building images
//! (see the `oci` crate), registry logins beyond per-pull credentials, and path translation
//! for a remote engine (bind mounts name paths on the engine's host, so the engine must run on
//! the machine that holds the job's directories).

pub mod build;
mod image;
mod options;
mod process;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthStatusEnum, HostConfig, Mount, MountType, NetworkCreateRequest,
    NetworkingConfig, PortMap,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, EventsOptions, ListContainersOptions, ListNetworksOptions,
    LogsOptions, RemoveContainerOptions,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tracing::{debug, warn};

pub use options::{CreateOptions, OptionsError};

use super::{Command, ContainerSpec, ExecError, Executor, JobHost, JobSpec, Process};

/// Request timeout for engine calls (time to the response headers; streams are not limited).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// Keeps the job container alive and reaps orphaned step processes (it runs as PID 1).
const KEEP_ALIVE: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";
/// Label keys on every object the executor creates.
pub const LABEL_RUN: &str = "slipway.run";
pub const LABEL_JOB: &str = "slipway.job";
pub const LABEL_ROLE: &str = "slipway.role";

/// How to reach the engine and how to name what the executor creates.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    /// `unix:///path/docker.sock` (or a bare socket path), `tcp://HOST:PORT`, `http://HOST:PORT`.
    /// `None`: the `DOCKER_HOST` environment variable, else `unix:///var/run/docker.sock`.
    pub endpoint: Option<String>,
    /// Names and labels every object of this run (`slipway.run=<run_id>`); unique per run.
    pub run_id: String,
    /// The job container's image when [`JobSpec::container`] is `None`.
    pub default_image: Option<String>,
}

impl DockerOptions {
    /// Options for the default endpoint and a fresh random run id.
    pub fn new() -> DockerOptions {
        DockerOptions {
            endpoint: None,
            run_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            default_image: None,
        }
    }
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions::new()
    }
}

/// What can go wrong talking to the engine.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("unsupported docker endpoint `{0}`: use unix:///path/to/docker.sock, tcp://HOST:PORT or http://HOST:PORT")]
    Endpoint(String),
    #[error("connecting to the docker engine at {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("{context}: {message}")]
    Api { context: String, message: String },
    #[error("pulling image {image}: {message}")]
    Pull { image: String, message: String },
    #[error("an empty image name")]
    EmptyImage,
    #[error("the job has no image: set `container:` or map its runs-on label to docker://IMAGE")]
    NoImage,
    #[error("mount {0} is not an absolute path")]
    RelativeMount(PathBuf),
    #[error("{what}: {source}")]
    Options {
        what: String,
        #[source]
        source: OptionsError,
    },
    #[error("service {service} is unhealthy; last health check output: {log}")]
    Unhealthy { service: String, log: String },
    #[error("service {service} exited with code {code} before it became healthy; its last output: {log}")]
    ServiceExited { service: String, code: i64, log: String },
    #[error("service {service} was not healthy after {waited:?}; last health check output: {log}")]
    HealthTimeout { service: String, waited: Duration, log: String },
    #[error("{0}")]
    Other(String),
}

impl DockerError {
    fn api(context: impl Into<String>, source: BollardError) -> DockerError {
        DockerError::Api { context: context.into(), message: engine_message(&source) }
    }
}

impl From<DockerError> for ExecError {
    fn from(e: DockerError) -> Self {
        ExecError::Docker(e.to_string())
    }
}

/// The engine's own message for an API error, else bollard's description.
fn engine_message(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, status_code } if !message.is_empty() => {
            format!("{message} (HTTP {status_code})")
        }
        other => other.to_string(),
    }
}

/// Which engine answers the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Docker,
    /// Podman's compat API: health checks run from systemd timers, which do not exist
    /// everywhere (containers, CI machines), so the executor runs them itself.
    Podman,
}

/// Runs jobs in containers through the Docker Engine API.
#[derive(Clone)]
pub struct DockerExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    options: DockerOptions,
    endpoint: String,
    client: Docker,
    negotiated: OnceCell<(Docker, Engine)>,
}

impl std::fmt::Debug for DockerExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerExecutor")
            .field("endpoint", &self.inner.endpoint)
            .field("run_id", &self.inner.options.run_id)
            .finish()
    }
}

impl DockerExecutor {
    /// A client for `options.endpoint`. Does no I/O beyond checking that a unix socket exists;
    /// the API version is negotiated on first use.
    pub fn new(options: DockerOptions) -> Result<DockerExecutor, DockerError> {
        let (endpoint, client) = connect(options.endpoint.as_deref())?;
        Ok(DockerExecutor { inner: Arc::new(Inner { options, endpoint, client, negotiated: OnceCell::new() }) })
    }

    /// The run id in names and labels.
    pub fn run_id(&self) -> &str {
        &self.inner.options.run_id
    }

    /// Checks that the engine answers (and negotiates the API version).
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.client().await.map(|_| ())
    }

    async fn client(&self) -> Result<Docker, DockerError> {
        self.connected().await.map(|(docker, _)| docker)
    }

    /// The negotiated client and which engine answers.
    async fn connected(&self) -> Result<(Docker, Engine), DockerError> {
        let inner = &self.inner;
        inner
            .negotiated
            .get_or_try_init(|| async {
                let error = |e: BollardError| DockerError::Connect {
                    endpoint: inner.endpoint.clone(),
                    message: engine_message(&e),
                };
                let docker = inner.client.clone().negotiate_version().await.map_err(error)?;
                let version = docker.version().await.map_err(error)?;
                let podman = version.components.unwrap_or_default().iter().any(|c| c.name.contains("Podman"));
                Ok((docker, if podman { Engine::Podman } else { Engine::Docker }))
            })
            .await
            .cloned()
    }

    /// Removes every container and network of this run (all jobs), e.g. after a cancelled
    /// `prepare`. Errors are logged.
    pub async fn cleanup_run(&self) {
        match self.client().await {
            Ok(docker) => remove_labelled(&docker, vec![format!("{LABEL_RUN}={}", self.run_id())]).await,
            Err(error) => warn!(%error, "Cleaning up docker objects failed."),
        }
    }
}

fn connect(endpoint: Option<&str>) -> Result<(String, Docker), DockerError> {
    let Some(endpoint) = endpoint else {
        let shown = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let docker = Docker::connect_with_defaults().map_err(|e| connect_error(&shown, &e))?;
        return Ok((shown, docker));
    };
    let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
        Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else if endpoint.starts_with('/') {
        Docker::connect_with_unix(endpoint, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
        Docker::connect_with_http(endpoint, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else {
        return Err(DockerError::Endpoint(endpoint.to_owned()));
    };
    let docker = docker.map_err(|e| connect_error(endpoint, &e))?;
    Ok((endpoint.to_owned(), docker))
}

fn connect_error(endpoint: &str, e: &BollardError) -> DockerError {
    match e {
        BollardError::UnsupportedURISchemeError { uri } => DockerError::Endpoint(uri.clone()),
        other => DockerError::Connect { endpoint: endpoint.to_owned(), message: other.to_string() },
    }
}

/// `[A-Za-z0-9_.-]` only; anything else (or an overlong id) gets a short hash for uniqueness.
fn sanitize(id: &str) -> String {
    let mut clean: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' }).collect();
    if clean != id || clean.len() > 40 || clean.is_empty() {
        let hash = hex::encode(Sha256::digest(id.as_bytes()));
        clean.truncate(40);
        let trimmed = clean.trim_matches('-');
        clean = format!("{}{}{}", trimmed, if trimmed.is_empty() { "" } else { "-" }, &hash[..8]);
    }
    clean
}

/// The names and labels of one job's objects.
#[derive(Clone)]
struct Scope {
    docker: Docker,
    run_id: String,
    job_id: String,
    /// `slipway-<run>-<job>`: the network's name and every container name's prefix.
    base: String,
    /// Containers use the engine host's network (host executor steps) instead of the job's.
    host_network: bool,
}

impl Scope {
    fn new(docker: Docker, run_id: &str, job_id: &str) -> Scope {
        let base = format!("slipway-{}-{}", sanitize(run_id), sanitize(job_id));
        Scope { docker, run_id: run_id.to_owned(), job_id: job_id.to_owned(), base, host_network: false }
    }

    fn network(&self) -> &str {
        if self.host_network { "host" } else { &self.base }
    }

    fn labels(&self, role: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_RUN.to_owned(), self.run_id.clone()),
            (LABEL_JOB.to_owned(), self.job_id.clone()),
            (LABEL_ROLE.to_owned(), role.to_owned()),
        ])
    }

    async fn cleanup(&self) {
        remove_labelled(
            &self.docker,
            vec![format!("{LABEL_RUN}={}", self.run_id), format!("{LABEL_JOB}={}", self.job_id)],
        )
        .await;
    }
}

/// Force-removes the containers (with their anonymous volumes), then the networks, carrying
/// all of `labels`.
async fn remove_labelled(docker: &Docker, labels: Vec<String>) {
    let filters = HashMap::from([("label".to_owned(), labels)]);
    match docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .await
    {
        Ok(containers) => {
            let removals = containers.into_iter().filter_map(|c| c.id).map(|id| async move {
                let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
                match docker.remove_container(&id, Some(options)).await {
                    Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => {}
                    // 409: removal already in progress (e.g. by a finishing step container).
                    Err(BollardError::DockerResponseServerError { status_code: 409, .. }) => {}
                    Err(error) => warn!(container = %id, %error, "Removing a container failed."),
                }
            });
            futures::future::join_all(removals).await;
        }
        Err(error) => warn!(%error, "Listing containers for cleanup failed."),
    }
    match docker.list_networks(Some(ListNetworksOptions { filters: Some(filters) })).await {
        Ok(networks) => {
            for id in networks.into_iter().filter_map(|n| n.id) {
                match docker.remove_network(&id).await {
                    Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => {}
                    Err(error) => warn!(network = %id, %error, "Removing a network failed."),
                }
            }
        }
        Err(error) => warn!(%error, "Listing networks for cleanup failed."),
    }
}

/// What a container is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Job,
    Service,
    Step,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Job => "job",
            Role::Service => "service",
            Role::Step => "step",
        }
    }
}

/// The create request for `spec` on the job's network.
fn container_body(
    scope: &Scope,
    spec: &ContainerSpec,
    opts: &CreateOptions,
    role: Role,
    mounts: &[PathBuf],
) -> Result<ContainerCreateBody, DockerError> {
    let what = || format!("{} container {}", role.label(), spec.image);
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.extend(opts.env.iter().map(|(k, v)| format!("{k}={v}")));

    let mut exposed = Vec::new();
    let mut bindings = PortMap::new();
    for port in spec.ports.iter().chain(&opts.ports) {
        let port = options::parse_port(port).map_err(|source| DockerError::Options { what: what(), source })?;
        if !exposed.contains(&port.container) {
            exposed.push(port.container.clone());
        }
        bindings
            .entry(port.container)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(port.binding);
    }

    let mut binds = Vec::new();
    let mut anonymous = Vec::new();
    for volume in spec.volumes.iter().chain(&opts.volumes) {
        match options::parse_volume(volume).map_err(|source| DockerError::Options { what: what(), source })? {
            options::VolumeSpec::Anonymous(path) => anonymous.push(path),
            options::VolumeSpec::Bind(bind) => binds.push(bind),
        }
    }
    let bind_mounts: Vec<Mount> = mounts
        .iter()
        .map(|path| Mount {
            target: Some(path.display().to_string()),
            source: Some(path.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(false),
            ..Default::default()
        })
        .collect();

    let mut host = HostConfig {
        network_mode: Some(scope.network().to_owned()),
        binds: (!binds.is_empty()).then_some(binds),
        mounts: (!bind_mounts.is_empty()).then_some(bind_mounts),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        ..Default::default()
    };
    opts.apply_host_config(&mut host).map_err(|source| DockerError::Options { what: what(), source })?;

    let mut aliases = opts.network_aliases.clone();
    if role == Role::Service
        && let Some(alias) = &spec.alias
    {
        aliases.insert(0, alias.clone());
    }
    let networking = (!scope.host_network).then(|| {
        let settings = EndpointSettings { aliases: (!aliases.is_empty()).then_some(aliases), ..Default::default() };
        NetworkingConfig { endpoints_config: Some(HashMap::from([(scope.network().to_owned(), settings)])) }
    });

    let mut labels = scope.labels(role.label());
    labels.extend(opts.labels.iter().cloned());

    let (entrypoint, cmd) = match role {
        Role::Job => (Some(vec!["/bin/sh".to_owned(), "-c".to_owned(), KEEP_ALIVE.to_owned()]), None),
        Role::Service | Role::Step => {
            let entrypoint = spec.entrypoint.clone().or_else(|| opts.entrypoint.clone().map(|e| vec![e]));
            (entrypoint, (!spec.args.is_empty()).then(|| spec.args.clone()))
        }
    };
    if role == Role::Job && opts.entrypoint.is_some() {
        warn!(image = %spec.image, "The job container's --entrypoint is replaced by the executor's keep-alive command.");
    }

    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(env),
        cmd,
        entrypoint,
        working_dir: spec.workdir.as_ref().map(|p| p.display().to_string()).or_else(|| opts.workdir.clone()),
        user: opts.user.clone(),
        hostname: opts.hostname.clone(),
        labels: Some(labels),
        healthcheck: opts.health.to_config(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        volumes: (!anonymous.is_empty()).then_some(anonymous),
        attach_stdout: Some(role == Role::Step),
        attach_stderr: Some(role == Role::Step),
        tty: Some(false),
        host_config: Some(host),
        networking_config: networking,
        ..Default::default()
    })
}

fn parse_options(what: &str, spec: &ContainerSpec) -> Result<CreateOptions, DockerError> {
    match &spec.options {
        Some(options) => {
            CreateOptions::parse(options).map_err(|source| DockerError::Options { what: what.to_owned(), source })
        }
        None => Ok(CreateOptions::default()),
    }
}

async fn create_container(scope: &Scope, name: &str, body: ContainerCreateBody) -> Result<String, DockerError> {
    let options = CreateContainerOptions { name: Some(name.to_owned()), ..Default::default() };
    let created = scope
        .docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| DockerError::api(format!("creating container {name}"), e))?;
    Ok(created.id)
}

impl DockerExecutor {
    async fn prepare_in(
        &self,
        scope: &Scope,
        engine: Engine,
        spec: JobSpec,
        default_image: Option<&str>,
    ) -> Result<DockerJob, DockerError> {
        check_mounts(&spec.mounts).await?;
        let job_spec = match (spec.container, default_image) {
            (Some(c), _) => c,
            (None, Some(image)) => ContainerSpec { image: image.to_owned(), ..Default::default() },
            (None, None) => return Err(DockerError::NoImage),
        };
        if job_spec.image.trim().is_empty() {
            return Err(DockerError::NoImage);
        }
        // Parse every options string before creating anything.
        let job_opts = parse_options("the job container's options", &job_spec)?;
        let mut services = Vec::new();
        for (key, service) in spec.services {
            let opts = parse_options(&format!("service {key}'s options"), &service)?;
            services.push((key, service, opts));
        }

        let docker = &scope.docker;
        docker
            .create_network(NetworkCreateRequest {
                name: scope.network().to_owned(),
                driver: Some("bridge".to_owned()),
                labels: Some(scope.labels("network")),
                ..Default::default()
            })
            .await
            .map_err(|e| DockerError::api(format!("creating network {}", scope.network()), e))?;

        let mut started = Vec::new();
        for (key, mut service, opts) in services {
            image::ensure_image(docker, &service.image, service.credentials.as_ref()).await?;
            if service.alias.is_none() {
                service.alias = Some(key.clone());
            }
            let name = format!("{}-svc-{}", scope.base, sanitize(&key));
            let body = container_body(scope, &service, &opts, Role::Service, &[])?;
            let id = create_container(scope, &name, body).await?;
            docker
                .start_container(&id, None)
                .await
                .map_err(|e| DockerError::api(format!("starting service {key} ({})", service.image), e))?;
            debug!(service = %key, container = %name, "Service started.");
            started.push((key, id));
        }

        let job_container = format!("{}-job", scope.base);
        {
            let health =
                futures::future::try_join_all(started.iter().map(|(key, id)| wait_healthy(docker, engine, key, id)));
            let job = async {
                image::ensure_image(docker, &job_spec.image, job_spec.credentials.as_ref()).await?;
                let body = container_body(scope, &job_spec, &job_opts, Role::Job, &spec.mounts)?;
                let id = create_container(scope, &job_container, body).await?;
                docker
                    .start_container(&id, None)
                    .await
                    .map_err(|e| DockerError::api(format!("starting the job container ({})", job_spec.image), e))?;
                Ok::<_, DockerError>(())
            };
            // A failed job container ends the wait at once (health waits create nothing), but a
            // failed health wait lets the job container's create finish, so it cannot land after
            // the cleanup.
            tokio::pin!(health, job);
            tokio::select! {
                job_result = &mut job => {
                    job_result?;
                    health.await?;
                }
                health_result = &mut health => {
                    let job_result = job.await;
                    health_result?;
                    job_result?;
                }
            }
        }

        Ok(DockerJob {
            scope: scope.clone(),
            container: job_container,
            image: job_spec.image,
            mounts: spec.mounts,
            steps: AtomicU64::new(0),
        })
    }
}

#[async_trait]
impl Executor for DockerExecutor {
    /// # Cancel safety
    /// Not cancel safe: objects created before cancellation stay until
    /// [`DockerExecutor::cleanup_run`]. A failed prepare removes what it created.
    async fn prepare(&self, spec: JobSpec) -> Result<Box<dyn JobHost>, ExecError> {
        self.prepare_with_image(spec, self.inner.options.default_image.as_deref()).await
    }
}

impl DockerExecutor {
    /// [`Executor::prepare`] with `image` for the job container when the job has no
    /// `container:` (one executor serves a run whose labels map to different images).
    ///
    /// # Cancel safety
    /// As [`Executor::prepare`].
    pub async fn prepare_with_image(&self, spec: JobSpec, image: Option<&str>) -> Result<Box<dyn JobHost>, ExecError> {
        let (docker, engine) = self.connected().await?;
        let scope = Scope::new(docker, self.run_id(), &spec.job_id);
        match self.prepare_in(&scope, engine, spec, image).await {
            Ok(job) => Ok(Box::new(job)),
            Err(e) => {
                scope.cleanup().await;
                Err(e.into())
            }
        }
    }
}

/// The run id (`slipway.run` label, name prefix) of the docker objects of a run whose
/// `RunOptions::work_root` is `work_root`: known to the caller, so that it can remove them
/// even when the run could not (`DockerExecutor::cleanup_run` with this id).
pub fn run_id_for(work_root: &Path) -> String {
    hex::encode(Sha256::digest(work_root.as_os_str().as_encoded_bytes()))[..12].to_owned()
}

/// Mounts must be absolute. A missing directory is created (the engine refuses to bind a
/// path that does not exist, and a directory the runner fills later, such as a cache, may
/// not exist yet); with a remote engine this creates it on this machine only.
async fn check_mounts(mounts: &[PathBuf]) -> Result<(), DockerError> {
    for mount in mounts {
        if !mount.is_absolute() {
            return Err(DockerError::RelativeMount(mount.clone()));
        }
        if tokio::fs::metadata(mount).await.is_err() {
            tokio::fs::create_dir_all(mount)
                .await
                .map_err(|e| DockerError::Other(format!("creating mount directory {}: {e}", mount.display())))?;
        }
    }
    Ok(())
}

/// Creates, attaches to and starts a step container; it is removed once it has exited.
async fn run_step_container(
    scope: &Scope,
    name: &str,
    spec: ContainerSpec,
    mounts: &[PathBuf],
) -> Result<Box<dyn Process>, DockerError> {
    let docker = &scope.docker;
    let mut spec = spec;
    if let Some(dockerfile) = build::dockerfile_of(&spec.image) {
        spec.image = build::ensure_built(docker, &dockerfile).await?;
    }
    let opts = parse_options(&format!("container {}'s options", spec.image), &spec)?;
    image::ensure_image(docker, &spec.image, spec.credentials.as_ref()).await?;
    let body = container_body(scope, &spec, &opts, Role::Step, mounts)?;
    let id = create_container(scope, name, body).await?;
    let remove = || async {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        if let Err(error) = docker.remove_container(&id, Some(options)).await {
            debug!(container = %name, %error, "Removing a step container failed.");
        }
    };
    let attach = AttachContainerOptions { stream: true, logs: true, stdout: true, stderr: true, ..Default::default() };
    let attached = match docker.attach_container(&id, Some(attach)).await {
        Ok(a) => a,
        Err(e) => {
            remove().await;
            return Err(DockerError::api(format!("attaching to container {name}"), e));
        }
    };
    if let Err(e) = docker.start_container(&id, None).await {
        remove().await;
        return Err(DockerError::api(format!("starting container {name} ({})", spec.image), e));
    }
    drop(attached.input);
    Ok(Box::new(process::container_process(docker, &id, attached.output)))
}

impl DockerExecutor {
    /// Runs a one-off container for a job of the *host* executor (a `docker://` step or a
    /// docker action): the engine host's network, `job.mounts` at the same paths, labelled
    /// with this run and `job.job_id`, removed once it has exited.
    pub async fn run_standalone(&self, job: &JobSpec, spec: ContainerSpec) -> Result<Box<dyn Process>, ExecError> {
        check_mounts(&job.mounts).await?;
        let docker = self.client().await?;
        let mut scope = Scope::new(docker, self.run_id(), &job.job_id);
        scope.host_network = true;
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let name = format!("{}-step-{suffix}", scope.base);
        Ok(run_step_container(&scope, &name, spec, &job.mounts).await?)
    }
}

/// The last health-check output of a container, trimmed.
fn last_health_log(state: &bollard::models::ContainerState) -> String {
    let log = state.health.as_ref().and_then(|h| h.log.as_ref()).and_then(|log| log.last()).map(|entry| {
        let output = entry.output.as_deref().unwrap_or("").trim();
        format!("{output} (exit code {})", entry.exit_code.unwrap_or(-1))
    });
    log.unwrap_or_else(|| "(no health check has run)".to_owned())
}

async fn container_logs_tail(docker: &Docker, id: &str) -> String {
    let options = LogsOptions { stdout: true, stderr: true, tail: "20".to_owned(), ..Default::default() };
    let mut logs = docker.logs(id, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    let text = text.trim();
    if text.is_empty() { "(no output)".to_owned() } else { text.to_owned() }
}

/// Inspects a service container. `Ok(None)`: the engine describes it in a way bollard cannot
/// read, which Podman 4 does for stopped containers (`"Status": "stopped"`).
async fn inspect_service(
    docker: &Docker,
    key: &str,
    id: &str,
) -> Result<Option<bollard::models::ContainerInspectResponse>, DockerError> {
    match docker.inspect_container(id, None).await {
        Ok(info) => Ok(Some(info)),
        Err(BollardError::JsonDataError { .. }) => Ok(None),
        Err(e) => Err(DockerError::api(format!("inspecting service {key}"), e)),
    }
}

/// The error for a service that stopped before it became healthy.
async fn service_exited(docker: &Docker, key: &str, id: &str, code: Option<i64>) -> DockerError {
    let code = match code {
        Some(code) => code,
        None => {
            let mut wait = docker.wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
            match wait.next().await {
                Some(Ok(r)) => r.status_code,
                Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
                _ => -1,
            }
        }
    };
    DockerError::ServiceExited { service: key.to_owned(), code, log: container_logs_tail(docker, id).await }
}

/// Waits until service `key` (container `id`) is healthy. A service without a health check is
/// ready once started. Event driven on Docker: re-inspects on each engine event for the
/// container; on Podman the executor runs the health check itself.
async fn wait_healthy(docker: &Docker, engine: Engine, key: &str, id: &str) -> Result<(), DockerError> {
    let Some(info) = inspect_service(docker, key, id).await? else {
        return Err(service_exited(docker, key, id, None).await);
    };
    let healthcheck = info.config.as_ref().and_then(|c| c.healthcheck.clone());
    if engine == Engine::Podman {
        return match healthcheck {
            Some(config) => run_health_checks(docker, key, id, &config).await,
            None => Ok(()),
        };
    }
    let deadline_after = healthcheck.as_ref().map(health_deadline).unwrap_or(Duration::ZERO);
    let deadline = tokio::time::Instant::now() + deadline_after;
    // Replay events since the container was created so none between inspects is missed.
    let filters = HashMap::from([
        ("container".to_owned(), vec![id.to_owned()]),
        ("type".to_owned(), vec!["container".to_owned()]),
    ]);
    let since = info.created.as_deref().and_then(unix_seconds).unwrap_or(1).saturating_sub(1);
    let mut events =
        docker.events(Some(EventsOptions { since: Some(since.to_string()), until: None, filters: Some(filters) }));
    let mut info = info;
    loop {
        let state = info.state.clone().unwrap_or_default();
        let status = state.health.as_ref().and_then(|h| h.status);
        match status {
            None | Some(HealthStatusEnum::NONE) => return Ok(()),
            Some(HealthStatusEnum::HEALTHY) => {
                debug!(service = %key, "Service is healthy.");
                return Ok(());
            }
            Some(HealthStatusEnum::UNHEALTHY | HealthStatusEnum::STARTING | HealthStatusEnum::EMPTY) => {}
        }
        // The engine marks a stopped container unhealthy: report the exit, which is the cause.
        if state.running != Some(true) {
            return Err(service_exited(docker, key, id, state.exit_code).await);
        }
        if status == Some(HealthStatusEnum::UNHEALTHY) {
            return Err(DockerError::Unhealthy { service: key.to_owned(), log: last_health_log(&state) });
        }
        match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) => {
                return Err(DockerError::HealthTimeout {
                    service: key.to_owned(),
                    waited: deadline_after,
                    log: last_health_log(&state),
                });
            }
            Ok(Some(Ok(_event))) => {}
            Ok(Some(Err(e))) => return Err(DockerError::api(format!("watching service {key}'s events"), e)),
            Ok(None) => {
                return Err(DockerError::Other(format!(
                    "the engine closed the event stream while waiting for service {key}"
                )));
            }
        }
        match inspect_service(docker, key, id).await? {
            Some(next) => info = next,
            None => return Err(service_exited(docker, key, id, None).await),
        }
    }
}

/// Runs a container's health check the way the engine would: every interval, healthy on the
/// first success, unhealthy after `retries` failures counted from the end of the start period.
async fn run_health_checks(
    docker: &Docker,
    key: &str,
    id: &str,
    config: &bollard::models::HealthConfig,
) -> Result<(), DockerError> {
    let test = config.test.clone().unwrap_or_default();
    let argv: Vec<String> = match test.first().map(String::as_str) {
        None | Some("NONE") => return Ok(()),
        Some("CMD-SHELL") => {
            vec!["/bin/sh".to_owned(), "-c".to_owned(), test.get(1).cloned().unwrap_or_default()]
        }
        Some("CMD") => test[1..].to_vec(),
        Some(_) => test,
    };
    if argv.is_empty() {
        return Ok(());
    }
    let limits = HealthLimits::of(config);
    let started = tokio::time::Instant::now();
    let mut failures = 0;
    loop {
        let log = match tokio::time::timeout(limits.timeout, process::exec_output(docker, id, argv.clone())).await {
            Ok(Ok((0, _))) => {
                debug!(service = %key, "Service is healthy.");
                return Ok(());
            }
            Ok(Ok((code, output))) => format!("{} (exit code {code})", output.trim()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("the health check timed out after {:?}", limits.timeout),
        };
        match inspect_service(docker, key, id).await? {
            Some(info) if info.state.as_ref().and_then(|s| s.running) == Some(true) => {}
            Some(info) => {
                return Err(service_exited(docker, key, id, info.state.and_then(|s| s.exit_code)).await);
            }
            None => return Err(service_exited(docker, key, id, None).await),
        }
        if started.elapsed() >= limits.start_period {
            failures += 1;
        }
        if failures >= limits.retries {
            return Err(DockerError::Unhealthy { service: key.to_owned(), log });
        }
        // The health check's own cadence, not a wait for an event.
        tokio::time::sleep(limits.interval).await;
    }
}

/// A health config with the engine's defaults filled in.
struct HealthLimits {
    interval: Duration,
    timeout: Duration,
    start_period: Duration,
    retries: u32,
}

impl HealthLimits {
    fn of(config: &bollard::models::HealthConfig) -> HealthLimits {
        let ns = |v: Option<i64>, default_s: u64| match v {
            Some(n) if n > 0 => Duration::from_nanos(n.unsigned_abs()),
            _ => Duration::from_secs(default_s),
        };
        HealthLimits {
            interval: ns(config.interval, 30),
            timeout: ns(config.timeout, 30),
            start_period: ns(config.start_period, 0),
            retries: u32::try_from(config.retries.filter(|r| *r > 0).unwrap_or(3)).unwrap_or(u32::MAX).min(1000),
        }
    }
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp as the engine writes them
/// (`2026-11-29T03:15:16.123456789Z`); the fraction is dropped.
fn unix_seconds(timestamp: &str) -> Option<i64> {
    let (date, time) = timestamp.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.strip_suffix('Z')?;
    let time = time.split_once('.').map_or(time, |(t, _)| t);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// How long the engine can take to decide a container's health: the start period plus one
/// interval and timeout per retry, plus slack.
fn health_deadline(config: &bollard::models::HealthConfig) -> Duration {
    let l = HealthLimits::of(config);
    l.start_period + (l.interval + l.timeout) * (l.retries + 1) + Duration::from_secs(30)
}

/// A prepared job: its network, services and job container.
struct DockerJob {
    scope: Scope,
    container: String,
    image: String,
    mounts: Vec<PathBuf>,
    steps: AtomicU64,
}

#[async_trait]
impl JobHost for DockerJob {
    async fn spawn(&self, command: Command) -> Result<Box<dyn Process>, ExecError> {
        let mut argv = vec![command.program.clone()];
        argv.extend(command.args.iter().cloned());
        let env = command.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let cwd = command.cwd.display().to_string();
        let process = process::spawn_exec(&self.scope.docker, &self.container, argv, env, Some(cwd), true)
            .await
            .map_err(|e| ExecError::Spawn {
                program: command.program.clone(),
                cwd: command.cwd.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok(Box::new(process))
    }

    async fn run_container(&self, spec: ContainerSpec) -> Result<Box<dyn Process>, ExecError> {
        let n = self.steps.fetch_add(1, Ordering::SeqCst);
        let name = format!("{}-step-{n}", self.scope.base);
        Ok(run_step_container(&self.scope, &name, spec, &self.mounts).await?)
    }

    fn describe(&self) -> String {
        format!("docker:{}", self.image)
    }

    async fn cleanup(&self) {
        self.scope.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(sanitize("build"), "build");
        assert_eq!(sanitize("a.b_c-1"), "a.b_c-1");
        let matrix = sanitize("build (1, linux)");
        assert!(matrix.starts_with("build--1--linux-"), "{matrix}");
        assert_ne!(sanitize("a b"), sanitize("a/b"));
        assert_eq!(sanitize("ü").len(), 8);
        assert!(sanitize(&"x".repeat(100)).len() <= 49);
    }

    #[test]
    fn endpoints() {
        assert!(matches!(connect(Some("ssh://host")), Err(DockerError::Endpoint(_))));
        assert!(matches!(connect(Some("npipe:////./pipe/docker")), Err(DockerError::Endpoint(_))));
        assert!(matches!(connect(Some("unix:///nonexistent/docker.sock")), Err(DockerError::Connect { .. })));
        assert!(connect(Some("tcp://127.0.0.1:2375")).is_ok());
        assert!(connect(Some("http://127.0.0.1:2375")).is_ok());
    }

    #[test]
    fn timestamps() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2026-11-29T03:15:16.123456789Z"), Some(1_795_922_116));
        assert_eq!(unix_seconds("2000-02-29T12:00:00Z"), Some(951_825_600));
        assert_eq!(unix_seconds("2026-11-29T03:15:16+01:00"), None);
        assert_eq!(unix_seconds("garbage"), None);
    }

    #[test]
    fn deadlines() {
        let fast = bollard::models::HealthConfig {
            interval: Some(100_000_000),
            timeout: Some(100_000_000),
            retries: Some(2),
            ..Default::default()
        };
        assert_eq!(health_deadline(&fast), Duration::from_millis(600) + Duration::from_secs(30));
        assert_eq!(health_deadline(&Default::default()), Duration::from_secs(60 * 4 + 30));
    }
}
