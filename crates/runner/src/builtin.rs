//! Built-in actions, implemented in Rust (no download), with the inputs and outputs of the
//! originals: `actions/checkout`, `actions/upload-artifact`, `actions/download-artifact`,
//! `actions/cache`, `docker/build-push-action`, `docker/login-action`, and slipway's own
//! `slipway/deploy-local|ssh|docker|kubernetes` (crate `deploy`).
//!
//! Artifacts are content-addressed: file contents are stored once under
//! `ARTIFACTS/blobs/sha256/<hex>` and each artifact is a manifest
//! `ARTIFACTS/<name>/manifest.json` listing (path, sha256, size, mode). A manifest is written
//! to a temporary name and renamed, so an artifact is visible only when complete.

use std::io::Read;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use workflow::Step;

use crate::job::{JobRun, PostStep, StepResult};

const BUILTINS: &[&str] = &[
    "actions/checkout",
    "actions/upload-artifact",
    "actions/download-artifact",
    "actions/cache",
    "docker/build-push-action",
    "docker/login-action",
    "slipway/deploy-local",
    "slipway/deploy-ssh",
    "slipway/deploy-docker",
    "slipway/deploy-kubernetes",
    "slipway/promote",
];

/// Whether `owner/repo` (lowercase) is built in.
pub fn is_builtin(name: &str) -> bool {
    BUILTINS.contains(&name)
}

/// A failed built-in action.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("{0}")]
    Message(String),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BuiltinError {
    let path = path.to_path_buf();
    move |source| BuiltinError::Io { what, path, source }
}

fn msg(s: impl Into<String>) -> BuiltinError {
    BuiltinError::Message(s.into())
}

/// Runs a built-in action.
pub(crate) async fn run(
    job: &mut JobRun,
    name: &str,
    inputs: IndexMap<String, String>,
    step_no: usize,
    step: &Step,
) -> Result<StepResult, String> {
    let res = match name {
        "actions/checkout" => checkout(job, &inputs, step_no).await,
        "actions/upload-artifact" => upload_artifact(job, &inputs, step_no).await,
        "actions/download-artifact" => download_artifact(job, &inputs, step_no).await,
        "actions/cache" => cache_action(job, &inputs, step_no, step).await,
        "docker/build-push-action"
        | "docker/login-action"
        | "slipway/deploy-local"
        | "slipway/deploy-ssh"
        | "slipway/deploy-docker"
        | "slipway/deploy-kubernetes" => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let workspace = job.dirs.workspace.clone();
            if name == "docker/login-action"
                && let Some(p) = inputs.get("password")
            {
                job.masker.add(p);
            }
            for secret in ["registry-password", "password"] {
                if let Some(p) = inputs.get(secret).filter(|p| !p.is_empty()) {
                    job.masker.add(p);
                }
            }
            let action_name = name.to_owned();
            let action = async move {
                let log = move |line: &str| {
                    let _ = tx.send(line.to_owned());
                };
                match action_name.as_str() {
                    "docker/login-action" => oci::action::login(&inputs, &log).await.map_err(|e| e.to_string()),
                    "docker/build-push-action" => {
                        oci::action::build_push(&inputs, &workspace, &log).await.map_err(|e| e.to_string())
                    }
                    deploy => {
                        let target = deploy.trim_start_matches("slipway/");
                        deploy::action::run(target, &inputs, &workspace, &log).await.map_err(|e| e.to_string())
                    }
                }
            };
            // Progress lines are logged while the action runs.
            let forward = async {
                while let Some(line) = rx.recv().await {
                    job.log_system(Some(step_no), line).await;
                }
            };
            let (result, ()) = tokio::join!(action, forward);
            result.map(|o| o.into_iter().map(|(k, v)| (k, Value::String(v))).collect()).map_err(msg)
        }
        "slipway/promote" => {
            // The promote commit names its source commit and run (crate `gitops`).
            let mut inputs = inputs;
            let github = |k: &str| job.base.contexts.get("github").and_then(|g| g.get(k)).map(workflow::expr::to_string);
            for (input, key) in [("source-commit", "sha"), ("run", "run_id"), ("source-repository", "repository")] {
                if let Some(v) = github(key).filter(|v| !v.is_empty() && !inputs.contains_key(input)) {
                    inputs.insert(input.to_owned(), v);
                }
            }
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let action = async move {
                let log = move |line: &str| {
                    let _ = tx.send(line.to_owned());
                };
                gitops::promote::action(&inputs, &log).await.map_err(|e| e.to_string())
            };
            let forward = async {
                while let Some(line) = rx.recv().await {
                    job.log_system(Some(step_no), line).await;
                }
            };
            let (result, ()) = tokio::join!(action, forward);
            result.map(|o| o.into_iter().map(|(k, v)| (k, Value::String(v))).collect()).map_err(msg)
        }
        other => Err(msg(format!("`{other}` is not a built-in action"))),
    };
    match res {
        Ok(outputs) => Ok(StepResult::ok(outputs)),
        Err(e) => {
            let mut text = e.to_string();
            if let BuiltinError::Io { source, .. } = &e {
                text = format!("{text}: {source}");
            }
            if text.starts_with(name) {
                Err(text)
            } else {
                Err(format!("{name}: {text}"))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// checkout

async fn checkout(
    job: &mut JobRun,
    inputs: &IndexMap<String, String>,
    step_no: usize,
) -> Result<Map<String, Value>, BuiltinError> {
    let repo = job.shared.options.repo_root.clone();
    let current = job
        .base
        .contexts
        .get("github")
        .and_then(|g| g.get("repository"))
        .map(workflow::expr::to_string)
        .unwrap_or_default();
    let dest = match inputs.get("path").filter(|p| !p.is_empty()) {
        Some(p) => {
            let rel = Path::new(p);
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(msg(format!("path `{p}` must stay under the workspace")));
            }
            job.dirs.workspace.join(rel)
        }
        None => job.dirs.workspace.clone(),
    };
    if let Some(r) = inputs
        .get("repository")
        .filter(|r| !r.is_empty() && !r.eq_ignore_ascii_case(&current))
    {
        // Another repository: a shallow fetch from the actions base URL.
        let url = format!(
            "{}/{r}",
            job.shared.options.actions_url.trim_end_matches('/')
        );
        let git_ref = inputs
            .get("ref")
            .filter(|r| !r.is_empty())
            .cloned()
            .unwrap_or_else(|| "HEAD".into());
        job.log_system(Some(step_no), format!("Fetching {url} at {git_ref}"))
            .await;
        std::fs::create_dir_all(&dest).map_err(io("creating", &dest))?;
        for args in [
            vec!["init", "-q"],
            vec![
                "fetch",
                "-q",
                "--depth",
                "1",
                url.as_str(),
                git_ref.as_str(),
            ],
            vec![
                "-c",
                "advice.detachedHead=false",
                "checkout",
                "-q",
                "FETCH_HEAD",
            ],
        ] {
            let out = tokio::process::Command::new("git")
                .args(&args)
                .current_dir(&dest)
                .env("GIT_TERMINAL_PROMPT", "0")
                .kill_on_drop(true)
                .output()
                .await
                .map_err(io("running git in", &dest))?;
            if !out.status.success() {
                return Err(msg(format!(
                    "fetching `{r}` from {url}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        let mut out = Map::new();
        out.insert("ref".into(), Value::String(git_ref));
        return Ok(out);
    }
    job.log_system(
        Some(step_no),
        format!("Copying {} to {}", repo.display(), dest.display()),
    )
    .await;
    let count = tokio::task::spawn_blocking(move || copy_repo(&repo, &dest))
        .await
        .map_err(|e| msg(format!("checkout task: {e}")))??;
    job.log_system(Some(step_no), format!("Copied {count} files"))
        .await;
    let mut out = Map::new();
    let sha = job
        .base
        .contexts
        .get("github")
        .and_then(|g| g.get("sha"))
        .map(workflow::expr::to_string)
        .unwrap_or_default();
    out.insert("commit".into(), Value::String(sha));
    out.insert("ref".into(), Value::String(String::new()));
    Ok(out)
}

/// Copies the files git knows about (tracked and untracked-not-ignored) when `src` is a git
/// work tree, else everything. Returns the number of files copied.
fn copy_repo(src: &Path, dest: &Path) -> Result<usize, BuiltinError> {
    std::fs::create_dir_all(dest).map_err(io("creating", dest))?;
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-co", "--exclude-standard", "-z"])
        .current_dir(src)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success());
    let files: Vec<PathBuf> = match listed {
        Some(out) => out
            .stdout
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| PathBuf::from(String::from_utf8_lossy(s).into_owned()))
            .collect(),
        None => walkdir::WalkDir::new(src)
            .min_depth(1)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| !e.file_type().is_dir())
            .filter_map(|e| e.path().strip_prefix(src).ok().map(Path::to_path_buf))
            .filter(|p| !dest.starts_with(src.join(p)))
            .collect(),
    };
    let mut n = 0;
    for rel in files {
        let from = src.join(&rel);
        let to = dest.join(&rel);
        let Ok(meta) = std::fs::symlink_metadata(&from) else {
            continue;
        }; // deleted in the work tree
        if meta.is_dir() {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&from).map_err(io("reading link", &from))?;
            let _ = std::fs::remove_file(&to);
            std::os::unix::fs::symlink(target, &to).map_err(io("creating link", &to))?;
        } else {
            std::fs::copy(&from, &to).map_err(io("copying to", &to))?;
        }
        n += 1;
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------
// artifacts

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    name: String,
    files: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManifestEntry {
    path: String,
    sha256: String,
    size: u64,
    mode: u32,
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The files matched by upload-artifact/cache style path lines (globs, `!` excludes),
/// relative to the least common ancestor of the search roots.
fn collect_files(
    base: &Path,
    patterns: &[String],
) -> Result<(PathBuf, Vec<PathBuf>), BuiltinError> {
    let mut includes = Vec::new();
    let mut excludes = globset::GlobSetBuilder::new();
    for p in patterns {
        if let Some(ex) = p.strip_prefix('!') {
            let abs = base.join(ex);
            let g = globset::Glob::new(&abs.to_string_lossy())
                .map_err(|e| msg(format!("bad pattern `{p}`: {e}")))?;
            excludes.add(g);
        } else {
            includes.push(base.join(p));
        }
    }
    let excludes = excludes.build().map_err(|e| msg(e.to_string()))?;
    let mut roots = Vec::new();
    let mut files = Vec::new();
    for inc in includes {
        let s = inc.to_string_lossy().into_owned();
        if has_glob(&s) {
            let literal: PathBuf = inc
                .components()
                .take_while(|c| !has_glob(&c.as_os_str().to_string_lossy()))
                .collect();
            let g = globset::GlobBuilder::new(&s)
                .literal_separator(true)
                .build()
                .map_err(|e| msg(format!("bad pattern `{s}`: {e}")))?;
            let m = g.compile_matcher();
            roots.push(literal.clone());
            for e in walkdir::WalkDir::new(&literal)
                .into_iter()
                .filter_map(Result::ok)
            {
                if m.is_match(e.path()) {
                    if e.file_type().is_dir() {
                        for f in walkdir::WalkDir::new(e.path())
                            .into_iter()
                            .filter_map(Result::ok)
                        {
                            if f.file_type().is_file() {
                                files.push(f.path().to_path_buf());
                            }
                        }
                    } else if e.file_type().is_file() {
                        files.push(e.path().to_path_buf());
                    }
                }
            }
        } else if inc.is_dir() {
            roots.push(inc.clone());
            for f in walkdir::WalkDir::new(&inc)
                .into_iter()
                .filter_map(Result::ok)
            {
                if f.file_type().is_file() {
                    files.push(f.path().to_path_buf());
                }
            }
        } else if inc.is_file() {
            roots.push(inc.parent().map(Path::to_path_buf).unwrap_or_default());
            files.push(inc.clone());
        }
    }
    files.retain(|f| !excludes.is_match(f));
    files.sort();
    files.dedup();
    let root = common_ancestor(&roots).unwrap_or_else(|| base.to_path_buf());
    Ok((root, files))
}

fn common_ancestor(paths: &[PathBuf]) -> Option<PathBuf> {
    let mut it = paths.iter();
    let mut acc = it.next()?.clone();
    for p in it {
        while !p.starts_with(&acc) {
            if !acc.pop() {
                return Some(PathBuf::from("/"));
            }
        }
    }
    Some(acc)
}

fn valid_artifact_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with("blobs")
        && !name.contains([
            '/', '\\', '"', ':', '<', '>', '|', '*', '?', '\r', '\n', '\0',
        ])
}

fn sha256_file(path: &Path) -> Result<String, BuiltinError> {
    let mut f = std::fs::File::open(path).map_err(io("opening", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn store_blob(store: &Path, file: &Path) -> Result<(String, u64, u32), BuiltinError> {
    use std::os::unix::fs::PermissionsExt;
    let digest = sha256_file(file)?;
    let meta = std::fs::metadata(file).map_err(io("reading", file))?;
    let blob_dir = store.join("blobs").join("sha256");
    let blob = blob_dir.join(&digest);
    if !blob.exists() {
        std::fs::create_dir_all(&blob_dir).map_err(io("creating", &blob_dir))?;
        let tmp = blob_dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::copy(file, &tmp).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &blob).map_err(io("writing", &blob))?;
    }
    Ok((digest, meta.len(), meta.permissions().mode() & 0o777))
}

fn upload(
    store: &Path,
    name: &str,
    root: &Path,
    files: &[PathBuf],
) -> Result<(String, usize), BuiltinError> {
    let mut entries = Vec::new();
    for f in files {
        let (sha256, size, mode) = store_blob(store, f)?;
        let rel = f
            .strip_prefix(root)
            .unwrap_or(f)
            .to_string_lossy()
            .into_owned();
        entries.push(ManifestEntry {
            path: rel,
            sha256,
            size,
            mode,
        });
    }
    let manifest = Manifest {
        name: name.to_owned(),
        files: entries,
    };
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| msg(e.to_string()))?;
    let digest = hex::encode(Sha256::digest(&body));
    let tmp_dir = store.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&tmp_dir).map_err(io("creating", &tmp_dir))?;
    std::fs::write(tmp_dir.join("manifest.json"), &body).map_err(io("writing", &tmp_dir))?;
    let dest = store.join(name);
    if dest.exists() {
        let old = store.join(format!(".old-{}", uuid::Uuid::new_v4().simple()));
        std::fs::rename(&dest, &old).map_err(io("replacing", &dest))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    std::fs::rename(&tmp_dir, &dest).map_err(io("publishing", &dest))?;
    Ok((digest, manifest.files.len()))
}

fn download(store: &Path, name: &str, dest: &Path) -> Result<usize, BuiltinError> {
    use std::os::unix::fs::PermissionsExt;
    let mpath = store.join(name).join("manifest.json");
    let text = std::fs::read(&mpath)
        .map_err(|_| msg(format!("Unable to find an artifact with the name: {name}")))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| msg(format!("{}: {e}", mpath.display())))?;
    for e in &manifest.files {
        let rel = Path::new(&e.path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(msg(format!(
                "artifact `{name}` holds an unsafe path `{}`",
                e.path
            )));
        }
        let to = dest.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        let blob = store.join("blobs").join("sha256").join(&e.sha256);
        std::fs::copy(&blob, &to).map_err(io("writing", &to))?;
        let _ = std::fs::set_permissions(&to, std::fs::Permissions::from_mode(e.mode | 0o200));
    }
    Ok(manifest.files.len())
}

async fn upload_artifact(
    job: &mut JobRun,
    inputs: &IndexMap<String, String>,
    step_no: usize,
) -> Result<Map<String, Value>, BuiltinError> {
    let name = inputs
        .get("name")
        .filter(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| "artifact".into());
    if !valid_artifact_name(&name) {
        return Err(msg(format!("invalid artifact name `{name}`")));
    }
    let patterns = lines(inputs.get("path").map(String::as_str).unwrap_or(""));
    if patterns.is_empty() {
        return Err(msg("input `path` is required"));
    }
    let if_none = inputs
        .get("if-no-files-found")
        .map(|s| s.to_lowercase())
        .unwrap_or_else(|| "warn".into());
    let store = job.shared.artifact_dir.clone();
    let workspace = job.dirs.workspace.clone();
    let (root, files) = {
        let p = patterns.clone();
        tokio::task::spawn_blocking(move || collect_files(&workspace, &p))
            .await
            .map_err(|e| msg(e.to_string()))??
    };
    if files.is_empty() {
        let text = format!(
            "No files were found with the provided path: {}. No artifacts will be uploaded.",
            patterns.join(", ")
        );
        match if_none.as_str() {
            "error" => return Err(msg(text)),
            "ignore" => job.log_system(Some(step_no), text).await,
            _ => job.annotate(Some(step_no), "warning", text).await,
        }
        return Ok(Map::new());
    }
    let n2 = name.clone();
    let (digest, count) = tokio::task::spawn_blocking(move || upload(&store, &n2, &root, &files))
        .await
        .map_err(|e| msg(e.to_string()))??;
    job.log_system(
        Some(step_no),
        format!("Uploaded artifact `{name}`: {count} files (sha256:{digest})"),
    )
    .await;
    let mut out = Map::new();
    out.insert("artifact-id".into(), Value::String(digest[..16].to_owned()));
    out.insert("artifact-url".into(), Value::String(String::new()));
    out.insert("artifact-digest".into(), Value::String(digest));
    Ok(out)
}

async fn download_artifact(
    job: &mut JobRun,
    inputs: &IndexMap<String, String>,
    step_no: usize,
) -> Result<Map<String, Value>, BuiltinError> {
    let store = job.shared.artifact_dir.clone();
    let dest = match inputs.get("path").filter(|p| !p.is_empty()) {
        Some(p) => {
            let p = expand_home(p);
            if p.is_absolute() {
                p
            } else {
                job.dirs.workspace.join(p)
            }
        }
        None => job.dirs.workspace.clone(),
    };
    let names: Vec<(String, PathBuf)> = match inputs.get("name").filter(|n| !n.is_empty()) {
        Some(n) => vec![(n.clone(), dest.clone())],
        None => {
            let pattern = inputs
                .get("pattern")
                .filter(|p| !p.is_empty())
                .map(|p| globset::Glob::new(p).map(|g| g.compile_matcher()));
            let pattern = pattern
                .transpose()
                .map_err(|e| msg(format!("bad pattern: {e}")))?;
            let merge = inputs.get("merge-multiple").is_some_and(|m| m == "true");
            let mut names = Vec::new();
            if let Ok(rd) = std::fs::read_dir(&store) {
                for e in rd.filter_map(Result::ok) {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with('.')
                        || n == "blobs"
                        || !e.path().join("manifest.json").is_file()
                    {
                        continue;
                    }
                    if pattern.as_ref().is_some_and(|p| !p.is_match(&n)) {
                        continue;
                    }
                    let d = if merge { dest.clone() } else { dest.join(&n) };
                    names.push((n, d));
                }
            }
            names.sort();
            names
        }
    };
    let mut total = 0;
    for (name, d) in names {
        let s = store.clone();
        let n2 = name.clone();
        let count = tokio::task::spawn_blocking(move || download(&s, &n2, &d))
            .await
            .map_err(|e| msg(e.to_string()))??;
        job.log_system(
            Some(step_no),
            format!("Downloaded artifact `{name}`: {count} files"),
        )
        .await;
        total += count;
    }
    let _ = total;
    let mut out = Map::new();
    out.insert(
        "download-path".into(),
        Value::String(dest.to_string_lossy().into_owned()),
    );
    Ok(out)
}

fn expand_home(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(rest))
            .unwrap_or_else(|| PathBuf::from(p)),
        None => PathBuf::from(p),
    }
}

// ---------------------------------------------------------------------------------------
// cache

/// Where `actions/cache` keeps its entries: [`LocalCache`] (a directory, the default) or
/// the server's (the agent implements this over its HTTP API).
///
/// An entry is identified by its key and its version (a digest of the cached paths, see
/// [`cache_version`]); entries are immutable: the first save of a (key, version) wins.
#[async_trait::async_trait]
pub trait CacheBackend: Send + Sync + std::fmt::Debug {
    /// The key of the entry `keys` select: `keys[0]` (the primary key) exactly, then each
    /// key in order as a prefix (newest entry first), all with `version`. `None`: a miss.
    async fn lookup(&self, keys: &[String], version: &str) -> Result<Option<String>, CacheError>;

    /// As [`lookup`](CacheBackend::lookup), and makes the entry's archive available as a
    /// local file: the backend's own, or one it downloads into `scratch` (a directory
    /// that exists and is removed by the caller).
    async fn restore(
        &self,
        keys: &[String],
        version: &str,
        scratch: &Path,
    ) -> Result<Option<CacheHit>, CacheError>;

    /// Stores the archive `tar` as the entry (`key`, `version`), unless it exists or another
    /// job is saving it. `tar` is the caller's scratch file: the backend may move it.
    async fn save(&self, key: &str, version: &str, tar: &Path) -> Result<CacheSaved, CacheError>;
}

/// An entry found by [`CacheBackend::restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheHit {
    /// The key the entry was saved with.
    pub key: String,
    /// The entry's tar archive.
    pub tar: PathBuf,
}

/// What [`CacheBackend::save`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSaved {
    Saved,
    /// The entry exists, or another job reserved it first: nothing was stored.
    Exists,
}

/// A cache backend that failed (the step logs a warning and goes on, as `actions/cache`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CacheError(pub String);

/// The version of a cache entry: which paths it holds and how it is archived (so that a
/// key saved for other paths is not restored), as `actions/cache` computes it.
pub fn cache_version(paths: &[String]) -> String {
    let mut h = Sha256::new();
    for p in paths {
        h.update(p.as_bytes());
        h.update(b"|");
    }
    h.update(b"slipway-tar-1");
    hex::encode(h.finalize())
}

/// Entries in a directory: `DIR/<version>/<sha256(key)>.tar` and `.key` (the key's text).
/// An entry appears by a rename once complete.
#[derive(Debug, Clone)]
pub struct LocalCache {
    root: PathBuf,
}

impl LocalCache {
    pub fn new(root: PathBuf) -> LocalCache {
        LocalCache { root }
    }

    fn find(&self, keys: &[String], version: &str) -> Option<(String, PathBuf)> {
        let dir = self.root.join(version);
        let mut stored: Vec<(std::time::SystemTime, String, PathBuf)> = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.filter_map(Result::ok) {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "key")
                    && let Ok(k) = std::fs::read_to_string(&p)
                {
                    let tar = p.with_extension("tar");
                    if let Ok(t) = std::fs::metadata(&tar).and_then(|m| m.modified()) {
                        stored.push((t, k, tar));
                    }
                }
            }
        }
        stored.sort_by_key(|s| std::cmp::Reverse(s.0));
        pick(
            &stored
                .iter()
                .map(|(_, k, t)| (k.as_str(), t))
                .collect::<Vec<_>>(),
            keys,
        )
        .map(|(k, t)| (k.to_owned(), t.clone()))
    }
}

/// `actions/cache`'s matching over `entries` (newest first): the first key exactly, then
/// every key in order as a prefix.
fn pick<'a, T>(entries: &[(&'a str, T)], keys: &[String]) -> Option<(&'a str, T)>
where
    T: Copy,
{
    let exact = keys
        .first()
        .and_then(|k| entries.iter().find(|(e, _)| e == k));
    exact
        .or_else(|| {
            keys.iter()
                .find_map(|k| entries.iter().find(|(e, _)| e.starts_with(k.as_str())))
        })
        .copied()
}

#[async_trait::async_trait]
impl CacheBackend for LocalCache {
    async fn lookup(&self, keys: &[String], version: &str) -> Result<Option<String>, CacheError> {
        Ok(self.find(keys, version).map(|(k, _)| k))
    }

    async fn restore(
        &self,
        keys: &[String],
        version: &str,
        _scratch: &Path,
    ) -> Result<Option<CacheHit>, CacheError> {
        Ok(self
            .find(keys, version)
            .map(|(key, tar)| CacheHit { key, tar }))
    }

    async fn save(&self, key: &str, version: &str, tar: &Path) -> Result<CacheSaved, CacheError> {
        let dir = self.root.join(version);
        std::fs::create_dir_all(&dir)
            .map_err(|e| CacheError(format!("creating {}: {e}", dir.display())))?;
        let hash = key_hash(key);
        let dest = dir.join(format!("{hash}.tar"));
        if dest.exists() {
            return Ok(CacheSaved::Exists);
        }
        let staged = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        if std::fs::rename(tar, &staged).is_err() {
            // Another file system: copy.
            std::fs::copy(tar, &staged).map_err(|e| {
                CacheError(format!(
                    "copying {} to {}: {e}",
                    tar.display(),
                    staged.display()
                ))
            })?;
        }
        let key_file = dir.join(format!("{hash}.key"));
        std::fs::write(&key_file, key.as_bytes())
            .map_err(|e| CacheError(format!("writing {}: {e}", key_file.display())))?;
        std::fs::rename(&staged, &dest)
            .map_err(|e| CacheError(format!("writing {}: {e}", dest.display())))?;
        Ok(CacheSaved::Saved)
    }
}

/// What the post step of `actions/cache` saves.
#[derive(Debug, Clone)]
pub(crate) struct CacheSave {
    key: String,
    version: String,
    paths: Vec<String>,
}

fn cache_backend(job: &JobRun) -> std::sync::Arc<dyn CacheBackend> {
    match &job.shared.options.cache {
        Some(b) => b.clone(),
        None => std::sync::Arc::new(LocalCache::new(job.shared.options.cache_dir.join("cache"))),
    }
}

fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A scratch directory under the job's temp dir, removed on drop.
fn scratch_dir(job: &JobRun) -> Result<tempfile::TempDir, BuiltinError> {
    let parent = job.shared.options.work_root.clone();
    std::fs::create_dir_all(&parent).map_err(io("creating", &parent))?;
    tempfile::Builder::new()
        .prefix(".cache-")
        .tempdir_in(&parent)
        .map_err(io("creating a directory in", &parent))
}

/// Which of `actions/cache`, `actions/cache/restore` and `actions/cache/save` a step uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheMode {
    /// Restore, and save in a post step after a miss.
    Both,
    RestoreOnly,
    SaveOnly,
}

async fn cache_action(
    job: &mut JobRun,
    inputs: &IndexMap<String, String>,
    step_no: usize,
    step: &Step,
) -> Result<Map<String, Value>, BuiltinError> {
    let path = match &step.kind {
        workflow::StepKind::Uses {
            action: workflow::ActionRef::Remote { path, .. },
            ..
        } => path.as_deref().map(|p| p.trim_matches('/')),
        _ => None,
    };
    match path {
        None | Some("") => cache_restore(job, inputs, step_no, step, CacheMode::Both).await,
        Some("restore") => cache_restore(job, inputs, step_no, step, CacheMode::RestoreOnly).await,
        Some("save") => cache_restore(job, inputs, step_no, step, CacheMode::SaveOnly).await,
        Some(other) => Err(msg(format!(
            "actions/cache/{other} does not exist (actions/cache, actions/cache/restore, actions/cache/save)"
        ))),
    }
}

async fn cache_restore(
    job: &mut JobRun,
    inputs: &IndexMap<String, String>,
    step_no: usize,
    step: &Step,
    mode: CacheMode,
) -> Result<Map<String, Value>, BuiltinError> {
    let key = inputs
        .get("key")
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| msg("input `key` is required"))?;
    let paths = lines(inputs.get("path").map(String::as_str).unwrap_or(""));
    if paths.is_empty() {
        return Err(msg("input `path` is required"));
    }
    let restore_keys = lines(inputs.get("restore-keys").map(String::as_str).unwrap_or(""));
    let version = cache_version(&paths);
    let keys: Vec<String> = std::iter::once(key.clone()).chain(restore_keys).collect();
    // As @actions/cache's restoreCache.
    if keys.len() > 10 {
        return Err(msg(
            "Key Validation Error: Keys are limited to a maximum of 10.",
        ));
    }
    for k in &keys {
        if k.len() > 512 {
            return Err(msg(format!(
                "Key Validation Error: {k} cannot be larger than 512 characters."
            )));
        }
        if k.contains(',') {
            return Err(msg(format!(
                "Key Validation Error: {k} cannot contain commas."
            )));
        }
    }
    if mode == CacheMode::SaveOnly {
        let save = CacheSave {
            key,
            version,
            paths,
        };
        cache_save(job, &save, step_no).await?;
        return Ok(Map::new());
    }
    let lookup_only = inputs.get("lookup-only").is_some_and(|v| v == "true");
    let backend = cache_backend(job);
    let found: Result<Option<String>, CacheError> = if lookup_only {
        backend.lookup(&keys, &version).await
    } else {
        let scratch = scratch_dir(job)?;
        match backend.restore(&keys, &version, scratch.path()).await {
            Ok(Some(hit)) => {
                let ws = job.dirs.workspace.clone();
                let tar = hit.tar.clone();
                tokio::task::spawn_blocking(move || unpack_cache(&tar, &ws))
                    .await
                    .map_err(|e| msg(e.to_string()))??;
                Ok(Some(hit.key))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            // As actions/cache: a cache service that fails is a warning, and a miss.
            job.annotate(Some(step_no), "warning", format!("Failed to restore: {e}"))
                .await;
            None
        }
    };
    let hit = found.as_ref().is_some_and(|k| *k == key);
    let mut out = Map::new();
    match &found {
        Some(matched) => {
            job.log_system(Some(step_no), format!("Cache restored from key: {matched}"))
                .await;
            out.insert("cache-matched-key".into(), Value::String(matched.clone()));
        }
        None => {
            job.log_system(
                Some(step_no),
                format!("Cache not found for input keys: {}", keys.join(", ")),
            )
            .await;
            if inputs
                .get("fail-on-cache-miss")
                .is_some_and(|v| v == "true")
            {
                return Err(msg(format!(
                    "Failed to restore cache entry. Exiting as fail-on-cache-miss is set. Input key: {key}"
                )));
            }
        }
    }
    out.insert("cache-hit".into(), Value::String(hit.to_string()));
    if mode == CacheMode::RestoreOnly {
        out.insert("cache-primary-key".into(), Value::String(key));
        return Ok(out);
    }
    if !hit {
        let name = step
            .name
            .as_ref()
            .map(|n| n.source().to_owned())
            .unwrap_or_else(|| "actions/cache".into());
        job.post.push(PostStep::Cache {
            name,
            save: CacheSave {
                key,
                version,
                paths,
            },
        });
    }
    Ok(out)
}

/// Saves a cache entry (the post step of `actions/cache`).
pub(crate) async fn cache_save(
    job: &mut JobRun,
    save: &CacheSave,
    step_no: usize,
) -> Result<(), BuiltinError> {
    let backend = cache_backend(job);
    let scratch = scratch_dir(job)?;
    let ws = job.dirs.workspace.clone();
    let paths = save.paths.clone();
    let tar = scratch.path().join("cache.tar");
    let t2 = tar.clone();
    let count = tokio::task::spawn_blocking(move || pack_cache(&t2, &ws, &paths))
        .await
        .map_err(|e| msg(e.to_string()))??;
    if count == 0 {
        job.annotate(Some(step_no), "warning", "Path Validation Error: Path(s) specified in the action for caching do(es) not exist, hence no cache is being saved.".into()).await;
        return Ok(());
    }
    match backend.save(&save.key, &save.version, &tar).await {
        Ok(CacheSaved::Saved) => {
            job.log_system(Some(step_no), format!("Cache saved with key: {}", save.key))
                .await;
        }
        Ok(CacheSaved::Exists) => {
            job.log_system(
                Some(step_no),
                format!(
                    "Failed to save: Unable to reserve cache with key {}, another job may be creating this cache.",
                    save.key
                ),
            )
            .await;
        }
        Err(e) => {
            job.annotate(Some(step_no), "warning", format!("Failed to save: {e}"))
                .await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod cache_tests {
    use super::pick;

    /// `entries` newest first; the key `keys` select.
    fn check(entries: &[&str], keys: &[&str], expect: Option<&str>) {
        let entries: Vec<(&str, ())> = entries.iter().map(|e| (*e, ())).collect();
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        assert_eq!(pick(&entries, &keys).map(|(k, ())| k), expect, "{keys:?}");
    }

    #[test]
    fn exact_key_then_prefixes_newest_first() {
        check(&["deps-2", "deps-1"], &["deps-1", "deps-"], Some("deps-1"));
        check(&["deps-2", "deps-1"], &["deps-3", "deps-"], Some("deps-2"));
        check(&["deps-10", "deps-1"], &["deps-1"], Some("deps-1"));
        check(&["deps-10"], &["deps-1"], Some("deps-10"));
        check(
            &["other-1", "deps-1"],
            &["x", "other", "deps"],
            Some("other-1"),
        );
        check(&["deps-1"], &["x", "y"], None);
        check(&[], &["deps-1"], None);
    }
}

/// Tar entries: `w/<rel>` for paths inside the workspace, `a/<abs>` for others.
fn pack_cache(
    tar_path: &Path,
    workspace: &Path,
    patterns: &[String],
) -> Result<usize, BuiltinError> {
    let mut expanded = Vec::new();
    for p in patterns {
        let (neg, body) = match p.strip_prefix('!') {
            Some(b) => ("!", b),
            None => ("", p.as_str()),
        };
        let e = expand_home(body);
        let abs = if e.is_absolute() {
            e
        } else {
            workspace.join(e)
        };
        expanded.push(format!("{neg}{}", abs.to_string_lossy()));
    }
    let (_, files) = collect_files(Path::new("/"), &expanded)?;
    let f = std::fs::File::create(tar_path).map_err(io("creating", tar_path))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    b.follow_symlinks(false);
    for file in &files {
        let name = match file.strip_prefix(workspace) {
            Ok(rel) => Path::new("w").join(rel),
            Err(_) => Path::new("a").join(file.strip_prefix("/").unwrap_or(file)),
        };
        b.append_path_with_name(file, &name)
            .map_err(io("archiving", file))?;
    }
    b.into_inner().map_err(io("writing", tar_path))?;
    Ok(files.len())
}

fn unpack_cache(tar_path: &Path, workspace: &Path) -> Result<(), BuiltinError> {
    let f = std::fs::File::open(tar_path).map_err(io("opening", tar_path))?;
    let mut a = tar::Archive::new(std::io::BufReader::new(f));
    for entry in a.entries().map_err(io("reading", tar_path))? {
        let mut entry = entry.map_err(io("reading", tar_path))?;
        let path = entry.path().map_err(io("reading", tar_path))?.into_owned();
        let mut comps = path.components();
        let base = match comps
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .as_deref()
        {
            Some("w") => workspace.to_path_buf(),
            Some("a") => PathBuf::from("/"),
            _ => continue,
        };
        let rel: PathBuf = comps.collect();
        if rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            continue;
        }
        let to = base.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        entry.unpack(&to).map_err(io("restoring", &to))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_round_trip_is_content_addressed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("out/sub")).expect("mkdir");
        std::fs::write(ws.join("out/a.txt"), "same").expect("write");
        std::fs::write(ws.join("out/sub/b.txt"), "same").expect("write");
        std::fs::write(ws.join("out/skip.log"), "x").expect("write");
        let (root, files) =
            collect_files(&ws, &["out/**".into(), "!out/*.log".into()]).expect("collect");
        assert_eq!(root, ws.join("out"));
        assert_eq!(files.len(), 2);
        let store = dir.path().join("store");
        let (_, n) = upload(&store, "dist", &root, &files).expect("upload");
        assert_eq!(n, 2);
        assert_eq!(
            std::fs::read_dir(store.join("blobs/sha256"))
                .expect("blobs")
                .count(),
            1
        );
        let dest = dir.path().join("dest");
        assert_eq!(download(&store, "dist", &dest).expect("download"), 2);
        assert_eq!(
            std::fs::read_to_string(dest.join("sub/b.txt")).expect("read"),
            "same"
        );
        assert!(download(&store, "nope", &dest).is_err());
    }

    #[test]
    fn artifact_names() {
        assert!(valid_artifact_name("dist-1"));
        assert!(!valid_artifact_name("a/b"));
        assert!(!valid_artifact_name(""));
        assert!(!valid_artifact_name(".."));
    }
}
