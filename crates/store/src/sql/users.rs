//! Local users defined through the API (the configuration file's `[[user]]`s are not stored
//! here) and their API tokens.
//!
//! Its migrations are numbered from 400.
//!
//! A user has a role (`admin`, `maintainer`, `viewer` — checked by the server, opaque here),
//! groups (environments name groups as reviewers), an optional argon2 password hash (the
//! server hashes; the store never sees a password) and a disabled flag. A token is stored as
//! the hex SHA-256 of its value: the value itself is shown once, at creation, and never
//! kept. Deleting a user deletes their tokens.

use super::{Db, Result, get, q};

/// `(version, statements)`, in order; the same placeholders as `schema::MIGRATIONS`.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[(
    400,
    &[
        // `user_groups`: newline-separated group names.
        "CREATE TABLE users (
            id {id},
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            user_groups TEXT NOT NULL,
            password_hash TEXT,
            disabled BIGINT NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        )",
        "CREATE TABLE user_tokens (
            id {id},
            user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at BIGINT NOT NULL,
            last_used_at BIGINT,
            UNIQUE (user_id, name)
        )",
    ],
)];

/// A user's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(pub i64);

/// An API token's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenId(pub i64);

/// What can be set on a user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserSettings {
    pub role: String,
    pub groups: Vec<String>,
    /// An argon2 PHC string (made by the server).
    pub password_hash: Option<String>,
    pub disabled: bool,
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub name: String,
    pub settings: UserSettings,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An API token as stored (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: TokenId,
    pub user: UserId,
    pub user_name: String,
    pub name: String,
    /// Hex SHA-256 of the token's value.
    pub token_hash: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

const USER_COLUMNS: &str =
    "id, name, role, user_groups, password_hash, disabled, created_at, updated_at";
const TOKEN_COLUMNS: &str =
    "t.id, t.user_id, u.name AS user_name, t.name, t.token_hash, t.created_at, t.last_used_at";

fn join_groups(groups: &[String]) -> String {
    groups.join("\n")
}

fn user_from_row(row: &sqlx::any::AnyRow) -> Result<UserRecord> {
    let groups: String = get(row, "user_groups")?;
    Ok(UserRecord {
        id: UserId(get(row, "id")?),
        name: get(row, "name")?,
        settings: UserSettings {
            role: get(row, "role")?,
            groups: groups
                .split('\n')
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect(),
            password_hash: get(row, "password_hash")?,
            disabled: get::<i64>(row, "disabled")? != 0,
        },
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn token_from_row(row: &sqlx::any::AnyRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id: TokenId(get(row, "id")?),
        user: UserId(get(row, "user_id")?),
        user_name: get(row, "user_name")?,
        name: get(row, "name")?,
        token_hash: get(row, "token_hash")?,
        created_at: get(row, "created_at")?,
        last_used_at: get(row, "last_used_at")?,
    })
}

/// Binds `$1` to `$6` of a user statement: the name, the settings and the time.
fn bind_user<'q>(query: UserQuery<'q>, name: &str, s: &UserSettings, now: i64) -> UserQuery<'q> {
    query
        .bind(name)
        .bind(&s.role)
        .bind(join_groups(&s.groups))
        .bind(s.password_hash.as_deref())
        .bind(i64::from(s.disabled))
        .bind(now)
}

type UserQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

impl Db {
    /// Creates the user `name`; `None` when a user of that name exists.
    pub async fn create_user(
        &self,
        name: &str,
        s: &UserSettings,
        now: i64,
    ) -> Result<Option<UserId>> {
        let row = bind_user(
            sqlx::query(
                "INSERT INTO users (name, role, user_groups, password_hash, disabled, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)
                 ON CONFLICT (name) DO NOTHING
                 RETURNING id",
            ),
            name,
            s,
            now,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(q("creating a user"))?;
        row.map(|r| get(&r, "id").map(UserId)).transpose()
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(q("listing users"))?;
        rows.iter().map(user_from_row).collect()
    }

    /// The user `name`.
    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("reading a user"))?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Replaces the settings of the user `name`; `false` when there is no such user.
    pub async fn update_user(&self, name: &str, s: &UserSettings, now: i64) -> Result<bool> {
        let done = bind_user(
            sqlx::query(
                "UPDATE users SET role = $2, user_groups = $3, password_hash = $4, disabled = $5, updated_at = $6
                 WHERE name = $1",
            ),
            name,
            s,
            now,
        )
        .execute(&self.pool)
        .await
        .map_err(q("updating a user"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes the user `name` and their tokens; `false` when there is no such user.
    pub async fn delete_user(&self, name: &str) -> Result<bool> {
        let mut tx = self.begin_write().await.map_err(q("deleting a user"))?;
        sqlx::query(
            "DELETE FROM user_tokens WHERE user_id IN (SELECT id FROM users WHERE name = $1)",
        )
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(q("deleting a user's tokens"))?;
        let done = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q("deleting a user"))?;
        tx.commit().await.map_err(q("deleting a user"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Adds a token named `token_name` to the user `user`; `None` when the user does not
    /// exist or already has a token of that name.
    pub async fn create_token(
        &self,
        user: &str,
        token_name: &str,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<TokenId>> {
        let row = sqlx::query(
            "INSERT INTO user_tokens (user_id, name, token_hash, created_at)
             SELECT id, $2, $3, $4 FROM users WHERE name = $1
             ON CONFLICT (user_id, name) DO NOTHING
             RETURNING id",
        )
        .bind(user)
        .bind(token_name)
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("creating a token"))?;
        row.map(|r| get(&r, "id").map(TokenId)).transpose()
    }

    /// The tokens of `user` (every user's with `None`), oldest first.
    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM user_tokens t JOIN users u ON u.id = t.user_id
             WHERE ($1 IS NULL OR u.name = $1) ORDER BY t.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user)
            .fetch_all(&self.pool)
            .await
            .map_err(q("listing tokens"))?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes (deletes) token `id` of the user `user`; `false` when they have no such token.
    pub async fn revoke_token(&self, user: &str, id: TokenId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM user_tokens WHERE id = $1 AND user_id IN (SELECT id FROM users WHERE name = $2)")
            .bind(id.0)
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(q("revoking a token"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Records when tokens were last used (a time never moves back).
    pub async fn touch_tokens(&self, used: &[(TokenId, i64)]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await.map_err(q("recording token use"))?;
        for (id, at) in used {
            sqlx::query(
                "UPDATE user_tokens SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
            )
            .bind(id.0)
            .bind(*at)
            .execute(&mut *tx)
            .await
            .map_err(q("recording token use"))?;
        }
        tx.commit().await.map_err(q("recording token use"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each test on a fresh SQLite file and a fresh PostgreSQL database.
    async fn each<F, Fut>(f: F)
    where
        F: Fn(Db) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let dir = test_support::tempdir();
        let sqlite = Db::connect(&format!("sqlite://{}/state.db", dir.path().display()))
            .await
            .expect("sqlite");
        eprintln!("backend: sqlite");
        f(sqlite).await;
        let postgres = Db::connect(&super::super::tests::fresh_postgres().await)
            .await
            .expect("postgres");
        eprintln!("backend: postgres");
        f(postgres).await;
    }

    fn settings(role: &str, groups: &[&str]) -> UserSettings {
        UserSettings {
            role: role.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            password_hash: None,
            disabled: false,
        }
    }

    #[tokio::test]
    async fn users_are_created_once_updated_and_deleted_with_their_tokens() {
        each(|db| async move {
            let bob = db
                .create_user("bob", &settings("maintainer", &["ops", "dev"]), 10)
                .await
                .expect("create");
            assert!(bob.is_some());
            assert_eq!(
                db.create_user("bob", &settings("viewer", &[]), 11)
                    .await
                    .expect("dup"),
                None
            );
            db.create_user("amy", &settings("admin", &[]), 12)
                .await
                .expect("amy");
            let all = db.users().await.expect("list");
            assert_eq!(
                all.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
                ["amy", "bob"]
            );
            assert_eq!(all[1].settings.groups, ["ops", "dev"]);
            assert_eq!(all[0].settings.groups, Vec::<String>::new());

            let mut s = settings("viewer", &["ops"]);
            s.password_hash = Some("$argon2id$x".into());
            s.disabled = true;
            assert!(db.update_user("bob", &s, 20).await.expect("update"));
            assert!(
                !db.update_user("nobody", &s, 20)
                    .await
                    .expect("update missing")
            );
            let b = db.user("bob").await.expect("read").expect("exists");
            assert_eq!((b.settings, b.created_at, b.updated_at), (s, 10, 20));

            let t = db
                .create_token("bob", "ci", "aa11", 30)
                .await
                .expect("token")
                .expect("new");
            assert_eq!(
                db.create_token("bob", "ci", "bb22", 31)
                    .await
                    .expect("dup name"),
                None
            );
            assert_eq!(
                db.create_token("nobody", "ci", "cc33", 31)
                    .await
                    .expect("no user"),
                None
            );
            db.create_token("amy", "ci", "dd44", 32)
                .await
                .expect("amy token")
                .expect("new");
            assert!(
                db.create_token("amy", "other", "aa11", 33).await.is_err(),
                "token hashes are unique"
            );

            db.touch_tokens(&[(t, 50)]).await.expect("touch");
            db.touch_tokens(&[(t, 40)]).await.expect("older touch");
            let bobs = db.tokens(Some("bob")).await.expect("tokens");
            assert_eq!(bobs.len(), 1);
            assert_eq!(
                (bobs[0].name.as_str(), bobs[0].user_name.as_str()),
                ("ci", "bob")
            );
            assert_eq!(
                (bobs[0].token_hash.as_str(), bobs[0].last_used_at),
                ("aa11", Some(50))
            );
            assert_eq!(db.tokens(None).await.expect("all").len(), 2);

            assert!(!db.revoke_token("amy", t).await.expect("not amy's"));
            assert!(db.revoke_token("bob", t).await.expect("revoke"));
            assert!(db.tokens(Some("bob")).await.expect("none left").is_empty());

            db.create_token("bob", "again", "ee55", 60)
                .await
                .expect("token")
                .expect("new");
            assert!(db.delete_user("bob").await.expect("delete"));
            assert!(!db.delete_user("bob").await.expect("gone"));
            let left = db.tokens(None).await.expect("tokens");
            assert_eq!(
                left.iter()
                    .map(|t| t.user_name.as_str())
                    .collect::<Vec<_>>(),
                ["amy"]
            );
            // The name can be used again.
            assert!(
                db.create_user("bob", &settings("viewer", &[]), 70)
                    .await
                    .expect("again")
                    .is_some()
            );
        })
        .await;
    }
}
