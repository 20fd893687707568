//! Job-level concurrency groups, per-job cancellation, and named locks with an expiry.
//!
//! Its migrations are numbered from 300.
//!
//! - `job_concurrency`: a job's `concurrency:` as the server wrote it at run creation (opaque
//!   text), so that it can be evaluated when the job becomes runnable.
//! - `job_concurrency_groups`: the groups a runnable job entered (a matrix job may enter one
//!   per leg), and whether it was admitted (it holds the group until it is done) or waits.
//!   At most one job of a group is admitted and not done, and at most one waits: a job that
//!   enters a group replaces (cancels) the job waiting there.
//! - `jobs.cancel_requested` / `jobs.cancel_reason`: one running job asked to stop (the agent
//!   hears it in its heartbeat reply), independently of its run.
//! - `named_locks`: a lock per name (a holder and an expiry) taken with one atomic upsert, so
//!   that server replicas sharing a database serialize on it.
//!
//! Entering a group is one transaction: `BEGIN IMMEDIATE` on SQLite; on PostgreSQL an advisory
//! transaction lock serializes the decisions of all replicas.

use super::{Backend, Db, JobId, RepoId, Result, RunId, get, q};

/// `(version, statements)`, in order; the same placeholders as `schema::MIGRATIONS`.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[(
    300,
    &[
        "ALTER TABLE jobs ADD COLUMN cancel_requested BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN cancel_reason TEXT",
        "CREATE TABLE job_concurrency (
            job_id BIGINT PRIMARY KEY REFERENCES jobs(id),
            spec TEXT NOT NULL
        )",
        "CREATE TABLE job_concurrency_groups (
            job_id BIGINT NOT NULL REFERENCES jobs(id),
            repository_id BIGINT NOT NULL REFERENCES repositories(id),
            grp TEXT NOT NULL,
            admitted BIGINT NOT NULL,
            entered_at BIGINT NOT NULL,
            PRIMARY KEY (job_id, grp)
        )",
        "CREATE INDEX job_concurrency_groups_group ON job_concurrency_groups (repository_id, grp)",
        "CREATE TABLE named_locks (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at BIGINT NOT NULL
        )",
    ],
)];

/// The key of the PostgreSQL advisory lock that serializes group decisions.
const GROUPS_LOCK: i64 = 7_470_300;

/// What [`Db::enter_groups`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entered {
    /// The job holds its groups now: it may run.
    pub admitted: bool,
    /// Jobs that were waiting in one of the groups and were cancelled (settled) to make room,
    /// with their runs.
    pub replaced: Vec<(JobId, RunId)>,
    /// Running (or admitted) jobs of the groups asked to stop (`cancel-in-progress`), with
    /// their runs. Jobs admitted but not started yet are settled as cancelled at once.
    pub cancelled: Vec<(JobId, RunId)>,
    /// Runs whose workflow-level group is one of the job's (one namespace, as on GitHub) that
    /// the caller must cancel: the runs waiting in the group, and with `cancel-in-progress`
    /// the one holding it.
    pub runs: Vec<RunId>,
}

/// How a job enters its concurrency groups.
#[derive(Debug, Clone, Copy)]
pub struct EnterOptions<'a> {
    pub repository: RepoId,
    /// The job's run (its own workflow-level group does not count).
    pub run: RunId,
    /// The evaluated groups (distinct, non-empty).
    pub groups: &'a [String],
    /// `cancel-in-progress`: stop the jobs holding the groups.
    pub cancel_in_progress: bool,
    /// The reason stored on the jobs this one replaces or cancels.
    pub reason: &'a str,
    /// The job's own reason while it waits (cleared when it is admitted), for the API and UI.
    pub waiting: &'a str,
    pub now: i64,
}

impl Db {
    /// Stores a job's `concurrency:` (opaque text, the server's) at run creation.
    pub async fn put_job_concurrency(&self, job: JobId, spec: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO job_concurrency (job_id, spec) VALUES ($1, $2)
             ON CONFLICT (job_id) DO UPDATE SET spec = excluded.spec",
        )
        .bind(job.0)
        .bind(spec)
        .execute(&self.pool)
        .await
        .map_err(q("storing a job's concurrency"))?;
        Ok(())
    }

    /// The `concurrency:` of the jobs of `run` that have one.
    pub async fn job_concurrency(&self, run: RunId) -> Result<Vec<(JobId, String)>> {
        let rows = sqlx::query(
            "SELECT c.job_id, c.spec FROM job_concurrency c JOIN jobs j ON j.id = c.job_id WHERE j.run_id = $1",
        )
        .bind(run.0)
        .fetch_all(&self.pool)
        .await
        .map_err(q("reading the concurrency of a run's jobs"))?;
        rows.iter()
            .map(|r| Ok((JobId(get(r, "job_id")?), get(r, "spec")?)))
            .collect()
    }

    /// Enters `job` (runnable, not started) into its groups, or re-checks it when it already
    /// waits there. On first entry, the job waiting in each group is replaced (settled as
    /// cancelled with `reason`), and with `cancel_in_progress` the jobs holding the groups
    /// are cancelled. The job is admitted when no other job that is not done holds any of its
    /// groups. One transaction (serialized across replicas).
    pub async fn enter_groups(&self, job: JobId, o: &EnterOptions<'_>) -> Result<Entered> {
        let mut tx = self
            .begin_write()
            .await
            .map_err(q("starting a transaction to enter concurrency groups"))?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(GROUPS_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(q("locking the concurrency groups"))?;
        }
        let mine =
            sqlx::query("SELECT grp, admitted FROM job_concurrency_groups WHERE job_id = $1")
                .bind(job.0)
                .fetch_all(&mut *tx)
                .await
                .map_err(q("reading a job's concurrency groups"))?;
        if mine
            .iter()
            .any(|r| get::<i64>(r, "admitted").is_ok_and(|a| a != 0))
        {
            tx.rollback()
                .await
                .map_err(q("ending a concurrency transaction"))?;
            return Ok(Entered {
                admitted: true,
                ..Entered::default()
            });
        }
        let first = mine.is_empty();
        let mut out = Entered::default();
        for group in o.groups {
            if first {
                sqlx::query(
                    "INSERT INTO job_concurrency_groups (job_id, repository_id, grp, admitted, entered_at)
                     VALUES ($1, $2, $3, 0, $4)",
                )
                .bind(job.0)
                .bind(o.repository.0)
                .bind(group)
                .bind(o.now)
                .execute(&mut *tx)
                .await
                .map_err(q("entering a concurrency group"))?;
            }
            if !first {
                continue;
            }
            // The other members of the group that are not done.
            let others = sqlx::query(
                "SELECT g.job_id, g.admitted, j.status, j.run_id FROM job_concurrency_groups g
                 JOIN jobs j ON j.id = g.job_id
                 WHERE g.repository_id = $1 AND g.grp = $2 AND g.job_id <> $3 AND j.status <> 'done'
                 ORDER BY g.entered_at, g.job_id",
            )
            .bind(o.repository.0)
            .bind(group)
            .bind(job.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(q("reading a concurrency group"))?;
            for other in &others {
                let id = JobId(get(other, "job_id")?);
                let run = RunId(get(other, "run_id")?);
                let admitted = get::<i64>(other, "admitted")? != 0;
                let status: String = get(other, "status")?;
                if !admitted || (o.cancel_in_progress && status != "running") {
                    // Waiting (or admitted but not started, with cancel-in-progress): it ends now.
                    let done = sqlx::query(
                        "UPDATE jobs SET status = 'done', result = 'cancelled', reason = $2, finished_at = $3
                         WHERE id = $1 AND status IN ('pending', 'queued')",
                    )
                    .bind(id.0)
                    .bind(o.reason)
                    .bind(o.now)
                    .execute(&mut *tx)
                    .await
                    .map_err(q("replacing a job waiting in a concurrency group"))?;
                    if done.rows_affected() == 1 {
                        if admitted {
                            &mut out.cancelled
                        } else {
                            &mut out.replaced
                        }
                        .push((id, run));
                        continue;
                    }
                }
                if o.cancel_in_progress && admitted {
                    sqlx::query(
                        "UPDATE jobs SET cancel_requested = 1, cancel_reason = $2
                         WHERE id = $1 AND status = 'running' AND cancel_requested = 0",
                    )
                    .bind(id.0)
                    .bind(o.reason)
                    .execute(&mut *tx)
                    .await
                    .map_err(q("cancelling a job in progress in a concurrency group"))?;
                    out.cancelled.push((id, run));
                }
            }
            // Runs with this workflow-level group: the oldest holds it, the others wait.
            let runs = sqlx::query(
                "SELECT id FROM runs WHERE repository_id = $1 AND concurrency_group = $2
                   AND status <> 'done' AND id <> $3 ORDER BY id",
            )
            .bind(o.repository.0)
            .bind(group)
            .bind(o.run.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(q("reading the runs of a concurrency group"))?;
            for (n, row) in runs.iter().enumerate() {
                let id = RunId(get(row, "id")?);
                if (n > 0 || o.cancel_in_progress) && !out.runs.contains(&id) {
                    out.runs.push(id);
                }
            }
        }
        // Held: by another job admitted and not done, or by another run's workflow-level group.
        let held = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM job_concurrency_groups g JOIN jobs j ON j.id = g.job_id
                     WHERE g.admitted <> 0 AND j.status <> 'done' AND g.job_id <> $1 AND g.repository_id = $2
                       AND g.grp IN (SELECT grp FROM job_concurrency_groups WHERE job_id = $1))
                  + (SELECT COUNT(*) FROM runs r
                     WHERE r.repository_id = $2 AND r.status <> 'done' AND r.id <> $3
                       AND r.concurrency_group IN (SELECT grp FROM job_concurrency_groups WHERE job_id = $1))
                 AS n",
        )
        .bind(job.0)
        .bind(o.repository.0)
        .bind(o.run.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(q("checking whether a concurrency group is free"))?;
        out.admitted = get::<i64>(&held, "n")? == 0;
        if out.admitted {
            sqlx::query("UPDATE job_concurrency_groups SET admitted = 1 WHERE job_id = $1")
                .bind(job.0)
                .execute(&mut *tx)
                .await
                .map_err(q("admitting a job into its concurrency groups"))?;
        }
        let reason = (!out.admitted).then_some(o.waiting);
        sqlx::query("UPDATE jobs SET reason = $2 WHERE id = $1 AND status = 'pending'")
            .bind(job.0)
            .bind(reason)
            .execute(&mut *tx)
            .await
            .map_err(q("recording why a job waits"))?;
        tx.commit()
            .await
            .map_err(q("committing a concurrency decision"))?;
        Ok(out)
    }

    /// The runs with a job waiting (not admitted, not done) in a group that one of `run`'s
    /// done jobs held: they may go on now.
    pub async fn runs_waiting_on(&self, run: RunId) -> Result<Vec<RunId>> {
        // Most runs have no group: one cheap read, no lock.
        let any = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM job_concurrency_groups g JOIN jobs d ON d.id = g.job_id WHERE d.run_id = $1)
                  + (SELECT COUNT(*) FROM runs WHERE id = $1 AND concurrency_group IS NOT NULL) AS n",
        )
        .bind(run.0)
        .fetch_one(&self.pool)
        .await
        .map_err(q("reading whether a run's jobs are in concurrency groups"))?;
        if get::<i64>(&any, "n")? == 0 {
            return Ok(Vec::new());
        }
        // Under the groups' lock: a job entering a group concurrently has either seen this
        // run's jobs done, or committed its row before this reads (no lost wake-up).
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(q("starting a transaction to find waiting jobs"))?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(GROUPS_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(q("locking the concurrency groups"))?;
        }
        let rows = sqlx::query(
            "SELECT DISTINCT wj.run_id FROM jobs d
             JOIN job_concurrency_groups dg ON dg.job_id = d.id
             JOIN job_concurrency_groups wg ON wg.repository_id = dg.repository_id AND wg.grp = dg.grp
             JOIN jobs wj ON wj.id = wg.job_id
             WHERE d.run_id = $1 AND d.status = 'done' AND wg.admitted = 0 AND wj.status <> 'done'
             UNION
             SELECT w.id AS run_id FROM jobs d
             JOIN job_concurrency_groups dg ON dg.job_id = d.id
             JOIN runs w ON w.repository_id = dg.repository_id AND w.concurrency_group = dg.grp
             WHERE d.run_id = $1 AND d.status = 'done' AND w.status <> 'done' AND w.id <> $1
             UNION
             SELECT wj.run_id FROM runs r
             JOIN job_concurrency_groups wg ON wg.repository_id = r.repository_id AND wg.grp = r.concurrency_group
             JOIN jobs wj ON wj.id = wg.job_id
             WHERE r.id = $1 AND r.status = 'done' AND wg.admitted = 0 AND wj.status <> 'done'",
        )
        .bind(run.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(q("finding the jobs waiting in a run's concurrency groups"))?;
        tx.commit()
            .await
            .map_err(q("ending a transaction to find waiting jobs"))?;
        rows.iter().map(|r| Ok(RunId(get(r, "run_id")?))).collect()
    }

    /// The runs that may be waiting in a concurrency group (a job waiting in a group, or a
    /// run with a workflow-level group that is not done), oldest first: a server starting
    /// re-checks them, in case it stopped between a group being freed and waking its waiter.
    pub async fn runs_in_groups(&self) -> Result<Vec<RunId>> {
        let rows = sqlx::query(
            "SELECT j.run_id FROM job_concurrency_groups g JOIN jobs j ON j.id = g.job_id
             WHERE g.admitted = 0 AND j.status <> 'done'
             UNION
             SELECT id AS run_id FROM runs WHERE concurrency_group IS NOT NULL AND status <> 'done'
             ORDER BY run_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing the runs in concurrency groups"))?;
        rows.iter().map(|r| Ok(RunId(get(r, "run_id")?))).collect()
    }

    /// Whether a job of another run than `run` holds `group` (admitted, not done): then a run
    /// with that workflow-level group waits (one namespace for both levels, as on GitHub).
    pub async fn group_held_by_a_job(
        &self,
        repository: RepoId,
        group: &str,
        run: RunId,
    ) -> Result<bool> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM job_concurrency_groups g JOIN jobs j ON j.id = g.job_id
             WHERE g.repository_id = $1 AND g.grp = $2 AND g.admitted <> 0 AND j.status <> 'done' AND j.run_id <> $3",
        )
        .bind(repository.0)
        .bind(group)
        .bind(run.0)
        .fetch_one(&self.pool)
        .await
        .map_err(q("checking whether a job holds a concurrency group"))?;
        Ok(get::<i64>(&row, "n")? > 0)
    }

    /// The jobs in `group` that are not done, with their runs and whether each holds it
    /// (admitted) or waits.
    pub async fn jobs_in_group(
        &self,
        repository: RepoId,
        group: &str,
    ) -> Result<Vec<(JobId, RunId, bool)>> {
        let rows = sqlx::query(
            "SELECT g.job_id, j.run_id, g.admitted FROM job_concurrency_groups g JOIN jobs j ON j.id = g.job_id
             WHERE g.repository_id = $1 AND g.grp = $2 AND j.status <> 'done' ORDER BY g.entered_at, g.job_id",
        )
        .bind(repository.0)
        .bind(group)
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing the jobs of a concurrency group"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    JobId(get(r, "job_id")?),
                    RunId(get(r, "run_id")?),
                    get::<i64>(r, "admitted")? != 0,
                ))
            })
            .collect()
    }

    /// Forgets the groups and the cancellation request of jobs that are about to run again.
    pub async fn reset_job_concurrency(&self, jobs: &[JobId]) -> Result<()> {
        for job in jobs {
            sqlx::query("DELETE FROM job_concurrency_groups WHERE job_id = $1")
                .bind(job.0)
                .execute(&self.pool)
                .await
                .map_err(q("leaving concurrency groups"))?;
            sqlx::query("UPDATE jobs SET cancel_requested = 0, cancel_reason = NULL WHERE id = $1")
                .bind(job.0)
                .execute(&self.pool)
                .await
                .map_err(q("clearing a job's cancellation"))?;
        }
        Ok(())
    }

    /// Cancels one job: pending or queued, it is finished as cancelled with `reason` at once
    /// (`Some(true)`); running, its agent is asked to stop (`Some(false)`). `None`: it is
    /// unknown or already done.
    pub async fn cancel_job(&self, job: JobId, reason: &str, now: i64) -> Result<Option<bool>> {
        let settled = sqlx::query(
            "UPDATE jobs SET status = 'done', result = 'cancelled', reason = $2, finished_at = $3
             WHERE id = $1 AND status IN ('pending', 'queued')",
        )
        .bind(job.0)
        .bind(reason)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("cancelling a job"))?;
        if settled.rows_affected() == 1 {
            return Ok(Some(true));
        }
        let asked = sqlx::query(
            "UPDATE jobs SET cancel_requested = 1, cancel_reason = $2 WHERE id = $1 AND status = 'running'",
        )
        .bind(job.0)
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(q("asking a running job to stop"))?;
        Ok((asked.rows_affected() == 1).then_some(false))
    }

    /// Gives the jobs of `run` that ended cancelled after a cancellation request the reason
    /// of that request (the agent reports only "cancelled").
    pub async fn apply_cancel_reasons(&self, run: RunId) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET reason = cancel_reason
             WHERE run_id = $1 AND status = 'done' AND result = 'cancelled' AND reason IS NULL
               AND cancel_reason IS NOT NULL",
        )
        .bind(run.0)
        .execute(&self.pool)
        .await
        .map_err(q("recording why jobs were cancelled"))?;
        Ok(())
    }

    /// Takes the lock `name` for `holder` until `now + ttl_ms`: `true` when it was free,
    /// expired, or already `holder`'s (then extended). One atomic upsert, so that replicas
    /// sharing the database never both hold it.
    pub async fn try_lock(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO named_locks (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE named_locks.expires_at <= $4 OR named_locks.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("taking a lock"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases the lock `name` if `holder` holds it. `false`: it did not (expired and taken).
    pub async fn unlock(&self, name: &str, holder: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM named_locks WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(q("releasing a lock"))?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{backends, fresh_postgres};
    use super::super::{JobStatus, NewJob, NewRun};
    use super::*;

    /// A push run of `deploy.yml` in `repo`, in no group.
    fn new_run(repo: RepoId) -> NewRun {
        NewRun {
            repository: repo,
            workflow_file: ".gitea/workflows/deploy.yml".into(),
            workflow_name: "deploy".into(),
            event: "push".into(),
            git_ref: "refs/heads/main".into(),
            sha: "abc".into(),
            actor: "alice".into(),
            spec: "{}".into(),
            concurrency_group: None,
        }
    }

    /// A pending `deploy` job.
    fn new_job() -> NewJob {
        NewJob {
            key: "deploy".into(),
            name: "deploy".into(),
            needs: "[]".into(),
            labels: "[]".into(),
            condition: None,
            status: JobStatus::Pending,
            result: None,
            log: None,
        }
    }

    async fn run_with_job(db: &Db, repo: RepoId) -> (RunId, JobId) {
        let (run, jobs) = db
            .create_run(&new_run(repo), &[new_job()], 1)
            .await
            .expect("run");
        (run, jobs[0])
    }

    /// The repository `team/app`.
    async fn app_repo(db: &Db) -> RepoId {
        db.upsert_repository("team/app", "git://x/app.git", "gitea", 1)
            .await
            .expect("repo")
    }

    fn enter<'a>(repo: RepoId, groups: &'a [String], cancel_in_progress: bool) -> EnterOptions<'a> {
        EnterOptions {
            repository: repo,
            run: RunId(0),
            waiting: "waiting for production",
            groups,
            cancel_in_progress,
            reason: "replaced",
            now: 2,
        }
    }

    #[tokio::test]
    async fn one_holder_and_one_waiter_per_group() {
        for (db, _guard) in backends().await {
            eprintln!("backend: {:?}", db.backend());
            let repo = app_repo(&db).await;
            let g = vec!["production".to_owned()];
            let (_, a) = run_with_job(&db, repo).await;
            let (_, b) = run_with_job(&db, repo).await;
            let (_, c) = run_with_job(&db, repo).await;
            let first = db
                .enter_groups(a, &enter(repo, &g, false))
                .await
                .expect("enter a");
            assert!(first.admitted);
            assert!(db.queue_job(a).await.expect("queue a"));
            let second = db
                .enter_groups(b, &enter(repo, &g, false))
                .await
                .expect("enter b");
            assert_eq!(second, Entered::default(), "b waits for a");
            let again = db
                .enter_groups(b, &enter(repo, &g, false))
                .await
                .expect("re-check b");
            assert!(!again.admitted && again.replaced.is_empty());
            assert_eq!(
                db.job(b).await.expect("b").expect("b").reason.as_deref(),
                Some("waiting for production")
            );
            let third = db
                .enter_groups(c, &enter(repo, &g, false))
                .await
                .expect("enter c");
            assert!(!third.admitted);
            assert_eq!(
                third.replaced.iter().map(|(j, _)| *j).collect::<Vec<_>>(),
                vec![b]
            );
            let b_now = db.job(b).await.expect("b").expect("b exists");
            assert_eq!(
                (b_now.status, b_now.reason.as_deref()),
                (JobStatus::Done, Some("replaced"))
            );
            // a ends: c is admitted on its next check.
            assert!(
                db.settle_job(a, super::super::Conclusion::Success, None, 3)
                    .await
                    .expect("end a")
            );
            let run_a = db.job(a).await.expect("a").expect("a").run;
            let waiting = db.runs_waiting_on(run_a).await.expect("waiting");
            assert_eq!(waiting, vec![db.job(c).await.expect("c").expect("c").run]);
            assert!(
                db.enter_groups(c, &enter(repo, &g, false))
                    .await
                    .expect("re-check c")
                    .admitted
            );
        }
    }

    #[tokio::test]
    async fn cancel_in_progress_asks_the_running_job_to_stop() {
        for (db, _guard) in backends().await {
            eprintln!("backend: {:?}", db.backend());
            let repo = app_repo(&db).await;
            let agent = db.create_agent("a1", "[]", "hash", 1).await.expect("agent");
            let g = vec!["deploy-main".to_owned()];
            let (run_a, a) = run_with_job(&db, repo).await;
            let (_, b) = run_with_job(&db, repo).await;
            assert!(
                db.enter_groups(a, &enter(repo, &g, true))
                    .await
                    .expect("enter a")
                    .admitted
            );
            assert!(db.queue_job(a).await.expect("queue a"));
            let leased = db
                .lease_any(agent, 2, 10_000)
                .await
                .expect("lease")
                .expect("a leased");
            assert_eq!(leased.id, a);
            let entered = db
                .enter_groups(b, &enter(repo, &g, true))
                .await
                .expect("enter b");
            assert_eq!(
                entered,
                Entered {
                    admitted: false,
                    replaced: vec![],
                    cancelled: vec![(a, run_a)],
                    runs: vec![],
                }
            );
            assert_eq!(
                db.heartbeat(a, 1, agent, 3, 10_000)
                    .await
                    .expect("heartbeat"),
                Some(true)
            );
            assert!(
                db.finish_job(a, 1, agent, super::super::Conclusion::Cancelled, "{}", 4)
                    .await
                    .expect("finish")
            );
            db.apply_cancel_reasons(run_a).await.expect("reasons");
            assert_eq!(
                db.job(a).await.expect("a").expect("a").reason.as_deref(),
                Some("replaced")
            );
            assert!(
                db.enter_groups(b, &enter(repo, &g, true))
                    .await
                    .expect("re-check b")
                    .admitted
            );
            // Re-running a job forgets its groups and its cancellation.
            db.reset_job_concurrency(&[a]).await.expect("reset");
            assert!(
                !db.enter_groups(a, &enter(repo, &g, false))
                    .await
                    .expect("a again")
                    .admitted
            );
        }
    }

    #[tokio::test]
    async fn cancel_job_settles_or_asks() {
        for (db, _guard) in backends().await {
            eprintln!("backend: {:?}", db.backend());
            let repo = app_repo(&db).await;
            let agent = db.create_agent("a1", "[]", "hash", 1).await.expect("agent");
            let (_, a) = run_with_job(&db, repo).await;
            let (_, b) = run_with_job(&db, repo).await;
            assert!(db.queue_job(a).await.expect("queue a"));
            assert_eq!(
                db.lease_any(agent, 2, 10_000)
                    .await
                    .expect("lease")
                    .map(|j| j.id),
                Some(a)
            );
            assert_eq!(
                db.heartbeat(a, 1, agent, 3, 10_000)
                    .await
                    .expect("heartbeat"),
                Some(false)
            );
            assert_eq!(
                db.cancel_job(a, "cancelled by alice", 3)
                    .await
                    .expect("cancel a"),
                Some(false)
            );
            assert_eq!(
                db.heartbeat(a, 1, agent, 4, 10_000)
                    .await
                    .expect("heartbeat"),
                Some(true)
            );
            assert_eq!(
                db.cancel_job(b, "cancelled by alice", 3)
                    .await
                    .expect("cancel b"),
                Some(true)
            );
            assert_eq!(
                db.cancel_job(b, "again", 4).await.expect("cancel b again"),
                None
            );
        }
    }

    /// Workflow-level and job-level groups are one namespace.
    #[tokio::test]
    async fn a_run_level_group_and_a_job_level_group_exclude_each_other() {
        for (db, _guard) in backends().await {
            eprintln!("backend: {:?}", db.backend());
            let repo = app_repo(&db).await;
            let g = vec!["production".to_owned()];
            let grouped = |n: i64| NewRun {
                workflow_file: format!(".gitea/workflows/w{n}.yml"),
                workflow_name: "w".into(),
                concurrency_group: Some("production".into()),
                ..new_run(repo)
            };
            let job = new_job();
            let (holder, _) = db
                .create_run(&grouped(1), std::slice::from_ref(&job), 1)
                .await
                .expect("run");
            let (waiting, _) = db.create_run(&grouped(2), &[job], 1).await.expect("run");
            let (run_c, c) = run_with_job(&db, repo).await;
            let mut o = enter(repo, &g, false);
            o.run = run_c;
            let entered = db.enter_groups(c, &o).await.expect("enter c");
            assert!(!entered.admitted, "the runs hold the group");
            assert_eq!(entered.runs, vec![waiting], "the waiting run is replaced");
            assert_eq!(
                db.runs_in_groups().await.expect("runs in groups"),
                vec![holder, waiting, run_c]
            );
            assert_eq!(
                db.jobs_in_group(repo, "production").await.expect("jobs"),
                vec![(c, run_c, false)]
            );
            assert!(
                !db.group_held_by_a_job(repo, "production", holder)
                    .await
                    .expect("held")
            );
            for r in [holder, waiting] {
                assert!(
                    db.finish_run(r, super::super::Conclusion::Cancelled, None, 3)
                        .await
                        .expect("finish")
                );
            }
            assert_eq!(
                db.runs_waiting_on(holder).await.expect("waiting"),
                vec![run_c]
            );
            assert!(db.enter_groups(c, &o).await.expect("re-check c").admitted);
            assert!(
                db.group_held_by_a_job(repo, "production", holder)
                    .await
                    .expect("held")
            );
            assert!(
                !db.group_held_by_a_job(repo, "production", run_c)
                    .await
                    .expect("not by itself")
            );
        }
    }

    /// Two connections to one database (as two server replicas have), eight tasks each:
    /// never two holders at once.
    #[tokio::test]
    async fn replicas_sharing_a_database_never_hold_a_lock_together() {
        let dir = test_support::tempdir();
        let sqlite = format!("sqlite://{}/state.db", dir.path().display());
        for url in [sqlite, fresh_postgres().await] {
            let replicas = [
                Db::connect(&url).await.expect("one"),
                Db::connect(&url).await.expect("two"),
            ];
            eprintln!("backend: {:?}", replicas[0].backend());
            let inside = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = tokio::task::JoinSet::new();
            for n in 0..16 {
                let db = replicas[n % 2].clone();
                let (inside, most) = (inside.clone(), most.clone());
                tasks.spawn(async move {
                    let holder = format!("holder-{n}");
                    for _ in 0..5 {
                        while !db
                            .try_lock("environment:1:production", &holder, 0, i64::MAX / 2)
                            .await
                            .expect("lock")
                        {
                            tokio::task::yield_now().await;
                        }
                        let now = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        assert!(
                            db.unlock("environment:1:production", &holder)
                                .await
                                .expect("unlock")
                        );
                    }
                });
            }
            while let Some(t) = tasks.join_next().await {
                t.expect("task");
            }
            assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
        }
    }

    #[tokio::test]
    async fn a_lock_has_one_holder_until_released_or_expired() {
        for (db, _guard) in backends().await {
            eprintln!("backend: {:?}", db.backend());
            assert!(
                db.try_lock("env:1:production", "one", 100, 1000)
                    .await
                    .expect("lock")
            );
            assert!(
                !db.try_lock("env:1:production", "two", 200, 1000)
                    .await
                    .expect("lock")
            );
            assert!(
                db.try_lock("env:1:staging", "two", 200, 1000)
                    .await
                    .expect("other name")
            );
            assert!(
                db.try_lock("env:1:production", "one", 300, 1000)
                    .await
                    .expect("extend")
            );
            assert!(
                !db.unlock("env:1:production", "two")
                    .await
                    .expect("not two's")
            );
            assert!(db.unlock("env:1:production", "one").await.expect("unlock"));
            assert!(
                db.try_lock("env:1:production", "two", 400, 1000)
                    .await
                    .expect("free now")
            );
            // Expired: another holder takes it.
            assert!(
                db.try_lock("env:1:production", "three", 1400, 1000)
                    .await
                    .expect("expired")
            );
            assert!(
                !db.unlock("env:1:production", "two")
                    .await
                    .expect("two lost it")
            );
        }
    }
}
