//! The types that cross a process boundary: the agent protocol (`/api/v1/agent/...`,
//! server <-> agent) and the REST API's DTOs (`/api/v1/...`, server <-> CLI and scripts).
//!
//! Everything here is plain serde data, versioned by the URL prefix: add fields with
//! `#[serde(default)]`, never rename. The server and the agent meet only through these
//! types; neither shares a Rust type with the other otherwise.
//!
//! What it does not do: HTTP. Paths are listed in [`paths`] so both ends spell them alike.

pub mod gitops;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// URL paths of the agent protocol and the API (relative to the server's base URL).
pub mod paths {
    pub const AGENT_REGISTER: &str = "/api/v1/agent/register";
    pub const AGENT_LEASE: &str = "/api/v1/agent/lease";
    /// `/api/v1/agent/jobs/{id}/heartbeat`
    pub fn agent_heartbeat(job: i64) -> String {
        format!("/api/v1/agent/jobs/{job}/heartbeat")
    }
    /// `/api/v1/agent/jobs/{id}/report`
    pub fn agent_report(job: i64) -> String {
        format!("/api/v1/agent/jobs/{job}/report")
    }
    /// `/api/v1/agent/jobs/{id}/finish`
    pub fn agent_finish(job: i64) -> String {
        format!("/api/v1/agent/jobs/{job}/finish")
    }
    /// `/api/v1/agent/jobs/{id}/release`
    pub fn agent_release(job: i64) -> String {
        format!("/api/v1/agent/jobs/{job}/release")
    }
    /// `/api/v1/agent/jobs/{id}/artifacts`: `GET` the run's artifacts, `POST` one.
    pub fn agent_artifacts(job: i64) -> String {
        format!("/api/v1/agent/jobs/{job}/artifacts")
    }
    /// `/api/v1/agent/jobs/{id}/blobs/{digest}`: `HEAD`/`PUT`/`GET` artifact contents.
    pub fn agent_blob(job: i64, digest: &str) -> String {
        format!("/api/v1/agent/jobs/{job}/blobs/{digest}")
    }
    /// `/api/v1/agent/jobs/{id}/caches/lookup`: `POST` [`CacheLookup`](crate::CacheLookup).
    pub fn agent_cache_lookup(job: i64) -> String {
        format!("/api/v1/agent/jobs/{job}/caches/lookup")
    }
    /// `/api/v1/agent/jobs/{id}/caches`: `POST` [`CacheReserve`](crate::CacheReserve).
    pub fn agent_caches(job: i64) -> String {
        format!("/api/v1/agent/jobs/{job}/caches")
    }
    /// `/api/v1/agent/jobs/{id}/caches/{cache}/commit`: `POST` [`CacheCommit`](crate::CacheCommit).
    pub fn agent_cache_commit(job: i64, cache: i64) -> String {
        format!("/api/v1/agent/jobs/{job}/caches/{cache}/commit")
    }
    pub const RUNS: &str = "/api/v1/runs";
    pub const REPOSITORIES: &str = "/api/v1/repositories";
    pub const DISPATCH: &str = "/api/v1/dispatch";
}

/// How a job, step or run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

impl Conclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Cancelled => "cancelled",
            Conclusion::Skipped => "skipped",
        }
    }
}

// --- agent protocol ---------------------------------------------------------------------------

/// `POST /api/v1/agent/register`, authenticated with the server's agent registration token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub name: String,
    /// `runs-on` labels this agent serves. Empty: every label (the embedded agent, and
    /// `slipway agent` without `--labels`).
    #[serde(default)]
    pub labels: Vec<String>,
    /// How many jobs it runs at once (`None`: an older agent that does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
}

/// The agent's own token for every later call (`Authorization: Bearer`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub agent_id: i64,
    pub token: String,
}

/// `POST /api/v1/agent/lease`: wait up to `wait_ms` for a job. `204 No Content`: none came.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub wait_ms: u64,
}

/// The result of a job another job needs (`needs.<id>.result/outputs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeedResult {
    pub result: Conclusion,
    #[serde(default)]
    pub outputs: Map<String, Value>,
}

/// The workflow a job comes from, as read at the run's commit. The agent parses and compiles
/// it again (compiling is deterministic and does no I/O) and runs the one job `job_key`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkflowSource {
    /// Path in the repository (`.gitea/workflows/ci.yml`).
    pub file: String,
    pub source: String,
    /// Other files `compile` read (local reusable workflows), path -> contents.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// A leased job: everything an agent needs to run it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assignment {
    pub job_id: i64,
    pub run_id: i64,
    /// Counts leases of this job from 1; echo it in every report.
    pub attempt: i64,
    /// The key under `jobs:`.
    pub job_key: String,
    pub workflow: WorkflowSource,
    pub event_name: String,
    /// `github.event`.
    pub event: Value,
    /// Base `github` context (repository, sha, ref, actor, run_id, ...).
    pub github: Map<String, Value>,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Where to fetch the commit from.
    pub clone_url: String,
    pub sha: String,
    #[serde(default)]
    pub needs: BTreeMap<String, NeedResult>,
    /// Send a heartbeat at least this often; the lease ends `lease_ttl_ms` after the last.
    pub heartbeat_ms: u64,
    pub lease_ttl_ms: u64,
}

/// `POST /api/v1/agent/jobs/{id}/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub attempt: i64,
}

/// The reply to a heartbeat. `409 Conflict` instead means the lease is gone: stop the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The run was cancelled: stop the job (cancel the steps, run `always()` steps).
    pub cancel: bool,
}

/// Log lines of a job, in a report or a finish: in order; `seq` counts chunks of one attempt
/// from 0 (a resent chunk is stored once).
///
/// A group is stored as the lines `::group::TITLE` and `::endgroup::` (the runner consumes
/// those commands, so a step cannot print them literally).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogChunk {
    pub attempt: i64,
    pub seq: i64,
    pub lines: Vec<String>,
    /// When the chunk's first line was read, by the agent's clock (milliseconds since the
    /// Unix epoch). `0` (an older agent): the server's clock when the chunk arrived.
    #[serde(default)]
    pub time_ms: i64,
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Running,
    Done,
}

/// A step's state, in a report or a finish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub attempt: i64,
    pub number: i64,
    pub name: String,
    pub state: StepState,
    #[serde(default)]
    pub conclusion: Option<Conclusion>,
    /// What the step set with `$GITHUB_OUTPUT` (sent when it is done).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub outputs: Map<String, Value>,
    /// The markdown the step appended to `$GITHUB_STEP_SUMMARY` (masked; sent when it is
    /// done), at most [`STEP_SUMMARY_MAX`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// When the step started (`running`) or finished (`done`), by the agent's clock
    /// (milliseconds since the Unix epoch). `0` (an older agent): when the report arrived.
    #[serde(default)]
    pub time_ms: i64,
}

/// The most step summary markdown kept per step (GitHub's limit): longer is cut at a line
/// end with a note (see [`cap_summary`]).
pub const STEP_SUMMARY_MAX: usize = 1024 * 1024;

/// `markdown` cut to at most [`STEP_SUMMARY_MAX`] bytes, at a line end where there is one,
/// with a note saying so appended.
pub fn cap_summary(markdown: String) -> String {
    if markdown.len() <= STEP_SUMMARY_MAX {
        return markdown;
    }
    const NOTE: &str = "\n\n*(The step summary was truncated: it exceeded 1 MiB.)*\n";
    let mut end = STEP_SUMMARY_MAX - NOTE.len();
    while !markdown.is_char_boundary(end) {
        end -= 1;
    }
    if let Some(nl) = markdown[..end].rfind('\n') {
        end = nl;
    }
    let mut out = markdown;
    out.truncate(end);
    out.push_str(NOTE);
    out
}

/// One file of an artifact: its path inside the artifact and its contents' SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactFile {
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// Unix permission bits.
    #[serde(default)]
    pub mode: u32,
}

/// An artifact (the runner's manifest): `POST /api/v1/agent/jobs/{id}/artifacts` after every
/// file's contents were `PUT` to `/api/v1/agent/jobs/{id}/blobs/sha256:<hex>`; and the items of
/// `GET` on the same path (every artifact of the job's run so far).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactManifest {
    pub name: String,
    pub files: Vec<ArtifactFile>,
}

/// `POST /api/v1/agent/jobs/{id}/artifacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactUpload {
    pub attempt: i64,
    pub manifest: ArtifactManifest,
}

/// `POST /api/v1/agent/jobs/{id}/caches/lookup`: the `actions/cache` entry for `keys` (the
/// primary key, then the restore-keys) and `version`; [`CacheFound`], or `204`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheLookup {
    pub keys: Vec<String>,
    pub version: String,
}

/// The entry a [`CacheLookup`] found; its archive is the blob `digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheFound {
    pub id: i64,
    pub key: String,
    pub version: String,
    /// `sha256:<hex>` of the archive.
    pub digest: String,
    pub size: i64,
}

/// `POST /api/v1/agent/jobs/{id}/caches`: reserve an entry; [`CacheReserved`], or `409`
/// when it exists or another job is saving it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheReserve {
    pub key: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheReserved {
    pub id: i64,
}

/// `POST /api/v1/agent/jobs/{id}/caches/{cache}/commit`, after the archive was uploaded as
/// the blob `digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheCommit {
    pub digest: String,
    pub size: i64,
}

/// A repository's `actions/cache` entry (`GET /api/v1/repositories/{owner}/{name}/caches`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cache {
    pub id: i64,
    pub key: String,
    /// A digest of the cached paths.
    pub version: String,
    /// The git ref of the run that saved it (its scope).
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub size: i64,
    pub created_at: i64,
    pub last_used_at: i64,
    /// Where to download the archive (an uncompressed tar).
    pub archive_url: String,
}

/// `DELETE /api/v1/repositories/{owner}/{name}/caches...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachesDeleted {
    pub deleted: usize,
}

/// `POST /api/v1/agent/jobs/{id}/release`: an agent that stops hands its job back; it is
/// queued again at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Release {
    pub attempt: i64,
}

/// `POST /api/v1/agent/jobs/{id}/report`: what happened since the last report, in one
/// request — the step reports in order and the log lines of that time (a step that starts
/// is stored before its lines, one that finishes after; all of one report are stored in one
/// transaction). A report also extends the lease like a [`Heartbeat`]; the reply is a
/// [`HeartbeatReply`], `409 Conflict` when the lease is gone.
///
/// Resending a report (after a lost reply) stores nothing twice: the log chunk is kept once
/// per `(attempt, seq)` and step reports are upserts. An agent sends its reports one at a
/// time, in order. The older `/logs` and `/steps` endpoints take one chunk or step each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    pub attempt: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
    /// Its `attempt` is the report's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogChunk>,
}

/// `POST /api/v1/agent/jobs/{id}/finish`: the result, with what was not reported yet (as in
/// a [`JobReport`]), stored in one transaction. A quick job costs a lease and this call.
/// Resending it after a lost reply answers `204` again and changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFinished {
    pub attempt: i64,
    pub result: Conclusion,
    #[serde(default)]
    pub outputs: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogChunk>,
}

// --- REST API ---------------------------------------------------------------------------------

/// An error reply of any endpoint (with a 4xx/5xx status).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// A run (`GET /api/v1/runs`, `GET /api/v1/runs/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: i64,
    pub repository: String,
    pub workflow_file: String,
    pub workflow_name: String,
    pub event: String,
    pub git_ref: String,
    pub sha: String,
    pub actor: String,
    /// `queued`, `running`, `done`.
    pub status: String,
    pub conclusion: Option<Conclusion>,
    pub reason: Option<String>,
    pub cancel_requested: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The run's page (`{external_url}/runs/{id}`).
    pub url: String,
}

/// A step of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub attempt: i64,
    pub number: i64,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    /// What the step set with `$GITHUB_OUTPUT`.
    #[serde(default)]
    pub outputs: Map<String, Value>,
    /// The step summary markdown (`$GITHUB_STEP_SUMMARY`, masked, at most 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// A job (`GET /api/v1/runs/{id}/jobs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub run_id: i64,
    pub key: String,
    pub name: String,
    pub needs: Vec<String>,
    pub labels: Vec<String>,
    /// `pending`, `queued`, `running`, `done`.
    pub status: String,
    pub result: Option<Conclusion>,
    pub reason: Option<String>,
    pub attempt: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// Log text of one job attempt chunk (`GET /api/v1/runs/{id}/logs` with
/// `Accept: application/json`, and each SSE `log` event's data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogText {
    pub job_id: i64,
    pub job_key: String,
    pub attempt: i64,
    pub seq: i64,
    pub text: String,
    /// When the chunk's first line was read (agent clock, milliseconds since the Unix epoch).
    #[serde(default)]
    pub time_ms: i64,
}

/// `POST /api/v1/dispatch`: a `workflow_dispatch` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DispatchRequest {
    pub repository: String,
    /// The workflow file name (`ci.yml`) or path (`.gitea/workflows/ci.yml`).
    pub workflow: String,
    /// Branch, tag or full ref.
    #[serde(rename = "ref")]
    pub git_ref: String,
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
}

/// The runs a webhook or dispatch created.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Created {
    pub runs: Vec<i64>,
}

/// An artifact of a run (`GET /api/v1/runs/{id}/artifacts`); download it as a tar archive
/// from `GET /api/v1/runs/{id}/artifacts/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub job_id: i64,
    pub attempt: i64,
    pub files: i64,
    /// Bytes of all files.
    pub size: i64,
    pub created_at: i64,
    /// Where to download it (`{external_url}/api/v1/runs/{id}/artifacts/{name}`).
    pub url: String,
}

/// `PUT /api/v1/repositories/{owner}/{name}` (and `POST /api/v1/repositories` with `name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryRequest {
    /// Only for `POST /api/v1/repositories`: `owner/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub clone_url: String,
    /// `gitea`, `forgejo`, `github`, `gitlab` or `generic`.
    pub forge: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge_api: Option<String>,
    /// Write-only: stored encrypted, never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge_token: Option<String>,
    /// Write-only: stored encrypted, never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// `30s`, `5m`; none: no polling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<String>,
}

/// A registered repository as the API shows it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub name: String,
    pub clone_url: String,
    pub forge: String,
    pub forge_api: Option<String>,
    pub has_forge_token: bool,
    pub has_webhook_secret: bool,
    /// Milliseconds; none: not polled.
    pub poll_interval_ms: Option<i64>,
    /// `config` (the configuration file; read-only through the API) or `api`.
    pub managed_by: String,
}

/// `PUT .../secrets/{NAME}` and `PUT .../variables/{NAME}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingValue {
    pub value: String,
}

/// A secret as listed (`GET .../secrets`): never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    pub name: String,
    /// `api` (stored encrypted) or `config` (from the configuration file).
    pub source: String,
    pub updated_at: Option<i64>,
}

/// A variable as listed (`GET .../variables`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    pub value: String,
    pub source: String,
    pub updated_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_summary_over_1_mib_is_cut_at_a_line_end_with_a_note() {
        assert_eq!(cap_summary("# short\n".into()), "# short\n");
        let exact = "x".repeat(STEP_SUMMARY_MAX);
        assert_eq!(cap_summary(exact.clone()), exact, "exactly 1 MiB is kept");
        let long = "é row\n".repeat(STEP_SUMMARY_MAX / 7 + 10);
        let cut = cap_summary(long);
        assert!(cut.len() <= STEP_SUMMARY_MAX, "{}", cut.len());
        let (body, note) = cut.split_once("\n\n*(").expect("a note");
        assert!(body.lines().all(|l| l == "é row"), "whole lines only");
        assert_eq!(note, "The step summary was truncated: it exceeded 1 MiB.)*\n");
        // One line longer than the cap: cut inside it, on a character boundary.
        let cut = cap_summary("é".repeat(STEP_SUMMARY_MAX));
        assert!(cut.len() <= STEP_SUMMARY_MAX && cut.ends_with("1 MiB.)*\n"));
    }
}
