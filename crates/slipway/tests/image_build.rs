//! `slipway image ...` end to end against the real components: the CNCF distribution
//! registry (htpasswd auth), dockerd, skopeo and bubblewrap.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch home for one test: its own docker config and cache dir.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: test_support::tempdir(),
        }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn slipway(&self, args: &[&str]) -> Output {
        self.slipway_stdin(args, None)
    }
    fn slipway_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.args(args)
            .env("DOCKER_CONFIG", self.path("docker-config"))
            .env("SLIPWAY_CACHE_DIR", self.path("cache"))
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("starting slipway");
        if let Some(s) = stdin {
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(s.as_bytes())
                .expect("writing stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("running slipway")
    }
    /// Runs slipway and returns stdout; panics with stderr on failure.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.slipway(args);
        assert!(
            out.status.success(),
            "slipway {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
    fn login(&self) {
        let d = test_support::distribution();
        let out = self.slipway_stdin(
            &["image", "login", &d.addr, "-u", &d.user, "--password-stdin"],
            Some(&format!("{}\n", d.password)),
        );
        assert!(
            out.status.success(),
            "login failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    /// A docker CLI logged in to the distribution registry, with its own config dir.
    fn docker(&self, args: &[&str]) -> Output {
        let host = test_support::docker_host();
        let cfg = self.path("docker-cli-config");
        if !cfg.join("config.json").exists() {
            let d = test_support::distribution();
            let out = Command::new("docker")
                .args([
                    "--config",
                    &cfg.to_string_lossy(),
                    "-H",
                    &host,
                    "login",
                    "-u",
                    &d.user,
                    "--password-stdin",
                    &d.addr,
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin
                        .take()
                        .expect("piped")
                        .write_all(d.password.as_bytes())?;
                    c.wait_with_output()
                })
                .expect("docker login");
            assert!(
                out.status.success(),
                "docker login: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Command::new("docker")
            .args(["--config", &cfg.to_string_lossy(), "-H", &host])
            .args(args)
            .output()
            .expect("running docker")
    }
    fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Extracts `/bin/busybox` (a static binary) from the busybox rootfs tar.
fn busybox_binary(into: &Path) {
    let out = Command::new("tar")
        .arg("-xf")
        .arg(test_support::busybox_tar())
        .arg("-C")
        .arg(into)
        .arg("./bin/busybox")
        .output()
        .expect("running tar");
    assert!(
        out.status.success(),
        "extracting busybox: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(into.join("bin/busybox"), into.join("busybox")).expect("moving busybox");
    std::fs::remove_dir(into.join("bin")).expect("removing bin");
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(name), text).expect("write");
}

fn scratch_context(env: &Env) -> PathBuf {
    let ctx = env.path("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    busybox_binary(&ctx);
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\nCMD [\"echo\", \"hello from a slipway image\"]\n",
    );
    ctx
}

/// Pushes a busybox base image (the rootfs tar, ADDed and so extracted) and returns its name.
fn push_busybox_base(env: &Env) -> String {
    let d = test_support::distribution();
    let ctx = env.path("base");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::copy(test_support::busybox_tar(), ctx.join("rootfs.tar")).expect("copy tar");
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nADD rootfs.tar /\nCMD [\"/bin/sh\"]\n",
    );
    let name = format!("{}/{}:1", d.addr, unique("slipway-test/busybox"));
    env.ok(&[
        "image",
        "build",
        "-q",
        "-t",
        &name,
        "--push",
        &ctx.to_string_lossy(),
    ]);
    name
}

#[test]
fn scratch_image_with_a_static_binary_runs_in_docker_after_push() {
    let env = Env::new();
    env.login();
    let ctx = scratch_context(&env);
    let d = test_support::distribution();
    let name = format!("{}/{}:v1", d.addr, unique("slipway-test/hello"));
    let digest = env.ok(&[
        "image",
        "build",
        "-t",
        &name,
        "--push",
        &ctx.to_string_lossy(),
    ]);
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "stdout is the digest: {digest:?}"
    );
    env.docker_ok(&["pull", &name]);
    let out = env.docker_ok(&["run", "--rm", &name]);
    assert_eq!(out, "hello from a slipway image");
    // skopeo sees the same digest
    test_support::require_command("skopeo", "skopeo");
    let creds = format!("{}:{}", d.user, d.password);
    let inspect = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{name}"),
        ])
        .output()
        .expect("skopeo");
    assert!(
        inspect.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("skopeo json");
    assert_eq!(v["Digest"], digest.as_str());
    assert_eq!(v["Created"], "1970-01-01T00:00:00Z");
    let _ = env.docker(&["rmi", &name]);
}

#[test]
fn busybox_base_with_a_run_step_runs_in_docker() {
    test_support::require_command("bwrap", "bubblewrap");
    let env = Env::new();
    env.login();
    let base = push_busybox_base(&env);
    let d = test_support::distribution();
    let ctx = env.path("app");
    write(&ctx, "hello.txt", "from the context\n");
    write(
        &ctx,
        "Dockerfile",
        &format!(
            "ARG BASE={base}\nFROM $BASE AS build\nARG WHO=nobody\nWORKDIR /work\nRUN echo \"built for $WHO\" > out.txt && rm -rf /tmp\n\
             FROM build\nCOPY --from=build /work/out.txt /copied.txt\nCOPY hello.txt /\nENV GREETING=hi\nCMD cat /work/out.txt /copied.txt /hello.txt && echo $GREETING && ls /\n"
        ),
    );
    let name = format!("{}/{}:v1", d.addr, unique("slipway-test/app"));
    env.ok(&[
        "image",
        "build",
        "--build-arg",
        "WHO=docker",
        "-t",
        &name,
        "--push",
        &ctx.to_string_lossy(),
    ]);
    let out = env.docker_ok(&["run", "--rm", &name]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..4],
        [
            "built for docker",
            "built for docker",
            "from the context",
            "hi"
        ],
        "{out}"
    );
    assert!(
        !lines.contains(&"tmp"),
        "the RUN deleted /tmp (a whiteout): {out}"
    );
    assert!(lines.contains(&"work"), "{out}");
    let _ = env.docker(&["rmi", &name]);
}

#[test]
fn docker_archive_output_loads_into_docker() {
    let env = Env::new();
    let ctx = scratch_context(&env);
    let tar = env.path("image.tar");
    let name = format!("{}:v1", unique("slipway-test/archive"));
    let output = format!("docker-archive:{}", tar.display());
    env.ok(&[
        "image",
        "build",
        "-t",
        &name,
        "--output",
        &output,
        &ctx.to_string_lossy(),
    ]);
    let loaded = env.docker_ok(&["load", "-i", &tar.to_string_lossy()]);
    assert!(loaded.contains(&name), "{loaded}");
    let out = env.docker_ok(&["run", "--rm", &name, "echo", "loaded"]);
    assert_eq!(out, "loaded");
    let _ = env.docker(&["rmi", &name]);
}

#[test]
fn clean_builds_in_different_directories_give_identical_digests() {
    let mut digests = Vec::new();
    for compression in ["none", "gzip"] {
        let mut per = Vec::new();
        for _ in 0..2 {
            let env = Env::new();
            let ctx = env.path("somewhere/else/ctx");
            write(&ctx.join("sub/dir"), "a.txt", "a\n");
            write(&ctx, "run.sh", "#!/bin/sh\necho hi\n");
            write(&ctx, "skip.log", "ignored\n");
            write(&ctx, ".dockerignore", "*.log\n");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(ctx.join("run.sh"), std::fs::Permissions::from_mode(0o775))
                .expect("chmod");
            write(
                &ctx,
                "Dockerfile",
                "FROM scratch\nCOPY . /app/\nCOPY --chown=10:20 --chmod=600 sub/dir/a.txt /etc/a\nLABEL x=y\n",
            );
            let out = env.path("out");
            let digest = env.ok(&[
                "image",
                "build",
                "--compression",
                compression,
                "--output",
                &format!("oci:{}", out.display()),
                &ctx.to_string_lossy(),
            ]);
            per.push(digest);
        }
        assert_eq!(per[0], per[1], "{compression}");
        digests.push(per[0].clone());
    }
    assert_ne!(
        digests[0], digests[1],
        "compression changes the layer blobs"
    );
}

#[test]
fn unchanged_rebuild_hits_the_cache_and_a_change_misses_it() {
    let env = Env::new();
    let ctx = env.path("ctx");
    write(&ctx, "f.txt", "one\n");
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY f.txt /f.txt\n");
    let c = ctx.to_string_lossy().to_string();
    let first = env.ok(&["image", "build", &c]);
    let blobs = || {
        std::fs::read_dir(env.path("cache/oci/blobs/sha256"))
            .expect("store")
            .count()
    };
    let before = blobs();
    let second = env.ok(&["image", "build", &c]);
    assert_eq!(first, second);
    assert_eq!(blobs(), before, "a cached rebuild writes no new blobs");
    write(&ctx, "f.txt", "two\n");
    let third = env.ok(&["image", "build", &c]);
    assert_ne!(first, third);
}

#[test]
fn source_date_epoch_sets_created_and_oci_layout_inspects() {
    let env = Env::new();
    let ctx = env.path("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nLABEL a=b\nEXPOSE 8080\nUSER 1000\nWORKDIR /srv\nENTRYPOINT [\"/app\"]\nSTOPSIGNAL SIGINT\nHEALTHCHECK --interval=5s CMD [\"/app\", \"health\"]\nVOLUME /data\n",
    );
    let out = env.path("out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    let res = cmd
        .args([
            "image",
            "build",
            "-t",
            "example.org/a/b:v2",
            "--output",
            &format!("oci:{}", out.display()),
            &ctx.to_string_lossy(),
        ])
        .env("SLIPWAY_CACHE_DIR", env.path("cache"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("slipway");
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let inspect = env.ok(&["image", "inspect", &format!("oci:{}:v2", out.display())]);
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("json");
    let c = &v["config"];
    assert_eq!(c["created"], "2023-11-14T22:13:20Z");
    assert_eq!(c["config"]["Labels"]["a"], "b");
    assert_eq!(
        c["config"]["Labels"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        c["config"]["ExposedPorts"]["8080/tcp"],
        serde_json::json!({})
    );
    assert_eq!(c["config"]["User"], "1000");
    assert_eq!(c["config"]["WorkingDir"], "/srv");
    assert_eq!(c["config"]["StopSignal"], "SIGINT");
    assert_eq!(
        c["config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/app", "health"])
    );
    assert_eq!(c["config"]["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert_eq!(c["config"]["Volumes"]["/data"], serde_json::json!({}));
    assert_eq!(
        v["manifest"]["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
}

#[test]
fn git_context_carries_source_and_revision() {
    let env = Env::new();
    let ctx = env.path("repo");
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY Dockerfile /\n");
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(&ctx)
            .args(args)
            .output()
            .expect("git");
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://user:secret@git.example.org/team/app.git",
    ]);
    git(&["add", "Dockerfile"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.org",
        "commit",
        "-qm",
        "x",
    ]);
    let head = git(&["rev-parse", "HEAD"]);
    let out = env.path("out");
    env.ok(&[
        "image",
        "build",
        "--output",
        &format!("oci:{}", out.display()),
        &ctx.to_string_lossy(),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["image", "inspect", &format!("oci:{}", out.display())]))
            .expect("json");
    let labels = &v["config"]["config"]["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://git.example.org/team/app.git"
    );
    assert_eq!(labels["org.opencontainers.image.revision"], head.as_str());
    assert_eq!(
        v["manifest"]["annotations"]["org.opencontainers.image.revision"],
        head.as_str()
    );
}

fn check_bad(dockerfile: &str, files: &[(&str, &str)], expect: &str) {
    let env = Env::new();
    let ctx = env.path("ctx");
    for (n, t) in files {
        write(&ctx, n, t);
    }
    write(&ctx, "Dockerfile", dockerfile);
    let out = env.slipway(&["image", "build", &ctx.to_string_lossy()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit code for {dockerfile:?}; stderr: {stderr}"
    );
    let expect = format!("{}/Dockerfile:{expect}", ctx.display());
    assert!(
        stderr.contains(&expect),
        "expected {expect:?} in:\n{stderr}"
    );
    assert!(out.stdout.is_empty(), "no digest on failure");
}

#[test]
fn bad_dockerfiles_name_file_and_line_and_exit_2() {
    check_bad(
        "FROM scratch\nCOPPY a /a\n",
        &[],
        "2: unknown instruction: COPPY",
    );
    check_bad(
        "FROM scratch\n\nCOPY --frm=x a /a\n",
        &[],
        "3: unknown flag --frm for COPY",
    );
    check_bad(
        "FROM scratch\nCOPY ../secret /s\n",
        &[],
        "2: COPY ../secret: the source is outside the build context",
    );
    check_bad(
        "FROM scratch\nCOPY missing.txt /m\n",
        &[],
        "2: COPY missing.txt: not found in the build context",
    );
    check_bad(
        "FROM scratch\nCOPY --from=Not_A/Stage /a /a\n",
        &[],
        "2: invalid image reference",
    );
    check_bad(
        "FROM scratch AS a\nFROM scratch\nCOPY --from=b /x /x\n",
        &[],
        "3: COPY --from=b: no stage named \"b\" (stages: a)",
    );
    check_bad(
        "FROM scratch\nCOPY a b /dest\n",
        &[("a", "1"), ("b", "2")],
        "2: COPY with more than one source needs a destination directory ending in /",
    );
    check_bad(
        "FROM scratch\nADD https://example.org/x /x\n",
        &[],
        "2: ADD https://example.org/x: fetching URLs is not supported",
    );
    check_bad(
        "FROM scratch\nCOPY secret.key /k\n",
        &[("secret.key", "k"), (".dockerignore", "*.key\n")],
        "2: COPY secret.key: excluded by .dockerignore",
    );
    check_bad("FROM scratch\nEXPOSE eighty\n", &[], "2: invalid port");
    check_bad(
        "FROM scratch\nCOPY --chmod=999 a /a\n",
        &[("a", "1")],
        "2: --chmod: invalid octal mode",
    );
    check_bad(
        "FROM scratch\nSHELL /bin/bash -c\n",
        &[],
        "2: SHELL requires the JSON form",
    );
    check_bad("COPY a /a\n", &[], "1: no FROM instruction");
    check_bad(
        "FROM scratch\nCOPY --exclude=*.md . /\n",
        &[],
        "2: COPY --exclude is not supported",
    );
}

#[test]
fn a_missing_target_is_a_dockerfile_error() {
    let env = Env::new();
    let ctx = env.path("ctx");
    write(&ctx, "Dockerfile", "FROM scratch AS one\nLABEL a=b\n");
    let out = env.slipway(&["image", "build", "--target", "two", &ctx.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Dockerfile:1: target stage \"two\" not found")
    );
}

#[test]
fn a_failing_run_names_the_line() {
    test_support::require_command("bwrap", "bubblewrap");
    let env = Env::new();
    let ctx = env.path("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::copy(test_support::busybox_tar(), ctx.join("rootfs.tar")).expect("copy");
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nADD rootfs.tar /\nRUN echo starting && exit 3\n",
    );
    let out = env.slipway(&["image", "build", &ctx.to_string_lossy()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Dockerfile:3: RUN failed with exit code 3"),
        "{stderr}"
    );
    assert!(
        stderr.contains("#3 starting"),
        "RUN output is shown: {stderr}"
    );
}

#[test]
fn wrong_password_is_refused_with_the_registry_error_code() {
    let env = Env::new();
    let d = test_support::distribution();
    let out = env.slipway_stdin(
        &["image", "login", &d.addr, "-u", &d.user, "--password-stdin"],
        Some("not-the-password"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("UNAUTHORIZED"), "{stderr}");
    assert!(
        !env.path("docker-config/config.json").exists(),
        "nothing stored on a failed login"
    );
}

#[test]
fn pull_and_skopeo_copy_what_was_pushed() {
    let env = Env::new();
    env.login();
    let ctx = scratch_context(&env);
    let d = test_support::distribution();
    let name = format!("{}/{}:v1", d.addr, unique("slipway-test/copy"));
    let digest = env.ok(&[
        "image",
        "build",
        "-t",
        &name,
        "--push",
        &ctx.to_string_lossy(),
    ]);
    // a fresh store pulls it back with the same digest
    let other = Env::new();
    std::fs::create_dir_all(other.path("docker-config")).expect("mkdir");
    std::fs::copy(
        env.path("docker-config/config.json"),
        other.path("docker-config/config.json"),
    )
    .expect("copy config");
    let out_dir = other.path("pulled");
    let pulled = other.ok(&[
        "image",
        "pull",
        &name,
        "--output",
        &format!("oci:{}", out_dir.display()),
    ]);
    assert_eq!(pulled, digest);
    // skopeo copies it out of the registry
    let creds = format!("{}:{}", d.user, d.password);
    let dest = other.path("skopeo-copy");
    let copy = Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &format!("docker://{name}"),
            &format!("oci:{}:x", dest.display()),
        ])
        .output()
        .expect("skopeo");
    assert!(
        copy.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&copy.stderr)
    );
    // and slipway pushes the skopeo layout (skopeo may have recompressed it) to another repository
    let layout = format!("oci:{}:x", dest.display());
    let v: serde_json::Value =
        serde_json::from_str(&other.ok(&["image", "inspect", &layout])).expect("json");
    let again = format!("{}/{}:v2", d.addr, unique("slipway-test/copy2"));
    let pushed = other.ok(&["image", "push", &layout, &again]);
    assert_eq!(pushed, v["digest"].as_str().expect("digest"));
    let round = other.ok(&["image", "pull", &again]);
    assert_eq!(round, pushed);
}
