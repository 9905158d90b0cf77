//! Schema validation of every emitted object of every scenario: Kubernetes objects against the
//! OpenAPI schemas of the policy's `kubernetesVersion` (`DEFAULT_KUBERNETES` when the policy
//! names none) with the PyPI package kubernetes-validate, Argo CD Applications and Flux
//! Kustomizations against the schemas in `fixtures/schemas/` (python's jsonschema). Only Istio
//! custom resources, which have no published schema, are skipped (the validator reports each).
//! Delete stubs are not objects to apply and are not validated. The README's example of a Flux
//! Kustomization that applies `flux/` (with `postBuild`) is validated too.
//!
//! Without python3, kubernetes-validate or jsonschema each test is reported `ignored (not run: …)`
//! (`common::unavailable`); with `CI` set it fails (`.ci/run` installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixture_dirs, fixtures, manifest_dir, run};

/// The Kubernetes minor validated against when the policy names none: the newest one both
/// Istio versions of the fixtures support, and one kubernetes-validate 1.30 ships.
const DEFAULT_KUBERNETES: &str = "1.24";

fn scenarios() -> Vec<PathBuf> {
    let mut v = vec![fixtures().join("example")];
    v.extend(fixture_dirs("scenarios"));
    v
}

/// Every `*.yaml` under `dir` except delete stubs, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                let text = std::fs::read_to_string(&p).unwrap();
                if !text.contains("\n# DELETE ONLY:") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

fn kubernetes_version(out: &Path) -> String {
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    plan["kubernetesVersion"]
        .as_str()
        .unwrap_or(DEFAULT_KUBERNETES)
        .to_string()
}

/// Runs the validator; None when its tools are missing (and `CI` is not set).
fn validate(version: &str, files: &[PathBuf]) -> Option<(bool, String)> {
    let script = manifest_dir().join("tests/validate_objects.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(version)
        .arg(fixtures().join("schemas"))
        .args(files)
        .output();
    let missing = |why: String| {
        common::unavailable(&format!("schema validation: {why}"));
        None
    };
    let out = match out {
        Ok(o) => o,
        Err(e) => return missing(format!("python3 cannot run: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if let Some(line) = stdout.lines().find(|l| l.starts_with("MISSING ")) {
        return missing(format!("python module {} is not installed", &line[8..]));
    }
    match out.status.code() {
        Some(0) => Some((true, stdout)),
        Some(1) => Some((false, stdout)),
        _ => panic!(
            "validate_objects.py failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn every_emitted_object_matches_its_published_schema() {
    let mut failures = Vec::new();
    for dir in scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("bundles");
        let r = run(
            &dir,
            &[
                "compile",
                "--policy",
                "canary.yaml",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let files = yaml_files(&out);
        assert!(
            files
                .iter()
                .any(|f| f.to_string_lossy().contains("/argocd/")),
            "{name}: no argocd/ files"
        );
        let version = kubernetes_version(&out);
        let Some((ok, report)) = validate(&version, &files) else {
            return;
        };
        let report = report.replace(&format!("{}/", out.display()), "");
        if !ok {
            failures.push(format!("{name} (Kubernetes {version}):\n{report}"));
        }
        // Only Istio and Gateway API custom resources may be skipped.
        for line in report.lines().filter(|l| l.starts_with("SKIPPED")) {
            assert!(
                line.contains("istio.io/") || line.contains("gateway.networking.k8s.io/"),
                "{name}: {line}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn an_invalid_object_fails_validation() {
    // The check itself can fail: an unknown field, a wrong type in a Flux Kustomization, a
    // misspelled Argo CD field, an API version the Kubernetes version does not serve.
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  bogus: 1\n",
        ),
        (
            "ks.yaml",
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: k\nspec:\n  interval: 10m\n  prune: 'no'\n  sourceRef: {kind: GitRepository, name: r}\n",
        ),
        (
            "app.yaml",
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: a\nspec:\n  project: default\n  destination: {server: x}\n  ignoreDifferences:\n  - kind: X\n    jqPathExpression: [.a]\n",
        ),
        (
            "ks-post-build.yaml",
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: k\nspec:\n  interval: 10m\n  prune: false\n  sourceRef: {kind: GitRepository, name: r}\n  postBuild:\n    substituteFrom: [{kind: Secrets, name: s}]\n",
        ),
        (
            "pdb.yaml",
            "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: p\nspec:\n  minAvailable: 1\n",
        ),
    ];
    for (file, text) in cases {
        let path = tmp.path().join(file);
        std::fs::write(&path, text).unwrap();
        let Some((ok, report)) = validate("1.26", &[path]) else {
            return;
        };
        assert!(!ok, "{file} passed:\n{report}");
        assert!(report.contains("INVALID"), "{report}");
    }
}

/// The YAML block of the README that shows a Flux Kustomization applying `flux/` with
/// `postBuild` (indented as a list item), dedented.
fn readme_flux_parent() -> String {
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for line in readme.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut current {
            None if trimmed == "```yaml" => current = Some((indent, String::new())),
            Some((_, block)) if trimmed == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some((at, block)) => {
                block.push_str(line.get(*at..).unwrap_or(""));
                block.push('\n');
            }
            None => {}
        }
    }
    let found: Vec<String> = blocks
        .into_iter()
        .filter(|b| b.contains("kind: Kustomization") && b.contains("postBuild:"))
        .collect();
    assert_eq!(found.len(), 1, "the README's Flux parent example");
    found.into_iter().next().unwrap()
}

fn the_readme_flux_parent_example_is_valid_and_fills_every_flux_placeholder() {
    let text = readme_flux_parent();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    // It substitutes every variable flux/ can hold.
    let substitute = doc["spec"]["postBuild"]["substitute"].as_mapping().unwrap();
    for var in [
        istio_canary::gitops::PATH_VAR,
        istio_canary::gitops::FLUX_SOURCE_VAR,
    ] {
        assert!(substitute.contains_key(var), "{var}");
    }
    assert!(
        doc["spec"].get("wait").is_none(),
        "suspended phases never become ready"
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("parent.yaml");
    std::fs::write(&path, text).unwrap();
    let Some((ok, report)) = validate(DEFAULT_KUBERNETES, &[path]) else {
        return;
    };
    assert!(ok, "{report}");
}

tests!(
    every_emitted_object_matches_its_published_schema,
    an_invalid_object_fails_validation,
    the_readme_flux_parent_example_is_valid_and_fills_every_flux_placeholder,
);
