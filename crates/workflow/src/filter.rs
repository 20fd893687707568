//! Event filters: whether a workflow's `on:` lets one concrete event through (activity
//! `types`, `branches`/`tags` globs with their `-ignore` forms, `paths`/`paths-ignore`,
//! `workflow_run.workflows`), following GitHub's rules and its filter pattern syntax.
//!
//! Pure functions: the caller (server, CLI) supplies the ref, activity type and changed
//! files. [`crate::compile::listens_to`] only checks the event name; this goes further.

use crate::plan::{EventTrigger, Triggers};

/// What is known about one event occurrence.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventInfo<'a> {
    /// The event name (`push`, `pull_request`, ...).
    pub event: &'a str,
    /// `push`: the pushed ref (`refs/heads/main`, `refs/tags/v1`). `pull_request[_target]`:
    /// the base branch (`main` or `refs/heads/main`). `workflow_run`: the head branch.
    /// `None`: branch/tag filters are not applied.
    pub git_ref: Option<&'a str>,
    /// The activity type (`opened`, `completed`, ...) for events that have one.
    pub action: Option<&'a str>,
    /// Files the event changed; `None` = unknown, path filters then let it through.
    pub changed_paths: Option<&'a [String]>,
    /// `workflow_run`: the name of the workflow that ran.
    pub workflow_name: Option<&'a str>,
}

/// Whether a workflow with these triggers runs for `info`.
pub fn triggered(on: &Triggers, info: &EventInfo<'_>) -> bool {
    match on.events.get(info.event) {
        Some(t) => trigger_matches(t, info),
        None => false,
    }
}

/// Whether one event's filters let `info` through.
pub fn trigger_matches(t: &EventTrigger, info: &EventInfo<'_>) -> bool {
    let types_ok = match (info.event, info.action) {
        (_, None) => true,
        ("pull_request" | "pull_request_target", Some(action)) if t.types.is_empty() => {
            matches!(action, "opened" | "synchronize" | "reopened")
        }
        (_, Some(action)) => t.types.is_empty() || t.types.iter().any(|ty| ty == action),
    };
    if !types_ok {
        return false;
    }
    if info.event == "workflow_run"
        && !t.workflows.is_empty()
        && !info
            .workflow_name
            .is_some_and(|w| t.workflows.iter().any(|p| glob_match(p, w)))
    {
        return false;
    }
    let mut is_tag = false;
    if let Some(git_ref) = info.git_ref {
        let (branch, tag) = match git_ref.strip_prefix("refs/tags/") {
            Some(tag) => (None, Some(tag)),
            None => (
                Some(git_ref.strip_prefix("refs/heads/").unwrap_or(git_ref)),
                None,
            ),
        };
        is_tag = tag.is_some();
        let has_branch_filter = !t.branches.is_empty() || !t.branches_ignore.is_empty();
        let has_tag_filter = !t.tags.is_empty() || !t.tags_ignore.is_empty();
        let ok = match (branch, tag) {
            (Some(b), _) if has_branch_filter => list_allows(&t.branches, &t.branches_ignore, b),
            // Only tag filters: branch pushes do not trigger (and vice versa).
            (Some(_), _) => !has_tag_filter,
            (_, Some(tag)) if has_tag_filter => list_allows(&t.tags, &t.tags_ignore, tag),
            (_, Some(_)) => !has_branch_filter,
            (None, None) => true,
        };
        if !ok {
            return false;
        }
    }
    // Path filters are not evaluated for tag pushes.
    if let (Some(paths), false) = (info.changed_paths, is_tag) {
        if !t.paths.is_empty() && !paths.iter().any(|p| filter_list(&t.paths, p)) {
            return false;
        }
        if !t.paths_ignore.is_empty() && paths.iter().all(|p| filter_list(&t.paths_ignore, p)) {
            return false;
        }
    }
    true
}

/// An include list (if any) and an ignore list (if any), GitHub style.
fn list_allows(include: &[String], ignore: &[String], name: &str) -> bool {
    if !include.is_empty() && !filter_list(include, name) {
        return false;
    }
    ignore.is_empty() || !filter_list(ignore, name)
}

/// Whether `name` is selected by an ordered pattern list: the last pattern that matches
/// decides, a `!pattern` deselects.
pub fn filter_list(patterns: &[String], name: &str) -> bool {
    let mut selected = false;
    for p in patterns {
        match p.strip_prefix('!') {
            Some(neg) => {
                if glob_match(neg, name) {
                    selected = false;
                }
            }
            None => {
                if glob_match(p, name) {
                    selected = true;
                }
            }
        }
    }
    selected
}

#[derive(Debug, Clone, PartialEq)]
enum Atom {
    Char(char),
    /// `*`: any run of characters except `/`.
    Star,
    /// `**`: any run of characters.
    DoubleStar,
    /// `[...]`: (negated?, ranges).
    Class(bool, Vec<(char, char)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Repeat {
    One,
    /// `?` after an atom: zero or one.
    Optional,
    /// `+` after an atom: one or more.
    OneOrMore,
}

fn compile_pattern(pattern: &str) -> Vec<(Atom, Repeat)> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out: Vec<(Atom, Repeat)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let atom = match c {
            '\\' if i + 1 < chars.len() => {
                i += 1;
                Atom::Char(chars[i])
            }
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                Atom::DoubleStar
            }
            '*' => Atom::Star,
            '?' | '+' if !out.is_empty() => {
                if let Some(last) = out.last_mut()
                    && last.1 == Repeat::One
                {
                    last.1 = if c == '?' {
                        Repeat::Optional
                    } else {
                        Repeat::OneOrMore
                    };
                    i += 1;
                    continue;
                }
                Atom::Char(c)
            }
            '[' => match chars[i + 1..].iter().position(|&c| c == ']') {
                Some(len) if len > 0 => {
                    let body = &chars[i + 1..i + 1 + len];
                    let (negated, body) = match body.first() {
                        Some('!' | '^') => (true, &body[1..]),
                        _ => (false, body),
                    };
                    let mut ranges = Vec::new();
                    let mut j = 0;
                    while j < body.len() {
                        if j + 2 < body.len() && body[j + 1] == '-' {
                            ranges.push((body[j], body[j + 2]));
                            j += 3;
                        } else {
                            ranges.push((body[j], body[j]));
                            j += 1;
                        }
                    }
                    i += len + 1;
                    Atom::Class(negated, ranges)
                }
                _ => Atom::Char('['),
            },
            c => Atom::Char(c),
        };
        out.push((atom, Repeat::One));
        i += 1;
    }
    out
}

fn atom_matches(atom: &Atom, c: char) -> bool {
    match atom {
        Atom::Char(x) => *x == c,
        Atom::Star => c != '/',
        Atom::DoubleStar => true,
        Atom::Class(negated, ranges) => {
            ranges.iter().any(|(a, b)| (*a..=*b).contains(&c)) != *negated
        }
    }
}

/// GitHub's filter pattern syntax: `*` (anything but `/`), `**` (anything), `?` / `+` (zero
/// or one / one or more of the preceding character), `[a-z]` classes, `\` escapes.
/// Matches the whole of `text`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let atoms = compile_pattern(pattern);
    let text: Vec<char> = text.chars().collect();
    // reachable[j]: the pattern prefix processed so far can match text[..j].
    let mut reachable = vec![false; text.len() + 1];
    reachable[0] = true;
    for (atom, repeat) in &atoms {
        let mut next = vec![false; text.len() + 1];
        let star = matches!(atom, Atom::Star | Atom::DoubleStar);
        for j in 0..=text.len() {
            if !reachable[j] {
                continue;
            }
            if star || *repeat == Repeat::Optional {
                next[j] = true;
            }
            let many = star || *repeat == Repeat::OneOrMore;
            let mut k = j;
            while k < text.len() && atom_matches(atom, text[k]) {
                k += 1;
                next[k] = true;
                if !many {
                    break;
                }
            }
        }
        reachable = next;
    }
    reachable[text.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_cheat_sheet_patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("main", "main", true),
            ("main", "mains", false),
            ("feature/*", "feature/my-branch", true),
            ("feature/*", "feature/your/branch", false),
            ("feature/**", "feature/your/branch", true),
            ("**", "any/thing", true),
            ("*", "main", true),
            ("*", "releases/v1", false),
            ("v2*", "v2.0.0", true),
            ("v[12].[0-9]+.[0-9]+", "v1.10.1", true),
            ("v[12].[0-9]+.[0-9]+", "v3.1.1", false),
            ("v[12].[0-9]+.[0-9]+", "v1..1", false),
            ("mona/octocat", "mona/octocat", true),
            ("releases/**-alpha", "releases/beta/3-alpha", true),
            ("docs/**", "docs/a/b.md", true),
            ("*.js", "app.js", true),
            ("*.js", "js/app.js", false),
            ("**.js", "js/app.js", true),
            ("**/migrate-*.sql", "db/migrate-v1.sql", true),
            ("*.jsx?", "page.js", true),
            ("*.jsx?", "page.jsx", true),
            ("*.jsx?", "page.jsxx", false),
            ("\\*", "*", true),
            ("[", "[", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(glob_match(pattern, text), *want, "{pattern} vs {text}");
        }
    }

    #[test]
    fn negation_last_match_wins() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let list = p(&["releases/**", "!releases/**-alpha"]);
        assert!(filter_list(&list, "releases/v1"));
        assert!(!filter_list(&list, "releases/v1-alpha"));
        let list = p(&["**.md", "!docs/**", "docs/keep.md"]);
        assert!(filter_list(&list, "README.md"));
        assert!(!filter_list(&list, "docs/a.md"));
        assert!(filter_list(&list, "docs/keep.md"));
    }
}
