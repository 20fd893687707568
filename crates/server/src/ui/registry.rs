//! The registry pages: repositories (tag count, stored size), a repository's tags (digest,
//! image or index, size, creation time, platforms) paginated, and which deployments use a
//! digest. Read-only, for every signed-in user; the content comes from the registry served
//! under `/v2/` (`registry::browse`), the deployments from the store.

use std::collections::HashMap;
use std::fmt::Write;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use store::sql::Deployment;

use super::pages::badge;
use super::{Esc, enc, error_page, internal_page, layout, require, time};
use crate::AppState;

/// Tags per page of a repository.
const PAGE: usize = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/registry", get(index))
        .route("/registry/{*name}", get(repository).post(delete_tag))
}

/// `1.5 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn not_enabled() -> &'static str {
    "<p class=\"empty\">This server does not serve a registry (it is off in the configuration).</p>"
}

async fn index(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match require(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut h = String::from("<h1>Registry</h1>");
    let Some(reg) = state.registry() else {
        h.push_str(not_enabled());
        return layout("Registry", &viewer, "Registry", &h);
    };
    let names = match reg.repository_names().await {
        Ok(n) => n,
        Err(e) => return internal_page(&viewer, e),
    };
    let host = state
        .external_url()
        .split("://")
        .nth(1)
        .unwrap_or("")
        .trim_end_matches('/')
        .to_owned();
    let _ = write!(
        h,
        "<p class=\"muted\">OCI registry at <code>{}/v2/</code>: <code>docker push {}/NAME:TAG</code></p>",
        Esc(&host),
        Esc(&host)
    );
    if names.is_empty() {
        h.push_str("<p class=\"empty\">No image pushed yet.</p>");
        return layout("Registry", &viewer, "Registry", &h);
    }
    h.push_str(
        "<table class=\"registry\"><thead><tr><th>Repository</th><th>Tags</th><th>Size</th></tr></thead><tbody>",
    );
    for name in &names {
        let info = match reg.repository_info(name).await {
            Ok(i) => i,
            Err(e) => return internal_page(&viewer, e),
        };
        let (tags, bytes) = info.map_or((0, 0), |i| (i.tags, i.size));
        let _ = write!(
            h,
            "<tr><td><a href=\"/registry/{}\">{}</a></td><td>{tags}</td><td>{}</td></tr>",
            path_enc(name),
            Esc(name),
            size(bytes)
        );
    }
    h.push_str("</tbody></table>");
    layout("Registry", &viewer, "Registry", &h)
}

/// A repository name in a path: each segment percent-encoded, `/` kept.
fn path_enc(name: &str) -> String {
    name.split('/').map(enc).collect::<Vec<_>>().join("/")
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
}

/// Deployments by every digest they deployed.
fn by_digest(all: Vec<Deployment>) -> HashMap<String, Vec<Deployment>> {
    let mut out: HashMap<String, Vec<Deployment>> = HashMap::new();
    for d in all {
        let Ok(list) = serde_json::from_str::<Vec<serde_json::Value>>(&d.digests) else {
            continue;
        };
        let mut digests: Vec<&str> = list
            .iter()
            .filter_map(|x| x.get("digest").and_then(|v| v.as_str()))
            .collect();
        digests.dedup();
        for digest in digests {
            out.entry(digest.to_owned()).or_default().push(d.clone());
        }
    }
    out
}

async fn repository(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let viewer = match require(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(reg) = state.registry() else {
        return error_page(
            StatusCode::NOT_FOUND,
            &viewer,
            "this server does not serve a registry",
        );
    };
    let name = name.trim_end_matches('/').to_owned();
    let tags = match reg.tag_names(&name).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return error_page(
                StatusCode::NOT_FOUND,
                &viewer,
                &format!("no repository {name} in the registry"),
            );
        }
        Err(e) => return internal_page(&viewer, e),
    };
    let pages = tags.len().div_ceil(PAGE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let deployments = match state.db().deployments(None, None, None, &[], 1000).await {
        Ok(d) => by_digest(d),
        Err(e) => return internal_page(&viewer, e),
    };
    let admin = viewer.open || viewer.role == "admin";
    let mut h = String::new();
    let _ = write!(
        h,
        "<p><a href=\"/registry\">Registry</a> /</p><h1>{}</h1><p class=\"muted\">{} tag{}</p>",
        Esc(&name),
        tags.len(),
        if tags.len() == 1 { "" } else { "s" }
    );
    if tags.is_empty() {
        h.push_str("<p class=\"empty\">No tags (only untagged manifests).</p>");
    } else {
        h.push_str(
            "<table class=\"tags\"><thead><tr><th>Tag</th><th>Digest</th><th>Type</th><th>Size</th>\
             <th>Created</th><th>Platforms</th><th>Deployed</th></tr></thead><tbody>",
        );
        for tag in tags.iter().skip((page - 1) * PAGE).take(PAGE) {
            let info = match reg.tag_info(&name, tag).await {
                Ok(i) => i.and_then(|i| i.manifest),
                Err(e) => return internal_page(&viewer, e),
            };
            let _ = write!(h, "<tr><td><code>{}</code>", Esc(tag));
            if admin {
                let _ = write!(
                    h,
                    "<form method=\"post\" action=\"/registry/{}?page={page}\" class=\"inline\">\
                     <input type=\"hidden\" name=\"tag\" value=\"{}\">\
                     <button type=\"submit\" class=\"danger link\" aria-label=\"Delete tag {}\">Delete</button></form>",
                    path_enc(&name),
                    Esc(tag),
                    Esc(tag)
                );
            }
            h.push_str("</td>");
            let Some(m) = info else {
                h.push_str("<td colspan=\"6\" class=\"error\">manifest missing</td></tr>");
                continue;
            };
            let short = m.digest.get(..19).unwrap_or(&m.digest);
            let kind = if m.index { "index" } else { "image" };
            let _ = write!(
                h,
                "<td><code title=\"{}\" data-digest=\"{}\">{}…</code></td><td>{kind}<br><small>{}</small></td><td>{}</td><td>{}</td><td>{}</td><td>",
                Esc(&m.digest),
                Esc(&m.digest),
                Esc(short),
                Esc(&m.media_type),
                size(m.size),
                m.created
                    .as_deref()
                    .map(Esc)
                    .map_or_else(String::new, |c| c.to_string()),
                Esc(&m.platforms.join(", "))
            );
            let mut used: Vec<&Deployment> = Vec::new();
            for d in std::iter::once(&m.digest).chain(m.children.iter()) {
                for dep in deployments.get(d).into_iter().flatten() {
                    if !used.iter().any(|u| u.id == dep.id) {
                        used.push(dep);
                    }
                }
            }
            if used.is_empty() {
                h.push_str("<span class=\"muted\">—</span>");
            }
            h.push_str("<ul class=\"used\">");
            for d in used.iter().take(10) {
                let _ = write!(
                    h,
                    "<li>{} <a href=\"/environments\">{}</a> · {} · <a href=\"/runs/{}\">run {}</a> · {}</li>",
                    badge(d.status.as_str()),
                    Esc(&d.environment),
                    Esc(&d.repository_name),
                    d.run.0,
                    d.run.0,
                    time(d.created_at)
                );
            }
            if used.len() > 10 {
                let _ = write!(h, "<li class=\"muted\">and {} more</li>", used.len() - 10);
            }
            h.push_str("</ul></td></tr>");
        }
        h.push_str("</tbody></table>");
    }
    if pages > 1 {
        h.push_str("<nav class=\"pager\" aria-label=\"Pages\">");
        if page > 1 {
            let _ = write!(
                h,
                "<a rel=\"prev\" href=\"/registry/{}?page={}\">← Previous</a> ",
                path_enc(&name),
                page - 1
            );
        }
        let _ = write!(h, "<span>Page {page} of {pages}</span>");
        if page < pages {
            let _ = write!(
                h,
                " <a rel=\"next\" href=\"/registry/{}?page={}\">Next →</a>",
                path_enc(&name),
                page + 1
            );
        }
        h.push_str("</nav>");
    }
    layout(&name, &viewer, "Registry", &h)
}

/// `POST /registry/{name}` with `tag=T` (admins): removes the tag (the manifest stays until
/// garbage collection finds it unreferenced); audited as `registry.tag.deleted`.
async fn delete_tag(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
    body: Bytes,
) -> Response {
    let viewer = match require(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !viewer.open && viewer.role != "admin" {
        return error_page(StatusCode::FORBIDDEN, &viewer, "only admins delete tags");
    }
    if !super::environments_admin::same_site(&headers) {
        return error_page(StatusCode::FORBIDDEN, &viewer, "cross-site form refused");
    }
    let Some(reg) = state.registry() else {
        return error_page(
            StatusCode::NOT_FOUND,
            &viewer,
            "this server does not serve a registry",
        );
    };
    let tag = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "tag")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let name = name.trim_end_matches('/').to_owned();
    let digest = match reg.delete_tag(&name, &tag).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return error_page(
                StatusCode::NOT_FOUND,
                &viewer,
                &format!("no tag {tag} in {name}"),
            );
        }
        Err(e) => return internal_page(&viewer, e),
    };
    let event = store::sql::AuditEvent {
        actor: viewer.name.clone(),
        action: "registry.tag.deleted".to_owned(),
        detail: Some(format!("{name}:{tag} ({digest})")),
        ..store::sql::AuditEvent::default()
    };
    if let Err(e) = state.db().audit(&event, crate::now_ms()).await {
        return internal_page(&viewer, e);
    }
    tracing::info!(repository = %name, %tag, %digest, user = %viewer.name, "Registry tag deleted.");
    Redirect::to(&format!(
        "/registry/{}?page={}",
        path_enc(&name),
        q.page.unwrap_or(1)
    ))
    .into_response()
}
