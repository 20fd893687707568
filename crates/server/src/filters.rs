//! `on:` filters as the Actions documentation specifies them: `branches`/`branches-ignore`,
//! `tags`/`tags-ignore`, `paths`/`paths-ignore`, and `types`.
//!
//! Patterns: `*` matches any characters but `/`, `**` any characters, `?` makes the
//! preceding character optional, `+` repeats it, `[...]` is a character class, `\` escapes,
//! and a leading `!` in `branches`/`tags`/`paths` negates (the last matching pattern
//! decides). A pattern that does not compile never matches.

use regex::Regex;
use workflow::EventTrigger;

/// Whether `pattern` (one Actions filter pattern, without a leading `!`) matches `name`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    to_regex(pattern).is_some_and(|re| re.is_match(name))
}

fn to_regex(pattern: &str) -> Option<Regex> {
    let mut out = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                out.push_str(".*");
                i += 2;
                continue;
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push('?'),
            '+' => out.push('+'),
            '[' => {
                let end = chars[i..].iter().position(|&c| c == ']')? + i;
                out.push('[');
                for &c in &chars[i + 1..end] {
                    if c == '\\' || c == '[' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push(']');
                i = end;
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                out.push_str(&regex::escape(&chars[i].to_string()));
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    out.push('$');
    Regex::new(&out).ok()
}

/// Ordered include patterns with `!` negations: the last pattern that matches decides.
fn included(patterns: &[String], name: &str) -> bool {
    let mut result = false;
    for p in patterns {
        match p.strip_prefix('!') {
            Some(neg) if glob_match(neg, name) => result = false,
            Some(_) => {}
            None if glob_match(p, name) => result = true,
            None => {}
        }
    }
    result
}

fn ignored(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, name))
}

/// `paths`/`paths-ignore` against the changed files. `None` (unknown, e.g. a new branch or a
/// forge that sent no file lists): the workflow runs, as on GitHub when no diff is available.
fn paths_match(trigger: &EventTrigger, changed: Option<&[String]>) -> bool {
    let Some(changed) = changed else { return true };
    if !trigger.paths.is_empty() {
        return changed.iter().any(|f| included(&trigger.paths, f));
    }
    if !trigger.paths_ignore.is_empty() {
        return !changed.iter().all(|f| ignored(&trigger.paths_ignore, f));
    }
    true
}

fn name_match(include: &[String], ignore: &[String], name: &str) -> bool {
    if !include.is_empty() {
        included(include, name)
    } else if !ignore.is_empty() {
        !ignored(ignore, name)
    } else {
        true
    }
}

/// Whether a push of `git_ref` (`refs/heads/main`, `refs/tags/v1`) with the `changed` files
/// triggers a workflow whose `on.push` is `trigger`.
pub fn push_matches(trigger: &EventTrigger, git_ref: &str, changed: Option<&[String]>) -> bool {
    let branch_filters = !trigger.branches.is_empty() || !trigger.branches_ignore.is_empty();
    let tag_filters = !trigger.tags.is_empty() || !trigger.tags_ignore.is_empty();
    if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        if !branch_filters && tag_filters {
            return false;
        }
        name_match(&trigger.branches, &trigger.branches_ignore, branch) && paths_match(trigger, changed)
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        if !tag_filters && branch_filters {
            return false;
        }
        // Path filters are not evaluated for tag pushes.
        name_match(&trigger.tags, &trigger.tags_ignore, tag)
    } else {
        !branch_filters && !tag_filters
    }
}

/// Whether a `pull_request` activity `action` against base branch `base` triggers.
pub fn pull_request_matches(trigger: &EventTrigger, action: &str, base: &str, changed: Option<&[String]>) -> bool {
    let types_ok = if trigger.types.is_empty() {
        matches!(action, "opened" | "synchronize" | "reopened")
    } else {
        trigger.types.iter().any(|t| t == action)
    };
    types_ok && name_match(&trigger.branches, &trigger.branches_ignore, base) && paths_match(trigger, changed)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        check_glob("[", "[", false);
    }

    fn trig(f: impl FnOnce(&mut EventTrigger)) -> EventTrigger {
        let mut t = EventTrigger::default();
        f(&mut t);
        t
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn push_filters() {
        let none = EventTrigger::default();
        assert!(push_matches(&none, "refs/heads/x", None));
        assert!(push_matches(&none, "refs/tags/v1", None));
        let main = trig(|t| t.branches = v(&["main", "releases/**", "!releases/**-alpha"]));
        assert!(push_matches(&main, "refs/heads/main", None));
        assert!(push_matches(&main, "refs/heads/releases/1.0", None));
        assert!(!push_matches(&main, "refs/heads/releases/1.0-alpha", None));
        assert!(!push_matches(&main, "refs/heads/dev", None));
        assert!(!push_matches(&main, "refs/tags/v1", None), "branch filters only: tags don't trigger");
        let tags = trig(|t| t.tags = v(&["v*"]));
        assert!(push_matches(&tags, "refs/tags/v1.2", None));
        assert!(!push_matches(&tags, "refs/heads/main", None), "tag filters only: branches don't trigger");
        let ignore = trig(|t| t.branches_ignore = v(&["dependabot/**"]));
        assert!(!push_matches(&ignore, "refs/heads/dependabot/npm/x", None));
        assert!(push_matches(&ignore, "refs/heads/main", None));
        let paths = trig(|t| t.paths = v(&["src/**", "!src/**.md"]));
        let changed = |files: &[&str]| v(files);
        assert!(push_matches(&paths, "refs/heads/main", Some(&changed(&["src/a.rs"]))));
        assert!(!push_matches(&paths, "refs/heads/main", Some(&changed(&["src/a.md", "README"]))));
        assert!(push_matches(&paths, "refs/heads/main", None), "no diff: run");
        assert!(push_matches(&paths, "refs/tags/v1", Some(&changed(&["README"]))), "paths ignored for tags");
        let paths_ignore = trig(|t| t.paths_ignore = v(&["docs/**"]));
        assert!(!push_matches(&paths_ignore, "refs/heads/main", Some(&changed(&["docs/a.md"]))));
        assert!(push_matches(&paths_ignore, "refs/heads/main", Some(&changed(&["docs/a.md", "x.rs"]))));
    }

    #[test]
    fn pull_request_filters() {
        let none = EventTrigger::default();
        assert!(pull_request_matches(&none, "opened", "main", None));
        assert!(!pull_request_matches(&none, "closed", "main", None));
        let closed = trig(|t| {
            t.types = v(&["closed"]);
            t.branches = v(&["main"]);
        });
        assert!(pull_request_matches(&closed, "closed", "main", None));
        assert!(!pull_request_matches(&closed, "closed", "dev", None));
    }
}
