//! The web UI served by `slipway server` itself: server-rendered HTML (this module writes
//! it, escaping every value through [`Esc`]) plus one small script and one stylesheet
//! embedded in the binary (`crates/server/assets/`), no template engine and no front-end
//! build.
//!
//! Pages: sign-in (`auth`), repositories and their runs, a run with its job graph and live
//! log (`run`), environments, GitOps apps (`pages`). Live updates: `/ui/events` (Server-Sent
//! Events of [`crate::Change`]) tells a page to refetch itself; a job's log streams from
//! `/ui/jobs/{id}/log?follow=1`, resumable with `Last-Event-ID`.
//!
//! Permissions are the API's: a signed-in user acts with their own token. Mutations go
//! through `/ui/api/...`, which calls the `/api/v1/...` router in process as that user, so
//! the API (and the delivery code behind approve/reject/rollback) decides and audits.

mod admin;
mod agents;
mod auth;
mod environments_admin;
mod pages;
mod registry;
mod run;

use std::fmt::{self, Display, Write};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use tower::ServiceExt;

use crate::AppState;

pub(crate) use auth::Viewer;

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");

/// The UI's routes (merged into [`crate::app`]).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::repositories))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/repos/{owner}/{name}", get(pages::repository))
        .route("/repos/{owner}/{name}/dispatch", get(pages::dispatch))
        .route("/runs/{id}", get(run::page))
        .route("/environments", get(pages::environments))
        .route("/gitops", get(pages::gitops))
        .route("/ui/events", get(run::events))
        .route("/ui/jobs/{id}/log", get(run::job_log))
        .route("/ui/api/{*rest}", post(proxy))
        .route("/ui/runs/{id}/artifacts/{name}", get(artifact))
        .route(
            "/assets/app.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .merge(admin::routes())
        .merge(agents::routes())
        .merge(environments_admin::routes())
        .merge(registry::routes())
}

fn asset(body: &'static str, ty: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// HTML-escapes its text when displayed.
pub(crate) struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = 0;
        for (i, c) in self.0.char_indices() {
            let rep = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&self.0[last..i])?;
            f.write_str(rep)?;
            last = i + 1;
        }
        f.write_str(&self.0[last..])
    }
}

/// Percent-encodes a query or path component.
pub(crate) fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A whole page: header with navigation, `body` inside `<main>`.
pub(crate) fn layout(title: &str, viewer: &Viewer, nav: &str, body: &str) -> Response {
    let mut h = String::with_capacity(body.len() + 2048);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · slipway</title><link rel=\"stylesheet\" href=\"/assets/app.css\">\
         <script src=\"/assets/app.js\" defer></script></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header class=\"top\"><a class=\"brand\" href=\"/\">slipway</a><nav aria-label=\"Main\">",
        Esc(title)
    );
    for (href, label) in [
        ("/", "Repositories"),
        ("/environments", "Environments"),
        ("/gitops", "GitOps"),
        ("/registry", "Registry"),
        ("/agents", "Agents"),
        ("/admin", "Admin"),
    ] {
        if href == "/admin" && !(viewer.open || viewer.role == "admin") {
            continue;
        }
        let current = if nav == label {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(h, "<a href=\"{href}\"{current}>{label}</a>");
    }
    h.push_str("</nav><div class=\"who\">");
    if viewer.open {
        h.push_str("<span title=\"no [[user]] is configured: everyone may do everything\">open server</span>");
    } else if !viewer.name.is_empty() {
        let _ = write!(
            h,
            "<a class=\"user\" href=\"/account\" title=\"My account\">{} <small>({})</small></a>\
             <form method=\"post\" action=\"/logout\"><button type=\"submit\" class=\"link\">Sign out</button></form>",
            Esc(&viewer.name),
            Esc(&viewer.role)
        );
    }
    let _ = write!(
        h,
        "</div></header><main id=\"main\" tabindex=\"-1\">{body}</main></body></html>"
    );
    Html(h).into_response()
}

/// A 404 (or other error) page.
pub(crate) fn error_page(status: StatusCode, viewer: &Viewer, message: &str) -> Response {
    let body = format!(
        "<h1>{} {}</h1><p class=\"error\">{}</p><p><a href=\"/\">Back to the repositories</a></p>",
        status.as_u16(),
        Esc(status.canonical_reason().unwrap_or("")),
        Esc(message)
    );
    let mut r = layout(
        status.canonical_reason().unwrap_or("error"),
        viewer,
        "",
        &body,
    );
    *r.status_mut() = status;
    r
}

pub(crate) fn internal_page(viewer: &Viewer, e: impl Display) -> Response {
    tracing::error!(error = %e, "A UI page failed.");
    error_page(StatusCode::INTERNAL_SERVER_ERROR, viewer, &e.to_string())
}

/// The signed-in user, or a redirect to the sign-in page.
pub(crate) fn require(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Viewer, Response> {
    match auth::viewer(state, headers) {
        Some(v) => Ok(v),
        None => {
            let next = uri.path_and_query().map_or("/", |p| p.as_str());
            Err(Redirect::to(&format!("/login?next={}", enc(next))).into_response())
        }
    }
}

/// A duration in words (`1m 05s`).
pub(crate) fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A `<time>` element the script shows in local time (UTC text without script).
pub(crate) fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "<time datetime=\"{ms}\">{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC</time>",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `POST /ui/api/{rest}`: the API route `/api/v1/{rest}` called as the signed-in user. Needs
/// the `X-Slipway-UI` header (a cross-site form cannot send it).
async fn proxy(State(state): State<AppState>, Path(rest): Path<String>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(viewer) = auth::viewer(&state, &parts.headers) else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    if !parts.headers.contains_key("x-slipway-ui") {
        return (StatusCode::FORBIDDEN, "missing X-Slipway-UI header").into_response();
    }
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/{rest}{query}"));
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        builder = builder.header(header::CONTENT_TYPE, ct);
    }
    if let Some(token) = &viewer.token
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        builder = builder.header(header::AUTHORIZATION, v);
    }
    let Ok(inner) = builder.body(body) else {
        return (StatusCode::BAD_REQUEST, "bad request").into_response();
    };
    let api = Router::new()
        .merge(crate::api::routes())
        .merge(crate::environments::routes())
        .with_state(state.clone());
    let response = match api.oneshot(inner).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::new(body))
}

/// `GET /ui/runs/{id}/artifacts/{name}`: the API's download, as the signed-in user.
async fn artifact(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, name)): Path<(i64, String)>,
) -> Response {
    let Some(viewer) = auth::viewer(&state, &headers) else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(format!("/api/v1/runs/{id}/artifacts/{}", enc(&name)));
    if let Some(token) = &viewer.token
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        builder = builder.header(header::AUTHORIZATION, v);
    }
    let Ok(inner) = builder.body(Body::empty()) else {
        return (StatusCode::BAD_REQUEST, "bad artifact name").into_response();
    };
    let api = crate::artifacts::routes().with_state(state);
    match api.oneshot(inner).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            Esc("<script>alert('x')&\"</script>").to_string(),
            "&lt;script&gt;alert(&#39;x&#39;)&amp;&quot;&lt;/script&gt;"
        );
        assert_eq!(Esc("plain ü").to_string(), "plain ü");
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(
            time(0),
            "<time datetime=\"0\">1970-01-01 00:00:00 UTC</time>"
        );
        assert!(time(1_795_000_000_000).contains("2026-11-18"));
        assert_eq!(duration(65_000), "1m 05s");
        assert_eq!(duration(3_700_000), "1h 01m");
    }
}
