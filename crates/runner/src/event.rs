//! The event stream of a run (one JSON object per line with `--json`; later the agent
//! protocol carries the same events).

use indexmap::IndexMap;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobResult {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Lines the runner itself writes (step headers, warnings).
    System,
}

/// One thing that happened in a run. `job` is the unique job id of [`crate::JobSummary`].
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        workflows: Vec<String>,
        /// Every job id known up front (matrix legs computed later appear in JobQueued).
        jobs: Vec<String>,
    },
    JobQueued {
        job: String,
        name: String,
        needs: Vec<String>,
    },
    JobStarted {
        job: String,
        name: String,
    },
    JobFinished {
        job: String,
        result: JobResult,
        duration_ms: u64,
        outputs: serde_json::Map<String, serde_json::Value>,
    },
    StepStarted {
        job: String,
        step: usize,
        name: String,
    },
    StepFinished {
        job: String,
        step: usize,
        outcome: StepOutcome,
        conclusion: StepOutcome,
        duration_ms: u64,
        /// The step's outputs as `steps.<id>.outputs` sees them (masked), also for a step
        /// without an `id` (e.g. the digest an image build reported).
        outputs: IndexMap<String, String>,
    },
    /// One output line, already masked. `group` is set inside `::group::` blocks.
    Log {
        job: String,
        step: Option<usize>,
        stream: LogStream,
        line: String,
    },
    GroupStarted {
        job: String,
        step: Option<usize>,
        title: String,
    },
    GroupEnded {
        job: String,
        step: Option<usize>,
    },
    /// `::error`/`::warning`/`::notice` (and runner warnings such as an unmapped runs-on).
    Annotation {
        job: String,
        step: Option<usize>,
        level: String,
        message: String,
        file: Option<String>,
        line: Option<u32>,
        col: Option<u32>,
    },
    /// The step summary markdown a step appended to GITHUB_STEP_SUMMARY.
    StepSummary {
        job: String,
        step: usize,
        markdown: String,
    },
    RunFinished {
        success: bool,
    },
}
