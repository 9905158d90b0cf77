//! Kubernetes objects as the tool sees them: the one YAML reader and the one identity type.
//!
//! Owns: parsing multi-document YAML as istioctl prints it (both the pre-1.19 template-text style
//! and the later re-serialized style) and `ObjectId` (API group, kind, namespace, name — never
//! the API version). Must not: know Istio (what an object is for is `istio`'s and the planner's),
//! run processes, read files, or decide what a phase does.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;
use serde_yaml::{Mapping, Value};

use crate::error::{Error, Result};
use crate::yamlin;

/// Identity of an object in a cluster. The API version is deliberately absent: the same object is
/// served under several versions (`autoscaling/v2beta1` and `autoscaling/v2` are one HPA).
/// Ordered by group, kind, namespace (cluster-scoped first), then name, each compared byte by
/// byte like `String`'s order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ObjectId {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl Ord for ObjectId {
    fn cmp(&self, other: &Self) -> Ordering {
        bytes_cmp(&self.group, &other.group)
            .then_with(|| bytes_cmp(&self.kind, &other.kind))
            .then_with(|| match (&self.namespace, &other.namespace) {
                (Some(a), Some(b)) => bytes_cmp(a, b),
                (a, b) => a.is_some().cmp(&b.is_some()),
            })
            .then_with(|| bytes_cmp(&self.name, &other.name))
    }
}

impl PartialOrd for ObjectId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `a.cmp(b)` for two strings, eight bytes at a time. The state maps are ordered by `ObjectId`
/// and looked up millions of times in a large plan; `str`'s order calls `memcmp` for every
/// field, whose call cost dwarfs the comparison of names this short.
#[inline]
fn bytes_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut x = a.chunks_exact(8);
    let mut y = b.chunks_exact(8);
    for (p, q) in (&mut x).zip(&mut y) {
        let (mut u, mut v) = ([0u8; 8], [0u8; 8]);
        u.copy_from_slice(p);
        v.copy_from_slice(q);
        if u != v {
            // Big-endian: the first differing byte decides, as in a byte-wise comparison.
            return u64::from_be_bytes(u).cmp(&u64::from_be_bytes(v));
        }
    }
    // The rest of the shorter one (under eight bytes), then the longer one's.
    let done = a.len().min(b.len()) / 8 * 8;
    for (p, q) in a[done..].iter().zip(&b[done..]) {
        if p != q {
            return p.cmp(q);
        }
    }
    a.len().cmp(&b.len())
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        };
        match &self.namespace {
            Some(ns) => write!(f, "{kind} {ns}/{}", self.name),
            None => write!(f, "{kind} {}", self.name),
        }
    }
}

/// The API group of an `apiVersion` (`apps/v1` -> `apps`, `v1` -> ``).
pub fn group_of(api_version: &str) -> &str {
    match api_version.rsplit_once('/') {
        Some((group, _)) => group,
        None => "",
    }
}

/// One Kubernetes object: its identity, the API version it was rendered with, and its full body.
/// `Eq` lets two `Arc<Object>`s of shared states compare by pointer first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub api_version: String,
    pub id: ObjectId,
    pub body: Mapping,
}

impl Object {
    /// Builds an object from a YAML mapping, checking it has apiVersion, kind and metadata.name,
    /// and that they and the namespace follow Kubernetes' rules (`names::check_object_id`).
    pub fn from_mapping(body: Mapping) -> std::result::Result<Object, String> {
        let api_version = str_at(&body, &["apiVersion"]).ok_or("it has no apiVersion")?;
        let kind = str_at(&body, &["kind"]).ok_or("it has no kind")?;
        let name = str_at(&body, &["metadata", "name"]).ok_or("it has no metadata.name")?;
        let group = group_of(api_version);
        // The API server ignores metadata.namespace on cluster-scoped kinds: it does not make
        // another object.
        let namespace = str_at(&body, &["metadata", "namespace"])
            .filter(|ns| !ns.is_empty() && !crate::k8s::is_cluster_scoped(group, kind))
            .map(str::to_string);
        // Kind, namespace, name and group become file names: check them by Kubernetes' rules.
        let group = group_of(api_version);
        crate::names::check_object_id(api_version, group, kind, namespace.as_deref(), name)?;
        Ok(Object {
            id: ObjectId {
                group: group.to_string(),
                kind: kind.to_string(),
                namespace,
                name: name.to_string(),
            },
            api_version: api_version.to_string(),
            body,
        })
    }

    /// The object's labels (string values only), sorted.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(Value::Mapping(labels)) = value_at(&self.body, &["metadata", "labels"]) {
            for (k, v) in labels {
                if let (Some(k), Some(v)) = (k.as_str(), scalar_text(v)) {
                    out.insert(k.to_string(), v);
                }
            }
        }
        out
    }

    pub fn label(&self, key: &str) -> Option<String> {
        match value_at(&self.body, &["metadata", "labels", key]) {
            Some(v) => scalar_text(v),
            None => None,
        }
    }

    /// The object as YAML text (one document, no leading `---`) that YAML 1.1 and 1.2 readers
    /// read alike (see `yamlout`). A value that cannot be written is an error naming the object.
    pub fn to_yaml(&self) -> Result<String> {
        crate::yamlout::mapping_to_string(&self.body).map_err(|e| e.within(&self.id))
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The value at a path of mapping keys.
pub fn value_at<'a>(map: &'a Mapping, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let v = map.get(*first)?;
    if rest.is_empty() {
        return Some(v);
    }
    match v {
        Value::Mapping(m) => value_at(m, rest),
        _ => None,
    }
}

/// The string at a path of mapping keys.
pub fn str_at<'a>(map: &'a Mapping, path: &[&str]) -> Option<&'a str> {
    value_at(map, path).and_then(Value::as_str)
}

/// Parses multi-document YAML into objects, in document order. Empty documents (comments only,
/// `---` runs) are skipped. `source` names the text in error messages (a file, or the istioctl
/// command that printed it). The text passes `yamlin` first: at most `yamlin::MANIFEST_LIMIT`
/// bytes, nesting at most `yamlin::MAX_DEPTH` deep, no merge keys and no duplicate keys (kubectl
/// would resolve a merge key that this reader keeps as a field).
pub fn parse_manifest(text: &str, source: &str) -> Result<Vec<Object>> {
    let source = Path::new(source);
    let text = yamlin::decode(text.as_bytes(), yamlin::Kind::Manifest, source)?;
    let mut objects = Vec::new();
    let mut seen = BTreeMap::new();
    for (index, value) in yamlin::documents(text, source)?.into_iter().enumerate() {
        let body = match value {
            Value::Null => continue,
            Value::Mapping(m) => m,
            _ => {
                return Err(Error::new(format!(
                    "document {} is not a Kubernetes object (expected a mapping)",
                    index + 1
                ))
                .in_file(source))
            }
        };
        let object = Object::from_mapping(body).map_err(|why| {
            Error::new(format!(
                "document {} is not a Kubernetes object: {why}",
                index + 1
            ))
            .in_file(source)
        })?;
        if let Some(first) = seen.insert(object.id.clone(), index + 1) {
            return Err(Error::new(format!(
                "{} appears twice (documents {first} and {})",
                object.id,
                index + 1
            ))
            .in_file(source));
        }
        objects.push(object);
    }
    Ok(objects)
}

/// An identity from its four parts (for the tests).
#[cfg(test)]
pub(crate) fn id(group: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectId {
    ObjectId {
        group: group.into(),
        kind: kind.into(),
        namespace: namespace.map(Into::into),
        name: name.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The hand-written order is the fields' own, in declaration order: what a derived `Ord`
        /// gave, and what every sorted list and map of the output is in. Short alphabets make
        /// shared prefixes, equal fields and prefixes of each other common.
        #[test]
        fn object_ids_order_as_their_fields_do(
            a in ("[ab]{0,2}", "[a-cé]{0,10}", proptest::option::of("[ab]{0,17}"), "[ab\\x00ÿ]{0,20}"),
            b in ("[ab]{0,2}", "[a-cé]{0,10}", proptest::option::of("[ab]{0,17}"), "[ab\\x00ÿ]{0,20}"),
        ) {
            let x = id(&a.0, &a.1, a.2.as_deref(), &a.3);
            let y = id(&b.0, &b.1, b.2.as_deref(), &b.3);
            prop_assert_eq!(x.cmp(&y), (&a.0, &a.1, &a.2, &a.3).cmp(&(&b.0, &b.1, &b.2, &b.3)));
            prop_assert_eq!(x.cmp(&y) == Ordering::Equal, x == y);
            prop_assert_eq!(bytes_cmp(&a.3, &b.3), a.3.cmp(&b.3));
        }
    }

    #[test]
    fn object_ids_order_cluster_scoped_first_then_by_bytes() {
        let mut ids = [
            id("", "Namespace", None, "ns-000010"),
            id("", "Namespace", None, "ns-00001"),
            id("", "Namespace", None, "ns-0000100000000002"),
            id("", "Namespace", None, "ns-0000100000000001"),
            id("", "ConfigMap", Some("a"), "x"),
            id("", "ConfigMap", None, "x"),
            id("apps", "Deployment", Some("a"), "x"),
        ];
        ids.sort();
        let shown: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "ConfigMap x",
                "ConfigMap a/x",
                "Namespace ns-00001",
                "Namespace ns-000010",
                "Namespace ns-0000100000000001",
                "Namespace ns-0000100000000002",
                "Deployment.apps a/x",
            ]
        );
    }

    fn parse_one(text: &str) -> Object {
        let mut objects = parse_manifest(text, "test.yaml").unwrap();
        assert_eq!(objects.len(), 1);
        objects.remove(0)
    }

    #[test]
    fn identity_ignores_api_version() {
        let a = parse_one("apiVersion: autoscaling/v2beta1\nkind: HorizontalPodAutoscaler\nmetadata: {name: gw, namespace: istio-system}\n");
        let b = parse_one("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: gw, namespace: istio-system}\n");
        assert_eq!(a.id, b.id);
        assert_ne!(a.api_version, b.api_version);
        assert_eq!(
            a.id.to_string(),
            "HorizontalPodAutoscaler.autoscaling istio-system/gw"
        );
    }

    #[test]
    fn a_namespace_on_a_cluster_scoped_kind_is_not_part_of_its_identity() {
        let a = parse_one("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r, namespace: istio-system}\n");
        let b = parse_one(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n",
        );
        assert_eq!(a.id, b.id);
        let role = parse_one("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: istio-system}\n");
        assert_eq!(role.id.namespace.as_deref(), Some("istio-system"));
    }

    #[test]
    fn skips_empty_documents_and_keeps_separators_inside_block_scalars() {
        let text = "---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: |\n    ---\n    not: a document\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n";
        let objects = parse_manifest(text, "test.yaml").unwrap();
        let names: Vec<_> = objects.iter().map(|o| o.id.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn invalid_yaml_is_located() {
        let err = parse_manifest("apiVersion: v1\nkind: [\n", "out.yaml").unwrap_err();
        let loc = err.location.unwrap();
        assert_eq!(loc.file, Path::new("out.yaml"));
        assert!(loc.line >= 2, "{loc:?}");
    }

    #[test]
    fn output_over_the_limit_is_refused_before_parsing() {
        let text = "#".repeat(crate::yamlin::MANIFEST_LIMIT as usize + 1);
        let err = parse_manifest(&text, "output of `istioctl`").unwrap_err();
        assert_eq!(
            err.message,
            "istioctl's output is larger than 64 MiB, the most istio-canary reads"
        );
    }

    #[test]
    fn merge_and_duplicate_keys_in_output_are_refused_at_the_key() {
        let err = parse_manifest(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  <<: {x: y}\n",
            "out",
        )
        .unwrap_err();
        assert_eq!(err.location.map(|l| (l.line, l.column)), Some((5, 3)));
        let err = parse_manifest(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, name: b}\n",
            "out",
        )
        .unwrap_err();
        assert_eq!(err.location.map(|l| (l.line, l.column)), Some((3, 21)));
    }

    #[test]
    fn a_document_without_name_is_rejected() {
        let err =
            parse_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "x").unwrap_err();
        assert_eq!(
            err.message,
            "document 1 is not a Kubernetes object: it has no metadata.name"
        );
    }

    #[test]
    fn duplicate_objects_are_rejected() {
        let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
        let err = parse_manifest(&format!("{doc}---\n{doc}"), "x").unwrap_err();
        assert_eq!(err.message, "ConfigMap a appears twice (documents 1 and 2)");
    }
}
