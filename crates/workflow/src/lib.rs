//! Gitea/GitHub Actions workflows: YAML -> [`Workflow`] -> [`Plan`].
//!
//! Main entry points: [`parse`] (syntax and structure, with file:line:col diagnostics),
//! [`compile`] (one event, reusable workflows resolved through a [`Loader`], needs-DAG
//! checked and ordered), [`expr`] (the `${{ }}` language) and [`matrix::expand`].
//!
//! This crate does no I/O, reads no clock and no environment: file contents, the event and
//! contexts come in as arguments.

pub mod compile;
pub mod diag;
pub mod expr;
pub mod matrix;
mod parse;
pub mod plan;
mod yaml;

pub use compile::{compile, listens_to, parse, CompileOptions};
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use plan::*;
