//! The server's Git cache: one bare mirror per repository under `{data}/git/`, filled with
//! the `git` binary (`git fetch origin SHA`), and reads of files at a commit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::process::Command;

/// The workflow directories, in the order the first existing one wins.
pub const WORKFLOW_DIRS: &[&str] = &[".slipway/workflows", ".gitea/workflows", ".forgejo/workflows", ".github/workflows"];

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("running `git {args}`")]
    Spawn {
        args: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`git {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("creating {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs git in `dir` and returns stdout.
pub async fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| GitError::Spawn { args: args.join(" "), source })?;
    if !output.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output.stdout)
}

/// The bare mirrors, one per repository (a fetch into one mirror at a time).
#[derive(Debug, Clone)]
pub struct Mirrors {
    root: PathBuf,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Mirrors {
    pub fn new(root: PathBuf) -> Mirrors {
        Mirrors { root, locks: Arc::default() }
    }

    fn dir(&self, repo: &str) -> PathBuf {
        let safe: String = repo.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
        self.root.join(format!("{safe}.git"))
    }

    /// Fetches `what` (a commit SHA or a ref) from `clone_url` into the mirror of `repo`
    /// and returns the commit it names and the mirror's directory.
    pub async fn fetch(&self, repo: &str, clone_url: &str, what: &str) -> Result<(String, PathBuf), GitError> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(repo.to_owned()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let dir = self.dir(repo);
        if !dir.join("HEAD").is_file() {
            std::fs::create_dir_all(&dir).map_err(|source| GitError::Create { path: dir.clone(), source })?;
            git(&dir, &["init", "--bare", "--quiet"]).await?;
        }
        git(&dir, &["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", clone_url, &format!("+{what}:refs/slipway/fetched")])
            .await?;
        // A full commit id names itself (fetching it succeeded, so it is there); a ref needs
        // resolving.
        if what.len() == 40 && what.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok((what.to_ascii_lowercase(), dir));
        }
        let sha = git(&dir, &["rev-parse", "--verify", "refs/slipway/fetched^{commit}"]).await?;
        Ok((String::from_utf8_lossy(&sha).trim().to_owned(), dir))
    }
}

/// The workflow files at `sha`: the `.yml`/`.yaml` files of the first existing workflow
/// directory, as (path, contents), sorted by path.
///
/// Two `git` processes whatever the number of files: one `ls-tree` of every workflow
/// directory, one `cat-file --batch` for the contents.
pub async fn workflow_files(git_dir: &Path, sha: &str) -> Result<Vec<(String, String)>, GitError> {
    let mut args = vec!["ls-tree", "-r", "--name-only", "-z", sha, "--"];
    args.extend(WORKFLOW_DIRS);
    let listing = git(git_dir, &args).await?;
    let listed: Vec<String> =
        listing.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
    // The first directory that exists wins; only its direct `.yml`/`.yaml` children count.
    let Some(dir) = WORKFLOW_DIRS.iter().find(|d| listed.iter().any(|p| p.starts_with(&format!("{d}/")))) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<&String> = listed
        .iter()
        .filter(|p| {
            p.strip_prefix(&format!("{dir}/"))
                .is_some_and(|name| !name.contains('/') && (name.ends_with(".yml") || name.ends_with(".yaml")))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let input: String = paths.iter().map(|p| format!("{sha}:{p}\n")).collect();
    let out = git_with_input(git_dir, &["cat-file", "--batch"], input.as_bytes()).await?;
    let mut files = Vec::with_capacity(paths.len());
    let mut rest = &out[..];
    for path in paths {
        let bad = || GitError::Failed { args: "cat-file --batch".to_owned(), stderr: format!("unexpected output for {path}") };
        let nl = rest.iter().position(|b| *b == b'\n').ok_or_else(bad)?;
        let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
        let size: usize = header.rsplit(' ').next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        if !header.contains(" blob ") || rest.len() < nl + 1 + size {
            return Err(bad());
        }
        files.push((path.clone(), String::from_utf8_lossy(&rest[nl + 1..nl + 1 + size]).into_owned()));
        rest = rest.get(nl + 2 + size..).unwrap_or_default();
    }
    Ok(files)
}

/// Runs git in `dir` with `input` on stdin and returns stdout.
async fn git_with_input(dir: &Path, args: &[&str], input: &[u8]) -> Result<Vec<u8>, GitError> {
    use tokio::io::AsyncWriteExt;
    let spawn_err = |source| GitError::Spawn { args: args.join(" "), source };
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    let output = child.wait_with_output().await.map_err(spawn_err)?;
    let _ = writer.await;
    if !output.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output.stdout)
}

/// A file at `sha`, read synchronously (for the workflow `Loader`, which is not async).
pub fn show_blocking(git_dir: &Path, sha: &str, path: &str) -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["show", &format!("{sha}:{path}")])
        .current_dir(git_dir)
        .output()
        .ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The files changed between `before` and `after`, when `before` is a commit the mirror has
/// (`None` for a new branch or an unknown base).
pub async fn changed_files(git_dir: &Path, before: &str, after: &str) -> Option<Vec<String>> {
    if before.is_empty() || before.bytes().all(|b| b == b'0') {
        return None;
    }
    let out = git(git_dir, &["diff", "--name-only", "-z", before, after]).await.ok()?;
    Some(out.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}
