//! The app file: a small compose-like description of the services of an app on the `local`
//! and `docker` targets (`app.yaml` at the app's path).
//!
//! ```yaml
//! services:
//!   db:
//!     image: registry.example/team/db@sha256:...
//!   web:
//!     image: registry.example/team/web@sha256:...   # docker: required; local: optional
//!     command: httpd -f -p 8080                      # docker: optional (sh -c); local: required
//!     files: site                                    # local: a directory of the repo installed as the release
//!     env: {GREETING: hello}
//!     ports: ["127.0.0.1:8080:8080"]                 # docker only: [IP:]HOST:CONTAINER[/tcp|udp]
//!     network: host                                  # docker only: the network mode
//!     health: {url: "http://127.0.0.1:8080/", timeout: 30s}   # or {cmd: "..."}
//!     depends_on: [db]
//! ```
//!
//! Parsing is strict (unknown keys are errors) and every error names `file:line:col`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// The file an app's path holds on the `local` and `docker` targets.
pub const APP_FILE: &str = "app.yaml";
/// How long a service gets to become healthy when its health check gives no timeout.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// An app file problem at `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct AppFileError {
    pub file: String,
    pub line: u64,
    pub col: u64,
    pub message: String,
}

/// Which target the app file is read for (what a service needs differs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Local,
    Docker,
}

/// A service's health check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// HTTP GET from the agent; any 2xx passes.
    Url(String),
    /// A shell command (in the container on docker; in the release directory on local).
    Cmd(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub check: Check,
    pub timeout: Duration,
}

/// One service, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub image: Option<String>,
    pub command: Option<String>,
    /// `files:` resolved against the app file's directory.
    pub files: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<String>,
    /// Docker only: the container's network mode (`host`, `none`, a network's name).
    pub network: Option<String>,
    pub health: Option<HealthCheck>,
    pub depends_on: Vec<String>,
}

/// A validated app file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppFile {
    pub services: Vec<Service>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    services: Spanned<IndexMap<String, Spanned<RawService>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    image: Option<Spanned<String>>,
    command: Option<Spanned<String>>,
    files: Option<Spanned<String>>,
    #[serde(default)]
    env: IndexMap<String, Spanned<Scalar>>,
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    network: Option<Spanned<String>>,
    health: Option<Spanned<RawHealth>>,
    #[serde(default)]
    depends_on: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    url: Option<String>,
    cmd: Option<String>,
    timeout: Option<Spanned<String>>,
}

/// An env value: YAML scalars of any type, kept as their text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Str(s) => f.write_str(s),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// `[IP:]HOST:CONTAINER[/tcp|udp]`
pub fn valid_port(p: &str) -> bool {
    let (main, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    if proto != "tcp" && proto != "udp" {
        return false;
    }
    let parts: Vec<&str> = main.rsplitn(3, ':').collect();
    let num = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
    match parts.as_slice() {
        [c, h] => num(c) && num(h),
        [c, h, ip] => num(c) && num(h) && ip.parse::<std::net::IpAddr>().is_ok(),
        _ => false,
    }
}

/// Parses and validates `text` (the contents of `file`); `dir` is where `files:` resolves.
pub fn parse(text: &str, file: &str, dir: &Path, flavor: Flavor) -> Result<AppFile, AppFileError> {
    let at = |loc: serde_saphyr::Location, message: String| AppFileError {
        file: file.to_owned(),
        line: loc.line(),
        col: loc.column(),
        message,
    };
    let raw: RawApp = serde_saphyr::from_str(text).map_err(|e| {
        let (line, col) = e
            .location()
            .map_or((1, 1), |l| (l.line().max(1), l.column().max(1)));
        let full = e.to_string();
        // The library's text may repeat the position; keep the first line, without it.
        let message = full.lines().next().unwrap_or("invalid YAML").to_owned();
        AppFileError {
            file: file.to_owned(),
            line,
            col,
            message,
        }
    })?;
    if raw.services.value.is_empty() {
        return Err(at(
            raw.services.referenced,
            "`services` is empty: an app needs at least one service".into(),
        ));
    }
    let names: BTreeSet<&str> = raw.services.value.keys().map(String::as_str).collect();
    let mut services = Vec::new();
    for (name, svc) in &raw.services.value {
        let loc = svc.referenced;
        if !valid_name(name) {
            return Err(at(
                loc,
                format!(
                    "service name {name:?}: use lowercase letters, digits, - and _ (at most 63)"
                ),
            ));
        }
        let s = &svc.value;
        match flavor {
            Flavor::Docker if s.image.is_none() => {
                return Err(at(
                    loc,
                    format!("service {name}: `image` is required on the docker target"),
                ));
            }
            Flavor::Local if s.command.is_none() => {
                return Err(at(
                    loc,
                    format!("service {name}: `command` is required on the local target"),
                ));
            }
            _ => {}
        }
        if let (Flavor::Docker, Some(f)) = (flavor, &s.files) {
            return Err(at(
                f.referenced,
                format!("service {name}: `files` is for the local target (docker runs `image`)"),
            ));
        }
        if let (Flavor::Local, Some(p)) = (flavor, s.ports.first()) {
            return Err(at(
                p.referenced,
                format!(
                    "service {name}: `ports` is for the docker target (a local service binds its own ports)"
                ),
            ));
        }
        if let (Flavor::Local, Some(n)) = (flavor, &s.network) {
            return Err(at(
                n.referenced,
                format!("service {name}: `network` is for the docker target"),
            ));
        }
        if let (Some(_), Some(f)) = (&s.image, &s.files) {
            return Err(at(
                f.referenced,
                format!("service {name}: give `image` or `files`, not both"),
            ));
        }
        for p in &s.ports {
            if !valid_port(&p.value) {
                return Err(at(
                    p.referenced,
                    format!(
                        "service {name}: port {:?} is not [IP:]HOST:CONTAINER[/tcp|udp]",
                        p.value
                    ),
                ));
            }
        }
        if let Some(img) = &s.image
            && (img.value.trim().is_empty() || img.value.contains(char::is_whitespace))
        {
            return Err(at(
                img.referenced,
                format!(
                    "service {name}: `image` {:?} is not an image reference",
                    img.value
                ),
            ));
        }
        let files = match &s.files {
            None => None,
            Some(f) => {
                let rel = Path::new(&f.value);
                if rel.is_absolute()
                    || rel
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    return Err(at(
                        f.referenced,
                        format!(
                            "service {name}: `files` must be a path inside the repository, got {:?}",
                            f.value
                        ),
                    ));
                }
                let p = dir.join(rel);
                if !p.is_dir() {
                    return Err(at(
                        f.referenced,
                        format!("service {name}: `files` {:?} is not a directory", f.value),
                    ));
                }
                Some(p)
            }
        };
        for d in &s.depends_on {
            if !names.contains(d.value.as_str()) {
                return Err(at(
                    d.referenced,
                    format!("service {name}: depends_on names no service {:?}", d.value),
                ));
            }
            if d.value == *name {
                return Err(at(
                    d.referenced,
                    format!("service {name} depends on itself"),
                ));
            }
        }
        let health = match &s.health {
            None => None,
            Some(h) => {
                let check = match (&h.value.url, &h.value.cmd) {
                    (Some(u), None) => Check::Url(u.clone()),
                    (None, Some(c)) => Check::Cmd(c.clone()),
                    _ => {
                        return Err(at(
                            h.referenced,
                            format!("service {name}: `health` needs `url` or `cmd` (one of them)"),
                        ));
                    }
                };
                let timeout = match &h.value.timeout {
                    None => DEFAULT_HEALTH_TIMEOUT,
                    Some(t) => deploy::action::parse_duration(&t.value).ok_or_else(|| {
                        at(
                            t.referenced,
                            format!(
                                "service {name}: `timeout` {:?} is not a duration like 30s or 2m",
                                t.value
                            ),
                        )
                    })?,
                };
                Some(HealthCheck { check, timeout })
            }
        };
        services.push(Service {
            name: name.clone(),
            image: s.image.as_ref().map(|i| i.value.clone()),
            command: s.command.as_ref().map(|c| c.value.clone()),
            files,
            env: s
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.value.to_string()))
                .collect(),
            ports: s.ports.iter().map(|p| p.value.clone()).collect(),
            network: s.network.as_ref().map(|n| n.value.clone()),
            health,
            depends_on: s.depends_on.iter().map(|d| d.value.clone()).collect(),
        });
    }
    if let Some(cycle) = find_cycle(&services) {
        let loc = raw
            .services
            .value
            .get(&cycle[0])
            .map_or(raw.services.referenced, |s| s.referenced);
        return Err(at(
            loc,
            format!("depends_on forms a cycle: {}", cycle.join(" -> ")),
        ));
    }
    Ok(AppFile { services })
}

/// A dependency cycle, as the names along it (first repeated at the end).
fn find_cycle(services: &[Service]) -> Option<Vec<String>> {
    let deps: BTreeMap<&str, &[String]> = services
        .iter()
        .map(|s| (s.name.as_str(), s.depends_on.as_slice()))
        .collect();
    fn visit<'a>(
        n: &'a str,
        deps: &BTreeMap<&'a str, &'a [String]>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| *s == n) {
            let mut c: Vec<String> = stack[pos..].iter().map(|s| (*s).to_owned()).collect();
            c.push(n.to_owned());
            return Some(c);
        }
        if !done.insert(n) {
            return None;
        }
        stack.push(n);
        for d in deps.get(n).copied().unwrap_or_default() {
            if let Some(c) = visit(d, deps, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for s in services {
        if let Some(c) = visit(&s.name, &deps, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check_err(text: &str, flavor: Flavor, expect: &str) {
        let e = parse(text, "app.yaml", Path::new("/nonexistent"), flavor)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(expect),
            "{e}\n  does not start with\n{expect}"
        );
    }

    #[test]
    fn a_full_docker_app() {
        let app = parse(
            "services:\n  db:\n    image: reg/db@sha256:1\n  web:\n    image: reg/web:1\n    command: httpd -f\n    env: {A: x, PORT: 8080, ON: true}\n    ports: [\"127.0.0.1:8080:80\", \"9000:9000/udp\"]\n    health: {url: \"http://127.0.0.1:8080/\", timeout: 5s}\n    depends_on: [db]\n",
            "app.yaml",
            Path::new("."),
            Flavor::Docker,
        )
        .unwrap();
        let web = &app.services[1];
        assert_eq!(web.env.get("PORT").map(String::as_str), Some("8080"));
        assert_eq!(web.env.get("ON").map(String::as_str), Some("true"));
        assert_eq!(
            web.health,
            Some(HealthCheck {
                check: Check::Url("http://127.0.0.1:8080/".into()),
                timeout: Duration::from_secs(5)
            })
        );
        assert_eq!(web.depends_on, ["db"]);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        check_err(
            "services:\n  web:\n    image: x\n    imgae: y\n",
            Flavor::Docker,
            "app.yaml:4:",
        );
        check_err(
            "services:\n  web:\n    command: x\n",
            Flavor::Docker,
            "app.yaml:3:5: service web: `image` is required",
        );
        check_err(
            "services:\n  web:\n    image: x\n",
            Flavor::Local,
            "app.yaml:3:5: service web: `command` is required",
        );
        check_err(
            "services:\n  web:\n    image: x\n    depends_on: [dbb]\n",
            Flavor::Docker,
            "app.yaml:4:18: service web: depends_on names no service \"dbb\"",
        );
        check_err(
            "services:\n  web:\n    image: x\n    ports: [\"80\"]\n",
            Flavor::Docker,
            "app.yaml:4:13: service web: port \"80\"",
        );
        check_err(
            "services:\n  web:\n    image: x\n    health: {timeout: 1s}\n",
            Flavor::Docker,
            "app.yaml:4:13: service web: `health` needs",
        );
        check_err(
            "services:\n  web:\n    image: x\n    health: {url: u, timeout: soon}\n",
            Flavor::Docker,
            "app.yaml:4:31: service web: `timeout` \"soon\"",
        );
        check_err(
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: y\n    depends_on: [a]\n",
            Flavor::Docker,
            "app.yaml:3:5: depends_on forms a cycle: a -> b -> a",
        );
        check_err(
            "services: {}\n",
            Flavor::Docker,
            "app.yaml:1:11: `services` is empty",
        );
        check_err(
            "services:\n  Web:\n    image: x\n",
            Flavor::Docker,
            "app.yaml:3:5: service name \"Web\"",
        );
        check_err(
            "services:\n  web:\n    command: x\n    files: ../etc\n",
            Flavor::Local,
            "app.yaml:4:12: service web: `files` must be",
        );
        check_err(
            "services:\n  web:\n    command: x\n    ports: [\"1:1\"]\n",
            Flavor::Local,
            "app.yaml:4:13: service web: `ports` is for the docker",
        );
        check_err("services: [a\n", Flavor::Docker, "app.yaml:");
    }

    #[test]
    fn ports() {
        for ok in ["80:80", "127.0.0.1:8080:80", "1:2/udp", "::1:1:2"] {
            assert!(valid_port(ok), "{ok}");
        }
        for bad in ["80", "a:b", "0:1", "1:2/sctp", "x:1:2", "1:2:3:4"] {
            assert!(!valid_port(bad), "{bad}");
        }
    }
}
