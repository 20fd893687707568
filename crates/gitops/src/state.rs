//! What the agent remembers per app, in `<data>/state.json` (written to a temporary file and
//! renamed, so a crash never leaves it half-written): the revision last synced, the statuses,
//! whether auto-sync is paused (after a rollback), the inventory of applied objects, history.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{HealthStatus, Key, SyncStatus};

/// How many history entries an app keeps.
pub const HISTORY_LIMIT: usize = 50;

/// One sync (an apply of a revision): the agent's history line, as reported to the server.
pub use protocol::gitops::HistoryEntry;

/// One object's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceStatus {
    pub key: Key,
    pub sync: SyncStatus,
    pub health: HealthStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// An app's remembered state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The revision last synced successfully.
    pub revision: Option<String>,
    /// The revision the last reconcile compared against (the branch head, or the pinned one).
    pub target_revision: Option<String>,
    pub sync: SyncStatus,
    pub health: HealthStatus,
    /// Why the app is not Synced/Healthy, or the last error (Git unreachable, invalid file).
    pub message: String,
    /// Auto-sync is off until `resume` (set by a rollback).
    pub paused: bool,
    /// The revision a rollback pinned.
    pub pinned: Option<String>,
    /// Every object applied and not yet pruned: what pruning and drift detection look at.
    pub inventory: Vec<Key>,
    pub resources: Vec<ResourceStatus>,
    pub history: Vec<HistoryEntry>,
    /// When the last reconcile finished (ms since the epoch).
    pub reconciled_at: i64,
}

impl Default for AppRecord {
    fn default() -> AppRecord {
        AppRecord {
            revision: None,
            target_revision: None,
            sync: SyncStatus::Unknown,
            health: HealthStatus::Missing,
            message: String::new(),
            paused: false,
            pinned: None,
            inventory: Vec::new(),
            resources: Vec::new(),
            history: Vec::new(),
            reconciled_at: 0,
        }
    }
}

impl AppRecord {
    pub fn push_history(&mut self, mut entry: HistoryEntry) {
        entry.id = self.history.last().map_or(1, |h| h.id + 1);
        self.history.push(entry);
        if self.history.len() > HISTORY_LIMIT {
            let extra = self.history.len() - HISTORY_LIMIT;
            self.history.drain(..extra);
        }
    }
}

/// The whole state file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    pub apps: BTreeMap<String, AppRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid state file (fix or remove it): {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StateFile {
    pub fn path(data: &Path) -> PathBuf {
        data.join("state.json")
    }

    pub fn load(data: &Path) -> Result<StateFile, StateError> {
        let path = Self::path(data);
        match std::fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|source| StateError::Parse { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    pub fn save(&self, data: &Path) -> Result<(), StateError> {
        let path = Self::path(data);
        let tmp = data.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        std::fs::create_dir_all(data)
            .and_then(|()| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| StateError::Write { path, source })
    }
}
