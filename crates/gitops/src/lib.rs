//! The GitOps agent (pull deployment, Argo CD's role) and the `slipway/promote` action.
//!
//! The pipeline never touches the target: [`promote`] commits a new image digest into a
//! deployment repository; an [`agent::Agent`] running beside the target fetches that
//! repository, renders the desired state ([`render`]), compares it with the live state of
//! its [`target`] with a pure function ([`diff()`]), and applies only the difference.
//!
//! - [`model`]: keys, objects, live objects, sync and health statuses
//! - [`diff`](mod@diff): desired vs live → ordered changes; no I/O
//! - [`appfile`]: the compose-like app file of the `local` and `docker` targets
//! - [`render`]: a checkout → desired objects (app file, manifests, kustomize)
//! - [`git`]: a bare mirror per repository; provenance trailers of promote commits
//! - [`target`]: `local` (release directories), `docker` (bollard), `kubernetes` (kube-rs)
//! - [`agent`]: reconcile loop, webhook and API, state file, reports to the server
//! - [`promote`]: the built-in action
//!
//! Not here: deployment records and environments (the server's), the deploy targets of the
//! push model (crate `deploy`, used as a library).

pub mod agent;
pub mod appfile;
pub mod diff;
pub mod git;
pub mod model;
pub mod promote;
pub mod render;
pub mod report;
pub mod state;
pub mod target;
pub mod yamledit;

pub use diff::{Diff, DiffOptions, diff};

/// An error and its sources, `: `-joined.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
