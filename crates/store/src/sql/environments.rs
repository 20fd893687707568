//! Store queries for environments defined through the API (the server merges them over the
//! configuration file's `[[environment]]`s).
//!
//! An environment is one row (its protection rules; lists as opaque JSON text), keyed by
//! repository (`""`: every repository) and name; its secrets (sealed by the server, opaque
//! bytes here) and variables are rows of their own that go with it when it is deleted.
//!
//! Its migrations are numbered from 500.

use super::{Db, Result, get, q};

/// `(version, statements)`, in order; the same placeholders as `schema::MIGRATIONS`.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[(
    500,
    &[
        // repository: `owner/name`, or '' for every repository (a NULL would not be unique).
        // reviewers, branches, tags: JSON arrays of strings.
        "CREATE TABLE environments (
            id {id},
            repository TEXT NOT NULL,
            name TEXT NOT NULL,
            reviewers TEXT NOT NULL,
            required_approvals BIGINT NOT NULL,
            allow_self_approval BIGINT NOT NULL,
            wait_timer_ms BIGINT NOT NULL,
            timeout_ms BIGINT NOT NULL,
            branches TEXT NOT NULL,
            tags TEXT NOT NULL,
            url TEXT,
            updated_by TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            UNIQUE (repository, name)
        )",
        "CREATE TABLE environment_secrets (
            environment_id BIGINT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            value {blob} NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (environment_id, name)
        )",
        "CREATE TABLE environment_variables (
            environment_id BIGINT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (environment_id, name)
        )",
    ],
)];

/// An environment defined through the API: its protection rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredEnvironment {
    /// Set by the store (ignored by [`Db::put_environment`]).
    pub id: i64,
    /// `owner/name`; `None`: every repository.
    pub repository: Option<String>,
    pub name: String,
    /// A JSON array of user or group names.
    pub reviewers: String,
    pub required_approvals: i64,
    pub allow_self_approval: bool,
    pub wait_timer_ms: i64,
    pub timeout_ms: i64,
    /// JSON arrays of patterns.
    pub branches: String,
    pub tags: String,
    pub url: Option<String>,
    /// Who saved it last.
    pub updated_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A secret (sealed) or variable of a stored environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentSetting<V> {
    pub environment: i64,
    pub name: String,
    pub value: V,
    pub updated_at: i64,
}

const ENV_COLUMNS: &str = "id, repository, name, reviewers, required_approvals, allow_self_approval, \
    wait_timer_ms, timeout_ms, branches, tags, url, updated_by, created_at, updated_at";

fn environment_from_row(row: &sqlx::any::AnyRow) -> Result<StoredEnvironment> {
    let repository: String = get(row, "repository")?;
    Ok(StoredEnvironment {
        id: get(row, "id")?,
        repository: (!repository.is_empty()).then_some(repository),
        name: get(row, "name")?,
        reviewers: get(row, "reviewers")?,
        required_approvals: get(row, "required_approvals")?,
        allow_self_approval: get::<i64>(row, "allow_self_approval")? != 0,
        wait_timer_ms: get(row, "wait_timer_ms")?,
        timeout_ms: get(row, "timeout_ms")?,
        branches: get(row, "branches")?,
        tags: get(row, "tags")?,
        url: get(row, "url")?,
        updated_by: get(row, "updated_by")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

impl Db {
    // --- environments defined through the API ----------------------------------------------

    /// Creates or replaces the rules of environment `(e.repository, e.name)` (its secrets and
    /// variables stay). Returns its id and whether it was created.
    pub async fn put_environment(&self, e: &StoredEnvironment, now: i64) -> Result<(i64, bool)> {
        let existing = self
            .environment_id(e.repository.as_deref(), &e.name)
            .await?;
        let row = sqlx::query(
            "INSERT INTO environments (repository, name, reviewers, required_approvals, allow_self_approval,
                wait_timer_ms, timeout_ms, branches, tags, url, updated_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
             ON CONFLICT (repository, name) DO UPDATE SET reviewers = excluded.reviewers,
                required_approvals = excluded.required_approvals,
                allow_self_approval = excluded.allow_self_approval,
                wait_timer_ms = excluded.wait_timer_ms, timeout_ms = excluded.timeout_ms,
                branches = excluded.branches, tags = excluded.tags, url = excluded.url,
                updated_by = excluded.updated_by, updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(e.repository.as_deref().unwrap_or(""))
        .bind(&e.name)
        .bind(&e.reviewers)
        .bind(e.required_approvals)
        .bind(i64::from(e.allow_self_approval))
        .bind(e.wait_timer_ms)
        .bind(e.timeout_ms)
        .bind(&e.branches)
        .bind(&e.tags)
        .bind(e.url.as_deref())
        .bind(&e.updated_by)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(q("saving an environment"))?;
        Ok((get(&row, "id")?, existing.is_none()))
    }

    /// The id of a stored environment.
    pub async fn environment_id(
        &self,
        repository: Option<&str>,
        name: &str,
    ) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT id FROM environments WHERE repository = $1 AND name = $2")
            .bind(repository.unwrap_or(""))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("finding an environment"))?;
        row.map(|r| get(&r, "id")).transpose()
    }

    /// Every stored environment, by repository and name.
    pub async fn stored_environments(&self) -> Result<Vec<StoredEnvironment>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENV_COLUMNS} FROM environments ORDER BY repository, name"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing environments"))?;
        rows.iter().map(environment_from_row).collect()
    }

    /// Deletes a stored environment with its secrets and variables. `false`: there was none.
    pub async fn delete_environment(&self, repository: Option<&str>, name: &str) -> Result<bool> {
        let mut tx = self
            .begin_write()
            .await
            .map_err(q("deleting an environment"))?;
        let Some(row) =
            sqlx::query("SELECT id FROM environments WHERE repository = $1 AND name = $2")
                .bind(repository.unwrap_or(""))
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q("deleting an environment"))?
        else {
            return Ok(false);
        };
        let id: i64 = get(&row, "id")?;
        // Explicit rather than relying on ON DELETE CASCADE (SQLite needs a pragma for it).
        for sql in [
            "DELETE FROM environment_secrets WHERE environment_id = $1",
            "DELETE FROM environment_variables WHERE environment_id = $1",
            "DELETE FROM environments WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(q("deleting an environment"))?;
        }
        tx.commit().await.map_err(q("deleting an environment"))?;
        Ok(true)
    }

    /// Creates or replaces a secret of stored environment `environment` (sealed by the caller).
    pub async fn put_environment_secret(
        &self,
        environment: i64,
        name: &str,
        sealed: &[u8],
        now: i64,
    ) -> Result<()> {
        self.put_environment_setting(
            "environment_secrets",
            "saving an environment secret",
            environment,
            name,
            sealed.to_vec(),
            now,
        )
        .await
    }

    /// Creates or replaces a variable of stored environment `environment`.
    pub async fn put_environment_variable(
        &self,
        environment: i64,
        name: &str,
        value: &str,
        now: i64,
    ) -> Result<()> {
        self.put_environment_setting(
            "environment_variables",
            "saving an environment variable",
            environment,
            name,
            value.to_owned(),
            now,
        )
        .await
    }

    /// `false`: there was no such secret.
    pub async fn delete_environment_secret(&self, environment: i64, name: &str) -> Result<bool> {
        self.delete_environment_setting(
            "environment_secrets",
            "deleting an environment secret",
            environment,
            name,
        )
        .await
    }

    /// `false`: there was no such variable.
    pub async fn delete_environment_variable(&self, environment: i64, name: &str) -> Result<bool> {
        self.delete_environment_setting(
            "environment_variables",
            "deleting an environment variable",
            environment,
            name,
        )
        .await
    }

    // `environment_secrets` and `environment_variables` have the same shape (environment_id,
    // name, value, updated_at); only the value's type differs.
    async fn put_environment_setting<V>(
        &self,
        table: &'static str,
        what: &'static str,
        environment: i64,
        name: &str,
        value: V,
        now: i64,
    ) -> Result<()>
    where
        V: for<'q> sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any> + Send + 'static,
    {
        // `table` is one of two literals of this file, never input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (environment_id, name, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (environment_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
        )))
        .bind(environment)
        .bind(name)
        .bind(value)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q(what))?;
        Ok(())
    }

    async fn delete_environment_setting(
        &self,
        table: &'static str,
        what: &'static str,
        environment: i64,
        name: &str,
    ) -> Result<bool> {
        // `table` is one of two literals of this file, never input.
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE environment_id = $1 AND name = $2"
        )))
        .bind(environment)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(q(what))?;
        Ok(done.rows_affected() == 1)
    }

    /// Every stored environment's secrets (sealed), by environment and name.
    pub async fn environment_secrets(&self) -> Result<Vec<EnvironmentSetting<Vec<u8>>>> {
        let rows = sqlx::query(
            "SELECT environment_id, name, value, updated_at FROM environment_secrets ORDER BY environment_id, name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing environment secrets"))?;
        rows.iter().map(setting_from_row).collect()
    }

    /// Every stored environment's variables, by environment and name.
    pub async fn environment_variables(&self) -> Result<Vec<EnvironmentSetting<String>>> {
        let rows = sqlx::query(
            "SELECT environment_id, name, value, updated_at FROM environment_variables ORDER BY environment_id, name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing environment variables"))?;
        rows.iter().map(setting_from_row).collect()
    }
}

fn setting_from_row<V>(row: &sqlx::any::AnyRow) -> Result<EnvironmentSetting<V>>
where
    V: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    Ok(EnvironmentSetting {
        environment: get(row, "environment_id")?,
        name: get(row, "name")?,
        value: get(row, "value")?,
        updated_at: get(row, "updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::fresh_postgres;
    use super::*;

    fn production(repository: Option<&str>) -> StoredEnvironment {
        StoredEnvironment {
            repository: repository.map(str::to_owned),
            name: "production".into(),
            reviewers: r#"["alice","ops"]"#.into(),
            required_approvals: 1,
            wait_timer_ms: 30_000,
            timeout_ms: 3_600_000,
            branches: r#"["main"]"#.into(),
            tags: "[]".into(),
            url: Some("https://prod.example".into()),
            updated_by: "root".into(),
            ..StoredEnvironment::default()
        }
    }

    async fn check(db: Db) {
        let (id, created) = db
            .put_environment(&production(Some("team/app")), 10)
            .await
            .expect("put");
        assert!(created);
        let (global, _) = db
            .put_environment(&production(None), 11)
            .await
            .expect("put global");
        assert_ne!(id, global, "one per repository scope");
        let mut changed = production(Some("team/app"));
        changed.required_approvals = 2;
        changed.allow_self_approval = true;
        changed.updated_by = "bob".into();
        let (same, created) = db.put_environment(&changed, 20).await.expect("update");
        assert_eq!((same, created), (id, false));
        let all = db.stored_environments().await.expect("list");
        assert_eq!(all.len(), 2);
        // '' sorts first: the environment for every repository.
        assert_eq!(all[0].repository, None);
        let e = &all[1];
        assert_eq!(
            (
                e.required_approvals,
                e.allow_self_approval,
                e.updated_by.as_str(),
                e.created_at,
                e.updated_at
            ),
            (2, true, "bob", 10, 20)
        );
        assert_eq!(e.url.as_deref(), Some("https://prod.example"));

        db.put_environment_secret(id, "KEY", b"\x01sealed", 30)
            .await
            .expect("secret");
        db.put_environment_secret(id, "KEY", b"\x01again", 31)
            .await
            .expect("secret replaced");
        db.put_environment_variable(id, "REGION", "eu", 30)
            .await
            .expect("var");
        db.put_environment_variable(global, "REGION", "us", 30)
            .await
            .expect("var");
        let secrets = db.environment_secrets().await.expect("secrets");
        assert_eq!(secrets.len(), 1);
        assert_eq!(
            (secrets[0].environment, secrets[0].value.as_slice()),
            (id, &b"\x01again"[..])
        );
        assert!(
            db.delete_environment_variable(global, "REGION")
                .await
                .expect("delete var")
        );
        assert!(
            !db.delete_environment_variable(global, "REGION")
                .await
                .expect("delete var twice")
        );

        assert!(
            db.delete_environment(Some("team/app"), "production")
                .await
                .expect("delete")
        );
        assert!(
            !db.delete_environment(Some("team/app"), "production")
                .await
                .expect("delete twice")
        );
        assert!(
            db.environment_secrets().await.expect("secrets").is_empty(),
            "secrets go with it"
        );
        assert!(
            db.environment_variables().await.expect("vars").is_empty(),
            "variables go with it"
        );
        assert_eq!(
            db.environment_id(None, "production").await.expect("id"),
            Some(global)
        );
        assert_eq!(
            db.environment_id(Some("team/app"), "production")
                .await
                .expect("id"),
            None
        );
    }

    #[tokio::test]
    async fn stored_environments_on_sqlite() {
        let dir = test_support::tempdir();
        let db = Db::connect(&format!("sqlite://{}/state.db", dir.path().display()))
            .await
            .expect("sqlite");
        check(db).await;
    }

    #[tokio::test]
    async fn stored_environments_on_postgres() {
        let db = Db::connect(&fresh_postgres().await)
            .await
            .expect("postgres");
        check(db).await;
    }
}
