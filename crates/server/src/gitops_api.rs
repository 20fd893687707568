//! Where GitOps agents report their applications' sync status and history.

use axum::Router;

use crate::AppState;

/// The GitOps reporting routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
