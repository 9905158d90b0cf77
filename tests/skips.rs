//! A check that cannot run is never reported `ok`. `common::unavailable` makes its test
//! `ignored (not run: …)` in `cargo test`'s output and counts it in the summary line, and with
//! `CI` set it fails the test. This file runs its own test binary on demonstration trials (a
//! check that needs a tool no machine has) and reads what a user of `cargo test` would see. It
//! also holds every test file to the harness that can report a skip.

mod common;

use std::path::Path;
use std::process::Command;

/// Set to run the demonstration trials instead of the real ones.
const DEMO: &str = "ISTIO_CANARY_SKIP_DEMO";

fn demo_needs_a_missing_tool() {
    common::unavailable("the demonstration check: no-such-tool is not installed");
}

fn demo_skips_outside_a_trial() {
    // A test the standard harness runs has no trial around it: the same call on a thread of
    // its own stands for it.
    let joined = std::thread::spawn(|| common::unavailable("the demonstration check")).join();
    if let Err(panic) = joined {
        std::panic::resume_unwind(panic);
    }
}

/// This test binary on one demonstration trial, with `CI` set or not.
fn run_demo(trial: &str, ci: bool) -> (Option<i32>, String) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command
        .args(["--exact", trial, "--test-threads", "1", "--color", "never"])
        .env(DEMO, "1")
        .env_remove("CI");
    if ci {
        command.env("CI", "true");
    }
    let out = command.output().expect("run the test binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn a_check_that_cannot_run_is_reported_ignored_and_counted() {
    let (code, text) = run_demo("demo_needs_a_missing_tool", false);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(
            "test demo_needs_a_missing_tool ... ignored (not run: the demonstration check: \
             no-such-tool is not installed)"
        ),
        "{text}"
    );
    assert!(
        text.contains("test result: ok. 0 passed; 0 failed; 1 ignored"),
        "{text}"
    );
}

fn a_check_that_cannot_run_fails_on_ci() {
    let (code, text) = run_demo("demo_needs_a_missing_tool", true);
    assert_eq!(code, Some(101), "{text}");
    assert!(
        text.contains("test demo_needs_a_missing_tool ... FAILED"),
        "{text}"
    );
    assert!(
        text.contains(
            "the demonstration check: no-such-tool is not installed (CI is set, and on CI a \
             check that cannot run fails)"
        ),
        "{text}"
    );
    assert!(text.contains("0 passed; 1 failed"), "{text}");
}

fn a_skip_outside_a_trial_fails_instead_of_passing() {
    let (code, text) = run_demo("demo_skips_outside_a_trial", false);
    assert_eq!(code, Some(101), "{text}");
    assert!(
        text.contains("not run by common::trial, so the skip would pass unseen"),
        "{text}"
    );
}

/// The `[[test]]` targets of Cargo.toml with `harness = false`.
fn harness_false_targets() -> Vec<String> {
    let cargo = std::fs::read_to_string(common::manifest_dir().join("Cargo.toml"))
        .expect("read Cargo.toml");
    let mut out = Vec::new();
    for block in cargo.split("[[test]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        if field("harness").as_deref() == Some("false") {
            out.extend(field("name"));
        }
    }
    out
}

fn every_test_file_that_can_skip_reports_its_skips() {
    let harness_false = harness_false_targets();
    assert!(
        harness_false.contains(&"skips".to_string()),
        "{harness_false:?}"
    );
    let tests = common::manifest_dir().join("tests");
    let mut files: Vec<_> = std::fs::read_dir(&tests)
        .expect("read tests/")
        .map(|e| e.expect("read tests/").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    assert!(files.len() > 10, "{files:?}");
    for path in files {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).expect("read a test file");
        let file = Path::new("tests").join(path.file_name().unwrap_or_default());
        if harness_false.iter().any(|n| n == name) {
            // libtest-mimic never runs a `#[test]` function: it would pass unseen.
            assert!(
                !text.lines().any(|l| l.trim() == "#[test]"),
                "{}: a #[test] in a harness = false file never runs; name it in tests!(…)",
                file.display()
            );
        } else {
            for call in ["unavailable(", "kubectl(\"", "recordings(\""] {
                assert!(
                    !text.contains(call),
                    "{}: calls {call}…) but the standard harness cannot report a skip; set \
                     harness = false for it in Cargo.toml and use common::tests!",
                    file.display()
                );
            }
        }
    }
}

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let trials = if std::env::var_os(DEMO).is_some() {
        vec![
            common::trial("demo_needs_a_missing_tool", demo_needs_a_missing_tool),
            common::trial("demo_skips_outside_a_trial", demo_skips_outside_a_trial),
        ]
    } else {
        vec![
            common::trial(
                "a_check_that_cannot_run_is_reported_ignored_and_counted",
                a_check_that_cannot_run_is_reported_ignored_and_counted,
            ),
            common::trial(
                "a_check_that_cannot_run_fails_on_ci",
                a_check_that_cannot_run_fails_on_ci,
            ),
            common::trial(
                "a_skip_outside_a_trial_fails_instead_of_passing",
                a_skip_outside_a_trial_fails_instead_of_passing,
            ),
            common::trial(
                "every_test_file_that_can_skip_reports_its_skips",
                every_test_file_that_can_skip_reports_its_skips,
            ),
        ]
    };
    libtest_mimic::run(&args, trials).exit();
}
