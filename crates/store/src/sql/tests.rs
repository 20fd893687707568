//! The same behaviour suite against every backend: each test runs on a fresh SQLite file and
//! a fresh PostgreSQL database (the real server started by `scripts/test`).

use std::future::Future;

use super::*;

/// A fresh database per backend; the guard keeps the SQLite directory alive.
pub(crate) async fn backends() -> Vec<(Db, Option<tempfile::TempDir>)> {
    let dir = test_support::tempdir();
    let sqlite = Db::connect(&format!("sqlite://{}/state.db", dir.path().display())).await.expect("sqlite");
    let postgres = Db::connect(&fresh_postgres().await).await.expect("postgres");
    vec![(sqlite, Some(dir)), (postgres, None)]
}

/// Creates a new database on the test PostgreSQL server and returns its URL.
pub(crate) async fn fresh_postgres() -> String {
    let base = test_support::postgres();
    sqlx::any::install_default_drivers();
    let name = format!("slipway_store_{}", uuid::Uuid::new_v4().simple());
    let admin = AnyPoolOptions::new().max_connections(1).connect(&base).await.expect("connecting to postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create database");
    admin.close().await;
    let (prefix, _) = base.rsplit_once('/').expect("postgres url has a path");
    format!("{prefix}/{name}")
}

async fn each<F, Fut>(f: F)
where
    F: Fn(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    for (db, _guard) in backends().await {
        let backend = db.backend();
        eprintln!("backend: {backend:?}");
        f(db).await;
    }
}

async fn repo(db: &Db) -> RepoId {
    db.upsert_repository("team/app", "git://127.0.0.1/app.git", "gitea", 1).await.expect("repo")
}

fn new_run(repository: RepoId) -> NewRun {
    NewRun {
        repository,
        workflow_file: ".gitea/workflows/ci.yml".into(),
        workflow_name: "ci".into(),
        event: "push".into(),
        git_ref: "refs/heads/main".into(),
        sha: "abc".into(),
        actor: "alice".into(),
        spec: "{}".into(),
        concurrency_group: None,
    }
}

fn job(key: &str, labels: &str, status: JobStatus) -> NewJob {
    NewJob {
        key: key.into(),
        name: key.into(),
        needs: "[]".into(),
        labels: labels.into(),
        condition: None,
        status,
        result: None,
        log: None,
    }
}

fn any(_: &str) -> bool {
    true
}

#[tokio::test]
async fn migrations_are_idempotent_and_repositories_upsert() {
    each(|db| async move {
        let a = repo(&db).await;
        let b = db.upsert_repository("team/app", "git://elsewhere/app.git", "github", 2).await.expect("upsert");
        assert_eq!(a, b);
        let r = db.repository_by_name("team/app").await.expect("read").expect("exists");
        assert_eq!((r.clone_url.as_str(), r.forge.as_str()), ("git://elsewhere/app.git", "github"));
        assert!(db.repository_by_name("team/other").await.expect("read").is_none());
        db.migrate().await.expect("second migrate is a no-op");
    })
    .await;
}

#[tokio::test]
async fn deliveries_are_deduplicated_per_source() {
    each(|db| async move {
        assert!(db.record_delivery("gitea", "d-1", 1).await.expect("first"));
        assert!(!db.record_delivery("gitea", "d-1", 2).await.expect("replay"));
        assert!(db.record_delivery("github", "d-1", 3).await.expect("other source"));
        db.forget_delivery("gitea", "d-1").await.expect("forget");
        assert!(db.record_delivery("gitea", "d-1", 4).await.expect("redelivery after a failure"));
    })
    .await;
}

#[tokio::test]
async fn create_run_and_read_it_back() {
    each(|db| async move {
        let r = repo(&db).await;
        let (run, jobs) = db
            .create_run(&new_run(r), &[job("build", "[]", JobStatus::Queued), job("test", "[]", JobStatus::Pending)], 10)
            .await
            .expect("create");
        assert_eq!(jobs.len(), 2);
        let got = db.run(run).await.expect("read").expect("exists");
        assert_eq!((got.status, got.conclusion, got.repository_name.as_str()), (RunStatus::Queued, None, "team/app"));
        let listed = db.jobs(run).await.expect("jobs");
        let states: Vec<_> = listed.iter().map(|j| (j.key.as_str(), j.status)).collect();
        assert_eq!(states, [("build", JobStatus::Queued), ("test", JobStatus::Pending)]);
        assert_eq!(db.runs(Some("team/app"), 10).await.expect("runs").len(), 1);
        assert_eq!(db.runs(None, 10).await.expect("runs").len(), 1);
        assert_eq!(db.runs(Some("team/other"), 10).await.expect("runs").len(), 0);
        assert_eq!(db.queue_depth().await.expect("depth"), 1);
    })
    .await;
}

#[tokio::test]
async fn a_run_whose_only_job_failed_to_compile_is_done_with_its_log() {
    each(|db| async move {
        let r = repo(&db).await;
        let mut bad = job("ci.yml", "[]", JobStatus::Done);
        bad.result = Some((Conclusion::Failure, "workflow is invalid".into()));
        bad.log = Some(b"ci.yml:3:5: error: nope".to_vec());
        let (run, jobs) = db.create_run(&new_run(r), &[bad], 10).await.expect("create");
        let got = db.run(run).await.expect("read").expect("exists");
        assert_eq!((got.status, got.conclusion), (RunStatus::Done, Some(Conclusion::Failure)));
        assert_eq!(got.reason.as_deref(), Some("workflow is invalid"));
        let logs = db.logs(jobs[0], None).await.expect("logs");
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].data, b"ci.yml:3:5: error: nope");
    })
    .await;
}

#[tokio::test]
async fn lease_hands_out_each_job_once_and_respects_labels() {
    each(|db| async move {
        let r = repo(&db).await;
        let agent = db.create_agent("a1", "[]", "hash-1", 1).await.expect("agent");
        let (_, ids) = db
            .create_run(
                &new_run(r),
                &[job("gpu", "[\"gpu\"]", JobStatus::Queued), job("cpu", "[\"cpu\"]", JobStatus::Queued)],
                10,
            )
            .await
            .expect("create");
        let cpu_only = |labels: &str| labels.contains("cpu");
        let first = db.lease(agent, &cpu_only, 20, 1000).await.expect("lease").expect("a cpu job");
        assert_eq!((first.id, first.attempt, first.status), (ids[1], 1, JobStatus::Running));
        assert_eq!(first.lease_expires_at, Some(1020));
        assert!(db.lease(agent, &cpu_only, 21, 1000).await.expect("lease").is_none());
        let second = db.lease_any(agent, 22, 1000).await.expect("lease").expect("the gpu job");
        assert_eq!(second.id, ids[0]);
        assert!(db.lease(agent, &any, 23, 1000).await.expect("lease").is_none());
        assert!(db.lease_any(agent, 23, 1000).await.expect("lease").is_none());
        assert_eq!(db.queue_depth().await.expect("depth"), 0);
    })
    .await;
}

#[tokio::test]
async fn concurrent_leases_never_share_a_job() {
    each(|db| async move {
        let r = repo(&db).await;
        let agent = db.create_agent("a1", "[]", "hash-1", 1).await.expect("agent");
        let jobs: Vec<NewJob> = (0..20).map(|i| job(&format!("j{i}"), "[]", JobStatus::Queued)).collect();
        db.create_run(&new_run(r), &jobs, 10).await.expect("create");
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let db = db.clone();
            set.spawn(async move {
                let mut got = Vec::new();
                while let Some(job) = db.lease_any(agent, 20, 1000).await.expect("lease") {
                    got.push(job.id);
                }
                got
            });
        }
        let mut all = Vec::new();
        while let Some(got) = set.join_next().await {
            all.extend(got.expect("task"));
        }
        all.sort();
        let before = all.len();
        all.dedup();
        assert_eq!((before, all.len()), (20, 20));
    })
    .await;
}

#[tokio::test]
async fn heartbeat_extends_the_lease_and_reports_cancellation() {
    each(|db| async move {
        let r = repo(&db).await;
        let agent = db.create_agent("a1", "[]", "hash-1", 1).await.expect("agent");
        let other = db.create_agent("a2", "[]", "hash-2", 1).await.expect("agent");
        let (run, _) = db
            .create_run(&new_run(r), &[job("a", "[]", JobStatus::Queued), job("b", "[]", JobStatus::Pending)], 10)
            .await
            .expect("create");
        let leased = db.lease(agent, &any, 20, 100).await.expect("lease").expect("job");
        assert_eq!(db.heartbeat(leased.id, 1, agent, 50, 100).await.expect("hb"), Some(false));
        assert_eq!(db.job(leased.id).await.expect("job").expect("exists").lease_expires_at, Some(150));
        assert_eq!(db.heartbeat(leased.id, 1, other, 50, 100).await.expect("hb"), None, "not the holder");
        assert_eq!(db.heartbeat(leased.id, 2, agent, 50, 100).await.expect("hb"), None, "not this attempt");
        assert!(db.cancel_run(run, 60).await.expect("cancel"));
        assert_eq!(db.heartbeat(leased.id, 1, agent, 70, 100).await.expect("hb"), Some(true));
        let jobs = db.jobs(run).await.expect("jobs");
        assert_eq!((jobs[1].status, jobs[1].result), (JobStatus::Done, Some(Conclusion::Cancelled)));
    })
    .await;
}

#[tokio::test]
async fn a_report_and_a_finish_store_their_steps_and_log_at_once_and_resent_change_nothing() {
    each(|db| async move {
        let r = repo(&db).await;
        let agent = db.create_agent("a1", "[]", "hash-1", 1).await.expect("agent");
        let other = db.create_agent("a2", "[]", "hash-2", 1).await.expect("agent");
        let (run, ids) = db.create_run(&new_run(r), &[job("a", "[]", JobStatus::Queued)], 10).await.expect("create");
        let j = db.lease(agent, &any, 20, 100).await.expect("lease").expect("job").id;
        let step = |status: &str, at: i64| Step {
            job: j,
            attempt: 1,
            number: 0,
            name: "build".into(),
            status: status.into(),
            conclusion: (status == "done").then(|| "success".into()),
            started_at: (status == "running").then_some(at),
            finished_at: (status == "done").then_some(at),
            outputs: None,
            summary: (status == "done").then(|| "# sum".into()),
        };
        let log = |seq: i64, text: &str| Some(NewLog { seq, data: text.as_bytes().to_vec(), created_at: 30 + seq });
        let first = Report { steps: vec![step("running", 25)], log: log(0, "one\n") };
        assert_eq!(db.report(j, 1, agent, &first, 200).await.expect("report"), Some((run, false)));
        assert_eq!(db.report(j, 1, agent, &first, 210).await.expect("resent"), Some((run, false)));
        assert_eq!(db.job(j).await.expect("job").expect("exists").lease_expires_at, Some(210), "a report extends the lease");
        assert_eq!(db.report(j, 1, other, &first, 200).await.expect("report"), None, "not the holder");
        assert_eq!(db.report(j, 2, agent, &first, 200).await.expect("report"), None, "not this attempt");
        let last = Report { steps: vec![step("done", 40)], log: log(1, "two\n") };
        let Finished::Done(done) = db.finish_reported(j, 1, agent, &last, Conclusion::Success, "{}", 45).await.expect("finish") else {
            panic!("finished now")
        };
        assert_eq!((done.id, done.status, done.result, done.finished_at), (ids[0], JobStatus::Done, Some(Conclusion::Success), Some(45)));
        let resent = db.finish_reported(j, 1, agent, &last, Conclusion::Failure, "{}", 50).await.expect("finish");
        assert!(matches!(resent, Finished::AlreadyDone(ref job) if job.result == Some(Conclusion::Success) && job.finished_at == Some(45)));
        assert_eq!(db.finish_reported(j, 1, other, &last, Conclusion::Success, "{}", 50).await.expect("finish"), Finished::NotHeld);
        // A late copy of the first report after the finish: refused, the step stays done.
        assert_eq!(db.report(j, 1, agent, &first, 200).await.expect("report"), None);
        db.record_step(&step("running", 26)).await.expect("a late step report");
        let logs: Vec<_> = db.logs(j, None).await.expect("logs").into_iter().map(|c| (c.seq, c.data, c.created_at)).collect();
        assert_eq!(logs, [(0, b"one\n".to_vec(), 30), (1, b"two\n".to_vec(), 31)]);
        let steps = db.steps(j).await.expect("steps");
        let got: Vec<_> = steps.iter().map(|s| (s.status.as_str(), s.conclusion.as_deref(), s.started_at, s.finished_at, s.summary.as_deref())).collect();
        assert_eq!(got, [("done", Some("success"), Some(25), Some(40), Some("# sum"))]);
    })
    .await;
}

#[tokio::test]
async fn an_expired_lease_is_retried_once_then_failed_as_agent_lost() {
    each(|db| async move {
        let r = repo(&db).await;
        let agent = db.create_agent("a1", "[]", "hash-1", 1).await.expect("agent");
        let (_, ids) = db.create_run(&new_run(r), &[job("a", "[]", JobStatus::Queued)], 10).await.expect("create");
        db.lease(agent, &any, 20, 100).await.expect("lease").expect("job");
        assert_eq!(db.next_lease_expiry().await.expect("next"), Some(120));
        assert_eq!(db.expire_leases(119).await.expect("expire"), []);
        assert_eq!(db.expire_leases(121).await.expect("expire"), [Expired::Requeued(ids[0])]);
        assert!(!db.finish_job(ids[0], 1, agent, Conclusion::Success, "{}", 122).await.expect("finish"), "stale attempt");
        let again = db.lease(agent, &any, 130, 100).await.expect("lease").expect("job again");
        assert_eq!(again.attempt, 2);
        assert_eq!(db.expire_leases(231).await.expect("expire"), [Expired::Failed(ids[0])]);
        let job = db.job(ids[0]).await.expect("job").expect("exists");
        assert_eq!((job.status, job.result, job.reason.as_deref()), (JobStatus::Done, Some(Conclusion::Failure), Some(AGENT_LOST)));
        assert_eq!(db.next_lease_expiry().await.expect("next"), None);
    })
    .await;
}

#[tokio::test]
async fn a_released_job_is_queued_again_as_a_new_attempt() {
    each(|db| async move {
        let r = repo(&db).await;
        let agent = db.create_agent("a1", "[]", "hash-1", 1).await.expect("agent");
        let other = db.create_agent("a2", "[]", "hash-2", 1).await.expect("agent");
        let (_, ids) = db.create_run(&new_run(r), &[job("a", "[]", JobStatus::Queued)], 10).await.expect("create");
        db.lease(agent, &any, 20, 100).await.expect("lease").expect("job");
        assert!(!db.release_job(ids[0], 1, other).await.expect("release"), "not the holder");
        assert!(db.release_job(ids[0], 1, agent).await.expect("release"));
        assert!(!db.release_job(ids[0], 1, agent).await.expect("release twice"));
        let again = db.lease(other, &any, 30, 100).await.expect("lease").expect("job again");
        assert_eq!((again.attempt, again.agent), (2, Some(other)));
    })
    .await;
}

#[tokio::test]
async fn finishing_jobs_and_runs_happens_once() {
    each(|db| async move {
        let r = repo(&db).await;
        let agent = db.create_agent("a1", "[]", "hash-1", 1).await.expect("agent");
        let (run, ids) = db
            .create_run(&new_run(r), &[job("a", "[]", JobStatus::Queued), job("b", "[]", JobStatus::Pending)], 10)
            .await
            .expect("create");
        db.lease(agent, &any, 20, 100).await.expect("lease").expect("job");
        db.start_run(run, 20).await.expect("start");
        assert!(db.finish_job(ids[0], 1, agent, Conclusion::Success, "{\"x\":\"1\"}", 30).await.expect("finish"));
        assert!(!db.finish_job(ids[0], 1, agent, Conclusion::Failure, "{}", 31).await.expect("twice"));
        assert!(db.queue_job(ids[1]).await.expect("queue"));
        assert!(!db.queue_job(ids[1]).await.expect("queue twice"));
        assert!(db.settle_job(ids[1], Conclusion::Skipped, None, 32).await.expect("skip"));
        assert!(db.finish_run(run, Conclusion::Success, None, 40).await.expect("finish run"));
        assert!(!db.finish_run(run, Conclusion::Failure, None, 41).await.expect("twice"));
        let got = db.run(run).await.expect("read").expect("exists");
        assert_eq!((got.status, got.conclusion, got.started_at, got.finished_at), (RunStatus::Done, Some(Conclusion::Success), Some(20), Some(40)));
        let a = db.job(ids[0]).await.expect("job").expect("exists");
        assert_eq!((a.result, a.outputs.as_deref()), (Some(Conclusion::Success), Some("{\"x\":\"1\"}")));
        assert!(!db.cancel_run(run, 50).await.expect("cancel a finished run"));
    })
    .await;
}

#[tokio::test]
async fn logs_are_idempotent_and_ordered_and_steps_upsert() {
    each(|db| async move {
        let r = repo(&db).await;
        let (_, ids) = db.create_run(&new_run(r), &[job("a", "[]", JobStatus::Queued)], 10).await.expect("create");
        let j = ids[0];
        assert!(db.append_log(j, 1, 1, b"two\n", 1).await.expect("log"));
        assert!(db.append_log(j, 1, 0, b"one\n", 1).await.expect("log"));
        assert!(!db.append_log(j, 1, 0, b"dup\n", 1).await.expect("log"));
        assert!(db.append_log(j, 2, 0, b"retry\n", 1).await.expect("log"));
        let all: Vec<_> = db.logs(j, None).await.expect("logs").into_iter().map(|c| c.data).collect();
        assert_eq!(all, [b"one\n".to_vec(), b"two\n".to_vec(), b"retry\n".to_vec()]);
        let after: Vec<_> = db.logs(j, Some((1, 0))).await.expect("logs").into_iter().map(|c| (c.attempt, c.seq)).collect();
        assert_eq!(after, [(1, 1), (2, 0)]);
        assert!(db.append_log(j, 3, 0, b"timed\n", 1_700_000_000_123).await.expect("log"));
        let timed = db.logs(j, Some((2, 0))).await.expect("logs");
        assert_eq!(timed.iter().map(|c| c.created_at).collect::<Vec<_>>(), [1_700_000_000_123], "a chunk keeps its time");
        let mut step = StepRecord {
            job: j,
            attempt: 1,
            number: 0,
            name: "build".into(),
            status: "running".into(),
            conclusion: None,
            started_at: Some(5),
            finished_at: None,
            outputs: None,
            summary: None,
        };
        db.record_step(&step).await.expect("step");
        step.status = "done".into();
        step.conclusion = Some("success".into());
        step.started_at = None;
        step.finished_at = Some(9);
        step.outputs = Some(r#"{"digest":"sha256:ab"}"#.into());
        step.summary = Some("# Tests\n\n| ok | 3 |\n".into());
        db.record_step(&step).await.expect("step");
        // A report resent without the summary (an older agent) keeps it.
        let resent = Step { summary: None, ..step.clone() };
        db.record_step(&resent).await.expect("step");
        let steps = db.steps(j).await.expect("steps");
        assert_eq!(steps.len(), 1);
        assert_eq!((steps[0].started_at, steps[0].finished_at, steps[0].conclusion.as_deref()), (Some(5), Some(9), Some("success")));
        assert_eq!(steps[0].outputs.as_deref(), Some(r#"{"digest":"sha256:ab"}"#), "step outputs are kept");
        assert_eq!(steps[0].summary.as_deref(), Some("# Tests\n\n| ok | 3 |\n"), "the step summary is kept");
    })
    .await;
}

#[tokio::test]
async fn agents_authenticate_by_token_hash_and_are_counted() {
    each(|db| async move {
        let id = db.create_agent("a1", "[\"linux\"]", "hash-1", 100).await.expect("agent");
        let agent = db.agent_by_token("hash-1", 200).await.expect("auth").expect("known");
        assert_eq!((agent.id, agent.last_seen_at, agent.labels.as_str()), (id, 200, "[\"linux\"]"));
        assert!(db.agent_by_token("hash-x", 200).await.expect("auth").is_none());
        assert_eq!(db.count_agents(150).await.expect("count"), 1);
        assert_eq!(db.count_agents(201).await.expect("count"), 0);
    })
    .await;
}

#[tokio::test]
async fn runs_are_listed_by_concurrency_group() {
    each(|db| async move {
        let r = repo(&db).await;
        let grouped = |g: &str| NewRun { concurrency_group: Some(g.into()), ..new_run(r) };
        let q = [job("a", "[]", JobStatus::Queued)];
        let (one, _) = db.create_run(&grouped("deploy"), &q, 1).await.expect("create");
        let (two, _) = db.create_run(&grouped("deploy"), &q, 2).await.expect("create");
        db.create_run(&grouped("other"), &q, 3).await.expect("create");
        db.create_run(&new_run(r), &q, 4).await.expect("create");
        let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(db.active_in_group(r, "deploy").await.expect("group")), [one, two]);
        db.finish_run(one, Conclusion::Success, None, 5).await.expect("finish");
        assert_eq!(ids(db.active_in_group(r, "deploy").await.expect("group")), [two]);
        assert_eq!(db.run(two).await.expect("run").expect("exists").concurrency_group.as_deref(), Some("deploy"));
    })
    .await;
}

#[tokio::test]
async fn polled_refs_remember_the_last_poll() {
    each(|db| async move {
        let r = repo(&db).await;
        assert_eq!(db.polled_refs(r).await.expect("refs"), None);
        db.set_polled_ref(r, "", "").await.expect("marker");
        assert_eq!(db.polled_refs(r).await.expect("refs"), Some(vec![]));
        db.set_polled_ref(r, "refs/heads/main", "a").await.expect("set");
        db.set_polled_ref(r, "refs/heads/main", "b").await.expect("update");
        assert_eq!(db.polled_refs(r).await.expect("refs"), Some(vec![("refs/heads/main".to_owned(), "b".to_owned())]));
    })
    .await;
}

#[tokio::test]
async fn unsupported_urls_are_rejected_without_leaking_passwords() {
    let err = Db::connect("mysql://u:secret@h/db").await.expect_err("unsupported");
    let msg = err.to_string();
    assert!(msg.contains("mysql://u@h/db") && !msg.contains("secret"), "{msg}");
}

#[tokio::test]
async fn repositories_are_saved_listed_and_deleted_with_their_settings() {
    each(|db| async move {
        let settings = RepositorySettings {
            name: "team/api".into(),
            clone_url: "git://h/api.git".into(),
            forge: "github".into(),
            forge_api: Some("http://forge".into()),
            forge_token: Some(vec![1, 2, 3]),
            webhook_secret: None,
            poll_interval_ms: Some(30_000),
            managed_by: "api".into(),
        };
        let id = db.save_repository(&settings, 1).await.expect("save");
        repo(&db).await;
        let names = |rs: Vec<Repository>| rs.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(db.repositories().await.expect("list")), ["team/api", "team/app"]);
        let got = db.repository_by_name("team/api").await.expect("get").expect("exists");
        assert_eq!((got.id, got.forge_token.as_deref(), got.poll_interval_ms), (id, Some(&[1u8, 2, 3][..]), Some(30_000)));
        db.put_secret("repo:team/api", "TOKEN", b"sealed", 5).await.expect("secret");
        db.put_secret("org:team", "TOKEN", b"org", 5).await.expect("secret");
        db.put_secret("repo:team/api", "TOKEN", b"sealed2", 6).await.expect("replace");
        db.put_variable("repo:team/api", "REGION", "eu", 5).await.expect("var");
        let secrets = db.secrets(Some("repo:team/api")).await.expect("secrets");
        assert_eq!((secrets.len(), secrets[0].value.as_slice(), secrets[0].updated_at), (1, &b"sealed2"[..], 6));
        assert_eq!(db.secrets(None).await.expect("all").len(), 2);
        assert!(db.delete_repository("team/api").await.expect("delete"));
        assert!(!db.delete_repository("team/api").await.expect("delete again"));
        assert_eq!(names(db.repositories().await.expect("list")), ["team/app"]);
        assert!(db.secrets(Some("repo:team/api")).await.expect("secrets").is_empty(), "settings go with it");
        assert!(db.variables(Some("repo:team/api")).await.expect("vars").is_empty());
        assert_eq!(db.secrets(Some("org:team")).await.expect("org").len(), 1, "org secrets stay");
        // Saved again: active again, same id (its old runs are its runs).
        assert_eq!(db.save_repository(&settings, 9).await.expect("save"), id);
        db.retire_config_repositories(&[]).await.expect("retire");
        assert_eq!(names(db.repositories().await.expect("list")), ["team/api"], "config-managed ones not kept are retired");
        assert!(db.delete_variable("org:team", "X").await.is_ok_and(|d| !d));
        assert!(db.delete_secret("org:team", "TOKEN").await.expect("delete secret"));
    })
    .await;
}

#[tokio::test]
async fn artifacts_are_recorded_per_run_and_replaced_by_name() {
    each(|db| async move {
        let r = repo(&db).await;
        let (run, ids) = db.create_run(&new_run(r), &[job("a", "[]", JobStatus::Queued)], 10).await.expect("create");
        let mut a = ArtifactRecord {
            run,
            name: "dist".into(),
            job: ids[0],
            attempt: 1,
            manifest: "{}".into(),
            files: 2,
            size: 10,
            created_at: 3,
        };
        db.put_artifact(&a).await.expect("put");
        a.attempt = 2;
        a.size = 11;
        db.put_artifact(&a).await.expect("replace");
        let all = db.artifacts(run, None).await.expect("list");
        assert_eq!(all, vec![a.clone()]);
        assert!(db.artifacts(run, Some("other")).await.expect("by name").is_empty());
        assert_eq!(db.artifacts(run, Some("dist")).await.expect("by name").len(), 1);
    })
    .await;
}
