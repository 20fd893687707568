//! Diagnostics that name file:line:col and show a snippet.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub severity: Severity,
    pub message: String,
    /// The source line and a caret under the column, ready to print (may be empty).
    pub snippet: String,
}

impl Diagnostic {
    /// An error at `line:col` (1-based) of `file`, whose text is `source` (for the snippet).
    pub fn error(
        file: &str,
        source: &str,
        line: u32,
        col: u32,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic::new(Severity::Error, file, source, line, col, message)
    }

    /// A warning at `line:col` (1-based) of `file`, whose text is `source` (for the snippet).
    pub fn warning(
        file: &str,
        source: &str,
        line: u32,
        col: u32,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic::new(Severity::Warning, file, source, line, col, message)
    }

    pub fn new(
        severity: Severity,
        file: &str,
        source: &str,
        line: u32,
        col: u32,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.to_owned(),
            line,
            col,
            severity,
            message: message.into(),
            snippet: snippet(source, line, col),
        }
    }
}

/// The source line `line` (1-based) with a gutter, and a caret under column `col` (1-based,
/// in characters; tabs before it are kept so the caret lines up). Empty if the line does
/// not exist.
pub fn snippet(source: &str, line: u32, col: u32) -> String {
    let Some(text) = source.lines().nth((line as usize).saturating_sub(1)) else {
        return String::new();
    };
    if line == 0 {
        return String::new();
    }
    let text = text.trim_end_matches('\r');
    let number = line.to_string();
    let gutter = " ".repeat(number.len());
    let pad: String = text
        .chars()
        .take((col as usize).saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("{gutter} |\n{number} | {text}\n{gutter} | {pad}^")
}

impl std::fmt::Display for Diagnostic {
    /// `file:line:col: error: message` followed by the snippet lines.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.col, sev, self.message
        )?;
        if !self.snippet.is_empty() {
            write!(f, "\n{}", self.snippet)?;
        }
        Ok(())
    }
}

/// All the problems found in one go (never empty when returned as an error), in source
/// order per file; warnings found alongside the errors are included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
