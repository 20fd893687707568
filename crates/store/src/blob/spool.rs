//! [`Spool`]: local files that uploads stream into, hashed incrementally.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};

use super::{
    direct::{self, AlignedBuf, ALIGN},
    Digest,
};

/// Write unit of the disk writer (body chunks are coalesced into aligned buffers this big).
const WRITE_BUFFER: usize = 512 << 10;
/// Buffers per upload: one filling while the other is written (bounds memory: the disk
/// writes a buffer much faster than a client fills one).
const BUFFERS: usize = 2;

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
    #[error("an earlier write to the upload file failed; the upload must start again")]
    Failed,
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
        let (file, direct) = tokio::task::spawn_blocking({
            let path = path.clone();
            move || -> Result<(std::fs::File, bool), SpoolError> {
                std::fs::create_dir_all(&dir).map_err(|source| SpoolError::Io { action: "creating", path: dir.clone(), source })?;
                direct::create_new(&path).map_err(|source| SpoolError::Io { action: "creating", path: path.clone(), source })
            }
        })
        .await??;
        let state = State { disk: Disk { file, direct, written: 0 }, tail: Vec::new(), hasher: Sha256::new(), size: 0, failed: false };
        Ok(SpoolFile { path, state: Some(state) })
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

/// The spool file on disk.
struct Disk {
    file: std::fs::File,
    /// Written with direct I/O (see [`direct`]): whole aligned blocks only.
    direct: bool,
    /// Bytes in the file.
    written: u64,
}

impl Disk {
    fn write(&mut self, path: &Path, data: &[u8]) -> Result<(), SpoolError> {
        if data.is_empty() {
            return Ok(());
        }
        let result = match self.file.write_all(data) {
            Err(e) if self.direct && direct::unsupported(&e) => {
                // The filesystem refuses direct writes after all: carry on with ordinary ones.
                self.file = direct::reopen_for_append(path, self.written)
                    .map_err(|source| SpoolError::Io { action: "reopening", path: path.to_owned(), source })?;
                self.direct = false;
                self.file.write_all(data)
            }
            other => other,
        };
        result.map_err(|source| SpoolError::Io { action: "writing", path: path.to_owned(), source })?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Write the buffers arriving on `rx` (each full but the last) and hand them back on
    /// `back`. With direct I/O, returns the partial last block, which waits for the next
    /// append or [`SpoolFile::finish`].
    fn write_buffers(
        &mut self,
        path: &Path,
        mut rx: tokio::sync::mpsc::Receiver<AlignedBuf>,
        back: &tokio::sync::mpsc::UnboundedSender<AlignedBuf>,
    ) -> Result<Vec<u8>, SpoolError> {
        let mut tail = Vec::new();
        while let Some(mut buf) = rx.blocking_recv() {
            let keep = if self.direct { buf.len() % ALIGN } else { 0 };
            let (now, later) = buf.filled().split_at(buf.len() - keep);
            self.write(path, now)?;
            tail.extend_from_slice(later);
            buf.clear();
            let _ = back.send(buf);
        }
        Ok(tail)
    }
}

struct State {
    disk: Disk,
    /// Received bytes not yet in the file (less than a block, with direct I/O).
    tail: Vec<u8>,
    hasher: Sha256,
    /// Bytes received and hashed.
    size: u64,
    /// A write failed, so the file may not hold what was hashed: it can't be finished.
    failed: bool,
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

    /// Append a body, streaming: chunks are hashed as they arrive and copied into a few
    /// aligned buffers that a blocking writer writes to disk, so a layer is never held in
    /// memory. With `limit`, fails with [`SpoolError::TooLarge`] once the file would exceed
    /// it. Bytes received before a body error are kept (the session can be resumed from
    /// [`size`](Self::size)); after a write error the upload can't be finished.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future loses the file's state. Callers run it in a task.
    pub async fn append<S, E>(&mut self, body: S, limit: Option<u64>) -> Result<u64, SpoolError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::error::Error + Send + Sync + 'static,
    {
        let State { mut disk, tail, mut hasher, mut size, failed } = self.state.take().ok_or(SpoolError::Gone)?;
        if failed {
            self.state = Some(State { disk, tail, hasher, size, failed });
            return Err(SpoolError::Failed);
        }
        let start = size;
        let path = self.path.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<AlignedBuf>(1);
        let (back, mut returned) = tokio::sync::mpsc::unbounded_channel::<AlignedBuf>();
        let writer = tokio::task::spawn_blocking(move || {
            let result = disk.write_buffers(&path, rx, &back);
            (disk, result)
        });
        // Filling one buffer while the other is written.
        let mut buf = AlignedBuf::new(WRITE_BUFFER);
        let mut spare_buffers = BUFFERS - 1;
        buf.push(&tail); // already hashed
        let mut body = std::pin::pin!(body);
        let mut read_result = Ok(());
        'body: while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(source) => {
                    read_result = Err(SpoolError::Body { source: Box::new(source) });
                    break;
                }
            };
            if let Some(limit) = limit
                && size + chunk.len() as u64 > limit
            {
                read_result = Err(SpoolError::TooLarge { limit });
                break;
            }
            hasher.update(&chunk);
            size += chunk.len() as u64;
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                rest = &rest[buf.push(rest)..];
                if buf.is_full() {
                    let next = match returned.try_recv() {
                        Ok(next) => next,
                        Err(_) if spare_buffers > 0 => {
                            spare_buffers -= 1;
                            AlignedBuf::new(WRITE_BUFFER)
                        }
                        Err(_) => match returned.recv().await {
                            Some(next) => next,
                            None => break 'body, // the writer failed; its error is reported below
                        },
                    };
                    if tx.send(std::mem::replace(&mut buf, next)).await.is_err() {
                        break 'body;
                    }
                }
            }
        }
        if buf.len() > 0 {
            let _ = tx.send(buf).await;
        }
        drop(tx);
        let (disk, write_result) = writer.await?;
        let (tail, write_result) = match write_result {
            Ok(tail) => (tail, Ok(())),
            Err(e) => (Vec::new(), Err(e)),
        };
        self.state = Some(State { disk, tail, hasher, size, failed: write_result.is_err() });
        write_result?;
        read_result?;
        Ok(size - start)
    }

    /// Flush to disk and return the file with its digest.
    pub async fn finish(mut self) -> Result<Spooled, SpoolError> {
        let mut state = self.state.take().ok_or(SpoolError::Gone)?;
        if state.failed {
            return Err(SpoolError::Failed);
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            if !state.tail.is_empty() {
                // The partial last block, padded to a whole one, then cut back to size.
                let mut last = AlignedBuf::new(ALIGN);
                last.push(&std::mem::take(&mut state.tail));
                last.pad();
                state.disk.write(&path, last.filled())?;
                state.disk.file.set_len(state.size).map_err(|source| SpoolError::Io { action: "truncating", path: path.clone(), source })?;
            }
            state.disk.file.sync_all().map_err(|source| SpoolError::Io { action: "syncing", path: path.clone(), source })?;
            Ok(Spooled { path, size: state.size, digest: Digest::from_sha256(state.hasher.finalize().as_slice()) })
        })
        .await?
    }

    /// Remove the spool file.
    pub async fn discard(self) {
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}
