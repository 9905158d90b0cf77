//! One snapshot per fixture scenario: every file `compile` writes, sorted by path. Each scenario
//! is also compiled twice (byte-identical output) and every apply directory, rollback directory,
//! `live/`, the root, `argocd/` and `flux/` are built with `kubectl kustomize`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{combined, fixture_dirs, fixtures, kubectl, read_tree, run, snapshot_settings};

fn compile_scenario(policy: &Path) {
    let dir = policy.parent().unwrap();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bundles");
    let out_arg = out.to_str().unwrap();

    let first = run(
        dir,
        &["compile", "--policy", "canary.yaml", "--out", out_arg],
    );
    assert_eq!(first.code, 0, "{name}: {}", first.stderr);
    let files = read_tree(&out);

    // Same inputs, same bytes.
    let again = run(
        dir,
        &["compile", "--policy", "canary.yaml", "--out", out_arg],
    );
    assert_eq!(again.code, 0, "{name}: {}", again.stderr);
    assert_eq!(
        read_tree(&out),
        files,
        "{name}: a second compile changed the output"
    );

    // Every apply directory has a Kustomization and builds with kustomize; the uninstall
    // directory has none. So do every rollback directory with files to apply (its `delete/`
    // has none), `live/` when the policy sets a promote point, and the bundle root.
    let kubectl = kubectl("kubectl kustomize of every directory");
    let build = |dir: &Path| -> Option<String> {
        kubectl.map(|kubectl| {
            let built = Command::new(kubectl)
                .arg("kustomize")
                .arg(dir)
                .output()
                .unwrap();
            assert!(
                built.status.success(),
                "{name}: kubectl kustomize {}: {}",
                dir.display(),
                String::from_utf8_lossy(&built.stderr)
            );
            String::from_utf8(built.stdout).unwrap()
        })
    };
    for entry in std::fs::read_dir(&out).unwrap() {
        let phase = entry.unwrap().path();
        let dir_name = phase.file_name().unwrap().to_string_lossy().into_owned();
        if !phase.is_dir() || !dir_name.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let is_uninstall = dir_name.contains("-uninstall-");
        assert_eq!(
            phase.join("Kustomization").exists(),
            !is_uninstall,
            "{}",
            phase.display()
        );
        if !is_uninstall {
            build(&phase);
        }
    }
    let mut rollbacks = 0;
    if out.join("rollback").is_dir() {
        for entry in std::fs::read_dir(out.join("rollback")).unwrap() {
            let dir = entry.unwrap().path();
            assert!(
                !dir.join("delete/Kustomization").exists(),
                "{}: delete stubs must not be buildable",
                dir.display()
            );
            if dir.join("Kustomization").exists() {
                build(&dir);
                rollbacks += 1;
            }
        }
    }
    assert!(rollbacks > 0, "{name}: no rollback directory was built");
    assert!(
        out.join("Kustomization").exists(),
        "{name}: no root Kustomization"
    );
    assert_eq!(
        out.join("live").is_dir(),
        files.contains_key("live/Kustomization"),
        "{name}: live/ without its Kustomization"
    );
    // argocd/ and flux/ are kustomize bases of the phase objects: every one is built, none
    // runs by itself, and live.yaml is never among them.
    for folder in ["argocd", "flux"] {
        if let Some(built) = build(&out.join(folder)) {
            let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&built)
                .map(|d| serde::Deserialize::deserialize(d).unwrap())
                .collect();
            let phases = files
                .keys()
                .filter(|k| k.starts_with(&format!("{folder}/")) && k.ends_with(".yaml"))
                .filter(|k| !k.ends_with("/live.yaml"))
                .count();
            assert_eq!(docs.len(), phases, "{name}: kubectl kustomize {folder}");
            for doc in &docs {
                let oname = doc["metadata"]["name"].as_str().unwrap_or("");
                let gated = if folder == "argocd" {
                    doc["spec"]["syncPolicy"].get("automated").is_none()
                } else {
                    doc["spec"]["suspend"] == serde_yaml::Value::Bool(true)
                };
                assert!(gated, "{name}: {folder}: {oname} runs by itself");
            }
        }
    }
    if out.join("live").is_dir() {
        let live = build(&out.join("live"));
        let root = build(&out);
        assert!(
            root == live,
            "{name}: the root must build exactly live/ (root: {:?} bytes, live/: {:?} bytes)",
            root.as_ref().map(String::len),
            live.as_ref().map(String::len)
        );
    } else if let Some(root) = build(&out) {
        assert_eq!(
            root.trim(),
            "",
            "{name}: with no promote point the root builds nothing"
        );
    }

    summary_counts_what_plan_md_counts(&name, &first.stderr, &files["PLAN.md"]);

    snapshot_settings().bind(|| {
        insta::assert_snapshot!(format!("scenario-{name}"), combined(&files));
        insta::assert_snapshot!(
            format!("scenario-{name}-stderr"),
            first.stderr.replace(out_arg, "[OUT]")
        );
    });
}

/// Each phase line of the stderr summary (`  03-migrate-canary   patch 1`) gives the counts of
/// the phase's row in PLAN.md's table (`| 3 | `03-migrate-canary` | migrate | 0 | 1 | 0 |`),
/// zeros left out, and there is one line per row.
fn summary_counts_what_plan_md_counts(name: &str, stderr: &str, plan_md: &str) {
    let mut rows = Vec::new();
    for line in plan_md.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | # | phase | kind | apply | patch | delete |
        if cells.len() == 8 && cells[1].parse::<usize>().is_ok() {
            let dir = cells[2].trim_matches('`');
            let counts: Vec<String> = ["apply", "patch", "delete"]
                .iter()
                .zip(&cells[4..7])
                .filter(|(_, n)| **n != "0")
                .map(|(what, n)| format!("{what} {n}"))
                .collect();
            rows.push(format!("{dir} {}", counts.join(", ")));
        }
    }
    let summary: Vec<String> = stderr
        .lines()
        .filter(|l| l.starts_with("  ") && l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(!rows.is_empty(), "{name}: no phase table in PLAN.md");
    assert_eq!(
        summary, rows,
        "{name}: the stderr summary and PLAN.md count differently"
    );
}

/// One trial per scenario (the example and each `fixtures/scenarios/<name>/`).
fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let mut trials = vec![common::trial("scenario::example", || {
        compile_scenario(&fixtures().join("example/canary.yaml"))
    })];
    for dir in fixture_dirs("scenarios") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        trials.push(common::trial(&format!("scenario::{name}"), move || {
            compile_scenario(&dir.join("canary.yaml"))
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}
