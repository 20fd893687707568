//! The polling fallback for repositories without webhooks: every `poll_interval`,
//! `git ls-remote --heads --tags`, and a push trigger for every branch or tag whose commit
//! changed since the last poll (what was seen is kept in the store, so pushes made while the
//! server was down are picked up). The first poll of a repository only records what is there.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::RepositoryConfig;
use crate::trigger::Trigger;
use crate::{AppState, Change, ServerError, now_ms};

const ZERO: &str = "0000000000000000000000000000000000000000";

/// `ref -> sha` of the remote's branches and tags (annotated tags' peeled lines skipped).
async fn ls_remote(state: &AppState, clone_url: &str) -> Result<HashMap<String, String>, ServerError> {
    let dir = state.0.options.data_dir.clone();
    let out = crate::git::git(&dir, &["ls-remote", "--heads", "--tags", clone_url]).await?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, r)| !r.ends_with("^{}"))
        .map(|(sha, r)| (r.to_owned(), sha.to_owned()))
        .collect())
}

/// One poll: triggers runs for changed refs. Returns how many runs were created.
pub(crate) async fn poll_once(state: &AppState, repo: &RepositoryConfig) -> Result<usize, ServerError> {
    let remote = ls_remote(state, &repo.clone_url).await?;
    let repo_id = state.db().upsert_repository(&repo.name, &repo.clone_url, repo.forge.as_str(), now_ms()).await?;
    let Some(known) = state.db().polled_refs(repo_id).await? else {
        for (r, sha) in &remote {
            state.db().set_polled_ref(repo_id, r, sha).await?;
        }
        state.db().set_polled_ref(repo_id, "", "").await?;
        return Ok(0);
    };
    let known: HashMap<String, String> = known.into_iter().collect();
    let mut refs: Vec<(&String, &String)> = remote.iter().filter(|(r, sha)| known.get(*r) != Some(*sha)).collect();
    refs.sort();
    let mut created = 0;
    for (r, sha) in refs {
        let before = known.get(r).map_or(ZERO, String::as_str);
        let payload = json!({
            "ref": r, "before": before, "after": sha,
            "repository": {"full_name": repo.name, "clone_url": repo.clone_url},
            "pusher": {"login": ""}, "commits": [],
        });
        let trigger = Trigger {
            repository: repo.name.clone(),
            event: "push".to_owned(),
            git_ref: r.clone(),
            sha: sha.clone(),
            before: Some(before.to_owned()),
            actor: String::new(),
            payload,
            payload_changed: None,
            action: None,
            base_ref: None,
            inputs: Default::default(),
            only_workflow: None,
        };
        let runs = crate::trigger::start_runs(state, repo, trigger).await?;
        tracing::info!(repository = %repo.name, git_ref = %r, %sha, runs = ?runs, "Poll found a new commit.");
        created += runs.len();
        state.db().set_polled_ref(repo_id, r, sha).await?;
    }
    Ok(created)
}

/// Polls the repository `name` every `interval` until `stop` (its settings are read from the
/// server's snapshot at every poll).
pub(crate) async fn run(state: AppState, name: String, interval: Duration, stop: CancellationToken) {
    loop {
        let Some(repo) = state.repository(&name) else { return };
        if let Err(error) = poll_once(&state, &repo).await {
            tracing::warn!(repository = %repo.name, %error, "Polling failed; trying again next interval.");
        }
        state.changed(Change::Polled(repo.name.clone()));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
