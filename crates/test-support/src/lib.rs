//! Shared test helpers: where the real services started by `scripts/test` are, and small
//! fixtures. A test that needs a service calls its accessor; when the service is missing the
//! accessor panics with the command that provides it — a test never silently passes.
//!
//! `scripts/test` installs the Debian packages, starts each service on a free loopback port
//! and exports these variables:
//!
//! | variable | what |
//! |---|---|
//! | `SLIPWAY_TEST_DOCKER_HOST` | `unix:///.../docker.sock` of a private dockerd |
//! | `SLIPWAY_TEST_BUSYBOX_IMAGE` | a busybox image name loaded into that dockerd (`local/busybox:test`) |
//! | `SLIPWAY_TEST_BUSYBOX_TAR` | the busybox-static rootfs as a tar file |
//! | `SLIPWAY_TEST_DISTRIBUTION` | `127.0.0.1:PORT` of the CNCF distribution registry (htpasswd auth) |
//! | `SLIPWAY_TEST_DISTRIBUTION_USER` / `_PASSWORD` | its credentials |
//! | `SLIPWAY_TEST_S3` | `http://127.0.0.1:PORT` of a moto S3 server (any key/secret work) |
//! | `SLIPWAY_TEST_POSTGRES` | `postgres://postgres@127.0.0.1:PORT/postgres` (trust auth; create your own database per test) |

pub mod git;
pub mod kube;
pub mod sshd;

use std::path::PathBuf;

fn required(var: &str, what: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: this test needs {what}. Run the suite with `scripts/test`, \
             which installs it and starts it on a free loopback port"
        ),
    }
}

/// The private dockerd's endpoint (`unix:///.../docker.sock`). Needs Debian `docker.io`.
pub fn docker_host() -> String {
    required("SLIPWAY_TEST_DOCKER_HOST", "a Docker engine (apt-get install docker.io)")
}

/// A busybox image present in [`docker_host`]'s dockerd. Needs Debian `busybox-static`.
pub fn busybox_image() -> String {
    required("SLIPWAY_TEST_BUSYBOX_IMAGE", "a busybox image in dockerd (apt-get install busybox-static docker.io)")
}

/// A tar of a busybox-static root filesystem (`/bin/busybox` + applet links).
pub fn busybox_tar() -> PathBuf {
    PathBuf::from(required("SLIPWAY_TEST_BUSYBOX_TAR", "a busybox rootfs tar (apt-get install busybox-static)"))
}

/// The CNCF distribution registry with htpasswd auth.
pub struct Distribution {
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub user: String,
    pub password: String,
}

/// The CNCF distribution registry (Debian `docker-registry`).
pub fn distribution() -> Distribution {
    let what = "the CNCF distribution registry (apt-get install docker-registry apache2-utils)";
    Distribution {
        addr: required("SLIPWAY_TEST_DISTRIBUTION", what),
        user: required("SLIPWAY_TEST_DISTRIBUTION_USER", what),
        password: required("SLIPWAY_TEST_DISTRIBUTION_PASSWORD", what),
    }
}

/// A moto S3-compatible server endpoint (PyPI `moto[server]`).
pub fn s3_endpoint() -> String {
    required("SLIPWAY_TEST_S3", "an S3-compatible server (pip install 'moto[server]')")
}

/// Panics with the install command unless `cmd` is on PATH.
pub fn require_command(cmd: &str, debian_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(cmd);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{cmd}` is not installed: apt-get install {debian_package} (scripts/test does this when run as root)")
}

/// The shared peer test data (`../shared` next to the project checkout).
pub fn shared_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = manifest.join("../../../shared");
    assert!(
        dir.is_dir(),
        "the shared test data is missing: expected {} (a checkout of the project next to `shared/`)",
        dir.display()
    );
    dir
}

/// A fresh temporary directory, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("slipway-test-").tempdir().expect("creating a temp dir")
}

/// A PostgreSQL server URL (`postgres://postgres@127.0.0.1:PORT/postgres`, trust auth).
pub fn postgres() -> String {
    required("SLIPWAY_TEST_POSTGRES", "a PostgreSQL server (apt-get install postgresql)")
}

/// A child process that printed `... listening on http://ADDR ...` on stderr; killed on drop.
pub struct Listening {
    pub child: std::process::Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
}

impl Listening {
    /// Spawns `command` with stderr piped and waits for its "listening on http://" line
    /// (`slipway registry`, `slipway server` print one). The rest of stderr is drained in the
    /// background so the child never blocks on a full pipe.
    pub fn spawn(mut command: std::process::Command) -> Listening {
        use std::io::BufRead;
        let mut child = command.stderr(std::process::Stdio::piped()).spawn().expect("spawning the server process");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines.next().expect("the process exited before listening").expect("reading stderr");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().expect("an address after `listening on`").to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Listening { child, addr }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
