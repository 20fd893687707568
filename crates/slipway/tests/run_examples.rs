//! The example repository in `examples/`: its pipeline (build -> test matrix -> package, with
//! artifacts, outputs and env) passes from the repository root and from inside `examples/`,
//! and its failing variant fails fast: a test leg fails, `package` is skipped, exit 1. With
//! `--var REGISTRY=...` the image job pushes the app image into slipway's own registry, and a
//! real dockerd and skopeo pull it from there. With `--var DEPLOY_ROOT=...` too, the staging
//! and production jobs deploy the image with `slipway/deploy-local` and the service answers
//! on its ports (no gates under `slipway run`: approvals are the server's).

/// Test names start with `run_examples::` (so `cargo nextest run run_examples` selects them).
mod run_examples {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    use serde_json::Value;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .expect("repository root")
    }

    fn slipway(dir: &Path, args: &[&str], cache: &Path) -> Output {
        Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .current_dir(dir)
            .env("XDG_CACHE_HOME", cache)
            .env_remove("SLIPWAY_LOG")
            .output()
            .expect("running slipway")
    }

    fn text(o: &Output) -> String {
        format!(
            "--- stdout\n{}--- stderr\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    fn results(o: &Output) -> Vec<(String, String)> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
            })
            .filter(|e| e["type"] == "job_finished")
            .map(|e| {
                (
                    e["job"].as_str().unwrap_or_default().to_owned(),
                    e["result"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    fn logs(o: &Output) -> Vec<String> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["type"] == "log")
            .flat_map(|e| e["lines"].as_array().cloned().unwrap_or_default())
            .filter_map(|l| l.as_str().map(str::to_owned))
            .collect()
    }

    fn files_under(dir: &Path) -> usize {
        let mut n = 0;
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn pipeline_passes_from_the_repository_root() {
        let tmp = test_support::tempdir();
        let artifacts = tmp.path().join("artifacts");
        let o = slipway(
            &root(),
            &[
                "run",
                "-W",
                "examples/.slipway/workflows",
                "--json",
                "--artifact-dir",
                artifacts.to_str().expect("utf8"),
            ],
            &tmp.path().join("cache"),
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let r = results(&o);
        let tests: Vec<_> = r.iter().filter(|(j, _)| j.starts_with("test")).collect();
        assert_eq!(tests.len(), 3, "three test legs: {r:?}");
        let deploys = ["staging", "production"];
        assert!(
            r.iter()
                .filter(|(j, _)| !deploys.contains(&j.as_str()))
                .all(|(_, res)| res == "success"),
            "{r:?}"
        );
        // Without vars.DEPLOY_ROOT the deploy jobs are skipped.
        assert!(
            deploys
                .iter()
                .all(|d| r.iter().any(|(j, res)| j == d && res == "skipped")),
            "{r:?}"
        );
        for job in ["build", "package"] {
            assert!(r.iter().any(|(j, _)| j == job), "{job} ran: {r:?}");
        }
        let version = std::fs::read_to_string(root().join("examples/VERSION")).expect("VERSION");
        let packaged = format!("packaged wordcount-{}.tar.gz", version.trim());
        assert!(
            logs(&o).iter().any(|l| l.starts_with(&packaged)),
            "{}",
            text(&o)
        );
        assert!(
            files_under(&artifacts) > 0,
            "--artifact-dir kept the artifacts"
        );
    }

    #[test]
    fn pipeline_passes_from_inside_examples() {
        let tmp = test_support::tempdir();
        let o = slipway(
            &root().join("examples"),
            &["run"],
            &tmp.path().join("cache"),
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("[build]") && out.contains("[package]"),
            "{}",
            text(&o)
        );
        assert!(out.contains("run succeeded"), "{}", text(&o));
    }

    #[test]
    fn failing_variant_fails_fast() {
        let tmp = test_support::tempdir();
        let o = slipway(
            &root().join("examples"),
            &[
                "run",
                "workflow_dispatch",
                "--input",
                "break-tests=true",
                "--json",
            ],
            &tmp.path().join("cache"),
        );
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let r = results(&o);
        assert!(
            r.iter().any(|(j, res)| j == "build" && res == "success"),
            "{r:?}"
        );
        assert!(
            r.iter()
                .any(|(j, res)| j.starts_with("test") && res == "failure"),
            "{r:?}"
        );
        assert!(
            r.iter().any(|(j, res)| j == "package" && res == "skipped"),
            "{r:?}"
        );
        assert!(
            r.iter().any(|(j, res)| j == "image" && res == "skipped"),
            "{r:?}"
        );
    }

    #[test]
    fn pipeline_pushes_its_image_into_the_embedded_registry() {
        let tmp = test_support::tempdir();
        let mut command = Command::new(env!("CARGO_BIN_EXE_slipway"));
        command
            .args(["registry", "--listen", "127.0.0.1:0", "--storage"])
            .arg(tmp.path().join("registry"));
        let registry = test_support::Listening::spawn(command);
        let var = format!("REGISTRY={}", registry.addr);
        let o = slipway(
            &root().join("examples"),
            &["run", "--json", "--var", &var],
            &tmp.path().join("cache"),
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let digest = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["type"] == "job_finished" && e["job"] == "image")
            .and_then(|e| e["outputs"]["digest"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("image job output `digest`: {}", text(&o)));
        assert!(digest.starts_with("sha256:"), "{digest}");

        let version = std::fs::read_to_string(root().join("examples/VERSION")).expect("VERSION");
        let reference = format!("{}/examples/wordcount:{}", registry.addr, version.trim());
        test_support::require_command("skopeo", "skopeo");
        let inspect = Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                &format!("docker://{reference}"),
            ])
            .output()
            .expect("running skopeo");
        assert!(
            inspect.status.success(),
            "skopeo inspect: {}",
            String::from_utf8_lossy(&inspect.stderr)
        );
        let inspected: Value = serde_json::from_slice(&inspect.stdout).expect("skopeo JSON");
        assert_eq!(
            inspected["Digest"].as_str(),
            Some(digest.as_str()),
            "the pushed digest is the one the job reported"
        );

        let docker = test_support::docker_host();
        let pull = Command::new("docker")
            .args(["-H", &docker, "pull", &reference])
            .output()
            .expect("running docker");
        assert!(
            pull.status.success(),
            "docker pull: {}",
            String::from_utf8_lossy(&pull.stderr)
        );
        let id = Command::new("docker")
            .args([
                "-H",
                &docker,
                "image",
                "inspect",
                "--format",
                "{{index .RepoDigests 0}}",
                &reference,
            ])
            .output()
            .expect("running docker");
        assert!(
            String::from_utf8_lossy(&id.stdout).contains(&digest),
            "{}",
            String::from_utf8_lossy(&id.stdout)
        );
        let _ = Command::new("docker")
            .args(["-H", &docker, "rmi", "-f", &reference])
            .output();
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    }

    /// Stops the service deploy-local left running under `root` (its process group).
    fn stop_service(root: &Path) {
        if let Ok(text) = std::fs::read_to_string(root.join("service.pid"))
            && let Some(pid) = text.split_whitespace().next()
        {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .status();
        }
    }

    fn http_get(port: u16, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", port)).expect("connecting to the service");
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("response");
        out
    }

    #[test]
    fn pipeline_deploys_to_staging_and_production_with_deploy_root() {
        let tmp = test_support::tempdir();
        let mut command = Command::new(env!("CARGO_BIN_EXE_slipway"));
        command
            .args(["registry", "--listen", "127.0.0.1:0", "--storage"])
            .arg(tmp.path().join("registry"));
        let registry = test_support::Listening::spawn(command);
        let deploy_root = tmp.path().join("deploy");
        let (staging, production) = (free_port(), free_port());
        let vars = [
            format!("REGISTRY={}", registry.addr),
            format!("DEPLOY_ROOT={}", deploy_root.display()),
            format!("STAGING_PORT={staging}"),
            format!("PRODUCTION_PORT={production}"),
        ];
        let mut args = vec!["run", "--json"];
        for v in &vars {
            args.extend(["--var", v.as_str()]);
        }
        let o = slipway(&root().join("examples"), &args, &tmp.path().join("cache"));
        let answers = (
            http_get(staging, "/version"),
            http_get(production, "/version"),
        );
        stop_service(&deploy_root.join("staging"));
        stop_service(&deploy_root.join("production"));
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let r = results(&o);
        for job in ["staging", "production"] {
            assert!(
                r.iter().any(|(j, res)| j == job && res == "success"),
                "{job}: {r:?}"
            );
        }
        let version = std::fs::read_to_string(root().join("examples/VERSION")).expect("VERSION");
        let want = format!("wordcount {}", version.trim());
        assert!(
            answers.0.contains(&want) && answers.1.contains(&want),
            "{answers:?}"
        );
        let image_digest = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["type"] == "job_finished" && e["job"] == "production")
            .and_then(|e| e["outputs"]["digest"].as_str().map(str::to_owned))
            .unwrap_or_default();
        assert!(
            image_digest.starts_with("sha256:"),
            "production reports the deployed digest: {}",
            text(&o)
        );
    }
}
