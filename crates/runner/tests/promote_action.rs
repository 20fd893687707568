//! `slipway/promote` from a workflow, against a real `git daemon`: the deployment repository
//! gets a commit that sets the image and names the source commit (from the `github`
//! context) and the run; bad input fails the step with the input named.

mod common;

use common::Fixture;
use runner::JobResult;
use test_support::git::GitDaemon;

const IMAGE: &str = "reg.example/team/web@sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

fn workflow(url: &str, image: &str) -> String {
    format!(
        r#"
on: push
jobs:
  promote:
    runs-on: ubuntu-latest
    steps:
      - id: p
        uses: slipway/promote@v1
        with:
          repository: {url}
          path: apps/web
          image: {image}
      - run: echo "promoted ${{{{ steps.p.outputs.commit }}}} changed=${{{{ steps.p.outputs.changed }}}}"
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_commits_the_image_with_provenance() {
    let git = GitDaemon::start();
    let url = git.create_repo("deploy");
    let wt = git.work_tree("deploy");
    wt.write("apps/web/app.yaml", "services:\n  web:\n    image: reg.example/team/web@sha256:00\n");
    wt.commit("initial");
    wt.push("main");

    let fx = Fixture::new();
    let out = common::run(&workflow(&url, IMAGE), fx.options()).await;
    assert_eq!(out.job("promote"), JobResult::Success, "{}", out.dump());
    let logs = out.all_logs();
    assert!(logs.contains("changed=true"), "{logs}");

    let check = tempfile::tempdir().expect("tempdir");
    let st = std::process::Command::new("git")
        .args(["clone", "-q", &url, "c"])
        .current_dir(check.path())
        .status()
        .expect("git");
    assert!(st.success());
    let dir = check.path().join("c");
    let text = std::fs::read_to_string(dir.join("apps/web/app.yaml")).expect("app file");
    assert!(text.contains(IMAGE), "{text}");
    let body = std::process::Command::new("git").args(["log", "-1", "--format=%B"]).current_dir(&dir).output().expect("git");
    let body = String::from_utf8_lossy(&body.stdout);
    assert!(body.contains("Slipway-Source-Commit: 0123456789abcdef0123456789abcdef01234567"), "{body}");
    assert!(logs.contains("promoted "), "{logs}");

    let bad = common::run(&workflow(&url, "reg.example/team/web:latest"), fx.options()).await;
    assert_eq!(bad.job("promote"), JobResult::Failure, "{}", bad.dump());
    assert!(
        bad.annotations().iter().any(|(l, m)| l == "error" && m.contains("slipway/promote: input `image`")),
        "{}",
        bad.dump()
    );
}
