//! `docker-archive` output: the tarball `docker load` reads (`manifest.json`, the config,
//! one uncompressed `layer.tar` per layer), written deterministically.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};
use crate::layer::{self, LayerError};
use crate::layout::{Layout, LayoutError};
use crate::manifest::{Compression, Manifest};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("writing the docker archive {path}")]
    Io { path: PathBuf, source: io::Error },
    #[error("layer {digest}: its content does not match the image's diff id {diff_id}")]
    DiffId { digest: Digest, diff_id: Digest },
    #[error("the image manifest {digest} is unreadable")]
    Manifest {
        digest: Digest,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Layer(#[from] LayerError),
}

/// Writes the image `manifest_digest` from `layout` as a docker archive at `path` (through a
/// temporary file; `path` appears only when complete). `tags` become `RepoTags`.
pub fn write(
    layout: &Layout,
    manifest_digest: &Digest,
    tags: &[String],
    path: &Path,
) -> Result<(), ArchiveError> {
    let err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let manifest: Manifest =
        serde_json::from_slice(&layout.read_blob(manifest_digest)?).map_err(|source| {
            ArchiveError::Manifest {
                digest: manifest_digest.clone(),
                source,
            }
        })?;
    let config_bytes = layout.read_blob(&manifest.config.digest)?;
    let config: crate::manifest::ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|source| ArchiveError::Manifest {
            digest: manifest.config.digest.clone(),
            source,
        })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".docker-archive-")
        .tempfile_in(dir)
        .map_err(err)?;
    let mut b = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, tmp));
    let header = |name: &str, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(size);
        h.set_entry_type(tar::EntryType::Regular);
        let _ = name;
        h
    };
    let config_name = format!("{}.json", manifest.config.digest.hex());
    let mut h = header(&config_name, config_bytes.len() as u64);
    b.append_data(&mut h, &config_name, config_bytes.as_slice())
        .map_err(err)?;
    let mut layer_names = Vec::new();
    for (l, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let name = format!("{}/layer.tar", diff_id.hex());
        let mut dh = tar::Header::new_gnu();
        dh.set_mode(0o755);
        dh.set_mtime(0);
        dh.set_entry_type(tar::EntryType::Directory);
        dh.set_size(0);
        b.append_data(&mut dh, format!("{}/", diff_id.hex()), io::empty())
            .map_err(err)?;
        if Compression::of_media_type(&l.media_type) == Compression::None && l.digest == *diff_id {
            let f = layout.open_blob(&l.digest)?;
            let mut h = header(&name, l.size);
            b.append_data(&mut h, &name, f.take(l.size)).map_err(err)?;
        } else {
            // A compressed layer: decompress into a temporary file to learn its size.
            let mut spool = tempfile::tempfile_in(dir).map_err(err)?;
            let mut hw = HashingWriter::new(io::BufWriter::new(&mut spool));
            io::copy(&mut layer::open_layer(layout, l)?, &mut hw).map_err(err)?;
            let (d, size, w) = hw.finish();
            w.into_inner().map_err(|e| err(e.into_error()))?;
            if d != *diff_id {
                return Err(ArchiveError::DiffId {
                    digest: l.digest.clone(),
                    diff_id: diff_id.clone(),
                });
            }
            io::Seek::seek(&mut spool, io::SeekFrom::Start(0)).map_err(err)?;
            let mut h = header(&name, size);
            b.append_data(&mut h, &name, spool.take(size))
                .map_err(err)?;
        }
        layer_names.push(name);
    }
    let docker_manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": tags,
        "Layers": layer_names,
    }]);
    let bytes = serde_json::to_vec(&docker_manifest).expect("JSON values serialise");
    let mut h = header("manifest.json", bytes.len() as u64);
    b.append_data(&mut h, "manifest.json", bytes.as_slice())
        .map_err(err)?;
    let mut w = b.into_inner().map_err(err)?;
    w.flush().map_err(err)?;
    let tmp = w.into_inner().map_err(|e| err(e.into_error()))?;
    crate::layout::readable(tmp.path(), path)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}
