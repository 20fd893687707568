//! Deploy targets: `local` release directories, SSH hosts, Docker hosts, Kubernetes.
//!
//! CONTRACT used by the runner's built-in `slipway/deploy-*` actions: [`action::run`].

pub mod action {
    //! The built-in `slipway/deploy-local|ssh|docker|kubernetes` actions.

    use std::path::Path;

    use indexmap::IndexMap;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct ActionError(pub String);

    /// Runs `slipway/<name>` (`deploy-local`, `deploy-ssh`, `deploy-docker`,
    /// `deploy-kubernetes`) with its evaluated `with:` inputs. Relative paths resolve against
    /// `workspace`. Returns the step outputs (at least `digest` of what was deployed, when an
    /// image was deployed, and `release`). `log` receives progress lines.
    pub async fn run(
        name: &str,
        inputs: &IndexMap<String, String>,
        workspace: &Path,
        log: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<IndexMap<String, String>, ActionError> {
        let _ = (inputs, workspace, log);
        Err(ActionError(format!("slipway/{name} is not implemented yet")))
    }
}
