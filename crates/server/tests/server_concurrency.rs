//! `concurrency:` groups: with `cancel-in-progress` a new run cancels the running one; without
//! it a group has at most one running and one waiting run (a newer waiting run replaces an
//! older one), and the waiting run starts when the running one ends.

mod common;

use common::*;
use server::config::Forge;
use store::sql::{Conclusion, RunId};
use test_support::git::GitDaemon;

const ZERO: &str = "0000000000000000000000000000000000000000";

async fn push(server: &TestServer, clone_url: &str, sha: &str, delivery: &str) -> i64 {
    let body = gitea_push("team/app", clone_url, "refs/heads/main", ZERO, sha, &[]);
    created(post_gitea(&server.url, "push", delivery, body.to_string().as_bytes(), SECRET).await).await[0]
}

async fn wait_for_log(server: &mut TestServer, run: i64, text: &str) {
    loop {
        if server.log_text(run).await.contains(text) {
            return;
        }
        let _ = server.changes.recv().await;
    }
}

#[tokio::test]
async fn cancel_in_progress_cancels_the_running_run() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    let marks = test_support::tempdir();
    let mark = marks.path().join("first");
    tree.write(
        ".gitea/workflows/ci.yml",
        &format!(
            "name: ci\non: push\nconcurrency:\n  group: ${{{{ github.workflow }}}}-${{{{ github.ref }}}}\n  cancel-in-progress: true\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: |\n          if [ -e {m} ]; then echo fast; exit 0; fi\n          touch {m}; echo slow-start; sleep 120\n",
            m = mark.display()
        ),
    );
    let first = tree.commit("one");
    tree.push("main");
    let second = tree.commit("two");
    tree.push("main");
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        lease_ttl: std::time::Duration::from_millis(3000),
        ..ServerSetup::default()
    })
    .await;
    let one = push(&server, &clone_url, &first, "d1").await;
    wait_for_log(&mut server, one, "slow-start").await;
    let two = push(&server, &clone_url, &second, "d2").await;
    let done_one = server.finished(one).await;
    let done_two = server.finished(two).await;
    assert_eq!(done_one.concurrency_group.as_deref(), Some("ci-refs/heads/main"));
    assert_eq!((done_one.conclusion, done_two.conclusion), (Some(Conclusion::Cancelled), Some(Conclusion::Success)));
    assert!(done_two.started_at >= done_one.finished_at, "{done_one:?} {done_two:?}");
    server.stop().await;
}

#[tokio::test]
async fn without_cancel_in_progress_one_runs_and_the_newest_waits() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    let marks = test_support::tempdir();
    let go = marks.path().join("go");
    tree.write(
        ".gitea/workflows/deploy.yml",
        &format!(
            "name: deploy\non: push\nconcurrency: production\njobs:\n  deploy:\n    runs-on: x\n    steps:\n      - run: |\n          echo deploying\n          while [ ! -e {go} ]; do sleep 0.05; done\n",
            go = go.display()
        ),
    );
    let a = tree.commit("a");
    tree.push("main");
    let b = tree.commit("b");
    let c = tree.commit("c");
    tree.push("main");
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        ..ServerSetup::default()
    })
    .await;
    let one = push(&server, &clone_url, &a, "d1").await;
    wait_for_log(&mut server, one, "deploying").await;
    let two = push(&server, &clone_url, &b, "d2").await;
    let jobs = server.state.db().jobs(RunId(two)).await.expect("jobs");
    assert_eq!(jobs[0].status, store::sql::JobStatus::Pending, "waits for the running run");
    let three = push(&server, &clone_url, &c, "d3").await;
    let done_two = server.finished(two).await;
    assert_eq!(done_two.conclusion, Some(Conclusion::Cancelled), "replaced by the newer waiting run");
    std::fs::write(&go, "").expect("let the deploys finish");
    let done_one = server.finished(one).await;
    let done_three = server.finished(three).await;
    assert_eq!((done_one.conclusion, done_three.conclusion), (Some(Conclusion::Success), Some(Conclusion::Success)));
    assert!(done_three.started_at >= done_one.finished_at, "{done_one:?} {done_three:?}");
    server.stop().await;
}
