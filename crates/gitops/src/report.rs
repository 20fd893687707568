//! What the agent reports to `slipway server` (`POST /api/v1/gitops/report`, JSON): an app's
//! statuses and its recent sync history. The server stores it (idempotently: history entries
//! are keyed by agent, app and entry id) and lists it beside the deployments.

pub use protocol::gitops::Report;

use crate::agent::AppStatus;

/// How many history entries a report carries.
pub const REPORT_HISTORY: usize = 20;

/// The report of one app's status.
pub fn of(agent: &str, s: &AppStatus) -> Report {
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
