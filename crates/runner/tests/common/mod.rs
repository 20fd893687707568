//! Helpers for running workflows on the host executor in tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use runner::{Event, JobResult, Platform, RunOptions, RunSummary, StepOutcome};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A temp dir with a repo root, a work root and a cache dir.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["repo", "work", "cache"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        Fixture { dir }
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Writes a file under the repo root.
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.repo().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
        p
    }

    pub fn options(&self) -> RunOptions {
        let mut github = serde_json::Map::new();
        github.insert("repository".into(), "team/app".into());
        github.insert("repository_owner".into(), "team".into());
        github.insert("actor".into(), "alice".into());
        github.insert(
            "sha".into(),
            "0123456789abcdef0123456789abcdef01234567".into(),
        );
        github.insert("ref".into(), "refs/heads/main".into());
        RunOptions {
            repo_root: self.repo(),
            work_root: self.dir.path().join("work"),
            event_name: "push".into(),
            event: serde_json::json!({"ref": "refs/heads/main"}),
            github,
            secrets: IndexMap::new(),
            vars: IndexMap::new(),
            env: IndexMap::new(),
            inputs: IndexMap::new(),
            matrix_filter: IndexMap::new(),
            platforms: Vec::new(),
            default_platform: Platform::Host,
            artifact_dir: None,
            cache_dir: self.dir.path().join("cache"),
            cache: None,
            actions_url: "https://github.com".into(),
            sandbox: false,
            docker_host: None,
            needs: IndexMap::new(),
        }
    }
}

/// Compiles `yaml` for `options.event_name`, loading reusable workflows from the repo root.
pub fn plan(yaml: &str, options: &RunOptions) -> workflow::Plan {
    let wf = workflow::parse(yaml, "test.yml").unwrap_or_else(|d| panic!("parse: {d}"));
    let root = options.repo_root.clone();
    let loader = move |p: &str| std::fs::read_to_string(root.join(p)).ok();
    workflow::compile(
        &wf,
        &workflow::CompileOptions {
            event: &options.event_name,
            loader: &loader,
        },
    )
    .unwrap_or_else(|d| panic!("compile: {d}"))
}

/// The result of a run: the summary and every event.
pub struct Outcome {
    pub summary: RunSummary,
    pub events: Vec<Event>,
}

pub async fn run(yaml: &str, options: RunOptions) -> Outcome {
    run_with(yaml, options, CancellationToken::new()).await
}

pub async fn run_with(yaml: &str, options: RunOptions, cancel: CancellationToken) -> Outcome {
    let plan = plan(yaml, &options);
    run_plan(plan, options, cancel).await
}

/// Runs a compiled (perhaps reduced) plan.
pub async fn run_plan(
    plan: workflow::Plan,
    options: RunOptions,
    cancel: CancellationToken,
) -> Outcome {
    let (tx, mut rx) = mpsc::channel(1024);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let summary = runner::run(vec![plan], options, tx, cancel)
        .await
        .expect("run");
    let events = collector.await.expect("collector");
    Outcome { summary, events }
}

impl Outcome {
    pub fn job(&self, id: &str) -> JobResult {
        self.summary
            .jobs
            .iter()
            .find(|j| j.id == id)
            .map(|j| j.result)
            .unwrap_or_else(|| panic!("no job {id} in {:?}\n{}", self.summary.jobs, self.dump()))
    }

    /// Log lines of a job (stdout/stderr/system), in order.
    pub fn logs(&self, job: &str) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Log { job: j, lines, .. } if j == job => Some(lines.iter()),
                _ => None,
            })
            .flatten()
            .map(str::to_owned)
            .collect()
    }

    pub fn all_logs(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Log { lines, .. } => Some(lines.iter()),
                _ => None,
            })
            .flatten()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// (name, outcome, conclusion) of a job's steps.
    pub fn steps(&self, job: &str) -> Vec<(String, StepOutcome, StepOutcome)> {
        let mut names = std::collections::HashMap::new();
        let mut out = Vec::new();
        for e in &self.events {
            match e {
                Event::StepStarted { job: j, step, name } if j == job => {
                    names.insert(*step, name.clone());
                }
                Event::StepFinished {
                    job: j,
                    step,
                    outcome,
                    conclusion,
                    ..
                } if j == job => {
                    out.push((
                        names.get(step).cloned().unwrap_or_default(),
                        *outcome,
                        *conclusion,
                    ));
                }
                _ => {}
            }
        }
        out
    }

    pub fn outputs(&self, job: &str) -> serde_json::Map<String, serde_json::Value> {
        self.events
            .iter()
            .find_map(|e| match e {
                Event::JobFinished {
                    job: j, outputs, ..
                } if j == job => Some(outputs.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    pub fn annotations(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Annotation { level, message, .. } => Some((level.clone(), message.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn dump(&self) -> String {
        self.events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
