//! Environments' gates, approvals and deployment records (the delivery audit trail).
//!
//! Its migrations are numbered from 100 so that they never collide with the CI schema's in
//! `schema.rs`; they are applied after those.

/// `(version, statements)`, in order; the same placeholders as `schema::MIGRATIONS`.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[];
