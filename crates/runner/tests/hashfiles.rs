//! `hashFiles()`: glob matching checked against act's oracle, digests against GitHub's formula.
//!
//! act's expected digests (`shared/compat/act/expressions.json`, the 8 `TestFunctionHashFiles`
//! cases) are sha256 over the *concatenated contents* of the matched files, so they pin down
//! exactly which files match. GitHub's runner instead hashes the concatenation of each file's
//! sha256 digest; that is what slipway returns.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use runner::hashfiles::{hash_files, matched_files};
use serde_json::Value;
use sha2::{Digest, Sha256};
use workflow::expr::{Context, Expr};

/// Evaluates `hashFiles(...)` through the expression engine, recording the patterns.
struct Workspace {
    root: PathBuf,
    calls: Mutex<Vec<Vec<String>>>,
}

impl Context for Workspace {
    fn context(&self, _name: &str) -> Option<&Value> {
        None
    }
    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        self.calls.lock().expect("not poisoned").push(patterns.to_vec());
        hash_files(&self.root, patterns).map_err(|e| e.to_string())
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// act's formula: sha256 over the concatenated contents; "" for no files.
fn act_digest(files: &[PathBuf]) -> String {
    if files.is_empty() {
        return String::new();
    }
    let mut all = Vec::new();
    for f in files {
        all.extend(std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    }
    sha256_hex(&all)
}

/// GitHub's formula, written out independently of the implementation.
fn github_digest(files: &[PathBuf]) -> String {
    if files.is_empty() {
        return String::new();
    }
    let mut digests = Vec::new();
    for f in files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        digests.extend_from_slice(&Sha256::digest(&data));
    }
    sha256_hex(&digests)
}

#[test]
fn act_hashfiles_cases() {
    let act = test_support::shared_dir().join("compat/act");
    let text = std::fs::read_to_string(act.join("expressions.json")).expect("expressions.json");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("JSON");
    let mut failures = Vec::new();
    let mut executed = 0;
    for case in cases.iter().filter(|c| c.get("working_directory").is_some()) {
        let id = case["id"].as_str().expect("id");
        let src = case["expr"].as_str().expect("expr");
        let want_act = case["expected"].as_str().expect("expected digest");
        let root = act.join(case["working_directory"].as_str().expect("working_directory"));
        let ws = Workspace { root: root.clone(), calls: Mutex::new(Vec::new()) };

        let got = Expr::parse(src).expect("parses").eval(&ws).expect("evaluates");
        let calls = ws.calls.lock().expect("not poisoned").clone();
        assert_eq!(calls.len(), 1, "{id}: one hashFiles call");
        let patterns = &calls[0];
        let files = matched_files(&root, patterns).expect("matches");
        executed += 1;

        // (a) the files we match are the ones act hashed.
        let act_of_ours = act_digest(&files);
        if act_of_ours != want_act {
            failures.push(format!(
                "{id}: `{src}` matched {files:?}: act's digest of them {act_of_ours} != act's expected {want_act}"
            ));
        }
        // (b) our digest is GitHub's formula over those files.
        let want_github = github_digest(&files);
        if got != Value::String(want_github.clone()) {
            failures.push(format!("{id}: `{src}`: got {got}, GitHub's formula gives {want_github}"));
        }
    }
    assert_eq!(executed, 8, "the 8 hashFiles cases of the corpus");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(p, content).expect("write");
}

fn rels(root: &Path, patterns: &[&str]) -> Vec<String> {
    let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
    matched_files(root, &patterns)
        .expect("matches")
        .into_iter()
        .map(|p| p.strip_prefix(root).expect("under root").to_string_lossy().into_owned())
        .collect()
}

fn tree() -> tempfile::TempDir {
    let dir = test_support::tempdir();
    let root = dir.path();
    for f in [
        "package-lock.json",
        "Cargo.lock",
        ".hidden/cfg",
        ".env",
        "src/main.rs",
        "src/lib.rs",
        "src/deep/mod.rs",
        "web/package-lock.json",
        "web/node_modules/x/package-lock.json",
        "{a,b}.txt",
        "a.txt",
    ] {
        write(root, f, f);
    }
    dir
}

#[test]
fn glob_semantics() {
    let dir = tree();
    let root = dir.path();
    let cases: &[(&[&str], &[&str])] = &[
        (&["**/package-lock.json"], &["package-lock.json", "web/node_modules/x/package-lock.json", "web/package-lock.json"]),
        (&["**/package-lock.json", "!**/node_modules/**"], &["package-lock.json", "web/package-lock.json"]),
        // A later include re-adds what a negation removed; patterns apply in order.
        (&["**/package-lock.json", "!web/**", "web/node_modules/**"], &["package-lock.json", "web/node_modules/x/package-lock.json"]),
        (&["!src/lib.rs", "src/*.rs"], &["src/lib.rs", "src/main.rs"]),
        (&["src/*.rs"], &["src/lib.rs", "src/main.rs"]),
        (&["src/**/*.rs"], &["src/deep/mod.rs", "src/lib.rs", "src/main.rs"]),
        // A directory matches everything below it; a trailing `/` matches directories only.
        (&["src"], &["src/deep/mod.rs", "src/lib.rs", "src/main.rs"]),
        (&["src/deep/"], &["src/deep/mod.rs"]),
        (&["Cargo.lock/"], &[]),
        (&["src", "!src/deep"], &["src/lib.rs", "src/main.rs"]),
        // Dot-files are not special.
        (&["*"], &[".env", ".hidden/cfg", "Cargo.lock", "a.txt", "package-lock.json", "src/deep/mod.rs", "src/lib.rs", "src/main.rs", "web/node_modules/x/package-lock.json", "web/package-lock.json", "{a,b}.txt"]),
        (&[".hidden/*"], &[".hidden/cfg"]),
        // No brace expansion; `?` is one character; case-sensitive.
        (&["{a,b}.txt"], &["{a,b}.txt"]),
        (&["?.txt"], &["a.txt"]),
        (&["cargo.lock"], &[]),
        // `./`, `..` inside the root, absolute paths under the root.
        (&["./src/../Cargo.lock"], &["Cargo.lock"]),
        // Comments and blank lines; several patterns in one argument (newline-separated).
        (&["# comment", "", "  Cargo.lock  "], &["Cargo.lock"]),
        (&["Cargo.lock\na.txt"], &["Cargo.lock", "a.txt"]),
        // Outside the root, or only negations: nothing.
        (&["../**"], &[]),
        (&["!Cargo.lock"], &[]),
        (&["nothing-here/**"], &[]),
    ];
    let mut failures = Vec::new();
    for (patterns, want) in cases {
        let got = rels(root, patterns);
        if got != *want {
            failures.push(format!("{patterns:?}: want {want:?}, got {got:?}"));
        }
    }
    let abs = format!("{}/src/main.rs", root.display());
    let got = rels(root, &[abs.as_str()]);
    if got != ["src/main.rs"] {
        failures.push(format!("absolute {abs}: got {got:?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn digest_is_githubs_and_empty_when_nothing_matches() {
    let dir = tree();
    let root = dir.path();
    assert_eq!(hash_files(root, &["nothing/**".to_owned()]).expect("hashes"), "");
    let one = hash_files(root, &["Cargo.lock".to_owned()]).expect("hashes");
    // sha256(sha256("Cargo.lock")), the single file's digest hashed again.
    assert_eq!(one, sha256_hex(&Sha256::digest(b"Cargo.lock")));
    let both = hash_files(root, &["a.txt".to_owned(), "Cargo.lock".to_owned()]).expect("hashes");
    let mut cat = Vec::new();
    cat.extend_from_slice(&Sha256::digest(b"Cargo.lock"));
    cat.extend_from_slice(&Sha256::digest(b"a.txt"));
    assert_eq!(both, sha256_hex(&cat), "sorted by path: Cargo.lock before a.txt");
    // Pattern order does not change the digest.
    let swapped = hash_files(root, &["Cargo.lock".to_owned(), "a.txt".to_owned()]).expect("hashes");
    assert_eq!(both, swapped);
}

#[cfg(unix)]
#[test]
fn symlinks() {
    let dir = tree();
    let root = dir.path();
    std::os::unix::fs::symlink(root.join("src"), root.join("src-link")).expect("symlink");
    std::os::unix::fs::symlink(root.join("a.txt"), root.join("a-link.txt")).expect("symlink");
    std::os::unix::fs::symlink(root.join("gone"), root.join("dangling.txt")).expect("symlink");
    std::os::unix::fs::symlink(root, root.join("src/deep/loop")).expect("symlink");
    // By default directory links are not entered; a link to a file is that file.
    assert_eq!(rels(root, &["src-link/*.rs"]), Vec::<String>::new());
    assert_eq!(rels(root, &["*.txt"]), ["a-link.txt", "a.txt", "{a,b}.txt"]);
    assert_eq!(rels(root, &["**/mod.rs"]), ["src/deep/mod.rs"]);
    assert_eq!(
        hash_files(root, &["a-link.txt".to_owned()]).expect("hashes"),
        hash_files(root, &["a.txt".to_owned()]).expect("hashes"),
    );
    // `--follow-symbolic-links` enters them; cycles are skipped.
    assert_eq!(rels(root, &["--follow-symbolic-links", "src-link/*.rs"]), ["src-link/lib.rs", "src-link/main.rs"]);
    assert_eq!(rels(root, &["--FOLLOW-SYMBOLIC-LINKS", "**/mod.rs"]), ["src-link/deep/mod.rs", "src/deep/mod.rs"]);
    let err = matched_files(root, &["--follow".to_owned(), "*".to_owned()]).expect_err("unknown option");
    assert_eq!(err.to_string(), "invalid glob option --follow, valid options are '--follow-symbolic-links'");
    // Only the first argument is an option.
    assert_eq!(rels(root, &["a.txt", "--follow-symbolic-links"]), ["a.txt"]);
}

#[test]
fn invalid_pattern_is_an_error() {
    let dir = tree();
    let err = matched_files(dir.path(), &["src/[".to_owned()]).expect_err("unclosed class");
    assert!(err.to_string().contains("src/["), "{err}");
}
