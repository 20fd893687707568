//! The expression [`Context`] the runner evaluates `${{ }}` against.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use workflow::expr::{Context, Status};

/// Contexts by lowercase name, the status for the status functions, and the directory
/// `hashFiles` searches.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    pub contexts: BTreeMap<String, Value>,
    pub status: Status,
    pub workspace: PathBuf,
}

impl Ctx {
    pub fn set(&mut self, name: &str, value: Value) {
        self.contexts.insert(name.to_owned(), value);
    }
}

impl Context for Ctx {
    fn context(&self, name: &str) -> Option<&Value> {
        self.contexts.get(name)
    }

    fn status(&self) -> Status {
        self.status
    }

    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        crate::hashfiles_bridge(&self.workspace, patterns)
    }
}
