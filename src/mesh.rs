//! The simulated cluster: `MeshState` (the objects the plan knows, by identity), the `Change`s a
//! phase makes to it (apply an object, merge labels, delete), and the evaluation of a state the
//! way kube-apiserver would: which injector webhook a pod created in a namespace is sent to, which
//! Service a webhook calls and which istiod Deployment that Service reaches, and what every object
//! still references.
//!
//! Owns: applying changes with the documented applier's semantics (whole-object apply for the
//! objects the tool renders, label merge for patches, server-side defaults of webhook
//! configurations), and the safety `Violation`s of one state. Must not: decide phases, read
//! files, run processes, or produce text for users beyond the violations' descriptions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_yaml::{Mapping, Value};

use crate::k8s;
use crate::manifest::{str_at, value_at, Object, ObjectId};
use crate::selector::{webhook_service, Webhook};

pub const REV_LABEL: &str = "istio.io/rev";
pub const INJECTION_LABEL: &str = "istio-injection";
/// The immutable label kube-apiserver (1.21+) sets on every namespace to its name.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// How a change reaches the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// A file in the phase directory, applied with the directory (`kubectl apply -k`).
    File,
    /// An exact command the phase runs after applying its directory.
    Command(String),
}

/// An object to delete, with an API version the target cluster serves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeleteRef {
    pub api_version: String,
    pub id: ObjectId,
}

/// One change a phase makes to the cluster.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create or update a whole object (the tool owns every field it writes).
    Apply(Object),
    /// Merge into an existing object's labels: set these, remove those. Nothing else changes.
    Labels {
        id: ObjectId,
        api_version: String,
        set: BTreeMap<String, String>,
        remove: BTreeSet<String>,
        via: Via,
    },
    /// Delete an object.
    Delete(DeleteRef),
}

impl Change {
    pub fn id(&self) -> &ObjectId {
        match self {
            Change::Apply(o) => &o.id,
            Change::Labels { id, .. } => id,
            Change::Delete(d) => &d.id,
        }
    }
}

/// The objects the mesh is made of at one point of the plan, by identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeshState {
    pub objects: BTreeMap<ObjectId, Object>,
}

/// An object as kube-apiserver stores it after a create or update: webhook configurations get
/// their defaulted fields.
pub fn as_stored(object: &Object) -> Object {
    let mut o = object.clone();
    k8s::with_webhook_defaults(&o.id.kind, &mut o.body);
    o
}

impl MeshState {
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Object>) -> Self {
        MeshState {
            objects: objects
                .into_iter()
                .map(|o| (o.id.clone(), as_stored(o)))
                .collect(),
        }
    }

    /// Applies one change. A label change on an object the state lacks creates nothing (the
    /// command would fail): the invariants then report the namespace as not injected.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Apply(o) => {
                self.objects.insert(o.id.clone(), as_stored(o));
            }
            Change::Labels {
                id, set, remove, ..
            } => {
                if let Some(o) = self.objects.get_mut(id) {
                    merge_labels(o, set, remove);
                }
            }
            Change::Delete(d) => {
                self.objects.remove(&d.id);
            }
        }
    }

    pub fn labels(&self, id: &ObjectId) -> Option<BTreeMap<String, String>> {
        self.objects.get(id).map(Object::labels)
    }

    /// The injector webhooks kube-apiserver calls for a pod with `pod_labels` created in
    /// namespace `ns`, in the state's order. Neutralized injectors are evaluated like any other.
    pub fn injectors(
        &self,
        ns_labels: &BTreeMap<String, String>,
        pod_labels: &BTreeMap<String, String>,
    ) -> Vec<Injection> {
        self.injector_webhooks().matching(ns_labels, pod_labels)
    }

    /// Every injector webhook of the state, parsed once and resolved to where it leads, for
    /// evaluating many namespaces against the same state.
    pub fn injector_webhooks(&self) -> InjectorWebhooks {
        let mut out = Vec::new();
        for o in self.objects.values() {
            if o.id.kind != "MutatingWebhookConfiguration" {
                continue;
            }
            let Some(Value::Sequence(webhooks)) = o.body.get("webhooks") else {
                continue;
            };
            for wh in webhooks {
                let Value::Mapping(wh) = wh else { continue };
                // An invalid webhook is rejected by the API server at create time; such a
                // webhook cannot exist, so it calls nothing.
                let Ok(parsed) = Webhook::parse(wh) else {
                    continue;
                };
                if !parsed.is_sidecar_injector() {
                    continue;
                }
                let injection = self.injection(&o.id, &parsed.name, wh);
                out.push((parsed, injection));
            }
        }
        InjectorWebhooks(out)
    }

    fn injection(&self, config: &ObjectId, webhook: &str, wh: &Mapping) -> Injection {
        let service = webhook_service(wh).map(|(ns, name)| service_id(&ns, &name));
        let target = match &service {
            None => Target::NoService,
            Some(svc) if !self.objects.contains_key(svc) => Target::MissingService(svc.clone()),
            Some(svc) => match self.istiod_revisions(svc).into_iter().next() {
                Some(rev) => Target::Revision(rev),
                None => Target::NoIstiod(svc.clone()),
            },
        };
        Injection {
            config: config.name.clone(),
            webhook: webhook.to_string(),
            target,
        }
    }

    /// The revisions of the istiod Deployments a Service selects (same namespace, selector
    /// matching the pod template's labels).
    pub fn istiod_revisions(&self, service: &ObjectId) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Some(svc) = self.objects.get(service) else {
            return out;
        };
        let Some(Value::Mapping(selector)) = value_at(&svc.body, &["spec", "selector"]) else {
            return out;
        };
        let selector: BTreeMap<String, String> = selector
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar(v)?)))
            .collect();
        if selector.is_empty() {
            return out;
        }
        for o in self.objects.values() {
            if o.id.kind != "Deployment" || o.id.namespace != service.namespace || !is_istiod(o) {
                continue;
            }
            let pod = pod_template_labels(o);
            if selector.iter().all(|(k, v)| pod.get(k) == Some(v)) {
                out.insert(
                    pod.get(REV_LABEL)
                        .cloned()
                        .unwrap_or_else(|| "default".to_string()),
                );
            }
        }
        out
    }

    /// The revision a webhook configuration's webhooks reach (the first reachable one), for
    /// validators and tags.
    pub fn webhook_config_revision(&self, id: &ObjectId) -> Option<String> {
        let o = self.objects.get(id)?;
        let Some(Value::Sequence(webhooks)) = o.body.get("webhooks") else {
            return None;
        };
        webhooks.iter().find_map(|wh| {
            let svc = webhook_service(wh.as_mapping()?)?;
            self.istiod_revisions(&service_id(&svc.0, &svc.1))
                .into_iter()
                .next()
        })
    }

    /// Which revision injects pods of a namespace labelled only `istio-injection=enabled`: what
    /// the "default" revision is in this state.
    pub fn default_revision(&self) -> Option<String> {
        let mut labels = BTreeMap::new();
        labels.insert(INJECTION_LABEL.to_string(), "enabled".to_string());
        labels.insert(NAME_LABEL.to_string(), "istio-canary-probe".to_string());
        let found = self.injectors(&labels, &BTreeMap::new());
        match found.as_slice() {
            [one] => match &one.target {
                Target::Revision(r) => Some(r.clone()),
                _ => None,
            },
            _ => None,
        }
    }
}

fn merge_labels(o: &mut Object, set: &BTreeMap<String, String>, remove: &BTreeSet<String>) {
    let metadata = o
        .body
        .entry("metadata".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    let Value::Mapping(metadata) = metadata else {
        return;
    };
    let labels = metadata
        .entry("labels".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !labels.is_mapping() {
        *labels = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(labels) = labels else {
        return;
    };
    for (k, v) in set {
        labels.insert(k.as_str().into(), v.as_str().into());
    }
    for k in remove {
        labels.remove(k.as_str());
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub fn service_id(namespace: &str, name: &str) -> ObjectId {
    ObjectId {
        group: String::new(),
        kind: "Service".into(),
        namespace: Some(namespace.to_string()),
        name: name.to_string(),
    }
}

pub fn namespace_id(name: &str) -> ObjectId {
    ObjectId {
        group: String::new(),
        kind: "Namespace".into(),
        namespace: None,
        name: name.to_string(),
    }
}

/// A Namespace object with exactly these labels (plus the name label the API server adds).
pub fn namespace_object(name: &str, labels: &BTreeMap<String, String>) -> Object {
    let mut l = Mapping::new();
    l.insert(NAME_LABEL.into(), name.into());
    for (k, v) in labels {
        l.insert(k.as_str().into(), v.as_str().into());
    }
    let mut metadata = Mapping::new();
    metadata.insert("name".into(), name.into());
    metadata.insert("labels".into(), Value::Mapping(l));
    let mut body = Mapping::new();
    body.insert("apiVersion".into(), "v1".into());
    body.insert("kind".into(), "Namespace".into());
    body.insert("metadata".into(), Value::Mapping(metadata));
    Object {
        api_version: "v1".into(),
        id: namespace_id(name),
        body,
    }
}

/// The pod template of a workload, if it has one.
fn pod_spec(o: &Object) -> Option<&Mapping> {
    if !matches!(
        o.id.kind.as_str(),
        "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet" | "Job"
    ) {
        return None;
    }
    value_at(&o.body, &["spec", "template", "spec"])?.as_mapping()
}

pub fn pod_template_labels(o: &Object) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(Value::Mapping(labels)) =
        value_at(&o.body, &["spec", "template", "metadata", "labels"])
    {
        for (k, v) in labels {
            if let (Some(k), Some(v)) = (k.as_str(), scalar(v)) {
                out.insert(k.to_string(), v);
            }
        }
    }
    out
}

fn containers(o: &Object) -> Vec<&Mapping> {
    let Some(spec) = pod_spec(o) else {
        return Vec::new();
    };
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_sequence))
        .flatten()
        .filter_map(Value::as_mapping)
        .collect()
}

fn args(c: &Mapping) -> Vec<&str> {
    ["command", "args"]
        .iter()
        .filter_map(|k| c.get(*k).and_then(Value::as_sequence))
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// An istiod: a Deployment running `pilot-discovery discovery` (the container's first argument
/// is `discovery` in every Istio chart since 1.5).
pub fn is_istiod(o: &Object) -> bool {
    o.id.kind == "Deployment"
        && containers(o)
            .iter()
            .any(|c| args(c).first() == Some(&"discovery"))
}

/// A gateway: a workload running the Envoy proxy as a router (`pilot-agent proxy router`).
pub fn is_gateway_workload(o: &Object) -> bool {
    containers(o).iter().any(|c| {
        let a = args(c);
        a.contains(&"proxy") && a.contains(&"router")
    })
}

/// The injector webhooks of one state with where each leads.
pub struct InjectorWebhooks(Vec<(Webhook, Injection)>);

impl InjectorWebhooks {
    /// The ones kube-apiserver calls for a pod with `pod_labels` in a namespace with
    /// `ns_labels` (which must include `kubernetes.io/metadata.name`).
    pub fn matching(
        &self,
        ns_labels: &BTreeMap<String, String>,
        pod_labels: &BTreeMap<String, String>,
    ) -> Vec<Injection> {
        self.0
            .iter()
            .filter(|(wh, _)| wh.calls_for_pod_create(ns_labels, pod_labels))
            .map(|(_, inj)| inj.clone())
            .collect()
    }
}

/// Where the evaluation of one injector webhook ends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// It calls a Service that selects an istiod of this revision.
    Revision(String),
    /// It calls a Service that does not exist: the pod is refused (failurePolicy Fail).
    MissingService(ObjectId),
    /// It calls a Service that selects no istiod.
    NoIstiod(ObjectId),
    /// It calls a URL, not a Service in the cluster.
    NoService,
}

/// One injector webhook that matches a pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Injection {
    pub config: String,
    pub webhook: String,
    pub target: Target,
}

impl fmt::Display for Injection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Revision(r) => write!(f, "{r}"),
            Target::MissingService(s) => write!(f, "{} (Service {} missing)", self.config, s.name),
            Target::NoIstiod(s) => {
                write!(f, "{} (Service {} selects no istiod)", self.config, s.name)
            }
            Target::NoService => write!(f, "{} (calls a URL)", self.config),
        }
    }
}

/// The cell of the injection table for one namespace in one state: `none`, the revision, or
/// every match joined with ` + ` when more than one webhook matches.
pub fn describe(injections: &[Injection]) -> String {
    if injections.is_empty() {
        return "none".to_string();
    }
    injections
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The objects `o` references by identity: service accounts (binding subjects, pod templates),
/// roles (binding roleRefs), config maps and secrets (pod volumes and env), Services (webhook
/// clientConfigs, istiod addresses in pod env and mesh config), scale targets.
pub fn references(o: &Object) -> BTreeSet<ObjectId> {
    let mut out = BTreeSet::new();
    let ns = o.id.namespace.clone();
    let id = |group: &str, kind: &str, namespace: Option<String>, name: &str| ObjectId {
        group: group.to_string(),
        kind: kind.to_string(),
        namespace,
        name: name.to_string(),
    };
    match o.id.kind.as_str() {
        "RoleBinding" | "ClusterRoleBinding" => {
            if let Some(Value::Sequence(subjects)) = o.body.get("subjects") {
                for s in subjects.iter().filter_map(Value::as_mapping) {
                    if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount") {
                        if let (Some(name), Some(sns)) = (
                            s.get("name").and_then(Value::as_str),
                            s.get("namespace")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                                .or_else(|| ns.clone()),
                        ) {
                            out.insert(id("", "ServiceAccount", Some(sns), name));
                        }
                    }
                }
            }
            if let (Some(kind), Some(name)) = (
                str_at(&o.body, &["roleRef", "kind"]),
                str_at(&o.body, &["roleRef", "name"]),
            ) {
                let rns = if kind == "Role" { ns.clone() } else { None };
                out.insert(id("rbac.authorization.k8s.io", kind, rns, name));
            }
        }
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            if let Some(Value::Sequence(webhooks)) = o.body.get("webhooks") {
                for wh in webhooks.iter().filter_map(Value::as_mapping) {
                    if let Some((sns, name)) = webhook_service(wh) {
                        out.insert(service_id(&sns, &name));
                    }
                }
            }
        }
        "HorizontalPodAutoscaler" => {
            if let (Some(kind), Some(name), Some(api)) = (
                str_at(&o.body, &["spec", "scaleTargetRef", "kind"]),
                str_at(&o.body, &["spec", "scaleTargetRef", "name"]),
                str_at(&o.body, &["spec", "scaleTargetRef", "apiVersion"]),
            ) {
                out.insert(id(crate::manifest::group_of(api), kind, ns.clone(), name));
            }
        }
        "ConfigMap" => {
            // Mesh config: `defaultConfig.discoveryAddress` names the istiod proxies connect to.
            if let Some(Value::String(mesh)) = value_at(&o.body, &["data", "mesh"]) {
                if let Ok(Value::Mapping(m)) = serde_yaml::from_str::<Value>(mesh) {
                    if let Some(addr) = str_at(&m, &["defaultConfig", "discoveryAddress"]) {
                        out.extend(service_address(addr));
                    }
                }
            }
        }
        _ => {}
    }
    if let Some(spec) = pod_spec(o) {
        let sa = spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default");
        if sa != "default" {
            out.insert(id("", "ServiceAccount", ns.clone(), sa));
        }
        if let Some(Value::Sequence(volumes)) = spec.get("volumes") {
            for v in volumes.iter().filter_map(Value::as_mapping) {
                let optional =
                    |m: &Mapping| m.get("optional").and_then(Value::as_bool) == Some(true);
                if let Some(Value::Mapping(cm)) = v.get("configMap") {
                    if let (Some(name), false) =
                        (cm.get("name").and_then(Value::as_str), optional(cm))
                    {
                        out.insert(id("", "ConfigMap", ns.clone(), name));
                    }
                }
                if let Some(Value::Mapping(s)) = v.get("secret") {
                    if let (Some(name), false) =
                        (s.get("secretName").and_then(Value::as_str), optional(s))
                    {
                        out.insert(id("", "Secret", ns.clone(), name));
                    }
                }
            }
        }
        for c in containers(o) {
            if let Some(Value::Sequence(env)) = c.get("env") {
                for e in env.iter().filter_map(Value::as_mapping) {
                    if let Some(v) = e.get("value").and_then(Value::as_str) {
                        out.extend(service_address(v));
                    }
                }
            }
        }
    }
    out
}

/// `istiod-1-14-1.istio-system.svc:15012` (optionally `.cluster.local`) -> that Service.
fn service_address(addr: &str) -> Option<ObjectId> {
    let host = addr.split(':').next()?;
    let host = host.strip_suffix(".cluster.local").unwrap_or(host);
    let rest = host.strip_suffix(".svc")?;
    let (name, ns) = rest.split_once('.')?;
    let label = |s: &str| crate::policy::check_dns1123(s).is_ok();
    (label(name) && label(ns) && !ns.contains('.')).then(|| service_id(ns, name))
}

/// One broken safety invariant in a state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Violation {
    /// A namespace the policy names is not injected by exactly one healthy injector of the
    /// expected revision.
    Injection {
        namespace: String,
        expected: Option<String>,
        found: Vec<Injection>,
    },
    /// A webhook configuration calls a Service that does not exist, or that reaches no istiod.
    DanglingWebhook {
        webhook: ObjectId,
        service: ObjectId,
        missing: bool,
    },
    /// `istiod-default-validator` validates with another revision than the default tag injects.
    ValidatorNotDefault { validator: String, default: String },
    /// A deleted object is still referenced.
    DeletedButReferenced { deleted: ObjectId, by: ObjectId },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Injection { namespace, expected, found } => {
                let want = expected.as_deref().map(|r| format!("revision {r}")).unwrap_or_else(|| "one revision".into());
                match found.as_slice() {
                    [] => write!(f, "namespace {namespace} would get no sidecar injection at all (expected {want})"),
                    [one] => write!(f, "namespace {namespace} would be injected by {one} (expected {want})"),
                    _ => write!(f, "namespace {namespace} would match {} injectors: {} (expected only {want})", found.len(), describe(found)),
                }
            }
            Violation::DanglingWebhook { webhook, service, missing } => {
                let svc = format!("{}/{}", service.namespace.as_deref().unwrap_or(""), service.name);
                if *missing {
                    write!(f, "{webhook} would call Service {svc}, which does not exist")
                } else {
                    write!(f, "{webhook} would call Service {svc}, which selects no istiod")
                }
            }
            Violation::ValidatorNotDefault { validator, default } => write!(
                f,
                "istiod-default-validator would validate with revision {validator} while the default tag injects {default}"
            ),
            Violation::DeletedButReferenced { deleted, by } => {
                write!(f, "{deleted} would be deleted while {by} still references it")
            }
        }
    }
}

/// What the plan expects of one state: the namespaces it moves and the revision each must be
/// injected by (None: any single healthy injector, for states inside a phase).
pub struct Expectations<'a> {
    pub namespaces: &'a BTreeMap<String, Option<String>>,
}

/// Every violation of `state`.
pub fn violations(state: &MeshState, expect: &Expectations<'_>) -> BTreeSet<Violation> {
    let mut out = BTreeSet::new();
    let plain_pod = BTreeMap::new();
    let injectors = state.injector_webhooks();
    for (ns, expected) in expect.namespaces {
        let labels = state.labels(&namespace_id(ns)).unwrap_or_default();
        let found = injectors.matching(&labels, &plain_pod);
        let ok = match found.as_slice() {
            [one] => match (&one.target, expected) {
                (Target::Revision(r), Some(e)) => r == e,
                (Target::Revision(_), None) => true,
                _ => false,
            },
            _ => false,
        };
        if !ok {
            out.insert(Violation::Injection {
                namespace: ns.clone(),
                expected: expected.clone(),
                found,
            });
        }
    }
    for o in state.objects.values() {
        if !matches!(
            o.id.kind.as_str(),
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"
        ) {
            continue;
        }
        let Some(Value::Sequence(webhooks)) = o.body.get("webhooks") else {
            continue;
        };
        for wh in webhooks.iter().filter_map(Value::as_mapping) {
            let Some((sns, name)) = webhook_service(wh) else {
                continue;
            };
            let svc = service_id(&sns, &name);
            let missing = !state.objects.contains_key(&svc);
            if missing || state.istiod_revisions(&svc).is_empty() {
                out.insert(Violation::DanglingWebhook {
                    webhook: o.id.clone(),
                    service: svc,
                    missing,
                });
            }
        }
    }
    let validator = ObjectId {
        group: "admissionregistration.k8s.io".into(),
        kind: "ValidatingWebhookConfiguration".into(),
        namespace: None,
        name: "istiod-default-validator".into(),
    };
    if let (Some(v), Some(d)) = (
        state.webhook_config_revision(&validator),
        state.default_revision(),
    ) {
        if v != d {
            out.insert(Violation::ValidatorNotDefault {
                validator: v,
                default: d,
            });
        }
    }
    out
}

/// Violations a step's deletes introduce: a deleted object that an object still in the state
/// references.
pub fn dangling_references(state: &MeshState, deleted: &[&ObjectId]) -> BTreeSet<Violation> {
    let mut out = BTreeSet::new();
    if deleted.is_empty() {
        return out;
    }
    for o in state.objects.values() {
        let refs = references(o);
        for d in deleted {
            if refs.contains(*d) {
                out.insert(Violation::DeletedButReferenced {
                    deleted: (*d).clone(),
                    by: o.id.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_manifest;

    fn one(text: &str) -> Object {
        parse_manifest(text, "t").unwrap().remove(0)
    }

    #[test]
    fn a_label_patch_merges_and_keeps_every_other_label_and_field() {
        let mut state = MeshState::default();
        let ns = one("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {team: a, istio-injection: enabled}\n  annotations: {owner: app-team}\n");
        state.apply(&Change::Apply(ns));
        state.apply(&Change::Labels {
            id: namespace_id("shop"),
            api_version: "v1".into(),
            set: BTreeMap::from([(REV_LABEL.to_string(), "1-14-1".to_string())]),
            remove: BTreeSet::from([INJECTION_LABEL.to_string()]),
            via: Via::Command("kubectl label namespace shop istio-injection-".into()),
        });
        let o = &state.objects[&namespace_id("shop")];
        assert_eq!(
            o.labels(),
            BTreeMap::from([
                ("istio.io/rev".to_string(), "1-14-1".to_string()),
                ("team".to_string(), "a".to_string())
            ])
        );
        assert_eq!(
            str_at(&o.body, &["metadata", "annotations", "owner"]),
            Some("app-team")
        );
    }

    #[test]
    fn a_label_patch_on_a_missing_object_creates_nothing() {
        let mut state = MeshState::default();
        state.apply(&Change::Labels {
            id: namespace_id("ghost"),
            api_version: "v1".into(),
            set: BTreeMap::from([(REV_LABEL.to_string(), "x".to_string())]),
            remove: BTreeSet::new(),
            via: Via::File,
        });
        assert!(state.objects.is_empty());
    }

    const INJECTOR: &str = "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: inj}\nwebhooks:\n- name: rev.namespace.sidecar-injector.istio.io\n  clientConfig: {service: {name: istiod-r, namespace: istio-system}}\n  rules: [{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}]\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  namespaceSelector:\n    matchExpressions:\n    - {key: istio.io/rev, operator: In, values: [r]}\n    - {key: istio-injection, operator: DoesNotExist}\n";
    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: istiod-r, namespace: istio-system}\nspec:\n  selector: {app: istiod, istio.io/rev: r}\n";
    const ISTIOD: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: istiod-r, namespace: istio-system}\nspec:\n  template:\n    metadata:\n      labels: {app: istiod, istio.io/rev: r}\n    spec:\n      containers:\n      - name: discovery\n        args: [discovery]\n";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn injection_follows_the_webhook_to_its_service_and_istiod() {
        let mut state = MeshState::from_objects(&[one(INJECTOR), one(SERVICE), one(ISTIOD)]);
        let ns = labels(&[("istio.io/rev", "r"), (NAME_LABEL, "shop")]);
        let found = state.injectors(&ns, &BTreeMap::new());
        assert_eq!(describe(&found), "r");
        // An empty istio-injection label is present: DoesNotExist no longer matches.
        let empty = labels(&[
            ("istio.io/rev", "r"),
            ("istio-injection", ""),
            (NAME_LABEL, "shop"),
        ]);
        assert_eq!(describe(&state.injectors(&empty, &BTreeMap::new())), "none");
        // Without the istiod Deployment the Service reaches nothing.
        state.objects.retain(|id, _| id.kind != "Deployment");
        assert_eq!(
            describe(&state.injectors(&ns, &BTreeMap::new())),
            "inj (Service istiod-r selects no istiod)"
        );
        // Without the Service the webhook fails closed.
        state.objects.retain(|id, _| id.kind != "Service");
        assert_eq!(
            describe(&state.injectors(&ns, &BTreeMap::new())),
            "inj (Service istiod-r missing)"
        );
    }

    #[test]
    fn a_namespace_injected_by_the_wrong_revision_is_a_violation() {
        let mut state = MeshState::from_objects(&[one(INJECTOR), one(SERVICE), one(ISTIOD)]);
        let labels = BTreeMap::from([(REV_LABEL.to_string(), "r".to_string())]);
        state
            .objects
            .insert(namespace_id("shop"), namespace_object("shop", &labels));
        let expect =
            |rev: Option<&str>| BTreeMap::from([("shop".to_string(), rev.map(str::to_string))]);
        let ok = expect(Some("r"));
        assert!(violations(&state, &Expectations { namespaces: &ok }).is_empty());
        let any = expect(None);
        assert!(violations(&state, &Expectations { namespaces: &any }).is_empty());
        let other = expect(Some("other"));
        let found = violations(&state, &Expectations { namespaces: &other });
        assert_eq!(
            found.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["namespace shop would be injected by r (expected revision other)"]
        );
    }

    #[test]
    fn references_cover_bindings_pod_templates_webhooks_and_istiod_addresses() {
        let binding = one("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cr}\nsubjects:\n- {kind: ServiceAccount, name: reader, namespace: istio-system}\n");
        let refs = references(&binding);
        assert!(refs
            .iter()
            .any(|r| r.kind == "ServiceAccount" && r.name == "reader"));
        assert!(refs
            .iter()
            .any(|r| r.kind == "ClusterRole" && r.name == "cr" && r.namespace.is_none()));
        let gw = one("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: gw, namespace: istio-system}\nspec:\n  template:\n    spec:\n      serviceAccountName: gw-sa\n      volumes:\n      - name: c\n        configMap: {name: mesh}\n      - name: o\n        configMap: {name: opt, optional: true}\n      containers:\n      - name: istio-proxy\n        args: [proxy, router]\n        env:\n        - {name: CA_ADDR, value: 'istiod-r.istio-system.svc:15012'}\n");
        let refs = references(&gw);
        assert!(refs.contains(&service_id("istio-system", "istiod-r")));
        assert!(refs
            .iter()
            .any(|r| r.kind == "ServiceAccount" && r.name == "gw-sa"));
        assert!(refs
            .iter()
            .any(|r| r.kind == "ConfigMap" && r.name == "mesh"));
        assert!(
            !refs.iter().any(|r| r.name == "opt"),
            "optional volumes are not required"
        );
        assert!(is_gateway_workload(&gw) && !is_istiod(&gw));
        let mesh = one("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-r, namespace: istio-system}\ndata:\n  mesh: |-\n    defaultConfig:\n      discoveryAddress: istiod-r.istio-system.svc:15012\n");
        assert!(references(&mesh).contains(&service_id("istio-system", "istiod-r")));
        assert!(references(&one(INJECTOR)).contains(&service_id("istio-system", "istiod-r")));
    }

    #[test]
    fn deleting_a_referenced_object_is_a_violation() {
        let state = MeshState::from_objects(&[one(INJECTOR)]);
        let svc = service_id("istio-system", "istiod-r");
        let found = dangling_references(&state, &[&svc]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(dangling_references(&state, &[&namespace_id("x")]).is_empty());
    }

    #[test]
    fn webhook_configurations_are_stored_with_server_defaults() {
        let state = MeshState::from_objects(&[one(INJECTOR)]);
        let o = state.objects.values().next().unwrap();
        let text = serde_yaml::to_string(&o.body).unwrap();
        assert!(
            text.contains("scope: '*'") && text.contains("timeoutSeconds: 10"),
            "{text}"
        );
    }
}
