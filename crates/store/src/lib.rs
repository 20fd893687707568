//! Persistent state of slipway.
//!
//! For now this crate holds storage for content: [`blob`] — content-addressed blobs
//! ([`blob::BlobStore`]) and small named records ([`blob::MetaStore`]), each with a files
//! backend ([`blob::FileStore`], the default: everything under one data directory) and an
//! S3-compatible backend ([`blob::S3Store`], through the `object_store` crate).
//!
//! Blobs become visible only after their digest verified: uploads are spooled to a local
//! file ([`blob::Spool`]) while hashed incrementally, and committed by rename (files) or by
//! a single object write (S3). A crash never leaves a visible corrupt blob.
//!
//! What it does not do (yet): the SQL state of the CI server, which will live in `store::sql`.

pub mod blob;
pub mod sql;
