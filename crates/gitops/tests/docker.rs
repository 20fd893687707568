//! The pull model end to end on the docker target, against a real `git daemon`, the real
//! private dockerd and the CNCF distribution registry: promote → synced on the webhook →
//! a container removed by hand is healed → a service removed from Git is pruned →
//! rollback pauses auto-sync until resume.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use gitops::agent::{AppSpec, TargetSpec};
use gitops::model::SyncStatus;
use gitops::promote::{Placement, Promote, promote};
use test_support::git::GitDaemon;

fn app_file(web_image: &str, with_db: bool) -> String {
    let mut s = format!(
        "services:\n  web:\n    image: {web_image}\n    command: exec httpd -f -p 127.0.0.1:8080 -h /www\n    network: none\n    env: {{GREETING: hello}}\n    health: {{cmd: \"wget -q -O /dev/null http://127.0.0.1:8080/\", timeout: 20s}}\n"
    );
    if with_db {
        s.push_str(&format!("    depends_on: [db]\n  db:\n    image: {}\n    command: exec sleep 600\n    network: none\n", test_support::busybox_image()));
    }
    s
}

/// Removes every container of `app` at the end of the test.
struct RemoveApp(String);

impl Drop for RemoveApp {
    fn drop(&mut self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=slipway.gitops.app={}", self.0),
        ]);
        for id in ids.split_whitespace() {
            docker(&["rm", "-f", id]);
        }
    }
}

fn image_of(container: &str) -> String {
    docker(&["inspect", "-f", "{{.Config.Image}}", container])
}

fn exists(container: &str) -> bool {
    !docker(&["ps", "-aq", "--filter", &format!("name=^/{container}$")]).is_empty()
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_sync_heal_prune_rollback_on_docker() {
    let v1 = pushed_image("gitops-test/web", "v1");
    let v2 = pushed_image("gitops-test/web", "v2");
    let git = GitDaemon::start();
    let url = git.create_repo("deploy");
    let wt = git.work_tree("deploy");
    wt.write("apps/web/app.yaml", &app_file(&v1, true));
    let first = wt.commit("web v1 with db");
    wt.push("main");

    let app = unique("gd");
    let _cleanup = RemoveApp(app.clone());
    let mut spec = AppSpec::new(
        &app,
        &url,
        "apps/web",
        "main",
        TargetSpec::Docker {
            endpoint: Some(test_support::docker_host()),
        },
    );
    spec.interval = std::time::Duration::from_secs(3600); // only webhooks and explicit calls
    let agent = start_agent(vec![spec]).await;
    let web = format!("{app}-web");
    let db = format!("{app}-db");

    let s = agent
        .wait(&app, "the first sync", |s| synced_at(s, &first))
        .await;
    assert_eq!(image_of(&web), v1);
    assert!(exists(&db));
    let h = s.record.history.last().unwrap();
    assert_eq!(
        (h.result.as_str(), h.trigger.as_str()),
        ("succeeded", "auto-sync")
    );
    assert_eq!(
        h.changes,
        ["create service/db", "create service/web"],
        "dependencies first"
    );

    // Promote v2 (the CI side), then the push webhook: the agent syncs at once.
    let promoted = promote(
        &Promote {
            repository: url.clone(),
            branch: "main".into(),
            path: "apps/web".into(),
            image: v2.clone(),
            placement: Placement::Auto,
            source_commit: Some("0123abcd".into()),
            run: Some("17".into()),
            source_repository: Some("team/web".into()),
            attempts: 3,
        },
        &|_| {},
    )
    .await
    .unwrap();
    assert!(promoted.changed);
    agent.webhook().await;
    let s = agent
        .wait(&app, "the promoted revision", |s| {
            synced_at(s, &promoted.commit)
        })
        .await;
    assert_eq!(image_of(&web), v2);
    let h = s.record.history.last().unwrap();
    assert_eq!(h.changes, ["update service/web (image)"]);
    assert_eq!(
        (h.source_commit.as_deref(), h.run.as_deref()),
        (Some("0123abcd"), Some("17"))
    );
    assert_eq!(
        s.record
            .history
            .iter()
            .filter(|h| h.revision == promoted.commit)
            .count(),
        1
    );

    // Drift: the container is removed by hand. Self-heal brings it back.
    docker(&["rm", "-f", &web]);
    let drifted = agent
        .agent
        .reconcile(&app, gitops::agent::Trigger::Poll)
        .await
        .unwrap();
    assert_eq!(drifted.record.sync, SyncStatus::Synced, "{drifted:?}");
    assert_eq!(drifted.record.history.last().unwrap().trigger, "self-heal");
    assert_eq!(image_of(&web), v2);
    // A stopped container is drift too.
    docker(&["stop", "-t", "1", &db]);
    let healed = agent
        .agent
        .reconcile(&app, gitops::agent::Trigger::Poll)
        .await
        .unwrap();
    assert_eq!(
        healed.record.history.last().unwrap().changes,
        ["update service/db (state)"]
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &db]),
        "running"
    );

    // The db leaves Git: pruned.
    wt.write("apps/web/app.yaml", &app_file(&v2, false));
    let no_db = wt.commit("drop db");
    wt.push("main");
    agent.webhook().await;
    agent
        .wait(&app, "the prune", |s| synced_at(s, &no_db))
        .await;
    assert!(!exists(&db), "db was pruned");
    assert!(exists(&web));

    // Rollback to the first revision: db and v1 come back; auto-sync pauses.
    let s = agent.agent.rollback(&app, &first[..10]).await.unwrap();
    assert!(s.record.paused);
    assert_eq!(s.record.revision.as_deref(), Some(first.as_str()));
    assert_eq!(image_of(&web), v1);
    assert!(exists(&db));
    // A new commit on the branch is not followed while paused.
    wt.write("apps/web/app.yaml", &app_file(&v2, true));
    let later = wt.commit("v2 with db again");
    wt.push("main");
    let s = agent
        .agent
        .reconcile(&app, gitops::agent::Trigger::Webhook)
        .await
        .unwrap();
    assert!(
        s.record.paused && s.record.message.contains("paused"),
        "{:?}",
        s.record
    );
    assert_eq!(image_of(&web), v1, "paused: still the rolled-back revision");
    // Resume follows the branch again.
    let s = agent.agent.resume(&app).await.unwrap();
    assert!(!s.record.paused);
    assert!(synced_at(&s, &later), "{:?}", s.record);
    assert_eq!(image_of(&web), v2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_app_file_applies_nothing_and_git_unreachable_keeps_the_app() {
    let git = GitDaemon::start();
    let url = git.create_repo("deploy");
    let wt = git.work_tree("deploy");
    let img = test_support::busybox_image();
    wt.write(
        "app.yaml",
        &format!(
            "services:\n  a:\n    image: {img}\n    command: exec sleep 600\n    network: none\n"
        ),
    );
    let good = wt.commit("good");
    wt.push("main");
    let app = unique("gb");
    let _cleanup = RemoveApp(app.clone());
    let mut spec = AppSpec::new(
        &app,
        &url,
        "",
        "main",
        TargetSpec::Docker {
            endpoint: Some(test_support::docker_host()),
        },
    );
    spec.interval = std::time::Duration::from_secs(3600);
    let agent = start_agent(vec![spec]).await;
    agent
        .wait(&app, "the first sync", |s| synced_at(s, &good))
        .await;
    let id_before = docker(&["inspect", "-f", "{{.Id}}", &format!("{app}-a")]);

    // A second service is added together with a typo in the first: nothing is applied.
    wt.write(
        "app.yaml",
        &format!("services:\n  a:\n    image: {img}\n    comand: exec sleep 600\n  b:\n    image: {img}\n    command: exec sleep 600\n    network: none\n"),
    );
    let bad = wt.commit("bad");
    wt.push("main");
    let s = agent
        .agent
        .reconcile(&app, gitops::agent::Trigger::Webhook)
        .await
        .unwrap();
    assert_eq!(s.record.sync, SyncStatus::Unknown);
    assert!(
        s.record.message.contains("app.yaml:4:5"),
        "{}",
        s.record.message
    );
    let h = s.record.history.last().unwrap();
    assert_eq!(
        (h.revision.as_str(), h.result.as_str()),
        (bad.as_str(), "failed")
    );
    assert!(
        !exists(&format!("{app}-b")),
        "nothing of the bad revision was applied"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.Id}}", &format!("{app}-a")]),
        id_before
    );
    assert_eq!(s.record.revision.as_deref(), Some(good.as_str()));

    // The Git server goes away: the app keeps running, the error is reported.
    drop(git);
    let s = agent
        .agent
        .reconcile(&app, gitops::agent::Trigger::Poll)
        .await
        .unwrap();
    assert!(
        s.record.message.contains("fetching"),
        "{}",
        s.record.message
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &format!("{app}-a")]),
        "running"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_crash_mid_sync_a_restarted_agent_converges_without_duplicates_or_orphans() {
    let git = GitDaemon::start();
    let url = git.create_repo("deploy");
    let wt = git.work_tree("deploy");
    let img = test_support::busybox_image();
    wt.write(
        "app.yaml",
        &format!(
            "services:\n  a:\n    image: {img}\n    command: exec sleep 600\n    network: none\n"
        ),
    );
    let rev = wt.commit("a");
    wt.push("main");
    let app = unique("gc");
    let _cleanup = RemoveApp(app.clone());
    let spec = || {
        let mut s = AppSpec::new(
            &app,
            &url,
            "",
            "main",
            TargetSpec::Docker {
                endpoint: Some(test_support::docker_host()),
            },
        );
        s.interval = std::time::Duration::from_secs(3600);
        s
    };
    let first = start_agent(vec![spec()]).await;
    first
        .wait(&app, "the first sync", |s| synced_at(s, &rev))
        .await;
    let data = first.stop();

    // What a crash leaves behind: a second container of service a (created, old one not yet
    // removed) and a container of a service that never made it into the state file.
    for (name, service) in [(format!("{app}-a-stale"), "a"), (format!("{app}-b"), "b")] {
        docker(&[
            "create",
            "--network",
            "none",
            "--name",
            &name,
            "--label",
            &format!("slipway.gitops.app={app}"),
            "--label",
            &format!("slipway.gitops.service={service}"),
            &img,
            "sleep",
            "600",
        ]);
    }
    let again = start_agent_in(vec![spec()], data).await;
    let s = again
        .agent
        .reconcile(&app, gitops::agent::Trigger::Poll)
        .await
        .unwrap();
    assert_eq!(s.record.sync, SyncStatus::Synced, "{:?}", s.record);
    let names = docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("label=slipway.gitops.app={app}"),
    ]);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [format!("{app}-a")],
        "exactly one container per service, no orphan"
    );
    let h = s.record.history.last().unwrap();
    assert!(
        h.changes.contains(&"delete service/b".to_owned()),
        "{:?}",
        h.changes
    );
}
