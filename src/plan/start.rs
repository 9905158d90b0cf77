//! State 0, the cluster before the upgrade, made in one place. Without an inventory it is
//! assumed: the old render plus every namespace the policy names, labelled the canonical way for
//! the old revision. With one (`from_inventory`), it is the cluster as captured, and the old render
//! only fills in the kinds the capture does not hold.
//!
//! Owns: state 0, the expectations of state 0 (and of the namespaces no wave moves), the
//! violations it already has (warnings, never blamed on a phase), the revision each workload's
//! pods run, the refusals an inventory alone decides (ambiguous labels, a spec that is not what
//! was installed, forgotten namespaces and workloads) and the assumptions the plan states about
//! state 0. Must not: plan phases.

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::{namespace_id, namespace_object, pod_template_labels, ClusterState};
use crate::inventory::Inventory;
use crate::istio::{
    is_tag_object, node_agent, normalize, NodeAgent, Revision, INJECTION_LABEL, REV_LABEL,
};
use crate::manifest::{Object, ObjectId};
use crate::mesh::{violations, Expectations, Injection, InjectorWebhooks, Target, Violation};
use crate::plan::refusal::{Ambiguous, Refusal};
use crate::plan::{ids, Expected, HopInput, Result};

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
    /// Namespaces no wave moves, each with the revision that injects it and must keep injecting
    /// it through every phase (only known with an inventory).
    pub fixed: Expected,
    /// The workloads of the inventory (not the control plane's own), each with the revision its
    /// pods run (`None`: not injected).
    pub workloads: BTreeMap<ObjectId, Option<String>>,
    /// Namespaces no wave names that follow the default revision (`istio-injection=enabled`)
    /// while the plan moves the default tag: they move, and restart, in the default-tag phase.
    pub followers: Vec<String>,
    /// For each tag of `spec.tags`, the namespaces no wave names that select it
    /// (`istio.io/rev=<tag>`, served by the old revision): they move, and restart, in the tag's
    /// phase.
    pub tag_followers: BTreeMap<String, Vec<String>>,
    /// Namespaces in ambient mode that ztunnel serves (only known with an inventory): they
    /// follow ztunnel, which moves to each hop's new revision in its ztunnel phase.
    pub ambient: Vec<String>,
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
    /// State 0 is the inventory: the kinds it holds are the cluster as captured, the others are
    /// taken from the old render; running pods were injected by the webhooks the inventory shows.
    Inventory {
        path: String,
        held: Vec<String>,
        from_render: Vec<String>,
    },
    /// No inventory: the revision tags the plan moves exist and point at `revision`, and which
    /// namespaces select them is not known (moving a tag moves them all).
    TagUsers {
        tags: Vec<String>,
        revision: Revision,
    },
    /// The support table does not know this Istio minor: whether it supports the policy's
    /// Kubernetes version was not checked.
    SupportUnknown {
        istio: crate::k8s::Minor,
        kubernetes: crate::k8s::Minor,
    },
    /// No inventory, and the path runs ztunnel: which namespaces are in ambient mode is not
    /// known (they follow ztunnel to the new revision in its phase, with no restart).
    AmbientUnknown,
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
        state.insert(namespace_object(ns, &labels));
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
    assumptions.extend(install_added(
        &first.old,
        &first.from.revision,
        default_tag_declared,
    ));
    let ztunnel = |objects: &[Object]| {
        objects
            .iter()
            .any(|o| node_agent(o) == Some(NodeAgent::Ztunnel))
    };
    if ztunnel(&first.old) || ztunnel(&first.new) {
        assumptions.push(Assumption::AmbientUnknown);
    }
    if !first.tags.is_empty() {
        assumptions.push(Assumption::TagUsers {
            tags: first.tags.iter().map(|t| t.name.clone()).collect(),
            revision: first.from.revision.clone(),
        });
    }
    Start {
        state,
        namespaces: named,
        expected,
        known,
        assumptions,
        fixed: Expected::new(),
        workloads: BTreeMap::new(),
        followers: Vec::new(),
        tag_followers: BTreeMap::new(),
        ambient: Vec::new(),
    }
}

/// What state 0 takes from the render without having seen it: the objects `istioctl install`
/// adds (the tag objects), if any.
fn install_added<'a>(
    assumed: impl IntoIterator<Item = &'a Object>,
    revision: &Revision,
    declared: bool,
) -> Option<Assumption> {
    let objects: Vec<ObjectId> = assumed
        .into_iter()
        .filter(|o| is_tag_object(o))
        .map(|o| o.id.clone())
        .collect();
    (!objects.is_empty()).then(|| Assumption::InstallAdded {
        objects,
        revision: revision.clone(),
        declared,
    })
}

/// A cluster inventory and the path the policy names it by.
pub struct InventoryInput<'a> {
    pub path: String,
    pub sha256: String,
    pub inventory: &'a Inventory,
}

/// The kinds a wave restarts: their pod templates make pods.
pub const WORKLOAD_KINDS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet"];

/// Whether `o` is a workload whose pods a wave restarts.
pub fn is_workload(o: &Object) -> bool {
    o.id.group == "apps" && WORKLOAD_KINDS.contains(&o.id.kind.as_str())
}

/// The revision that injects a pod, when exactly one healthy injector does.
pub fn revision_of(found: &[Injection]) -> Option<&str> {
    match found {
        [one] => match &one.target {
            Target::Revision(r) => Some(r),
            _ => None,
        },
        _ => None,
    }
}

/// Which injectors a pod of workload `o` meets in `state` (its namespace's labels and its pod
/// template's labels).
pub fn workload_injectors(
    state: &ClusterState,
    webhooks: &InjectorWebhooks,
    o: &Object,
) -> Vec<Injection> {
    let ns = o.id.namespace.as_deref().unwrap_or("");
    let ns_labels = state.labels(&namespace_id(ns)).unwrap_or_default();
    webhooks.matching(&ns_labels, &pod_template_labels(o))
}

/// State 0 from an inventory: every object it holds (as stored, webhooks normalized like a
/// render's) and, for kinds it does not hold, the first hop's old render (with what an install
/// adds). Refuses, listing everything found at once: namespaces with ambiguous labels; a spec
/// that is not what was installed (render objects of held kinds the cluster lacks, objects
/// labelled for the old revision in the control-plane namespace or cluster-wide that neither the
/// render nor a revision tag explains); and, when the plan deletes the old revision, namespaces
/// and workloads it injects that neither a wave nor the default tag's move moves. Namespaces
/// that follow the default revision move with the default tag when the plan moves it
/// (`followers`); the others no wave moves keep their injector (`fixed`): the old revision's too
/// when the plan keeps it.
pub fn from_inventory(
    first: &HopInput<'_>,
    input: &InventoryInput<'_>,
    default_tag_declared: bool,
) -> Result<Start> {
    let inv = input.inventory;
    let old_rev = first.from.revision.label().to_string();

    let mut ambiguous = Vec::new();
    for o in inv.objects.iter().filter(|o| o.id.kind == "Namespace") {
        let labels = o.labels();
        if labels.contains_key(INJECTION_LABEL) && labels.contains_key(REV_LABEL) {
            ambiguous.push((o.id.name.clone(), Ambiguous::BothLabels));
        }
        for key in [INJECTION_LABEL, REV_LABEL] {
            if labels.get(key).is_some_and(String::is_empty) {
                ambiguous.push((o.id.name.clone(), Ambiguous::EmptyValue(key)));
            }
        }
    }
    if !ambiguous.is_empty() {
        return Err(Refusal::AmbiguousLabels {
            inventory: input.path.clone(),
            namespaces: ambiguous,
        });
    }

    let render_ids = ids(&first.old);
    let held = |o: &Object| inv.holds(&o.id.group, &o.id.kind);
    let captured: BTreeSet<&ObjectId> = inv.objects.iter().map(|o| &o.id).collect();
    let missing: Vec<ObjectId> = first
        .old
        .iter()
        .filter(|o| held(o) && !captured.contains(&o.id))
        .map(|o| o.id.clone())
        .collect();
    let istio_ns = first.from.istio_namespace.as_str();
    let unexplained: Vec<ObjectId> = inv
        .objects
        .iter()
        .filter(|o| o.id.kind != "Namespace" && !is_tag_object(o))
        .filter(|o| o.id.namespace.as_deref().is_none_or(|ns| ns == istio_ns))
        .filter(|o| o.label(REV_LABEL).as_deref() == Some(old_rev.as_str()))
        .filter(|o| !render_ids.contains(&o.id))
        .map(|o| o.id.clone())
        .collect();
    if !missing.is_empty() || !unexplained.is_empty() {
        return Err(Refusal::NotInstalled {
            inventory: input.path.clone(),
            revision: first.from.revision.clone(),
            missing,
            unexplained,
        });
    }

    let from_render: Vec<&Object> = first.old.iter().filter(|o| !held(o)).collect();
    let normalized: Vec<Object> = inv.objects.iter().map(normalize).collect();
    let state = ClusterState::from_objects(from_render.iter().copied().chain(&normalized));

    // Who the old revision injects, and what no wave moves.
    let webhooks = state.injector_webhooks();
    let moved: BTreeSet<&str> = first
        .waves
        .iter()
        .flat_map(|w| &w.namespaces)
        .map(String::as_str)
        .collect();
    let moved_workloads: BTreeSet<&ObjectId> =
        first.waves.iter().flat_map(|w| &w.workloads).collect();
    let mut fixed = Expected::new();
    let mut forgotten = Vec::new();
    let mut followers = Vec::new();
    let mut tag_followers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ambient = Vec::new();
    let mut ambient_in_waves = Vec::new();
    for o in state.objects.values().filter(|o| o.id.kind == "Namespace") {
        let ns = &o.id.name;
        let found = webhooks.matching(&o.labels(), &BTreeMap::new());
        // Served by ztunnel, not by an injector (`mesh`: an injector wins over ambient).
        let by_ztunnel =
            matches!(found.as_slice(), [one] if matches!(one.target, Target::NodeAgent(_)));
        if moved.contains(ns.as_str()) {
            if by_ztunnel {
                ambient_in_waves.push(ns.clone());
            }
            continue;
        }
        if by_ztunnel {
            ambient.push(ns.clone());
            continue;
        }
        // `istio-injection=enabled` means "the default revision": when the plan moves the
        // default, such a namespace moves with it (the simulation checks that it does).
        let follows_default = o.label(INJECTION_LABEL).as_deref() == Some("enabled");
        // `istio.io/rev=<tag>` of a tag the plan moves: such a namespace moves with the tag.
        let follows_tag = o
            .label(REV_LABEL)
            .filter(|t| first.tags.iter().any(|m| m.name == *t));
        match revision_of(&found) {
            Some(r) if r == old_rev && follows_default && first.default_tag => {
                followers.push(ns.clone())
            }
            Some(r) if r == old_rev && follows_tag.is_some() => {
                if let Some(t) = follows_tag {
                    tag_followers.entry(t).or_default().push(ns.clone());
                }
            }
            Some(r) if r == old_rev && first.uninstall_old => forgotten.push(ns.clone()),
            Some(r) => {
                fixed.insert(ns.clone(), Some(r.to_string()));
            }
            None => {}
        }
    }
    if !ambient_in_waves.is_empty() {
        return Err(Refusal::AmbientInWave {
            inventory: input.path.clone(),
            namespaces: ambient_in_waves,
        });
    }
    let mut workloads = BTreeMap::new();
    let mut forgotten_workloads = Vec::new();
    for o in state.objects.values().filter(|o| is_workload(o)) {
        if render_ids.contains(&o.id) {
            continue;
        }
        let running = revision_of(&workload_injectors(&state, &webhooks, o)).map(str::to_string);
        let ns = o.id.namespace.as_deref().unwrap_or("");
        if running.as_deref() == Some(old_rev.as_str())
            && first.uninstall_old
            && !moved.contains(ns)
            && !moved_workloads.contains(&o.id)
            && !forgotten.iter().any(|f| f == ns)
            && !followers.iter().any(|f| f == ns)
            && !tag_followers.values().flatten().any(|f| f == ns)
        {
            forgotten_workloads.push(o.id.clone());
        }
        workloads.insert(o.id.clone(), running);
    }
    if !forgotten.is_empty() || !forgotten_workloads.is_empty() {
        return Err(Refusal::Forgotten {
            revision: first.from.revision.clone(),
            namespaces: forgotten,
            workloads: forgotten_workloads,
        });
    }

    let named: Vec<String> = first
        .waves
        .iter()
        .flat_map(|w| &w.namespaces)
        .chain(&followers)
        .chain(tag_followers.values().flatten())
        .chain(&ambient)
        .cloned()
        .collect();
    let mut expected: Expected = named
        .iter()
        .map(|n| (n.clone(), Some(old_rev.clone())))
        .collect();
    expected.extend(fixed.clone());
    let known = violations(
        &state,
        &Expectations {
            namespaces: &expected,
        },
    );
    let kind_names = |objects: &mut dyn Iterator<Item = &Object>| -> Vec<String> {
        objects
            .map(|o| match o.id.group.as_str() {
                "" => o.id.kind.clone(),
                g => format!("{}.{g}", o.id.kind),
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let mut assumptions = vec![Assumption::Inventory {
        path: input.path.clone(),
        held: kind_names(&mut inv.objects.iter()),
        from_render: kind_names(&mut from_render.iter().copied()),
    }];
    assumptions.extend(install_added(
        from_render.iter().copied(),
        &first.from.revision,
        default_tag_declared,
    ));
    Ok(Start {
        state,
        namespaces: named,
        expected,
        known,
        assumptions,
        fixed,
        workloads,
        followers,
        tag_followers,
        ambient,
    })
}
