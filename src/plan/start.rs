//! State 0, the cluster before the upgrade, made in one place. Today it is assumed: the old
//! render plus every namespace the policy names, labelled the canonical way for the old revision.
//! (A cluster inventory, when the policy gives one, replaces the assumption here and only here.)
//!
//! Owns: state 0, the expectations of state 0, the violations it already has (warnings, never
//! blamed on a phase) and the assumptions the plan states about it. Must not: plan phases.

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::{namespace_id, namespace_object, ClusterState};
use crate::istio::{is_tag_object, Revision, INJECTION_LABEL, REV_LABEL};
use crate::manifest::ObjectId;
use crate::mesh::{violations, Expectations, Violation};
use crate::plan::{Expected, HopInput};

/// The cluster before the upgrade and what the plan knows about it.
#[derive(Debug, Clone)]
pub struct Start {
    pub state: ClusterState,
    /// The namespaces the policy names, in policy order.
    pub namespaces: Vec<String>,
    /// Every named namespace on the first hop's old revision.
    pub expected: Expected,
    /// What is already unsafe in state 0 (shown as warnings, never blamed on a phase).
    pub known: BTreeSet<Violation>,
    /// What the plan assumed about the cluster.
    pub assumptions: Vec<Assumption>,
}

/// Something the plan believes about the cluster without having seen it (`describe` says it in
/// words, with the command that checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assumption {
    /// No inventory: every named namespace carries exactly `key=value` (the canonical label of
    /// `revision`), and nothing else in the cluster uses `revision`.
    CanonicalLabels {
        key: String,
        value: String,
        revision: Revision,
    },
    /// State 0 holds objects `istioctl install` adds beyond what `manifest generate` renders
    /// (the default tag and validator pointing at `revision`), because the policy says so
    /// (`declared`) or because a named revision's install creates them when no default exists.
    InstallAdded {
        objects: Vec<ObjectId>,
        revision: Revision,
        declared: bool,
    },
    /// The support table does not know this Istio minor: whether it supports the policy's
    /// Kubernetes version was not checked.
    SupportUnknown {
        istio: crate::k8s::Minor,
        kubernetes: crate::k8s::Minor,
    },
}

/// The label that puts a namespace on `revision` the canonical way: `istio-injection=enabled`
/// for the unrevisioned install, `istio.io/rev=<revision>` otherwise.
pub fn canonical_label(revision: &Revision) -> (&'static str, String) {
    match revision {
        Revision::Default => (INJECTION_LABEL, "enabled".to_string()),
        Revision::Named(r) => (REV_LABEL, r.clone()),
    }
}

/// State 0 without an inventory: the first hop's old render, plus each named namespace carrying
/// exactly the canonical label of the old revision.
pub fn assumed<'a>(
    first: &HopInput<'_>,
    namespaces: impl IntoIterator<Item = &'a String>,
    default_tag_declared: bool,
) -> Start {
    let (key, value) = canonical_label(&first.from.revision);
    let mut state = ClusterState::from_objects(&first.old);
    let mut named = Vec::new();
    for ns in namespaces {
        let labels = BTreeMap::from([(key.to_string(), value.clone())]);
        state
            .objects
            .insert(namespace_id(ns), namespace_object(ns, &labels));
        named.push(ns.clone());
    }
    let revision = first.from.revision.label().to_string();
    let expected: Expected = named
        .iter()
        .map(|n| (n.clone(), Some(revision.clone())))
        .collect();
    let known = violations(
        &state,
        &Expectations {
            namespaces: &expected,
        },
    );
    let mut assumptions = vec![Assumption::CanonicalLabels {
        key: key.to_string(),
        value,
        revision: first.from.revision.clone(),
    }];
    let added: Vec<ObjectId> = first
        .old
        .iter()
        .filter(|o| is_tag_object(o))
        .map(|o| o.id.clone())
        .collect();
    if !added.is_empty() {
        assumptions.push(Assumption::InstallAdded {
            objects: added,
            revision: first.from.revision.clone(),
            declared: default_tag_declared,
        });
    }
    Start {
        state,
        namespaces: named,
        expected,
        known,
        assumptions,
    }
}
