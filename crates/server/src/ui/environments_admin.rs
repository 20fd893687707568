//! Admin pages for environments: the list (the configuration file's marked read-only),
//! create and edit protection rules, secrets (write-only) and variables, delete.
//!
//! Plain HTML forms, no script needed. Each POST calls the environments API in process as
//! the signed-in user (`PUT/DELETE /api/v1/environments/...`), so the API checks the role,
//! validates and audits; a refused or invalid form is shown again with what was typed and
//! the API's message (which names the field). Cross-site posts are refused: the session
//! cookie is `SameSite=Strict`, and a request a browser marks `Sec-Fetch-Site: cross-site`
//! (or whose `Origin` is another host) gets a 403.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use tower::ServiceExt;

use super::{Esc, Viewer, enc, error_page, layout, require, time};
use crate::AppState;
use crate::environments::stored::{self, Defined};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/environments", get(list))
        .route("/admin/environments/new", get(new_page).post(new_post))
        .route("/admin/environments/edit", get(edit_page).post(edit_post))
}

/// The signed-in admin (`Err`: a redirect to sign in, or a 403 page), with the
/// environments reloaded (another replica may have changed them).
async fn admin(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<Viewer, Response> {
    let viewer = require(state, headers, uri)?;
    if !viewer.open && viewer.role != "admin" {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            &viewer,
            "only admins manage environments",
        ));
    }
    if let Err(e) = stored::reload(state).await {
        return Err(super::internal_page(&viewer, e));
    }
    Ok(viewer)
}

/// The admin of a form post from this site, or the page that refuses it.
async fn admin_post(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<Viewer, Response> {
    let viewer = admin(state, headers, uri).await?;
    if !same_site(headers) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            &viewer,
            "cross-site form refused",
        ));
    }
    Ok(viewer)
}

/// Whether a POST comes from this site (not a cross-site form).
pub(super) fn same_site(headers: &HeaderMap) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if get("sec-fetch-site").is_some_and(|s| s == "cross-site") {
        return false;
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) if origin != "null" => {
            origin.split("://").nth(1).is_some_and(|o| o == host)
        }
        _ => true,
    }
}

/// Calls the environments API in process as `viewer`: the status and the error message.
async fn call(
    state: &AppState,
    viewer: &Viewer,
    method: Method,
    uri: String,
    body: Option<serde_json::Value>,
) -> Result<(), (StatusCode, String)> {
    let Some(req) = super::admin::api_request(viewer, method, &uri, body) else {
        return Err((StatusCode::BAD_REQUEST, "bad request".into()));
    };
    let api = crate::environments::routes().with_state(state.clone());
    let resp = match api.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    Err((status, message))
}

fn api_path(name: &str, rest: &str, repository: Option<&str>) -> String {
    let mut p = format!("/api/v1/environments/{}{rest}", enc(name));
    if let Some(r) = repository.filter(|r| !r.is_empty()) {
        let _ = write!(p, "?repository={}", enc(r));
    }
    p
}

fn edit_link(name: &str, repository: Option<&str>) -> String {
    format!(
        "/admin/environments/edit?name={}&repository={}",
        enc(name),
        enc(repository.unwrap_or(""))
    )
}

fn ms_text(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if d.is_zero() {
        String::new()
    } else if d.subsec_millis() != 0 {
        format!("{}ms", d.as_millis())
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

// --- the list ---------------------------------------------------------------------------------

async fn list(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match admin(&state, &headers, &uri).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let all = stored::all(&state);
    let mut h = String::from(
        "<p><a href=\"/admin\">Admin</a> /</p><h1>Environments</h1>\
         <p><a class=\"button\" href=\"/admin/environments/new\">New environment</a></p>\
         <p class=\"muted\">Environments of the configuration file are read-only here (change the file); \
         those created here are stored in the database and apply at once.</p>",
    );
    if all.is_empty() {
        h.push_str("<p class=\"empty\">No environment defined.</p>");
    } else {
        h.push_str(
            "<table class=\"environments\"><thead><tr><th>Environment</th><th>Repository</th><th>Rules</th>\
             <th>Secrets</th><th>Variables</th><th>Source</th></tr></thead><tbody>",
        );
        for d in all.iter() {
            let c = &d.config;
            let name = if d.managed_by == "api" {
                format!(
                    "<a href=\"{}\">{}</a>",
                    Esc(&edit_link(&c.name, c.repository.as_deref())),
                    Esc(&c.name)
                )
            } else {
                Esc(&c.name).to_string()
            };
            let source = match (&d.updated_by, d.updated_at) {
                (Some(by), Some(at)) => format!("API · {} · {}", Esc(by), time(at)),
                _ => "<span class=\"badge s-skipped\">from config</span>".to_owned(),
            };
            let _ = write!(
                h,
                "<tr data-environment=\"{}\"><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{source}</td></tr>",
                Esc(&c.name),
                Esc(c.repository.as_deref().unwrap_or("every repository")),
                Esc(&rules(d)),
                Esc(&c.secrets.keys().cloned().collect::<Vec<_>>().join(", ")),
                Esc(&c.vars.keys().cloned().collect::<Vec<_>>().join(", ")),
            );
        }
        h.push_str("</tbody></table>");
    }
    layout("Environments · Admin", &viewer, "Admin", &h)
}

fn rules(d: &Defined) -> String {
    let c = &d.config;
    let mut parts = Vec::new();
    if c.reviewers.is_empty() {
        parts.push("no reviewers (continuous deployment)".to_owned());
    } else {
        parts.push(format!(
            "{} approval(s) from {}{}",
            c.required_approvals,
            c.reviewers.join(", "),
            if c.allow_self_approval {
                ", self-approval allowed"
            } else {
                ""
            }
        ));
    }
    if !c.wait_timer.is_zero() {
        parts.push(format!("wait {}", ms_text(c.wait_timer)));
    }
    if !c.branches.is_empty() {
        parts.push(format!("branches {}", c.branches.join(", ")));
    }
    if !c.tags.is_empty() {
        parts.push(format!("tags {}", c.tags.join(", ")));
    }
    parts.join("; ")
}

// --- the form -----------------------------------------------------------------------------------

/// What the rules form holds (as typed).
#[derive(Debug, Default, Clone)]
struct Fields {
    name: String,
    repository: String,
    reviewers: String,
    required_approvals: String,
    allow_self_approval: bool,
    wait_timer: String,
    timeout: String,
    branches: String,
    tags: String,
    url: String,
}

fn parse_form(body: &Bytes) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

impl Fields {
    fn from_form(f: &BTreeMap<String, String>) -> Fields {
        let get = |k: &str| f.get(k).cloned().unwrap_or_default();
        Fields {
            name: get("name").trim().to_owned(),
            repository: get("repository").trim().to_owned(),
            reviewers: get("reviewers"),
            required_approvals: get("required_approvals"),
            allow_self_approval: f.contains_key("allow_self_approval"),
            wait_timer: get("wait_timer"),
            timeout: get("timeout"),
            branches: get("branches"),
            tags: get("tags"),
            url: get("url"),
        }
    }

    fn from_defined(d: &Defined) -> Fields {
        let c = &d.config;
        Fields {
            name: c.name.clone(),
            repository: c.repository.clone().unwrap_or_default(),
            reviewers: c.reviewers.join(", "),
            required_approvals: c.required_approvals.to_string(),
            allow_self_approval: c.allow_self_approval,
            wait_timer: ms_text(c.wait_timer),
            timeout: if c.timeout == crate::environments::DEFAULT_TIMEOUT {
                String::new()
            } else {
                ms_text(c.timeout)
            },
            branches: c.branches.join(", "),
            tags: c.tags.join(", "),
            url: c.url.clone().unwrap_or_default(),
        }
    }

    /// The API's request body; `Err`: a field that is not even a number.
    fn spec(&self) -> Result<serde_json::Value, (StatusCode, String)> {
        let list = |s: &str| -> Vec<String> {
            s.split([',', '\n'])
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let required = match self.required_approvals.trim() {
            "" => None,
            n => Some(n.parse::<u32>().map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("request field `required_approvals`: `{n}` is not a number"),
                )
            })?),
        };
        let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        Ok(serde_json::json!({
            "reviewers": list(&self.reviewers),
            "required_approvals": required,
            "allow_self_approval": self.allow_self_approval,
            "wait_timer": opt(&self.wait_timer),
            "timeout": opt(&self.timeout),
            "branches": list(&self.branches),
            "tags": list(&self.tags),
            "url": opt(&self.url),
        }))
    }
}

/// The rules form; `new`: the name and repository can be chosen.
fn form(state: &AppState, f: &Fields, new: bool, error: Option<&str>) -> String {
    // The API's messages name the field: `request field `wait_timer`: ...`.
    let bad = error.and_then(|e| {
        e.strip_prefix("request field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    });
    let invalid = |name: &str| {
        if bad.as_deref() == Some(name) {
            " aria-invalid=\"true\" aria-describedby=\"form-error\""
        } else {
            ""
        }
    };
    let mut h = String::new();
    if let Some(e) = error {
        let _ = write!(
            h,
            "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>",
            Esc(e)
        );
    }
    let action = if new {
        "/admin/environments/new".to_owned()
    } else {
        edit_link(&f.name, Some(&f.repository))
    };
    let _ = write!(
        h,
        "<form class=\"admin-form\" method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"op\" value=\"save\">",
        Esc(&action)
    );
    if new {
        let _ = write!(
            h,
            "<div class=\"field\"><label for=\"env-name\">Name</label><input id=\"env-name\" name=\"name\" required pattern=\"[A-Za-z0-9._\\-]+\" value=\"{}\"{}>\
             <small>letters, digits, <code>-</code>, <code>_</code>, <code>.</code></small></div>\
             <div class=\"field\"><label for=\"env-repository\">Repository</label><select id=\"env-repository\" name=\"repository\"><option value=\"\">every repository</option>",
            Esc(&f.name),
            invalid("name")
        );
        let mut names: Vec<String> = state.repositories().keys().cloned().collect();
        names.sort();
        for r in names {
            let selected = if r == f.repository { " selected" } else { "" };
            let _ = write!(
                h,
                "<option value=\"{}\"{selected}>{}</option>",
                Esc(&r),
                Esc(&r)
            );
        }
        h.push_str("</select></div>");
    }
    let field = |h: &mut String, label: &str, name: &str, value: &str, hint: &str| {
        let _ = write!(
            h,
            "<div class=\"field\"><label for=\"env-{name}\">{label}</label><input id=\"env-{name}\" name=\"{name}\" value=\"{}\"{}><small>{hint}</small></div>",
            Esc(value),
            invalid(name)
        );
    };
    field(
        &mut h,
        "Required reviewers",
        "reviewers",
        &f.reviewers,
        "users or groups, comma-separated; none: continuous deployment",
    );
    field(
        &mut h,
        "Approvals needed",
        "required_approvals",
        &f.required_approvals,
        "default 1 with reviewers",
    );
    let _ = write!(
        h,
        "<label class=\"check\"><input type=\"checkbox\" name=\"allow_self_approval\"{}> The pusher may approve their own run</label>",
        if f.allow_self_approval {
            " checked"
        } else {
            ""
        }
    );
    field(
        &mut h,
        "Wait timer",
        "wait_timer",
        &f.wait_timer,
        "e.g. 30s, 5m: a deployment starts no sooner",
    );
    field(
        &mut h,
        "Timeout",
        "timeout",
        &f.timeout,
        "waiting longer is rejected; default 30 days",
    );
    field(
        &mut h,
        "Allowed branches",
        "branches",
        &f.branches,
        "patterns, comma-separated (e.g. main, release/*); none with no tags: any ref",
    );
    field(
        &mut h,
        "Allowed tags",
        "tags",
        &f.tags,
        "patterns, comma-separated (e.g. v*)",
    );
    field(
        &mut h,
        "URL",
        "url",
        &f.url,
        "where the environment is reached",
    );
    let _ = write!(
        h,
        "<button type=\"submit\" class=\"primary\">{}</button></form>",
        if new {
            "Create environment"
        } else {
            "Save rules"
        }
    );
    h
}

fn page(viewer: &Viewer, title: &str, body: &str, status: StatusCode) -> Response {
    let mut r = layout(title, viewer, "Admin", body);
    *r.status_mut() = status;
    r
}

async fn new_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match admin(&state, &headers, &uri).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let body = format!(
        "<p><a href=\"/admin\">Admin</a> / <a href=\"/admin/environments\">Environments</a> /</p><h1>New environment</h1>{}",
        form(&state, &Fields::default(), true, None)
    );
    page(&viewer, "New environment", &body, StatusCode::OK)
}

async fn new_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let viewer = match admin_post(&state, &headers, &uri).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let f = Fields::from_form(&parse_form(&body));
    let repository = Some(f.repository.as_str()).filter(|r| !r.is_empty());
    let exists = stored::all(&state)
        .iter()
        .any(|d| d.config.name == f.name && d.config.repository.as_deref() == repository);
    let result = if f.name.is_empty() {
        Err((
            StatusCode::BAD_REQUEST,
            "request field `name`: an environment needs a name".to_owned(),
        ))
    } else if exists {
        Err((
            StatusCode::CONFLICT,
            format!("environment `{}` exists already: edit it instead", f.name),
        ))
    } else {
        match f.spec() {
            Ok(spec) => {
                call(
                    &state,
                    &viewer,
                    Method::PUT,
                    api_path(&f.name, "", repository),
                    Some(spec),
                )
                .await
            }
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(()) => Redirect::to(&edit_link(&f.name, repository)).into_response(),
        Err((status, message)) => {
            let body = format!(
                "<p><a href=\"/admin\">Admin</a> / <a href=\"/admin/environments\">Environments</a> /</p><h1>New environment</h1>{}",
                form(&state, &f, true, Some(&message))
            );
            page(&viewer, "New environment", &body, status)
        }
    }
}

#[derive(Deserialize)]
struct Which {
    name: String,
    #[serde(default)]
    repository: String,
}

fn find(state: &AppState, q: &Which) -> Option<Defined> {
    let repository = Some(q.repository.as_str()).filter(|r| !r.is_empty());
    stored::all(state)
        .iter()
        .find(|d| d.config.name == q.name && d.config.repository.as_deref() == repository)
        .cloned()
}

/// The environment `q` names, or the 404 page.
fn existing(state: &AppState, viewer: &Viewer, q: &Which) -> Result<Defined, Response> {
    find(state, q).ok_or_else(|| {
        error_page(
            StatusCode::NOT_FOUND,
            viewer,
            &format!("no environment {}", q.name),
        )
    })
}

/// What the secret and variable forms held when one was refused.
#[derive(Default)]
struct Typed {
    secret_name: String,
    variable_name: String,
    variable_value: String,
}

fn edit_body(
    state: &AppState,
    d: &Defined,
    rules: &Fields,
    typed: &Typed,
    error: Option<&str>,
) -> String {
    let c = &d.config;
    let repository = c.repository.as_deref();
    let link = Esc(&edit_link(&c.name, repository)).to_string();
    let mut h = format!(
        "<p><a href=\"/admin\">Admin</a> / <a href=\"/admin/environments\">Environments</a> /</p>\
         <h1>{} <small>{}</small></h1>",
        Esc(&c.name),
        Esc(repository.unwrap_or("every repository"))
    );
    if d.managed_by == "config" {
        h.push_str("<p class=\"muted\">From the configuration file: read-only here.</p>");
        let _ = write!(h, "<p>{}</p>", Esc(&self::rules(d)));
        return h;
    }
    h.push_str(&form(state, rules, false, error));
    h.push_str("<h2>Secrets</h2><p class=\"muted\">Released only to jobs that passed the gate. Values are write-only.</p>");
    let secrets: Vec<_> = c.secrets.keys().map(|n| (n.as_str(), None)).collect();
    settings_table(&mut h, &link, "secret", &secrets);
    let _ = write!(
        h,
        "<form class=\"filters\" method=\"post\" action=\"{link}\"><input type=\"hidden\" name=\"op\" value=\"secret\">\
         <label>Name <input name=\"secret_name\" value=\"{}\" required></label>\
         <label>Value <input name=\"secret_value\" type=\"password\" autocomplete=\"off\"></label>\
         <button type=\"submit\">Save secret</button></form>",
        Esc(&typed.secret_name)
    );
    h.push_str("<h2>Variables</h2>");
    let vars: Vec<_> = c
        .vars
        .iter()
        .map(|(n, v)| (n.as_str(), Some(v.as_str())))
        .collect();
    settings_table(&mut h, &link, "variable", &vars);
    let _ = write!(
        h,
        "<form class=\"filters\" method=\"post\" action=\"{link}\"><input type=\"hidden\" name=\"op\" value=\"variable\">\
         <label>Name <input name=\"variable_name\" value=\"{}\" required></label>\
         <label>Value <input name=\"variable_value\" value=\"{}\"></label>\
         <button type=\"submit\">Save variable</button></form>",
        Esc(&typed.variable_name),
        Esc(&typed.variable_value)
    );
    let _ = write!(
        h,
        "<h2>Delete</h2><form method=\"post\" action=\"{link}\"><input type=\"hidden\" name=\"op\" value=\"delete\">\
         <button type=\"submit\" class=\"danger\">Delete environment {}</button> <small>with its secrets and variables</small></form>",
        Esc(&c.name)
    );
    h
}

/// The table of an environment's secrets or variables (`kind`), each with its delete button;
/// a variable shows its value.
fn settings_table(h: &mut String, link: &str, kind: &str, rows: &[(&str, Option<&str>)]) {
    if rows.is_empty() {
        let _ = write!(h, "<p class=\"empty\">No {kind}.</p>");
        return;
    }
    h.push_str("<table class=\"settings\"><tbody>");
    for (name, value) in rows {
        let _ = write!(h, "<tr><td><code>{}</code></td>", Esc(name));
        if let Some(value) = value {
            let _ = write!(h, "<td><code>{}</code></td>", Esc(value));
        }
        let _ = write!(
            h,
            "<td><form method=\"post\" action=\"{link}\">\
             <input type=\"hidden\" name=\"op\" value=\"{kind}-delete\"><input type=\"hidden\" name=\"{kind}_name\" value=\"{}\">\
             <button type=\"submit\" class=\"danger\">Delete</button></form></td></tr>",
            Esc(name)
        );
    }
    h.push_str("</tbody></table>");
}

async fn edit_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<Which>,
) -> Response {
    let viewer = match admin(&state, &headers, &uri).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let d = match existing(&state, &viewer, &q) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let body = edit_body(
        &state,
        &d,
        &Fields::from_defined(&d),
        &Typed::default(),
        None,
    );
    page(&viewer, &d.config.name, &body, StatusCode::OK)
}

async fn edit_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<Which>,
    body: Bytes,
) -> Response {
    let viewer = match admin_post(&state, &headers, &uri).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let d = match existing(&state, &viewer, &q) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let form_data = parse_form(&body);
    let get = |k: &str| form_data.get(k).cloned().unwrap_or_default();
    let repository = d.config.repository.clone();
    let repository = repository.as_deref();
    let name = d.config.name.clone();
    let mut rules = Fields::from_defined(&d);
    let mut typed = Typed::default();
    let result = match get("op").as_str() {
        "save" => {
            let mut f = Fields::from_form(&form_data);
            f.name = name.clone();
            f.repository = repository.unwrap_or("").to_owned();
            rules = f.clone();
            match f.spec() {
                Ok(spec) => {
                    call(
                        &state,
                        &viewer,
                        Method::PUT,
                        api_path(&name, "", repository),
                        Some(spec),
                    )
                    .await
                }
                Err(e) => Err(e),
            }
        }
        "delete" => {
            match call(
                &state,
                &viewer,
                Method::DELETE,
                api_path(&name, "", repository),
                None,
            )
            .await
            {
                Ok(()) => return Redirect::to("/admin/environments").into_response(),
                Err(e) => Err(e),
            }
        }
        "secret" => {
            typed.secret_name = get("secret_name").trim().to_owned();
            let path = format!("/secrets/{}", enc(&typed.secret_name));
            call(
                &state,
                &viewer,
                Method::PUT,
                api_path(&name, &path, repository),
                Some(serde_json::json!({ "value": get("secret_value") })),
            )
            .await
        }
        "variable" => {
            typed.variable_name = get("variable_name").trim().to_owned();
            typed.variable_value = get("variable_value");
            let path = format!("/variables/{}", enc(&typed.variable_name));
            call(
                &state,
                &viewer,
                Method::PUT,
                api_path(&name, &path, repository),
                Some(serde_json::json!({ "value": typed.variable_value })),
            )
            .await
        }
        "secret-delete" | "variable-delete" => {
            let (kind, key) = if get("op") == "secret-delete" {
                ("secrets", "secret_name")
            } else {
                ("variables", "variable_name")
            };
            let path = format!("/{kind}/{}", enc(get(key).trim()));
            call(
                &state,
                &viewer,
                Method::DELETE,
                api_path(&name, &path, repository),
                None,
            )
            .await
        }
        other => Err((
            StatusCode::BAD_REQUEST,
            format!("request field `op`: unknown operation `{other}`"),
        )),
    };
    match result {
        Ok(()) => Redirect::to(&edit_link(&name, repository)).into_response(),
        Err((status, message)) => {
            // Show the current state (the API may have changed nothing) with what was typed.
            let d = find(&state, &q).unwrap_or(d);
            let body = edit_body(&state, &d, &rules, &typed, Some(&message));
            page(&viewer, &name, &body, status)
        }
    }
}
