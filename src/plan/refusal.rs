//! Why the planner refuses: one typed value per rule, carrying what was violated (the phase or
//! rollback, the namespace or object, the rule), so tests assert on the kind and the messages come
//! from one place (`describe::refusal`).
//!
//! Owns: the refusal kinds and their data. Must not: hold prose (no message or help text lives
//! here) or decide anything.

use crate::error::Location;
use crate::istio::{NodeAgent, Revision};
use crate::k8s::{Minor, NotServed};
use crate::manifest::ObjectId;
use crate::mesh::{Injection, Violation};
use crate::plan::PhaseKind;

/// Where a simulated step broke an invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseAt {
    pub index: usize,
    pub kind: PhaseKind,
    /// `03-migrate-canary`
    pub dir: String,
    /// The hop's revisions, old and new.
    pub from: Revision,
    pub to: Revision,
}

/// How a rollback's end state differs from the state before its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Differs {
    /// The object exists in both, with other content.
    Content,
    /// The object existed before the phase and is gone after the rollback.
    Missing,
    /// The object did not exist before the phase and is still there after the rollback.
    LeftBehind,
}

/// Why a namespace's injection labels are ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ambiguous {
    /// Both `istio-injection` and `istio.io/rev`: `istio-injection` wins and the revision label
    /// is ignored.
    BothLabels,
    /// `istio-injection` or `istio.io/rev` with an empty value.
    EmptyValue(&'static str),
}

/// A render's object whose API version the cluster does not serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unserved {
    pub id: ObjectId,
    pub api_version: String,
    pub why: NotServed,
}

/// Every reason `plan` refuses, with what was violated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The plan has no hop: nothing moves from one revision to another.
    NoHop,
    /// The caller gave another number of renders than the policy has releases (a defect of the
    /// caller, never of the input).
    RendersMismatch { releases: usize, renders: usize },
    /// istioctl rendered nothing for the new revision.
    EmptyRender {
        version: semver::Version,
        revision: Revision,
        spec: String,
    },
    /// The new render has no istiod Deployment of its revision.
    NoIstiod { revision: Revision, spec: String },
    /// The old install had CRDs and the new render has none.
    NoCrds {
        revision: Revision,
        spec: String,
        old_revision: Revision,
        old_version: semver::Version,
        new_version: semver::Version,
        old_crds: usize,
    },
    /// No (or more than one) injector serves namespaces labelled for the new revision.
    NoInjector {
        revision: Revision,
        spec: String,
        found: Vec<Injection>,
    },
    /// `defaultTag: true`, but the render has no default tag webhook.
    NoDefaultTag { version: semver::Version },
    /// `defaultTag: true`, but the render has no default validator.
    NoDefaultValidator {
        version: semver::Version,
        revision: Revision,
        old_revision: Revision,
        spec: String,
    },
    /// The install would change an object of the running revision in place.
    InstallOverwrites {
        revision: Revision,
        old_revision: Revision,
        object: ObjectId,
    },
    /// The new render drops objects of gateways the old revision runs.
    GatewaysDropped {
        old_revision: Revision,
        /// `namespace/name` of each gateway workload, with its objects the new render lacks.
        lost: Vec<(String, Vec<ObjectId>)>,
    },
    /// An Istio version does not support the policy's Kubernetes version.
    IstioUnsupported {
        istio: Minor,
        lowest: Minor,
        highest: Minor,
        kubernetes: Minor,
    },
    /// A later hop's Istio does not support the policy's Kubernetes version, which the path's
    /// first control plane does: the cluster must be upgraded between two hops.
    KubernetesBetweenHops {
        kubernetes: Minor,
        /// The first Istio of the path that does not support it, and what it supports.
        istio: Minor,
        lowest: Minor,
        highest: Minor,
        /// The 1-based hop that installs it, and the version that hop starts from.
        hop: usize,
        from: semver::Version,
        to: semver::Version,
        /// The Kubernetes versions both the hop's old and new Istio support (none: no version
        /// lets the hop run).
        window: Option<(Minor, Minor)>,
    },
    /// The new render has no webhook configuration for a revision tag the policy moves.
    NoRevisionTag {
        tag: String,
        version: semver::Version,
    },
    /// Rendered objects use API versions the policy's Kubernetes does not serve.
    ApiNotServed {
        kubernetes: Minor,
        version: semver::Version,
        objects: Vec<Unserved>,
    },
    /// A rollback or `live/` would re-apply objects with API versions the policy's Kubernetes
    /// does not serve (objects of the old render, kept as the cluster had them).
    ApiNotServedIn {
        /// `rollback/02-install-1-16-1` or `live`.
        place: String,
        kubernetes: Minor,
        objects: Vec<Unserved>,
    },
    /// The new render cannot be evaluated (see `UndecidableStart`).
    UndecidableRender {
        revision: Revision,
        violation: Violation,
    },
    /// The cluster before the upgrade cannot be evaluated (an injector webhook the evaluation
    /// cannot read, a Service reaching several revisions).
    UndecidableStart { violation: Violation },
    /// A step of a phase breaks a safety invariant.
    UnsafePhase { at: PhaseAt, violation: Violation },
    /// Canary gateways: after the canary phase or the cutover, a gateway Service selects the
    /// gateway pods of other revisions than the phase moves it to.
    GatewayServiceRevisions {
        at: PhaseAt,
        service: ObjectId,
        expected: Vec<String>,
        found: Vec<String>,
    },
    /// A step of a derived rollback breaks a safety invariant (a defect of the tool).
    UnsafeRollback { dir: String, violation: Violation },
    /// A derived rollback does not return the cluster to the state before its phase.
    RollbackDiffers {
        dir: String,
        object: ObjectId,
        how: Differs,
    },
    /// Namespaces of the inventory whose injection labels Istio reads in a way the policy cannot
    /// mean: both `istio-injection` and `istio.io/rev`, or an empty value.
    AmbiguousLabels {
        inventory: String,
        namespaces: Vec<(String, Ambiguous)>,
    },
    /// The inventory and the old render disagree (the spec is not what was installed): objects of
    /// the old render the cluster lacks (of kinds the inventory holds), and objects labelled for
    /// the old revision that neither the render nor the install explains.
    NotInstalled {
        inventory: String,
        revision: Revision,
        missing: Vec<ObjectId>,
        unexplained: Vec<ObjectId>,
    },
    /// Namespaces and workloads the old revision injects that no wave moves, while the plan
    /// deletes the old revision.
    Forgotten {
        revision: Revision,
        namespaces: Vec<String>,
        workloads: Vec<ObjectId>,
    },
    /// Workloads a phase restarts (or moves) whose new pods would still get the old revision's
    /// sidecar: their pod template pins it.
    Pinned {
        at: PhaseAt,
        workloads: Vec<(ObjectId, Vec<Injection>)>,
    },
    /// The uninstall would delete a revision still in use at that point of the plan.
    StillUsed {
        at: PhaseAt,
        namespaces: Vec<String>,
        workloads: Vec<ObjectId>,
        references: Vec<Violation>,
    },
    /// The old install runs a node agent the new render lacks: the uninstall would delete it
    /// from every node.
    NodeAgentDropped {
        agent: NodeAgent,
        object: ObjectId,
        revision: Revision,
        spec: String,
    },
    /// The new render puts a node agent in another namespace: two of it would run on every node
    /// (two CNI plugins chained, two ztunnels), which no in-place upgrade allows.
    NodeAgentMoved {
        agent: NodeAgent,
        from: ObjectId,
        to: ObjectId,
        version: semver::Version,
    },
    /// ztunnel on an Istio before ambient mode's beta: no documented upgrade exists.
    AmbientTooEarly { version: semver::Version },
    /// A node agent would run beside a control plane outside Istio's supported skew during the
    /// hop (istio-cni across a two-minor hop).
    NodeAgentSkew {
        agent: NodeAgent,
        from: semver::Version,
        to: semver::Version,
    },
    /// The new ztunnel does not connect to the new revision's istiod (`XDS_ADDRESS`).
    ZtunnelElsewhere {
        revision: Revision,
        service: Option<ObjectId>,
        spec: String,
    },
    /// The new ztunnel DaemonSet is not `OnDelete`: applying it would restart every node's
    /// ztunnel at once, cutting every ambient pod's connections on each node.
    ZtunnelRollsItself { strategy: String, spec: String },
    /// Namespaces in ambient mode (served by ztunnel, not an injector) that a wave would label
    /// for a revision, which makes the sidecar injector match them.
    AmbientInWave {
        inventory: String,
        namespaces: Vec<String>,
    },
    /// `spec.promote` or `--promote` names no phase.
    PromoteUnknown {
        source: &'static str,
        phase: String,
        /// `index name` of every phase.
        phases: Vec<(usize, String)>,
        location: Option<Location>,
    },
}
