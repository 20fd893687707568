//! A process in the engine: a `docker exec` in the job container or a one-off container.
//!
//! The engine's multiplexed attach stream is demultiplexed by a pump task into two in-memory
//! pipes (the [`Process`] stdout/stderr readers). When the stream ends the pump asks the engine
//! for the exit code and hands it to [`Process::wait`].
//!
//! Signals: the exec API cannot signal an exec, so every exec runs through a tiny `/bin/sh`
//! wrapper that reports its PID on stderr (`::slipway-pid::N`, stripped from the output) and
//! then `exec`s the command. Engines start each exec as a session and process-group leader,
//! so [`Process::terminate`]/[`Process::kill`] run `kill -s SIG -N` through a second exec:
//! the whole process group inside the container gets the signal. One-off containers are
//! signalled through the engine's kill endpoint.
//!
//! Engines report a signal death as exit code 128+N; when that N is a signal this process
//! sent, `wait` reports it as a signal in the [`ExitStatus`].

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{KillContainerOptions, RemoveContainerOptions, WaitContainerOptions};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{DockerError, engine_message};
use crate::executor::{ExecError, Process};

/// Size of each in-memory output pipe.
const PIPE_CAPACITY: usize = 64 * 1024;
/// The PID line the wrapper writes first on stderr.
const PID_MARKER: &[u8] = b"::slipway-pid::";
/// Runs `"$@"` after reporting `$$` (the exec's PID, a process-group leader) on stderr.
pub const PID_WRAPPER: &str = "echo \"::slipway-pid::$$\" >&2; exec \"$@\"";
/// Sends signal `$1` to process group `$2` (falls back to the process itself).
const KILL_SCRIPT: &str =
    "kill -s \"$1\" -- \"-$2\" 2>/dev/null || kill -s \"$1\" \"-$2\" 2>/dev/null || kill -s \"$1\" \"$2\"";

type OutputStream = std::pin::Pin<Box<dyn Stream<Item = Result<LogOutput, BollardError>> + Send>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Term,
    Kill,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        }
    }
    fn number(self) -> i32 {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }
    fn bit(self) -> u8 {
        match self {
            Signal::Term => 1,
            Signal::Kill => 2,
        }
    }
}

/// What a signal goes to.
enum Target {
    /// An exec in `container`; its PID becomes known once the wrapper reports it.
    Exec { container: String, pid: watch::Receiver<PidState> },
    /// A whole container (PID 1 gets the signal).
    Container { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PidState {
    Unknown,
    Running(u32),
    Exited,
}

/// A process started in the engine.
pub struct DockerProcess {
    stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    exit: Option<oneshot::Receiver<Result<i64, String>>>,
    status: Option<Result<ExitStatus, String>>,
    signals: mpsc::UnboundedSender<Signal>,
    sent: Arc<AtomicU8>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DockerProcess {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[async_trait]
impl Process for DockerProcess {
    fn take_stdout(&mut self) -> Option<Box<dyn AsyncRead + Send + Unpin>> {
        self.stdout.take()
    }

    fn take_stderr(&mut self) -> Option<Box<dyn AsyncRead + Send + Unpin>> {
        self.stderr.take()
    }

    async fn wait(&mut self) -> Result<ExitStatus, ExecError> {
        // Output nobody took is discarded, so a full pipe cannot stall the process.
        self.stdout = None;
        self.stderr = None;
        if self.status.is_none() {
            let Some(exit) = self.exit.as_mut() else {
                return Err(ExecError::Docker("the process was already waited for".into()));
            };
            // Awaiting `&mut Receiver` is cancel safe: the value stays in the channel.
            let result = exit.await.unwrap_or_else(|_| Err("the output pump stopped before the process exited".into()));
            self.exit = None;
            let sent = self.sent.load(Ordering::SeqCst);
            self.status = Some(result.map(|code| exit_status(code, sent)));
        }
        match &self.status {
            Some(Ok(status)) => Ok(*status),
            Some(Err(message)) => Err(ExecError::Docker(message.clone())),
            None => Err(ExecError::Docker("no exit status".into())),
        }
    }

    fn terminate(&self) {
        let _ = self.signals.send(Signal::Term);
    }

    fn kill(&self) {
        let _ = self.signals.send(Signal::Kill);
    }
}

/// Maps an engine exit code to an [`ExitStatus`]: 128+N after this process sent signal N is
/// reported as death by signal N.
fn exit_status(code: i64, sent: u8) -> ExitStatus {
    for signal in [Signal::Term, Signal::Kill] {
        if sent & signal.bit() != 0 && code == 128 + i64::from(signal.number()) {
            return ExitStatus::from_raw(signal.number());
        }
    }
    let code = i32::try_from(code.rem_euclid(256)).unwrap_or(255);
    ExitStatus::from_raw(code << 8)
}

/// How the pump finds the exit code once the output ends.
enum Finish {
    Exec { id: String },
    Container { name: String },
}

/// Starts `command` (argv) as an exec in `container` and returns it as a [`Process`].
pub async fn spawn_exec(
    docker: &Docker,
    container: &str,
    argv: Vec<String>,
    env: Vec<String>,
    cwd: Option<String>,
    wrapped: bool,
) -> Result<DockerProcess, DockerError> {
    let cmd = if wrapped {
        let mut cmd = vec!["/bin/sh".to_owned(), "-c".to_owned(), PID_WRAPPER.to_owned(), "slipway".to_owned()];
        cmd.extend(argv);
        cmd
    } else {
        argv
    };
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                attach_stdin: Some(false),
                tty: Some(false),
                env: Some(env),
                cmd: Some(cmd),
                working_dir: cwd,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| DockerError::api(format!("creating an exec in {container}"), e))?;
    let started = docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions { detach: false, tty: false, output_capacity: Some(PIPE_CAPACITY) }),
        )
        .await
        .map_err(|e| DockerError::api(format!("starting an exec in {container}"), e))?;
    let StartExecResults::Attached { output, input } = started else {
        return Err(DockerError::Other("the engine started the exec detached".into()));
    };
    drop(input);
    let (pid_tx, pid_rx) = watch::channel(if wrapped { PidState::Unknown } else { PidState::Exited });
    Ok(start(
        docker.clone(),
        output,
        Finish::Exec { id: exec.id },
        wrapped.then_some(pid_tx),
        Target::Exec { container: container.to_owned(), pid: pid_rx },
    ))
}

/// Wraps an attached, started container as a [`Process`]; the container is removed once it
/// has exited and its exit code is known.
pub fn container_process(docker: &Docker, name: &str, output: OutputStream) -> DockerProcess {
    start(
        docker.clone(),
        output,
        Finish::Container { name: name.to_owned() },
        None,
        Target::Container { name: name.to_owned() },
    )
}

fn start(
    docker: Docker,
    output: OutputStream,
    finish: Finish,
    pid_tx: Option<watch::Sender<PidState>>,
    target: Target,
) -> DockerProcess {
    // Duplex, not simplex: dropping a reader makes pending and later writes fail instead of
    // blocking, so output nobody reads cannot stall the pump.
    let (out_r, out_w) = tokio::io::duplex(PIPE_CAPACITY);
    let (err_r, err_w) = tokio::io::duplex(PIPE_CAPACITY);
    let (exit_tx, exit_rx) = oneshot::channel();
    let (sig_tx, sig_rx) = mpsc::unbounded_channel();
    let sent = Arc::new(AtomicU8::new(0));
    let pump = tokio::spawn(pump(docker.clone(), output, out_w, err_w, pid_tx, finish, exit_tx));
    let signaller = tokio::spawn(signaller(docker, target, sig_rx, sent.clone()));
    DockerProcess {
        stdout: Some(Box::new(out_r) as Box<dyn AsyncRead + Send + Unpin>),
        stderr: Some(Box::new(err_r) as Box<dyn AsyncRead + Send + Unpin>),
        exit: Some(exit_rx),
        status: None,
        signals: sig_tx,
        sent,
        tasks: vec![pump, signaller],
    }
}

/// One output pipe; after the reader goes away further output is dropped.
struct Sink {
    writer: Option<DuplexStream>,
}

impl Sink {
    async fn write(&mut self, bytes: &[u8]) {
        if let Some(w) = self.writer.as_mut()
            && w.write_all(bytes).await.is_err()
        {
            self.writer = None;
        }
    }

    async fn close(&mut self) {
        if let Some(mut w) = self.writer.take() {
            let _ = w.shutdown().await;
        }
    }
}

/// Strips the wrapper's PID line from the start of stderr.
struct PidLine {
    pending: Option<Vec<u8>>,
    tx: Option<watch::Sender<PidState>>,
}

impl PidLine {
    /// Feeds stderr bytes; returns what should be passed through.
    fn feed(&mut self, bytes: Bytes) -> Vec<u8> {
        let Some(pending) = self.pending.as_mut() else {
            return bytes.to_vec();
        };
        pending.extend_from_slice(&bytes);
        if let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line = &pending[..nl];
            let pid = line
                .strip_prefix(PID_MARKER)
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .and_then(|digits| digits.parse::<u32>().ok());
            let rest = match pid {
                Some(pid) => {
                    if let Some(tx) = &self.tx {
                        let _ = tx.send(PidState::Running(pid));
                    }
                    pending[nl + 1..].to_vec()
                }
                None => std::mem::take(pending),
            };
            self.pending = None;
            return rest;
        }
        if pending.len() > PID_MARKER.len() + 12
            || !PID_MARKER.starts_with(&pending[..pending.len().min(PID_MARKER.len())])
        {
            // Not our line (e.g. the engine's own error text): pass it through.
            return self.pending.take().unwrap_or_default();
        }
        Vec::new()
    }

    fn flush(&mut self) -> Vec<u8> {
        self.pending.take().unwrap_or_default()
    }
}

async fn pump(
    docker: Docker,
    mut output: OutputStream,
    out_w: DuplexStream,
    err_w: DuplexStream,
    pid_tx: Option<watch::Sender<PidState>>,
    finish: Finish,
    exit_tx: oneshot::Sender<Result<i64, String>>,
) {
    let mut out = Sink { writer: Some(out_w) };
    let mut err = Sink { writer: Some(err_w) };
    let wrapped = pid_tx.is_some();
    let mut pid_line = PidLine { pending: wrapped.then(Vec::new), tx: pid_tx };
    let mut stream_error = None;
    while let Some(item) = output.next().await {
        match item {
            Ok(LogOutput::StdOut { message }) => out.write(&message).await,
            Ok(LogOutput::StdErr { message }) => {
                let pass = pid_line.feed(message);
                if !pass.is_empty() {
                    err.write(&pass).await;
                }
            }
            // Without a TTY the engine frames all output; unframed text is its own error message.
            Ok(LogOutput::Console { message }) => err.write(&message).await,
            Ok(LogOutput::StdIn { .. }) => {}
            Err(e) => {
                stream_error = Some(engine_message(&e));
                break;
            }
        }
    }
    let rest = pid_line.flush();
    if !rest.is_empty() {
        err.write(&rest).await;
    }
    out.close().await;
    err.close().await;
    let result = match finish {
        Finish::Exec { id } => exec_exit_code(&docker, &id).await,
        Finish::Container { name } => {
            let code = container_exit_code(&docker, &name).await;
            let removed = docker
                .remove_container(&name, Some(RemoveContainerOptions { force: true, v: true, ..Default::default() }))
                .await;
            if let Err(e) = removed {
                debug!(container = %name, error = %e, "Removing a step container failed.");
            }
            code
        }
    };
    if let Some(tx) = &pid_line.tx {
        let _ = tx.send(PidState::Exited);
    }
    let result = match (result, stream_error) {
        (Ok(code), _) => Ok(code),
        (Err(e), Some(stream)) => Err(format!("{e} (the output stream failed: {stream})")),
        (Err(e), None) => Err(e),
    };
    let _ = exit_tx.send(result);
}

/// The exit code of a finished exec. The output stream ends when the process has exited; the
/// engine may take a moment to record the code, so this re-inspects with a short backoff.
async fn exec_exit_code(docker: &Docker, id: &str) -> Result<i64, String> {
    let mut delay = Duration::from_millis(5);
    loop {
        let info =
            docker.inspect_exec(id).await.map_err(|e| format!("inspecting exec {id}: {}", engine_message(&e)))?;
        if info.running != Some(true) {
            return info.exit_code.ok_or_else(|| format!("exec {id} ended without an exit code"));
        }
        // A process that closed its output early is still running: keep asking, slowly.
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

async fn container_exit_code(docker: &Docker, name: &str) -> Result<i64, String> {
    let mut wait = docker.wait_container(name, Some(WaitContainerOptions { condition: "not-running".into() }));
    match wait.next().await {
        Some(Ok(response)) => Ok(response.status_code),
        Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(format!("waiting for container {name}: {}", engine_message(&e))),
        None => {
            let info = docker
                .inspect_container(name, None)
                .await
                .map_err(|e| format!("inspecting container {name}: {}", engine_message(&e)))?;
            info.state.and_then(|s| s.exit_code).ok_or_else(|| format!("container {name} ended without an exit code"))
        }
    }
}

async fn signaller(docker: Docker, target: Target, mut signals: mpsc::UnboundedReceiver<Signal>, sent: Arc<AtomicU8>) {
    while let Some(signal) = signals.recv().await {
        match &target {
            Target::Container { name } => {
                sent.fetch_or(signal.bit(), Ordering::SeqCst);
                let options = KillContainerOptions { signal: signal.name().to_owned() };
                if let Err(e) = docker.kill_container(name, Some(options)).await {
                    // 404/409: already gone or not running.
                    debug!(container = %name, error = %e, "Signalling a step container failed.");
                }
            }
            Target::Exec { container, pid } => {
                let mut pid = pid.clone();
                let found = match pid.wait_for(|s| *s != PidState::Unknown).await {
                    Ok(state) => *state,
                    Err(_) => PidState::Exited,
                };
                let PidState::Running(pid) = found else { continue };
                sent.fetch_or(signal.bit(), Ordering::SeqCst);
                let argv = vec![
                    "/bin/sh".to_owned(),
                    "-c".to_owned(),
                    KILL_SCRIPT.to_owned(),
                    "slipway-kill".to_owned(),
                    signal.name().to_owned(),
                    pid.to_string(),
                ];
                if let Err(e) = run_detached(&docker, container, argv).await {
                    warn!(%container, pid, error = %e, "Signalling a step process failed.");
                }
            }
        }
    }
}

async fn run_detached(docker: &Docker, container: &str, argv: Vec<String>) -> Result<(), BollardError> {
    let exec =
        docker.create_exec(container, CreateExecOptions::<String> { cmd: Some(argv), ..Default::default() }).await?;
    docker.start_exec(&exec.id, Some(StartExecOptions { detach: true, ..Default::default() })).await?;
    Ok(())
}

/// Runs `argv` in `container` (no wrapper) and returns its exit code and its stdout and
/// stderr, concatenated.
pub async fn exec_output(docker: &Docker, container: &str, argv: Vec<String>) -> Result<(i64, String), DockerError> {
    use tokio::io::AsyncReadExt;
    let mut process = spawn_exec(docker, container, argv, Vec::new(), None, false).await?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    if let (Some(mut o), Some(mut e)) = (process.stdout.take(), process.stderr.take()) {
        let _ = tokio::join!(o.read_to_end(&mut out), e.read_to_end(&mut err));
    }
    let code = process.wait().await.map_err(|e| DockerError::Other(e.to_string()))?.code().map_or(-1, i64::from);
    out.extend(err);
    Ok((code, String::from_utf8_lossy(&out).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_status(0, 0).code(), Some(0));
        assert_eq!(exit_status(3, 0).code(), Some(3));
        assert_eq!(exit_status(143, 0).code(), Some(143));
        assert_eq!(exit_status(143, Signal::Term.bit()).signal(), Some(libc::SIGTERM));
        assert_eq!(exit_status(137, Signal::Term.bit() | Signal::Kill.bit()).signal(), Some(libc::SIGKILL));
        assert_eq!(exit_status(137, Signal::Term.bit()).code(), Some(137));
        assert_eq!(exit_status(-1, 0).code(), Some(255));
    }

    fn feed_all(chunks: &[&str]) -> (String, PidState) {
        let (tx, rx) = watch::channel(PidState::Unknown);
        let mut line = PidLine { pending: Some(Vec::new()), tx: Some(tx) };
        let mut out = Vec::new();
        for c in chunks {
            out.extend(line.feed(Bytes::copy_from_slice(c.as_bytes())));
        }
        out.extend(line.flush());
        (String::from_utf8_lossy(&out).into_owned(), *rx.borrow())
    }

    #[test]
    fn pid_line() {
        assert_eq!(feed_all(&["::slipway-pid::42\nerr\n"]), ("err\n".into(), PidState::Running(42)));
        assert_eq!(feed_all(&["::slip", "way-pid::7", "\n", "x"]), ("x".into(), PidState::Running(7)));
        assert_eq!(
            feed_all(&["sh: exec: nope: not found\n"]),
            ("sh: exec: nope: not found\n".into(), PidState::Unknown)
        );
        assert_eq!(feed_all(&["::slipway-pid::x\n"]), ("::slipway-pid::x\n".into(), PidState::Unknown));
        assert_eq!(feed_all(&["::slip"]), ("::slip".into(), PidState::Unknown));
    }
}
