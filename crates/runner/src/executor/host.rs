//! The host executor.
