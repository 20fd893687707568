//! Prometheus metrics of the registry, rendered in the text exposition format.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Mutex,
    },
};

/// Counters and gauges; cheap to update from request handlers.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    /// Bytes of stored blobs: set by a periodic scan, adjusted as blobs are committed.
    pub(crate) storage_bytes: AtomicI64,
    pub(crate) blobs_committed: AtomicU64,
}

impl Metrics {
    pub fn request(&self, method: &str, route: &'static str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests.entry((method.to_owned(), route, status)).or_default() += 1;
    }

    /// The text exposition, with the current number of upload sessions.
    pub fn render(&self, upload_sessions: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP slipway_registry_requests_total Registry HTTP requests.\n# TYPE slipway_registry_requests_total counter\n");
        {
            let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            for ((method, route, status), n) in requests.iter() {
                let _ = writeln!(out, "slipway_registry_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
        let mut scalar = |name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        };
        scalar("slipway_registry_received_bytes_total", "counter", "Blob bytes received in uploads.", self.bytes_in.load(Ordering::Relaxed).to_string());
        scalar("slipway_registry_sent_bytes_total", "counter", "Blob bytes sent to clients.", self.bytes_out.load(Ordering::Relaxed).to_string());
        scalar("slipway_registry_upload_sessions", "gauge", "Upload sessions in progress.", upload_sessions.to_string());
        scalar("slipway_registry_storage_bytes", "gauge", "Bytes of stored blobs.", self.storage_bytes.load(Ordering::Relaxed).max(0).to_string());
        scalar("slipway_registry_blobs_committed_total", "counter", "Blobs newly stored.", self.blobs_committed.load(Ordering::Relaxed).to_string());
        out
    }
}
