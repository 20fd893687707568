//! Making sure an image is present in the engine: inspect, and pull only when absent
//! (with registry credentials when given). A pull failure names the image and carries the
//! registry's message.

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;
use tracing::debug;

use super::DockerError;

/// The `fromImage`/`tag` pair of a pull. A reference without tag or digest gets `latest`
/// (an empty tag would make the engine pull every tag of the repository).
pub fn pull_reference(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_owned(), None);
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') { (image.to_owned(), None) } else { (image.to_owned(), Some("latest".to_owned())) }
}

/// The registry a reference lives in, as the engine's auth config names it.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first.to_owned(),
        _ => "https://index.docker.io/v1/".to_owned(),
    }
}

/// Pulls `image` unless the engine already has it.
pub async fn ensure_image(
    docker: &Docker,
    image: &str,
    credentials: Option<&(String, String)>,
) -> Result<(), DockerError> {
    if image.trim().is_empty() {
        return Err(DockerError::EmptyImage);
    }
    match docker.inspect_image(image).await {
        Ok(_) => return Ok(()),
        Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => {}
        Err(source) => return Err(DockerError::api(format!("inspecting image {image}"), source)),
    }
    debug!(%image, "Pulling image.");
    let (from_image, tag) = pull_reference(image);
    let options = CreateImageOptions { from_image: Some(from_image), tag, ..Default::default() };
    let credentials = credentials.map(|(user, password)| DockerCredentials {
        username: Some(user.clone()),
        password: Some(password.clone()),
        serveraddress: Some(registry_of(image)),
        ..Default::default()
    });
    let mut progress = docker.create_image(Some(options), None, credentials);
    while let Some(item) = progress.next().await {
        match item {
            Ok(info) => {
                if let Some(message) = info.error_detail.and_then(|d| d.message) {
                    return Err(DockerError::Pull { image: image.to_owned(), message });
                }
            }
            Err(source) => {
                return Err(DockerError::Pull { image: image.to_owned(), message: super::engine_message(&source) });
            }
        }
    }
    // Some engines end a failed pull without an error line; make sure the image is there.
    match docker.inspect_image(image).await {
        Ok(_) => Ok(()),
        Err(source) => Err(DockerError::Pull { image: image.to_owned(), message: super::engine_message(&source) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let cases = [
            ("busybox", "busybox", Some("latest")),
            ("local/busybox:test", "local/busybox:test", None),
            ("127.0.0.1:5000/app", "127.0.0.1:5000/app", Some("latest")),
            ("127.0.0.1:5000/app:v1", "127.0.0.1:5000/app:v1", None),
            ("app@sha256:abcd", "app@sha256:abcd", None),
        ];
        for (input, from, tag) in cases {
            assert_eq!(pull_reference(input), (from.to_owned(), tag.map(str::to_owned)), "{input}");
        }
    }

    #[test]
    fn registries() {
        assert_eq!(registry_of("busybox"), "https://index.docker.io/v1/");
        assert_eq!(registry_of("library/busybox"), "https://index.docker.io/v1/");
        assert_eq!(registry_of("127.0.0.1:5000/app"), "127.0.0.1:5000");
        assert_eq!(registry_of("ghcr.io/o/app:1"), "ghcr.io");
        assert_eq!(registry_of("localhost/app"), "localhost");
    }
}
