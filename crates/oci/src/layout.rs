//! OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/sha256/...`): the local image
//! store, `--output oci:DIR` and `FROM oci-layout://DIR` all use this one type.
//!
//! Blobs are written to a temporary file next to their final place, hashed while written and
//! renamed into place only when the digest is right, so a reader never sees a partial blob.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};
use crate::manifest::{Descriptor, Index, media};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("blob {digest} is not in {dir}")]
    MissingBlob { digest: Digest, dir: PathBuf },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{path} is not valid JSON for {what}")]
    Json {
        what: &'static str,
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("no image named {name:?} in the OCI layout {dir}{hint}")]
    NoSuchRef {
        name: String,
        dir: PathBuf,
        hint: String,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayoutError + 'a {
    move |source| LayoutError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// An OCI image layout directory.
#[derive(Clone, Debug)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Opens `dir`, creating an empty layout when it does not exist yet.
    pub fn create(dir: &Path) -> Result<Layout, LayoutError> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err("creating", &blobs))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            atomic_write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = dir.join("index.json");
        if !index.exists() {
            let empty = Index {
                schema_version: 2,
                media_type: Some(media::OCI_INDEX.into()),
                manifests: vec![],
                annotations: Default::default(),
            };
            atomic_write(&index, &to_json(&empty))?;
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    /// Opens an existing layout (an error when `dir` has no `oci-layout` file).
    pub fn open(dir: &Path) -> Result<Layout, LayoutError> {
        let marker = dir.join("oci-layout");
        fs::metadata(&marker).map_err(io_err("reading the OCI layout marker", &marker))?;
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(digest);
        match fs::read(&path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(LayoutError::MissingBlob {
                digest: digest.clone(),
                dir: self.dir.clone(),
            }),
            Err(source) => Err(LayoutError::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, LayoutError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => LayoutError::MissingBlob {
                digest: digest.clone(),
                dir: self.dir.clone(),
            },
            _ => LayoutError::Io {
                action: "opening",
                path: path.clone(),
                source: e,
            },
        })
    }

    /// Stores `bytes`, returning their digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest, LayoutError> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            let mut w = self.blob_writer()?;
            w.write_all(bytes)
                .map_err(io_err("writing a blob in", &self.dir))?;
            w.commit(Some(&digest))?;
        }
        Ok(digest)
    }

    /// Stores `value` as canonical JSON; returns its descriptor.
    pub fn write_json<T: serde::Serialize>(
        &self,
        media_type: &str,
        value: &T,
    ) -> Result<Descriptor, LayoutError> {
        let bytes = to_json(value);
        let digest = self.write_blob(&bytes)?;
        Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
    }

    /// A writer for a new blob of not yet known digest.
    pub fn blob_writer(&self) -> Result<BlobWriter, LayoutError> {
        let tmp_dir = self.dir.join("blobs/sha256");
        let file = tempfile::Builder::new()
            .prefix(".ingest-")
            .tempfile_in(&tmp_dir)
            .map_err(io_err("creating a temporary blob in", &tmp_dir))?;
        Ok(BlobWriter {
            inner: HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, file)),
            layout: self.clone(),
        })
    }

    /// Copies (hard-links when possible) a blob from another layout.
    pub fn import_blob(&self, from: &Layout, digest: &Digest) -> Result<(), LayoutError> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let src = from.blob_path(digest);
        if !src.is_file() {
            return Err(LayoutError::MissingBlob {
                digest: digest.clone(),
                dir: from.dir.clone(),
            });
        }
        let dst = self.blob_path(digest);
        if fs::hard_link(&src, &dst).is_ok() {
            return Ok(());
        }
        let mut w = self.blob_writer()?;
        let mut r = File::open(&src).map_err(io_err("opening", &src))?;
        io::copy(&mut r, &mut w).map_err(io_err("copying", &src))?;
        w.commit(Some(digest))?;
        Ok(())
    }

    pub fn index(&self) -> Result<Index, LayoutError> {
        let path = self.dir.join("index.json");
        let bytes = fs::read(&path).map_err(io_err("reading", &path))?;
        serde_json::from_slice(&bytes).map_err(|source| LayoutError::Json {
            what: "an OCI index",
            path,
            source,
        })
    }

    /// Points `name` at `desc` (replacing an earlier entry of that name).
    pub fn set_ref(
        &self,
        name: &str,
        mut desc: Descriptor,
        full_name: Option<&str>,
    ) -> Result<(), LayoutError> {
        let mut index = self.index()?;
        index
            .manifests
            .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(name));
        desc.annotations.insert(REF_NAME.into(), name.into());
        if let Some(full) = full_name {
            desc.annotations.insert(CONTAINERD_NAME.into(), full.into());
        }
        index.manifests.push(desc);
        index.manifests.sort_by(|a, b| {
            a.annotations
                .get(REF_NAME)
                .cmp(&b.annotations.get(REF_NAME))
        });
        atomic_write(&self.dir.join("index.json"), &to_json(&index))
    }

    /// Adds `desc` without a name (unless an identical entry is already there).
    pub fn add_manifest(&self, desc: Descriptor) -> Result<(), LayoutError> {
        let mut index = self.index()?;
        if !index.manifests.iter().any(|d| d.digest == desc.digest) {
            index.manifests.push(desc);
        }
        atomic_write(&self.dir.join("index.json"), &to_json(&index))
    }

    /// The descriptor named `name`; with `None`, the only manifest in the index.
    pub fn resolve(&self, name: Option<&str>) -> Result<Descriptor, LayoutError> {
        let index = self.index()?;
        let names = || {
            let n: Vec<_> = index
                .manifests
                .iter()
                .filter_map(|d| d.annotations.get(REF_NAME).cloned())
                .collect();
            if n.is_empty() {
                String::new()
            } else {
                format!(" (it has: {})", n.join(", "))
            }
        };
        match name {
            Some(name) => index
                .manifests
                .iter()
                .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(name))
                .cloned()
                .ok_or_else(|| LayoutError::NoSuchRef {
                    name: name.into(),
                    dir: self.dir.clone(),
                    hint: names(),
                }),
            None if index.manifests.len() == 1 => Ok(index.manifests[0].clone()),
            None => Err(LayoutError::NoSuchRef {
                name: String::new(),
                dir: self.dir.clone(),
                hint: format!(
                    ": it holds {} images, name one{}",
                    index.manifests.len(),
                    names()
                ),
            }),
        }
    }
}

/// A blob being written; [`BlobWriter::commit`] moves it into place.
pub struct BlobWriter {
    inner: HashingWriter<io::BufWriter<tempfile::NamedTempFile>>,
    layout: Layout,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BlobWriter {
    /// Finishes the blob; with `expected`, refuses (and deletes) it unless the digest matches.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64), LayoutError> {
        let (digest, size, buf) = self.inner.finish();
        let dir = self.layout.dir.clone();
        let tmp = buf.into_inner().map_err(|e| LayoutError::Io {
            action: "flushing a blob in",
            path: dir.clone(),
            source: e.into_error(),
        })?;
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(LayoutError::DigestMismatch {
                what: "blob".into(),
                expected: expected.clone(),
                actual: digest,
            });
        }
        let dst = self.layout.blob_path(&digest);
        readable(tmp.path(), &dst)?;
        tmp.persist(&dst).map_err(|e| LayoutError::Io {
            action: "storing blob",
            path: dst,
            source: e.error,
        })?;
        Ok((digest, size))
    }
}

/// Serialises compactly; field order and sorted maps make this canonical for our types.
pub fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("our manifest types always serialise")
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err("creating a file in", dir))?;
    tmp.write_all(bytes).map_err(io_err("writing", path))?;
    readable(tmp.path(), path)?;
    tmp.persist(path).map_err(|e| LayoutError::Io {
        action: "replacing",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Temporary files are created 0600; what we publish is world-readable (0644), like the
/// files `skopeo`, `umoci` and `docker save` write.
pub(crate) fn readable(tmp: &Path, dst: &Path) -> Result<(), LayoutError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o644)).map_err(|source| LayoutError::Io {
        action: "setting permissions of",
        path: dst.to_path_buf(),
        source,
    })
}

/// Reads all of `r` into a blob writer (used for verified ingest from any reader).
pub fn ingest(
    layout: &Layout,
    mut r: impl Read,
    expected: Option<&Digest>,
) -> Result<(Digest, u64), LayoutError> {
    let mut w = layout.blob_writer()?;
    io::copy(&mut r, &mut w).map_err(io_err("writing a blob in", layout.dir()))?;
    w.commit(expected)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn write_resolve_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(dir.path()).unwrap();
        let d = l.write_blob(b"abc").unwrap();
        assert!(l.has_blob(&d));
        l.set_ref(
            "v1",
            Descriptor::new(media::OCI_MANIFEST, d.clone(), 3),
            None,
        )
        .unwrap();
        assert_eq!(l.resolve(Some("v1")).unwrap().digest, d);
        assert_eq!(l.resolve(None).unwrap().digest, d);
        assert!(
            l.resolve(Some("v2"))
                .unwrap_err()
                .to_string()
                .contains("it has: v1")
        );
        let err = ingest(&l, &b"xyz"[..], Some(&d)).unwrap_err();
        assert!(matches!(err, LayoutError::DigestMismatch { .. }));
        // the refused blob left nothing behind
        let n = fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(n, 1);
    }
}
