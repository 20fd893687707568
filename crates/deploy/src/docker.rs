//! The `docker` target (in progress).

use indexmap::IndexMap;

use crate::action::{ActionError, Inputs};

pub(crate) async fn run_action(_inp: &Inputs<'_>, _log: &(dyn Fn(&str) + Send + Sync)) -> Result<IndexMap<String, String>, ActionError> {
    Err(ActionError("slipway/deploy-docker is not implemented yet".into()))
}
