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

// Cases moved from the server, which had its own copy of these filters: the server now calls
// `workflow::filter::trigger_matches`, so they check the one implementation.

use workflow::filter::{glob_match, trigger_matches};
use workflow::EventTrigger;

fn check_glob(pattern: &str, name: &str, expect: bool) {
    assert_eq!(glob_match(pattern, name), expect, "{pattern} vs {name}");
}

#[test]
fn globs_follow_the_actions_cheat_sheet() {
    check_glob("feature/*", "feature/my-branch", true);
    check_glob("feature/*", "feature/your/branch", false);
    check_glob("feature/**", "feature/your/branch", true);
    check_glob("main", "main", true);
    check_glob("main", "mainline", false);
    check_glob("v2*", "v2.0.0", true);
    check_glob("v[12].[0-9]+.[0-9]+", "v1.10.1", true);
    check_glob("v[12].[0-9]+.[0-9]+", "v3.1.1", false);
    check_glob("*.js", "app.js", true);
    check_glob("*.js", "src/app.js", false);
    check_glob("**.js", "src/app.js", true);
    check_glob("docs/**", "docs/a/b.md", true);
    check_glob("*.jsx?", "page.js", true);
    check_glob("*.jsx?", "page.jsx", true);
    check_glob("**/migrate-*.sql", "db/migrate-v1.sql", true);
}

fn trig(f: impl FnOnce(&mut EventTrigger)) -> EventTrigger {
    let mut t = EventTrigger::default();
    f(&mut t);
    t
}

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn push(t: &EventTrigger, git_ref: &str, changed: Option<&[String]>) -> bool {
    trigger_matches(t, &EventInfo { event: "push", git_ref: Some(git_ref), changed_paths: changed, ..EventInfo::default() })
}

fn pr(t: &EventTrigger, action: &str, base: &str) -> bool {
    trigger_matches(t, &EventInfo { event: "pull_request", git_ref: Some(base), action: Some(action), ..EventInfo::default() })
}

#[test]
fn push_filters() {
    let none = EventTrigger::default();
    assert!(push(&none, "refs/heads/x", None));
    assert!(push(&none, "refs/tags/v1", None));
    let main = trig(|t| t.branches = v(&["main", "releases/**", "!releases/**-alpha"]));
    assert!(push(&main, "refs/heads/main", None));
    assert!(push(&main, "refs/heads/releases/1.0", None));
    assert!(!push(&main, "refs/heads/releases/1.0-alpha", None));
    assert!(!push(&main, "refs/heads/dev", None));
    assert!(!push(&main, "refs/tags/v1", None), "branch filters only: tags don't trigger");
    let tags = trig(|t| t.tags = v(&["v*"]));
    assert!(push(&tags, "refs/tags/v1.2", None));
    assert!(!push(&tags, "refs/heads/main", None), "tag filters only: branches don't trigger");
    let ignore = trig(|t| t.branches_ignore = v(&["dependabot/**"]));
    assert!(!push(&ignore, "refs/heads/dependabot/npm/x", None));
    assert!(push(&ignore, "refs/heads/main", None));
    let paths = trig(|t| t.paths = v(&["src/**", "!src/**.md"]));
    assert!(push(&paths, "refs/heads/main", Some(&v(&["src/a.rs"]))));
    assert!(!push(&paths, "refs/heads/main", Some(&v(&["src/a.md", "README"]))));
    assert!(push(&paths, "refs/heads/main", None), "no diff: run");
    assert!(push(&paths, "refs/tags/v1", Some(&v(&["README"]))), "paths ignored for tags");
    let paths_ignore = trig(|t| t.paths_ignore = v(&["docs/**"]));
    assert!(!push(&paths_ignore, "refs/heads/main", Some(&v(&["docs/a.md"]))));
    assert!(push(&paths_ignore, "refs/heads/main", Some(&v(&["docs/a.md", "x.rs"]))));
}

#[test]
fn pull_request_filters() {
    let none = EventTrigger::default();
    assert!(pr(&none, "opened", "main"));
    assert!(!pr(&none, "closed", "main"));
    let closed = trig(|t| {
        t.types = v(&["closed"]);
        t.branches = v(&["main"]);
    });
    assert!(pr(&closed, "closed", "main"));
    assert!(!pr(&closed, "closed", "dev"));
}
