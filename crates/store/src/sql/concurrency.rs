//! Store queries for job-level concurrency groups and per-job cancellation.
//!
//! Its migrations are numbered from 300.

/// `(version, statements)`, in order; the same placeholders as `schema::MIGRATIONS`.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[];
