//! Finding, reading, parsing and compiling the workflows of a repository: what `slipway run`,
//! `slipway lint` and `slipway list` share.
//!
//! Discovery follows act: `-W` names a file or a directory whose `*.yml`/`*.yaml` files
//! (directly in it, not recursive) are the workflows; without `-W` the first existing of
//! `.slipway/workflows/`, `.gitea/workflows/`, `.forgejo/workflows/`, `.github/workflows/`
//! under the current directory is used. Nothing here runs anything.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
use workflow::{CompileOptions, Diagnostic, Diagnostics, Loader, Plan, Workflow};

/// The workflow directories looked for, in order, when `-W` is not given.
pub const DEFAULT_DIRS: [&str; 4] = [
    ".slipway/workflows",
    ".gitea/workflows",
    ".forgejo/workflows",
    ".github/workflows",
];

/// The workflow files to use and the repository they belong to.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The files, sorted by name, as paths to print (relative when given relative).
    pub files: Vec<PathBuf>,
    /// The repository root: local actions, reusable workflows and `actions/checkout` read
    /// from here. The current directory, unless the workflows live in
    /// `<root>/<.slipway|.gitea|.forgejo|.github>/workflows`, then `<root>`.
    pub repo_root: PathBuf,
}

/// Finds the workflow files for `-W PATH` (or the default directories under `cwd`).
pub fn discover(path: Option<&Path>, cwd: &Path) -> anyhow::Result<Discovered> {
    let (files, dir) = match path {
        Some(path) => {
            let full = cwd.join(path);
            let meta = std::fs::metadata(&full)
                .with_context(|| format!("workflow path {} does not exist", path.display()))?;
            if meta.is_dir() {
                (list_dir(path, &full)?, full)
            } else {
                let dir = full.parent().map(Path::to_path_buf).unwrap_or_else(|| cwd.to_path_buf());
                (vec![path.to_path_buf()], dir)
            }
        }
        None => {
            let Some(rel) = DEFAULT_DIRS.iter().map(Path::new).find(|d| cwd.join(d).is_dir()) else {
                bail!(
                    "no workflows found: none of {} exists in {} (use -W PATH)",
                    DEFAULT_DIRS.join(", "),
                    cwd.display()
                );
            };
            (list_dir(rel, &cwd.join(rel))?, cwd.join(rel))
        }
    };
    let repo_root = repo_root_for(&dir).unwrap_or_else(|| cwd.to_path_buf());
    Ok(Discovered { files, repo_root })
}

/// `<root>` when `dir` is `<root>/<.slipway|.gitea|.forgejo|.github>/workflows`.
fn repo_root_for(dir: &Path) -> Option<PathBuf> {
    let dir = normalize(dir);
    if dir.file_name()? != "workflows" {
        return None;
    }
    let forge = dir.parent()?;
    let name = forge.file_name()?.to_str()?;
    if ![".slipway", ".gitea", ".forgejo", ".github"].contains(&name) {
        return None;
    }
    forge.parent().map(Path::to_path_buf)
}

/// Removes `.` and resolves `..` lexically (no symlink resolution, no I/O).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn list_dir(shown: &Path, full: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(full).with_context(|| format!("reading the directory {}", shown.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading the directory {}", shown.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_yaml = name.ends_with(".yml") || name.ends_with(".yaml");
        if is_yaml && entry.path().is_file() {
            files.push(shown.join(name));
        }
    }
    files.sort();
    Ok(files)
}

/// Reads and parses every file. Returns the workflows that parsed and every diagnostic
/// (errors and warnings) found, in file order.
pub fn parse_all(files: &[PathBuf], cwd: &Path) -> (Vec<Workflow>, Vec<Diagnostic>) {
    let mut workflows = Vec::new();
    let mut diagnostics = Vec::new();
    for file in files {
        let shown = file.display().to_string();
        let source = match std::fs::read(cwd.join(file)) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => {
                    let (line, col) = line_col(e.as_bytes(), e.utf8_error().valid_up_to());
                    diagnostics.push(error(&shown, line, col, "the file is not valid UTF-8".into()));
                    continue;
                }
            },
            Err(e) => {
                diagnostics.push(error(&shown, 1, 1, format!("reading the file: {e}")));
                continue;
            }
        };
        match workflow::parse(&source, &shown) {
            Ok(wf) => workflows.push(wf),
            Err(Diagnostics(d)) => diagnostics.extend(d),
        }
    }
    (workflows, diagnostics)
}

fn line_col(bytes: &[u8], offset: usize) -> (u32, u32) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(col).unwrap_or(u32::MAX))
}

fn error(file: &str, line: u32, col: u32, message: String) -> Diagnostic {
    Diagnostic {
        file: file.to_owned(),
        line,
        col,
        severity: workflow::Severity::Error,
        message,
        snippet: String::new(),
    }
}

/// Whether any diagnostic is an error (warnings don't stop anything).
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(|d| d.severity == workflow::Severity::Error)
}

/// Reads local reusable workflows (`uses: ./.github/workflows/x.yml`) relative to the
/// repository root. Paths that leave the root are refused.
pub struct FsLoader {
    pub root: PathBuf,
}

impl Loader for FsLoader {
    fn load(&self, path: &str) -> Option<String> {
        let rel = normalize(Path::new(path.trim_start_matches("./")));
        if rel.is_absolute() || rel.starts_with("..") {
            return None;
        }
        std::fs::read_to_string(self.root.join(rel)).ok()
    }
}

/// Compiles every workflow that listens to `event`. Returns the plans and the diagnostics
/// (errors of workflows that did not compile, and warnings).
pub fn compile_for(
    workflows: &[Workflow],
    event: &str,
    loader: &dyn Loader,
) -> (Vec<Plan>, Vec<Diagnostic>) {
    let mut plans = Vec::new();
    let mut diagnostics = Vec::new();
    for wf in workflows.iter().filter(|wf| workflow::listens_to(wf, event)) {
        match workflow::compile(wf, &CompileOptions { event, loader }) {
            Ok(plan) => plans.push(plan),
            Err(Diagnostics(d)) => diagnostics.extend(d),
        }
    }
    (plans, diagnostics)
}

/// Drops exact duplicates (the same problem found compiling for two events), keeping order.
pub fn dedup(diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::with_capacity(diagnostics.len());
    for d in diagnostics {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// Prints diagnostics to `out`, a blank line after each one that has a snippet.
pub fn print_diagnostics(out: &mut dyn std::io::Write, diagnostics: &[Diagnostic]) -> std::io::Result<()> {
    for d in diagnostics {
        writeln!(out, "{d}")?;
        if !d.snippet.is_empty() {
            writeln!(out)?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_root_from_forge_dirs() {
        assert_eq!(repo_root_for(Path::new("/r/examples/.slipway/workflows")), Some(PathBuf::from("/r/examples")));
        assert_eq!(repo_root_for(Path::new("/r/.github/workflows/")), Some(PathBuf::from("/r")));
        assert_eq!(repo_root_for(Path::new("/r/x/./.gitea/workflows")), Some(PathBuf::from("/r/x")));
        assert_eq!(repo_root_for(Path::new("/r/case")), None);
        assert_eq!(repo_root_for(Path::new("/r/other/workflows")), None);
    }

    #[test]
    fn discover_lists_yaml_files_directly_in_the_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("case");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        for f in ["b.yml", "a.yaml", "c.txt", "sub/d.yml"] {
            std::fs::write(dir.join(f), "x").expect("write");
        }
        let d = discover(Some(Path::new("case/")), tmp.path()).expect("discover");
        assert_eq!(d.files, vec![PathBuf::from("case/a.yaml"), PathBuf::from("case/b.yml")]);
        assert_eq!(d.repo_root, tmp.path());
    }

    #[test]
    fn discover_default_dirs_in_order() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(discover(None, tmp.path()).is_err());
        for d in [".github/workflows", ".gitea/workflows"] {
            std::fs::create_dir_all(tmp.path().join(d)).expect("mkdir");
            std::fs::write(tmp.path().join(d).join("ci.yml"), "x").expect("write");
        }
        let d = discover(None, tmp.path()).expect("discover");
        assert_eq!(d.files, vec![PathBuf::from(".gitea/workflows/ci.yml")]);
        assert_eq!(d.repo_root, tmp.path());
        assert!(discover(Some(Path::new("missing")), tmp.path()).is_err());
    }

    #[test]
    fn loader_stays_inside_the_root() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join(".github/workflows")).expect("mkdir");
        std::fs::write(tmp.path().join(".github/workflows/r.yml"), "on: workflow_call").expect("write");
        let loader = FsLoader { root: tmp.path().to_path_buf() };
        assert_eq!(loader.load(".github/workflows/r.yml").as_deref(), Some("on: workflow_call"));
        assert_eq!(loader.load("./.github/workflows/r.yml").as_deref(), Some("on: workflow_call"));
        assert_eq!(loader.load("../etc/passwd"), None);
        assert_eq!(loader.load("/etc/passwd"), None);
    }

    #[test]
    fn utf8_error_position() {
        assert_eq!(line_col(b"ab\ncd\xff", 5), (2, 3));
    }
}
