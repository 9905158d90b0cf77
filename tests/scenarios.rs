//! One snapshot per fixture scenario: every file `compile` writes, sorted by path. Each scenario
//! is also compiled twice (byte-identical output) and every apply directory is built with
//! `kubectl kustomize`.

mod common;

use std::path::Path;
use std::process::Command;

use istio_canary::gitops;

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
    // directory has none.
    let kubectl = kubectl("scenarios: kustomize build");
    for entry in std::fs::read_dir(&out).unwrap() {
        let phase = entry.unwrap().path();
        if !phase.is_dir() {
            continue;
        }
        // The GitOps folders hold Applications and Kustomizations, not objects to build.
        let folder = phase.file_name().unwrap().to_string_lossy();
        if [gitops::ARGOCD_DIR, gitops::FLUX_DIR].contains(&folder.as_ref()) {
            continue;
        }
        let is_uninstall = phase
            .file_name()
            .unwrap()
            .to_string_lossy()
            .contains("-uninstall-");
        assert_eq!(
            phase.join("Kustomization").exists(),
            !is_uninstall,
            "{}",
            phase.display()
        );
        if let (false, Some(kubectl)) = (is_uninstall, kubectl) {
            let built = Command::new(kubectl)
                .arg("kustomize")
                .arg(&phase)
                .output()
                .unwrap();
            assert!(
                built.status.success(),
                "{name}: kubectl kustomize {}: {}",
                phase.display(),
                String::from_utf8_lossy(&built.stderr)
            );
        }
    }

    snapshot_settings().bind(|| {
        insta::assert_snapshot!(format!("scenario-{name}"), combined(&files));
        insta::assert_snapshot!(
            format!("scenario-{name}-stderr"),
            first.stderr.replace(out_arg, "[OUT]")
        );
    });
}

/// One trial per scenario (the example and each `fixtures/scenarios/<name>/`).
fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let mut trials = vec![libtest_mimic::Trial::test("scenario::example", || {
        compile_scenario(&fixtures().join("example/canary.yaml"));
        Ok(())
    })];
    for dir in fixture_dirs("scenarios") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        trials.push(libtest_mimic::Trial::test(
            format!("scenario::{name}"),
            move || {
                compile_scenario(&dir.join("canary.yaml"));
                Ok(())
            },
        ));
    }
    libtest_mimic::run(&args, trials).exit();
}
