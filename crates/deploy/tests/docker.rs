//! `slipway/deploy-docker` against the real private dockerd, with busybox images made here.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use common::*;

static N: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs the docker CLI against the test engine (with a private client config dir).
fn docker(args: &[&str]) -> String {
    let bin = test_support::require_command("docker", "docker.io");
    let cfg =
        std::env::temp_dir().join(format!("slipway-deploy-docker-cfg-{}", std::process::id()));
    let out = Command::new(bin)
        .env("DOCKER_CONFIG", &cfg)
        .arg("-H")
        .arg(test_support::docker_host())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A busybox image with `/www/index.html` = `body` and `cmd` as its CMD.
fn image(body: &str, cmd: &str) -> String {
    let tmp = unique("slipway-deploy-build");
    let tag = format!("slipway-deploy-test/site:{}", unique("v"));
    docker(&[
        "run",
        "--network",
        "none",
        "--name",
        &tmp,
        &test_support::busybox_image(),
        "sh",
        "-c",
        &format!("mkdir -p /www && printf '{body}' > /www/index.html"),
    ]);
    docker(&["commit", "-c", &format!("CMD {cmd}"), &tmp, &tag]);
    docker(&["rm", "-f", &tmp]);
    tag
}

/// Removes every container of `app` at the end of a test.
struct RemoveApp(String);

impl Drop for RemoveApp {
    fn drop(&mut self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=slipway.app={}", self.0),
        ]);
        for id in ids.split_whitespace() {
            docker(&["rm", "-f", id]);
        }
    }
}

/// Names and states of the app's containers.
fn containers(app: &str) -> Vec<(String, String)> {
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=slipway.app={app}"),
        "--format",
        "{{.Names}} {{.State}}",
    ]);
    let mut v: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(n, s)| (n.to_owned(), s.to_owned())))
        .collect();
    v.sort();
    v
}

async fn deploy_docker(
    pairs: &[(&str, String)],
) -> Result<indexmap::IndexMap<String, String>, String> {
    let ws = test_support::tempdir();
    let lines = Lines::default();
    let mut all = vec![
        ("docker-host", test_support::docker_host()),
        ("health-timeout", "20s".to_string()),
    ];
    all.extend(pairs.iter().map(|(k, v)| (*k, v.clone())));
    deploy::action::run("deploy-docker", &inputs(&all), ws.path(), &lines.sink())
        .await
        .map_err(|e| format!("{e}\n--- log:\n{}", lines.text()))
}

#[tokio::test]
async fn stop_first_replaces_the_container_and_a_broken_image_rolls_back() {
    let app = unique("web");
    let _cleanup = RemoveApp(app.clone());
    let port = free_port();
    let httpd = format!("httpd -f -p 127.0.0.1:{port} -h /www");
    let v1 = image("v1\n", &httpd);
    let v2 = image("v2\n", &httpd);
    let broken = image("broken\n", "echo broken image >&2; exit 3");
    let base = |img: &str| {
        vec![
            ("image", img.to_owned()),
            ("name", app.clone()),
            ("network", "host".to_owned()),
            ("health-url", format!("http://127.0.0.1:{port}/")),
            // httpd runs as PID 1 and so ignores SIGTERM: do not wait the default 10s.
            ("stop-timeout", "1s".to_owned()),
        ]
    };
    let one = deploy_docker(&base(&v1)).await.unwrap();
    assert_eq!(get(port).await.unwrap(), "v1\n");
    assert!(one["digest"].starts_with("sha256:"), "{one:?}");
    assert!(one["container"].starts_with(&format!("{app}-")));
    let two = deploy_docker(&base(&v2)).await.unwrap();
    assert_eq!(get(port).await.unwrap(), "v2\n");
    assert_eq!(two["previous"], one["container"]);
    assert_eq!(
        containers(&app),
        vec![(two["container"].clone(), "running".to_owned())],
        "the old container is removed"
    );

    let e = deploy_docker(&base(&broken)).await.unwrap_err();
    assert!(
        e.contains("rolled back") && e.contains(&format!("{} keeps serving", two["container"])),
        "{e}"
    );
    assert!(
        e.contains("exit code 3") && e.contains("broken image"),
        "the container's exit and log are reported: {e}"
    );
    assert_eq!(
        get(port).await.unwrap(),
        "v2\n",
        "the old container serves again"
    );
    assert_eq!(
        containers(&app),
        vec![(two["container"].clone(), "running".to_owned())],
        "the new container is removed"
    );
}

#[tokio::test]
async fn start_first_keeps_the_old_container_running_until_the_new_one_is_healthy() {
    let app = unique("svc");
    let _cleanup = RemoveApp(app.clone());
    let httpd = "httpd -f -p 127.0.0.1:8080 -h /www";
    let v1 = image("v1\n", httpd);
    let v2 = image("v2\n", httpd);
    let base = |img: &str, health: &str| {
        vec![
            ("image", img.to_owned()),
            ("name", app.clone()),
            ("network", "none".to_owned()),
            ("health-cmd", health.to_owned()),
            ("env", "GREETING=hello world\n".to_owned()),
        ]
    };
    let ok = "wget -q -O- http://127.0.0.1:8080/ | grep -q v && test \"$GREETING\" = 'hello world'";
    let one = deploy_docker(&base(&v1, ok)).await.unwrap();
    let started_at = docker(&["inspect", "-f", "{{.State.StartedAt}}", &one["container"]]);
    // v2 never becomes healthy: v1 was never stopped and still runs.
    let mut bad = base(&v2, "test -f /never");
    bad.push(("health-timeout", "1s".to_owned()));
    let e = deploy_docker(&bad).await.unwrap_err();
    assert!(
        e.contains("did not pass within")
            && e.contains(&format!("{} keeps serving", one["container"])),
        "{e}"
    );
    assert_eq!(
        containers(&app),
        vec![(one["container"].clone(), "running".to_owned())]
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &one["container"]]),
        started_at,
        "never restarted"
    );
    let two = deploy_docker(&base(&v2, ok)).await.unwrap();
    assert_eq!(
        containers(&app),
        vec![(two["container"].clone(), "running".to_owned())]
    );
    let labels = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"slipway.digest\"}}",
        &two["container"],
    ]);
    assert_eq!(labels, two["digest"]);
}

#[tokio::test]
async fn a_first_deploy_that_fails_leaves_nothing_behind() {
    let app = unique("first");
    let _cleanup = RemoveApp(app.clone());
    let broken = image("x", "exit 1");
    let e = deploy_docker(&[
        ("image", broken),
        ("name", app.clone()),
        ("network", "none".into()),
    ])
    .await
    .unwrap_err();
    assert!(
        e.contains("no earlier container") && e.contains("exit code 1"),
        "{e}"
    );
    assert_eq!(containers(&app), vec![]);
}

#[tokio::test]
async fn pulls_by_digest_from_the_registry_with_credentials() {
    let reg = test_support::distribution();
    let app = unique("pulled");
    let _cleanup = RemoveApp(app.clone());
    let local = image("pulled\n", "sleep 300");
    let repo = format!("{}/deploy-test/{}", reg.addr, unique("site"));
    let tagged = format!("{repo}:v1");
    docker(&["tag", &local, &tagged]);
    docker(&["login", "-u", &reg.user, "-p", &reg.password, &reg.addr]);
    docker(&["push", &tagged]);
    let digest = docker(&["inspect", "-f", "{{index .RepoDigests 0}}", &tagged]);
    let digest = digest.split_once('@').unwrap().1.to_owned();
    docker(&["logout", &reg.addr]);
    // Forget every local name for it, so the deploy has to pull.
    docker(&["rmi", &tagged, &local]);
    let by_digest = format!("{repo}@{digest}");

    let e = deploy_docker(&[
        ("image", by_digest.clone()),
        ("name", app.clone()),
        ("network", "none".into()),
        ("registry-username", reg.user.clone()),
        ("registry-password", "wrong".into()),
    ])
    .await
    .unwrap_err();
    assert!(e.contains(&format!("pulling {by_digest}")), "{e}");
    assert_eq!(containers(&app), vec![]);

    let out = deploy_docker(&[
        ("image", by_digest.clone()),
        ("name", app.clone()),
        ("network", "none".into()),
        ("registry-username", reg.user.clone()),
        ("registry-password", reg.password.clone()),
    ])
    .await
    .unwrap();
    assert_eq!(out["digest"], digest);
    assert_eq!(
        out["container"],
        format!("{app}-{}", &digest["sha256:".len()..]["".len()..12])
    );
}

#[tokio::test]
async fn bad_docker_inputs_are_named() {
    for (pairs, expect) in [
        (vec![("name", "x".to_string())], "`image` is required"),
        (vec![("image", "i".to_string())], "`name` is required"),
        (
            vec![("image", "i".to_string()), ("name", "bad name".to_string())],
            "not a valid container name",
        ),
        (
            vec![
                ("image", "i".to_string()),
                ("name", "a".to_string()),
                ("strategy", "yolo".to_string()),
            ],
            "`strategy`",
        ),
        (
            vec![
                ("image", "i".to_string()),
                ("name", "a".to_string()),
                ("registry-username", "u".to_string()),
            ],
            "both",
        ),
        (
            vec![
                ("image", "i".to_string()),
                ("name", "a".to_string()),
                ("ports", "80".to_string()),
            ],
            "invalid `ports` entry",
        ),
        (
            vec![
                ("image", "i".to_string()),
                ("name", "a".to_string()),
                ("docker-host", "ftp://x".to_string()),
            ],
            "unsupported docker-host",
        ),
        (
            vec![
                ("image", "i".to_string()),
                ("name", "a".to_string()),
                ("docker-host", "unix:///nonexistent/docker.sock".to_string()),
            ],
            "connecting to the Docker engine at unix:///nonexistent/docker.sock",
        ),
    ] {
        let e = deploy_docker(&pairs).await.unwrap_err();
        assert!(e.contains(expect), "{e:?} should contain {expect:?}");
    }
}
