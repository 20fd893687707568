//! Store queries for local users and their roles (the web UI's sign-in and admin pages).
//!
//! Its migrations are numbered from 400.

/// `(version, statements)`, in order; the same placeholders as `schema::MIGRATIONS`.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[];
