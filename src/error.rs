//! The one error type every stage returns, and how it is shown to a user.
//!
//! Owns: the message, the optional source location (file, line, column), the offending source
//! line with a caret, and a help line. Every error maps to exit code 2 (see `cli`).
//! Must not: print anything itself, or know which stage raised it beyond what the message says.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in an input file an error points. Lines and columns are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The text of the offending line, shown under the message with a caret.
    pub source_line: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
    pub location: Option<Location>,
    pub help: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            location: None,
            help: None,
        }
    }

    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Points the error at `line`/`column` of `file`, quoting that line from `text`.
    #[must_use]
    pub fn at(mut self, file: &Path, text: &str, line: usize, column: usize) -> Self {
        let source_line = text
            .lines()
            .nth(line.saturating_sub(1))
            .map(|l| l.trim_end().to_string());
        self.location = Some(Location {
            file: file.to_path_buf(),
            line,
            column: column.max(1),
            source_line,
        });
        self
    }

    /// Points the error at a file as a whole (no line known).
    #[must_use]
    pub fn in_file(mut self, file: &Path) -> Self {
        self.location = Some(Location {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            source_line: None,
        });
        self
    }

    /// An I/O failure on `path`, with what was being attempted.
    pub fn io(action: &str, path: &Path, err: &std::io::Error) -> Self {
        Error::new(format!("{action} {}: {}", path.display(), io_reason(err)))
    }
}

/// The OS reason without Rust's "(os error N)" suffix, so messages read the same everywhere.
pub fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(loc) = &self.location {
            if loc.line == 0 {
                write!(f, "\n  --> {}", loc.file.display())?;
            } else {
                write!(
                    f,
                    "\n  --> {}:{}:{}",
                    loc.file.display(),
                    loc.line,
                    loc.column
                )?;
                if let Some(src) = &loc.source_line {
                    let num = loc.line.to_string();
                    let pad = " ".repeat(num.len());
                    let caret = " ".repeat(loc.column.saturating_sub(1));
                    write!(f, "\n{pad} |\n{num} | {src}\n{pad} | {caret}^")?;
                }
            }
        }
        if let Some(help) = &self.help {
            write!(f, "\nhelp: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_with_caret_and_help() {
        let text = "a: 1\nspec:\n  wavez: []\n";
        let err = Error::new("unknown field `wavez`")
            .at(Path::new("canary.yaml"), text, 3, 3)
            .with_help("did you mean `waves`?");
        assert_eq!(
            err.to_string(),
            "error: unknown field `wavez`\n  --> canary.yaml:3:3\n  |\n3 |   wavez: []\n  |   ^\nhelp: did you mean `waves`?"
        );
    }

    #[test]
    fn io_reason_drops_os_error_number() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&e), "No such file or directory");
    }
}
