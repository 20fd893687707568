//! [`Spool`]: local files that uploads stream into, hashed incrementally.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};

use super::Digest;

/// How many body chunks may wait for the disk writer: bounds memory per upload (hyper's
/// chunks are at most ~400 KiB).
const QUEUE_CHUNKS: usize = 4;
/// Write buffer of the disk writer (coalesces small chunks into fewer writes).
const WRITE_BUFFER: usize = 256 << 10;

/// A directory of upload files. Files older than an expiry are abandoned uploads.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{action} {path}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("reading the request body")]
    Body { source: Box<dyn std::error::Error + Send + Sync> },
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the upload file was removed (the session expired)")]
    Gone,
    #[error("disk writer failed")]
    Join(#[from] tokio::task::JoinError),
}

impl Spool {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Spool { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Start a new empty spool file named `id` (an opaque, path-safe session id).
    pub async fn create(&self, id: &str) -> Result<SpoolFile, SpoolError> {
        let path = self.dir.join(id);
        let dir = self.dir.clone();
        let file = tokio::task::spawn_blocking({
            let path = path.clone();
            move || -> Result<std::fs::File, SpoolError> {
                std::fs::create_dir_all(&dir).map_err(|source| SpoolError::Io { action: "creating", path: dir.clone(), source })?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|source| SpoolError::Io { action: "creating", path: path.clone(), source })
            }
        })
        .await??;
        Ok(SpoolFile { path, state: Some(State { file, hasher: Sha256::new(), size: 0 }) })
    }

    /// Remove spool files not written for longer than `age`. Returns how many were removed.
    pub async fn remove_older_than(&self, age: Duration) -> Result<usize, SpoolError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> Result<usize, SpoolError> {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(source) => return Err(SpoolError::Io { action: "listing", path: dir, source }),
            };
            let now = SystemTime::now();
            let mut removed = 0;
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                let modified = meta.modified().unwrap_or(now);
                if meta.is_file() && now.duration_since(modified).unwrap_or_default() > age {
                    if std::fs::remove_file(entry.path()).is_ok() {
                        removed += 1;
                    }
                }
            }
            Ok(removed)
        })
        .await?
    }
}

struct State {
    file: std::fs::File,
    hasher: Sha256,
    size: u64,
}

/// An upload in progress: a spool file plus the running hash of its content.
pub struct SpoolFile {
    path: PathBuf,
    /// `None` only if a writer task was lost (cancelled mid-append); then the file is unusable.
    state: Option<State>,
}

impl std::fmt::Debug for SpoolFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolFile").field("path", &self.path).field("size", &self.size()).finish()
    }
}

/// A finished spool file: its path, size and digest.
#[derive(Debug)]
pub struct Spooled {
    pub path: PathBuf,
    pub size: u64,
    pub digest: Digest,
}

impl SpoolFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.size)
    }

    /// Append a body, streaming: chunks go through a bounded queue to a blocking writer that
    /// writes and hashes them, so a layer is never held in memory. With `limit`, fails with
    /// [`SpoolError::TooLarge`] once the file would exceed it. Bytes received before an error
    /// stay written (the session can be resumed from [`size`](Self::size)).
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future loses the file's state. Callers run it in a task.
    pub async fn append<S, E>(&mut self, body: S, limit: Option<u64>) -> Result<u64, SpoolError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::error::Error + Send + Sync + 'static,
    {
        let mut state = self.state.take().ok_or(SpoolError::Gone)?;
        let start = state.size;
        let path = self.path.clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE_CHUNKS);
        let writer = tokio::task::spawn_blocking(move || {
            let mut out = std::io::BufWriter::with_capacity(WRITE_BUFFER, &mut state.file);
            let mut result = Ok(());
            while let Some(chunk) = rx.blocking_recv() {
                if let Err(source) = out.write_all(&chunk) {
                    result = Err(SpoolError::Io { action: "writing", path: path.clone(), source });
                    break;
                }
                state.hasher.update(&chunk);
                state.size += chunk.len() as u64;
            }
            if let (Ok(()), Err(source)) = (&result, out.flush()) {
                result = Err(SpoolError::Io { action: "writing", path: path.clone(), source });
            }
            drop(out);
            (state, result)
        });
        let mut received = 0u64;
        let mut body = std::pin::pin!(body);
        let mut read_result = Ok(());
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if let Some(limit) = limit {
                        if start + received > limit {
                            read_result = Err(SpoolError::TooLarge { limit });
                            break;
                        }
                    }
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(source) => {
                    read_result = Err(SpoolError::Body { source: Box::new(source) });
                    break;
                }
            }
        }
        drop(tx);
        let (state, write_result) = writer.await?;
        let written = state.size - start;
        self.state = Some(state);
        write_result?;
        read_result?;
        Ok(written)
    }

    /// Flush to disk and return the file with its digest.
    pub async fn finish(mut self) -> Result<Spooled, SpoolError> {
        let state = self.state.take().ok_or(SpoolError::Gone)?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            state.file.sync_all().map_err(|source| SpoolError::Io { action: "syncing", path: path.clone(), source })?;
            Ok(Spooled { path, size: state.size, digest: Digest::from_sha256(state.hasher.finalize().as_slice()) })
        })
        .await?
    }

    /// Remove the spool file.
    pub async fn discard(self) {
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}
