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

    /// The same error said of something: `context: message` (location and help kept).
    #[must_use]
    pub fn within(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
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

/// The longest value an error message echoes whole (bytes); longer values are cut (see `shown`).
pub const MAX_ECHO: usize = 80;
/// The longest message or help line shown (bytes): room for 20 lines of istioctl's stderr; a
/// longer one is cut and its length stated.
pub const MAX_MESSAGE: usize = 8192;
/// The longest source line quoted under a message (characters); a longer one is shown as a
/// window around the column.
pub const MAX_SOURCE_LINE: usize = 240;

/// A value from the input as an error message echoes it: in backticks, with control characters
/// escaped, and cut after `MAX_ECHO` bytes with its full length stated, e.g.
/// `` `aaaa…` (10485760 bytes) ``.
pub fn shown(value: &str) -> String {
    let mut out = String::from("`");
    let mut taken = 0;
    for c in value.chars() {
        if taken + c.len_utf8() > MAX_ECHO {
            out.push_str(&format!("…` ({} bytes)", value.len()));
            return out;
        }
        taken += c.len_utf8();
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('`');
    out
}

/// `text` cut to at most `max` bytes (at a character boundary), saying how long it was.
fn capped(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (cut: {} bytes in all)", &text[..end], text.len()).into()
}

/// The source line as quoted under a message, and the caret's column in it: a long line is shown
/// as a window of `MAX_SOURCE_LINE` characters around `column`, with `…` where it is cut.
fn source_window(line: &str, column: usize) -> (String, usize) {
    let count = line.chars().count();
    if count <= MAX_SOURCE_LINE {
        return (line.to_string(), column);
    }
    let half = MAX_SOURCE_LINE / 2;
    let col = column.saturating_sub(1).min(count);
    let start = col
        .saturating_sub(half)
        .min(count.saturating_sub(MAX_SOURCE_LINE));
    let end = (start + MAX_SOURCE_LINE).min(count);
    let mut out = String::new();
    let mut caret = col - start + 1;
    if start > 0 {
        out.push('…');
        caret += 1;
    }
    out.extend(line.chars().skip(start).take(end - start));
    if end < count {
        out.push('…');
    }
    (out, caret)
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
        self.render("error", f)
    }
}

/// An `Error` shown as a warning (`warning: …`, then the same location and help): what `lint`
/// reports that does not stop a compile.
pub struct AsWarning<'a>(pub &'a Error);

impl fmt::Display for AsWarning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.render("warning", f)
    }
}

impl Error {
    fn render(&self, label: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{label}: {}", capped(&self.message, MAX_MESSAGE))?;
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
                    let (src, column) = source_window(src, loc.column);
                    let num = loc.line.to_string();
                    let pad = " ".repeat(num.len());
                    let caret = " ".repeat(column.saturating_sub(1));
                    write!(f, "\n{pad} |\n{num} | {src}\n{pad} | {caret}^")?;
                }
            }
        }
        if let Some(help) = &self.help {
            write!(f, "\nhelp: {}", capped(help, MAX_MESSAGE))?;
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
    fn long_values_are_cut_and_measured() {
        assert_eq!(shown("1-14-1"), "`1-14-1`");
        assert_eq!(shown("a\nb"), "`a\\nb`");
        let long = "a".repeat(10 * 1024 * 1024);
        assert_eq!(
            shown(&long),
            format!("`{}…` (10485760 bytes)", "a".repeat(MAX_ECHO))
        );
        let err = Error::new(format!("bad {}", "b".repeat(20000))).with_help("c".repeat(20000));
        let text = err.to_string();
        assert!(text.len() < 2 * MAX_MESSAGE + 200, "{}", text.len());
        assert!(text.contains("… (cut: 20004 bytes in all)"), "{text}");
    }

    #[test]
    fn long_source_lines_are_windowed_around_the_caret() {
        let line = format!("{}X{}", "a".repeat(5000), "b".repeat(5000));
        let err = Error::new("here").at(Path::new("f"), &line, 1, 5001);
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        let src = lines[3].strip_prefix("1 | ").unwrap();
        let caret = lines[4].strip_prefix("  | ").unwrap();
        assert!(src.chars().count() <= MAX_SOURCE_LINE + 2, "{src}");
        assert_eq!(src.chars().nth(caret.len() - 1), Some('X'), "{text}");
    }

    #[test]
    fn within_prefixes_the_message_and_keeps_the_rest() {
        let err = Error::new("bad")
            .with_help("fix it")
            .at(Path::new("f"), "x", 1, 1)
            .within("object a");
        assert_eq!(err.message, "object a: bad");
        assert_eq!(err.help.as_deref(), Some("fix it"));
        assert_eq!(err.location.map(|l| l.line), Some(1));
    }

    #[test]
    fn io_reason_drops_os_error_number() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&e), "No such file or directory");
    }
}
