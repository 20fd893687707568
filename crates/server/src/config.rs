//! The server configuration file (`slipway.toml`): `[server]`, `[[user]]`, `[[organization]]`,
//! `[[repository]]`.
//!
//! Values written `env:NAME` are read through the caller's lookup function (the binary passes
//! the process environment; this crate reads no environment itself). Errors name
//! `file:line:col`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// A forge: where webhooks come from and commit statuses go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    Gitea,
    Forgejo,
    Github,
    Gitlab,
    Generic,
}

impl Forge {
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::Gitea => "gitea",
            Forge::Forgejo => "forgejo",
            Forge::Github => "github",
            Forge::Gitlab => "gitlab",
            Forge::Generic => "generic",
        }
    }
}

/// The whole configuration, `env:` values resolved.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub server: ServerConfig,
    pub users: Vec<User>,
    pub repositories: Vec<RepositoryConfig>,
    /// `[[organization]]`: secrets and variables every repository of an owner gets.
    pub organizations: Vec<OrganizationConfig>,
    /// `[[environment]]`: deployment targets and their protection rules.
    pub environments: Vec<crate::environments::EnvironmentConfig>,
    /// `[[user]] password_hash`: user name -> argon2 PHC string (web UI sign-in).
    pub passwords: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Base of links in commit statuses (`{external_url}/runs/{id}`).
    pub external_url: String,
    /// The token agents register with. `None`: a random one is made at start (only the
    /// embedded agent can register then).
    pub agent_token: Option<String>,
    /// How long a lease lives without a heartbeat.
    pub lease_ttl: Duration,
    /// Largest webhook body accepted.
    pub webhook_body_limit: usize,
    /// The key that encrypts stored secrets (64 hex digits or base64 of 32 bytes). `None`:
    /// `{data}/secret.key`, created on the first start.
    pub secret_key: Option<String>,
    /// Where artifacts' contents go: `None` = files under `{data}/blobs`; else an S3 bucket
    /// (`[server.blob_store]`).
    pub blob_store: Option<store::blob::S3Options>,
    /// Most bytes of `actions/cache` entries a repository keeps (least recently used
    /// evicted first); `cache_size_limit = "10GiB"`.
    pub cache_size_limit: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            external_url: "http://127.0.0.1:8080".to_owned(),
            agent_token: None,
            lease_ttl: Duration::from_secs(60),
            webhook_body_limit: 5 * 1024 * 1024,
            secret_key: None,
            blob_store: None,
            cache_size_limit: 10 << 30,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub token: String,
    pub role: String,
    /// Groups the user belongs to (environments name groups as reviewers).
    pub groups: Vec<String>,
}

/// Secrets and variables of an owner (the `team` of `team/app`); a repository's own of the
/// same name win.
#[derive(Debug, Clone, Default)]
pub struct OrganizationConfig {
    pub name: String,
    pub secrets: BTreeMap<String, String>,
    pub vars: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct RepositoryConfig {
    /// `owner/name` as the forge knows it.
    pub name: String,
    pub clone_url: String,
    pub forge: Forge,
    /// Where commit statuses go (`None`: none are sent).
    pub forge_api: Option<String>,
    pub forge_token: Option<String>,
    pub webhook_secret: Option<String>,
    /// Poll the repository (`git ls-remote`) this often, for forges without webhooks.
    pub poll_interval: Option<Duration>,
    pub secrets: BTreeMap<String, String>,
    pub vars: BTreeMap<String, String>,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}:{line}:{col}: error: {message}")]
    Syntax { file: String, line: usize, col: usize, message: String },
    #[error("{file}: error: {message}")]
    Invalid { file: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    user: Vec<RawUser>,
    #[serde(default)]
    repository: Vec<RawRepository>,
    #[serde(default)]
    organization: Vec<RawOrganization>,
    /// Deployment environments: accepted, used by later parts of the server.
    #[serde(default)]
    environment: Vec<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    external_url: Option<String>,
    agent_token: Option<String>,
    lease_ttl: Option<String>,
    webhook_body_limit: Option<usize>,
    secret_key: Option<String>,
    blob_store: Option<RawBlobStore>,
    cache_size_limit: Option<String>,
}

/// `[server.blob_store]`: an S3-compatible bucket for artifacts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlobStore {
    endpoint: Option<String>,
    bucket: String,
    #[serde(default)]
    prefix: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganization {
    name: String,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    token: String,
    #[serde(default = "viewer")]
    role: String,
    #[serde(default)]
    groups: Vec<String>,
    /// An argon2 PHC string (`$argon2id$...`) or `env:NAME`, for the web UI's sign-in.
    password_hash: Option<String>,
}

fn viewer() -> String {
    "viewer".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    name: String,
    clone_url: String,
    forge: Forge,
    forge_api: Option<String>,
    forge_token: Option<String>,
    webhook_secret: Option<String>,
    poll_interval: Option<String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
}

/// Parses `text` (the contents of `file`), resolving `env:NAME` values with `env`.
pub fn parse(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError::Syntax { file: file.to_owned(), line, col, message: e.message().to_owned() }
    })?;
    let invalid = |message: String| ConfigError::Invalid { file: file.to_owned(), message };
    let resolve = |what: &str, v: String| -> Result<String, ConfigError> {
        match v.strip_prefix("env:") {
            Some(name) => env(name).ok_or_else(|| invalid(format!("{what} names the environment variable {name}, which is not set"))),
            None => Ok(v),
        }
    };
    let mut server = ServerConfig::default();
    if let Some(url) = raw.server.external_url {
        server.external_url = url.trim_end_matches('/').to_owned();
    }
    server.agent_token = raw.server.agent_token.map(|t| resolve("server.agent_token", t)).transpose()?;
    if let Some(ttl) = raw.server.lease_ttl {
        server.lease_ttl = parse_duration(&ttl).ok_or_else(|| invalid(format!("server.lease_ttl: `{ttl}` is not a duration like 30s")))?;
    }
    if let Some(limit) = raw.server.webhook_body_limit {
        server.webhook_body_limit = limit;
    }
    server.secret_key = raw.server.secret_key.map(|k| resolve("server.secret_key", k)).transpose()?;
    if let Some(size) = raw.server.cache_size_limit {
        server.cache_size_limit =
            parse_size(&size).ok_or_else(|| invalid(format!("server.cache_size_limit: `{size}` is not a size like 10GiB")))?;
    }
    if let Some(b) = raw.server.blob_store {
        let opt = |what: &str, v: Option<String>| v.map(|v| resolve(&format!("server.blob_store.{what}"), v)).transpose();
        server.blob_store = Some(store::blob::S3Options {
            endpoint: opt("endpoint", b.endpoint)?,
            bucket: b.bucket,
            prefix: b.prefix,
            region: opt("region", b.region)?,
            access_key_id: opt("access_key_id", b.access_key_id)?,
            secret_access_key: opt("secret_access_key", b.secret_access_key)?,
            // Set by the server to a directory under its data directory.
            spool_dir: std::path::PathBuf::new(),
        });
    }
    let mut organizations: Vec<OrganizationConfig> = Vec::new();
    for o in raw.organization {
        if o.name.is_empty() || o.name.contains('/') {
            return Err(invalid(format!("organization `{}`: the name is the owner part of owner/name", o.name)));
        }
        if organizations.iter().any(|x| x.name == o.name) {
            return Err(invalid(format!("organization `{}` is listed twice", o.name)));
        }
        let mut secrets = BTreeMap::new();
        for (k, v) in o.secrets {
            secrets.insert(k.clone(), resolve(&format!("organization {} secret {k}", o.name), v)?);
        }
        organizations.push(OrganizationConfig { name: o.name, secrets, vars: o.vars });
    }
    let mut users = Vec::new();
    let mut passwords = BTreeMap::new();
    for u in raw.user {
        if !matches!(u.role.as_str(), "admin" | "maintainer" | "viewer") {
            return Err(invalid(format!("user {}: role `{}` is not admin, maintainer or viewer", u.name, u.role)));
        }
        let token = resolve(&format!("user {} token", u.name), u.token)?;
        if let Some(hash) = u.password_hash {
            let hash = resolve(&format!("user {} password_hash", u.name), hash)?;
            if let Err(e) = argon2::PasswordHash::new(&hash) {
                return Err(invalid(format!("user {}: password_hash is not an argon2 PHC string ($argon2id$...): {e}", u.name)));
            }
            passwords.insert(u.name.clone(), hash);
        }
        users.push(User { name: u.name, token, role: u.role, groups: u.groups });
    }
    let mut repositories = Vec::new();
    for r in raw.repository {
        if !r.name.contains('/') {
            return Err(invalid(format!("repository `{}`: the name must be owner/name", r.name)));
        }
        if repositories.iter().any(|x: &RepositoryConfig| x.name == r.name) {
            return Err(invalid(format!("repository `{}` is listed twice", r.name)));
        }
        let poll_interval = match &r.poll_interval {
            Some(p) => Some(
                parse_duration(p)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| invalid(format!("repository {}: poll_interval `{p}` is not a duration like 30s", r.name)))?,
            ),
            None => None,
        };
        let n = r.name.clone();
        let opt = |what: &str, v: Option<String>| v.map(|v| resolve(&format!("repository {n} {what}"), v)).transpose();
        let mut secrets = BTreeMap::new();
        for (k, v) in r.secrets {
            secrets.insert(k.clone(), resolve(&format!("repository {n} secret {k}"), v)?);
        }
        repositories.push(RepositoryConfig {
            forge_api: opt("forge_api", r.forge_api)?.map(|u| u.trim_end_matches('/').to_owned()),
            forge_token: opt("forge_token", r.forge_token)?,
            webhook_secret: opt("webhook_secret", r.webhook_secret)?,
            poll_interval,
            name: r.name,
            clone_url: r.clone_url,
            forge: r.forge,
            secrets,
            vars: r.vars,
        });
    }
    let environments = crate::environments::parse_config(raw.environment, file, &resolve)?;
    Ok(Config { server, users, repositories, organizations, environments, passwords })
}

/// `500ms`, `30s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

/// `123`, `500KiB`, `100MiB`, `10GiB` (also `KB`/`MB`/`GB`, powers of 1000) in bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOOK_SECRET").then(|| "s3cret".to_owned())
    }

    #[test]
    fn the_documented_example_parses() {
        let text = r#"
[server]
external_url = "http://127.0.0.1:8080/"

[[user]]
name = "alice"
token = "tok"
role = "admin"

[[repository]]
name = "team/app"
clone_url = "git://127.0.0.1:9418/app.git"
forge = "gitea"
forge_api = "http://127.0.0.1:3000/api/v1"
forge_token = "ft"
webhook_secret = "env:HOOK_SECRET"
poll_interval = "30s"
secrets = { REGISTRY_PASSWORD = "pw" }

[[environment]]
repository = "team/app"
name = "production"
"#;
        let c = parse(text, "slipway.toml", &env).expect("parses");
        assert_eq!(c.server.external_url, "http://127.0.0.1:8080");
        assert_eq!(c.users[0].name, "alice");
        let r = &c.repositories[0];
        assert_eq!((r.forge, r.webhook_secret.as_deref()), (Forge::Gitea, Some("s3cret")));
        assert_eq!(r.secrets.get("REGISTRY_PASSWORD").map(String::as_str), Some("pw"));
    }

    fn check_err(text: &str, expect: &str) {
        let err = parse(text, "slipway.toml", &env).expect_err("invalid").to_string();
        assert!(err.contains(expect), "{err}");
    }

    #[test]
    fn bad_files_name_the_problem() {
        check_err("[server]\nexternal_ur = 1\n", "slipway.toml:2:1: error: unknown field `external_ur`");
        check_err("[[repository]]\nname = \"a/b\"\nclone_url = \"x\"\nforge = \"svn\"\n", "slipway.toml:4:9");
        check_err("[[repository]]\nname = \"a/b\"\nclone_url = \"x\"\nforge = \"gitea\"\nwebhook_secret = \"env:NOPE\"\n", "NOPE, which is not set");
        check_err("[[repository]]\nname = \"ab\"\nclone_url = \"x\"\nforge = \"gitea\"\n", "must be owner/name");
        check_err("[server]\nlease_ttl = \"soon\"\n", "not a duration");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("2d"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
