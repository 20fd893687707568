//! The service a release runs, supervised through any [`Host`]: started detached in its own
//! session, recorded in `<root>/service.pid` (`PID STARTTIME RELEASE`), stopped with SIGTERM to
//! its process group, then SIGKILL after a grace period.
//!
//! The start time from `/proc/PID/stat` is recorded with the pid, so a recycled pid is never
//! mistaken for the service, and a zombie counts as stopped.

use std::time::Duration;

use crate::host::{Host, HostError, Signal};

/// How often a stopping service is checked.
const POLL: Duration = Duration::from_millis(50);
/// How long to wait after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("the service (pid {pid}) of release {release} did not stop after SIGKILL")]
    Unkillable { pid: u32, release: String },
}

/// A running (or once running) service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub pid: u32,
    pub start_time: u64,
    pub release: String,
}

pub fn pid_file(root: &str) -> String {
    format!("{root}/service.pid")
}

/// The service log of a release (inside the release directory).
pub fn log_file(root: &str, release: &str) -> String {
    format!("{root}/releases/{release}/.slipway-service.log")
}

/// The state letter and start time of `pid`, from `/proc/PID/stat`.
async fn proc_stat(host: &dyn Host, pid: u32) -> Result<Option<(char, u64)>, HostError> {
    let Some(bytes) = host.read_file(&format!("/proc/{pid}/stat")).await? else {
        return Ok(None);
    };
    Ok(parse_stat(&String::from_utf8_lossy(&bytes)))
}

fn parse_stat(stat: &str) -> Option<(char, u64)> {
    // `pid (comm) S ppid ...`; comm may hold spaces and parentheses, so split at the last `)`.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?; // field 22 of stat
    Some((state, start))
}

/// Whether `svc` is still running (not gone, not a zombie, not a recycled pid).
pub async fn is_running(host: &dyn Host, svc: &Service) -> Result<bool, HostError> {
    Ok(
        matches!(proc_stat(host, svc.pid).await?, Some((state, start)) if start == svc.start_time && state != 'Z' && state != 'X'),
    )
}

/// The service recorded in `<root>/service.pid`, if any.
pub async fn recorded(host: &dyn Host, root: &str) -> Result<Option<Service>, HostError> {
    let Some(bytes) = host.read_file(&pid_file(root)).await? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut it = text.split_whitespace();
    let (Some(pid), Some(start), Some(release)) = (it.next(), it.next(), it.next()) else {
        return Ok(None);
    };
    match (pid.parse(), start.parse()) {
        (Ok(pid), Ok(start_time)) => Ok(Some(Service {
            pid,
            start_time,
            release: release.to_owned(),
        })),
        _ => Ok(None),
    }
}

/// Starts `command` for `release` and records it.
pub async fn start(
    host: &dyn Host,
    root: &str,
    release: &str,
    command: &str,
    env: &[(String, String)],
) -> Result<Service, HostError> {
    let dir = format!("{root}/releases/{release}");
    let mut env = env.to_vec();
    env.push(("SLIPWAY_RELEASE".into(), release.into()));
    env.push(("SLIPWAY_RELEASE_DIR".into(), dir.clone()));
    let pid = host
        .spawn_detached(&dir, command, &env, &log_file(root, release))
        .await?;
    // The process exists until it is reaped, so its stat is readable even if it exited at once.
    let start_time = proc_stat(host, pid).await?.map(|(_, s)| s).unwrap_or(0);
    let svc = Service {
        pid,
        start_time,
        release: release.to_owned(),
    };
    host.write_file(
        &pid_file(root),
        format!("{pid} {start_time} {release}\n").as_bytes(),
    )
    .await?;
    Ok(svc)
}

/// Stops the recorded service, if it runs: SIGTERM to its group, `grace`, then SIGKILL.
pub async fn stop(
    host: &dyn Host,
    root: &str,
    grace: Duration,
) -> Result<Option<Service>, SupervisorError> {
    let Some(svc) = recorded(host, root).await? else {
        return Ok(None);
    };
    if is_running(host, &svc).await? {
        host.signal_group(svc.pid, Signal::Term).await?;
        if !wait_stopped(host, &svc, grace).await? {
            tracing::warn!(pid = svc.pid, release = %svc.release, "Service ignored SIGTERM; killing it.");
            host.signal_group(svc.pid, Signal::Kill).await?;
            if !wait_stopped(host, &svc, KILL_WAIT).await? {
                return Err(SupervisorError::Unkillable {
                    pid: svc.pid,
                    release: svc.release,
                });
            }
        }
    }
    host.remove_all(&pid_file(root)).await?;
    Ok(Some(svc))
}

async fn wait_stopped(host: &dyn Host, svc: &Service, within: Duration) -> Result<bool, HostError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if !is_running(host, svc).await? {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The end of a release's service log, for error messages.
pub async fn log_tail(host: &dyn Host, root: &str, release: &str) -> String {
    match host.read_file(&log_file(root, release)).await {
        Ok(Some(b)) => crate::host::tail_chars(String::from_utf8_lossy(&b).trim(), 600),
        _ => String::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::host::LocalHost;

    #[test]
    fn stat_parsing() {
        let line = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[tokio::test]
    async fn start_and_stop_a_service_that_ignores_sigterm() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_str().unwrap();
        std::fs::create_dir_all(format!("{root}/releases/r1")).unwrap();
        let h = LocalHost;
        // Ignores TERM: the supervisor must fall back to KILL. `exec sleep` keeps the pid.
        let svc = start(
            &h,
            root,
            "r1",
            "trap '' TERM; echo started; exec sleep 300",
            &[],
        )
        .await
        .unwrap();
        assert!(is_running(&h, &svc).await.unwrap());
        assert_eq!(recorded(&h, root).await.unwrap(), Some(svc.clone()));
        let stopped = stop(&h, root, Duration::from_millis(200)).await.unwrap();
        assert_eq!(stopped, Some(svc.clone()));
        assert!(!is_running(&h, &svc).await.unwrap());
        assert_eq!(recorded(&h, root).await.unwrap(), None);
        assert_eq!(
            stop(&h, root, Duration::from_millis(200)).await.unwrap(),
            None
        );
    }
}
