//! Executors: where a job's processes run. `host` (this machine, optional bubblewrap
//! sandbox) and `docker` (a container per job through the Docker Engine API).
//!
//! CONTRACT between the runner core (owner; may refine it) and the executors:
//! - The runner creates every directory a job uses (workspace, temp, tool cache, the
//!   environment files) on the host under `RunOptions::work_root`, and lists the host
//!   directories the job must see in [`JobSpec::mounts`]. The docker executor bind-mounts each
//!   of them into the job container **at the same absolute path**, so paths never need
//!   translating: a script file the runner writes is run by the same path in either executor.
//! - Each step process is started with [`JobHost::spawn`]; its stdout/stderr are read by the
//!   runner (which masks, parses workflow commands and emits events).
//! - Containers for `uses: docker://...` and docker actions are run with
//!   [`JobHost::run_container`] (the host executor delegates to a docker engine when one is
//!   configured, else fails with a message naming what to install).

pub mod docker;
pub mod host;

use std::path::PathBuf;
use std::process::ExitStatus;

use async_trait::async_trait;
use indexmap::IndexMap;
use tokio::io::AsyncRead;

/// A container to run (job container, service, or a step's docker action).
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub image: String,
    pub env: IndexMap<String, String>,
    /// `-p` style port specs (`8080:80`, `80`).
    pub ports: Vec<String>,
    /// `-v` style volume specs.
    pub volumes: Vec<String>,
    /// Raw `options:` (docker create flags such as `--health-cmd`, `--cpus`).
    pub options: Option<String>,
    pub credentials: Option<(String, String)>,
    pub entrypoint: Option<Vec<String>>,
    pub args: Vec<String>,
    pub workdir: Option<PathBuf>,
    /// Network alias (services: the service key).
    pub alias: Option<String>,
}

/// What a job needs from its executor.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Unique job id within the run (used in container/network names).
    pub job_id: String,
    /// Host directories to make visible at the same path (workspace, temp, cache, actions).
    pub mounts: Vec<PathBuf>,
    /// `container:` of the job (docker executor: the job container; host: an error if set
    /// and no docker engine is available).
    pub container: Option<ContainerSpec>,
    /// `services:` by name.
    pub services: IndexMap<String, ContainerSpec>,
}

/// A command to start inside the job's environment.
#[derive(Debug, Clone)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    /// The complete environment of the process (nothing else is inherited).
    pub env: IndexMap<String, String>,
    pub cwd: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("starting `{program}` in {cwd}")]
    Spawn {
        program: String,
        cwd: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("docker: {0}")]
    Docker(String),
    #[error("{0}")]
    Other(String),
}

/// A running process.
#[async_trait]
pub trait Process: Send {
    fn take_stdout(&mut self) -> Option<Box<dyn AsyncRead + Send + Unpin>>;
    fn take_stderr(&mut self) -> Option<Box<dyn AsyncRead + Send + Unpin>>;
    /// Waits for exit. A process killed by a signal reports it in the status.
    ///
    /// # Cancel safety
    /// Cancel safe: the process keeps running and `wait` may be called again.
    async fn wait(&mut self) -> Result<ExitStatus, ExecError>;
    /// SIGTERM to the whole process group (or the container process).
    fn terminate(&self);
    /// SIGKILL to the whole process group.
    fn kill(&self);
}

/// A prepared job environment.
#[async_trait]
pub trait JobHost: Send + Sync {
    async fn spawn(&self, command: Command) -> Result<Box<dyn Process>, ExecError>;
    async fn run_container(&self, spec: ContainerSpec) -> Result<Box<dyn Process>, ExecError>;
    /// Where the environment runs, for `runner.os`/`runner.arch`-like facts and logs ("host", "docker:IMAGE").
    fn describe(&self) -> String;
    /// Stops and removes everything the job created (containers, networks). Idempotent.
    async fn cleanup(&self);
}

/// Prepares job environments.
#[async_trait]
pub trait Executor: Send + Sync {
    async fn prepare(&self, spec: JobSpec) -> Result<Box<dyn JobHost>, ExecError>;
}

/// The docker engines of one run: one [`docker::DockerExecutor`] per endpoint, created on
/// first use, all labelling their objects with the run's id, so that [`RunDocker::cleanup`]
/// removes every container and network of the run (also after a cancellation).
#[derive(Debug)]
pub struct RunDocker {
    run_id: String,
    engines: std::sync::Mutex<Vec<(Option<String>, docker::DockerExecutor)>>,
}

impl Default for RunDocker {
    /// A random run id.
    fn default() -> Self {
        RunDocker::new(docker::DockerOptions::new().run_id)
    }
}

impl RunDocker {
    pub fn new(run_id: String) -> RunDocker {
        RunDocker { run_id, engines: std::sync::Mutex::new(Vec::new()) }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The executor for `endpoint` (`None`: `DOCKER_HOST`, else the default socket).
    pub fn engine(&self, endpoint: Option<&str>) -> Result<docker::DockerExecutor, ExecError> {
        let mut engines = self.engines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, e)) = engines.iter().find(|(k, _)| k.as_deref() == endpoint) {
            return Ok(e.clone());
        }
        let executor = docker::DockerExecutor::new(docker::DockerOptions {
            endpoint: endpoint.map(str::to_owned),
            run_id: self.run_id.clone(),
            default_image: None,
        })?;
        engines.push((endpoint.map(str::to_owned), executor.clone()));
        Ok(executor)
    }

    /// Removes every container and network of the run from every engine it used.
    pub async fn cleanup(&self) {
        let engines: Vec<docker::DockerExecutor> = self
            .engines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(_, e)| e.clone())
            .collect();
        for e in engines {
            e.cleanup_run().await;
        }
    }
}

/// Runs a one-off container (a step's `docker://` image or docker action) for a job on the
/// host executor, through the docker engine at `docker_host`.
pub(crate) async fn docker_container(
    docker: &RunDocker,
    docker_host: &str,
    job: &JobSpec,
    spec: ContainerSpec,
) -> Result<Box<dyn Process>, ExecError> {
    docker.engine(Some(docker_host))?.run_standalone(job, spec).await
}

/// Prepares a job on the docker executor (`Platform::Docker`): the job container runs
/// `image` unless the job has a `container:`.
pub(crate) async fn prepare_docker(
    docker: &RunDocker,
    options: &crate::RunOptions,
    image: &str,
    spec: JobSpec,
) -> Result<Box<dyn JobHost>, ExecError> {
    let image = Some(image).filter(|i| !i.is_empty());
    docker.engine(options.docker_host.as_deref())?.prepare_with_image(spec, image).await
}
