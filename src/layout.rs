//! The layout of the output: a pure stage from the plan to a `Bundle` that says, once, for the
//! phase directories, the rollback directories and `live/` alike, which files exist, what path
//! each has, which object each holds as written to Git, which delete stubs there are, and which
//! directories get a `Kustomization` (and what it lists).
//!
//! Owns: file naming (`<rank>-<kind>[_<ns>]_<name>.yaml`, the API group added to the kind only
//! where two objects of one directory would share a name), the partial object a label patch
//! file holds, the Git form of every object (`Protection::git_form`: null values stripped,
//! Argo CD sync wave -1 for CRDs and 1 for webhook configurations, and the prune protection
//! annotations), and which identities are prune-protected. Protection is decided per object
//! identity for the whole plan (`Protection::of`) and applied identically wherever that identity
//! is written, so one object never has two Git forms: a phase copy, a rollback re-apply and the
//! `live/` copy of the same content are the same bytes. The rule: CRDs and Namespaces always;
//! and the objects the install phase applies, and the tag objects the default-tag phase applies,
//! that state 0 already holds under the same identity (the shared base objects, the default tag
//! and validator), except anything any phase or rollback deletes. Gateways are never protected
//! (`removeGateways` deletes them on purpose), nor the legacy injector the default-tag phase
//! switches off. Must not: decide phases or their contents (that is `plan`), render text (no
//! headers, templates or YAML: that is `emit`), or do any I/O. `emit` and `gitops` take every
//! path and every object's Git form from the `Bundle`, and decide none themselves.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::{Mapping, Value};

use crate::cluster::{Change, DeleteRef, Via};
use crate::error::{Error, Result};
use crate::istio::is_tag_object;
use crate::k8s::ADMISSION_GROUP;
use crate::manifest::{Object, ObjectId};
use crate::plan::{apply_rank, delete_rank, live_changes, PhaseKind, Plan};

/// The directory of the live desired state (written only with a promote point).
pub const LIVE_DIR: &str = "live";
/// The kustomization file's name: one kustomize recognises and `kubectl apply -f DIR` skips.
pub const KUSTOMIZATION_FILE: &str = "Kustomization";
/// Where a rollback directory keeps the delete stubs of what its phase created.
pub const ROLLBACK_DELETE_DIR: &str = "delete/";

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

/// Everything the output holds that comes from the plan's changes, with its paths decided.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// One per phase of the plan, in the same order (`phases[i]` is `plan.phases[i]`).
    pub phases: Vec<Dir>,
    /// One per rollback of the plan whose phase exists, in the plan's order.
    pub rollbacks: Vec<RollbackDir>,
    /// `live/`, when the plan has a promote point.
    pub live: Option<LiveDir>,
}

/// The directory that undoes one phase.
#[derive(Debug, Clone)]
pub struct RollbackDir {
    /// The 1-based index of the phase it undoes, and that phase's directory.
    pub phase_index: usize,
    pub phase_dir: String,
    pub dir: Dir,
}

/// `live/`: the desired state after the promote point.
#[derive(Debug, Clone)]
pub struct LiveDir {
    /// The 1-based index of the promote point, and its phase's directory.
    pub phase_index: usize,
    pub phase_dir: String,
    pub dir: Dir,
    /// Every kept state's objects of the admission API group (the webhook configurations), in
    /// state order: `live/` may come to hold any state's (`spec.promote` moves), so the GitOps
    /// controllers' ignore rules cover them all (`gitops`). Taken here, so that nothing after
    /// the layout reads the kept states.
    pub admission: Vec<Vec<std::sync::Arc<Object>>>,
}

/// One directory of the output and the files it holds. File names are relative to `path`.
#[derive(Debug, Clone)]
pub struct Dir {
    /// Relative to the output: `03-migrate-canary`, `rollback/03-migrate-canary`, `live`.
    pub path: String,
    /// Whole objects to apply, in apply order.
    pub apply: Vec<ObjectFile>,
    /// Label patches: those carried by a file (in apply order), then those made by a command.
    pub patch: Vec<Patch>,
    /// Delete stubs, in delete order (under `ROLLBACK_DELETE_DIR` in a rollback).
    pub delete: Vec<ObjectFile>,
    /// What the directory's `Kustomization` lists, or `None` when it has none.
    pub kustomization: Option<Vec<String>>,
}

/// One file holding one object, as written to Git.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectFile {
    pub file: String,
    pub id: ObjectId,
    pub api_version: String,
    /// The object as written (its Git form as `Object::to_yaml` writes it, without the file's
    /// header): the text, not the object, so that a bundle of thousands of files holds their
    /// bytes, not a parsed tree of each.
    pub yaml: String,
}

impl ObjectFile {
    fn new(file: String, object: &Object) -> Result<ObjectFile> {
        Ok(ObjectFile {
            file,
            id: object.id.clone(),
            api_version: object.api_version.clone(),
            yaml: object.to_yaml()?,
        })
    }

    /// The object the file holds, read back from its text (for the tests).
    #[cfg(test)]
    fn object(&self) -> Object {
        let mut objects = crate::manifest::parse_manifest(&self.yaml, &self.file).unwrap();
        assert_eq!(objects.len(), 1, "{}", self.file);
        objects.remove(0)
    }
}

/// A label merge on one object: set some labels, remove some.
#[derive(Debug, Clone)]
pub struct Patch {
    pub api_version: String,
    pub id: ObjectId,
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
    /// A pod-template patch (`Change::Template`): labels and annotations set or removed (`None`).
    pub template_labels: BTreeMap<String, Option<String>>,
    pub template_annotations: BTreeMap<String, Option<String>>,
    pub via: PatchVia,
}

/// How a label patch is delivered.
#[derive(Debug, Clone)]
pub enum PatchVia {
    /// A file of the directory holding the partial object (only the labels it sets).
    File(ObjectFile),
    /// An exact command (removing a label cannot be a file).
    Command(String),
}

impl Patch {
    pub fn file(&self) -> Option<&ObjectFile> {
        match &self.via {
            PatchVia::File(f) => Some(f),
            PatchVia::Command(_) => None,
        }
    }
}

impl Dir {
    /// The files to apply, in apply order: whole objects, then label patch files.
    pub fn object_files(&self) -> impl Iterator<Item = &ObjectFile> {
        self.apply
            .iter()
            .chain(self.patch.iter().filter_map(Patch::file))
    }

    /// Every file of the directory: the files to apply, then the delete stubs.
    pub fn files(&self) -> impl Iterator<Item = &ObjectFile> {
        self.object_files().chain(&self.delete)
    }

    /// Whether anything is written in the directory.
    pub fn has_files(&self) -> bool {
        self.files().next().is_some()
    }

    fn object_file_names(&self) -> Vec<String> {
        self.object_files().map(|f| f.file.clone()).collect()
    }
}

/// Which identities GitOps controllers must never prune or delete (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Protection {
    shared: BTreeSet<ObjectId>,
}

fn is_crd(id: &ObjectId) -> bool {
    id.kind == "CustomResourceDefinition" && id.group == "apiextensions.k8s.io"
}

fn is_namespace(id: &ObjectId) -> bool {
    id.kind == "Namespace" && id.group.is_empty()
}

impl Protection {
    /// Decides protection for every identity of the plan. CRDs: pruning one deletes every
    /// resource of its kind. Namespaces: the partial ones are app teams' namespaces, and deleting
    /// one deletes everything in it. Every other object a phase patches a label of (the Gateways
    /// a wave moves): the plan writes only its label, and pruning the partial object would delete
    /// the user's whole object. The objects the install and default-tag phases apply that
    /// the running install already has (shared base objects such as
    /// `istio-reader-service-account`, the default tag and validator): removing the old
    /// install's Application, or pruning `live/`, would otherwise delete them from under the new
    /// revision. Never anything a phase or a rollback deletes.
    pub fn of(plan: &Plan) -> Protection {
        let Some(start) = plan.states.first() else {
            return Protection::default();
        };
        let deleted: BTreeSet<&ObjectId> = plan
            .phases
            .iter()
            .flat_map(|p| p.deletes())
            .chain(plan.rollbacks.iter().flat_map(|r| r.deletes()))
            .map(|d| &d.id)
            .collect();
        let mut shared = BTreeSet::new();
        for phase in &plan.phases {
            for change in &phase.changes {
                // A label patch is a partial object of someone else's (a Gateway a wave moves):
                // pruning it would delete the whole object.
                if let Change::Labels {
                    id, via: Via::File, ..
                } = change
                {
                    if !deleted.contains(id) {
                        shared.insert(id.clone());
                    }
                    continue;
                }
                let Change::Apply(object) = change else {
                    continue;
                };
                let applies_shared = match phase.kind {
                    PhaseKind::Install => true,
                    // The node agents are shared by every revision, like the base objects.
                    PhaseKind::Cni | PhaseKind::Ztunnel => true,
                    // Only the tag objects: the legacy injector it switches off is deleted by
                    // uninstall.
                    PhaseKind::DefaultTag | PhaseKind::Tag => is_tag_object(object),
                    _ => false,
                };
                if applies_shared
                    && start.objects.contains_key(&object.id)
                    && !deleted.contains(&object.id)
                {
                    shared.insert(object.id.clone());
                }
            }
        }
        Protection { shared }
    }

    /// Whether the identity is protected.
    pub fn covers(&self, id: &ObjectId) -> bool {
        is_crd(id) || is_namespace(id) || self.shared.contains(id)
    }

    /// The object as it is written to Git, wherever it is written: null values removed, CRDs
    /// in Argo CD sync wave -1 and webhook configurations in wave 1 (after the workloads they
    /// call are healthy), and, for a protected identity, the annotations that stop Argo CD and
    /// Flux from pruning or deleting it.
    pub fn git_form(&self, object: Object) -> Object {
        let mut o = object;
        strip_nulls(&mut o.body);
        let mut add: Vec<(&str, &str)> = Vec::new();
        if let Some(wave) = object_sync_wave(&o.id) {
            add.push((ARGOCD_SYNC_WAVE, wave));
        }
        if self.covers(&o.id) {
            add.push((ARGOCD_SYNC_OPTIONS, ARGOCD_KEEP));
            add.push((FLUX_PRUNE, FLUX_PRUNE_DISABLED));
        }
        if !add.is_empty() {
            annotate(&mut o.body, &add);
        }
        o
    }
}

fn object_sync_wave(id: &ObjectId) -> Option<&'static str> {
    match (id.group.as_str(), id.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Some("-1"),
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration",
        ) => Some("1"),
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
fn strip_nulls(map: &mut Mapping) {
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

/// The partial object a label patch applies: only the labels it sets.
pub fn label_patch_object(
    api_version: &str,
    id: &ObjectId,
    set: &BTreeMap<String, String>,
) -> Object {
    let mut labels = Mapping::new();
    for (k, v) in set {
        labels.insert(k.as_str().into(), v.as_str().into());
    }
    let mut metadata = Mapping::new();
    metadata.insert("name".into(), id.name.as_str().into());
    if let Some(ns) = &id.namespace {
        metadata.insert("namespace".into(), ns.as_str().into());
    }
    metadata.insert("labels".into(), Value::Mapping(labels));
    let mut body = Mapping::new();
    body.insert("apiVersion".into(), api_version.into());
    body.insert("kind".into(), id.kind.as_str().into());
    body.insert("metadata".into(), Value::Mapping(metadata));
    Object {
        api_version: api_version.to_string(),
        id: id.clone(),
        body,
    }
}

/// A delete stub: apiVersion, kind, namespace, name; nothing an apply could use.
fn stub_object(d: &DeleteRef) -> Object {
    let mut metadata = Mapping::new();
    metadata.insert("name".into(), Value::String(d.id.name.clone()));
    if let Some(ns) = &d.id.namespace {
        metadata.insert("namespace".into(), Value::String(ns.clone()));
    }
    let mut body = Mapping::new();
    body.insert("apiVersion".into(), Value::String(d.api_version.clone()));
    body.insert("kind".into(), Value::String(d.id.kind.clone()));
    body.insert("metadata".into(), Value::Mapping(metadata));
    Object {
        api_version: d.api_version.clone(),
        id: d.id.clone(),
        body,
    }
}

/// File names for a directory's objects: `<rank>-<kind>[_<namespace>]_<name>.yaml`, with the API
/// group added to the kind only where two objects would otherwise share a name.
fn file_names(ids: &[(u8, &ObjectId)]) -> Vec<String> {
    let base = |rank: u8, id: &ObjectId, with_group: bool| {
        let mut kind = id.kind.to_lowercase();
        if with_group && !id.group.is_empty() {
            kind = format!("{kind}.{}", id.group);
        }
        match &id.namespace {
            Some(ns) => format!("{rank:02}-{kind}_{ns}_{}.yaml", id.name),
            None => format!("{rank:02}-{kind}_{}.yaml", id.name),
        }
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (rank, id) in ids {
        *counts.entry(base(*rank, id, false)).or_default() += 1;
    }
    ids.iter()
        .map(|(rank, id)| {
            let plain = base(*rank, id, false);
            if counts.get(&plain).copied().unwrap_or(0) > 1 {
                base(*rank, id, true)
            } else {
                plain
            }
        })
        .collect()
}

/// The files of `changes` (whole objects and file label patches, each in its Git form) and the
/// command label patches, for the directory `path`; no delete stubs, no `Kustomization`.
fn change_dir(path: &str, changes: &[Change], protection: &Protection) -> Result<Dir> {
    let written: Vec<(&Change, std::borrow::Cow<'_, Object>)> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Apply(o) => Some((c, std::borrow::Cow::Borrowed(o))),
            Change::Labels {
                id,
                api_version,
                set,
                via: Via::File,
                ..
            } => Some((
                c,
                std::borrow::Cow::Owned(label_patch_object(api_version, id, set)),
            )),
            _ => None,
        })
        .collect();
    let ids: Vec<(u8, &ObjectId)> = written
        .iter()
        .map(|(_, o)| (apply_rank(&o.id), &o.id))
        .collect();
    let mut dir = Dir {
        path: path.to_string(),
        apply: Vec::new(),
        patch: Vec::new(),
        delete: Vec::new(),
        kustomization: None,
    };
    let names = file_names(&ids);
    for ((change, object), file) in written.into_iter().zip(names) {
        // An object made for the file (a label patch) is not copied again.
        let written = ObjectFile::new(file, &protection.git_form(object.into_owned()))?;
        match change {
            Change::Labels {
                id,
                api_version,
                set,
                remove,
                ..
            } => dir.patch.push(Patch {
                api_version: api_version.clone(),
                id: id.clone(),
                set: set.clone(),
                remove: remove.iter().cloned().collect(),
                template_labels: BTreeMap::new(),
                template_annotations: BTreeMap::new(),
                via: PatchVia::File(written),
            }),
            _ => dir.apply.push(written),
        }
    }
    for c in changes {
        match c {
            Change::Labels {
                id,
                api_version,
                set,
                remove,
                via: Via::Command(command),
            } => dir.patch.push(Patch {
                api_version: api_version.clone(),
                id: id.clone(),
                set: set.clone(),
                remove: remove.iter().cloned().collect(),
                template_labels: BTreeMap::new(),
                template_annotations: BTreeMap::new(),
                via: PatchVia::Command(command.clone()),
            }),
            Change::Template {
                id,
                api_version,
                labels,
                annotations,
                command,
            } => dir.patch.push(Patch {
                api_version: api_version.clone(),
                id: id.clone(),
                set: BTreeMap::new(),
                remove: Vec::new(),
                template_labels: labels.clone(),
                template_annotations: annotations.clone(),
                via: PatchVia::Command(command.clone()),
            }),
            _ => {}
        }
    }
    Ok(dir)
}

/// One delete stub per object, named like the files of a phase (in reverse rank order, like the
/// uninstall's), under `sub` of the directory.
fn stubs<'a>(deletes: impl Iterator<Item = &'a DeleteRef>, sub: &str) -> Result<Vec<ObjectFile>> {
    let deletes: Vec<&DeleteRef> = deletes.collect();
    let ids: Vec<(u8, &ObjectId)> = deletes
        .iter()
        .map(|d| (delete_rank(&d.id), &d.id))
        .collect();
    deletes
        .iter()
        .zip(file_names(&ids))
        .map(|(d, file)| ObjectFile::new(format!("{sub}{file}"), &stub_object(d)))
        .collect()
}

/// Refuses a directory in which two files would have the same path (one would overwrite the
/// other): an internal error, never expected.
fn check_unique(dir: &Dir) -> Result<()> {
    let mut seen = BTreeSet::new();
    for f in dir.files() {
        if f.file == KUSTOMIZATION_FILE || !seen.insert(f.file.as_str()) {
            return Err(Error::new(format!(
                "internal error: two files of {} would be written to {}",
                dir.path, f.file
            )));
        }
    }
    Ok(())
}

/// Lays out the plan: every phase directory (a `Kustomization` in each but the uninstall, which
/// only deletes), every rollback directory (a `Kustomization` when it has files to apply, delete
/// stubs under `delete/`) and `live/` (every object of the state at the promote point, the
/// named namespaces as label patches, a `Kustomization` listing its files sorted). Pure.
///
/// Each directory is laid out from its own changes, on at most `jobs` threads; the bundle is
/// the same for any number.
pub fn layout(plan: &Plan, jobs: std::num::NonZeroUsize) -> Result<Bundle> {
    let protection = Protection::of(plan);
    let phases = crate::jobs::map(&plan.phases, jobs, |_, phase| {
        let mut dir = change_dir(&phase.dir, &phase.changes, &protection)?;
        dir.delete = stubs(phase.deletes(), "")?;
        if phase.kind != PhaseKind::Uninstall {
            dir.kustomization = Some(dir.object_file_names());
        }
        check_unique(&dir)?;
        Ok(dir)
    })
    .into_iter()
    .collect::<Result<Vec<Dir>>>()?;
    let rollbacks = crate::jobs::map(&plan.rollbacks, jobs, |_, rb| {
        let Some(phase) = rb
            .phase_index
            .checked_sub(1)
            .and_then(|i| plan.phases.get(i))
        else {
            return Ok(None);
        };
        let mut dir = change_dir(&rb.dir, &rb.changes, &protection)?;
        dir.delete = stubs(rb.deletes(), ROLLBACK_DELETE_DIR)?;
        let names = dir.object_file_names();
        if !names.is_empty() {
            dir.kustomization = Some(names);
        }
        check_unique(&dir)?;
        Ok(Some(RollbackDir {
            phase_index: rb.phase_index,
            phase_dir: phase.dir.clone(),
            dir,
        }))
    })
    .into_iter()
    .filter_map(Result::transpose)
    .collect::<Result<Vec<RollbackDir>>>()?;
    let live = match plan.promote {
        Some(n) => {
            let mut dir = change_dir(LIVE_DIR, &live_changes(plan, n), &protection)?;
            let mut names = dir.object_file_names();
            names.sort();
            dir.kustomization = Some(names);
            check_unique(&dir)?;
            let phase_dir = n
                .checked_sub(1)
                .and_then(|i| plan.phases.get(i))
                .map(|p| p.dir.clone())
                .unwrap_or_default();
            // The group's identities are contiguous in a state's order (group first): a range,
            // not a walk of every object of every state.
            let bound = |group: String| ObjectId {
                group,
                kind: String::new(),
                namespace: None,
                name: String::new(),
            };
            let group = bound(ADMISSION_GROUP.to_string())..bound(format!("{ADMISSION_GROUP}\0"));
            let admission = plan
                .states
                .iter()
                .map(|state| {
                    state
                        .objects
                        .range(group.clone())
                        .map(|(_, o)| o.clone())
                        .collect()
                })
                .collect();
            Some(LiveDir {
                phase_index: n,
                phase_dir,
                dir,
                admission,
            })
        }
        None => None,
    };
    Ok(Bundle {
        phases,
        rollbacks,
        live,
    })
}

/// Small plans for the unit tests of `layout` and `gitops`.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::plan::Phase;

    pub fn object(yaml: &str) -> Object {
        let body: Mapping = serde_yaml::from_str(yaml).unwrap();
        Object::from_mapping(body).unwrap()
    }

    pub fn phase(kind: PhaseKind, index: usize, changes: Vec<Change>) -> Phase {
        Phase {
            index,
            hop: 0,
            kind,
            name: kind.as_str().into(),
            dir: format!("{index:02}-{}", kind.as_str()),
            namespaces: Vec::new(),
            manual: Vec::new(),
            changes,
        }
    }

    pub fn plan(states: Vec<Vec<&Object>>, phases: Vec<Phase>) -> Plan {
        let rendered = states.iter().flatten().map(|o| o.id.clone()).collect();
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
            rendered,
            inventory: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{object, phase, plan};
    use super::*;
    use crate::cluster::{namespace_id, namespace_object};
    use crate::manifest::id;
    use crate::plan::InjectionRow;

    fn is_protected(o: &Object) -> bool {
        let text = o.to_yaml().unwrap();
        text.contains("argocd.argoproj.io/sync-options: Prune=false,Delete=false")
            && text.contains("kustomize.toolkit.fluxcd.io/prune: disabled")
    }

    #[test]
    fn file_names_add_the_group_only_on_collision() {
        let a = id("networking.istio.io", "Gateway", Some("n"), "g");
        let b = id("gateway.networking.k8s.io", "Gateway", Some("n"), "g");
        let c = id("", "Service", None, "s");
        let names = file_names(&[(21, &a), (21, &b), (30, &c)]);
        assert_eq!(
            names,
            [
                "21-gateway.networking.istio.io_n_g.yaml",
                "21-gateway.gateway.networking.k8s.io_n_g.yaml",
                "30-service_s.yaml"
            ]
        );
    }

    #[test]
    fn two_files_of_one_directory_never_share_a_path() {
        let ns = namespace_object("a", &BTreeMap::new());
        let dir = change_dir(
            "d",
            &[
                Change::Apply(ns.clone()),
                Change::Labels {
                    id: ns.id.clone(),
                    api_version: "v1".into(),
                    set: BTreeMap::new(),
                    remove: BTreeSet::new(),
                    via: Via::File,
                },
            ],
            &Protection::default(),
        )
        .unwrap();
        let err = check_unique(&dir).unwrap_err();
        assert!(
            err.message.contains("01-namespace_a.yaml"),
            "{}",
            err.message
        );
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
    fn git_form_protects_and_orders() {
        let crd = object("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: a.b.io\n");
        let p = Protection::default();
        let text = p.git_form(crd.clone()).to_yaml().unwrap();
        assert!(is_protected(&p.git_form(crd.clone())), "{text}");
        assert!(
            text.contains("argocd.argoproj.io/sync-wave: '-1'"),
            "{text}"
        );
        let svc = object("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: n\n  annotations: null\n");
        let text = p.git_form(svc.clone()).to_yaml().unwrap();
        assert!(!text.contains("annotations"), "{text}");
    }

    fn vwc(name: &str) -> Object {
        object(&format!("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: {name}\n  labels:\n    istio.io/rev: r\nwebhooks:\n- name: w\n  failurePolicy: Ignore\n"))
    }

    #[test]
    fn protection_covers_shared_and_moved_tag_objects_only() {
        let validator = vwc("istiod-default-validator");
        let legacy = object("apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: istio-sidecar-injector\nwebhooks: []\n");
        let reader = object("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: istio-reader-service-account\n  namespace: istio-system\n");
        let own = object("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: istiod-2\n  namespace: istio-system\n");
        let gateway = object("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: istio-ingressgateway-service-account\n  namespace: istio-system\n");
        let old_cm = object("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared-then-deleted\n  namespace: istio-system\n");
        let apply = |objects: &[&Object]| -> Vec<Change> {
            objects
                .iter()
                .map(|o| Change::Apply((*o).clone()))
                .collect()
        };
        let mut uninstall = phase(PhaseKind::Uninstall, 4, Vec::new());
        uninstall.changes.push(Change::Delete(DeleteRef {
            api_version: "v1".into(),
            id: old_cm.id.clone(),
        }));
        let p = plan(
            vec![vec![&validator, &legacy, &reader, &gateway, &old_cm]],
            vec![
                phase(PhaseKind::Install, 1, apply(&[&reader, &own, &old_cm])),
                phase(PhaseKind::Gateways, 2, apply(&[&gateway])),
                phase(PhaseKind::DefaultTag, 3, apply(&[&validator, &legacy])),
                uninstall,
            ],
        );
        let protection = Protection::of(&p);
        assert!(protection.covers(&reader.id));
        assert!(!protection.covers(&own.id), "the new revision's own");
        assert!(!protection.covers(&gateway.id), "gateways");
        assert!(protection.covers(&validator.id), "the moved tag object");
        // The legacy injector the default-tag phase switches off is deleted later.
        assert!(!protection.covers(&legacy.id));
        assert!(!protection.covers(&old_cm.id), "the plan deletes it");
        assert!(protection.covers(&namespace_id("anything")));

        // Decided per identity: the reader is protected in every directory that writes it.
        let bundle = layout(&p, std::num::NonZeroUsize::new(2).unwrap()).unwrap();
        let readers: Vec<&ObjectFile> = bundle
            .phases
            .iter()
            .flat_map(|d| d.files())
            .filter(|f| f.id == reader.id)
            .collect();
        assert_eq!(readers.len(), 1);
        assert!(is_protected(&readers[0].object()));
        assert!(
            bundle.phases[3].kustomization.is_none(),
            "uninstall only deletes"
        );
        assert_eq!(
            bundle.phases[3].delete[0].file,
            "79-configmap_istio-system_shared-then-deleted.yaml"
        );
    }

    #[test]
    fn live_carries_every_states_webhook_configurations_and_nothing_else() {
        let webhook = |name: &str| {
            object(&format!("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: {name}}}\n"))
        };
        let (old, new) = (webhook("old"), webhook("new"));
        // Groups sorting next to the admission group, before and after it.
        let near = object("apiVersion: admissionregistration.k8s.io.example/v1\nkind: Thing\nmetadata: {name: x}\n");
        let below = object(
            "apiVersion: admissionregistration.k8s.i/v1\nkind: Thing\nmetadata: {name: y}\n",
        );
        let cm = object("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: n}\n");
        let mut p = plan(
            vec![
                vec![&old, &near, &below, &cm],
                vec![&old, &new, &near, &below, &cm],
                vec![&new, &cm],
            ],
            vec![
                phase(PhaseKind::Install, 1, vec![Change::Apply(new.clone())]),
                phase(PhaseKind::Uninstall, 2, Vec::new()),
            ],
        );
        p.promote = Some(1);
        let bundle = layout(&p, std::num::NonZeroUsize::MIN).unwrap();
        let names: Vec<Vec<&str>> = bundle
            .live
            .as_ref()
            .unwrap()
            .admission
            .iter()
            .map(|s| s.iter().map(|o| o.id.name.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["old"], vec!["new", "old"], vec!["new"]]);
    }

    #[test]
    fn live_and_rollback_namespaces_have_the_git_form_of_their_phase_copy() {
        let crd = object("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: a.b.io\n");
        let before = namespace_object(
            "app",
            &BTreeMap::from([("istio.io/rev".into(), "old".into())]),
        );
        let after = namespace_object(
            "app",
            &BTreeMap::from([("istio.io/rev".into(), "new".into())]),
        );
        let relabel = Change::Labels {
            id: namespace_id("app"),
            api_version: "v1".into(),
            set: BTreeMap::from([("istio.io/rev".into(), "new".into())]),
            remove: BTreeSet::new(),
            via: Via::File,
        };
        let mut migrate = phase(PhaseKind::Migrate, 2, vec![relabel]);
        migrate.namespaces = vec!["app".into()];
        let mut p = plan(
            vec![vec![&before], vec![&before, &crd], vec![&after, &crd]],
            vec![
                phase(PhaseKind::Crds, 1, vec![Change::Apply(crd.clone())]),
                migrate,
            ],
        );
        p.injection = vec![InjectionRow {
            namespace: "app".into(),
            tag: None,
            states: Vec::new(),
        }];
        p.promote = Some(2);
        p.rollbacks = vec![crate::plan::Rollback {
            phase_index: 2,
            dir: "rollback/02-migrate".into(),
            changes: vec![Change::Labels {
                id: namespace_id("app"),
                api_version: "v1".into(),
                set: BTreeMap::from([("istio.io/rev".into(), "old".into())]),
                remove: BTreeSet::new(),
                via: Via::File,
            }],
        }];
        let bundle = layout(&p, std::num::NonZeroUsize::new(2).unwrap()).unwrap();
        let rollback = &bundle.rollbacks[0];
        assert_eq!(rollback.phase_dir, "02-migrate");
        let rollback_ns = rollback.dir.patch[0].file().unwrap();
        assert!(is_protected(&rollback_ns.object()), "a rollback's relabel");
        assert_eq!(
            rollback.dir.kustomization.as_deref(),
            Some(&["01-namespace_app.yaml".to_string()][..])
        );
        let live = bundle.live.unwrap();
        assert_eq!(live.phase_dir, "02-migrate");
        assert_eq!(live.dir.path, LIVE_DIR);
        let in_live = |id: &ObjectId| {
            live.dir
                .object_files()
                .find(|f| f.id == *id)
                .unwrap()
                .clone()
        };
        let phase_ns = bundle.phases[1].patch[0].file().unwrap();
        assert!(is_protected(&phase_ns.object()));
        assert_eq!(
            in_live(&namespace_id("app")),
            *phase_ns,
            "same file, same object"
        );
        assert_eq!(in_live(&crd.id), bundle.phases[0].apply[0]);
        assert_eq!(
            live.dir.kustomization.unwrap(),
            [
                "00-customresourcedefinition_a.b.io.yaml",
                "01-namespace_app.yaml"
            ]
        );
    }
}
