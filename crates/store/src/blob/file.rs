//! [`FileStore`]: blobs and records as files under one directory.

use std::{
    ops::Range,
    path::{Path, PathBuf},
    time::SystemTime,
};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    direct::{self, ALIGN},
    check_key, BlobError, BlobMeta, BlobStore, ByteStream, Children, Committed, Digest, MetaStore, Spool, Spooled};

/// Read size when streaming a blob out.
const READ_CHUNK: usize = 256 << 10;
/// Chunks read ahead of the client per blob stream.
const READ_AHEAD: usize = 2;
/// Blobs at least this large are read with direct I/O (they were written that way, see
/// [`direct`]; small ones, manifests and configs, are read through the page cache).
const DIRECT_READ_MIN: u64 = 1 << 20;

/// Blobs and records under one root directory (layout in the [module docs](super)).
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
    spool: Spool,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BlobError + 'a {
    move |source| BlobError::Io { action, path: path.to_owned(), source }
}

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

impl FileStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        for sub in ["blobs/sha256", "meta", "uploads", "tmp"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        }
        let spool = Spool::new(root.join("uploads"));
        Ok(FileStore { root, spool })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("blobs").join(digest.algorithm()).join(&hex[..2]).join(hex)
    }

    fn meta_path(&self, key: &str) -> Result<PathBuf, BlobError> {
        check_key(key)?;
        Ok(self.root.join("meta").join(key))
    }

    fn temp_path(&self) -> PathBuf {
        self.root.join("tmp").join(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Rename `from` to `to` after fsyncing, creating parent directories.
    fn install(from: &Path, to: &Path) -> Result<(), BlobError> {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        std::fs::rename(from, to).map_err(io("renaming into", to))?;
        if let Some(parent) = to.parent() {
            // Make the rename durable.
            if let Ok(dir) = std::fs::File::open(parent) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, BlobError> + Send + 'static) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f).await?
}

#[async_trait]
impl BlobStore for FileStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobMeta>, BlobError> {
        let path = self.blob_path(digest);
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(Some(BlobMeta { size: meta.len(), modified: meta.modified().unwrap_or(SystemTime::now()) })),
            Err(e) if not_found(&e) => Ok(None),
            Err(source) => Err(BlobError::Io { action: "reading", path, source }),
        }
    }

    async fn open(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<ByteStream, BlobError> {
        let path = self.blob_path(digest);
        let digest = digest.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
        let opened = blocking({
            let path = path.clone();
            move || {
                let len = match std::fs::metadata(&path) {
                    Ok(m) => m.len(),
                    Err(e) if not_found(&e) => return Err(BlobError::NotFound { digest }),
                    Err(source) => return Err(BlobError::Io { action: "opening", path, source }),
                };
                let (file, direct) = match direct::open_read(&path, len >= DIRECT_READ_MIN) {
                    Ok(f) => f,
                    Err(e) if not_found(&e) => return Err(BlobError::NotFound { digest }),
                    Err(source) => return Err(BlobError::Io { action: "opening", path, source }),
                };
                let (start, end) = match &range {
                    Some(r) => (r.start.min(len), r.end.min(len)),
                    None => (0, len),
                };
                Ok(Reader { path, file, direct, pos: start, end })
            }
        })
        .await?;
        // A blocking reader thread feeds the response through a small queue.
        tokio::task::spawn_blocking(move || opened.run(&tx));
        Ok(Box::pin(tokio_stream_from(rx)))
    }

    async fn commit(&self, spooled: Spooled, expected: &Digest) -> Result<Committed, BlobError> {
        if &spooled.digest != expected {
            let _ = tokio::fs::remove_file(&spooled.path).await;
            return Err(BlobError::DigestMismatch { expected: expected.clone(), actual: spooled.digest });
        }
        let target = self.blob_path(expected);
        blocking(move || {
            if target.exists() {
                // Stored once: the existing blob has the same content.
                let _ = std::fs::remove_file(&spooled.path);
                let _ = filetime_now(&target);
                return Ok(Committed { size: spooled.size, created: false });
            }
            Self::install(&spooled.path, &target)?;
            Ok(Committed { size: spooled.size, created: true })
        })
        .await
    }

    async fn put_bytes(&self, bytes: Bytes) -> Result<Digest, BlobError> {
        let digest = Digest::of(&bytes);
        let target = self.blob_path(&digest);
        let temp = self.temp_path();
        let d = digest.clone();
        blocking(move || {
            if target.exists() {
                let _ = filetime_now(&target);
                return Ok(d);
            }
            write_synced(&temp, &bytes)?;
            Self::install(&temp, &target)?;
            Ok(d)
        })
        .await
    }

    async fn read_bytes(&self, digest: &Digest) -> Result<Option<Bytes>, BlobError> {
        let path = self.blob_path(digest);
        match tokio::fs::read(&path).await {
            Ok(v) => Ok(Some(Bytes::from(v))),
            Err(e) if not_found(&e) => Ok(None),
            Err(source) => Err(BlobError::Io { action: "reading", path, source }),
        }
    }

    async fn touch(&self, digest: &Digest) -> Result<(), BlobError> {
        let path = self.blob_path(digest);
        blocking(move || match filetime_now(&path) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(source) => Err(BlobError::Io { action: "touching", path, source }),
        })
        .await
    }

    async fn delete(&self, digest: &Digest) -> Result<(), BlobError> {
        let path = self.blob_path(digest);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(source) => Err(BlobError::Io { action: "removing", path, source }),
        }
    }

    async fn list(&self) -> Result<Vec<(Digest, BlobMeta)>, BlobError> {
        let dir = self.root.join("blobs/sha256");
        blocking(move || {
            let mut out = Vec::new();
            for shard in std::fs::read_dir(&dir).map_err(io("listing", &dir))? {
                let shard = shard.map_err(io("listing", &dir))?.path();
                let Ok(entries) = std::fs::read_dir(&shard) else { continue };
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let Ok(digest) = Digest::parse(&format!("sha256:{name}")) else { continue };
                    let Ok(meta) = entry.metadata() else { continue };
                    out.push((digest, BlobMeta { size: meta.len(), modified: meta.modified().unwrap_or(SystemTime::now()) }));
                }
            }
            Ok(out)
        })
        .await
    }

    fn spool(&self) -> &Spool {
        &self.spool
    }
}

/// Set a file's modification time to now.
fn filetime_now(path: &Path) -> std::io::Result<()> {
    let file = std::fs::File::options().write(true).open(path)?;
    file.set_modified(SystemTime::now())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BlobError> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(io("creating", path))?;
    file.write_all(bytes).map_err(io("writing", path))?;
    file.sync_all().map_err(io("syncing", path))
}

/// Streams `pos..end` of a blob file in [`READ_CHUNK`]s from reused buffers.
struct Reader {
    path: PathBuf,
    file: std::fs::File,
    direct: bool,
    pos: u64,
    end: u64,
}

impl Reader {
    fn run(mut self, tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>) {
        let pool = direct::Pool::new(READ_CHUNK);
        while self.pos < self.end {
            let item = self.next_chunk(&pool);
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return; // the client went away, or the error was passed on
            }
        }
    }

    fn next_chunk(&mut self, pool: &direct::Pool) -> std::io::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        let mut buf = pool.take();
        loop {
            // Direct reads start at an aligned offset and read whole blocks.
            let from = if self.direct { self.pos / ALIGN as u64 * ALIGN as u64 } else { self.pos };
            let skip = (self.pos - from) as usize;
            let want = (self.end - from).min(READ_CHUNK as u64) as usize;
            let ask = if self.direct { want.next_multiple_of(ALIGN).min(READ_CHUNK) } else { want };
            let space = &mut buf.space()[..ask];
            let mut got = 0;
            let result = loop {
                if got >= want {
                    break Ok(());
                }
                match self.file.read_at(&mut space[got..], from + got as u64) {
                    Ok(0) => break Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "blob shorter than its size")),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            match result {
                Ok(()) => {
                    self.pos = from + want as u64;
                    return Ok(pool.bytes(buf, skip..want));
                }
                Err(e) if self.direct && direct::unsupported(&e) => {
                    // The filesystem refuses direct reads after all: read through the cache.
                    self.file = std::fs::File::open(&self.path)?;
                    self.direct = false;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[async_trait]
impl MetaStore for FileStore {
    async fn put(&self, key: &str, value: Bytes) -> Result<(), BlobError> {
        let path = self.meta_path(key)?;
        let temp = self.temp_path();
        blocking(move || {
            write_synced(&temp, &value)?;
            Self::install(&temp, &path)
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        let path = self.meta_path(key)?;
        match tokio::fs::read(&path).await {
            Ok(v) => Ok(Some(Bytes::from(v))),
            Err(e) if not_found(&e) || e.kind() == std::io::ErrorKind::IsADirectory || e.kind() == std::io::ErrorKind::NotADirectory => Ok(None),
            Err(source) => Err(BlobError::Io { action: "reading", path, source }),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        let path = self.meta_path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(m.is_file()),
            Err(e) if not_found(&e) || e.kind() == std::io::ErrorKind::NotADirectory => Ok(false),
            Err(source) => Err(BlobError::Io { action: "reading", path, source }),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.meta_path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) || e.kind() == std::io::ErrorKind::NotADirectory => Ok(()),
            Err(source) => Err(BlobError::Io { action: "removing", path, source }),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let dir = self.meta_path(prefix)?;
        blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![(dir.clone(), String::new())];
            while let Some((d, rel)) = stack.pop() {
                let entries = match std::fs::read_dir(&d) {
                    Ok(e) => e,
                    Err(e) if not_found(&e) || e.kind() == std::io::ErrorKind::NotADirectory => continue,
                    Err(source) => return Err(BlobError::Io { action: "listing", path: d, source }),
                };
                for entry in entries.flatten() {
                    let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
                    let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
                    match entry.file_type() {
                        Ok(t) if t.is_dir() => stack.push((entry.path(), child)),
                        Ok(_) => out.push(child),
                        Err(_) => {}
                    }
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn children(&self, prefix: &str) -> Result<Children, BlobError> {
        let dir = self.meta_path(prefix)?;
        blocking(move || {
            let mut out = Children::default();
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if not_found(&e) || e.kind() == std::io::ErrorKind::NotADirectory => return Ok(out),
                Err(source) => return Err(BlobError::Io { action: "listing", path: dir, source }),
            };
            for entry in entries.flatten() {
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
                match entry.file_type() {
                    Ok(t) if t.is_dir() => out.prefixes.push(name),
                    Ok(_) => out.records.push(name),
                    Err(_) => {}
                }
            }
            out.records.sort();
            out.prefixes.sort();
            Ok(out)
        })
        .await
    }
}
