//! Istio's facts, in one place: the labels and object names Istio gives meaning to, how each role
//! is recognised in a render (istiod, injector webhooks, gateways, revision-tag objects), what
//! istiod changes at runtime (`caBundle`), how `istioctl tag set default` switches a legacy
//! injector off, and what a revision is called.
//!
//! Owns: every Istio label, name, suffix and recognition rule the tool relies on, each with the
//! Istio behaviour it comes from. Must not: evaluate a cluster state (that is `mesh`), know the
//! policy or phases, read files or run processes. The Kubernetes model below it (`cluster`,
//! `selector`, `manifest`, `k8s`) knows nothing of Istio.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_yaml::{Mapping, Value};

use crate::cluster::{args, containers, service_address};
use crate::k8s;
use crate::manifest::{str_at, value_at, Object, ObjectId};
use crate::selector::Webhook;

/// The label that selects a revision (or a tag) for injection, on namespaces and pods.
pub const REV_LABEL: &str = "istio.io/rev";
/// The legacy injection label; with any value it wins over `istio.io/rev`.
pub const INJECTION_LABEL: &str = "istio-injection";
/// The label a revision tag's objects carry (`istioctl tag`, `values.revisionTags`).
pub const TAG_LABEL: &str = "istio.io/tag";
/// The selector `istioctl tag set default` puts on a legacy injector to switch it off.
pub const NEVER_MATCH_LABEL: &str = "istio.io/deactivated";
/// The mutating webhook configuration of the `default` revision tag.
pub const DEFAULT_TAG_WEBHOOK: &str = "istio-revision-tag-default";
/// The validating webhook configuration that follows the default revision (istio#43227).
pub const DEFAULT_VALIDATOR: &str = "istiod-default-validator";
/// Every injector webhook's name ends so (`rev.namespace.`, `rev.object.`, `namespace.`,
/// `object.`, `auto.`), which is how `istioctl tag` finds the canonical injector.
pub const INJECTOR_WEBHOOK_SUFFIX: &str = "sidecar-injector.istio.io";
/// The stem of the ConfigMap that holds a revision's mesh config (`istio`, `istio-<rev>`).
pub const MESH_CONFIG: &str = "istio";
/// The `istio.io/rev` value of the unrevisioned install.
pub const DEFAULT_REVISION: &str = "default";

/// A control-plane revision: a named revision, or the unrevisioned ("default") install whose
/// objects carry no suffix (`istiod`, `istio-sidecar-injector`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(into = "String")]
pub enum Revision {
    Default,
    Named(String),
}

impl Revision {
    /// The name, or `None` for the unrevisioned install.
    pub fn name(&self) -> Option<&str> {
        match self {
            Revision::Default => None,
            Revision::Named(n) => Some(n),
        }
    }
    /// The value of the `istio.io/rev` label that selects this revision.
    pub fn label(&self) -> &str {
        self.name().unwrap_or("default")
    }
    /// The name of this revision's istiod Service/Deployment.
    pub fn istiod(&self) -> String {
        match self {
            Revision::Default => "istiod".to_string(),
            Revision::Named(n) => format!("istiod-{n}"),
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl From<Revision> for String {
    fn from(r: Revision) -> String {
        r.label().to_string()
    }
}

/// Whether an API group is Istio's (`networking.istio.io`, `security.istio.io`, …): its custom
/// resources are configuration, applied after RBAC and before workloads.
pub fn is_istio_group(group: &str) -> bool {
    group.ends_with("istio.io")
}

/// Whether Istio counts this webhook as a sidecar injector (see `INJECTOR_WEBHOOK_SUFFIX`).
pub fn is_injector_webhook(webhook: &Webhook) -> bool {
    webhook.name.ends_with(INJECTOR_WEBHOOK_SUFFIX)
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

/// The API group of the Kubernetes Gateway API (`Gateway`, `GatewayClass`).
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";
/// The GatewayClasses istiod creates and programs itself (`istio` for gateways, `istio-waypoint`
/// for ambient waypoints, `istio-east-west` and `istio-remote` for multicluster).
pub const ISTIO_GATEWAY_CLASSES: &[&str] =
    &["istio", "istio-waypoint", "istio-east-west", "istio-remote"];
/// The prefix of the `controllerName` of a GatewayClass istiod serves
/// (`istio.io/gateway-controller`, `istio.io/mesh-controller`, ...).
pub const ISTIO_CONTROLLER_PREFIX: &str = "istio.io/";

/// A Kubernetes Gateway API `Gateway` (a gateway or a waypoint), whatever its class.
pub fn is_gateway_api_gateway(o: &Object) -> bool {
    o.id.group == GATEWAY_API_GROUP && o.id.kind == "Gateway"
}

/// Whether istiod programs Gateways of `class`: one of the classes it creates itself, or one of
/// `classes` (the GatewayClass objects at hand) whose `controllerName` is Istio's.
pub fn is_istio_gateway_class<'a>(
    class: &str,
    classes: impl IntoIterator<Item = &'a Object>,
) -> bool {
    ISTIO_GATEWAY_CLASSES.contains(&class)
        || classes.into_iter().any(|c| {
            c.id.group == GATEWAY_API_GROUP
                && c.id.kind == "GatewayClass"
                && c.id.name == class
                && str_at(&c.body, &["spec", "controllerName"])
                    .is_some_and(|n| n.starts_with(ISTIO_CONTROLLER_PREFIX))
        })
}

/// The `spec.gatewayClassName` of a Gateway API `Gateway`.
pub fn gateway_class(o: &Object) -> Option<&str> {
    str_at(&o.body, &["spec", "gatewayClassName"])
}

/// True for the objects that make up a revision tag.
pub fn is_tag_object(object: &Object) -> bool {
    let id = &object.id;
    object.label(TAG_LABEL).is_some()
        || (id.kind == "MutatingWebhookConfiguration" && id.name.starts_with("istio-revision-tag-"))
        || (id.kind == "ValidatingWebhookConfiguration" && id.name == DEFAULT_VALIDATOR)
        || (id.kind == "Service" && id.name.starts_with("istiod-revision-tag-"))
}

/// The revision tag a tag object belongs to: its `istio.io/tag` label, or `default` for the
/// default tag's webhook configuration and `istiod-default-validator` (which carry no label in
/// some charts); `None` for anything else.
pub fn tag_of(object: &Object) -> Option<String> {
    if !is_tag_object(object) {
        return None;
    }
    match object.label(TAG_LABEL) {
        Some(t) => Some(t),
        None => Some("default".to_string()),
    }
}

/// The mutating webhook configuration of the `default` revision tag: labelled
/// `istio.io/tag: default`, named `istio-revision-tag-default` (with `-<namespace>` appended when
/// the control plane is not in `istio-system`).
pub fn is_default_tag_webhook(object: &Object) -> bool {
    object.id.kind == "MutatingWebhookConfiguration"
        && (object.label(TAG_LABEL).as_deref() == Some("default")
            || object.id.name == DEFAULT_TAG_WEBHOOK)
}

/// What Istio's mesh config in a ConfigMap references: `defaultConfig.discoveryAddress` names
/// the istiod Service proxies connect to.
pub fn mesh_config_references(o: &Object) -> BTreeSet<ObjectId> {
    let mut out = BTreeSet::new();
    if o.id.kind != "ConfigMap" {
        return out;
    }
    if let Some(Value::String(mesh)) = value_at(&o.body, &["data", "mesh"]) {
        if let Ok(Value::Mapping(m)) = serde_yaml::from_str::<Value>(mesh) {
            if let Some(addr) = str_at(&m, &["defaultConfig", "discoveryAddress"]) {
                out.extend(service_address(addr));
            }
        }
    }
    out
}

/// Prepares a rendered object for Git: no empty or runtime-patched `caBundle` (istiod patches it;
/// an empty one in Git would blank the live CA on every sync), and webhook configurations with the
/// fields kube-apiserver defaults written out (so a server-side apply owns what the stored object
/// has). `failurePolicy` stays as istioctl renders it: `istiod-default-validator` without one is
/// stored as `Fail`, which rejects every Istio config write until the new istiod serves.
pub fn normalize(object: &Object) -> Object {
    let mut o = object.clone();
    let is_webhook_config = matches!(
        o.id.kind.as_str(),
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"
    );
    if !is_webhook_config {
        return o;
    }
    let is_tag = is_tag_object(&o);
    if let Some(Value::Sequence(webhooks)) = o.body.get_mut("webhooks") {
        for wh in webhooks.iter_mut() {
            let Value::Mapping(wh) = wh else { continue };
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
    k8s::with_webhook_defaults(&o.id.kind.clone(), &mut o.body);
    o
}

/// Whether a webhook is switched off the way `neutralize_injector` (and istioctl) does it: a
/// selector that requires the never-match label, which no object carries.
pub fn is_deactivated(webhook: &Mapping) -> bool {
    ["namespaceSelector", "objectSelector"].iter().any(|sel| {
        webhook
            .get(*sel)
            .and_then(|s| s.get("matchLabels"))
            .and_then(|m| m.get(NEVER_MATCH_LABEL))
            .is_some()
    })
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

/// The namespace (or pod) label that enrolls pods in ambient mode: `ambient` hands their traffic
/// to the node's ztunnel (set up by istio-cni) instead of a sidecar; `none` opts a pod out.
/// A pod that gets a sidecar is not captured by ambient: istio-cni skips pods with a sidecar
/// (istio.io "Ambient and sidecar interoperability"), so an injector wins over this label.
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
/// The value of `DATAPLANE_MODE_LABEL` that enrolls in ambient mode.
pub const AMBIENT_MODE: &str = "ambient";
/// The first Istio minor whose ambient mode is beta and upgradable: before it ambient was alpha
/// and Istio documents no upgrade of it (istio.io 1.22 release announcement).
pub const AMBIENT_UPGRADE_SINCE: (u64, u64) = (1, 22);

/// A node agent: a per-node DaemonSet that Istio upgrades in place, never by revision ("even
/// with the use of revisions", istio.io's ambient upgrade guide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeAgent {
    /// istio-cni: installs the CNI plugin on every node (and, in ambient mode, redirects enrolled
    /// pods' traffic to ztunnel).
    Cni,
    /// ztunnel: ambient mode's node proxy, connected to one istiod (`CA_ADDRESS`,
    /// `XDS_ADDRESS`).
    Ztunnel,
}

impl NodeAgent {
    pub fn name(self) -> &'static str {
        match self {
            NodeAgent::Cni => "istio-cni",
            NodeAgent::Ztunnel => "ztunnel",
        }
    }

    /// Istio's supported skew of this agent against a control plane it runs beside, in minors
    /// (agent minus control plane): istio-cni 1.x works with control planes 1.x-1 to 1.x+1;
    /// ztunnel 1.x with control planes 1.x and 1.x+1 (istio.io supported releases, sail-operator
    /// update strategy).
    pub fn skew(self) -> (i64, i64) {
        match self {
            NodeAgent::Cni => (-1, 1),
            NodeAgent::Ztunnel => (-1, 0),
        }
    }
}

impl fmt::Display for NodeAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which node agent a workload is, by what it runs: istio-cni is a DaemonSet running the
/// `install-cni` container (its image in every istio-cni chart); ztunnel a DaemonSet running
/// `proxy ztunnel` (the ztunnel chart's args since 1.18).
pub fn node_agent(o: &Object) -> Option<NodeAgent> {
    if o.id.kind != "DaemonSet" {
        return None;
    }
    let cs = containers(o);
    if cs.iter().any(|c| {
        let a = args(c);
        a.first() == Some(&"proxy") && a.get(1) == Some(&"ztunnel")
    }) {
        return Some(NodeAgent::Ztunnel);
    }
    let image = |c: &Mapping| {
        c.get("image")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    cs.iter()
        .any(|c| {
            let img = image(c);
            let name = img.rsplit('/').next().unwrap_or("");
            name.split([':', '@']).next() == Some("install-cni")
        })
        .then_some(NodeAgent::Cni)
}

/// Whether a namespace (or pod) label set enrolls in ambient mode: the pod's own
/// `istio.io/dataplane-mode` wins over its namespace's.
pub fn is_ambient(
    ns_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
) -> bool {
    pod_labels
        .get(DATAPLANE_MODE_LABEL)
        .or_else(|| ns_labels.get(DATAPLANE_MODE_LABEL))
        .is_some_and(|m| m == AMBIENT_MODE)
}

/// The istiod Service a ztunnel DaemonSet connects to for its configuration (`XDS_ADDRESS`, which
/// the chart renders as `istiod-<rev>.<ns>.svc:15012`); `None` when it names no cluster Service.
pub fn ztunnel_istiod(o: &Object) -> Option<ObjectId> {
    containers(o).iter().find_map(|c| {
        let env = c.get("env")?.as_sequence()?;
        env.iter().filter_map(Value::as_mapping).find_map(|e| {
            (e.get("name")?.as_str()? == "XDS_ADDRESS")
                .then(|| e.get("value")?.as_str().and_then(service_address))
                .flatten()
        })
    })
}
