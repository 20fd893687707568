//! Workflow commands on a step's stdout (`::name key=value,...::message`), parsed the way
//! actions/runner does (`ActionCommand.TryParseV2`), and the environment files
//! (`GITHUB_ENV`, `GITHUB_OUTPUT`, `GITHUB_STATE`: `KEY=value` and `KEY<<DELIM` heredocs).

/// One parsed workflow command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowCommand {
    pub name: String,
    pub props: Vec<(String, String)>,
    pub message: String,
}

impl WorkflowCommand {
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `line` as a workflow command; `None` when it is an ordinary line.
pub fn parse(line: &str) -> Option<WorkflowCommand> {
    let line = line.trim_start();
    let rest = line.strip_prefix("::")?;
    let end = rest.find("::")?;
    let info = &rest[..end];
    let message = &rest[end + 2..];
    let (name, props_src) = match info.find(' ') {
        Some(i) => (&info[..i], Some(info[i + 1..].trim())),
        None => (info, None),
    };
    if name.is_empty() {
        return None;
    }
    let mut props = Vec::new();
    if let Some(src) = props_src {
        for prop in src.split(',').filter(|p| !p.is_empty()) {
            if let Some((k, v)) = prop.split_once('=')
                && !k.is_empty()
                && !v.is_empty()
            {
                props.push((k.to_owned(), unescape_property(v)));
            }
        }
    }
    Some(WorkflowCommand {
        name: name.to_owned(),
        props,
        message: unescape_data(message),
    })
}

/// `%0D`, `%0A`, `%25` in a command's message.
pub fn unescape_data(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

/// Like [`unescape_data`], plus `%3A` and `%2C`.
pub fn unescape_property(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
}

/// A malformed environment file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvFileError {
    #[error("invalid format `{0}`: expected NAME=value or NAME<<DELIMITER")]
    Format(String),
    #[error("matching delimiter `{0}` not found")]
    Delimiter(String),
    #[error("invalid name `{0}`: names must not be empty")]
    EmptyName(String),
}

/// Parses a `GITHUB_ENV`/`GITHUB_OUTPUT`/`GITHUB_STATE` file into (name, value) pairs in order.
pub fn parse_env_file(content: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut out = Vec::new();
    let mut lines = content
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                let name = &line[..e];
                if name.is_empty() {
                    return Err(EnvFileError::EmptyName(line.to_owned()));
                }
                out.push((name.to_owned(), line[e + 1..].to_owned()));
            }
            (_, Some(h)) => {
                let name = &line[..h];
                let delimiter = &line[h + 2..];
                if name.is_empty() {
                    return Err(EnvFileError::EmptyName(line.to_owned()));
                }
                if delimiter.is_empty() {
                    return Err(EnvFileError::Format(line.to_owned()));
                }
                let mut body: Vec<&str> = Vec::new();
                let mut closed = false;
                for l in lines.by_ref() {
                    if l == delimiter {
                        closed = true;
                        break;
                    }
                    body.push(l);
                }
                if !closed {
                    return Err(EnvFileError::Delimiter(delimiter.to_owned()));
                }
                out.push((name.to_owned(), body.join("\n")));
            }
            _ => return Err(EnvFileError::Format(line.to_owned())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Expect<'a> = Option<(&'a str, &'a [(&'a str, &'a str)], &'a str)>;

    fn check(input: &str, expect: Expect<'_>) {
        let got = parse(input);
        let want = expect.map(|(name, props, message)| WorkflowCommand {
            name: name.to_owned(),
            props: props
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            message: message.to_owned(),
        });
        assert_eq!(got, want, "input: {input:?}");
    }

    #[test]
    fn commands() {
        check("plain line", None);
        check(":: not", None);
        check("::group::Build it", Some(("group", &[], "Build it")));
        check("  ::endgroup::", Some(("endgroup", &[], "")));
        check("::add-mask::s3cret", Some(("add-mask", &[], "s3cret")));
        check(
            "::error file=a.rs,line=3,col=7,title=Bad%3A thing::oops%0Anext",
            Some((
                "error",
                &[
                    ("file", "a.rs"),
                    ("line", "3"),
                    ("col", "7"),
                    ("title", "Bad: thing"),
                ],
                "oops\nnext",
            )),
        );
        check(
            "::warning::100%25 sure",
            Some(("warning", &[], "100% sure")),
        );
        check(
            "::set-output name=x::a::b",
            Some(("set-output", &[("name", "x")], "a::b")),
        );
        check(
            "::notice title=a%2Cb::m",
            Some(("notice", &[("title", "a,b")], "m")),
        );
        check("::debug ::x", Some(("debug", &[], "x")));
        check("::missing-end", None);
        check("::::x", None);
    }

    fn check_env(input: &str, expect: Result<&[(&str, &str)], EnvFileError>) {
        let got = parse_env_file(input);
        let want = expect.map(|v| {
            v.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        });
        assert_eq!(got, want, "input: {input:?}");
    }

    #[test]
    fn env_files() {
        check_env("", Ok(&[]));
        check_env("A=1\nB=x=y\n", Ok(&[("A", "1"), ("B", "x=y")]));
        check_env("A=\r\n", Ok(&[("A", "")]));
        check_env(
            "M<<EOF\nl1\nl2\nEOF\nN=2\n",
            Ok(&[("M", "l1\nl2"), ("N", "2")]),
        );
        check_env(
            "test<<World\nx=Thats really Weird\nWorld\n",
            Ok(&[("test", "x=Thats really Weird")]),
        );
        check_env("A=b<<c\n", Ok(&[("A", "b<<c")]));
        check_env("M<<EOF\nl1\n", Err(EnvFileError::Delimiter("EOF".into())));
        check_env("garbage\n", Err(EnvFileError::Format("garbage".into())));
        check_env("=x\n", Err(EnvFileError::EmptyName("=x".into())));
        check_env("E<<EOF\nEOF\n", Ok(&[("E", "")]));
    }
}
