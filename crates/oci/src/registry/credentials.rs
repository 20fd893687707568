//! Registry credentials in Docker's format: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`) with `auths`, `credsStore` and `credHelpers`
//! (`docker-credential-<helper> get|store`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid docker config file")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("credential helper docker-credential-{helper} failed for {registry}: {message}")]
    Helper {
        helper: String,
        registry: String,
        message: String,
    },
    #[error("no home directory to find ~/.docker/config.json in; set DOCKER_CONFIG")]
    NoHome,
}

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credential {{ username: {:?}, password: <redacted> }}",
            self.username
        )
    }
}

/// The directory of the docker config: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir() -> Result<PathBuf, CredentialsError> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker"))
        .ok_or(CredentialsError::NoHome)
}

/// Canonical key for a registry host: scheme and path stripped, Docker Hub aliases merged.
pub fn normalize_host(host: &str) -> String {
    let h = host
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let h = h.split('/').next().unwrap_or(h);
    match h {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        other => other.to_string(),
    }
}

/// The key Docker writes for a host (`https://index.docker.io/v1/` for Docker Hub).
fn docker_key(host: &str) -> String {
    if normalize_host(host) == "docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        normalize_host(host)
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

/// A docker config file.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    raw: serde_json::Map<String, serde_json::Value>,
    /// `PATH` used to find `docker-credential-*` helpers (default: the process's).
    helper_path: Option<std::ffi::OsString>,
}

impl DockerConfig {
    /// Loads `dir/config.json` (an empty config when the file does not exist).
    pub fn load(dir: &Path) -> Result<DockerConfig, CredentialsError> {
        let path = dir.join("config.json");
        let raw = match std::fs::read(&path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Default::default(),
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| CredentialsError::Parse {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(source) => return Err(CredentialsError::Read { path, source }),
        };
        Ok(DockerConfig {
            path,
            raw,
            helper_path: None,
        })
    }

    /// Loads the default config ([`config_dir`]).
    pub fn load_default() -> Result<DockerConfig, CredentialsError> {
        Self::load(&config_dir()?)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks credential helpers up in `path` instead of the process's `PATH`.
    pub fn with_helper_path(mut self, path: impl Into<std::ffi::OsString>) -> Self {
        self.helper_path = Some(path.into());
        self
    }

    fn helper_for(&self, host: &str) -> Option<String> {
        let key = normalize_host(host);
        if let Some(helpers) = self.raw.get("credHelpers").and_then(|v| v.as_object()) {
            for (k, v) in helpers {
                if normalize_host(k) == key
                    && let Some(h) = v.as_str()
                {
                    return Some(h.to_string());
                }
            }
        }
        self.raw
            .get("credsStore")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// The credential for `host`: a credential helper if one is configured, else `auths`.
    pub fn get(&self, host: &str) -> Result<Option<Credential>, CredentialsError> {
        if let Some(helper) = self.helper_for(host)
            && let Some(c) = helper_get(&helper, host, self.helper_path.as_deref())?
        {
            return Ok(Some(c));
        }
        let key = normalize_host(host);
        let Some(auths) = self.raw.get("auths").and_then(|v| v.as_object()) else {
            return Ok(None);
        };
        for (k, v) in auths {
            if normalize_host(k) != key {
                continue;
            }
            let entry: AuthEntry = serde_json::from_value(v.clone()).unwrap_or_default();
            if let Some(token) = entry.identity_token.filter(|t| !t.is_empty()) {
                return Ok(Some(Credential {
                    username: "<token>".into(),
                    password: token,
                }));
            }
            if let Some(auth) = entry.auth.filter(|a| !a.is_empty())
                && let Ok(decoded) = B64.decode(auth.trim())
                && let Ok(s) = String::from_utf8(decoded)
                && let Some((u, p)) = s.split_once(':')
            {
                return Ok(Some(Credential {
                    username: u.into(),
                    password: p.into(),
                }));
            }
            if let (Some(u), Some(p)) = (entry.username, entry.password) {
                return Ok(Some(Credential {
                    username: u,
                    password: p,
                }));
            }
        }
        Ok(None)
    }

    /// Stores `cred` for `host` — in the credential helper when one is configured, else in
    /// `auths` (base64, as Docker does) — and writes the file (mode 0600).
    pub fn store(&mut self, host: &str, cred: &Credential) -> Result<(), CredentialsError> {
        let key = docker_key(host);
        if let Some(helper) = self.helper_for(host) {
            helper_store(&helper, &key, cred, self.helper_path.as_deref())?;
            let auths = self.auths_mut();
            auths.insert(key, serde_json::json!({}));
        } else {
            let auth = B64.encode(format!("{}:{}", cred.username, cred.password));
            let auths = self.auths_mut();
            auths.retain(|k, _| normalize_host(k) != normalize_host(host));
            auths.insert(key, serde_json::json!({ "auth": auth }));
        }
        self.save()
    }

    fn auths_mut(&mut self) -> &mut serde_json::Map<String, serde_json::Value> {
        let v = self
            .raw
            .entry("auths")
            .or_insert_with(|| serde_json::json!({}));
        if !v.is_object() {
            *v = serde_json::json!({});
        }
        v.as_object_mut().expect("just made it an object")
    }

    fn save(&self) -> Result<(), CredentialsError> {
        let err = |source| CredentialsError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".config-")
            .tempfile_in(dir)
            .map_err(err)?;
        let bytes = serde_json::to_vec_pretty(&self.raw).expect("a JSON map serialises");
        tmp.write_all(&bytes).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))
                .map_err(err)?;
        }
        tmp.persist(&self.path).map_err(|e| err(e.error))?;
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

fn run_helper(
    helper: &str,
    action: &str,
    registry: &str,
    input: &str,
    path: Option<&std::ffi::OsStr>,
) -> Result<(bool, String), CredentialsError> {
    let fail = |message: String| CredentialsError::Helper {
        helper: helper.into(),
        registry: registry.into(),
        message,
    };
    let mut cmd = Command::new(format!("docker-credential-{helper}"));
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let mut child = cmd
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| fail(format!("writing its input: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok((true, stdout))
    } else {
        Ok((false, format!("{}{}", stdout.trim(), stderr.trim())))
    }
}

fn helper_get(
    helper: &str,
    host: &str,
    path: Option<&std::ffi::OsStr>,
) -> Result<Option<Credential>, CredentialsError> {
    // Helpers are keyed by what `docker login` stored: try the Docker key, then the bare host.
    for key in [docker_key(host), normalize_host(host)] {
        let (ok, out) = run_helper(helper, "get", &key, &key, path)?;
        if ok {
            let parsed: HelperOutput =
                serde_json::from_str(&out).map_err(|e| CredentialsError::Helper {
                    helper: helper.into(),
                    registry: key.clone(),
                    message: format!("unreadable output: {e}"),
                })?;
            return Ok(Some(Credential {
                username: parsed.username,
                password: parsed.secret,
            }));
        }
        if !out.to_ascii_lowercase().contains("not found") {
            return Err(CredentialsError::Helper {
                helper: helper.into(),
                registry: key,
                message: out,
            });
        }
    }
    Ok(None)
}

fn helper_store(
    helper: &str,
    key: &str,
    cred: &Credential,
    path: Option<&std::ffi::OsStr>,
) -> Result<(), CredentialsError> {
    let input =
        serde_json::json!({ "ServerURL": key, "Username": cred.username, "Secret": cred.password })
            .to_string();
    let (ok, out) = run_helper(helper, "store", key, &input, path)?;
    if ok {
        Ok(())
    } else {
        Err(CredentialsError::Helper {
            helper: helper.into(),
            registry: key.into(),
            message: out,
        })
    }
}

/// Credentials given explicitly (flags, action inputs) take precedence over the docker config.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    explicit: BTreeMap<String, Credential>,
    config: Option<DockerConfig>,
}

impl Credentials {
    /// Explicit credentials only.
    pub fn none() -> Self {
        Self::default()
    }
    /// The docker config at [`config_dir`] (a missing file is fine).
    pub fn from_docker_config() -> Result<Self, CredentialsError> {
        Ok(Credentials {
            explicit: BTreeMap::new(),
            config: Some(DockerConfig::load_default()?),
        })
    }
    pub fn from_config(config: DockerConfig) -> Self {
        Credentials {
            explicit: BTreeMap::new(),
            config: Some(config),
        }
    }
    pub fn with(mut self, host: &str, cred: Credential) -> Self {
        self.explicit.insert(normalize_host(host), cred);
        self
    }
    pub fn get(&self, host: &str) -> Result<Option<Credential>, CredentialsError> {
        if let Some(c) = self.explicit.get(&normalize_host(host)) {
            return Ok(Some(c.clone()));
        }
        match &self.config {
            Some(c) => c.get(host),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn auths_roundtrip_and_helper() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = DockerConfig::load(dir.path()).unwrap();
        assert_eq!(c.get("r.example:5000").unwrap(), None);
        let cred = Credential {
            username: "u".into(),
            password: "p:w".into(),
        };
        c.store("r.example:5000", &cred).unwrap();
        let again = DockerConfig::load(dir.path()).unwrap();
        assert_eq!(
            again.get("https://r.example:5000/v2/").unwrap(),
            Some(cred.clone())
        );
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert!(text.contains("dTpwOnc="), "{text}");

        // A credential helper (a tiny shell script) wins over auths.
        let bin = tempfile::tempdir().unwrap();
        let helper = bin.path().join("docker-credential-fake");
        std::fs::write(&helper, "#!/bin/sh\nread host\necho \"{\\\"Username\\\":\\\"hu\\\",\\\"Secret\\\":\\\"hs-$host\\\"}\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"credHelpers":{"r.example:5000":"fake"}}"#,
        )
        .unwrap();
        let path = format!(
            "{}:{}",
            bin.path().display(),
            std::env::var("PATH").unwrap()
        );
        let c = DockerConfig::load(dir.path())
            .unwrap()
            .with_helper_path(path);
        let got = c.get("r.example:5000").unwrap();
        assert_eq!(
            got,
            Some(Credential {
                username: "hu".into(),
                password: "hs-r.example:5000".into()
            })
        );
    }
}
