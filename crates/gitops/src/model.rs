//! The vocabulary of a reconcile: the objects an app wants ([`Object`]), what a target has
//! ([`LiveObject`]), and the statuses reported for an app ([`SyncStatus`], [`HealthStatus`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Identifies one object of an app on its target: a docker container or local service
/// (`kind` = `Service`, no api version or namespace), or a Kubernetes object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    /// Kubernetes `apiVersion`; empty on docker and local targets.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    pub kind: String,
    /// Empty for cluster-scoped objects and on docker and local targets.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl Key {
    /// A service of an app file (docker and local targets).
    pub fn service(name: &str) -> Key {
        Key {
            api_version: String::new(),
            kind: "Service".into(),
            namespace: String::new(),
            name: name.into(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.to_ascii_lowercase();
        if self.namespace.is_empty() {
            write!(f, "{kind}/{}", self.name)
        } else {
            write!(f, "{kind}/{}/{}", self.namespace, self.name)
        }
    }
}

/// How a desired object is compared with its live counterpart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// Every field must be equal, extra live fields included (the target reconstructs the
    /// whole applied spec: docker, local).
    Exact,
    /// Only the fields the desired object sets are compared; the live object may carry more
    /// (Kubernetes defaults, `status`, server-set metadata). Removed fields are caught through
    /// the spec hash annotation the desired object carries.
    Subset,
}

/// One object the app wants on its target.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub key: Key,
    /// What is applied (and compared), in the target's normalized form.
    pub spec: Value,
    /// Objects that must be applied (and healthy) first.
    pub depends_on: Vec<Key>,
    /// Coarse ordering before `depends_on`: lower first (namespaces and CRDs are 0 on
    /// Kubernetes, everything else 1).
    pub rank: u8,
    pub compare: Compare,
}

/// An object's health, worst last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    Healthy,
    Progressing,
    Missing,
    Degraded,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "Healthy",
            HealthStatus::Progressing => "Progressing",
            HealthStatus::Missing => "Missing",
            HealthStatus::Degraded => "Degraded",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the live state matches Git.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SyncStatus {
    Synced,
    OutOfSync,
    /// The desired state could not be computed (Git unreachable, an invalid file).
    Unknown,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Synced => "Synced",
            SyncStatus::OutOfSync => "OutOfSync",
            SyncStatus::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object as the target has it.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveObject {
    pub key: Key,
    /// In the same normalized form as [`Object::spec`].
    pub spec: Value,
    pub health: HealthStatus,
    /// Why it is not healthy (empty when healthy).
    pub message: String,
}
