//! What GitOps agents report: applications, their sync and health status, sync history.
//!
//! Its migrations are numbered from 200 (after the CI schema's and the delivery ones).

/// `(version, statements)`, in order; the same placeholders as `schema::MIGRATIONS`.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[];
