//! Where a release-directory deploy runs: the [`Host`] primitives, and [`LocalHost`].
//!
//! The release scheme, the supervisor and the health checks are written once against
//! [`Host`]; a target that can read and write files, unpack a tree, run a shell command and
//! signal a process group plugs in by implementing it (`ssh::SshHost` is the other one).
//! Paths are POSIX strings because they may name files on another machine.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),
    #[error("another deploy to {root} on {host} is running (it holds {root}/.deploy.lock)")]
    Busy { host: String, root: String },
    #[error("`{command}` on {host} exited with status {status}: {stderr}")]
    Remote {
        host: String,
        command: String,
        status: i32,
        stderr: String,
    },
}

pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> HostError + 'a {
    move |source| HostError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A finished command.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    /// The exit status; `-1` when the command was killed by a signal.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }
    /// The last part of stderr and stdout, for error messages.
    pub fn tail(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.stderr).into_owned();
        if s.trim().is_empty() {
            s = String::from_utf8_lossy(&self.stdout).into_owned();
        }
        tail_chars(s.trim(), 600)
    }
}

pub(crate) fn tail_chars(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        s.to_owned()
    } else {
        format!("...{}", s.chars().skip(count - n).collect::<String>())
    }
}

/// The signals the supervisor sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

/// A held deploy lock; give it back with [`Host::unlock`]. It is also released when the
/// process (or, over SSH, the connection) ends.
pub enum DeployLock {
    Local(nix::fcntl::Flock<fs::File>),
    Remote(russh::Channel<russh::client::Msg>),
}

/// The primitives a release-directory target provides.
#[async_trait]
pub trait Host: Send + Sync {
    /// For messages: `local`, `ssh root@host:22`.
    fn name(&self) -> String;
    /// A local directory on the same filesystem as `root`, when there is one: the source is
    /// unpacked there and [`Host::install`] renames it into place.
    fn local_staging(&self, root: &str) -> Option<PathBuf>;
    /// `None` when the file does not exist.
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// Replaces `path` atomically (write a temp file, rename).
    async fn write_file(&self, path: &str, bytes: &[u8]) -> Result<(), HostError>;
    async fn mkdir_p(&self, path: &str) -> Result<(), HostError>;
    /// Removes a file or a tree; missing is fine.
    async fn remove_all(&self, path: &str) -> Result<(), HostError>;
    /// Makes the local tree `staged` appear at `dst` all at once (never half-written).
    async fn install(&self, staged: &Path, dst: &str) -> Result<(), HostError>;
    /// Points the symlink `link` at `target` atomically (`link.tmp` then rename); `None`
    /// removes it.
    async fn point_symlink(&self, link: &str, target: Option<&str>) -> Result<(), HostError>;
    /// Runs `sh -c script` in `cwd` with `env` added, and waits for it.
    async fn exec(
        &self,
        script: &str,
        cwd: &str,
        env: &[(String, String)],
    ) -> Result<ExecOutput, HostError>;
    /// Starts `sh -c command` in its own session (so it outlives this process and the step),
    /// in `cwd`, with a clean environment (PATH, HOME) plus `env`, stdin from /dev/null and
    /// stdout/stderr appended to `log`. Returns its pid (= its process group id).
    async fn spawn_detached(
        &self,
        cwd: &str,
        command: &str,
        env: &[(String, String)],
        log: &str,
    ) -> Result<u32, HostError>;
    /// Signals the process group `pid`; a group that is gone is not an error.
    async fn signal_group(&self, pid: u32, signal: Signal) -> Result<(), HostError>;
    /// Takes `root`'s deploy lock (`root/.deploy.lock`, flock(2)) without waiting:
    /// [`HostError::Busy`] when another deploy holds it. Creates `root`.
    async fn lock(&self, root: &str) -> Result<DeployLock, HostError>;
    async fn unlock(&self, lock: DeployLock);
}

/// This machine.
#[derive(Clone, Debug, Default)]
pub struct LocalHost;

#[async_trait]
impl Host for LocalHost {
    fn name(&self) -> String {
        "local".into()
    }

    fn local_staging(&self, root: &str) -> Option<PathBuf> {
        Some(PathBuf::from(root).join("releases"))
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, HostError> {
        match tokio::fs::read(path).await {
            Ok(b) => Ok(Some(b)),
            // ESRCH: a /proc/PID file whose process went away while we read it.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc_esrch()) =>
            {
                Ok(None)
            }
            Err(e) => Err(io_err("reading", Path::new(path))(e)),
        }
    }

    async fn write_file(&self, path: &str, bytes: &[u8]) -> Result<(), HostError> {
        let tmp = format!("{path}.tmp");
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(io_err("writing", Path::new(&tmp)))?;
        tokio::fs::rename(&tmp, path)
            .await
            .map_err(io_err("renaming into place", Path::new(path)))
    }

    async fn mkdir_p(&self, path: &str) -> Result<(), HostError> {
        tokio::fs::create_dir_all(path)
            .await
            .map_err(io_err("creating", Path::new(path)))
    }

    async fn remove_all(&self, path: &str) -> Result<(), HostError> {
        let p = Path::new(path);
        let r = match tokio::fs::symlink_metadata(p).await {
            Ok(md) if md.is_dir() => tokio::fs::remove_dir_all(p).await,
            Ok(_) => tokio::fs::remove_file(p).await,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        r.map_err(io_err("removing", p))
    }

    async fn install(&self, staged: &Path, dst: &str) -> Result<(), HostError> {
        tokio::fs::rename(staged, dst)
            .await
            .map_err(io_err("moving a release into place at", Path::new(dst)))
    }

    async fn point_symlink(&self, link: &str, target: Option<&str>) -> Result<(), HostError> {
        let Some(target) = target else {
            return self.remove_all(link).await;
        };
        let tmp = format!("{link}.tmp");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp)
            .map_err(io_err("creating the symlink", Path::new(&tmp)))?;
        fs::rename(&tmp, link).map_err(io_err("switching the symlink", Path::new(link)))
    }

    async fn exec(
        &self,
        script: &str,
        cwd: &str,
        env: &[(String, String)],
    ) -> Result<ExecOutput, HostError> {
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(cwd)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(io_err("running `sh -c` in", Path::new(cwd)))?;
        Ok(ExecOutput {
            status: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    async fn spawn_detached(
        &self,
        cwd: &str,
        command: &str,
        env: &[(String, String)],
        log: &str,
    ) -> Result<u32, HostError> {
        let logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io_err("opening the service log", Path::new(log)))?;
        let logf2 = logf
            .try_clone()
            .map_err(io_err("opening the service log", Path::new(log)))?;
        let mut cmd = tokio::process::Command::new("setsid");
        cmd.arg("sh")
            .arg("-c")
            .arg(command)
            .current_dir(cwd)
            .env_clear();
        for k in ["PATH", "HOME", "LANG"] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(logf)
            .stderr(logf2);
        // Not a process-group leader, so `setsid` calls setsid(2) itself and execs: the pid
        // we get is the service's, and its session and group id. Dropping the handle leaves
        // it running (tokio reaps it if it exits while we live).
        let child = cmd.spawn().map_err(io_err(
            "starting the service (setsid sh -c) in",
            Path::new(cwd),
        ))?;
        child.id().ok_or_else(|| {
            io_err("starting the service in", Path::new(cwd))(io::Error::other("it exited at once"))
        })
    }

    async fn lock(&self, root: &str) -> Result<DeployLock, HostError> {
        self.mkdir_p(root).await?;
        let path = format!("{root}/.deploy.lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening the deploy lock", Path::new(&path)))?;
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(DeployLock::Local(l)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(HostError::Busy {
                host: self.name(),
                root: root.to_owned(),
            }),
            Err((_, e)) => Err(io_err("locking", Path::new(&path))(e.into())),
        }
    }

    async fn unlock(&self, lock: DeployLock) {
        drop(lock);
    }

    async fn signal_group(&self, pid: u32, signal: Signal) -> Result<(), HostError> {
        use nix::sys::signal::{Signal as S, killpg};
        let sig = match signal {
            Signal::Term => S::SIGTERM,
            Signal::Kill => S::SIGKILL,
        };
        let raw = i32::try_from(pid).unwrap_or(i32::MAX);
        match killpg(nix::unistd::Pid::from_raw(raw), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(io_err(
                "signalling the process group",
                Path::new(&format!("/proc/{pid}")),
            )(e.into())),
        }
    }
}

fn libc_esrch() -> i32 {
    nix::errno::Errno::ESRCH as i32
}

/// Quotes `s` for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a/b.c"), "a/b.c");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("it's $x"), r"'it'\''s $x'");
    }

    #[tokio::test]
    async fn symlink_switch_and_atomic_write() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_str().unwrap();
        let h = LocalHost;
        let link = format!("{root}/current");
        h.point_symlink(&link, Some("releases/a")).await.unwrap();
        h.point_symlink(&link, Some("releases/b")).await.unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("releases/b"));
        h.point_symlink(&link, None).await.unwrap();
        assert!(fs::symlink_metadata(&link).is_err());
        let f = format!("{root}/x.json");
        assert_eq!(h.read_file(&f).await.unwrap(), None);
        h.write_file(&f, b"1").await.unwrap();
        assert_eq!(h.read_file(&f).await.unwrap().as_deref(), Some(&b"1"[..]));
        assert!(!Path::new(&format!("{f}.tmp")).exists());
    }
}
