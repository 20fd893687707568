//! The event stream of a run (one JSON object per line with `--json`; later the agent
//! protocol carries the same events).

use indexmap::IndexMap;
use serde::{Serialize, Serializer};

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
    /// Output lines, already masked, in order: the complete lines of one read of a step's
    /// output (a workflow command between lines ends a batch). JSON:
    /// `{"type":"log","job":"build","step":0,"stream":"stdout","lines":["a","b"]}`.
    Log {
        job: String,
        step: Option<usize>,
        stream: LogStream,
        lines: LogLines,
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

/// Lines of log output kept as one string of `\n`-terminated lines (one allocation for a
/// whole batch); serialized as an array of strings without the newlines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogLines(String);

impl LogLines {
    pub fn new() -> LogLines {
        LogLines(String::new())
    }

    /// One line (a `\n` inside it starts another line).
    pub fn one(line: &str) -> LogLines {
        let mut l = LogLines(String::with_capacity(line.len() + 1));
        l.push(line);
        l
    }

    /// Takes text that is already a sequence of `\n`-terminated lines (a missing final
    /// `\n` is added).
    pub fn from_text(mut text: String) -> LogLines {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        LogLines(text)
    }

    /// Appends a line (a `\n` inside it starts another line).
    pub fn push(&mut self, line: &str) {
        self.0.push_str(line);
        self.0.push('\n');
    }

    pub fn iter(&self) -> std::str::SplitTerminator<'_, char> {
        self.0.split_terminator('\n')
    }

    /// The number of lines.
    pub fn len(&self) -> usize {
        memchr::memchr_iter(b'\n', self.0.as_bytes()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The lines as text, each followed by `\n`.
    pub fn as_text(&self) -> &str {
        &self.0
    }
}

impl<'a> IntoIterator for &'a LogLines {
    type Item = &'a str;
    type IntoIter = std::str::SplitTerminator<'a, char>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<S: AsRef<str>> FromIterator<S> for LogLines {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> LogLines {
        let mut l = LogLines::new();
        for s in iter {
            l.push(s.as_ref());
        }
        l
    }
}

impl Serialize for LogLines {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_keep_empty_lines_and_serialize_as_an_array() {
        let mut l = LogLines::new();
        assert!(l.is_empty());
        l.push("a");
        l.push("");
        l.push("b\nc");
        assert_eq!(l.iter().collect::<Vec<_>>(), ["a", "", "b", "c"]);
        assert_eq!(l.len(), 4);
        assert_eq!(
            serde_json::to_string(&l).expect("json"),
            r#"["a","","b","c"]"#
        );
        assert_eq!(LogLines::one("").iter().collect::<Vec<_>>(), [""]);
        assert_eq!(
            LogLines::from_text("x\ny".into())
                .iter()
                .collect::<Vec<_>>(),
            ["x", "y"]
        );
        assert_eq!(serde_json::to_string(&LogLines::new()).expect("json"), "[]");
    }
}
