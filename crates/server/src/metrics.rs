//! `/metrics` in the Prometheus text format (names prefixed `slipway_`): queue depth and
//! agent count (read from the store), finished jobs and their durations (counted here).

use std::fmt::Write;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::{AppState, internal, now_ms};

/// Upper bounds (seconds) of the job duration histogram.
const BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    inner: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// result -> count
    finished: std::collections::BTreeMap<String, u64>,
    buckets: Vec<u64>,
    count: u64,
    sum_seconds: f64,
}

impl Metrics {
    pub(crate) fn job_finished(&self, result: &str, duration_ms: i64) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *c.finished.entry(result.to_owned()).or_default() += 1;
        if c.buckets.is_empty() {
            c.buckets = vec![0; BUCKETS.len()];
        }
        let secs = duration_ms as f64 / 1000.0;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                c.buckets[i] += 1;
            }
        }
        c.count += 1;
        c.sum_seconds += secs;
    }
}

pub(crate) async fn render(State(state): State<AppState>) -> Response {
    let depth = match state.db().queue_depth().await {
        Ok(d) => d,
        Err(e) => return internal(e),
    };
    let seen_since = now_ms() - 2 * i64::try_from(state.lease_ttl().as_millis()).unwrap_or(i64::MAX / 4);
    let agents = match state.db().count_agents(seen_since).await {
        Ok(n) => n,
        Err(e) => return internal(e),
    };
    let mut out = String::new();
    let _ = writeln!(out, "# HELP slipway_queue_depth Jobs waiting for an agent.\n# TYPE slipway_queue_depth gauge\nslipway_queue_depth {depth}");
    let _ = writeln!(out, "# HELP slipway_agents Agents seen recently.\n# TYPE slipway_agents gauge\nslipway_agents {agents}");
    let c = state.0.metrics.inner.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(out, "# HELP slipway_jobs_finished_total Jobs finished by agents, by result.\n# TYPE slipway_jobs_finished_total counter");
    for (result, n) in &c.finished {
        let _ = writeln!(out, "slipway_jobs_finished_total{{result=\"{result}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP slipway_job_duration_seconds Time from lease to finish.\n# TYPE slipway_job_duration_seconds histogram");
    for (i, le) in BUCKETS.iter().enumerate() {
        let _ = writeln!(out, "slipway_job_duration_seconds_bucket{{le=\"{le}\"}} {}", c.buckets.get(i).copied().unwrap_or(0));
    }
    let _ = writeln!(out, "slipway_job_duration_seconds_bucket{{le=\"+Inf\"}} {}", c.count);
    let _ = writeln!(out, "slipway_job_duration_seconds_sum {}", c.sum_seconds);
    let _ = writeln!(out, "slipway_job_duration_seconds_count {}", c.count);
    drop(c);
    if let Some(registry) = &state.0.options.registry {
        out.push_str(&registry.render_metrics());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
