//! Read-only listings for the web UI's overview pages: every agent, and the jobs agents hold.

use super::{AgentId, Db, JobId, Result, RunId, get, q};

/// An agent as the agents page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    pub id: AgentId,
    pub name: String,
    /// A JSON array of labels (empty: every label).
    pub labels: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// How many jobs it runs at once, when it said at registration.
    pub capacity: Option<i64>,
}

/// A job an agent holds a lease on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldJob {
    pub agent: AgentId,
    pub job: JobId,
    pub run: RunId,
    pub key: String,
    pub name: String,
    pub repository_name: String,
    pub started_at: Option<i64>,
    pub lease_expires_at: Option<i64>,
}

impl Db {
    /// Records how many jobs agent `id` runs at once (from its registration).
    pub async fn set_agent_capacity(&self, id: AgentId, capacity: i64) -> Result<()> {
        sqlx::query("UPDATE agents SET capacity = $1 WHERE id = $2")
            .bind(capacity)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("recording an agent's capacity"))?;
        Ok(())
    }

    /// Agents seen at or after `since`, most recently seen first, at most `limit`.
    pub async fn agents_seen_since(&self, since: i64, limit: i64) -> Result<Vec<AgentRow>> {
        let rows = sqlx::query(
            "SELECT id, name, labels, created_at, last_seen_at, capacity FROM agents WHERE last_seen_at >= $1
             ORDER BY last_seen_at DESC, id DESC LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing agents"))?;
        rows.iter()
            .map(|row| {
                Ok(AgentRow {
                    id: AgentId(get(row, "id")?),
                    name: get(row, "name")?,
                    labels: get(row, "labels")?,
                    created_at: get(row, "created_at")?,
                    last_seen_at: get(row, "last_seen_at")?,
                    capacity: get(row, "capacity")?,
                })
            })
            .collect()
    }

    /// Every running job and the agent holding it.
    pub async fn held_jobs(&self) -> Result<Vec<HeldJob>> {
        let rows = sqlx::query(
            "SELECT j.agent_id, j.id, j.run_id, j.job_key, j.name, p.name AS repository_name, j.started_at,
                j.lease_expires_at
             FROM jobs j JOIN runs r ON r.id = j.run_id JOIN repositories p ON p.id = r.repository_id
             WHERE j.status = 'running' AND j.agent_id IS NOT NULL ORDER BY j.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing held jobs"))?;
        rows.iter()
            .map(|row| {
                Ok(HeldJob {
                    agent: AgentId(get(row, "agent_id")?),
                    job: JobId(get(row, "id")?),
                    run: RunId(get(row, "run_id")?),
                    key: get(row, "job_key")?,
                    name: get(row, "name")?,
                    repository_name: get(row, "repository_name")?,
                    started_at: get(row, "started_at")?,
                    lease_expires_at: get(row, "lease_expires_at")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::fresh_postgres;
    use super::super::{JobStatus, NewJob, NewRun};
    use super::*;

    async fn check(db: Db) {
        let now = 1_000_000;
        let old = db
            .create_agent("old", "[]", "h-old", now - 100_000)
            .await
            .expect("agent");
        let busy = db
            .create_agent("busy", r#"["linux"]"#, "h-busy", now - 10)
            .await
            .expect("agent");
        let idle = db
            .create_agent("idle", "[]", "h-idle", now)
            .await
            .expect("agent");
        let seen = db
            .agents_seen_since(now - 50_000, 10)
            .await
            .expect("agents");
        let ids: Vec<AgentId> = seen.iter().map(|a| a.id).collect();
        assert_eq!(
            ids,
            vec![idle, busy],
            "most recently seen first, old ones left out"
        );
        assert_eq!(seen[1].labels, r#"["linux"]"#);
        assert!(!ids.contains(&old));
        assert_eq!(
            db.agents_seen_since(0, 1).await.expect("agents").len(),
            1,
            "limit"
        );

        let repo = db
            .upsert_repository("team/app", "git://x/app.git", "gitea", 1)
            .await
            .expect("repo");
        let job = |key: &str| NewJob {
            key: key.into(),
            name: format!("job {key}"),
            needs: "[]".into(),
            labels: "[]".into(),
            condition: None,
            status: JobStatus::Queued,
            result: None,
            log: None,
        };
        let (run, jobs) = db
            .create_run(
                &NewRun {
                    repository: repo,
                    workflow_file: "ci.yml".into(),
                    workflow_name: "ci".into(),
                    event: "push".into(),
                    git_ref: "refs/heads/main".into(),
                    sha: "abc".into(),
                    actor: "alice".into(),
                    spec: "{}".into(),
                    concurrency_group: None,
                },
                &[job("a"), job("b")],
                now,
            )
            .await
            .expect("run");
        assert!(
            db.held_jobs().await.expect("held").is_empty(),
            "queued is not held"
        );
        let leased = db
            .lease_any(busy, now, 30_000)
            .await
            .expect("lease")
            .expect("a job");
        let held = db.held_jobs().await.expect("held");
        assert_eq!(held.len(), 1);
        let h = &held[0];
        assert_eq!((h.agent, h.job, h.run), (busy, leased.id, run));
        assert!(jobs.contains(&h.job));
        assert_eq!(h.repository_name, "team/app");
        assert_eq!(h.lease_expires_at, Some(now + 30_000));
    }

    #[tokio::test]
    async fn listings_on_sqlite() {
        let dir = test_support::tempdir();
        let db = Db::connect(&format!("sqlite://{}/state.db", dir.path().display()))
            .await
            .expect("sqlite");
        check(db).await;
    }

    #[tokio::test]
    async fn listings_on_postgres() {
        let db = Db::connect(&fresh_postgres().await)
            .await
            .expect("postgres");
        check(db).await;
    }
}
