//! `concurrency:` groups: with `cancel-in-progress` a new run cancels the running one; without
//! it a group has at most one running and one waiting run (a newer waiting run replaces an
//! older one), and the waiting run starts when the running one ends.
//!
//! Job-level groups (`jobs.<id>.concurrency`) the same way, across runs and workflows of a
//! repository, on SQLite and on PostgreSQL, with a real agent (capacity 4) running the steps'
//! processes.

mod common;

use common::*;
use server::config::Forge;
use store::sql::{Conclusion, Job, JobStatus, RunId};
use test_support::git::GitDaemon;
use tokio_util::sync::CancellationToken;

const ZERO: &str = "0000000000000000000000000000000000000000";

async fn push(server: &TestServer, clone_url: &str, sha: &str, delivery: &str) -> i64 {
    let body = gitea_push("team/app", clone_url, "refs/heads/main", ZERO, sha, &[]);
    created(
        post_gitea(
            &server.url,
            "push",
            delivery,
            body.to_string().as_bytes(),
            SECRET,
        )
        .await,
    )
    .await[0]
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
    let marks = test_support::tempdir();
    let mark = marks.path().join("first");
    let (_git, clone_url, [first, second]) = commits(
        ".gitea/workflows/ci.yml",
        &format!(
            "name: ci\non: push\nconcurrency:\n  group: ${{{{ github.workflow }}}}-${{{{ github.ref }}}}\n  cancel-in-progress: true\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: |\n          if [ -e {m} ]; then echo fast; exit 0; fi\n          touch {m}; echo slow-start; sleep 120\n",
            m = mark.display()
        ),
        &[&["one"], &["two"]],
    );
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
    assert_eq!(
        done_one.concurrency_group.as_deref(),
        Some("ci-refs/heads/main")
    );
    assert_eq!(
        (done_one.conclusion, done_two.conclusion),
        (Some(Conclusion::Cancelled), Some(Conclusion::Success))
    );
    assert!(
        done_two.started_at >= done_one.finished_at,
        "{done_one:?} {done_two:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn without_cancel_in_progress_one_runs_and_the_newest_waits() {
    let marks = test_support::tempdir();
    let go = marks.path().join("go");
    let (_git, clone_url, [a, b, c]) = commits(
        ".gitea/workflows/deploy.yml",
        &format!(
            "name: deploy\non: push\nconcurrency: production\njobs:\n  deploy:\n    runs-on: x\n    steps:\n      - run: |\n          echo deploying\n          while [ ! -e {go} ]; do sleep 0.05; done\n",
            go = go.display()
        ),
        &[&["a"], &["b", "c"]],
    );
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        ..ServerSetup::default()
    })
    .await;
    let one = push(&server, &clone_url, &a, "d1").await;
    wait_for_log(&mut server, one, "deploying").await;
    let two = push(&server, &clone_url, &b, "d2").await;
    let jobs = server.state.db().jobs(RunId(two)).await.expect("jobs");
    assert_eq!(
        jobs[0].status,
        store::sql::JobStatus::Pending,
        "waits for the running run"
    );
    let three = push(&server, &clone_url, &c, "d3").await;
    let done_two = server.finished(two).await;
    assert_eq!(
        done_two.conclusion,
        Some(Conclusion::Cancelled),
        "replaced by the newer waiting run"
    );
    std::fs::write(&go, "").expect("let the deploys finish");
    let done_one = server.finished(one).await;
    let done_three = server.finished(three).await;
    assert_eq!(
        (done_one.conclusion, done_three.conclusion),
        (Some(Conclusion::Success), Some(Conclusion::Success))
    );
    assert!(
        done_three.started_at >= done_one.finished_at,
        "{done_one:?} {done_three:?}"
    );
    server.stop().await;
}

// --- job-level concurrency ---------------------------------------------------------------------

/// A fresh database on the test PostgreSQL server.
fn fresh_postgres() -> String {
    common::fresh_postgres("slipway_concurrency")
}

/// A repository served by a `git daemon` (keep it) with `files` in one commit (`message`)
/// pushed to `main`; its clone URL and that commit.
fn repository_with(message: &str, files: &[(&str, &str)]) -> (GitDaemon, String, String) {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    for (path, text) in files {
        tree.write(path, text);
    }
    let sha = tree.commit(message);
    tree.push("main");
    (git, clone_url, sha)
}

/// A repository served by a `git daemon` (keep it) with `workflow` at `path`, committed
/// again for each message of `pushes`, each group of messages pushed to `main` together;
/// its clone URL and the commits.
fn commits<const N: usize>(
    path: &str,
    workflow: &str,
    pushes: &[&[&str]],
) -> (GitDaemon, String, [String; N]) {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(path, workflow);
    let mut shas = Vec::new();
    for messages in pushes {
        for message in *messages {
            shas.push(tree.commit(message));
        }
        tree.push("main");
    }
    let shas: [String; N] = shas.try_into().expect("as many commits as messages");
    (git, clone_url, shas)
}

/// Each test runs on SQLite (`None`, the default) and on a fresh PostgreSQL database.
fn databases() -> [Option<String>; 2] {
    [None, Some(fresh_postgres())]
}

/// A server with one real agent (4 jobs at a time) on `database`.
struct Bench {
    server: TestServer,
    clone_url: String,
    agent: tokio::task::JoinHandle<Result<(), server::agent::AgentError>>,
    agent_stop: CancellationToken,
    _work: tempfile::TempDir,
}

impl Bench {
    async fn start(clone_url: &str, database: Option<String>) -> Bench {
        eprintln!("database: {}", database.as_deref().unwrap_or("sqlite"));
        let server = TestServer::start(ServerSetup {
            repositories: vec![repo_config("team/app", clone_url, Forge::Gitea, None)],
            embedded_agent: false,
            agent_token: Some("agent-secret".into()),
            database_url: database,
            lease_ttl: std::time::Duration::from_millis(1500),
            ..ServerSetup::default()
        })
        .await;
        let work = test_support::tempdir();
        let agent_stop = CancellationToken::new();
        let agent = tokio::spawn(server::agent::run(
            server::agent::AgentOptions {
                server: server.url.clone(),
                token: "agent-secret".into(),
                name: "agent-1".into(),
                labels: Vec::new(),
                work_dir: work.path().to_owned(),
                capacity: 4,
            },
            agent_stop.clone(),
        ));
        Bench {
            server,
            clone_url: clone_url.to_owned(),
            agent,
            agent_stop,
            _work: work,
        }
    }

    /// Pushes `sha` to main: the ids of the runs it created.
    async fn push(&self, sha: &str, delivery: &str) -> Vec<i64> {
        let body = gitea_push(
            "team/app",
            &self.clone_url,
            "refs/heads/main",
            ZERO,
            sha,
            &[],
        );
        created(
            post_gitea(
                &self.server.url,
                "push",
                delivery,
                body.to_string().as_bytes(),
                SECRET,
            )
            .await,
        )
        .await
    }

    async fn job(&mut self, run: i64, key: &str, pred: impl Fn(&Job) -> bool) -> Job {
        let jobs = self
            .server
            .jobs_until(run, |jobs| jobs.iter().any(|j| j.key == key && pred(j)))
            .await;
        jobs.into_iter().find(|j| j.key == key).expect("the job")
    }

    async fn jobs(&self, run: i64) -> Vec<Job> {
        self.server.state.db().jobs(RunId(run)).await.expect("jobs")
    }

    async fn stop(self) {
        self.stop_keeping_data().await;
    }

    /// Stops the agent (it hands its jobs back), then the server; returns its data directory.
    async fn stop_keeping_data(self) -> tempfile::TempDir {
        self.agent_stop.cancel();
        self.agent.await.expect("agent task").expect("agent ran");
        self.server.stop_keeping_data().await
    }
}

fn results(jobs: &[Job]) -> Vec<(&str, Option<Conclusion>)> {
    jobs.iter().map(|j| (j.key.as_str(), j.result)).collect()
}

/// A deploy step that says `deploying-NAME` and waits for the file `go`.
fn deploy_workflow(name: &str, group: &str, go: &std::path::Path) -> String {
    format!(
        "name: {name}\non: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: echo built\n  deploy:\n    needs: build\n    runs-on: x\n    concurrency: {group}\n    steps:\n      - run: |\n          echo deploying-{name}\n          while [ ! -e {go} ]; do sleep 0.05; done\n",
        go = go.display()
    )
}

#[tokio::test]
async fn deploy_jobs_of_two_workflows_share_a_group_the_second_waits_then_runs() {
    for database in databases() {
        let marks = test_support::tempdir();
        let go = marks.path().join("go");
        let (_git, clone_url, sha) = repository_with(
            "two workflows",
            &[
                (
                    ".gitea/workflows/ci.yml",
                    &deploy_workflow("ci", "production", &go),
                ),
                (
                    ".gitea/workflows/release.yml",
                    &deploy_workflow("release", "Production", &go),
                ),
            ],
        );
        let mut bench = Bench::start(&clone_url, database).await;
        let runs = bench.push(&sha, "d1").await;
        assert_eq!(runs.len(), 2);
        // Both builds run (they have no group); one deploy holds `production` (group names
        // are compared without case).
        for run in &runs {
            bench
                .job(*run, "build", |j| j.status == JobStatus::Done)
                .await;
        }
        let (holder, waiter) = loop {
            let a = bench.jobs(runs[0]).await;
            let b = bench.jobs(runs[1]).await;
            let running = |jobs: &[Job]| {
                jobs.iter()
                    .any(|j| j.key == "deploy" && j.status == JobStatus::Running)
            };
            if running(&a) {
                break (runs[0], runs[1]);
            }
            if running(&b) {
                break (runs[1], runs[0]);
            }
            let _ = bench.server.changes.recv().await;
        };
        bench
            .job(holder, "deploy", |j| j.status == JobStatus::Running)
            .await;
        // The agent has room for more, yet the other deploy, once runnable, is not even
        // queued: it waits in the group.
        let deploy = bench.job(waiter, "deploy", |j| j.reason.is_some()).await;
        assert_eq!(
            (deploy.status, deploy.reason.as_deref()),
            (
                JobStatus::Pending,
                Some("waiting for concurrency group production")
            )
        );
        std::fs::write(&go, "").expect("let the deploys finish");
        let first = bench.server.finished(holder).await;
        let second = bench.server.finished(waiter).await;
        assert_eq!(
            (first.conclusion, second.conclusion),
            (Some(Conclusion::Success), Some(Conclusion::Success))
        );
        let a = bench
            .jobs(holder)
            .await
            .into_iter()
            .find(|j| j.key == "deploy")
            .expect("deploy");
        let b = bench
            .jobs(waiter)
            .await
            .into_iter()
            .find(|j| j.key == "deploy")
            .expect("deploy");
        assert!(
            b.started_at >= a.finished_at,
            "never both in the group: {a:?} {b:?}"
        );
        assert_eq!(b.reason, None, "the waiting reason goes once it runs");
        bench.stop().await;
    }
}

#[tokio::test]
async fn cancel_in_progress_stops_the_running_job_on_the_agent_and_skips_its_dependents() {
    for database in databases() {
        let marks = test_support::tempdir();
        let pid = marks.path().join("pid");
        let (_git, clone_url, [first, second]) = commits(
            ".gitea/workflows/deploy.yml",
            &format!(
                "name: deploy\non: push\njobs:\n  deploy:\n    runs-on: x\n    concurrency:\n      group: deploy-${{{{ github.ref }}}}\n      cancel-in-progress: ${{{{ github.ref == 'refs/heads/main' }}}}\n    steps:\n      - run: |\n          if [ -e {pid} ]; then echo fast; exit 0; fi\n          echo slow-start; echo $$ > {pid}.tmp; mv {pid}.tmp {pid}\n          exec sleep 120\n  notify:\n    needs: deploy\n    runs-on: x\n    steps:\n      - run: echo notified\n",
                pid = pid.display()
            ),
            &[&["one"], &["two"]],
        );
        let mut bench = Bench::start(&clone_url, database).await;
        let one = bench.push(&first, "d1").await[0];
        loop {
            if bench.server.log_text(one).await.contains("slow-start") {
                break;
            }
            let _ = bench.server.changes.recv().await;
        }
        let process: i32 = std::fs::read_to_string(&pid)
            .expect("pid file")
            .trim()
            .parse()
            .expect("a pid");
        assert!(
            std::path::Path::new(&format!("/proc/{process}")).exists(),
            "the step's process runs"
        );
        let two = bench.push(&second, "d2").await[0];
        let done_one = bench.server.finished(one).await;
        let done_two = bench.server.finished(two).await;
        let jobs_one = bench.jobs(one).await;
        assert_eq!(
            results(&jobs_one),
            [
                ("deploy", Some(Conclusion::Cancelled)),
                ("notify", Some(Conclusion::Skipped))
            ]
        );
        let reason = format!(
            "superseded by job deploy of run {two} in concurrency group deploy-refs/heads/main"
        );
        assert_eq!(jobs_one[0].reason.as_deref(), Some(reason.as_str()));
        assert_eq!(done_one.conclusion, Some(Conclusion::Cancelled));
        assert_eq!(
            done_one.reason,
            Some(format!("job deploy was cancelled: {reason}"))
        );
        assert_eq!(
            results(&bench.jobs(two).await),
            [
                ("deploy", Some(Conclusion::Success)),
                ("notify", Some(Conclusion::Success))
            ]
        );
        assert_eq!(done_two.conclusion, Some(Conclusion::Success));
        // The agent stopped the step's process (it was `sleep 120`).
        let mut gone = false;
        for _ in 0..100 {
            if !std::path::Path::new(&format!("/proc/{process}")).exists() {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(gone, "process {process} of the cancelled step still runs");
        let deploy_two = bench
            .jobs(two)
            .await
            .into_iter()
            .find(|j| j.key == "deploy")
            .expect("deploy");
        assert!(
            deploy_two.started_at >= jobs_one[0].finished_at,
            "the new job waited for the cancelled one to stop"
        );
        bench.stop().await;
    }
}

#[tokio::test]
async fn a_newer_waiting_job_replaces_the_older_one_and_matrix_values_name_the_group() {
    for database in databases() {
        let marks = test_support::tempdir();
        let go = marks.path().join("go");
        let (_git, clone_url, [a, b, c]) = commits(
            ".gitea/workflows/deploy.yml",
            &format!(
                "name: deploy\non: push\njobs:\n  deploy:\n    runs-on: x\n    strategy:\n      matrix:\n        region: [eu]\n    concurrency: Deploy-${{{{ matrix.region }}}}-of-${{{{ strategy.job-total }}}}\n    steps:\n      - run: |\n          echo deploying\n          while [ ! -e {go} ]; do sleep 0.05; done\n  after:\n    needs: deploy\n    runs-on: x\n    steps:\n      - run: echo after\n",
                go = go.display()
            ),
            &[&["a"], &["b", "c"]],
        );
        let mut bench = Bench::start(&clone_url, database).await;
        let one = bench.push(&a, "d1").await[0];
        bench
            .job(one, "deploy", |j| j.status == JobStatus::Running)
            .await;
        let two = bench.push(&b, "d2").await[0];
        let deploy = bench
            .jobs(two)
            .await
            .into_iter()
            .find(|j| j.key == "deploy")
            .expect("deploy");
        assert_eq!(deploy.status, JobStatus::Pending, "waits behind run {one}");
        let three = bench.push(&c, "d3").await[0];
        let done_two = bench.server.finished(two).await;
        let jobs_two = bench.jobs(two).await;
        assert_eq!(
            results(&jobs_two),
            [
                ("deploy", Some(Conclusion::Cancelled)),
                ("after", Some(Conclusion::Skipped))
            ]
        );
        assert_eq!(
            jobs_two[0].reason,
            Some(format!(
                "superseded by job deploy of run {three} in concurrency group deploy-eu-of-1"
            ))
        );
        assert_eq!(done_two.conclusion, Some(Conclusion::Cancelled));
        let deploy = bench
            .jobs(three)
            .await
            .into_iter()
            .find(|j| j.key == "deploy")
            .expect("deploy");
        assert_eq!(
            deploy.status,
            JobStatus::Pending,
            "waits behind run {one} in turn"
        );
        std::fs::write(&go, "").expect("let the deploys finish");
        let done_one = bench.server.finished(one).await;
        let done_three = bench.server.finished(three).await;
        assert_eq!(
            (done_one.conclusion, done_three.conclusion),
            (Some(Conclusion::Success), Some(Conclusion::Success))
        );
        bench.stop().await;
    }
}

#[tokio::test]
async fn a_group_that_cannot_be_evaluated_fails_the_job_with_where_it_is_written() {
    for database in databases() {
        let (_git, clone_url, sha) = repository_with(
            "bad group",
            &[(
                ".gitea/workflows/deploy.yml",
                "name: deploy\non: push\njobs:\n  deploy:\n    runs-on: x\n    concurrency:\n      group: ${{ fromJSON('{not json') }}\n    steps:\n      - run: echo never\n  after:\n    needs: deploy\n    runs-on: x\n    steps:\n      - run: echo never\n",
            )],
        );
        let mut bench = Bench::start(&clone_url, database).await;
        let run = bench.push(&sha, "d1").await[0];
        let done = bench.server.finished(run).await;
        assert_eq!(done.conclusion, Some(Conclusion::Failure));
        let jobs = bench.jobs(run).await;
        assert_eq!(
            results(&jobs),
            [
                ("deploy", Some(Conclusion::Failure)),
                ("after", Some(Conclusion::Skipped))
            ]
        );
        let reason = jobs[0].reason.clone().expect("a reason");
        assert!(
            reason
                .starts_with(".gitea/workflows/deploy.yml:7:14: evaluating the concurrency group"),
            "{reason}"
        );
        assert!(
            bench.server.log_text(run).await.contains(&reason),
            "the log says why"
        );
        bench.stop().await;
    }
}

#[tokio::test]
async fn the_api_cancels_one_job_and_the_agent_stops_it() {
    for database in databases() {
        let (_git, clone_url, sha) = repository_with(
            "ci",
            &[(
                ".gitea/workflows/ci.yml",
                "name: ci\non: push\njobs:\n  slow:\n    runs-on: x\n    steps:\n      - run: echo started; exec sleep 120\n  other:\n    runs-on: x\n    steps:\n      - run: echo other\n  after:\n    needs: slow\n    runs-on: x\n    steps:\n      - run: echo never\n",
            )],
        );
        let mut bench = Bench::start(&clone_url, database).await;
        let run = bench.push(&sha, "d1").await[0];
        loop {
            if bench.server.log_text(run).await.contains("started") {
                break;
            }
            let _ = bench.server.changes.recv().await;
        }
        let slow = bench
            .job(run, "slow", |j| j.status == JobStatus::Running)
            .await;
        let http = reqwest::Client::new();
        let url = bench.server.url.clone();
        let cancel = |id: i64| http.post(format!("{url}/api/v1/jobs/{id}/cancel")).send();
        assert_eq!(cancel(slow.id.0).await.expect("cancel").status(), 202);
        let done = bench.server.finished(run).await;
        let jobs = bench.jobs(run).await;
        assert_eq!(
            results(&jobs),
            [
                ("slow", Some(Conclusion::Cancelled)),
                ("other", Some(Conclusion::Success)),
                ("after", Some(Conclusion::Skipped))
            ]
        );
        assert_eq!(jobs[0].reason.as_deref(), Some("cancelled by anonymous"));
        assert_eq!(done.conclusion, Some(Conclusion::Cancelled));
        assert_eq!(
            done.reason.as_deref(),
            Some("job slow was cancelled: cancelled by anonymous")
        );
        let again = cancel(slow.id.0).await.expect("cancel again");
        assert_eq!(again.status(), 409, "already finished");
        assert_eq!(cancel(999_999).await.expect("cancel unknown").status(), 404);
        bench.stop().await;
    }
}

/// Waits until run `id` is done, watching two servers (its jobs may finish on either).
async fn finished_on_either(a: &mut TestServer, b: &mut TestServer, id: i64) -> store::sql::Run {
    loop {
        let run = a
            .state
            .db()
            .run(RunId(id))
            .await
            .expect("db")
            .expect("run exists");
        if run.status == store::sql::RunStatus::Done {
            return run;
        }
        tokio::select! {
            _ = a.changes.recv() => {}
            _ = b.changes.recv() => {}
        }
    }
}

#[tokio::test]
async fn two_replicas_on_one_postgres_share_the_groups() {
    let database = fresh_postgres();
    let marks = test_support::tempdir();
    let go = marks.path().join("go");
    let (_git, clone_url, [c1, c2, c3]) = commits(
        ".gitea/workflows/deploy.yml",
        &format!(
            "name: deploy\non: push\njobs:\n  deploy:\n    runs-on: x\n    concurrency: production\n    steps:\n      - run: |\n          echo deploying\n          while [ ! -e {go} ]; do sleep 0.05; done\n",
            go = go.display()
        ),
        &[&["one"], &["two", "three"]],
    );
    let mut one = Bench::start(&clone_url, Some(database.clone())).await;
    let mut two = Bench::start(&clone_url, Some(database)).await;
    let r1 = one.push(&c1, "d1").await[0];
    one.job(r1, "deploy", |j| j.status == JobStatus::Running)
        .await;
    // The second replica sees the first one's job in the group: its job waits.
    let r2 = two.push(&c2, "d2").await[0];
    let waiting = two.jobs(r2).await;
    assert_eq!(waiting[0].status, JobStatus::Pending, "{waiting:?}");
    // A newer job through the first replica replaces it.
    let r3 = one.push(&c3, "d3").await[0];
    let done2 = finished_on_either(&mut one.server, &mut two.server, r2).await;
    assert_eq!(done2.conclusion, Some(Conclusion::Cancelled));
    assert_eq!(one.jobs(r3).await[0].status, JobStatus::Pending);
    std::fs::write(&go, "").expect("let the deploys finish");
    let done1 = finished_on_either(&mut one.server, &mut two.server, r1).await;
    let done3 = finished_on_either(&mut one.server, &mut two.server, r3).await;
    assert_eq!(
        (done1.conclusion, done3.conclusion),
        (Some(Conclusion::Success), Some(Conclusion::Success))
    );
    let (j1, j3) = (one.jobs(r1).await.remove(0), one.jobs(r3).await.remove(0));
    assert!(j3.started_at >= j1.finished_at, "{j1:?} {j3:?}");
    two.stop().await;
    one.stop().await;
}

#[tokio::test]
async fn workflow_and_job_groups_are_one_namespace_and_a_run_waiting_on_itself_is_cancelled() {
    for database in databases() {
        let git = GitDaemon::start();
        let clone_url = git.create_repo("app");
        let tree = git.work_tree("app");
        let marks = test_support::tempdir();
        let step = "    steps:\n      - run: |\n          echo deploying\n          while [ ! -e ${{ inputs.go }} ]; do sleep 0.05; done\n";
        let dispatch =
            "on:\n  workflow_dispatch:\n    inputs:\n      go:\n        required: true\n";
        tree.write(
            ".gitea/workflows/run-level.yml",
            &format!("name: run-level\n{dispatch}concurrency: production\njobs:\n  deploy:\n    runs-on: x\n{step}"),
        );
        tree.write(
            ".gitea/workflows/job-level.yml",
            &format!("name: job-level\n{dispatch}jobs:\n  deploy:\n    runs-on: x\n    concurrency: Production\n{step}"),
        );
        tree.write(
            ".gitea/workflows/deadlock.yml",
            "name: deadlock\non: push\nconcurrency: deploy-${{ github.ref }}\njobs:\n  deploy:\n    runs-on: x\n    concurrency: deploy-${{ github.ref }}\n    steps:\n      - run: echo never\n",
        );
        let sha = tree.commit("workflows");
        tree.push("main");
        let mut bench = Bench::start(&clone_url, database).await;
        let http = reqwest::Client::new();
        let go = |n: u32| marks.path().join(format!("go{n}"));
        let url = bench.server.url.clone();
        let dispatch = async |workflow: &str, go: &std::path::Path| -> i64 {
            let body = serde_json::json!({
                "repository": "team/app", "workflow": workflow, "ref": "main",
                "inputs": {"go": go.display().to_string()},
            });
            let resp = http
                .post(format!("{url}/api/v1/dispatch"))
                .json(&body)
                .send()
                .await
                .expect("dispatch");
            assert_eq!(resp.status(), 201);
            resp.json::<protocol::Created>()
                .await
                .expect("created")
                .runs[0]
        };
        // A run holding `production` at the workflow level: a job-level `Production` waits.
        let first = dispatch("run-level.yml", &go(1)).await;
        let second = dispatch("job-level.yml", &go(2)).await;
        bench
            .job(first, "deploy", |j| j.status == JobStatus::Running)
            .await;
        assert_eq!(
            bench.jobs(second).await[0].status,
            JobStatus::Pending,
            "waits for run {first}"
        );
        std::fs::write(go(1), "").expect("go 1");
        let held = bench
            .job(second, "deploy", |j| j.status == JobStatus::Running)
            .await;
        let done_first = bench.server.finished(first).await;
        assert!(
            held.started_at >= done_first.finished_at,
            "{done_first:?} {held:?}"
        );
        // Now that job holds it: a run with the workflow-level group waits for it.
        let third = dispatch("run-level.yml", &go(3)).await;
        assert_eq!(
            bench.jobs(third).await[0].status,
            JobStatus::Pending,
            "waits for the job of run {second}"
        );
        std::fs::write(go(2), "").expect("go 2");
        let done_second = bench.server.finished(second).await;
        let started = bench
            .job(third, "deploy", |j| j.status == JobStatus::Running)
            .await;
        assert!(
            started.started_at >= done_second.finished_at,
            "{done_second:?} {started:?}"
        );
        std::fs::write(go(3), "").expect("go 3");
        let done_third = bench.server.finished(third).await;
        assert_eq!(
            [
                done_first.conclusion,
                done_second.conclusion,
                done_third.conclusion
            ],
            [Some(Conclusion::Success); 3]
        );
        // The same group at both levels of one run: the job would wait for its own run.
        let run = bench.push(&sha, "d1").await[0];
        let done = bench.server.finished(run).await;
        let jobs = bench.jobs(run).await;
        assert_eq!(results(&jobs), [("deploy", Some(Conclusion::Cancelled))]);
        assert_eq!(
            jobs[0].reason.as_deref(),
            Some(
                "Canceling since a deadlock for concurrency group 'deploy-refs/heads/main' was detected between 'top level workflow' and 'deploy'"
            )
        );
        assert_eq!(done.conclusion, Some(Conclusion::Cancelled));
        bench.stop().await;
    }
}

#[tokio::test]
async fn a_restarted_server_wakes_a_job_whose_group_was_freed_while_it_was_down() {
    let marks = test_support::tempdir();
    let go = marks.path().join("go");
    let (_git, clone_url, [a, b]) = commits(
        ".gitea/workflows/deploy.yml",
        &format!(
            "name: deploy\non: push\njobs:\n  deploy:\n    runs-on: x\n    concurrency: production\n    steps:\n      - run: |\n          echo deploying\n          while [ ! -e {go} ]; do sleep 0.05; done\n",
            go = go.display()
        ),
        &[&["a"], &["b"]],
    );
    let mut bench = Bench::start(&clone_url, None).await;
    let one = bench.push(&a, "d1").await[0];
    let holder = bench
        .job(one, "deploy", |j| j.status == JobStatus::Running)
        .await;
    let two = bench.push(&b, "d2").await[0];
    assert_eq!(bench.jobs(two).await[0].status, JobStatus::Pending);
    let data = bench.stop_keeping_data().await;
    // While the server is down the holder ends (as if its end was recorded just before a
    // crash, and nobody woke the waiting job).
    let db = store::sql::Db::connect(&format!("sqlite://{}/slipway.db", data.path().display()))
        .await
        .expect("db");
    assert!(
        db.settle_job(holder.id, Conclusion::Success, None, 1)
            .await
            .expect("end the holder")
    );
    db.close().await;
    std::fs::write(&go, "").expect("let the deploy finish");
    let mut server = TestServer::start_in(
        ServerSetup {
            repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
            ..ServerSetup::default()
        },
        data,
    )
    .await;
    let done = tokio::time::timeout(std::time::Duration::from_secs(60), server.finished(two))
        .await
        .expect("the waiting job was woken after the restart");
    assert_eq!(done.conclusion, Some(Conclusion::Success));
    server.stop().await;
}
