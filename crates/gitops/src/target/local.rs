//! The `local` target: each service is a release-directory deploy on this host (the
//! `deploy` crate's rollout and supervisor) under `<root>/<app>/<service>`, beside a
//! `gitops.json` holding the spec that was applied. The live spec is that record with the
//! observed process state (`running` or `stopped`); a service killed by hand is drift.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use deploy::host::LocalHost;
use serde_json::{Value, json};

use super::{Log, Target, TargetError, live};
use crate::model::{HealthStatus, Key, LiveObject, Object};
use crate::render::Desired;

const RECORD: &str = "gitops.json";

/// Services as supervised processes under `root`.
pub struct LocalTarget {
    root: PathBuf,
}

impl LocalTarget {
    pub fn new(root: impl Into<PathBuf>) -> LocalTarget {
        LocalTarget { root: root.into() }
    }

    fn service_root(&self, app: &str, service: &str) -> PathBuf {
        self.root.join(app).join(service)
    }
}

async fn run_in(dir: &Path, cmd: &str) -> Result<(), String> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("running `{cmd}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{cmd}` exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[async_trait]
impl Target for LocalTarget {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn observe(
        &self,
        app: &str,
        _known: &[Key],
    ) -> Result<BTreeMap<Key, LiveObject>, TargetError> {
        let dir = self.root.join(app);
        let mut out = BTreeMap::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(TargetError::new("reading", dir.display(), e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for service in names {
            let root = self.service_root(app, &service);
            let root_s = root.to_string_lossy().into_owned();
            // No record: a first apply that never finished; still the app's (prunable).
            let mut spec: Value = std::fs::read(root.join(RECORD))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_else(|| json!({"state": "unknown"}));
            let svc = deploy::supervisor::recorded(&LocalHost, &root_s)
                .await
                .map_err(|e| TargetError::new("reading the service of", &root_s, e))?;
            let running = match &svc {
                Some(s) => deploy::supervisor::is_running(&LocalHost, s)
                    .await
                    .unwrap_or(false),
                None => false,
            };
            if spec.get("state").is_some_and(|s| s == "running") && !running {
                spec["state"] = json!("stopped");
            }
            let health = if !running {
                Err((
                    HealthStatus::Degraded,
                    "the service is not running".to_owned(),
                ))
            } else {
                let current = root.join("current");
                super::check_once(&spec["health"], |cmd| async move {
                    run_in(&current, &cmd).await
                })
                .await
                .map_err(|e| (HealthStatus::Degraded, e))
            };
            let (k, l) = live(Key::service(&service), spec, health);
            out.insert(k, l);
        }
        Ok(out)
    }

    async fn apply(
        &self,
        app: &str,
        object: &Object,
        desired: &Desired,
        log: Log<'_>,
    ) -> Result<(), TargetError> {
        let service = &object.key.name;
        let root = self.service_root(app, service);
        let root_s = root.to_string_lossy().into_owned();
        let spec = &object.spec;
        std::fs::create_dir_all(&root).map_err(|e| TargetError::new("creating", &root_s, e))?;
        let fail = |e: &dyn std::fmt::Display| TargetError::new("deploying service", service, e);
        let source = match (desired.files.get(service), spec["image"].as_str()) {
            (Some(dir), _) => deploy::source::Source::ArtifactDir(dir.clone()),
            (None, Some(image)) => {
                let s = deploy::source::Source::image(image, &root).map_err(|e| fail(&e))?;
                let layout = root.join("image");
                let _ = std::fs::remove_dir_all(&layout);
                deploy::source::pull(s, &layout, None)
                    .await
                    .map_err(|e| fail(&e))?
            }
            (None, None) => {
                // Nothing to install: an empty release holds the service's working directory.
                let empty = root.join("empty");
                std::fs::create_dir_all(&empty).map_err(|e| fail(&e))?;
                deploy::source::Source::ArtifactDir(empty)
            }
        };
        let mut opts = deploy::rollout::Options::new(root_s.clone());
        opts.command = spec["command"].as_str().map(str::to_owned);
        opts.env = spec["env"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        opts.health = match (&spec["health"]["url"], &spec["health"]["cmd"]) {
            (Value::String(u), _) => Some(deploy::rollout::Health::Url(u.clone())),
            (_, Value::String(c)) => Some(deploy::rollout::Health::Command(c.clone())),
            _ => None,
        };
        if let Some(t) = spec["health"]["timeout_ms"].as_u64() {
            opts.health_timeout = Duration::from_millis(t);
        }
        opts.stop_timeout = Duration::from_secs(5);
        opts.keep = 3;
        // The record goes first as "not yet applied": a crash mid-deploy is seen as drift.
        write_record(&root, &json!({"state": "applying"}))?;
        let sink = |l: &str| log(l);
        deploy::rollout::deploy(&LocalHost, &source, &opts, &sink)
            .await
            .map_err(|e| fail(&crate::chain(&e)))?;
        write_record(&root, spec)?;
        Ok(())
    }

    async fn delete(&self, app: &str, key: &Key, log: Log<'_>) -> Result<(), TargetError> {
        let root = self.service_root(app, &key.name);
        let root_s = root.to_string_lossy().into_owned();
        log(&format!("Stopping and removing {root_s}"));
        deploy::supervisor::stop(&LocalHost, &root_s, Duration::from_secs(5))
            .await
            .map_err(|e| TargetError::new("stopping", &root_s, e))?;
        match std::fs::remove_dir_all(&root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(TargetError::new("removing", &root_s, e)),
        }
    }
}

fn write_record(root: &Path, spec: &Value) -> Result<(), TargetError> {
    let tmp = root.join(format!("{RECORD}.tmp"));
    std::fs::write(&tmp, spec.to_string())
        .and_then(|()| std::fs::rename(&tmp, root.join(RECORD)))
        .map_err(|e| TargetError::new("recording", root.display(), e))
}
