//! The planner: from the policy and the two renders to an ordered list of phases, each an ordered
//! set of object changes over a mesh state. Pure: no files, no processes, no clock.
//!
//! Owns: which object goes in which phase, the apply order inside a phase, the namespace relabels,
//! the default-tag move (and neutralizing an unrevisioned injector), the deletion set, API
//! versions for delete stubs, and the safety invariants checked on the simulated mesh state after
//! every phase. Must not: read files, run istioctl, or produce text (that is `emit`).

use std::collections::{BTreeMap, BTreeSet};

use semver::Version;
use serde::Serialize;
use serde_yaml::{Mapping, Value};

use crate::error::{Error, Result};
use crate::manifest::{classify, str_at, Class, Object, ObjectId, RevisionContext};
use crate::policy::{Policy, Revision};
use crate::render::Rendered;

pub const REV_LABEL: &str = "istio.io/rev";
pub const INJECTION_LABEL: &str = "istio-injection";
/// The selector `istioctl tag set default` puts on a legacy injector to switch it off.
pub const NEVER_MATCH_LABEL: &str = "istio.io/deactivated";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseKind {
    Crds,
    Install,
    Migrate,
    Gateways,
    DefaultTag,
    Uninstall,
}

impl PhaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Crds => "crds",
            PhaseKind::Install => "install",
            PhaseKind::Migrate => "migrate",
            PhaseKind::Gateways => "gateways",
            PhaseKind::DefaultTag => "default-tag",
            PhaseKind::Uninstall => "uninstall",
        }
    }
}

/// A reference to an object to delete, with an API version current clusters serve.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeleteRef {
    pub api_version: String,
    pub id: ObjectId,
}

/// One step of the upgrade; `apply` and `delete` are in the order they must run.
#[derive(Debug, Clone)]
pub struct Phase {
    /// 1-based position.
    pub index: usize,
    pub kind: PhaseKind,
    /// `crds`, `install-1-14-1`, `migrate-canary`, …
    pub name: String,
    /// For `migrate` phases: the namespaces moved.
    pub namespaces: Vec<String>,
    pub apply: Vec<Object>,
    pub delete: Vec<DeleteRef>,
}

impl Phase {
    /// The phase's directory, e.g. `03-migrate-canary`.
    pub fn dir(&self) -> String {
        format!("{:02}-{}", self.index, self.name)
    }
}

/// One control plane as the plan sees it.
#[derive(Debug, Clone)]
pub struct PlanSide {
    pub version: Version,
    pub revision: Revision,
    pub istioctl_sha256: String,
    pub operator_path: String,
    pub operator_sha256: String,
    pub istio_namespace: String,
}

/// The whole upgrade.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub policy_path: String,
    pub policy_sha256: String,
    pub from: PlanSide,
    pub to: PlanSide,
    pub phases: Vec<Phase>,
}

/// The objects the mesh is made of at one point of the plan, by identity.
#[derive(Debug, Clone, Default)]
pub struct MeshState {
    pub objects: BTreeMap<ObjectId, Object>,
}

impl MeshState {
    fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Object>) -> Self {
        MeshState {
            objects: objects
                .into_iter()
                .map(|o| (o.id.clone(), o.clone()))
                .collect(),
        }
    }

    /// Advances the state past a phase: applied objects replace or add, deleted ones go.
    pub fn apply(&mut self, phase: &Phase) {
        for o in &phase.apply {
            self.objects.insert(o.id.clone(), o.clone());
        }
        for d in &phase.delete {
            self.objects.remove(&d.id);
        }
    }
}

/// Order of kinds inside an apply phase: namespaces and CRDs, then RBAC, then config, then
/// workloads, then webhooks (which must not point at a Service before it exists).
pub fn apply_rank(id: &ObjectId) -> u8 {
    match id.kind.as_str() {
        "CustomResourceDefinition" => 0,
        "Namespace" => 1,
        "ServiceAccount" => 10,
        "ClusterRole" => 11,
        "ClusterRoleBinding" => 12,
        "Role" => 13,
        "RoleBinding" => 14,
        "ConfigMap" | "Secret" => 20,
        _ if id.group.ends_with("istio.io") => 21,
        "Service" => 30,
        "Deployment" | "DaemonSet" | "StatefulSet" => 31,
        "PodDisruptionBudget" => 32,
        "HorizontalPodAutoscaler" => 33,
        "NetworkPolicy" => 34,
        "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding" => 40,
        "MutatingWebhookConfiguration" => 41,
        "ValidatingWebhookConfiguration" => 42,
        _ => 35,
    }
}

/// Deletion runs in reverse: webhooks first, so nothing points at a Service being removed.
pub fn delete_rank(id: &ObjectId) -> u8 {
    99 - apply_rank(id)
}

/// The API version a delete stub uses: one current clusters still serve, whatever the old
/// render said (HPA `autoscaling/v2beta1` is gone from Kubernetes 1.25, PDB `policy/v1beta1`
/// from 1.25).
pub fn served_api_version(object: &Object) -> String {
    match (object.id.group.as_str(), object.id.kind.as_str()) {
        ("autoscaling", "HorizontalPodAutoscaler") => "autoscaling/v2".to_string(),
        ("policy", "PodDisruptionBudget") => "policy/v1".to_string(),
        ("admissionregistration.k8s.io", _) => "admissionregistration.k8s.io/v1".to_string(),
        ("rbac.authorization.k8s.io", _) => "rbac.authorization.k8s.io/v1".to_string(),
        _ => object.api_version.clone(),
    }
}

fn sort_for_apply(objects: &mut [Object]) {
    objects.sort_by(|a, b| (apply_rank(&a.id), &a.id).cmp(&(apply_rank(&b.id), &b.id)));
}

/// Builds the plan from the policy and the renders of the old and the new revision. Pure: the
/// same inputs give the same plan.
pub fn plan(policy: &Policy, old: &Rendered, new: &Rendered) -> Result<Plan> {
    let new_ctx = RevisionContext {
        revision: new.revision.name(),
        istio_namespace: &new.istio_namespace,
    };
    let old_ctx = RevisionContext {
        revision: old.revision.name(),
        istio_namespace: &old.istio_namespace,
    };

    let mut by_class: BTreeMap<Class, Vec<Object>> = BTreeMap::new();
    for o in &new.objects {
        by_class
            .entry(classify(o, new_ctx))
            .or_default()
            .push(normalize(o));
    }
    let mut take = |c: Class| by_class.remove(&c).unwrap_or_default();
    let crds = take(Class::Crd);
    let mut install = take(Class::ControlPlane);
    install.extend(take(Class::Shared));
    let gateways = take(Class::Gateway);
    let tags = take(Class::Tag);

    // The new install must not change the running control plane in place.
    let old_control_plane: BTreeSet<&ObjectId> = old
        .objects
        .iter()
        .filter(|o| classify(o, old_ctx) == Class::ControlPlane)
        .map(|o| &o.id)
        .collect();
    if let Some(clash) = install.iter().find(|o| old_control_plane.contains(&o.id)) {
        return Err(Error::new(format!(
            "installing revision {} would overwrite {} of the running revision {}",
            new.revision, clash.id, old.revision
        ))
        .with_help("the two revisions must render disjoint control-plane objects: check the revision names and the IstioOperator specs"));
    }

    let mut phases: Vec<Phase> = Vec::new();

    push(
        &mut phases,
        PhaseKind::Crds,
        "crds".into(),
        vec![],
        crds,
        vec![],
    );
    push(
        &mut phases,
        PhaseKind::Install,
        format!("install-{}", new.revision),
        vec![],
        install,
        vec![],
    );
    for wave in &policy.waves {
        let namespaces = wave
            .namespaces
            .iter()
            .map(|ns| namespace_object(ns, &new.revision))
            .collect();
        push(
            &mut phases,
            PhaseKind::Migrate,
            format!("migrate-{}", wave.name),
            wave.namespaces.clone(),
            namespaces,
            vec![],
        );
    }
    if !gateways.is_empty() {
        push(
            &mut phases,
            PhaseKind::Gateways,
            format!("gateways-{}", new.revision),
            vec![],
            gateways,
            vec![],
        );
    }
    if policy.default_tag {
        let has_default_tag = tags.iter().any(|o| {
            o.id.kind == "MutatingWebhookConfiguration" && o.id.name == "istio-revision-tag-default"
        });
        if !has_default_tag {
            return Err(Error::new(format!(
                "istioctl {} rendered no istio-revision-tag-default for values.revisionTags=[default]",
                new.version
            ))
            .with_help("this istioctl cannot render revision tags offline; set defaultTag: false and move the tag with `istioctl tag set default` instead"));
        }
        let mut apply = tags.clone();
        if old.revision == Revision::Default {
            if let Some(injector) = old.objects.iter().find(|o| {
                o.id.kind == "MutatingWebhookConfiguration" && o.id.name == "istio-sidecar-injector"
            }) {
                apply.push(neutralize_injector(injector));
            }
        }
        push(
            &mut phases,
            PhaseKind::DefaultTag,
            format!("default-tag-{}", new.revision),
            vec![],
            apply,
            vec![],
        );
    }

    // The desired end state: every object the new render and the phases keep.
    let mut keep: BTreeSet<ObjectId> = new.objects.iter().map(|o| o.id.clone()).collect();
    for p in &phases {
        if p.kind == PhaseKind::Migrate {
            keep.extend(p.apply.iter().map(|o| o.id.clone()));
        }
    }
    if policy.uninstall_old {
        let mut delete: Vec<(u8, DeleteRef)> = old
            .objects
            .iter()
            .filter(|o| !keep.contains(&o.id))
            .filter(|o| o.id.kind != "CustomResourceDefinition" && o.id.kind != "Namespace")
            .map(|o| {
                (
                    delete_rank(&o.id),
                    DeleteRef {
                        api_version: served_api_version(o),
                        id: o.id.clone(),
                    },
                )
            })
            .collect();
        delete.sort();
        let delete = delete.into_iter().map(|(_, d)| d).collect();
        push(
            &mut phases,
            PhaseKind::Uninstall,
            format!("uninstall-{}", old.revision),
            vec![],
            vec![],
            delete,
        );
    }

    // Walk the mesh state through every phase and check the invariants after each.
    let mut state = MeshState::from_objects(&old.objects);
    let before = violations(&state);
    for p in &phases {
        state.apply(p);
        check_invariants(&state, &before, p)?;
    }

    Ok(Plan {
        name: policy.name.clone(),
        policy_path: policy
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        policy_sha256: policy.sha256.clone(),
        from: plan_side(&policy.from),
        to: plan_side(&policy.to),
        phases,
    })
}

fn push(
    phases: &mut Vec<Phase>,
    kind: PhaseKind,
    name: String,
    namespaces: Vec<String>,
    mut apply: Vec<Object>,
    delete: Vec<DeleteRef>,
) {
    sort_for_apply(&mut apply);
    let index = phases.len() + 1;
    phases.push(Phase {
        index,
        kind,
        name,
        namespaces,
        apply,
        delete,
    });
}

fn plan_side(side: &crate::policy::Side) -> PlanSide {
    PlanSide {
        version: side.version.clone(),
        revision: side.revision.clone(),
        istioctl_sha256: side.istioctl.sha256.clone(),
        operator_path: side.operator.declared.clone(),
        operator_sha256: side.operator.sha256.clone(),
        istio_namespace: side.operator.istio_namespace.clone(),
    }
}

/// The Namespace object a migration applies: `istio.io/rev` set to the new revision and
/// `istio-injection` explicitly null. With `kubectl apply` (client-side, three-way merge) a null
/// label in the applied configuration removes the label from the live object, whoever set it, so
/// a namespace never ends up with both labels (then `istio-injection` wins and the namespace does
/// not move, or gets no sidecar at all when it is `disabled`).
pub fn namespace_object(name: &str, revision: &Revision) -> Object {
    let mut labels = Mapping::new();
    labels.insert(INJECTION_LABEL.into(), Value::Null);
    labels.insert(
        REV_LABEL.into(),
        Value::String(revision.label().to_string()),
    );
    let mut metadata = Mapping::new();
    metadata.insert("name".into(), Value::String(name.to_string()));
    metadata.insert("labels".into(), Value::Mapping(labels));
    let mut body = Mapping::new();
    body.insert("apiVersion".into(), "v1".into());
    body.insert("kind".into(), "Namespace".into());
    body.insert("metadata".into(), Value::Mapping(metadata));
    Object {
        api_version: "v1".into(),
        id: ObjectId {
            group: String::new(),
            kind: "Namespace".into(),
            namespace: None,
            name: name.to_string(),
        },
        body,
    }
}

/// Prepares a rendered object for Git: no empty or runtime-patched `caBundle` (istiod patches it;
/// an empty one in Git would blank the live CA on every sync), and no `failurePolicy` on
/// `istiod-default-validator` (istiod flips it to Fail at runtime; the API server's default is
/// Fail too, so leaving it out is what the live object converges to).
pub fn normalize(object: &Object) -> Object {
    let mut o = object.clone();
    let is_webhook_config = matches!(
        o.id.kind.as_str(),
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"
    );
    if !is_webhook_config {
        return o;
    }
    let is_tag = crate::manifest::is_tag_object(&o);
    let drop_failure_policy = o.id.name == "istiod-default-validator";
    if let Some(Value::Sequence(webhooks)) = o.body.get_mut("webhooks") {
        for wh in webhooks.iter_mut() {
            let Value::Mapping(wh) = wh else { continue };
            if drop_failure_policy {
                wh.remove("failurePolicy");
            }
            if let Some(Value::Mapping(cc)) = wh.get_mut("clientConfig") {
                let empty = cc
                    .get("caBundle")
                    .and_then(Value::as_str)
                    .is_some_and(str::is_empty);
                if empty || is_tag {
                    cc.remove("caBundle");
                }
            }
        }
    }
    o
}

/// A legacy (unrevisioned) injector switched off the way `istioctl tag set default` does it:
/// every webhook's namespace and object selectors set to a label no object carries.
pub fn neutralize_injector(injector: &Object) -> Object {
    let mut o = normalize(injector);
    let never = || {
        let mut labels = Mapping::new();
        labels.insert(NEVER_MATCH_LABEL.into(), "never-match".into());
        let mut sel = Mapping::new();
        sel.insert("matchLabels".into(), Value::Mapping(labels));
        Value::Mapping(sel)
    };
    if let Some(Value::Sequence(webhooks)) = o.body.get_mut("webhooks") {
        for wh in webhooks.iter_mut() {
            if let Value::Mapping(wh) = wh {
                wh.insert("namespaceSelector".into(), never());
                wh.insert("objectSelector".into(), never());
            }
        }
    }
    o
}

/// The Services the webhooks of a webhook configuration call.
fn webhook_services(object: &Object) -> Vec<ObjectId> {
    let mut out = Vec::new();
    if let Some(Value::Sequence(webhooks)) = object.body.get("webhooks") {
        for wh in webhooks {
            let Value::Mapping(wh) = wh else { continue };
            let (Some(name), Some(ns)) = (
                str_at(wh, &["clientConfig", "service", "name"]),
                str_at(wh, &["clientConfig", "service", "namespace"]),
            ) else {
                continue;
            };
            out.push(ObjectId {
                group: String::new(),
                kind: "Service".into(),
                namespace: Some(ns.to_string()),
                name: name.to_string(),
            });
        }
    }
    out
}

/// One broken safety invariant in a mesh state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Violation {
    /// A namespace with both injection labels does not move to the revision it names.
    BothInjectionLabels { namespace: String },
    /// A webhook calls a Service that does not exist: a tag pointing at a deleted revision stops
    /// every pod it matches from starting.
    DanglingWebhook {
        webhook: ObjectId,
        service: ObjectId,
    },
}

fn violations(state: &MeshState) -> BTreeSet<Violation> {
    let mut out = BTreeSet::new();
    for o in state.objects.values() {
        if o.id.kind == "Namespace"
            && o.label(INJECTION_LABEL).is_some()
            && o.label(REV_LABEL).is_some()
        {
            out.insert(Violation::BothInjectionLabels {
                namespace: o.id.name.clone(),
            });
        }
        if matches!(
            o.id.kind.as_str(),
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"
        ) {
            for service in webhook_services(o) {
                if !state.objects.contains_key(&service) {
                    out.insert(Violation::DanglingWebhook {
                        webhook: o.id.clone(),
                        service,
                    });
                }
            }
        }
    }
    out
}

/// Checks that `phase` introduced no violation the starting state did not already have (a
/// render can carry a pre-existing one, such as 1.13's legacy `istiod-istio-system` validator
/// calling a Service a revisioned install never creates).
fn check_invariants(state: &MeshState, before: &BTreeSet<Violation>, phase: &Phase) -> Result<()> {
    let Some(v) = violations(state).into_iter().find(|v| !before.contains(v)) else {
        return Ok(());
    };
    Err(match v {
        Violation::BothInjectionLabels { namespace } => Error::new(format!(
            "after phase {}, namespace {namespace} would carry both istio-injection and istio.io/rev (conflicting labels: istio-injection wins, so the namespace would not move to the new revision, or get no sidecar at all)",
            phase.dir()
        )),
        Violation::DanglingWebhook { webhook, service } => Error::new(format!(
            "after phase {}, {webhook} would call Service {}/{}, which no longer exists",
            phase.dir(),
            service.namespace.as_deref().unwrap_or(""),
            service.name
        ))
        .with_help("move every tag off the old revision before deleting it (defaultTag: true), or keep it (uninstallOld: false)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_manifest;

    #[test]
    fn delete_order_is_reverse_of_apply_order() {
        let id = |kind: &str| ObjectId {
            group: String::new(),
            kind: kind.into(),
            namespace: None,
            name: "x".into(),
        };
        assert!(apply_rank(&id("ServiceAccount")) < apply_rank(&id("Deployment")));
        assert!(apply_rank(&id("Deployment")) < apply_rank(&id("MutatingWebhookConfiguration")));
        assert!(delete_rank(&id("MutatingWebhookConfiguration")) < delete_rank(&id("Deployment")));
    }

    #[test]
    fn stubs_use_served_api_versions() {
        let objs = parse_manifest("apiVersion: autoscaling/v2beta1\nkind: HorizontalPodAutoscaler\nmetadata: {name: a, namespace: n}\n---\napiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: a, namespace: n}\n", "t").unwrap();
        assert_eq!(served_api_version(&objs[0]), "autoscaling/v2");
        assert_eq!(served_api_version(&objs[1]), "policy/v1");
    }

    #[test]
    fn neutralized_injector_matches_nothing_and_has_no_ca_bundle() {
        let objs = parse_manifest("apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: istio-sidecar-injector}\nwebhooks:\n- name: namespace.sidecar-injector.istio.io\n  clientConfig: {caBundle: \"\", service: {name: istiod, namespace: istio-system}}\n  namespaceSelector: {matchLabels: {istio-injection: enabled}}\n", "t").unwrap();
        let out = neutralize_injector(&objs[0]).to_yaml().unwrap();
        assert!(out.contains("istio.io/deactivated: never-match"), "{out}");
        assert!(!out.contains("istio-injection: enabled"), "{out}");
        assert!(!out.contains("caBundle"), "{out}");
    }

    #[test]
    fn a_namespace_with_both_labels_breaks_the_invariant() {
        let mut ns = namespace_object("shop", &Revision::Named("1-14-1".into()));
        if let Some(Value::Mapping(labels)) = ns
            .body
            .get_mut("metadata")
            .and_then(|m| m.as_mapping_mut())
            .and_then(|m| m.get_mut("labels"))
        {
            labels.insert(INJECTION_LABEL.into(), "enabled".into());
        }
        let phase = Phase {
            index: 3,
            kind: PhaseKind::Migrate,
            name: "migrate-x".into(),
            namespaces: vec![],
            apply: vec![ns],
            delete: vec![],
        };
        let mut state = MeshState::default();
        state.apply(&phase);
        let err = check_invariants(&state, &BTreeSet::new(), &phase).unwrap_err();
        assert!(
            err.message
                .contains("both istio-injection and istio.io/rev"),
            "{}",
            err.message
        );
    }
}
