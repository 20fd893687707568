//! Layers as reproducible tar streams, and applying layers onto a directory.
//!
//! A layer is written from a list of [`Entry`]s sorted by path; every header gets the same
//! mtime (`SOURCE_DATE_EPOCH`), no user/group names, no atime/ctime/xattrs. Layers are
//! uncompressed by default (`application/vnd.oci.image.layer.v1.tar`); gzip is available with
//! a fixed level and a header without timestamp or file name, so it is deterministic too.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::{Compression as GzLevel, GzBuilder};

use crate::digest::{Digest, HashingWriter};
use crate::layout::{Layout, LayoutError};
use crate::manifest::{Compression, Descriptor, media};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("zstd-compressed layers are not supported ({digest})")]
    Zstd { digest: Digest },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayerError + 'a {
    move |source| LayerError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What a layer entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file whose content is read from `source` when the layer is written.
    File {
        source: PathBuf,
    },
    Dir,
    Symlink {
        target: PathBuf,
    },
    /// Deletes the path from lower layers (written as `.wh.<name>`).
    Whiteout,
}

/// One entry of a layer; `path` is relative to the image root, without a leading `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

/// A finished layer blob.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LayerBlob {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// Normalises `p` to a relative path below the root (`/a/../b/./c` → `b/c`); never escapes.
pub fn clean_rel(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Adds directory entries (0755, root) for every missing parent of the entries.
pub fn add_parents(entries: &mut BTreeMap<PathBuf, Entry>) {
    let mut missing = Vec::new();
    for path in entries.keys() {
        let mut p = path.parent();
        while let Some(parent) = p {
            if parent.as_os_str().is_empty() {
                break;
            }
            if !entries.contains_key(parent) {
                missing.push(parent.to_path_buf());
            }
            p = parent.parent();
        }
    }
    for path in missing {
        entries.entry(path.clone()).or_insert(Entry {
            path,
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
        });
    }
}

/// Writes `entries` (any order; they are sorted here) as a layer blob into `layout`.
pub fn write_layer(
    layout: &Layout,
    entries: impl IntoIterator<Item = Entry>,
    mtime: u64,
    compression: Compression,
) -> Result<LayerBlob, LayerError> {
    let mut sorted: Vec<Entry> = entries.into_iter().collect();
    sorted.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_encoded_bytes()
            .cmp(b.path.as_os_str().as_encoded_bytes())
    });
    sorted.dedup_by(|a, b| a.path == b.path);
    let blob = layout.blob_writer()?;
    let (descriptor, diff_id) = match compression {
        Compression::None => {
            let w = write_tar(blob, &sorted, mtime)?;
            let (digest, size) = w.commit(None)?;
            (
                Descriptor::new(media::OCI_LAYER, digest.clone(), size),
                digest,
            )
        }
        Compression::Gzip => {
            let gz = GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(blob, GzLevel::new(6));
            let hashing = write_tar(HashingWriter::new(gz), &sorted, mtime)?;
            let (diff_id, _, gz) = hashing.finish();
            let blob = gz
                .finish()
                .map_err(io_err("compressing a layer in", layout.dir()))?;
            let (digest, size) = blob.commit(None)?;
            (
                Descriptor::new(media::OCI_LAYER_GZIP, digest, size),
                diff_id,
            )
        }
        Compression::Zstd => {
            return Err(LayerError::Zstd {
                digest: crate::digest::Digest::of(b""),
            });
        }
    };
    Ok(LayerBlob {
        descriptor,
        diff_id,
    })
}

fn write_tar<W: Write>(out: W, entries: &[Entry], mtime: u64) -> Result<W, LayerError> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(mtime);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mode(e.mode & 0o7777);
        let (path, kind) = match &e.kind {
            Kind::Whiteout => {
                let name = e
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (
                    e.path.with_file_name(format!(".wh.{name}")),
                    &Kind::Whiteout,
                )
            }
            k => (e.path.clone(), k),
        };
        let ctx = |action: &'static str| {
            let path = path.clone();
            move |source| LayerError::Io {
                action,
                path,
                source,
            }
        };
        match kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                let mut p = path.as_os_str().to_owned();
                p.push("/");
                b.append_data(&mut h, PathBuf::from(p), io::empty())
                    .map_err(ctx("writing a layer entry for"))?;
            }
            Kind::Whiteout => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(0);
                h.set_mode(0o644);
                b.append_data(&mut h, &path, io::empty())
                    .map_err(ctx("writing a whiteout for"))?;
            }
            Kind::Symlink { target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, &path, target)
                    .map_err(ctx("writing a symlink for"))?;
            }
            Kind::File { source } => {
                let f = File::open(source).map_err(io_err("opening", source))?;
                let len = f
                    .metadata()
                    .map_err(io_err("reading metadata of", source))?
                    .len();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(len);
                // `take` guards against a file growing while we read it.
                b.append_data(&mut h, &path, f.take(len))
                    .map_err(ctx("writing a layer entry for"))?;
            }
        }
    }
    b.into_inner()
        .map_err(io_err("finishing a layer", Path::new("")))
}

/// A reader over a layer blob's uncompressed tar stream.
pub fn open_layer(layout: &Layout, desc: &Descriptor) -> Result<Box<dyn Read>, LayerError> {
    let f = BufReader::with_capacity(256 * 1024, layout.open_blob(&desc.digest)?);
    Ok(match Compression::of_media_type(&desc.media_type) {
        Compression::None => {
            // Some producers label gzip layers as plain tar; sniff the magic.
            let mut f = f;
            let peek = io::BufRead::fill_buf(&mut f)
                .map_err(io_err("reading", &layout.blob_path(&desc.digest)))?;
            if peek.starts_with(&[0x1f, 0x8b]) {
                Box::new(flate2::bufread::MultiGzDecoder::new(f))
            } else {
                Box::new(f)
            }
        }
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(f)),
        Compression::Zstd => {
            return Err(LayerError::Zstd {
                digest: desc.digest.clone(),
            });
        }
    })
}

/// Applies a layer's tar stream onto `root`, honouring whiteouts (`.wh.name`, `.wh..wh..opq`).
pub fn apply_layer(tar_stream: impl Read, root: &Path) -> Result<(), LayerError> {
    let mut archive = tar::Archive::new(tar_stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    let entries = archive
        .entries()
        .map_err(io_err("reading layer entries for", root))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err("reading a layer entry for", root))?;
        let path = entry
            .path()
            .map_err(io_err("reading an entry path for", root))?
            .into_owned();
        let rel = clean_rel(&path);
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == ".wh..wh..opq" {
            let dir = root.join(rel.parent().unwrap_or(Path::new("")));
            if let Ok(rd) = fs::read_dir(&dir) {
                for child in rd.flatten() {
                    remove_any(&child.path());
                }
            }
            continue;
        }
        if let Some(target) = name.strip_prefix(".wh.") {
            remove_any(&root.join(rel.with_file_name(target)));
            continue;
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        let dst = root.join(&rel);
        let is_dir = entry.header().entry_type().is_dir();
        if let Ok(md) = fs::symlink_metadata(&dst)
            && !(is_dir && md.is_dir())
        {
            remove_any(&dst);
        }
        entry
            .unpack_in(root)
            .map_err(io_err("unpacking a layer entry into", &dst))?;
    }
    Ok(())
}

fn remove_any(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => {
            let _ = fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = fs::remove_file(p);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: Kind) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn layers_are_deterministic_and_apply_with_whiteouts() {
        let src = tempfile::tempdir().unwrap();
        let f = src.path().join("f");
        fs::write(&f, b"hello").unwrap();
        let store = tempfile::tempdir().unwrap();
        let layout = Layout::create(store.path()).unwrap();
        let mk = |order: bool| {
            let mut v = vec![
                entry("a/b", Kind::File { source: f.clone() }),
                entry("a", Kind::Dir),
                entry(
                    "link",
                    Kind::Symlink {
                        target: "a/b".into(),
                    },
                ),
            ];
            if order {
                v.reverse();
            }
            v
        };
        for c in [Compression::None, Compression::Gzip] {
            let one = write_layer(&layout, mk(false), 0, c).unwrap();
            let two = write_layer(&layout, mk(true), 0, c).unwrap();
            assert_eq!(one, two);
        }
        let l1 = write_layer(&layout, mk(false), 0, Compression::Gzip).unwrap();
        let root = tempfile::tempdir().unwrap();
        apply_layer(open_layer(&layout, &l1.descriptor).unwrap(), root.path()).unwrap();
        assert_eq!(fs::read(root.path().join("a/b")).unwrap(), b"hello");
        let l2 = write_layer(
            &layout,
            vec![entry("a/b", Kind::Whiteout)],
            0,
            Compression::None,
        )
        .unwrap();
        apply_layer(open_layer(&layout, &l2.descriptor).unwrap(), root.path()).unwrap();
        assert!(!root.path().join("a/b").exists());
        assert!(root.path().join("a").is_dir());
    }

    #[test]
    fn clean_rel_never_escapes() {
        assert_eq!(
            clean_rel(Path::new("/../../etc/./passwd")),
            PathBuf::from("etc/passwd")
        );
        assert_eq!(clean_rel(Path::new("a/../../b")), PathBuf::from("b"));
    }
}
