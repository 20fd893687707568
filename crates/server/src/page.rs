//! A minimal HTML run page at `/runs/{id}` (where commit statuses link): the run, its jobs
//! and their logs, followed live with `EventSource` while the run is going. Authentication
//! as the API (a `[[user]]` token as `Authorization: Bearer` or `?token=`). The full web UI
//! is separate work.

use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use store::sql::{RunId, RunStatus};

use crate::{AppState, error_response, internal};

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    token: Option<String>,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) async fn run_page(
    State(state): State<AppState>,
    mut headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Response {
    if let Some(token) = &q.token
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        headers.insert(header::AUTHORIZATION, v);
    }
    if let Err(r) = crate::api::authorize_read(&state, &headers) {
        return r;
    }
    let run = match state.db().run(RunId(id)).await {
        Ok(Some(r)) => r,
        Ok(None) => return error_response(StatusCode::NOT_FOUND, format!("no run {id}")),
        Err(e) => return internal(e),
    };
    let jobs = match state.db().jobs(run.id).await {
        Ok(j) => j,
        Err(e) => return internal(e),
    };
    let mut html = String::new();
    let result = run.conclusion.map_or_else(|| run.status.as_str().to_owned(), |c| c.as_str().to_owned());
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>run {id}: {}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}pre{{background:#111;color:#ddd;padding:1em;overflow:auto}}\
         td,th{{padding:.2em 1em;text-align:left}}</style></head><body>\
         <h1>{} #{id} — {}</h1><p>{} · {} · <code>{}</code> · {} · by {}</p>",
        escape(&run.workflow_name),
        escape(&run.workflow_name),
        escape(&result),
        escape(&run.repository_name),
        escape(&run.event),
        escape(&run.sha),
        escape(&run.git_ref),
        escape(&run.actor),
    );
    if let Some(reason) = &run.reason {
        let _ = write!(html, "<p><strong>{}</strong></p>", escape(reason));
    }
    html.push_str("<table><tr><th>job</th><th>status</th><th>result</th><th>attempt</th></tr>");
    for j in &jobs {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&j.key),
            j.status,
            j.result.map_or("", |c| c.as_str()),
            j.attempt
        );
    }
    html.push_str("</table><pre id=\"log\">");
    for j in &jobs {
        let _ = writeln!(html, "=== {} ===", escape(&j.key));
        if let Ok(chunks) = state.db().logs(j.id, None).await {
            for c in chunks {
                html.push_str(&escape(&String::from_utf8_lossy(&c.data)));
            }
        }
    }
    html.push_str("</pre>");
    if run.status != RunStatus::Done {
        // Live: replace the log with the streamed chunks, reload at the end.
        let token = q.token.as_deref().map(|t| format!("&token={}", url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>())).unwrap_or_default();
        let _ = write!(
            html,
            "<script>const log=document.getElementById('log');log.textContent='';let last=null;\
             const es=new EventSource('/api/v1/runs/{id}/logs?follow=true{token}');\
             es.addEventListener('log',e=>{{const c=JSON.parse(e.data);if(c.job_id!==last){{log.textContent+='=== '+c.job_key+' ===\\n';last=c.job_id;}}log.textContent+=c.text;}});\
             es.addEventListener('end',()=>{{es.close();location.reload();}});</script>"
        );
    }
    html.push_str("</body></html>");
    Html(html).into_response()
}
