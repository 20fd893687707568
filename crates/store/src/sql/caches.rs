//! Store queries for the actions/cache entries kept by the server (metadata; contents in the blob store).
//!
//! Its migrations are numbered from 600.

/// `(version, statements)`, in order; the same placeholders as `schema::MIGRATIONS`.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[];
