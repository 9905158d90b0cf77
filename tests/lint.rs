//! `istio-canary lint`: every finding of a policy that needs no istioctl, at once. Each
//! `fixtures/lint/<case>/` (with an optional `args` file) is linted and its exit code, report
//! and summary snapshotted; every error fixture that lint refuses must be refused by `compile`
//! with exactly lint's first error, since both run the same checks.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{fixture_dirs, fixtures, run, run_bounded, snapshot_settings};

/// Lints `canary.yaml` in `dir` with the extra arguments of its `args` file.
fn lint(dir: &Path) -> common::Run {
    let args = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
    let mut argv = vec!["lint", "--policy", "canary.yaml"];
    argv.extend(args.split_whitespace());
    run_bounded(dir, &argv, Duration::from_secs(60), 2_000_000)
}

#[test]
fn each_lint_case_reports_every_finding() {
    for dir in fixture_dirs("lint") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let r = lint(&dir);
        let shown = format!(
            "exit code: {}\n--- stdout\n{}--- stderr\n{}",
            r.code, r.stdout, r.stderr
        );
        snapshot_settings().bind(|| insta::assert_snapshot!(format!("lint-{name}"), shown));
    }
}

#[test]
fn errors_exit_2_warnings_exit_0_unless_denied() {
    let lint_dir = fixtures().join("lint");
    assert_eq!(lint(&lint_dir.join("many-errors")).code, 2);
    assert_eq!(lint(&lint_dir.join("clean")).code, 0);
    let warned = lint(&lint_dir.join("warnings"));
    assert_eq!(warned.code, 0, "{}", warned.stderr);
    assert!(warned.stdout.contains("warning: "), "{}", warned.stdout);
    let denied = lint(&lint_dir.join("deny-warnings"));
    assert_eq!(denied.code, 2, "{}", denied.stderr);
}

#[test]
fn the_json_report_counts_and_places_every_finding() {
    let dir = fixtures().join("lint/json");
    let r = lint(&dir);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).expect("lint --format json");
    assert_eq!(doc["kind"], "LintReport");
    let findings = doc["findings"].as_array().expect("findings");
    assert_eq!(doc["errors"].as_u64(), Some(findings.len() as u64));
    assert!(findings.len() > 5, "{}", r.stdout);
    for f in findings {
        assert_eq!(f["severity"], "error");
        assert_eq!(f["file"], "canary.yaml");
        assert!(f["line"].as_u64().is_some_and(|l| l > 0), "{f}");
        assert!(f["column"].as_u64().is_some_and(|c| c > 0), "{f}");
        assert!(f["message"].as_str().is_some_and(|m| !m.is_empty()), "{f}");
    }
    // The text report holds the same findings, in the same order.
    let text = run(&dir, &["lint"]);
    let messages: Vec<&str> = text
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("error: "))
        .collect();
    let json_messages: Vec<&str> = findings
        .iter()
        .filter_map(|f| f["message"].as_str())
        .collect();
    assert_eq!(messages, json_messages);
}

#[test]
fn a_missing_policy_is_one_error() {
    let r = run(&fixtures().join("lint"), &["lint", "--policy", "nope.yaml"]);
    assert_eq!(r.code, 2);
    let shown = format!("--- stdout\n{}--- stderr\n{}", r.stdout, r.stderr);
    snapshot_settings().bind(|| insta::assert_snapshot!("lint-missing-policy", shown));
}

/// Lint and compile share their checks: for every error fixture lint refuses, compile fails
/// with lint's first error, word for word. The fixtures lint passes fail later, in a render or
/// the plan (some are listed, so the test sees lint find input errors at all).
#[test]
fn lint_reports_first_what_compile_stops_at() {
    let mut refused = Vec::new();
    for dir in fixture_dirs("errors") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if dir.join("args").exists() {
            continue; // compile flags (--promote, …) that lint does not take
        }
        let linted = lint(&dir);
        if linted.code == 0 {
            continue;
        }
        assert_eq!(linted.code, 2, "{name}: {}", linted.stderr);
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("bundles");
        let compiled = run_bounded(
            &dir,
            &["compile", "--out", out.to_str().unwrap()],
            Duration::from_secs(120),
            2_000_000,
        );
        assert_eq!(compiled.code, 2, "{name}: {}", compiled.stderr);
        assert!(
            linted.stdout.starts_with(&compiled.stderr),
            "{name}: lint's first finding is not compile's error\n--- lint\n{}--- compile\n{}",
            linted.stdout,
            compiled.stderr
        );
        refused.push(name);
    }
    for input_error in [
        "bad-semver",
        "downgrade",
        "duplicate-wave",
        "kubernetes-unsupported",
    ] {
        assert!(
            refused.iter().any(|n| n == input_error),
            "lint passed {input_error}"
        );
    }
}
