//! `docker/build-push-action` and `docker/login-action`, backed by the native builder and
//! client.
//!
//! The runner calls these with the step's inputs only, so the few settings that have no
//! input come from the process environment: `SOURCE_DATE_EPOCH`, the cache directory
//! (`SLIPWAY_CACHE_DIR`, `XDG_CACHE_HOME`, `HOME`) and the docker config (`DOCKER_CONFIG`).

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::build::{self, BuildOptions};
use crate::manifest::Compression;
use crate::output::{self, Output};
use crate::reference::Reference;
use crate::registry::credentials::{Credential, Credentials, DockerConfig};
use crate::registry::{Client, ClientOptions};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ActionError(pub String);

fn input<'a>(inputs: &'a IndexMap<String, String>, name: &str) -> Option<&'a str> {
    inputs.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// A list input: one item a line, or comma-separated (as the original actions accept).
fn list(inputs: &IndexMap<String, String>, name: &str, commas: bool) -> Vec<String> {
    let Some(v) = input(inputs, name) else {
        return vec![];
    };
    v.lines()
        .flat_map(|l| {
            if commas {
                l.split(',').map(str::to_string).collect::<Vec<_>>()
            } else {
                vec![l.to_string()]
            }
        })
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.starts_with('#'))
        .collect()
}

fn boolean(inputs: &IndexMap<String, String>, name: &str) -> bool {
    input(inputs, name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn pairs(items: Vec<String>, what: &str) -> Result<Vec<(String, String)>, ActionError> {
    items
        .into_iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| ActionError(format!("{what}: expected KEY=VALUE, got {kv:?}")))
        })
        .collect()
}

/// The cache directory from the environment (see the module docs).
pub fn cache_dir_from_env() -> PathBuf {
    if let Some(d) = std::env::var_os("SLIPWAY_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    build::default_cache_dir(xdg.as_deref(), home.as_deref())
}

/// `SOURCE_DATE_EPOCH` from the environment (0 when unset); an error when it is not a number.
pub fn source_date_epoch_from_env() -> Result<i64, String> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")),
        _ => Ok(0),
    }
}

fn resolve(workspace: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        workspace.join(p)
    }
}

/// Runs `docker/build-push-action` with its inputs (`context`, `file`, `tags`, `push`,
/// `build-args`, `labels`, `outputs`, `target`, `no-cache`, `pull`; multi-line/comma lists as
/// the original). Relative paths resolve against `workspace`. Returns the outputs `digest`,
/// `imageid`, `metadata`. `log` receives progress lines.
pub async fn build_push(
    inputs: &IndexMap<String, String>,
    workspace: &Path,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<IndexMap<String, String>, ActionError> {
    let context = resolve(workspace, input(inputs, "context").unwrap_or("."));
    let tags: Vec<Reference> = list(inputs, "tags", true)
        .iter()
        .map(|t| {
            t.parse::<Reference>()
                .map_err(|e| ActionError(format!("tags: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let outputs: Vec<Output> = list(inputs, "outputs", false)
        .iter()
        .map(|o| {
            o.parse::<Output>()
                .map(|out| match out {
                    // Relative destinations are the job's, not the runner process's.
                    Output::Oci(dir) => Output::Oci(resolve(workspace, &dir.to_string_lossy())),
                    Output::DockerArchive(file) => {
                        Output::DockerArchive(resolve(workspace, &file.to_string_lossy()))
                    }
                    other => other,
                })
                .map_err(|e| ActionError(format!("outputs: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let push = boolean(inputs, "push") || outputs.contains(&Output::Registry);
    if push && tags.is_empty() {
        return Err(ActionError(
            "push: true needs at least one tag in `tags`".into(),
        ));
    }
    let mut opts = BuildOptions::new(&context, cache_dir_from_env());
    opts.dockerfile = input(inputs, "file").map(|f| resolve(workspace, f));
    opts.build_args = pairs(list(inputs, "build-args", false), "build-args")?;
    opts.labels = pairs(list(inputs, "labels", false), "labels")?;
    opts.target = input(inputs, "target").map(str::to_string);
    opts.tags = tags.iter().map(|t| t.to_string()).collect();
    opts.no_cache = boolean(inputs, "no-cache");
    opts.pull = boolean(inputs, "pull");
    opts.source_date_epoch = source_date_epoch_from_env().map_err(ActionError)?;
    opts.compression = match input(inputs, "compression") {
        Some("gzip") => Compression::Gzip,
        Some("none") | None => Compression::None,
        Some(other) => {
            return Err(ActionError(format!(
                "compression: {other:?} is not none or gzip"
            )));
        }
    };
    let creds = Credentials::from_docker_config().map_err(|e| ActionError(format!("{e:#}")))?;
    let client =
        Client::new(creds, ClientOptions::default()).map_err(|e| ActionError(e.to_string()))?;
    let built = build::build(&opts, &client, log)
        .await
        .map_err(|e| ActionError(chain(&e)))?;
    let store = build::Store::open(&opts.cache_dir).map_err(|e| ActionError(chain(&e)))?;
    for o in &outputs {
        output::write(&store.layout, &built, &tags, o).map_err(|e| ActionError(chain(&e)))?;
    }
    if push {
        for r in output::push(&client, &store.layout, &built, &tags)
            .await
            .map_err(|e| ActionError(chain(&e)))?
        {
            log(&format!("pushed {} ({} blobs)", r.manifest, r.blobs.len()));
        }
    }
    let digest = built.manifest.digest.to_string();
    log(&format!("digest: {digest}"));
    let metadata = serde_json::json!({
        "containerimage.digest": digest,
        "containerimage.config.digest": built.config.digest.to_string(),
        "image.name": tags.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(","),
    });
    let mut out = IndexMap::new();
    out.insert("digest".to_string(), digest);
    out.insert("imageid".to_string(), built.config.digest.to_string());
    out.insert("metadata".to_string(), metadata.to_string());
    Ok(out)
}

/// Runs `docker/login-action` (`registry`, `username`, `password`): verifies the credentials
/// against the registry and stores them in the docker config, where the client finds them.
pub async fn login(
    inputs: &IndexMap<String, String>,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<IndexMap<String, String>, ActionError> {
    let registry = input(inputs, "registry").unwrap_or("docker.io");
    let username =
        input(inputs, "username").ok_or_else(|| ActionError("username is required".into()))?;
    let password =
        input(inputs, "password").ok_or_else(|| ActionError("password is required".into()))?;
    let cred = Credential {
        username: username.into(),
        password: password.into(),
    };
    login_and_store(
        registry,
        cred,
        DockerConfig::load_default().map_err(|e| ActionError(e.to_string()))?,
        false,
    )
    .await
    .map_err(ActionError)?;
    log(&format!("Login Succeeded ({registry})"));
    Ok(IndexMap::new())
}

/// Checks `cred` against `registry` and stores it in `config`.
pub async fn login_and_store(
    registry: &str,
    cred: Credential,
    mut config: DockerConfig,
    insecure: bool,
) -> Result<(), String> {
    let host = crate::registry::credentials::normalize_host(registry);
    let r: Reference = format!("{host}/library/x")
        .parse()
        .map_err(|e| format!("registry {registry:?}: {e}"))?;
    let client = Client::new(
        Credentials::none().with(&host, cred.clone()),
        ClientOptions {
            insecure,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    client
        .ping(&r)
        .await
        .map_err(|e| format!("logging in to {registry}: {}", chain(&e)))?;
    config.store(&host, &cred).map_err(|e| chain(&e))?;
    Ok(())
}

/// An error and its sources, `: `-separated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;

    type Out = Result<IndexMap<String, String>, ActionError>;

    // The runner boxes these futures as `Send` for any lifetime; this fails to compile if a
    // change makes them `!Send` (e.g. a borrowed closure held across an await).
    #[allow(dead_code)]
    fn build_push_is_send<'a>(
        i: &'a IndexMap<String, String>,
        w: &'a Path,
        l: &'a (dyn Fn(&str) + Send + Sync),
    ) -> Pin<Box<dyn Future<Output = Out> + Send + 'a>> {
        Box::pin(build_push(i, w, l))
    }
    #[allow(dead_code)]
    fn login_is_send<'a>(
        i: &'a IndexMap<String, String>,
        l: &'a (dyn Fn(&str) + Send + Sync),
    ) -> Pin<Box<dyn Future<Output = Out> + Send + 'a>> {
        Box::pin(login(i, l))
    }

    #[test]
    fn list_inputs_split_like_the_original() {
        let mut i = IndexMap::new();
        i.insert("tags".to_string(), "a:1, b:2\nc:3\n".to_string());
        assert_eq!(list(&i, "tags", true), ["a:1", "b:2", "c:3"]);
        i.insert("build-args".to_string(), "A=1,2\nB=3".to_string());
        assert_eq!(
            pairs(list(&i, "build-args", false), "build-args").unwrap(),
            [
                ("A".to_string(), "1,2".to_string()),
                ("B".to_string(), "3".to_string())
            ]
        );
    }
}
