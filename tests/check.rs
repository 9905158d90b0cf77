//! `compile --check`, `verify`, `show` and `plan` against the compiled example: exit codes,
//! snapshotted reports and messages, streams that parse as YAML, a closed stdout pipe, and that
//! none of them writes anything.

mod common;

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{compiled_example, copy_example, fixtures, run, snapshot_settings, Run};
use istio_canary::check::{read_tree, Tree};

fn snapshot(name: &str, text: &str) {
    snapshot_settings().bind(|| insta::assert_snapshot!(name, text));
}

/// `compile --check` of the example against `out`; asserts that nothing under `out`'s parent
/// changed.
fn check(out: &Path) -> Run {
    let before = read_tree(out.parent().unwrap()).unwrap();
    let out_arg = out.to_str().unwrap();
    let mut r = run(
        &fixtures().join("example"),
        &[
            "compile",
            "--check",
            "--policy",
            "canary.yaml",
            "--out",
            out_arg,
        ],
    );
    assert_eq!(
        read_tree(out.parent().unwrap()).unwrap(),
        before,
        "compile --check wrote something"
    );
    r.stdout = r.stdout.replace(out_arg, "[OUT]");
    r.stderr = r.stderr.replace(out_arg, "[OUT]");
    r
}

const EDITED: &str = "03-migrate-canary/01-namespace_bookinfo.yaml";
const REMOVED: &str = "05-gateways-1-28-0/Kustomization";
const ADDED: &str = "04-migrate-rest/01-namespace_extra.yaml";

fn edit(out: &Path) {
    let path = out.join(EDITED);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("istio.io/rev: 1-28-0", "istio.io/rev: 1-27-0"),
    )
    .unwrap();
}

fn add(out: &Path) {
    std::fs::write(
        out.join(ADDED),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: extra\n",
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// compile --check

fn check_clean_exits_0() {
    let (_tmp, out) = copy_example();
    let r = check(&out);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "");
    snapshot("check-clean", &r.stderr);
}

fn check_edited_file_exits_1_with_diff() {
    let (_tmp, out) = copy_example();
    edit(&out);
    let r = check(&out);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stderr, "");
    assert!(r
        .stdout
        .contains("-    istio.io/rev: 1-27-0\n+    istio.io/rev: 1-28-0\n"));
    assert!(r.stdout.ends_with(
        "to regenerate it, run: istio-canary compile --policy canary.yaml --out [OUT]\n"
    ));
    snapshot("check-edited", &r.stdout);
}

fn check_missing_file_exits_1() {
    let (_tmp, out) = copy_example();
    std::fs::remove_file(out.join(REMOVED)).unwrap();
    let r = check(&out);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.contains(&format!("missing: {REMOVED}")));
    snapshot("check-missing", &r.stdout);
}

fn check_extra_file_exits_1() {
    let (_tmp, out) = copy_example();
    add(&out);
    std::fs::create_dir(out.join("empty")).unwrap();
    let r = check(&out);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.contains(&format!("extra:   {ADDED}")));
    assert!(r.stdout.contains("extra:   empty/"));
    snapshot("check-extra", &r.stdout);
}

fn check_keeps_the_users_flags_in_the_regenerate_line() {
    let (_tmp, out) = copy_example();
    add(&out);
    let out_arg = out.to_str().unwrap();
    let r = run(
        &fixtures().join("example"),
        &[
            "compile",
            "--istioctl-timeout",
            "60",
            "--out",
            out_arg,
            "--check",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let last = r.stdout.lines().last().unwrap().replace(out_arg, "[OUT]");
    assert_eq!(
        last,
        "to regenerate it, run: istio-canary compile --istioctl-timeout 60 --out [OUT]"
    );
}

fn check_without_out_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bundles");
    let r = check(&out);
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout, "");
    assert!(!out.exists());
    snapshot("check-no-out", &r.stderr);
}

fn check_foreign_out_exits_2() {
    let (_tmp, out) = copy_example();
    std::fs::remove_file(out.join(".istio-canary")).unwrap();
    let r = check(&out);
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout, "");
    snapshot("check-foreign-out", &r.stderr);
}

fn check_and_force_cannot_be_combined() {
    let (_tmp, out) = copy_example();
    let r = run(
        &fixtures().join("example"),
        &[
            "compile",
            "--check",
            "--force",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cannot be used with"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// verify

/// `verify bundles` run beside `bundles/`; asserts that nothing changed.
fn verify(tmp: &Path, arg: &str) -> Run {
    let before: Tree = read_tree(tmp).unwrap();
    let r = run(tmp, &["verify", arg]);
    assert_eq!(read_tree(tmp).unwrap(), before, "verify wrote something");
    r
}

fn verify_clean_exits_0() {
    let (tmp, _out) = copy_example();
    let r = verify(tmp.path(), "bundles");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "");
    snapshot("verify-clean", &r.stderr);
}

fn verify_defaults_to_bundles() {
    let (tmp, out) = copy_example();
    add(&out);
    let r = run(tmp.path(), &["verify"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.contains(ADDED));
}

fn verify_edited_exits_1() {
    let (tmp, out) = copy_example();
    edit(&out);
    let r = verify(tmp.path(), "bundles");
    assert_eq!(r.code, 1, "{}", r.stderr);
    snapshot("verify-edited", &r.stdout);
}

fn verify_missing_exits_1() {
    let (tmp, out) = copy_example();
    std::fs::remove_file(out.join(REMOVED)).unwrap();
    let r = verify(tmp.path(), "bundles");
    assert_eq!(r.code, 1, "{}", r.stderr);
    snapshot("verify-missing", &r.stdout);
}

fn verify_extra_exits_1() {
    let (tmp, out) = copy_example();
    add(&out);
    std::fs::create_dir(out.join("empty")).unwrap();
    let r = verify(tmp.path(), "bundles");
    assert_eq!(r.code, 1, "{}", r.stderr);
    snapshot("verify-extra", &r.stdout);
}

fn verify_without_plan_json_exits_2() {
    let (tmp, out) = copy_example();
    std::fs::remove_file(out.join("plan.json")).unwrap();
    let r = verify(tmp.path(), "bundles");
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout, "");
    snapshot("verify-no-plan-json", &r.stderr);
}

fn verify_bad_json_exits_2_with_line_and_column() {
    let (tmp, out) = copy_example();
    let path = out.join("plan.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"kind\": ", "\"kind\" ", 1)).unwrap();
    let r = verify(tmp.path(), "bundles");
    assert_eq!(r.code, 2);
    snapshot("verify-bad-json", &r.stderr);
}

fn verify_not_a_plan_exits_2() {
    let (tmp, out) = copy_example();
    let path = out.join("plan.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("CanaryUpgradePlan", "CanaryUpgrade", 1),
    )
    .unwrap();
    let r = verify(tmp.path(), "bundles");
    assert_eq!(r.code, 2);
    snapshot("verify-not-a-plan", &r.stderr);
}

fn verify_refuses_a_plan_naming_a_path_outside() {
    let (tmp, out) = copy_example();
    let path = out.join("plan.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\".istio-canary\":", "\"../x\":", 1)).unwrap();
    let r = verify(tmp.path(), "bundles");
    assert_eq!(r.code, 2);
    snapshot("verify-path-outside", &r.stderr);
}

// ---------------------------------------------------------------------------------------------
// show

/// The files of phase `dir` named by plan.json (`key`: apply+patch, or delete), concatenated the
/// way `show` must print them.
fn expected_stream(out: &Path, dir: &str, keys: &[&str]) -> (String, usize) {
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    let phase = plan["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["dir"] == dir)
        .unwrap();
    let mut stream = String::new();
    let mut n = 0;
    for key in keys {
        for e in phase[key].as_array().unwrap() {
            if let Some(file) = e["file"].as_str() {
                stream.push_str("---\n");
                stream.push_str(&std::fs::read_to_string(out.join(dir).join(file)).unwrap());
                n += 1;
            }
        }
    }
    (stream, n)
}

/// Every document of `stream` parses as a YAML mapping with apiVersion, kind and metadata.name.
fn documents(stream: &str) -> usize {
    use serde::Deserialize as _;
    let mut n = 0;
    for doc in serde_yaml::Deserializer::from_str(stream) {
        let v = serde_yaml::Value::deserialize(doc).unwrap();
        assert!(v["apiVersion"].is_string(), "{v:?}");
        assert!(v["kind"].is_string(), "{v:?}");
        assert!(v["metadata"]["name"].is_string(), "{v:?}");
        n += 1;
    }
    n
}

fn show_by_index_dir_and_name_prints_one_stream() {
    let (tmp, out) = copy_example();
    let before = read_tree(tmp.path()).unwrap();
    let by_index = run(tmp.path(), &["show", "3"]);
    assert_eq!(by_index.code, 0, "{}", by_index.stderr);
    // A migrate phase's stream is label patches: the one thing on stderr says to apply it
    // server-side.
    assert!(
        by_index
            .stderr
            .starts_with("istio-canary: this stream holds label patches")
            && by_index.stderr.lines().count() == 1,
        "{}",
        by_index.stderr
    );
    // A phase of whole objects says nothing.
    let install = run(tmp.path(), &["show", "2"]);
    assert_eq!(install.code, 0, "{}", install.stderr);
    assert_eq!(install.stderr, "");
    snapshot("show-03", &by_index.stdout);
    for query in ["03", "03-migrate-canary", "migrate-canary"] {
        let r = run(tmp.path(), &["show", query, "--out", "bundles"]);
        assert_eq!(r.code, 0, "{query}: {}", r.stderr);
        assert_eq!(r.stdout, by_index.stdout, "{query}");
    }
    assert_eq!(
        read_tree(tmp.path()).unwrap(),
        before,
        "show wrote something"
    );

    // Every apply phase: exactly its apply and patch files, in plan.json order, all parsing.
    for dir in [
        "01-crds",
        "02-install-1-28-0",
        "03-migrate-canary",
        "04-migrate-rest",
        "05-gateways-1-28-0",
        "06-default-tag-1-28-0",
    ] {
        let r = run(tmp.path(), &["show", dir]);
        assert_eq!(r.code, 0, "{dir}: {}", r.stderr);
        let (want, n) = expected_stream(&out, dir, &["apply", "patch"]);
        assert!(n > 0, "{dir}");
        assert_eq!(r.stdout, want, "{dir}");
        assert_eq!(documents(&r.stdout), n, "{dir}");
    }
}

fn show_uninstall_prints_the_delete_stubs() {
    let (tmp, out) = copy_example();
    let r = run(tmp.path(), &["show", "uninstall-1-27-0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (want, n) = expected_stream(&out, "07-uninstall-1-27-0", &["delete"]);
    assert_eq!(r.stdout, want);
    assert_eq!(documents(&r.stdout), n);
    assert!(r.stdout.contains("DELETE ONLY"));
}

fn show_unknown_phase_exits_2_listing_the_phases() {
    let (tmp, _out) = copy_example();
    let r = run(tmp.path(), &["show", "8"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout, "");
    snapshot("show-unknown-phase", &r.stderr);
}

fn show_refuses_an_edited_file() {
    let (tmp, out) = copy_example();
    edit(&out);
    let r = run(tmp.path(), &["show", "03"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout, "");
    snapshot("show-edited-file", &r.stderr);
}

fn show_into_a_closed_pipe_exits_0_silently() {
    let (tmp, _out) = copy_example();
    let mut child = Command::new(env!("CARGO_BIN_EXE_istio-canary"))
        .current_dir(tmp.path())
        .args(["show", "02"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

// ---------------------------------------------------------------------------------------------
// plan

fn plan_json_is_the_compiled_plan_json() {
    let before = read_tree(&fixtures()).unwrap();
    let r = run(
        &fixtures().join("example"),
        &["plan", "--policy", "canary.yaml", "--format", "json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "");
    let written = std::fs::read_to_string(compiled_example().join("plan.json")).unwrap();
    assert_eq!(r.stdout, written);
    assert_eq!(
        read_tree(&fixtures()).unwrap(),
        before,
        "plan wrote something"
    );
}

fn plan_text() {
    let r = run(&fixtures().join("example"), &["plan"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "");
    snapshot("plan-text", &r.stdout);
}

fn plan_with_a_bad_policy_exits_2() {
    let r = run(
        &fixtures().join("errors/downgrade"),
        &["plan", "--format", "json"],
    );
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout, "");
}

// ---------------------------------------------------------------------------------------------
// Every other message of these commands

/// Edits `bundles/plan.json` of a copy by replacing `from` (once) with `to`.
fn edit_plan(out: &Path, from: &str, to: &str) {
    let path = out.join("plan.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

fn errors_exit_2_with_their_message() {
    type Setup = fn(&Path);
    let cases: &[(&str, Setup, &[&str])] = &[
        ("verify-dir-missing", |_| {}, &["verify", "nope"]),
        (
            "verify-dir-is-a-file",
            |_| {},
            &["verify", "bundles/PLAN.md"],
        ),
        (
            "verify-plan-not-utf8",
            |out| std::fs::write(out.join("plan.json"), b"{\"a\": \"\xff\"}").unwrap(),
            &["verify", "bundles"],
        ),
        (
            "verify-plan-wrong-shape",
            |out| edit_plan(out, "\"name\": \"bookinfo-cluster\"", "\"name\": 7"),
            &["verify", "bundles"],
        ),
        (
            "verify-plan-bad-digest",
            |out| {
                let path = out.join("plan.json");
                let mut plan: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                plan["files"]["PLAN.md"] = "not-a-digest".into();
                std::fs::write(path, serde_json::to_string_pretty(&plan).unwrap()).unwrap();
            },
            &["verify", "bundles"],
        ),
        (
            "show-plan-bad-phase-dir",
            |out| edit_plan(out, "\"dir\": \"03-migrate-canary\"", "\"dir\": \"..\""),
            &["show", "03"],
        ),
        (
            "show-plan-bad-file",
            |out| {
                edit_plan(
                    out,
                    "\"file\": \"01-namespace_bookinfo.yaml\"",
                    "\"file\": \"../../x.yaml\"",
                )
            },
            &["show", "03"],
        ),
        (
            "show-file-missing",
            |out| std::fs::remove_file(out.join(EDITED)).unwrap(),
            &["show", "03"],
        ),
        (
            "check-out-is-a-file",
            |_| {},
            &["compile", "--check", "--out", "bundles/PLAN.md"],
        ),
    ];
    for (name, setup, args) in cases {
        let (tmp, out) = copy_example();
        setup(&out);
        let before = read_tree(tmp.path()).unwrap();
        let mut args = args.to_vec();
        let policy = fixtures().join("example/canary.yaml");
        if args[0] == "compile" {
            args.extend(["--policy", policy.to_str().unwrap()]);
        }
        let r = run(tmp.path(), &args);
        assert_eq!(r.code, 2, "{name}: {}{}", r.stdout, r.stderr);
        assert_eq!(r.stdout, "", "{name}");
        assert_eq!(
            read_tree(tmp.path()).unwrap(),
            before,
            "{name} wrote something"
        );
        snapshot(&format!("check-error-{name}"), &r.stderr);
    }
}

fn show_into_a_full_stdout_is_an_error() {
    let (tmp, _out) = copy_example();
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        common::unavailable("a stdout that is full: /dev/full does not exist here");
        return;
    };
    let r = Command::new(env!("CARGO_BIN_EXE_istio-canary"))
        .current_dir(tmp.path())
        .args(["show", "02"])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    snapshot(
        "check-error-show-stdout-full",
        &String::from_utf8_lossy(&r.stderr),
    );
}

fn show_lists_label_commands_no_file_carries() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bundles");
    let r = run(
        &fixtures().join("scenarios/from-default"),
        &[
            "compile",
            "--policy",
            "canary.yaml",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(tmp.path(), &["show", "3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(documents(&r.stdout) > 0);
    snapshot("show-label-commands", &r.stderr);
}

fn show_a_phase_without_files_says_so() {
    let (tmp, out) = copy_example();
    let path = out.join("plan.json");
    let mut plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    plan["phases"][2]["patch"] = serde_json::json!([]);
    std::fs::write(&path, serde_json::to_string_pretty(&plan).unwrap()).unwrap();
    let r = run(tmp.path(), &["show", "03"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    snapshot("show-no-files", &r.stderr);
}

fn help_names_the_commands_and_exit_code_1() {
    let r = run(&fixtures(), &["--help"]);
    assert_eq!(r.code, 0);
    for word in ["compile", "verify", "show", "plan", "1 a difference found"] {
        assert!(r.stdout.contains(word), "{word}: {}", r.stdout);
    }
    let r = run(&fixtures(), &["compile", "--help"]);
    assert!(r.stdout.contains("--check"), "{}", r.stdout);
}

tests!(
    check_clean_exits_0,
    check_edited_file_exits_1_with_diff,
    check_missing_file_exits_1,
    check_extra_file_exits_1,
    check_keeps_the_users_flags_in_the_regenerate_line,
    check_without_out_exits_2,
    check_foreign_out_exits_2,
    check_and_force_cannot_be_combined,
    verify_clean_exits_0,
    verify_defaults_to_bundles,
    verify_edited_exits_1,
    verify_missing_exits_1,
    verify_extra_exits_1,
    verify_without_plan_json_exits_2,
    verify_bad_json_exits_2_with_line_and_column,
    verify_not_a_plan_exits_2,
    verify_refuses_a_plan_naming_a_path_outside,
    show_by_index_dir_and_name_prints_one_stream,
    show_uninstall_prints_the_delete_stubs,
    show_unknown_phase_exits_2_listing_the_phases,
    show_refuses_an_edited_file,
    show_into_a_closed_pipe_exits_0_silently,
    plan_json_is_the_compiled_plan_json,
    plan_text,
    plan_with_a_bad_policy_exits_2,
    errors_exit_2_with_their_message,
    show_into_a_full_stdout_is_an_error,
    show_lists_label_commands_no_file_carries,
    show_a_phase_without_files_says_so,
    help_names_the_commands_and_exit_code_1,
);
