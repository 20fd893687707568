//! The `ssh` target: [`SshHost`] implements [`Host`] over one SSH connection (russh, public-key
//! auth), so the release scheme, supervisor and health checks are the same as `local`.
//!
//! The server's host key must be listed in the `known_hosts` text the caller passes: an
//! unknown key or a different key is refused with [`SshError::UnknownHostKey`] /
//! [`SshError::HostKeyMismatch`] — never trusted on first use. Each operation runs one
//! command on its own exec channel; files go over stdin (`cat >`, `tar -x`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::ChannelMsg;
use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};

use crate::host::{DeployLock, ExecOutput, Host, HostError, Signal, sh_quote};

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("connecting to {addr} timed out after {secs}s")]
    Timeout { addr: String, secs: u64 },
    #[error("connecting to {addr}")]
    Connect { addr: String, source: io::Error },
    #[error(
        "the host key of {addr} ({fingerprint}) is not in known_hosts; it is never trusted on first use: \
         add it to the `known-hosts` input (ssh-keyscan -p {port} {host})"
    )]
    UnknownHostKey {
        addr: String,
        host: String,
        port: u16,
        fingerprint: String,
    },
    #[error(
        "host key mismatch for {addr}: the server offered {fingerprint}, which differs from the key known_hosts \
         lists for it (line {line}); refusing to connect (the host was reinstalled, or someone is in the middle)"
    )]
    HostKeyMismatch {
        addr: String,
        fingerprint: String,
        line: usize,
    },
    #[error("reading the known_hosts entries")]
    KnownHosts { source: russh::keys::Error },
    #[error("reading the private key {what}")]
    Key {
        what: String,
        source: russh::keys::Error,
    },
    #[error("{user}@{addr} refused the private key {what}")]
    AuthRejected {
        user: String,
        addr: String,
        what: String,
    },
    #[error("ssh {user}@{addr}: {action}")]
    Protocol {
        user: String,
        addr: String,
        action: String,
        source: Box<russh::Error>,
    },
    #[error("ssh {user}@{addr}: the channel closed before `{command}` reported an exit status")]
    NoExitStatus {
        user: String,
        addr: String,
        command: String,
    },
    #[error("writing a temporary file for {what}")]
    Temp {
        what: &'static str,
        source: io::Error,
    },
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct SshOptions {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// A private key: its OpenSSH/PEM text, or a path to it.
    pub key: String,
    /// known_hosts lines (`[host]:port ssh-ed25519 AAAA...`; hashed entries work too).
    pub known_hosts: String,
    pub connect_timeout: Duration,
}

/// What the host-key check saw, for the error message (russh only reports "rejected").
#[derive(Debug, Clone)]
enum Verdict {
    Unknown { fingerprint: String },
    Mismatch { fingerprint: String, line: usize },
}

struct Checker {
    known: Vec<(usize, PublicKey)>,
    verdict: Arc<Mutex<Option<Verdict>>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = server_key else {
            // Host certificates would need @cert-authority lines; not supported: refuse.
            self.set(Verdict::Unknown {
                fingerprint: "a host certificate".into(),
            });
            return Ok(false);
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        if self
            .known
            .iter()
            .any(|(_, k)| k.key_data() == key.key_data())
        {
            return Ok(true);
        }
        match self
            .known
            .iter()
            .find(|(_, k)| k.algorithm() == key.algorithm())
            .or(self.known.first())
        {
            Some((line, _)) => self.set(Verdict::Mismatch {
                fingerprint,
                line: *line,
            }),
            None => self.set(Verdict::Unknown { fingerprint }),
        }
        Ok(false)
    }
}

impl Checker {
    fn set(&self, v: Verdict) {
        if let Ok(mut g) = self.verdict.lock() {
            *g = Some(v);
        }
    }
}

/// One authenticated SSH connection.
pub struct SshHost {
    handle: client::Handle<Checker>,
    user: String,
    addr: String,
}

impl SshHost {
    /// Connects, checks the host key against `opts.known_hosts` and authenticates with the key.
    pub async fn connect(opts: &SshOptions) -> Result<SshHost, SshError> {
        let addr = format!("{}:{}", opts.host, opts.port);
        let known = known_keys(&opts.known_hosts, &opts.host, opts.port)?;
        let (key, what) = load_key(&opts.key)?;
        let verdict = Arc::new(Mutex::new(None));
        let checker = Checker {
            known,
            verdict: verdict.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        });
        let timeout = opts.connect_timeout;
        let tcp = tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((opts.host.as_str(), opts.port)),
        )
        .await
        .map_err(|_| SshError::Timeout {
            addr: addr.clone(),
            secs: timeout.as_secs(),
        })?
        .map_err(|source| SshError::Connect {
            addr: addr.clone(),
            source,
        })?;
        // Many small request/response exchanges: Nagle + delayed ACKs would cost ~40ms each.
        let _ = tcp.set_nodelay(true);
        let connected = tokio::time::timeout(timeout, client::connect_stream(config, tcp, checker))
            .await
            .map_err(|_| SshError::Timeout {
                addr: addr.clone(),
                secs: timeout.as_secs(),
            })?;
        let mut handle = match connected {
            Ok(h) => h,
            Err(source) => {
                let v = verdict.lock().ok().and_then(|g| g.clone());
                return Err(match v {
                    Some(Verdict::Unknown { fingerprint }) => SshError::UnknownHostKey {
                        addr,
                        host: opts.host.clone(),
                        port: opts.port,
                        fingerprint,
                    },
                    Some(Verdict::Mismatch { fingerprint, line }) => SshError::HostKeyMismatch {
                        addr,
                        fingerprint,
                        line,
                    },
                    None => SshError::Protocol {
                        user: opts.user.clone(),
                        addr,
                        action: "handshake".into(),
                        source: Box::new(source),
                    },
                });
            }
        };
        let proto = |action: &str| {
            let (user, addr, action) = (opts.user.clone(), addr.clone(), action.to_owned());
            move |source| SshError::Protocol {
                user,
                addr,
                action,
                source: Box::new(source),
            }
        };
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(proto("negotiating the signature hash"))?
            .flatten();
        let auth = handle
            .authenticate_publickey(
                opts.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(proto("authenticating"))?;
        if !auth.success() {
            return Err(SshError::AuthRejected {
                user: opts.user.clone(),
                addr,
                what,
            });
        }
        Ok(SshHost {
            handle,
            user: opts.user.clone(),
            addr,
        })
    }

    /// Runs `command` (a shell command line for the remote login shell), feeding `stdin`.
    pub async fn run(
        &self,
        command: &str,
        stdin: Option<Stdin<'_>>,
    ) -> Result<ExecOutput, SshError> {
        let proto = |action: &str| {
            let (user, addr, action) = (self.user.clone(), self.addr.clone(), action.to_owned());
            move |source| SshError::Protocol {
                user,
                addr,
                action,
                source: Box::new(source),
            }
        };
        let mut ch = self
            .handle
            .channel_open_session()
            .await
            .map_err(proto("opening a channel"))?;
        ch.exec(true, command)
            .await
            .map_err(proto("starting a command"))?;
        match stdin {
            Some(Stdin::Bytes(b)) => ch.data(b).await.map_err(proto("sending input"))?,
            Some(Stdin::File(p)) => {
                let f = tokio::fs::File::open(p)
                    .await
                    .map_err(|source| SshError::Temp {
                        what: "the upload",
                        source,
                    })?;
                ch.data(f).await.map_err(proto("uploading"))?;
            }
            None => {}
        }
        ch.eof().await.map_err(proto("closing input"))?;
        let mut out = ExecOutput::default();
        let mut status = None;
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, .. } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => {
                    status = Some(i32::try_from(exit_status).unwrap_or(-1))
                }
                ChannelMsg::ExitSignal { .. } => status = Some(-1),
                _ => {}
            }
        }
        out.status = status.ok_or_else(|| SshError::NoExitStatus {
            user: self.user.clone(),
            addr: self.addr.clone(),
            command: crate::host::tail_chars(command, 120),
        })?;
        Ok(out)
    }

    async fn run_ok(
        &self,
        command: &str,
        stdin: Option<Stdin<'_>>,
    ) -> Result<ExecOutput, HostError> {
        let out = self.run(command, stdin).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(HostError::Remote {
                host: self.name(),
                command: crate::host::tail_chars(command, 200),
                status: out.status,
                stderr: out.tail(),
            })
        }
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// What a remote command reads on stdin.
pub enum Stdin<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

fn known_keys(text: &str, host: &str, port: u16) -> Result<Vec<(usize, PublicKey)>, SshError> {
    let mut f = tempfile::NamedTempFile::new().map_err(|source| SshError::Temp {
        what: "known_hosts",
        source,
    })?;
    io::Write::write_all(&mut f, text.as_bytes()).map_err(|source| SshError::Temp {
        what: "known_hosts",
        source,
    })?;
    russh::keys::known_hosts::known_host_keys_path(host, port, f.path())
        .map_err(|source| SshError::KnownHosts { source })
}

fn load_key(key: &str) -> Result<(russh::keys::PrivateKey, String), SshError> {
    if key.trim_start().starts_with("-----BEGIN") {
        let what = "(given inline)".to_owned();
        let k =
            russh::keys::decode_secret_key(key.trim(), None).map_err(|source| SshError::Key {
                what: what.clone(),
                source,
            })?;
        Ok((k, what))
    } else {
        let what = key.to_owned();
        let k = russh::keys::load_secret_key(PathBuf::from(key), None).map_err(|source| {
            SshError::Key {
                what: what.clone(),
                source,
            }
        })?;
        Ok((k, what))
    }
}

fn env_prefix(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(k, v)| format!("{}={} ", k, sh_quote(v)))
        .collect()
}

#[async_trait]
impl Host for SshHost {
    fn name(&self) -> String {
        format!("ssh {}@{}", self.user, self.addr)
    }

    fn local_staging(&self, _root: &str) -> Option<PathBuf> {
        None
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, HostError> {
        let p = sh_quote(path);
        let out = self
            .run(
                &format!("if [ -e {p} ]; then cat {p}; else exit 111; fi"),
                None,
            )
            .await?;
        match out.status {
            0 => Ok(Some(out.stdout)),
            // A /proc file can vanish between the test and cat.
            111 => Ok(None),
            _ if path.starts_with("/proc/") => Ok(None),
            status => Err(HostError::Remote {
                host: self.name(),
                command: format!("cat {p}"),
                status,
                stderr: out.tail(),
            }),
        }
    }

    async fn write_file(&self, path: &str, bytes: &[u8]) -> Result<(), HostError> {
        let (p, t) = (sh_quote(path), sh_quote(&format!("{path}.tmp")));
        self.run_ok(
            &format!("cat > {t} && mv -f {t} {p}"),
            Some(Stdin::Bytes(bytes)),
        )
        .await
        .map(drop)
    }

    async fn mkdir_p(&self, path: &str) -> Result<(), HostError> {
        self.run_ok(&format!("mkdir -p {}", sh_quote(path)), None)
            .await
            .map(drop)
    }

    async fn remove_all(&self, path: &str) -> Result<(), HostError> {
        self.run_ok(&format!("rm -rf {}", sh_quote(path)), None)
            .await
            .map(drop)
    }

    async fn install(&self, staged: &Path, dst: &str) -> Result<(), HostError> {
        let tar = tempfile::NamedTempFile::new().map_err(|source| SshError::Temp {
            what: "the upload",
            source,
        })?;
        let (dir, file) = (
            staged.to_path_buf(),
            tar.reopen().map_err(|source| SshError::Temp {
                what: "the upload",
                source,
            })?,
        );
        tokio::task::spawn_blocking(move || crate::source::tar_dir(&dir, io::BufWriter::new(file)))
            .await
            .map_err(|_| HostError::Io {
                action: "archiving",
                path: staged.to_path_buf(),
                source: io::Error::other("the archiver panicked"),
            })?
            .map_err(|e| HostError::Io {
                action: "archiving",
                path: staged.to_path_buf(),
                source: io::Error::other(e.to_string()),
            })?;
        let (d, part) = (sh_quote(dst), sh_quote(&format!("{dst}.partial")));
        let cmd = format!(
            "rm -rf {part} && mkdir -p {part} && tar -x -C {part} && rm -rf {d} && mv -T {part} {d}"
        );
        self.run_ok(&cmd, Some(Stdin::File(tar.path())))
            .await
            .map(drop)
    }

    async fn point_symlink(&self, link: &str, target: Option<&str>) -> Result<(), HostError> {
        let l = sh_quote(link);
        let cmd = match target {
            Some(t) => {
                let tmp = sh_quote(&format!("{link}.tmp"));
                format!("ln -sfn {} {tmp} && mv -T {tmp} {l}", sh_quote(t))
            }
            None => format!("rm -f {l}"),
        };
        self.run_ok(&cmd, None).await.map(drop)
    }

    async fn exec(
        &self,
        script: &str,
        cwd: &str,
        env: &[(String, String)],
    ) -> Result<ExecOutput, HostError> {
        let cmd = format!(
            "cd {} && {}sh -c {}",
            sh_quote(cwd),
            env_prefix(env),
            sh_quote(script)
        );
        Ok(self.run(&cmd, None).await?)
    }

    async fn spawn_detached(
        &self,
        cwd: &str,
        command: &str,
        env: &[(String, String)],
        log: &str,
    ) -> Result<u32, HostError> {
        // In a non-interactive shell a background job stays in the shell's process group, so
        // `setsid` is not a group leader: it calls setsid(2) and execs, keeping the pid.
        let cmd = format!(
            "cd {} && {{ env -i PATH=\"$PATH\" HOME=\"$HOME\" {}setsid sh -c {} </dev/null >>{} 2>&1 & echo $!; }}",
            sh_quote(cwd),
            env_prefix(env),
            sh_quote(command),
            sh_quote(log)
        );
        let out = self.run_ok(&cmd, None).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().map_err(|_| HostError::Remote {
            host: self.name(),
            command: "starting the service".into(),
            status: 0,
            stderr: format!("expected a pid, got {:?}", text.trim()),
        })
    }

    async fn lock(&self, root: &str) -> Result<DeployLock, HostError> {
        // flock(1) holds the lock while `cat` reads the channel: closing it (or losing the
        // connection) releases it. 75 (EX_TEMPFAIL): somebody else holds it.
        let r = sh_quote(root);
        let lock = sh_quote(&format!("{root}/.deploy.lock"));
        let cmd = format!(
            "mkdir -p {r} && exec flock -n -E 75 {lock} sh -c 'echo locked; exec cat >/dev/null'"
        );
        let proto = |action: &str| {
            let (user, addr, action) = (self.user.clone(), self.addr.clone(), action.to_owned());
            move |source| SshError::Protocol {
                user,
                addr,
                action,
                source: Box::new(source),
            }
        };
        let mut ch = self
            .handle
            .channel_open_session()
            .await
            .map_err(proto("opening a channel"))?;
        ch.exec(true, cmd.as_str())
            .await
            .map_err(proto("taking the deploy lock"))?;
        let mut stderr = Vec::new();
        loop {
            match ch.wait().await {
                Some(ChannelMsg::Data { data }) if data.starts_with(b"locked") => {
                    return Ok(DeployLock::Remote(ch));
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => stderr.extend_from_slice(&data),
                Some(ChannelMsg::ExitStatus { exit_status: 75 }) => {
                    return Err(HostError::Busy {
                        host: self.name(),
                        root: root.to_owned(),
                    });
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    return Err(HostError::Remote {
                        host: self.name(),
                        command: format!("flock {lock} (util-linux or busybox flock is needed)"),
                        status: i32::try_from(exit_status).unwrap_or(-1),
                        stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
                    });
                }
                None => {
                    return Err(SshError::NoExitStatus {
                        user: self.user.clone(),
                        addr: self.addr.clone(),
                        command: cmd,
                    }
                    .into());
                }
                Some(_) => {}
            }
        }
    }

    async fn unlock(&self, lock: DeployLock) {
        if let DeployLock::Remote(mut ch) = lock {
            let _ = ch.eof().await;
            // Wait for the remote side to exit, so the lock is free when this returns.
            while let Some(msg) = ch.wait().await {
                if matches!(msg, ChannelMsg::ExitStatus { .. } | ChannelMsg::Close) {
                    break;
                }
            }
        }
    }

    async fn signal_group(&self, pid: u32, signal: Signal) -> Result<(), HostError> {
        let sig = match signal {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        };
        // A group that is already gone makes kill fail; that is fine.
        self.run(&format!("kill -{sig} -- -{pid} 2>/dev/null || true"), None)
            .await?;
        Ok(())
    }
}
