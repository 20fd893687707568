//! Commit statuses: `pending` when a run is created, then `success`/`failure`/`error` when it
//! finishes, sent to the repository's forge with retries (exponential backoff).
//!
//! | forge | request |
//! |---|---|
//! | gitea, forgejo | `POST {forge_api}/repos/{owner}/{repo}/statuses/{sha}`, `Authorization: token T` |
//! | github | `POST {forge_api}/repos/{owner}/{repo}/statuses/{sha}`, `Authorization: Bearer T` |
//! | gitlab | `POST {forge_api}/projects/{url-encoded owner/repo}/statuses/{sha}`, `PRIVATE-TOKEN: T` |
//! | generic | nothing is sent |
//!
//! Updates are delivered one at a time in the order they were made, so a run's `pending`
//! always reaches the forge before its final state.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Forge, RepositoryConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

/// One status to deliver.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub repository: RepositoryConfig,
    pub sha: String,
    pub state: StatusState,
    pub context: String,
    pub description: String,
    pub target_url: String,
}

/// Retry policy.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub backoff: Duration,
    pub attempts: u32,
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("sending the request")]
    Http(#[from] reqwest::Error),
    #[error("the forge answered {0}")]
    Status(reqwest::StatusCode),
}

/// The request for an update: (url, auth header name, auth header value, JSON body).
/// `None` for forges that take no statuses or repositories without `forge_api`.
pub fn request_for(u: &StatusUpdate) -> Option<(String, &'static str, Option<String>, serde_json::Value)> {
    let api = u.repository.forge_api.as_deref()?;
    let token = u.repository.forge_token.clone();
    match u.repository.forge {
        Forge::Gitea | Forge::Forgejo | Forge::Github => {
            let state = match u.state {
                StatusState::Pending => "pending",
                StatusState::Success => "success",
                StatusState::Failure => "failure",
                StatusState::Error => "error",
            };
            let auth = if u.repository.forge == Forge::Github {
                token.map(|t| format!("Bearer {t}"))
            } else {
                token.map(|t| format!("token {t}"))
            };
            Some((
                format!("{api}/repos/{}/statuses/{}", u.repository.name, u.sha),
                "authorization",
                auth,
                json!({"state": state, "target_url": u.target_url, "description": u.description, "context": u.context}),
            ))
        }
        Forge::Gitlab => {
            let state = match u.state {
                StatusState::Pending => "pending",
                StatusState::Success => "success",
                StatusState::Failure => "failed",
                StatusState::Error => "canceled",
            };
            let project: String = url::form_urlencoded::byte_serialize(u.repository.name.as_bytes()).collect();
            Some((
                format!("{api}/projects/{project}/statuses/{}", u.sha),
                "private-token",
                token,
                json!({"state": state, "target_url": u.target_url, "description": u.description, "name": u.context}),
            ))
        }
        Forge::Generic => None,
    }
}

async fn send(client: &reqwest::Client, u: &StatusUpdate) -> Result<(), SendError> {
    let Some((url, header, auth, body)) = request_for(u) else { return Ok(()) };
    let mut req = client.post(&url).json(&body).header("accept", "application/json");
    if let Some(auth) = auth {
        req = req.header(header, auth);
    }
    let resp = req.send().await?;
    if resp.status().is_success() { Ok(()) } else { Err(SendError::Status(resp.status())) }
}

/// Delivers updates from `rx` until `stop`; each is tried `attempts` times with a doubling
/// backoff, then dropped with an error log.
pub async fn deliver(mut rx: mpsc::UnboundedReceiver<StatusUpdate>, opts: Delivery, stop: CancellationToken) {
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(30)).build() {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "Cannot build the HTTP client for commit statuses.");
            return;
        }
    };
    loop {
        let update = tokio::select! {
            _ = stop.cancelled() => return,
            u = rx.recv() => match u { Some(u) => u, None => return },
        };
        let mut delay = opts.backoff;
        for attempt in 1..=opts.attempts.max(1) {
            match send(&client, &update).await {
                Ok(()) => break,
                Err(error) => {
                    let error = format!("{error:#}");
                    if attempt == opts.attempts.max(1) {
                        tracing::error!(sha = %update.sha, context = %update.context, %error, "Commit status not delivered.");
                        break;
                    }
                    tracing::warn!(sha = %update.sha, attempt, %error, "Commit status delivery failed; retrying.");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = delay.saturating_mul(2);
                }
            }
        }
    }
}
