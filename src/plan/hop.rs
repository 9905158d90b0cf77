//! One hop: a full canary cycle from one revision to the next (crds, install, the waves,
//! gateways, the default tag, uninstall). `drafts` sorts the hop's new render into phases;
//! `run` simulates them from the hop's start state and returns the phases, every state after
//! them and what was expected of each.
//!
//! Owns: which object of a render goes in which phase, the relabels of a wave, the expectations
//! of a hop's states, switching off legacy injectors when the default tag moves, and the
//! uninstall set (derived from the simulated state). Must not: word anything or know about
//! other hops (a hop starts from whatever state it is given).

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::{namespace_id, Change, ClusterState, DeleteRef, Via};
use crate::istio::{is_tag_object, neutralize_injector, INJECTION_LABEL, REV_LABEL};
use crate::k8s::{self, Minor, NAME_LABEL};
use crate::manifest::{Object, ObjectId};
use crate::mesh::Violation;
use crate::plan::refusal::{PhaseAt, Refusal};
use crate::plan::simulate::{self, Expected};
use crate::plan::start::canonical_label;
use crate::plan::{applies, checks, ids, sort_changes, Hop, HopInput, Phase, PhaseKind, Result};

/// A phase before it is simulated (the uninstall's changes are derived during the simulation).
pub struct Draft {
    kind: PhaseKind,
    name: String,
    namespaces: Vec<String>,
    changes: Vec<Change>,
}

impl Draft {
    fn new(kind: PhaseKind, name: String, changes: Vec<Change>) -> Draft {
        Draft {
            kind,
            name,
            namespaces: Vec::new(),
            changes,
        }
    }
}

/// Where a hop sits in the plan.
pub struct At {
    /// 0-based index of the hop.
    pub hop: usize,
    /// The 1-based index its first phase gets.
    pub first_index: usize,
    /// Digits of a phase directory's number.
    pub width: usize,
}

/// What one hop produced: its phases, the state after each and what was expected of it.
pub struct HopOut {
    pub hop: Hop,
    pub phases: Vec<Phase>,
    pub states: Vec<ClusterState>,
    pub expected: Vec<Expected>,
}

/// The hop's phases before the uninstall, after every check its renders must pass.
pub fn drafts(hop: &HopInput<'_>) -> Result<Vec<Draft>> {
    checks::render(hop)?;
    if let Some(k) = hop.kubernetes {
        checks::kubernetes(hop, k)?;
    }
    let (mut crds, mut install, mut gateways, mut tags) = (vec![], vec![], vec![], vec![]);
    for (o, kind) in hop.new.iter().zip(placement(&hop.new)) {
        match kind {
            PhaseKind::Crds => crds.push(o.clone()),
            PhaseKind::DefaultTag => tags.push(o.clone()),
            PhaseKind::Gateways => gateways.push(o.clone()),
            _ => install.push(o.clone()),
        }
    }
    checks::install_disjoint(&install, hop)?;
    checks::gateways_kept(hop)?;

    let new = &hop.to.revision;
    let mut drafts = vec![
        Draft::new(PhaseKind::Crds, "crds".into(), applies(crds)),
        Draft::new(
            PhaseKind::Install,
            format!("install-{new}"),
            applies(install),
        ),
    ];
    let (old_key, _) = canonical_label(&hop.from.revision);
    for wave in hop.waves {
        drafts.push(migrate(
            &wave.name,
            &wave.namespaces,
            new.label(),
            old_key == INJECTION_LABEL,
        ));
    }
    if !gateways.is_empty() {
        drafts.push(Draft::new(
            PhaseKind::Gateways,
            format!("gateways-{new}"),
            applies(gateways),
        ));
    }
    if hop.default_tag {
        drafts.push(Draft::new(
            PhaseKind::DefaultTag,
            format!("default-tag-{new}"),
            applies(tags),
        ));
    }
    Ok(drafts)
}

/// The phase each object of a new render goes to, in render order: CRDs first, revision-tag
/// objects with the default tag, the objects of each gateway workload (found by what they select
/// and reference, `checks::gateway_objects`) with the gateways, everything else with the install.
/// (Tag objects land in no phase when the policy leaves the default tag alone.)
pub fn placement(new: &[Object]) -> Vec<PhaseKind> {
    let gateway_ids = checks::gateway_objects(new);
    new.iter()
        .map(|o| {
            if o.id.kind == "CustomResourceDefinition" {
                PhaseKind::Crds
            } else if is_tag_object(o) {
                PhaseKind::DefaultTag
            } else if gateway_ids.contains(&o.id) {
                PhaseKind::Gateways
            } else {
                PhaseKind::Install
            }
        })
        .collect()
}

/// A wave: every namespace labelled `istio.io/rev=<new>` by a file (a label merge), then, when
/// the old install is selected by `istio-injection` (which wins over `istio.io/rev`), that label
/// removed by a command after the new one is set, so the namespace stays on the old revision
/// until the moment it moves.
fn migrate(wave: &str, namespaces: &[String], new_rev: &str, remove_legacy: bool) -> Draft {
    let mut changes = Vec::new();
    for ns in namespaces {
        changes.push(Change::Labels {
            id: namespace_id(ns),
            api_version: "v1".into(),
            set: BTreeMap::from([(REV_LABEL.to_string(), new_rev.to_string())]),
            remove: BTreeSet::new(),
            via: Via::File,
        });
    }
    if remove_legacy {
        for ns in namespaces {
            changes.push(Change::Labels {
                id: namespace_id(ns),
                api_version: "v1".into(),
                set: BTreeMap::new(),
                remove: BTreeSet::from([INJECTION_LABEL.to_string()]),
                via: Via::Command(format!("kubectl label namespace {ns} {INJECTION_LABEL}-")),
            });
        }
    }
    let mut d = Draft::new(PhaseKind::Migrate, format!("migrate-{wave}"), changes);
    d.namespaces = namespaces.to_vec();
    d
}

/// What the hop expects of its namespaces once `waves_done` waves have moved: the new revision
/// for those waves, the old one for the rest.
pub fn expected(hop: &HopInput<'_>, waves_done: usize) -> Expected {
    let (old, new) = (hop.from.revision.label(), hop.to.revision.label());
    let mut m = Expected::new();
    for (wi, wave) in hop.waves.iter().enumerate() {
        let rev = if wi < waves_done { new } else { old };
        for ns in &wave.namespaces {
            m.insert(ns.clone(), Some(rev.to_string()));
        }
    }
    m
}

/// Simulates the hop's phases (and its uninstall, when the policy asks for it) from `start`:
/// after every step the invariants hold, at the end of every phase with the hop's expectations.
pub fn run(
    start: &ClusterState,
    hop: &HopInput<'_>,
    drafts: Vec<Draft>,
    at: At,
    known: &BTreeSet<Violation>,
) -> Result<HopOut> {
    let any_single: Expected = hop
        .waves
        .iter()
        .flat_map(|w| &w.namespaces)
        .map(|n| (n.clone(), None))
        .collect();
    let needed: BTreeSet<ObjectId> = ids(&hop.new)
        .into_iter()
        .chain(any_single.keys().map(|n| namespace_id(n)))
        .collect();
    let mut all = drafts;
    if hop.uninstall_old {
        all.push(Draft::new(
            PhaseKind::Uninstall,
            format!("uninstall-{}", hop.from.revision),
            Vec::new(),
        ));
    }
    let width = at.width;
    let mut state = start.clone();
    let mut out = HopOut {
        hop: Hop {
            from: hop.from.clone(),
            to: hop.to.clone(),
            diff: crate::diff::control_plane_diff(
                &hop.from.revision,
                &hop.old,
                &hop.to.revision,
                &hop.new,
            ),
        },
        phases: Vec::new(),
        states: Vec::new(),
        expected: Vec::new(),
    };
    let mut waves_done = 0;
    for (i, mut draft) in all.into_iter().enumerate() {
        match draft.kind {
            PhaseKind::Uninstall => {
                draft.changes = uninstall_changes(&state, &needed, hop.kubernetes);
            }
            PhaseKind::DefaultTag => {
                let off = switch_off_legacy_injectors(&state, &draft.changes);
                draft.changes.extend(off);
            }
            PhaseKind::Migrate => waves_done += 1,
            _ => {}
        }
        sort_changes(&mut draft.changes);
        let index = at.first_index + i;
        let dir = format!("{index:0width$}-{}", draft.name);
        let end = expected(hop, waves_done);
        state = simulate::run(&state, &draft.changes, &any_single, &end, known).map_err(
            |violation| Refusal::UnsafePhase {
                at: PhaseAt {
                    index,
                    kind: draft.kind,
                    dir: dir.clone(),
                    from: hop.from.revision.clone(),
                    to: hop.to.revision.clone(),
                },
                violation,
            },
        )?;
        out.phases.push(Phase {
            index,
            hop: at.hop,
            kind: draft.kind,
            name: draft.name,
            dir,
            namespaces: draft.namespaces,
            changes: draft.changes,
        });
        out.states.push(state.clone());
        out.expected.push(end);
    }
    Ok(out)
}

/// The uninstall: every object of the state the end state does not need (not rendered by the
/// new revision, not a namespace the policy names), never CRDs or Namespaces.
fn uninstall_changes(
    state: &ClusterState,
    needed: &BTreeSet<ObjectId>,
    kubernetes: Option<Minor>,
) -> Vec<Change> {
    state
        .objects
        .values()
        .filter(|o| !needed.contains(&o.id))
        .filter(|o| o.id.kind != "CustomResourceDefinition" && o.id.kind != "Namespace")
        .map(|o| {
            Change::Delete(DeleteRef {
                api_version: k8s::delete_api_version(
                    &o.id.group,
                    &o.id.kind,
                    &o.api_version,
                    kubernetes,
                ),
                id: o.id.clone(),
            })
        })
        .collect()
}

/// After the default tag is applied, every other injector that still matches a namespace
/// labelled `istio-injection=enabled` is switched off the way `istioctl tag set default` does
/// it, so no pod is matched by two injectors.
fn switch_off_legacy_injectors(state: &ClusterState, tag_changes: &[Change]) -> Vec<Change> {
    let mut after = state.clone();
    for c in tag_changes {
        after.apply(c);
    }
    let tag_configs: BTreeSet<&str> = tag_changes.iter().map(|c| c.id().name.as_str()).collect();
    let labels = BTreeMap::from([
        (INJECTION_LABEL.to_string(), "enabled".to_string()),
        (NAME_LABEL.to_string(), "istio-canary-probe".to_string()),
    ]);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for inj in after.injectors(&labels, &BTreeMap::new()) {
        if tag_configs.contains(inj.config.as_str()) || !seen.insert(inj.config.clone()) {
            continue;
        }
        if let Some(o) = after
            .objects
            .values()
            .find(|o| o.id.kind == "MutatingWebhookConfiguration" && o.id.name == inj.config)
        {
            out.push(Change::Apply(neutralize_injector(o)));
        }
    }
    out
}
