//! Store queries for environments defined through the API (merged over the config file's).
//!
//! Its migrations are numbered from 500.

/// `(version, statements)`, in order; the same placeholders as `schema::MIGRATIONS`.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[];
