//! Admin pages: repositories, secrets and variables, users (admins only).

use axum::Router;

use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
}
