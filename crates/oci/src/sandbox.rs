//! `RUN` without a daemon: the command runs in a bubblewrap sandbox (`bwrap`, no network,
//! fresh `/dev` and `/proc`, every namespace unshared) over the stage's unpacked root
//! filesystem; the layer is the filesystem diff (before/after snapshots; deletions become
//! whiteouts).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::layer::{Entry, Kind};

/// Metadata that tells whether a path changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    link: Option<PathBuf>,
}

/// Paths under these top-level directories are mount points in the sandbox, not content.
const SKIP: &[&str] = &["proc", "sys", "dev"];

/// Path (relative to `root`) → metadata, for every entry below `root`.
pub fn snapshot(root: &Path) -> std::io::Result<BTreeMap<PathBuf, Meta>> {
    let mut out = BTreeMap::new();
    let walker = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            !(e.depth() == 2
                && e.path()
                    .parent()
                    .and_then(|p| p.file_name())
                    .is_some_and(|n| SKIP.iter().any(|s| n == *s)))
        });
    for e in walker {
        let e = e.map_err(std::io::Error::other)?;
        let md = e.path().symlink_metadata()?;
        let rel = e
            .path()
            .strip_prefix(root)
            .map_err(std::io::Error::other)?
            .to_path_buf();
        let link = if md.file_type().is_symlink() {
            Some(std::fs::read_link(e.path())?)
        } else {
            None
        };
        out.insert(
            rel,
            Meta {
                kind: md.mode() & 0o170000,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size: md.size(),
                mtime: (md.mtime(), md.mtime_nsec()),
                ctime: (md.ctime(), md.ctime_nsec()),
                ino: md.ino(),
                link,
            },
        );
    }
    Ok(out)
}

/// The layer entries that turn `before` into `after` (files read from `root`).
pub fn diff(
    root: &Path,
    before: &BTreeMap<PathBuf, Meta>,
    after: &BTreeMap<PathBuf, Meta>,
) -> Vec<Entry> {
    let mut entries: BTreeMap<PathBuf, Entry> = BTreeMap::new();
    let entry_for = |rel: &Path, m: &Meta| -> Option<Entry> {
        let kind = match m.kind {
            0o040000 => Kind::Dir,
            0o100000 => Kind::File {
                source: root.join(rel),
            },
            0o120000 => Kind::Symlink {
                target: m.link.clone().unwrap_or_default(),
            },
            _ => return None, // devices, fifos, sockets are not captured
        };
        Some(Entry {
            path: rel.to_path_buf(),
            kind,
            mode: m.mode,
            uid: u64::from(m.uid),
            gid: u64::from(m.gid),
        })
    };
    for (rel, m) in after {
        let top_new_mount = rel.components().count() == 1
            && SKIP.iter().any(|s| rel == Path::new(s))
            && !before.contains_key(rel);
        if top_new_mount {
            continue;
        }
        let changed = match before.get(rel) {
            None => true,
            Some(b) if m.kind == 0o040000 && b.kind == 0o040000 => {
                b.mode != m.mode || b.uid != m.uid || b.gid != m.gid
            }
            Some(b) => b != m,
        };
        if changed && let Some(e) = entry_for(rel, m) {
            entries.insert(rel.clone(), e);
        }
    }
    // Deletions: one whiteout for the top-most deleted path.
    for rel in before.keys() {
        if after.contains_key(rel) {
            continue;
        }
        let parent_gone = rel
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .any(|a| before.contains_key(a) && !after.contains_key(a));
        if !parent_gone {
            entries.insert(
                rel.clone(),
                Entry {
                    path: rel.clone(),
                    kind: Kind::Whiteout,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                },
            );
        }
    }
    // Parents of changed entries come along with their current metadata.
    let parents: Vec<PathBuf> = entries
        .keys()
        .flat_map(|p| {
            p.ancestors()
                .skip(1)
                .filter(|a| !a.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .collect::<Vec<_>>()
        })
        .collect();
    for p in parents {
        if !entries.contains_key(&p)
            && let Some(m) = after.get(&p)
            && let Some(e) = entry_for(&p, m)
        {
            entries.insert(p, e);
        }
    }
    entries.into_values().collect()
}

/// How to run one `RUN` command.
pub struct RunSpec<'a> {
    pub root: &'a Path,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub workdir: &'a str,
    /// `uid[:gid]` (numeric) or empty for root.
    pub user: Option<(u32, u32)>,
}

/// Where `bwrap` is, if installed.
pub fn bwrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
}

/// Runs the command; every output line goes to `log`. Returns the exit code (or -signal).
pub fn run(
    bwrap: &Path,
    spec: &RunSpec<'_>,
    log: &(dyn Fn(&str) + Send + Sync),
) -> std::io::Result<i32> {
    let mut cmd = Command::new(bwrap);
    cmd.arg("--bind").arg(spec.root).arg("/");
    cmd.args([
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ]);
    cmd.args(["--hostname", "buildkitsandbox"]);
    for (k, v) in spec.env {
        cmd.arg("--setenv").arg(k).arg(v);
    }
    if let Some((uid, gid)) = spec.user {
        cmd.args([
            "--unshare-user",
            "--uid",
            &uid.to_string(),
            "--gid",
            &gid.to_string(),
        ]);
    }
    cmd.arg("--chdir").arg(spec.workdir);
    cmd.arg("--").args(spec.argv);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let stderr = child.stderr.take();
    let stdout = child.stdout.take();
    std::thread::scope(|s| {
        if let Some(err) = stderr {
            s.spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    log(&line);
                }
            });
        }
        if let Some(out) = stdout {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                log(&line);
            }
        }
    });
    let status = child.wait()?;
    Ok(status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        -status.signal().unwrap_or(0)
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn diff_finds_added_changed_deleted() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc/sub")).unwrap();
        std::fs::write(r.join("etc/keep"), b"1").unwrap();
        std::fs::write(r.join("etc/change"), b"1").unwrap();
        std::fs::write(r.join("etc/sub/gone"), b"1").unwrap();
        std::fs::write(r.join("rm"), b"1").unwrap();
        let before = snapshot(r).unwrap();
        std::fs::write(r.join("etc/change"), b"22").unwrap();
        std::fs::remove_dir_all(r.join("etc/sub")).unwrap();
        std::fs::remove_file(r.join("rm")).unwrap();
        std::fs::create_dir_all(r.join("new/dir")).unwrap();
        std::fs::create_dir_all(r.join("proc")).unwrap();
        let after = snapshot(r).unwrap();
        let got: Vec<String> = diff(r, &before, &after)
            .iter()
            .map(|e| {
                format!(
                    "{}{}",
                    e.path.display(),
                    if e.kind == Kind::Whiteout {
                        " (wh)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "etc",
                "etc/change",
                "etc/sub (wh)",
                "new",
                "new/dir",
                "rm (wh)"
            ]
        );
    }
}
