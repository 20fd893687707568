//! The build context: `.dockerignore` and resolving `COPY`/`ADD` sources inside a root
//! (the context directory, or another stage's root filesystem for `COPY --from`), never
//! outside it.

use std::fs;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// `.dockerignore` rules: Go-style globs with `**`, `!` exceptions, last match wins; a
/// pattern that matches a directory excludes everything below it.
#[derive(Clone, Debug, Default)]
pub struct Ignore {
    rules: Vec<(GlobMatcher, bool)>,
}

impl Ignore {
    /// Parses `.dockerignore` text. Bad patterns are reported with their line number.
    pub fn parse(text: &str) -> Result<Ignore, String> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (negate, pat) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let cleaned = crate::layer::clean_rel(Path::new(pat));
            let pat = cleaned.to_string_lossy();
            if pat.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(&pat)
                .literal_separator(true)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| format!(".dockerignore:{}: bad pattern {pat:?}: {e}", i + 1))?;
            rules.push((glob, negate));
        }
        Ok(Ignore { rules })
    }

    /// Loads `root/.dockerignore` (nothing ignored when there is none).
    pub fn load(root: &Path) -> Result<Ignore, String> {
        match fs::read_to_string(root.join(".dockerignore")) {
            Ok(t) => Self::parse(&t),
            Err(_) => Ok(Ignore::default()),
        }
    }

    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(_, n)| *n)
    }

    /// Whether the context-relative path `rel` is excluded.
    pub fn is_ignored(&self, rel: &Path) -> bool {
        let mut ignored = false;
        for (glob, negate) in &self.rules {
            let hit = rel
                .ancestors()
                .filter(|a| !a.as_os_str().is_empty())
                .any(|a| glob.is_match(a));
            if hit {
                ignored = !negate;
            }
        }
        ignored
    }
}

/// Whether a source pattern has glob metacharacters.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Resolves `rel` inside `root`, following symlinks but never leaving `root` (absolute link
/// targets are taken relative to `root`, `..` stops at it). Returns the path on disk.
pub fn resolve_in_root(root: &Path, rel: &Path) -> PathBuf {
    let mut stack: Vec<std::ffi::OsString> = Vec::new();
    let mut pending: Vec<std::ffi::OsString> = rel
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            stack.pop();
            continue;
        }
        let candidate: PathBuf = std::iter::once(root.as_os_str().to_os_string())
            .chain(stack.iter().cloned())
            .chain(std::iter::once(c.clone()))
            .collect();
        match fs::read_link(&candidate) {
            Ok(target) if hops < 40 => {
                hops += 1;
                if target.is_absolute() {
                    stack.clear();
                }
                for comp in target.components().rev() {
                    match comp {
                        Component::Normal(n) => pending.push(n.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => stack.push(c),
        }
    }
    std::iter::once(root.as_os_str().to_os_string())
        .chain(stack)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(patterns: &str, path: &str, expect: bool) {
        let ig = Ignore::parse(patterns).unwrap();
        assert_eq!(
            ig.is_ignored(Path::new(path)),
            expect,
            "{patterns:?} {path}"
        );
    }

    #[test]
    fn dockerignore() {
        check("*.log", "a.log", true);
        check("*.log", "dir/a.log", false);
        check("**/*.log", "dir/a.log", true);
        check("target", "target/debug/x", true);
        check("/target", "target", true);
        check("*.md\n!README.md", "README.md", false);
        check("*.md\n!README.md", "CHANGES.md", true);
        check("# comment\n\n", "x", false);
        check("docs/*\n!docs/keep", "docs/keep", false);
        check("docs/*\n!docs/keep", "docs/drop", true);
    }

    #[test]
    fn resolve_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("bin")).unwrap();
        fs::write(d.path().join("bin/busybox"), b"x").unwrap();
        std::os::unix::fs::symlink("/bin/busybox", d.path().join("bin/sh")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", d.path().join("up")).unwrap();
        assert_eq!(
            resolve_in_root(d.path(), Path::new("bin/sh")),
            d.path().join("bin/busybox")
        );
        assert_eq!(
            resolve_in_root(d.path(), Path::new("up/passwd")),
            d.path().join("etc/passwd")
        );
    }
}
