//! The agent protocol from the outside: registration, long-poll pickup, lease expiry (retried
//! once, then "agent lost"), stale attempts refused, cancellation through heartbeats, batched
//! reports (resent ones store nothing twice, also through a real agent whose replies get
//! lost) and live logs while a step runs.

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
            .json(&RegisterRequest { name: "raw".into(), labels: labels.iter().map(|l| (*l).to_owned()).collect(), capacity: None })
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
    let stale = JobFinished { attempt: 1, result: protocol::Conclusion::Success, outputs: Default::default(), steps: vec![], logs: None };
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

#[tokio::test]
async fn matrix_legs_running_in_one_job_keep_their_own_steps_and_summaries() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".gitea/workflows/ci.yml",
        "on: push\njobs:\n  test:\n    runs-on: x\n    strategy:\n      fail-fast: false\n      matrix:\n        suite: [unit, cli]\n    steps:\n      - run: echo \"# ${{ matrix.suite }}\" >> $GITHUB_STEP_SUMMARY\n      - name: Check\n        run: test ${{ matrix.suite }} = unit\n",
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        ..ServerSetup::default()
    })
    .await;
    let run = push(&server, &clone_url, &sha, "m1").await;
    let done = server.finished(run).await;
    assert_eq!(done.conclusion, Some(Conclusion::Failure), "{}", server.log_text(run).await);
    let jobs: Vec<protocol::Job> = reqwest::get(format!("{}/api/v1/runs/{run}/jobs", server.url))
        .await
        .expect("jobs")
        .json()
        .await
        .expect("json");
    assert_eq!(jobs.len(), 1, "the legs run inside one job");
    // Two legs × two steps: four steps, each leg's under its own numbers and name.
    let steps: Vec<(String, Option<String>, Option<String>)> =
        jobs[0].steps.iter().map(|s| (s.name.clone(), s.conclusion.clone(), s.summary.clone())).collect();
    assert_eq!(steps.len(), 4, "{steps:?}");
    for (suite, ok) in [("unit", "success"), ("cli", "failure")] {
        let mine: Vec<_> = steps.iter().filter(|(n, ..)| n.starts_with(&format!("{suite}: "))).collect();
        assert_eq!(mine.len(), 2, "{suite}: {steps:?}");
        assert_eq!(mine[0].2.as_deref(), Some(format!("# {suite}\n").as_str()), "{steps:?}");
        assert_eq!((mine[1].0.as_str(), mine[1].1.as_deref()), (format!("{suite}: Check").as_str(), Some(ok)), "{steps:?}");
    }
    server.stop().await;
}

fn step(attempt: i64, number: i64, state: protocol::StepState, conclusion: Option<protocol::Conclusion>) -> protocol::StepReport {
    protocol::StepReport {
        attempt,
        number,
        name: format!("step {number}"),
        state,
        conclusion,
        outputs: Default::default(),
        summary: None,
        time_ms: 1_700_000_000_000 + number,
    }
}

fn chunk(attempt: i64, seq: i64, lines: &[&str]) -> protocol::LogChunk {
    protocol::LogChunk { attempt, seq, lines: lines.iter().map(|l| (*l).to_owned()).collect(), time_ms: 1_700_000_000_000 + seq }
}

#[tokio::test]
async fn resent_reports_and_finishes_store_nothing_twice() {
    use protocol::{JobReport, StepState::*};
    let (_git, mut server, clone_url, sha) = setup(30_000).await;
    let agent = RawAgent::new(&server.url, &[]).await;
    let run = push(&server, &clone_url, &sha, "d1").await;
    let job = agent.lease(10_000).await.expect("a job");
    let (id, a) = (job.job_id, job.attempt);
    let first = JobReport { attempt: a, steps: vec![step(a, 0, Running, None)], logs: Some(chunk(a, 0, &["one", "two"])) };
    for _ in 0..2 {
        let resp = agent.post(&protocol::paths::agent_report(id), &first).await;
        assert_eq!(resp.status(), 200);
        let reply: HeartbeatReply = resp.json().await.expect("reply");
        assert!(!reply.cancel);
    }
    let mut done = step(a, 0, Done, Some(protocol::Conclusion::Success));
    done.summary = Some("# ok\n".into());
    let second = JobReport { attempt: a, steps: vec![done], logs: Some(chunk(a, 1, &["three"])) };
    assert_eq!(agent.post(&protocol::paths::agent_report(id), &second).await.status(), 200);
    // A late copy of the first report (its step `running`) does not undo the step's end.
    assert_eq!(agent.post(&protocol::paths::agent_report(id), &first).await.status(), 200);
    let mismatched = JobReport { attempt: a, steps: vec![], logs: Some(chunk(a + 1, 2, &["x"])) };
    assert_eq!(agent.post(&protocol::paths::agent_report(id), &mismatched).await.status(), 400);
    let stale = JobReport { attempt: a + 1, steps: vec![], logs: Some(chunk(a + 1, 2, &["x"])) };
    assert_eq!(agent.post(&protocol::paths::agent_report(id), &stale).await.status(), 409, "not the held attempt");
    let finish = JobFinished {
        attempt: a,
        result: protocol::Conclusion::Success,
        outputs: Default::default(),
        steps: vec![step(a, 1, Running, None), step(a, 1, Done, Some(protocol::Conclusion::Success))],
        logs: Some(chunk(a, 2, &["four", "five"])),
    };
    assert_eq!(agent.post(&protocol::paths::agent_finish(id), &finish).await.status(), 204);
    assert_eq!(agent.post(&protocol::paths::agent_finish(id), &finish).await.status(), 204, "a resent finish");
    assert_eq!(agent.post(&protocol::paths::agent_report(id), &second).await.status(), 409, "reports after the finish");
    assert_eq!(server.finished(run).await.conclusion, Some(Conclusion::Success));
    let log = server.log_text(run).await;
    assert_eq!(log.lines().filter(|l| !l.starts_with("===")).collect::<Vec<_>>(), ["one", "two", "three", "four", "five"]);
    let steps = server.state.db().steps(store::sql::JobId(id)).await.expect("steps");
    let got: Vec<_> = steps.iter().map(|s| (s.number, s.status.as_str(), s.conclusion.as_deref(), s.started_at, s.finished_at)).collect();
    assert_eq!(
        got,
        [
            (0, "done", Some("success"), Some(1_700_000_000_000), Some(1_700_000_000_000)),
            (1, "done", Some("success"), Some(1_700_000_000_001), Some(1_700_000_000_001)),
        ]
    );
    assert_eq!(steps[0].summary.as_deref(), Some("# ok\n"));
    let times: Vec<_> = server.state.db().logs(store::sql::JobId(id), None).await.expect("logs").iter().map(|c| c.created_at).collect();
    assert_eq!(times, [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002], "the agent's times");
    server.stop().await;
}

/// A proxy in front of the server that forwards every request but answers the first copy of
/// each `report` and `finish` with `502` after the server handled it: the reply is lost, the
/// agent sends it again.
async fn lossy_proxy(upstream: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>, tokio::task::JoinHandle<()>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex, atomic::AtomicUsize, atomic::Ordering};
    let seen: Arc<Mutex<HashSet<(String, Bytes)>>> = Arc::default();
    let lost = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let lost2 = lost.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (http, seen, lost, upstream) = (http.clone(), seen.clone(), lost2.clone(), upstream.clone());
        async move {
            let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
            let mut req = http.request(method, format!("{upstream}{path}")).body(body.clone());
            for (k, v) in &headers {
                if k != "host" {
                    req = req.header(k, v);
                }
            }
            let resp = req.send().await.expect("upstream");
            let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
            let ctype = resp.headers().get("content-type").cloned();
            let bytes = resp.bytes().await.expect("upstream body");
            let batched = path.ends_with("/report") || path.ends_with("/finish");
            if batched && status.is_success() && seen.lock().expect("lock").insert((path, body)) {
                lost.fetch_add(1, Ordering::SeqCst);
                return (StatusCode::BAD_GATEWAY, HeaderMap::new(), Bytes::new());
            }
            let mut h = HeaderMap::new();
            if let Some(c) = ctype {
                h.insert("content-type", c);
            }
            (status, h, bytes)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("proxy");
    });
    (url, lost, task)
}

#[tokio::test]
async fn an_agent_whose_replies_are_lost_resends_and_nothing_is_lost_duplicated_or_reordered() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    // Lines over a few report periods, a step summary, and several steps.
    tree.write(
        ".gitea/workflows/ci.yml",
        "on: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: for i in $(seq 1 6); do echo line-$i; sleep 0.1; done\n      - run: |\n          for i in $(seq 7 3000); do echo line-$i; done\n          echo '# sum' >> $GITHUB_STEP_SUMMARY\n      - run: echo line-3001\n",
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        embedded_agent: false,
        agent_token: Some("agent-secret".into()),
        ..ServerSetup::default()
    })
    .await;
    let (proxy, lost, proxy_task) = lossy_proxy(server.url.clone()).await;
    let work = test_support::tempdir();
    let stop = tokio_util::sync::CancellationToken::new();
    let agent = tokio::spawn(server::agent::run(
        server::agent::AgentOptions {
            server: proxy,
            token: "agent-secret".into(),
            name: "lossy".into(),
            labels: vec![],
            work_dir: work.path().to_owned(),
            capacity: 1,
        },
        stop.clone(),
    ));
    let run = push(&server, &clone_url, &sha, "d1").await;
    let done = server.finished(run).await;
    assert_eq!(done.conclusion, Some(Conclusion::Success), "{}", server.log_text(run).await);
    stop.cancel();
    agent.await.expect("agent task").expect("agent ran");
    proxy_task.abort();
    assert!(lost.load(std::sync::atomic::Ordering::SeqCst) >= 2, "replies of reports and the finish were lost");
    let log = server.log_text(run).await;
    let numbered: Vec<&str> = log.lines().filter(|l| l.starts_with("line-")).collect();
    let want: Vec<String> = (1..=3001).map(|i| format!("line-{i}")).collect();
    assert_eq!(numbered, want, "every line once, in order");
    let jobs = server.state.db().jobs(done.id).await.expect("jobs");
    let steps = server.state.db().steps(jobs[0].id).await.expect("steps");
    let got: Vec<_> = steps.iter().map(|s| (s.number, s.status.as_str(), s.conclusion.as_deref())).collect();
    assert_eq!(got, [(0, "done", Some("success")), (1, "done", Some("success")), (2, "done", Some("success"))]);
    assert_eq!(steps[1].summary.as_deref(), Some("# sum\n"));
    let chunks = server.state.db().logs(jobs[0].id, None).await.expect("logs");
    assert!(chunks.windows(2).all(|w| w[0].seq + 1 == w[1].seq), "no chunk lost or stored twice");
    server.stop().await;
}

#[tokio::test]
async fn live_logs_and_step_states_arrive_while_a_step_runs() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    let marks = test_support::tempdir();
    let mark = marks.path().join("go-on");
    tree.write(
        ".gitea/workflows/ci.yml",
        &format!(
            "on: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: echo quick\n      - run: |\n          echo before-the-wait\n          while [ ! -e {m} ]; do sleep 0.05; done\n          echo after-the-wait\n",
            m = mark.display()
        ),
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        ..ServerSetup::default()
    })
    .await;
    let run = push(&server, &clone_url, &sha, "d1").await;
    // The step waits for the test: its first line and both step states must arrive while it
    // runs (a batching agent that sent them only with the result would never get here).
    let seen = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            let jobs = server.state.db().jobs(store::sql::RunId(run)).await.expect("jobs");
            if let Some(job) = jobs.first() {
                let steps = server.state.db().steps(job.id).await.expect("steps");
                let states: Vec<_> = steps.iter().map(|s| (s.number, s.status.clone())).collect();
                if server.log_text(run).await.contains("before-the-wait") && states == [(0, "done".to_owned()), (1, "running".to_owned())] {
                    return server.log_text(run).await;
                }
            }
            let _ = server.changes.recv().await;
        }
    })
    .await
    .expect("the line and the step states arrived while the step ran");
    assert!(!seen.contains("after-the-wait"));
    std::fs::write(&mark, "").expect("mark");
    assert_eq!(server.finished(run).await.conclusion, Some(Conclusion::Success));
    assert!(server.log_text(run).await.contains("after-the-wait"));
    server.stop().await;
}

#[tokio::test]
async fn a_slot_directory_is_reused_empty_and_nothing_of_a_job_stays_behind() {
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".gitea/workflows/ci.yml",
        "on: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: |\n          if [ -e leftover.txt ]; then echo found-a-leftover; exit 1; fi\n          echo s3cret > leftover.txt; mkdir -p deep/er; touch deep/er/file\n",
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let mut server = TestServer::start(ServerSetup {
        repositories: vec![repo_config("team/app", &clone_url, Forge::Gitea, None)],
        embedded_agent: false,
        agent_token: Some("agent-secret".into()),
        ..ServerSetup::default()
    })
    .await;
    let work = test_support::tempdir();
    let stop = tokio_util::sync::CancellationToken::new();
    let agent = tokio::spawn(server::agent::run(
        server::agent::AgentOptions {
            server: server.url.clone(),
            token: "agent-secret".into(),
            name: "one-slot".into(),
            labels: vec![],
            work_dir: work.path().to_owned(),
            capacity: 1,
        },
        stop.clone(),
    ));
    for delivery in ["d1", "d2"] {
        let run = push(&server, &clone_url, &sha, delivery).await;
        let done = server.finished(run).await;
        assert_eq!(done.conclusion, Some(Conclusion::Success), "{}", server.log_text(run).await);
    }
    stop.cancel();
    agent.await.expect("agent task").expect("agent ran");
    // One slot directory, reused; no file of either job left in it.
    let top: Vec<String> = std::fs::read_dir(work.path()).expect("work dir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(top, ["slot-0"]);
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read dir") {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_dir() {
                files(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut left = Vec::new();
    files(work.path(), &mut left);
    assert_eq!(left, Vec::<std::path::PathBuf>::new(), "nothing of a job stays behind");
    server.stop().await;
}
