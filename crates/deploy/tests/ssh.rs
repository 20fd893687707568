//! `slipway/deploy-ssh` against a real OpenSSH server on a loopback port.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::*;
use test_support::sshd::{Sshd, generate_key, known_hosts_line};

fn ssh_inputs(
    sshd: &Sshd,
    root: &str,
    artifact: &std::path::Path,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = vec![
        ("artifact", artifact.display().to_string()),
        ("host", "127.0.0.1".into()),
        ("port", sshd.port().to_string()),
        ("user", sshd.user().into()),
        ("key", sshd.client_key().display().to_string()),
        ("known-hosts", sshd.known_hosts_line()),
        ("root", root.into()),
        ("connect-timeout", "10s".into()),
    ];
    for (k, val) in extra {
        v.retain(|(kk, _)| kk != k);
        v.push((*k, val.clone()));
    }
    v
}

#[tokio::test]
async fn deploys_twice_over_ssh_and_current_points_at_the_second() {
    let sshd = Sshd::start();
    let ws = test_support::tempdir();
    let remote = test_support::tempdir();
    let root = remote.path().join("app");
    let _stop = StopService(root.clone());
    let port = free_port();
    let mut ids = Vec::new();
    for v in 1..=2 {
        let site = site(ws.path(), &format!("v{v}"), &format!("ssh version {v}\n"));
        let lines = Lines::default();
        let out = deploy::action::run(
            "deploy-ssh",
            &inputs(&ssh_inputs(
                &sshd,
                root.to_str().unwrap(),
                &site,
                &[
                    ("command", httpd_command(port)),
                    ("health-url", format!("http://127.0.0.1:{port}/")),
                    (
                        "pre",
                        "test -f www/index.html && echo pre-ran > ../pre-ran".into(),
                    ),
                ],
            )),
            ws.path(),
            &lines.sink(),
        )
        .await
        .unwrap_or_else(|e| panic!("deploy {v}: {e}\n{}", lines.text()));
        assert_eq!(get(port).await.unwrap(), format!("ssh version {v}\n"));
        ids.push(out["release"].clone());
    }
    assert_eq!(
        read_link(&root.join("current")),
        format!("releases/{}", ids[1])
    );
    assert_eq!(
        fs::read_to_string(root.join("releases/www/index.html")).ok(),
        None
    );
    assert_eq!(
        fs::read_to_string(root.join("releases").join(&ids[0]).join("www/index.html")).unwrap(),
        "ssh version 1\n"
    );
    assert!(
        root.join("releases/pre-ran").is_file(),
        "pre ran in the release dir"
    );
    assert!(!root.join("current.tmp").exists());
    let state = fs::read_to_string(root.join("releases.json")).unwrap();
    assert!(
        state.contains(&ids[0]) && state.contains("\"active\""),
        "{state}"
    );
}

#[tokio::test]
async fn a_failing_health_check_over_ssh_rolls_back() {
    let sshd = Sshd::start();
    let ws = test_support::tempdir();
    let remote = test_support::tempdir();
    let root = remote.path().join("app");
    let _stop = StopService(root.clone());
    let port = free_port();
    let v1 = site(ws.path(), "v1", "one\n");
    let first = deploy::action::run(
        "deploy-ssh",
        &inputs(&ssh_inputs(
            &sshd,
            root.to_str().unwrap(),
            &v1,
            &[
                ("command", httpd_command(port)),
                (
                    "health-cmd",
                    format!(
                        "{} wget -q -O- http://127.0.0.1:{port}/",
                        test_support::require_command("busybox", "busybox-static").display()
                    ),
                ),
            ],
        )),
        ws.path(),
        &|_| {},
    )
    .await
    .unwrap();
    let v2 = site(ws.path(), "v2", "two\n");
    let e = deploy::action::run(
        "deploy-ssh",
        &inputs(&ssh_inputs(
            &sshd,
            root.to_str().unwrap(),
            &v2,
            &[
                ("command", httpd_command(port)),
                ("health-cmd", "test -f does-not-exist".into()),
                ("health-timeout", "1s".into()),
            ],
        )),
        ws.path(),
        &|_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("rolled back") && e.contains(&first["release"]) && e.contains("did not pass"),
        "{e}"
    );
    assert_eq!(get(port).await.unwrap(), "one\n");
    assert_eq!(
        read_link(&root.join("current")),
        format!("releases/{}", first["release"])
    );
}

async fn refused(known_hosts: String, key: Option<String>, expect: &[&str]) {
    let sshd = Sshd::start();
    let ws = test_support::tempdir();
    let remote = test_support::tempdir();
    let root = remote.path().join("app");
    let v1 = site(ws.path(), "v1", "one\n");
    let mut extra = vec![(
        "known-hosts",
        known_hosts.replace("PORT", &sshd.port().to_string()),
    )];
    if let Some(k) = key {
        extra.push(("key", k));
    }
    let e = deploy::action::run(
        "deploy-ssh",
        &inputs(&ssh_inputs(&sshd, root.to_str().unwrap(), &v1, &extra)),
        ws.path(),
        &|_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    for x in expect {
        assert!(e.contains(x), "{e:?} should contain {x:?}");
    }
    assert!(!root.exists(), "nothing was written on the host");
}

#[tokio::test]
async fn a_wrong_host_key_is_refused() {
    let keys = test_support::tempdir();
    let (_, other) = generate_key(keys.path(), "impostor");
    refused(
        known_hosts_line(0, &other).replace("]:0", "]:PORT"),
        None,
        &["host key mismatch", "SHA256:", "refusing"],
    )
    .await;
}

#[tokio::test]
async fn an_unknown_host_is_never_trusted_on_first_use() {
    let keys = test_support::tempdir();
    let (_, other) = generate_key(keys.path(), "elsewhere");
    // Only a key for another port: this host is unknown.
    refused(
        known_hosts_line(1, &other),
        None,
        &[
            "not in known_hosts",
            "never trusted on first use",
            "ssh-keyscan",
        ],
    )
    .await;
}

#[tokio::test]
async fn an_unknown_client_key_is_rejected_by_the_server() {
    let sshd = Sshd::start();
    let keys = test_support::tempdir();
    let (stranger, _) = generate_key(keys.path(), "stranger");
    let ws = test_support::tempdir();
    let v1 = site(ws.path(), "v1", "x");
    let e = deploy::action::run(
        "deploy-ssh",
        &inputs(&ssh_inputs(
            &sshd,
            "/tmp/never",
            &v1,
            &[("key", stranger.display().to_string())],
        )),
        ws.path(),
        &|_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("refused the private key") && e.contains("stranger"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unreachable_host_gives_a_clear_error() {
    let ws = test_support::tempdir();
    let v1 = site(ws.path(), "v1", "x");
    let port = free_port(); // nothing listens there
    let keys = test_support::tempdir();
    let (key, public) = generate_key(keys.path(), "k");
    let e = deploy::action::run(
        "deploy-ssh",
        &inputs(&[
            ("artifact", v1.display().to_string()),
            ("host", "127.0.0.1".into()),
            ("port", port.to_string()),
            ("key", key.display().to_string()),
            ("known-hosts", known_hosts_line(port, &public)),
            ("root", "/tmp/never".into()),
        ]),
        ws.path(),
        &|_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!("connecting to 127.0.0.1:{port}")) && e.contains("refused"),
        "{e}"
    );
}

#[tokio::test]
async fn the_remote_deploy_lock_refuses_a_concurrent_deploy_and_is_released() {
    use deploy::host::Host as _;
    let sshd = Sshd::start();
    let ws = test_support::tempdir();
    let remote = test_support::tempdir();
    let root = remote.path().join("app");
    let v1 = site(ws.path(), "v1", "1");
    let holder = deploy::ssh::SshHost::connect(&deploy::ssh::SshOptions {
        host: "127.0.0.1".into(),
        port: sshd.port(),
        user: sshd.user().into(),
        key: sshd.client_key().display().to_string(),
        known_hosts: sshd.known_hosts_line(),
        connect_timeout: std::time::Duration::from_secs(10),
    })
    .await
    .unwrap();
    let held = holder.lock(root.to_str().unwrap()).await.unwrap();
    let with = inputs(&ssh_inputs(&sshd, root.to_str().unwrap(), &v1, &[]));
    let e = deploy::action::run("deploy-ssh", &with, ws.path(), &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("another deploy to") && e.contains(".deploy.lock"),
        "{e}"
    );
    holder.unlock(held).await;
    let out = deploy::action::run("deploy-ssh", &with, ws.path(), &|_| {})
        .await
        .unwrap();
    assert_eq!(
        read_link(&root.join("current")),
        format!("releases/{}", out["release"])
    );
    holder.close().await;
}
