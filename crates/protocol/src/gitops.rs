//! What a GitOps agent reports to `slipway server` (`POST /api/v1/gitops/report`): one app's
//! statuses and its recent sync history. The server stores it idempotently (history entries
//! are keyed by agent, app and entry id) and shows it beside the deployments.

use serde::{Deserialize, Serialize};

/// One app's report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub agent: String,
    pub app: String,
    pub repository: String,
    #[serde(default)]
    pub path: String,
    pub branch: String,
    pub target: String,
    /// The revision last synced successfully.
    pub revision: Option<String>,
    /// The revision the agent compares against (branch head, or a rollback's).
    pub target_revision: Option<String>,
    /// `Synced`, `OutOfSync`, `Unknown`.
    pub sync: String,
    /// `Healthy`, `Progressing`, `Missing`, `Degraded`.
    pub health: String,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub message: String,
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub reconciled_at: i64,
    /// The newest entries of the app's sync history, oldest first.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// One sync (an apply of a revision): a line of an app's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Increasing per app.
    pub id: u64,
    pub revision: String,
    /// Milliseconds since the Unix epoch.
    pub started_at: i64,
    pub finished_at: i64,
    /// `succeeded` or `failed`.
    pub result: String,
    /// `auto-sync` (a new revision), `self-heal` (drift at the same revision), `rollback`, `resume`.
    pub trigger: String,
    #[serde(default)]
    pub message: String,
    /// What changed: `create service/web`, ...
    #[serde(default)]
    pub changes: Vec<String>,
    /// From the revision's `Slipway-Source-Commit:` trailer (a promote commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    /// From the revision's `Slipway-Run:` trailer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}
