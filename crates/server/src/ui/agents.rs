//! The agents page: each agent seen in the last day — busy (holds a job's lease), online
//! (talked to the server within [`ONLINE_MS`]: a lease poll, a heartbeat) or offline — its
//! labels, the jobs it runs (linking to their runs) and when it was last seen. The page
//! follows `/ui/events`, so it changes when jobs are leased and finish.

use std::fmt::Write;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::get;

use super::{Esc, duration, internal_page, layout, require, time};
use crate::{AppState, now_ms};

/// An agent seen within this long is online. An idle agent's lease poll lasts up to 60 s and
/// its `last_seen_at` is written at most every 5 s.
pub(crate) const ONLINE_MS: i64 = 90_000;

/// Agents not seen for this long are not listed.
const LISTED_MS: i64 = 24 * 3600 * 1000;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/agents", get(page))
}

async fn page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match require(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now = now_ms();
    let agents = match state.db().agents_seen_since(now - LISTED_MS, 500).await {
        Ok(a) => a,
        Err(e) => return internal_page(&viewer, e),
    };
    let held = match state.db().held_jobs().await {
        Ok(h) => h,
        Err(e) => return internal_page(&viewer, e),
    };
    let mut rows = String::new();
    let (mut busy, mut online) = (0, 0);
    for a in &agents {
        let jobs: Vec<_> = held
            .iter()
            .filter(|j| j.agent == a.id && j.lease_expires_at.is_none_or(|t| t > now))
            .collect();
        let state_word = if !jobs.is_empty() {
            busy += 1;
            "busy"
        } else if now - a.last_seen_at <= ONLINE_MS {
            online += 1;
            "online"
        } else {
            "offline"
        };
        let labels: Vec<String> = serde_json::from_str(&a.labels).unwrap_or_default();
        let labels = if labels.is_empty() {
            "<span class=\"muted\">any label</span>".to_owned()
        } else {
            labels
                .iter()
                .map(|l| format!("<code class=\"label\">{}</code>", Esc(l)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let slots = match a.capacity {
            Some(c) => format!("<br><small>{} of {c} slot{} busy</small>", jobs.len(), if c == 1 { "" } else { "s" }),
            None => String::new(),
        };
        let mut current = String::new();
        for j in &jobs {
            let _ = write!(
                current,
                "<li><a href=\"/runs/{}?job={}\">{}</a> <small>{} · run {}{}</small></li>",
                j.run.0,
                j.job.0,
                Esc(&j.name),
                Esc(&j.repository_name),
                j.run.0,
                j.started_at
                    .map(|s| format!(" · for {}", duration(now - s)))
                    .unwrap_or_default()
            );
        }
        if current.is_empty() {
            current.push_str("<span class=\"muted\">—</span>");
        } else {
            current = format!("<ul class=\"jobs\">{current}</ul>");
        }
        let _ = write!(
            rows,
            "<tr data-agent=\"{}\" data-state=\"{state_word}\"><td>{}<br><small>#{}</small></td><td>{}{slots}</td><td>{}</td><td>{current}</td>\
             <td>{}<br><small>{} ago</small></td></tr>",
            a.id.0,
            Esc(&a.name),
            a.id.0,
            agent_badge(state_word),
            labels,
            time(a.last_seen_at),
            duration(now - a.last_seen_at)
        );
    }
    let mut h = String::from("<div id=\"live\"><h1>Agents</h1>");
    let _ = write!(
        h,
        "<p class=\"muted\">{busy} busy, {online} idle and online, {} offline (seen in the last day). \
         Online: talked to the server in the last {}s.</p>",
        agents.len() - busy - online,
        ONLINE_MS / 1000
    );
    if agents.is_empty() {
        h.push_str(
            "<p class=\"empty\">No agent seen in the last day: start one with <code>slipway agent --server URL --token TOKEN</code>.</p>",
        );
    } else {
        let _ = write!(
            h,
            "<table class=\"agents\"><thead><tr><th>Agent</th><th>State</th><th>Labels</th><th>Current jobs</th>\
             <th>Last seen</th></tr></thead><tbody>{rows}</tbody></table>"
        );
    }
    h.push_str("</div>");
    layout("Agents", &viewer, "Agents", &h)
}

/// A state badge with an icon (never colour alone).
fn agent_badge(state: &str) -> String {
    let (class, icon) = match state {
        "busy" => ("running", "●"),
        "online" => ("success", "✓"),
        _ => ("cancelled", "⊘"),
    };
    format!(
        "<span class=\"badge s-{class}\" data-state=\"{state}\"><span aria-hidden=\"true\">{icon}</span> {state}</span>"
    )
}
