//! `istio-canary lint`: every check of a policy that needs no istioctl, reported all at once.
//!
//! Owns: the lint report, from `policy::lint` (the same checks `policy::load` makes, run to the
//! end instead of stopping at the first error, plus the warnings only lint gives), and its two
//! forms: text (each finding as `error:`/`warning:`, its file:line:col, the source line and a
//! help line) and JSON (`LintReport`, for CI annotations). Must not: check anything itself (a
//! check lives in `policy`, so lint and compile can never disagree), run istioctl, read the
//! renders, print, or pick an exit code (that is `cli`).

use std::path::Path;

use crate::error::{AsWarning, Error};

/// `kind` of the JSON report.
pub const REPORT_KIND: &str = "LintReport";

/// What lint found in one policy: errors (a compile would refuse the policy) and warnings.
#[derive(Debug)]
pub struct Report {
    pub errors: Vec<Error>,
    pub warnings: Vec<Error>,
}

/// Lints the policy at `path` (and the files it names: specs, inventory).
pub fn lint(path: &Path) -> Report {
    let findings = crate::policy::lint(path);
    Report {
        errors: findings.errors,
        warnings: findings.warnings,
    }
}

impl Report {
    /// Every finding in report order: the errors in the order the checks meet them (the first
    /// is the one `compile` stops at), then the warnings.
    fn findings(&self) -> impl Iterator<Item = (&'static str, &Error)> {
        self.errors
            .iter()
            .map(|e| ("error", e))
            .chain(self.warnings.iter().map(|w| ("warning", w)))
    }

    /// The report as text: every finding, a blank line between findings.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (severity, finding) in self.findings() {
            let shown = match severity {
                "error" => finding.to_string(),
                _ => AsWarning(finding).to_string(),
            };
            out.push_str(&shown);
            out.push_str("\n\n");
        }
        out
    }

    /// The one-line summary: `istio-canary lint: canary.yaml: 2 errors, 1 warning`.
    pub fn summary(&self, policy: &Path) -> String {
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        format!(
            "istio-canary lint: {}: {}, {}\n",
            policy.display(),
            plural(self.errors.len(), "error"),
            plural(self.warnings.len(), "warning")
        )
    }

    /// The report as JSON (README: Linting a policy), pretty-printed, ending in a newline:
    /// `{kind, errors, warnings, findings: [{severity, file, line, column, message, help}]}`,
    /// where `file`, `line`, `column` and `help` are null when the finding has none (`line`
    /// and `column` are 1-based, null for a finding about a whole file).
    pub fn json(&self) -> String {
        let findings: Vec<serde_json::Value> = self
            .findings()
            .map(|(severity, e)| {
                let location = e.location.as_ref();
                let placed = location.filter(|l| l.line > 0);
                serde_json::json!({
                    "severity": severity,
                    "file": location.map(|l| l.file.display().to_string()),
                    "line": placed.map(|l| l.line),
                    "column": placed.map(|l| l.column),
                    "message": e.message,
                    "help": e.help,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "kind": REPORT_KIND,
            "errors": self.errors.len(),
            "warnings": self.warnings.len(),
            "findings": findings,
        });
        format!("{doc:#}\n")
    }
}
