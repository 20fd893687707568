//! `filter::triggered`: which events a workflow's `on:` lets through. Each row: an event
//! (name, ref, activity type, changed files) and whether the workflow runs.

#![allow(clippy::unwrap_used)]

use workflow::filter::{EventInfo, triggered};
use workflow::parse;

const ON: &str = "on:
  push:
    branches: [main, 'releases/**', '!releases/**-alpha']
    paths: ['src/**', '!src/docs/**']
  pull_request:
    branches-ignore: [wip/*]
    paths-ignore: ['**.md']
  pull_request_target:
    types: [labeled]
  workflow_run:
    workflows: [CI]
    types: [completed]
  issues:
  schedule:
    - cron: '0 0 * * *'
jobs:
  a: {runs-on: x, steps: [{run: echo}]}
";

const TAGS_ONLY: &str = "on:
  push:
    tags: ['v*']
    paths: [src/**]
jobs:
  a: {runs-on: x, steps: [{run: echo}]}
";

/// (event, ref, activity type, changed files, runs?)
type Row<'a> = (
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a [&'a str]>,
    bool,
);

fn check(on: &str, rows: &[Row<'_>]) {
    let wf = parse(on, "wf.yml").unwrap();
    for (event, git_ref, action, paths, want) in rows {
        let paths: Option<Vec<String>> = paths.map(|p| p.iter().map(|s| s.to_string()).collect());
        let info = EventInfo {
            event,
            git_ref: *git_ref,
            action: *action,
            changed_paths: paths.as_deref(),
            workflow_name: Some("CI"),
        };
        assert_eq!(
            triggered(&wf.on, &info),
            *want,
            "{event} {git_ref:?} {action:?} {paths:?}"
        );
    }
}

#[test]
fn branch_tag_path_and_type_filters() {
    check(
        ON,
        &[
            ("push", Some("refs/heads/main"), None, None, true),
            ("push", Some("refs/heads/dev"), None, None, false),
            ("push", Some("refs/heads/releases/v1"), None, None, true),
            (
                "push",
                Some("refs/heads/releases/v1-alpha"),
                None,
                None,
                false,
            ),
            // Only branch filters: tag pushes do not run.
            ("push", Some("refs/tags/v1"), None, None, false),
            (
                "push",
                Some("refs/heads/main"),
                None,
                Some(&["src/a.rs"]),
                true,
            ),
            (
                "push",
                Some("refs/heads/main"),
                None,
                Some(&["README.md"]),
                false,
            ),
            (
                "push",
                Some("refs/heads/main"),
                None,
                Some(&["src/docs/x.md"]),
                false,
            ),
            (
                "push",
                Some("refs/heads/main"),
                None,
                Some(&["src/docs/x.md", "src/b.rs"]),
                true,
            ),
            ("pull_request", Some("main"), Some("opened"), None, true),
            ("pull_request", Some("wip/x"), Some("opened"), None, false),
            // Default pull_request types: opened, synchronize, reopened.
            ("pull_request", Some("main"), Some("closed"), None, false),
            (
                "pull_request",
                Some("main"),
                Some("synchronize"),
                Some(&["a.md", "b.md"]),
                false,
            ),
            (
                "pull_request",
                Some("main"),
                Some("synchronize"),
                Some(&["a.md", "b.rs"]),
                true,
            ),
            (
                "pull_request_target",
                Some("main"),
                Some("labeled"),
                None,
                true,
            ),
            (
                "pull_request_target",
                Some("main"),
                Some("opened"),
                None,
                false,
            ),
            ("workflow_run", Some("main"), Some("completed"), None, true),
            ("workflow_run", Some("main"), Some("requested"), None, false),
            ("issues", None, Some("opened"), None, true),
            ("schedule", None, None, None, true),
            ("release", None, None, None, false),
        ],
    );
}

#[test]
fn tag_filters_only() {
    check(
        TAGS_ONLY,
        &[
            ("push", Some("refs/tags/v1.0"), None, None, true),
            ("push", Some("refs/tags/release-1"), None, None, false),
            // Only tag filters: branch pushes do not run.
            ("push", Some("refs/heads/main"), None, None, false),
            // Path filters are not evaluated for tags.
            (
                "push",
                Some("refs/tags/v2"),
                None,
                Some(&["README.md"]),
                true,
            ),
        ],
    );
}

#[test]
fn workflow_run_needs_a_listed_workflow() {
    let wf = parse(ON, "wf.yml").unwrap();
    let info = EventInfo {
        event: "workflow_run",
        action: Some("completed"),
        workflow_name: Some("Deploy"),
        ..Default::default()
    };
    assert!(!triggered(&wf.on, &info));
}
