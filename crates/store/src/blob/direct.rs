//! Direct I/O for large blob files: reads and writes that bypass the page cache (`O_DIRECT`
//! on Linux), with block-aligned buffers and a fallback to ordinary I/O where the filesystem
//! refuses it (tmpfs on older kernels, some network filesystems).
//!
//! Why: a layer is written once and then streamed out to a few clients; pushing it through
//! the page cache costs a copy into freshly allocated cache pages on write and keeps them
//! dirty until the fsync before commit, which then writes them all at once. Direct writes go
//! from the writer's buffer to the disk as the upload arrives, so the final fsync only
//! flushes metadata. On the 2-core benchmark machine this halves the registry's CPU per push
//! (see `docs/registry.md`, Performance).

use std::{
    fs::File,
    io,
    ops::Range,
    path::Path,
    sync::mpsc::{Receiver, Sender},
};

use bytes::Bytes;

/// Alignment of direct I/O buffers, offsets and lengths (covers 512-byte and 4 KiB blocks).
pub(crate) const ALIGN: usize = 4096;

/// Does this error mean the filesystem refuses direct I/O (rather than a real I/O failure)?
pub(crate) fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

#[cfg(target_os = "linux")]
fn direct_flag() -> i32 {
    libc::O_DIRECT
}
#[cfg(not(target_os = "linux"))]
fn direct_flag() -> i32 {
    0
}

/// Create a new file for writing, with direct I/O where possible. Returns the file and
/// whether it is in direct mode.
pub(crate) fn create_new(path: &Path) -> io::Result<(File, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let flag = direct_flag();
    if flag != 0 {
        match std::fs::OpenOptions::new().write(true).create_new(true).custom_flags(flag).open(path) {
            Ok(file) => return Ok((file, true)),
            Err(e) if unsupported(&e) => {
                // Some kernels create the file before refusing the flag.
                let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
                return Ok((file, false));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((std::fs::OpenOptions::new().write(true).create_new(true).open(path)?, false))
}

/// Reopen a file written so far with direct I/O for ordinary writes at `offset`.
pub(crate) fn reopen_for_append(path: &Path, offset: u64) -> io::Result<File> {
    use std::io::Seek;
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.seek(io::SeekFrom::Start(offset))?;
    Ok(file)
}

/// Open a file for reading, with direct I/O if `direct` and the filesystem allows it.
pub(crate) fn open_read(path: &Path, direct: bool) -> io::Result<(File, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let flag = direct_flag();
    if direct && flag != 0 {
        match std::fs::OpenOptions::new().read(true).custom_flags(flag).open(path) {
            Ok(file) => return Ok((file, true)),
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((File::open(path)?, false))
}

/// A fixed-capacity byte buffer whose contents start at an [`ALIGN`] boundary (allocated
/// with room to spare and used from the first aligned address, so no unsafe code).
pub(crate) struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    capacity: usize,
    len: usize,
}

impl AlignedBuf {
    /// `capacity` is rounded up to a multiple of [`ALIGN`].
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.next_multiple_of(ALIGN).max(ALIGN);
        let storage = vec![0u8; capacity + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN).min(ALIGN);
        AlignedBuf { storage, start, capacity, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == self.capacity
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// The bytes pushed so far.
    pub(crate) fn filled(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// Copy as much of `data` as fits; returns how many bytes were taken.
    pub(crate) fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.capacity - self.len);
        let at = self.start + self.len;
        self.storage[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    /// Zero-fill up to the next [`ALIGN`] boundary (a padded last block).
    pub(crate) fn pad(&mut self) {
        let to = self.len.next_multiple_of(ALIGN).min(self.capacity);
        let at = self.start;
        self.storage[at + self.len..at + to].fill(0);
        self.len = to;
    }

    /// The whole aligned capacity, to read into.
    pub(crate) fn space(&mut self) -> &mut [u8] {
        let at = self.start;
        &mut self.storage[at..at + self.capacity]
    }
}

/// Read buffers that come back when the [`Bytes`] handed out of them are dropped, so a
/// stream reuses a few buffers instead of allocating (and faulting in) one per chunk.
pub(crate) struct Pool {
    capacity: usize,
    home: Sender<AlignedBuf>,
    returned: Receiver<AlignedBuf>,
}

impl Pool {
    pub(crate) fn new(capacity: usize) -> Self {
        let (home, returned) = std::sync::mpsc::channel();
        Pool { capacity, home, returned }
    }

    pub(crate) fn take(&self) -> AlignedBuf {
        self.returned.try_recv().unwrap_or_else(|_| AlignedBuf::new(self.capacity))
    }

    /// `range` of `buf`'s space as [`Bytes`]; the buffer returns to the pool when dropped.
    pub(crate) fn bytes(&self, buf: AlignedBuf, range: Range<usize>) -> Bytes {
        Bytes::from_owner(Pooled { buf: Some(buf), range, home: self.home.clone() })
    }
}

struct Pooled {
    buf: Option<AlignedBuf>,
    range: Range<usize>,
    home: Sender<AlignedBuf>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        match &self.buf {
            Some(b) => &b.storage[b.start + self.range.start..b.start + self.range.end],
            None => &[],
        }
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            // The pool is gone once its stream ended: then the buffer is simply freed.
            let _ = self.home.send(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers() {
        let mut b = AlignedBuf::new(10_000);
        assert_eq!(b.space().len(), 3 * ALIGN);
        assert_eq!(b.space().as_ptr() as usize % ALIGN, 0);
        assert_eq!(b.push(&[1; 5000]), 5000);
        assert_eq!(b.push(&[2; 10_000]), 3 * ALIGN - 5000);
        assert!(b.is_full());
        b.clear();
        b.push(&[3; 10]);
        b.pad();
        assert_eq!(b.filled().len(), ALIGN);
        assert_eq!(&b.filled()[..11], &[3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0]);
    }

    #[test]
    fn pooled_bytes_return_their_buffer() {
        let pool = Pool::new(ALIGN);
        let mut buf = pool.take();
        buf.space()[..4].copy_from_slice(b"abcd");
        let bytes = pool.bytes(buf, 1..3);
        assert_eq!(&bytes[..], b"bc");
        assert!(pool.returned.try_recv().is_err());
        drop(bytes);
        assert!(pool.returned.try_recv().is_ok());
    }

    #[test]
    fn direct_files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let (mut file, _direct) = create_new(&path).expect("create");
        let mut b = AlignedBuf::new(2 * ALIGN);
        b.push(&[7; 2 * ALIGN]);
        std::io::Write::write_all(&mut file, b.filled()).expect("write");
        drop(file);
        let (file, _) = open_read(&path, true).expect("open");
        let mut r = AlignedBuf::new(2 * ALIGN);
        let n = std::os::unix::fs::FileExt::read_at(&file, r.space(), 0).expect("read");
        assert_eq!(n, 2 * ALIGN);
        assert!(r.space().iter().all(|&x| x == 7));
    }
}
