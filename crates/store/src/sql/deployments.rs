//! Environments' gates, approvals and deployment records (the delivery audit trail).
//!
//! Its migrations are numbered from 100 so that they never collide with the CI schema's in
//! `schema.rs`; they are applied after those.
//!
//! - `deployments`: one row per time a job with `environment:` is reached — environment,
//!   repository, commit, ref, run and job, the pusher, the status and its reason, the image
//!   digests the job deployed (opaque JSON text), and whether it rolls back to an earlier one.
//! - `deployment_approvals`: who approved or rejected a deployment, when and why.
//! - `audit_events`: every step of every deployment (reached, waiting, approved, refused,
//!   started, finished...), append-only.
//! - `rollback_requests`: the runs `slipway rollback` created, and what they roll back to.
//! - `forge_deployment_events`: an outbox of deployment states to report to the forge,
//!   delivered in order (kept across restarts).

use super::{Db, JobId, RepoId, Result, RunId, SqlError, get, q};

/// `(version, statements)`, in order; the same placeholders as `schema::MIGRATIONS`.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[(
    100,
    &[
        "CREATE TABLE deployments (
            id {id},
            repository_id BIGINT NOT NULL REFERENCES repositories(id),
            environment TEXT NOT NULL,
            run_id BIGINT NOT NULL REFERENCES runs(id),
            job_id BIGINT NOT NULL REFERENCES jobs(id),
            job_key TEXT NOT NULL,
            sha TEXT NOT NULL,
            git_ref TEXT NOT NULL,
            pusher TEXT NOT NULL,
            status TEXT NOT NULL,
            reason TEXT,
            url TEXT,
            digests TEXT NOT NULL,
            rollback_of BIGINT,
            forge_id TEXT,
            created_at BIGINT NOT NULL,
            started_at BIGINT,
            finished_at BIGINT
        )",
        "CREATE INDEX deployments_environment ON deployments (repository_id, environment, id)",
        "CREATE INDEX deployments_job ON deployments (job_id, id)",
        "CREATE INDEX deployments_status ON deployments (status)",
        "CREATE TABLE deployment_approvals (
            id {id},
            deployment_id BIGINT NOT NULL REFERENCES deployments(id),
            user_name TEXT NOT NULL,
            decision TEXT NOT NULL,
            comment TEXT,
            created_at BIGINT NOT NULL
        )",
        "CREATE INDEX deployment_approvals_deployment ON deployment_approvals (deployment_id, id)",
        "CREATE TABLE audit_events (
            id {id},
            repository_id BIGINT,
            environment TEXT,
            deployment_id BIGINT,
            run_id BIGINT,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT,
            created_at BIGINT NOT NULL
        )",
        "CREATE INDEX audit_events_deployment ON audit_events (deployment_id, id)",
        "CREATE TABLE rollback_requests (
            run_id BIGINT PRIMARY KEY REFERENCES runs(id),
            target_deployment_id BIGINT NOT NULL REFERENCES deployments(id),
            requested_by TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
        "CREATE TABLE forge_deployment_events (
            id {id},
            deployment_id BIGINT NOT NULL REFERENCES deployments(id),
            state TEXT NOT NULL,
            description TEXT NOT NULL,
            attempts BIGINT NOT NULL DEFAULT 0,
            delivered_at BIGINT,
            error TEXT,
            created_at BIGINT NOT NULL
        )",
        "CREATE INDEX forge_deployment_events_pending ON forge_deployment_events (delivered_at, id)",
    ],
)];

/// A deployment's row id (shown to users as the deployment number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeploymentId(pub i64);

impl std::fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a deployment is. `Queued` → `Waiting` (reviewers, wait timer, or another
/// deployment to the environment) → `InProgress` (handed to an agent) → one of the final
/// states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentStatus {
    Queued,
    Waiting,
    InProgress,
    Success,
    Failure,
    /// The deploy failed and the target went back to the release that served before.
    RolledBack,
    /// A reviewer rejected it, or it waited longer than the environment's timeout.
    Rejected,
    /// Its run was cancelled, or its job skipped, before it deployed.
    Cancelled,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Waiting => "waiting",
            Self::InProgress => "in_progress",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::RolledBack => "rolled_back",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether nothing changes any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Waiting | Self::InProgress)
    }
}

impl std::str::FromStr for DeploymentStatus {
    type Err = SqlError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "queued" => Self::Queued,
            "waiting" => Self::Waiting,
            "in_progress" => Self::InProgress,
            "success" => Self::Success,
            "failure" => Self::Failure,
            "rolled_back" => Self::RolledBack,
            "rejected" => Self::Rejected,
            "cancelled" => Self::Cancelled,
            other => return Err(SqlError::Corrupt(format!("`{other}` is not a deployment status"))),
        })
    }
}

impl std::fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Db::create_deployment`] needs.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub repository: RepoId,
    pub environment: String,
    pub run: RunId,
    pub job: JobId,
    pub job_key: String,
    pub sha: String,
    pub git_ref: String,
    pub pusher: String,
    pub status: DeploymentStatus,
    pub reason: Option<String>,
    pub url: Option<String>,
    /// The deployment this one rolls back to.
    pub rollback_of: Option<DeploymentId>,
}

/// A deployment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: DeploymentId,
    pub repository: RepoId,
    pub repository_name: String,
    pub environment: String,
    pub run: RunId,
    pub job: JobId,
    pub job_key: String,
    pub sha: String,
    pub git_ref: String,
    pub pusher: String,
    pub status: DeploymentStatus,
    pub reason: Option<String>,
    pub url: Option<String>,
    /// Opaque (the server stores a JSON array of what each deploy step reported).
    pub digests: String,
    pub rollback_of: Option<DeploymentId>,
    /// The forge's id for this deployment, once it was created there.
    pub forge_id: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// One reviewer's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub deployment: DeploymentId,
    pub user: String,
    /// `approved` or `rejected`.
    pub decision: String,
    pub comment: Option<String>,
    pub created_at: i64,
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditEvent {
    pub id: i64,
    pub repository: Option<RepoId>,
    pub environment: Option<String>,
    pub deployment: Option<DeploymentId>,
    pub run: Option<RunId>,
    /// Who did it (a user name, or `slipway` for the server itself).
    pub actor: String,
    /// What happened (`deployment.waiting`, `approval.refused`, ...).
    pub action: String,
    pub detail: Option<String>,
    pub created_at: i64,
}

/// Which audit events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    pub deployment: Option<DeploymentId>,
    pub run: Option<RunId>,
    pub environment: Option<&'a str>,
    pub limit: i64,
}

/// A deployment state waiting to be reported to the forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeEvent {
    pub id: i64,
    pub deployment: DeploymentId,
    pub state: String,
    pub description: String,
    pub attempts: i64,
}

const DEPLOYMENT_COLUMNS: &str = "d.id, d.repository_id, p.name AS repository_name, d.environment, d.run_id, d.job_id, \
    d.job_key, d.sha, d.git_ref, d.pusher, d.status, d.reason, d.url, d.digests, d.rollback_of, d.forge_id, \
    d.created_at, d.started_at, d.finished_at";

fn deployment_from_row(row: &sqlx::any::AnyRow) -> Result<Deployment> {
    Ok(Deployment {
        id: DeploymentId(get(row, "id")?),
        repository: RepoId(get(row, "repository_id")?),
        repository_name: get(row, "repository_name")?,
        environment: get(row, "environment")?,
        run: RunId(get(row, "run_id")?),
        job: JobId(get(row, "job_id")?),
        job_key: get(row, "job_key")?,
        sha: get(row, "sha")?,
        git_ref: get(row, "git_ref")?,
        pusher: get(row, "pusher")?,
        status: get::<String>(row, "status")?.parse()?,
        reason: get(row, "reason")?,
        url: get(row, "url")?,
        digests: get(row, "digests")?,
        rollback_of: get::<Option<i64>>(row, "rollback_of")?.map(DeploymentId),
        forge_id: get(row, "forge_id")?,
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
    })
}

impl Db {
    // --- deployments ------------------------------------------------------------------------

    pub async fn create_deployment(&self, d: &NewDeployment, now: i64) -> Result<DeploymentId> {
        let row = sqlx::query(
            "INSERT INTO deployments (repository_id, environment, run_id, job_id, job_key, sha, git_ref, pusher,
                status, reason, url, digests, rollback_of, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '[]', $12, $13) RETURNING id",
        )
        .bind(d.repository.0)
        .bind(&d.environment)
        .bind(d.run.0)
        .bind(d.job.0)
        .bind(&d.job_key)
        .bind(&d.sha)
        .bind(&d.git_ref)
        .bind(&d.pusher)
        .bind(d.status.as_str())
        .bind(d.reason.as_deref())
        .bind(d.url.as_deref())
        .bind(d.rollback_of.map(|r| r.0))
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(q("creating a deployment"))?;
        Ok(DeploymentId(get(&row, "id")?))
    }

    pub async fn deployment(&self, id: DeploymentId) -> Result<Option<Deployment>> {
        let sql = format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN repositories p ON p.id = d.repository_id WHERE d.id = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("reading a deployment"))?;
        row.as_ref().map(deployment_from_row).transpose()
    }

    /// The newest deployment of a job (a re-run job gets a new one).
    pub async fn latest_deployment_of_job(&self, job: JobId) -> Result<Option<Deployment>> {
        let sql = format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN repositories p ON p.id = d.repository_id
             WHERE d.job_id = $1 ORDER BY d.id DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(job.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("reading the deployment of a job"))?;
        row.as_ref().map(deployment_from_row).transpose()
    }

    /// Deployments, newest first: of one repository and/or environment, of one run, and/or
    /// only in the given statuses.
    pub async fn deployments(
        &self,
        repository: Option<&str>,
        environment: Option<&str>,
        run: Option<RunId>,
        statuses: &[DeploymentStatus],
        limit: i64,
    ) -> Result<Vec<Deployment>> {
        let statuses = statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN repositories p ON p.id = d.repository_id
             WHERE ($1 IS NULL OR p.name = $1) AND ($2 IS NULL OR d.environment = $2)
               AND ($3 IS NULL OR d.run_id = $3)
               AND ($4 = '' OR (',' || $4 || ',') LIKE ('%,' || d.status || ',%'))
             ORDER BY d.id DESC LIMIT $5"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(repository)
            .bind(environment)
            .bind(run.map(|r| r.0))
            .bind(statuses)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(q("listing deployments"))?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// Moves a deployment that is not final to `status` (with `reason`); `started_at` is set
    /// when it becomes in progress, `finished_at` when it becomes final. `false`: it was
    /// already final (nothing changed).
    pub async fn set_deployment_status(
        &self,
        id: DeploymentId,
        status: DeploymentStatus,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE deployments SET status = $2, reason = $3,
                started_at = CASE WHEN $2 = 'in_progress' AND started_at IS NULL THEN $4 ELSE started_at END,
                finished_at = CASE WHEN $5 = 1 THEN $4 ELSE finished_at END
             WHERE id = $1 AND status IN ('queued', 'waiting', 'in_progress')",
        )
        .bind(id.0)
        .bind(status.as_str())
        .bind(reason)
        .bind(now)
        .bind(i64::from(status.is_final()))
        .execute(&self.pool)
        .await
        .map_err(q("updating a deployment"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records what the deployment's steps deployed (opaque JSON text).
    pub async fn set_deployment_digests(&self, id: DeploymentId, digests: &str) -> Result<()> {
        sqlx::query("UPDATE deployments SET digests = $2 WHERE id = $1")
            .bind(id.0)
            .bind(digests)
            .execute(&self.pool)
            .await
            .map_err(q("recording deployed digests"))?;
        Ok(())
    }

    /// Records the environment URL (evaluated when the job ran).
    pub async fn set_deployment_url(&self, id: DeploymentId, url: &str) -> Result<()> {
        sqlx::query("UPDATE deployments SET url = $2 WHERE id = $1")
            .bind(id.0)
            .bind(url)
            .execute(&self.pool)
            .await
            .map_err(q("recording a deployment url"))?;
        Ok(())
    }

    pub async fn set_deployment_forge_id(&self, id: DeploymentId, forge_id: &str) -> Result<()> {
        sqlx::query("UPDATE deployments SET forge_id = $2 WHERE id = $1")
            .bind(id.0)
            .bind(forge_id)
            .execute(&self.pool)
            .await
            .map_err(q("recording a forge deployment id"))?;
        Ok(())
    }

    // --- approvals --------------------------------------------------------------------------

    /// Records a reviewer's decision (`approved` or `rejected`).
    pub async fn add_approval(
        &self,
        deployment: DeploymentId,
        user: &str,
        decision: &str,
        comment: Option<&str>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO deployment_approvals (deployment_id, user_name, decision, comment, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(deployment.0)
        .bind(user)
        .bind(decision)
        .bind(comment)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("recording an approval"))?;
        Ok(())
    }

    /// A deployment's decisions, oldest first.
    pub async fn approvals(&self, deployment: DeploymentId) -> Result<Vec<Approval>> {
        let rows = sqlx::query(
            "SELECT deployment_id, user_name, decision, comment, created_at FROM deployment_approvals
             WHERE deployment_id = $1 ORDER BY id",
        )
        .bind(deployment.0)
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing approvals"))?;
        rows.iter()
            .map(|row| {
                Ok(Approval {
                    deployment: DeploymentId(get(row, "deployment_id")?),
                    user: get(row, "user_name")?,
                    decision: get(row, "decision")?,
                    comment: get(row, "comment")?,
                    created_at: get(row, "created_at")?,
                })
            })
            .collect()
    }

    // --- audit trail ------------------------------------------------------------------------

    /// Appends an event to the audit trail (its `id` and `created_at` are assigned here and
    /// from `now`).
    pub async fn audit(&self, e: &AuditEvent, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (repository_id, environment, deployment_id, run_id, actor, action, detail, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(e.repository.map(|r| r.0))
        .bind(e.environment.as_deref())
        .bind(e.deployment.map(|d| d.0))
        .bind(e.run.map(|r| r.0))
        .bind(&e.actor)
        .bind(&e.action)
        .bind(e.detail.as_deref())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("writing the audit trail"))?;
        Ok(())
    }

    /// Audit events, oldest first (the last `limit` of them).
    pub async fn audit_events(&self, f: &AuditFilter<'_>) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, repository_id, environment, deployment_id, run_id, actor, action, detail, created_at
             FROM audit_events
             WHERE ($1 IS NULL OR deployment_id = $1) AND ($2 IS NULL OR run_id = $2) AND ($3 IS NULL OR environment = $3)
             ORDER BY id DESC LIMIT $4",
        )
        .bind(f.deployment.map(|d| d.0))
        .bind(f.run.map(|r| r.0))
        .bind(f.environment)
        .bind(if f.limit > 0 { f.limit } else { 1000 })
        .fetch_all(&self.pool)
        .await
        .map_err(q("reading the audit trail"))?;
        let mut out = rows
            .iter()
            .map(|row| {
                Ok(AuditEvent {
                    id: get(row, "id")?,
                    repository: get::<Option<i64>>(row, "repository_id")?.map(RepoId),
                    environment: get(row, "environment")?,
                    deployment: get::<Option<i64>>(row, "deployment_id")?.map(DeploymentId),
                    run: get::<Option<i64>>(row, "run_id")?.map(RunId),
                    actor: get(row, "actor")?,
                    action: get(row, "action")?,
                    detail: get(row, "detail")?,
                    created_at: get(row, "created_at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    // --- rollbacks ----------------------------------------------------------------------------

    pub async fn record_rollback_request(&self, run: RunId, target: DeploymentId, by: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO rollback_requests (run_id, target_deployment_id, requested_by, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(run.0)
        .bind(target.0)
        .bind(by)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("recording a rollback request"))?;
        Ok(())
    }

    /// The deployment a rollback run goes back to, and who asked (`None`: not a rollback).
    pub async fn rollback_request(&self, run: RunId) -> Result<Option<(DeploymentId, String)>> {
        let row = sqlx::query("SELECT target_deployment_id, requested_by FROM rollback_requests WHERE run_id = $1")
            .bind(run.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("reading a rollback request"))?;
        row.map(|row| Ok((DeploymentId(get(&row, "target_deployment_id")?), get(&row, "requested_by")?))).transpose()
    }

    /// Sets the outputs of a job (a rollback run's copies of the original run's results).
    pub async fn set_job_outputs(&self, job: JobId, outputs: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET outputs = $2 WHERE id = $1")
            .bind(job.0)
            .bind(outputs)
            .execute(&self.pool)
            .await
            .map_err(q("copying job outputs"))?;
        Ok(())
    }

    // --- forge outbox ---------------------------------------------------------------------------

    pub async fn queue_forge_event(&self, deployment: DeploymentId, state: &str, description: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO forge_deployment_events (deployment_id, state, description, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(deployment.0)
        .bind(state)
        .bind(description)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("queueing a forge deployment status"))?;
        Ok(())
    }

    /// Undelivered forge events, oldest first.
    pub async fn pending_forge_events(&self, limit: i64) -> Result<Vec<ForgeEvent>> {
        let rows = sqlx::query(
            "SELECT id, deployment_id, state, description, attempts FROM forge_deployment_events
             WHERE delivered_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing forge deployment statuses"))?;
        rows.iter()
            .map(|row| {
                Ok(ForgeEvent {
                    id: get(row, "id")?,
                    deployment: DeploymentId(get(row, "deployment_id")?),
                    state: get(row, "state")?,
                    description: get(row, "description")?,
                    attempts: get(row, "attempts")?,
                })
            })
            .collect()
    }

    /// Marks a forge event delivered (`error: None`), or given up on (`Some(why)`).
    pub async fn forge_event_done(&self, id: i64, error: Option<&str>, now: i64) -> Result<()> {
        sqlx::query("UPDATE forge_deployment_events SET delivered_at = $2, error = $3, attempts = attempts + 1 WHERE id = $1")
            .bind(id)
            .bind(now)
            .bind(error)
            .execute(&self.pool)
            .await
            .map_err(q("marking a forge deployment status delivered"))?;
        Ok(())
    }

    /// Counts a failed delivery attempt.
    pub async fn forge_event_attempted(&self, id: i64, error: &str) -> Result<()> {
        sqlx::query("UPDATE forge_deployment_events SET attempts = attempts + 1, error = $2 WHERE id = $1")
            .bind(id)
            .bind(error)
            .execute(&self.pool)
            .await
            .map_err(q("counting a forge delivery attempt"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::super::*;
    use super::*;

    /// Each test on a fresh SQLite file and a fresh PostgreSQL database.
    async fn each<F, Fut>(f: F)
    where
        F: Fn(Db) -> Fut,
        Fut: Future<Output = ()>,
    {
        let dir = test_support::tempdir();
        let sqlite = Db::connect(&format!("sqlite://{}/state.db", dir.path().display())).await.expect("sqlite");
        f(sqlite).await;
        let postgres = Db::connect(&super::super::tests::fresh_postgres().await).await.expect("postgres");
        f(postgres).await;
    }

    async fn setup(db: &Db) -> (RepoId, RunId, JobId) {
        let repo = db.upsert_repository("team/app", "git://x/app.git", "gitea", 1).await.expect("repo");
        let run = NewRun {
            repository: repo,
            workflow_file: ".slipway/workflows/ci.yml".into(),
            workflow_name: "CI".into(),
            event: "push".into(),
            git_ref: "refs/heads/main".into(),
            sha: "abc".into(),
            actor: "alice".into(),
            spec: "{}".into(),
            concurrency_group: None,
        };
        let job = NewJob {
            key: "production".into(),
            name: "production".into(),
            needs: "[]".into(),
            labels: "[]".into(),
            condition: None,
            status: JobStatus::Pending,
            result: None,
            log: None,
        };
        let (run, jobs) = db.create_run(&run, &[job], 1).await.expect("run");
        (repo, run, jobs[0])
    }

    fn new(repo: RepoId, run: RunId, job: JobId, env: &str) -> NewDeployment {
        NewDeployment {
            repository: repo,
            environment: env.into(),
            run,
            job,
            job_key: "production".into(),
            sha: "abc".into(),
            git_ref: "refs/heads/main".into(),
            pusher: "alice".into(),
            status: DeploymentStatus::Queued,
            reason: None,
            url: None,
            rollback_of: None,
        }
    }

    #[tokio::test]
    async fn a_deployment_moves_through_its_states_and_stays_final() {
        each(|db| async move {
            let (repo, run, job) = setup(&db).await;
            let id = db.create_deployment(&new(repo, run, job, "production"), 10).await.expect("create");
            assert!(db.set_deployment_status(id, DeploymentStatus::Waiting, Some("needs approval"), 11).await.expect("w"));
            assert!(db.set_deployment_status(id, DeploymentStatus::InProgress, None, 12).await.expect("p"));
            db.set_deployment_digests(id, r#"[{"digest":"sha256:aa"}]"#).await.expect("digests");
            assert!(db.set_deployment_status(id, DeploymentStatus::Success, None, 13).await.expect("s"));
            assert!(!db.set_deployment_status(id, DeploymentStatus::Failure, None, 14).await.expect("final"));
            let d = db.deployment(id).await.expect("read").expect("exists");
            assert_eq!((d.status, d.started_at, d.finished_at), (DeploymentStatus::Success, Some(12), Some(13)));
            assert_eq!((d.repository_name.as_str(), d.pusher.as_str()), ("team/app", "alice"));
            assert!(d.digests.contains("sha256:aa"));
            assert_eq!(db.latest_deployment_of_job(job).await.expect("latest").map(|d| d.id), Some(id));
        })
        .await;
    }

    #[tokio::test]
    async fn deployments_filter_by_environment_and_status() {
        each(|db| async move {
            let (repo, run, job) = setup(&db).await;
            let a = db.create_deployment(&new(repo, run, job, "staging"), 10).await.expect("a");
            let b = db.create_deployment(&new(repo, run, job, "production"), 11).await.expect("b");
            db.set_deployment_status(b, DeploymentStatus::Waiting, None, 12).await.expect("w");
            let all = db.deployments(None, None, None, &[], 10).await.expect("all");
            assert_eq!(all.iter().map(|d| d.id).collect::<Vec<_>>(), vec![b, a]);
            let prod = db.deployments(Some("team/app"), Some("production"), None, &[], 10).await.expect("prod");
            assert_eq!(prod.len(), 1);
            let waiting = db.deployments(None, None, Some(run), &[DeploymentStatus::Waiting], 10).await.expect("waiting");
            assert_eq!(waiting.iter().map(|d| d.id).collect::<Vec<_>>(), vec![b]);
            let none = db.deployments(Some("other/repo"), None, None, &[], 10).await.expect("none");
            assert!(none.is_empty());
        })
        .await;
    }

    #[tokio::test]
    async fn approvals_audit_rollbacks_and_forge_outbox() {
        each(|db| async move {
            let (repo, run, job) = setup(&db).await;
            let id = db.create_deployment(&new(repo, run, job, "production"), 10).await.expect("create");
            db.add_approval(id, "bob", "approved", Some("looks good"), 20).await.expect("approve");
            let a = db.approvals(id).await.expect("approvals");
            assert_eq!((a[0].user.as_str(), a[0].comment.as_deref()), ("bob", Some("looks good")));
            for action in ["deployment.waiting", "approval.refused", "approval.approved"] {
                let e = AuditEvent {
                    deployment: Some(id),
                    run: Some(run),
                    environment: Some("production".into()),
                    actor: "bob".into(),
                    action: action.into(),
                    ..AuditEvent::default()
                };
                db.audit(&e, 30).await.expect("audit");
            }
            let f = AuditFilter { deployment: Some(id), ..AuditFilter::default() };
            let trail: Vec<String> = db.audit_events(&f).await.expect("trail").into_iter().map(|e| e.action).collect();
            assert_eq!(trail, ["deployment.waiting", "approval.refused", "approval.approved"]);
            assert_eq!(db.rollback_request(run).await.expect("none"), None);
            db.record_rollback_request(run, id, "carol", 40).await.expect("rollback");
            assert_eq!(db.rollback_request(run).await.expect("some"), Some((id, "carol".to_owned())));
            db.queue_forge_event(id, "in_progress", "deploying", 50).await.expect("queue");
            db.queue_forge_event(id, "success", "deployed", 51).await.expect("queue");
            let pending = db.pending_forge_events(10).await.expect("pending");
            assert_eq!(pending.iter().map(|e| e.state.as_str()).collect::<Vec<_>>(), ["in_progress", "success"]);
            db.forge_event_attempted(pending[0].id, "500").await.expect("attempt");
            db.forge_event_done(pending[0].id, None, 52).await.expect("done");
            let pending = db.pending_forge_events(10).await.expect("pending");
            assert_eq!(pending.len(), 1);
            db.set_deployment_forge_id(id, "77").await.expect("forge id");
            assert_eq!(db.deployment(id).await.expect("read").expect("exists").forge_id.as_deref(), Some("77"));
        })
        .await;
    }
}
