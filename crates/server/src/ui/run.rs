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
use super::{Esc, Viewer, duration, enc, error_page, internal_page, layout, require, time};
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
/// A matrix group: its header row, then one row per leg.
const GROUP_HEAD: usize = 34;
const LEG_H: usize = 26;

/// One matrix leg of a job, as the graph shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leg {
    /// The runner's name of the leg (`test (unit)`).
    pub name: String,
    /// `queued`, `running`, or its result.
    pub state: String,
    /// The 1-based log line where the leg started, if it did.
    pub line: Option<usize>,
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        s.chars().take(max - 1).chain(['…']).collect()
    } else {
        s.to_owned()
    }
}

/// What a leg is called inside its group: the matrix values (`unit` of `test (unit)`).
fn leg_label<'a>(job: &Job, leg: &'a str) -> &'a str {
    leg.strip_prefix(job.name.as_str())
        .or_else(|| leg.strip_prefix(job.key.as_str()))
        .and_then(|rest| rest.strip_prefix(" ("))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or(leg)
}

/// The job graph as SVG: one column per `needs` depth, an edge per need, each job a link
/// (`?job=ID`) coloured and iconed by its state. A matrix job (`legs` has it) is a group box
/// labelled with the job's name and listing its legs, each with its own icon and colour and
/// a link to where it starts in the job's log.
pub(crate) fn graph(
    jobs: &[Job],
    waiting: &[i64],
    selected: Option<JobId>,
    legs: &HashMap<JobId, Vec<Leg>>,
) -> String {
    let level = levels(jobs);
    let heights: Vec<usize> = jobs
        .iter()
        .map(|j| match legs.get(&j.id) {
            Some(l) if !l.is_empty() => GROUP_HEAD + l.len() * LEG_H + 8,
            _ => BOX_H,
        })
        .collect();
    let mut next_y = HashMap::<usize, usize>::new();
    let mut pos = Vec::with_capacity(jobs.len());
    for (i, l) in level.iter().enumerate() {
        let y = next_y.entry(*l).or_insert(PAD);
        pos.push((PAD + l * (BOX_W + GAP_X), *y));
        *y += heights[i] + GAP_Y;
    }
    let cols = level.iter().max().map_or(0, |m| m + 1);
    let width = 2 * PAD + cols * BOX_W + cols.saturating_sub(1) * GAP_X;
    let height = next_y.values().max().map_or(2 * PAD, |y| y - GAP_Y + PAD);
    let mut s = format!(
        "<svg class=\"graph\" role=\"group\" aria-label=\"Job graph\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    );
    // Edges meet a box at its middle, a group at its header.
    let anchor = |i: usize| {
        pos[i].1
            + if heights[i] == BOX_H {
                BOX_H / 2
            } else {
                GROUP_HEAD / 2
            }
    };
    for (i, j) in jobs.iter().enumerate() {
        for n in needs(j) {
            if let Some(p) = jobs.iter().position(|x| x.key == n) {
                let (x1, y1) = (pos[p].0 + BOX_W, anchor(p));
                let (x2, y2) = (pos[i].0, anchor(i));
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
        let label = shorten(&j.name, 22);
        let group = legs.get(&j.id).filter(|l| !l.is_empty());
        let (kind, what) = match group {
            Some(l) => (" group", format!(" (matrix of {} legs)", l.len())),
            None => ("", String::new()),
        };
        let ty = if group.is_some() { y + 22 } else { y + 26 };
        let _ = write!(
            s,
            "<a href=\"?job={}\" class=\"node{kind} s-{st}{sel}\" data-job-key=\"{}\" data-state=\"{st}\" aria-label=\"job {}: {}{what}\">\
             <title>{}: {}{what}</title><rect x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{}\" rx=\"6\"/>\
             <text class=\"icon\" x=\"{}\" y=\"{ty}\">{}</text><text x=\"{}\" y=\"{}\">{}</text></a>",
            j.id.0,
            Esc(&j.key),
            Esc(&j.name),
            st,
            Esc(&j.name),
            st,
            heights[i],
            x + 12,
            icon(st),
            x + 34,
            ty - 1,
            Esc(&label),
        );
        for (k, leg) in group.into_iter().flatten().enumerate() {
            let ly = y + GROUP_HEAD + k * LEG_H;
            let href = match leg.line {
                Some(n) => format!("?job={}#L{n}", j.id.0),
                None => format!("?job={}", j.id.0),
            };
            let lst = leg.state.as_str();
            let _ = write!(
                s,
                "<a href=\"{href}\" class=\"leg s-{0}\" data-job-key=\"{1}\" data-leg=\"{2}\" data-state=\"{0}\" aria-label=\"leg {2}: {0}\">\
                 <title>{2}: {0}</title><rect x=\"{3}\" y=\"{4}\" width=\"{5}\" height=\"{6}\" rx=\"4\"/>\
                 <text class=\"icon\" x=\"{7}\" y=\"{8}\">{9}</text><text x=\"{10}\" y=\"{8}\">{11}</text></a>",
                Esc(lst),
                Esc(&j.key),
                Esc(&leg.name),
                x + 8,
                ly,
                BOX_W - 16,
                LEG_H - 4,
                x + 16,
                ly + 16,
                icon(lst),
                x + 36,
                Esc(&shorten(leg_label(j, &leg.name), 20)),
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// The markers the agent writes around a matrix leg in the job's log.
const LEG_START: &str = "::leg::";
const LEG_END: &str = "::endleg::";

/// The legs of a matrix job: those the matrix lists when it needs no run-time values
/// (`planned`, in order), merged with what the log says (`::leg::NAME` when a leg starts,
/// `::endleg::RESULT::NAME` when it ends; line numbers count like the log view's).
/// A leg the log has not mentioned is `queued` while the job runs and takes the job's
/// state once it is done (it never started: skipped or cancelled with it).
pub(crate) fn legs_from_log(planned: &[String], chunks: &[&[u8]], job_state: &str) -> Vec<Leg> {
    let mut legs: Vec<Leg> = planned
        .iter()
        .map(|n| Leg {
            name: n.clone(),
            state: String::new(),
            line: None,
        })
        .collect();
    let mut line = 0usize;
    for chunk in chunks {
        let text = String::from_utf8_lossy(chunk);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        for l in text.split('\n') {
            // The log view does not show (nor number) group ends.
            if l.starts_with("::endgroup::") {
                continue;
            }
            line += 1;
            let (name, state) = if let Some(name) = l.strip_prefix(LEG_START) {
                (name, "running")
            } else if let Some(rest) = l.strip_prefix(LEG_END) {
                match rest.split_once("::") {
                    Some((result, name)) => (name, result),
                    None => continue,
                }
            } else {
                continue;
            };
            let state = match state {
                "success" | "failure" | "cancelled" | "skipped" | "running" => state,
                _ => "failure",
            };
            match legs.iter_mut().find(|g| g.name == name) {
                Some(g) => {
                    g.state = state.to_owned();
                    g.line.get_or_insert(line);
                }
                None => legs.push(Leg {
                    name: name.to_owned(),
                    state: state.to_owned(),
                    line: Some(line),
                }),
            }
        }
    }
    let done = !matches!(job_state, "queued" | "pending" | "running" | "waiting");
    for g in &mut legs {
        if g.state.is_empty() {
            g.state = if done { job_state } else { "queued" }.to_owned();
        } else if g.state == "running" && done {
            g.state = job_state.to_owned();
        }
    }
    legs
}

/// The leg names of each matrix job whose matrix needs no run-time values, as the runner
/// names them (`NAME (v1, v2)`); an empty list for a matrix known only at run time (the log
/// then names its legs). Jobs without `strategy.matrix` are absent.
fn planned_legs(run: &Run) -> HashMap<String, Vec<String>> {
    struct NoContext;
    impl workflow::expr::Context for NoContext {
        fn context(&self, _: &str) -> Option<&serde_json::Value> {
            None
        }
    }
    let mut out = HashMap::new();
    let Ok(spec) = serde_json::from_str::<crate::trigger::RunSpec>(&run.spec) else {
        return out;
    };
    let Ok(wf) = workflow::parse(&spec.workflow.source, &spec.workflow.file) else {
        return out;
    };
    for (key, job) in &wf.jobs {
        let Some(matrix) = job.strategy.as_ref().and_then(|s| s.matrix.as_ref()) else {
            continue;
        };
        let base = match &job.name {
            Some(t) if t.is_literal() => t.source().to_owned(),
            Some(_) => {
                out.insert(key.clone(), Vec::new());
                continue;
            }
            None => key.clone(),
        };
        let names = workflow::matrix::expand(matrix, &NoContext)
            .map(|legs| {
                legs.iter()
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let suffix: Vec<String> = l
                            .values()
                            .map(|v| match v {
                                serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                                    serde_json::to_string(v).unwrap_or_default()
                                }
                                other => workflow::expr::to_string(other),
                            })
                            .collect();
                        format!("{base} ({})", suffix.join(", "))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(key.clone(), names);
    }
    out
}

/// The legs of the run's matrix jobs (their logs read for the legs' states).
async fn run_legs(
    state: &AppState,
    run: &Run,
    jobs: &[Job],
    waiting: &[i64],
) -> Result<HashMap<JobId, Vec<Leg>>, crate::ServerError> {
    let planned = planned_legs(run);
    let mut out = HashMap::new();
    for j in jobs {
        let Some(names) = planned.get(&j.key) else {
            continue;
        };
        let st = job_state(j, waiting);
        let chunks = if matches!(st, "queued" | "pending" | "waiting") {
            Vec::new()
        } else {
            state.db().logs(j.id, Some((j.attempt, -1))).await?
        };
        let data: Vec<&[u8]> = chunks
            .iter()
            .filter(|c| c.attempt == j.attempt)
            .map(|c| c.data.as_slice())
            .collect();
        out.insert(j.id, legs_from_log(names, &data, st));
    }
    Ok(out)
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
    let me = crate::users::by_name(state, &viewer.name);
    let me = me.as_ref();
    for d in deployments
        .iter()
        .filter(|d| d.status == DeploymentStatus::Waiting)
    {
        let env = crate::environments::lookup(state, &run.repository_name, &d.environment);
        let env = env.as_deref();
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
    let legs = run_legs(state, run, &jobs, &waiting_jobs).await?;
    h.push_str(&graph(&jobs, &waiting_jobs, selected.map(|j| j.id), &legs));
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
        if let Some(l) = legs.get(&j.id).filter(|l| l.len() > 1) {
            // The legs run at once inside this job: the agent numbers and names their steps
            // per leg (`values: step`), and their log lines interleave.
            let _ = write!(
                h,
                "<p class=\"muted legs-note\">{} matrix legs run at once in this job: their steps are listed per leg, and the log marks where each leg starts and ends.</p>",
                l.len()
            );
        }
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
        let summaries: Vec<_> = steps
            .iter()
            .filter(|s| s.attempt == j.attempt)
            .filter_map(|s| Some((s, s.summary.as_deref().filter(|m| !m.trim().is_empty())?)))
            .collect();
        if !summaries.is_empty() {
            let _ = write!(
                h,
                "<section class=\"summary\" aria-label=\"Job summary\"><h3>{} summary</h3>",
                Esc(&j.name)
            );
            for (s, md) in summaries {
                let _ = write!(
                    h,
                    "<div class=\"markdown\" data-step=\"{}\">{}</div>",
                    Esc(&s.name),
                    markdown(md)
                );
            }
            h.push_str("</section>");
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
             <button type=\"button\" id=\"log-times\" aria-pressed=\"false\">Show timestamps</button>\
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

/// A step summary (GitHub-flavoured markdown from `$GITHUB_STEP_SUMMARY`, masked by the
/// runner) as HTML. Raw HTML in it is shown as text, and links or images with a script
/// scheme (`javascript:`, `vbscript:`, `data:`) lose their target: what a job prints never
/// runs in the page.
pub(crate) fn markdown(md: &str) -> String {
    use pulldown_cmark::{CowStr, Event as Md, Options, Parser, Tag};
    fn safe(url: CowStr<'_>) -> CowStr<'_> {
        let scheme: String = url
            .trim_start()
            .chars()
            .take_while(|c| *c != ':')
            .filter(|c| !c.is_whitespace() && !c.is_control())
            .collect::<String>()
            .to_ascii_lowercase();
        if url.contains(':') && matches!(scheme.as_str(), "javascript" | "vbscript" | "data") {
            CowStr::Borrowed("#")
        } else {
            url
        }
    }
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(md, opts).map(|e| match e {
        Md::Html(t) | Md::InlineHtml(t) => Md::Text(t),
        Md::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Md::Start(Tag::Link {
            link_type,
            dest_url: safe(dest_url),
            title,
            id,
        }),
        Md::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Md::Start(Tag::Image {
            link_type,
            dest_url: safe(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::with_capacity(md.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut out, events);
    out
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
    /// When the chunk's first line was read (the agent's clock, unix ms).
    time: i64,
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
                                time: c.created_at,
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
                        Ok(Change::Run(r) | Change::RunFinished(r) | Change::Log(r))
                            if r == job.run.0 =>
                        {
                            break;
                        }
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
        let svg = graph(&jobs, &[1], Some(JobId(3)), &HashMap::new());
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
        let svg = graph(&jobs, &[], None, &HashMap::new());
        assert!(!svg.contains("<script>"), "{svg}");
    }

    #[test]
    fn matrix_legs_are_a_group_with_their_own_states() {
        let mut test = job(2, "test", &["build"], JobStatus::Running);
        test.name = "test".into();
        let jobs = vec![
            job(1, "build", &[], JobStatus::Done),
            test,
            job(3, "package", &["test"], JobStatus::Pending),
        ];
        let planned = vec![
            "test (unit)".to_owned(),
            "test (cli)".to_owned(),
            "test (doc)".to_owned(),
        ];
        let log: Vec<&[u8]> = vec![
            b"::leg::test (unit)\n::leg::test (cli)\nok\n",
            b"::endleg::failure::test (cli)\n::endleg::success::test (unit)\n",
        ];
        let legs = legs_from_log(&planned, &log, "running");
        assert_eq!(
            legs.iter()
                .map(|l| (l.name.as_str(), l.state.as_str(), l.line))
                .collect::<Vec<_>>(),
            vec![
                ("test (unit)", "success", Some(1)),
                ("test (cli)", "failure", Some(2)),
                ("test (doc)", "queued", None),
            ]
        );
        let svg = graph(&jobs, &[], None, &[(JobId(2), legs)].into_iter().collect());
        assert!(
            svg.contains("class=\"node group s-running\" data-job-key=\"test\""),
            "{svg}"
        );
        assert!(
            svg.contains("data-leg=\"test (cli)\" data-state=\"failure\""),
            "{svg}"
        );
        assert!(svg.contains("href=\"?job=2#L2\""), "{svg}");
        let cli = &svg[svg.find("data-leg=\"test (cli)\"").expect("the cli leg")..];
        let cli = &cli[..cli.find("</a>").expect("its end")];
        assert!(
            cli.contains(">✗</text>") && cli.contains(">cli</text>"),
            "{cli}"
        );
        assert!(svg.contains(">doc</text>"), "{svg}");
        // Edges go to and from the group: build -> test -> package.
        assert_eq!(svg.matches("class=\"edge\"").count(), 2);
    }

    #[test]
    fn legs_that_never_started_take_the_finished_jobs_state() {
        let planned = vec!["t (a)".to_owned(), "t (b)".to_owned()];
        let log: Vec<&[u8]> = vec![b"::leg::t (a)\n"];
        let legs = legs_from_log(&planned, &log, "cancelled");
        assert_eq!(legs[0].state, "cancelled");
        assert_eq!(legs[1].state, "cancelled");
        // A leg the plan did not list (a matrix computed at run time) comes from the log.
        let legs = legs_from_log(
            &[],
            &[b"::leg::t (x)\n::endleg::success::t (x)\n"],
            "success",
        );
        assert_eq!(legs.len(), 1);
        assert_eq!((legs[0].state.as_str(), legs[0].line), ("success", Some(1)));
    }

    #[test]
    fn summaries_are_markdown_without_raw_html_or_script_links() {
        let html = markdown(
            "### wordcount 1.2.0\n- `dist.tar.gz`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n\
             <script>alert(1)</script>\n\nhi <img src=x onerror=alert(1)> [x](javascript:alert(1)) [ok](https://example.com)\n",
        );
        assert!(html.contains("<h3>wordcount 1.2.0</h3>"), "{html}");
        assert!(html.contains("<code>dist.tar.gz</code>"), "{html}");
        assert!(html.contains("<table>"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("href=\"https://example.com\""), "{html}");
    }
}
