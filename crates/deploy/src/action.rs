//! The built-in `slipway/deploy-local|ssh|docker|kubernetes` actions: inputs in, outputs out.
//! Every input is documented in `docs/actions.md`.

use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;

use crate::rollout::{self, Health, Options};
use crate::source::Source;

/// A failed action; the message is for the step log and names the input or the failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ActionError(pub String);

fn err(msg: impl Into<String>) -> ActionError {
    ActionError(msg.into())
}

pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Inputs with helpers that name the input in their errors.
pub(crate) struct Inputs<'a> {
    action: &'a str,
    map: &'a IndexMap<String, String>,
}

impl<'a> Inputs<'a> {
    pub(crate) fn new(action: &'a str, map: &'a IndexMap<String, String>) -> Self {
        Inputs { action, map }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'a str> {
        // Actions accept `health-url` and `health_url` alike.
        let alt = name.replace('-', "_");
        self.map
            .get(name)
            .or_else(|| self.map.get(&alt))
            .map(String::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    pub(crate) fn required(&self, name: &str) -> Result<&'a str, ActionError> {
        self.get(name).ok_or_else(|| {
            err(format!(
                "slipway/{}: the input `{name}` is required",
                self.action
            ))
        })
    }

    pub(crate) fn duration(&self, name: &str, default: Duration) -> Result<Duration, ActionError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_duration(v).ok_or_else(|| {
                err(format!(
                    "slipway/{}: input `{name}`: {v:?} is not a duration (e.g. 30, 30s, 500ms, 2m)",
                    self.action
                ))
            }),
        }
    }

    pub(crate) fn number<T: std::str::FromStr>(
        &self,
        name: &str,
        default: T,
    ) -> Result<T, ActionError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                err(format!(
                    "slipway/{}: input `{name}`: {v:?} is not a number",
                    self.action
                ))
            }),
        }
    }

    /// `KEY=VALUE` lines (blank lines and `#` comments ignored).
    pub(crate) fn env(&self, name: &str) -> Result<Vec<(String, String)>, ActionError> {
        let Some(text) = self.get(name) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some((k, v))
                    if !k.trim().is_empty()
                        && k.trim()
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    out.push((k.trim().to_owned(), v.to_owned()))
                }
                _ => {
                    return Err(err(format!(
                        "slipway/{}: input `{name}` line {}: expected KEY=VALUE, got {line:?}",
                        self.action,
                        i + 1
                    )));
                }
            }
        }
        Ok(out)
    }

    /// The `image` or `artifact` input (exactly one).
    fn source(&self, workspace: &Path) -> Result<Source, ActionError> {
        let s = match (self.get("image"), self.get("artifact")) {
            (Some(_), Some(_)) => {
                return Err(err(format!(
                    "slipway/{}: give `image` or `artifact`, not both",
                    self.action
                )));
            }
            (Some(i), None) => Source::image(i, workspace),
            (None, Some(a)) => Source::artifact(a, workspace),
            (None, None) => {
                return Err(err(format!(
                    "slipway/{}: the input `image` or `artifact` is required",
                    self.action
                )));
            }
        };
        s.map_err(|e| err(format!("slipway/{}: {}", self.action, chain(&e))))
    }

    /// The source, pulled into `tmp` first when it names an image in a registry.
    async fn pulled_source(&self, workspace: &Path, tmp: &Path) -> Result<Source, ActionError> {
        let source = self.source(workspace)?;
        if !matches!(source, Source::Pulled { .. }) {
            return Ok(source);
        }
        let credentials = match (self.get("registry-username"), self.get("registry-password")) {
            (Some(u), Some(p)) => Some((u.to_owned(), p.to_owned())),
            (None, None) => None,
            _ => {
                return Err(err(format!(
                    "slipway/{}: give both `registry-username` and `registry-password`, or neither",
                    self.action
                )));
            }
        };
        crate::source::pull(source, tmp, credentials)
            .await
            .map_err(|e| err(format!("slipway/{}: {}", self.action, chain(&e))))
    }
}

/// `30`, `30s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    })
}

fn rollout_options(inp: &Inputs<'_>, root: String) -> Result<Options, ActionError> {
    let mut o = Options::new(root);
    o.command = inp.get("command").map(str::to_owned);
    o.pre = inp.get("pre").map(str::to_owned);
    o.post = inp.get("post").map(str::to_owned);
    o.env = inp.env("env")?;
    o.health = match (inp.get("health-url"), inp.get("health-cmd")) {
        (Some(_), Some(_)) => {
            return Err(err(format!(
                "slipway/{}: give `health-url` or `health-cmd`, not both",
                inp.action
            )));
        }
        (Some(u), None) => Some(Health::Url(u.to_owned())),
        (None, Some(c)) => Some(Health::Command(c.to_owned())),
        (None, None) => None,
    };
    o.health_timeout = inp.duration("health-timeout", rollout::DEFAULT_HEALTH_TIMEOUT)?;
    o.stop_timeout = inp.duration("stop-timeout", o.stop_timeout)?;
    o.keep = inp.number("keep", o.keep)?;
    Ok(o)
}

/// `image` and `target` outputs: what was deployed (the `image` or `artifact` input) and
/// where (`local:ROOT`, `ssh://USER@HOST:PORT/ROOT`).
fn outputs(d: &rollout::Deployed, inp: &Inputs<'_>, target: String) -> IndexMap<String, String> {
    let mut out = IndexMap::new();
    let what = inp.get("image").or_else(|| inp.get("artifact")).unwrap_or_default();
    out.insert("image".into(), what.to_owned());
    out.insert("target".into(), target);
    out.insert("release".into(), d.release.clone());
    out.insert("digest".into(), d.digest.clone());
    out.insert("previous".into(), d.previous.clone().unwrap_or_default());
    out
}

/// Runs `slipway/<name>` (`deploy-local`, `deploy-ssh`, `deploy-docker`,
/// `deploy-kubernetes`) with its evaluated `with:` inputs. Relative paths resolve against
/// `workspace`. Returns the step outputs (at least `digest` of what was deployed, when an
/// image was deployed, and `release`). `log` receives progress lines.
pub async fn run(
    name: &str,
    inputs: &IndexMap<String, String>,
    workspace: &Path,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<IndexMap<String, String>, ActionError> {
    let inp = Inputs::new(name, inputs);
    match name {
        "deploy-local" => {
            let tmp = pull_dir(name)?;
            let source = inp.pulled_source(workspace, tmp.path()).await?;
            let root = workspace.join(inp.required("root")?);
            let root = root
                .to_str()
                .ok_or_else(|| err(format!("slipway/{name}: `root` is not valid UTF-8")))?
                .to_owned();
            let opts = rollout_options(&inp, root)?;
            let target = format!("local:{}", opts.root);
            let d = rollout::deploy(&crate::host::LocalHost, &source, &opts, log)
                .await
                .map_err(|e| err(format!("slipway/{name}: {}", chain(&e))))?;
            Ok(outputs(&d, &inp, target))
        }
        "deploy-ssh" => {
            let tmp = pull_dir(name)?;
            let source = inp.pulled_source(workspace, tmp.path()).await?;
            let ssh = ssh_options(&inp, workspace)?;
            let root = inp.required("root")?.to_owned();
            let opts = rollout_options(&inp, root)?;
            log(&format!(
                "Connecting to {}@{}:{}",
                ssh.user, ssh.host, ssh.port
            ));
            let host = crate::ssh::SshHost::connect(&ssh)
                .await
                .map_err(|e| err(format!("slipway/{name}: {}", chain(&e))))?;
            let result = rollout::deploy(&host, &source, &opts, log).await;
            host.close().await;
            let d = result.map_err(|e| err(format!("slipway/{name}: {}", chain(&e))))?;
            let target = format!("ssh://{}@{}:{}{}", ssh.user, ssh.host, ssh.port, opts.root);
            Ok(outputs(&d, &inp, target))
        }
        "deploy-docker" => crate::docker::run_action(&inp, log).await,
        "deploy-kubernetes" => crate::kubernetes::run_action(&inp, workspace, log).await,
        other => Err(err(format!(
            "slipway/{other} is not a built-in action (there are deploy-local, deploy-ssh, deploy-docker, deploy-kubernetes)"
        ))),
    }
}

/// Where a registry image is pulled to (removed when the deploy ends).
fn pull_dir(name: &str) -> Result<tempfile::TempDir, ActionError> {
    tempfile::Builder::new()
        .prefix("slipway-pull-")
        .tempdir()
        .map_err(|e| {
            err(format!(
                "slipway/{name}: creating a temporary directory: {e}"
            ))
        })
}

fn ssh_options(inp: &Inputs<'_>, workspace: &Path) -> Result<crate::ssh::SshOptions, ActionError> {
    let host_in = inp.required("host")?;
    let (user_from_host, host) = match host_in.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, host_in),
    };
    let user = inp
        .get("user")
        .or(user_from_host)
        .unwrap_or("root")
        .to_owned();
    let port = inp.number("port", 22u16)?;
    let key_in = inp.required("key")?;
    let key = if key_in.starts_with("-----BEGIN") {
        key_in.to_owned()
    } else {
        workspace.join(key_in).display().to_string()
    };
    let known_in = inp.required("known-hosts")?;
    // A file path or the lines themselves.
    let known_hosts = if !known_in.contains(' ') {
        let p = workspace.join(known_in);
        std::fs::read_to_string(&p).map_err(|e| {
            err(format!(
                "slipway/deploy-ssh: input `known-hosts`: reading {}: {e}",
                p.display()
            ))
        })?
    } else {
        known_in.to_owned()
    };
    Ok(crate::ssh::SshOptions {
        host: host.to_owned(),
        port,
        user,
        key,
        known_hosts,
        connect_timeout: inp.duration("connect-timeout", Duration::from_secs(15))?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("2 weeks"), None);
        assert_eq!(parse_duration(""), None);
    }

    fn map(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_lines() {
        let m = map(&[("env", "A=1\n# c\n\nB = x=y\n")]);
        let i = Inputs::new("deploy-local", &m);
        assert_eq!(
            i.env("env").unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), " x=y".into())]
        );
        let m = map(&[("env", "A=1\nnope")]);
        let e = Inputs::new("deploy-local", &m)
            .env("env")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[tokio::test]
    async fn bad_inputs_are_named() {
        let ws = Path::new("/nonexistent");
        let check = |pairs: &[(&str, &str)], name: &str, expect: &str| {
            let m = map(pairs);
            let expect = expect.to_owned();
            let name = name.to_owned();
            async move {
                let e = run(&name, &m, ws, &|_| {}).await.unwrap_err().to_string();
                assert!(e.contains(&expect), "{e:?} should contain {expect:?}");
            }
        };
        check(&[], "deploy-local", "`image` or `artifact` is required").await;
        check(
            &[("image", "oci:x"), ("artifact", "y")],
            "deploy-local",
            "not both",
        )
        .await;
        check(&[("image", "oci:x")], "deploy-local", "`root` is required").await;
        check(
            &[("image", "oci:x"), ("root", "r"), ("keep", "many")],
            "deploy-local",
            "`keep`",
        )
        .await;
        check(
            &[
                ("image", "oci:x"),
                ("root", "r"),
                ("health-timeout", "soon"),
            ],
            "deploy-local",
            "`health-timeout`",
        )
        .await;
        check(
            &[
                ("image", "oci:x"),
                ("root", "r"),
                ("health-url", "u"),
                ("health-cmd", "c"),
            ],
            "deploy-local",
            "not both",
        )
        .await;
        check(
            &[("image", "oci:x"), ("host", "h")],
            "deploy-ssh",
            "`key` is required",
        )
        .await;
        check(
            &[("image", "i")],
            "deploy-kubernetes",
            "`manifests` is required",
        )
        .await;
        check(&[], "deploy-nowhere", "not a built-in action").await;
    }
}
