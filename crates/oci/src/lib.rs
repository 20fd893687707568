//! OCI images: digests, manifests, image layouts, a daemonless reproducible image builder
//! (Dockerfile), and a registry client.
//!
//! CONTRACT used by the runner's built-in actions: [`action::build_push`] and [`action::login`].

pub mod action;
pub mod archive;
pub mod build;
pub mod context;
pub mod digest;
pub mod dockerfile;
pub mod layer;
pub mod layout;
pub mod manifest;
pub mod output;
pub mod reference;
pub mod registry;
pub mod sandbox;

pub use digest::Digest;
pub use reference::Reference;
