//! Zero drift in Git, for every scenario: no emitted object holds a null or a `caBundle`; CRDs,
//! Namespaces and the objects the new render shares with the running install are protected from
//! pruning, and nothing a phase deletes is; `argocd/` and `flux/` hold one Application and one
//! Kustomization per apply phase plus `live`, with the ignore rules each phase's webhooks need;
//! and the Flux patches, built by kustomize over the phase directory, take out exactly the
//! `failurePolicy` istiod flips.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_yaml::Value;

use common::{fixture_dirs, fixtures, kubectl, read_tree, run};

fn compile(dir: &Path, out: &Path) -> BTreeMap<String, String> {
    let r = run(
        dir,
        &[
            "compile",
            "--policy",
            "canary.yaml",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    read_tree(out)
}

fn scenarios() -> Vec<std::path::PathBuf> {
    let mut v = vec![fixtures().join("example")];
    v.extend(fixture_dirs("scenarios"));
    v
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Every path (`a.b[0].c`) in `v` where `pred(key, value)` holds.
fn find(v: &Value, at: &str, pred: &dyn Fn(&str, &Value) -> bool, hits: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, x) in m {
                let k = k.as_str().unwrap_or("?");
                let here = format!("{at}.{k}");
                if pred(k, x) {
                    hits.push(here.clone());
                }
                find(x, &here, pred, hits);
            }
        }
        Value::Sequence(items) => {
            for (i, x) in items.iter().enumerate() {
                if x.is_null() {
                    hits.push(format!("{at}[{i}]"));
                }
                find(x, &format!("{at}[{i}]"), pred, hits);
            }
        }
        _ => {}
    }
}

fn annotation<'a>(doc: &'a Value, key: &str) -> Option<&'a str> {
    doc.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

fn is_protected(doc: &Value) -> bool {
    annotation(doc, "argocd.argoproj.io/sync-options")
        .is_some_and(|o| o.split(',').any(|x| x.trim() == "Prune=false"))
        && annotation(doc, "kustomize.toolkit.fluxcd.io/prune") == Some("disabled")
}

fn str_at<'a>(doc: &'a Value, path: &[&str]) -> &'a str {
    let mut v = doc;
    for p in path {
        v = &v[*p];
    }
    v.as_str().unwrap_or("")
}

/// Phase directories (`NN-name`) that hold objects to apply.
fn apply_dirs(files: &BTreeMap<String, String>) -> BTreeSet<String> {
    files
        .keys()
        .filter(|k| k.ends_with("/Kustomization") && k.starts_with(|c: char| c.is_ascii_digit()))
        .map(|k| k.trim_end_matches("/Kustomization").to_string())
        .collect()
}

#[test]
fn no_object_holds_a_null_or_a_ca_bundle() {
    for dir in scenarios() {
        let tmp = tempfile::tempdir().unwrap();
        let files = compile(&dir, &tmp.path().join("b"));
        for (path, text) in files.iter().filter(|(p, _)| p.ends_with(".yaml")) {
            for doc in docs(text) {
                let mut hits = Vec::new();
                find(&doc, "", &|k, v| v.is_null() || k == "caBundle", &mut hits);
                assert!(hits.is_empty(), "{}: {path}: {hits:?}", dir.display());
            }
        }
    }
}

#[test]
fn crds_namespaces_and_shared_objects_are_protected_from_pruning() {
    for dir in scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = tempfile::tempdir().unwrap();
        let files = compile(&dir, &tmp.path().join("b"));
        let plan: serde_json::Value = serde_json::from_str(&files["plan.json"]).unwrap();
        let new_rev = plan["to"]["revision"].as_str().unwrap().to_string();
        let deleted: BTreeSet<(String, String)> = plan["phases"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["delete"].as_array().unwrap().clone())
            .map(|d| {
                (
                    d["kind"].as_str().unwrap().to_string(),
                    d["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let mut protected = 0;
        for d in apply_dirs(&files) {
            for (path, text) in files
                .iter()
                .filter(|(p, _)| p.starts_with(&format!("{d}/")) && p.ends_with(".yaml"))
            {
                let doc = &docs(text)[0];
                let kind = str_at(doc, &["kind"]).to_string();
                let oname = str_at(doc, &["metadata", "name"]).to_string();
                let must = kind == "CustomResourceDefinition"
                    || kind == "Namespace"
                    || (d.contains("-install-") && oname == "istio-reader-service-account");
                if must {
                    assert!(is_protected(doc), "{name}: {path} is not protected");
                }
                if is_protected(doc) {
                    protected += 1;
                    // A protected object is never one the plan deletes, nor one of the new
                    // revision's own, nor a gateway's.
                    assert!(
                        !deleted.contains(&(kind.clone(), oname.clone())),
                        "{name}: {path} is protected but deleted"
                    );
                    assert!(!oname.contains(&new_rev), "{name}: {path} is per-revision");
                    assert!(!d.contains("-gateways-"), "{name}: {path}");
                }
            }
        }
        assert!(protected > 0, "{name}");
    }
}

#[test]
fn argocd_and_flux_sync_every_apply_phase_without_drift() {
    for dir in scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = tempfile::tempdir().unwrap();
        let files = compile(&dir, &tmp.path().join("b"));
        let phases = apply_dirs(&files);
        let expect: BTreeSet<String> = phases
            .iter()
            .cloned()
            .chain(["live".to_string()])
            .map(|p| format!("{p}.yaml"))
            .collect();
        for folder in ["argocd", "flux"] {
            let have: BTreeSet<String> = files
                .keys()
                .filter_map(|k| k.strip_prefix(&format!("{folder}/")))
                .map(String::from)
                .collect();
            assert_eq!(have, expect, "{name}: {folder}/");
        }
        let mut previous: Option<String> = None;
        for (i, phase) in phases.iter().enumerate() {
            let app = &docs(&files[&format!("argocd/{phase}.yaml")])[0];
            assert_eq!(
                str_at(app, &["spec", "source", "path"]),
                format!("REPLACE_ME_DIR/{phase}")
            );
            assert_eq!(
                annotation(app, "argocd.argoproj.io/sync-wave"),
                Some((i + 1).to_string().as_str()),
                "{name}: {phase}"
            );
            let options: Vec<&str> = app["spec"]["syncPolicy"]["syncOptions"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap())
                .collect();
            assert!(
                options.contains(&"RespectIgnoreDifferences=true"),
                "{name}: {phase}"
            );
            assert!(app["spec"]["syncPolicy"].get("automated").is_none());
            let rules: Vec<(String, String, String)> = app["spec"]["ignoreDifferences"]
                .as_sequence()
                .map(|s| s.to_vec())
                .unwrap_or_default()
                .iter()
                .flat_map(|r| {
                    let kind = str_at(r, &["kind"]).to_string();
                    let rname = str_at(r, &["name"]).to_string();
                    r["jqPathExpressions"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .map(move |p| {
                            (kind.clone(), rname.clone(), p.as_str().unwrap().to_string())
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            // The rules the phase's webhook configurations need, read from its files.
            let ks = &docs(&files[&format!("flux/{phase}.yaml")])[0];
            let patched: BTreeSet<String> = ks["spec"]["patches"]
                .as_sequence()
                .map(|s| s.to_vec())
                .unwrap_or_default()
                .iter()
                .map(|p| str_at(p, &["target", "name"]).to_string())
                .collect();
            for (path, text) in files
                .iter()
                .filter(|(p, _)| p.starts_with(&format!("{phase}/")) && p.ends_with(".yaml"))
            {
                let doc = &docs(text)[0];
                let kind = str_at(doc, &["kind"]);
                if !kind.ends_with("WebhookConfiguration") {
                    continue;
                }
                assert!(
                    rules.contains(&(
                        kind.to_string(),
                        String::new(),
                        ".webhooks[]?.clientConfig.caBundle".into()
                    )),
                    "{name}: {path}: no caBundle rule in {rules:?}"
                );
                let oname = str_at(doc, &["metadata", "name"]);
                let flips = kind == "ValidatingWebhookConfiguration"
                    && doc["metadata"]["labels"].get("istio.io/rev").is_some();
                if flips {
                    assert!(
                        rules.contains(&(
                            kind.to_string(),
                            oname.to_string(),
                            ".webhooks[]?.failurePolicy".into()
                        )),
                        "{name}: {path}: no failurePolicy rule in {rules:?}"
                    );
                    assert!(patched.contains(oname), "{name}: {path}: no Flux patch");
                }
                assert_eq!(
                    annotation(doc, "argocd.argoproj.io/sync-wave"),
                    Some("1"),
                    "{name}: {path}: webhooks go last"
                );
            }
            assert_eq!(ks["spec"]["prune"], Value::Bool(false), "{name}: {phase}");
            assert_eq!(ks["spec"]["wait"], Value::Bool(true), "{name}: {phase}");
            let depends: Vec<String> = ks["spec"]["dependsOn"]
                .as_sequence()
                .map(|s| s.to_vec())
                .unwrap_or_default()
                .iter()
                .map(|d| str_at(d, &["name"]).to_string())
                .collect();
            let plan_name = str_at(ks, &["metadata", "name"])
                .trim_end_matches(&format!("-{phase}"))
                .to_string();
            assert_eq!(
                depends,
                previous
                    .iter()
                    .map(|p| format!("{plan_name}-{p}"))
                    .collect::<Vec<_>>(),
                "{name}: {phase}"
            );
            previous = Some(phase.clone());
        }
        let live = &docs(&files["flux/live.yaml"])[0];
        assert_eq!(live["spec"]["prune"], Value::Bool(true), "{name}");
        assert_eq!(str_at(live, &["spec", "path"]), "./REPLACE_ME_DIR/live");
        let app = &docs(&files["argocd/live.yaml"])[0];
        assert_eq!(
            app["spec"]["syncPolicy"]["automated"]["prune"],
            Value::Bool(true)
        );
        // Nothing GitOps lands where a phase directory scan would read it.
        for path in files.keys() {
            let in_gitops = path.starts_with("argocd/") || path.starts_with("flux/");
            assert!(!(in_gitops && path.ends_with("Kustomization")), "{path}");
            if !in_gitops && path.ends_with(".yaml") {
                let kind = str_at(&docs(&files[path])[0], &["kind"]).to_string();
                assert!(kind != "Application" && kind != "Kustomization", "{path}");
            }
        }
    }
}

#[test]
fn flux_patches_drop_exactly_the_flipped_failure_policies() {
    let Some(kubectl) = kubectl("gitops: flux patches build") else {
        return;
    };
    for dir in scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("b");
        let files = compile(&dir, &out);
        for phase in apply_dirs(&files) {
            let ks = &docs(&files[&format!("flux/{phase}.yaml")])[0];
            let Some(patches) = ks["spec"]["patches"].as_sequence() else {
                continue;
            };
            // What Flux builds: the phase's own Kustomization plus the Flux object's patches.
            let overlay = tmp.path().join(format!("overlay-{phase}"));
            std::fs::create_dir(&overlay).unwrap();
            let mut k = serde_yaml::Mapping::new();
            k.insert(
                "resources".into(),
                vec![Value::from(format!("../b/{phase}"))].into(),
            );
            k.insert("patches".into(), Value::Sequence(patches.clone()));
            std::fs::write(
                overlay.join("kustomization.yaml"),
                serde_yaml::to_string(&k).unwrap(),
            )
            .unwrap();
            let built = Command::new(kubectl)
                .arg("kustomize")
                .arg(&overlay)
                .output()
                .unwrap();
            assert!(
                built.status.success(),
                "{name}: {phase}: {}",
                String::from_utf8_lossy(&built.stderr)
            );
            let text = String::from_utf8(built.stdout).unwrap();
            let targets: BTreeSet<&str> = patches
                .iter()
                .map(|p| str_at(p, &["target", "name"]))
                .collect();
            let mut seen = 0;
            for doc in docs(&text) {
                if str_at(&doc, &["kind"]) != "ValidatingWebhookConfiguration" {
                    continue;
                }
                let oname = str_at(&doc, &["metadata", "name"]);
                for wh in doc["webhooks"].as_sequence().unwrap() {
                    assert_eq!(
                        wh.get("failurePolicy").is_none(),
                        targets.contains(oname),
                        "{name}: {phase}: {oname}"
                    );
                    assert!(wh.get("rules").is_some(), "{name}: {phase}: {oname}");
                }
                seen += usize::from(targets.contains(oname));
            }
            assert_eq!(
                seen,
                targets.len(),
                "{name}: {phase}: a patch matched nothing"
            );
        }
    }
}
