//! Reading the deployment repository with the `git` CLI: a bare mirror per repository URL in
//! the agent's data directory, fetched with a read-only credential (whatever the URL and the
//! environment's git configuration carry), and trees exported with `git archive`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("running git {args}: {source}")]
    Spawn {
        args: String,
        source: std::io::Error,
    },
    #[error("git {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("unpacking {rev}:{path}: {source}")]
    Unpack {
        rev: String,
        path: String,
        source: std::io::Error,
    },
}

/// Where a promote commit came from: its `Slipway-Source-Commit:` and `Slipway-Run:` trailers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provenance {
    pub source_commit: Option<String>,
    pub run: Option<String>,
}

/// The trailer naming the source commit in a promote commit's message.
pub const SOURCE_TRAILER: &str = "Slipway-Source-Commit";
/// The trailer naming the run in a promote commit's message.
pub const RUN_TRAILER: &str = "Slipway-Run";

/// Reads the provenance trailers from a commit message. Pure.
pub fn provenance(message: &str) -> Provenance {
    let mut p = Provenance::default();
    for line in message.lines() {
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            if k.trim().eq_ignore_ascii_case(SOURCE_TRAILER) {
                p.source_commit = Some(v.to_owned());
            } else if k.trim().eq_ignore_ascii_case(RUN_TRAILER) {
                p.run = Some(v.to_owned());
            }
        }
    }
    p
}

/// A bare mirror of one repository.
#[derive(Clone, Debug)]
pub struct Mirror {
    url: String,
    dir: PathBuf,
}

pub(crate) async fn git(dir: Option<&Path>, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let shown = args.join(" ");
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "slipway")
        .env("GIT_AUTHOR_EMAIL", "slipway@localhost")
        .env("GIT_COMMITTER_NAME", "slipway")
        .env("GIT_COMMITTER_EMAIL", "slipway@localhost")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| GitError::Spawn {
            args: shown.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(GitError::Failed {
            args: shown,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8_lossy(&b).trim().to_owned()
}

impl Mirror {
    /// The mirror of `url` under `cache` (not created until the first fetch).
    pub fn new(cache: &Path, url: &str) -> Mirror {
        let h = hex::encode(Sha256::digest(url.as_bytes()));
        Mirror {
            url: url.to_owned(),
            dir: cache.join(format!("{}.git", &h[..16])),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetches `branch` and returns its commit.
    ///
    /// # Cancel safety
    /// Cancel safe: git updates refs atomically; a cancelled fetch leaves the old ref.
    pub async fn fetch(&self, branch: &str) -> Result<String, GitError> {
        if !self.dir.join("HEAD").exists() {
            tokio::fs::create_dir_all(&self.dir)
                .await
                .map_err(|source| GitError::Spawn {
                    args: "init".into(),
                    source,
                })?;
            git(Some(&self.dir), &["init", "--bare", "--quiet"]).await?;
        }
        let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        git(
            Some(&self.dir),
            &["fetch", "--quiet", "--no-tags", &self.url, &refspec],
        )
        .await?;
        self.resolve(&format!("refs/remotes/origin/{branch}")).await
    }

    /// The full commit id of `rev` (a commit id, a prefix of one, or a ref).
    pub async fn resolve(&self, rev: &str) -> Result<String, GitError> {
        if rev.starts_with('-') {
            return Err(GitError::Failed {
                args: format!("rev-parse {rev}"),
                stderr: "not a revision".into(),
            });
        }
        Ok(text(
            git(
                Some(&self.dir),
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{rev}^{{commit}}"),
                ],
            )
            .await
            .map_err(|e| match e {
                GitError::Failed { args, .. } => GitError::Failed {
                    args,
                    stderr: format!("unknown revision {rev}"),
                },
                e => e,
            })?,
        ))
    }

    /// The commit's full message.
    pub async fn message(&self, rev: &str) -> Result<String, GitError> {
        Ok(text(
            git(Some(&self.dir), &["log", "-1", "--format=%B", rev]).await?,
        ))
    }

    /// Writes the tree at `rev:path` into `into` (which exists and is empty).
    pub async fn export(&self, rev: &str, path: &str, into: &Path) -> Result<(), GitError> {
        let path = path.trim_matches('/');
        let treeish = if path.is_empty() || path == "." {
            rev.to_owned()
        } else {
            format!("{rev}:{path}")
        };
        let tar = git(Some(&self.dir), &["archive", "--format=tar", &treeish]).await?;
        let into = into.to_path_buf();
        let (rev2, path2) = (rev.to_owned(), path.to_owned());
        tokio::task::spawn_blocking(move || {
            tar::Archive::new(std::io::Cursor::new(tar)).unpack(&into)
        })
        .await
        .map_err(|e| GitError::Unpack {
            rev: rev2.clone(),
            path: path2.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| GitError::Unpack {
            rev: rev2,
            path: path2,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers() {
        let p = provenance(
            "Promote web to sha256:1\n\nSlipway-Source-Commit: abc123\nSlipway-Run: 42\n",
        );
        assert_eq!(
            p,
            Provenance {
                source_commit: Some("abc123".into()),
                run: Some("42".into())
            }
        );
        assert_eq!(
            provenance("just a commit\n\nslipway-run:  7"),
            Provenance {
                source_commit: None,
                run: Some("7".into())
            }
        );
        assert_eq!(provenance("Slipway-Run:\n"), Provenance::default());
    }
}
