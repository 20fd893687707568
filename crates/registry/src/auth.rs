//! Who may do what: users with passwords or tokens and per-repository pull/push globs,
//! optional anonymous read, and bearer tokens issued by the registry's own token endpoint
//! (`GET /v2/token`, the `WWW-Authenticate: Bearer` flow docker, podman and skopeo follow).
//!
//! Tokens are `base64url(claims JSON) . base64url(HMAC-SHA256(key, claims))`; claims name
//! the subject, expiry and granted `repository:NAME:ACTIONS` entries. A token lacking an
//! entry for a repository gets a 401 challenge for it (the client fetches a new token); a
//! token whose entry lacks the action gets 403 `DENIED` (the token endpoint already refused).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, StatusCode};
use base64::{engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{
    error::{Code, Error},
    AuthOptions,
};

/// Which repositories a caller may see in the catalog.
pub type RepositoryFilter<'a> = Box<dyn Fn(&str) -> bool + Send + 'a>;

/// What a request wants to do with a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
        }
    }
}

/// A configuration error in the auth options.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("user {user}: invalid repository glob {glob:?}")]
    Glob { user: String, glob: String, source: globset::Error },
    #[error("user {user}: needs a password or a token")]
    NoCredential { user: String },
    #[error("token key is empty")]
    EmptyKey,
}

struct User {
    name: String,
    password: Option<String>,
    token: Option<String>,
    pull: GlobSet,
    push: GlobSet,
}

impl User {
    fn may(&self, repo: &str, action: Action) -> bool {
        match action {
            Action::Push => self.push.is_match(repo),
            // Push implies pull: a push needs to check what is already there.
            Action::Pull => self.pull.is_match(repo) || self.push.is_match(repo),
        }
    }
}

/// The compiled auth configuration.
pub struct Auth {
    users: Vec<User>,
    anonymous_read: bool,
    key: Vec<u8>,
    ttl: Duration,
    realm: Option<String>,
    service: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("users", &self.users.len()).field("anonymous_read", &self.anonymous_read).finish()
    }
}

/// Who a request is from.
#[derive(Debug, Clone)]
pub enum Identity {
    Anonymous,
    /// Index into the configured users (authenticated by password or static token).
    User(usize),
    /// A token issued by the token endpoint.
    Token(Claims),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    sub: String,
    exp: u64,
    access: Vec<Grant>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Grant {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

fn compile(user: &str, globs: &[String]) -> Result<GlobSet, AuthConfigError> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(GlobBuilder::new(glob).literal_separator(true).build().map_err(|source| AuthConfigError::Glob { user: user.to_owned(), glob: glob.clone(), source })?);
    }
    builder.build().map_err(|source| AuthConfigError::Glob { user: user.to_owned(), glob: globs.join(","), source })
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Constant-time comparison of secrets.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn new(options: &AuthOptions) -> Result<Self, AuthConfigError> {
        let mut users = Vec::new();
        for u in &options.users {
            if u.password.is_none() && u.token.is_none() {
                return Err(AuthConfigError::NoCredential { user: u.name.clone() });
            }
            users.push(User {
                name: u.name.clone(),
                password: u.password.clone(),
                token: u.token.clone(),
                pull: compile(&u.name, &u.pull)?,
                push: compile(&u.name, &u.push)?,
            });
        }
        let key = match &options.token_key {
            Some(k) if k.is_empty() => return Err(AuthConfigError::EmptyKey),
            Some(k) => k.as_bytes().to_vec(),
            None => {
                let mut key = uuid::Uuid::new_v4().as_bytes().to_vec();
                key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
                key
            }
        };
        Ok(Auth {
            users,
            anonymous_read: options.anonymous_read,
            key,
            ttl: Duration::from_secs(options.token_ttl_secs.max(1)),
            realm: options.realm.clone(),
            service: options.service.clone(),
        })
    }

    /// Auth is enforced once any user is configured.
    pub fn enabled(&self) -> bool {
        !self.users.is_empty()
    }

    fn user_by_password(&self, name: &str, secret: &str) -> Option<usize> {
        self.users.iter().position(|u| {
            u.name == name
                && (u.password.as_deref().is_some_and(|p| same_secret(p, secret)) || u.token.as_deref().is_some_and(|t| same_secret(t, secret)))
        })
    }

    fn user_by_token(&self, token: &str) -> Option<usize> {
        self.users.iter().position(|u| u.token.as_deref().is_some_and(|t| same_secret(t, token)))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length")
    }

    /// Identify the caller from `Authorization`. Bad credentials are a 401 challenge.
    pub fn identify(&self, headers: &HeaderMap, host: &str) -> Result<Identity, Error> {
        let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(Identity::Anonymous) };
        let value = value.to_str().unwrap_or_default();
        let invalid = |what: &str| self.challenge(host, None, Some("invalid_token"), what);
        if let Some(b64) = strip_scheme(value, "basic") {
            let (name, secret) = decode_basic(b64).ok_or_else(|| invalid("malformed basic credentials"))?;
            return self.user_by_password(&name, &secret).map(Identity::User).ok_or_else(|| invalid("invalid username or password"));
        }
        if let Some(token) = strip_scheme(value, "bearer") {
            if let Some(user) = self.user_by_token(token) {
                return Ok(Identity::User(user));
            }
            return self.verify(token).map(Identity::Token).ok_or_else(|| invalid("invalid or expired token"));
        }
        Err(invalid("unsupported authorization scheme"))
    }

    /// Check credentials sent to the token endpoint (basic; none = anonymous).
    pub fn identify_for_token(&self, headers: &HeaderMap) -> Result<Option<usize>, Error> {
        let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
        let value = value.to_str().unwrap_or_default();
        let unauthorized = || {
            Error::api(StatusCode::UNAUTHORIZED, Code::Unauthorized, "invalid username or password")
                .with_header(header::WWW_AUTHENTICATE, &format!("Basic realm=\"{}\"", self.service))
        };
        if let Some(b64) = strip_scheme(value, "basic") {
            let (name, secret) = decode_basic(b64).ok_or_else(unauthorized)?;
            return self.user_by_password(&name, &secret).map(Some).ok_or_else(unauthorized);
        }
        if let Some(token) = strip_scheme(value, "bearer") {
            return self.user_by_token(token).map(Some).ok_or_else(unauthorized);
        }
        Err(unauthorized())
    }

    /// May `identity` do `action` on `repo`? (No error: used for mounts and the catalog.)
    pub fn allowed(&self, identity: &Identity, repo: &str, action: Action) -> bool {
        if !self.enabled() {
            return true;
        }
        match identity {
            Identity::Anonymous => action == Action::Pull && self.anonymous_read,
            Identity::User(i) => self.users[*i].may(repo, action),
            Identity::Token(claims) => claims.access.iter().any(|g| g.kind == "repository" && g.name == repo && g.actions.iter().any(|a| a == action.as_str() || a == "*")),
        }
    }

    /// Check access to `repo`, producing the right error for the client to react to.
    pub fn check(&self, identity: &Identity, repo: &str, action: Action, host: &str) -> Result<(), Error> {
        if self.allowed(identity, repo, action) {
            return Ok(());
        }
        let scope = format!("repository:{repo}:{}", if action == Action::Push { "pull,push" } else { "pull" });
        match identity {
            Identity::Anonymous => Err(self.challenge(host, Some(&scope), None, "authentication required")),
            Identity::User(_) => Err(denied(repo, action)),
            Identity::Token(claims) => {
                if claims.access.iter().any(|g| g.kind == "repository" && g.name == repo) {
                    Err(denied(repo, action))
                } else {
                    Err(self.challenge(host, Some(&scope), Some("insufficient_scope"), "token does not cover this repository"))
                }
            }
        }
    }

    /// `GET /v2/`: any valid identity; anonymous callers are challenged when auth is on
    /// (so `docker login` verifies credentials).
    pub fn check_base(&self, identity: &Identity, host: &str) -> Result<(), Error> {
        if self.enabled() && matches!(identity, Identity::Anonymous) {
            return Err(self.challenge(host, None, None, "authentication required"));
        }
        Ok(())
    }

    /// May `identity` list the catalog, and which repositories may it see?
    pub fn catalog_filter(&self, identity: &Identity, host: &str) -> Result<RepositoryFilter<'_>, Error> {
        if !self.enabled() {
            return Ok(Box::new(|_| true));
        }
        match identity.clone() {
            Identity::Anonymous if self.anonymous_read => Ok(Box::new(|_| true)),
            Identity::Anonymous => Err(self.challenge(host, Some("registry:catalog:*"), None, "authentication required")),
            Identity::User(i) => Ok(Box::new(move |repo| self.users[i].may(repo, Action::Pull))),
            Identity::Token(claims) => match self.users.iter().position(|u| u.name == claims.sub) {
                Some(i) => Ok(Box::new(move |repo| self.users[i].may(repo, Action::Pull))),
                None if self.anonymous_read => Ok(Box::new(|_| true)),
                None => Err(self.challenge(host, Some("registry:catalog:*"), None, "authentication required")),
            },
        }
    }

    /// A 401 with the `WWW-Authenticate: Bearer` challenge pointing at the token endpoint.
    pub fn challenge(&self, host: &str, scope: Option<&str>, error: Option<&str>, message: &str) -> Error {
        let realm = match &self.realm {
            Some(realm) => realm.clone(),
            None => format!("http://{host}/v2/token"),
        };
        let mut value = format!("Bearer realm=\"{realm}\",service=\"{}\"", self.service);
        if let Some(scope) = scope {
            value.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = error {
            value.push_str(&format!(",error=\"{error}\""));
        }
        Error::api(StatusCode::UNAUTHORIZED, Code::Unauthorized, message).with_header(header::WWW_AUTHENTICATE, &value)
    }

    /// Issue a token for `user` (None = anonymous) covering the requested scopes, each
    /// narrowed to what the caller may do.
    pub fn issue(&self, user: Option<usize>, scopes: &[String]) -> (String, u64) {
        let identity = user.map_or(Identity::Anonymous, Identity::User);
        let mut access = Vec::new();
        for scope in scopes {
            for one in scope.split(' ') {
                let Some((kind, rest)) = one.split_once(':') else { continue };
                let Some((name, actions)) = rest.rsplit_once(':') else { continue };
                if kind == "repository" {
                    let mut granted = Vec::new();
                    for action in actions.split(',') {
                        let wanted = match action {
                            "pull" => Some(Action::Pull),
                            "push" | "delete" | "*" => Some(Action::Push),
                            _ => None,
                        };
                        if let Some(wanted) = wanted
                            && self.allowed(&identity, name, wanted) && !granted.contains(&action.to_owned()) {
                                granted.push(action.to_owned());
                            }
                    }
                    if granted.iter().any(|a| a != "pull") && !granted.iter().any(|a| a == "pull") {
                        granted.push("pull".to_owned());
                    }
                    access.push(Grant { kind: kind.to_owned(), name: name.to_owned(), actions: granted });
                } else if kind == "registry" && name == "catalog" && (user.is_some() || self.anonymous_read || !self.enabled()) {
                    access.push(Grant { kind: kind.to_owned(), name: name.to_owned(), actions: vec!["*".to_owned()] });
                }
            }
        }
        let sub = user.map(|i| self.users[i].name.clone()).unwrap_or_default();
        let claims = Claims { sub, exp: now() + self.ttl.as_secs(), access };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        (format!("{payload}.{signature}"), self.ttl.as_secs())
    }

    fn verify(&self, token: &str) -> Option<Claims> {
        let (payload, signature) = token.split_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (claims.exp > now()).then_some(claims)
    }
}

fn denied(repo: &str, action: Action) -> Error {
    Error::api(StatusCode::FORBIDDEN, Code::Denied, format!("requested access to {repo} ({}) is denied", action.as_str()))
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(b64).ok()?).ok()?;
    let (name, secret) = decoded.split_once(':')?;
    Some((name.to_owned(), secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserOptions;

    fn auth() -> Auth {
        Auth::new(&AuthOptions {
            users: vec![
                UserOptions { name: "ci".into(), password: Some("pw".into()), token: None, pull: vec![], push: vec!["team/**".into()] },
                UserOptions { name: "agent".into(), password: None, token: Some("tok".into()), pull: vec!["team/*".into()], push: vec![] },
            ],
            ..AuthOptions::default()
        })
        .expect("valid options")
    }

    #[test]
    fn tokens_grant_only_what_users_may() {
        let auth = auth();
        let (token, _) = auth.issue(Some(1), &["repository:team/app:pull,push".into()]);
        let claims = auth.verify(&token).expect("valid token");
        let id = Identity::Token(claims);
        assert!(auth.allowed(&id, "team/app", Action::Pull));
        assert!(!auth.allowed(&id, "team/app", Action::Push));
        let err = auth.check(&id, "team/app", Action::Push, "h").expect_err("push denied");
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        let err = auth.check(&id, "other", Action::Pull, "h").expect_err("no scope");
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        let (ci, _) = auth.issue(Some(0), &["repository:team/a/b:push".into()]);
        let ci = Identity::Token(auth.verify(&ci).expect("valid"));
        assert!(auth.allowed(&ci, "team/a/b", Action::Push));
        assert!(auth.allowed(&ci, "team/a/b", Action::Pull));
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let auth = auth();
        let (token, _) = auth.issue(Some(1), &["repository:team/app:pull".into()]);
        let (payload, sig) = token.split_once('.').expect("two parts");
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("utf8").replace("pull", "push");
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(claims));
        assert!(auth.verify(&forged).is_none());
        assert!(auth.verify("garbage").is_none());
    }

    #[test]
    fn anonymous_is_challenged_when_auth_is_on() {
        let auth = auth();
        let err = auth.check(&Identity::Anonymous, "team/app", Action::Pull, "127.0.0.1:5000").expect_err("challenged");
        let Error::Api { headers, .. } = err else { panic!("api error") };
        let challenge = headers.iter().find(|(n, _)| n == header::WWW_AUTHENTICATE).expect("challenge").1.to_str().expect("ascii");
        assert_eq!(challenge, r#"Bearer realm="http://127.0.0.1:5000/v2/token",service="slipway-registry",scope="repository:team/app:pull""#);
    }
}
