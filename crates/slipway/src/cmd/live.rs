//! Rendering a run's [`runner::Event`] stream for a person (prefixed live output, step
//! headers, collapsed groups, annotations, a progress line, the summary table) or for a
//! program (`--json`: exactly the events, one JSON object per line).
//!
//! The renderer only writes; it never decides anything about the run. Terminal features
//! (colour, collapsed groups, the progress line) are on only when the stream is a TTY.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use runner::{Event, JobResult, LogStream, RunSummary, StepOutcome};

/// How to render.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// `--json`: serialized events only.
    pub json: bool,
    /// stdout is a terminal: colour, collapsed groups.
    pub color: bool,
    /// stderr is a terminal: the progress line.
    pub progress: bool,
}

/// At most this many hidden group lines are kept per job (the last ones) to show when a
/// step fails.
const HIDDEN_MAX: usize = 2000;

const PALETTE: [&str; 6] = ["36", "35", "33", "32", "34", "96"];
const RESET: &str = "\x1b[0m";

#[derive(Default)]
struct JobView {
    prefix: String,
    /// Inside a `::group::` (on a TTY: lines are hidden).
    in_group: bool,
    hidden: std::collections::VecDeque<String>,
    hidden_dropped: usize,
    steps: HashMap<usize, String>,
}

#[derive(Default, PartialEq, Eq, Clone, Copy)]
enum JobState {
    #[default]
    Queued,
    Running,
    Done,
}

/// Consumes events and writes them to stdout (and the progress line to stderr).
pub struct Renderer<W: Write, E: Write> {
    style: Style,
    out: W,
    err: E,
    jobs: Vec<JobView>,
    index: HashMap<String, usize>,
    /// The job of the previous event and its index (most lines come in runs per job).
    last: Option<(String, usize)>,
    states: indexmap::IndexMap<String, JobState>,
    progress_shown: bool,
    /// The counts on the progress line as last drawn.
    drawn: (usize, usize, usize),
    /// The first write error (e.g. stdout closed); rendering stops, the run goes on.
    pub broken: Option<std::io::Error>,
}

impl<W: Write, E: Write> Renderer<W, E> {
    pub fn new(style: Style, out: W, err: E) -> Self {
        Renderer {
            style,
            out,
            err,
            jobs: Vec::new(),
            index: HashMap::new(),
            last: None,
            states: indexmap::IndexMap::new(),
            progress_shown: false,
            drawn: (0, 0, 0),
            broken: None,
        }
    }

    /// Renders one event (buffered; call [`Renderer::flush`] after a batch).
    pub fn event(&mut self, event: &Event) {
        if self.broken.is_some() {
            return;
        }
        let result = if self.style.json { self.json(event) } else { self.human(event) };
        if let Err(e) = result {
            self.broken = Some(e);
        }
    }

    /// Flushes stdout and redraws the progress line.
    pub fn flush(&mut self) {
        if self.broken.is_some() {
            return;
        }
        if let Err(e) = self.out.flush() {
            self.broken = Some(e);
            return;
        }
        if self.style.progress && !self.style.json {
            let (mut done, mut running, mut queued) = (0, 0, 0);
            for s in self.states.values() {
                match s {
                    JobState::Done => done += 1,
                    JobState::Running => running += 1,
                    JobState::Queued => queued += 1,
                }
            }
            let counts = (done, running, queued);
            if !self.states.is_empty() && (!self.progress_shown || self.drawn != counts) {
                if self.progress_shown {
                    let _ = write!(self.err, "\r\x1b[K");
                }
                self.drawn = counts;
                let _ = write!(
                    self.err,
                    "\r\x1b[K\x1b[2mjobs: {done} done, {running} running, {queued} queued\x1b[0m"
                );
                let _ = self.err.flush();
                self.progress_shown = true;
            }
        }
    }

    /// Erases the progress line (before normal output, and at the end).
    fn clear_progress(&mut self) {
        if self.progress_shown {
            let _ = write!(self.err, "\r\x1b[K");
            let _ = self.err.flush();
            self.progress_shown = false;
        }
    }

    fn json(&mut self, event: &Event) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")
    }

    fn view_index(&mut self, job: &str) -> usize {
        if let Some((name, i)) = &self.last {
            if name == job {
                return *i;
            }
        }
        let i = match self.index.get(job) {
            Some(i) => *i,
            None => {
                let color = PALETTE[self.jobs.len() % PALETTE.len()];
                let prefix = if self.style.color {
                    format!("\x1b[{color}m[{job}]{RESET} ")
                } else {
                    format!("[{job}] ")
                };
                self.jobs.push(JobView { prefix, ..JobView::default() });
                self.index.insert(job.to_owned(), self.jobs.len() - 1);
                self.jobs.len() - 1
            }
        };
        self.last = Some((job.to_owned(), i));
        i
    }

    fn view(&mut self, job: &str) -> &mut JobView {
        let i = self.view_index(job);
        &mut self.jobs[i]
    }

    fn line(&mut self, job: &str, text: &str) -> std::io::Result<()> {
        if self.progress_shown {
            // Flush what is buffered first so the erase lands before the new output.
            self.out.flush()?;
            self.clear_progress();
        }
        let i = self.view_index(job);
        write_prefixed(&mut self.out, &self.jobs[i].prefix, text)
    }

    /// Many lines of one job (the hot path of a chatty step).
    fn lines(&mut self, job: &str, lines: &runner::LogLines) -> std::io::Result<()> {
        if self.progress_shown {
            self.out.flush()?;
            self.clear_progress();
        }
        let i = self.view_index(job);
        let prefix = self.jobs[i].prefix.as_bytes();
        for line in lines {
            self.out.write_all(prefix)?;
            self.out.write_all(line.as_bytes())?;
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.style.color { format!("\x1b[{code}m{text}{RESET}") } else { text.to_owned() }
    }

    fn human(&mut self, event: &Event) -> std::io::Result<()> {
        match event {
            Event::RunStarted { jobs, .. } => {
                for j in jobs {
                    self.states.entry(j.clone()).or_default();
                }
            }
            Event::JobQueued { job, .. } => {
                self.states.entry(job.clone()).or_default();
            }
            Event::JobStarted { job, name } => {
                self.states.insert(job.clone(), JobState::Running);
                let text = if name != job && !name.is_empty() {
                    format!("🚀 Start job {name}")
                } else {
                    "🚀 Start job".to_owned()
                };
                self.line(job, &text)?;
            }
            Event::JobFinished { job, result, duration_ms, .. } => {
                self.states.insert(job.clone(), JobState::Done);
                let text = match result {
                    JobResult::Success => self.paint("32", "🏁 Job succeeded"),
                    JobResult::Failure => self.paint("31;1", "🏁 Job failed"),
                    JobResult::Cancelled => self.paint("33", "🏁 Job cancelled"),
                    JobResult::Skipped => self.paint("2", "⏭ Job skipped"),
                };
                let text = if *result == JobResult::Skipped {
                    text
                } else {
                    format!("{text} ({})", fmt_duration(*duration_ms))
                };
                self.line(job, &text)?;
            }
            Event::StepStarted { job, step, name } => {
                let view = self.view(job);
                view.steps.insert(*step, name.clone());
                view.in_group = false;
                let text = self.paint("1", &format!("⭐ {name}"));
                self.line(job, &text)?;
            }
            Event::StepFinished { job, step, outcome, conclusion, duration_ms, .. } => {
                let view = self.view(job);
                view.in_group = false;
                let hidden = std::mem::take(&mut view.hidden);
                let dropped = std::mem::take(&mut view.hidden_dropped);
                let name = view.steps.remove(step).unwrap_or_else(|| format!("step {step}"));
                if *outcome == StepOutcome::Failure && !hidden.is_empty() {
                    let note = if dropped > 0 {
                        format!("── output hidden in groups ({dropped} earlier lines not kept) ──")
                    } else {
                        "── output hidden in groups ──".to_owned()
                    };
                    let note = self.paint("2", &note);
                    self.line(job, &note)?;
                    for l in &hidden {
                        self.line(job, l)?;
                    }
                }
                let d = fmt_duration(*duration_ms);
                let text = match (outcome, conclusion) {
                    (StepOutcome::Success, _) => self.paint("32", &format!("✅ Success - {name} ({d})")),
                    (StepOutcome::Failure, StepOutcome::Success) => {
                        self.paint("33", &format!("⚠ Failure (continue-on-error) - {name} ({d})"))
                    }
                    (StepOutcome::Failure, _) => self.paint("31;1", &format!("❌ Failure - {name} ({d})")),
                    (StepOutcome::Cancelled, _) => self.paint("33", &format!("🚫 Cancelled - {name} ({d})")),
                    (StepOutcome::Skipped, _) => self.paint("2", &format!("⏭ Skipped - {name}")),
                };
                self.line(job, &text)?;
            }
            Event::Log { job, stream, lines, .. } => {
                let hide = self.style.color && self.view(job).in_group;
                if hide {
                    let view = self.view(job);
                    for line in lines {
                        if view.hidden.len() >= HIDDEN_MAX {
                            view.hidden.pop_front();
                            view.hidden_dropped += 1;
                        }
                        view.hidden.push_back(line.to_owned());
                    }
                } else if *stream == LogStream::System {
                    for line in lines {
                        let text = self.paint("2", line);
                        self.line(job, &text)?;
                    }
                } else {
                    self.lines(job, lines)?;
                }
            }
            Event::GroupStarted { job, title, .. } => {
                let text = if self.style.color {
                    self.paint("1", &format!("▶ {title}"))
                } else {
                    format!("▼ {title}")
                };
                self.line(job, &text)?;
                self.view(job).in_group = true;
            }
            Event::GroupEnded { job, .. } => {
                self.view(job).in_group = false;
            }
            Event::Annotation { job, level, message, file, line, col, .. } => {
                let (icon, code) = match level.as_str() {
                    "error" => ("❗", "31;1"),
                    "warning" => ("⚠", "33;1"),
                    _ => ("ℹ", "34;1"),
                };
                let place = match (file, line, col) {
                    (Some(f), Some(l), Some(c)) => format!(" ({f}:{l}:{c})"),
                    (Some(f), Some(l), None) => format!(" ({f}:{l})"),
                    (Some(f), None, _) => format!(" ({f})"),
                    _ => String::new(),
                };
                let text = self.paint(code, &format!("{icon} {level}{place}: {message}"));
                self.line(job, &text)?;
            }
            Event::StepSummary { job, markdown, .. } => {
                let head = self.paint("2", "📝 step summary:");
                self.line(job, &head)?;
                for l in markdown.lines() {
                    self.line(job, l)?;
                }
            }
            Event::RunFinished { .. } => {}
        }
        Ok(())
    }

    /// The summary table (human mode only), after the run.
    pub fn summary(&mut self, summary: &RunSummary) {
        self.clear_progress();
        if self.style.json || self.broken.is_some() {
            return;
        }
        if let Err(e) = self.write_summary(summary) {
            self.broken = Some(e);
        }
    }

    fn write_summary(&mut self, summary: &RunSummary) -> std::io::Result<()> {
        if summary.jobs.is_empty() {
            writeln!(self.out, "no job ran")?;
            return self.out.flush();
        }
        let width = summary.jobs.iter().map(|j| j.id.chars().count()).max().unwrap_or(3).max(3);
        writeln!(self.out)?;
        writeln!(self.out, "{}", self.paint("1", &format!("{:<width$}  {:<9}  {:>9}", "job", "result", "duration")))?;
        let (mut failed, mut skipped, mut cancelled) = (0, 0, 0);
        for j in &summary.jobs {
            let (word, code) = match j.result {
                JobResult::Success => ("success", "32"),
                JobResult::Failure => {
                    failed += 1;
                    ("failure", "31;1")
                }
                JobResult::Cancelled => {
                    cancelled += 1;
                    ("cancelled", "33")
                }
                JobResult::Skipped => {
                    skipped += 1;
                    ("skipped", "2")
                }
            };
            let duration =
                if j.result == JobResult::Skipped { "-".to_owned() } else { fmt_duration(j.duration_ms) };
            let word = self.paint(code, &format!("{word:<9}"));
            writeln!(self.out, "{:<width$}  {word}  {duration:>9}", j.id)?;
        }
        let mut tail = Vec::new();
        if failed > 0 {
            tail.push(format!("{failed} failed"));
        }
        if cancelled > 0 {
            tail.push(format!("{cancelled} cancelled"));
        }
        if skipped > 0 {
            tail.push(format!("{skipped} skipped"));
        }
        let verdict = if summary.success {
            self.paint("32;1", "run succeeded")
        } else {
            self.paint("31;1", "run failed")
        };
        if tail.is_empty() {
            writeln!(self.out, "{verdict}")?;
        } else {
            writeln!(self.out, "{verdict}: {}", tail.join(", "))?;
        }
        self.out.flush()
    }

    /// Gives the writers back (tests).
    #[cfg(test)]
    pub fn into_inner(self) -> (W, E) {
        (self.out, self.err)
    }

    #[cfg(test)]
    fn prefix_of(&self, job: &str) -> Option<&str> {
        self.index.get(job).map(|i| self.jobs[*i].prefix.as_str())
    }
}

fn write_prefixed(out: &mut dyn Write, prefix: &str, text: &str) -> std::io::Result<()> {
    out.write_all(prefix.as_bytes())?;
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")
}

/// `850ms`, `1.2s`, `2m03s`.
pub fn fmt_duration(ms: u64) -> String {
    let d = Duration::from_millis(ms);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(job: &str, line: &str) -> Event {
        Event::Log { job: job.into(), step: Some(0), stream: LogStream::Stdout, lines: runner::LogLines::one(line) }
    }

    fn render(style: Style, events: &[Event]) -> String {
        let mut r = Renderer::new(style, Vec::new(), Vec::new());
        for e in events {
            r.event(e);
        }
        r.flush();
        String::from_utf8(r.into_inner().0).expect("utf8")
    }

    fn group_events(outcome: StepOutcome) -> Vec<Event> {
        vec![
            Event::StepStarted { job: "b".into(), step: 0, name: "make".into() },
            Event::GroupStarted { job: "b".into(), step: Some(0), title: "deps".into() },
            log("b", "inside"),
            Event::GroupEnded { job: "b".into(), step: Some(0) },
            log("b", "after"),
            Event::StepFinished {
                job: "b".into(),
                step: 0,
                outcome,
                conclusion: outcome,
                duration_ms: 5,
                outputs: Default::default(),
            },
        ]
    }

    const PLAIN: Style = Style { json: false, color: false, progress: false };
    const TTY: Style = Style { json: false, color: true, progress: false };

    #[test]
    fn plain_output_is_prefixed_and_shows_groups() {
        let out = render(PLAIN, &group_events(StepOutcome::Success));
        assert_eq!(
            out,
            "[b] ⭐ make\n[b] ▼ deps\n[b] inside\n[b] after\n[b] ✅ Success - make (5ms)\n"
        );
    }

    #[test]
    fn tty_collapses_groups_unless_the_step_fails() {
        let ok = render(TTY, &group_events(StepOutcome::Success));
        assert!(!ok.contains("inside"), "{ok}");
        assert!(ok.contains("after"), "{ok}");
        let failed = render(TTY, &group_events(StepOutcome::Failure));
        assert!(failed.contains("inside"), "{failed}");
        assert!(failed.contains("\x1b["), "{failed}");
    }

    #[test]
    fn json_is_one_event_per_line() {
        let out = render(Style { json: true, color: false, progress: false }, &group_events(StepOutcome::Success));
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 6);
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            assert!(v.get("type").is_some());
        }
    }

    #[test]
    fn a_batch_of_lines_is_rendered_line_by_line() {
        let lines: runner::LogLines = ["one", "", "two"].into_iter().collect();
        let batch = Event::Log { job: "b".into(), step: Some(0), stream: LogStream::Stdout, lines };
        assert_eq!(render(PLAIN, std::slice::from_ref(&batch)), "[b] one\n[b] \n[b] two\n");
        let json = render(Style { json: true, color: false, progress: false }, &[batch]);
        let v: serde_json::Value = serde_json::from_str(json.trim_end()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"type": "log", "job": "b", "step": 0, "stream": "stdout", "lines": ["one", "", "two"]})
        );
    }

    #[test]
    fn jobs_get_distinct_colours() {
        let mut r = Renderer::new(TTY, Vec::new(), Vec::new());
        r.event(&log("a", "x"));
        r.event(&log("b", "y"));
        let (a, b) = (r.prefix_of("a").expect("a"), r.prefix_of("b").expect("b"));
        assert!(a.starts_with("\x1b[36m") && b.starts_with("\x1b[35m"), "{a:?} {b:?}");
    }

    fn js(id: &str, result: JobResult, duration_ms: u64) -> runner::JobSummary {
        runner::JobSummary { id: id.into(), name: id.into(), result, duration_ms }
    }

    #[test]
    fn summary_table() {
        let summary = RunSummary {
            success: false,
            jobs: vec![
                js("build", JobResult::Success, 1500),
                js("test (a)", JobResult::Failure, 20),
                js("package", JobResult::Skipped, 0),
            ],
        };
        let mut r = Renderer::new(PLAIN, Vec::new(), Vec::new());
        r.summary(&summary);
        let out = String::from_utf8(r.into_inner().0).expect("utf8");
        assert!(out.contains("build     success         1.5s\n"), "{out}");
        assert!(out.contains("package   skipped            -\n"), "{out}");
        assert!(out.contains("run failed: 1 failed, 1 skipped"), "{out}");
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(850), "850ms");
        assert_eq!(fmt_duration(1250), "1.2s");
        assert_eq!(fmt_duration(123_000), "2m03s");
    }
}
