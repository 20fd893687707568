//! The agent: registers with a server, long-polls for jobs, runs each with `runner::run` on
//! the host executor, and streams the runner's events back as log chunks and step reports.
//! The server's embedded agent and `slipway agent` are this same code.
//!
//! Per job: compile the workflow source from the assignment (deterministic, no I/O; the
//! compiled plan is kept per workflow source and event, so the jobs of a run compile it
//! once), reduce the plan to the one job (its `needs` and `if:` were decided by the server),
//! fetch the commit into the slot's emptied work directory (`git fetch URL SHA`) when the
//! job reads the repository (`actions/checkout` or a local action; act_runner does not check
//! out either), fetch the run's artifacts when it downloads some, run it, heartbeat while it
//! runs (a cancelled run or a lost lease cancels the runner), upload the artifacts it made,
//! and report the result. Up to `capacity` jobs run at once, each leased separately, each in
//! its slot's directory (`slot-N`, emptied before and after a job, its first-level
//! directories kept).
//!
//! Reports are batched: log lines and step reports wait up to [`REPORT_EVERY`] and go as one
//! `report` call (which also extends the lease); what is left when the job ends goes with
//! the result in `finish`. A job that ends within the period costs two requests: the lease
//! and the finish. Reports (and the result, a hand-back) are sent one at a time, in order,
//! and retried while the server is unreachable or answers 5xx, for up to the lease's TTL: a
//! server restarted meanwhile (even after `kill -9`) gets them all; a resent report stores
//! nothing twice (log chunks by `(attempt, seq)`, steps are upserts).
//! The needed jobs' results and outputs from the assignment become the job's `needs` context
//! (`RunOptions::needs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use protocol::{Assignment, Conclusion, Heartbeat, HeartbeatReply, JobFinished, LeaseRequest, LogChunk, RegisterRequest, RegisterResponse, StepReport, StepState};
use reqwest::StatusCode;
use runner::{Event, JobResult, StepOutcome};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How an agent connects and where it works.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The server's base URL (`http://127.0.0.1:8080`).
    pub server: String,
    /// The server's agent registration token.
    pub token: String,
    pub name: String,
    /// `runs-on` labels served; empty: every label.
    pub labels: Vec<String>,
    /// Per-job work directories are created (and removed) under here.
    pub work_dir: PathBuf,
    /// Jobs run at once (at least 1).
    pub capacity: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("calling {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: StatusCode, body: String },
    #[error("creating {path}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    /// Protocol requests sent (retries included), for the log line at exit.
    requests: std::sync::atomic::AtomicU64,
}

impl Client {
    /// [`post`](Self::post), retried (backoff from 100 ms up to 2 s) while the server is
    /// unreachable or answers 5xx, until `within` has passed.
    async fn post_retrying<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        within: Duration,
    ) -> Result<Option<R>, AgentError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut delay = Duration::from_millis(100);
        loop {
            match self.post(path, body).await {
                Err(AgentError::Http { .. }) | Err(AgentError::Status { status: StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::INTERNAL_SERVER_ERROR | StatusCode::GATEWAY_TIMEOUT, .. })
                    if tokio::time::Instant::now() + delay < deadline =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    async fn post<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Result<Option<R>, AgentError> {
        let url = format!("{}{path}", self.base);
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|source| AgentError::Http { url: url.clone(), source })?;
        let status = resp.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(AgentError::Status { url, status, body });
        }
        resp.json().await.map(Some).map_err(|source| AgentError::Http { url, source })
    }
}

/// Registers and serves jobs until `stop`. A running job is cancelled on `stop` and handed
/// back to the server (queued again for another agent) before this returns.
///
/// # Cancel safety
/// Don't drop this future to stop the agent: cancel `stop` and await it.
pub async fn run(opts: AgentOptions, stop: CancellationToken) -> Result<(), AgentError> {
    std::fs::create_dir_all(&opts.work_dir).map_err(|source| AgentError::WorkDir { path: opts.work_dir.clone(), source })?;
    let http = reqwest::Client::builder()
        .build()
        .map_err(|source| AgentError::Http { url: opts.server.clone(), source })?;
    let base = opts.server.trim_end_matches('/').to_owned();
    let register = Client { http: http.clone(), base: base.clone(), token: opts.token.clone(), requests: Default::default() };
    let req = RegisterRequest {
        name: opts.name.clone(),
        labels: opts.labels.clone(),
        capacity: u32::try_from(opts.capacity.max(1)).ok(),
    };
    let reg: RegisterResponse = tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        r = register.post(protocol::paths::AGENT_REGISTER, &req) => r?.ok_or_else(|| AgentError::Status {
            url: format!("{base}{}", protocol::paths::AGENT_REGISTER),
            status: StatusCode::NO_CONTENT,
            body: "no registration in the reply".to_owned(),
        })?,
    };
    tracing::info!(agent_id = reg.agent_id, server = %base, capacity = opts.capacity, "Agent registered.");
    let client = Arc::new(Client { http, base, token: reg.token, requests: Default::default() });
    let mut leased_jobs = 0u64;
    let opts = Arc::new(opts);
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.capacity.max(1)));
    // Free slot numbers: a job takes one with its permit (so one is always there).
    let numbers = Arc::new(std::sync::Mutex::new((0..opts.capacity.max(1)).rev().collect::<Vec<usize>>()));
    let plans = Arc::new(PlanCache::default());
    let mut jobs = JoinSet::new();
    let mut failures = 0u32;
    loop {
        while jobs.try_join_next().is_some() {}
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
        };
        let leased: Result<Option<Assignment>, AgentError> = tokio::select! {
            _ = stop.cancelled() => break,
            r = client.post(protocol::paths::AGENT_LEASE, &LeaseRequest { wait_ms: 30_000 }) => r,
        };
        match leased {
            Ok(Some(job)) => {
                failures = 0;
                leased_jobs += 1;
                let (client, opts, plans, stop) = (client.clone(), opts.clone(), plans.clone(), stop.clone());
                let numbers = numbers.clone();
                let n = numbers.lock().unwrap_or_else(|e| e.into_inner()).pop().expect("a free slot number for each permit");
                jobs.spawn(async move {
                    run_job(&client, &opts, &plans, n, job, &stop).await;
                    numbers.lock().unwrap_or_else(|e| e.into_inner()).push(n);
                    drop(slot);
                });
            }
            Ok(None) => failures = 0,
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, "Leasing a job failed; retrying.");
                let delay = Duration::from_millis(200 * u64::from(failures.min(25)));
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    // Stopping: running jobs see `stop` and hand themselves back.
    while jobs.join_next().await.is_some() {}
    let requests = client.requests.load(std::sync::atomic::Ordering::Relaxed);
    tracing::info!(jobs = leased_jobs, requests, "Agent stopped.");
    Ok(())
}

/// How long log lines and step reports wait before they are sent: while a job prints, one
/// `report` at most this often (the live log and step states lag by this plus a request);
/// a job that ends sooner sends them with its result, in its one `finish` call.
const REPORT_EVERY: Duration = Duration::from_millis(200);
/// A report is sent at once when it holds this many bytes of log lines.
const REPORT_MAX_BYTES: usize = 512 * 1024;

/// Log lines and step reports waiting to be sent.
#[derive(Default)]
struct Outbox {
    lines: Vec<String>,
    bytes: usize,
    /// When the first of `lines` was read (unix ms, the agent's clock).
    first_line_ms: Option<i64>,
    steps: Vec<StepReport>,
}

impl Outbox {
    fn line(&mut self, line: String) {
        self.first_line_ms.get_or_insert_with(now_ms);
        self.bytes += line.len() + 1;
        self.lines.push(line);
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.steps.is_empty()
    }

    fn full(&self) -> bool {
        self.bytes >= REPORT_MAX_BYTES
    }
}

/// What a report's reply says.
enum Sent {
    Ok { cancel: bool },
    /// `409`: the agent no longer holds the job.
    LeaseLost,
    /// The server could not be reached within the lease's TTL (logged).
    Failed,
}

/// One job's [`Outbox`] and log chunk counter: batches what happens into `report` calls (in
/// order, one at a time, each retried as a whole) and the final `finish`.
struct Reporter<'a> {
    client: &'a Client,
    id: i64,
    attempt: i64,
    ttl: Duration,
    /// The next log chunk's number.
    seq: i64,
    out: Outbox,
    /// When what is in `out` must be sent.
    due: Option<tokio::time::Instant>,
}

impl<'a> Reporter<'a> {
    fn new(client: &'a Client, job: &Assignment) -> Reporter<'a> {
        Reporter {
            client,
            id: job.job_id,
            attempt: job.attempt,
            ttl: Duration::from_millis(job.lease_ttl_ms.max(1000)),
            seq: 0,
            out: Outbox::default(),
            due: None,
        }
    }

    /// Starts the clock for what was just added.
    fn arm(&mut self) {
        if !self.out.is_empty() && self.due.is_none() {
            self.due = Some(tokio::time::Instant::now() + REPORT_EVERY);
        }
    }

    /// What waits, as the steps and log chunk of a report (the chunk takes the next `seq`).
    fn take(&mut self) -> (Vec<StepReport>, Option<LogChunk>) {
        self.due = None;
        let out = std::mem::take(&mut self.out);
        let logs = (!out.lines.is_empty()).then(|| {
            let chunk = LogChunk { attempt: self.attempt, seq: self.seq, lines: out.lines, time_ms: out.first_line_ms.unwrap_or_else(now_ms) };
            self.seq += 1;
            chunk
        });
        (out.steps, logs)
    }

    /// Sends what waits as one `report` (retried while the server is unreachable).
    async fn send(&mut self) -> Sent {
        if self.out.is_empty() {
            self.due = None;
            return Sent::Ok { cancel: false };
        }
        let (steps, logs) = self.take();
        let report = protocol::JobReport { attempt: self.attempt, steps, logs };
        let path = protocol::paths::agent_report(self.id);
        match self.client.post_retrying::<_, HeartbeatReply>(&path, &report, self.ttl).await {
            Ok(reply) => Sent::Ok { cancel: reply.is_some_and(|r| r.cancel) },
            Err(AgentError::Status { status: StatusCode::CONFLICT, .. }) => Sent::LeaseLost,
            Err(error) => {
                tracing::warn!(job_id = self.id, %error, "Sending a report failed; its lines and steps are lost.");
                Sent::Failed
            }
        }
    }

    /// The job's result with what was not sent yet.
    fn finished(&mut self, result: Conclusion, outputs: serde_json::Map<String, serde_json::Value>) -> JobFinished {
        let (steps, logs) = self.take();
        JobFinished { attempt: self.attempt, result, outputs, steps, logs }
    }
}

/// What the agent remembers across events of one job.
#[derive(Default)]
struct JobState {
    outputs: serde_json::Map<String, serde_json::Value>,
    /// By stored step number (see [`JobState::step`]).
    step_names: std::collections::HashMap<i64, String>,
    /// Step summary markdown of the running steps, sent with their `done` report.
    summaries: std::collections::HashMap<i64, String>,
    /// The matrix legs of this job in the order they started (they run at once in it).
    legs: Vec<String>,
}

/// How many step numbers a matrix leg has to itself.
const LEG_STEPS: i64 = 1000;

impl JobState {
    /// The stored number and displayed name of step `step` of `job`. A matrix leg's id is
    /// `key (values)` (a job key has no space); its steps are numbered per leg
    /// (`LEG_STEPS` apart, in the order legs started) and named after the leg's values, so
    /// the legs running at once in this job do not overwrite each other's steps.
    fn step(&mut self, job: &str, step: usize, name: &str) -> (i64, String) {
        let step = i64::try_from(step).unwrap_or(LEG_STEPS - 1).min(LEG_STEPS - 1);
        let Some((_, values)) = job.split_once(' ') else {
            return (step, name.to_owned());
        };
        let leg = match self.legs.iter().position(|l| l == job) {
            Some(i) => i,
            None => {
                self.legs.push(job.to_owned());
                self.legs.len() - 1
            }
        };
        let values = values.strip_prefix('(').and_then(|v| v.strip_suffix(')')).unwrap_or(values);
        let number = (i64::try_from(leg).unwrap_or(0) + 1) * LEG_STEPS + step;
        (number, format!("{values}: {name}"))
    }
}

/// Milliseconds since the Unix epoch by the agent's clock.
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The work directory of slot `n` (`slot-N`, reused by the slot's jobs) emptied, or when that
/// fails a fresh `job-ID-ATTEMPT` directory. `true`: the slot's.
fn job_dir(opts: &AgentOptions, n: usize, id: i64, attempt: i64) -> (PathBuf, bool) {
    let slot = opts.work_dir.join(format!("slot-{n}"));
    match std::fs::create_dir_all(&slot).and_then(|()| empty_dir(&slot)) {
        Ok(()) => (slot, true),
        Err(error) => {
            tracing::warn!(path = %slot.display(), %error, "Emptying a work directory failed; using a new one.");
            (opts.work_dir.join(format!("job-{id}-{attempt}")), false)
        }
    }
}

/// Removes what is in `dir` but keeps its first-level directories (emptied): a slot's next
/// job needs them again, and creating directories costs more than emptying them (on ext4 a
/// new inode is searched for among the recently deleted ones — the largest part of an
/// agent's CPU per quick job when it created and removed a directory tree per job).
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    let remove = |entry: std::fs::DirEntry| -> std::io::Result<()> {
        if entry.file_type()?.is_dir() { std::fs::remove_dir_all(entry.path()) } else { std::fs::remove_file(entry.path()) }
    };
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            for inner in std::fs::read_dir(entry.path())? {
                remove(inner?)?;
            }
        } else {
            remove(entry)?;
        }
    }
    Ok(())
}

async fn run_job(client: &Client, opts: &AgentOptions, plans: &PlanCache, slot: usize, job: Assignment, stop: &CancellationToken) {
    let id = job.job_id;
    let attempt = job.attempt;
    let ttl = Duration::from_millis(job.lease_ttl_ms.max(1000));
    let (dir, reused) = job_dir(opts, slot, id, attempt);
    let mut reporter = Reporter::new(client, &job);
    let result = match prepare(client, plans, &job, &dir).await {
        Err(message) => {
            reporter.out.line(format!("error: {message}"));
            Some(reporter.finished(Conclusion::Failure, Default::default()))
        }
        Ok(prepared) => execute(client, &job, prepared, &dir, &mut reporter, stop).await,
    };
    // Nothing of a job stays behind (a checkout, files with secrets).
    if !reused || empty_dir(&dir).is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let Some(result) = result else {
        // Shutting down: hand the job back rather than report a cancellation nobody asked for.
        let release = protocol::Release { attempt };
        if let Err(error) = client.post_retrying::<_, serde_json::Value>(&protocol::paths::agent_release(id), &release, ttl).await {
            tracing::warn!(job_id = id, %error, "Handing a job back failed; its lease will expire.");
        }
        return;
    };
    if let Err(error) = client.post_retrying::<_, serde_json::Value>(&protocol::paths::agent_finish(id), &result, ttl).await {
        tracing::warn!(job_id = id, %error, "Reporting a job result failed; its lease will expire.");
    }
}

/// Plans compiled lately, by what compiling reads (the workflow's files and the event name;
/// compiling is deterministic and does no I/O): the jobs of a run (and runs of one commit)
/// share one, so the agent parses and compiles a workflow once rather than once per job.
#[derive(Default)]
struct PlanCache(std::sync::Mutex<std::collections::VecDeque<(u64, PlanKey, Arc<workflow::Plan>)>>);

/// How many compiled plans an agent keeps.
const PLANS_KEPT: usize = 16;

#[derive(PartialEq, Eq, Hash)]
struct PlanKey {
    workflow: protocol::WorkflowSource,
    event_name: String,
}

impl PlanCache {
    /// The whole plan of the job's workflow, compiled now or earlier.
    fn compiled(&self, job: &Assignment) -> Result<Arc<workflow::Plan>, String> {
        use std::hash::{Hash, Hasher};
        let key = PlanKey { workflow: job.workflow.clone(), event_name: job.event_name.clone() };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let hash = h.finish();
        {
            let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = kept.iter().position(|(h, k, _)| *h == hash && *k == key) {
                let hit = kept.remove(i).expect("the position is in range");
                let plan = hit.2.clone();
                kept.push_front(hit);
                return Ok(plan);
            }
        }
        let wf = workflow::parse(&job.workflow.source, &job.workflow.file).map_err(|d| d.to_string())?;
        let files = &job.workflow.files;
        let loader = |p: &str| files.get(p).cloned();
        let plan = workflow::compile(&wf, &workflow::CompileOptions { event: &job.event_name, loader: &loader })
            .map_err(|d| d.to_string())?;
        let plan = Arc::new(plan);
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.push_front((hash, key, plan.clone()));
        kept.truncate(PLANS_KEPT);
        Ok(plan)
    }
}

/// A job ready to run.
struct Prepared {
    plan: workflow::Plan,
    repo_root: PathBuf,
    /// Where the runner keeps artifacts (filled with the run's when the job downloads some).
    artifact_dir: PathBuf,
    /// The artifacts fetched before the job (not uploaded again unless changed).
    fetched: std::collections::BTreeMap<String, protocol::ArtifactManifest>,
}

/// Compiles the plan reduced to the one job, then fetches what it needs: the commit (only
/// when the job reads the repository) and the run's artifacts (only when it downloads some).
async fn prepare(client: &Client, plans: &PlanCache, job: &Assignment, dir: &Path) -> Result<Prepared, String> {
    let full = plans.compiled(job)?;
    let Some(only) = full.jobs.iter().find(|j| j.id == job.job_key) else {
        return Err(format!("the workflow has no job `{}`", job.job_key));
    };
    let mut plan = workflow::Plan {
        file: full.file.clone(),
        name: full.name.clone(),
        event: full.event.clone(),
        run_name: full.run_name.clone(),
        env: full.env.clone(),
        defaults: full.defaults.clone(),
        concurrency: full.concurrency.clone(),
        permissions: full.permissions.clone(),
        trigger: full.trigger.clone(),
        jobs: vec![only.clone()],
        warnings: full.warnings.clone(),
    };
    let only = &mut plan.jobs[0];
    // The server decided whether this job runs (needs and `if:`); its needs are outside the
    // plan, so the runner takes them from `RunOptions::needs` without waiting.
    only.condition = Some(workflow::expr::Condition::parse("always()").expect("a valid expression"));
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).map_err(|e| format!("creating {}: {e}", repo.display()))?;
    use crate::agent_artifacts::plan_uses;
    if plan_uses(&plan, "actions/checkout") || plan_uses(&plan, "./") {
        for args in [
            vec!["init", "--quiet"],
            vec!["fetch", "--quiet", "--depth=1", job.clone_url.as_str(), job.sha.as_str()],
            vec!["checkout", "--quiet", "--detach", "FETCH_HEAD"],
        ] {
            crate::git::git(&repo, &args).await.map_err(|e| format!("checking out {} at {}: {e:#}", job.clone_url, job.sha))?;
        }
    }
    let artifact_dir = dir.join("artifacts");
    let fetched = if plan_uses(&plan, "actions/download-artifact") {
        let http = crate::agent_artifacts::Http { client: &client.http, base: &client.base, token: &client.token };
        crate::agent_artifacts::fetch(&http, job.job_id, &artifact_dir)
            .await
            .map_err(|e| format!("fetching the run's artifacts: {}", error_chain(&e)))?
    } else {
        Default::default()
    };
    Ok(Prepared { plan, repo_root: repo, artifact_dir, fetched })
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

fn need_outcome(n: &protocol::NeedResult) -> runner::JobOutcome {
    let result = match n.result {
        Conclusion::Success => JobResult::Success,
        Conclusion::Failure => JobResult::Failure,
        Conclusion::Cancelled => JobResult::Cancelled,
        Conclusion::Skipped => JobResult::Skipped,
    };
    runner::JobOutcome { result, outputs: n.outputs.clone() }
}

fn outcome(o: StepOutcome) -> Conclusion {
    match o {
        StepOutcome::Success => Conclusion::Success,
        StepOutcome::Failure => Conclusion::Failure,
        StepOutcome::Cancelled => Conclusion::Cancelled,
        StepOutcome::Skipped => Conclusion::Skipped,
    }
}

/// Appends what an event means for the log and the steps.
fn record(event: Event, out: &mut Outbox, attempt: i64, st: &mut JobState) {
    match event {
        Event::Log { lines, .. } if !lines.is_empty() => {
            out.first_line_ms.get_or_insert_with(now_ms);
            out.bytes += lines.as_text().len();
            out.lines.extend(lines.iter().map(str::to_owned));
        }
        Event::StepStarted { job, step, name, .. } => {
            let (number, name) = st.step(&job, step, &name);
            out.line(format!("==> {name}"));
            st.step_names.insert(number, name.clone());
            out.steps.push(StepReport {
                attempt,
                number,
                name,
                state: StepState::Running,
                conclusion: None,
                outputs: Default::default(),
                summary: None,
                time_ms: now_ms(),
            });
        }
        Event::StepFinished { job, step, conclusion, outputs, .. } => {
            let c = outcome(conclusion);
            let (number, _) = st.step(&job, step, "");
            let name = st.step_names.get(&number).cloned().unwrap_or_default();
            out.line(format!("<== {name}: {}", c.as_str()));
            let outputs = outputs.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            let summary = st.summaries.remove(&number).map(protocol::cap_summary);
            out.steps.push(StepReport {
                attempt,
                number,
                name,
                state: StepState::Done,
                conclusion: Some(c),
                outputs,
                summary,
                time_ms: now_ms(),
            });
        }
        Event::StepSummary { job, step, markdown, .. } => {
            let (number, _) = st.step(&job, step, "");
            let s = st.summaries.entry(number).or_default();
            // Past the cap it is cut anyway: stop growing (a step appending in a loop).
            if s.len() <= protocol::STEP_SUMMARY_MAX {
                s.push_str(&markdown);
            }
        }
        Event::Annotation { level, message, file, line, col, .. } => {
            let at = match (file, line, col) {
                (Some(f), Some(l), Some(c)) => format!(" {f}:{l}:{c}:"),
                (Some(f), Some(l), None) => format!(" {f}:{l}:"),
                (Some(f), None, _) => format!(" {f}:"),
                _ => String::new(),
            };
            out.line(format!("{level}:{at} {message}"));
        }
        // Stored as the workflow commands (which the runner consumes, so a step cannot
        // print them literally): the UI folds on them.
        Event::GroupStarted { title, .. } => out.line(format!("::group::{title}")),
        Event::GroupEnded { .. } => out.line("::endgroup::".to_owned()),
        // A matrix leg's id is `key (values)` (a job key has no space): the run page shows
        // each leg's state from these lines.
        Event::JobStarted { job, .. } if job.contains(' ') => {
            st.step(&job, 0, "");
            out.line(format!("::leg::{job}"));
        }
        Event::JobFinished { job, result, outputs: o, .. } => {
            if job.contains(' ') {
                let result = serde_json::to_value(result).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
                out.line(format!("::endleg::{result}::{job}"));
            }
            st.outputs.extend(o);
        }
        _ => {}
    }
}

async fn execute(
    client: &Client,
    job: &Assignment,
    prepared: Prepared,
    dir: &Path,
    reporter: &mut Reporter<'_>,
    stop: &CancellationToken,
) -> Option<JobFinished> {
    let id = job.job_id;
    let attempt = job.attempt;
    let Prepared { plan, repo_root, artifact_dir, fetched } = prepared;
    let to_map = |m: &std::collections::BTreeMap<String, String>| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<IndexMap<_, _>>();
    let options = runner::RunOptions {
        repo_root,
        work_root: dir.join("work"),
        event_name: job.event_name.clone(),
        event: job.event.clone(),
        github: job.github.clone(),
        secrets: to_map(&job.secrets),
        vars: to_map(&job.vars),
        env: IndexMap::new(),
        inputs: to_map(&job.inputs),
        matrix_filter: IndexMap::new(),
        platforms: Vec::new(),
        default_platform: runner::Platform::Host,
        artifact_dir: Some(artifact_dir.clone()),
        cache_dir: dir.join("cache"),
        cache: Some(Arc::new(crate::agent_artifacts::ServerCache::new(
            &crate::agent_artifacts::Http { client: &client.http, base: &client.base, token: &client.token },
            id,
        ))),
        actions_url: "https://github.com".to_owned(),
        sandbox: false,
        docker_host: None,
        needs: job.needs.iter().map(|(k, n)| (k.clone(), need_outcome(n))).collect(),
    };
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel::<Event>(256);
    let mut tasks = JoinSet::new();
    {
        let cancel = cancel.clone();
        tasks.spawn(async move { runner::run(vec![plan], options, tx, cancel).await });
    }
    // The lease is fresh: the first heartbeat is due one period from now.
    let period = Duration::from_millis(job.heartbeat_ms.max(1));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut st = JobState::default();
    let mut lease_lost = false;
    let mut stopped = false;
    loop {
        let due = reporter.due;
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                record(event, &mut reporter.out, attempt, &mut st);
                // Take whatever else is ready; send when due (or full).
                while !reporter.out.full() {
                    match rx.try_recv() {
                        Ok(e) => record(e, &mut reporter.out, attempt, &mut st),
                        Err(_) => break,
                    }
                }
                reporter.arm();
                if reporter.out.full() {
                    let sent = reporter.send().await;
                    lease_lost |= on_sent(sent, &mut heartbeat, &cancel);
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                let sent = reporter.send().await;
                lease_lost |= on_sent(sent, &mut heartbeat, &cancel);
            }
            _ = heartbeat.tick() => {
                match client.post::<_, HeartbeatReply>(&protocol::paths::agent_heartbeat(id), &Heartbeat { attempt }).await {
                    Ok(Some(HeartbeatReply { cancel: true })) => cancel.cancel(),
                    Ok(_) => {}
                    Err(AgentError::Status { status: StatusCode::CONFLICT, .. }) => {
                        lease_lost = true;
                        cancel.cancel();
                    }
                    Err(error) => tracing::warn!(job_id = id, %error, "Heartbeat failed."),
                }
            }
            _ = stop.cancelled(), if !cancel.is_cancelled() => {
                stopped = true;
                cancel.cancel();
            }
        }
    }
    let summary = match tasks.join_next().await {
        Some(Ok(Ok(summary))) => Some(summary),
        Some(Ok(Err(error))) => {
            reporter.out.line(format!("error: {error}"));
            None
        }
        Some(Err(error)) => {
            reporter.out.line(format!("error: the runner task failed: {error}"));
            None
        }
        None => None,
    };
    if lease_lost {
        tracing::warn!(job_id = id, "The lease was lost; the job was stopped.");
    }
    // The artifacts the job made go to the server before its result, so that the jobs that
    // need it (queued when the result arrives) find them.
    let mut upload_failed = false;
    if !stopped && !lease_lost {
        let http = crate::agent_artifacts::Http { client: &client.http, base: &client.base, token: &client.token };
        match crate::agent_artifacts::upload(&http, id, attempt, &artifact_dir, &fetched).await {
            Ok(names) if !names.is_empty() => {
                tracing::info!(job_id = id, artifacts = ?names, "Artifacts uploaded.");
            }
            Ok(_) => {}
            Err(e) => {
                upload_failed = true;
                reporter.out.line(format!("error: uploading the job's artifacts to the server: {}", error_chain(&e)));
            }
        }
    }
    let result = match summary {
        None => Conclusion::Failure,
        Some(_) if upload_failed => Conclusion::Failure,
        Some(s) => {
            let results: Vec<JobResult> = s.jobs.iter().map(|j| j.result).collect();
            if results.contains(&JobResult::Failure) {
                Conclusion::Failure
            } else if results.contains(&JobResult::Cancelled) || cancel.is_cancelled() {
                Conclusion::Cancelled
            } else if !results.is_empty() && results.iter().all(|r| *r == JobResult::Skipped) {
                Conclusion::Skipped
            } else {
                Conclusion::Success
            }
        }
    };
    if stopped {
        // Handed back by the caller: what the attempt printed is kept with it.
        if !lease_lost {
            reporter.send().await;
        }
        return None;
    }
    Some(reporter.finished(result, st.outputs))
}

/// What a report's reply means for the running job (it extended the lease like a
/// heartbeat). `true`: the lease is lost.
fn on_sent(sent: Sent, heartbeat: &mut tokio::time::Interval, cancel: &CancellationToken) -> bool {
    match sent {
        Sent::Ok { cancel: stop } => {
            heartbeat.reset();
            if stop {
                cancel.cancel();
            }
            false
        }
        Sent::LeaseLost => {
            cancel.cancel();
            true
        }
        Sent::Failed => false,
    }
}
