//! List pages: repositories (latest run per branch), a repository's runs (filterable),
//! environments (current deployment, waiting ones, history, rollback), GitOps apps.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::Deserialize;
use store::sql::{DeploymentStatus, Run, RunStatus};

use super::{Esc, Viewer, duration, enc, error_page, internal_page, layout, require, time};
use crate::AppState;
use crate::environments::deployments::DeploymentDto;

/// A run's state as one word: `queued`, `running`, or its conclusion.
pub(crate) fn run_state(r: &Run) -> &'static str {
    match (r.status, r.conclusion) {
        (RunStatus::Done, Some(c)) => c.as_str(),
        (RunStatus::Done, None) => "failure",
        (s, _) => s.as_str(),
    }
}

/// The icon shown next to a state (never colour alone).
pub(crate) fn icon(state: &str) -> &'static str {
    match state {
        "success" => "✓",
        "failure" | "rejected" => "✗",
        "cancelled" => "⊘",
        "skipped" => "↷",
        "running" | "in_progress" => "●",
        "waiting" => "‖",
        "rolled_back" => "↺",
        _ => "○",
    }
}

pub(crate) fn badge(state: &str) -> String {
    format!(
        "<span class=\"badge s-{0}\" data-state=\"{0}\"><span aria-hidden=\"true\">{1}</span> {2}</span>",
        Esc(state),
        icon(state),
        Esc(&state.replace('_', " "))
    )
}

/// The first line of the pushed commit's message, from the run's event payload.
pub(crate) fn commit_message(r: &Run) -> String {
    serde_json::from_str::<serde_json::Value>(&r.spec)
        .ok()
        .and_then(|spec| {
            let event = spec.get("event")?;
            let m = event
                .pointer("/head_commit/message")
                .or_else(|| event.pointer("/pull_request/title"))?;
            m.as_str()
                .map(|m| m.lines().next().unwrap_or("").to_owned())
        })
        .unwrap_or_default()
}

pub(crate) fn branch(git_ref: &str) -> &str {
    git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| git_ref.strip_prefix("refs/tags/"))
        .unwrap_or(git_ref)
}

fn short(sha: &str) -> &str {
    sha.get(..8).unwrap_or(sha)
}

fn run_duration(r: &Run) -> String {
    match (r.started_at, r.finished_at) {
        (Some(s), Some(f)) => duration(f - s),
        (Some(s), None) => duration(crate::now_ms() - s),
        _ => String::new(),
    }
}

/// `GET /`: every repository with the latest run of each branch.
pub(crate) async fn repositories(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let viewer = match require(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let repos = match state.db().repositories().await {
        Ok(r) => r,
        Err(e) => return internal_page(&viewer, e),
    };
    let mut h = String::from("<div id=\"live\" data-live=\"all\"><h1>Repositories</h1>");
    if repos.is_empty() {
        h.push_str("<p class=\"empty\">No repository yet: add one with <code>[[repository]]</code> in the configuration or <code>POST /api/v1/repositories</code>.</p>");
    }
    for repo in &repos {
        let runs = match state.db().runs(Some(&repo.name), 200).await {
            Ok(r) => r,
            Err(e) => return internal_page(&viewer, e),
        };
        let mut latest: BTreeMap<&str, &Run> = BTreeMap::new();
        for r in &runs {
            latest.entry(branch(&r.git_ref)).or_insert(r);
        }
        let _ = write!(
            h,
            "<section class=\"card\"><h2><a href=\"/repos/{}\">{}</a></h2><p class=\"muted\">{} · {}</p>",
            Esc(&repo.name),
            Esc(&repo.name),
            Esc(&repo.forge),
            Esc(&repo.clone_url)
        );
        if latest.is_empty() {
            h.push_str("<p class=\"empty\">No runs yet.</p>");
        } else {
            h.push_str("<table><thead><tr><th>Branch</th><th>Status</th><th>Run</th><th>Commit</th><th>When</th></tr></thead><tbody>");
            for (b, r) in latest {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td><a href=\"/runs/{}\">{} #{}</a></td><td><code>{}</code> {}</td><td>{}</td></tr>",
                    Esc(b),
                    badge(run_state(r)),
                    r.id.0,
                    Esc(&r.workflow_name),
                    r.id.0,
                    Esc(short(&r.sha)),
                    Esc(&commit_message(r)),
                    time(r.created_at)
                );
            }
            h.push_str("</tbody></table>");
        }
        h.push_str("</section>");
    }
    h.push_str("</div>");
    layout("Repositories", &viewer, "Repositories", &h)
}

/// The repository `full` a page is about, or the page that says it is missing (404) or
/// could not be read (500).
fn found<T>(
    viewer: &Viewer,
    full: &str,
    lookup: Result<Option<T>, impl std::fmt::Display>,
) -> Result<T, Response> {
    match lookup {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(error_page(
            StatusCode::NOT_FOUND,
            viewer,
            &format!("no repository {full}"),
        )),
        Err(e) => Err(internal_page(viewer, e)),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct RunFilter {
    branch: Option<String>,
    status: Option<String>,
    event: Option<String>,
    actor: Option<String>,
}

/// `GET /repos/{owner}/{name}`: the repository's runs, filterable by branch, status, event
/// and pusher.
pub(crate) async fn repository(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((owner, name)): Path<(String, String)>,
    Query(f): Query<RunFilter>,
) -> Response {
    let viewer = match require(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let full = format!("{owner}/{name}");
    if let Err(r) = found(&viewer, &full, state.db().repository_by_name(&full).await) {
        return r;
    }
    let runs = match state.db().runs(Some(&full), 500).await {
        Ok(r) => r,
        Err(e) => return internal_page(&viewer, e),
    };
    let some = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    let (fb, fs, fe, fa) = (
        some(&f.branch),
        some(&f.status),
        some(&f.event),
        some(&f.actor),
    );
    let shown: Vec<&Run> = runs
        .iter()
        .filter(|r| fb.as_deref().is_none_or(|b| branch(&r.git_ref) == b))
        .filter(|r| fs.as_deref().is_none_or(|s| run_state(r) == s))
        .filter(|r| fe.as_deref().is_none_or(|e| r.event == e))
        .filter(|r| fa.as_deref().is_none_or(|a| r.actor == a))
        .collect();
    let mut h = format!("<div id=\"live\" data-live=\"all\"><h1>{}</h1>", Esc(&full));
    if viewer.can_write() {
        let _ = write!(
            h,
            "<p><a class=\"button\" href=\"/repos/{}/{}/dispatch\">Run workflow</a></p>",
            Esc(&enc(&owner)),
            Esc(&enc(&name))
        );
    }
    let _ = write!(
        h,
        "<form class=\"filters\" method=\"get\" aria-label=\"Filter runs\">"
    );
    for (id, label, value) in [
        ("branch", "Branch", &fb),
        ("event", "Event", &fe),
        ("actor", "Pusher", &fa),
    ] {
        let _ = write!(
            h,
            "<label>{label} <input name=\"{id}\" value=\"{}\" size=\"12\"></label>",
            Esc(value.as_deref().unwrap_or(""))
        );
    }
    h.push_str("<label>Status <select name=\"status\"><option value=\"\">any</option>");
    for s in [
        "queued",
        "running",
        "success",
        "failure",
        "cancelled",
        "skipped",
    ] {
        let sel = if fs.as_deref() == Some(s) {
            " selected"
        } else {
            ""
        };
        let _ = write!(h, "<option{sel}>{s}</option>");
    }
    let _ = write!(
        h,
        "</select></label><button type=\"submit\">Filter</button> <a href=\"/repos/{}/{}\">clear</a></form>",
        Esc(&enc(&owner)),
        Esc(&enc(&name))
    );
    if shown.is_empty() {
        h.push_str("<p class=\"empty\">No runs match.</p>");
    } else {
        h.push_str(
            "<table class=\"runs\"><thead><tr><th>Status</th><th>Run</th><th>Commit</th><th>Branch</th>\
             <th>Pusher</th><th>Event</th><th>Started</th><th>Duration</th></tr></thead><tbody>",
        );
        for r in shown {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><a href=\"/runs/{}\">{} #{}</a></td><td><code>{}</code> {}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                badge(run_state(r)),
                r.id.0,
                Esc(&r.workflow_name),
                r.id.0,
                Esc(short(&r.sha)),
                Esc(&commit_message(r)),
                Esc(branch(&r.git_ref)),
                Esc(&r.actor),
                Esc(&r.event),
                time(r.created_at),
                run_duration(r)
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</div>");
    layout(&full, &viewer, "Repositories", &h)
}

fn digests(d: &DeploymentDto) -> String {
    let mut s = String::new();
    for x in &d.digests {
        let _ = write!(
            s,
            "<code title=\"{}\">{}</code> ",
            Esc(&x.image.clone().unwrap_or_default()),
            Esc(x.digest.get(..19).unwrap_or(&x.digest))
        );
    }
    s
}

fn deployment_row(h: &mut String, d: &DeploymentDto, actions: &str) {
    let rollback = d
        .rollback_of
        .map(|r| format!(" <small>(rollback to #{r})</small>"))
        .unwrap_or_default();
    let _ = write!(
        h,
        "<tr data-deployment=\"{}\"><td>#{}{rollback}</td><td>{}</td><td><a href=\"/runs/{}\">run {}</a></td>\
         <td><code>{}</code> {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{actions}</td></tr>",
        d.id,
        d.id,
        badge(&d.status),
        d.run_id,
        d.run_id,
        Esc(short(&d.sha)),
        Esc(branch(&d.git_ref)),
        digests(d),
        Esc(&d.pusher),
        Esc(&d.approvers.join(", ")),
        time(d.finished_at.or(d.started_at).unwrap_or(d.created_at)),
    );
}

const DEPLOY_HEAD: &str = "<thead><tr><th>Deployment</th><th>Status</th><th>Run</th><th>Commit</th><th>Image</th>\
     <th>Pusher</th><th>Approved by</th><th>When</th><th></th></tr></thead>";

/// `GET /environments`: per environment (and repository) what is deployed now, what waits,
/// and the history, with a rollback button.
pub(crate) async fn environments(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let viewer = match require(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let all = match state.db().deployments(None, None, None, &[], 1000).await {
        Ok(d) => d,
        Err(e) => return internal_page(&viewer, e),
    };
    // (environment, repository) in first-configured, then first-seen order.
    let mut groups: Vec<(String, Option<String>)> = Vec::new();
    // The configuration file's and those defined through the API (maybe on another replica).
    if let Err(e) = crate::environments::stored::reload(&state).await {
        return internal_page(&viewer, e);
    }
    let defined = crate::environments::stored::all(&state);
    for e in defined.iter().map(|d| &d.config) {
        let group = (e.name.clone(), e.repository.clone());
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    for d in &all {
        let known = groups.iter().any(|(n, r)| {
            *n == d.environment && r.as_ref().is_none_or(|r| *r == d.repository_name)
        });
        if !known {
            groups.push((d.environment.clone(), Some(d.repository_name.clone())));
        }
    }
    let mut h = String::from("<div id=\"live\" data-live=\"all\"><h1>Environments</h1>");
    if groups.is_empty() {
        h.push_str("<p class=\"empty\">No environment yet: jobs with <code>environment:</code> create them; rules come from <code>[[environment]]</code> or <a href=\"/admin/environments\">Admin → Environments</a>.</p>");
    }
    for (name, repo) in &groups {
        let mine: Vec<_> = all
            .iter()
            .filter(|d| {
                d.environment == *name && repo.as_ref().is_none_or(|r| *r == d.repository_name)
            })
            .collect();
        let config = defined
            .iter()
            .map(|d| &d.config)
            .find(|e| e.name == *name && e.repository == *repo);
        let _ = write!(
            h,
            "<section class=\"card env\" data-environment=\"{}\"><h2>{}{}</h2>",
            Esc(name),
            Esc(name),
            repo.as_ref()
                .map(|r| format!(" <small>{}</small>", Esc(r)))
                .unwrap_or_default()
        );
        match config {
            Some(c) if !c.reviewers.is_empty() => {
                let _ = write!(
                    h,
                    "<p class=\"muted\">Protected: {} approval(s) from {}{}</p>",
                    c.required_approvals,
                    Esc(&c.reviewers.join(", ")),
                    if c.branches.is_empty() {
                        String::new()
                    } else {
                        format!(" · branches {}", Esc(&c.branches.join(", ")))
                    }
                );
            }
            _ => h.push_str("<p class=\"muted\">No reviewers: continuous deployment.</p>"),
        }
        let mut dtos = Vec::new();
        for d in mine.iter().take(50) {
            match crate::environments::deployments::dto(&state, (*d).clone()).await {
                Ok(x) => dtos.push(x),
                Err(e) => return internal_page(&viewer, e),
            }
        }
        let current: Vec<&DeploymentDto> = {
            let mut seen = Vec::new();
            dtos.iter()
                .filter(|d| d.status == DeploymentStatus::Success.as_str())
                .filter(|d| {
                    let new = !seen.contains(&d.repository);
                    seen.push(d.repository.clone());
                    new
                })
                .collect()
        };
        h.push_str("<h3>Current</h3>");
        if current.is_empty() {
            h.push_str("<p class=\"empty\">Nothing deployed yet.</p>");
        } else {
            let _ = write!(h, "<table class=\"current\">{DEPLOY_HEAD}<tbody>");
            for d in &current {
                deployment_row(&mut h, d, "");
            }
            h.push_str("</tbody></table>");
        }
        let waiting: Vec<&DeploymentDto> = dtos.iter().filter(|d| d.status == "waiting").collect();
        if !waiting.is_empty() {
            h.push_str("<h3>Waiting</h3><ul>");
            for d in waiting {
                let _ = write!(
                    h,
                    "<li><a href=\"/runs/{}\">run {}</a> ({}) waits: {} — may approve: {}</li>",
                    d.run_id,
                    d.run_id,
                    Esc(short(&d.sha)),
                    Esc(d.reason.as_deref().unwrap_or("")),
                    Esc(&d.reviewers.join(", "))
                );
            }
            h.push_str("</ul>");
        }
        h.push_str("<h3>History</h3>");
        let _ = write!(h, "<table class=\"history\">{DEPLOY_HEAD}<tbody>");
        let current_ids: Vec<i64> = current.iter().map(|d| d.id).collect();
        for d in &dtos {
            let action = if viewer.can_write()
                && d.status == "success"
                && !current_ids.contains(&d.id)
            {
                format!(
                    "<button type=\"button\" data-action=\"rollback\" data-environment=\"{}\" data-repository=\"{}\" data-to=\"{}\">Roll back to this</button>",
                    Esc(&d.environment),
                    Esc(&d.repository),
                    d.id
                )
            } else {
                String::new()
            };
            deployment_row(&mut h, d, &action);
        }
        h.push_str("</tbody></table></section>");
    }
    h.push_str("<p class=\"status\" role=\"status\" id=\"action-status\"></p></div>");
    layout("Environments", &viewer, "Environments", &h)
}

/// `GET /gitops`: the apps GitOps agents report (sync, health, revision, drift) and their
/// recent syncs.
pub(crate) async fn gitops(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let viewer: Viewer = match require(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let apps = match state.db().gitops_apps().await {
        Ok(a) => a,
        Err(e) => return internal_page(&viewer, e),
    };
    let mut h = String::from("<div id=\"live\" data-live=\"all\"><h1>GitOps apps</h1>");
    if apps.is_empty() {
        h.push_str("<p class=\"empty\">No GitOps agent has reported yet (<code>slipway gitops --server URL</code>).</p>");
    } else {
        h.push_str(
            "<table><thead><tr><th>App</th><th>Agent</th><th>Sync</th><th>Health</th><th>Synced revision</th>\
             <th>Wanted revision</th><th>Target</th><th>Message</th><th>Reconciled</th></tr></thead><tbody>",
        );
        for a in &apps {
            let sync = if a.sync_status.eq_ignore_ascii_case("synced") {
                "success"
            } else {
                "waiting"
            };
            let health = match a.health_status.to_ascii_lowercase().as_str() {
                "healthy" => "success",
                "degraded" | "missing" => "failure",
                _ => "running",
            };
            let _ = write!(
                h,
                "<tr><td>{}<br><small>{} · {} · {}</small></td><td>{}</td><td><span class=\"badge s-{sync}\"><span aria-hidden=\"true\">{}</span> {}</span>{}</td>\
                 <td><span class=\"badge s-{health}\"><span aria-hidden=\"true\">{}</span> {}</span></td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                Esc(&a.app),
                Esc(&a.repository),
                Esc(&a.path),
                Esc(&a.branch),
                Esc(&a.agent),
                icon(sync),
                Esc(&a.sync_status),
                if a.paused {
                    " <small>(paused)</small>"
                } else {
                    ""
                },
                icon(health),
                Esc(&a.health_status),
                Esc(short(a.revision.as_deref().unwrap_or("-"))),
                Esc(short(a.target_revision.as_deref().unwrap_or("-"))),
                Esc(&a.target),
                Esc(&a.message),
                time(a.reconciled_at)
            );
        }
        h.push_str("</tbody></table>");
        let syncs = state
            .db()
            .gitops_syncs(&store::sql::SyncFilter {
                limit: 50,
                ..Default::default()
            })
            .await;
        match syncs {
            Ok(s) if !s.is_empty() => {
                h.push_str(
                    "<h2>History</h2><table><thead><tr><th>App</th><th>Revision</th><th>Source commit</th><th>Trigger</th>\
                     <th>Result</th><th>Changes</th><th>Finished</th></tr></thead><tbody>",
                );
                for s in s {
                    let _ = write!(
                        h,
                        "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td><pre>{}</pre></td><td>{}</td></tr>",
                        Esc(&s.app),
                        Esc(short(&s.revision)),
                        Esc(short(s.source_commit.as_deref().unwrap_or("-"))),
                        Esc(&s.trigger),
                        Esc(&s.result),
                        Esc(&s.changes),
                        time(s.finished_at)
                    );
                }
                h.push_str("</tbody></table>");
            }
            Ok(_) => {}
            Err(e) => return internal_page(&viewer, e),
        }
    }
    h.push_str("</div>");
    layout("GitOps", &viewer, "GitOps", &h)
}

#[derive(Deserialize, Default)]
pub(crate) struct DispatchQuery {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
}

/// `GET /repos/{owner}/{name}/dispatch[?ref=BRANCH]`: a "Run workflow" form for every
/// workflow of the branch with a `workflow_dispatch` trigger, with its inputs (a checkbox for
/// a boolean, a list for a choice, else a text field, each with its default). The script
/// posts it to `/ui/api/dispatch` (the API decides who may) and opens the new run; a refused
/// form keeps what was typed and says why.
pub(crate) async fn dispatch(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<DispatchQuery>,
) -> Response {
    let viewer = match require(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let full = format!("{owner}/{name}");
    let repo = match found(&viewer, &full, state.repository_fresh(&full).await) {
        Ok(r) => r,
        Err(r) => return r,
    };
    // The branch: asked for, else the newest run's, else `main`.
    let git_ref = match q.git_ref.filter(|r| !r.trim().is_empty()) {
        Some(r) => r.trim().to_owned(),
        None => match state.db().runs(Some(&full), 1).await {
            Ok(runs) => runs
                .first()
                .map_or("main", |r| branch(&r.git_ref))
                .to_owned(),
            Err(e) => return internal_page(&viewer, e),
        },
    };
    let full_ref = if git_ref.starts_with("refs/") {
        git_ref.clone()
    } else {
        format!("refs/heads/{git_ref}")
    };
    let mut h = format!(
        "<h1>Run workflow <small><a href=\"/repos/{}/{}\">{}</a></small></h1>\
         <form class=\"filters\" method=\"get\" aria-label=\"Branch\"><label>Branch or tag <input name=\"ref\" value=\"{}\" size=\"20\"></label>\
         <button type=\"submit\">Show its workflows</button></form>",
        Esc(&enc(&owner)),
        Esc(&enc(&name)),
        Esc(&full),
        Esc(&git_ref)
    );
    let files = match state
        .mirrors()
        .fetch(&repo.name, &repo.clone_url, &full_ref)
        .await
    {
        Ok((sha, dir)) => match crate::git::workflow_files(&dir, &sha).await {
            Ok(f) => Ok((sha, f)),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let (sha, files) = match files {
        Ok(x) => x,
        Err(e) => {
            let _ = write!(
                h,
                "<p class=\"error\" role=\"alert\">Cannot read branch {}: {}</p>",
                Esc(&git_ref),
                Esc(&e)
            );
            let mut r = layout("Run workflow", &viewer, "Repositories", &h);
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
    };
    let mut any = false;
    for (path, source) in &files {
        let Ok(wf) = workflow::parse(source, path) else {
            continue;
        };
        let Some(trigger) = wf.on.events.get("workflow_dispatch") else {
            continue;
        };
        any = true;
        let file = path.rsplit('/').next().unwrap_or(path);
        let title = wf.name.clone().unwrap_or_else(|| file.to_owned());
        let id = format!(
            "wf-{}",
            file.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        );
        let _ = write!(
            h,
            "<section class=\"card\"><h2>{}</h2><p class=\"muted\"><code>{}</code> at <code>{}</code></p>\
             <form class=\"dispatch\" id=\"{id}\" data-repository=\"{}\" data-workflow=\"{}\" data-ref=\"{}\">",
            Esc(&title),
            Esc(path),
            Esc(short(&sha)),
            Esc(&full),
            Esc(file),
            Esc(&git_ref)
        );
        for (input, spec) in &trigger.inputs {
            let fid = format!(
                "{id}-{}",
                input.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            );
            let default = spec
                .default
                .as_ref()
                .map(|d| d.source().to_owned())
                .unwrap_or_default();
            let help = spec
                .description
                .as_deref()
                .map(|d| format!("<small id=\"{fid}-help\">{}</small>", Esc(d)))
                .unwrap_or_default();
            let req = if spec.required { " required" } else { "" };
            let described = if spec.description.is_some() {
                format!(" aria-describedby=\"{fid}-help\"")
            } else {
                String::new()
            };
            h.push_str("<div class=\"field\">");
            match spec.kind.as_str() {
                "boolean" => {
                    let checked = if default == "true" { " checked" } else { "" };
                    let _ = write!(
                        h,
                        "<label><input type=\"checkbox\" id=\"{fid}\" data-input=\"{}\"{checked}{described}> {}</label> {help}",
                        Esc(input),
                        Esc(input)
                    );
                }
                "choice" => {
                    let _ = write!(
                        h,
                        "<label for=\"{fid}\">{}</label> <select id=\"{fid}\" data-input=\"{}\"{req}{described}>",
                        Esc(input),
                        Esc(input)
                    );
                    for o in &spec.options {
                        let sel = if *o == default { " selected" } else { "" };
                        let _ = write!(h, "<option{sel}>{}</option>", Esc(o));
                    }
                    let _ = write!(h, "</select> {help}");
                }
                _ => {
                    let ty = if spec.kind == "number" {
                        "number"
                    } else {
                        "text"
                    };
                    let _ = write!(
                        h,
                        "<label for=\"{fid}\">{}</label> <input type=\"{ty}\" id=\"{fid}\" data-input=\"{}\" value=\"{}\"{req}{described}> {help}",
                        Esc(input),
                        Esc(input),
                        Esc(&default)
                    );
                }
            }
            h.push_str("</div>");
        }
        if viewer.can_write() {
            h.push_str("<button type=\"submit\" class=\"primary\">Run workflow</button>");
        } else {
            let _ = write!(
                h,
                "<p class=\"muted\">You ({}) may not start runs.</p>",
                Esc(&viewer.name)
            );
        }
        h.push_str(" <span class=\"status\" role=\"status\"></span></form></section>");
    }
    if !any {
        let _ = write!(
            h,
            "<p class=\"empty\">No workflow on {} has a <code>workflow_dispatch</code> trigger.</p>",
            Esc(&git_ref)
        );
    }
    layout("Run workflow", &viewer, "Repositories", &h)
}
