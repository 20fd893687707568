//! Garbage collection: remove blobs no manifest references, and abandoned upload files.
//!
//! Mark: every manifest revision of every repository, and the blobs and child manifests it
//! references. Sweep: every stored blob not marked, unless it was written or touched within
//! the grace period. Safe while pushes run: an upload becomes a blob with a fresh time, and
//! a manifest push touches every blob it references before checking it exists, so a blob a
//! push relies on is younger than the grace period; each candidate is re-checked right
//! before removal. Manifests themselves (tagged or not) are never removed here — delete
//! them through the API first.

use std::{
    collections::HashSet,
    time::{Duration, SystemTime},
};

use store::blob::{BlobError, BlobStore, Digest, MetaStore, SpoolError};

use crate::{api::repositories, manifest::Manifest};

#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Blobs written or used within this period are kept even if unreferenced.
    pub grace: Duration,
    /// Upload spool files idle for longer than this are removed.
    pub upload_expiry: Duration,
    /// Report what would be removed, remove nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions { grace: Duration::from_secs(3600), upload_expiry: Duration::from_secs(3600), dry_run: false }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub repositories: usize,
    pub manifests: usize,
    pub blobs_kept: usize,
    pub blobs_removed: usize,
    pub bytes_removed: u64,
    pub uploads_removed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("{action}")]
    Store { action: String, source: BlobError },
    #[error("removing abandoned uploads")]
    Spool { source: SpoolError },
}

fn store_err(action: impl Into<String>) -> impl FnOnce(BlobError) -> GcError {
    let action = action.into();
    move |source| GcError::Store { action, source }
}

/// Run one collection.
pub async fn collect(blobs: &dyn BlobStore, meta: &dyn MetaStore, options: &GcOptions) -> Result<GcReport, GcError> {
    let started = SystemTime::now();
    let mut report = GcReport::default();
    let mut marked: HashSet<Digest> = HashSet::new();
    let repos = repositories(meta).await.map_err(store_err("listing repositories"))?;
    report.repositories = repos.len();
    for repo in &repos {
        let prefix = format!("repositories/{repo}/_manifests/revisions/sha256/");
        for hex in meta.list(&prefix).await.map_err(store_err(format!("listing manifests of {repo}")))? {
            let Ok(digest) = Digest::parse(&format!("sha256:{hex}")) else { continue };
            report.manifests += 1;
            if !marked.insert(digest.clone()) {
                continue;
            }
            let Some(bytes) = blobs.read_bytes(&digest).await.map_err(store_err(format!("reading manifest {digest}")))? else { continue };
            if let Ok((manifest, _)) = Manifest::parse(&bytes, None)
                && let Ok(refs) = manifest.references() {
                    marked.extend(refs.blobs);
                    marked.extend(refs.manifests);
                }
        }
    }
    let cutoff = started.checked_sub(options.grace).unwrap_or(SystemTime::UNIX_EPOCH);
    for (digest, blob) in blobs.list().await.map_err(store_err("listing blobs"))? {
        if marked.contains(&digest) || blob.modified > cutoff {
            report.blobs_kept += 1;
            continue;
        }
        // Re-check just before removing: a push may have touched it since the listing.
        match blobs.stat(&digest).await.map_err(store_err(format!("reading blob {digest}")))? {
            Some(now) if now.modified <= cutoff => {}
            _ => {
                report.blobs_kept += 1;
                continue;
            }
        }
        if !options.dry_run {
            blobs.delete(&digest).await.map_err(store_err(format!("removing blob {digest}")))?;
        }
        tracing::info!(%digest, size = blob.size, dry_run = options.dry_run, "Unreferenced blob removed.");
        report.blobs_removed += 1;
        report.bytes_removed += blob.size;
    }
    if !options.dry_run {
        report.uploads_removed = blobs.spool().remove_older_than(options.upload_expiry).await.map_err(|source| GcError::Spool { source })?;
    }
    Ok(report)
}
