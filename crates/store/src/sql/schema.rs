//! The schema, as numbered migrations written once for both backends.
//!
//! The DDL uses two placeholders that differ between SQLite and PostgreSQL: `{id}` (an
//! auto-incrementing 64-bit primary key) and `{blob}` (a byte string). Everything else is
//! the common subset of both dialects. Integers are `BIGINT` everywhere so that the `Any`
//! driver decodes every one of them as `i64`; timestamps are milliseconds since the Unix
//! epoch, supplied by the caller (the store reads no clock).

use super::Backend;

/// `(version, statements)`, in order. Never edit a released migration: add a new one.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE repositories (
                id {id},
                name TEXT NOT NULL UNIQUE,
                clone_url TEXT NOT NULL,
                forge TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )",
            "CREATE TABLE runs (
                id {id},
                repository_id BIGINT NOT NULL REFERENCES repositories(id),
                workflow_file TEXT NOT NULL,
                workflow_name TEXT NOT NULL,
                event TEXT NOT NULL,
                git_ref TEXT NOT NULL,
                sha TEXT NOT NULL,
                actor TEXT NOT NULL,
                status TEXT NOT NULL,
                conclusion TEXT,
                reason TEXT,
                spec TEXT NOT NULL,
                cancel_requested BIGINT NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                started_at BIGINT,
                finished_at BIGINT
            )",
            "CREATE INDEX runs_repository ON runs (repository_id, id)",
            "CREATE TABLE jobs (
                id {id},
                run_id BIGINT NOT NULL REFERENCES runs(id),
                job_key TEXT NOT NULL,
                name TEXT NOT NULL,
                needs TEXT NOT NULL,
                labels TEXT NOT NULL,
                condition TEXT,
                status TEXT NOT NULL,
                result TEXT,
                reason TEXT,
                agent_id BIGINT,
                lease_expires_at BIGINT,
                attempt BIGINT NOT NULL DEFAULT 0,
                outputs TEXT,
                created_at BIGINT NOT NULL,
                started_at BIGINT,
                finished_at BIGINT,
                UNIQUE (run_id, job_key)
            )",
            "CREATE INDEX jobs_status ON jobs (status, id)",
            "CREATE TABLE steps (
                job_id BIGINT NOT NULL REFERENCES jobs(id),
                attempt BIGINT NOT NULL,
                number BIGINT NOT NULL,
                name TEXT NOT NULL,
                status TEXT NOT NULL,
                conclusion TEXT,
                started_at BIGINT,
                finished_at BIGINT,
                PRIMARY KEY (job_id, attempt, number)
            )",
            "CREATE TABLE log_chunks (
                job_id BIGINT NOT NULL REFERENCES jobs(id),
                attempt BIGINT NOT NULL,
                seq BIGINT NOT NULL,
                data {blob} NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (job_id, attempt, seq)
            )",
            "CREATE TABLE deliveries (
                delivery_id TEXT PRIMARY KEY,
                source TEXT NOT NULL,
                received_at BIGINT NOT NULL
            )",
            "CREATE TABLE agents (
                id {id},
                name TEXT NOT NULL,
                labels TEXT NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                created_at BIGINT NOT NULL,
                last_seen_at BIGINT NOT NULL
            )",
        ],
    ),
    (
        2,
        &[
            "ALTER TABLE runs ADD COLUMN concurrency_group TEXT",
            "CREATE INDEX runs_concurrency ON runs (repository_id, concurrency_group, status)",
        ],
    ),
    (
        3,
        &[
            "CREATE TABLE polled_refs (
                repository_id BIGINT NOT NULL REFERENCES repositories(id),
                git_ref TEXT NOT NULL,
                sha TEXT NOT NULL,
                PRIMARY KEY (repository_id, git_ref)
            )",
        ],
    ),
    (
        4,
        &[
            // Repositories registered through the API carry everything the server needs; the
            // forge token and webhook secret are sealed by the server (opaque bytes here).
            "ALTER TABLE repositories ADD COLUMN forge_api TEXT",
            "ALTER TABLE repositories ADD COLUMN forge_token {blob}",
            "ALTER TABLE repositories ADD COLUMN webhook_secret {blob}",
            "ALTER TABLE repositories ADD COLUMN poll_interval_ms BIGINT",
            "ALTER TABLE repositories ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'config'",
            "ALTER TABLE repositories ADD COLUMN active BIGINT NOT NULL DEFAULT 1",
            // scope: `repo:owner/name` or `org:owner`. Secret values are sealed by the server.
            "CREATE TABLE secrets (
                scope TEXT NOT NULL,
                name TEXT NOT NULL,
                value {blob} NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (scope, name)
            )",
            "CREATE TABLE variables (
                scope TEXT NOT NULL,
                name TEXT NOT NULL,
                value TEXT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (scope, name)
            )",
        ],
    ),
    (
        5,
        &[
            // What a step reported with `$GITHUB_OUTPUT` (a JSON object), e.g. an image digest.
            "ALTER TABLE steps ADD COLUMN outputs TEXT",
        ],
    ),
    (
        6,
        &[
            // An artifact of a run: its manifest (files by sha256; contents in the blob store).
            "CREATE TABLE artifacts (
                run_id BIGINT NOT NULL REFERENCES runs(id),
                name TEXT NOT NULL,
                job_id BIGINT NOT NULL REFERENCES jobs(id),
                attempt BIGINT NOT NULL,
                manifest TEXT NOT NULL,
                files BIGINT NOT NULL,
                size BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (run_id, name)
            )",
        ],
    ),
    (
        7,
        &[
            // The markdown a step appended to `$GITHUB_STEP_SUMMARY` (masked, at most 1 MiB).
            "ALTER TABLE steps ADD COLUMN summary TEXT",
        ],
    ),
    (
        8,
        &[
            // How many jobs the agent runs at once (`--capacity`); NULL for older agents.
            "ALTER TABLE agents ADD COLUMN capacity BIGINT",
        ],
    ),
];

/// One migration statement in the backend's dialect.
pub(crate) fn render(statement: &str, backend: Backend) -> String {
    let (id, blob) = match backend {
        Backend::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"),
        Backend::Postgres => ("BIGSERIAL PRIMARY KEY", "BYTEA"),
    };
    statement.replace("{id}", id).replace("{blob}", blob)
}
