//! What a deploy installs: an image (an OCI layout directory or a docker-archive) or an
//! artifact (a directory or a tarball), turned into a content digest and an unpacked tree.
//!
//! Image layers are applied in order with whiteouts (`oci::layer::apply_layer`). Pulling an
//! image by reference from a registry is not done here (the docker target lets the engine
//! pull); `local` and `ssh` take `oci:DIR[:NAME]` or `docker-archive:FILE`.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use oci::layout::Layout;
use oci::manifest::{Descriptor, Index, Manifest, media};
use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("reading the OCI layout {dir}")]
    Layout {
        dir: PathBuf,
        source: oci::layout::LayoutError,
    },
    #[error("applying a layer of {image}")]
    Layer {
        image: String,
        source: oci::layer::LayerError,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "image {0:?} is not `oci:DIR[:NAME]`, `docker-archive:FILE` or a registry reference: {1}"
    )]
    Unsupported(String, String),
    #[error("pulling {reference}")]
    Pull {
        reference: String,
        source: Box<oci::registry::RegistryError>,
    },
    #[error("reading registry credentials")]
    Credentials {
        source: oci::registry::credentials::CredentialsError,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SourceError + 'a {
    move |source| SourceError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A deployable thing, as named by the `image` or `artifact` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    OciLayout {
        dir: PathBuf,
        name: Option<String>,
    },
    DockerArchive(PathBuf),
    ArtifactDir(PathBuf),
    /// A `.tar` or `.tar.gz`.
    ArtifactTar(PathBuf),
    /// An image pulled from a registry into the OCI layout `layout` (see [`pull`]).
    Pulled {
        reference: String,
        layout: PathBuf,
        digest: String,
    },
}

impl Source {
    /// Parses the `image` input; relative paths resolve against `base`.
    pub fn image(spec: &str, base: &Path) -> Result<Source, SourceError> {
        if let Some(rest) = spec.strip_prefix("oci:") {
            // skopeo's spelling: `oci:DIR[:NAME]`; a NAME never contains `/`.
            let (dir, name) = match rest.rsplit_once(':') {
                Some((d, n)) if !n.contains('/') && !d.is_empty() => (d, Some(n.to_owned())),
                _ => (rest, None),
            };
            return Ok(Source::OciLayout {
                dir: base.join(dir),
                name,
            });
        }
        if let Some(rest) = spec.strip_prefix("docker-archive:") {
            return Ok(Source::DockerArchive(base.join(rest)));
        }
        match spec.parse::<oci::Reference>() {
            Ok(_) => Ok(Source::Pulled {
                reference: spec.to_owned(),
                layout: PathBuf::new(),
                digest: String::new(),
            }),
            Err(e) => Err(SourceError::Unsupported(spec.to_owned(), e.to_string())),
        }
    }

    /// Parses the `artifact` input: a directory or a tarball.
    pub fn artifact(spec: &str, base: &Path) -> Result<Source, SourceError> {
        let path = base.join(spec);
        let md = fs::metadata(&path).map_err(io_err("reading the artifact", &path))?;
        Ok(if md.is_dir() {
            Source::ArtifactDir(path)
        } else {
            Source::ArtifactTar(path)
        })
    }

    /// How the source is shown in logs and `releases.json`.
    pub fn describe(&self) -> String {
        match self {
            Source::OciLayout { dir, name: Some(n) } => format!("oci:{}:{n}", dir.display()),
            Source::OciLayout { dir, name: None } => format!("oci:{}", dir.display()),
            Source::DockerArchive(p) => format!("docker-archive:{}", p.display()),
            Source::ArtifactDir(p) | Source::ArtifactTar(p) => p.display().to_string(),
            Source::Pulled { reference, .. } => reference.clone(),
        }
    }

    /// The content digest: the image's manifest (or index) digest, the docker-archive's image
    /// id, the tarball's sha256, or a hash over a directory's paths, modes and contents.
    pub fn digest(&self) -> Result<String, SourceError> {
        match self {
            Source::OciLayout { dir, name } => {
                Ok(resolve_oci(dir, name.as_deref())?.0.digest.to_string())
            }
            Source::DockerArchive(path) => {
                let (_, config) = docker_archive_manifest(path)?;
                let config_bytes = read_archive_member(path, &config)?;
                Ok(format!(
                    "sha256:{}",
                    hex::encode(Sha256::digest(&config_bytes))
                ))
            }
            Source::ArtifactTar(path) => {
                let mut h = Sha256::new();
                hash_file(path, &mut h)?;
                Ok(format!("sha256:{}", hex::encode(h.finalize())))
            }
            Source::ArtifactDir(dir) => dir_digest(dir),
            Source::Pulled { digest, .. } => Ok(digest.clone()),
        }
    }

    /// Writes the unpacked tree into `dst` (an empty or missing directory).
    pub fn unpack(&self, dst: &Path) -> Result<(), SourceError> {
        fs::create_dir_all(dst).map_err(io_err("creating", dst))?;
        match self {
            Source::OciLayout { dir, name: _ } | Source::Pulled { layout: dir, .. } => {
                let name = match self {
                    Source::OciLayout { name, .. } => name.as_deref(),
                    _ => None,
                };
                let (_, manifest, layout) = resolve_oci(dir, name)?;
                for layer in &manifest.layers {
                    let stream = oci::layer::open_layer(&layout, layer).map_err(|source| {
                        SourceError::Layer {
                            image: self.describe(),
                            source,
                        }
                    })?;
                    oci::layer::apply_layer(stream, dst).map_err(|source| SourceError::Layer {
                        image: self.describe(),
                        source,
                    })?;
                }
                Ok(())
            }
            Source::DockerArchive(path) => {
                let (layers, _) = docker_archive_manifest(path)?;
                let tmp = tempfile::tempdir().map_err(io_err("creating a temp dir for", path))?;
                let f = File::open(path).map_err(io_err("opening", path))?;
                tar::Archive::new(BufReader::new(f))
                    .unpack(tmp.path())
                    .map_err(io_err("unpacking", path))?;
                for layer in layers {
                    let lp = tmp.path().join(&layer);
                    let stream =
                        maybe_gunzip(File::open(&lp).map_err(io_err("opening layer", &lp))?, &lp)?;
                    oci::layer::apply_layer(stream, dst).map_err(|source| SourceError::Layer {
                        image: self.describe(),
                        source,
                    })?;
                }
                Ok(())
            }
            Source::ArtifactTar(path) => {
                let stream =
                    maybe_gunzip(File::open(path).map_err(io_err("opening", path))?, path)?;
                let mut a = tar::Archive::new(stream);
                a.set_preserve_permissions(true);
                a.unpack(dst).map_err(io_err("unpacking", path))
            }
            Source::ArtifactDir(dir) => copy_tree(dir, dst),
        }
    }
}

/// Pulls a [`Source::Pulled`] (as parsed, without a layout yet) into the OCI layout `into`,
/// with `credentials` for its registry (else the docker config's), for the host's platform.
/// The digest is the reference's `@sha256:` when it has one, else the pulled manifest's.
pub async fn pull(
    source: Source,
    into: &Path,
    credentials: Option<(String, String)>,
) -> Result<Source, SourceError> {
    let Source::Pulled { reference, .. } = source else {
        return Ok(source);
    };
    let r: oci::Reference = reference
        .parse()
        .map_err(|e: oci::reference::InvalidReference| {
            SourceError::Unsupported(reference.clone(), e.to_string())
        })?;
    let creds = oci::registry::credentials::Credentials::from_docker_config()
        .map_err(|source| SourceError::Credentials { source })?;
    let creds = match credentials {
        Some((username, password)) => creds.with(
            &r.registry,
            oci::registry::credentials::Credential { username, password },
        ),
        None => creds,
    };
    let perr = |source: oci::registry::RegistryError| SourceError::Pull {
        reference: reference.clone(),
        source: Box::new(source),
    };
    let client = oci::registry::Client::new(creds, Default::default()).map_err(perr)?;
    let layout = Layout::create(into).map_err(|source| SourceError::Layout {
        dir: into.to_path_buf(),
        source,
    })?;
    let pulled = client
        .pull(&r, &oci::manifest::host_platform(), &layout)
        .await
        .map_err(perr)?;
    layout
        .add_manifest(pulled.descriptor.clone())
        .map_err(|source| SourceError::Layout {
            dir: into.to_path_buf(),
            source,
        })?;
    let digest = r
        .digest
        .as_ref()
        .map_or_else(|| pulled.descriptor.digest.to_string(), |d| d.to_string());
    Ok(Source::Pulled {
        reference,
        layout: into.to_path_buf(),
        digest,
    })
}

fn maybe_gunzip(f: File, path: &Path) -> Result<Box<dyn Read>, SourceError> {
    let mut r = BufReader::new(f);
    let peek = io::BufRead::fill_buf(&mut r).map_err(io_err("reading", path))?;
    Ok(if peek.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    })
}

/// The top descriptor, the platform manifest and the layout.
fn resolve_oci(
    dir: &Path,
    name: Option<&str>,
) -> Result<(Descriptor, Manifest, Layout), SourceError> {
    let lerr = |source| SourceError::Layout {
        dir: dir.to_path_buf(),
        source,
    };
    let layout = Layout::open(dir).map_err(lerr)?;
    let top = layout.resolve(name).map_err(lerr)?;
    let mut desc = top.clone();
    if media::is_index(&desc.media_type) {
        let index: Index = serde_json::from_slice(&layout.read_blob(&desc.digest).map_err(lerr)?)
            .map_err(|e| SourceError::Invalid {
            path: dir.to_path_buf(),
            message: format!("index {}: {e}", desc.digest),
        })?;
        let host = oci::manifest::host_platform();
        desc = index
            .manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == host.os && p.architecture == host.architecture)
            })
            .or_else(|| index.manifests.first())
            .cloned()
            .ok_or_else(|| SourceError::Invalid {
                path: dir.to_path_buf(),
                message: "the image index lists no manifest".into(),
            })?;
    }
    let manifest: Manifest = serde_json::from_slice(&layout.read_blob(&desc.digest).map_err(lerr)?)
        .map_err(|e| SourceError::Invalid {
            path: dir.to_path_buf(),
            message: format!("manifest {}: {e}", desc.digest),
        })?;
    Ok((top, manifest, layout))
}

#[derive(serde::Deserialize)]
struct ArchiveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// The layer paths and the config path of a docker-archive's (first) image.
fn docker_archive_manifest(path: &Path) -> Result<(Vec<String>, String), SourceError> {
    let bytes = read_archive_member(path, "manifest.json")?;
    let entries: Vec<ArchiveEntry> =
        serde_json::from_slice(&bytes).map_err(|e| SourceError::Invalid {
            path: path.to_path_buf(),
            message: format!("manifest.json: {e}"),
        })?;
    let first = entries
        .into_iter()
        .next()
        .ok_or_else(|| SourceError::Invalid {
            path: path.to_path_buf(),
            message: "manifest.json lists no image".into(),
        })?;
    for p in first.layers.iter().chain([&first.config]) {
        if Path::new(p)
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(SourceError::Invalid {
                path: path.to_path_buf(),
                message: format!("manifest.json names an unsafe path {p:?}"),
            });
        }
    }
    Ok((first.layers, first.config))
}

fn read_archive_member(path: &Path, member: &str) -> Result<Vec<u8>, SourceError> {
    let f = File::open(path).map_err(io_err("opening", path))?;
    let mut a = tar::Archive::new(BufReader::new(f));
    for entry in a.entries().map_err(io_err("reading", path))? {
        let mut entry = entry.map_err(io_err("reading", path))?;
        let p = entry.path().map_err(io_err("reading", path))?;
        if p.strip_prefix("./").unwrap_or(&p) == Path::new(member) {
            let mut v = Vec::new();
            entry.read_to_end(&mut v).map_err(io_err("reading", path))?;
            return Ok(v);
        }
    }
    Err(SourceError::Invalid {
        path: path.to_path_buf(),
        message: format!("not a docker-archive: it has no {member}"),
    })
}

fn mode_of(md: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    md.permissions().mode() & 0o7777
}

fn hash_file(path: &Path, h: &mut Sha256) -> Result<(), SourceError> {
    let mut f = File::open(path).map_err(io_err("opening", path))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

fn dir_digest(dir: &Path) -> Result<String, SourceError> {
    let mut h = Sha256::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name().min_depth(1) {
        let entry = entry.map_err(|e| SourceError::Io {
            action: "walking",
            path: dir.to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let md = entry
            .path()
            .symlink_metadata()
            .map_err(io_err("reading", entry.path()))?;
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update([0]);
        if md.file_type().is_symlink() {
            let t = fs::read_link(entry.path()).map_err(io_err("reading", entry.path()))?;
            h.update(b"l");
            h.update(t.as_os_str().as_encoded_bytes());
        } else if md.is_dir() {
            h.update(format!("d{:o}", mode_of(&md)));
        } else {
            h.update(format!("f{:o}:", mode_of(&md)));
            hash_file(entry.path(), &mut h)?;
        }
        h.update([0]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

fn copy_tree(src: &Path, dst: &Path) -> Result<(), SourceError> {
    for entry in walkdir::WalkDir::new(src).min_depth(1) {
        let entry = entry.map_err(|e| SourceError::Io {
            action: "walking",
            path: src.to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        let to = dst.join(rel);
        let md = entry
            .path()
            .symlink_metadata()
            .map_err(io_err("reading", entry.path()))?;
        if md.file_type().is_symlink() {
            let t = fs::read_link(entry.path()).map_err(io_err("reading", entry.path()))?;
            std::os::unix::fs::symlink(t, &to).map_err(io_err("creating", &to))?;
        } else if md.is_dir() {
            fs::create_dir_all(&to).map_err(io_err("creating", &to))?;
            fs::set_permissions(&to, md.permissions())
                .map_err(io_err("setting the mode of", &to))?;
        } else {
            fs::copy(entry.path(), &to).map_err(io_err("copying to", &to))?;
        }
    }
    Ok(())
}

/// Writes `dir` as an uncompressed tar stream into `out` (symlinks kept as links).
pub fn tar_dir(dir: &Path, out: impl io::Write) -> Result<(), SourceError> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    b.append_dir_all(".", dir)
        .map_err(io_err("archiving", dir))?;
    b.into_inner().map_err(io_err("archiving", dir))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn image_specs() {
        let base = Path::new("/w");
        assert_eq!(
            Source::image("oci:out", base).unwrap(),
            Source::OciLayout {
                dir: "/w/out".into(),
                name: None
            }
        );
        assert_eq!(
            Source::image("oci:/abs/out:v1", base).unwrap(),
            Source::OciLayout {
                dir: "/abs/out".into(),
                name: Some("v1".into())
            }
        );
        assert_eq!(
            Source::image("docker-archive:img.tar", base).unwrap(),
            Source::DockerArchive("/w/img.tar".into())
        );
        let e = Source::image("registry.example/app@sha256:00", base)
            .unwrap_err()
            .to_string();
        assert!(e.contains("oci:DIR"), "{e}");
    }

    #[test]
    fn dir_digest_follows_content_and_copy_round_trips() {
        let a = tempfile::tempdir().unwrap();
        fs::create_dir(a.path().join("sub")).unwrap();
        fs::write(a.path().join("sub/f"), b"one").unwrap();
        std::os::unix::fs::symlink("sub/f", a.path().join("link")).unwrap();
        let s = Source::ArtifactDir(a.path().into());
        let d1 = s.digest().unwrap();
        let out = tempfile::tempdir().unwrap();
        s.unpack(&out.path().join("r")).unwrap();
        assert_eq!(
            Source::ArtifactDir(out.path().join("r")).digest().unwrap(),
            d1
        );
        assert_eq!(fs::read(out.path().join("r/link")).unwrap(), b"one");
        fs::write(a.path().join("sub/f"), b"two").unwrap();
        assert_ne!(s.digest().unwrap(), d1);
    }

    #[test]
    fn tarball_artifacts_unpack_gzipped_or_not() {
        let a = tempfile::tempdir().unwrap();
        fs::write(a.path().join("f"), b"x").unwrap();
        let tars = tempfile::tempdir().unwrap();
        let plain = tars.path().join("a.tar");
        tar_dir(a.path(), File::create(&plain).unwrap()).unwrap();
        let gz = tars.path().join("a.tar.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        io::copy(&mut File::open(&plain).unwrap(), &mut enc).unwrap();
        enc.finish().unwrap();
        for t in [plain, gz] {
            let out = tempfile::tempdir().unwrap();
            Source::ArtifactTar(t).unpack(out.path()).unwrap();
            assert_eq!(fs::read(out.path().join("f")).unwrap(), b"x");
        }
    }

    #[test]
    fn docker_archive_without_manifest_is_refused() {
        let a = tempfile::tempdir().unwrap();
        fs::write(a.path().join("x"), b"x").unwrap();
        let tars = tempfile::tempdir().unwrap();
        let t = tars.path().join("bad.tar");
        tar_dir(a.path(), File::create(&t).unwrap()).unwrap();
        let e = Source::DockerArchive(t).digest().unwrap_err().to_string();
        assert!(e.contains("no manifest.json"), "{e}");
    }
}
