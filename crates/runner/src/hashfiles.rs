//! `hashFiles()` over the workspace, as GitHub's runner computes it.
//!
//! Matching follows `@actions/glob`, which the runner uses: patterns are relative to the
//! root (a leading `./` is ignored); `*`, `?`, `[...]` match within one path segment, `**`
//! matches any number of segments; a `**` inside a segment (`a-**`) is a `*`; dot-files are
//! matched like any other; `{a,b}` is literal (no brace expansion); `\` escapes. A pattern
//! that matches a directory matches every file below it. `!pattern` excludes what it matches;
//! patterns apply in order, so a later include can re-add what an earlier negation removed.
//! Blank patterns and `#` comments are ignored. Only files under the root are returned,
//! sorted by their path relative to the root.
//!
//! Symbolic links, as on GitHub: a link to a file counts as that file; links to directories
//! are not entered unless the first argument is `--follow-symbolic-links` (then they are,
//! and cycles are skipped). Any other first argument starting with `--` is an error.
//!
//! The digest is GitHub's: sha256 over the concatenated sha256 digests of the matched files,
//! hex-encoded; the empty string when nothing matches. (nektos/act hashes the concatenated
//! contents instead, so its digests differ; see COMPATIBILITY.md.)
//!
//! This module does not know about contexts; `runner`'s expression context calls
//! [`hash_files`] with the workspace as `root`.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use sha2::{Digest, Sha256};

/// Why `hashFiles` failed.
#[derive(Debug, thiserror::Error)]
pub enum HashFilesError {
    #[error("invalid glob option {option}, valid options are '--follow-symbolic-links'")]
    Option { option: String },
    #[error("invalid hashFiles pattern '{pattern}'")]
    Pattern {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("walking {}", path.display())]
    Walk {
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One parsed pattern.
struct Pattern {
    negate: bool,
    /// `None`: the pattern can match nothing under the root (it points outside it).
    matcher: Option<GlobMatcher>,
    /// A trailing `/`: only directories match (that is, the files below them).
    dirs_only: bool,
}

/// Split the patterns into lines, as the runner does (it joins the arguments with newlines).
fn parse_patterns(root: &Path, patterns: &[String]) -> Result<Vec<Pattern>, HashFilesError> {
    let mut out = Vec::new();
    for line in patterns.iter().flat_map(|p| p.lines()) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut negate = false;
        let mut rest = line;
        while let Some(r) = rest.strip_prefix('!') {
            negate = !negate;
            rest = r;
        }
        let dirs_only = rest.ends_with('/');
        let matcher = match normalize(root, rest) {
            None => None,
            Some(glob) => Some(
                GlobBuilder::new(&glob)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|source| HashFilesError::Pattern { pattern: line.to_owned(), source })?
                    .compile_matcher(),
            ),
        };
        out.push(Pattern { negate, matcher, dirs_only });
    }
    Ok(out)
}

/// The pattern as a glob relative to the root, with `/` separators: `.` segments dropped,
/// `..` resolved lexically, an absolute pattern made relative to the root, `**` inside a
/// segment turned into `*`, braces escaped. `None` when it points outside the root.
fn normalize(root: &Path, pattern: &str) -> Option<String> {
    let relative: String = if Path::new(pattern).is_absolute() {
        let root = root.to_string_lossy();
        let root = root.trim_end_matches('/');
        let rest = pattern.strip_prefix(root)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest.to_owned()
    } else {
        pattern.to_owned()
    };
    let mut segments: Vec<String> = Vec::new();
    for segment in relative.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            "**" => segments.push("**".to_owned()),
            s => {
                let mut s = s.to_owned();
                while s.contains("**") {
                    s = s.replace("**", "*");
                }
                segments.push(escape_braces(&s));
            }
        }
    }
    if segments.is_empty() {
        // The root itself: everything below it.
        segments.push("**".to_owned());
    }
    Some(segments.join("/"))
}

/// `@actions/glob` does no brace expansion; globset would, so escape them.
fn escape_braces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether the pattern matches the file at `rel` (segments), itself or through a directory
/// above it.
fn pattern_matches(p: &Pattern, rel: &[&str]) -> bool {
    let Some(m) = &p.matcher else { return false };
    let upto = if p.dirs_only { rel.len().saturating_sub(1) } else { rel.len() };
    (1..=upto).any(|n| m.is_match(rel[..n].join("/")))
}

/// The files under `root` that the patterns select, sorted by path relative to `root`.
/// The returned paths are `root` joined with that relative path.
pub fn matched_files(root: &Path, patterns: &[String]) -> Result<Vec<PathBuf>, HashFilesError> {
    let (follow_links, patterns) = match patterns.split_first() {
        Some((first, rest)) if first.starts_with("--") => {
            if !first.eq_ignore_ascii_case("--follow-symbolic-links") {
                return Err(HashFilesError::Option { option: first.clone() });
            }
            (true, rest)
        }
        _ => (false, patterns),
    };
    let patterns = parse_patterns(root, patterns)?;
    if !patterns.iter().any(|p| !p.negate && p.matcher.is_some()) {
        return Ok(Vec::new());
    }
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(follow_links).min_depth(1) {
        let entry = match entry {
            Ok(e) => e,
            // A symlink cycle or a broken link: the glob library skips them too.
            Err(e) if e.loop_ancestor().is_some() => continue,
            Err(e) if e.io_error().is_some_and(|io| io.kind() == io::ErrorKind::NotFound) => continue,
            Err(source) => {
                let path = source.path().map_or_else(|| root.to_path_buf(), Path::to_path_buf);
                return Err(HashFilesError::Walk { path, source });
            }
        };
        let is_file = if entry.path_is_symlink() && !follow_links {
            // Not entered, but a link to a file is hashed as that file (dangling: skipped).
            std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file())
        } else {
            entry.file_type().is_file()
        };
        if !is_file {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else { continue };
        let segments: Vec<String> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let mut selected = false;
        for p in &patterns {
            if p.negate {
                selected &= !pattern_matches(p, &segments);
            } else {
                selected |= pattern_matches(p, &segments);
            }
        }
        if selected {
            found.push((segments.join("/"), entry.path().to_path_buf()));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// sha256 of one file's contents.
pub fn file_digest(path: &Path) -> Result<[u8; 32], HashFilesError> {
    let read_err = |source| HashFilesError::Read { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// GitHub's `hashFiles`: hex sha256 over the concatenated sha256 digests of the matched
/// files (in [`matched_files`] order); `""` when nothing matches.
pub fn hash_files(root: &Path, patterns: &[String]) -> Result<String, HashFilesError> {
    let files = matched_files(root, patterns)?;
    if files.is_empty() {
        return Ok(String::new());
    }
    let mut outer = Sha256::new();
    for file in &files {
        outer.update(file_digest(file)?);
    }
    Ok(hex::encode(outer.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_patterns() {
        let root = Path::new("/ws");
        for (pattern, want) in [
            ("./a/*.txt", Some("a/*.txt")),
            ("a/./b/../c", Some("a/c")),
            ("x-**", Some("x-*")),
            ("**/x", Some("**/x")),
            ("{a,b}", Some("\\{a,b\\}")),
            ("/ws/src/*.rs", Some("src/*.rs")),
            ("/ws", Some("**")),
            ("/wsx/a", None),
            ("/elsewhere/a", None),
            ("../a", None),
            (".", Some("**")),
        ] {
            assert_eq!(normalize(root, pattern).as_deref(), want, "{pattern}");
        }
    }
}
