//! The package + push stage from a workflow: `docker/login-action` and
//! `docker/build-push-action` run built in (no download, no daemon) under `slipway run`,
//! against the real distribution registry; dockerd runs the result.

use std::process::Command;

#[test]
fn workflow_logs_in_builds_pushes_and_reports_the_digest() {
    let d = test_support::distribution();
    let dir = test_support::tempdir();
    let repo = dir.path().join("repo");
    let wf = repo.join(".github/workflows");
    std::fs::create_dir_all(&wf).expect("mkdir");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let image = format!(
        "{}/slipway-test/workflow-{}-{nanos}",
        d.addr,
        std::process::id()
    );
    // The image: static busybox FROM scratch.
    let out = Command::new("tar")
        .arg("-xf")
        .arg(test_support::busybox_tar())
        .arg("-C")
        .arg(&repo)
        .arg("./bin/busybox")
        .output()
        .expect("tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(repo.join("Dockerfile"), "FROM scratch\nARG MSG\nCOPY bin/busybox /bin/busybox\nENV MSG=$MSG\nENTRYPOINT [\"/bin/busybox\", \"sh\", \"-c\", \"echo $MSG\"]\n")
        .expect("write");
    std::fs::write(
        wf.join("package.yml"),
        format!(
            r#"on: push
jobs:
  package:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: docker/login-action@v3
        with:
          registry: {reg}
          username: {user}
          password: ${{{{ secrets.REGISTRY_PASSWORD }}}}
      - id: build
        uses: docker/build-push-action@v6
        with:
          context: .
          push: true
          tags: {image}:ci
          build-args: |
            MSG=packaged by a workflow
      - run: echo "pushed digest=${{{{ steps.build.outputs.digest }}}} id=${{{{ steps.build.outputs.imageid }}}}"
"#,
            reg = d.addr,
            user = d.user,
        ),
    )
    .expect("write workflow");
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "commit",
            "-qm",
            "package",
        ],
    ] {
        let o = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .output()
            .expect("git");
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args([
            "run",
            "push",
            "--secret",
            &format!("REGISTRY_PASSWORD={}", d.password),
        ])
        .current_dir(&repo)
        .env("DOCKER_CONFIG", dir.path().join("docker-config"))
        .env("SLIPWAY_CACHE_DIR", dir.path().join("cache"))
        .env("XDG_CACHE_HOME", dir.path().join("xdg"))
        .env_remove("SLIPWAY_LOG")
        .output()
        .expect("slipway run");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "slipway run failed:\n{all}");
    assert!(!all.contains(&d.password), "the password is masked:\n{all}");
    let digest = all
        .split("pushed digest=sha256:")
        .nth(1)
        .and_then(|s| s.get(..64))
        .map(|hex| format!("sha256:{hex}"))
        .unwrap_or_else(|| panic!("no digest in the output:\n{all}"));
    assert!(digest.starts_with("sha256:"), "{digest}\n{all}");

    // The registry has it under the tag, with that digest; docker runs it.
    let inspect = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["image", "inspect", &format!("{image}:ci")])
        .env("DOCKER_CONFIG", dir.path().join("docker-config"))
        .output()
        .expect("inspect");
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("json");
    assert_eq!(v["digest"], digest.as_str());

    let host = test_support::docker_host();
    let cfg = dir.path().join("docker-cli");
    let login = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf %s \"$PW\" | docker --config {} -H {host} login -u {} --password-stdin {}",
            cfg.display(),
            d.user,
            d.addr
        ))
        .env("PW", &d.password)
        .output()
        .expect("docker login");
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let run = Command::new("docker")
        .args([
            "--config",
            &cfg.to_string_lossy(),
            "-H",
            &host,
            "run",
            "--rm",
            &format!("{image}@{digest}"),
        ])
        .output()
        .expect("docker run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "packaged by a workflow"
    );
    let _ = Command::new("docker")
        .args(["-H", &host, "rmi", &format!("{image}@{digest}")])
        .output();
}
