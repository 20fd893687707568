//! Deploy targets: `local` release directories, SSH hosts, Docker hosts, Kubernetes.
//!
//! CONTRACT used by the runner's built-in `slipway/deploy-*` actions: [`action::run`].
//!
//! - [`release`]: the release-directory scheme (`releases/<id>`, `current`, `releases.json`),
//!   pure.
//! - [`host`]: the [`host::Host`] primitives a release-directory target provides;
//!   [`host::LocalHost`] and [`ssh::SshHost`] implement them.
//! - [`rollout`]: one deploy through a `Host` — take the root's deploy lock, install,
//!   switch, restart under [`supervisor`], health check, roll back on failure, prune.
//! - [`source`]: what is deployed (a registry image, an OCI layout, a docker-archive, an
//!   artifact directory or tarball).
//! - [`docker`]: the Docker-host target (replace a container: start new, check, remove old).
//! - [`kubernetes`]: server-side apply of manifests, rollout wait, prune by app label.
//!
//! A new release-directory target plugs in by implementing [`host::Host`]; a target with its
//! own notion of a release (like Docker or Kubernetes) gets a module of its own and an arm in
//! [`action::run`].
//!
//! Not here: deployment records, environments and approvals (the server's).

pub mod action;
pub mod docker;
pub mod host;
pub mod kubernetes;
pub mod release;
pub mod rollout;
pub mod source;
pub mod ssh;
pub mod supervisor;
