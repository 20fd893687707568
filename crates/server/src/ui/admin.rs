//! Admin pages (admins only; others get a 403 page): repositories (register, edit, delete),
//! repository and organisation secrets (write-only) and variables, users (create, role,
//! groups, reset password, tokens, disable, delete), and every user's own account page
//! (`/account`: password and tokens).
//!
//! The pages hold no authority: every read and change is a call of the `/api/v1` router in
//! process as the signed-in user (a session bearer, see `crate::users`), so the API decides,
//! validates and audits. Forms are plain HTML posts (no script needed): on an error the page
//! comes back with the API's message, the field it names marked and focused, and what was
//! typed kept — except passwords and secret values, which are never sent back to the browser.
//! A successful change redirects (303) back to the page, which says what was done. A token's
//! value is shown once, on the page that answers its creation.

// The error of these helpers is the handler's reply (an axum `Response`).
#![allow(clippy::result_large_err)]

use std::fmt::Write;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{Esc, Viewer, enc, error_page, layout, require, time};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(index))
        .route("/admin/repositories", get(repositories).post(register))
        .route(
            "/admin/repositories/{owner}/{name}",
            get(repository).post(edit_repository),
        )
        .route(
            "/admin/repositories/{owner}/{name}/delete",
            post(delete_repository),
        )
        .route(
            "/admin/repositories/{owner}/{name}/{kind}",
            post(put_repo_setting),
        )
        .route(
            "/admin/repositories/{owner}/{name}/{kind}/{setting}/delete",
            post(delete_repo_setting),
        )
        .route("/admin/organizations", get(organizations))
        .route("/admin/organizations/{org}", get(organization))
        .route("/admin/organizations/{org}/{kind}", post(put_org_setting))
        .route(
            "/admin/organizations/{org}/{kind}/{setting}/delete",
            post(delete_org_setting),
        )
        .route("/admin/users", get(users).post(create_user))
        .route("/admin/users/{name}", get(user).post(edit_user))
        .route("/admin/users/{name}/password", post(reset_password))
        .route("/admin/users/{name}/disabled", post(set_disabled))
        .route("/admin/users/{name}/delete", post(delete_user))
        .route("/admin/users/{name}/tokens", post(create_user_token))
        .route(
            "/admin/users/{name}/tokens/{id}/revoke",
            post(revoke_user_token),
        )
        .route("/account", get(account))
        .route("/account/password", post(change_password))
        .route("/account/tokens", post(create_my_token))
        .route("/account/tokens/{id}/revoke", post(revoke_my_token))
}

// --- plumbing ------------------------------------------------------------------------------------

/// A posted form, in order.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Form {
        Form(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// A form that failed: which one, what was typed, and the API's message.
struct Sticky {
    form: &'static str,
    values: Form,
    error: String,
    /// The API's status (the page answers with it).
    status: StatusCode,
}

impl Sticky {
    /// The field the message names (`request field `clone_url`: ...`), if any.
    fn field(&self) -> Option<&str> {
        let rest = self.error.split("field `").nth(1)?;
        let name = rest.split('`').next()?;
        Some(name.split('[').next().unwrap_or(name))
    }
}

/// The sticky state of form `form`, if it is the one that failed.
fn sticky<'a>(s: Option<&'a Sticky>, form: &str) -> Option<&'a Sticky> {
    s.filter(|s| s.form == form)
}

/// The reply of an in-process API call.
struct Reply {
    status: StatusCode,
    body: Value,
}

impl Reply {
    fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The API's error message.
    fn error(&self) -> String {
        self.body.get("error").and_then(Value::as_str).map_or_else(
            || format!("the API answered {}", self.status),
            str::to_owned,
        )
    }
}

/// The API routes the admin pages use, as the state's router.
fn api(state: &AppState) -> Router {
    crate::users::audited(crate::repos::routes(), state)
        .merge(crate::users::routes())
        .merge(crate::environments::routes())
        .with_state(state.clone())
}

/// Calls `method path` of the API as `viewer`.
async fn call(
    state: &AppState,
    viewer: &Viewer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let Some(request) = api_request(viewer, method, path, body) else {
        return Reply {
            status: StatusCode::BAD_REQUEST,
            body: json!({"error": format!("`{path}` is not a valid path")}),
        };
    };
    let response = match api(state).oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, body }
}

/// The request `method path` of the in-process API as `viewer` (with its token and a JSON
/// body), or `None` when `path` is not a valid URI.
pub(super) fn api_request(
    viewer: &Viewer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Option<Request<Body>> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = &viewer.token
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        builder = builder.header(header::AUTHORIZATION, v);
    }
    let body = match body {
        Some(b) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    builder.body(body).ok()
}

/// The signed-in admin, or a sign-in redirect / 403 page. Posts must come from our own pages
/// (the session cookie is `SameSite=Strict`; `Sec-Fetch-Site` is checked as well).
fn admin(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<Viewer, Response> {
    let viewer = signed_in(state, headers, uri)?;
    if !(viewer.open || viewer.role == "admin") {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            &viewer,
            &format!(
                "Only admins manage repositories, secrets and users; {} is a {}.",
                viewer.name, viewer.role
            ),
        ));
    }
    Ok(viewer)
}

fn signed_in(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<Viewer, Response> {
    let viewer = require(state, headers, uri)?;
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            &viewer,
            "Cross-site form posts are refused.",
        ));
    }
    Ok(viewer)
}

/// An admin page (never cached: it may show a new token).
fn page(title: &str, viewer: &Viewer, body: &str, status: StatusCode) -> Response {
    let mut r = layout(title, viewer, "Admin", body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The status of a page that answers a failed form: the API's 4xx (a 5xx stays a 5xx).
fn failed(status: StatusCode) -> StatusCode {
    if status.is_client_error() || status.is_server_error() {
        status
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// Back to `to` after a change, saying what was done.
fn done(to: &str, what: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}done={}", enc(what))).into_response()
}

#[derive(Deserialize, Default)]
struct Notice {
    done: Option<String>,
}

/// What a `done` code says.
fn notice(n: &Notice) -> String {
    let text = match n.done.as_deref() {
        Some("registered") => "Repository registered.",
        Some("saved") => "Saved.",
        Some("deleted") => "Deleted.",
        Some("secret") => "Secret saved.",
        Some("variable") => "Variable saved.",
        Some("password") => "Password changed.",
        Some("revoked") => "Token revoked.",
        Some("disabled") => "User disabled: they can no longer sign in or use a token.",
        Some("enabled") => "User enabled.",
        _ => return String::new(),
    };
    format!("<p class=\"notice\" role=\"status\">{text}</p>")
}

/// The message and marker of a failed form, at the top of the form.
fn form_error(h: &mut String, s: Option<&Sticky>, form: &str) {
    if let Some(s) = sticky(s, form) {
        let _ = write!(
            h,
            "<p class=\"error\" role=\"alert\" id=\"{form}-error\">{}</p>",
            Esc(&s.error)
        );
    }
}

/// One labelled input. `value` is used unless the form failed and kept what was typed
/// (never for passwords).
struct Field<'a> {
    form: &'static str,
    name: &'a str,
    label: &'a str,
    kind: &'a str,
    value: &'a str,
    hint: &'a str,
    attrs: &'a str,
}

impl<'a> Field<'a> {
    fn new(form: &'static str, name: &'a str, label: &'a str) -> Field<'a> {
        Field {
            form,
            name,
            label,
            kind: "text",
            value: "",
            hint: "",
            attrs: "",
        }
    }
    fn kind(mut self, kind: &'a str) -> Self {
        self.kind = kind;
        self
    }
    fn value(mut self, value: &'a str) -> Self {
        self.value = value;
        self
    }
    fn hint(mut self, hint: &'a str) -> Self {
        self.hint = hint;
        self
    }
    fn attrs(mut self, attrs: &'a str) -> Self {
        self.attrs = attrs;
        self
    }

    fn render(&self, h: &mut String, s: Option<&Sticky>) {
        let s = sticky(s, self.form);
        let id = format!("{}-{}", self.form, self.name);
        let secret = self.kind == "password";
        let value = match s {
            Some(s) if !secret => s.values.get(self.name),
            Some(_) => "",
            None => self.value,
        };
        let invalid = s.is_some_and(|s| s.field() == Some(self.name));
        let mut described = Vec::new();
        if !self.hint.is_empty() {
            described.push(format!("{id}-hint"));
        }
        if invalid {
            described.push(format!("{}-error", self.form));
        }
        let _ = write!(
            h,
            "<div class=\"field\"><label for=\"{id}\">{}</label>",
            Esc(self.label)
        );
        let _ = write!(
            h,
            "<input id=\"{id}\" name=\"{}\" type=\"{}\" value=\"{}\"",
            Esc(self.name),
            self.kind,
            Esc(value)
        );
        if !described.is_empty() {
            let _ = write!(h, " aria-describedby=\"{}\"", described.join(" "));
        }
        if invalid {
            h.push_str(" aria-invalid=\"true\" autofocus");
        }
        if !self.attrs.is_empty() {
            let _ = write!(h, " {}", self.attrs);
        }
        h.push('>');
        if !self.hint.is_empty() {
            let _ = write!(h, "<small id=\"{id}-hint\">{}</small>", Esc(self.hint));
        }
        if secret && s.is_some_and(|s| !s.values.get(self.name).is_empty()) {
            h.push_str("<small>Not sent back for safety: type it again.</small>");
        }
        h.push_str("</div>");
    }
}

/// A `<select>` of `options`, the current (or typed) one selected.
fn select(
    h: &mut String,
    s: Option<&Sticky>,
    form: &'static str,
    name: &str,
    label: &str,
    options: &[&str],
    current: &str,
) {
    let s = sticky(s, form);
    let current = s.map_or(current, |s| s.values.get(name));
    let invalid = s.is_some_and(|s| s.field() == Some(name));
    let id = format!("{form}-{name}");
    let _ = write!(
        h,
        "<div class=\"field\"><label for=\"{id}\">{}</label><select id=\"{id}\" name=\"{}\"",
        Esc(label),
        Esc(name)
    );
    if invalid {
        let _ = write!(
            h,
            " aria-invalid=\"true\" aria-describedby=\"{form}-error\" autofocus"
        );
    }
    h.push('>');
    for o in options {
        let sel = if *o == current { " selected" } else { "" };
        let _ = write!(h, "<option value=\"{0}\"{sel}>{0}</option>", Esc(o));
    }
    h.push_str("</select></div>");
}

/// A one-button form posting to `action`.
fn button(h: &mut String, action: &str, label: &str, class: &str, hidden: &[(&str, &str)]) {
    let _ = write!(
        h,
        "<form method=\"post\" action=\"{}\" class=\"inline\">",
        Esc(action)
    );
    for (k, v) in hidden {
        let _ = write!(
            h,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            Esc(k),
            Esc(v)
        );
    }
    let _ = write!(
        h,
        "<button type=\"submit\" class=\"{class}\">{}</button></form>",
        Esc(label)
    );
}

/// A table row's button: `verb` shown, `verb object` for screen readers.
fn row_button(h: &mut String, action: &str, verb: &str, object: &str) {
    let _ = write!(
        h,
        "<form method=\"post\" action=\"{}\" class=\"inline\"><button type=\"submit\" class=\"danger\" aria-label=\"{verb} {}\">{verb}</button></form>",
        Esc(action),
        Esc(object)
    );
}

/// A page that asks before deleting (`confirm=yes` posts again).
fn confirm(viewer: &Viewer, action: &str, what: &str, back: &str) -> Response {
    let mut h = format!(
        "<h1>Delete {}?</h1><p>This cannot be undone.</p><div class=\"actions\">",
        Esc(what)
    );
    button(
        &mut h,
        action,
        &format!("Delete {what}"),
        "danger",
        &[("confirm", "yes")],
    );
    let _ = write!(h, "<a href=\"{}\">Cancel</a></div>", Esc(back));
    page(&format!("Delete {what}"), viewer, &h, StatusCode::OK)
}

fn breadcrumb(h: &mut String, parts: &[(&str, &str)]) {
    h.push_str("<nav class=\"crumbs\" aria-label=\"Breadcrumb\"><a href=\"/admin\">Admin</a>");
    for (href, label) in parts {
        if href.is_empty() {
            let _ = write!(h, " / <span aria-current=\"page\">{}</span>", Esc(label));
        } else {
            let _ = write!(h, " / <a href=\"{}\">{}</a>", Esc(href), Esc(label));
        }
    }
    h.push_str("</nav>");
}

fn string(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// `30000` -> `30s`.
fn duration_text(ms: i64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

// --- index ---------------------------------------------------------------------------------------

async fn index(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let repos = call(&state, &viewer, Method::GET, "/api/v1/repositories", None).await;
    let users = call(&state, &viewer, Method::GET, "/api/v1/users", None).await;
    let audit = call(&state, &viewer, Method::GET, "/api/v1/audit?limit=20", None).await;
    let mut h = String::from("<h1>Admin</h1><ul class=\"admin-index\">");
    let _ = write!(
        h,
        "<li><a href=\"/admin/repositories\">Repositories</a> <small>{} registered: clone URL, forge, webhook secret, forge token, secrets and variables</small></li>\
         <li><a href=\"/admin/organizations\">Organisations</a> <small>secrets and variables every repository of an owner gets</small></li>\
         <li><a href=\"/admin/environments\">Environments</a> <small>protection rules, reviewers, environment secrets</small></li>\
         <li><a href=\"/admin/users\">Users</a> <small>{}: roles, groups, passwords, API tokens</small></li>\
         <li><a href=\"/account\">My account</a> <small>my password and tokens</small></li></ul>",
        list(&repos.body).len(),
        match list(&users.body).len() {
            1 => "1 user".to_owned(),
            n => format!("{n} users"),
        }
    );
    h.push_str("<h2>Recent changes</h2>");
    let events = list(&audit.body);
    if events.is_empty() {
        h.push_str("<p class=\"empty\">Nothing recorded yet.</p>");
    } else {
        h.push_str("<div class=\"scroll\"><table class=\"audit\"><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Who</th><th scope=\"col\">What</th><th scope=\"col\">Detail</th></tr></thead><tbody>");
        for e in events.iter().rev() {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                time(e.get("at").and_then(Value::as_i64).unwrap_or(0)),
                Esc(&string(e, "actor")),
                Esc(&string(e, "action")),
                Esc(&string(e, "detail"))
            );
        }
        h.push_str("</tbody></table></div>");
    }
    page("Admin", &viewer, &h, StatusCode::OK)
}

// --- repositories --------------------------------------------------------------------------------

const FORGES: &[&str] = &["gitea", "forgejo", "github", "gitlab", "generic"];

async fn repositories(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(n): Query<Notice>,
) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    repositories_page(&state, &viewer, &notice(&n), None).await
}

async fn repositories_page(
    state: &AppState,
    viewer: &Viewer,
    notice: &str,
    s: Option<&Sticky>,
) -> Response {
    let repos = call(state, viewer, Method::GET, "/api/v1/repositories", None).await;
    let mut h = String::new();
    breadcrumb(&mut h, &[("", "Repositories")]);
    let _ = write!(h, "<h1>Repositories</h1>{notice}");
    let rows = list(&repos.body);
    if rows.is_empty() {
        h.push_str("<p class=\"empty\">No repository yet: register one below.</p>");
    } else {
        h.push_str("<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Repository</th><th scope=\"col\">Forge</th><th scope=\"col\">Clone URL</th><th scope=\"col\">Webhook secret</th><th scope=\"col\">Forge token</th><th scope=\"col\">Defined in</th></tr></thead><tbody>");
        for r in rows {
            let name = string(r, "name");
            let yes = |k: &str| {
                if r.get(k).and_then(Value::as_bool) == Some(true) {
                    "set"
                } else {
                    "—"
                }
            };
            let _ = write!(
                h,
                "<tr><td><a href=\"/admin/repositories/{}\">{}</a></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                Esc(&name),
                Esc(&name),
                Esc(&string(r, "forge")),
                Esc(&string(r, "clone_url")),
                yes("has_webhook_secret"),
                yes("has_forge_token"),
                if string(r, "managed_by") == "config" {
                    "configuration file"
                } else {
                    "API"
                }
            );
        }
        h.push_str("</tbody></table></div>");
    }
    h.push_str("<section class=\"card\" aria-labelledby=\"register-h\"><h2 id=\"register-h\">Register a repository</h2><form method=\"post\" action=\"/admin/repositories\" class=\"admin-form\" id=\"register\">");
    form_error(&mut h, s, "register");
    Field::new(
        "register",
        "name",
        "Name (owner/name as the forge knows it)",
    )
    .attrs("required autocomplete=\"off\" spellcheck=\"false\"")
    .render(&mut h, s);
    Field::new("register", "clone_url", "Clone URL")
        .attrs("required spellcheck=\"false\"")
        .render(&mut h, s);
    select(&mut h, s, "register", "forge", "Forge", FORGES, "gitea");
    Field::new("register", "forge_api", "Forge API URL")
        .hint("Where commit statuses go, e.g. http://gitea:3000/api/v1; empty: none are sent.")
        .attrs("spellcheck=\"false\"")
        .render(&mut h, s);
    Field::new("register", "webhook_secret", "Webhook secret")
        .kind("password")
        .attrs("autocomplete=\"new-password\"")
        .render(&mut h, s);
    Field::new("register", "forge_token", "Forge token")
        .kind("password")
        .attrs("autocomplete=\"new-password\"")
        .render(&mut h, s);
    Field::new("register", "poll_interval", "Poll interval")
        .hint("e.g. 30s, for forges without webhooks; empty: no polling.")
        .render(&mut h, s);
    h.push_str("<button type=\"submit\" class=\"primary\">Register</button></form></section>");
    let status = s.map_or(StatusCode::OK, |s| failed(status_of(s)));
    page("Repositories", viewer, &h, status)
}

/// The status a failed form's page answers with.
fn status_of(s: &Sticky) -> StatusCode {
    s.status
}

/// A failed form: what was typed, the API's message and its status.
fn sticky_of(form: &'static str, values: Form, reply: &Reply) -> Sticky {
    Sticky {
        form,
        values,
        error: reply.error(),
        status: reply.status,
    }
}

/// The API body of a repository form; `None` fields are left out (kept on an update).
fn repository_body(f: &Form, name: Option<&str>) -> Value {
    let mut body = json!({"clone_url": f.get("clone_url"), "forge": f.get("forge")});
    let mut set = |k: &str, v: &str| {
        body[k] = Value::String(v.to_owned());
    };
    if let Some(n) = name {
        set("name", n);
    }
    if !f.get("forge_api").trim().is_empty() {
        set("forge_api", f.get("forge_api").trim());
    }
    if !f.get("poll_interval").trim().is_empty() {
        set("poll_interval", f.get("poll_interval").trim());
    }
    for secret in ["webhook_secret", "forge_token"] {
        if f.has(&format!("remove_{secret}")) {
            set(secret, "");
        } else if !f.get(secret).is_empty() {
            set(secret, f.get(secret));
        }
    }
    body
}

async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let f = Form::parse(&body);
    let name = f.get("name").trim().to_owned();
    let reply = call(
        &state,
        &viewer,
        Method::POST,
        "/api/v1/repositories",
        Some(repository_body(&f, Some(&name))),
    )
    .await;
    if reply.ok() {
        return done(&format!("/admin/repositories/{name}"), "registered");
    }
    let s = sticky_of("register", f, &reply);
    repositories_page(&state, &viewer, "", Some(&s)).await
}

/// Where a secret or variable lives.
enum Scope {
    Repo(String),
    Org(String),
}

impl Scope {
    fn api(&self) -> String {
        match self {
            Scope::Repo(r) => format!("/api/v1/repositories/{r}"),
            Scope::Org(o) => format!("/api/v1/organizations/{o}"),
        }
    }
    fn page(&self) -> String {
        match self {
            Scope::Repo(r) => format!("/admin/repositories/{r}"),
            Scope::Org(o) => format!("/admin/organizations/{o}"),
        }
    }
}

async fn repository(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((owner, name)): Path<(String, String)>,
    Query(n): Query<Notice>,
) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    repository_page(
        &state,
        &viewer,
        &format!("{owner}/{name}"),
        &notice(&n),
        None,
    )
    .await
}

async fn repository_page(
    state: &AppState,
    viewer: &Viewer,
    full: &str,
    notice: &str,
    s: Option<&Sticky>,
) -> Response {
    let repo = call(
        state,
        viewer,
        Method::GET,
        &format!("/api/v1/repositories/{full}"),
        None,
    )
    .await;
    if repo.status == StatusCode::NOT_FOUND {
        return error_page(
            StatusCode::NOT_FOUND,
            viewer,
            &format!("No repository {full}."),
        );
    }
    if !repo.ok() {
        return error_page(repo.status, viewer, &repo.error());
    }
    let r = &repo.body;
    let from_config = string(r, "managed_by") == "config";
    let mut h = String::new();
    breadcrumb(
        &mut h,
        &[("/admin/repositories", "Repositories"), ("", full)],
    );
    let _ = write!(h, "<h1>{}</h1>{notice}", Esc(full));
    h.push_str("<section class=\"card\" aria-labelledby=\"settings-h\"><h2 id=\"settings-h\">Settings</h2>");
    if from_config {
        h.push_str("<p class=\"muted\">Defined in the configuration file (<code>[[repository]]</code>): change it there. Secrets and variables below can still be added here.</p><dl class=\"facts\">");
        for (k, label) in [
            ("clone_url", "Clone URL"),
            ("forge", "Forge"),
            ("forge_api", "Forge API"),
        ] {
            let _ = write!(h, "<dt>{label}</dt><dd>{}</dd>", Esc(&string(r, k)));
        }
        h.push_str("</dl>");
    } else {
        let poll = r
            .get("poll_interval_ms")
            .and_then(Value::as_i64)
            .map(duration_text)
            .unwrap_or_default();
        let _ = write!(
            h,
            "<form method=\"post\" action=\"/admin/repositories/{}\" class=\"admin-form\" id=\"edit\">",
            Esc(full)
        );
        form_error(&mut h, s, "edit");
        Field::new("edit", "clone_url", "Clone URL")
            .value(&string(r, "clone_url"))
            .attrs("required spellcheck=\"false\"")
            .render(&mut h, s);
        select(
            &mut h,
            s,
            "edit",
            "forge",
            "Forge",
            FORGES,
            &string(r, "forge"),
        );
        Field::new("edit", "forge_api", "Forge API URL")
            .value(&string(r, "forge_api"))
            .hint("Empty: no commit statuses.")
            .render(&mut h, s);
        for (key, label, has) in [
            ("webhook_secret", "Webhook secret", "has_webhook_secret"),
            ("forge_token", "Forge token", "has_forge_token"),
        ] {
            let set = r.get(has).and_then(Value::as_bool) == Some(true);
            let hint = if set {
                "Set. Leave empty to keep it."
            } else {
                "Not set."
            };
            Field::new("edit", key, label)
                .kind("password")
                .hint(hint)
                .attrs("autocomplete=\"new-password\"")
                .render(&mut h, s);
            if set {
                let _ = write!(
                    h,
                    "<div class=\"check\"><input type=\"checkbox\" id=\"edit-remove_{key}\" name=\"remove_{key}\" value=\"1\"><label for=\"edit-remove_{key}\">Remove the {}</label></div>",
                    label.to_lowercase()
                );
            }
        }
        Field::new("edit", "poll_interval", "Poll interval")
            .value(&poll)
            .hint("e.g. 30s; empty: no polling.")
            .render(&mut h, s);
        h.push_str("<button type=\"submit\" class=\"primary\">Save</button></form>");
        h.push_str("<div class=\"actions\">");
        button(
            &mut h,
            &format!("/admin/repositories/{full}/delete"),
            "Delete repository…",
            "danger",
            &[],
        );
        h.push_str("</div>");
    }
    h.push_str("</section>");
    settings_sections(state, viewer, &Scope::Repo(full.to_owned()), &mut h, s).await;
    let status = s.map_or(StatusCode::OK, |s| failed(status_of(s)));
    page(full, viewer, &h, status)
}

/// The secrets and variables of a scope: tables and forms.
async fn settings_sections(
    state: &AppState,
    viewer: &Viewer,
    scope: &Scope,
    h: &mut String,
    s: Option<&Sticky>,
) {
    let base = scope.api();
    let secrets = call(state, viewer, Method::GET, &format!("{base}/secrets"), None).await;
    let vars = call(
        state,
        viewer,
        Method::GET,
        &format!("{base}/variables"),
        None,
    )
    .await;
    let page = scope.page();
    setting_section(h, s, &page, &secrets, &SECRETS);
    setting_section(h, s, &page, &vars, &VARIABLES);
}

/// What differs between the secrets and the variables section of a scope.
struct SettingSection {
    /// `secret` or `variable`: the form's id; its plural names the API and page paths.
    kind: &'static str,
    title: &'static str,
    /// HTML after the heading.
    intro: &'static str,
    /// The heading of the second column.
    column: &'static str,
    form_title: &'static str,
    name_hint: &'static str,
    value_kind: &'static str,
    /// Writes the second column's cell (open `<td>`, not closed) of one row.
    cell: fn(&mut String, &Value),
}

const SECRETS: SettingSection = SettingSection {
    kind: "secret",
    title: "Secrets",
    intro: "<p class=\"muted\">Write-only: values are stored encrypted and never shown.</p>",
    column: "Updated",
    form_title: "Add or replace a secret",
    name_hint: "Letters, digits and _; not starting with a digit or GITHUB_.",
    value_kind: "password",
    cell: |h, x| match x.get("updated_at").and_then(Value::as_i64) {
        Some(t) => h.push_str(&time(t)),
        None => h.push_str("<small>configuration file</small>"),
    },
};

const VARIABLES: SettingSection = SettingSection {
    kind: "variable",
    title: "Variables",
    intro: "",
    column: "Value",
    form_title: "Add or change a variable",
    name_hint: "",
    value_kind: "text",
    cell: |h, x| {
        let _ = write!(h, "<code>{}</code>", Esc(&string(x, "value")));
        if string(x, "source") == "config" {
            h.push_str(" <small>configuration file</small>");
        }
    },
};

/// One settings section: the table of `reply`'s items (API-set ones deletable) and the form
/// that adds one.
fn setting_section(
    h: &mut String,
    s: Option<&Sticky>,
    page: &str,
    reply: &Reply,
    k: &SettingSection,
) {
    let kind = k.kind;
    let _ = write!(
        h,
        "<section class=\"card\" aria-labelledby=\"{kind}s-h\"><h2 id=\"{kind}s-h\">{}</h2>{}",
        k.title, k.intro
    );
    if !reply.ok() {
        let _ = write!(h, "<p class=\"error\">{}</p>", Esc(&reply.error()));
    } else if list(&reply.body).is_empty() {
        let _ = write!(h, "<p class=\"empty\">No {kind}.</p>");
    } else {
        let _ = write!(
            h,
            "<table class=\"settings\"><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">{}</th><th scope=\"col\"><span class=\"sr\">Actions</span></th></tr></thead><tbody>",
            k.column
        );
        for x in list(&reply.body) {
            let name = string(x, "name");
            let _ = write!(h, "<tr><td><code>{}</code></td><td>", Esc(&name));
            (k.cell)(h, x);
            h.push_str("</td><td>");
            if string(x, "source") == "api" {
                row_button(
                    h,
                    &format!("{page}/{kind}s/{}/delete", enc(&name)),
                    "Delete",
                    &name,
                );
            }
            h.push_str("</td></tr>");
        }
        h.push_str("</tbody></table>");
    }
    let _ = write!(
        h,
        "<form method=\"post\" action=\"{}/{kind}s\" class=\"admin-form\" id=\"{kind}\"><h3>{}</h3>",
        Esc(page),
        k.form_title
    );
    form_error(h, s, kind);
    Field::new(kind, "name", "Name")
        .hint(k.name_hint)
        .attrs("required autocomplete=\"off\" spellcheck=\"false\"")
        .render(h, s);
    Field::new(kind, "value", "Value")
        .kind(k.value_kind)
        .attrs("autocomplete=\"off\"")
        .render(h, s);
    let _ = write!(
        h,
        "<button type=\"submit\" class=\"primary\">Save {kind}</button></form></section>"
    );
}

async fn edit_repository(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let full = format!("{owner}/{name}");
    let f = Form::parse(&body);
    let reply = call(
        &state,
        &viewer,
        Method::PUT,
        &format!("/api/v1/repositories/{full}"),
        Some(repository_body(&f, None)),
    )
    .await;
    if reply.ok() {
        return done(&format!("/admin/repositories/{full}"), "saved");
    }
    let s = sticky_of("edit", f, &reply);
    repository_page(&state, &viewer, &full, "", Some(&s)).await
}

async fn delete_repository(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let full = format!("{owner}/{name}");
    if Form::parse(&body).get("confirm") != "yes" {
        return confirm(
            &viewer,
            &format!("/admin/repositories/{full}/delete"),
            &full,
            &format!("/admin/repositories/{full}"),
        );
    }
    let reply = call(
        &state,
        &viewer,
        Method::DELETE,
        &format!("/api/v1/repositories/{full}"),
        None,
    )
    .await;
    if reply.ok() {
        return done("/admin/repositories", "deleted");
    }
    error_page(failed(reply.status), &viewer, &reply.error())
}

/// `secrets` or `variables` from the path (anything else: 404).
fn kind_of(kind: &str) -> Option<(&'static str, &'static str)> {
    match kind {
        "secrets" => Some(("secrets", "secret")),
        "variables" => Some(("variables", "variable")),
        _ => None,
    }
}

async fn put_setting(
    state: &AppState,
    viewer: &Viewer,
    scope: Scope,
    kind: &str,
    body: &Bytes,
) -> Response {
    let Some((kind, form)) = kind_of(kind) else {
        return error_page(StatusCode::NOT_FOUND, viewer, "No such page.");
    };
    let f = Form::parse(body);
    let name = f.get("name").trim().to_owned();
    let reply = if name.is_empty() {
        Reply {
            status: StatusCode::BAD_REQUEST,
            body: json!({"error": "request field `name`: required"}),
        }
    } else {
        let path = format!("{}/{kind}/{}", scope.api(), enc(&name));
        call(
            state,
            viewer,
            Method::PUT,
            &path,
            Some(json!({"value": f.get("value")})),
        )
        .await
    };
    if reply.ok() {
        return done(&scope.page(), form);
    }
    let mut reply = reply;
    // The settings API names the bad part without "field": point at the name.
    if !reply.error().contains("field `") && reply.error().contains("is not a valid name") {
        reply.body = json!({"error": format!("request field `name`: {}", reply.error())});
    }
    let s = sticky_of(
        if form == "secret" {
            "secret"
        } else {
            "variable"
        },
        f,
        &reply,
    );
    match scope {
        Scope::Repo(full) => repository_page(state, viewer, &full, "", Some(&s)).await,
        Scope::Org(org) => organization_page(state, viewer, &org, "", Some(&s)).await,
    }
}

async fn delete_setting(
    state: &AppState,
    viewer: &Viewer,
    scope: Scope,
    kind: &str,
    name: &str,
    body: &Bytes,
) -> Response {
    let Some((kind, _)) = kind_of(kind) else {
        return error_page(StatusCode::NOT_FOUND, viewer, "No such page.");
    };
    let action = format!("{}/{kind}/{}/delete", scope.page(), enc(name));
    if Form::parse(body).get("confirm") != "yes" {
        return confirm(viewer, &action, name, &scope.page());
    }
    let reply = call(
        state,
        viewer,
        Method::DELETE,
        &format!("{}/{kind}/{}", scope.api(), enc(name)),
        None,
    )
    .await;
    if reply.ok() {
        return done(&scope.page(), "deleted");
    }
    error_page(failed(reply.status), viewer, &reply.error())
}

async fn put_repo_setting(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((owner, name, kind)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    match admin(&state, &headers, &uri) {
        Ok(viewer) => {
            put_setting(
                &state,
                &viewer,
                Scope::Repo(format!("{owner}/{name}")),
                &kind,
                &body,
            )
            .await
        }
        Err(r) => r,
    }
}

async fn delete_repo_setting(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((owner, name, kind, setting)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Response {
    match admin(&state, &headers, &uri) {
        Ok(viewer) => {
            delete_setting(
                &state,
                &viewer,
                Scope::Repo(format!("{owner}/{name}")),
                &kind,
                &setting,
                &body,
            )
            .await
        }
        Err(r) => r,
    }
}

// --- organisations -------------------------------------------------------------------------------

#[derive(Deserialize)]
struct OrgQuery {
    name: Option<String>,
}

async fn organizations(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<OrgQuery>,
) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let typed = q.name.as_deref().map(str::trim).unwrap_or("");
    let valid = !typed.is_empty()
        && typed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        return Redirect::to(&format!("/admin/organizations/{typed}")).into_response();
    }
    let repos = call(&state, &viewer, Method::GET, "/api/v1/repositories", None).await;
    let mut owners: Vec<String> = list(&repos.body)
        .iter()
        .filter_map(|r| string(r, "name").split_once('/').map(|(o, _)| o.to_owned()))
        .collect();
    owners.extend(state.config().organizations.iter().map(|o| o.name.clone()));
    owners.sort();
    owners.dedup();
    let mut h = String::new();
    breadcrumb(&mut h, &[("", "Organisations")]);
    h.push_str("<h1>Organisations</h1><p class=\"muted\">An organisation's secrets and variables reach every repository of that owner; a repository's own of the same name win.</p>");
    if owners.is_empty() {
        h.push_str("<p class=\"empty\">No owner yet.</p>");
    } else {
        h.push_str("<ul>");
        for o in &owners {
            let _ = write!(
                h,
                "<li><a href=\"/admin/organizations/{0}\">{0}</a></li>",
                Esc(o)
            );
        }
        h.push_str("</ul>");
    }
    h.push_str(
        "<form method=\"get\" action=\"/admin/organizations\" class=\"admin-form\" id=\"org\">",
    );
    let status = if q.name.is_some() {
        let s = Sticky {
            form: "org",
            values: Form(vec![("name".into(), typed.to_owned())]),
            error: format!(
                "request field `name`: `{typed}` is not an owner name (letters, digits, `.`, `_`, `-`)"
            ),
            status: StatusCode::BAD_REQUEST,
        };
        form_error(&mut h, Some(&s), "org");
        Field::new("org", "name", "Owner")
            .attrs("required")
            .render(&mut h, Some(&s));
        StatusCode::BAD_REQUEST
    } else {
        Field::new("org", "name", "Owner")
            .attrs("required")
            .render(&mut h, None);
        StatusCode::OK
    };
    h.push_str("<button type=\"submit\">Open</button></form>");
    page("Organisations", &viewer, &h, status)
}

async fn organization(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(org): Path<String>,
    Query(n): Query<Notice>,
) -> Response {
    match admin(&state, &headers, &uri) {
        Ok(viewer) => organization_page(&state, &viewer, &org, &notice(&n), None).await,
        Err(r) => r,
    }
}

async fn organization_page(
    state: &AppState,
    viewer: &Viewer,
    org: &str,
    notice: &str,
    s: Option<&Sticky>,
) -> Response {
    let mut h = String::new();
    breadcrumb(
        &mut h,
        &[("/admin/organizations", "Organisations"), ("", org)],
    );
    let _ = write!(h, "<h1>{}</h1>{notice}", Esc(org));
    settings_sections(state, viewer, &Scope::Org(org.to_owned()), &mut h, s).await;
    let status = s.map_or(StatusCode::OK, |s| failed(status_of(s)));
    page(org, viewer, &h, status)
}

async fn put_org_setting(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((org, kind)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    match admin(&state, &headers, &uri) {
        Ok(viewer) => put_setting(&state, &viewer, Scope::Org(org), &kind, &body).await,
        Err(r) => r,
    }
}

async fn delete_org_setting(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((org, kind, setting)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    match admin(&state, &headers, &uri) {
        Ok(viewer) => {
            delete_setting(&state, &viewer, Scope::Org(org), &kind, &setting, &body).await
        }
        Err(r) => r,
    }
}

// --- users ---------------------------------------------------------------------------------------

const ROLES: &[&str] = &["viewer", "maintainer", "admin"];

fn groups_of(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

fn groups_text(u: &Value) -> String {
    list(&u["groups"])
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A token just created: shown this once.
fn new_token_box(h: &mut String, t: &Value) {
    let _ = write!(
        h,
        "<section class=\"new-token\" role=\"status\" aria-labelledby=\"new-token-h\"><h2 id=\"new-token-h\">New token “{}”</h2>\
         <p>Copy it now: it is not shown again.</p><p><label for=\"new-token-value\">Token</label> \
         <input id=\"new-token-value\" class=\"token\" readonly value=\"{}\" size=\"70\" spellcheck=\"false\"></p></section>",
        Esc(&string(t, "name")),
        Esc(&string(t, "token"))
    );
}

async fn users(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(n): Query<Notice>,
) -> Response {
    match admin(&state, &headers, &uri) {
        Ok(viewer) => users_page(&state, &viewer, &notice(&n), None, None).await,
        Err(r) => r,
    }
}

async fn users_page(
    state: &AppState,
    viewer: &Viewer,
    notice: &str,
    s: Option<&Sticky>,
    created: Option<&Value>,
) -> Response {
    let all = call(state, viewer, Method::GET, "/api/v1/users", None).await;
    let mut h = String::new();
    breadcrumb(&mut h, &[("", "Users")]);
    let _ = write!(h, "<h1>Users</h1>{notice}");
    if let Some(c) = created {
        let _ = write!(
            h,
            "<p class=\"notice\" role=\"status\">User {} created.</p>",
            Esc(&string(&c["user"], "name"))
        );
        if c["token"].is_object() {
            new_token_box(&mut h, &c["token"]);
        }
    }
    let rows = list(&all.body);
    if !all.ok() {
        let _ = write!(h, "<p class=\"error\">{}</p>", Esc(&all.error()));
    } else if rows.is_empty() {
        h.push_str("<p class=\"empty\">No user yet: the server is open (anyone may do anything). Create an admin first.</p>");
    } else {
        h.push_str("<div class=\"scroll\"><table><thead><tr><th scope=\"col\">User</th><th scope=\"col\">Role</th><th scope=\"col\">Groups</th><th scope=\"col\">Sign-in</th><th scope=\"col\">Defined in</th></tr></thead><tbody>");
        for u in rows {
            let name = string(u, "name");
            let disabled = u.get("disabled").and_then(Value::as_bool) == Some(true);
            let _ = write!(
                h,
                "<tr{}><td><a href=\"/admin/users/{}\">{}</a>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if disabled { " class=\"disabled\"" } else { "" },
                enc(&name),
                Esc(&name),
                if disabled {
                    " <span class=\"badge\">disabled</span>"
                } else {
                    ""
                },
                Esc(&string(u, "role")),
                Esc(&groups_text(u)),
                if u.get("has_password").and_then(Value::as_bool) == Some(true) {
                    "password"
                } else {
                    "token only"
                },
                if string(u, "source") == "config" {
                    "configuration file"
                } else {
                    "API"
                }
            );
        }
        h.push_str("</tbody></table></div>");
    }
    h.push_str("<section class=\"card\" aria-labelledby=\"create-h\"><h2 id=\"create-h\">Create a user</h2><form method=\"post\" action=\"/admin/users\" class=\"admin-form\" id=\"create\">");
    form_error(&mut h, s, "create");
    Field::new("create", "name", "Name")
        .attrs("required autocomplete=\"off\" spellcheck=\"false\"")
        .render(&mut h, s);
    select(
        &mut h,
        s,
        "create",
        "role",
        "Role",
        ROLES,
        if rows.is_empty() { "admin" } else { "viewer" },
    );
    Field::new("create", "groups", "Groups")
        .hint("Comma-separated; environments name groups as reviewers.")
        .render(&mut h, s);
    Field::new("create", "password", "Password")
        .kind("password")
        .hint("At least 8 characters. Leave empty for a token-only user (for the CLI or a bot).")
        .attrs("autocomplete=\"new-password\"")
        .render(&mut h, s);
    Field::new("create", "token", "API token name")
        .hint("Optional: also create a token of this name (shown once).")
        .render(&mut h, s);
    h.push_str("<button type=\"submit\" class=\"primary\">Create user</button></form></section>");
    let status = match (s, created) {
        (Some(s), _) => failed(status_of(s)),
        (None, Some(_)) => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    page("Users", viewer, &h, status)
}

async fn create_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let f = Form::parse(&body);
    let mut req = json!({"name": f.get("name").trim(), "role": f.get("role"), "groups": groups_of(f.get("groups"))});
    if !f.get("password").is_empty() {
        req["password"] = Value::String(f.get("password").to_owned());
    }
    if !f.get("token").trim().is_empty() {
        req["token"] = Value::String(f.get("token").trim().to_owned());
    }
    let reply = call(&state, &viewer, Method::POST, "/api/v1/users", Some(req)).await;
    if reply.ok() {
        return match super::auth::viewer(&state, &headers) {
            Some(viewer) => users_page(&state, &viewer, "", None, Some(&reply.body)).await,
            // The first user closed an open server: sign in as them from now on.
            None => first_user_page(&reply.body),
        };
    }
    let s = sticky_of("create", f, &reply);
    users_page(&state, &viewer, "", Some(&s), None).await
}

/// The answer to creating the first user of an open server (which is no longer open).
fn first_user_page(created: &Value) -> Response {
    let name = string(&created["user"], "name");
    let mut h = format!(
        "<h1>User {0} created</h1><p class=\"notice\" role=\"status\">The server has users now, so it is no longer open: sign in as {0}.</p>",
        Esc(&name)
    );
    if created["token"].is_object() {
        new_token_box(&mut h, &created["token"]);
    }
    let _ = write!(
        h,
        "<p><a class=\"button\" href=\"/login?next=/admin\">Sign in</a></p>"
    );
    let anon = Viewer {
        name: String::new(),
        role: String::new(),
        token: None,
        open: false,
    };
    page("User created", &anon, &h, StatusCode::CREATED)
}

async fn user(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    Query(n): Query<Notice>,
) -> Response {
    match admin(&state, &headers, &uri) {
        Ok(viewer) => user_page(&state, &viewer, &name, &notice(&n), None, None).await,
        Err(r) => r,
    }
}

async fn user_page(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    notice: &str,
    s: Option<&Sticky>,
    new_token: Option<&Value>,
) -> Response {
    let u = call(
        state,
        viewer,
        Method::GET,
        &format!("/api/v1/users/{}", enc(name)),
        None,
    )
    .await;
    if u.status == StatusCode::NOT_FOUND {
        return error_page(StatusCode::NOT_FOUND, viewer, &format!("No user {name}."));
    }
    if !u.ok() {
        return error_page(u.status, viewer, &u.error());
    }
    let u = &u.body;
    let base = format!("/admin/users/{}", enc(name));
    let mut h = String::new();
    breadcrumb(&mut h, &[("/admin/users", "Users"), ("", name)]);
    let disabled = u.get("disabled").and_then(Value::as_bool) == Some(true);
    let _ = write!(
        h,
        "<h1>{}{}</h1>{notice}",
        Esc(name),
        if disabled {
            " <span class=\"badge\">disabled</span>"
        } else {
            ""
        }
    );
    if let Some(t) = new_token {
        new_token_box(&mut h, t);
    }
    if string(u, "source") == "config" {
        let _ = write!(
            h,
            "<p class=\"muted\">Defined in the configuration file (<code>[[user]]</code>): change it there.</p><dl class=\"facts\"><dt>Role</dt><dd>{}</dd><dt>Groups</dt><dd>{}</dd></dl>",
            Esc(&string(u, "role")),
            Esc(&groups_text(u))
        );
        return page(
            name,
            viewer,
            &h,
            s.map_or(StatusCode::OK, |s| failed(status_of(s))),
        );
    }
    let _ = write!(
        h,
        "<section class=\"card\" aria-labelledby=\"role-h\"><h2 id=\"role-h\">Role and groups</h2><form method=\"post\" action=\"{base}\" class=\"admin-form\" id=\"role\">"
    );
    form_error(&mut h, s, "role");
    select(&mut h, s, "role", "role", "Role", ROLES, &string(u, "role"));
    Field::new("role", "groups", "Groups")
        .value(&groups_text(u))
        .hint("Comma-separated.")
        .render(&mut h, s);
    h.push_str("<button type=\"submit\" class=\"primary\">Save</button></form></section>");

    let _ = write!(
        h,
        "<section class=\"card\" aria-labelledby=\"password-h\"><h2 id=\"password-h\">Reset the password</h2><form method=\"post\" action=\"{base}/password\" class=\"admin-form\" id=\"password\">"
    );
    form_error(&mut h, s, "password");
    Field::new("password", "password", "New password")
        .kind("password")
        .hint("At least 8 characters.")
        .attrs("required autocomplete=\"new-password\"")
        .render(&mut h, s);
    h.push_str("<button type=\"submit\">Reset password</button></form></section>");

    h.push_str(
        "<section class=\"card\" aria-labelledby=\"tokens-h\"><h2 id=\"tokens-h\">API tokens</h2>",
    );
    tokens_table(
        state,
        viewer,
        &format!("/api/v1/users/{}/tokens", enc(name)),
        &format!("{base}/tokens"),
        &mut h,
    )
    .await;
    let _ = write!(
        h,
        "<form method=\"post\" action=\"{base}/tokens\" class=\"admin-form\" id=\"token\">"
    );
    form_error(&mut h, s, "token");
    Field::new("token", "name", "Token name")
        .attrs("required autocomplete=\"off\"")
        .render(&mut h, s);
    h.push_str("<button type=\"submit\">Create token</button></form></section>");

    let _ = write!(
        h,
        "<section class=\"card\" aria-labelledby=\"danger-h\"><h2 id=\"danger-h\">Access</h2>"
    );
    form_error(&mut h, s, "access");
    h.push_str("<div class=\"actions\">");
    if disabled {
        button(
            &mut h,
            &format!("{base}/disabled"),
            "Enable user",
            "",
            &[("disabled", "false")],
        );
    } else {
        button(
            &mut h,
            &format!("{base}/disabled"),
            "Disable user",
            "danger",
            &[("disabled", "true")],
        );
    }
    button(
        &mut h,
        &format!("{base}/delete"),
        "Delete user…",
        "danger",
        &[],
    );
    h.push_str("</div></section>");
    let status = match (s, new_token) {
        (Some(s), _) => failed(status_of(s)),
        (None, Some(_)) => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    page(name, viewer, &h, status)
}

/// The tokens listed by `api`, each with a revoke button posting under `actions`.
async fn tokens_table(state: &AppState, viewer: &Viewer, api: &str, actions: &str, h: &mut String) {
    let tokens = call(state, viewer, Method::GET, api, None).await;
    if !tokens.ok() {
        let _ = write!(h, "<p class=\"error\">{}</p>", Esc(&tokens.error()));
        return;
    }
    let rows = list(&tokens.body);
    if rows.is_empty() {
        h.push_str("<p class=\"empty\">No token.</p>");
        return;
    }
    h.push_str("<table class=\"tokens\"><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Created</th><th scope=\"col\">Last used</th><th scope=\"col\"><span class=\"sr\">Actions</span></th></tr></thead><tbody>");
    for t in rows {
        let name = string(t, "name");
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>",
            Esc(&name),
            time(t.get("created_at").and_then(Value::as_i64).unwrap_or(0))
        );
        match t.get("last_used_at").and_then(Value::as_i64) {
            Some(at) => h.push_str(&time(at)),
            None => h.push_str("<small>never</small>"),
        }
        h.push_str("</td><td>");
        let id = t.get("id").and_then(Value::as_i64).unwrap_or(0);
        row_button(h, &format!("{actions}/{id}/revoke"), "Revoke", &name);
        h.push_str("</td></tr>");
    }
    h.push_str("</tbody></table>");
}

async fn edit_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let f = Form::parse(&body);
    let req = json!({"role": f.get("role"), "groups": groups_of(f.get("groups"))});
    patch_user(&state, &viewer, &name, req, f, "role", "saved").await
}

/// Patches the user `name` with `patch`, sent by the form `form` (`values`): back to the
/// user's page saying `what` was done, or that page with the failed form.
async fn patch_user(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    patch: Value,
    values: Form,
    form: &'static str,
    what: &str,
) -> Response {
    let reply = call(
        state,
        viewer,
        Method::PATCH,
        &format!("/api/v1/users/{}", enc(name)),
        Some(patch),
    )
    .await;
    if reply.ok() {
        return done(&format!("/admin/users/{}", enc(name)), what);
    }
    let s = sticky_of(form, values, &reply);
    user_page(state, viewer, name, "", Some(&s), None).await
}

async fn reset_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let f = Form::parse(&body);
    let req = json!({"password": f.get("password")});
    patch_user(&state, &viewer, &name, req, f, "password", "password").await
}

async fn set_disabled(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let f = Form::parse(&body);
    let disabled = f.get("disabled") == "true";
    let what = if disabled { "disabled" } else { "enabled" };
    let req = json!({"disabled": disabled});
    patch_user(&state, &viewer, &name, req, f, "access", what).await
}

async fn delete_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let f = Form::parse(&body);
    if f.get("confirm") != "yes" {
        let base = format!("/admin/users/{}", enc(&name));
        return confirm(&viewer, &format!("{base}/delete"), &name, &base);
    }
    let reply = call(
        &state,
        &viewer,
        Method::DELETE,
        &format!("/api/v1/users/{}", enc(&name)),
        None,
    )
    .await;
    if reply.ok() {
        return done("/admin/users", "deleted");
    }
    let s = sticky_of("access", f, &reply);
    user_page(&state, &viewer, &name, "", Some(&s), None).await
}

async fn create_user_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let path = format!("/api/v1/users/{}/tokens", enc(&name));
    create_token(&state, &viewer, &path, &body, async |s, new| {
        user_page(&state, &viewer, &name, "", s, new).await
    })
    .await
}

async fn revoke_user_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((name, id)): Path<(String, i64)>,
) -> Response {
    let viewer = match admin(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    revoke_token(
        &state,
        &viewer,
        &format!("/api/v1/users/{}/tokens/{id}", enc(&name)),
        &format!("/admin/users/{}", enc(&name)),
    )
    .await
}

/// Creates a token through the API's `path` from the posted form; `page` shows the outcome
/// (the new token, or the form that failed).
async fn create_token(
    state: &AppState,
    viewer: &Viewer,
    path: &str,
    body: &Bytes,
    page: impl AsyncFnOnce(Option<&Sticky>, Option<&Value>) -> Response,
) -> Response {
    let f = Form::parse(body);
    let reply = call(
        state,
        viewer,
        Method::POST,
        path,
        Some(json!({"name": f.get("name")})),
    )
    .await;
    if reply.ok() {
        return page(None, Some(&reply.body)).await;
    }
    let s = sticky_of("token", f, &reply);
    page(Some(&s), None).await
}

/// Revokes the token at the API's `path`, then back to `back`.
async fn revoke_token(state: &AppState, viewer: &Viewer, path: &str, back: &str) -> Response {
    let reply = call(state, viewer, Method::DELETE, path, None).await;
    if reply.ok() {
        return done(back, "revoked");
    }
    error_page(failed(reply.status), viewer, &reply.error())
}

// --- my account ----------------------------------------------------------------------------------

async fn account(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(n): Query<Notice>,
) -> Response {
    match signed_in(&state, &headers, &uri) {
        Ok(viewer) => account_page(&state, &viewer, &notice(&n), None, None).await,
        Err(r) => r,
    }
}

async fn account_page(
    state: &AppState,
    viewer: &Viewer,
    notice: &str,
    s: Option<&Sticky>,
    new_token: Option<&Value>,
) -> Response {
    let me = call(state, viewer, Method::GET, "/api/v1/user", None).await;
    let mut h = String::new();
    let _ = write!(h, "<h1>My account</h1>{notice}");
    if let Some(t) = new_token {
        new_token_box(&mut h, t);
    }
    let source = string(&me.body, "source");
    let _ = write!(
        h,
        "<dl class=\"facts\"><dt>User</dt><dd>{}</dd><dt>Role</dt><dd>{}</dd><dt>Groups</dt><dd>{}</dd></dl>",
        Esc(&string(&me.body, "name")),
        Esc(&string(&me.body, "role")),
        Esc(&groups_text(&me.body))
    );
    match source.as_str() {
        "open" => {
            h.push_str("<p class=\"muted\">The server has no users, so it is open. An admin creates the first user under <a href=\"/admin/users\">Users</a>.</p>");
            page("My account", viewer, &h, StatusCode::OK)
        }
        "config" => {
            h.push_str("<p class=\"muted\">You are defined in the configuration file (<code>[[user]]</code>): your password hash and token are set there.</p>");
            page("My account", viewer, &h, StatusCode::OK)
        }
        _ => {
            let has_password = me.body.get("has_password").and_then(Value::as_bool) == Some(true);
            h.push_str("<section class=\"card\" aria-labelledby=\"password-h\"><h2 id=\"password-h\">Change my password</h2><form method=\"post\" action=\"/account/password\" class=\"admin-form\" id=\"password\">");
            form_error(&mut h, s, "password");
            if has_password {
                Field::new("password", "current_password", "Current password")
                    .kind("password")
                    .attrs("required autocomplete=\"current-password\"")
                    .render(&mut h, s);
            }
            Field::new("password", "password", "New password")
                .kind("password")
                .hint("At least 8 characters.")
                .attrs("required autocomplete=\"new-password\"")
                .render(&mut h, s);
            h.push_str("<button type=\"submit\" class=\"primary\">Change password</button></form></section>");
            h.push_str("<section class=\"card\" aria-labelledby=\"tokens-h\"><h2 id=\"tokens-h\">My API tokens</h2><p class=\"muted\">For the CLI (<code>SLIPWAY_TOKEN</code>) and scripts.</p>");
            tokens_table(
                state,
                viewer,
                "/api/v1/user/tokens",
                "/account/tokens",
                &mut h,
            )
            .await;
            h.push_str("<form method=\"post\" action=\"/account/tokens\" class=\"admin-form\" id=\"token\">");
            form_error(&mut h, s, "token");
            Field::new("token", "name", "Token name")
                .attrs("required autocomplete=\"off\"")
                .render(&mut h, s);
            h.push_str("<button type=\"submit\">Create token</button></form></section>");
            let status = match (s, new_token) {
                (Some(s), _) => failed(status_of(s)),
                (None, Some(_)) => StatusCode::CREATED,
                _ => StatusCode::OK,
            };
            page("My account", viewer, &h, status)
        }
    }
}

async fn change_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let viewer = match signed_in(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let f = Form::parse(&body);
    let mut req = json!({"password": f.get("password")});
    if f.has("current_password") {
        req["current_password"] = Value::String(f.get("current_password").to_owned());
    }
    let reply = call(
        &state,
        &viewer,
        Method::PUT,
        "/api/v1/user/password",
        Some(req),
    )
    .await;
    if reply.ok() {
        // The new password ended every session: this one goes on with a new cookie.
        let mut r = done("/account", "password");
        if let Some(cookie) = super::auth::session_cookie(&state, &viewer.name) {
            r.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        return r;
    }
    let s = sticky_of("password", f, &reply);
    account_page(&state, &viewer, "", Some(&s), None).await
}

async fn create_my_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let viewer = match signed_in(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    create_token(
        &state,
        &viewer,
        "/api/v1/user/tokens",
        &body,
        async |s, new| account_page(&state, &viewer, "", s, new).await,
    )
    .await
}

async fn revoke_my_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<i64>,
) -> Response {
    let viewer = match signed_in(&state, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r,
    };
    revoke_token(
        &state,
        &viewer,
        &format!("/api/v1/user/tokens/{id}"),
        "/account",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_an_error_names_is_found() {
        let s = |e: &str| Sticky {
            form: "f",
            values: Form(vec![]),
            error: e.to_owned(),
            status: StatusCode::BAD_REQUEST,
        };
        assert_eq!(
            s("request field `clone_url`: must not be empty").field(),
            Some("clone_url")
        );
        assert_eq!(
            s("request field `groups[2]`: `a b` is not a group name").field(),
            Some("groups")
        );
        assert_eq!(s("repository `a/b` already exists").field(), None);
    }

    #[test]
    fn a_failed_form_keeps_what_was_typed_but_not_passwords() {
        let values = Form::parse(b"name=team%2Fapp&clone_url=&webhook_secret=hunter2");
        let s = Sticky {
            form: "register",
            values,
            error: "request field `clone_url`: must not be empty".into(),
            status: StatusCode::BAD_REQUEST,
        };
        let mut h = String::new();
        Field::new("register", "name", "Name").render(&mut h, Some(&s));
        Field::new("register", "clone_url", "Clone URL").render(&mut h, Some(&s));
        Field::new("register", "webhook_secret", "Secret")
            .kind("password")
            .render(&mut h, Some(&s));
        assert!(h.contains("value=\"team/app\""), "{h}");
        assert!(h.contains("id=\"register-clone_url\" name=\"clone_url\" type=\"text\" value=\"\" aria-describedby=\"register-error\" aria-invalid=\"true\" autofocus"), "{h}");
        assert!(!h.contains("hunter2"), "{h}");
        // Another form on the page is not touched.
        let mut other = String::new();
        Field::new("secret", "name", "Name")
            .value("X")
            .render(&mut other, Some(&s));
        assert!(
            other.contains("value=\"X\"") && !other.contains("aria-invalid"),
            "{other}"
        );
    }

    #[test]
    fn durations_read_back_as_typed() {
        assert_eq!(duration_text(30_000), "30s");
        assert_eq!(duration_text(300_000), "5m");
        assert_eq!(duration_text(7_200_000), "2h");
        assert_eq!(duration_text(1500), "1500ms");
    }
}
