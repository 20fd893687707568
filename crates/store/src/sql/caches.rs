//! Store queries for the actions/cache entries kept by the server (metadata; contents in the blob store).
//!
//! Its migrations are numbered from 600.
//!
//! An entry is keyed by (repository, scope, key, version): the scope is the git ref of the
//! run that saved it (`refs/heads/main`, `refs/pull/7/head`), the version a digest of the
//! cached paths. Saving is reserve → upload → commit: [`Db::reserve_cache`] inserts a row
//! without a digest (the unique key makes the first writer win), [`Db::commit_cache`] sets
//! the digest of the uploaded archive; only committed rows are ever found, listed or
//! counted, so an entry is never visible half-written. A reservation whose job died is
//! taken over once it is older than the caller's `stale_before`.

use super::{Db, RepoId, Result, get, q};

/// `(version, statements)`, in order; the same placeholders as `schema::MIGRATIONS`.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[(
    600,
    &[
        "CREATE TABLE cache_entries (
            id {id},
            repository_id BIGINT NOT NULL REFERENCES repositories(id),
            scope TEXT NOT NULL,
            cache_key TEXT NOT NULL,
            version TEXT NOT NULL,
            digest TEXT,
            size BIGINT NOT NULL DEFAULT 0,
            job_id BIGINT NOT NULL,
            reserved_at BIGINT NOT NULL,
            created_at BIGINT,
            last_used_at BIGINT NOT NULL,
            UNIQUE (repository_id, scope, cache_key, version)
        )",
        "CREATE INDEX cache_entries_lookup ON cache_entries (repository_id, version, scope, created_at)",
        "CREATE INDEX cache_entries_digest ON cache_entries (digest)",
    ],
)];

/// A cache entry; `digest` and `created_at` are `None` while it is only reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub id: i64,
    pub repository: RepoId,
    pub scope: String,
    pub key: String,
    pub version: String,
    /// `sha256:<hex>` of the archive in the blob store.
    pub digest: Option<String>,
    pub size: i64,
    /// The job that reserved (and saved) it.
    pub job: i64,
    pub reserved_at: i64,
    pub created_at: Option<i64>,
    pub last_used_at: i64,
}

const COLUMNS: &str =
    "id, repository_id, scope, cache_key, version, digest, size, job_id, reserved_at, created_at, last_used_at";

fn entry_from_row(row: &sqlx::any::AnyRow) -> Result<CacheEntry> {
    Ok(CacheEntry {
        id: get(row, "id")?,
        repository: RepoId(get(row, "repository_id")?),
        scope: get(row, "scope")?,
        key: get(row, "cache_key")?,
        version: get(row, "version")?,
        digest: get(row, "digest")?,
        size: get(row, "size")?,
        job: get(row, "job_id")?,
        reserved_at: get(row, "reserved_at")?,
        created_at: get(row, "created_at")?,
        last_used_at: get(row, "last_used_at")?,
    })
}

/// What [`Db::reserve_cache`] reserves.
#[derive(Debug, Clone)]
pub struct CacheReservation<'a> {
    pub repository: RepoId,
    pub scope: &'a str,
    pub key: &'a str,
    pub version: &'a str,
    pub job: i64,
}

impl Db {
    /// Reserves the entry for `r.job`: its id, or `None` when the entry exists or another
    /// job reserved it at or after `stale_before` (first writer wins). A job may reserve
    /// again what it reserved (a retried attempt).
    pub async fn reserve_cache(&self, r: &CacheReservation<'_>, now: i64, stale_before: i64) -> Result<Option<i64>> {
        // `$1` to `$6` of both statements.
        let bind = |sql: &'static str| {
            sqlx::query(sql)
                .bind(r.repository.0)
                .bind(r.scope)
                .bind(r.key)
                .bind(r.version)
                .bind(r.job)
                .bind(now)
        };
        let inserted = bind(
            "INSERT INTO cache_entries (repository_id, scope, cache_key, version, job_id, reserved_at, last_used_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (repository_id, scope, cache_key, version) DO NOTHING
             RETURNING id",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(q("reserving a cache entry"))?;
        if let Some(row) = inserted {
            return Ok(Some(get(&row, "id")?));
        }
        // A reservation left by a job that died, or by an earlier attempt of this job: take it
        // over (one winner, by the condition).
        let taken = bind(
            "UPDATE cache_entries SET job_id = $5, reserved_at = $6, last_used_at = $6
             WHERE repository_id = $1 AND scope = $2 AND cache_key = $3 AND version = $4
               AND digest IS NULL AND (reserved_at < $7 OR job_id = $5)
             RETURNING id",
        )
        .bind(stale_before)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("taking over a stale cache reservation"))?;
        taken.map(|row| get(&row, "id")).transpose()
    }

    /// The reservation `id`, if `job` holds it and it is not committed.
    pub async fn cache_reservation(&self, id: i64, job: i64) -> Result<Option<CacheEntry>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM cache_entries WHERE id = $1 AND job_id = $2 AND digest IS NULL"
        )))
        .bind(id)
        .bind(job)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("reading a cache reservation"))?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// Commits the reservation `id` held by `job` with its archive. `false`: the job does not
    /// hold it (any more), nothing changed.
    pub async fn commit_cache(&self, id: i64, job: i64, digest: &str, size: i64, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE cache_entries SET digest = $3, size = $4, created_at = $5, last_used_at = $5
             WHERE id = $1 AND job_id = $2 AND digest IS NULL",
        )
        .bind(id)
        .bind(job)
        .bind(digest)
        .bind(size)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("committing a cache entry"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The committed entry `keys` select with `version`, searching `scopes` in order: in each
    /// scope `keys[0]` exactly, then every key as a prefix (newest first).
    pub async fn find_cache(
        &self,
        repository: RepoId,
        scopes: &[String],
        keys: &[String],
        version: &str,
    ) -> Result<Option<CacheEntry>> {
        let exact = format!(
            "SELECT {COLUMNS} FROM cache_entries
             WHERE repository_id = $1 AND scope = $2 AND version = $3 AND digest IS NOT NULL AND cache_key = $4"
        );
        // substr/length instead of LIKE: no wildcard escaping, and case-sensitive on both backends.
        let prefix = format!(
            "SELECT {COLUMNS} FROM cache_entries
             WHERE repository_id = $1 AND scope = $2 AND version = $3 AND digest IS NOT NULL
               AND substr(cache_key, 1, length($4)) = $4
             ORDER BY created_at DESC, id DESC LIMIT 1"
        );
        for scope in scopes {
            let mut attempts: Vec<(&str, &String)> = Vec::new();
            if let Some(first) = keys.first() {
                attempts.push((exact.as_str(), first));
            }
            attempts.extend(keys.iter().map(|k| (prefix.as_str(), k)));
            for (sql, key) in attempts {
                let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                    .bind(repository.0)
                    .bind(scope)
                    .bind(version)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(q("looking up a cache entry"))?;
                if let Some(row) = row {
                    return entry_from_row(&row).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// Marks an entry as used now (eviction removes the least recently used first).
    pub async fn touch_cache(&self, id: i64, now: i64) -> Result<()> {
        sqlx::query("UPDATE cache_entries SET last_used_at = $2 WHERE id = $1 AND last_used_at < $2")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(q("marking a cache entry used"))?;
        Ok(())
    }

    /// The committed entries of a repository, most recently used first; `key` and `scope`
    /// filter exactly.
    pub async fn caches(&self, repository: RepoId, key: Option<&str>, scope: Option<&str>) -> Result<Vec<CacheEntry>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM cache_entries
             WHERE repository_id = $1 AND digest IS NOT NULL AND ($2 IS NULL OR cache_key = $2)
               AND ($3 IS NULL OR scope = $3)
             ORDER BY last_used_at DESC, id DESC"
        )))
        .bind(repository.0)
        .bind(key)
        .bind(scope)
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing cache entries"))?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Deletes entries of a repository (committed or not) by id; returns the ones deleted.
    pub async fn delete_caches(&self, repository: RepoId, ids: &[i64]) -> Result<Vec<CacheEntry>> {
        let mut deleted = Vec::new();
        for id in ids {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM cache_entries WHERE repository_id = $1 AND id = $2 RETURNING {COLUMNS}"
            )))
            .bind(repository.0)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("deleting a cache entry"))?;
            if let Some(row) = row {
                deleted.push(entry_from_row(&row)?);
            }
        }
        Ok(deleted)
    }

    /// Deletes the least recently used committed entries of a repository until the rest
    /// take at most `limit` bytes; returns the ones deleted.
    pub async fn evict_caches(&self, repository: RepoId, limit: i64) -> Result<Vec<CacheEntry>> {
        let entries = self.caches(repository, None, None).await?;
        let mut total = 0i64;
        let mut victims = Vec::new();
        for e in entries {
            total = total.saturating_add(e.size);
            if total > limit {
                victims.push(e.id);
            }
        }
        if victims.is_empty() {
            return Ok(Vec::new());
        }
        self.delete_caches(repository, &victims).await
    }

    /// Deletes a repository's committed entries last used before `unused_before` and its
    /// reservations made before `stale_before` and never committed; returns them.
    pub async fn expire_caches(&self, repository: RepoId, unused_before: i64, stale_before: i64) -> Result<Vec<CacheEntry>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM cache_entries WHERE repository_id = $1
               AND ((digest IS NOT NULL AND last_used_at < $2) OR (digest IS NULL AND reserved_at < $3))
             RETURNING {COLUMNS}"
        )))
        .bind(repository.0)
        .bind(unused_before)
        .bind(stale_before)
        .fetch_all(&self.pool)
        .await
        .map_err(q("expiring cache entries"))?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Whether any cache entry or artifact still refers to the blob `digest`
    /// (`sha256:<hex>`), so that deleting an entry does not remove a blob still in use.
    pub async fn cache_blob_in_use(&self, digest: &str) -> Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM cache_entries WHERE digest = $1")
            .bind(digest)
            .fetch_one(&self.pool)
            .await
            .map_err(q("checking a blob's cache entries"))?;
        if get::<i64>(&row, "n")? > 0 {
            return Ok(true);
        }
        // Artifact manifests list their files' SHA-256 in hex (opaque JSON here).
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let row = sqlx::query("SELECT COUNT(*) AS n FROM artifacts WHERE manifest LIKE $1")
            .bind(format!("%{hex}%"))
            .fetch_one(&self.pool)
            .await
            .map_err(q("checking a blob's artifacts"))?;
        Ok(get::<i64>(&row, "n")? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::backends;
    use super::*;

    fn res<'a>(repository: RepoId, scope: &'a str, key: &'a str, job: i64) -> CacheReservation<'a> {
        CacheReservation { repository, scope, key, version: "v1", job }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sixteen_concurrent_reservations_of_one_key_make_one_winner() {
        for (db, _guard) in backends().await {
            eprintln!("backend: {:?}", db.backend());
            let repo = db.upsert_repository("team/app", "git://x/app.git", "gitea", 1).await.expect("repo");
            let mut tasks = tokio::task::JoinSet::new();
            for job in 0..16 {
                let db = db.clone();
                tasks.spawn(async move {
                    db.reserve_cache(&res(repo, "refs/heads/main", "race", job), 100 + job, 0).await.expect("reserve")
                });
            }
            let mut won = Vec::new();
            while let Some(r) = tasks.join_next().await {
                won.extend(r.expect("task"));
            }
            assert_eq!(won.len(), 1, "{won:?}");
        }
    }

    #[tokio::test]
    async fn first_writer_wins_and_only_committed_entries_are_found() {
        for (db, _guard) in backends().await {
            eprintln!("backend: {:?}", db.backend());
            let repo = db.upsert_repository("team/app", "git://x/app.git", "gitea", 1).await.expect("repo");
            let main = "refs/heads/main";
            let a = db.reserve_cache(&res(repo, main, "deps-1", 10), 100, 0).await.expect("reserve").expect("first wins");
            assert_eq!(db.reserve_cache(&res(repo, main, "deps-1", 11), 101, 0).await.expect("reserve"), None);
            assert_eq!(db.reserve_cache(&res(repo, main, "deps-1", 10), 101, 0).await.expect("reserve"), Some(a), "a retried attempt");
            // Reserved, not committed: invisible.
            assert_eq!(db.find_cache(repo, &s(&[main]), &s(&["deps-1"]), "v1").await.expect("find"), None);
            assert!(!db.commit_cache(a, 11, "sha256:aa", 5, 102).await.expect("commit"), "another job's reservation");
            assert!(db.commit_cache(a, 10, "sha256:aa", 5, 102).await.expect("commit"));
            assert!(!db.commit_cache(a, 10, "sha256:bb", 5, 103).await.expect("commit"), "immutable");
            let found = db.find_cache(repo, &s(&[main]), &s(&["deps-1"]), "v1").await.expect("find").expect("hit");
            assert_eq!((found.key.as_str(), found.digest.as_deref()), ("deps-1", Some("sha256:aa")));
            assert_eq!(db.find_cache(repo, &s(&[main]), &s(&["deps-1"]), "v2").await.expect("find"), None, "other version");
            // Prefixes, newest first; the exact key first; scopes in order.
            let b = db.reserve_cache(&res(repo, main, "deps-2", 12), 200, 0).await.expect("reserve").expect("new key");
            assert!(db.commit_cache(b, 12, "sha256:bb", 7, 200).await.expect("commit"));
            let k = |e: Option<CacheEntry>| e.map(|e| e.key);
            assert_eq!(k(db.find_cache(repo, &s(&[main]), &s(&["deps-3", "deps-"]), "v1").await.expect("f")), Some("deps-2".into()));
            assert_eq!(k(db.find_cache(repo, &s(&[main]), &s(&["deps-1", "deps-"]), "v1").await.expect("f")), Some("deps-1".into()));
            assert_eq!(k(db.find_cache(repo, &s(&[main]), &s(&["DEPS-"]), "v1").await.expect("f")), None, "case-sensitive");
            assert_eq!(k(db.find_cache(repo, &s(&[main]), &s(&["%"]), "v1").await.expect("f")), None, "no wildcards");
            let pr = "refs/pull/1/head";
            assert_eq!(k(db.find_cache(repo, &s(&[pr]), &s(&["deps-"]), "v1").await.expect("f")), None);
            assert_eq!(k(db.find_cache(repo, &s(&[pr, main]), &s(&["deps-"]), "v1").await.expect("f")), Some("deps-2".into()));
            // A stale reservation is taken over by one job.
            let c = db.reserve_cache(&res(repo, pr, "deps-9", 20), 300, 0).await.expect("reserve").expect("new");
            assert_eq!(db.reserve_cache(&res(repo, pr, "deps-9", 21), 301, 300).await.expect("reserve"), None, "not stale yet");
            assert_eq!(db.reserve_cache(&res(repo, pr, "deps-9", 21), 400, 350).await.expect("reserve"), Some(c));
            assert!(!db.commit_cache(c, 20, "sha256:cc", 1, 401).await.expect("commit"), "the old holder lost it");
            assert!(db.cache_reservation(c, 21).await.expect("reservation").is_some());
            assert!(db.commit_cache(c, 21, "sha256:cc", 1, 401).await.expect("commit"));
            // Listing, LRU eviction, blobs in use.
            db.touch_cache(a, 500).await.expect("touch");
            let listed: Vec<String> = db.caches(repo, None, None).await.expect("list").into_iter().map(|e| e.key).collect();
            assert_eq!(listed, ["deps-1", "deps-9", "deps-2"]);
            let evicted: Vec<String> = db.evict_caches(repo, 5).await.expect("evict").into_iter().map(|e| e.key).collect();
            assert_eq!(evicted, ["deps-9", "deps-2"], "the least recently used beyond 5 bytes");
            assert!(db.cache_blob_in_use("sha256:aa").await.expect("in use"));
            // Expiry: unused entries and abandoned reservations.
            let d = db.reserve_cache(&res(repo, main, "left-behind", 30), 600, 0).await.expect("reserve").expect("new");
            let expired = db.expire_caches(repo, 400, 500).await.expect("expire");
            assert!(expired.is_empty(), "a used at 500, d reserved at 600: {expired:?}");
            let expired: Vec<i64> = db.expire_caches(repo, 501, 601).await.expect("expire").into_iter().map(|e| e.id).collect();
            assert_eq!(expired.len(), 2);
            assert!(expired.contains(&a) && expired.contains(&d), "{expired:?}");
            let a = db.reserve_cache(&res(repo, main, "deps-1", 10), 700, 0).await.expect("reserve").expect("new again");
            assert!(db.commit_cache(a, 10, "sha256:aa", 5, 700).await.expect("commit"));
            assert!(!db.cache_blob_in_use("sha256:bb").await.expect("in use"));
            assert_eq!(db.delete_caches(repo, &[a]).await.expect("delete").len(), 1);
            assert!(db.caches(repo, None, None).await.expect("list").is_empty());
        }
    }
}
