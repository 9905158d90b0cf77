//! The Istio reading of a simulated cluster: which injector webhook a pod created in a namespace
//! is sent to, which Service a webhook calls and which istiod Deployment (of which revision) that
//! Service reaches, what Istio's mesh config adds to the reference graph, and the safety
//! `Violation`s of one state, all evaluated the way kube-apiserver would.
//!
//! Owns: the injection evaluation (`ClusterState::injector_webhooks` and friends, a second impl
//! block on the Kubernetes-only `cluster::ClusterState`), the invariants (`violations`,
//! `dangling_references`), their incremental evaluation over a sequence of states (`Watch`, and
//! `Evaluated` to resume it from a kept state) and the violations' one-line descriptions. Must
//! not: change a state
//! (that is `cluster`), decide phases, read files, run processes, or produce any other text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_yaml::{Mapping, Value};

use crate::cluster::{self, namespace_id, pod_template_labels, scalar, service_id, ClusterState};
use crate::istio::{
    gateway_class, is_ambient, is_deactivated, is_gateway_api_gateway, is_gateway_workload,
    is_injector_webhook, is_istiod, mesh_config_references, node_agent, ztunnel_istiod, NodeAgent,
    DATAPLANE_MODE_LABEL, DEFAULT_REVISION, DEFAULT_VALIDATOR, GATEWAY_API_GROUP, INJECTION_LABEL,
    INJECTOR_WEBHOOK_SUFFIX, REV_LABEL, TAG_LABEL,
};
use crate::k8s::NAME_LABEL;
use crate::manifest::{value_at, Object, ObjectId};
use crate::selector::{webhook_service, Webhook};

impl ClusterState {
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
        let mut unevaluable = Vec::new();
        for o in self.of_kind(WEBHOOK_GROUP, "MutatingWebhookConfiguration") {
            let Some(Value::Sequence(webhooks)) = o.body.get("webhooks") else {
                continue;
            };
            for wh in webhooks {
                let Value::Mapping(wh) = wh else { continue };
                // A webhook the evaluation cannot read (`matchConditions`, or what the API server
                // would refuse) is still called by kube-apiserver if it is stored: an injector
                // among them makes the state unevaluable, never a silent miss.
                let parsed = match Webhook::parse(wh) {
                    Ok(p) => p,
                    Err(why) => {
                        let name = wh.get("name").and_then(Value::as_str).unwrap_or("");
                        if name.ends_with(INJECTOR_WEBHOOK_SUFFIX) {
                            unevaluable.push((o.id.clone(), name.to_string(), why));
                        }
                        continue;
                    }
                };
                if !is_injector_webhook(&parsed) {
                    continue;
                }
                let injection = self.injection(&o.id, &parsed.name, wh);
                out.push((parsed, injection));
            }
        }
        InjectorWebhooks {
            webhooks: out,
            unevaluable,
            ztunnels: self.ztunnels(),
        }
    }

    /// Every ztunnel of the state, each as the node agent that serves ambient pods, with the
    /// revision of the istiod its `XDS_ADDRESS` Service reaches.
    pub fn ztunnels(&self) -> Vec<Injection> {
        self.of_kind("apps", "DaemonSet")
            .filter(|o| node_agent(o) == Some(NodeAgent::Ztunnel))
            .map(|o| {
                let target = match ztunnel_istiod(o) {
                    None => Target::NoService,
                    Some(svc) if !self.objects.contains_key(&svc) => Target::MissingService(svc),
                    Some(svc) => {
                        let revisions: Vec<String> =
                            self.istiod_revisions(&svc).into_iter().collect();
                        match revisions.as_slice() {
                            [] => Target::NoIstiod(svc),
                            [one] => Target::NodeAgent(one.clone()),
                            _ => Target::SeveralRevisions(svc, revisions),
                        }
                    }
                };
                Injection {
                    config: format!("{}/{}", o.id.namespace.as_deref().unwrap_or(""), o.id.name),
                    webhook: NodeAgent::Ztunnel.name().to_string(),
                    target,
                }
            })
            .collect()
    }

    fn injection(&self, config: &ObjectId, webhook: &str, wh: &Mapping) -> Injection {
        let service = webhook_service(wh).map(|(ns, name)| service_id(&ns, &name));
        let target = match &service {
            None => Target::NoService,
            Some(svc) if !self.objects.contains_key(svc) => Target::MissingService(svc.clone()),
            Some(svc) => {
                let revisions: Vec<String> = self.istiod_revisions(svc).into_iter().collect();
                match revisions.as_slice() {
                    [] => Target::NoIstiod(svc.clone()),
                    [one] => Target::Revision(one.clone()),
                    _ => Target::SeveralRevisions(svc.clone(), revisions),
                }
            }
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
        self.selected_revisions(service, is_istiod)
    }

    /// The revisions (`istio.io/rev` of the pod template, `default` without one) of the gateway
    /// Deployments (Envoy as a router) whose pods a Service selects: where its load balancer
    /// sends traffic.
    pub fn gateway_revisions(&self, service: &ObjectId) -> BTreeSet<String> {
        self.selected_revisions(service, is_gateway_workload)
    }

    fn selected_revisions(
        &self,
        service: &ObjectId,
        role: fn(&crate::manifest::Object) -> bool,
    ) -> BTreeSet<String> {
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
        for o in self.deployments() {
            // A Service selects pods of its own namespace only.
            if o.id.namespace != service.namespace || !role(o) {
                continue;
            }
            let pod = pod_template_labels(o);
            if selector.iter().all(|(k, v)| pod.get(k) == Some(v)) {
                out.insert(
                    pod.get(REV_LABEL)
                        .cloned()
                        .unwrap_or_else(|| DEFAULT_REVISION.to_string()),
                );
            }
        }
        out
    }

    /// Every Deployment of the state (the API groups that serve the kind), in identity order.
    fn deployments(&self) -> impl Iterator<Item = &crate::manifest::Object> {
        self.of_kind("apps", "Deployment")
            .chain(self.of_kind("extensions", "Deployment"))
    }

    /// The revision a webhook configuration's webhooks reach (the first reachable one), for
    /// validators and tags.
    pub fn webhook_config_revision(&self, id: &ObjectId) -> Option<String> {
        let o = self.objects.get(id)?;
        let Some(Value::Sequence(webhooks)) = o.body.get("webhooks") else {
            return None;
        };
        // The first webhook that reaches exactly one revision (one reaching several is a
        // violation of its own, never resolved by picking one).
        // A switched-off webhook validates and injects nothing: it says nothing of the revision.
        webhooks.iter().find_map(|wh| {
            let wh = wh.as_mapping().filter(|wh| !is_deactivated(wh))?;
            let svc = webhook_service(wh)?;
            let revisions = self.istiod_revisions(&service_id(&svc.0, &svc.1));
            match revisions.len() {
                1 => revisions.into_iter().next(),
                _ => None,
            }
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

/// What a Gateway API `Gateway` selects, read the way istiod's revision filter reads it
/// (`IsMine` of istio/istio's `pkg/revisions` tag watcher): its own `istio.io/rev` label, else
/// its namespace's, else nothing (the default revision's); a Gateway whose namespace does not
/// exist is claimed by every istiod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum GatewaySelects {
    /// `istio.io/rev=<value>` on the Gateway itself.
    Own(String),
    /// `istio.io/rev=<value>` on its namespace (empty: the namespace has no such label).
    Namespace(String),
    /// Its namespace does not exist: every istiod takes it.
    Everyone,
}

impl fmt::Display for GatewaySelects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewaySelects::Own(v) => write!(f, "{REV_LABEL}={v} on the Gateway"),
            GatewaySelects::Namespace(v) if v.is_empty() => {
                write!(f, "no {REV_LABEL} label (the default revision)")
            }
            GatewaySelects::Namespace(v) => write!(f, "{REV_LABEL}={v} on its namespace"),
            GatewaySelects::Everyone => write!(f, "a namespace that does not exist"),
        }
    }
}

impl ClusterState {
    /// Whether istiod programs Gateways of `class`: one of the classes istiod creates, or a
    /// GatewayClass of the state whose `controllerName` is Istio's.
    pub fn is_istio_gateway_class(&self, class: &str) -> bool {
        crate::istio::is_istio_gateway_class(class, self.of_kind(GATEWAY_API_GROUP, "GatewayClass"))
    }

    /// Every Gateway API `Gateway` of the state that istiod programs (by its class).
    pub fn istio_gateways(&self) -> impl Iterator<Item = &crate::manifest::Object> {
        self.of_kind(GATEWAY_API_GROUP, "Gateway").filter(|g| {
            is_gateway_api_gateway(g)
                && gateway_class(g).is_some_and(|c| self.is_istio_gateway_class(c))
        })
    }

    /// What `gw` selects (see `GatewaySelects`).
    pub fn gateway_selects(&self, gw: &crate::manifest::Object) -> GatewaySelects {
        if let Some(v) = gw.label(REV_LABEL) {
            return GatewaySelects::Own(v);
        }
        let ns = gw.id.namespace.as_deref().unwrap_or("");
        match self.labels(&namespace_id(ns)) {
            None => GatewaySelects::Everyone,
            Some(l) => GatewaySelects::Namespace(l.get(REV_LABEL).cloned().unwrap_or_default()),
        }
    }

    /// The revisions of the istiod Deployments that program `gw`, as each istiod decides for
    /// itself: a revision takes what selects its own name or a tag pointing at it (a mutating
    /// webhook configuration or Service labelled `istio.io/tag=<tag>` and `istio.io/rev=<rev>`);
    /// what selects nothing goes to the revision the `default` tag points at, or, when no tag
    /// `default` points elsewhere, to the revision `istiod-default-validator` is labelled with.
    /// Exactly one is safe; none leaves the gateway's pods without configuration, two program it
    /// twice.
    pub fn gateway_owners(&self, gw: &crate::manifest::Object) -> Vec<String> {
        let selects = self.gateway_selects(gw);
        let revisions: BTreeSet<String> = self
            .deployments()
            .filter(|o| is_istiod(o))
            .map(|o| {
                pod_template_labels(o)
                    .get(REV_LABEL)
                    .cloned()
                    .unwrap_or_else(|| DEFAULT_REVISION.to_string())
            })
            .collect();
        let tags: Vec<(String, String)> = self
            .of_kind(WEBHOOK_GROUP, "MutatingWebhookConfiguration")
            .chain(self.of_kind("", "Service"))
            .filter_map(|o| Some((o.label(TAG_LABEL)?, o.label(REV_LABEL)?)))
            .collect();
        let validator = ObjectId {
            group: WEBHOOK_GROUP.into(),
            kind: "ValidatingWebhookConfiguration".into(),
            namespace: None,
            name: DEFAULT_VALIDATOR.into(),
        };
        let validator_rev = self
            .objects
            .get(&validator)
            .and_then(|v| v.label(REV_LABEL));
        revisions
            .into_iter()
            .filter(|rev| {
                let mine = |t: &str| t == rev || tags.iter().any(|(tag, r)| tag == t && r == rev);
                let other_default = tags.iter().any(|(t, r)| t == "default" && r != rev);
                let we_default = validator_rev.as_deref() == Some(rev.as_str());
                let selected = match &selects {
                    GatewaySelects::Everyone => return true,
                    GatewaySelects::Own(v) | GatewaySelects::Namespace(v) => v,
                };
                mine(selected)
                    || (selected.is_empty() && (mine("default") || (we_default && !other_default)))
            })
            .collect()
    }
}

/// A violation for each Gateway istiod programs that no istiod, or more than one, takes.
fn gateway_violations(state: &ClusterState) -> BTreeSet<Violation> {
    state
        .istio_gateways()
        .filter_map(|gw| {
            let owners = state.gateway_owners(gw);
            (owners.len() != 1).then(|| Violation::GatewayOwners {
                gateway: gw.id.clone(),
                selects: state.gateway_selects(gw),
                owners,
            })
        })
        .collect()
}

/// The API group of webhook configurations: kube-apiserver calls no other.
const WEBHOOK_GROUP: &str = "admissionregistration.k8s.io";

/// The kinds a change to which can change what a namespace's pods are injected by, or any
/// violation other than a namespace's injection: the webhooks, the Services they call and the
/// Deployments (istiod) those select, and the DaemonSets (ztunnel, which serves ambient pods). A change to anything else but a Namespace changes no
/// violation.
pub fn is_mesh_kind(id: &ObjectId) -> bool {
    matches!(
        id.kind.as_str(),
        "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
            | "Service"
            | "Deployment"
            | "Gateway"
            | "GatewayClass"
            | "DaemonSet"
    )
}

/// The injector webhooks of one state with where each leads.
#[derive(Clone)]
pub struct InjectorWebhooks {
    webhooks: Vec<(Webhook, Injection)>,
    /// Injector webhooks the evaluation cannot read: (configuration, webhook, why).
    unevaluable: Vec<(ObjectId, String, String)>,
    /// The ztunnels, which serve ambient pods no injector matches (`ClusterState::ztunnels`).
    ztunnels: Vec<Injection>,
}

impl InjectorWebhooks {
    /// The ones kube-apiserver calls for a pod with `pod_labels` in a namespace with
    /// `ns_labels` (which must include `kubernetes.io/metadata.name`).
    pub fn matching(
        &self,
        ns_labels: &BTreeMap<String, String>,
        pod_labels: &BTreeMap<String, String>,
    ) -> Vec<Injection> {
        let found: Vec<Injection> = self
            .webhooks
            .iter()
            .filter(|(wh, _)| wh.calls_for_pod_create(ns_labels, pod_labels))
            .map(|(_, inj)| inj.clone())
            .collect();
        // A pod that gets a sidecar is not captured by ambient (istio-cni skips it): only a pod
        // no injector matches is served by its node's ztunnel.
        if !found.is_empty() || !is_ambient(ns_labels, pod_labels) {
            return found;
        }
        if self.ztunnels.is_empty() {
            return vec![Injection {
                config: NodeAgent::Ztunnel.name().to_string(),
                webhook: NodeAgent::Ztunnel.name().to_string(),
                target: Target::NoNodeAgent,
            }];
        }
        self.ztunnels.clone()
    }

    /// The namespace label keys any injector's `namespaceSelector` reads: a namespace's
    /// injection depends on its values of these keys and on nothing else of its labels.
    fn namespace_keys(&self) -> BTreeSet<String> {
        self.webhooks
            .iter()
            .flat_map(|(wh, _)| wh.namespace_selector.requirements())
            .map(|r| r.key.clone())
            .chain([DATAPLANE_MODE_LABEL.to_string()])
            .collect()
    }
}

/// Which injectors serve a plain pod (no labels) of a namespace, for one state's injector
/// webhooks, evaluated once per distinct label set: namespaces whose labels agree on every key a
/// `namespaceSelector` reads (`kubernetes.io/metadata.name` only when a selector reads it) share
/// one evaluation.
#[derive(Clone)]
pub struct NamespaceInjection {
    webhooks: InjectorWebhooks,
    keys: BTreeSet<String>,
    cache: std::collections::HashMap<Vec<(String, String)>, Vec<Injection>>,
    /// The last namespace's key, written over by the next (`of_object`): a namespace whose
    /// values were seen before is looked up without allocating.
    scratch: Vec<(String, String)>,
}

impl NamespaceInjection {
    pub fn new(state: &ClusterState) -> NamespaceInjection {
        let webhooks = state.injector_webhooks();
        let keys = webhooks.namespace_keys();
        NamespaceInjection {
            webhooks,
            keys,
            cache: std::collections::HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// `InjectorWebhooks::matching(labels, {})`, from the cache when a namespace with the same
    /// values of the selectors' keys was evaluated before (the tests' form of `of_object`).
    #[cfg(test)]
    pub fn of(&mut self, labels: &BTreeMap<String, String>) -> &[Injection] {
        let key: Vec<(String, String)> = self
            .keys
            .iter()
            .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        let webhooks = &self.webhooks;
        self.cache
            .entry(key)
            .or_insert_with(|| webhooks.matching(labels, &BTreeMap::new()))
    }

    /// The namespace `ns` of `state` (no labels when the state lacks it).
    pub fn of_namespace(&mut self, state: &ClusterState, ns: &str) -> &[Injection] {
        self.of_object(state.get(&namespace_id(ns)))
    }

    /// A Namespace object (no labels when there is none), as `of` its labels: only the values
    /// of the keys a selector reads are copied when a namespace with the same values was
    /// evaluated before.
    pub fn of_object(&mut self, namespace: Option<&Object>) -> &[Injection] {
        let labels = namespace
            .and_then(|o| small_get(&o.body, "metadata")?.as_mapping())
            .and_then(|m| small_get(m, "labels")?.as_mapping());
        // The key (each read key the namespace has, with its value) is written into `scratch`,
        // reusing its strings: only a key not seen before is copied, into the cache.
        let mut len = 0;
        for (k, v) in labels
            .iter()
            .flat_map(|m| self.keys.iter().filter_map(|k| Some((k, small_get(m, k)?))))
        {
            if len == self.scratch.len() {
                self.scratch.push((String::new(), String::new()));
            }
            let (key, value) = &mut self.scratch[len];
            if cluster::scalar_into(v, value) {
                key.clear();
                key.push_str(k);
                len += 1;
            }
        }
        let key = &self.scratch[..len];
        if !self.cache.contains_key(key) {
            let all = namespace.map(Object::labels).unwrap_or_default();
            let injections = self.webhooks.matching(&all, &BTreeMap::new());
            self.cache.insert(key.to_vec(), injections);
        }
        // Present: inserted just above when it was not.
        &self.cache[key]
    }

    /// Unevaluable injector webhooks: (configuration, webhook, why).
    fn unevaluable(&self) -> &[(ObjectId, String, String)] {
        &self.webhooks.unevaluable
    }
}

/// `map[key]` for a string key, found by comparing the keys rather than hashing the one sought:
/// faster for the few entries of a namespace's metadata and labels, read for every namespace of
/// every state.
fn small_get<'a>(map: &'a Mapping, key: &str) -> Option<&'a Value> {
    map.iter()
        .find_map(|(k, v)| (k.as_str() == Some(key)).then_some(v))
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
    /// It calls a Service that selects istiod Deployments of several revisions: which one
    /// answers is up to the Service's endpoints.
    SeveralRevisions(ObjectId, Vec<String>),
    /// An ambient pod served by its node's ztunnel, connected to istiod of this revision.
    NodeAgent(String),
    /// An ambient pod, and no ztunnel to serve it: its traffic is not captured.
    NoNodeAgent,
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
            Target::NodeAgent(r) => write!(f, "{r} (ztunnel)"),
            Target::NoNodeAgent => write!(f, "ambient, with no ztunnel"),
            Target::SeveralRevisions(s, revs) => write!(
                f,
                "{} (Service {} selects istiod of revisions {})",
                self.config,
                s.name,
                revs.join(", ")
            ),
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

/// What `o` references by identity: the Kubernetes references (`cluster::references`) and the
/// istiod Service named in Istio's mesh config.
pub fn references(o: &crate::manifest::Object) -> BTreeSet<ObjectId> {
    let mut out = cluster::references(o);
    out.extend(mesh_config_references(o));
    out
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
    /// An injector webhook kube-apiserver would call but the evaluation cannot read (for
    /// example one with `matchConditions`): injection cannot be decided, so nothing is.
    Unevaluable {
        config: ObjectId,
        webhook: String,
        why: String,
    },
    /// A webhook calls a Service that selects istiod of several revisions.
    SeveralRevisions {
        webhook: ObjectId,
        service: ObjectId,
        revisions: Vec<String>,
    },
    /// A Service whose selector reached gateway pods before a step reaches none after it: its
    /// load balancer would send traffic nowhere.
    GatewayServiceEmpty {
        service: ObjectId,
        /// The revisions of the gateway pods it selected before the step.
        had: Vec<String>,
    },
    /// A Gateway API `Gateway` istiod programs is taken by no istiod, or by several.
    GatewayOwners {
        gateway: ObjectId,
        /// What it selects.
        selects: GatewaySelects,
        owners: Vec<String>,
    },
}

impl Violation {
    /// Whether the state cannot be evaluated at all: such a violation is refused wherever it
    /// appears, even in state 0 (never a warning).
    pub fn is_undecidable(&self) -> bool {
        matches!(
            self,
            Violation::Unevaluable { .. } | Violation::SeveralRevisions { .. }
        )
    }
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
            Violation::Unevaluable { config, webhook, why } => write!(
                f,
                "the injector webhook {webhook} of {config} cannot be evaluated ({why}), but kube-apiserver would call it"
            ),
            Violation::SeveralRevisions { webhook, service, revisions } => write!(
                f,
                "{webhook} calls Service {}/{}, which selects istiod of revisions {}",
                service.namespace.as_deref().unwrap_or(""),
                service.name,
                revisions.join(", ")
            ),
            Violation::GatewayServiceEmpty { service, had } => write!(
                f,
                "Service {}/{} would select no gateway pods (it selected those of revision {}): its load balancer would send traffic nowhere",
                service.namespace.as_deref().unwrap_or(""),
                service.name,
                had.join(", ")
            ),
            Violation::GatewayOwners { gateway, selects, owners } => {
                let gw = format!("Gateway {}/{}", gateway.namespace.as_deref().unwrap_or(""), gateway.name);
                match owners.as_slice() {
                    [] => write!(f, "{gw} ({selects}) would be programmed by no istiod: its pods would lose their configuration"),
                    _ => write!(f, "{gw} ({selects}) would be programmed by istiod of revisions {} at once", owners.join(", ")),
                }
            }
        }
    }
}

/// What the plan expects of one state: the namespaces it moves and the revision each must be
/// injected by (None: any single healthy injector, for states inside a phase).
pub struct Expectations<'a> {
    pub namespaces: &'a Expected,
}

/// Every violation of `state`.
pub fn violations(state: &ClusterState, expect: &Expectations<'_>) -> BTreeSet<Violation> {
    let mut injection = NamespaceInjection::new(state);
    let mut out = state_violations(state, &injection);
    for (ns, expected) in expect.namespaces {
        let found = injection.of_namespace(state, ns);
        out.extend(injection_violation(ns, expected, found));
    }
    out
}

/// The violation of one named namespace injected by `found`, when it is not exactly one healthy
/// injector of the expected revision (any revision when `expected` is `None`).
fn injection_violation(
    ns: &str,
    expected: &Option<String>,
    found: &[Injection],
) -> Option<Violation> {
    let ok = match found {
        [one] => match (&one.target, expected) {
            (Target::Revision(r) | Target::NodeAgent(r), Some(e)) => r == e,
            (Target::Revision(_) | Target::NodeAgent(_), None) => true,
            _ => false,
        },
        _ => false,
    };
    (!ok).then(|| Violation::Injection {
        namespace: ns.to_string(),
        expected: expected.clone(),
        found: found.to_vec(),
    })
}

/// Every violation of `state` but the namespaces' injection: unevaluable injectors, webhooks
/// calling a missing Service or one that reaches no istiod or several revisions, and the default
/// validator on another revision than the default tag. They depend only on the mesh kinds
/// (`is_mesh_kind`).
fn state_violations(state: &ClusterState, injection: &NamespaceInjection) -> BTreeSet<Violation> {
    let mut out = BTreeSet::new();
    for (config, webhook, why) in injection.unevaluable() {
        out.insert(Violation::Unevaluable {
            config: config.clone(),
            webhook: webhook.clone(),
            why: why.clone(),
        });
    }
    let configs = state
        .of_kind(WEBHOOK_GROUP, "MutatingWebhookConfiguration")
        .chain(state.of_kind(WEBHOOK_GROUP, "ValidatingWebhookConfiguration"));
    for o in configs {
        let Some(Value::Sequence(webhooks)) = o.body.get("webhooks") else {
            continue;
        };
        for wh in webhooks.iter().filter_map(Value::as_mapping) {
            let Some((sns, name)) = webhook_service(wh) else {
                continue;
            };
            let svc = service_id(&sns, &name);
            let missing = !state.objects.contains_key(&svc);
            let revisions = state.istiod_revisions(&svc);
            if revisions.len() > 1 {
                out.insert(Violation::SeveralRevisions {
                    webhook: o.id.clone(),
                    service: svc.clone(),
                    revisions: revisions.into_iter().collect(),
                });
                continue;
            }
            if missing || revisions.is_empty() {
                out.insert(Violation::DanglingWebhook {
                    webhook: o.id.clone(),
                    service: svc,
                    missing,
                });
            }
        }
    }
    let validator = ObjectId {
        group: WEBHOOK_GROUP.into(),
        kind: "ValidatingWebhookConfiguration".into(),
        namespace: None,
        name: DEFAULT_VALIDATOR.into(),
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
    out.extend(gateway_violations(state));
    out
}

/// The violations of a sequence of states, each a few changes from the one before, evaluated
/// incrementally: after a step that changed only Namespaces, only those namespaces are evaluated
/// again; after a step that changed anything else (a webhook, Service or Deployment), every
/// namespace is, through a new `NamespaceInjection` (one evaluation per distinct label set).
/// `violations` stays the reference: `update` gives exactly its set, in its order.
pub struct Watch<'e> {
    seen: Evaluated,
    expect: &'e Expected,
}

/// What a `Watch` knows of one state, without the expectations it was judged by: kept with a
/// state so that the next sequence starting there (the next phase, or a rollback back from it)
/// resumes from it instead of evaluating every namespace again.
#[derive(Clone)]
pub struct Evaluated {
    injection: NamespaceInjection,
    /// `state_violations` of the state.
    others: BTreeSet<Violation>,
    /// The injection violation of each named namespace that has one.
    bad: BTreeMap<String, Violation>,
}

/// What the plan expects of the named namespaces of one state (see `Expectations`).
pub type Expected = imbl::OrdMap<String, Option<String>>;

impl<'e> Watch<'e> {
    /// Evaluates `state` whole.
    pub fn new(state: &ClusterState, expect: &'e Expected) -> Watch<'e> {
        let injection = NamespaceInjection::new(state);
        let others = state_violations(state, &injection);
        let mut w = Watch {
            seen: Evaluated {
                injection,
                others,
                bad: BTreeMap::new(),
            },
            expect,
        };
        w.check_all(state);
        w
    }

    /// Resumes from what a watch knew of `state` (`seen`, judged by `was`), judged by `expect`
    /// from now on: only the namespaces whose expectation differs are judged again.
    pub fn resume(
        state: &ClusterState,
        seen: Evaluated,
        was: &Expected,
        expect: &'e Expected,
    ) -> Watch<'e> {
        let mut w = Watch { seen, expect };
        // Few namespaces change expectation between two states: each is looked up.
        for ns in changed_expectations(was, expect) {
            match expect.get(ns) {
                Some(expected) => w.check(state.get(&namespace_id(ns)), ns, expected),
                None => {
                    w.seen.bad.remove(ns);
                }
            }
        }
        w
    }

    /// What the watch knows of the current state, to resume from later.
    pub fn into_evaluated(self) -> Evaluated {
        self.seen
    }

    fn check_all(&mut self, state: &ClusterState) {
        self.seen.bad.clear();
        let mut namespaces = NamespaceCursor::new(state);
        let expect = self.expect;
        for (ns, expected) in expect {
            self.check(namespaces.get(ns), ns, expected);
        }
    }

    fn check(&mut self, namespace: Option<&Object>, ns: &str, expected: &Option<String>) {
        let found = self.seen.injection.of_object(namespace);
        match injection_violation(ns, expected, found) {
            Some(v) => self.seen.bad.insert(ns.to_string(), v),
            None => self.seen.bad.remove(ns),
        };
    }

    /// Moves to `state`, which differs from the last state only in the objects `changed`, with
    /// the expectations `expect`.
    pub fn update<'a>(
        &mut self,
        state: &ClusterState,
        changed: impl IntoIterator<Item = &'a ObjectId>,
        expect: &'e Expected,
    ) {
        let mut namespaces = BTreeSet::new();
        let mut whole = false;
        for id in changed {
            if id.kind == "Namespace" && id.group.is_empty() {
                namespaces.insert(id.name.as_str());
            } else {
                whole |= is_mesh_kind(id);
            }
        }
        if whole {
            self.seen.injection = NamespaceInjection::new(state);
            self.seen.others = state_violations(state, &self.seen.injection);
            self.expect = expect;
            self.check_all(state);
            return;
        }
        // A relabelled namespace can move the Gateways in it that carry no label of their own.
        let moves_gateway = !namespaces.is_empty()
            && state.istio_gateways().any(|g| {
                g.id.namespace
                    .as_deref()
                    .is_some_and(|n| namespaces.contains(n))
            });
        if moves_gateway {
            self.seen
                .others
                .retain(|v| !matches!(v, Violation::GatewayOwners { .. }));
            self.seen.others.extend(gateway_violations(state));
        }
        if !std::ptr::eq(self.expect, expect) {
            // Only the namespaces whose expectation changed are judged again (with the ones the
            // step relabelled): the others' injection and expectation are what they were.
            let old = std::mem::replace(&mut self.expect, expect);
            for ns in changed_expectations(old, expect) {
                if expect.contains_key(ns) {
                    namespaces.insert(ns);
                } else {
                    self.seen.bad.remove(ns);
                }
            }
        }
        // A step relabels a wave, a few of all the namespaces: each is looked up.
        for ns in namespaces {
            if let Some(expected) = self.expect.get(ns) {
                self.check(state.get(&namespace_id(ns)), ns, expected);
            }
        }
    }

    /// Every violation of the current state, in `BTreeSet<Violation>` order: the namespaces'
    /// injection (by namespace) sort before every other kind.
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.seen.bad.values().chain(&self.seen.others)
    }
}

/// The Namespace objects of one state looked up by name in ascending order, as one walk of the
/// state's Namespaces (a name asked out of order is looked up on its own).
pub struct NamespaceCursor<'s> {
    state: &'s ClusterState,
    walk: std::iter::Peekable<Box<dyn Iterator<Item = &'s Object> + 's>>,
    passed: Option<&'s str>,
}

impl<'s> NamespaceCursor<'s> {
    pub fn new(state: &'s ClusterState) -> NamespaceCursor<'s> {
        let walk: Box<dyn Iterator<Item = &'s Object> + 's> =
            Box::new(state.of_kind("", "Namespace"));
        NamespaceCursor {
            state,
            walk: walk.peekable(),
            passed: None,
        }
    }

    /// The Namespace `name`, if the state holds it.
    pub fn get(&mut self, name: &str) -> Option<&'s Object> {
        // `passed`: the greatest name the walk went by; a name up to it is behind the walk.
        if self.passed.is_some_and(|p| name <= p) {
            return self.state.get(&namespace_id(name));
        }
        while let Some(o) = self.walk.next_if(|o| o.id.name.as_str() < name) {
            self.passed = Some(o.id.name.as_str());
        }
        self.walk.peek().copied().filter(|o| o.id.name == name)
    }
}

/// Violations a step introduces in the gateways' Services: one that selected gateway pods
/// before the step (`before`) and selects none after it (`after`), among the Services of the
/// namespaces where the step changed a Service or a Deployment.
pub fn lost_gateway_backends<'a>(
    before: &ClusterState,
    after: &ClusterState,
    changed: impl IntoIterator<Item = &'a ObjectId>,
) -> BTreeSet<Violation> {
    // A Service changes what it selects, a gateway Deployment which pods there are; a restart
    // of any other workload changes neither.
    let gateway =
        |s: &ClusterState, id: &ObjectId| s.objects.get(id).is_some_and(|o| is_gateway_workload(o));
    let namespaces: BTreeSet<&str> = changed
        .into_iter()
        .filter(|id| {
            id.kind == "Service"
                || (id.kind == "Deployment" && (gateway(before, id) || gateway(after, id)))
        })
        .filter_map(|id| id.namespace.as_deref())
        .collect();
    let mut out = BTreeSet::new();
    if namespaces.is_empty() {
        return out;
    }
    for svc in after.of_kind("", "Service") {
        if !svc
            .id
            .namespace
            .as_deref()
            .is_some_and(|n| namespaces.contains(n))
        {
            continue;
        }
        let had = before.gateway_revisions(&svc.id);
        if !had.is_empty() && after.gateway_revisions(&svc.id).is_empty() {
            out.insert(Violation::GatewayServiceEmpty {
                service: svc.id.clone(),
                had: had.into_iter().collect(),
            });
        }
    }
    out
}

/// The namespaces `a` and `b` expect differently (named in one only, or with another revision),
/// in order.
fn changed_expectations<'m>(a: &'m Expected, b: &'m Expected) -> Vec<&'m str> {
    // The maps share what did not change (`plan::hop` rebases each phase's expectations on the
    // one before), and their diff skips it.
    a.diff(b)
        .map(|d| match d {
            imbl::ordmap::DiffItem::Add(k, _)
            | imbl::ordmap::DiffItem::Remove(k, _)
            | imbl::ordmap::DiffItem::Update { new: (k, _), .. } => k.as_str(),
        })
        .collect()
}

/// Violations a step's deletes introduce: a deleted object that an object still in the state
/// references.
pub fn dangling_references(state: &ClusterState, deleted: &[&ObjectId]) -> BTreeSet<Violation> {
    cluster::dangling(state, deleted, references)
        .into_iter()
        .map(|d| Violation::DeletedButReferenced {
            deleted: d.deleted,
            by: d.by,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::namespace_object;
    use crate::istio::is_gateway_workload;
    use crate::manifest::{parse_manifest, Object};

    fn one(text: &str) -> Object {
        parse_manifest(text, "t").unwrap().remove(0)
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
        let mut state = ClusterState::from_objects(&[one(INJECTOR), one(SERVICE), one(ISTIOD)]);
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
        state.retain(|id| id.kind != "Deployment");
        assert_eq!(
            describe(&state.injectors(&ns, &BTreeMap::new())),
            "inj (Service istiod-r selects no istiod)"
        );
        // Without the Service the webhook fails closed.
        state.retain(|id| id.kind != "Service");
        assert_eq!(
            describe(&state.injectors(&ns, &BTreeMap::new())),
            "inj (Service istiod-r missing)"
        );
    }

    #[test]
    fn a_namespace_injected_by_the_wrong_revision_is_a_violation() {
        let mut state = ClusterState::from_objects(&[one(INJECTOR), one(SERVICE), one(ISTIOD)]);
        let labels = BTreeMap::from([(REV_LABEL.to_string(), "r".to_string())]);
        state.insert(namespace_object("shop", &labels));
        let expect = |rev: Option<&str>| {
            Expected::from_iter([("shop".to_string(), rev.map(str::to_string))])
        };
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
        let state = ClusterState::from_objects(&[one(INJECTOR)]);
        let svc = service_id("istio-system", "istiod-r");
        let found = dangling_references(&state, &[&svc]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(dangling_references(&state, &[&namespace_id("x")]).is_empty());
    }

    #[test]
    fn an_injector_webhook_that_cannot_be_evaluated_is_a_violation_not_a_miss() {
        let with_conditions = INJECTOR.replace(
            "  namespaceSelector:",
            "  matchConditions: [{name: c, expression: 'true'}]\n  namespaceSelector:",
        );
        let state = ClusterState::from_objects(&[one(&with_conditions), one(SERVICE), one(ISTIOD)]);
        let found = violations(
            &state,
            &Expectations {
                namespaces: &Expected::new(),
            },
        );
        let v: Vec<&Violation> = found.iter().filter(|v| v.is_undecidable()).collect();
        assert!(
            matches!(v.as_slice(), [Violation::Unevaluable { webhook, .. }] if webhook == "rev.namespace.sidecar-injector.istio.io"),
            "{found:?}"
        );
    }

    #[test]
    fn a_service_reaching_two_revisions_is_refused_not_resolved() {
        // The Service selects only app=istiod: both revisions' istiods answer.
        let service = SERVICE.replace(
            "selector: {app: istiod, istio.io/rev: r}",
            "selector: {app: istiod}",
        );
        let other = ISTIOD
            .replace("istiod-r", "istiod-s")
            .replace("istio.io/rev: r", "istio.io/rev: s");
        let state =
            ClusterState::from_objects(&[one(INJECTOR), one(&service), one(ISTIOD), one(&other)]);
        let svc = service_id("istio-system", "istiod-r");
        assert_eq!(state.istiod_revisions(&svc).len(), 2);
        let found = violations(
            &state,
            &Expectations {
                namespaces: &Expected::new(),
            },
        );
        assert!(
            found.iter().any(|v| matches!(v, Violation::SeveralRevisions { revisions, .. } if revisions == &["r".to_string(), "s".to_string()])),
            "{found:?}"
        );
        let inj = state.injectors(
            &labels(&[(REV_LABEL, "r"), (NAME_LABEL, "shop")]),
            &BTreeMap::new(),
        );
        assert!(matches!(&inj[0].target, Target::SeveralRevisions(s, _) if s == &svc));
    }

    /// The Service `istiod-{rev}` and the istiod Deployment of revision `rev` it selects.
    fn control_plane(rev: &str) -> [Object; 2] {
        let named = |text: &str| {
            one(&text
                .replace("istiod-r", &format!("istiod-{rev}"))
                .replace("istio.io/rev: r", &format!("istio.io/rev: {rev}")))
        };
        [named(SERVICE), named(ISTIOD)]
    }

    /// `istiod-default-validator`, validating with the istiod behind Service `service`.
    fn default_validator(service: &str) -> Object {
        one(&format!("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: {DEFAULT_VALIDATOR}}}\nwebhooks:\n- name: validation.istio.io\n  clientConfig: {{service: {{name: {service}, namespace: istio-system}}}}\n  sideEffects: None\n  admissionReviewVersions: [v1]\n"))
    }

    /// The default tag's injector for `istio-injection=enabled` namespaces, calling `service`.
    fn default_tag(service: &str) -> Object {
        one(&format!("apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: istio-revision-tag-default}}\nwebhooks:\n- name: namespace.sidecar-injector.istio.io\n  clientConfig: {{service: {{name: {service}, namespace: istio-system}}}}\n  rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}}]\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  namespaceSelector:\n    matchExpressions:\n    - {{key: istio-injection, operator: In, values: [enabled]}}\n"))
    }

    fn no_namespaces(state: &ClusterState) -> BTreeSet<Violation> {
        violations(
            state,
            &Expectations {
                namespaces: &Expected::new(),
            },
        )
    }

    #[test]
    fn the_default_validator_must_validate_with_the_revision_the_default_tag_injects() {
        let mut objects: Vec<Object> = control_plane("r").into_iter().collect();
        objects.extend(control_plane("s"));
        objects.push(default_tag("istiod-s"));
        let mut state = ClusterState::from_objects(&objects);
        assert_eq!(state.default_revision().as_deref(), Some("s"));
        // The validator still calls the old revision: config the new one injects for would be
        // validated by the old istiod.
        let stale = default_validator("istiod-r");
        state.insert(stale);
        let found = no_namespaces(&state);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [Violation::ValidatorNotDefault {
                validator: "r".into(),
                default: "s".into(),
            }]
        );
        // Moved with the default tag: nothing to report.
        let moved = default_validator("istiod-s");
        state.insert(moved);
        assert!(no_namespaces(&state).is_empty());
    }

    #[test]
    fn a_namespace_no_injector_serves_says_so() {
        let mut state = ClusterState::from_objects(&[one(INJECTOR), one(SERVICE), one(ISTIOD)]);
        state.insert(namespace_object("shop", &BTreeMap::new()));
        let expected = Expected::from_iter([("shop".to_string(), Some("r".to_string()))]);
        let found = violations(
            &state,
            &Expectations {
                namespaces: &expected,
            },
        );
        let [v @ Violation::Injection { found, .. }] = found.iter().collect::<Vec<_>>()[..] else {
            panic!("{found:?}");
        };
        assert!(found.is_empty(), "{v:?}");
        let text = v.to_string();
        assert!(text.contains("no sidecar injection at all"), "{text}");
        assert!(text.contains("expected revision r"), "{text}");
    }

    #[test]
    fn a_service_reaches_only_istiod_of_its_own_namespace() {
        // The Service selects app=istiod; an istiod of another revision carrying that label runs
        // in another namespace, out of the Service's reach.
        let service = SERVICE.replace(
            "selector: {app: istiod, istio.io/rev: r}",
            "selector: {app: istiod}",
        );
        let elsewhere = ISTIOD
            .replace("namespace: istio-system", "namespace: istio-canary")
            .replace("istio.io/rev: r", "istio.io/rev: s");
        let state = ClusterState::from_objects(&[
            one(INJECTOR),
            one(&service),
            one(ISTIOD),
            one(&elsewhere),
        ]);
        let svc = service_id("istio-system", "istiod-r");
        assert_eq!(
            state.istiod_revisions(&svc),
            BTreeSet::from(["r".to_string()])
        );
        let ns = labels(&[(REV_LABEL, "r"), (NAME_LABEL, "shop")]);
        assert_eq!(describe(&state.injectors(&ns, &BTreeMap::new())), "r");
        assert!(no_namespaces(&state).is_empty());
    }

    /// The watch's violations after `update`, next to `violations` of the same state.
    fn watched(w: &Watch<'_>) -> Vec<Violation> {
        w.violations().cloned().collect()
    }

    #[test]
    fn a_resumed_watch_judges_the_namespaces_whose_expectation_changed() {
        // What a watch knew of a state, resumed under other expectations, is exactly what a
        // whole evaluation under them finds: a namespace expected elsewhere now, one no longer
        // named, one named anew (and one that is not in the state at all).
        let mut state = ClusterState::from_objects(&[one(INJECTOR), one(SERVICE), one(ISTIOD)]);
        let rev = |r: &str| BTreeMap::from([(REV_LABEL.to_string(), r.to_string())]);
        for ns in ["bank", "pay", "shop"] {
            state.insert(namespace_object(ns, &rev("r")));
        }
        state.insert(namespace_object("old", &rev("gone")));
        let expected = |pairs: &[(&str, Option<&str>)]| -> Expected {
            pairs
                .iter()
                .map(|(n, r)| (n.to_string(), r.map(str::to_string)))
                .collect()
        };
        let was = expected(&[("bank", Some("r")), ("old", None), ("shop", Some("r"))]);
        let now = expected(&[
            ("absent", Some("r")),
            ("bank", Some("other")),
            ("pay", None),
            ("shop", Some("r")),
        ]);
        let seen = Watch::new(&state, &was).into_evaluated();
        for (from, to) in [(&was, &now), (&now, &was), (&was, &was)] {
            let start = Watch::new(&state, from).into_evaluated();
            let w = Watch::resume(&state, start, from, to);
            let reference: Vec<Violation> = violations(&state, &Expectations { namespaces: to })
                .into_iter()
                .collect();
            assert_eq!(watched(&w), reference);
        }
        let w = Watch::resume(&state, seen, &was, &now);
        let bad: Vec<String> = watched(&w)
            .iter()
            .filter_map(|v| match v {
                Violation::Injection { namespace, .. } => Some(namespace.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(bad, ["absent", "bank"]);
    }

    #[test]
    fn a_namespace_cursor_finds_what_a_lookup_finds_in_any_order() {
        let mut state = ClusterState::default();
        for ns in ["b", "d", "f"] {
            state.insert(namespace_object(ns, &BTreeMap::new()));
        }
        let asks = ["a", "b", "b", "c", "d", "b", "e", "f", "d", "g", "a", "f"];
        let mut cursor = NamespaceCursor::new(&state);
        for name in asks {
            assert_eq!(
                cursor.get(name).map(|o| o.id.name.as_str()),
                state.get(&namespace_id(name)).map(|o| o.id.name.as_str()),
                "{name}"
            );
        }
    }

    #[test]
    fn a_watch_sees_a_mesh_change_in_namespaces_no_step_relabelled() {
        let mut state = ClusterState::from_objects(&[one(INJECTOR), one(SERVICE), one(ISTIOD)]);
        let rev = |r: &str| BTreeMap::from([(REV_LABEL.to_string(), r.to_string())]);
        state.insert(namespace_object("shop", &rev("r")));
        state.insert(namespace_object("bank", &rev("r")));
        let expect: Expected = ["shop", "bank"]
            .iter()
            .map(|n| (n.to_string(), Some("r".to_string())))
            .collect();
        let same = |s: &ClusterState, w: &Watch<'_>| {
            let reference: Vec<Violation> = violations(
                s,
                &Expectations {
                    namespaces: &expect,
                },
            )
            .into_iter()
            .collect();
            assert_eq!(watched(w), reference);
        };
        let mut w = Watch::new(&state, &expect);
        assert!(watched(&w).is_empty());
        // Only `shop` is relabelled: only it is evaluated again, and its violation shows.
        state.insert(namespace_object("shop", &rev("other")));
        w.update(&state, [&namespace_id("shop")], &expect);
        same(&state, &w);
        assert_eq!(w.violations().count(), 1);
        // The istiod Deployment goes: `bank`, which no step relabelled, is no longer injected,
        // and the webhook reaches no istiod.
        let istiod = one(ISTIOD).id;
        state.retain(|id| id != &istiod);
        w.update(&state, [&istiod], &expect);
        same(&state, &w);
        assert!(
            watched(&w).iter().any(
                |v| matches!(v, Violation::Injection { namespace, .. } if namespace == "bank")
            ),
            "{:?}",
            watched(&w)
        );
        // It comes back, and the injector webhook is switched to another revision's Service.
        state.insert(one(ISTIOD));
        let moved = INJECTOR.replace("name: istiod-r,", "name: istiod-gone,");
        state.insert(one(&moved));
        w.update(&state, [&istiod, &one(&moved).id], &expect);
        same(&state, &w);
        assert!(watched(&w)
            .iter()
            .any(|v| matches!(v, Violation::Injection { namespace, .. } if namespace == "bank")));
        // New expectations with no change judge again the namespaces whose expectation
        // changed: every one, then one of two (`bank` expected elsewhere, `shop` no longer
        // named, `pay` named anew) together with a relabel, then back.
        let any: Expected = expect.keys().map(|n| (n.clone(), None)).collect();
        state.insert(namespace_object("pay", &rev("r")));
        let shifted: Expected = [("bank", Some("other")), ("pay", Some("r"))]
            .iter()
            .map(|(n, r)| (n.to_string(), r.map(str::to_string)))
            .collect();
        let steps: [(&Expected, Option<(&str, &str)>); 4] = [
            (&any, None),
            (&shifted, Some(("pay", "other"))),
            (&shifted, Some(("pay", "r"))),
            (&expect, None),
        ];
        for (i, (now, relabel)) in steps.into_iter().enumerate() {
            let mut changed = Vec::new();
            if let Some((ns, r)) = relabel {
                state.insert(namespace_object(ns, &rev(r)));
                changed.push(namespace_id(ns));
            }
            w.update(&state, &changed, now);
            let reference: Vec<Violation> = violations(&state, &Expectations { namespaces: now })
                .into_iter()
                .collect();
            assert_eq!(watched(&w), reference, "step {i}");
        }
        assert_eq!(w.violations().count(), 3, "{:?}", watched(&w));
    }

    #[test]
    fn namespaces_that_differ_only_in_labels_no_selector_reads_share_one_evaluation() {
        let state = ClusterState::from_objects(&[one(INJECTOR), one(SERVICE), one(ISTIOD)]);
        let mut injection = NamespaceInjection::new(&state);
        let a = labels(&[(REV_LABEL, "r"), (NAME_LABEL, "a"), ("team", "x")]);
        let b = labels(&[(REV_LABEL, "r"), (NAME_LABEL, "b")]);
        assert_eq!(describe(injection.of(&a)), "r");
        assert_eq!(describe(injection.of(&b)), "r");
        assert_eq!(injection.cache.len(), 1);
        // A key a selector reads (even with an empty value) is another evaluation.
        let c = labels(&[(REV_LABEL, "r"), (NAME_LABEL, "c"), ("istio-injection", "")]);
        assert_eq!(describe(injection.of(&c)), "none");
        assert_eq!(injection.cache.len(), 2);
    }

    #[test]
    fn a_namespace_object_is_judged_by_its_own_values_whatever_was_judged_before() {
        // Two webhooks, one reading each key: a namespace with both keys is served twice.
        const TWO: &str = "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: inj}\nwebhooks:\n- name: rev.namespace.sidecar-injector.istio.io\n  clientConfig: {service: {name: istiod-r, namespace: istio-system}}\n  rules: [{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}]\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  namespaceSelector:\n    matchExpressions:\n    - {key: istio.io/rev, operator: In, values: [r]}\n- name: namespace.sidecar-injector.istio.io\n  clientConfig: {service: {name: istiod-r, namespace: istio-system}}\n  rules: [{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}]\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  namespaceSelector:\n    matchLabels: {istio-injection: enabled}\n";
        let state = ClusterState::from_objects(&[one(TWO), one(SERVICE), one(ISTIOD)]);
        let namespaces: Vec<Object> = [
            "{name: a, labels: {istio.io/rev: r, istio-injection: enabled}}",
            "{name: b, labels: {istio-injection: enabled}}",
            "{name: c, labels: {istio.io/rev: [r], istio-injection: enabled}}",
            "{name: d, labels: {istio.io/rev: r}}",
            "{name: e, labels: {istio-injection: true, istio.io/rev: r}}",
            "{name: f}",
        ]
        .iter()
        .map(|m| one(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {m}\n")))
        .collect();
        // Each judged alone, from its labels.
        let alone: Vec<String> = namespaces
            .iter()
            .map(|o| describe(NamespaceInjection::new(&state).of(&o.labels())))
            .collect();
        assert_eq!(alone, ["r + r", "r", "r", "r", "r", "none"]);
        // One evaluation for all, in both orders and twice over: the key of a namespace with
        // fewer (or non-scalar) values never keeps a part of the one before.
        for order in [vec![0, 1, 2, 3, 4, 5], vec![5, 4, 3, 2, 1, 0]] {
            let mut injection = NamespaceInjection::new(&state);
            for i in order.iter().chain(&order) {
                let got = describe(injection.of_object(Some(&namespaces[*i])));
                assert_eq!(got, alone[*i], "namespace {i}");
            }
            assert_eq!(describe(injection.of_object(None)), "none");
        }
    }

    const ZTUNNEL: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: ztunnel, namespace: istio-system}\nspec:\n  template:\n    spec:\n      containers:\n      - name: istio-proxy\n        args: [proxy, ztunnel]\n        env:\n        - {name: CA_ADDRESS, value: 'istiod-r.istio-system.svc:15012'}\n        - {name: XDS_ADDRESS, value: 'istiod-r.istio-system.svc:15012'}\n";

    #[test]
    fn an_ambient_namespace_is_served_by_ztunnel_unless_an_injector_matches() {
        let mut state =
            ClusterState::from_objects(&[one(INJECTOR), one(SERVICE), one(ISTIOD), one(ZTUNNEL)]);
        let ambient = labels(&[(DATAPLANE_MODE_LABEL, "ambient"), (NAME_LABEL, "shop")]);
        let found = state.injectors(&ambient, &BTreeMap::new());
        assert_eq!(describe(&found), "r (ztunnel)");
        assert!(injection_violation("shop", &Some("r".into()), &found).is_none());
        assert!(injection_violation("shop", &Some("s".into()), &found).is_some());
        // A pod opted out of ambient is served by nothing.
        let none = labels(&[(DATAPLANE_MODE_LABEL, "none")]);
        assert_eq!(describe(&state.injectors(&ambient, &none)), "none");
        // Labelled for a revision too: the injector wins (a pod with a sidecar is not captured).
        let both = labels(&[
            (DATAPLANE_MODE_LABEL, "ambient"),
            (REV_LABEL, "r"),
            (NAME_LABEL, "shop"),
        ]);
        let found = state.injectors(&both, &BTreeMap::new());
        assert!(matches!(found.as_slice(), [i] if i.target == Target::Revision("r".into())));
        // ztunnel's istiod gone: the ambient namespace is served by a broken node agent.
        let istiod = one(ISTIOD).id;
        state.retain(|id| id != &istiod);
        let found = state.injectors(&ambient, &BTreeMap::new());
        assert!(matches!(found.as_slice(), [i] if matches!(i.target, Target::NoIstiod(_))));
        // No ztunnel at all.
        state.retain(|id| id.kind != "DaemonSet");
        let found = state.injectors(&ambient, &BTreeMap::new());
        assert_eq!(describe(&found), "ambient, with no ztunnel");
        assert!(injection_violation("shop", &None, &found).is_some());
    }

    #[test]
    fn ztunnel_references_the_istiod_it_connects_to() {
        let z = one(ZTUNNEL);
        assert_eq!(node_agent(&z), Some(NodeAgent::Ztunnel));
        assert_eq!(
            ztunnel_istiod(&z),
            Some(service_id("istio-system", "istiod-r"))
        );
        let state = ClusterState::from_objects(&[z, one(SERVICE), one(ISTIOD)]);
        let svc = service_id("istio-system", "istiod-r");
        assert_eq!(dangling_references(&state, &[&svc]).len(), 1);
    }

    #[test]
    fn a_validating_webhook_whose_service_has_no_istiod_is_a_violation() {
        let validator = "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: istio-validator-r}\nwebhooks:\n- name: rev.validation.istio.io\n  clientConfig: {service: {name: istiod-r, namespace: istio-system}}\n  sideEffects: None\n  admissionReviewVersions: [v1]\n";
        // The Service exists, but no istiod is behind it.
        let state = ClusterState::from_objects(&[one(validator), one(SERVICE)]);
        let found = violations(
            &state,
            &Expectations {
                namespaces: &Expected::new(),
            },
        );
        assert!(
            found.iter().any(|v| matches!(v, Violation::DanglingWebhook { missing: false, webhook, .. } if webhook.name == "istio-validator-r")),
            "{found:?}"
        );
    }

    /// A Gateway API Gateway of `class` in `ns`, with its own `istio.io/rev` when given.
    fn gateway(ns: &str, name: &str, class: &str, rev: Option<&str>) -> Object {
        let labels = rev
            .map(|r| format!("\n  labels: {{istio.io/rev: {r}}}"))
            .unwrap_or_default();
        one(&format!("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\n  namespace: {ns}{labels}\nspec:\n  gatewayClassName: {class}\n"))
    }

    /// A revision tag's webhook configuration, labelled the way istioctl and the charts label it.
    fn tag_webhook(tag: &str, rev: &str) -> Object {
        one(&format!("apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: istio-revision-tag-{tag}\n  labels: {{istio.io/tag: {tag}, istio.io/rev: {rev}}}\nwebhooks: []\n"))
    }

    fn labelled_validator(rev: &str) -> Object {
        one(&format!("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: {DEFAULT_VALIDATOR}\n  labels: {{istio.io/rev: {rev}}}\nwebhooks: []\n"))
    }

    fn two_revisions() -> ClusterState {
        let mut state =
            ClusterState::from_objects(control_plane("a").iter().chain(&control_plane("b")));
        for ns in ["edge", "shop"] {
            state.insert(namespace_object(ns, &BTreeMap::new()));
        }
        state
    }

    fn owners(state: &ClusterState, gw: &Object) -> Vec<String> {
        state.insert_clone_for_test(gw).gateway_owners(gw)
    }

    impl ClusterState {
        fn insert_clone_for_test(&self, o: &Object) -> ClusterState {
            let mut s = self.clone();
            s.insert(o.clone());
            s
        }
    }

    #[test]
    fn a_gateway_is_programmed_by_the_istiod_its_own_label_or_its_namespace_selects() {
        let mut state = two_revisions();
        // Its own label names a revision.
        assert_eq!(
            owners(&state, &gateway("edge", "g", "istio", Some("b"))),
            ["b"]
        );
        // No label of its own: its namespace's decides, and its own wins over the namespace's.
        let rev = |r: &str| BTreeMap::from([(REV_LABEL.to_string(), r.to_string())]);
        state.insert(namespace_object("edge", &rev("a")));
        assert_eq!(owners(&state, &gateway("edge", "g", "istio", None)), ["a"]);
        assert_eq!(
            owners(&state, &gateway("edge", "g", "istio", Some("b"))),
            ["b"]
        );
        // A revision that is not installed programs nothing.
        assert!(owners(&state, &gateway("edge", "g", "istio", Some("gone"))).is_empty());
        // A tag is resolved through the webhook configuration labelled with it, and follows it.
        state.insert(tag_webhook("prod-stable", "a"));
        let tagged = gateway("shop", "g", "istio-waypoint", Some("prod-stable"));
        assert_eq!(owners(&state, &tagged), ["a"]);
        state.insert(tag_webhook("prod-stable", "b"));
        assert_eq!(owners(&state, &tagged), ["b"]);
        // A namespace that does not exist: every istiod takes it.
        assert_eq!(
            owners(&state, &gateway("gone", "g", "istio", None)),
            ["a", "b"]
        );
    }

    #[test]
    fn a_gateway_that_selects_nothing_goes_to_the_default_revision() {
        let mut state = two_revisions();
        let plain = gateway("edge", "g", "istio", None);
        // No default tag and no labelled validator: no named revision takes it.
        assert!(owners(&state, &plain).is_empty());
        // The validator's label makes a revision the default...
        state.insert(labelled_validator("a"));
        assert_eq!(owners(&state, &plain), ["a"]);
        // ...unless a `default` tag points elsewhere: then only the tag's revision does.
        state.insert(tag_webhook("default", "b"));
        assert_eq!(owners(&state, &plain), ["b"]);
        // The unrevisioned istiod's revision is `default`: it takes what selects nothing.
        let mut plain_install =
            ClusterState::from_objects(&[one(&ISTIOD.replace(", istio.io/rev: r", ""))]);
        plain_install.insert(namespace_object("edge", &BTreeMap::new()));
        assert_eq!(owners(&plain_install, &plain), [DEFAULT_REVISION]);
    }

    #[test]
    fn only_gateways_of_an_istio_class_are_checked() {
        let mut state = two_revisions();
        state.insert(gateway("edge", "nginx", "nginx", Some("gone")));
        assert!(no_namespaces(&state).is_empty());
        // A GatewayClass of the state whose controller is Istio's makes its Gateways Istio's.
        state.insert(one("apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: nginx}\nspec: {controllerName: istio.io/gateway-controller}\n"));
        let found = no_namespaces(&state);
        assert!(
            found
                .iter()
                .any(|v| matches!(v, Violation::GatewayOwners { owners, .. } if owners.is_empty())),
            "{found:?}"
        );
        assert_eq!(
            found.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["Gateway edge/nginx (istio.io/rev=gone on the Gateway) would be programmed by no istiod: its pods would lose their configuration"]
        );
    }

    #[test]
    fn a_watch_sees_a_relabelled_namespace_move_its_gateways() {
        let mut state = two_revisions();
        state.insert(tag_webhook("default", "a"));
        state.insert(gateway("edge", "g", "istio", None));
        state.insert(gateway("shop", "h", "istio", None));
        let expect = Expected::new();
        let mut w = Watch::new(&state, &expect);
        assert!(watched(&w).is_empty());
        let rev = |r: &str| BTreeMap::from([(REV_LABEL.to_string(), r.to_string())]);
        // Relabelling `edge` to a revision that is not installed leaves its Gateway unprogrammed.
        state.insert(namespace_object("edge", &rev("gone")));
        w.update(&state, [&namespace_id("edge")], &expect);
        let reference: Vec<Violation> = violations(
            &state,
            &Expectations {
                namespaces: &expect,
            },
        )
        .into_iter()
        .collect();
        assert_eq!(watched(&w), reference);
        assert_eq!(reference.len(), 1, "{reference:?}");
        assert!(reference[0]
            .to_string()
            .contains("Gateway edge/g (istio.io/rev=gone on its namespace)"));
        // And back to an installed one.
        state.insert(namespace_object("edge", &rev("b")));
        w.update(&state, [&namespace_id("edge")], &expect);
        assert!(watched(&w).is_empty());
        // A namespace without Gateways changes nothing for them.
        state.insert(namespace_object("other", &rev("gone")));
        w.update(&state, [&namespace_id("other")], &expect);
        assert!(watched(&w).is_empty());
    }

    const GATEWAY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: gw, namespace: edge}\nspec:\n  template:\n    metadata:\n      labels: {app: gw, istio.io/rev: a}\n    spec:\n      containers:\n      - name: istio-proxy\n        args: [proxy, router]\n";
    const GATEWAY_SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: gw, namespace: edge}\nspec:\n  selector: {app: gw}\n";

    #[test]
    fn a_step_that_leaves_a_gateway_service_without_gateway_pods_is_a_violation() {
        let before = ClusterState::from_objects(&[one(GATEWAY), one(GATEWAY_SERVICE)]);
        let svc = one(GATEWAY_SERVICE).id;
        assert_eq!(
            before
                .gateway_revisions(&svc)
                .into_iter()
                .collect::<Vec<_>>(),
            ["a"]
        );
        // The selector switched to a revision no gateway pod has.
        let mut after = before.clone();
        after.insert(one(
            &GATEWAY_SERVICE.replace("{app: gw}", "{app: gw, istio.io/rev: b}")
        ));
        let found = lost_gateway_backends(&before, &after, [&svc]);
        assert_eq!(
            found.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["Service edge/gw would select no gateway pods (it selected those of revision a): its load balancer would send traffic nowhere"]
        );
        // The gateway Deployment deleted under it.
        let mut gone = before.clone();
        let gw = one(GATEWAY).id;
        gone.retain(|id| id != &gw);
        assert_eq!(lost_gateway_backends(&before, &gone, [&gw]).len(), 1);
        // A second gateway of another revision keeps it served; a step that changed nothing
        // there is not looked at.
        let mut two = after.clone();
        two.insert(one(&GATEWAY
            .replace("name: gw,", "name: gw-b,")
            .replace("istio.io/rev: a", "istio.io/rev: b")));
        assert!(lost_gateway_backends(&before, &two, [&svc]).is_empty());
        assert!(lost_gateway_backends(&before, &after, [&namespace_id("edge")]).is_empty());
    }
}
