//! Where a built image goes: the registry (`--push`), an OCI layout (`oci:DIR`) or a
//! docker archive (`docker-archive:FILE`).

use std::path::PathBuf;
use std::str::FromStr;

use crate::archive::{self, ArchiveError};
use crate::build::{Built, copy_image};
use crate::layout::{Layout, LayoutError};
use crate::reference::Reference;
use crate::registry::{Client, PushReport, RegistryError};

/// An `--output` destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Oci(PathBuf),
    DockerArchive(PathBuf),
    /// `type=registry` (buildx spelling): push the tags.
    Registry,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid output {0:?}: use oci:DIR, docker-archive:FILE, or type=oci|docker|registry,dest=PATH"
)]
pub struct InvalidOutput(pub String);

impl FromStr for Output {
    type Err = InvalidOutput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidOutput(s.to_string());
        if let Some(d) = s.strip_prefix("oci:") {
            return if d.is_empty() {
                Err(bad())
            } else {
                Ok(Output::Oci(d.into()))
            };
        }
        if let Some(d) = s.strip_prefix("docker-archive:") {
            return if d.is_empty() {
                Err(bad())
            } else {
                Ok(Output::DockerArchive(d.into()))
            };
        }
        // buildx: type=oci,dest=path / type=docker,dest=path / type=registry
        let mut kind = None;
        let mut dest = None;
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("type", t)) => kind = Some(t.trim()),
                Some(("dest", d)) => dest = Some(d.trim()),
                _ => {}
            }
        }
        match (kind, dest) {
            (Some("oci"), Some(d)) if !d.is_empty() => Ok(Output::Oci(d.into())),
            (Some("docker") | Some("tar"), Some(d)) if !d.is_empty() => {
                Ok(Output::DockerArchive(d.into()))
            }
            (Some("registry") | Some("image"), _) => Ok(Output::Registry),
            _ => Err(bad()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("writing the OCI layout {dir}")]
    Oci { dir: PathBuf, source: LayoutError },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("pushing {reference}")]
    Push {
        reference: String,
        source: Box<RegistryError>,
    },
}

/// Writes `built` (from the store `layout`) to an OCI layout or docker archive.
pub fn write(
    layout: &Layout,
    built: &Built,
    tags: &[Reference],
    out: &Output,
) -> Result<(), OutputError> {
    match out {
        Output::Oci(dir) => {
            let e = |source| OutputError::Oci {
                dir: dir.clone(),
                source,
            };
            let dst = Layout::create(dir).map_err(e)?;
            copy_image(layout, &dst, &built.manifest).map_err(e)?;
            if tags.is_empty() {
                dst.add_manifest(built.manifest.clone()).map_err(e)?;
            }
            for t in tags {
                dst.set_ref(
                    t.tag.as_deref().unwrap_or("latest"),
                    built.manifest.clone(),
                    Some(&t.to_string()),
                )
                .map_err(e)?;
            }
            Ok(())
        }
        Output::DockerArchive(path) => {
            let names: Vec<String> = tags
                .iter()
                .map(|t| t.with_tag(t.tag.as_deref().unwrap_or("latest")).to_string())
                .collect();
            Ok(archive::write(
                layout,
                &built.manifest.digest,
                &names,
                path,
            )?)
        }
        Output::Registry => Ok(()),
    }
}

/// Pushes `built` to every tag; mounts base layers from their source repository when it is on
/// the same registry.
pub async fn push(
    client: &Client,
    layout: &Layout,
    built: &Built,
    tags: &[Reference],
) -> Result<Vec<PushReport>, OutputError> {
    let mut reports = Vec::new();
    for t in tags {
        let mount: Vec<String> = built
            .sources
            .iter()
            .filter(|(reg, _)| *reg == t.registry)
            .map(|(_, repo)| repo.clone())
            .collect();
        let r = client
            .push(layout, &built.manifest, t, &mount)
            .await
            .map_err(|source| OutputError::Push {
                reference: t.to_string(),
                source: Box::new(source),
            })?;
        reports.push(r);
    }
    Ok(reports)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_outputs() {
        assert_eq!(
            "oci:/tmp/x".parse::<Output>().unwrap(),
            Output::Oci("/tmp/x".into())
        );
        assert_eq!(
            "docker-archive:a.tar".parse::<Output>().unwrap(),
            Output::DockerArchive("a.tar".into())
        );
        assert_eq!(
            "type=oci,dest=/o".parse::<Output>().unwrap(),
            Output::Oci("/o".into())
        );
        assert_eq!(
            "type=docker,dest=i.tar".parse::<Output>().unwrap(),
            Output::DockerArchive("i.tar".into())
        );
        assert_eq!("type=registry".parse::<Output>().unwrap(), Output::Registry);
        for bad in ["oci:", "tar:x", "type=oci"] {
            assert!(bad.parse::<Output>().is_err(), "{bad}");
        }
    }
}
