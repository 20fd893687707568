//! `slipway/deploy-local` end to end: real processes, a real HTTP service (busybox httpd).

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use common::*;
use deploy::release::{Releases, Status};

fn releases(root: &Path) -> Releases {
    Releases::parse(Some(&fs::read(root.join("releases.json")).unwrap())).unwrap()
}

#[tokio::test]
async fn deploys_switch_current_restart_the_service_and_prune() {
    let ws = test_support::tempdir();
    let root = ws.path().join("srv");
    let _stop = StopService(root.clone());
    let port = free_port();
    let mut ids = Vec::new();
    for v in 1..=3 {
        let site = site(ws.path(), &format!("v{v}"), &format!("version {v}\n"));
        let lines = Lines::default();
        let out = deploy::action::run(
            "deploy-local",
            &inputs(&[
                ("artifact", site.display().to_string()),
                ("root", "srv".into()),
                ("command", httpd_command(port)),
                ("health-url", format!("http://127.0.0.1:{port}/")),
                ("health-timeout", "20s".into()),
                ("keep", "2".into()),
            ]),
            ws.path(),
            &lines.sink(),
        )
        .await
        .unwrap_or_else(|e| panic!("deploy {v}: {e}\n{}", lines.text()));
        assert_eq!(get(port).await.unwrap(), format!("version {v}\n"));
        assert_eq!(
            read_link(&root.join("current")),
            format!("releases/{}", out["release"])
        );
        assert!(out["digest"].starts_with("sha256:"));
        if v > 1 {
            assert_eq!(out["previous"], ids[v - 2]);
        }
        ids.push(out["release"].clone());
    }
    // keep = 2: the first release is gone, the last two remain.
    assert!(!root.join("releases").join(&ids[0]).exists());
    assert!(root.join("releases").join(&ids[1]).is_dir());
    let r = releases(&root);
    assert_eq!(r.current.as_deref(), Some(ids[2].as_str()));
    let st: Vec<_> = r
        .releases
        .iter()
        .map(|x| (x.id.clone(), x.status))
        .collect();
    assert_eq!(
        st,
        vec![
            (ids[1].clone(), Status::Superseded),
            (ids[2].clone(), Status::Active)
        ]
    );
    // Ordered ids: counter first.
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    // The service runs detached: its own session, recorded in service.pid.
    let svc = deploy::supervisor::recorded(&deploy::host::LocalHost, root.to_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(svc.release, ids[2]);
    assert_eq!(
        nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(svc.pid as i32)))
            .unwrap()
            .as_raw(),
        svc.pid as i32
    );
    assert!(
        root.join("releases")
            .join(&ids[2])
            .join(".slipway-service.log")
            .is_file()
    );
}

/// Deploys v1 (healthy), then `bad` inputs for v2, and checks v1 still serves.
async fn rollback_case(bad: &[(&str, String)], expect: &str) {
    let ws = test_support::tempdir();
    let root = ws.path().join("srv");
    let _stop = StopService(root.clone());
    let port = free_port();
    let v1 = site(ws.path(), "v1", "version 1\n");
    let base = |artifact: &Path| {
        vec![
            ("artifact", artifact.display().to_string()),
            ("root", "srv".to_string()),
            ("command", httpd_command(port)),
            ("health-url", format!("http://127.0.0.1:{port}/")),
            ("health-timeout", "20s".to_string()),
        ]
    };
    let first = deploy::action::run("deploy-local", &inputs(&base(&v1)), ws.path(), &|_| {})
        .await
        .unwrap();
    let v2 = site(ws.path(), "v2", "version 2\n");
    let mut second = base(&v2);
    for (k, v) in bad {
        second.retain(|(kk, _)| kk != k);
        second.push((k, v.clone()));
    }
    let lines = Lines::default();
    let e = deploy::action::run("deploy-local", &inputs(&second), ws.path(), &lines.sink())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rolled back") && e.contains(&first["release"]) && e.contains("keeps serving"),
        "{e}"
    );
    assert!(e.contains(expect), "{e:?} should contain {expect:?}");
    assert_eq!(
        get(port).await.unwrap(),
        "version 1\n",
        "the previous release serves again"
    );
    assert_eq!(
        read_link(&root.join("current")),
        format!("releases/{}", first["release"])
    );
    let r = releases(&root);
    assert_eq!(r.current.as_deref(), Some(first["release"].as_str()));
    assert_eq!(r.releases.last().map(|x| x.status), Some(Status::Failed));
    assert_eq!(
        r.get(&first["release"]).map(|x| x.status),
        Some(Status::Active)
    );
    assert!(lines.text().contains("Rolled back"), "{}", lines.text());
}

#[tokio::test]
async fn a_service_that_exits_at_start_rolls_back() {
    rollback_case(
        &[("command", "echo cannot start >&2; exit 3".into())],
        "cannot start",
    )
    .await;
}

#[tokio::test]
async fn a_health_command_that_never_passes_rolls_back() {
    rollback_case(
        &[
            ("health-url", String::new()),
            ("health-cmd", "test -f ready".into()),
            ("health-timeout", "1s".into()),
        ],
        "did not pass within",
    )
    .await;
}

#[tokio::test]
async fn a_failing_post_rolls_back() {
    rollback_case(
        &[("post", "echo migration failed >&2; exit 1".into())],
        "migration failed",
    )
    .await;
}

#[tokio::test]
async fn a_failing_pre_changes_nothing() {
    let ws = test_support::tempdir();
    let root = ws.path().join("srv");
    let v1 = site(ws.path(), "v1", "1");
    let first = deploy::action::run(
        "deploy-local",
        &inputs(&[
            ("artifact", v1.display().to_string()),
            ("root", "srv".into()),
        ]),
        ws.path(),
        &|_| {},
    )
    .await
    .unwrap();
    let v2 = site(ws.path(), "v2", "2");
    let e = deploy::action::run(
        "deploy-local",
        &inputs(&[
            ("artifact", v2.display().to_string()),
            ("root", "srv".into()),
            ("pre", "exit 7".into()),
        ]),
        ws.path(),
        &|_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`pre` failed") && e.contains("status 7") && e.contains("nothing was switched"),
        "{e}"
    );
    assert_eq!(
        read_link(&root.join("current")),
        format!("releases/{}", first["release"])
    );
}

#[tokio::test]
async fn first_deploy_that_fails_leaves_nothing_current() {
    let ws = test_support::tempdir();
    let root = ws.path().join("srv");
    let _stop = StopService(root.clone());
    let v1 = site(ws.path(), "v1", "1");
    let e = deploy::action::run(
        "deploy-local",
        &inputs(&[
            ("artifact", v1.display().to_string()),
            ("root", "srv".into()),
            ("command", "exit 1".into()),
            ("health-cmd", "test -f never".into()),
        ]),
        ws.path(),
        &|_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no previous release") && e.contains("the service exited"),
        "{e}"
    );
    assert!(fs::symlink_metadata(root.join("current")).is_err());
    assert_eq!(releases(&root).current, None);
}

#[tokio::test]
async fn a_corrupt_releases_file_is_refused_by_name() {
    let ws = test_support::tempdir();
    fs::create_dir_all(ws.path().join("srv")).unwrap();
    fs::write(ws.path().join("srv/releases.json"), "{not json").unwrap();
    let v1 = site(ws.path(), "v1", "1");
    let e = deploy::action::run(
        "deploy-local",
        &inputs(&[
            ("artifact", v1.display().to_string()),
            ("root", "srv".into()),
        ]),
        ws.path(),
        &|_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("releases.json") && e.contains("not a valid releases file"),
        "{e}"
    );
}

/// An OCI layout with two layers, the second deleting a file of the first (a whiteout).
#[tokio::test]
async fn oci_layout_images_unpack_in_layer_order_with_whiteouts() {
    use oci::layer::{Entry, Kind, write_layer};
    use oci::manifest::{Compression, Manifest, media};
    let ws = test_support::tempdir();
    let files = ws.path().join("files");
    fs::create_dir_all(&files).unwrap();
    fs::write(files.join("app"), "app v1").unwrap();
    fs::write(files.join("old"), "stale").unwrap();
    let layout = oci::layout::Layout::create(&ws.path().join("img")).unwrap();
    let e = |path: &str, kind: Kind| Entry {
        path: path.into(),
        kind,
        mode: 0o755,
        uid: 0,
        gid: 0,
    };
    let l1 = write_layer(
        &layout,
        vec![
            e("srv", Kind::Dir),
            e(
                "srv/app",
                Kind::File {
                    source: files.join("app"),
                },
            ),
            e(
                "srv/old",
                Kind::File {
                    source: files.join("old"),
                },
            ),
        ],
        0,
        Compression::Gzip,
    )
    .unwrap();
    let l2 = write_layer(
        &layout,
        vec![e("srv/old", Kind::Whiteout)],
        0,
        Compression::None,
    )
    .unwrap();
    let config = layout
        .write_json(
            media::OCI_CONFIG,
            &serde_json::json!({"architecture": "amd64", "os": "linux"}),
        )
        .unwrap();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config,
        layers: vec![l1.descriptor, l2.descriptor],
        annotations: Default::default(),
    };
    let desc = layout.write_json(media::OCI_MANIFEST, &manifest).unwrap();
    layout.set_ref("v1", desc.clone(), None).unwrap();
    let out = deploy::action::run(
        "deploy-local",
        &inputs(&[("image", "oci:img:v1".into()), ("root", "srv".into())]),
        ws.path(),
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(out["digest"], desc.digest.to_string());
    let cur = ws.path().join("srv/current");
    assert_eq!(fs::read_to_string(cur.join("srv/app")).unwrap(), "app v1");
    assert!(!cur.join("srv/old").exists(), "the whiteout removed it");
}

/// A docker-archive saved from the real dockerd (busybox) unpacks into a runnable tree.
#[tokio::test]
async fn docker_archive_images_unpack() {
    let ws = test_support::tempdir();
    let docker = test_support::require_command("docker", "docker.io");
    let archive = ws.path().join("busybox.tar");
    let st = std::process::Command::new(docker)
        .args(["-H", &test_support::docker_host(), "save", "-o"])
        .arg(&archive)
        .arg(test_support::busybox_image())
        .status()
        .unwrap();
    assert!(st.success());
    let out = deploy::action::run(
        "deploy-local",
        &inputs(&[
            ("image", "docker-archive:busybox.tar".into()),
            ("root", "srv".into()),
            ("health-cmd", "./bin/busybox true".into()),
        ]),
        ws.path(),
        &|_| {},
    )
    .await
    .unwrap();
    assert!(out["digest"].starts_with("sha256:"));
    assert!(ws.path().join("srv/current/bin/busybox").is_file());
}

/// An image by digest from the real distribution registry (htpasswd auth).
#[tokio::test]
async fn registry_images_are_pulled_by_digest_with_credentials() {
    let reg = test_support::distribution();
    let ws = test_support::tempdir();
    let docker = |args: &[&str]| {
        let out = std::process::Command::new(test_support::require_command("docker", "docker.io"))
            .env("DOCKER_CONFIG", ws.path().join("docker-config"))
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
    };
    let repo = format!("{}/deploy-local/busybox-{}", reg.addr, std::process::id());
    let tagged = format!("{repo}:v1");
    docker(&["tag", &test_support::busybox_image(), &tagged]);
    docker(&["login", "-u", &reg.user, "-p", &reg.password, &reg.addr]);
    docker(&["push", &tagged]);
    let repo_digest = docker(&["inspect", "-f", "{{index .RepoDigests 0}}", &tagged]);
    docker(&["rmi", &tagged]);
    let digest = repo_digest.split_once('@').unwrap().1.to_owned();
    let image = format!("{repo}@{digest}");

    let with = |password: &str| {
        inputs(&[
            ("image", image.clone()),
            ("root", "srv".into()),
            ("registry-username", reg.user.clone()),
            ("registry-password", password.into()),
        ])
    };
    let e = deploy::action::run("deploy-local", &with("wrong"), ws.path(), &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("pulling {image}")), "{e}");
    assert!(!ws.path().join("srv/current").exists());

    let out = deploy::action::run("deploy-local", &with(&reg.password), ws.path(), &|_| {})
        .await
        .unwrap();
    assert_eq!(out["digest"], digest);
    assert!(ws.path().join("srv/current/bin/busybox").is_file());
}

/// releases.json lost: an existing release directory with the same id is never overwritten.
#[tokio::test]
async fn a_lost_releases_file_never_overwrites_a_release_directory() {
    let ws = test_support::tempdir();
    let root = ws.path().join("srv");
    let v1 = site(ws.path(), "v1", "1");
    let with = inputs(&[
        ("artifact", v1.display().to_string()),
        ("root", "srv".into()),
    ]);
    let run = || deploy::action::run("deploy-local", &with, ws.path(), &|_| {});
    let first = run().await.unwrap();
    fs::write(
        root.join("releases").join(&first["release"]).join("marker"),
        "kept",
    )
    .unwrap();
    fs::remove_file(root.join("releases.json")).unwrap();
    let second = run().await.unwrap();
    assert_ne!(second["release"], first["release"]);
    assert_eq!(second["digest"], first["digest"]);
    assert_eq!(
        fs::read_to_string(root.join("releases").join(&first["release"]).join("marker")).unwrap(),
        "kept"
    );
    assert_eq!(
        read_link(&root.join("current")),
        format!("releases/{}", second["release"])
    );
}

#[tokio::test]
async fn a_second_deploy_to_the_same_root_at_the_same_time_is_refused() {
    use deploy::host::Host as _;
    let ws = test_support::tempdir();
    let root = ws.path().join("srv");
    let v1 = site(ws.path(), "v1", "1");
    let with = inputs(&[
        ("artifact", v1.display().to_string()),
        ("root", "srv".into()),
    ]);
    let host = deploy::host::LocalHost;
    let held = host.lock(root.to_str().unwrap()).await.unwrap();
    let e = deploy::action::run("deploy-local", &with, ws.path(), &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("another deploy to") && e.contains(".deploy.lock"),
        "{e}"
    );
    assert!(!root.join("releases.json").exists(), "nothing was done");
    host.unlock(held).await;
    deploy::action::run("deploy-local", &with, ws.path(), &|_| {})
        .await
        .unwrap();
}
