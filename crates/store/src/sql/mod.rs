//! The SQL state of the CI server: repositories, runs, jobs, steps, log chunks, webhook
//! deliveries and agents, in one schema that runs on SQLite (the default, a file in WAL
//! mode) and PostgreSQL (`postgres://...`).
//!
//! [`Db`] is the only type that speaks SQL. It is a thin, typed layer: every method is one
//! statement or one short transaction; decisions (what becomes runnable, what a result
//! means) are the caller's. Values that other crates give structure to (a job's `needs`
//! and labels, a run's spec) are opaque text here.
//!
//! Leasing a job is the one contended write: on PostgreSQL it locks candidate rows with
//! `FOR UPDATE SKIP LOCKED`, so many server replicas can share a database; on SQLite it runs
//! in a `BEGIN IMMEDIATE` transaction (SQLite has one writer at a time).
//!
//! The store reads no clock: every timestamp (milliseconds since the Unix epoch) comes in as
//! an argument.

mod caches;
mod concurrency;
mod deployments;
mod environments;
mod gitops;
mod listings;
mod schema;
mod users;

pub use deployments::{
    Approval, AuditEvent, AuditFilter, Deployment, DeploymentId, DeploymentStatus, ForgeEvent, NewDeployment,
};
pub use concurrency::{EnterOptions, Entered};
pub use caches::{CacheEntry, CacheReservation};
pub use gitops::{GitopsApp, GitopsSync, SyncFilter};
pub use users::{TokenId, TokenRecord, UserId, UserRecord, UserSettings};
pub use environments::{EnvironmentSetting, StoredEnvironment};
pub use listings::{AgentRow, HeldJob};

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An error of the SQL store, naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("unsupported database url `{0}`: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("connecting to the database `{url}`")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the database to schema version {version}")]
    Migrate {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
    #[error("{what}")]
    Query {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("the database holds an invalid value: {0}")]
    Corrupt(String),
}

type Result<T, E = SqlError> = std::result::Result<T, E>;

fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> SqlError {
    move |source| SqlError::Query { what, source }
}

macro_rules! newtype_id {
    ($($(#[$m:meta])* $name:ident),*) => {$(
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i64);
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}
newtype_id!(
    /// A repository's row id.
    RepoId,
    /// A run's row id (shown to users as the run number).
    RunId,
    /// A job's row id.
    JobId,
    /// A registered agent.
    AgentId
);

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Queued,
    Running,
    Done,
}

/// Where a job is: `Pending` waits for its needs, `Queued` waits for an agent, `Running` is
/// leased, `Done` has a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Queued,
    Running,
    Done,
}

/// How a job or run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conclusion {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident = $s:literal),* }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
        impl FromStr for $t {
            type Err = SqlError;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok(Self::$v),)*
                    other => Err(SqlError::Corrupt(format!("`{other}` is not a {}", stringify!($t)))),
                }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
text_enum!(RunStatus { Queued = "queued", Running = "running", Done = "done" });
text_enum!(JobStatus { Pending = "pending", Queued = "queued", Running = "running", Done = "done" });
text_enum!(Conclusion { Success = "success", Failure = "failure", Cancelled = "cancelled", Skipped = "skipped" });

/// A repository the server builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub id: RepoId,
    pub name: String,
    pub clone_url: String,
    pub forge: String,
    pub forge_api: Option<String>,
    /// Sealed by the server (opaque here).
    pub forge_token: Option<Vec<u8>>,
    /// Sealed by the server (opaque here).
    pub webhook_secret: Option<Vec<u8>>,
    pub poll_interval_ms: Option<i64>,
    /// `config` (from the configuration file, replaced at every start) or `api`.
    pub managed_by: String,
}

/// Everything [`Db::save_repository`] stores about a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySettings {
    pub name: String,
    pub clone_url: String,
    pub forge: String,
    pub forge_api: Option<String>,
    pub forge_token: Option<Vec<u8>>,
    pub webhook_secret: Option<Vec<u8>>,
    pub poll_interval_ms: Option<i64>,
    pub managed_by: String,
}

/// A secret (sealed value) or variable of a scope (`repo:owner/name`, `org:owner`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<V> {
    pub scope: String,
    pub name: String,
    pub value: V,
    pub updated_at: i64,
}

/// An artifact a job uploaded: its manifest (JSON: files with path, sha256, size, mode) —
/// the contents are blobs in the blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRecord {
    pub run: RunId,
    pub name: String,
    pub job: JobId,
    pub attempt: i64,
    pub manifest: String,
    pub files: i64,
    pub size: i64,
    pub created_at: i64,
}

/// What [`Db::create_run`] needs for a run.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub repository: RepoId,
    pub workflow_file: String,
    pub workflow_name: String,
    pub event: String,
    pub git_ref: String,
    pub sha: String,
    pub actor: String,
    /// Opaque to the store: what an agent needs to run the jobs (the server's JSON).
    pub spec: String,
    /// The run's `concurrency:` group, evaluated.
    pub concurrency_group: Option<String>,
}

/// What [`Db::create_run`] needs for each job.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub key: String,
    pub name: String,
    /// Opaque (the server stores a JSON array of job keys).
    pub needs: String,
    /// Opaque (the server stores a JSON array of `runs-on` labels).
    pub labels: String,
    /// The job's `if:` source, if any.
    pub condition: Option<String>,
    pub status: JobStatus,
    /// For jobs created already finished (a workflow that failed to compile).
    pub result: Option<(Conclusion, String)>,
    /// A log to store with the job right away (attempt 0, seq 0).
    pub log: Option<Vec<u8>>,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: RunId,
    pub repository: RepoId,
    pub repository_name: String,
    pub workflow_file: String,
    pub workflow_name: String,
    pub event: String,
    pub git_ref: String,
    pub sha: String,
    pub actor: String,
    pub status: RunStatus,
    pub conclusion: Option<Conclusion>,
    pub reason: Option<String>,
    pub spec: String,
    pub concurrency_group: Option<String>,
    pub cancel_requested: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub run: RunId,
    pub key: String,
    pub name: String,
    pub needs: String,
    pub labels: String,
    pub condition: Option<String>,
    pub status: JobStatus,
    pub result: Option<Conclusion>,
    pub reason: Option<String>,
    pub agent: Option<AgentId>,
    pub lease_expires_at: Option<i64>,
    pub attempt: i64,
    pub outputs: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// One stored piece of a job's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub job: JobId,
    pub attempt: i64,
    pub seq: i64,
    pub data: Vec<u8>,
    /// When the chunk's first line was read (the agent's clock), milliseconds since the epoch.
    pub created_at: i64,
}

/// One step of one attempt of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    pub job: JobId,
    pub attempt: i64,
    pub number: i64,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// What the step set with `$GITHUB_OUTPUT`, as a JSON object (opaque here); `None`
    /// until the step finished (or when it set none).
    pub outputs: Option<String>,
    /// The markdown the step appended to `$GITHUB_STEP_SUMMARY`; `None` until the step
    /// finished (or when it wrote none).
    pub summary: Option<String>,
}

/// A step as the store keeps it (the name the API and UI code use).
pub type Step = StepRecord;

/// What an agent reports about a running job in one call, stored in one transaction (see
/// [`Db::report`] and [`Db::finish_reported`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Upserted in order (a step's `running` then its `done` may come in one report).
    pub steps: Vec<StepRecord>,
    pub log: Option<NewLog>,
}

/// A log chunk to store (kept once per `(job, attempt, seq)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLog {
    pub seq: i64,
    pub data: Vec<u8>,
    /// When its first line was read.
    pub created_at: i64,
}

/// The outcome of [`Db::finish_reported`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Finished now; the job as it is stored.
    Done(Job),
    /// The same agent already finished this attempt (a resent call): nothing changed.
    AlreadyDone(Job),
    /// The agent does not hold the attempt (its lease expired): nothing changed.
    NotHeld,
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: AgentId,
    pub name: String,
    pub labels: String,
    pub last_seen_at: i64,
}

/// What happened to a lease that expired (see [`Db::expire_leases`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Queued again for another attempt.
    Requeued(JobId),
    /// Out of attempts: done with result failure, reason "agent lost".
    Failed(JobId),
}

/// The reason recorded on a job whose lease expired for the last time.
pub const AGENT_LOST: &str = "agent lost";

/// How many times a job is leased at most (the first attempt and one retry).
pub const MAX_ATTEMPTS: i64 = 2;

/// The SQL store (a connection pool; cheap to clone).
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

const RUN_COLUMNS: &str = "r.id, r.repository_id, p.name AS repository_name, r.workflow_file, r.workflow_name, \
    r.event, r.git_ref, r.sha, r.actor, r.status, r.conclusion, r.reason, r.spec, r.concurrency_group, r.cancel_requested, \
    r.created_at, r.started_at, r.finished_at";

const REPO_COLUMNS: &str =
    "id, name, clone_url, forge, forge_api, forge_token, webhook_secret, poll_interval_ms, managed_by";

const JOB_COLUMNS: &str = "id, run_id, job_key, name, needs, labels, condition, status, result, reason, agent_id, \
    lease_expires_at, attempt, outputs, created_at, started_at, finished_at";

impl Db {
    /// Connects to `url` (`sqlite://PATH` — the file is created — or `postgres://...`) and
    /// brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(SqlError::UnsupportedUrl(redact(url)));
        };
        let connect_url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&connect_url)
            .map_err(|source| SqlError::Connect { url: redact(url), source })?;
        let pool_options = match backend {
            Backend::Sqlite => AnyPoolOptions::new().max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            }),
            Backend::Postgres => AnyPoolOptions::new().max_connections(10),
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|source| SqlError::Connect { url: redact(url), source })?;
        let db = Db { pool, backend };
        db.migrate().await?;
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool (waits for connections in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Applies the migrations not applied yet, each in its own transaction. On PostgreSQL
    /// an advisory lock keeps two replicas from migrating at once.
    async fn migrate(&self) -> Result<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS slipway_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await
        .map_err(|source| SqlError::Migrate { version: 0, source })?;
        let all = schema::MIGRATIONS.iter().chain(deployments::MIGRATIONS).chain(gitops::MIGRATIONS);
        let all = all.chain(concurrency::MIGRATIONS).chain(users::MIGRATIONS);
        let all = all.chain(environments::MIGRATIONS).chain(caches::MIGRATIONS);
        for (version, statements) in all {
            let version = *version;
            let err = |source| SqlError::Migrate { version, source };
            let mut tx = self.begin_write().await.map_err(err)?;
            if self.backend == Backend::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(7470221)").execute(&mut *tx).await.map_err(err)?;
            }
            let applied = sqlx::query("SELECT version FROM slipway_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?;
            if applied.is_some() {
                continue;
            }
            for statement in *statements {
                let sql = schema::render(statement, self.backend);
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(err)?;
            }
            sqlx::query("INSERT INTO slipway_migrations (version, applied_at) VALUES ($1, 0)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
        }
        Ok(())
    }

    /// A write transaction: `BEGIN IMMEDIATE` on SQLite (take the write lock up front, so
    /// a read-then-write never fails to upgrade), a plain `BEGIN` on PostgreSQL.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    // --- repositories -------------------------------------------------------------------

    /// Creates the repository `name` or updates its clone URL and forge.
    pub async fn upsert_repository(&self, name: &str, clone_url: &str, forge: &str, now: i64) -> Result<RepoId> {
        let row = sqlx::query(
            "INSERT INTO repositories (name, clone_url, forge, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET clone_url = excluded.clone_url, forge = excluded.forge
             RETURNING id",
        )
        .bind(name)
        .bind(clone_url)
        .bind(forge)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(q("saving a repository"))?;
        Ok(RepoId(get(&row, "id")?))
    }

    /// The repository `name`, also when it was deleted (its runs still refer to it).
    pub async fn repository_by_name(&self, name: &str) -> Result<Option<Repository>> {
        let sql = format!("SELECT {REPO_COLUMNS} FROM repositories WHERE name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("reading a repository"))?;
        row.as_ref().map(repository_from_row).transpose()
    }

    /// Creates or replaces every setting of the repository `name` (and makes it active
    /// again if it was deleted).
    pub async fn save_repository(&self, r: &RepositorySettings, now: i64) -> Result<RepoId> {
        let row = sqlx::query(
            "INSERT INTO repositories (name, clone_url, forge, forge_api, forge_token, webhook_secret,
                poll_interval_ms, managed_by, active, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9)
             ON CONFLICT (name) DO UPDATE SET clone_url = excluded.clone_url, forge = excluded.forge,
                forge_api = excluded.forge_api, forge_token = excluded.forge_token,
                webhook_secret = excluded.webhook_secret, poll_interval_ms = excluded.poll_interval_ms,
                managed_by = excluded.managed_by, active = 1
             RETURNING id",
        )
        .bind(&r.name)
        .bind(&r.clone_url)
        .bind(&r.forge)
        .bind(r.forge_api.as_deref())
        .bind(r.forge_token.clone())
        .bind(r.webhook_secret.clone())
        .bind(r.poll_interval_ms)
        .bind(&r.managed_by)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(q("saving a repository"))?;
        Ok(RepoId(get(&row, "id")?))
    }

    /// The active (not deleted) repositories, by name.
    pub async fn repositories(&self) -> Result<Vec<Repository>> {
        let sql = format!("SELECT {REPO_COLUMNS} FROM repositories WHERE active = 1 ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(q("listing repositories"))?;
        rows.iter().map(repository_from_row).collect()
    }

    /// Deletes a repository: it is no longer built (webhooks for it get 404), its runs stay.
    /// Its secrets and variables are removed. `false`: no such active repository.
    pub async fn delete_repository(&self, name: &str) -> Result<bool> {
        let mut tx = self.begin_write().await.map_err(q("starting a transaction to delete a repository"))?;
        let done = sqlx::query("UPDATE repositories SET active = 0 WHERE name = $1 AND active = 1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q("deleting a repository"))?;
        for table in ["secrets", "variables"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE scope = $1")))
                .bind(format!("repo:{name}"))
                .execute(&mut *tx)
                .await
                .map_err(q("deleting a repository's settings"))?;
        }
        tx.commit().await.map_err(q("committing a repository deletion"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks every `config`-managed repository not in `keep` deleted (they left the file).
    pub async fn retire_config_repositories(&self, keep: &[String]) -> Result<()> {
        for r in self.repositories().await? {
            if r.managed_by == "config" && !keep.contains(&r.name) {
                self.delete_repository(&r.name).await?;
            }
        }
        Ok(())
    }

    // --- secrets and variables -----------------------------------------------------------

    /// Creates or replaces a secret (its value sealed by the caller).
    pub async fn put_secret(&self, scope: &str, name: &str, sealed: &[u8], now: i64) -> Result<()> {
        self.put_setting("secrets", "saving a secret", scope, name, sealed.to_vec(), now).await
    }

    /// Every secret (sealed), optionally of one scope, by scope and name.
    pub async fn secrets(&self, scope: Option<&str>) -> Result<Vec<Setting<Vec<u8>>>> {
        self.settings("secrets", "listing secrets", scope).await
    }

    /// `false`: there was no such secret.
    pub async fn delete_secret(&self, scope: &str, name: &str) -> Result<bool> {
        self.delete_setting("secrets", "deleting a secret", scope, name).await
    }

    /// Creates or replaces a variable.
    pub async fn put_variable(&self, scope: &str, name: &str, value: &str, now: i64) -> Result<()> {
        self.put_setting("variables", "saving a variable", scope, name, value.to_owned(), now).await
    }

    /// Every variable, optionally of one scope, by scope and name.
    pub async fn variables(&self, scope: Option<&str>) -> Result<Vec<Setting<String>>> {
        self.settings("variables", "listing variables", scope).await
    }

    /// `false`: there was no such variable.
    pub async fn delete_variable(&self, scope: &str, name: &str) -> Result<bool> {
        self.delete_setting("variables", "deleting a variable", scope, name).await
    }

    // `secrets` and `variables` have the same shape (scope, name, value, updated_at); only the
    // value's type differs.
    async fn put_setting<V>(&self, table: &'static str, what: &'static str, scope: &str, name: &str, value: V, now: i64) -> Result<()>
    where
        V: for<'q> sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any> + Send + 'static,
    {
        // `table` is one of two literals of this file, never input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (scope, name, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
        )))
        .bind(scope)
        .bind(name)
        .bind(value)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q(what))?;
        Ok(())
    }

    async fn settings<V>(&self, table: &'static str, what: &'static str, scope: Option<&str>) -> Result<Vec<Setting<V>>>
    where
        V: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT scope, name, value, updated_at FROM {table} WHERE ($1 IS NULL OR scope = $1) ORDER BY scope, name"
        )))
        .bind(scope)
        .fetch_all(&self.pool)
        .await
        .map_err(q(what))?;
        rows.iter()
            .map(|row| {
                Ok(Setting {
                    scope: get(row, "scope")?,
                    name: get(row, "name")?,
                    value: get(row, "value")?,
                    updated_at: get(row, "updated_at")?,
                })
            })
            .collect()
    }

    async fn delete_setting(&self, table: &'static str, what: &'static str, scope: &str, name: &str) -> Result<bool> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE scope = $1 AND name = $2")))
            .bind(scope)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q(what))?;
        Ok(done.rows_affected() == 1)
    }

    // --- artifacts --------------------------------------------------------------------------

    /// Records an artifact of a run (replacing one of the same name: a retried job uploads
    /// again).
    pub async fn put_artifact(&self, a: &ArtifactRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO artifacts (run_id, name, job_id, attempt, manifest, files, size, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (run_id, name) DO UPDATE SET job_id = excluded.job_id, attempt = excluded.attempt,
                manifest = excluded.manifest, files = excluded.files, size = excluded.size,
                created_at = excluded.created_at",
        )
        .bind(a.run.0)
        .bind(&a.name)
        .bind(a.job.0)
        .bind(a.attempt)
        .bind(&a.manifest)
        .bind(a.files)
        .bind(a.size)
        .bind(a.created_at)
        .execute(&self.pool)
        .await
        .map_err(q("recording an artifact"))?;
        Ok(())
    }

    /// The artifacts of a run, by name (`name`: only that one).
    pub async fn artifacts(&self, run: RunId, name: Option<&str>) -> Result<Vec<ArtifactRecord>> {
        let rows = sqlx::query(
            "SELECT run_id, name, job_id, attempt, manifest, files, size, created_at FROM artifacts
             WHERE run_id = $1 AND ($2 IS NULL OR name = $2) ORDER BY name",
        )
        .bind(run.0)
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing artifacts"))?;
        rows.iter()
            .map(|row| {
                Ok(ArtifactRecord {
                    run: RunId(get(row, "run_id")?),
                    name: get(row, "name")?,
                    job: JobId(get(row, "job_id")?),
                    attempt: get(row, "attempt")?,
                    manifest: get(row, "manifest")?,
                    files: get(row, "files")?,
                    size: get(row, "size")?,
                    created_at: get(row, "created_at")?,
                })
            })
            .collect()
    }

    // --- webhook deliveries ---------------------------------------------------------------

    /// Records a webhook delivery id. `false`: it was seen before (a replay).
    pub async fn record_delivery(&self, source: &str, delivery_id: &str, now: i64) -> Result<bool> {
        let key = format!("{source}:{delivery_id}");
        let done = sqlx::query(
            "INSERT INTO deliveries (delivery_id, source, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(key)
        .bind(source)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("recording a webhook delivery"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets a delivery id (its processing failed, so a redelivery must be accepted).
    pub async fn forget_delivery(&self, source: &str, delivery_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM deliveries WHERE delivery_id = $1")
            .bind(format!("{source}:{delivery_id}"))
            .execute(&self.pool)
            .await
            .map_err(q("forgetting a webhook delivery"))?;
        Ok(())
    }

    /// The refs the poller last saw for a repository (`None`: never polled).
    pub async fn polled_refs(&self, repository: RepoId) -> Result<Option<Vec<(String, String)>>> {
        let rows = sqlx::query("SELECT git_ref, sha FROM polled_refs WHERE repository_id = $1 ORDER BY git_ref")
            .bind(repository.0)
            .fetch_all(&self.pool)
            .await
            .map_err(q("reading polled refs"))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let r: String = get(row, "git_ref")?;
            // The empty ref marks "polled at least once".
            if !r.is_empty() {
                out.push((r, get(row, "sha")?));
            }
        }
        Ok(Some(out))
    }

    /// Records what the poller saw for a ref (`""` marks the repository as polled).
    pub async fn set_polled_ref(&self, repository: RepoId, git_ref: &str, sha: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO polled_refs (repository_id, git_ref, sha) VALUES ($1, $2, $3)
             ON CONFLICT (repository_id, git_ref) DO UPDATE SET sha = excluded.sha",
        )
        .bind(repository.0)
        .bind(git_ref)
        .bind(sha)
        .execute(&self.pool)
        .await
        .map_err(q("recording a polled ref"))?;
        Ok(())
    }

    // --- runs -----------------------------------------------------------------------------

    /// Creates a run and its jobs in one transaction. The run is `Done` right away when
    /// every job is (a workflow that failed to compile), with `conclusion`.
    pub async fn create_run(&self, run: &NewRun, jobs: &[NewJob], now: i64) -> Result<(RunId, Vec<JobId>)> {
        let mut tx = self.begin_write().await.map_err(q("starting a transaction to create a run"))?;
        let all_done = !jobs.is_empty() && jobs.iter().all(|j| j.status == JobStatus::Done);
        let (status, conclusion, finished) = if all_done {
            let failed = jobs.iter().any(|j| matches!(j.result, Some((Conclusion::Failure, _))));
            let c = if failed { Conclusion::Failure } else { Conclusion::Success };
            (RunStatus::Done, Some(c.as_str()), Some(now))
        } else {
            (RunStatus::Queued, None, None)
        };
        let reason = jobs.iter().find_map(|j| j.result.as_ref().map(|(_, r)| r.clone())).filter(|_| all_done);
        let row = sqlx::query(
            "INSERT INTO runs (repository_id, workflow_file, workflow_name, event, git_ref, sha, actor, status,
                conclusion, reason, spec, created_at, finished_at, concurrency_group)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(run.repository.0)
        .bind(&run.workflow_file)
        .bind(&run.workflow_name)
        .bind(&run.event)
        .bind(&run.git_ref)
        .bind(&run.sha)
        .bind(&run.actor)
        .bind(status.as_str())
        .bind(conclusion)
        .bind(reason)
        .bind(&run.spec)
        .bind(now)
        .bind(finished)
        .bind(run.concurrency_group.as_deref())
        .fetch_one(&mut *tx)
        .await
        .map_err(q("creating a run"))?;
        let run_id: i64 = get(&row, "id")?;
        let mut ids = Vec::with_capacity(jobs.len());
        for job in jobs {
            let (result, reason) = match &job.result {
                Some((c, r)) => (Some(c.as_str()), Some(r.as_str())),
                None => (None, None),
            };
            let finished = (job.status == JobStatus::Done).then_some(now);
            let row = sqlx::query(
                "INSERT INTO jobs (run_id, job_key, name, needs, labels, condition, status, result, reason,
                    created_at, finished_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            )
            .bind(run_id)
            .bind(&job.key)
            .bind(&job.name)
            .bind(&job.needs)
            .bind(&job.labels)
            .bind(job.condition.as_deref())
            .bind(job.status.as_str())
            .bind(result)
            .bind(reason)
            .bind(now)
            .bind(finished)
            .fetch_one(&mut *tx)
            .await
            .map_err(q("creating a job"))?;
            let job_id: i64 = get(&row, "id")?;
            if let Some(log) = &job.log {
                sqlx::query("INSERT INTO log_chunks (job_id, attempt, seq, data, created_at) VALUES ($1, 0, 0, $2, $3)")
                    .bind(job_id)
                    .bind(log.clone())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(q("storing a job log"))?;
            }
            ids.push(JobId(job_id));
        }
        tx.commit().await.map_err(q("committing a new run"))?;
        Ok((RunId(run_id), ids))
    }

    pub async fn run(&self, id: RunId) -> Result<Option<Run>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs r JOIN repositories p ON p.id = r.repository_id WHERE r.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("reading a run"))?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// The newest runs first, at most `limit`, optionally of one repository.
    pub async fn runs(&self, repository: Option<&str>, limit: i64) -> Result<Vec<Run>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r JOIN repositories p ON p.id = r.repository_id
             WHERE ($1 IS NULL OR p.name = $1) ORDER BY r.id DESC LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(repository)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(q("listing runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    /// The runs of `repository` in concurrency group `group` that are not done, oldest first.
    pub async fn active_in_group(&self, repository: RepoId, group: &str) -> Result<Vec<Run>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r JOIN repositories p ON p.id = r.repository_id
             WHERE r.repository_id = $1 AND r.concurrency_group = $2 AND r.status <> 'done' ORDER BY r.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(repository.0)
            .bind(group)
            .fetch_all(&self.pool)
            .await
            .map_err(q("listing the runs of a concurrency group"))?;
        rows.iter().map(run_from_row).collect()
    }

    /// Marks a run running (first job leased), if it is still queued.
    pub async fn start_run(&self, id: RunId, now: i64) -> Result<()> {
        sqlx::query("UPDATE runs SET status = 'running', started_at = $2 WHERE id = $1 AND status = 'queued'")
            .bind(id.0)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(q("starting a run"))?;
        Ok(())
    }

    /// Finishes a run. `false`: it was already finished (someone else did it).
    pub async fn finish_run(&self, id: RunId, conclusion: Conclusion, reason: Option<&str>, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE runs SET status = 'done', conclusion = $2, reason = $3, finished_at = $4
             WHERE id = $1 AND status <> 'done'",
        )
        .bind(id.0)
        .bind(conclusion.as_str())
        .bind(reason)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("finishing a run"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Requests cancellation of a run: jobs not started yet are finished as cancelled right
    /// away; running jobs learn it from their next heartbeat. `false`: the run is unknown
    /// or already finished.
    pub async fn cancel_run(&self, id: RunId, now: i64) -> Result<bool> {
        let mut tx = self.begin_write().await.map_err(q("starting a transaction to cancel a run"))?;
        let done = sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE id = $1 AND status <> 'done'")
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(q("cancelling a run"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE jobs SET status = 'done', result = 'cancelled', reason = 'cancelled', finished_at = $2
             WHERE run_id = $1 AND status IN ('pending', 'queued')",
        )
        .bind(id.0)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(q("cancelling the jobs of a run"))?;
        tx.commit().await.map_err(q("committing a cancellation"))?;
        Ok(true)
    }

    /// Re-opens a finished run to run `jobs` again: the run is queued again (conclusion
    /// cleared) and each of those jobs goes back to pending (result, outputs and agent
    /// cleared; the attempt counter continues, so logs of earlier attempts are kept).
    /// `false`: the run is not finished.
    pub async fn rerun(&self, run: RunId, jobs: &[JobId]) -> Result<bool> {
        let mut tx = self.begin_write().await.map_err(q("starting a transaction to re-run jobs"))?;
        let done = sqlx::query(
            "UPDATE runs SET status = 'queued', conclusion = NULL, reason = NULL, finished_at = NULL,
                cancel_requested = 0
             WHERE id = $1 AND status = 'done'",
        )
        .bind(run.0)
        .execute(&mut *tx)
        .await
        .map_err(q("re-opening a run"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        for job in jobs {
            sqlx::query(
                "UPDATE jobs SET status = 'pending', result = NULL, reason = NULL, agent_id = NULL,
                    lease_expires_at = NULL, outputs = NULL, started_at = NULL, finished_at = NULL
                 WHERE id = $1 AND run_id = $2",
            )
            .bind(job.0)
            .bind(run.0)
            .execute(&mut *tx)
            .await
            .map_err(q("re-opening a job"))?;
        }
        tx.commit().await.map_err(q("committing a re-run"))?;
        Ok(true)
    }

    // --- jobs -----------------------------------------------------------------------------

    pub async fn jobs(&self, run: RunId) -> Result<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = $1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(run.0)
            .fetch_all(&self.pool)
            .await
            .map_err(q("listing the jobs of a run"))?;
        rows.iter().map(job_from_row).collect()
    }

    pub async fn job(&self, id: JobId) -> Result<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("reading a job"))?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Moves a pending job to queued. `false`: it was not pending any more.
    pub async fn queue_job(&self, id: JobId) -> Result<bool> {
        let done = sqlx::query("UPDATE jobs SET status = 'queued' WHERE id = $1 AND status = 'pending'")
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("queueing a job"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Finishes a job that never ran (skipped, or cancelled while pending/queued). `false`:
    /// it had started or finished meanwhile.
    pub async fn settle_job(&self, id: JobId, result: Conclusion, reason: Option<&str>, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'done', result = $2, reason = $3, finished_at = $4
             WHERE id = $1 AND status IN ('pending', 'queued')",
        )
        .bind(id.0)
        .bind(result.as_str())
        .bind(reason)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("settling a job"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Leases the oldest queued job for which `matches(labels)` holds to `agent` until
    /// `now + ttl_ms`, counting an attempt. `None`: nothing suitable is queued.
    ///
    /// PostgreSQL: the candidates are locked `FOR UPDATE SKIP LOCKED`, so concurrent leases
    /// (from any number of server replicas) never hand out one job twice and never wait on
    /// each other. SQLite: one `BEGIN IMMEDIATE` transaction.
    pub async fn lease(
        &self,
        agent: AgentId,
        matches: &(dyn Fn(&str) -> bool + Sync),
        now: i64,
        ttl_ms: i64,
    ) -> Result<Option<Job>> {
        self.lease_where(agent, Some(matches), now, ttl_ms).await
    }

    /// [`lease`](Self::lease) for an agent that takes any job (no labels): one statement
    /// that locks only the one row it takes (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite
    /// takes its write lock when the statement starts).
    pub async fn lease_any(&self, agent: AgentId, now: i64, ttl_ms: i64) -> Result<Option<Job>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', agent_id = $1, lease_expires_at = $2, attempt = attempt + 1,
                started_at = $3
             WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1{lock})
             RETURNING {JOB_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(agent.0)
            .bind(now + ttl_ms)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("leasing a job"))?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn lease_where(
        &self,
        agent: AgentId,
        matches: Option<&(dyn Fn(&str) -> bool + Sync)>,
        now: i64,
        ttl_ms: i64,
    ) -> Result<Option<Job>> {
        let mut tx = self.begin_write().await.map_err(q("starting a lease transaction"))?;
        let limit = if matches.is_some() { 200 } else { 1 };
        let select = match self.backend {
            Backend::Postgres => format!(
                "SELECT id, labels FROM jobs WHERE status = 'queued' ORDER BY id LIMIT {limit} FOR UPDATE SKIP LOCKED"
            ),
            Backend::Sqlite => format!("SELECT id, labels FROM jobs WHERE status = 'queued' ORDER BY id LIMIT {limit}"),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch_all(&mut *tx).await.map_err(q("finding a queued job"))?;
        let mut chosen = None;
        for row in &rows {
            let labels: String = get(row, "labels")?;
            if matches.is_none_or(|m| m(&labels)) {
                chosen = Some(get::<i64>(row, "id")?);
                break;
            }
        }
        let Some(id) = chosen else {
            tx.rollback().await.map_err(q("ending a lease transaction"))?;
            return Ok(None);
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', agent_id = $2, lease_expires_at = $3, attempt = attempt + 1,
                started_at = $4
             WHERE id = $1 RETURNING {JOB_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(agent.0)
            .bind(now + ttl_ms)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(q("leasing a job"))?;
        let job = job_from_row(&row)?;
        tx.commit().await.map_err(q("committing a lease"))?;
        Ok(Some(job))
    }

    /// Extends the lease of `agent` on attempt `attempt` of job `id`. `None`: the agent no
    /// longer holds it (expired and handed on, or finished). `Some(cancel)`: whether the
    /// job's run, or the job itself (`Db::cancel_job`, a concurrency group), was cancelled.
    pub async fn heartbeat(&self, id: JobId, attempt: i64, agent: AgentId, now: i64, ttl_ms: i64) -> Result<Option<bool>> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $4
             WHERE id = $1 AND attempt = $2 AND agent_id = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(attempt)
        .bind(agent.0)
        .bind(now + ttl_ms)
        .execute(&self.pool)
        .await
        .map_err(q("extending a lease"))?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let mut conn = self.pool.acquire().await.map_err(q("reading whether a job is cancelled"))?;
        Ok(Some(cancel_requested(&mut conn, id).await?))
    }

    /// Stores a report of attempt `attempt` of job `id` held by `agent` (its steps and log
    /// chunk) and extends the lease until `lease_until`, all in one transaction. `None`: the
    /// agent does not hold it, nothing was stored. `Some((run, cancel))`: stored; whether
    /// the job must stop (as [`heartbeat`](Self::heartbeat) answers).
    ///
    /// Idempotent: the same report stored twice changes nothing the second time.
    pub async fn report(
        &self,
        id: JobId,
        attempt: i64,
        agent: AgentId,
        report: &Report,
        lease_until: i64,
    ) -> Result<Option<(RunId, bool)>> {
        let mut tx = self.begin_write().await.map_err(q("starting a report transaction"))?;
        let row = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $4
             WHERE id = $1 AND attempt = $2 AND agent_id = $3 AND status = 'running' RETURNING run_id",
        )
        .bind(id.0)
        .bind(attempt)
        .bind(agent.0)
        .bind(lease_until)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q("extending a lease"))?;
        let Some(row) = row else {
            tx.rollback().await.map_err(q("ending a report transaction"))?;
            return Ok(None);
        };
        let run = RunId(get(&row, "run_id")?);
        store_report(&mut tx, id, attempt, report).await?;
        let cancel = cancel_requested(&mut tx, id).await?;
        tx.commit().await.map_err(q("committing a report"))?;
        Ok(Some((run, cancel)))
    }

    /// [`finish_job`](Self::finish_job) with the last [`Report`], in one transaction.
    /// Resent after it succeeded (same agent and attempt): [`Finished::AlreadyDone`], and
    /// nothing changes.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_reported(
        &self,
        id: JobId,
        attempt: i64,
        agent: AgentId,
        report: &Report,
        result: Conclusion,
        outputs: &str,
        now: i64,
    ) -> Result<Finished> {
        let mut tx = self.begin_write().await.map_err(q("starting a finish transaction"))?;
        let sql = format!(
            "UPDATE jobs SET status = 'done', result = $4, outputs = $5, finished_at = $6, lease_expires_at = NULL
             WHERE id = $1 AND attempt = $2 AND agent_id = $3 AND status = 'running' RETURNING {JOB_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .bind(attempt)
            .bind(agent.0)
            .bind(result.as_str())
            .bind(outputs)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("finishing a job"))?;
        let Some(row) = row else {
            tx.rollback().await.map_err(q("ending a finish transaction"))?;
            return Ok(match self.job(id).await? {
                Some(job) if job.status == JobStatus::Done && job.attempt == attempt && job.agent == Some(agent) => {
                    Finished::AlreadyDone(job)
                }
                _ => Finished::NotHeld,
            });
        };
        let job = job_from_row(&row)?;
        store_report(&mut tx, id, attempt, report).await?;
        tx.commit().await.map_err(q("committing a finish"))?;
        Ok(Finished::Done(job))
    }

    /// Finishes the attempt `attempt` of a running job held by `agent`. `false`: the agent
    /// does not hold it any more (its lease expired), and nothing was changed.
    pub async fn finish_job(
        &self,
        id: JobId,
        attempt: i64,
        agent: AgentId,
        result: Conclusion,
        outputs: &str,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'done', result = $4, outputs = $5, finished_at = $6, lease_expires_at = NULL
             WHERE id = $1 AND attempt = $2 AND agent_id = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(attempt)
        .bind(agent.0)
        .bind(result.as_str())
        .bind(outputs)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("finishing a job"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Hands a running job back (an agent shutting down): queued again at once, without
    /// waiting for the lease to expire. The attempt counter is kept (so the next lease is a
    /// new attempt with its own log). `false`: the agent does not hold it.
    pub async fn release_job(&self, id: JobId, attempt: i64, agent: AgentId) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', agent_id = NULL, lease_expires_at = NULL
             WHERE id = $1 AND attempt = $2 AND agent_id = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(attempt)
        .bind(agent.0)
        .execute(&self.pool)
        .await
        .map_err(q("releasing a job"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Handles every running job whose lease ended before `now`: queued again when it has
    /// attempts left, else finished as failed with the reason [`AGENT_LOST`].
    pub async fn expire_leases(&self, now: i64) -> Result<Vec<Expired>> {
        let mut tx = self.begin_write().await.map_err(q("starting a lease expiry transaction"))?;
        let rows = sqlx::query(
            "SELECT id, attempt FROM jobs WHERE status = 'running' AND lease_expires_at < $1 ORDER BY id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(q("finding expired leases"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = get(row, "id")?;
            let attempt: i64 = get(row, "attempt")?;
            if attempt < MAX_ATTEMPTS {
                sqlx::query(
                    "UPDATE jobs SET status = 'queued', agent_id = NULL, lease_expires_at = NULL WHERE id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(q("requeueing a job"))?;
                out.push(Expired::Requeued(JobId(id)));
            } else {
                sqlx::query(
                    "UPDATE jobs SET status = 'done', result = 'failure', reason = $2, finished_at = $3,
                        lease_expires_at = NULL
                     WHERE id = $1",
                )
                .bind(id)
                .bind(AGENT_LOST)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(q("failing a lost job"))?;
                out.push(Expired::Failed(JobId(id)));
            }
        }
        tx.commit().await.map_err(q("committing lease expiry"))?;
        Ok(out)
    }

    /// The earliest lease end among running jobs.
    pub async fn next_lease_expiry(&self) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(lease_expires_at) AS t FROM jobs WHERE status = 'running'")
            .fetch_one(&self.pool)
            .await
            .map_err(q("reading the next lease expiry"))?;
        row.try_get::<Option<i64>, _>("t").map_err(q("reading the next lease expiry"))
    }

    /// How many jobs wait for an agent.
    pub async fn queue_depth(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued'")
            .fetch_one(&self.pool)
            .await
            .map_err(q("counting queued jobs"))?;
        get(&row, "n")
    }

    // --- steps and logs ---------------------------------------------------------------------

    /// Creates or updates a step of one attempt.
    pub async fn record_step(&self, step: &StepRecord) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(q("recording a step"))?;
        upsert_step(&mut conn, step).await
    }
    pub async fn steps(&self, job: JobId) -> Result<Vec<StepRecord>> {
        let rows = sqlx::query(
            "SELECT job_id, attempt, number, name, status, conclusion, started_at, finished_at, outputs, summary FROM steps
             WHERE job_id = $1 ORDER BY attempt, number",
        )
        .bind(job.0)
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing steps"))?;
        rows.iter()
            .map(|row| {
                Ok(StepRecord {
                    job: JobId(get(row, "job_id")?),
                    attempt: get(row, "attempt")?,
                    number: get(row, "number")?,
                    name: get(row, "name")?,
                    status: get(row, "status")?,
                    conclusion: get(row, "conclusion")?,
                    started_at: get(row, "started_at")?,
                    finished_at: get(row, "finished_at")?,
                    outputs: get(row, "outputs")?,
                    summary: get(row, "summary")?,
                })
            })
            .collect()
    }

    /// Stores a log chunk. Idempotent: a chunk sent twice (same job, attempt, seq) is kept
    /// once. `false`: it was a duplicate.
    pub async fn append_log(&self, job: JobId, attempt: i64, seq: i64, data: &[u8], now: i64) -> Result<bool> {
        let mut conn = self.pool.acquire().await.map_err(q("storing a log chunk"))?;
        insert_log(&mut conn, job, attempt, seq, data, now).await
    }

    /// A job's log chunks in order (attempt, then seq), starting after `after` (exclusive)
    /// when given.
    pub async fn logs(&self, job: JobId, after: Option<(i64, i64)>) -> Result<Vec<LogChunk>> {
        let (a, s) = after.unwrap_or((-1, -1));
        let rows = sqlx::query(
            "SELECT job_id, attempt, seq, data, created_at FROM log_chunks
             WHERE job_id = $1 AND (attempt > $2 OR (attempt = $2 AND seq > $3))
             ORDER BY attempt, seq",
        )
        .bind(job.0)
        .bind(a)
        .bind(s)
        .fetch_all(&self.pool)
        .await
        .map_err(q("reading log chunks"))?;
        rows.iter()
            .map(|row| {
                Ok(LogChunk {
                    job: JobId(get(row, "job_id")?),
                    attempt: get(row, "attempt")?,
                    seq: get(row, "seq")?,
                    data: get(row, "data")?,
                    created_at: get(row, "created_at")?,
                })
            })
            .collect()
    }

    // --- agents -----------------------------------------------------------------------------

    pub async fn create_agent(&self, name: &str, labels: &str, token_hash: &str, now: i64) -> Result<AgentId> {
        let row = sqlx::query(
            "INSERT INTO agents (name, labels, token_hash, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $4)
             RETURNING id",
        )
        .bind(name)
        .bind(labels)
        .bind(token_hash)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(q("registering an agent"))?;
        Ok(AgentId(get(&row, "id")?))
    }

    /// The agent whose token hashes to `token_hash`, marking it seen at `now`.
    pub async fn agent_by_token(&self, token_hash: &str, now: i64) -> Result<Option<Agent>> {
        let row = sqlx::query(
            "UPDATE agents SET last_seen_at = $2 WHERE token_hash = $1 RETURNING id, name, labels, last_seen_at",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("authenticating an agent"))?;
        row.map(|row| {
            Ok(Agent {
                id: AgentId(get(&row, "id")?),
                name: get(&row, "name")?,
                labels: get(&row, "labels")?,
                last_seen_at: get(&row, "last_seen_at")?,
            })
        })
        .transpose()
    }

    /// Agents seen at or after `since`.
    pub async fn count_agents(&self, since: i64) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM agents WHERE last_seen_at >= $1")
            .bind(since)
            .fetch_one(&self.pool)
            .await
            .map_err(q("counting agents"))?;
        get(&row, "n")
    }
}

/// Creates or updates a step of one attempt (see [`Db::record_step`]). A step that is
/// `done` stays done: a late or resent `running` report changes nothing of it.
async fn upsert_step(conn: &mut sqlx::AnyConnection, step: &StepRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO steps (job_id, attempt, number, name, status, conclusion, started_at, finished_at, outputs, summary)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (job_id, attempt, number) DO UPDATE SET name = excluded.name,
            status = CASE WHEN steps.status = 'done' THEN steps.status ELSE excluded.status END,
            conclusion = COALESCE(excluded.conclusion, steps.conclusion),
            started_at = COALESCE(steps.started_at, excluded.started_at),
            finished_at = COALESCE(excluded.finished_at, steps.finished_at),
            outputs = COALESCE(excluded.outputs, steps.outputs),
            summary = COALESCE(excluded.summary, steps.summary)",
    )
    .bind(step.job.0)
    .bind(step.attempt)
    .bind(step.number)
    .bind(&step.name)
    .bind(&step.status)
    .bind(step.conclusion.as_deref())
    .bind(step.started_at)
    .bind(step.finished_at)
    .bind(step.outputs.as_deref())
    .bind(step.summary.as_deref())
    .execute(&mut *conn)
    .await
    .map_err(q("recording a step"))?;
    Ok(())
}

/// Stores a log chunk once per `(job, attempt, seq)`; `false`: it was a duplicate.
async fn insert_log(conn: &mut sqlx::AnyConnection, job: JobId, attempt: i64, seq: i64, data: &[u8], created_at: i64) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO log_chunks (job_id, attempt, seq, data, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
    )
    .bind(job.0)
    .bind(attempt)
    .bind(seq)
    .bind(data.to_vec())
    .bind(created_at)
    .execute(&mut *conn)
    .await
    .map_err(q("storing a log chunk"))?;
    Ok(done.rows_affected() == 1)
}

/// Stores a report's steps (in order) and log chunk.
async fn store_report(conn: &mut sqlx::AnyConnection, job: JobId, attempt: i64, report: &Report) -> Result<()> {
    if let Some(log) = &report.log {
        insert_log(conn, job, attempt, log.seq, &log.data, log.created_at).await?;
    }
    for step in &report.steps {
        upsert_step(conn, step).await?;
    }
    Ok(())
}

/// Whether job `id` must stop: its run or the job itself was cancelled.
async fn cancel_requested(conn: &mut sqlx::AnyConnection, id: JobId) -> Result<bool> {
    let row = sqlx::query(
        "SELECT r.cancel_requested + j.cancel_requested AS cancel_requested FROM runs r
         JOIN jobs j ON j.run_id = r.id WHERE j.id = $1",
    )
    .bind(id.0)
    .fetch_one(&mut *conn)
    .await
    .map_err(q("reading whether a job is cancelled"))?;
    Ok(get::<i64>(&row, "cancel_requested")? != 0)
}

fn get<T>(row: &AnyRow, column: &'static str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(|source| SqlError::Query { what: "decoding a row", source })
}

fn repository_from_row(row: &AnyRow) -> Result<Repository> {
    Ok(Repository {
        id: RepoId(get(row, "id")?),
        name: get(row, "name")?,
        clone_url: get(row, "clone_url")?,
        forge: get(row, "forge")?,
        forge_api: get(row, "forge_api")?,
        forge_token: get(row, "forge_token")?,
        webhook_secret: get(row, "webhook_secret")?,
        poll_interval_ms: get(row, "poll_interval_ms")?,
        managed_by: get(row, "managed_by")?,
    })
}

fn run_from_row(row: &AnyRow) -> Result<Run> {
    Ok(Run {
        id: RunId(get(row, "id")?),
        repository: RepoId(get(row, "repository_id")?),
        repository_name: get(row, "repository_name")?,
        workflow_file: get(row, "workflow_file")?,
        workflow_name: get(row, "workflow_name")?,
        event: get(row, "event")?,
        git_ref: get(row, "git_ref")?,
        sha: get(row, "sha")?,
        actor: get(row, "actor")?,
        status: get::<String>(row, "status")?.parse()?,
        conclusion: get::<Option<String>>(row, "conclusion")?.map(|c| c.parse()).transpose()?,
        reason: get(row, "reason")?,
        spec: get(row, "spec")?,
        concurrency_group: get(row, "concurrency_group")?,
        cancel_requested: get::<i64>(row, "cancel_requested")? != 0,
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
    })
}

fn job_from_row(row: &AnyRow) -> Result<Job> {
    Ok(Job {
        id: JobId(get(row, "id")?),
        run: RunId(get(row, "run_id")?),
        key: get(row, "job_key")?,
        name: get(row, "name")?,
        needs: get(row, "needs")?,
        labels: get(row, "labels")?,
        condition: get(row, "condition")?,
        status: get::<String>(row, "status")?.parse()?,
        result: get::<Option<String>>(row, "result")?.map(|c| c.parse()).transpose()?,
        reason: get(row, "reason")?,
        agent: get::<Option<i64>>(row, "agent_id")?.map(AgentId),
        lease_expires_at: get(row, "lease_expires_at")?,
        attempt: get(row, "attempt")?,
        outputs: get(row, "outputs")?,
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
    })
}

/// The URL without a password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{}@{}", &url[..scheme + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
