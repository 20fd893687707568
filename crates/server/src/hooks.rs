//! Webhook receivers: `/hooks/{gitea,forgejo,github,gitlab,generic}`.
//!
//! Each request is checked in this order, and refused with a 4xx and a reason (logged)
//! at the first problem, with nothing queued: body size (413), JSON (400), a known
//! repository (404), the signature (401: `X-Gitea-Signature`/`X-Forgejo-Signature` hex HMAC-SHA256,
//! `X-Hub-Signature-256` `sha256=` HMAC, `X-Gitlab-Token`, `X-Slipway-Signature`; all compared
//! in constant time), the delivery id (400 when missing, 409 when seen before).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Forge;
use crate::trigger::Trigger;
use crate::{AppState, error_response};

/// Verifies an HMAC-SHA256 signature given as hex (with or without a `sha256=` prefix).
pub fn verify_hmac(secret: &str, body: &[u8], signature: &str) -> bool {
    let hex_sig = signature.trim().strip_prefix("sha256=").unwrap_or(signature.trim());
    let Ok(expected) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The HMAC-SHA256 of `body` as lowercase hex (what forges send).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
}

fn refuse(status: StatusCode, forge: &str, reason: String) -> Response {
    tracing::warn!(%forge, %status, %reason, "Webhook refused.");
    error_response(status, reason)
}

/// `POST /hooks/{forge}`.
pub async fn receive(
    State(state): State<AppState>,
    Path(forge): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let forge_kind = match forge.as_str() {
        "gitea" => Forge::Gitea,
        "forgejo" => Forge::Forgejo,
        "github" => Forge::Github,
        "gitlab" => Forge::Gitlab,
        "generic" => Forge::Generic,
        other => return refuse(StatusCode::NOT_FOUND, other, format!("unknown webhook kind `{other}`")),
    };
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &forge, format!("malformed JSON body: {e}")),
    };
    let repo_name = match forge_kind {
        Forge::Gitlab => payload.pointer("/project/path_with_namespace").and_then(Value::as_str),
        Forge::Generic => payload.get("repository").and_then(Value::as_str),
        _ => payload.pointer("/repository/full_name").and_then(Value::as_str),
    };
    let Some(repo_name) = repo_name else {
        return refuse(StatusCode::BAD_REQUEST, &forge, "the payload names no repository".to_owned());
    };
    let repo = match state.repository_fresh(repo_name).await {
        Ok(Some(r)) => r,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, &forge, format!("unknown repository `{repo_name}`")),
        Err(e) => return crate::internal(e),
    };
    let Some(secret) = repo.webhook_secret.as_deref() else {
        return refuse(StatusCode::FORBIDDEN, &forge, format!("repository `{repo_name}` has no webhook_secret configured"));
    };
    let verified = match forge_kind {
        Forge::Gitlab => header(&headers, &["x-gitlab-token"])
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(secret.as_bytes()))),
        Forge::Generic => header(&headers, &["x-slipway-signature"]).is_some_and(|s| verify_hmac(secret, &body, s)),
        Forge::Github => header(&headers, &["x-hub-signature-256"]).is_some_and(|s| verify_hmac(secret, &body, s)),
        Forge::Gitea | Forge::Forgejo => header(
            &headers,
            &["x-forgejo-signature", "x-gitea-signature", "x-hub-signature-256"],
        )
        .is_some_and(|s| verify_hmac(secret, &body, s)),
    };
    if !verified {
        return refuse(StatusCode::UNAUTHORIZED, &forge, format!("bad or missing signature for `{repo_name}`"));
    }
    let delivery = header(
        &headers,
        match forge_kind {
            Forge::Gitea => &["x-gitea-delivery", "x-github-delivery"][..],
            Forge::Forgejo => &["x-forgejo-delivery", "x-gitea-delivery", "x-github-delivery"],
            Forge::Github => &["x-github-delivery"],
            Forge::Gitlab => &["x-gitlab-event-uuid", "idempotency-key", "x-gitlab-webhook-uuid"],
            Forge::Generic => &["x-slipway-delivery"],
        },
    );
    let Some(delivery) = delivery.filter(|d| !d.is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, &forge, "missing delivery id header".to_owned());
    };
    let event = match forge_kind {
        Forge::Gitea => header(&headers, &["x-gitea-event", "x-github-event"]),
        Forge::Forgejo => header(&headers, &["x-forgejo-event", "x-gitea-event", "x-github-event"]),
        Forge::Github => header(&headers, &["x-github-event"]),
        Forge::Gitlab => header(&headers, &["x-gitlab-event"]),
        Forge::Generic => Some(header(&headers, &["x-slipway-event"]).unwrap_or("push")),
    }
    .unwrap_or_default()
    .to_owned();
    match state.db().record_delivery(forge_kind.as_str(), delivery, crate::now_ms()).await {
        Ok(true) => {}
        Ok(false) => {
            return refuse(StatusCode::CONFLICT, &forge, format!("delivery `{delivery}` was already received (replay)"));
        }
        Err(e) => return crate::internal(e),
    }
    let trigger = match normalize(forge_kind, &event, &payload, repo_name) {
        Ok(Some(t)) => t,
        Ok(None) => {
            tracing::info!(%forge, %event, %delivery, "Webhook event ignored.");
            return (StatusCode::ACCEPTED, Json(protocol::Created::default())).into_response();
        }
        Err(reason) => return refuse(StatusCode::BAD_REQUEST, &forge, reason),
    };
    match crate::trigger::start_runs(&state, &repo, trigger).await {
        Ok(runs) => {
            tracing::info!(%forge, %delivery, runs = ?runs, "Webhook accepted.");
            (StatusCode::ACCEPTED, Json(protocol::Created { runs })).into_response()
        }
        Err(e) => {
            tracing::error!(%forge, %delivery, error = %e, "Webhook could not start runs.");
            // Let the forge's redelivery through.
            if let Err(error) = state.db().forget_delivery(forge_kind.as_str(), delivery).await {
                tracing::error!(%error, "Forgetting a failed delivery failed.");
            }
            error_response(StatusCode::BAD_GATEWAY, format!("{e:#}"))
        }
    }
}

fn s<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn changed_from_commits(payload: &Value) -> Option<Vec<String>> {
    let commits = payload.get("commits")?.as_array()?;
    let mut out = Vec::new();
    for c in commits {
        for key in ["added", "modified", "removed"] {
            for f in c.get(key)?.as_array()? {
                if let Some(f) = f.as_str()
                    && !out.iter().any(|x| x == f)
                {
                    out.push(f.to_owned());
                }
            }
        }
    }
    Some(out)
}

/// Turns a forge's event into a [`Trigger`]. `Ok(None)`: an event that starts nothing
/// (ping, a deleted branch, an unsupported kind).
fn normalize(forge: Forge, event: &str, p: &Value, repo: &str) -> Result<Option<Trigger>, String> {
    let missing = |what: &str| format!("the {event} payload has no `{what}`");
    let push = |git_ref: &str, before: Option<&str>, after: &str, actor: &str| {
        Some(Trigger {
            repository: repo.to_owned(),
            event: "push".to_owned(),
            git_ref: git_ref.to_owned(),
            sha: after.to_owned(),
            before: before.map(str::to_owned),
            actor: actor.to_owned(),
            payload: p.clone(),
            payload_changed: changed_from_commits(p),
            action: None,
            base_ref: None,
            inputs: Default::default(),
            only_workflow: None,
        })
    };
    match (forge, event) {
        (Forge::Gitlab, "Push Hook" | "Tag Push Hook") => {
            let git_ref = s(p, "/ref").ok_or_else(|| missing("ref"))?;
            let after = s(p, "/checkout_sha").or(s(p, "/after")).ok_or_else(|| missing("after"))?;
            if after.bytes().all(|b| b == b'0') {
                return Ok(None);
            }
            Ok(push(git_ref, s(p, "/before"), after, s(p, "/user_username").unwrap_or_default()))
        }
        (Forge::Gitlab, "Merge Request Hook") => {
            let attrs = p.get("object_attributes").ok_or_else(|| missing("object_attributes"))?;
            let action = match attrs.get("action").and_then(Value::as_str).unwrap_or_default() {
                "open" => "opened",
                "update" => "synchronize",
                "reopen" => "reopened",
                "close" | "merge" => "closed",
                _ => return Ok(None),
            };
            let sha = s(attrs, "/last_commit/id").ok_or_else(|| missing("object_attributes.last_commit.id"))?;
            let iid = attrs.get("iid").and_then(Value::as_i64).unwrap_or_default();
            Ok(Some(Trigger {
                repository: repo.to_owned(),
                event: "pull_request".to_owned(),
                git_ref: format!("refs/merge-requests/{iid}/head"),
                sha: sha.to_owned(),
                before: None,
                actor: s(p, "/user/username").unwrap_or_default().to_owned(),
                payload: p.clone(),
                payload_changed: None,
                action: Some(action.to_owned()),
                base_ref: s(attrs, "/target_branch").map(str::to_owned),
                inputs: Default::default(),
            only_workflow: None,
            }))
        }
        (Forge::Gitlab, _) => Ok(None),
        (_, "push") => {
            if p.get("deleted").and_then(Value::as_bool) == Some(true) {
                return Ok(None);
            }
            let git_ref = s(p, "/ref").ok_or_else(|| missing("ref"))?;
            let after = s(p, "/after").or(s(p, "/sha")).ok_or_else(|| missing("after"))?;
            if after.bytes().all(|b| b == b'0') {
                return Ok(None);
            }
            let actor = s(p, "/pusher/login")
                .or(s(p, "/pusher/username"))
                .or(s(p, "/pusher/name"))
                .or(s(p, "/sender/login"))
                .or(s(p, "/actor"))
                .unwrap_or_default();
            Ok(push(git_ref, s(p, "/before"), after, actor))
        }
        (Forge::Gitea | Forge::Forgejo | Forge::Github, "pull_request") => {
            let action = s(p, "/action").ok_or_else(|| missing("action"))?;
            let sha = s(p, "/pull_request/head/sha").ok_or_else(|| missing("pull_request.head.sha"))?;
            let number = p.get("number").and_then(Value::as_i64).unwrap_or_default();
            Ok(Some(Trigger {
                repository: repo.to_owned(),
                event: "pull_request".to_owned(),
                git_ref: format!("refs/pull/{number}/head"),
                sha: sha.to_owned(),
                before: None,
                actor: s(p, "/sender/login").unwrap_or_default().to_owned(),
                payload: p.clone(),
                payload_changed: None,
                action: Some(if action == "synchronized" { "synchronize".to_owned() } else { action.to_owned() }),
                base_ref: s(p, "/pull_request/base/ref").map(str::to_owned),
                inputs: Default::default(),
            only_workflow: None,
            }))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_verification() {
        let sig = sign("secret", b"body");
        assert!(verify_hmac("secret", b"body", &sig));
        assert!(verify_hmac("secret", b"body", &format!("sha256={sig}")));
        assert!(!verify_hmac("secret", b"body2", &sig));
        assert!(!verify_hmac("other", b"body", &sig));
        assert!(!verify_hmac("secret", b"body", "not hex"));
        assert!(!verify_hmac("secret", b"body", ""));
    }
}
