//! The agent protocol from the outside: registration, long-poll pickup, lease expiry (retried
//! once, then "agent lost"), stale attempts refused, and cancellation through heartbeats.

mod common;

use common::*;
use protocol::{Assignment, Heartbeat, HeartbeatReply, JobFinished, LeaseRequest, RegisterRequest, RegisterResponse};
use server::config::Forge;
use store::sql::Conclusion;
use test_support::git::GitDaemon;

const ONE_JOB: &str = "on: push\njobs:\n  build:\n    runs-on: [self-hosted, linux]\n    steps:\n      - run: echo hi\n";
const ZERO: &str = "0000000000000000000000000000000000000000";

struct RawAgent {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl RawAgent {
    async fn register(url: &str, token: &str, labels: &[&str]) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{url}{}", protocol::paths::AGENT_REGISTER))
            .bearer_auth(token)
            .json(&RegisterRequest { name: "raw".into(), labels: labels.iter().map(|l| (*l).to_owned()).collect() })
            .send()
            .await
            .expect("register")
    }

    async fn new(url: &str, labels: &[&str]) -> RawAgent {
        let resp = Self::register(url, "agent-secret", labels).await;
        assert_eq!(resp.status(), 200);
        let reg: RegisterResponse = resp.json().await.expect("json");
        RawAgent { url: url.to_owned(), token: reg.token, http: reqwest::Client::new() }
    }

    async fn post<B: serde::Serialize>(&self, path: &str, body: &B) -> reqwest::Response {
        self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.token).json(body).send().await.expect("post")
    }

    async fn lease(&self, wait_ms: u64) -> Option<Assignment> {
        let resp = self.post(protocol::paths::AGENT_LEASE, &LeaseRequest { wait_ms }).await;
        match resp.status().as_u16() {
            204 => None,
            200 => Some(resp.json().await.expect("assignment")),
            other => panic!("lease answered {other}: {}", resp.text().await.unwrap_or_default()),
        }
    }
}

async fn setup(ttl_ms: u64) -> (GitDaemon, TestServer, String, String) {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(".forgejo/workflows/one.yml", ONE_JOB);
    let sha = tree.commit("one");
    tree.push("main");
    let server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Forgejo, None)],
        embedded_agent: false,
        agent_token: Some("agent-secret".into()),
        lease_ttl: std::time::Duration::from_millis(ttl_ms),
        ..ServerSetup::default()
    })
    .await;
    (git, server, clone_url, sha)
}

async fn push(server: &TestServer, clone_url: &str, sha: &str, delivery: &str) -> i64 {
    let body = gitea_push("team/app", clone_url, "refs/heads/main", ZERO, sha, &[]);
    created(post_gitea(&server.url, "push", delivery, body.to_string().as_bytes(), SECRET).await).await[0]
}

#[tokio::test]
async fn registration_needs_the_agent_token_and_labels_select_jobs() {
    let (_git, server, clone_url, sha) = setup(30_000).await;
    assert_eq!(RawAgent::register(&server.url, "wrong", &[]).await.status(), 401);
    let gpu = RawAgent::new(&server.url, &["gpu"]).await;
    let linux = RawAgent::new(&server.url, &["self-hosted", "linux", "x64"]).await;
    // The long poll is waiting before the job exists; the webhook wakes it.
    let waiting = tokio::spawn(async move { linux.lease(30_000).await });
    let run = push(&server, &clone_url, &sha, "d1").await;
    let got = waiting.await.expect("task").expect("a job");
    assert_eq!((got.run_id, got.job_key.as_str(), got.attempt, got.sha.as_str()), (run, "build", 1, sha.as_str()));
    assert_eq!(got.workflow.file, ".forgejo/workflows/one.yml");
    assert_eq!(got.github["repository"], "team/app");
    assert_eq!(got.secrets.get("GREETING").map(String::as_str), Some("s3cr3t-value"));
    assert!(gpu.lease(50).await.is_none(), "labels don't match");
    server.stop().await;
}

#[tokio::test]
async fn an_expired_lease_is_retried_once_then_failed_as_agent_lost() {
    let (_git, mut server, clone_url, sha) = setup(1500).await;
    let agent = RawAgent::new(&server.url, &[]).await;
    let run = push(&server, &clone_url, &sha, "d1").await;
    let first = agent.lease(10_000).await.expect("first lease");
    assert_eq!(first.attempt, 1);
    let hb = agent.post(&protocol::paths::agent_heartbeat(first.job_id), &Heartbeat { attempt: 1 }).await;
    let reply: HeartbeatReply = hb.json().await.expect("heartbeat reply");
    assert!(!reply.cancel);
    // No more heartbeats: the lease expires and the job is queued again; the long poll gets it.
    let second = agent.lease(10_000).await.expect("second lease");
    assert_eq!((second.job_id, second.attempt), (first.job_id, 2));
    let stale = JobFinished { attempt: 1, result: protocol::Conclusion::Success, outputs: Default::default() };
    assert_eq!(agent.post(&protocol::paths::agent_finish(first.job_id), &stale).await.status(), 409);
    let hb = agent.post(&protocol::paths::agent_heartbeat(first.job_id), &Heartbeat { attempt: 1 }).await;
    assert_eq!(hb.status(), 409, "the first attempt's lease is gone");
    let done = server.finished(run).await;
    assert_eq!(done.conclusion, Some(Conclusion::Failure));
    assert_eq!(done.reason.as_deref(), Some("job build failed: agent lost"));
    server.stop().await;
}

#[tokio::test]
async fn cancelling_a_run_stops_its_job_on_the_agent() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".gitea/workflows/slow.yml",
        "on: push\njobs:\n  slow:\n    runs-on: x\n    steps:\n      - run: echo started; sleep 120\n  later:\n    needs: slow\n    runs-on: x\n    steps:\n      - run: echo never\n",
    );
    let sha = tree.commit("slow");
    tree.push("main");
    let mut forge = StandInForge::start(0).await;
    let api = format!("{}/api/v1", forge.url);
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, Some(&api))],
        lease_ttl: std::time::Duration::from_millis(3000),
        ..ServerSetup::default()
    })
    .await;
    let run = push(&server, &clone_url, &sha, "d1").await;
    // Wait until the step has started (its first line is stored).
    loop {
        if server.log_text(run).await.contains("started") {
            break;
        }
        let _ = server.changes.recv().await;
    }
    let resp = reqwest::Client::new().post(format!("{}/api/v1/runs/{run}/cancel", server.url)).send().await.expect("cancel");
    assert_eq!(resp.status(), 202);
    let done = server.finished(run).await;
    assert_eq!(done.conclusion, Some(Conclusion::Cancelled));
    let jobs = server.state.db().jobs(done.id).await.expect("jobs");
    let results: Vec<_> = jobs.iter().map(|j| (j.key.as_str(), j.result)).collect();
    assert_eq!(results, [("slow", Some(Conclusion::Cancelled)), ("later", Some(Conclusion::Cancelled))]);
    let states: Vec<_> = forge.wait_for(2).await.iter().map(|r| r.body["state"].clone()).collect();
    assert_eq!(states, [serde_json::json!("pending"), serde_json::json!("error")]);
    let again = reqwest::Client::new().post(format!("{}/api/v1/runs/{run}/cancel", server.url)).send().await.expect("cancel");
    assert_eq!(again.status(), 409);
    server.stop().await;
    forge.stop().await;
}

#[tokio::test]
async fn a_graceful_shutdown_hands_the_running_job_back_and_a_restart_finishes_it() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    let marks = test_support::tempdir();
    let mark = marks.path().join("first");
    tree.write(
        ".gitea/workflows/ci.yml",
        &format!(
            "on: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: |\n          if [ -e {m} ]; then echo second-attempt; exit 0; fi\n          touch {m}; echo first-attempt; sleep 120\n",
            m = mark.display()
        ),
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let setup = || ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        ..ServerSetup::default()
    };
    let mut server = TestServer::start(setup()).await;
    let run = push(&server, &clone_url, &sha, "d1").await;
    loop {
        if server.log_text(run).await.contains("first-attempt") {
            break;
        }
        let _ = server.changes.recv().await;
    }
    let data = server.stop_keeping_data().await;
    // Restart on the same data: the handed-back job runs again, as attempt 2.
    let mut server = TestServer::start_in(setup(), data).await;
    let done = server.finished(run).await;
    assert_eq!(done.conclusion, Some(Conclusion::Success));
    let jobs = server.state.db().jobs(done.id).await.expect("jobs");
    assert_eq!((jobs[0].attempt, jobs[0].result), (2, Some(Conclusion::Success)));
    let log = server.log_text(run).await;
    assert!(log.contains("first-attempt") && log.contains("second-attempt"), "{log}");
    server.stop().await;
}

#[tokio::test]
async fn rerunning_failed_jobs_keeps_the_successful_ones() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    let marks = test_support::tempdir();
    let mark = marks.path().join("flaked");
    tree.write(
        ".gitea/workflows/ci.yml",
        &format!(
            "name: ci\non: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: echo build-ran\n  flaky:\n    runs-on: x\n    steps:\n      - run: |\n          if [ -e {m} ]; then echo fine-now; exit 0; fi\n          touch {m}; echo flaking; exit 1\n  after:\n    needs: [build, flaky]\n    runs-on: x\n    steps:\n      - run: echo after-ran\n",
            m = mark.display()
        ),
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let mut forge = StandInForge::start(0).await;
    let api = format!("{}/api/v1", forge.url);
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, Some(&api))],
        ..ServerSetup::default()
    })
    .await;
    let run = push(&server, &clone_url, &sha, "d1").await;
    assert_eq!(server.finished(run).await.conclusion, Some(Conclusion::Failure));
    forge.wait_for(2).await;
    let http = reqwest::Client::new();
    let resp = http.post(format!("{}/api/v1/runs/{run}/rerun", server.url)).send().await.expect("rerun");
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"jobs": ["flaky", "after"]}));
    let done = server.finished(run).await;
    assert_eq!(done.conclusion, Some(Conclusion::Success));
    let jobs = server.state.db().jobs(done.id).await.expect("jobs");
    let attempts: Vec<_> = jobs.iter().map(|j| (j.key.as_str(), j.attempt, j.result)).collect();
    assert_eq!(
        attempts,
        [("build", 1, Some(Conclusion::Success)), ("flaky", 2, Some(Conclusion::Success)), ("after", 1, Some(Conclusion::Success))]
    );
    let log = server.log_text(run).await;
    assert_eq!(log.lines().filter(|l| *l == "build-ran").count(), 1, "build did not run again: {log}");
    assert!(log.contains("flaking") && log.contains("fine-now"), "{log}");
    let states: Vec<_> = forge.wait_for(4).await.iter().map(|r| r.body["state"].clone()).collect();
    assert_eq!(states, ["pending", "failure", "pending", "success"].map(serde_json::Value::from));
    let again = http.post(format!("{}/api/v1/runs/{run}/rerun", server.url)).send().await.expect("rerun");
    assert_eq!(again.status(), 409, "nothing failed any more");
    server.stop().await;
    forge.stop().await;
}

#[tokio::test]
async fn step_summaries_groups_and_chunk_times_reach_the_api() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".gitea/workflows/ci.yml",
        "on: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: |\n          echo '::group::Compile'\n          echo compiling\n          echo '::endgroup::'\n          echo '# Report' >> $GITHUB_STEP_SUMMARY\n          echo '| tests | 3 |' >> $GITHUB_STEP_SUMMARY\n      - run: for i in $(seq 45000); do echo 'a row of a very long summary'; done >> $GITHUB_STEP_SUMMARY\n      - run: echo no-summary\n",
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        ..ServerSetup::default()
    })
    .await;
    let before = server::now_ms();
    let run = push(&server, &clone_url, &sha, "d1").await;
    let done = server.finished(run).await;
    assert_eq!(done.conclusion, Some(Conclusion::Success), "{}", server.log_text(run).await);
    let after = server::now_ms();
    let http = reqwest::Client::new();
    let jobs: Vec<protocol::Job> =
        http.get(format!("{}/api/v1/runs/{run}/jobs", server.url)).send().await.expect("jobs").json().await.expect("json");
    let steps = &jobs[0].steps;
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert_eq!(steps[0].summary.as_deref(), Some("# Report\n| tests | 3 |\n"));
    let long = steps[1].summary.as_deref().expect("the long summary");
    assert!(long.len() <= protocol::STEP_SUMMARY_MAX, "capped at 1 MiB: {}", long.len());
    assert!(long.starts_with("a row of a very long summary\n") && long.ends_with("exceeded 1 MiB.)*\n"), "{}", &long[long.len() - 200..]);
    assert!(!long.contains("a row of a very long summary\na row of a very long summ\n"), "cut at a line end");
    assert_eq!(steps[2].summary, None);
    let raw: serde_json::Value =
        http.get(format!("{}/api/v1/runs/{run}/jobs", server.url)).send().await.expect("jobs").json().await.expect("json");
    assert!(raw[0]["steps"][2].get("summary").is_none(), "no summary: no field");
    // Groups are stored as the workflow commands the UI folds on.
    let log = server.log_text(run).await;
    let lines: Vec<&str> = log.lines().collect();
    let at = lines.iter().position(|l| *l == "::group::Compile").expect(&log);
    assert_eq!(&lines[at..at + 3], ["::group::Compile", "compiling", "::endgroup::"]);
    // Every chunk carries the agent's time of its first line.
    let chunks: Vec<protocol::LogText> = http
        .get(format!("{}/api/v1/runs/{run}/logs", server.url))
        .header("accept", "application/json")
        .send()
        .await
        .expect("logs")
        .json()
        .await
        .expect("json");
    assert!(!chunks.is_empty());
    for c in &chunks {
        assert!((before..=after).contains(&c.time_ms), "chunk {} at {} not within {before}..={after}", c.seq, c.time_ms);
    }
    assert!(chunks.windows(2).all(|w| w[0].time_ms <= w[1].time_ms), "times only grow");
    server.stop().await;
}
