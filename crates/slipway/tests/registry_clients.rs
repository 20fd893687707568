//! `slipway registry` (the binary) with the clients users point at it: docker, skopeo
//! (both ways, `--all` for an index), podman; docker login with the bearer flow; S3 storage;
//! `slipway registry gc` while serving.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use store::blob::Digest;

/// A `slipway registry` process on a free port, killed on drop.
struct Registry {
    child: Child,
    addr: String,
    storage: PathBuf,
}

impl Registry {
    fn start(storage: &Path, extra: &[&str], env: &[(&str, &str)]) -> Registry {
        let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(["registry", "--listen", "127.0.0.1:0", "--storage"])
            .arg(storage)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting slipway registry");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else { panic!("slipway registry exited before listening:\n{seen}") };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().expect("address").to_owned();
            }
        };
        // Keep draining stderr so the registry never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Registry { child, addr, storage: storage.to_owned() }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a command; panic with its output unless it succeeds. Returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command that must fail; returns stderr.
fn run_fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(!out.status.success(), "{cmd:?} should have failed:\nstdout: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn docker(config: Option<&Path>) -> Command {
    test_support::require_command("docker", "docker.io");
    let mut cmd = Command::new("docker");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.arg("-H").arg(test_support::docker_host());
    cmd
}

fn skopeo() -> Command {
    test_support::require_command("skopeo", "skopeo");
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy");
    cmd
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos()))
}

/// An OCI layout with the busybox rootfs as an uncompressed layer: refs `amd64` and
/// `arm64` (two images, same layer, different configs) and `multi` (an index of both).
struct Layout {
    dir: tempfile::TempDir,
    index: Vec<u8>,
    amd64: Vec<u8>,
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Digest {
    let digest = Digest::of(bytes);
    std::fs::write(dir.join("blobs/sha256").join(digest.hex()), bytes).expect("writing blob");
    digest
}

fn layout() -> Layout {
    let dir = test_support::tempdir();
    let root = dir.path();
    std::fs::create_dir_all(root.join("blobs/sha256")).expect("mkdir");
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    let layer = std::fs::read(test_support::busybox_tar()).expect("reading the busybox tar");
    let layer_digest = write_blob(root, &layer);
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]}
        }))
        .expect("json");
        let config_digest = write_blob(root, &config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.to_string(), "size": layer.len()}]
        }))
        .expect("json");
        let digest = write_blob(root, &manifest);
        manifests.push((arch, digest, manifest));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests.iter().map(|(arch, d, m)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d.to_string(), "size": m.len(),
            "platform": {"architecture": arch, "os": "linux"}
        })).collect::<Vec<_>>()
    }))
    .expect("json");
    let index_digest = write_blob(root, &index);
    let mut refs: Vec<serde_json::Value> = manifests
        .iter()
        .map(|(arch, d, m)| serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d.to_string(), "size": m.len(), "annotations": {"org.opencontainers.image.ref.name": arch}}))
        .collect();
    refs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest.to_string(), "size": index.len(), "annotations": {"org.opencontainers.image.ref.name": "multi"}}));
    std::fs::write(root.join("index.json"), serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": refs})).expect("json")).expect("index.json");
    let amd64 = manifests.remove(0).2;
    Layout { dir, index, amd64 }
}

/// The digest a pulled OCI layout's `index.json` gives for `name`.
fn layout_ref_digest(dir: &Path, name: &str) -> String {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index.json")).expect("json");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("no ref {name} in {index}"))
        .to_owned()
}

#[test]
fn docker_push_pull_run() {
    let storage = test_support::tempdir();
    let reg = Registry::start(storage.path(), &[], &[]);
    let image = format!("{}/team/busybox:{}", reg.addr, unique("t"));
    run(docker(None).args(["tag", &test_support::busybox_image(), &image]));
    let pushed = run(docker(None).args(["push", &image]));
    assert!(pushed.contains("digest: sha256:"), "{pushed}");
    run(docker(None).args(["rmi", &image]));
    run(docker(None).args(["pull", &image]));
    let out = run(docker(None).args(["run", "--rm", "--network", "none", &image, "echo", "hello from slipway"]));
    assert_eq!(out.trim(), "hello from slipway");
    run(docker(None).args(["rmi", &image]));
}

#[test]
fn docker_login_and_per_repository_permissions() {
    let storage = test_support::tempdir();
    let config = storage.path().join("registry.toml");
    std::fs::write(
        &config,
        r#"
[registry.auth]
anonymous_read = false

[[registry.auth.user]]
name = "ci"
password = "env:TEST_CI_PASSWORD"
push = ["team/**"]

[[registry.auth.user]]
name = "deploy"
token = "deploy-token"
pull = ["team/**"]
"#,
    )
    .expect("config");
    let reg = Registry::start(&storage.path().join("data"), &["--config", config.to_str().expect("utf-8")], &[("TEST_CI_PASSWORD", "ci-secret")]);
    let image = format!("{}/team/auth:{}", reg.addr, unique("t"));
    let docker_config = storage.path().join("docker-config");
    std::fs::create_dir_all(&docker_config).expect("mkdir");
    run(docker(None).args(["tag", &test_support::busybox_image(), &image]));

    // Not logged in: refused.
    let err = run_fails(docker(Some(&docker_config)).args(["push", &image]));
    assert!(err.contains("unauthorized") || err.contains("no basic auth credentials") || err.contains("denied"), "{err}");
    // A wrong password is refused at login.
    let mut login = docker(Some(&docker_config));
    login.args(["login", "-u", "ci", "--password-stdin", &reg.addr]);
    let err = run_fails_with_stdin(&mut login, "wrong");
    assert!(err.contains("unauthorized") || err.contains("401"), "{err}");
    // CI pushes.
    let mut login = docker(Some(&docker_config));
    login.args(["login", "-u", "ci", "--password-stdin", &reg.addr]);
    run_with_stdin(&mut login, "ci-secret");
    run(docker(Some(&docker_config)).args(["push", &image]));
    // The deploy token pulls but cannot push.
    let mut login = docker(Some(&docker_config));
    login.args(["login", "-u", "deploy", "--password-stdin", &reg.addr]);
    run_with_stdin(&mut login, "deploy-token");
    run(docker(None).args(["rmi", &image]));
    run(docker(Some(&docker_config)).args(["pull", &image]));
    let other = format!("{}/team/other:{}", reg.addr, unique("t"));
    run(docker(None).args(["tag", &test_support::busybox_image(), &other]));
    let err = run_fails(docker(Some(&docker_config)).args(["push", &other]));
    assert!(err.contains("denied"), "{err}");
    run(docker(None).args(["rmi", &image, &other]));
}

fn with_stdin(cmd: &mut Command, input: &str) -> std::process::Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawning");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("writing stdin");
    child.wait_with_output().expect("waiting")
}

fn run_with_stdin(cmd: &mut Command, input: &str) {
    let out = with_stdin(cmd, input);
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn run_fails_with_stdin(cmd: &mut Command, input: &str) -> String {
    let out = with_stdin(cmd, input);
    assert!(!out.status.success(), "{cmd:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn skopeo_copy_both_ways_including_an_index() {
    let layout = layout();
    let storage = test_support::tempdir();
    let reg = Registry::start(storage.path(), &[], &[]);
    let src = layout.dir.path().to_str().expect("utf-8").to_owned();

    // One image, both ways, digests preserved.
    let single = format!("docker://{}/team/single:1", reg.addr);
    run(skopeo().args(["copy", "--preserve-digests", "--dest-tls-verify=false", &format!("oci:{src}:amd64"), &single]));
    let raw = run(skopeo().args(["inspect", "--raw", "--tls-verify=false", &single]));
    assert_eq!(raw.as_bytes(), layout.amd64.as_slice());
    let back = test_support::tempdir();
    let back_dir = back.path().join("single");
    run(skopeo().args(["copy", "--preserve-digests", "--src-tls-verify=false", "--dest-oci-accept-uncompressed-layers", &single, &format!("oci:{}:got", back_dir.display())]));
    assert_eq!(layout_ref_digest(&back_dir, "got"), Digest::of(&layout.amd64).to_string());

    // The index with --all, both ways.
    let multi = format!("docker://{}/team/multi:1", reg.addr);
    run(skopeo().args(["copy", "--all", "--preserve-digests", "--dest-tls-verify=false", &format!("oci:{src}:multi"), &multi]));
    let raw = run(skopeo().args(["inspect", "--raw", "--tls-verify=false", &multi]));
    assert_eq!(raw.as_bytes(), layout.index.as_slice());
    let multi_dir = back.path().join("multi");
    run(skopeo().args(["copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-oci-accept-uncompressed-layers", &multi, &format!("oci:{}:got", multi_dir.display())]));
    assert_eq!(layout_ref_digest(&multi_dir, "got"), Digest::of(&layout.index).to_string());
    // Every manifest of the index came back.
    let index: serde_json::Value = serde_json::from_slice(&layout.index).expect("json");
    for m in index["manifests"].as_array().expect("manifests") {
        let digest = Digest::parse(m["digest"].as_str().expect("digest")).expect("valid");
        assert!(multi_dir.join("blobs/sha256").join(digest.hex()).is_file(), "{digest} missing");
    }
    // Registry to registry, between repositories (cross-repository mounts).
    let copy = format!("docker://{}/other/copy:1", reg.addr);
    run(skopeo().args(["copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false", &multi, &copy]));
    let raw = run(skopeo().args(["inspect", "--raw", "--tls-verify=false", &copy]));
    assert_eq!(raw.as_bytes(), layout.index.as_slice());
    let tags = run(skopeo().args(["list-tags", "--tls-verify=false", &format!("docker://{}/team/multi", reg.addr)]));
    assert!(tags.contains("\"1\""), "{tags}");
}

#[test]
fn podman_push_pull_run() {
    test_support::require_command("podman", "podman");
    let layout = layout();
    let storage = test_support::tempdir();
    let reg = Registry::start(storage.path(), &[], &[]);
    let podman_root = test_support::tempdir();
    let podman = || {
        let mut cmd = Command::new("podman");
        cmd.arg("--root").arg(podman_root.path().join("root")).arg("--runroot").arg(podman_root.path().join("run")).args(["--storage-driver", "vfs"]);
        cmd
    };
    let src = format!("{}/team/podsrc:1", reg.addr);
    run(skopeo().args(["copy", "--dest-tls-verify=false", &format!("oci:{}:amd64", layout.dir.path().display()), &format!("docker://{src}")]));
    run(podman().args(["pull", "--tls-verify=false", &src]));
    let pushed = format!("{}/team/podman:1", reg.addr);
    run(podman().args(["tag", &src, &pushed]));
    run(podman().args(["push", "--tls-verify=false", &pushed]));
    run(podman().args(["rmi", &src, &pushed]));
    run(podman().args(["pull", "--tls-verify=false", &pushed]));
    let out = run(podman().args([
        "run", "--rm", "--network", "none", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768", &pushed, "echo", "hello from podman",
    ]));
    assert_eq!(out.trim(), "hello from podman");
    let _ = podman().args(["rmi", "-a", "-f"]).output();
}

#[test]
fn s3_storage_with_skopeo() {
    let endpoint = test_support::s3_endpoint();
    let bucket = unique("slipway-registry");
    run(Command::new("curl").args(["-sf", "-X", "PUT", &format!("{endpoint}/{bucket}")]));
    let layout = layout();
    let spool = test_support::tempdir();
    let reg = Registry::start(
        spool.path(),
        &["--s3-bucket", &bucket, "--s3-endpoint", &endpoint, "--s3-region", "us-east-1"],
        &[("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")],
    );
    let image = format!("docker://{}/team/s3:1", reg.addr);
    run(skopeo().args(["copy", "--all", "--preserve-digests", "--dest-tls-verify=false", &format!("oci:{}:multi", layout.dir.path().display()), &image]));
    let back = test_support::tempdir();
    run(skopeo().args(["copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-oci-accept-uncompressed-layers", &image, &format!("oci:{}:got", back.path().display())]));
    assert_eq!(layout_ref_digest(back.path(), "got"), Digest::of(&layout.index).to_string());
    // Nothing but the upload spool is on local disk.
    let local_blobs = walk_files(spool.path());
    assert!(local_blobs.is_empty(), "S3 mode keeps no blobs locally: {local_blobs:?}");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { stack.push(path) } else { out.push(path) }
        }
    }
    out
}

#[test]
fn gc_while_serving() {
    let layout = layout();
    let storage = test_support::tempdir();
    let reg = Registry::start(storage.path(), &[], &[]);
    let src = layout.dir.path().display().to_string();
    let keep = format!("docker://{}/team/keep:1", reg.addr);
    let drop = format!("docker://{}/team/drop:1", reg.addr);
    run(skopeo().args(["copy", "--preserve-digests", "--dest-tls-verify=false", &format!("oci:{src}:amd64"), &keep]));
    run(skopeo().args(["copy", "--preserve-digests", "--dest-tls-verify=false", &format!("oci:{src}:arm64"), &drop]));
    run(skopeo().args(["delete", "--tls-verify=false", &drop]));

    let gc = |extra: &[&str]| -> serde_json::Value {
        let out = run(Command::new(env!("CARGO_BIN_EXE_slipway")).args(["registry", "gc", "--json", "--storage"]).arg(&reg.storage).args(extra));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("gc --json printed {out:?}: {e}"))
    };
    // Within the grace period nothing goes.
    assert_eq!(gc(&[])["blobs_removed"], 0);
    // Without grace: the deleted image's manifest and config (its layer is shared with keep).
    let report = gc(&["--grace", "0s"]);
    assert_eq!(report["blobs_removed"], 2, "{report}");
    // The kept image still pulls completely.
    let back = test_support::tempdir();
    run(skopeo().args(["copy", "--preserve-digests", "--src-tls-verify=false", "--dest-oci-accept-uncompressed-layers", &keep, &format!("oci:{}:got", back.path().display())]));
    assert_eq!(layout_ref_digest(back.path(), "got"), Digest::of(&layout.amd64).to_string());
}
