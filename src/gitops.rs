//! GitOps: the `argocd/` Applications and `flux/` Kustomizations that sync the phase directories
//! and `live/` with zero drift.
//!
//! Owns: the layout of `argocd/` and `flux/` (one Application and one Kustomization per
//! directory of the bundle that has a `Kustomization`, plus `live`), their sync order, and the
//! ignore rules for the webhook fields istiod changes at runtime (`caBundle`, the validators'
//! `failurePolicy`). Must not: decide phases or their contents (that is `plan`), decide anything
//! about an object written to Git (its path, annotations, sync wave or prune protection: that is
//! `layout`, and gitops only reads the bundle's objects), do any I/O, or write anything into a
//! phase directory that `kubectl apply -k`/`-f` or a GitOps directory scan of it would read: its
//! files live in their own top-level folders and none is named `Kustomization`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value as Json};
use serde_yaml::Value;

use crate::error::{Error, Result};
use crate::istio::REV_LABEL;
use crate::layout::{Bundle, ARGOCD_SYNC_WAVE, LIVE_DIR};
use crate::manifest::Object;
use crate::plan::Plan;

/// The folder of the Argo CD Applications.
pub const ARGOCD_DIR: &str = "argocd";
/// The folder of the Flux Kustomizations.
pub const FLUX_DIR: &str = "flux";
/// Stands for the Git repository: Argo CD's `repoURL`, Flux's `GitRepository` name.
pub const REPO_PLACEHOLDER: &str = "REPLACE_ME_REPO";
/// Stands for the bundle directory's path inside that repository.
pub const DIR_PLACEHOLDER: &str = "REPLACE_ME_DIR";

const WEBHOOK_GROUP: &str = "admissionregistration.k8s.io";
const MUTATING: &str = "MutatingWebhookConfiguration";
const VALIDATING: &str = "ValidatingWebhookConfiguration";
/// istiod patches the CA into every webhook it serves.
pub const CA_BUNDLE_PATH: &str = ".webhooks[]?.clientConfig.caBundle";
/// istiod's validation controller flips `Ignore` to `Fail` once it serves (istio/istio#52785).
pub const FAILURE_POLICY_PATH: &str = ".webhooks[]?.failurePolicy";

const ARGOCD_NAMESPACE: &str = "argocd";
const FLUX_NAMESPACE: &str = "flux-system";
const IN_CLUSTER: &str = "https://kubernetes.default.svc";
const FILL_IN: &str = "# Before applying it, replace REPLACE_ME_REPO and REPLACE_ME_DIR: see the README,\n# \"GitOps: Argo CD and Flux\".\n";

/// ValidatingWebhookConfigurations istiod's validation controller reconciles (those carrying an
/// `istio.io/rev` label: `istio-validator-<rev>-<ns>`, `istiod-default-validator`), with the
/// index of every webhook that sets a `failurePolicy`.
fn flipped_validators<'a>(
    objects: impl IntoIterator<Item = &'a Object>,
) -> BTreeMap<String, Vec<usize>> {
    let mut out = BTreeMap::new();
    for o in objects {
        if o.id.group != WEBHOOK_GROUP || o.id.kind != VALIDATING || o.label(REV_LABEL).is_none() {
            continue;
        }
        let indices = match o.body.get("webhooks") {
            Some(Value::Sequence(webhooks)) => webhooks
                .iter()
                .enumerate()
                .filter(|(_, w)| w.get("failurePolicy").is_some_and(|f| !f.is_null()))
                .map(|(i, _)| i)
                .collect(),
            _ => Vec::new(),
        };
        out.insert(o.id.name.clone(), indices);
    }
    out
}

fn has_kind<'a>(objects: impl IntoIterator<Item = &'a Object>, kind: &str) -> bool {
    objects
        .into_iter()
        .any(|o| o.id.group == WEBHOOK_GROUP && o.id.kind == kind)
}

/// Argo CD `ignoreDifferences` for a set of objects: the `caBundle` of every webhook, and the
/// `failurePolicy` of the validators istiod flips.
fn ignore_differences(
    mutating: bool,
    validating: bool,
    flipped: &BTreeMap<String, Vec<usize>>,
) -> Vec<Json> {
    let mut rules = Vec::new();
    if mutating {
        rules.push(json!({"group": WEBHOOK_GROUP, "kind": MUTATING, "jqPathExpressions": [CA_BUNDLE_PATH]}));
    }
    if validating {
        rules.push(json!({"group": WEBHOOK_GROUP, "kind": VALIDATING, "jqPathExpressions": [CA_BUNDLE_PATH]}));
    }
    for name in flipped.keys() {
        rules.push(json!({"group": WEBHOOK_GROUP, "kind": VALIDATING, "name": name, "jqPathExpressions": [FAILURE_POLICY_PATH]}));
    }
    rules
}

/// Flux `patches` that take `failurePolicy` out of the validators istiod flips before Flux
/// applies them: a field Flux does not apply is a field it does not own, so istiod's value
/// stands and no reconcile resets it.
fn flux_patches(flipped: &BTreeMap<String, Vec<usize>>) -> Vec<Json> {
    flipped
        .iter()
        .filter(|(_, indices)| !indices.is_empty())
        .map(|(name, indices)| {
            let ops: String = indices
                .iter()
                .map(|i| format!("- op: remove\n  path: /webhooks/{i}/failurePolicy\n"))
                .collect();
            json!({
                "target": {"group": WEBHOOK_GROUP, "version": "v1", "kind": VALIDATING, "name": name},
                "patch": ops,
            })
        })
        .collect()
}

fn application(plan: &Plan, dir: &str, wave: Option<usize>, rules: Vec<Json>, live: bool) -> Json {
    let mut metadata =
        json!({"name": format!("{}-{dir}", plan.name), "namespace": ARGOCD_NAMESPACE});
    if let Some(w) = wave {
        metadata["annotations"] = json!({ARGOCD_SYNC_WAVE: w.to_string()});
    }
    let mut options = vec!["RespectIgnoreDifferences=true", "ServerSideApply=true"];
    let mut sync = json!({});
    if live {
        options.push("PruneLast=true");
        sync["automated"] = json!({"prune": true, "selfHeal": true});
    }
    sync["syncOptions"] = json!(options);
    let mut spec = json!({
        "project": "default",
        "source": {"repoURL": REPO_PLACEHOLDER, "targetRevision": "HEAD", "path": format!("{DIR_PLACEHOLDER}/{dir}")},
        "destination": {"server": IN_CLUSTER},
        "syncPolicy": sync,
    });
    if !rules.is_empty() {
        spec["ignoreDifferences"] = Json::Array(rules);
    }
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": metadata, "spec": spec})
}

fn kustomization(
    plan: &Plan,
    dir: &str,
    depends_on: Option<&str>,
    patches: Vec<Json>,
    prune: bool,
) -> Json {
    let mut spec = json!({
        "interval": "10m",
        "timeout": "5m",
        "sourceRef": {"kind": "GitRepository", "name": REPO_PLACEHOLDER},
        "path": format!("./{DIR_PLACEHOLDER}/{dir}"),
        "prune": prune,
        "wait": true,
    });
    if let Some(d) = depends_on {
        spec["dependsOn"] = json!([{"name": format!("{}-{d}", plan.name)}]);
    }
    if !patches.is_empty() {
        spec["patches"] = Json::Array(patches);
    }
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": format!("{}-{dir}", plan.name), "namespace": FLUX_NAMESPACE},
        "spec": spec,
    })
}

fn yaml_file(header: &str, value: &Json) -> Result<String> {
    // Through the one YAML writer, so YAML 1.1 readers (kubectl, Argo CD, Flux) read the same.
    let value = serde_yaml::to_value(value)
        .map_err(|e| Error::new(format!("serializing a GitOps manifest: {e}")))?;
    let text = crate::yamlout::to_string(&value)?;
    Ok(format!("{header}{FILL_IN}{text}"))
}

/// The `argocd/` and `flux/` files (path -> text), each starting with `header`: one Application
/// and one Kustomization per phase directory that has a `Kustomization` (the uninstall phase
/// only deletes; in GitOps it is the prune of `live/`), in phase order, and one of each for
/// `live/`. The ignore rules of a phase are read from the objects the bundle writes there.
pub fn files(plan: &Plan, bundle: &Bundle, header: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut previous: Option<&str> = None;
    for (phase, dir) in plan.phases.iter().zip(&bundle.phases) {
        if dir.kustomization.is_none() {
            continue;
        }
        let objects: Vec<&Object> = dir.apply.iter().map(|f| &f.object).collect();
        let flipped = flipped_validators(objects.iter().copied());
        let rules = ignore_differences(
            has_kind(objects.iter().copied(), MUTATING),
            has_kind(objects.iter().copied(), VALIDATING),
            &flipped,
        );
        let app = application(plan, &dir.path, Some(phase.index), rules, false);
        out.insert(
            format!("{ARGOCD_DIR}/{}.yaml", dir.path),
            yaml_file(header, &app)?,
        );
        let ks = kustomization(plan, &dir.path, previous, flux_patches(&flipped), false);
        out.insert(
            format!("{FLUX_DIR}/{}.yaml", dir.path),
            yaml_file(header, &ks)?,
        );
        previous = Some(&dir.path);
    }

    // live/ holds the state at the promote point, which may be any state of the plan: the rules
    // cover every webhook configuration of every state.
    let all: Vec<&Object> = plan
        .states
        .iter()
        .flat_map(|s| s.objects.values())
        .collect();
    let mut flipped: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for state in &plan.states {
        for (name, indices) in flipped_validators(state.objects.values()) {
            // The same name in two states (the default validator before and after the move):
            // patch only the webhooks every version has, so no JSON patch misses its path.
            if seen.insert(name.clone()) {
                flipped.insert(name, indices);
            } else if let Some(have) = flipped.get_mut(&name) {
                have.retain(|i| indices.contains(i));
            }
        }
    }
    let rules = ignore_differences(
        has_kind(all.iter().copied(), MUTATING),
        has_kind(all.iter().copied(), VALIDATING),
        &flipped,
    );
    let app = application(plan, LIVE_DIR, None, rules, true);
    out.insert(
        format!("{ARGOCD_DIR}/{LIVE_DIR}.yaml"),
        yaml_file(header, &app)?,
    );
    let ks = kustomization(plan, LIVE_DIR, None, flux_patches(&flipped), true);
    out.insert(
        format!("{FLUX_DIR}/{LIVE_DIR}.yaml"),
        yaml_file(header, &ks)?,
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Change, DeleteRef};
    use crate::layout::fixtures::{object, phase, plan};
    use crate::layout::layout;
    use crate::plan::PhaseKind;

    fn vwc(name: &str, webhooks: usize) -> Object {
        let hooks: String = (0..webhooks)
            .map(|i| format!("- name: w{i}\n  failurePolicy: Ignore\n"))
            .collect();
        object(&format!("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: {name}\n  labels:\n    istio.io/rev: r\nwebhooks:\n{hooks}"))
    }

    #[test]
    fn live_patches_only_the_webhooks_every_version_has() {
        let old = vwc("istiod-default-validator", 2);
        let new = vwc("istiod-default-validator", 1);
        let p = plan(vec![vec![&old], vec![&new]], Vec::new());
        let out = files(&p, &layout(&p).unwrap(), "").unwrap();
        let live = &out["flux/live.yaml"];
        assert!(live.contains("/webhooks/0/failurePolicy"), "{live}");
        assert!(!live.contains("/webhooks/1/failurePolicy"), "{live}");
        let app = &out["argocd/live.yaml"];
        assert!(app.contains("name: istiod-default-validator"), "{app}");
    }

    #[test]
    fn one_application_per_directory_with_a_kustomization() {
        let new = vwc("istio-validator-r", 1);
        let mut uninstall = phase(PhaseKind::Uninstall, 2, Vec::new());
        uninstall.changes.push(Change::Delete(DeleteRef {
            api_version: "v1".into(),
            id: vwc("istio-validator-old", 1).id,
        }));
        let p = plan(
            vec![vec![], vec![&new], vec![&new]],
            vec![
                phase(PhaseKind::Install, 1, vec![Change::Apply(new.clone())]),
                uninstall,
            ],
        );
        let out = files(&p, &layout(&p).unwrap(), "").unwrap();
        let names: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "argocd/01-install.yaml",
                "argocd/live.yaml",
                "flux/01-install.yaml",
                "flux/live.yaml"
            ]
        );
        let app = &out["argocd/01-install.yaml"];
        assert!(app.contains("name: istio-validator-r"), "{app}");
        assert!(out["flux/01-install.yaml"].contains("/webhooks/0/failurePolicy"));
    }

    #[test]
    fn flux_patches_remove_each_failure_policy() {
        let vwc = object("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: v\n  labels:\n    istio.io/rev: r\nwebhooks:\n- name: a\n  failurePolicy: Ignore\n- name: b\n");
        let flipped = flipped_validators([&vwc]);
        assert_eq!(flipped.get("v"), Some(&vec![0]));
        let p = flux_patches(&flipped);
        assert_eq!(
            p[0]["patch"],
            Json::String("- op: remove\n  path: /webhooks/0/failurePolicy\n".into())
        );
    }
}
