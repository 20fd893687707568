//! The host executor: step processes run on this machine, each in its own process group
//! (so a timeout or cancellation reaches every child), optionally inside a bubblewrap
//! sandbox that only lets the job write its workspace and temp directories.
//!
//! Containers (`uses: docker://...`, docker actions) are delegated to a Docker engine when
//! one is configured.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncRead;

use super::{Command, ContainerSpec, ExecError, Executor, JobHost, JobSpec, Process};

/// Options of the host executor.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// Wrap every process in `bwrap` (bubblewrap).
    pub sandbox: bool,
    /// Docker endpoint for containers (`None`: `DOCKER_HOST` from the job's env, else none).
    pub docker_host: Option<String>,
}

/// Runs jobs as processes on this machine.
#[derive(Debug, Clone, Default)]
pub struct HostExecutor {
    options: HostOptions,
    /// The run's docker engines (containers of `docker://` steps and docker actions).
    docker: Arc<super::RunDocker>,
}

impl HostExecutor {
    pub fn new(options: HostOptions) -> HostExecutor {
        HostExecutor { options, docker: Arc::default() }
    }

    /// A host executor whose containers belong to the run of `docker`.
    pub fn with_docker(options: HostOptions, docker: Arc<super::RunDocker>) -> HostExecutor {
        HostExecutor { options, docker }
    }
}

#[async_trait]
impl Executor for HostExecutor {
    async fn prepare(&self, spec: JobSpec) -> Result<Box<dyn JobHost>, ExecError> {
        if spec.container.is_some() {
            return Err(ExecError::Other(
                "`container:` needs the docker executor (run with `--executor docker` or map the label with `-P label=docker://IMAGE`)".into(),
            ));
        }
        Ok(Box::new(HostJob {
            options: self.options.clone(),
            docker: self.docker.clone(),
            spec,
            groups: Arc::new(Mutex::new(Vec::new())),
        }))
    }
}

/// One job on the host.
pub struct HostJob {
    options: HostOptions,
    docker: Arc<super::RunDocker>,
    spec: JobSpec,
    /// Process groups started by this job (killed at cleanup: orphans don't outlive the job).
    groups: Arc<Mutex<Vec<i32>>>,
}

/// Finds `program` on the `PATH` of `env` (a program with a `/` is taken as is).
pub fn which(program: &str, path_var: Option<&str>, cwd: &Path) -> Option<PathBuf> {
    if program.contains('/') {
        let p = cwd.join(program);
        return p.is_file().then_some(p);
    }
    let path_var = path_var?;
    std::env::split_paths(path_var)
        .map(|dir| dir.join(program))
        .find(|c| is_executable(c))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[async_trait]
impl JobHost for HostJob {
    async fn spawn(&self, command: Command) -> Result<Box<dyn Process>, ExecError> {
        let not_found = || ExecError::Spawn {
            program: command.program.clone(),
            cwd: command.cwd.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("`{}` not found on PATH", command.program),
            ),
        };
        let resolved = which(
            &command.program,
            command.env.get("PATH").map(String::as_str),
            &command.cwd,
        )
        .ok_or_else(not_found)?;
        let mut cmd = if self.options.sandbox {
            let bwrap = which(
                "bwrap",
                std::env::var("PATH").ok().as_deref(),
                Path::new("/"),
            )
            .ok_or_else(|| {
                ExecError::Other("the sandbox needs bubblewrap: apt-get install bubblewrap".into())
            })?;
            let mut c = tokio::process::Command::new(bwrap);
            c.args(["--ro-bind", "/", "/"]);
            for m in &self.spec.mounts {
                c.arg("--bind").arg(m).arg(m);
            }
            c.args([
                "--dev",
                "/dev",
                "--proc",
                "/proc",
                "--unshare-all",
                "--share-net",
                "--die-with-parent",
            ]);
            c.arg("--chdir").arg(&command.cwd);
            c.arg(resolved);
            c
        } else {
            tokio::process::Command::new(resolved)
        };
        cmd.args(&command.args)
            .env_clear()
            .envs(&command.env)
            .current_dir(&command.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| ExecError::Spawn {
            program: command.program.clone(),
            cwd: command.cwd.clone(),
            source,
        })?;
        let pgid = child.id().and_then(|id| i32::try_from(id).ok());
        if let Some(pgid) = pgid
            && let Ok(mut g) = self.groups.lock()
        {
            g.push(pgid);
        }
        Ok(Box::new(HostProcess { child, pgid }))
    }

    async fn run_container(&self, spec: ContainerSpec) -> Result<Box<dyn Process>, ExecError> {
        let host = self
            .options
            .docker_host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()));
        match host {
            Some(host) => super::docker_container(&self.docker, &host, &self.spec, spec).await,
            None => Err(ExecError::Docker(format!(
                "running the container `{}` needs a Docker engine: set DOCKER_HOST (or --docker-host), or use the docker executor",
                spec.image
            ))),
        }
    }

    fn describe(&self) -> String {
        if self.options.sandbox {
            "host (bubblewrap)".into()
        } else {
            "host".into()
        }
    }

    async fn cleanup(&self) {
        let groups = self.groups.lock().map(|mut g| std::mem::take(&mut *g)).unwrap_or_default();
        for &pgid in &groups {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        // Wait (bounded) until the killed groups are gone, so that nothing of the job is
        // left running when the job is reported finished.
        for _ in 0..400 {
            if groups.iter().all(|&pgid| killpg(Pid::from_raw(pgid), None).is_err()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

/// A process group on the host.
pub struct HostProcess {
    child: tokio::process::Child,
    pgid: Option<i32>,
}

#[async_trait]
impl Process for HostProcess {
    fn take_stdout(&mut self) -> Option<Box<dyn AsyncRead + Send + Unpin>> {
        self.child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>)
    }

    fn take_stderr(&mut self) -> Option<Box<dyn AsyncRead + Send + Unpin>> {
        self.child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>)
    }

    async fn wait(&mut self) -> Result<ExitStatus, ExecError> {
        self.child
            .wait()
            .await
            .map_err(|e| ExecError::Other(format!("waiting for the process: {e}")))
    }

    fn terminate(&self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
        }
    }

    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}
