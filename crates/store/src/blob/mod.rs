//! Content-addressed blobs and small named records.
//!
//! - [`Digest`]: a validated `sha256:<hex>` content address.
//! - [`Spool`] / [`SpoolFile`]: a local file an upload streams into, hashed as it is written.
//! - [`BlobStore`]: blobs by digest; [`BlobStore::commit`] makes a spooled file visible only
//!   after its digest matches, and stores a blob once however many repositories use it.
//! - [`MetaStore`]: small records under `/`-separated keys (registry tags and links).
//! - [`FileStore`] (files under one directory) and [`S3Store`] (S3-compatible object storage)
//!   implement both.
//!
//! Files layout (see `docs/registry.md`):
//!
//! ```text
//! ROOT/blobs/sha256/ab/abcdef…   blob contents, named by digest
//! ROOT/meta/<key>                small records (e.g. repositories/<name>/_manifests/tags/<tag>)
//! ROOT/uploads/<id>              upload spool files (in-flight sessions)
//! ROOT/tmp/                      temp files renamed into blobs/ and meta/
//! ```

mod digest;
mod direct;
mod file;
mod s3;
mod spool;

use std::{fmt, ops::Range, path::PathBuf, pin::Pin, time::SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use digest::{Digest, DigestError};
pub use file::FileStore;
pub use s3::{S3Options, S3Store};
pub use spool::{Spool, SpoolError, SpoolFile, Spooled};

/// A stream of blob bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// What is known about a stored blob without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobMeta {
    pub size: u64,
    /// When the blob was last written or [touched](BlobStore::touch).
    pub modified: SystemTime,
}

/// The outcome of [`BlobStore::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub size: u64,
    /// `false` when the blob was already stored (the upload was discarded).
    pub created: bool,
}

/// Errors of the blob and record stores.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{action} {path}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{action} object {key}")]
    ObjectStore { action: &'static str, key: String, source: object_store::Error },
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} not found")]
    NotFound { digest: Digest },
    #[error("invalid record key {key:?}")]
    InvalidKey { key: String },
    #[error("background task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// Content-addressed blob storage.
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug + 'static {
    /// Size and age of a blob, `None` if it is not stored.
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobMeta>, BlobError>;

    /// The blob's bytes, or the bytes of `range` (already checked against the size).
    async fn open(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<ByteStream, BlobError>;

    /// Make a spooled upload visible as blob `expected`, after checking its digest.
    /// On a mismatch the spooled file is removed and nothing becomes visible.
    async fn commit(&self, spooled: Spooled, expected: &Digest) -> Result<Committed, BlobError>;

    /// Store small content held in memory (a manifest); returns its digest.
    async fn put_bytes(&self, bytes: Bytes) -> Result<Digest, BlobError>;

    /// Read a whole (small) blob into memory.
    async fn read_bytes(&self, digest: &Digest) -> Result<Option<Bytes>, BlobError>;

    /// Mark a blob as recently used, so garbage collection's grace period protects it.
    async fn touch(&self, digest: &Digest) -> Result<(), BlobError>;

    /// Remove a blob (absent blobs are not an error).
    async fn delete(&self, digest: &Digest) -> Result<(), BlobError>;

    /// Every stored blob.
    async fn list(&self) -> Result<Vec<(Digest, BlobMeta)>, BlobError>;

    /// The local spool uploads stream into before [`commit`](BlobStore::commit).
    fn spool(&self) -> &Spool;
}

/// The direct children of a record prefix.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Children {
    /// Records directly under the prefix (names relative to it).
    pub records: Vec<String>,
    /// Sub-prefixes directly under the prefix (names relative to it, no trailing `/`).
    pub prefixes: Vec<String>,
}

/// Small records under `/`-separated keys. Keys are relative (`a/b/c`), with no empty,
/// `.` or `..` component.
#[async_trait]
pub trait MetaStore: Send + Sync + fmt::Debug + 'static {
    /// Write (or atomically replace) a record.
    async fn put(&self, key: &str, value: Bytes) -> Result<(), BlobError>;
    async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError>;
    async fn exists(&self, key: &str) -> Result<bool, BlobError>;
    /// Remove a record (absent records are not an error).
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// Every record under `prefix` (which ends with `/`), recursively, relative to it.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError>;
    /// The records and sub-prefixes directly under `prefix` (which ends with `/`).
    async fn children(&self, prefix: &str) -> Result<Children, BlobError>;
}

/// Checks a record key (or a prefix ending with `/`).
pub(crate) fn check_key(key: &str) -> Result<(), BlobError> {
    let trimmed = key.strip_suffix('/').unwrap_or(key);
    let ok = !trimmed.is_empty()
        && trimmed.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'));
    if ok { Ok(()) } else { Err(BlobError::InvalidKey { key: key.to_owned() }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in ["a", "a/b", "repositories/x/_manifests/tags/", "a.b/c_d"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a//b", "a/../b", "..", "./a", "a\\b", "/"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
