//! Gitea/GitHub Actions workflows: YAML -> [`Workflow`] -> [`Plan`].
//!
//! Main entry points: [`parse`] (syntax and structure, with file:line:col diagnostics),
//! [`compile()`] (one event, reusable workflows resolved through a [`Loader`], needs-DAG
//! checked and ordered), [`expr`] (the `${{ }}` language) and [`matrix::expand`].
//!
//! This crate does no I/O, reads no clock and no environment: file contents, the event and
//! contexts come in as arguments.
//!
//! # What the runner gets, and what it still evaluates
//!
//! A [`Plan`] holds jobs in `needs` order. Everything that depends on run-time values stays
//! a [`expr::Template`] / [`expr::Condition`]: `if:`, `name:`, `runs-on:`, `env:` values,
//! scripts, `with:`, `outputs:`, `container`/`services` fields, `timeout-minutes` and
//! `continue-on-error` ([`NumberOrExpr`]/[`BoolOrExpr`]), and `strategy.matrix` (raw JSON,
//! expanded with [`matrix::expand`] once the job's needs are done, then [`matrix::filter`]
//! for `--matrix`). YAML scalars in string positions are already strings (`1` -> `"1"`,
//! `true` -> `"true"`, `~` -> `""`).
//!
//! A job that calls a local reusable workflow is [`JobKind::Call`] with `plan` filled (the
//! callee compiled for `workflow_call`; its `trigger` lists the declared inputs, outputs and
//! secrets). `with:` values are templates: the runner evaluates them and converts them to
//! the callee's declared input types (`boolean`, `number`), applying defaults. Remote
//! reusable workflows (`owner/repo/...@ref`) are left with `plan: None`.
//!
//! Parsing is a hand-rolled pass over a positioned YAML tree (`yaml`, built on
//! `saphyr-parser` events) in `parse`; every problem is a [`Diagnostic`] with file:line:col
//! and a snippet, and all problems are reported at once.

pub mod compile;
pub mod diag;
pub mod expr;
pub mod filter;
pub mod matrix;
mod parse;
pub mod plan;
mod yaml;

pub use compile::{compile, listens_to, parse, CompileOptions};
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use plan::*;
