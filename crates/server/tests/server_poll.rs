//! The polling fallback: the first poll records what is there; a later push is found by
//! `git ls-remote` and runs.

mod common;

use common::*;
use server::Change;
use server::config::Forge;
use store::sql::Conclusion;
use test_support::git::GitDaemon;

#[tokio::test]
async fn a_polled_repository_runs_new_commits() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(".gitea/workflows/ci.yml", "name: ci\non:\n  push:\n    branches: [main]\njobs:\n  b:\n    runs-on: x\n    steps:\n      - run: echo polled\n");
    tree.commit("first");
    tree.push("main");
    let mut repo = repo_config("team/app", &clone_url, Forge::Gitea, None);
    repo.webhook_secret = None;
    repo.poll_interval = Some(std::time::Duration::from_millis(50));
    let mut server = TestServer::start(ServerSetup { repositories: vec![repo], ..ServerSetup::default() }).await;
    // The first poll only records the refs.
    loop {
        if let Ok(Change::Polled(name)) = server.changes.recv().await
            && name == "team/app"
        {
            break;
        }
    }
    assert_eq!(server.state.db().runs(None, 10).await.expect("runs"), []);
    tree.write("x.txt", "x\n");
    let second = tree.commit("second");
    tree.push("main");
    let run = loop {
        if let Some(run) = server.state.db().runs(None, 10).await.expect("runs").first() {
            break run.id.0;
        }
        let _ = server.changes.recv().await;
    };
    let done = server.finished(run).await;
    assert_eq!((done.sha.as_str(), done.git_ref.as_str(), done.conclusion), (second.as_str(), "refs/heads/main", Some(Conclusion::Success)));
    assert!(server.log_text(run).await.contains("polled"));
    // Later polls see nothing new.
    let mut polls = 0;
    while polls < 3 {
        if let Ok(Change::Polled(_)) = server.changes.recv().await {
            polls += 1;
        }
    }
    assert_eq!(server.state.db().runs(None, 10).await.expect("runs").len(), 1);
    server.stop().await;
}
