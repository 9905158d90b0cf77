//! Zero drift in Git, for every scenario: no emitted object holds a null or a `caBundle`; CRDs,
//! Namespaces and the objects the new render shares with the running install are protected from
//! pruning, and nothing a phase deletes is; every Namespace and CRD is protected wherever it is
//! written (phases, rollbacks, `live/` at several promote points) and one identity has one Git
//! form everywhere; `argocd/` and `flux/` hold one Application and one Kustomization per apply
//! phase, plus `live` only when `live/` is written, with the ignore rules each phase's webhooks
//! need, and a `Kustomization` listing the phase objects; no phase object runs by itself (no
//! automated sync, `suspend: true`); every path a GitOps object or a kustomize file names exists
//! in the output, and every name fits a label value; and the Flux patches, built by kustomize
//! over the phase directory, take out exactly the `failurePolicy` istiod flips; and no Flux phase
//! left resumed holds an older version of what a later phase writes or deletes (PLAN.md says which
//! to suspend first).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_yaml::Value;

use common::{compile_into, fixture_dirs, fixtures, kubectl};

fn compile(dir: &Path, out: &Path) -> BTreeMap<String, String> {
    compile_into(dir, out, &[])
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

/// The identity of an object document: API group, kind, namespace, name.
fn identity(doc: &Value) -> (String, String, String, String) {
    let api_version = str_at(doc, &["apiVersion"]);
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    (
        group.to_string(),
        str_at(doc, &["kind"]).to_string(),
        str_at(doc, &["metadata", "namespace"]).to_string(),
        str_at(doc, &["metadata", "name"]).to_string(),
    )
}

/// The document without the metadata its Git form adds (sync wave, prune protection).
fn without_git_metadata(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(Value::Mapping(annotations)) = doc
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
    {
        for key in [
            "argocd.argoproj.io/sync-wave",
            "argocd.argoproj.io/sync-options",
            "kustomize.toolkit.fluxcd.io/prune",
        ] {
            annotations.remove(key);
        }
    }
    if let Some(Value::Mapping(metadata)) = doc.get_mut("metadata") {
        if metadata
            .get("annotations")
            .and_then(Value::as_mapping)
            .is_some_and(|a| a.is_empty())
        {
            metadata.remove("annotations");
        }
    }
    doc
}

/// A file's text without its comment header.
fn body_text(text: &str) -> String {
    text.lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The delete stubs `plan.json` lists (phase and rollback), by path.
fn stub_paths(plan: &serde_json::Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for phase in plan["phases"].as_array().unwrap() {
        for d in phase["delete"].as_array().unwrap() {
            out.insert(format!(
                "{}/{}",
                phase["dir"].as_str().unwrap(),
                d["file"].as_str().unwrap()
            ));
        }
        if let Some(rb) = phase.get("rollback").filter(|r| !r.is_null()) {
            for d in rb["delete"].as_array().unwrap() {
                out.insert(format!(
                    "{}/{}",
                    rb["dir"].as_str().unwrap(),
                    d["file"].as_str().unwrap()
                ));
            }
        }
    }
    out
}

/// Checks one compiled output: every Namespace and CRD file anywhere (phases, rollbacks,
/// `live/`) is protected and none is a delete stub; protection is the same for every file of
/// one identity; and files of one identity with the same content are the same bytes (header
/// aside), wherever they are written.
fn check_one_git_form_per_identity(what: &str, files: &BTreeMap<String, String>) -> usize {
    let plan: serde_json::Value = serde_json::from_str(&files["plan.json"]).unwrap();
    let stubs = stub_paths(&plan);
    type Id = (String, String, String, String);
    let mut by_id: BTreeMap<Id, Vec<(&String, Value, String)>> = BTreeMap::new();
    for (path, text) in files {
        let gitops = path.starts_with("argocd/") || path.starts_with("flux/");
        if gitops || !path.ends_with(".yaml") {
            continue;
        }
        let doc = docs(text).remove(0);
        let id = identity(&doc);
        let must = id.1 == "Namespace" || id.1 == "CustomResourceDefinition";
        if stubs.contains(path) {
            assert!(!must, "{what}: {path}: the plan deletes a {}", id.1);
            continue;
        }
        if must {
            assert!(
                is_protected(&doc),
                "{what}: {path} is not protected from pruning"
            );
        }
        by_id
            .entry(id)
            .or_default()
            .push((path, doc, body_text(text)));
    }
    let mut live = 0;
    for (id, copies) in &by_id {
        let (first, doc, _) = &copies[0];
        for (path, other, text) in copies {
            live += usize::from(path.starts_with("live/"));
            assert_eq!(
                is_protected(other),
                is_protected(doc),
                "{what}: {id:?}: protected in {first} but not in {path}, or the reverse"
            );
            for (path2, other2, text2) in copies {
                if without_git_metadata(other) == without_git_metadata(other2) {
                    assert_eq!(
                        text, text2,
                        "{what}: {id:?} has one content but two Git forms: {path} and {path2}"
                    );
                }
            }
        }
    }
    live
}

fn every_copy_of_an_object_has_one_git_form_in_phases_rollbacks_and_live() {
    for dir in scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = tempfile::tempdir().unwrap();
        let files = compile(&dir, &tmp.path().join("b"));
        let plan: serde_json::Value = serde_json::from_str(&files["plan.json"]).unwrap();
        let phases = plan["phases"].as_array().unwrap().len();
        assert!(
            files
                .keys()
                .any(|p| p.starts_with("rollback/") && p.contains("namespace_")),
            "{name}: no rollback relabels a namespace"
        );
        check_one_git_form_per_identity(&name, &files);
        // The example at every promote point, each scenario after its install and at its end.
        let points: Vec<usize> = if name == "example" {
            (1..=phases).collect()
        } else {
            vec![2, phases]
        };
        for n in points {
            let out = tmp.path().join(format!("p{n}"));
            let files = compile_into(&dir, &out, &["--promote", &n.to_string()]);
            let what = format!("{name} --promote {n}");
            let live = check_one_git_form_per_identity(&what, &files);
            assert!(live > 0, "{what}: no live/");
            assert!(
                files
                    .iter()
                    .any(|(p, t)| p.starts_with("live/01-namespace_") && t.contains("Prune=false")),
                "{what}: no protected Namespace in live/"
            );
        }
    }
}

/// The bundle's path inside the repository as the GitOps objects write it before a directory:
/// `spec.gitops.path` from the scenario's policy (`.` is the root), else the placeholder.
fn repo_prefix(dir: &Path) -> String {
    let policy: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("canary.yaml")).unwrap()).unwrap();
    match policy["spec"]
        .get("gitops")
        .and_then(|g| g.get("path"))
        .and_then(Value::as_str)
    {
        None => "${GITOPS_PATH}/".to_string(),
        Some(".") => String::new(),
        Some(p) => format!("{p}/"),
    }
}

/// What a kustomize file lists under `resources`.
fn resources(text: &str) -> Vec<String> {
    docs(text)[0]["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

fn argocd_and_flux_sync_every_apply_phase_without_drift() {
    for dir in scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let prefix = repo_prefix(&dir);
        let tmp = tempfile::tempdir().unwrap();
        let files = compile(&dir, &tmp.path().join("b"));
        let phases = apply_dirs(&files);
        let has_live = files.contains_key("live/Kustomization");
        let objects: BTreeSet<String> = phases.iter().map(|p| format!("{p}.yaml")).collect();
        let mut expect = objects.clone();
        expect.insert("Kustomization".to_string());
        if has_live {
            expect.insert("live.yaml".to_string());
        }
        for folder in ["argocd", "flux"] {
            let have: BTreeSet<String> = files
                .keys()
                .filter_map(|k| k.strip_prefix(&format!("{folder}/")))
                .map(String::from)
                .collect();
            assert_eq!(have, expect, "{name}: {folder}/");
            // The folder's kustomize file lists the phase objects, never live.yaml.
            let listed = resources(&files[&format!("{folder}/Kustomization")]);
            assert_eq!(
                listed.iter().cloned().collect::<BTreeSet<_>>(),
                objects,
                "{name}: {folder}/Kustomization"
            );
        }
        let mut previous: Option<String> = None;
        for phase in &phases {
            let app = &docs(&files[&format!("argocd/{phase}.yaml")])[0];
            assert_eq!(
                str_at(app, &["spec", "source", "path"]),
                format!("{prefix}{phase}")
            );
            // The phase's own number (an uninstall between two hops has no Application, so the
            // waves are ordered, not consecutive).
            let number: usize = phase.split('-').next().unwrap().parse().unwrap();
            assert_eq!(
                annotation(app, "argocd.argoproj.io/sync-wave"),
                Some(number.to_string().as_str()),
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
            assert_eq!(str_at(ks, &["spec", "path"]), format!("./{prefix}{phase}"));
            let depends: Vec<String> = ks["spec"]["dependsOn"]
                .as_sequence()
                .map(|s| s.to_vec())
                .unwrap_or_default()
                .iter()
                .map(|d| str_at(d, &["name"]).to_string())
                .collect();
            // Each phase after the one before it, by that one's (possibly shortened) name.
            assert_eq!(
                depends,
                previous.iter().cloned().collect::<Vec<_>>(),
                "{name}: {phase}"
            );
            let ks_name = str_at(ks, &["metadata", "name"]).to_string();
            assert_eq!(
                str_at(app, &["metadata", "name"]),
                ks_name,
                "{name}: {phase}"
            );
            previous = Some(ks_name);
        }
        if has_live {
            let live = &docs(&files["flux/live.yaml"])[0];
            assert_eq!(live["spec"]["prune"], Value::Bool(true), "{name}");
            assert_eq!(str_at(live, &["spec", "path"]), format!("./{prefix}live"));
            let app = &docs(&files["argocd/live.yaml"])[0];
            assert_eq!(
                app["spec"]["syncPolicy"]["automated"]["prune"],
                Value::Bool(true)
            );
        }
        // Nothing GitOps lands where a phase directory scan would read it.
        for path in files.keys() {
            let in_gitops = path.starts_with("argocd/") || path.starts_with("flux/");
            if !in_gitops && path.ends_with(".yaml") {
                let kind = str_at(&docs(&files[path])[0], &["kind"]).to_string();
                assert!(kind != "Application" && kind != "Kustomization", "{path}");
            }
        }
    }
}

/// A relative path with `.` and `..` segments resolved (`None` when it leaves the root).
fn normalize(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            s => out.push(s),
        }
    }
    Some(out.join("/"))
}

/// Checks one compiled output: every path an Application or Flux Kustomization points at is a
/// directory of the output with a kustomize file, and every `resources` entry of every kustomize
/// file exists; every phase object runs nothing by itself; names fit a label value.
fn check_no_dangling_gitops_paths(what: &str, prefix: &str, files: &BTreeMap<String, String>) {
    let is_dir = |d: &str| files.keys().any(|k| k.starts_with(&format!("{d}/")));
    let mut names = BTreeSet::new();
    let mut depends = Vec::new();
    let mut pointed = 0;
    for (path, text) in files {
        let (folder, file) = match path.split_once('/') {
            Some((f @ ("argocd" | "flux"), file)) if file.ends_with(".yaml") => (f, file),
            _ => continue,
        };
        let doc = &docs(text)[0];
        let target = if folder == "argocd" {
            str_at(doc, &["spec", "source", "path"]).to_string()
        } else {
            let p = str_at(doc, &["spec", "path"]);
            p.strip_prefix("./")
                .unwrap_or_else(|| panic!("{what}: {path}: {p} does not start with ./"))
                .to_string()
        };
        let dir = target
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{what}: {path}: {target} is not under {prefix:?}"));
        assert!(
            files.contains_key(&format!("{dir}/Kustomization")),
            "{what}: {path} points at {dir}/, which the output does not hold (or without a Kustomization)"
        );
        pointed += 1;
        let name = str_at(doc, &["metadata", "name"]).to_string();
        assert!(
            name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && name.ends_with(|c: char| c.is_ascii_alphanumeric()),
            "{what}: {path}: name {name}"
        );
        if folder == "flux" {
            assert!(
                names.insert(name),
                "{what}: {path}: a second object with its name"
            );
            for d in doc["spec"]["dependsOn"].as_sequence().into_iter().flatten() {
                depends.push((path.clone(), str_at(d, &["name"]).to_string()));
            }
        }
        // A phase object (any but live.yaml) runs nothing by itself.
        if file != "live.yaml" {
            if folder == "argocd" {
                assert!(
                    doc["spec"]["syncPolicy"].get("automated").is_none(),
                    "{what}: {path} syncs by itself"
                );
            } else {
                assert_eq!(
                    doc["spec"]["suspend"],
                    Value::Bool(true),
                    "{what}: {path} is not suspended"
                );
            }
        }
    }
    assert!(pointed > 0, "{what}: no GitOps object");
    for (path, d) in depends {
        assert!(
            names.contains(&d),
            "{what}: {path} depends on {d}, which flux/ does not hold"
        );
    }
    // Every resource of every kustomize file exists, relative to its directory.
    for (path, text) in files.iter().filter(|(p, _)| p.ends_with("Kustomization")) {
        let base = path.rsplit_once('/').map_or("", |(d, _)| d);
        for r in resources(text) {
            let target = normalize(&format!("{base}/{r}"))
                .unwrap_or_else(|| panic!("{what}: {path}: {r} leaves the output"));
            assert!(
                files.contains_key(&target) || is_dir(&target),
                "{what}: {path} lists {r}, which the output does not hold"
            );
        }
    }
    // No GitOps file for a live/ that is not written.
    if !files.contains_key("live/Kustomization") {
        for folder in ["argocd", "flux"] {
            let live = format!("{folder}/live.yaml");
            assert!(!files.contains_key(&live), "{what}: {live} without live/");
        }
    }
}

fn every_path_a_gitops_object_or_kustomization_names_exists() {
    for dir in scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let prefix = repo_prefix(&dir);
        let tmp = tempfile::tempdir().unwrap();
        check_no_dangling_gitops_paths(&name, &prefix, &compile(&dir, &tmp.path().join("b")));
        // At a promote point, so live/ and both live.yaml files are written.
        let files = compile_into(&dir, &tmp.path().join("p"), &["--promote", "2"]);
        assert!(files.contains_key("flux/live.yaml"), "{name}");
        check_no_dangling_gitops_paths(&format!("{name} --promote 2"), &prefix, &files);
    }
}

fn flux_patches_drop_exactly_the_flipped_failure_policies() {
    let Some(kubectl) = kubectl("kustomize build of the Flux patches") else {
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

/// What a phase's files write, by identity (group, kind, namespace, name).
type Written = BTreeMap<(String, String, String, String), Value>;

/// Under Flux a resumed phase re-applies its files every interval (one field manager for every
/// Kustomization, `prune: false`). Replayed from the files alone, for every scenario: before a
/// phase runs, every earlier phase still resumed whose files hold an object this phase writes
/// differently or deletes must be among those PLAN.md and plan.json say to suspend first, and
/// the commands are in PLAN.md.
fn no_resumed_flux_phase_holds_an_older_version_of_what_a_later_phase_writes() {
    let out = tempfile::tempdir().unwrap();
    let mut suspends = 0;
    for dir in scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let files = compile(&dir, &out.path().join(&name));
        let plan: serde_json::Value = serde_json::from_str(&files["plan.json"]).unwrap();
        let written =
            |phase: &serde_json::Value| -> BTreeMap<(String, String, String, String), Value> {
                let pdir = phase["dir"].as_str().unwrap();
                let mut m = BTreeMap::new();
                for key in ["apply", "patch"] {
                    for e in phase[key].as_array().into_iter().flatten() {
                        let Some(file) = e["file"].as_str() else {
                            continue;
                        };
                        for doc in docs(&files[&format!("{pdir}/{file}")]) {
                            m.insert(identity(&doc), without_git_metadata(&doc));
                        }
                    }
                }
                m
            };
        let mut resumed: Vec<(String, Written)> = Vec::new();
        for phase in plan["phases"].as_array().unwrap() {
            let pdir = phase["dir"].as_str().unwrap().to_string();
            let mine = written(phase);
            let deleted: BTreeSet<(String, String, String, String)> = phase["delete"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    let file = d["file"].as_str().unwrap();
                    identity(&docs(&files[&format!("{pdir}/{file}")])[0])
                })
                .collect();
            let suspend: BTreeSet<String> = phase["fluxSuspend"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| d.as_str().unwrap().to_string())
                .collect();
            for (q, theirs) in &resumed {
                let conflict = theirs.iter().any(|(id, doc)| {
                    deleted.contains(id) || mine.get(id).is_some_and(|m| m != doc)
                });
                assert_eq!(
                    conflict,
                    suspend.contains(q),
                    "{name}: {pdir} and the resumed {q} (suspend listed: {suspend:?})"
                );
            }
            for q in &suspend {
                assert!(
                    files["PLAN.md"].contains(&format!("flux suspend kustomization {name}-{q} ")),
                    "{name}: PLAN.md does not suspend {q} before {pdir}"
                );
            }
            suspends += suspend.len();
            resumed.retain(|(q, _)| !suspend.contains(q));
            if !mine.is_empty() {
                resumed.push((pdir, mine));
            }
        }
    }
    // Several scenarios (three hops, canary gateways) have phases that supersede earlier ones.
    assert!(suspends > 3, "{suspends}");
}

tests!(
    no_object_holds_a_null_or_a_ca_bundle,
    crds_namespaces_and_shared_objects_are_protected_from_pruning,
    every_copy_of_an_object_has_one_git_form_in_phases_rollbacks_and_live,
    argocd_and_flux_sync_every_apply_phase_without_drift,
    every_path_a_gitops_object_or_kustomization_names_exists,
    flux_patches_drop_exactly_the_flipped_failure_policies,
    no_resumed_flux_phase_holds_an_older_version_of_what_a_later_phase_writes,
);
