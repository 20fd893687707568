//! `slipway/promote` against a real `git daemon`: a push that loses a race to another
//! promote is retried on the new tip, and both updates land in order.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::Mutex;

use gitops::promote::{Placement, Promote, promote};
use test_support::git::GitDaemon;

const A: &str =
    "reg.example/team/api@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const W: &str =
    "reg.example/team/web@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn git_out(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn request(url: &str, image: &str, service: &str) -> Promote {
    Promote {
        repository: url.to_owned(),
        branch: "main".into(),
        path: "apps/shop".into(),
        image: image.into(),
        placement: Placement::Service(service.into()),
        source_commit: Some(format!("src-{service}")),
        run: Some("5".into()),
        source_repository: None,
        attempts: 3,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promote_that_loses_the_race_retries_on_the_new_tip() {
    let git = GitDaemon::start();
    let url = git.create_repo("deploy");
    let wt = git.work_tree("deploy");
    wt.write(
        "apps/shop/app.yaml",
        "services:\n  api:\n    image: reg.example/team/api@sha256:00\n  web:\n    image: reg.example/team/web@sha256:00  # the storefront\n",
    );
    wt.commit("initial");
    wt.push("main");

    // Between the promote's clone and its push, another promote lands (the web image).
    let raced = Mutex::new(false);
    let url2 = url.clone();
    let log = move |line: &str| {
        let mut done = raced.lock().unwrap();
        if line.starts_with("Cloned") && !*done {
            *done = true;
            let other = tempfile::tempdir().unwrap();
            let dir = other.path().join("c");
            git_out(other.path(), &["clone", "-q", &url2, "c"]);
            let f = dir.join("apps/shop/app.yaml");
            let text = std::fs::read_to_string(&f)
                .unwrap()
                .replace("reg.example/team/web@sha256:00", W);
            std::fs::write(&f, text).unwrap();
            git_out(
                &dir,
                &[
                    "-c",
                    "user.name=o",
                    "-c",
                    "user.email=o@x",
                    "commit",
                    "-qam",
                    "the other promote",
                ],
            );
            git_out(&dir, &["push", "-q", "origin", "HEAD:main"]);
        }
    };
    let done = promote(&request(&url, A, "api"), &log).await.unwrap();
    assert_eq!(
        done.attempts, 2,
        "the first push was rejected as non-fast-forward"
    );

    let check = tempfile::tempdir().unwrap();
    git_out(check.path(), &["clone", "-q", &url, "c"]);
    let dir = check.path().join("c");
    let text = std::fs::read_to_string(dir.join("apps/shop/app.yaml")).unwrap();
    assert!(text.contains(&format!("image: {A}")), "{text}");
    assert!(
        text.contains(&format!("image: {W}  # the storefront")),
        "no lost update: {text}"
    );
    let log = git_out(&dir, &["log", "--format=%s", "-3"]);
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "Promote reg.example/team/api to sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa in apps/shop",
            "the other promote",
            "initial"
        ]
    );
    assert_eq!(git_out(&dir, &["rev-parse", "HEAD"]), done.commit);
    let body = git_out(&dir, &["log", "-1", "--format=%B"]);
    assert!(
        body.contains("Slipway-Source-Commit: src-api") && body.contains("Slipway-Run: 5"),
        "{body}"
    );

    // Promoting the same image again changes nothing and pushes nothing.
    let again = promote(&request(&url, A, "api"), &|_| {}).await.unwrap();
    assert!(!again.changed);
    assert_eq!(again.commit, done.commit);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_promotes_all_land() {
    let git = GitDaemon::start();
    let url = git.create_repo("deploy");
    let wt = git.work_tree("deploy");
    wt.write("apps/shop/app.yaml", "services:\n  api:\n    image: reg.example/team/api@sha256:00\n  web:\n    image: reg.example/team/web@sha256:00\n");
    wt.commit("initial");
    wt.push("main");
    let (ra, rb) = (request(&url, A, "api"), request(&url, W, "web"));
    let (a, b) = tokio::join!(promote(&ra, &|_| {}), promote(&rb, &|_| {}));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.changed && b.changed);
    let check = tempfile::tempdir().unwrap();
    git_out(check.path(), &["clone", "-q", &url, "c"]);
    let text = std::fs::read_to_string(check.path().join("c/apps/shop/app.yaml")).unwrap();
    assert!(text.contains(A) && text.contains(W), "{text}");
    assert_eq!(
        git_out(&check.path().join("c"), &["rev-list", "--count", "HEAD"]),
        "3"
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_cloning() {
    let mut p = request("git://127.0.0.1:1/none.git", "reg/web:latest", "web");
    let e = promote(&p, &|_| {}).await.unwrap_err().to_string();
    assert!(
        e.starts_with("slipway/promote: input `image`") && e.contains("not pinned by digest"),
        "{e}"
    );
    p.image = A.into();
    let e = promote(&p, &|_| {}).await.unwrap_err().to_string();
    assert!(
        e.contains("git clone"),
        "an unreachable repository is named: {e}"
    );
    let inputs: indexmap::IndexMap<String, String> = [
        ("repository", "x"),
        ("path", "p"),
        ("image", A),
        ("servce", "web"),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    let e = gitops::promote::action(&inputs, &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown input `servce`"), "{e}");
}
