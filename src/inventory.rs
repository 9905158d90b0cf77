//! The cluster as it is: the saved output of one documented `kubectl get … -o yaml` command (a
//! `v1` List), read into objects as the API server stores them, without what only the server
//! writes (status, uid, resourceVersion, managedFields, …).
//!
//! Owns: the capture command, reading the List (every item checked like an object of a render:
//! apiVersion, kind, names, no identity twice, each error pointing at its item), and which kinds
//! the capture holds (a narrower capture is fine: a kind it lacks is a kind it says nothing
//! about). Must not: know Istio or the policy, or decide what the plan does with the objects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_yaml::{Mapping, Value};

use crate::error::{Error, Result};
use crate::manifest::{Object, ObjectId};
use crate::yamlin::{self, Kind};
use crate::yamlpath::{locate, Seg};

/// The command whose saved output is an inventory (README: "An inventory").
pub const COMMAND: &str = "kubectl get namespaces,deployments,statefulsets,daemonsets,services,serviceaccounts,configmaps,mutatingwebhookconfigurations,validatingwebhookconfigurations -A -o yaml > inventory.yaml";

/// The resource to add to `COMMAND`'s list when the cluster serves the Gateway API (kubectl
/// refuses a resource the server does not know, so the command leaves it out).
pub const GATEWAY_API_RESOURCE: &str = "gateways.gateway.networking.k8s.io";

/// Metadata fields only the API server writes: dropped, so that an object of the inventory reads
/// like an object of a render and nothing the server owns is ever re-applied from it.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
];

/// A kind, by API group and name (`("apps", "Deployment")`).
pub type GroupKind = (String, String);

/// A cluster inventory: its objects in the order of the file and the kinds it holds.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub objects: Vec<Object>,
    /// Every kind with at least one item: for these, the inventory is the whole truth (an object
    /// it lacks does not exist); for the others it says nothing.
    pub kinds: BTreeSet<GroupKind>,
}

impl Inventory {
    pub fn holds(&self, group: &str, kind: &str) -> bool {
        self.kinds.contains(&(group.to_string(), kind.to_string()))
    }
}

/// Reads an inventory: a `v1` List whose items are Kubernetes objects. Errors point at the
/// item (file, line, column) and say what is wrong with it.
pub fn parse(bytes: &[u8], source: &Path) -> Result<Inventory> {
    let text = yamlin::decode(bytes, Kind::Inventory, source)?;
    let value: Value = yamlin::from_str(text, source)?;
    let at = |segs: &[Seg<'_>], err: Error| -> Error {
        match locate(text, segs) {
            Some((line, col)) => err.at(source, text, line, col),
            None => err.in_file(source),
        }
    };
    let help = format!("save the output of `{COMMAND}`");
    let Value::Mapping(list) = value else {
        return Err(
            Error::new("an inventory must be a `v1` List (a YAML mapping)")
                .in_file(source)
                .with_help(help),
        );
    };
    let kind = list.get("kind").and_then(Value::as_str);
    let api = list.get("apiVersion").and_then(Value::as_str);
    if kind != Some("List") || api != Some("v1") {
        return Err(at(
            &[Seg::Key("kind")],
            Error::new(format!(
                "an inventory must be a `v1` List, not {}",
                match (api, kind) {
                    (Some(a), Some(k)) => format!("{a} {k}"),
                    _ => "a mapping without apiVersion and kind".to_string(),
                }
            )),
        )
        .with_help(help));
    }
    let items = match list.get("items") {
        Some(Value::Sequence(items)) if !items.is_empty() => items,
        Some(Value::Sequence(_)) | Some(Value::Null) | None => {
            return Err(at(
                &[Seg::Key("items")],
                Error::new("the inventory holds no items"),
            )
            .with_help(help))
        }
        Some(_) => {
            return Err(at(
                &[Seg::Key("items")],
                Error::new("`items` must be a list of objects"),
            ))
        }
    };
    let mut objects = Vec::with_capacity(items.len());
    let mut seen: BTreeMap<ObjectId, usize> = BTreeMap::new();
    let mut kinds = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let item_at = |err: Error| at(&[Seg::Key("items"), Seg::Index(i)], err);
        let Value::Mapping(body) = item else {
            return Err(item_at(Error::new(format!(
                "item {} is not a Kubernetes object (expected a mapping)",
                i + 1
            ))));
        };
        let object = Object::from_mapping(stored(body)).map_err(|why| {
            item_at(Error::new(format!(
                "item {} is not a Kubernetes object: {why}",
                i + 1
            )))
        })?;
        if let Some(first) = seen.insert(object.id.clone(), i + 1) {
            return Err(item_at(Error::new(format!(
                "{} appears twice (items {first} and {})",
                object.id,
                i + 1
            )))
            .with_help("capture the inventory with one command, not by joining captures"));
        }
        kinds.insert((object.id.group.clone(), object.id.kind.clone()));
        objects.push(object);
    }
    Ok(Inventory { objects, kinds })
}

/// An item without what only the server writes: `status` and the metadata in
/// `SERVER_METADATA`. Labels, annotations (the last-applied configuration among them), owner
/// references and the spec stay as the server holds them.
fn stored(body: &Mapping) -> Mapping {
    let mut body = body.clone();
    body.remove("status");
    if let Some(Value::Mapping(metadata)) = body.get_mut("metadata") {
        for field in SERVER_METADATA {
            metadata.remove(*field);
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Inventory> {
        parse(text.as_bytes(), Path::new("inventory.yaml"))
    }

    #[test]
    fn a_list_becomes_objects_without_what_the_server_writes() {
        let inv = parse_text(
            "apiVersion: v1\nkind: List\nmetadata: {resourceVersion: \"\"}\nitems:\n\
             - apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: shop\n    uid: 1234\n    resourceVersion: \"99\"\n    creationTimestamp: \"2024-01-01T00:00:00Z\"\n    managedFields: [{manager: kubectl}]\n    labels: {team: a}\n    annotations: {kubectl.kubernetes.io/last-applied-configuration: \"{}\"}\n  status: {phase: Active}\n\
             - apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: web, namespace: shop, generation: 3}\n  spec: {replicas: 2}\n",
        )
        .unwrap();
        assert_eq!(inv.objects.len(), 2);
        let ns = &inv.objects[0];
        assert_eq!(ns.id.to_string(), "Namespace shop");
        let meta = ns.body.get("metadata").and_then(Value::as_mapping).unwrap();
        for gone in SERVER_METADATA {
            assert!(!meta.contains_key(*gone), "{gone} kept");
        }
        assert!(!ns.body.contains_key("status"));
        assert_eq!(ns.label("team").as_deref(), Some("a"));
        assert!(
            meta.get("annotations").is_some(),
            "annotations are the owner's: kept"
        );
        assert!(inv.holds("apps", "Deployment"));
        assert!(inv.holds("", "Namespace"));
        assert!(!inv.holds("", "Service"));
    }

    #[test]
    fn what_is_not_an_inventory_is_refused_pointing_at_it() {
        let e = parse_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n").unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains("must be a `v1` List, not v1 Namespace"),
            "{shown}"
        );
        assert!(shown.contains("inventory.yaml:2:"), "{shown}");
        assert!(shown.contains(COMMAND), "{shown}");

        let e = parse_text(
            "apiVersion: v1\nkind: List\nitems:\n- kind: Namespace\n  metadata: {name: a}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("item 1 is not a Kubernetes object: it has no apiVersion"),
            "{e}"
        );
        assert!(e.contains("inventory.yaml:4:"), "{e}");

        let e = parse_text(
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("Namespace a appears twice (items 1 and 2)"),
            "{e}"
        );
        assert!(e.contains("inventory.yaml:5:"), "{e}");

        let e = parse_text("apiVersion: v1\nkind: List\nitems: []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no items"), "{e}");

        let e = parse_text("apiVersion: v1\nkind: List\nitems: {a: b}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`items` must be a list of objects"), "{e}");
        assert!(e.contains("inventory.yaml:3:"), "{e}");

        let e = parse_text("- a\n- b\n").unwrap_err().to_string();
        assert!(
            e.contains("an inventory must be a `v1` List (a YAML mapping)"),
            "{e}"
        );

        let e = parse_text("apiVersion: v1\nkind: List\nitems:\n- just-a-string\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("item 1 is not a Kubernetes object (expected a mapping)"),
            "{e}"
        );
    }
}
