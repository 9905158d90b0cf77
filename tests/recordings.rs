//! Tests against the real recorded `istioctl manifest generate` output in
//! `../shared/upstream-istioctl-output` (Istio's golden files): every recording parses through
//! the project's reader and is placed in a phase by the planner's own rule (`plan::placement`),
//! and one end-to-end compile uses a recording as the
//! old, unrevisioned control plane.

mod common;

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use istio_canary::manifest::parse_manifest;
use istio_canary::plan::{placement, PhaseKind};

use common::{fixtures, read_tree, recordings, run, sha256_hex, snapshot_settings};

fn goldens(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for version in std::fs::read_dir(dir).unwrap() {
        let version = version.unwrap().path();
        if !version.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&version).unwrap() {
            let f = f.unwrap().path();
            if f.to_string_lossy().ends_with(".golden.yaml") {
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

fn every_recording_parses_and_is_classified() {
    let Some(dir) = recordings("reading every recording") else {
        return;
    };
    let files = goldens(&dir);
    assert_eq!(files.len(), 14, "expected 7 versions x 2 recordings");
    let mut report = String::new();
    for path in files {
        let rel = path.strip_prefix(&dir).unwrap().display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let objects = parse_manifest(&text, &rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let phases = placement(&objects);
        let crds = phases.iter().filter(|k| **k == PhaseKind::Crds).count();
        writeln!(report, "== {rel}: {} objects, {crds} CRDs", objects.len()).unwrap();
        for (o, kind) in objects.iter().zip(phases) {
            // Facts that hold for every recording, whatever the snapshot says.
            assert_ne!(
                kind,
                PhaseKind::DefaultTag,
                "{rel}: {} (no recording renders tags)",
                o.id
            );
            if o.label("operator.istio.io/component").as_deref() == Some("IngressGateways") {
                assert_eq!(kind, PhaseKind::Gateways, "{rel}: {}", o.id);
            }
            if kind == PhaseKind::Crds {
                continue; // listed by count above
            }
            writeln!(
                report,
                "  {:<13} {:<32} {}",
                kind.as_str(),
                o.api_version,
                o.id
            )
            .unwrap();
        }
    }
    snapshot_settings().bind(|| insta::assert_snapshot!("recordings-classified", report));
}

/// A fake istioctl 1.13.0 that prints a real recording: the old side of the upgrade as Istio's
/// own code rendered it (unrevisioned, default profile plus both gateways).
fn recorded_istioctl(dir: &Path, golden: &Path) -> (PathBuf, String) {
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo 1.13.0; exit 0; fi\nexec cat '{}'\n",
        golden.display()
    );
    let path = dir.join("istioctl-1.13.0");
    std::fs::write(&path, &script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (path, sha256_hex(script.as_bytes()))
}

fn compiles_an_upgrade_from_a_recorded_unrevisioned_install() {
    let Some(dir) = recordings("compiling from a recording") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (old_ctl, old_sha) = recorded_istioctl(tmp.path(), &dir.join("1.13.0/all_on.golden.yaml"));
    let new_ctl = fixtures().join("istioctl/istioctl-1.14.1");
    let new_sha = sha256_hex(&std::fs::read(&new_ctl).unwrap());
    std::fs::copy(
        fixtures().join("example/iop.yaml"),
        tmp.path().join("iop.yaml"),
    )
    .unwrap();
    let policy = format!(
        "apiVersion: istio-canary.dev/v1alpha1\nkind: CanaryUpgrade\nmetadata:\n  name: recorded\nspec:\n  istioOperator: iop.yaml\n  from:\n    version: 1.13.0\n    revision: default\n  to:\n    version: 1.14.1\n  istioctl:\n    \"1.13.0\": {{path: {}, sha256: {old_sha}}}\n    \"1.14.1\": {{path: {}, sha256: {new_sha}}}\n  waves:\n  - name: all\n    namespaces: [bookinfo]\n",
        old_ctl.display(),
        new_ctl.display()
    );
    std::fs::write(tmp.path().join("canary.yaml"), policy).unwrap();
    let r = run(tmp.path(), &["compile", "--out", "bundles"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let files = read_tree(&tmp.path().join("bundles"));
    let uninstall = "06-uninstall-default/";
    let deleted: Vec<&str> = files
        .keys()
        .filter_map(|k| k.strip_prefix(uninstall))
        .collect();

    // The old control plane goes, including the legacy validator that called Service istiod.
    for expected in [
        "68-deployment_istio-system_istiod.yaml",
        "69-service_istio-system_istiod.yaml",
        "58-mutatingwebhookconfiguration_istio-sidecar-injector.yaml",
        "57-validatingwebhookconfiguration_istiod-istio-system.yaml",
        "57-validatingwebhookconfiguration_istio-validator-istio-system.yaml",
        "79-configmap_istio-system_istio.yaml",
    ] {
        assert!(
            deleted.contains(&expected),
            "{expected} not deleted: {deleted:#?}"
        );
    }
    // Never CRDs, never shared objects the new revision renders, never gateways (same names;
    // the gateway HPA moved from autoscaling/v2beta1 to v2beta2 and is still the same object).
    for d in &deleted {
        assert!(!d.contains("customresourcedefinition"), "{d}");
        assert!(!d.contains("istio-reader-service-account"), "{d}");
        assert!(
            !d.contains("gateway_")
                && !d.contains("ingressgateway")
                && !d.contains("egressgateway"),
            "{d}"
        );
    }
    assert!(!files
        .keys()
        .any(|k| k.starts_with(uninstall) && k.ends_with("Kustomization")));
    // The unrevisioned injector is switched off when the default tag moves.
    let neutralized =
        &files["05-default-tag-1-14-1/41-mutatingwebhookconfiguration_istio-sidecar-injector.yaml"];
    assert!(
        neutralized.contains("istio.io/deactivated: never-match"),
        "{neutralized}"
    );
    assert!(!neutralized.contains("caBundle"), "{neutralized}");
    let tree: String = files.keys().map(|k| format!("{k}\n")).collect();
    snapshot_settings().bind(|| insta::assert_snapshot!("recorded-old-side-tree", tree));
}

tests!(
    every_recording_parses_and_is_classified,
    compiles_an_upgrade_from_a_recorded_unrevisioned_install,
);
