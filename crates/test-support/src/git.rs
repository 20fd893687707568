//! A real `git daemon` serving bare repositories on a free loopback port (push enabled),
//! killed on drop, and work trees to commit and push from.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A `git daemon` over a temporary directory of bare repositories.
pub struct GitDaemon {
    root: tempfile::TempDir,
    port: u16,
    child: Child,
}

fn run_git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .unwrap_or_else(|e| panic!("running git {args:?}: {e}"));
    assert!(out.status.success(), "git {args:?} in {} failed: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl GitDaemon {
    /// Starts the daemon and waits until it listens (it says "Ready to rumble").
    pub fn start() -> GitDaemon {
        crate::require_command("git", "git");
        let root = crate::tempdir();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("finding a free port")
            .port();
        // `git-daemon` itself, not `git daemon`: the `git` wrapper would run it as a child
        // that outlives the wrapper when the wrapper is killed on drop.
        let exec_path = run_git(root.path(), &["--exec-path"]);
        let mut child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .arg(format!("--base-path={}", root.path().display()))
            .args(["--export-all", "--enable=receive-pack", "--reuseaddr", "--verbose", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting git daemon");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("Ready to rumble") => break,
                Some(Ok(line)) => seen.push(line),
                _ => {
                    let _ = child.kill();
                    panic!("git daemon exited before it was ready: {}", seen.join("\n"));
                }
            }
        }
        // Keep draining its log so it never blocks on a full pipe; ends when it exits.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        GitDaemon { root, port, child }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates the bare repository `name` (HEAD -> main) and returns its `git://` URL.
    pub fn create_repo(&self, name: &str) -> String {
        let dir = self.root.path().join(format!("{name}.git"));
        std::fs::create_dir_all(&dir).expect("creating a bare repo dir");
        run_git(&dir, &["init", "--bare", "--quiet"]);
        run_git(&dir, &["symbolic-ref", "HEAD", "refs/heads/main"]);
        self.url(name)
    }

    /// `git://127.0.0.1:PORT/NAME.git`
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }

    /// A work tree whose `origin` is the repository `name`.
    pub fn work_tree(&self, name: &str) -> WorkTree {
        let dir = crate::tempdir();
        run_git(dir.path(), &["init", "--quiet", "--initial-branch=main"]);
        run_git(dir.path(), &["remote", "add", "origin", &self.url(name)]);
        WorkTree { dir }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local work tree to commit files in and push.
pub struct WorkTree {
    dir: tempfile::TempDir,
}

impl WorkTree {
    pub fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Writes `contents` to `path` (directories created).
    pub fn write(&self, path: &str, contents: &str) -> &Self {
        let full = self.dir.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("creating directories");
        }
        std::fs::write(&full, contents).expect("writing a file");
        self
    }

    /// Commits everything and returns the commit's SHA.
    pub fn commit(&self, message: &str) -> String {
        run_git(self.dir.path(), &["add", "-A"]);
        run_git(self.dir.path(), &["commit", "--quiet", "--allow-empty", "-m", message]);
        self.head()
    }

    pub fn head(&self) -> String {
        run_git(self.dir.path(), &["rev-parse", "HEAD"])
    }

    /// Pushes HEAD to `branch` (a branch name or a full ref).
    pub fn push(&self, branch: &str) {
        let target = if branch.starts_with("refs/") { branch.to_owned() } else { format!("refs/heads/{branch}") };
        run_git(self.dir.path(), &["push", "--quiet", "--force", "origin", &format!("HEAD:{target}")]);
    }
}
