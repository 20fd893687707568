//! Dockerfile parsing: parser directives (`# syntax=`, `# escape=`), comments, line
//! continuations, JSON and shell forms, flags, and variable expansion (`$VAR`, `${VAR}`,
//! `${VAR:-default}`, `${VAR:+alt}`). Every error carries `file:line`.
//!
//! Parsing does no I/O: the text comes in as an argument. Heredocs (`<<EOF`) are refused with
//! a clear message.

use std::collections::HashMap;
use std::fmt;

/// An error in a Dockerfile, pointing at the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct DockerfileError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// A parsed Dockerfile.
#[derive(Clone, Debug)]
pub struct Dockerfile {
    /// The name used in messages (as given on the command line).
    pub file: String,
    pub escape: char,
    pub syntax: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// Either `["exec", "form"]` or a shell-form string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandForm {
    Exec(Vec<String>),
    Shell(String),
}

/// One instruction, with its flags and its raw arguments (variables are expanded by the
/// builder, which knows their values at that point).
#[derive(Clone, Debug)]
pub struct Instruction {
    pub line: usize,
    /// Upper-case keyword.
    pub keyword: String,
    pub flags: Vec<Flag>,
    /// The arguments after the flags, continuation lines joined.
    pub rest: String,
    /// The instruction as written (joined), for history entries.
    pub original: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    pub value: Option<String>,
}

const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Which flags each instruction accepts.
fn allowed_flags(keyword: &str) -> &'static [&'static str] {
    match keyword {
        "FROM" => &["platform"],
        "COPY" => &["from", "chown", "chmod", "link", "parents", "exclude"],
        "ADD" => &[
            "chown",
            "chmod",
            "link",
            "checksum",
            "keep-git-dir",
            "exclude",
        ],
        "RUN" => &["mount", "network", "security"],
        "HEALTHCHECK" => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    }
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&Flag> {
        self.flags.iter().find(|f| f.name == name)
    }
    pub fn flag_value(&self, name: &str) -> Option<&str> {
        self.flag(name).and_then(|f| f.value.as_deref())
    }
    /// `rest` as JSON array (exec form) when it is one, else shell form.
    pub fn command_form(&self) -> CommandForm {
        let t = self.rest.trim();
        if t.starts_with('[')
            && let Ok(v) = serde_json::from_str::<Vec<String>>(t)
        {
            return CommandForm::Exec(v);
        }
        CommandForm::Shell(t.to_string())
    }
}

impl Dockerfile {
    pub fn error(&self, line: usize, message: impl fmt::Display) -> DockerfileError {
        DockerfileError {
            file: self.file.clone(),
            line,
            message: message.to_string(),
        }
    }
}

/// Parses Dockerfile `text`; `file` is the name to report errors under.
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, DockerfileError> {
    let err = |line: usize, message: String| DockerfileError {
        file: file.to_string(),
        line,
        message,
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut i = 0;
    // Parser directives: only at the very top, before any blank line, comment or instruction.
    let mut seen = HashMap::new();
    while i < lines.len() {
        let l = lines[i].trim();
        let Some(body) = l.strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = body.split_once('=') else {
            break;
        };
        let k = k.trim().to_ascii_lowercase();
        if k.is_empty() || k.contains(char::is_whitespace) {
            break;
        }
        let v = v.trim();
        if seen.insert(k.clone(), ()).is_some() {
            return Err(err(i + 1, format!("parser directive `{k}` given twice")));
        }
        match k.as_str() {
            "escape" => {
                escape = match v {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(err(
                            i + 1,
                            format!("invalid escape character {v:?}: use \\ or `"),
                        ));
                    }
                }
            }
            "syntax" => syntax = Some(v.to_string()),
            _ => {}
        }
        i += 1;
    }

    let mut instructions = Vec::new();
    while i < lines.len() {
        let start = i;
        let first = lines[i];
        i += 1;
        let trimmed = first.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // Join continuation lines; comment and empty lines inside a continuation are skipped.
        let mut joined = String::new();
        let mut cur = first.to_string();
        loop {
            let t = cur.trim_end();
            if let Some(stripped) = t.strip_suffix(escape) {
                // An escaped escape at the end (`\\`) is not a continuation.
                joined.push_str(stripped);
                let mut next = None;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let lt = l.trim_start();
                    if lt.starts_with('#') || lt.is_empty() {
                        continue;
                    }
                    next = Some(l.to_string());
                    break;
                }
                match next {
                    Some(n) => cur = n,
                    None => break,
                }
            } else {
                joined.push_str(&cur);
                break;
            }
        }
        let joined = joined.trim().to_string();
        let (kw, rest) = match joined.split_once(char::is_whitespace) {
            Some((k, r)) => (k, r.trim_start()),
            None => (joined.as_str(), ""),
        };
        let keyword = kw.to_ascii_uppercase();
        let line = start + 1;
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(err(line, format!("unknown instruction: {kw}")));
        }
        // Flags.
        let mut rest = rest;
        let mut flags = Vec::new();
        while let Some(f) = rest.strip_prefix("--") {
            let end = f.find(char::is_whitespace).unwrap_or(f.len());
            let word = &f[..end];
            let (name, value) = match word.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (word.to_string(), None),
            };
            if !allowed_flags(&keyword).contains(&name.as_str()) {
                return Err(err(line, format!("unknown flag --{name} for {keyword}")));
            }
            flags.push(Flag { name, value });
            rest = f[end..].trim_start();
        }
        if rest.contains("<<")
            && matches!(keyword.as_str(), "RUN" | "COPY" | "ADD")
            && heredoc_marker(rest)
        {
            return Err(err(
                line,
                format!("heredocs in {keyword} are not supported by slipway's builder"),
            ));
        }
        let needs_args = !matches!(keyword.as_str(), "HEALTHCHECK");
        if needs_args && rest.is_empty() {
            return Err(err(line, format!("{keyword} needs at least one argument")));
        }
        instructions.push(Instruction {
            line,
            keyword,
            flags,
            rest: rest.to_string(),
            original: joined.clone(),
        });
    }
    if !instructions.iter().any(|i| i.keyword == "FROM") {
        return Err(err(
            instructions.first().map_or(1, |i| i.line),
            "no FROM instruction".into(),
        ));
    }
    if let Some(first) = instructions.iter().find(|i| i.keyword != "ARG")
        && first.keyword != "FROM"
    {
        return Err(err(
            first.line,
            format!(
                "{} before the first FROM (only ARG may come first)",
                first.keyword
            ),
        ));
    }
    Ok(Dockerfile {
        file: file.to_string(),
        escape,
        syntax,
        instructions,
    })
}

fn heredoc_marker(rest: &str) -> bool {
    rest.split_whitespace().any(|w| {
        w.strip_prefix("<<").is_some_and(|m| {
            let m = m
                .trim_start_matches('-')
                .trim_matches(|c| c == '"' || c == '\'');
            !m.is_empty() && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    })
}

/// Expands variables and splits `input` into words the way Dockerfile instructions do:
/// whitespace separates words, `'...'` is literal, `"..."` expands, the escape character
/// escapes the next character.
pub fn split_words(
    input: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            if in_word {
                words.push(std::mem::take(&mut cur));
                in_word = false;
            }
            i += 1;
            continue;
        }
        in_word = true;
        if c == escape {
            if let Some(&n) = chars.get(i + 1) {
                cur.push(n);
                i += 2;
            } else {
                cur.push(c);
                i += 1;
            }
        } else if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == '\'')
                .ok_or("unterminated single quote")?;
            cur.extend(&chars[i + 1..i + 1 + end]);
            i += end + 2;
        } else if c == '"' {
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err("unterminated double quote".into());
                };
                if d == '"' {
                    i += 1;
                    break;
                } else if d == escape && matches!(chars.get(i + 1), Some('"' | '$')) {
                    cur.push(chars[i + 1]);
                    i += 2;
                } else if d == escape && chars.get(i + 1) == Some(&escape) {
                    cur.push(escape);
                    i += 2;
                } else if d == '$' {
                    i = expand_var(&chars, i, vars, &mut cur)?;
                } else {
                    cur.push(d);
                    i += 1;
                }
            }
        } else if c == '$' {
            i = expand_var(&chars, i, vars, &mut cur)?;
        } else {
            cur.push(c);
            i += 1;
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Expands variables in `input` without splitting or removing quotes (used for `RUN` shell
/// form? no: the shell does that. Used for WORKDIR, USER, STOPSIGNAL and similar).
pub fn expand(
    input: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, String> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == escape && chars.get(i + 1) == Some(&'$') {
            out.push('$');
            i += 2;
        } else if c == '$' {
            i = expand_var(&chars, i, vars, &mut out)?;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

/// Expands the variable at `chars[i] == '$'`; returns the index after it.
fn expand_var(
    chars: &[char],
    i: usize,
    vars: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<usize, String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.get(i + 1) {
        Some('{') => {
            let close = chars[i + 2..]
                .iter()
                .position(|&c| c == '}')
                .ok_or("unterminated ${")?;
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            let name_end = inner.find(|c: char| !is_name(c)).unwrap_or(inner.len());
            let (name, op) = inner.split_at(name_end);
            if name.is_empty() {
                return Err(format!("bad substitution ${{{inner}}}"));
            }
            let val = vars(name);
            let set_nonempty = val.as_deref().is_some_and(|v| !v.is_empty());
            let text = if op.is_empty() {
                val.unwrap_or_default()
            } else if let Some(w) = op.strip_prefix(":-") {
                if set_nonempty {
                    val.unwrap_or_default()
                } else {
                    expand(w, vars, '\\')?
                }
            } else if let Some(w) = op.strip_prefix(":+") {
                if set_nonempty {
                    expand(w, vars, '\\')?
                } else {
                    String::new()
                }
            } else if let Some(w) = op.strip_prefix('-') {
                match val {
                    Some(v) => v,
                    None => expand(w, vars, '\\')?,
                }
            } else if let Some(w) = op.strip_prefix('+') {
                if val.is_some() {
                    expand(w, vars, '\\')?
                } else {
                    String::new()
                }
            } else if let Some(w) = op.strip_prefix(":?") {
                if set_nonempty {
                    val.unwrap_or_default()
                } else {
                    return Err(format!("{name}: {w}"));
                }
            } else {
                return Err(format!("unsupported substitution ${{{inner}}}"));
            };
            out.push_str(&text);
            Ok(i + 3 + close)
        }
        Some(&c) if is_name(c) => {
            let end = chars[i + 1..]
                .iter()
                .position(|&c| !is_name(c))
                .map_or(chars.len(), |p| i + 1 + p);
            let name: String = chars[i + 1..end].iter().collect();
            out.push_str(&vars(&name).unwrap_or_default());
            Ok(end)
        }
        _ => {
            out.push('$');
            Ok(i + 1)
        }
    }
}

/// Parses `KEY=VALUE ...` pairs (ENV, LABEL, ARG) — or the legacy `ENV KEY VALUE` form.
pub fn key_values(
    rest: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
    legacy: bool,
) -> Result<Vec<(String, String)>, String> {
    let first = rest.split_whitespace().next().unwrap_or_default();
    if legacy && !first.contains('=') {
        let value = rest[first.len()..].trim();
        let value = split_words(value, vars, escape)?.join(" ");
        return Ok(vec![(first.to_string(), value)]);
    }
    split_words(rest, vars, escape)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("expected KEY=VALUE, got {w:?}")),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(text: &str, expect: &str) {
        let got = match parse("Dockerfile", text) {
            Ok(d) => d
                .instructions
                .iter()
                .map(|i| {
                    let flags: Vec<String> = i
                        .flags
                        .iter()
                        .map(|f| format!("--{}={}", f.name, f.value.as_deref().unwrap_or("")))
                        .collect();
                    format!("{}:{} {}|{}", i.line, i.keyword, flags.join(","), i.rest)
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expect.trim());
    }

    #[test]
    fn basics() {
        check("FROM scratch\nCOPY a /b\n", "1:FROM |scratch\n2:COPY |a /b");
        check(
            "# syntax=docker/dockerfile:1\nfrom scratch AS x\n",
            "2:FROM |scratch AS x",
        );
        check(
            "FROM scratch\nRUN a \\\n  # comment\n\n  b\n",
            "1:FROM |scratch\n2:RUN |a   b",
        );
        check(
            "# escape=`\nFROM scratch\nRUN a `\n b\n",
            "2:FROM |scratch\n3:RUN |a  b",
        );
        check(
            "FROM scratch\nCOPY --chown=1:2 --link a b\n",
            "1:FROM |scratch\n2:COPY --chown=1:2,--link=|a b",
        );
        check("ARG V=1\nFROM scratch\n", "1:ARG |V=1\n2:FROM |scratch");
    }

    #[test]
    fn errors() {
        check(
            "FROM scratch\nCOPPY a b\n",
            "Dockerfile:2: unknown instruction: COPPY",
        );
        check(
            "FROM scratch\n\nCOPY --frm=x a b\n",
            "Dockerfile:3: unknown flag --frm for COPY",
        );
        check("COPY a b\n", "Dockerfile:1: no FROM instruction");
        check(
            "ENV A=1\nFROM scratch\n",
            "Dockerfile:1: ENV before the first FROM (only ARG may come first)",
        );
        check(
            "FROM scratch\nRUN <<EOF\necho\nEOF\n",
            "Dockerfile:2: heredocs in RUN are not supported by slipway's builder",
        );
        check(
            "FROM scratch\nWORKDIR\n",
            "Dockerfile:2: WORKDIR needs at least one argument",
        );
        check(
            "# escape=x\nFROM scratch\n",
            "Dockerfile:1: invalid escape character \"x\": use \\ or `",
        );
    }

    #[test]
    fn words_and_expansion() {
        let vars = |n: &str| match n {
            "A" => Some("one".to_string()),
            "E" => Some(String::new()),
            _ => None,
        };
        let w = |s: &str| split_words(s, &vars, '\\').unwrap();
        assert_eq!(w("$A ${A}x '$A' \"$A b\""), ["one", "onex", "$A", "one b"]);
        assert_eq!(
            w("${B:-def} ${E:-d2} ${A:+alt} ${B:+alt}x"),
            ["def", "d2", "alt", "x"]
        );
        assert_eq!(w("a\\ b"), ["a b"]);
        assert!(split_words("'open", &vars, '\\').is_err());
        assert_eq!(
            key_values("K=v L=\"a b\"", &vars, '\\', true).unwrap(),
            [
                ("K".to_string(), "v".to_string()),
                ("L".to_string(), "a b".to_string())
            ]
        );
        assert_eq!(
            key_values("K some value", &vars, '\\', true).unwrap(),
            [("K".to_string(), "some value".to_string())]
        );
    }

    #[test]
    fn command_forms() {
        let d = parse("f", "FROM scratch\nCMD [\"/app\", \"x\"]\nRUN echo hi\n").unwrap();
        assert_eq!(
            d.instructions[1].command_form(),
            CommandForm::Exec(vec!["/app".into(), "x".into()])
        );
        assert_eq!(
            d.instructions[2].command_form(),
            CommandForm::Shell("echo hi".into())
        );
    }
}
