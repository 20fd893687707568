//! Sign-in: a user with a password (argon2: a `[[user]]`'s `password_hash`, or set through
//! the API) signs in with it; a user without one signs in with an API token of theirs. The
//! session is a cookie sealed with the server key (AES-GCM: user name and expiry), so it
//! survives restarts and works on every replica; it also holds a stamp of the user's password
//! hash, so a new password ends the sessions made with the old one. `Authorization: Bearer`
//! tokens are accepted on every page too. Who the users are is `crate::users`' business.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::{Esc, enc, layout};
use crate::{AppState, users};

const COOKIE: &str = "slipway_session";
const AAD: &str = "slipway-ui-session";
/// How long a session lasts.
const SESSION_MS: i64 = 12 * 3600 * 1000;

/// Who is looking.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub name: String,
    pub role: String,
    /// A bearer that acts as the user through the API: the token the request carried, or a
    /// short-lived session bearer (`None` on an open server).
    pub token: Option<String>,
    /// There are no users (neither `[[user]]`s nor users of the store): everyone may do
    /// everything.
    pub open: bool,
}

impl Viewer {
    /// May re-run and cancel.
    pub fn can_write(&self) -> bool {
        self.open || self.role != "viewer"
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The viewer of a request: a session cookie, a bearer token, or anyone on an open server
/// (no user in the configuration file nor in the store). A disabled or deleted user's
/// session ends at their next request.
pub(crate) fn viewer(state: &AppState, headers: &HeaderMap) -> Option<Viewer> {
    if state.users().is_open() {
        return Some(Viewer {
            name: "anonymous".to_owned(),
            role: "admin".to_owned(),
            token: None,
            open: true,
        });
    }
    let (user, token) = if let Some(value) = cookie(headers, COOKIE) {
        let sealed = URL_SAFE_NO_PAD.decode(value).ok()?;
        let text = state.key().open_string(AAD, &sealed).ok()?;
        let mut fields = text.split('\n');
        let (name, expires, stamp) = (fields.next()?, fields.next()?, fields.next()?);
        if expires.parse::<i64>().ok()? < crate::now_ms() {
            return None;
        }
        // A new password ends the sessions made with the old one.
        if users::session_stamp(state, name)? != stamp {
            return None;
        }
        let user = users::by_name(state, name)?;
        let token = users::session_bearer(state, &user.name);
        (user, token)
    } else {
        let token = crate::agent_api::bearer(headers)?;
        (users::by_token(state, token)?, token.to_owned())
    };
    Some(Viewer {
        name: user.name,
        role: user.role,
        token: Some(token),
        open: false,
    })
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// Only local paths are followed after signing in.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

fn form(name: &str, next: &str, error: Option<&str>) -> Response {
    let anon = Viewer {
        name: String::new(),
        role: String::new(),
        token: None,
        open: false,
    };
    let refused = error.is_some();
    let error = error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
                Esc(e)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<section class=\"login\"><h1>Sign in</h1>{error}\
         <form method=\"post\" action=\"/login?next={}\">\
         <label for=\"name\">User</label><input id=\"name\" name=\"name\" autocomplete=\"username\" required value=\"{}\" autofocus>\
         <label for=\"password\">Password or API token</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\" class=\"primary\">Sign in</button></form></section>",
        enc(next),
        Esc(name)
    );
    let mut r = layout("Sign in", &anon, "", &body);
    if refused {
        *r.status_mut() = StatusCode::UNAUTHORIZED;
    }
    r
}

pub(crate) async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    form("", safe_next(q.next.as_deref()), None)
}

/// Whether `password` signs `name` in (see [`users::check_password`]).
fn check(state: &AppState, name: &str, password: &str) -> bool {
    users::check_password(state, name, password)
}

pub(crate) async fn login(
    State(state): State<AppState>,
    Query(q): Query<LoginQuery>,
    body: Bytes,
) -> Response {
    let next = safe_next(q.next.as_deref()).to_owned();
    let mut name = String::new();
    let mut password = String::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "name" => name = v.into_owned(),
            "password" => password = v.into_owned(),
            _ => {}
        }
    }
    if name.is_empty() || password.is_empty() {
        return form(&name, &next, Some("Enter a user name and a password."));
    }
    let ok = {
        let state = state.clone();
        let (n, p) = (name.clone(), password);
        tokio::task::spawn_blocking(move || check(&state, &n, &p))
            .await
            .unwrap_or(false)
    };
    if !ok {
        tracing::warn!(user = %name, "UI sign-in refused.");
        return form(&name, &next, Some("Wrong user name or password."));
    }
    let mut r = Redirect::to(&next).into_response();
    if let Some(v) = session_cookie(&state, &name) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// A `Set-Cookie` value that signs `name` in for [`SESSION_MS`] (sealed: name, expiry, and
/// the stamp of the user's current password).
pub(crate) fn session_cookie(state: &AppState, name: &str) -> Option<HeaderValue> {
    let stamp = users::session_stamp(state, name)?;
    let expires = crate::now_ms() + SESSION_MS;
    let sealed = state
        .key()
        .seal(AAD, format!("{name}\n{expires}\n{stamp}").as_bytes());
    let value = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        URL_SAFE_NO_PAD.encode(sealed),
        SESSION_MS / 1000
    );
    HeaderValue::from_str(&value).ok()
}

pub(crate) async fn logout() -> Response {
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("slipway_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_redirects() {
        assert_eq!(safe_next(Some("/runs/3")), "/runs/3");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; slipway_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
    }
}
