//! The registry pages: repositories, tags, digests, sizes, and which deployments use a digest.

use axum::Router;

use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
}
