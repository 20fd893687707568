//! What GitOps agents report: applications, their sync and health status, sync history.
//!
//! Its migrations are numbered from 200 (after the CI schema's and the delivery ones).
//!
//! An app is keyed by (agent, app name): one app may be reconciled by agents in several
//! clusters. A sync row carries the revision of the deployment repository and, when that
//! revision is a promote commit, the source commit and run named in its trailers: the join
//! from a CI run to what an agent applied (`gitops_syncs(source_commit = ...)`).

use super::{Db, Result, get, q};

/// `(version, statements)`, in order; the same placeholders as `schema::MIGRATIONS`.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[(
    200,
    &[
        "CREATE TABLE gitops_apps (
            id {id},
            agent TEXT NOT NULL,
            app TEXT NOT NULL,
            repository TEXT NOT NULL,
            path TEXT NOT NULL,
            branch TEXT NOT NULL,
            target TEXT NOT NULL,
            revision TEXT,
            target_revision TEXT,
            sync_status TEXT NOT NULL,
            health_status TEXT NOT NULL,
            paused BIGINT NOT NULL,
            message TEXT NOT NULL,
            reconciled_at BIGINT NOT NULL,
            reported_at BIGINT NOT NULL,
            UNIQUE (agent, app)
        )",
        "CREATE TABLE gitops_syncs (
            id {id},
            agent TEXT NOT NULL,
            app TEXT NOT NULL,
            entry_id BIGINT NOT NULL,
            revision TEXT NOT NULL,
            source_commit TEXT,
            source_run TEXT,
            trigger_kind TEXT NOT NULL,
            result TEXT NOT NULL,
            message TEXT NOT NULL,
            changes TEXT NOT NULL,
            started_at BIGINT NOT NULL,
            finished_at BIGINT NOT NULL,
            UNIQUE (agent, app, entry_id, started_at)
        )",
        "CREATE INDEX gitops_syncs_source_commit ON gitops_syncs (source_commit)",
        "CREATE INDEX gitops_syncs_revision ON gitops_syncs (revision)",
    ],
)];

/// An app's last reported status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitopsApp {
    pub agent: String,
    pub app: String,
    pub repository: String,
    pub path: String,
    pub branch: String,
    pub target: String,
    pub revision: Option<String>,
    pub target_revision: Option<String>,
    pub sync_status: String,
    pub health_status: String,
    pub paused: bool,
    pub message: String,
    pub reconciled_at: i64,
    pub reported_at: i64,
}

/// One sync an agent performed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitopsSync {
    pub agent: String,
    pub app: String,
    /// The agent's own id of the entry (increasing per app).
    pub entry_id: i64,
    pub revision: String,
    pub source_commit: Option<String>,
    pub source_run: Option<String>,
    pub trigger: String,
    pub result: String,
    pub message: String,
    /// Newline-separated changes (`create service/web`).
    pub changes: String,
    pub started_at: i64,
    pub finished_at: i64,
}

/// Which syncs to list (all given fields must match), newest first.
#[derive(Debug, Clone, Default)]
pub struct SyncFilter {
    pub agent: Option<String>,
    pub app: Option<String>,
    pub revision: Option<String>,
    pub source_commit: Option<String>,
    pub limit: i64,
}

const APP_COLUMNS: &str = "agent, app, repository, path, branch, target, revision, target_revision, sync_status, \
     health_status, paused, message, reconciled_at, reported_at";
const SYNC_COLUMNS: &str = "agent, app, entry_id, revision, source_commit, source_run, trigger_kind, result, message, \
     changes, started_at, finished_at";

fn app_from_row(row: &sqlx::any::AnyRow) -> Result<GitopsApp> {
    Ok(GitopsApp {
        agent: get(row, "agent")?,
        app: get(row, "app")?,
        repository: get(row, "repository")?,
        path: get(row, "path")?,
        branch: get(row, "branch")?,
        target: get(row, "target")?,
        revision: get(row, "revision")?,
        target_revision: get(row, "target_revision")?,
        sync_status: get(row, "sync_status")?,
        health_status: get(row, "health_status")?,
        paused: get::<i64>(row, "paused")? != 0,
        message: get(row, "message")?,
        reconciled_at: get(row, "reconciled_at")?,
        reported_at: get(row, "reported_at")?,
    })
}

fn sync_from_row(row: &sqlx::any::AnyRow) -> Result<GitopsSync> {
    Ok(GitopsSync {
        agent: get(row, "agent")?,
        app: get(row, "app")?,
        entry_id: get(row, "entry_id")?,
        revision: get(row, "revision")?,
        source_commit: get(row, "source_commit")?,
        source_run: get(row, "source_run")?,
        trigger: get(row, "trigger_kind")?,
        result: get(row, "result")?,
        message: get(row, "message")?,
        changes: get(row, "changes")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
    })
}

impl Db {
    /// Records an app's reported status and its sync history in one transaction; history
    /// entries already stored are skipped (reports repeat them). Returns how many were new.
    pub async fn record_gitops_report(&self, app: &GitopsApp, syncs: &[GitopsSync]) -> Result<u64> {
        let mut tx = self.begin_write().await.map_err(q("starting a transaction to record a GitOps report"))?;
        let sql = format!(
            "INSERT INTO gitops_apps ({APP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (agent, app) DO UPDATE SET repository = excluded.repository, path = excluded.path,
               branch = excluded.branch, target = excluded.target, revision = excluded.revision,
               target_revision = excluded.target_revision, sync_status = excluded.sync_status,
               health_status = excluded.health_status, paused = excluded.paused, message = excluded.message,
               reconciled_at = excluded.reconciled_at, reported_at = excluded.reported_at"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&app.agent)
            .bind(&app.app)
            .bind(&app.repository)
            .bind(&app.path)
            .bind(&app.branch)
            .bind(&app.target)
            .bind(&app.revision)
            .bind(&app.target_revision)
            .bind(&app.sync_status)
            .bind(&app.health_status)
            .bind(i64::from(app.paused))
            .bind(&app.message)
            .bind(app.reconciled_at)
            .bind(app.reported_at)
            .execute(&mut *tx)
            .await
            .map_err(q("recording a GitOps app"))?;
        let mut new = 0;
        for s in syncs {
            let sql = format!(
                "INSERT INTO gitops_syncs ({SYNC_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT DO NOTHING"
            );
            let r = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&s.agent)
                .bind(&s.app)
                .bind(s.entry_id)
                .bind(&s.revision)
                .bind(&s.source_commit)
                .bind(&s.source_run)
                .bind(&s.trigger)
                .bind(&s.result)
                .bind(&s.message)
                .bind(&s.changes)
                .bind(s.started_at)
                .bind(s.finished_at)
                .execute(&mut *tx)
                .await
                .map_err(q("recording a GitOps sync"))?;
            new += r.rows_affected();
        }
        tx.commit().await.map_err(q("committing a GitOps report"))?;
        Ok(new)
    }

    /// Every reported app, by agent and name.
    pub async fn gitops_apps(&self) -> Result<Vec<GitopsApp>> {
        let sql = format!("SELECT {APP_COLUMNS} FROM gitops_apps ORDER BY app, agent");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await.map_err(q("listing GitOps apps"))?;
        rows.iter().map(app_from_row).collect()
    }

    /// Sync history matching `f`, newest first.
    pub async fn gitops_syncs(&self, f: &SyncFilter) -> Result<Vec<GitopsSync>> {
        let sql = format!(
            "SELECT {SYNC_COLUMNS} FROM gitops_syncs
             WHERE ($1 IS NULL OR agent = $1) AND ($2 IS NULL OR app = $2) AND ($3 IS NULL OR revision = $3)
               AND ($4 IS NULL OR source_commit = $4)
             ORDER BY finished_at DESC, id DESC LIMIT $5"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&f.agent)
            .bind(&f.app)
            .bind(&f.revision)
            .bind(&f.source_commit)
            .bind(if f.limit > 0 { f.limit } else { 100 })
            .fetch_all(&self.pool)
            .await
            .map_err(q("listing GitOps syncs"))?;
        rows.iter().map(sync_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(revision: &str, sync: &str) -> GitopsApp {
        GitopsApp {
            agent: "lab".into(),
            app: "web".into(),
            repository: "git://x/deploy.git".into(),
            path: "apps/web".into(),
            branch: "main".into(),
            target: "docker".into(),
            revision: Some(revision.into()),
            target_revision: Some(revision.into()),
            sync_status: sync.into(),
            health_status: "Healthy".into(),
            paused: false,
            message: String::new(),
            reconciled_at: 10,
            reported_at: 11,
        }
    }

    fn sync(entry_id: i64, revision: &str, source: Option<&str>, at: i64) -> GitopsSync {
        GitopsSync {
            agent: "lab".into(),
            app: "web".into(),
            entry_id,
            revision: revision.into(),
            source_commit: source.map(str::to_owned),
            source_run: source.map(|_| "7".to_owned()),
            trigger: "auto-sync".into(),
            result: "succeeded".into(),
            message: "applied 1 change(s)".into(),
            changes: "update service/web (image)".into(),
            started_at: at,
            finished_at: at + 1,
        }
    }

    async fn check(db: Db) {
        let new = db.record_gitops_report(&app("r1", "Synced"), &[sync(1, "r1", None, 100)]).await.expect("report");
        assert_eq!(new, 1);
        // The next report repeats the first entry: it is stored once.
        let new = db
            .record_gitops_report(&app("r2", "OutOfSync"), &[sync(1, "r1", None, 100), sync(2, "r2", Some("abc"), 200)])
            .await
            .expect("report");
        assert_eq!(new, 1);
        let apps = db.gitops_apps().await.expect("apps");
        assert_eq!(apps, vec![app("r2", "OutOfSync")]);
        let all = db.gitops_syncs(&SyncFilter::default()).await.expect("syncs");
        assert_eq!(all.iter().map(|s| s.entry_id).collect::<Vec<_>>(), [2, 1], "newest first");
        let by_source = db
            .gitops_syncs(&SyncFilter { source_commit: Some("abc".into()), ..Default::default() })
            .await
            .expect("syncs");
        assert_eq!(by_source, vec![sync(2, "r2", Some("abc"), 200)]);
        let none = db.gitops_syncs(&SyncFilter { app: Some("other".into()), ..Default::default() }).await.expect("syncs");
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn reports_on_sqlite_and_postgres() {
        let dir = test_support::tempdir();
        check(Db::connect(&format!("sqlite://{}/state.db", dir.path().display())).await.expect("sqlite")).await;
        check(Db::connect(&super::super::tests::fresh_postgres().await).await.expect("postgres")).await;
    }
}
