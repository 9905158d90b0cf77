//! The simulated cluster, Kubernetes only: `ClusterState` (the objects at one point of the plan,
//! by identity, as kube-apiserver stores them), the `Change`s that move it (apply a whole object,
//! merge labels, delete) with the applier's semantics, workload and namespace helpers, and what
//! an object references by identity (so a delete can be checked against what still uses it).
//!
//! Owns: identities of derived objects (Services, Namespaces), the label merge, server-side
//! defaults on store, and the generic reference graph (bindings, pod templates, webhook Services,
//! HPA targets, Service addresses in env). Must not: know anything of Istio (no Istio label,
//! name or role: that is `istio` and `mesh`), of the policy or of phases; read files; run
//! processes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use serde_yaml::{Mapping, Value};

use crate::k8s::{self, NAME_LABEL};
use crate::manifest::{str_at, value_at, Object, ObjectId};
use crate::selector::webhook_service;

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
    /// Merge into a workload's pod template (`spec.template.metadata`): each label and
    /// annotation set to a value, or removed (`None`), like a JSON merge patch. Any change to the
    /// template rolls the workload out: its pods are recreated and meet the injectors anew.
    /// Always run as `command` (a `kubectl patch`), after the phase's label commands.
    Template {
        id: ObjectId,
        api_version: String,
        labels: BTreeMap<String, Option<String>>,
        annotations: BTreeMap<String, Option<String>>,
        command: String,
    },
    /// Delete an object.
    Delete(DeleteRef),
}

impl Change {
    pub fn id(&self) -> &ObjectId {
        match self {
            Change::Apply(o) => &o.id,
            Change::Labels { id, .. } | Change::Template { id, .. } => id,
            Change::Delete(d) => &d.id,
        }
    }
}

/// The objects of one state, by identity: a persistent ordered map whose clones share every
/// node and object they do not change (`imbl::OrdMap`, each object behind an `Arc`), so the plan
/// keeps a state per phase and rollback at the cost of what each one changed.
pub type Objects = imbl::OrdMap<ObjectId, Arc<Object>>;

/// The objects the mesh is made of at one point of the plan, by identity. Cloning a state is
/// O(1); a change copies only the path to the object it touches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    pub objects: Objects,
}

/// An object as kube-apiserver stores it after a create or update: webhook configurations get
/// their defaulted fields, a Namespace its `kubernetes.io/metadata.name` label.
pub fn as_stored(object: &Object) -> Object {
    let mut o = object.clone();
    k8s::with_webhook_defaults(&o.id.kind, &mut o.body);
    if o.id.kind == "Namespace" && o.id.group.is_empty() && o.label(NAME_LABEL).is_none() {
        let name = BTreeMap::from([(NAME_LABEL.to_string(), o.id.name.clone())]);
        merge_labels(&mut o, &name, &BTreeSet::new());
    }
    o
}

impl ClusterState {
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Object>) -> Self {
        ClusterState {
            objects: objects
                .into_iter()
                .map(|o| (o.id.clone(), Arc::new(as_stored(o))))
                .collect(),
        }
    }

    /// Applies one change. A label change on an object the state lacks creates nothing (the
    /// command would fail): the invariants then report the namespace as not injected.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Apply(o) => {
                self.objects.insert(o.id.clone(), Arc::new(as_stored(o)));
            }
            Change::Labels {
                id, set, remove, ..
            } => {
                if let Some(o) = self.objects.get_mut(id) {
                    merge_labels(Arc::make_mut(o), set, remove);
                }
            }
            Change::Template {
                id,
                labels,
                annotations,
                ..
            } => {
                if let Some(o) = self.objects.get_mut(id) {
                    merge_template(Arc::make_mut(o), labels, annotations);
                }
            }
            Change::Delete(d) => {
                self.objects.remove(&d.id);
            }
        }
    }

    pub fn labels(&self, id: &ObjectId) -> Option<BTreeMap<String, String>> {
        self.objects.get(id).map(|o| o.labels())
    }

    /// The object with this identity, if the state holds it.
    pub fn get(&self, id: &ObjectId) -> Option<&Object> {
        self.objects.get(id).map(|o| &**o)
    }

    /// Puts an object in the state as it is (no server-side defaults: `apply` adds those).
    pub fn insert(&mut self, object: Object) {
        self.objects.insert(object.id.clone(), Arc::new(object));
    }

    /// Keeps only the objects whose identity `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&ObjectId) -> bool) {
        self.objects = self
            .objects
            .iter()
            .filter(|(id, _)| keep(id))
            .map(|(id, o)| (id.clone(), o.clone()))
            .collect();
    }

    /// Every object of one group and kind, in identity order: a range of the map, since
    /// identities order by group, then kind.
    pub fn of_kind<'a>(&'a self, group: &str, kind: &str) -> impl Iterator<Item = &'a Object> {
        let from = ObjectId {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: None,
            name: String::new(),
        };
        let (group, kind) = (from.group.clone(), from.kind.clone());
        self.objects
            .range(from..)
            .take_while(move |(id, _)| id.group == group && id.kind == kind)
            .map(|(_, o)| &**o)
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

/// A JSON merge patch of `spec.template.metadata.{labels,annotations}`: a key set to a value is
/// set, to `None` removed; a map left empty by removals is dropped, as it was before it was
/// patched in.
fn merge_template(
    o: &mut Object,
    labels: &BTreeMap<String, Option<String>>,
    annotations: &BTreeMap<String, Option<String>>,
) {
    fn child<'a>(m: &'a mut Mapping, key: &str) -> Option<&'a mut Mapping> {
        let v = m
            .entry(key.into())
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if !v.is_mapping() {
            *v = Value::Mapping(Mapping::new());
        }
        v.as_mapping_mut()
    }
    let Some(metadata) = child(&mut o.body, "spec")
        .and_then(|spec| child(spec, "template"))
        .and_then(|template| child(template, "metadata"))
    else {
        return;
    };
    for (field, patch) in [("labels", labels), ("annotations", annotations)] {
        if patch.is_empty() {
            continue;
        }
        let Some(map) = child(metadata, field) else {
            continue;
        };
        for (k, v) in patch {
            match v {
                Some(v) => {
                    map.insert(k.as_str().into(), v.as_str().into());
                }
                None => {
                    map.remove(k.as_str());
                }
            }
        }
        if map.is_empty() {
            metadata.remove(field);
        }
    }
}

/// The `kubectl patch` command that merges `labels` and `annotations` into a workload's pod
/// template (`None` removes a key: `null` in a JSON merge patch).
pub fn template_patch_command(
    id: &ObjectId,
    labels: &BTreeMap<String, Option<String>>,
    annotations: &BTreeMap<String, Option<String>>,
) -> String {
    let mut metadata = serde_json::Map::new();
    for (field, patch) in [("annotations", annotations), ("labels", labels)] {
        if patch.is_empty() {
            continue;
        }
        let map: serde_json::Map<String, serde_json::Value> = patch
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_ref().map_or(serde_json::Value::Null, |v| {
                        serde_json::Value::String(v.clone())
                    }),
                )
            })
            .collect();
        metadata.insert(field.into(), serde_json::Value::Object(map));
    }
    let patch = serde_json::json!({"spec": {"template": {"metadata": metadata}}});
    format!(
        "kubectl patch {} --type merge -p '{patch}'",
        kubectl_ref(id)
    )
}

/// A label or selector value as text (YAML may read `true` or `8080` as non-strings).
pub fn scalar(v: &Value) -> Option<String> {
    let mut text = String::new();
    scalar_into(v, &mut text).then_some(text)
}

/// `scalar(v)` written into `out` (cleared first), reusing its allocation; `false`, `out` left
/// empty, when `v` is not a scalar.
pub fn scalar_into(v: &Value, out: &mut String) -> bool {
    use std::fmt::Write as _;
    out.clear();
    match v {
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        _ => return false,
    }
    true
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
pub fn pod_spec(o: &Object) -> Option<&Mapping> {
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

/// The init containers and containers of a workload's pod template.
pub fn containers(o: &Object) -> Vec<&Mapping> {
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

/// A container's command followed by its args.
pub fn args(c: &Mapping) -> Vec<&str> {
    ["command", "args"]
        .iter()
        .filter_map(|k| c.get(*k).and_then(Value::as_sequence))
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Who owns each metadata label and annotation of one object, as server-side apply records it
/// in `metadata.managedFields` (reduced to `labels/KEY` and `annotations/KEY`): field -> managers.
pub type FieldOwners = BTreeMap<String, BTreeSet<String>>;

/// A field server-side apply refuses to change without `--force-conflicts`: another manager
/// owns it with another value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `labels/istio.io/rev`
    pub field: String,
    pub managers: Vec<String>,
}

/// Every label and annotation of `o`, owned by `manager` (an object created by one writer).
pub fn owned_by(o: &Object, manager: &str) -> FieldOwners {
    ["labels", "annotations"]
        .iter()
        .flat_map(|field| {
            metadata_map(&o.body, field).into_keys().map(move |k| {
                (
                    format!("{field}/{k}"),
                    BTreeSet::from([manager.to_string()]),
                )
            })
        })
        .collect()
}

/// What a server-side apply (`kubectl apply --server-side --field-manager=MANAGER`, Argo CD's
/// `ServerSideApply=true`, Flux) does to an object's metadata labels and annotations: every field
/// the applied object holds is set and owned by `manager` (shared with managers that hold the
/// same value; a field another manager holds with another value is a conflict, unless `force`
/// takes it over); every field `manager` owned before and the applied object omits is released,
/// and removed when no other manager owns it. Fields `manager` never owned stay as they are.
pub fn server_side_apply(
    live: &Object,
    owners: &FieldOwners,
    applied: &Object,
    manager: &str,
    force: bool,
) -> Result<(Object, FieldOwners), Vec<Conflict>> {
    let mut owners = owners.clone();
    let mut out = live.clone();
    let mut conflicts = Vec::new();
    for field in ["labels", "annotations"] {
        let mut now = metadata_map(&live.body, field);
        let want = metadata_map(&applied.body, field);
        for (k, v) in &want {
            let key = format!("{field}/{k}");
            let holders = owners.entry(key.clone()).or_default();
            if now.get(k) == Some(v) {
                holders.insert(manager.to_string());
                continue;
            }
            let others: Vec<String> = holders.iter().filter(|m| *m != manager).cloned().collect();
            if !others.is_empty() && !force {
                conflicts.push(Conflict {
                    field: key,
                    managers: others,
                });
                continue;
            }
            *holders = BTreeSet::from([manager.to_string()]);
            now.insert(k.clone(), v.clone());
        }
        let released: Vec<String> = now
            .keys()
            .filter(|k| !want.contains_key(*k))
            .filter(|k| {
                owners
                    .get(&format!("{field}/{k}"))
                    .is_some_and(|m| m.contains(manager))
            })
            .cloned()
            .collect();
        for k in released {
            let key = format!("{field}/{k}");
            if let Some(holders) = owners.get_mut(&key) {
                holders.remove(manager);
                if holders.is_empty() {
                    owners.remove(&key);
                    now.remove(&k);
                }
            }
        }
        set_metadata_map(&mut out, field, now);
    }
    if conflicts.is_empty() {
        Ok((out, owners))
    } else {
        Err(conflicts)
    }
}

/// What `kubectl label` (an update by the manager `kubectl-label`) does: each label set takes the
/// field over (no conflict: an update is not an apply), each label removed is gone whoever owned
/// it.
pub fn kubectl_label(
    live: &Object,
    owners: &FieldOwners,
    set: &BTreeMap<String, String>,
    remove: &BTreeSet<String>,
) -> (Object, FieldOwners) {
    let mut owners = owners.clone();
    let mut labels = metadata_map(&live.body, "labels");
    for (k, v) in set {
        if labels.get(k) != Some(v) {
            owners.insert(
                format!("labels/{k}"),
                BTreeSet::from(["kubectl-label".to_string()]),
            );
            labels.insert(k.clone(), v.clone());
        }
    }
    for k in remove {
        labels.remove(k);
        owners.remove(&format!("labels/{k}"));
    }
    let mut out = live.clone();
    set_metadata_map(&mut out, "labels", labels);
    (out, owners)
}

fn set_metadata_map(o: &mut Object, field: &str, map: BTreeMap<String, String>) {
    let Some(Value::Mapping(metadata)) = o.body.get_mut("metadata") else {
        return;
    };
    if map.is_empty() {
        metadata.remove(field);
        return;
    }
    let map: Mapping = map
        .into_iter()
        .map(|(k, v)| (Value::String(k), Value::String(v)))
        .collect();
    metadata.insert(field.into(), Value::Mapping(map));
}

/// The objects `o` references by identity: service accounts (binding subjects, pod templates),
/// roles (binding roleRefs), config maps and secrets (pod volumes and env), Services (webhook
/// clientConfigs, Service addresses in pod env), scale targets. What an object's payload means to
/// Istio (mesh config) is added by `mesh::references`.
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
            // `envFrom` a ConfigMap (istio-cni's settings): required unless optional.
            if let Some(Value::Sequence(from)) = c.get("envFrom") {
                for f in from.iter().filter_map(Value::as_mapping) {
                    if let Some(Value::Mapping(cm)) = f.get("configMapRef") {
                        let optional = cm.get("optional").and_then(Value::as_bool) == Some(true);
                        if let (Some(name), false) =
                            (cm.get("name").and_then(Value::as_str), optional)
                        {
                            out.insert(id("", "ConfigMap", ns.clone(), name));
                        }
                    }
                }
            }
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

/// A cluster-local Service address, `istiod-1-14-1.istio-system.svc:15012` (optionally `.cluster.local`) -> that Service.
pub fn service_address(addr: &str) -> Option<ObjectId> {
    let host = addr.split(':').next()?;
    let host = host.strip_suffix(".cluster.local").unwrap_or(host);
    let rest = host.strip_suffix(".svc")?;
    let (name, ns) = rest.split_once('.')?;
    let label = crate::names::is_dns1123_label;
    (label(name) && label(ns) && !ns.contains('.')).then(|| service_id(ns, name))
}

/// How kubectl names an object on its command line: `namespace shop`,
/// `rolebinding.rbac.authorization.k8s.io -n istio-system name`. Every part is a validated
/// Kubernetes name (`names`), so the words need no shell quoting.
pub fn kubectl_ref(id: &ObjectId) -> String {
    let mut kind = id.kind.to_lowercase();
    if !id.group.is_empty() {
        kind = format!("{kind}.{}", id.group);
    }
    match &id.namespace {
        Some(n) => format!("{kind} -n {n} {}", id.name),
        None => format!("{kind} {}", id.name),
    }
}

/// The annotation `kubectl apply` (client-side) keeps the applied configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The string map at `metadata.<field>` of a body.
fn metadata_map(body: &Mapping, field: &str) -> BTreeMap<String, String> {
    match value_at(body, &["metadata", field]) {
        Some(Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar(v)?)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// What a client-side `kubectl apply` of `applied` makes of `live`, for the metadata labels and
/// annotations (what a relabel touches): the three-way merge against the last-applied
/// configuration `live` carries. A key the last-applied configuration holds and `applied`
/// lacks is deleted; `applied`'s keys are set; every other key is kept; `applied` becomes the
/// new last-applied configuration. (So a partial Namespace applied this way deletes the labels
/// and annotations its owner applied: the tool never emits it for a client-side user.)
pub fn client_side_apply(live: &Object, applied: &Object) -> Result<Object, String> {
    let last: Mapping = match live
        .body
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(LAST_APPLIED))
    {
        None => Mapping::new(),
        // kubectl refuses to apply over a last-applied configuration it cannot read.
        Some(v) => {
            let text = v
                .as_str()
                .ok_or_else(|| format!("{}: {LAST_APPLIED} is not a string", live.id))?;
            serde_json::from_str::<Mapping>(text)
                .map_err(|e| format!("{}: {LAST_APPLIED} is not a JSON object: {e}", live.id))?
        }
    };
    let applied_text = serde_json::to_string(&applied.body)
        .map_err(|e| format!("{}: cannot be written as JSON: {e}", applied.id))?;
    let mut out = live.clone();
    for field in ["labels", "annotations"] {
        let was = metadata_map(&last, field);
        let want = metadata_map(&applied.body, field);
        let mut now = metadata_map(&live.body, field);
        now.retain(|k, _| !was.contains_key(k) || want.contains_key(k));
        now.extend(want);
        if field == "annotations" {
            now.insert(LAST_APPLIED.to_string(), applied_text.clone());
        }
        let map: Mapping = now
            .into_iter()
            .map(|(k, v)| (Value::String(k), Value::String(v)))
            .collect();
        if let Some(Value::Mapping(metadata)) = out.body.get_mut("metadata") {
            metadata.insert(field.into(), Value::Mapping(map));
        }
    }
    Ok(out)
}

/// A deleted object that an object still in the state references.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dangling {
    pub deleted: ObjectId,
    pub by: ObjectId,
}

/// The deleted objects that an object still in `state` references, by `refs` (the reference
/// graph of whoever asks: `references` plus what a layer above knows).
pub fn dangling<F>(state: &ClusterState, deleted: &[&ObjectId], refs: F) -> BTreeSet<Dangling>
where
    F: Fn(&Object) -> BTreeSet<ObjectId>,
{
    let mut out = BTreeSet::new();
    if deleted.is_empty() {
        return out;
    }
    for o in state.objects.values() {
        let r = refs(o);
        for d in deleted {
            if r.contains(*d) {
                out.insert(Dangling {
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
        let mut state = ClusterState::default();
        let ns = one("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {team: a, istio-injection: enabled}\n  annotations: {owner: app-team}\n");
        state.apply(&Change::Apply(ns));
        state.apply(&Change::Labels {
            id: namespace_id("shop"),
            api_version: "v1".into(),
            set: BTreeMap::from([("istio.io/rev".to_string(), "1-14-1".to_string())]),
            remove: BTreeSet::from(["istio-injection".to_string()]),
            via: Via::Command("kubectl label namespace shop istio-injection-".into()),
        });
        let o = &state.objects[&namespace_id("shop")];
        assert_eq!(
            o.labels(),
            BTreeMap::from([
                ("istio.io/rev".to_string(), "1-14-1".to_string()),
                (NAME_LABEL.to_string(), "shop".to_string()),
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
        let mut state = ClusterState::default();
        state.apply(&Change::Labels {
            id: namespace_id("ghost"),
            api_version: "v1".into(),
            set: BTreeMap::from([("istio.io/rev".to_string(), "x".to_string())]),
            remove: BTreeSet::new(),
            via: Via::File,
        });
        assert!(state.objects.is_empty());
    }

    #[test]
    fn webhook_configurations_are_stored_with_server_defaults() {
        let state = ClusterState::from_objects(&[one(INJECTOR)]);
        let o = state.objects.values().next().unwrap();
        let text = serde_yaml::to_string(&o.body).unwrap();
        assert!(
            text.contains("scope: '*'") && text.contains("timeoutSeconds: 10"),
            "{text}"
        );
    }

    const INJECTOR: &str = "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: inj}\nwebhooks:\n- name: w.example.com\n  clientConfig: {service: {name: svc, namespace: ns}}\n  rules: [{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}]\n  sideEffects: None\n  admissionReviewVersions: [v1]\n";

    /// A Namespace its owner created with `kubectl apply`: owner labels and annotations, and the
    /// last-applied configuration that says so.
    fn owned_namespace() -> Object {
        let applied = "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"shop\",\"labels\":{\"team\":\"a\",\"istio.io/rev\":\"1-13-5\"},\"annotations\":{\"owner\":\"app-team\"}}}";
        one(&format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {{team: a, istio.io/rev: 1-13-5}}\n  annotations:\n    owner: app-team\n    {LAST_APPLIED}: '{applied}'\n"))
    }

    #[test]
    fn client_side_apply_of_a_partial_namespace_deletes_the_owners_labels() {
        // The observed fact: `kubectl apply` of a Namespace holding only `istio.io/rev` removes
        // every label and annotation the owner's last-applied configuration holds.
        let partial = one("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {istio.io/rev: 1-14-1}\n");
        let after = client_side_apply(&owned_namespace(), &partial).unwrap();
        assert_eq!(
            after.labels(),
            BTreeMap::from([("istio.io/rev".to_string(), "1-14-1".to_string())])
        );
        assert_eq!(
            str_at(&after.body, &["metadata", "annotations", "owner"]),
            None
        );
        // A key set by someone else (not in the last-applied configuration) survives.
        let mut live = owned_namespace();
        if let Some(Value::Mapping(m)) = live.body.get_mut("metadata") {
            if let Some(Value::Mapping(l)) = m.get_mut("labels") {
                l.insert("set-by-hand".into(), "x".into());
            }
        }
        let after = client_side_apply(&live, &partial).unwrap();
        assert_eq!(after.label("set-by-hand").as_deref(), Some("x"));
        // An unreadable last-applied configuration is an error, as it is for kubectl.
        let broken = one(&format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  annotations: {{{LAST_APPLIED}: 'not json'}}\n"));
        let err = client_side_apply(&broken, &partial).unwrap_err();
        assert!(err.starts_with("Namespace shop: kubectl.kubernetes.io/last-applied-configuration is not a JSON object"), "{err}");
    }

    #[test]
    fn a_label_merge_keeps_the_owners_labels_and_annotations() {
        // `kubectl label … --overwrite` and a server-side apply with the tool's field manager
        // merge: the simulation's `Change::Labels`.
        let mut state = ClusterState::default();
        state.apply(&Change::Apply(owned_namespace()));
        state.apply(&Change::Labels {
            id: namespace_id("shop"),
            api_version: "v1".into(),
            set: BTreeMap::from([("istio.io/rev".to_string(), "1-14-1".to_string())]),
            remove: BTreeSet::new(),
            via: Via::File,
        });
        let o = &state.objects[&namespace_id("shop")];
        assert_eq!(o.label("team").as_deref(), Some("a"));
        assert_eq!(o.label("istio.io/rev").as_deref(), Some("1-14-1"));
        assert_eq!(
            str_at(&o.body, &["metadata", "annotations", "owner"]),
            Some("app-team")
        );
    }

    const CREATED: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {team: a, istio.io/rev: 1-13-5}\n  annotations: {owner: app-team}\n";

    fn rev_patch(rev: &str) -> Object {
        one(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {{istio.io/rev: '{rev}'}}\n"
        ))
    }

    #[test]
    fn server_side_apply_conflicts_on_another_managers_value_unless_forced() {
        let live = one(CREATED);
        let owners = owned_by(&live, "kubectl-client-side-apply");
        let err = server_side_apply(&live, &owners, &rev_patch("1-14-1"), "istio-canary", false)
            .unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                field: "labels/istio.io/rev".into(),
                managers: vec!["kubectl-client-side-apply".into()],
            }]
        );
        let (o, owners) =
            server_side_apply(&live, &owners, &rev_patch("1-14-1"), "istio-canary", true).unwrap();
        assert_eq!(o.label("istio.io/rev").as_deref(), Some("1-14-1"));
        assert_eq!(
            o.label("team").as_deref(),
            Some("a"),
            "a field never applied stays"
        );
        assert_eq!(
            str_at(&o.body, &["metadata", "annotations", "owner"]),
            Some("app-team")
        );
        assert_eq!(
            owners["labels/istio.io/rev"],
            BTreeSet::from(["istio-canary".to_string()]),
            "forced: the field changes hands"
        );
        assert_eq!(
            owners["labels/team"],
            BTreeSet::from(["kubectl-client-side-apply".to_string()])
        );
    }

    #[test]
    fn server_side_apply_shares_a_same_value_and_removes_only_what_it_alone_owned() {
        let live = one(CREATED);
        let owners = owned_by(&live, "creator");
        // The same value: no conflict, shared ownership.
        let (o, owners) =
            server_side_apply(&live, &owners, &rev_patch("1-13-5"), "istio-canary", false).unwrap();
        assert_eq!(
            owners["labels/istio.io/rev"],
            BTreeSet::from(["creator".to_string(), "istio-canary".to_string()])
        );
        // Omitted later: released, but kept, since the creator still owns it.
        let none = one("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
        let (kept, owners2) = server_side_apply(&o, &owners, &none, "istio-canary", false).unwrap();
        assert_eq!(kept.label("istio.io/rev").as_deref(), Some("1-13-5"));
        assert!(!owners2["labels/istio.io/rev"].contains("istio-canary"));
        // Taken over, then omitted: the applier was the only owner, so the label goes.
        let (taken, owners3) =
            server_side_apply(&o, &owners, &rev_patch("1-14-1"), "istio-canary", true).unwrap();
        let (gone, owners4) =
            server_side_apply(&taken, &owners3, &none, "istio-canary", false).unwrap();
        assert_eq!(gone.label("istio.io/rev"), None);
        assert!(!owners4.contains_key("labels/istio.io/rev"));
        assert_eq!(gone.label("team").as_deref(), Some("a"));
    }

    #[test]
    fn kubectl_label_takes_over_what_it_sets_and_removes_whoever_owned_it() {
        let live = one(CREATED);
        let owners = owned_by(&live, "creator");
        let (o, owners) = kubectl_label(
            &live,
            &owners,
            &BTreeMap::from([("istio.io/rev".to_string(), "1-14-1".to_string())]),
            &BTreeSet::from(["team".to_string()]),
        );
        assert_eq!(o.label("istio.io/rev").as_deref(), Some("1-14-1"));
        assert_eq!(o.label("team"), None);
        assert_eq!(
            owners["labels/istio.io/rev"],
            BTreeSet::from(["kubectl-label".to_string()])
        );
        assert!(!owners.contains_key("labels/team"));
    }
}
