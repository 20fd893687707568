//! Building the image of a docker action whose `runs.image` is a Dockerfile.
//!
//! The action asks for such an image with a `dockerfile://ABSOLUTE-PATH` reference in
//! [`ContainerSpec::image`](super::super::ContainerSpec); the executor that runs the step
//! container builds it in its own engine first (like GitHub's runner, the build context is
//! the Dockerfile's directory). The context is sent as a deterministic tar (sorted entries,
//! no timestamps or owners), and the image is tagged `slipway-action/NAME:HASH` after the
//! action's directory and a hash of that tar, so a second use of the same action content
//! reuses the image instead of building it again.

use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::BuildImageOptions;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tracing::debug;

use super::DockerError;

/// The scheme of a reference to an image built from a Dockerfile.
pub const DOCKERFILE_SCHEME: &str = "dockerfile://";

/// The image reference of a docker action built from `dockerfile` (an absolute path).
pub fn dockerfile_reference(dockerfile: &Path) -> String {
    format!("{DOCKERFILE_SCHEME}{}", dockerfile.display())
}

/// The Dockerfile of a `dockerfile://` reference.
pub fn dockerfile_of(image: &str) -> Option<PathBuf> {
    image.strip_prefix(DOCKERFILE_SCHEME).map(PathBuf::from)
}

/// A tar of `dir` that is the same for the same content: entries in name order, regular
/// files and directories with fixed modes (executable bits kept), symlinks as links.
pub fn context_tar(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .map_err(std::io::Error::other)?;
        let meta = entry.path().symlink_metadata()?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder.append_data(&mut header, rel, std::io::empty())?;
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder.append_link(&mut header, rel, target)?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let executable = meta.permissions().mode() & 0o111 != 0;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if executable { 0o755 } else { 0o644 });
            header.set_size(meta.len());
            builder.append_data(&mut header, rel, std::fs::File::open(entry.path())?)?;
        }
    }
    builder.into_inner()
}

/// `slipway-action/NAME:HASH` for a context directory and its tar.
pub fn image_tag(dir: &Path, dockerfile: &str, tar: &[u8]) -> String {
    let raw = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    if name.is_empty() {
        name = "action".to_owned();
    }
    let mut hash = Sha256::new();
    hash.update(dockerfile.as_bytes());
    hash.update([0]);
    hash.update(tar);
    let digest = hex::encode(hash.finalize());
    format!("slipway-action/{name}:{}", &digest[..16])
}

/// Builds the image of `dockerfile` (unless an image of the same content exists) and
/// returns its tag. A failure names the action's directory and carries the engine's message.
pub async fn ensure_built(docker: &Docker, dockerfile: &Path) -> Result<String, DockerError> {
    let (Some(dir), Some(file)) = (dockerfile.parent(), dockerfile.file_name()) else {
        return Err(DockerError::Other(format!(
            "the Dockerfile {} has no directory",
            dockerfile.display()
        )));
    };
    let file = file.to_string_lossy().into_owned();
    let failed = |message: String| {
        DockerError::Other(format!(
            "building the image of docker action {}: {message}",
            dir.display()
        ))
    };
    if !dockerfile.is_file() {
        return Err(failed(format!("{} does not exist", dockerfile.display())));
    }
    let tar = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || context_tar(&dir))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(format!("reading the build context: {e}")))?
    };
    let tag = image_tag(dir, &file, &tar);
    match docker.inspect_image(&tag).await {
        Ok(_) => {
            debug!(%tag, "Reusing the built action image.");
            return Ok(tag);
        }
        Err(BollardError::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => return Err(failed(super::engine_message(&e))),
    }
    debug!(%tag, dockerfile = %dockerfile.display(), "Building the action image.");
    let options = BuildImageOptions {
        dockerfile: file,
        t: Some(tag.clone()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut progress = docker.build_image(options, None, Some(bollard::body_full(tar.into())));
    let mut last_lines = Vec::new();
    while let Some(item) = progress.next().await {
        match item {
            Ok(info) => {
                if let Some(message) = info.error_detail.and_then(|d| d.message) {
                    return Err(failed(with_output(message, &last_lines)));
                }
                if let Some(line) = info
                    .stream
                    .as_deref()
                    .map(str::trim_end)
                    .filter(|l| !l.is_empty())
                {
                    last_lines.push(line.to_owned());
                    if last_lines.len() > 10 {
                        last_lines.remove(0);
                    }
                }
            }
            Err(e) => return Err(failed(with_output(super::engine_message(&e), &last_lines))),
        }
    }
    match docker.inspect_image(&tag).await {
        Ok(_) => Ok(tag),
        Err(e) => Err(failed(with_output(super::engine_message(&e), &last_lines))),
    }
}

fn with_output(message: String, lines: &[String]) -> String {
    if lines.is_empty() {
        message
    } else {
        format!("{message}\n{}", lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = dockerfile_reference(Path::new("/w/my-action/Dockerfile"));
        assert_eq!(r, "dockerfile:///w/my-action/Dockerfile");
        assert_eq!(
            dockerfile_of(&r),
            Some(PathBuf::from("/w/my-action/Dockerfile"))
        );
        assert_eq!(dockerfile_of("docker://busybox"), None);
    }

    #[test]
    fn tags_follow_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let action = dir.path().join("My Action");
        std::fs::create_dir_all(action.join("sub")).expect("fixture");
        std::fs::write(action.join("Dockerfile"), "FROM x\n").expect("fixture");
        std::fs::write(action.join("sub/a"), "a").expect("fixture");
        let first = image_tag(
            &action,
            "Dockerfile",
            &context_tar(&action).expect("context"),
        );
        assert!(first.starts_with("slipway-action/my-action:"), "{first}");
        assert_eq!(
            first,
            image_tag(
                &action,
                "Dockerfile",
                &context_tar(&action).expect("context")
            )
        );
        std::fs::write(action.join("sub/a"), "b").expect("fixture");
        assert_ne!(
            first,
            image_tag(
                &action,
                "Dockerfile",
                &context_tar(&action).expect("context")
            )
        );
    }
}
