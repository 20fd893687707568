//! OCI images: digests, manifests, image layouts, a daemonless reproducible image builder
//! (Dockerfile), and a registry client.
//!
//! CONTRACT used by the runner's built-in actions: [`action::build_push`] and [`action::login`].

pub mod digest;
pub mod dockerfile;
pub mod layer;
pub mod layout;
pub mod manifest;
pub mod reference;

pub use digest::Digest;
pub use reference::Reference;

pub mod action {
    //! `docker/build-push-action` and `docker/login-action`, backed by the native builder and
    //! client.

    use std::path::Path;

    use indexmap::IndexMap;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct ActionError(pub String);

    /// Runs `docker/build-push-action` with its inputs (`context`, `file`, `tags`, `push`,
    /// `build-args`, `labels`, `outputs`, ...; multi-line/comma lists as the original).
    /// Relative paths resolve against `workspace`. Returns the outputs `digest`, `imageid`,
    /// `metadata`. `log` receives progress lines.
    pub async fn build_push(
        inputs: &IndexMap<String, String>,
        workspace: &Path,
        log: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<IndexMap<String, String>, ActionError> {
        let _ = (inputs, workspace, log);
        Err(ActionError("docker/build-push-action is not implemented yet".into()))
    }

    /// Runs `docker/login-action` (`registry`, `username`, `password`): verifies the
    /// credentials against the registry and stores them where the client finds them.
    pub async fn login(
        inputs: &IndexMap<String, String>,
        log: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<IndexMap<String, String>, ActionError> {
        let _ = (inputs, log);
        Err(ActionError("docker/login-action is not implemented yet".into()))
    }
}
