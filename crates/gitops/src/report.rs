//! What the agent reports to `slipway server` (`POST /api/v1/gitops/report`, JSON): an app's
//! statuses and its recent sync history. The server stores it (idempotently: history entries
//! are keyed by agent, app and entry id) and lists it beside the deployments.

use serde::{Deserialize, Serialize};

use crate::agent::AppStatus;
use crate::state::HistoryEntry;

/// How many history entries a report carries.
pub const REPORT_HISTORY: usize = 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub agent: String,
    pub app: String,
    pub repository: String,
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
    pub paused: bool,
    pub message: String,
    pub reconciled_at: i64,
    pub history: Vec<HistoryEntry>,
}

impl Report {
    pub fn from_status(agent: &str, s: &AppStatus) -> Report {
        let h = &s.record.history;
        Report {
            agent: agent.to_owned(),
            app: s.app.clone(),
            repository: s.repository.clone(),
            path: s.path.clone(),
            branch: s.branch.clone(),
            target: s.target.clone(),
            revision: s.record.revision.clone(),
            target_revision: s.record.target_revision.clone(),
            sync: s.record.sync.as_str().to_owned(),
            health: s.record.health.as_str().to_owned(),
            paused: s.record.paused,
            message: s.record.message.clone(),
            reconciled_at: s.record.reconciled_at,
            history: h[h.len().saturating_sub(REPORT_HISTORY)..].to_vec(),
        }
    }
}
