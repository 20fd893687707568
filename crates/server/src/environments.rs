//! Deployment environments: `[[environment]]` configuration, protection rules (reviewers,
//! wait timer, allowed refs), approvals and the deployment records' API.

use axum::Router;

use crate::AppState;
use crate::config::ConfigError;

/// One `[[environment]]` of the configuration.
#[derive(Debug, Clone)]
pub struct EnvironmentConfig {
    pub name: String,
}

/// Reads the `[[environment]]` tables; `resolve` turns `env:NAME` values into their value.
pub(crate) fn parse_config(
    raw: Vec<toml::Value>,
    file: &str,
    resolve: &dyn Fn(&str, String) -> Result<String, ConfigError>,
) -> Result<Vec<EnvironmentConfig>, ConfigError> {
    let _ = resolve;
    let mut out = Vec::new();
    for value in raw {
        let name = value.get("name").and_then(|v| v.as_str()).ok_or_else(|| ConfigError::Invalid {
            file: file.to_owned(),
            message: "an [[environment]] needs a name".to_owned(),
        })?;
        out.push(EnvironmentConfig { name: name.to_owned() });
    }
    Ok(out)
}

/// The environments' and deployments' API routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
