//! Every error a user can meet, one fixture each under `fixtures/errors/<case>/`: the message is
//! snapshotted, the exit code is 2, and the previous `--out` is left exactly as it was.

mod common;

use std::path::Path;

use common::{fixture_dirs, fixtures, read_tree, run, run_bounded, snapshot_settings};
use std::time::Duration;

/// Runs `compile` in `dir` against an `--out` that holds a previous compile, and returns stderr
/// after checking the exit code and that the previous output is untouched.
fn failing_compile(dir: &Path, policy: &str, extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bundles");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join(".istio-canary"), "# previous compile\n").unwrap();
    std::fs::write(out.join("PLAN.md"), "previous plan\n").unwrap();
    let before = read_tree(&out);

    let mut args = vec![
        "compile",
        "--policy",
        policy,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    // Every case runs under a wall-clock and a memory limit: an input that makes the tool hang or
    // allocate without bound fails its test instead of the machine.
    let r = run_bounded(dir, &args, Duration::from_secs(120), 2_000_000);
    assert_eq!(
        r.code,
        2,
        "{}: expected exit 2, got {}: {}",
        dir.display(),
        r.code,
        r.stderr
    );
    assert_eq!(r.stdout, "", "errors go to stderr");
    assert_eq!(
        read_tree(&out),
        before,
        "{}: the previous output changed",
        dir.display()
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        ["bundles"],
        "{}: staging directories were left behind",
        dir.display()
    );
    r.stderr
}

/// One trial per `fixtures/errors/<case>/`, plus the cases that need their own setup.
fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let mut trials = vec![
        libtest_mimic::Trial::test("missing_policy_file", || {
            missing_policy_file();
            Ok(())
        }),
        libtest_mimic::Trial::test("refuses_to_replace_a_directory_it_did_not_write", || {
            refuses_to_replace_a_directory_it_did_not_write();
            Ok(())
        }),
        libtest_mimic::Trial::test("usage_errors_exit_2_and_help_exits_0", || {
            usage_errors_exit_2_and_help_exits_0();
            Ok(())
        }),
    ];
    for dir in fixture_dirs("errors") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        trials.push(libtest_mimic::Trial::test(
            format!("error::{name}"),
            move || {
                error_fixture(&dir);
                Ok(())
            },
        ));
    }
    libtest_mimic::run(&args, trials).exit();
}

fn error_fixture(dir: &Path) {
    let args = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
    let extra: Vec<&str> = args.split_whitespace().collect();
    let stderr = failing_compile(dir, "canary.yaml", &extra);
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    snapshot_settings().bind(|| insta::assert_snapshot!(format!("error-{name}"), stderr));
}

fn missing_policy_file() {
    let stderr = failing_compile(&fixtures().join("example"), "nope.yaml", &[]);
    snapshot_settings().bind(|| insta::assert_snapshot!("error-missing-policy", stderr));
}

fn refuses_to_replace_a_directory_it_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("manifests");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("important.yaml"), "kind: Keep\n").unwrap();
    let out_arg = out.to_str().unwrap();
    let r = run(&fixtures().join("example"), &["compile", "--out", out_arg]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(out.join("important.yaml")).unwrap(),
        "kind: Keep\n"
    );
    snapshot_settings()
        .bind(|| insta::assert_snapshot!("error-foreign-out", r.stderr.replace(out_arg, "[OUT]")));

    let forced = run(
        &fixtures().join("example"),
        &["compile", "--out", out_arg, "--force"],
    );
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(!out.join("important.yaml").exists());
    assert!(out.join("PLAN.md").exists());
}

fn usage_errors_exit_2_and_help_exits_0() {
    let dir = fixtures().join("example");
    let bad = run(&dir, &["compile", "--no-such-flag"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("--no-such-flag"), "{}", bad.stderr);
    let help = run(&dir, &["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Exit codes"), "{}", help.stdout);
    let version = run(&dir, &["--version"]);
    assert_eq!(version.code, 0);
    assert_eq!(
        version.stdout,
        format!("istio-canary {}\n", env!("CARGO_PKG_VERSION"))
    );
}
