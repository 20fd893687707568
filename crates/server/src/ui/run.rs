//! The run page: header, actions (cancel, re-run failed, re-run all, approve/reject), the job
//! graph as SVG (columns by `needs`, boxes coloured and iconed by state), the selected job's
//! steps, artifacts and log. Also the SSE endpoints the page follows.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::sql::{DeploymentStatus, Job, JobId, JobStatus, Run, RunId, RunStatus};
use tokio::sync::broadcast;

use super::pages::{badge, branch, commit_message, icon, run_state};
use super::{
    Esc, Viewer, duration, enc, error_page, internal_page, layout, require, time,
};
use crate::{AppState, Change};

/// A job's state as one word (`waiting` when a deployment of it waits for a decision).
fn job_state(j: &Job, waiting: &[i64]) -> &'static str {
    match (j.status, j.result) {
        (JobStatus::Done, Some(c)) => c.as_str(),
        (JobStatus::Done, None) => "failure",
        (JobStatus::Pending, _) if waiting.contains(&j.id.0) => "waiting",
        (s, _) => s.as_str(),
    }
}

fn needs(j: &Job) -> Vec<String> {
    serde_json::from_str(&j.needs).unwrap_or_default()
}

/// Column of each job: 0 for jobs that need nothing, else one more than its deepest need.
fn levels(jobs: &[Job]) -> Vec<usize> {
    let mut level = vec![0usize; jobs.len()];
    // At most `len` rounds (the plan has no cycles; the bound keeps a corrupt one finite).
    for _ in 0..jobs.len() {
        let mut changed = false;
        for (i, j) in jobs.iter().enumerate() {
            let want = needs(j)
                .iter()
                .filter_map(|n| jobs.iter().position(|x| x.key == *n))
                .map(|p| level[p] + 1)
                .max()
                .unwrap_or(0);
            if want != level[i] {
                level[i] = want;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    level
}

const BOX_W: usize = 190;
const BOX_H: usize = 40;
const GAP_X: usize = 60;
const GAP_Y: usize = 14;
const PAD: usize = 8;

/// The job graph as SVG: one column per `needs` depth, an edge per need, each job a link
/// (`?job=ID`) coloured and iconed by its state.
pub(crate) fn graph(jobs: &[Job], waiting: &[i64], selected: Option<JobId>) -> String {
    let level = levels(jobs);
    let mut rows_in = HashMap::<usize, usize>::new();
    let mut pos = Vec::with_capacity(jobs.len());
    for l in &level {
        let row = rows_in.entry(*l).or_default();
        pos.push((PAD + l * (BOX_W + GAP_X), PAD + *row * (BOX_H + GAP_Y)));
        *row += 1;
    }
    let cols = level.iter().max().map_or(0, |m| m + 1);
    let rows = rows_in.values().max().copied().unwrap_or(0);
    let width = 2 * PAD + cols * BOX_W + cols.saturating_sub(1) * GAP_X;
    let height = 2 * PAD + rows * BOX_H + rows.saturating_sub(1) * GAP_Y;
    let mut s = format!(
        "<svg class=\"graph\" role=\"group\" aria-label=\"Job graph\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    );
    for (i, j) in jobs.iter().enumerate() {
        for n in needs(j) {
            if let Some(p) = jobs.iter().position(|x| x.key == n) {
                let (x1, y1) = (pos[p].0 + BOX_W, pos[p].1 + BOX_H / 2);
                let (x2, y2) = (pos[i].0, pos[i].1 + BOX_H / 2);
                let mid = x1 + GAP_X / 2;
                let _ = write!(
                    s,
                    "<path class=\"edge\" d=\"M{x1} {y1} C{mid} {y1} {mid} {y2} {x2} {y2}\"/>"
                );
            }
        }
    }
    for (i, j) in jobs.iter().enumerate() {
        let st = job_state(j, waiting);
        let (x, y) = pos[i];
        let sel = if selected == Some(j.id) {
            " selected"
        } else {
            ""
        };
        let label: String = if j.name.chars().count() > 22 {
            j.name.chars().take(21).chain(['…']).collect()
        } else {
            j.name.clone()
        };
        let _ = write!(
            s,
            "<a href=\"?job={}\" class=\"node s-{st}{sel}\" data-job-key=\"{}\" data-state=\"{st}\" aria-label=\"job {}: {}\">\
             <title>{}: {}</title><rect x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"6\"/>\
             <text class=\"icon\" x=\"{}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\">{}</text></a>",
            j.id.0,
            Esc(&j.key),
            Esc(&j.name),
            st,
            Esc(&j.name),
            st,
            x + 12,
            y + 26,
            icon(st),
            x + 34,
            y + 25,
            Esc(&label),
        );
    }
    s.push_str("</svg>");
    s
}

#[derive(Deserialize)]
pub(crate) struct RunQuery {
    job: Option<i64>,
}

async fn find_run(state: &AppState, viewer: &Viewer, id: i64) -> Result<Run, Response> {
    match state.db().run(RunId(id)).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(error_page(
            StatusCode::NOT_FOUND,
            viewer,
            &format!("no run {id}"),
        )),
        Err(e) => Err(internal_page(viewer, e)),
    }
}

/// `GET /runs/{id}`: where commit statuses link.
pub(crate) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Response {
    let viewer = match require(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<i64>() else {
        return error_page(StatusCode::NOT_FOUND, &viewer, &format!("no run {id}"));
    };
    let run = match find_run(&state, &viewer, id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match render(&state, &viewer, &run, q.job).await {
        Ok(r) => r,
        Err(e) => internal_page(&viewer, e),
    }
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    run: &Run,
    job: Option<i64>,
) -> Result<Response, crate::ServerError> {
    let jobs = state.db().jobs(run.id).await?;
    let deployments = state
        .db()
        .deployments(None, None, Some(run.id), &[], 100)
        .await?;
    let waiting_jobs: Vec<i64> = deployments
        .iter()
        .filter(|d| d.status == DeploymentStatus::Waiting)
        .map(|d| d.job.0)
        .collect();
    let selected = job
        .and_then(|id| jobs.iter().find(|j| j.id.0 == id))
        .or_else(|| jobs.iter().find(|j| j.status == JobStatus::Running))
        .or_else(|| {
            jobs.iter()
                .find(|j| j.result == Some(store::sql::Conclusion::Failure))
        })
        .or_else(|| jobs.iter().find(|j| j.status == JobStatus::Done))
        .or(jobs.first());
    let st = run_state(run);
    let mut h = String::new();
    let _ = write!(
        h,
        "<div id=\"live\" data-live=\"run\" data-run=\"{}\" data-state=\"{st}\"><div class=\"run-head\"><h1>{} #{} {}</h1>\
         <p class=\"meta\"><a href=\"/repos/{}\">{}</a> · <span class=\"branch\">{}</span> · <code>{}</code> {} · \
         pushed by {} · {} · {}{}</p>",
        run.id.0,
        Esc(&run.workflow_name),
        run.id.0,
        badge(st),
        Esc(&run.repository_name),
        Esc(&run.repository_name),
        Esc(branch(&run.git_ref)),
        Esc(run.sha.get(..10).unwrap_or(&run.sha)),
        Esc(&commit_message(run)),
        Esc(&run.actor),
        Esc(&run.event),
        time(run.created_at),
        match (run.started_at, run.finished_at) {
            (Some(s), Some(f)) => format!(" · took {}", duration(f - s)),
            _ => String::new(),
        }
    );
    if let Some(reason) = &run.reason {
        let _ = write!(h, "<p class=\"reason\">{}</p>", Esc(reason));
    }
    h.push_str("<div class=\"actions\">");
    if viewer.can_write() {
        if run.status != RunStatus::Done {
            let _ = write!(
                h,
                "<button type=\"button\" data-action=\"cancel\" data-run=\"{}\">Cancel run</button>",
                run.id.0
            );
        } else {
            let failed = jobs.iter().any(|j| {
                matches!(
                    j.result,
                    Some(store::sql::Conclusion::Failure | store::sql::Conclusion::Cancelled)
                )
            });
            if failed {
                let _ = write!(
                    h,
                    "<button type=\"button\" data-action=\"rerun\" data-run=\"{}\">Re-run failed jobs</button>",
                    run.id.0
                );
            }
            let _ = write!(
                h,
                "<button type=\"button\" data-action=\"rerun-all\" data-run=\"{}\">Re-run all jobs</button>",
                run.id.0
            );
        }
    }
    h.push_str("<span class=\"status\" role=\"status\" id=\"action-status\"></span></div></div>");
    // Deployments waiting on reviewers.
    let users = &state.config().users;
    let me = users.iter().find(|u| u.name == viewer.name);
    for d in deployments
        .iter()
        .filter(|d| d.status == DeploymentStatus::Waiting)
    {
        let env = crate::environments::environment(state, &run.repository_name, &d.environment);
        let reviewers = env.map(|e| e.reviewers.join(", ")).unwrap_or_default();
        let may = match (env, me) {
            (Some(e), Some(u)) => e.is_reviewer(u),
            (Some(_), None) => viewer.open,
            (None, _) => false,
        };
        let approvals = state.db().approvals(d.id).await?;
        let _ = write!(
            h,
            "<section class=\"approval\" aria-label=\"Approval for {}\"><h2><span aria-hidden=\"true\">‖</span> {} waits for approval</h2>\
             <p>{}</p><p>May approve: <strong class=\"reviewers\">{}</strong></p>",
            Esc(&d.environment),
            Esc(&d.environment),
            Esc(d.reason.as_deref().unwrap_or("")),
            Esc(if reviewers.is_empty() {
                "nobody (no reviewers configured)"
            } else {
                &reviewers
            })
        );
        for a in &approvals {
            let _ = write!(
                h,
                "<p class=\"muted\">{} {} {}</p>",
                Esc(&a.user),
                Esc(&a.decision),
                time(a.created_at)
            );
        }
        if may {
            let _ = write!(
                h,
                "<label for=\"comment-{0}\">Comment</label><input id=\"comment-{0}\" class=\"comment\">\
                 <button type=\"button\" class=\"primary\" data-action=\"approve\" data-run=\"{1}\" data-environment=\"{2}\">Approve and deploy</button> \
                 <button type=\"button\" class=\"danger\" data-action=\"reject\" data-run=\"{1}\" data-environment=\"{2}\">Reject</button>",
                d.id.0,
                run.id.0,
                Esc(&d.environment)
            );
        } else {
            let _ = write!(
                h,
                "<p class=\"muted\">You ({}) are not a reviewer of {}.</p>",
                Esc(&viewer.name),
                Esc(&d.environment)
            );
        }
        h.push_str("</section>");
    }
    h.push_str("<div class=\"graph-wrap\">");
    h.push_str(&graph(&jobs, &waiting_jobs, selected.map(|j| j.id)));
    h.push_str("</div>");
    if let Some(j) = selected {
        let jst = job_state(j, &waiting_jobs);
        let _ = write!(
            h,
            "<section class=\"job\" aria-label=\"Job {}\"><h2>{} {}</h2>",
            Esc(&j.key),
            Esc(&j.name),
            badge(jst)
        );
        if let Some(reason) = &j.reason {
            let _ = write!(h, "<p class=\"reason\">{}</p>", Esc(reason));
        }
        let steps = state.db().steps(j.id).await?;
        let current: Vec<_> = steps.iter().filter(|s| s.attempt == j.attempt).collect();
        if !current.is_empty() {
            h.push_str("<ol class=\"steps\">");
            for s in current {
                let sst = s.conclusion.as_deref().unwrap_or(&s.status);
                let took = match (s.started_at, s.finished_at) {
                    (Some(a), Some(b)) => duration(b - a),
                    _ => String::new(),
                };
                let _ = write!(
                    h,
                    "<li><a href=\"#step-{}\" data-step=\"{}\">{} {}</a> <small>{took}</small></li>",
                    s.number,
                    Esc(&s.name),
                    badge(sst),
                    Esc(&s.name)
                );
            }
            h.push_str("</ol>");
        }
        let artifacts = state.db().artifacts(run.id, None).await?;
        if !artifacts.is_empty() {
            h.push_str("<h3>Artifacts</h3><ul class=\"artifacts\">");
            for a in artifacts {
                let _ = write!(
                    h,
                    "<li><a href=\"/ui/runs/{}/artifacts/{}\" download>{}</a> <small>{} files, {} bytes</small></li>",
                    run.id.0,
                    Esc(&enc(&a.name)),
                    Esc(&a.name),
                    a.files,
                    a.size
                );
            }
            h.push_str("</ul>");
        }
        h.push_str("</section>");
    }
    h.push_str("</div>");
    if let Some(j) = selected {
        let _ = write!(
            h,
            "<section class=\"logview\" aria-label=\"Log\"><div class=\"logbar\">\
             <label for=\"log-search\">Search log</label><input id=\"log-search\" type=\"search\" placeholder=\"Search (/)\">\
             <span id=\"log-matches\" aria-live=\"polite\"></span>\
             <button type=\"button\" id=\"log-prev\" aria-label=\"Previous match\">↑</button>\
             <button type=\"button\" id=\"log-next\" aria-label=\"Next match\">↓</button>\
             <button type=\"button\" id=\"log-follow\" aria-pressed=\"true\">Follow</button>\
             <a href=\"/ui/jobs/{0}/log\">Raw</a> <span id=\"log-count\"></span></div>\
             <ul id=\"annotations\" class=\"annotations\" aria-label=\"Annotations\"></ul>\
             <div id=\"log\" class=\"log\" tabindex=\"0\" role=\"log\" aria-label=\"Log of {1}\" data-job=\"{0}\"></div></section>",
            j.id.0,
            Esc(&j.key)
        );
    }
    Ok(layout(
        &format!("{} #{}", run.workflow_name, run.id.0),
        viewer,
        "Repositories",
        &h,
    ))
}

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    run: Option<i64>,
}

/// `GET /ui/events[?run=ID]`: a `change` event whenever a run (that run) changes; pages
/// refetch themselves on it.
pub(crate) async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    if super::auth::viewer(&state, &headers).is_none() {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    }
    let rx = state.subscribe();
    let stream = futures::stream::unfold((rx, q.run), |(mut rx, want)| async move {
        loop {
            match rx.recv().await {
                Ok(Change::Run(id) | Change::RunFinished(id)) if want.is_none_or(|w| w == id) => {
                    return Some((
                        Ok::<_, Infallible>(Event::default().event("change").data(id.to_string())),
                        (rx, want),
                    ));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Some((
                        Ok(Event::default().event("change").data("lagged")),
                        (rx, want),
                    ));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[derive(Deserialize)]
pub(crate) struct LogQuery {
    /// `1` or `true`: follow.
    follow: Option<String>,
}

#[derive(serde::Serialize)]
struct Chunk<'a> {
    attempt: i64,
    seq: i64,
    text: &'a str,
}

/// `GET /ui/jobs/{id}/log[?follow=1]`: the job's current attempt as text, or followed as
/// SSE `log` events (id `attempt.seq`, so a reconnecting `EventSource` resumes after the
/// last chunk it got) and one `end` when the job is done.
pub(crate) async fn job_log(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<LogQuery>,
) -> Response {
    if super::auth::viewer(&state, &headers).is_none() {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    }
    let job = match state.db().job(JobId(id)).await {
        Ok(Some(j)) => j,
        Ok(None) => return (StatusCode::NOT_FOUND, format!("no job {id}")).into_response(),
        Err(e) => return crate::internal(e),
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('.'))
        .and_then(|(a, s)| Some((a.parse::<i64>().ok()?, s.parse::<i64>().ok()?)));
    let start = resume.unwrap_or((job.attempt, -1));
    if !matches!(q.follow.as_deref(), Some("1" | "true")) {
        let chunks = match state.db().logs(job.id, Some((job.attempt, -1))).await {
            Ok(c) => c,
            Err(e) => return crate::internal(e),
        };
        let mut text = Vec::new();
        for c in chunks.into_iter().filter(|c| c.attempt == job.attempt) {
            text.extend_from_slice(&c.data);
        }
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response();
    }
    let rx = state.subscribe();
    let init = (
        state,
        job,
        rx,
        start,
        std::collections::VecDeque::<Event>::new(),
        false,
    );
    let stream = futures::stream::unfold(
        init,
        |(state, job, mut rx, mut cursor, mut pending, mut ended)| async move {
            loop {
                if let Some(e) = pending.pop_front() {
                    return Some((
                        Ok::<_, Infallible>(e),
                        (state, job, rx, cursor, pending, ended),
                    ));
                }
                if ended {
                    return None;
                }
                let done = matches!(state.db().job(job.id).await, Ok(Some(j)) if j.status == JobStatus::Done);
                match state.db().logs(job.id, Some(cursor)).await {
                    Ok(chunks) if !chunks.is_empty() => {
                        for c in chunks {
                            cursor = (c.attempt, c.seq);
                            let text = String::from_utf8_lossy(&c.data);
                            let data = serde_json::to_string(&Chunk {
                                attempt: c.attempt,
                                seq: c.seq,
                                text: &text,
                            })
                            .unwrap_or_default();
                            pending.push_back(
                                Event::default()
                                    .event("log")
                                    .id(format!("{}.{}", c.attempt, c.seq))
                                    .data(data),
                            );
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        ended = true;
                        pending.push_back(Event::default().event("error").data(error.to_string()));
                        continue;
                    }
                }
                if done {
                    ended = true;
                    pending.push_back(Event::default().event("end").data("done"));
                    continue;
                }
                loop {
                    match rx.recv().await {
                        Ok(Change::Run(r) | Change::RunFinished(r)) if r == job.run.0 => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: i64, key: &str, needs: &[&str], status: JobStatus) -> Job {
        Job {
            id: JobId(id),
            run: RunId(1),
            key: key.to_owned(),
            name: key.to_owned(),
            needs: serde_json::to_string(needs).unwrap_or_default(),
            labels: "[]".to_owned(),
            condition: None,
            status,
            result: None,
            reason: None,
            agent: None,
            lease_expires_at: None,
            attempt: 1,
            outputs: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn columns_follow_needs() {
        let jobs = vec![
            job(1, "deploy", &["test", "lint"], JobStatus::Pending),
            job(2, "build", &[], JobStatus::Done),
            job(3, "test", &["build"], JobStatus::Running),
            job(4, "lint", &[], JobStatus::Queued),
        ];
        assert_eq!(levels(&jobs), vec![2, 0, 1, 0]);
        let svg = graph(&jobs, &[1], Some(JobId(3)));
        assert!(
            svg.contains("data-job-key=\"deploy\" data-state=\"waiting\""),
            "{svg}"
        );
        assert!(svg.contains("class=\"node s-running selected\""), "{svg}");
        assert_eq!(svg.matches("class=\"edge\"").count(), 3);
    }

    #[test]
    fn names_are_escaped_in_the_graph() {
        let jobs = vec![job(1, "<script>x</script>", &[], JobStatus::Queued)];
        let svg = graph(&jobs, &[], None);
        assert!(!svg.contains("<script>"), "{svg}");
    }
}
