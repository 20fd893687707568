//! The Docker executor.
