//! A real OpenSSH server for tests: [`Sshd::start`] generates a host key and a client key pair
//! in a temp dir, runs `/usr/sbin/sshd -D` on a free loopback port as the current user, and
//! kills it on drop.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd.
pub struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    host_public: String,
    user: String,
}

/// Generates an ed25519 key pair at `dir/name` (+ `.pub`); returns the private key path and
/// the public key line (`ssh-ed25519 AAAA... comment`).
pub fn generate_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let keygen = crate::require_command("ssh-keygen", "openssh-client");
    let path = dir.join(name);
    let st = Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .status()
        .expect("running ssh-keygen");
    assert!(st.success(), "ssh-keygen failed for {}", path.display());
    let public = std::fs::read_to_string(path.with_extension("pub"))
        .expect("reading the generated public key");
    (path, public.trim().to_owned())
}

impl Sshd {
    /// Starts sshd; panics with the install command when OpenSSH server is missing.
    pub fn start() -> Sshd {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is missing: apt-get install openssh-server (scripts/test does this when run as root)"
        );
        std::fs::create_dir_all("/run/sshd")
            .expect("creating /run/sshd (sshd's privilege separation dir)");
        let dir = tempfile::Builder::new()
            .prefix("slipway-sshd-")
            .tempdir()
            .expect("creating a temp dir");
        let d = dir.path();
        let (_, host_public) = generate_key(d, "host_ed25519");
        let (_, client_public) = generate_key(d, "id_ed25519");
        std::fs::write(d.join("authorized_keys"), format!("{client_public}\n"))
            .expect("writing authorized_keys");
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("finding a free port")
            .port();
        let config = d.join("sshd_config");
        let mut f = std::fs::File::create(&config).expect("writing sshd_config");
        write!(
            f,
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {dir}/host_ed25519\nAuthorizedKeysFile {dir}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             PermitRootLogin prohibit-password\nPidFile {dir}/sshd.pid\nLogLevel VERBOSE\n",
            dir = d.display()
        )
        .expect("writing sshd_config");
        let log = d.join("sshd.log");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .expect("starting sshd");
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "root".into());
        let mut sshd = Sshd {
            child,
            dir,
            port,
            host_public,
            user,
        };
        sshd.wait_listening(&log);
        sshd
    }

    fn wait_listening(&mut self, log: &Path) {
        // sshd gives no readiness signal on a pipe; poll its port (and notice an early exit).
        for _ in 0..500 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sshd exited with {status}: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "sshd did not listen on port {} within 10s: {}",
            self.port,
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user it accepts (the current user).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The known_hosts line for this server (`[127.0.0.1]:PORT ssh-ed25519 AAAA...`).
    pub fn known_hosts_line(&self) -> String {
        known_hosts_line(self.port, &self.host_public)
    }

    /// The client private key that `authorized_keys` accepts.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// The fixture's temp dir (keys, config, `sshd.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A known_hosts line for `public` (`ssh-ed25519 AAAA... comment`) at 127.0.0.1:`port`.
pub fn known_hosts_line(port: u16, public: &str) -> String {
    let mut parts = public.split_whitespace();
    let (kind, key) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    format!("[127.0.0.1]:{port} {kind} {key}")
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
