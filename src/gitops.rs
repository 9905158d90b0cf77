//! GitOps: how every emitted object is prepared for Git (no null values, prune protection, Argo
//! CD sync waves), and the `argocd/` Applications and `flux/` Kustomizations that sync the phase
//! directories and `live/` with zero drift.
//!
//! Owns: which objects are prune-protected (CRDs, Namespaces, and the objects the new render
//! shares with the running install), the per-object annotations that say so, the ignore rules
//! for the webhook fields istiod changes at runtime (`caBundle`, the validators'
//! `failurePolicy`), and the layout of `argocd/` and `flux/`. Must not: decide phases or their
//! contents (that is `plan`), do any I/O, or write anything into a phase directory that
//! `kubectl apply -k`/`-f` or a GitOps directory scan of it would read: its files live in their
//! own top-level folders and none is named `Kustomization`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value as Json};
use serde_yaml::{Mapping, Value};

use crate::cluster::Change;
use crate::error::{Error, Result};
use crate::istio::{is_tag_object, REV_LABEL};
use crate::manifest::Object;
use crate::plan::{Phase, PhaseKind, Plan};

/// The folder of the Argo CD Applications.
pub const ARGOCD_DIR: &str = "argocd";
/// The folder of the Flux Kustomizations.
pub const FLUX_DIR: &str = "flux";
/// The directory of the live desired state (written only with a promote point).
pub const LIVE_DIR: &str = "live";
/// Stands for the Git repository: Argo CD's `repoURL`, Flux's `GitRepository` name.
pub const REPO_PLACEHOLDER: &str = "REPLACE_ME_REPO";
/// Stands for the bundle directory's path inside that repository.
pub const DIR_PLACEHOLDER: &str = "REPLACE_ME_DIR";

/// Argo CD's per-object sync options.
pub const ARGOCD_SYNC_OPTIONS: &str = "argocd.argoproj.io/sync-options";
/// Never pruned when it leaves Git, never deleted with its Application (argo-cd#17819:
/// `helm.sh/resource-policy: keep` stops neither).
pub const ARGOCD_KEEP: &str = "Prune=false,Delete=false";
/// Argo CD's sync wave, per object (inside an Application) and per Application.
pub const ARGOCD_SYNC_WAVE: &str = "argocd.argoproj.io/sync-wave";
/// Flux's per-object garbage-collection switch.
pub const FLUX_PRUNE: &str = "kustomize.toolkit.fluxcd.io/prune";
pub const FLUX_PRUNE_DISABLED: &str = "disabled";

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

/// Whether `object`, written by `phase`, must never be pruned or deleted by a GitOps controller:
/// CRDs (pruning one deletes every resource of its kind), Namespaces (the partial ones of
/// migrate phases are app teams' namespaces), and the objects the install and default-tag phases
/// apply that the running install already has under the same identity (shared base objects
/// such as `istio-reader-service-account`, the default tag and validator): removing the old
/// install's Application would otherwise prune them from under the new revision. Gateways are
/// not protected: `removeGateways` deletes them on purpose. The plan never deletes a protected
/// object (uninstall keeps what the new render holds, and never CRDs or Namespaces).
pub fn prune_protected(plan: &Plan, phase: &Phase, object: &Object) -> bool {
    let id = &object.id;
    if (id.kind == "CustomResourceDefinition" && id.group == "apiextensions.k8s.io")
        || (id.kind == "Namespace" && id.group.is_empty())
    {
        return true;
    }
    let shared_phase = match phase.kind {
        PhaseKind::Install => true,
        // Only the tag objects: the legacy injector it switches off is deleted by uninstall.
        PhaseKind::DefaultTag => is_tag_object(object),
        _ => false,
    };
    shared_phase
        && plan
            .states
            .first()
            .is_some_and(|s| s.objects.contains_key(id))
}

/// The object as it is written to Git: null values removed, CRDs in Argo CD sync wave -1 and
/// webhook configurations in wave 1 (after the workloads they call are healthy), and, when
/// `protected`, the annotations that stop Argo CD and Flux from pruning or deleting it.
pub fn for_git(object: &Object, protected: bool) -> Object {
    let mut o = object.clone();
    strip_nulls(&mut o.body);
    let mut add: Vec<(&str, &str)> = Vec::new();
    if let Some(wave) = object_sync_wave(&o) {
        add.push((ARGOCD_SYNC_WAVE, wave));
    }
    if protected {
        add.push((ARGOCD_SYNC_OPTIONS, ARGOCD_KEEP));
        add.push((FLUX_PRUNE, FLUX_PRUNE_DISABLED));
    }
    if !add.is_empty() {
        annotate(&mut o.body, &add);
    }
    o
}

fn object_sync_wave(o: &Object) -> Option<&'static str> {
    match (o.id.group.as_str(), o.id.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Some("-1"),
        (WEBHOOK_GROUP, MUTATING | VALIDATING) => Some("1"),
        _ => None,
    }
}

fn annotate(body: &mut Mapping, add: &[(&str, &str)]) {
    let Some(Value::Mapping(metadata)) = body.get_mut("metadata") else {
        return;
    };
    if !matches!(metadata.get("annotations"), Some(Value::Mapping(_))) {
        metadata.insert("annotations".into(), Value::Mapping(Mapping::new()));
    }
    if let Some(Value::Mapping(annotations)) = metadata.get_mut("annotations") {
        for (k, v) in add {
            annotations.insert((*k).into(), (*v).into());
        }
    }
}

/// Removes every mapping entry whose value is null, at any depth (istioctl renders gateway
/// Services with `annotations: null`; Argo CD shows a null map as perpetual drift, and a
/// client-side apply reads a null as "delete this field" and drops annotations others set).
pub fn strip_nulls(map: &mut Mapping) {
    map.retain(|_, v| !v.is_null());
    for v in map.values_mut() {
        strip_nulls_value(v);
    }
}

fn strip_nulls_value(v: &mut Value) {
    match v {
        Value::Mapping(m) => strip_nulls(m),
        Value::Sequence(items) => items.iter_mut().for_each(strip_nulls_value),
        Value::Tagged(t) => strip_nulls_value(&mut t.value),
        _ => {}
    }
}

/// The objects a phase directory holds (whole objects and partial Namespaces).
fn phase_objects(phase: &Phase) -> Vec<&Object> {
    phase
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Apply(o) => Some(o),
            _ => None,
        })
        .collect()
}

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
/// and one Kustomization per apply phase (the uninstall phase is a delete; in GitOps it is the
/// prune of `live/`), and one of each for `live/`.
pub fn files(plan: &Plan, header: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut previous: Option<&str> = None;
    for phase in &plan.phases {
        if phase.kind == PhaseKind::Uninstall {
            continue;
        }
        let objects = phase_objects(phase);
        let flipped = flipped_validators(objects.iter().copied());
        let rules = ignore_differences(
            has_kind(objects.iter().copied(), MUTATING),
            has_kind(objects.iter().copied(), VALIDATING),
            &flipped,
        );
        let app = application(plan, &phase.dir, Some(phase.index), rules, false);
        out.insert(
            format!("{ARGOCD_DIR}/{}.yaml", phase.dir),
            yaml_file(header, &app)?,
        );
        let ks = kustomization(plan, &phase.dir, previous, flux_patches(&flipped), false);
        out.insert(
            format!("{FLUX_DIR}/{}.yaml", phase.dir),
            yaml_file(header, &ks)?,
        );
        previous = Some(&phase.dir);
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

    fn object(yaml: &str) -> Object {
        let body: Mapping = serde_yaml::from_str(yaml).unwrap();
        Object::from_mapping(body).unwrap()
    }

    #[test]
    fn strip_nulls_removes_null_entries_at_any_depth() {
        let mut o = object(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: n\n  annotations: null\nspec:\n  ports:\n  - name: a\n    nodePort: ~\n",
        );
        strip_nulls(&mut o.body);
        let text = o.to_yaml().unwrap();
        assert!(!text.contains("null") && !text.contains('~'), "{text}");
        assert!(text.contains("name: a"), "{text}");
    }

    #[test]
    fn for_git_protects_and_orders() {
        let crd = object("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: a.b.io\n");
        let text = for_git(&crd, true).to_yaml().unwrap();
        assert!(text.contains("argocd.argoproj.io/sync-options: Prune=false,Delete=false"));
        assert!(text.contains("kustomize.toolkit.fluxcd.io/prune: disabled"));
        assert!(
            text.contains("argocd.argoproj.io/sync-wave: '-1'"),
            "{text}"
        );
        let svc = object("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: n\n  annotations: null\n");
        let text = for_git(&svc, false).to_yaml().unwrap();
        assert!(!text.contains("annotations"), "{text}");
    }

    fn vwc(name: &str, webhooks: usize) -> Object {
        let hooks: String = (0..webhooks)
            .map(|i| format!("- name: w{i}\n  failurePolicy: Ignore\n"))
            .collect();
        object(&format!("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: {name}\n  labels:\n    istio.io/rev: r\nwebhooks:\n{hooks}"))
    }

    fn phase(kind: PhaseKind, index: usize, changes: Vec<Change>) -> Phase {
        Phase {
            index,
            hop: 0,
            kind,
            name: kind.as_str().into(),
            dir: format!("{index:02}-{}", kind.as_str()),
            namespaces: Vec::new(),
            changes,
        }
    }

    fn plan(states: Vec<Vec<&Object>>, phases: Vec<Phase>) -> Plan {
        Plan {
            name: "p".into(),
            policy_path: "canary.yaml".into(),
            policy_sha256: String::new(),
            kubernetes_version: None,
            hops: Vec::new(),
            phases,
            states: states
                .into_iter()
                .map(crate::cluster::ClusterState::from_objects)
                .collect(),
            expected: Vec::new(),
            injection: Vec::new(),
            assumptions: Vec::new(),
            warnings: Vec::new(),
            deltas: Vec::new(),
            rollbacks: Vec::new(),
            rollback_injection: Vec::new(),
            promote: None,
        }
    }

    #[test]
    fn protection_covers_shared_and_moved_tag_objects_only() {
        let validator = vwc("istiod-default-validator", 1);
        let legacy = object("apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: istio-sidecar-injector\nwebhooks: []\n");
        let reader = object("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: istio-reader-service-account\n  namespace: istio-system\n");
        let own = object("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: istiod-2\n  namespace: istio-system\n");
        let gateway = object("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: istio-ingressgateway-service-account\n  namespace: istio-system\n");
        let p = plan(
            vec![vec![&validator, &legacy, &reader, &gateway]],
            Vec::new(),
        );
        let install = phase(PhaseKind::Install, 2, Vec::new());
        let gateways = phase(PhaseKind::Gateways, 4, Vec::new());
        let tag = phase(PhaseKind::DefaultTag, 5, Vec::new());
        assert!(prune_protected(&p, &install, &reader));
        assert!(!prune_protected(&p, &install, &own));
        assert!(!prune_protected(&p, &gateways, &gateway));
        assert!(prune_protected(&p, &tag, &validator));
        // The legacy injector the default-tag phase switches off is deleted later.
        assert!(!prune_protected(&p, &tag, &legacy));
    }

    #[test]
    fn live_patches_only_the_webhooks_every_version_has() {
        let old = vwc("istiod-default-validator", 2);
        let new = vwc("istiod-default-validator", 1);
        let p = plan(vec![vec![&old], vec![&new]], Vec::new());
        let out = files(&p, "").unwrap();
        let live = &out["flux/live.yaml"];
        assert!(live.contains("/webhooks/0/failurePolicy"), "{live}");
        assert!(!live.contains("/webhooks/1/failurePolicy"), "{live}");
        let app = &out["argocd/live.yaml"];
        assert!(app.contains("name: istiod-default-validator"), "{app}");
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
