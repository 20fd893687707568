//! Admin pages for environments: create and edit protection rules, secrets and variables.

use axum::Router;

use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
}
