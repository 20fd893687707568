//! Executors: where a job's processes run. `host` (this machine, optional bubblewrap
//! sandbox) and `docker` (a container per job through the Docker Engine API).
//!
//! CONTRACT between the runner core and the executors: owned by the runner core, which may
//! refine it; `docker.rs` implements it.

pub mod docker;
pub mod host;
