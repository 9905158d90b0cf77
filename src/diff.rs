//! The semantic diff of the control plane between two revisions (what istioctl's removed
//! `manifest diff` showed, but revision-aware), and the per-phase delta of the simulated states.
//!
//! Owns: pairing the objects of the old and the new render by their revision-free identity
//! (`istiod-1-13-5` with `istiod-1-14-1`, an unrevisioned `istiod` with `istiod-1-14-1`, shared
//! objects and gateways by identical name), comparing each pair with the revision token taken out
//! of names and values (so a revision rename alone is no change), and sorting what differs into
//! categories: container images, args, env and resources; RBAC rules added and removed;
//! webhooks' rules and selectors; CRD versions and top-level spec fields; mesh config keys; and
//! anything else by path. Also `phase_deltas`: what each phase adds, changes and deletes, by
//! `ObjectId`, from two consecutive states. Must not: do I/O, decide phases, or produce text for
//! files (that is `emit`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_yaml::Value;

use crate::cluster::ClusterState;
use crate::istio::{Revision, MESH_CONFIG};
use crate::manifest::{value_at, Object, ObjectId};

/// What one phase does to the simulated cluster, by identity (`states[n-1]` vs `states[n]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PhaseDelta {
    /// In the state after the phase, not before it.
    pub added: Vec<ObjectId>,
    /// In both, with a different body (a label patch changes the Namespace).
    pub changed: Vec<ObjectId>,
    /// In the state before the phase, not after it.
    pub deleted: Vec<ObjectId>,
}

/// The delta of every phase: `deltas[i]` is phase `i + 1` (from `states[i]` to `states[i + 1]`).
pub fn phase_deltas(states: &[ClusterState]) -> Vec<PhaseDelta> {
    states.windows(2).map(|w| delta(&w[0], &w[1])).collect()
}

/// What changes from `before` to `after`, in identity order. The states' diff skips what they
/// share, so a phase costs what it changed, not the size of the cluster.
pub fn delta(before: &ClusterState, after: &ClusterState) -> PhaseDelta {
    use imbl::ordmap::DiffItem;
    let mut d = PhaseDelta::default();
    for item in before.objects.diff(&after.objects) {
        match item {
            DiffItem::Add(id, _) => d.added.push(id.clone()),
            DiffItem::Update {
                old: (id, b),
                new: (_, o),
            } if b.body != o.body => d.changed.push(id.clone()),
            DiffItem::Update { .. } => {}
            DiffItem::Remove(id, _) => d.deleted.push(id.clone()),
        }
    }
    d
}

/// The kind of a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Image,
    Args,
    Env,
    Resources,
    /// A rule of a ClusterRole or Role: `old` set = removed, `new` set = added.
    RbacRule,
    /// A webhook's rules or selectors; a webhook only on one side has the other side absent.
    Webhook,
    /// A CRD version: `old` absent = added, `new` absent = removed.
    CrdVersion,
    /// A top-level field of a CRD version's `spec` schema.
    CrdField,
    /// A key of the mesh config (`mesh` of ConfigMap `istio[-<rev>]`), by dotted path.
    MeshConfig,
    Other,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Image => "image",
            Category::Args => "args",
            Category::Env => "env",
            Category::Resources => "resources",
            Category::RbacRule => "rbac-rule",
            Category::Webhook => "webhook",
            Category::CrdVersion => "crd-version",
            Category::CrdField => "crd-field",
            Category::MeshConfig => "mesh-config",
            Category::Other => "other",
        }
    }
}

/// One difference inside a pair of objects. `None` means absent on that side; both `None` means
/// the value changed below `path` (details not shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub category: Category,
    pub path: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// A pair of objects (old render, new render) whose revision-free bodies differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pair {
    pub old: ObjectId,
    pub new: ObjectId,
    pub items: Vec<Item>,
}

/// The control plane of the old render against the new one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneDiff {
    pub from_revision: String,
    pub to_revision: String,
    /// Objects of the old render with no counterpart in the new one.
    pub only_old: Vec<ObjectId>,
    /// Objects of the new render with no counterpart in the old one.
    pub only_new: Vec<ObjectId>,
    /// Pairs that differ, in the new render's identity order.
    pub changed: Vec<Pair>,
    /// How many pairs are the same once the revision is taken out.
    pub unchanged: usize,
}

/// Stands for the revision in a revision-free value.
const REV: &str = "<rev>";

/// One side's revision, for taking it out of names and values.
#[derive(Debug, Clone, Copy)]
struct Naming<'a> {
    /// The `istio.io/rev` value (`default` for the unrevisioned install).
    label: &'a str,
    /// The name suffix token (`1-13-5`), none for the unrevisioned install.
    token: Option<&'a str>,
}

impl<'a> Naming<'a> {
    fn of(revision: &'a Revision) -> Naming<'a> {
        Naming {
            label: revision.label(),
            token: revision.name(),
        }
    }

    /// A name without the revision: `istiod-1-13-5` -> `istiod`,
    /// `istiod-clusterrole-1-13-5-istio-system` -> `istiod-clusterrole-istio-system`.
    fn strip(&self, s: &str) -> String {
        let Some(token) = self.token else {
            return s.to_string();
        };
        let needle = format!("-{token}");
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(at) = rest.find(&needle) {
            let after = &rest[at + needle.len()..];
            let bounded = !matches!(after.chars().next(), Some(c) if c.is_ascii_alphanumeric());
            out.push_str(&rest[..at]);
            if !bounded {
                out.push_str(&needle);
            }
            rest = after;
        }
        out.push_str(rest);
        out
    }

    /// A value without the revision: the revision label itself becomes `<rev>`, and the name
    /// token is taken out of longer strings (`istiod-1-13-5.istio-system.svc`).
    fn value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) if s == self.label => Value::String(REV.to_string()),
            Value::String(s) => Value::String(self.strip(s)),
            Value::Sequence(items) => {
                Value::Sequence(items.iter().map(|i| self.value(i)).collect())
            }
            Value::Mapping(m) => {
                Value::Mapping(m.iter().map(|(k, v)| (k.clone(), self.value(v))).collect())
            }
            Value::Tagged(t) => self.value(&t.value),
            other => other.clone(),
        }
    }

    fn key(&self, id: &ObjectId) -> ObjectId {
        ObjectId {
            name: self.strip(&id.name),
            ..id.clone()
        }
    }
}

/// Pairs the objects of two renders: first by identical identity (shared objects, gateways),
/// then by revision-free identity. A revision-free identity two objects of one side share pairs
/// nothing: both stay unpaired.
pub fn pair<'o>(
    old_rev: &Revision,
    old: &'o [Object],
    new_rev: &Revision,
    new: &'o [Object],
) -> (
    Vec<(&'o Object, &'o Object)>,
    Vec<&'o Object>,
    Vec<&'o Object>,
) {
    let (os, ns) = (Naming::of(old_rev), Naming::of(new_rev));
    let new_by_id: BTreeMap<&ObjectId, &Object> = new.iter().map(|o| (&o.id, o)).collect();
    let old_ids: BTreeSet<&ObjectId> = old.iter().map(|o| &o.id).collect();
    let mut pairs = Vec::new();
    let mut old_left: Vec<&Object> = Vec::new();
    for o in old {
        match new_by_id.get(&o.id) {
            Some(n) => pairs.push((o, *n)),
            None => old_left.push(o),
        }
    }
    let new_left: Vec<&Object> = new.iter().filter(|n| !old_ids.contains(&n.id)).collect();
    let mut old_keys: BTreeMap<ObjectId, Vec<&Object>> = BTreeMap::new();
    for o in &old_left {
        old_keys.entry(os.key(&o.id)).or_default().push(o);
    }
    let mut new_keys: BTreeMap<ObjectId, Vec<&Object>> = BTreeMap::new();
    for n in &new_left {
        new_keys.entry(ns.key(&n.id)).or_default().push(n);
    }
    let mut only_old = Vec::new();
    let mut paired_new: BTreeSet<&ObjectId> = BTreeSet::new();
    for o in old_left {
        let key = os.key(&o.id);
        match (old_keys.get(&key), new_keys.get(&key)) {
            (Some(a), Some(b)) if a.len() == 1 && b.len() == 1 => {
                pairs.push((o, b[0]));
                paired_new.insert(&b[0].id);
            }
            _ => only_old.push(o),
        }
    }
    let only_new = new_left
        .into_iter()
        .filter(|n| !paired_new.contains(&n.id))
        .collect();
    (pairs, only_old, only_new)
}

/// The diff of two renders (normalized as the plan applies them).
pub fn control_plane_diff(
    old_rev: &Revision,
    old: &[Object],
    new_rev: &Revision,
    new: &[Object],
) -> ControlPlaneDiff {
    let (pairs, only_old, only_new) = pair(old_rev, old, new_rev, new);
    let (os, ns) = (Naming::of(old_rev), Naming::of(new_rev));
    let mut changed = Vec::new();
    let mut unchanged = 0;
    for (o, n) in pairs {
        let items = compare(os, o, ns, n);
        if items.is_empty() {
            unchanged += 1;
        } else {
            changed.push(Pair {
                old: o.id.clone(),
                new: n.id.clone(),
                items,
            });
        }
    }
    changed.sort_by(|a, b| a.new.cmp(&b.new));
    let mut only_old: Vec<ObjectId> = only_old.into_iter().map(|o| o.id.clone()).collect();
    let mut only_new: Vec<ObjectId> = only_new.into_iter().map(|o| o.id.clone()).collect();
    only_old.sort();
    only_new.sort();
    ControlPlaneDiff {
        from_revision: old_rev.label().to_string(),
        to_revision: new_rev.label().to_string(),
        only_old,
        only_new,
        changed,
        unchanged,
    }
}

/// A path into a body: mapping keys, and list elements by `name` (`containers[discovery]`) or
/// by position.
type Path = Vec<String>;

fn show_path(path: &[String]) -> String {
    let mut s = String::new();
    for seg in path {
        if !s.is_empty() && !seg.starts_with('[') {
            s.push('.');
        }
        s.push_str(seg);
    }
    s
}

/// A value on one line: strings as they are, everything else as compact JSON.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => serde_json::to_string(other).unwrap_or_else(|_| {
            serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim_end()
                .replace('\n', " ")
        }),
    }
}

/// A value revision-free (compared) and as rendered (shown); the two have the same shape.
type Twin<'a> = (&'a Value, &'a Value);

/// Positions of the elements of a list of mappings that all carry a distinct string `name`, by
/// that name.
fn by_name(items: &[Value]) -> Option<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for (i, v) in items.iter().enumerate() {
        let name = v.as_mapping()?.get("name")?.as_str()?;
        if out.insert(name.to_string(), i).is_some() {
            return None;
        }
    }
    Some(out)
}

fn twin_at<'a>(x: &'a [Value], xo: &'a [Value], i: usize) -> Option<Twin<'a>> {
    x.get(i).zip(xo.get(i))
}

/// Every leaf where the revision-free `a` and `b` differ, with the rendered values. Lists of
/// scalars and lists whose elements cannot be matched (no names, different lengths) are leaves.
fn leaf_diffs(
    path: &mut Path,
    a: Option<Twin<'_>>,
    b: Option<Twin<'_>>,
    out: &mut Vec<(Path, Option<Value>, Option<Value>)>,
) {
    if a.map(|t| t.0) == b.map(|t| t.0) {
        return;
    }
    match (a, b) {
        (
            Some((Value::Mapping(x), Value::Mapping(xo))),
            Some((Value::Mapping(y), Value::Mapping(yo))),
        ) => {
            let keys: BTreeSet<String> = x.keys().chain(y.keys()).map(show).collect();
            for k in keys {
                let key = Value::String(k.clone());
                path.push(k);
                leaf_diffs(
                    path,
                    x.get(&key).zip(xo.get(&key)),
                    y.get(&key).zip(yo.get(&key)),
                    out,
                );
                path.pop();
            }
        }
        (
            Some((Value::Sequence(x), Value::Sequence(xo))),
            Some((Value::Sequence(y), Value::Sequence(yo))),
        ) if x.iter().chain(y).all(Value::is_mapping) => {
            if let (Some(xm), Some(ym)) = (by_name(x), by_name(y)) {
                let keys: BTreeSet<&String> = xm.keys().chain(ym.keys()).collect();
                for k in keys {
                    path.push(format!("[{k}]"));
                    leaf_diffs(
                        path,
                        xm.get(k).and_then(|i| twin_at(x, xo, *i)),
                        ym.get(k).and_then(|i| twin_at(y, yo, *i)),
                        out,
                    );
                    path.pop();
                }
            } else if x.len() == y.len() {
                for i in 0..x.len() {
                    path.push(format!("[{i}]"));
                    leaf_diffs(path, twin_at(x, xo, i), twin_at(y, yo, i), out);
                    path.pop();
                }
            } else {
                out.push((path.clone(), a.map(|t| t.1.clone()), b.map(|t| t.1.clone())));
            }
        }
        _ => out.push((path.clone(), a.map(|t| t.1.clone()), b.map(|t| t.1.clone()))),
    }
}

/// Text on several lines that is a YAML or JSON mapping on both sides (a ConfigMap's `values`)
/// is compared key by key, its paths continuing the text's path.
fn expand_documents(
    os: Naming<'_>,
    ns: Naming<'_>,
    leaves: Vec<(Path, Option<Value>, Option<Value>)>,
) -> Vec<(Path, Option<Value>, Option<Value>)> {
    let document = |v: &Option<Value>| match v {
        Some(Value::String(t)) if t.contains('\n') => serde_yaml::from_str::<Value>(t)
            .ok()
            .filter(Value::is_mapping),
        _ => None,
    };
    let mut out = Vec::new();
    for (mut path, x, y) in leaves {
        match (document(&x), document(&y)) {
            (Some(dx), Some(dy)) => {
                let (cx, cy) = (os.value(&dx), ns.value(&dy));
                leaf_diffs(&mut path, Some((&cx, &dx)), Some((&cy, &dy)), &mut out);
            }
            _ => out.push((path, x, y)),
        }
    }
    out
}

fn is_container_list(seg: &str) -> bool {
    matches!(seg, "containers" | "initContainers" | "ephemeralContainers")
}

/// The category of a leaf path of a workload: `…containers[x].image` and so on.
fn container_category(path: &[String]) -> Option<Category> {
    let at = path
        .windows(2)
        .position(|w| is_container_list(&w[0]) && w[1].starts_with('['))?;
    match path.get(at + 2).map(String::as_str) {
        Some("image") => Some(Category::Image),
        Some("args" | "command") => Some(Category::Args),
        Some("env" | "envFrom") => Some(Category::Env),
        Some("resources") => Some(Category::Resources),
        _ => None,
    }
}

/// The differences of one pair, revision-free.
fn compare(os: Naming<'_>, old: &Object, ns: Naming<'_>, new: &Object) -> Vec<Item> {
    let (ao, bo) = (
        Value::Mapping(old.body.clone()),
        Value::Mapping(new.body.clone()),
    );
    let (av, bv) = (os.value(&ao), ns.value(&bo));
    let (Value::Mapping(a), Value::Mapping(b)) = (&av, &bv) else {
        return Vec::new();
    };
    let mut items = Vec::new();
    let kind = new.id.kind.as_str();
    // Paths handled by a category of their own (not repeated as `other`).
    let mut handled: Vec<Path> = Vec::new();
    let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Path>();

    if matches!(kind, "ClusterRole" | "Role") && old.id.kind == new.id.kind {
        handled.push(p(&["rules"]));
        items.extend(rbac_items((&av, &ao), (&bv, &bo)));
    }
    if kind.ends_with("WebhookConfiguration") && old.id.kind == new.id.kind {
        handled.push(p(&["webhooks"]));
        items.extend(webhook_items((&av, &ao), (&bv, &bo)));
    }
    if kind == "CustomResourceDefinition" && old.id.kind == new.id.kind {
        items.extend(crd_items(a, b, &mut handled));
    }
    if kind == "ConfigMap"
        && ns.strip(&new.id.name) == MESH_CONFIG
        && os.strip(&old.id.name) == MESH_CONFIG
    {
        handled.push(p(&["data", "mesh"]));
        items.extend(mesh_items(os, &old.body, ns, &new.body));
    }

    let mut leaves = Vec::new();
    leaf_diffs(
        &mut Vec::new(),
        Some((&av, &ao)),
        Some((&bv, &bo)),
        &mut leaves,
    );
    let leaves = expand_documents(os, ns, leaves);
    let mut other: BTreeSet<(String, Option<String>, Option<String>)> = BTreeSet::new();
    for (path, x, y) in leaves {
        if path.first().map(String::as_str) == Some("metadata")
            && path.get(1).map(String::as_str) == Some("name")
        {
            continue;
        }
        if let Some(cat) = container_category(&path) {
            items.push(Item {
                category: cat,
                path: show_path(&path),
                old: x.as_ref().map(show),
                new: y.as_ref().map(show),
            });
            continue;
        }
        if handled.iter().any(|h| path.starts_with(h) || h == &path) {
            continue;
        }
        // Deep paths are cut to their first five segments, without values.
        if path.len() > 5 {
            other.insert((show_path(&path[..5]), None, None));
        } else {
            other.insert((show_path(&path), x.as_ref().map(show), y.as_ref().map(show)));
        }
    }
    // A cut path shown without values covers the full paths below it.
    let cut: BTreeSet<String> = other
        .iter()
        .filter(|(_, x, y)| x.is_none() && y.is_none())
        .map(|(p, _, _)| p.clone())
        .collect();
    for (path, old, new) in other {
        if (old.is_some() || new.is_some()) && cut.contains(&path) {
            continue;
        }
        items.push(Item {
            category: Category::Other,
            path,
            old,
            new,
        });
    }
    items.sort_by(|x, y| (x.category, &x.path).cmp(&(y.category, &y.path)));
    items
}

/// The elements of the list at `key`, revision-free and as rendered.
fn list_of<'a>(t: Twin<'a>, key: &str) -> Vec<Twin<'a>> {
    let get = |v: &'a Value| match v.as_mapping().and_then(|m| m.get(key)) {
        Some(Value::Sequence(items)) => items.as_slice(),
        _ => &[],
    };
    get(t.0).iter().zip(get(t.1)).collect()
}

/// Rules in one and not the other (as multisets, order ignored), compared revision-free.
fn rbac_items(a: Twin<'_>, b: Twin<'_>) -> Vec<Item> {
    let rules = |t: Twin<'_>| -> Vec<(String, String)> {
        list_of(t, "rules")
            .into_iter()
            .map(|(c, o)| (show(c), show(o)))
            .collect()
    };
    let (old, new) = (rules(a), rules(b));
    let mut items = Vec::new();
    let mut left: Vec<&String> = new.iter().map(|r| &r.0).collect();
    for (key, shown) in &old {
        match left.iter().position(|x| *x == key) {
            Some(i) => {
                left.remove(i);
            }
            None => items.push(Item {
                category: Category::RbacRule,
                path: "rules".into(),
                old: Some(shown.clone()),
                new: None,
            }),
        }
    }
    let mut gone: Vec<&String> = old.iter().map(|r| &r.0).collect();
    for (key, shown) in &new {
        match gone.iter().position(|x| *x == key) {
            Some(i) => {
                gone.remove(i);
            }
            None => items.push(Item {
                category: Category::RbacRule,
                path: "rules".into(),
                old: None,
                new: Some(shown.clone()),
            }),
        }
    }
    items
}

/// The webhooks of a configuration by name (`#<position>` when unnamed).
fn webhooks_of(t: Twin<'_>) -> BTreeMap<String, Twin<'_>> {
    list_of(t, "webhooks")
        .into_iter()
        .enumerate()
        .map(|(i, (c, o))| {
            let name = c
                .as_mapping()
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .map_or_else(|| format!("#{i}"), str::to_string);
            (name, (c, o))
        })
        .collect()
}

const WEBHOOK_FIELDS: &[&str] = &["rules", "namespaceSelector", "objectSelector"];

/// Per webhook name: added or removed webhooks, and changed rules and selectors. Other fields
/// of a webhook present on both sides are reported as `other`.
fn webhook_items(a: Twin<'_>, b: Twin<'_>) -> Vec<Item> {
    let (old, new) = (webhooks_of(a), webhooks_of(b));
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let field = |v: &Value, f: &str| v.as_mapping().and_then(|m| m.get(f)).cloned();
    let summary = |v: &Value| {
        let mut m = serde_yaml::Mapping::new();
        for f in WEBHOOK_FIELDS {
            if let Some(x) = field(v, f) {
                m.insert(Value::String(f.to_string()), x);
            }
        }
        show(&Value::Mapping(m))
    };
    let without_fields = |v: &Value| {
        let mut m = v.as_mapping().cloned().unwrap_or_default();
        for f in WEBHOOK_FIELDS {
            m.remove(*f);
        }
        Value::Mapping(m)
    };
    let mut items = Vec::new();
    for name in names {
        match (old.get(name), new.get(name)) {
            (Some(x), Some(y)) => {
                for f in WEBHOOK_FIELDS {
                    if field(x.0, f) != field(y.0, f) {
                        items.push(Item {
                            category: Category::Webhook,
                            path: format!("webhooks[{name}].{f}"),
                            old: field(x.1, f).as_ref().map(show),
                            new: field(y.1, f).as_ref().map(show),
                        });
                    }
                }
                let (xc, xo, yc, yo) = (
                    without_fields(x.0),
                    without_fields(x.1),
                    without_fields(y.0),
                    without_fields(y.1),
                );
                let mut rest = Vec::new();
                leaf_diffs(
                    &mut vec!["webhooks".to_string(), format!("[{name}]")],
                    Some((&xc, &xo)),
                    Some((&yc, &yo)),
                    &mut rest,
                );
                for (path, p, q) in rest {
                    items.push(Item {
                        category: Category::Other,
                        path: show_path(&path),
                        old: p.as_ref().map(show),
                        new: q.as_ref().map(show),
                    });
                }
            }
            (x, y) => items.push(Item {
                category: Category::Webhook,
                path: format!("webhooks[{name}]"),
                old: x.map(|t| summary(t.1)),
                new: y.map(|t| summary(t.1)),
            }),
        }
    }
    items
}

fn versions_of(m: &serde_yaml::Mapping) -> BTreeMap<String, &Value> {
    let mut out = BTreeMap::new();
    if let Some(Value::Sequence(vs)) = value_at(m, &["spec", "versions"]) {
        for v in vs {
            if let Some(name) = v
                .as_mapping()
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
            {
                out.insert(name.to_string(), v);
            }
        }
    }
    out
}

fn spec_fields(version: &Value) -> BTreeSet<String> {
    let path = [
        "schema",
        "openAPIV3Schema",
        "properties",
        "spec",
        "properties",
    ];
    match version
        .as_mapping()
        .and_then(|m| value_at(m, &path))
        .and_then(Value::as_mapping)
    {
        Some(props) => props.keys().map(show).collect(),
        None => BTreeSet::new(),
    }
}

/// Versions added or removed, and per version on both sides the top-level `spec` fields of its
/// schema added or removed.
fn crd_items(
    a: &serde_yaml::Mapping,
    b: &serde_yaml::Mapping,
    handled: &mut Vec<Path>,
) -> Vec<Item> {
    let (old, new) = (versions_of(a), versions_of(b));
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut items = Vec::new();
    for name in names {
        let seg = |rest: &[&str]| {
            let mut p = vec![
                "spec".to_string(),
                "versions".to_string(),
                format!("[{name}]"),
            ];
            p.extend(rest.iter().map(|s| s.to_string()));
            p
        };
        match (old.get(name), new.get(name)) {
            (Some(x), Some(y)) => {
                handled.push(seg(&[
                    "schema",
                    "openAPIV3Schema",
                    "properties",
                    "spec",
                    "properties",
                ]));
                let (fx, fy) = (spec_fields(x), spec_fields(y));
                for f in fx.difference(&fy) {
                    items.push(Item {
                        category: Category::CrdField,
                        path: format!("versions[{name}].spec.{f}"),
                        old: Some(f.clone()),
                        new: None,
                    });
                }
                for f in fy.difference(&fx) {
                    items.push(Item {
                        category: Category::CrdField,
                        path: format!("versions[{name}].spec.{f}"),
                        old: None,
                        new: Some(f.clone()),
                    });
                }
            }
            (x, y) => {
                handled.push(seg(&[]));
                let served = |v: &Value| {
                    let get = |k: &str| v.as_mapping().and_then(|m| m.get(k)).map(show);
                    format!(
                        "served: {}, storage: {}",
                        get("served").unwrap_or_else(|| "-".into()),
                        get("storage").unwrap_or_else(|| "-".into())
                    )
                };
                items.push(Item {
                    category: Category::CrdVersion,
                    path: format!("versions[{name}]"),
                    old: x.map(|v| served(v)),
                    new: y.map(|v| served(v)),
                });
            }
        }
    }
    items
}

/// The keys of the mesh config that differ, by dotted path. Text that is not YAML is compared
/// as text.
fn mesh_items(
    os: Naming<'_>,
    a: &serde_yaml::Mapping,
    ns: Naming<'_>,
    b: &serde_yaml::Mapping,
) -> Vec<Item> {
    let text = |m: &serde_yaml::Mapping| {
        value_at(m, &["data", "mesh"])
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (ta, tb) = (text(a), text(b));
    let parse = |t: &Option<String>| -> Option<Option<Value>> {
        match t {
            None => Some(None),
            Some(t) => serde_yaml::from_str::<Value>(t).ok().map(Some),
        }
    };
    match (parse(&ta), parse(&tb)) {
        (Some(x), Some(y)) => {
            let xc = x.as_ref().map(|v| os.value(v));
            let yc = y.as_ref().map(|v| ns.value(v));
            let mut leaves = Vec::new();
            leaf_diffs(
                &mut Vec::new(),
                xc.as_ref().zip(x.as_ref()),
                yc.as_ref().zip(y.as_ref()),
                &mut leaves,
            );
            leaves
                .into_iter()
                .map(|(path, p, q)| Item {
                    category: Category::MeshConfig,
                    path: if path.is_empty() {
                        "mesh".into()
                    } else {
                        show_path(&path)
                    },
                    old: p.as_ref().map(show),
                    new: q.as_ref().map(show),
                })
                .collect()
        }
        _ if ta == tb => Vec::new(),
        _ => vec![Item {
            category: Category::MeshConfig,
            path: "mesh (not YAML)".into(),
            old: ta,
            new: tb,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(yaml: &str) -> Object {
        let body: serde_yaml::Mapping = serde_yaml::from_str(yaml).unwrap();
        Object::from_mapping(body).unwrap()
    }

    fn named(r: &str) -> Revision {
        Revision::Named(r.into())
    }

    fn one(d: &ControlPlaneDiff) -> &Pair {
        assert_eq!(d.changed.len(), 1, "{d:#?}");
        &d.changed[0]
    }

    fn items(d: &ControlPlaneDiff, cat: Category) -> Vec<(String, Option<String>, Option<String>)> {
        d.changed
            .iter()
            .flat_map(|p| &p.items)
            .filter(|i| i.category == cat)
            .map(|i| (i.path.clone(), i.old.clone(), i.new.clone()))
            .collect()
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_string())
    }

    fn deployment(name: &str, image: &str, rev: &str, extra_env: &str) -> Object {
        obj(&format!(
            "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: istio-system, labels: {{istio.io/rev: {rev}}}}}
spec:
  template:
    spec:
      containers:
      - name: discovery
        image: {image}
        args: [discovery, --monitoringAddr=:15014]
        env:
        - {{name: REVISION, value: {rev}}}
        - {{name: CA_ADDR, value: {name}.istio-system.svc:15012}}
{extra_env}
        resources: {{requests: {{cpu: 500m}}}}
"
        ))
    }

    #[test]
    fn pairing_by_revision_free_names() {
        let old = vec![
            obj("{apiVersion: v1, kind: ServiceAccount, metadata: {name: istiod-1-13-5, namespace: istio-system}}"),
            obj("{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: istiod-clusterrole-1-13-5-istio-system}}"),
            obj("{apiVersion: v1, kind: Service, metadata: {name: istio-ingressgateway, namespace: istio-system}}"),
            obj("{apiVersion: v1, kind: ConfigMap, metadata: {name: x-1-13-50, namespace: istio-system}}"),
        ];
        let new = vec![
            obj("{apiVersion: v1, kind: ServiceAccount, metadata: {name: istiod-1-14-1, namespace: istio-system}}"),
            obj("{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: istiod-clusterrole-1-14-1-istio-system}}"),
            obj("{apiVersion: v1, kind: Service, metadata: {name: istio-ingressgateway, namespace: istio-system}}"),
            // A token that does not end at a boundary is not the revision: x-1-13-50 and
            // x-1-14-10 are not one object.
            obj("{apiVersion: v1, kind: ConfigMap, metadata: {name: x-1-14-10, namespace: istio-system}}"),
        ];
        let (pairs, only_old, only_new) = pair(&named("1-13-5"), &old, &named("1-14-1"), &new);
        let names: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(o, n)| (o.id.name.as_str(), n.id.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("istio-ingressgateway", "istio-ingressgateway"),
                ("istiod-1-13-5", "istiod-1-14-1"),
                (
                    "istiod-clusterrole-1-13-5-istio-system",
                    "istiod-clusterrole-1-14-1-istio-system"
                ),
            ]
        );
        assert_eq!(
            only_old
                .iter()
                .map(|o| o.id.name.as_str())
                .collect::<Vec<_>>(),
            ["x-1-13-50"]
        );
        assert_eq!(
            only_new
                .iter()
                .map(|o| o.id.name.as_str())
                .collect::<Vec<_>>(),
            ["x-1-14-10"]
        );
    }

    #[test]
    fn pairing_from_an_unrevisioned_install() {
        let old = vec![obj("{apiVersion: admissionregistration.k8s.io/v1, kind: MutatingWebhookConfiguration, metadata: {name: istio-sidecar-injector}}")];
        let new = vec![obj("{apiVersion: admissionregistration.k8s.io/v1, kind: MutatingWebhookConfiguration, metadata: {name: istio-sidecar-injector-1-14-1}}")];
        let (pairs, only_old, only_new) = pair(&Revision::Default, &old, &named("1-14-1"), &new);
        assert_eq!(pairs.len(), 1);
        assert!(only_old.is_empty() && only_new.is_empty());
    }

    #[test]
    fn a_revision_rename_alone_is_no_change() {
        let old = [deployment("istiod-1-13-5", "pilot:1.14.1", "1-13-5", "")];
        let new = [deployment("istiod-1-14-1", "pilot:1.14.1", "1-14-1", "")];
        let d = control_plane_diff(&named("1-13-5"), &old, &named("1-14-1"), &new);
        assert!(d.changed.is_empty(), "{d:#?}");
        assert_eq!(d.unchanged, 1);
        // From an unrevisioned install too.
        let old = [deployment("istiod", "pilot:1.14.1", "default", "")];
        let d = control_plane_diff(&Revision::Default, &old, &named("1-14-1"), &new);
        assert!(d.changed.is_empty(), "{d:#?}");
    }

    #[test]
    fn images_args_env_and_resources() {
        let old = [deployment("istiod-1-13-5", "pilot:1.13.5", "1-13-5", "")];
        let mut new = deployment(
            "istiod-1-14-1",
            "pilot:1.14.1",
            "1-14-1",
            "        - {name: PILOT_X, value: \"1\"}",
        );
        let text = new
            .to_yaml()
            .unwrap()
            .replace("--monitoringAddr=:15014", "--log_output_level=debug")
            .replace("500m", "1");
        new = obj(&text);
        let d = control_plane_diff(&named("1-13-5"), &old, &named("1-14-1"), &[new]);
        let p = one(&d);
        assert_eq!(p.new.name, "istiod-1-14-1");
        assert_eq!(
            items(&d, Category::Image),
            [(
                "spec.template.spec.containers[discovery].image".into(),
                s("pilot:1.13.5"),
                s("pilot:1.14.1")
            )]
        );
        assert_eq!(
            items(&d, Category::Args),
            [(
                "spec.template.spec.containers[discovery].args".into(),
                s(r#"["discovery","--monitoringAddr=:15014"]"#),
                s(r#"["discovery","--log_output_level=debug"]"#)
            )]
        );
        assert_eq!(
            items(&d, Category::Env),
            [(
                "spec.template.spec.containers[discovery].env[PILOT_X]".into(),
                None,
                s(r#"{"name":"PILOT_X","value":"1"}"#)
            )]
        );
        assert_eq!(
            items(&d, Category::Resources),
            [(
                "spec.template.spec.containers[discovery].resources.requests.cpu".into(),
                s("500m"),
                s("1")
            )]
        );
        assert!(items(&d, Category::Other).is_empty(), "{d:#?}");
    }

    #[test]
    fn rbac_rules_added_and_removed() {
        let old = [obj("
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: istiod-clusterrole-1-13-5-istio-system}
rules:
- {apiGroups: [''], resources: [pods], verbs: [get]}
- {apiGroups: [apps], resources: [deployments], verbs: [get]}
")];
        let new = [obj("
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: istiod-clusterrole-1-14-1-istio-system}
rules:
- {apiGroups: [apps], resources: [deployments], verbs: [get]}
- {apiGroups: [''], resources: [secrets], verbs: [get]}
")];
        let d = control_plane_diff(&named("1-13-5"), &old, &named("1-14-1"), &new);
        assert_eq!(
            items(&d, Category::RbacRule),
            [
                (
                    "rules".into(),
                    s(r#"{"apiGroups":[""],"resources":["pods"],"verbs":["get"]}"#),
                    None
                ),
                (
                    "rules".into(),
                    None,
                    s(r#"{"apiGroups":[""],"resources":["secrets"],"verbs":["get"]}"#)
                ),
            ]
        );
        assert_eq!(one(&d).items.len(), 2);
    }

    #[test]
    fn webhook_rules_and_selectors_by_webhook_name() {
        let old = [obj("
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: istio-sidecar-injector-1-13-5}
webhooks:
- name: rev.namespace.sidecar-injector.istio.io
  rules: [{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}]
  namespaceSelector: {matchExpressions: [{key: istio.io/rev, operator: In, values: ['1-13-5']}]}
  objectSelector: {}
- name: gone.sidecar-injector.istio.io
")];
        let new = [obj("
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: istio-sidecar-injector-1-14-1}
webhooks:
- name: rev.namespace.sidecar-injector.istio.io
  rules: [{operations: [CREATE, UPDATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}]
  namespaceSelector: {matchExpressions: [{key: istio.io/rev, operator: In, values: ['1-14-1']}]}
  objectSelector: {matchLabels: {a: b}}
")];
        let d = control_plane_diff(&named("1-13-5"), &old, &named("1-14-1"), &new);
        let got = items(&d, Category::Webhook);
        let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        // The selector's revision value alone is no change.
        assert_eq!(
            paths,
            [
                "webhooks[gone.sidecar-injector.istio.io]",
                "webhooks[rev.namespace.sidecar-injector.istio.io].objectSelector",
                "webhooks[rev.namespace.sidecar-injector.istio.io].rules",
            ]
        );
        assert!(got[0].2.is_none());
        assert_eq!(got[1].1, s("{}"));
        assert_eq!(got[1].2, s(r#"{"matchLabels":{"a":"b"}}"#));
    }

    #[test]
    fn crd_versions_and_spec_fields() {
        let crd = |versions: &str| {
            obj(&format!(
                "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: gateways.networking.istio.io}}
spec:
  versions: {versions}
"
            ))
        };
        let old = [crd("[{name: v1alpha3, served: true, storage: true, schema: {openAPIV3Schema: {properties: {spec: {properties: {servers: {}, selector: {}}}}}}}, {name: v1beta0, served: true, storage: false}]")];
        let new = [crd("[{name: v1alpha3, served: true, storage: true, schema: {openAPIV3Schema: {properties: {spec: {properties: {servers: {}, tls: {}}}}}}}, {name: v1, served: true, storage: false}]")];
        let d = control_plane_diff(&named("a"), &old, &named("b"), &new);
        assert_eq!(
            items(&d, Category::CrdVersion),
            [
                (
                    "versions[v1]".into(),
                    None,
                    s("served: true, storage: false")
                ),
                (
                    "versions[v1beta0]".into(),
                    s("served: true, storage: false"),
                    None
                ),
            ]
        );
        assert_eq!(
            items(&d, Category::CrdField),
            [
                (
                    "versions[v1alpha3].spec.selector".into(),
                    s("selector"),
                    None
                ),
                ("versions[v1alpha3].spec.tls".into(), None, s("tls")),
            ]
        );
        assert!(items(&d, Category::Other).is_empty(), "{d:#?}");
    }

    #[test]
    fn mesh_config_keys_by_dotted_path() {
        let cm = |name: &str, mesh: &str| {
            let mut data = serde_yaml::Mapping::new();
            data.insert("mesh".into(), mesh.into());
            let mut o = obj(&format!("{{apiVersion: v1, kind: ConfigMap, metadata: {{name: {name}, namespace: istio-system}}}}"));
            o.body.insert("data".into(), Value::Mapping(data));
            o
        };
        let old = [cm("istio", "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n  tracing: {zipkin: {address: z:9411}}\naccessLogFile: /dev/stdout\n")];
        let new = [cm("istio-1-14-1", "defaultConfig:\n  discoveryAddress: istiod-1-14-1.istio-system.svc:15012\n  holdApplicationUntilProxyStarts: true\naccessLogFile: ''\n")];
        let d = control_plane_diff(&Revision::Default, &old, &named("1-14-1"), &new);
        assert_eq!(
            items(&d, Category::MeshConfig),
            [
                ("accessLogFile".into(), s("/dev/stdout"), s("")),
                (
                    "defaultConfig.holdApplicationUntilProxyStarts".into(),
                    None,
                    s("true")
                ),
                (
                    "defaultConfig.tracing".into(),
                    s(r#"{"zipkin":{"address":"z:9411"}}"#),
                    None
                ),
            ]
        );
        assert!(items(&d, Category::Other).is_empty(), "{d:#?}");
    }

    #[test]
    fn other_fields_and_objects_on_one_side() {
        let old = [
            obj("{apiVersion: policy/v1beta1, kind: PodDisruptionBudget, metadata: {name: istiod-1-13-5, namespace: istio-system}, spec: {minAvailable: 1}}"),
            obj("{apiVersion: v1, kind: ServiceAccount, metadata: {name: istio-egressgateway-service-account, namespace: istio-system}}"),
        ];
        let new = [obj("{apiVersion: policy/v1, kind: PodDisruptionBudget, metadata: {name: istiod-1-14-1, namespace: istio-system}, spec: {minAvailable: 1}}")];
        let d = control_plane_diff(&named("1-13-5"), &old, &named("1-14-1"), &new);
        assert_eq!(
            items(&d, Category::Other),
            [("apiVersion".into(), s("policy/v1beta1"), s("policy/v1"))]
        );
        assert_eq!(d.only_old.len(), 1);
        assert_eq!(d.only_old[0].name, "istio-egressgateway-service-account");
        assert!(d.only_new.is_empty());
    }

    #[test]
    fn values_are_shown_as_rendered() {
        let old = [obj("{apiVersion: policy/v1, kind: PodDisruptionBudget, metadata: {name: istiod, namespace: istio-system}, spec: {selector: {matchLabels: {istio: pilot}}}}")];
        let new = [obj("{apiVersion: policy/v1, kind: PodDisruptionBudget, metadata: {name: istiod-1-14-1, namespace: istio-system}, spec: {selector: {matchLabels: {istio.io/rev: 1-14-1}}}}")];
        let d = control_plane_diff(&Revision::Default, &old, &named("1-14-1"), &new);
        assert_eq!(
            items(&d, Category::Other),
            [
                ("spec.selector.matchLabels.istio".into(), s("pilot"), None),
                (
                    "spec.selector.matchLabels.istio.io/rev".into(),
                    None,
                    s("1-14-1")
                ),
            ]
        );
    }

    #[test]
    fn documents_in_text_are_compared_key_by_key() {
        let cm = |name: &str, rev: &str, hub: &str| {
            let mut data = serde_yaml::Mapping::new();
            let values =
                format!("{{\n  \"global\": {{\"hub\": \"{hub}\"}},\n  \"revision\": \"{rev}\"\n}}");
            data.insert("values".into(), values.into());
            let mut o = obj(&format!("{{apiVersion: v1, kind: ConfigMap, metadata: {{name: {name}, namespace: istio-system}}}}"));
            o.body.insert("data".into(), Value::Mapping(data));
            o
        };
        let old = [cm(
            "istio-sidecar-injector-1-13-5",
            "1-13-5",
            "docker.io/istio",
        )];
        let new = [cm(
            "istio-sidecar-injector-1-14-1",
            "1-14-1",
            "gcr.io/istio-release",
        )];
        let d = control_plane_diff(&named("1-13-5"), &old, &named("1-14-1"), &new);
        assert_eq!(
            items(&d, Category::Other),
            [(
                "data.values.global.hub".into(),
                s("docker.io/istio"),
                s("gcr.io/istio-release")
            )]
        );
    }

    #[test]
    fn phase_delta_by_identity() {
        let ns = |labels: &str| {
            obj(&format!("{{apiVersion: v1, kind: Namespace, metadata: {{name: shop, labels: {{{labels}}}}}}}"))
        };
        let a = obj("{apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: x}}");
        let b = obj("{apiVersion: v1, kind: ConfigMap, metadata: {name: b, namespace: x}}");
        let s0 = ClusterState::from_objects(&[ns("istio.io/rev: old"), a.clone()]);
        let s1 = ClusterState::from_objects(&[ns("istio.io/rev: new"), b.clone()]);
        let d = phase_deltas(&[s0.clone(), s1, s0]);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].added, vec![b.id.clone()]);
        assert_eq!(d[0].deleted, vec![a.id.clone()]);
        assert_eq!(d[0].changed.len(), 1);
        assert_eq!(d[0].changed[0].kind, "Namespace");
        assert_eq!(d[1].added, [a.id]);
        assert_eq!(d[1].deleted, [b.id]);
    }
}
