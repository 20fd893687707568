//! Where an app lands: the live side of a reconcile. A target finds the app's live objects
//! (by its tracking label or directory), applies one object, and deletes one.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::model::{HealthStatus, Key, LiveObject, Object};
use crate::render::Desired;

pub mod docker;
pub mod kubernetes;
pub mod local;

/// Progress lines.
pub type Log<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// A target operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {object}: {message}")]
pub struct TargetError {
    pub action: &'static str,
    pub object: String,
    pub message: String,
}

impl TargetError {
    pub fn new(action: &'static str, object: impl ToString, message: impl ToString) -> TargetError {
        TargetError {
            action,
            object: object.to_string(),
            message: message.to_string(),
        }
    }
}

#[async_trait]
pub trait Target: Send + Sync {
    /// `local`, `docker`, `kubernetes`.
    fn kind(&self) -> &'static str;

    /// Where namespaced objects without a namespace go (Kubernetes only).
    fn default_namespace(&self) -> &str {
        "default"
    }

    /// The app's live objects: every one the target can find for `app`, and those named in
    /// `known` (the agent's inventory) that still exist.
    async fn observe(
        &self,
        app: &str,
        known: &[Key],
    ) -> Result<BTreeMap<Key, LiveObject>, TargetError>;

    /// Creates or replaces one object and waits until it is healthy (or fails).
    async fn apply(
        &self,
        app: &str,
        object: &Object,
        desired: &Desired,
        log: Log<'_>,
    ) -> Result<(), TargetError>;

    /// Removes one object.
    async fn delete(&self, app: &str, key: &Key, log: Log<'_>) -> Result<(), TargetError>;
}

/// Runs a spec's `health` (`{"url"}` or `{"cmd"}`) once: `Ok(())` when it passes.
/// `cmd` is run by `run_cmd` (in the container, or in the release directory).
pub(crate) async fn check_once<F, Fut>(health: &Value, run_cmd: F) -> Result<(), String>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    if let Some(url) = health.get("url").and_then(Value::as_str) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        return match client.get(url).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("GET {url} answered {}", r.status())),
            Err(e) => Err(format!("GET {url}: {}", crate::chain(&e))),
        };
    }
    if let Some(cmd) = health.get("cmd").and_then(Value::as_str) {
        return run_cmd(cmd.to_owned()).await;
    }
    Ok(())
}

/// Retries [`check_once`] until it passes or the spec's `timeout_ms` runs out.
pub(crate) async fn wait_healthy<F, Fut>(health: &Value, run_cmd: F) -> Result<(), String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    if health.is_null() {
        return Ok(());
    }
    let timeout = health.get("timeout_ms").and_then(Value::as_u64).map_or(
        crate::appfile::DEFAULT_HEALTH_TIMEOUT,
        Duration::from_millis,
    );
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check_once(health, &run_cmd).await {
            Ok(()) => return Ok(()),
            Err(last) if tokio::time::Instant::now() >= deadline => {
                return Err(format!(
                    "the health check did not pass within {timeout:?} (last: {last})"
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A live object from parts.
pub(crate) fn live(
    key: Key,
    spec: Value,
    health: Result<(), (HealthStatus, String)>,
) -> (Key, LiveObject) {
    let (health, message) = match health {
        Ok(()) => (HealthStatus::Healthy, String::new()),
        Err(x) => x,
    };
    (
        key.clone(),
        LiveObject {
            key,
            spec,
            health,
            message,
        },
    )
}
