//! Offline facts about Kubernetes that the planner needs: the namespace name label and the
//! system namespaces, which kinds are cluster-scoped, which API versions a Kubernetes minor
//! serves, which Kubernetes minors an Istio minor supports (the one table keyed by Istio, kept
//! beside the Kubernetes minors it lists), and the fields kube-apiserver fills into a webhook
//! configuration.
//!
//! Owns: those tables and nothing else. Every table says where it comes from. Must not: look at a
//! policy, a render or a plan; read files; talk to a cluster.

use serde_yaml::{Mapping, Value};

/// The immutable label kube-apiserver (1.21+) sets on every namespace to its name.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The API group of the webhook configurations and admission policies.
pub const ADMISSION_GROUP: &str = "admissionregistration.k8s.io";
/// Namespaces no wave may restart: the cluster's own.
pub const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// A Kubernetes (or Istio) minor version, `1.24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Minor {
    pub major: u64,
    pub minor: u64,
}

impl Minor {
    pub const fn new(major: u64, minor: u64) -> Minor {
        Minor { major, minor }
    }
}

impl std::fmt::Display for Minor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Kinds whose objects have no namespace, whatever `metadata.namespace` says (the API server
/// ignores it). From the Kubernetes API reference (`kubectl api-resources --namespaced=false`) for
/// the groups istioctl renders or a cluster commonly holds.
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "ComponentStatus"),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "MutatingAdmissionPolicyBinding",
    ),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("networking.k8s.io", "IngressClass"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("gateway.networking.k8s.io", "GatewayClass"),
    ("policy", "PodSecurityPolicy"),
    ("extensions", "PodSecurityPolicy"),
];

/// True when objects of this group and kind are cluster-scoped.
pub fn is_cluster_scoped(group: &str, kind: &str) -> bool {
    CLUSTER_SCOPED
        .iter()
        .any(|(g, k)| *g == group && *k == kind)
}

/// One API version of one kind, and the Kubernetes minors that serve it: from `introduced`
/// (inclusive) to `removed` (exclusive). From the Kubernetes "Deprecated API Migration Guide"
/// (kubernetes.io/docs/reference/using-api/deprecation-guide) and the release notes that made
/// each version GA.
struct ServedRange {
    api_version: &'static str,
    kind: &'static str,
    introduced: Minor,
    removed: Option<Minor>,
}

const fn served(
    api_version: &'static str,
    kind: &'static str,
    introduced: u64,
    removed: Option<u64>,
) -> ServedRange {
    ServedRange {
        api_version,
        kind,
        introduced: Minor::new(1, introduced),
        removed: match removed {
            Some(r) => Some(Minor::new(1, r)),
            None => None,
        },
    }
}

/// `*` matches every kind of the API version.
const SERVED: &[ServedRange] = &[
    served("extensions/v1beta1", "*", 0, Some(16)),
    served("apps/v1beta1", "*", 0, Some(16)),
    served("apps/v1beta2", "*", 0, Some(16)),
    served("admissionregistration.k8s.io/v1beta1", "*", 0, Some(22)),
    served("apiextensions.k8s.io/v1beta1", "*", 0, Some(22)),
    served("apiregistration.k8s.io/v1beta1", "*", 0, Some(22)),
    served("rbac.authorization.k8s.io/v1beta1", "*", 0, Some(22)),
    served("networking.k8s.io/v1beta1", "*", 0, Some(22)),
    served("scheduling.k8s.io/v1beta1", "*", 0, Some(22)),
    served("certificates.k8s.io/v1beta1", "*", 0, Some(22)),
    served("coordination.k8s.io/v1beta1", "*", 0, Some(22)),
    served("storage.k8s.io/v1beta1", "CSIDriver", 0, Some(22)),
    served("storage.k8s.io/v1beta1", "CSINode", 0, Some(22)),
    served("storage.k8s.io/v1beta1", "StorageClass", 0, Some(22)),
    served("storage.k8s.io/v1beta1", "VolumeAttachment", 0, Some(22)),
    served("storage.k8s.io/v1beta1", "CSIStorageCapacity", 21, Some(27)),
    served("batch/v1beta1", "*", 0, Some(25)),
    served("discovery.k8s.io/v1beta1", "*", 0, Some(25)),
    served("events.k8s.io/v1beta1", "*", 0, Some(25)),
    served("autoscaling/v2beta1", "*", 0, Some(25)),
    served("policy/v1beta1", "*", 0, Some(25)),
    served("node.k8s.io/v1beta1", "*", 0, Some(25)),
    served("autoscaling/v2beta2", "*", 12, Some(26)),
    served("flowcontrol.apiserver.k8s.io/v1beta1", "*", 20, Some(26)),
    served("flowcontrol.apiserver.k8s.io/v1beta2", "*", 23, Some(29)),
    served("flowcontrol.apiserver.k8s.io/v1beta3", "*", 26, Some(32)),
    served("flowcontrol.apiserver.k8s.io/v1", "*", 29, None),
    served("policy/v1", "*", 21, None),
    served("autoscaling/v2", "*", 23, None),
    served("batch/v1", "CronJob", 21, None),
    served("discovery.k8s.io/v1", "*", 21, None),
    served("node.k8s.io/v1", "*", 20, None),
    served("networking.k8s.io/v1", "Ingress", 19, None),
    served("networking.k8s.io/v1", "IngressClass", 19, None),
    served(
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        30,
        None,
    ),
    served(
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        30,
        None,
    ),
    served("admissionregistration.k8s.io/v1", "*", 16, None),
    served("apiextensions.k8s.io/v1", "*", 16, None),
    served("rbac.authorization.k8s.io/v1", "*", 8, None),
];

/// Why an API version is not served by a Kubernetes minor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotServed {
    /// Removed in that minor.
    RemovedIn(Minor),
    /// First served in that minor.
    IntroducedIn(Minor),
}

/// Whether `kubernetes` serves `api_version` for `kind`. Versions the table does not list (core
/// `v1`, `apps/v1`, custom resources) are assumed served.
pub fn serves(kubernetes: Minor, api_version: &str, kind: &str) -> Result<(), NotServed> {
    let Some(range) = SERVED
        .iter()
        .find(|r| r.api_version == api_version && (r.kind == kind || r.kind == "*"))
    else {
        return Ok(());
    };
    if kubernetes < range.introduced {
        return Err(NotServed::IntroducedIn(range.introduced));
    }
    match range.removed {
        Some(removed) if kubernetes >= removed => Err(NotServed::RemovedIn(removed)),
        _ => Ok(()),
    }
}

/// The API version a delete stub uses for `group`/`kind`: the newest one `kubernetes` serves
/// (the newest one current clusters serve when the Kubernetes version is unknown), or
/// `rendered` when the table has no better choice.
pub fn delete_api_version(
    group: &str,
    kind: &str,
    rendered: &str,
    kubernetes: Option<Minor>,
) -> String {
    let candidates: &[&str] = match (group, kind) {
        ("autoscaling", "HorizontalPodAutoscaler") => &[
            "autoscaling/v2",
            "autoscaling/v2beta2",
            "autoscaling/v2beta1",
        ],
        ("policy", "PodDisruptionBudget") => &["policy/v1", "policy/v1beta1"],
        ("admissionregistration.k8s.io", _) => &[
            "admissionregistration.k8s.io/v1",
            "admissionregistration.k8s.io/v1beta1",
        ],
        ("rbac.authorization.k8s.io", _) => &["rbac.authorization.k8s.io/v1"],
        ("apiextensions.k8s.io", _) => &["apiextensions.k8s.io/v1"],
        _ => &[],
    };
    let fits = |v: &&&str| match kubernetes {
        Some(k) => serves(k, v, kind).is_ok(),
        None => true,
    };
    candidates
        .iter()
        .find(fits)
        .map(|v| v.to_string())
        .unwrap_or_else(|| rendered.to_string())
}

/// The Kubernetes minors each Istio minor supports (inclusive), from istio.io's "Supported
/// Releases" page (docs/releases/supported-releases, "Support status of Istio releases"), as
/// recorded by endoflife.date's `products/istio.md`.
const ISTIO_SUPPORT: &[(u64, u64, u64)] = &[
    (7, 16, 18),
    (8, 16, 19),
    (9, 17, 20),
    (10, 18, 21),
    (11, 18, 22),
    (12, 19, 22),
    (13, 20, 23),
    (14, 21, 24),
    (15, 22, 25),
    (16, 22, 25),
    (17, 23, 26),
    (18, 24, 27),
    (19, 25, 28),
    (20, 25, 29),
    (21, 26, 29),
    (22, 27, 30),
    (23, 27, 30),
    (24, 28, 31),
    (25, 29, 32),
    (26, 29, 33),
    (27, 29, 33),
    (28, 30, 34),
    (29, 31, 35),
];

/// The Kubernetes minors an Istio 1.x minor supports, or `None` when the table does not know it.
pub fn istio_supports(istio: Minor) -> Option<(Minor, Minor)> {
    if istio.major != 1 {
        return None;
    }
    ISTIO_SUPPORT
        .iter()
        .find(|(m, _, _)| *m == istio.minor)
        .map(|(_, lo, hi)| (Minor::new(1, *lo), Minor::new(1, *hi)))
}

/// The Kubernetes minors Istio `istio` supports, when the table knows it and they exclude `k`:
/// the one test of this skew (`policy` refuses it from the inputs, `plan` from a hop).
pub fn istio_support_gap(istio: Minor, k: Minor) -> Option<(Minor, Minor)> {
    istio_supports(istio).filter(|(lowest, highest)| k < *lowest || k > *highest)
}

/// The fields kube-apiserver fills into every webhook of a (Mutating|Validating)
/// WebhookConfiguration when they are absent (`admissionregistration/v1` defaults:
/// `SetDefaults_ValidatingWebhook`, `SetDefaults_MutatingWebhook`, `SetDefaults_Rule`). Written
/// out, a server-side apply of the object owns the same fields the stored object has, so it does
/// not conflict with a client-side-created copy (observed: the conflict is on
/// `.webhooks[name=…].rules`, from the defaulted `scope: "*"`).
pub fn with_webhook_defaults(kind: &str, body: &mut Mapping) {
    let mutating = kind == "MutatingWebhookConfiguration";
    if !mutating && kind != "ValidatingWebhookConfiguration" {
        return;
    }
    let Some(Value::Sequence(webhooks)) = body.get_mut("webhooks") else {
        return;
    };
    for wh in webhooks.iter_mut() {
        let Value::Mapping(wh) = wh else { continue };
        let mut set = |key: &str, value: Value| {
            if !wh.contains_key(key) || wh.get(key) == Some(&Value::Null) {
                wh.insert(key.into(), value);
            }
        };
        set("failurePolicy", "Fail".into());
        set("matchPolicy", "Equivalent".into());
        set("namespaceSelector", Value::Mapping(Mapping::new()));
        set("objectSelector", Value::Mapping(Mapping::new()));
        set("timeoutSeconds", 10.into());
        if mutating {
            set("reinvocationPolicy", "Never".into());
        }
        if let Some(Value::Sequence(rules)) = wh.get_mut("rules") {
            for rule in rules.iter_mut() {
                if let Value::Mapping(rule) = rule {
                    if !rule.contains_key("scope") {
                        rule.insert("scope".into(), "*".into());
                    }
                }
            }
        }
        if let Some(Value::Mapping(cc)) = wh.get_mut("clientConfig") {
            if let Some(Value::Mapping(svc)) = cc.get_mut("service") {
                if !svc.contains_key("port") {
                    svc.insert("port".into(), 443.into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_and_not_yet_served_versions() {
        let k = |m| Minor::new(1, m);
        assert_eq!(
            serves(k(25), "policy/v1beta1", "PodDisruptionBudget"),
            Err(NotServed::RemovedIn(k(25)))
        );
        assert!(serves(k(24), "policy/v1beta1", "PodDisruptionBudget").is_ok());
        assert_eq!(
            serves(k(26), "autoscaling/v2beta2", "HorizontalPodAutoscaler"),
            Err(NotServed::RemovedIn(k(26)))
        );
        assert_eq!(
            serves(k(22), "autoscaling/v2", "HorizontalPodAutoscaler"),
            Err(NotServed::IntroducedIn(k(23)))
        );
        assert!(serves(k(36), "apps/v1", "Deployment").is_ok());
        assert!(serves(k(36), "networking.istio.io/v1alpha3", "EnvoyFilter").is_ok());
    }

    #[test]
    fn delete_stubs_pick_a_served_version() {
        let hpa = |k| {
            delete_api_version(
                "autoscaling",
                "HorizontalPodAutoscaler",
                "autoscaling/v2beta1",
                k,
            )
        };
        assert_eq!(hpa(None), "autoscaling/v2");
        assert_eq!(hpa(Some(Minor::new(1, 22))), "autoscaling/v2beta2");
        assert_eq!(hpa(Some(Minor::new(1, 30))), "autoscaling/v2");
    }

    #[test]
    fn cluster_scope_is_by_group_and_kind() {
        assert!(is_cluster_scoped(
            "rbac.authorization.k8s.io",
            "ClusterRole"
        ));
        assert!(!is_cluster_scoped("rbac.authorization.k8s.io", "Role"));
        assert!(!is_cluster_scoped("example.com", "ClusterRole"));
    }

    #[test]
    fn istio_support_table() {
        assert_eq!(
            istio_supports(Minor::new(1, 14)),
            Some((Minor::new(1, 21), Minor::new(1, 24)))
        );
        assert_eq!(istio_supports(Minor::new(1, 99)), None);
    }

    #[test]
    fn webhook_defaults_fill_scope_and_keep_given_values() {
        let mut body: Mapping = serde_yaml::from_str(
            "webhooks:\n- name: a\n  failurePolicy: Ignore\n  rules:\n  - operations: [CREATE]\n",
        )
        .unwrap();
        with_webhook_defaults("ValidatingWebhookConfiguration", &mut body);
        let text = serde_yaml::to_string(&body).unwrap();
        assert!(text.contains("scope: '*'"), "{text}");
        assert!(text.contains("failurePolicy: Ignore"), "{text}");
        assert!(text.contains("matchPolicy: Equivalent"), "{text}");
        assert!(!text.contains("reinvocationPolicy"), "{text}");
    }
}
