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

use crate::cluster::{namespace_id, template_patch_command, Change, ClusterState, DeleteRef, Via};
use crate::istio::{
    is_tag_object, neutralize_injector, tag_of, NodeAgent, INJECTION_LABEL, REV_LABEL,
};
use crate::k8s::{self, Minor, NAME_LABEL};
use crate::manifest::{Object, ObjectId};
use crate::mesh::{dangling_references, violations, Evaluated, Expectations, Violation};
use crate::plan::refusal::{PhaseAt, Refusal};
use crate::plan::simulate::{self, Expected};
use crate::plan::start::{revision_of, workload_injectors};
use crate::plan::{
    agents, applies, checks, ids, sort_changes, Hop, HopInput, Phase, PhaseKind, Result,
    RESTART_ANNOTATION,
};

/// A phase before it is simulated (the uninstall's changes are derived during the simulation).
pub struct Draft {
    kind: PhaseKind,
    name: String,
    namespaces: Vec<String>,
    /// For a migrate phase: the workloads the wave moves one by one.
    workloads: Vec<ObjectId>,
    /// For a migrate phase: the Gateway API Gateways the wave relabels.
    gateways: Vec<ObjectId>,
    /// For a migrate phase: the index of its wave in the policy.
    wave: usize,
    /// For a tag phase: the tag it moves.
    tag: Option<String>,
    changes: Vec<Change>,
}

impl Draft {
    fn new(kind: PhaseKind, name: String, changes: Vec<Change>) -> Draft {
        Draft {
            kind,
            name,
            namespaces: Vec::new(),
            workloads: Vec::new(),
            gateways: Vec::new(),
            wave: 0,
            tag: None,
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

/// What state 0 says about the namespaces around the waves, for every hop.
#[derive(Clone, Copy)]
pub struct Around<'a> {
    /// Violations state 0 already has (never blamed on a phase).
    pub known: &'a BTreeSet<Violation>,
    /// Namespaces no wave names, each with the revision it must keep.
    pub fixed: &'a Expected,
    /// Namespaces no wave names that follow the default tag.
    pub followers: &'a [String],
    /// For each tag the plan moves, the namespaces no wave names that select it.
    pub tag_followers: &'a BTreeMap<String, Vec<String>>,
    /// Namespaces in ambient mode, served by ztunnel: they follow ztunnel's revision, which
    /// moves in the hop's ztunnel phase.
    pub ambient: &'a [String],
}

/// What one hop produced: its phases, the state after each, what was expected of it and what
/// the simulation knew of it (to resume from).
pub struct HopOut {
    pub hop: Hop,
    pub phases: Vec<Phase>,
    pub states: Vec<ClusterState>,
    pub expected: Vec<Expected>,
    pub evaluated: Vec<Evaluated>,
}

/// Where a hop starts: the state, what was expected of it and what the simulation knew of it.
pub struct Start<'a> {
    pub state: &'a ClusterState,
    pub expected: &'a Expected,
    pub evaluated: &'a Evaluated,
}

/// The hop's phases before the uninstall, after every check its renders must pass.
pub fn drafts(hop: &HopInput<'_>) -> Result<Vec<Draft>> {
    checks::render(hop)?;
    agents::check(hop)?;
    if let Some(k) = hop.kubernetes {
        checks::kubernetes(hop, k)?;
    }
    let (mut crds, mut install, mut gateways, mut tags) = (vec![], vec![], vec![], vec![]);
    let (mut cni, mut ztunnel) = (vec![], vec![]);
    let mut moved_tags: BTreeMap<String, Vec<Object>> = BTreeMap::new();
    for (o, kind) in hop.new.iter().zip(placement(&hop.new)) {
        match kind {
            PhaseKind::Crds => crds.push(o.clone()),
            PhaseKind::DefaultTag => match tag_of(o) {
                Some(t) if hop.tags.iter().any(|m| m.name == t) => {
                    moved_tags.entry(t).or_default().push(o.clone())
                }
                _ => tags.push(o.clone()),
            },
            PhaseKind::Gateways => gateways.push(o.clone()),
            PhaseKind::Cni => cni.push(o.clone()),
            PhaseKind::Ztunnel => ztunnel.push(o.clone()),
            _ => install.push(o.clone()),
        }
    }
    checks::install_disjoint(&install, hop)?;
    checks::gateways_kept(hop)?;
    let has_webhook = |objects: &[Object]| {
        objects
            .iter()
            .any(|o| o.id.kind == "MutatingWebhookConfiguration")
    };
    if let Some(t) = hop
        .tags
        .iter()
        .find(|t| !moved_tags.get(&t.name).is_some_and(|o| has_webhook(o)))
    {
        return Err(Refusal::NoRevisionTag {
            tag: t.name.clone(),
            version: hop.to.version.clone(),
        });
    }

    let new = &hop.to.revision;
    // In a plan of several hops, every phase name carries its hop's new revision, so two hops'
    // waves never share a name and `ls` shows which hop a directory belongs to.
    let of_hop = |name: String| {
        if hop.several {
            format!("{name}-{new}")
        } else {
            name
        }
    };
    let mut drafts = vec![
        Draft::new(PhaseKind::Crds, of_hop("crds".into()), applies(crds)),
        Draft::new(
            PhaseKind::Install,
            format!("install-{new}"),
            applies(install),
        ),
    ];
    // The node agents, in place, right after the new control plane and in the order Istio
    // documents: istio-cni (never ahead of the control plane), then ztunnel, re-pointed at the
    // new istiod.
    for (kind, objects) in [(PhaseKind::Cni, cni), (PhaseKind::Ztunnel, ztunnel)] {
        if !objects.is_empty() {
            drafts.push(Draft::new(
                kind,
                format!("{}-{new}", kind.as_str()),
                applies(objects),
            ));
        }
    }
    // Each tag of the policy moves in its own phase, right after what it names.
    let mut tag_drafts = |after: Option<&str>, drafts: &mut Vec<Draft>| {
        for t in hop.tags.iter().filter(|t| t.after.as_deref() == after) {
            let objects = moved_tags.remove(&t.name).unwrap_or_default();
            let mut d = Draft::new(
                PhaseKind::Tag,
                of_hop(format!("tag-{}", t.name)),
                applies(objects),
            );
            d.tag = Some(t.name.clone());
            drafts.push(d);
        }
    };
    // The rendered gateways move in place after the waves, or right after what the policy
    // names (`spec.gateways.moveAfter`); the simulation decides whether that is safe. Canary
    // gateways move in two phases there: the new Deployments behind Services that select both
    // revisions, then the cutover of the Services to the new revision's pods.
    let mut gateway_drafts: Vec<Draft> = Vec::new();
    if !gateways.is_empty() {
        if hop.canary_gateways {
            let (services, rest): (Vec<Object>, Vec<Object>) =
                gateways.into_iter().partition(|o| o.id.kind == "Service");
            let mut canary: Vec<Object> = rest;
            canary.extend(services.iter().map(super::canary::shared_service));
            gateway_drafts.push(Draft::new(
                PhaseKind::Gateways,
                format!("gateways-canary-{new}"),
                applies(canary),
            ));
            gateway_drafts.push(Draft::new(
                PhaseKind::GatewayCutover,
                format!("gateways-cutover-{new}"),
                applies(services),
            ));
        } else {
            gateway_drafts.push(Draft::new(
                PhaseKind::Gateways,
                format!("gateways-{new}"),
                applies(gateways),
            ));
        }
    }
    let mut gateway_drafts = Some(gateway_drafts);
    let mut gateways_after = |after: Option<&str>, drafts: &mut Vec<Draft>| {
        if hop.gateways_after == after {
            drafts.extend(gateway_drafts.take().into_iter().flatten());
        }
    };
    tag_drafts(Some("install"), &mut drafts);
    gateways_after(Some("install"), &mut drafts);
    for (wi, wave) in hop.waves.iter().enumerate() {
        // A wave that only lists tags has no migrate phase: its tags' phases are its moves.
        if !(wave.namespaces.is_empty() && wave.workloads.is_empty() && wave.gateways.is_empty()) {
            let mut d = migrate(&wave.name, &wave.namespaces, new.label());
            d.name = of_hop(d.name);
            d.workloads = wave.workloads.clone();
            d.gateways = wave.gateways.clone();
            d.wave = wi;
            drafts.push(d);
        }
        tag_drafts(Some(&wave.name), &mut drafts);
        gateways_after(Some(&wave.name), &mut drafts);
    }
    tag_drafts(None, &mut drafts);
    gateways_after(None, &mut drafts);
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
/// and reference, `checks::gateway_objects`) with the gateways, the objects of each node agent
/// (`agents::objects`) with its phase, everything else with the install.
/// (Tag objects land in no phase when the policy leaves the default tag alone.)
pub fn placement(new: &[Object]) -> Vec<PhaseKind> {
    let gateway_ids = checks::gateway_objects(new);
    let agent_ids = agents::objects(new);
    new.iter()
        .map(|o| {
            if o.id.kind == "CustomResourceDefinition" {
                PhaseKind::Crds
            } else if let Some(agent) = agent_ids.get(&o.id) {
                match agent {
                    NodeAgent::Cni => PhaseKind::Cni,
                    NodeAgent::Ztunnel => PhaseKind::Ztunnel,
                }
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

/// A wave's relabels: every namespace labelled `istio.io/rev=<new>` by a file (a label merge).
/// What depends on the state the wave starts from (removing `istio-injection`, the restarts) is
/// added by `wave_changes`.
fn migrate(wave: &str, namespaces: &[String], new_rev: &str) -> Draft {
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
    let mut d = Draft::new(PhaseKind::Migrate, format!("migrate-{wave}"), changes);
    d.namespaces = namespaces.to_vec();
    d
}

/// What a wave (or the default tag's move, for the namespaces that follow it) adds to its
/// changes, from the state it starts in: a command removing
/// `istio-injection` from each namespace that carries it (it wins over `istio.io/rev`; removed
/// after the new label is set, so the namespace stays on the old revision until the moment it
/// moves); a pod-template patch moving each workload the wave names (`istio.io/rev=<new>` on
/// its pods); and a restart, a patch of the restart annotation, for every other known workload
/// of its namespaces whose new pods would meet another injector than its running pods did.
fn wave_changes(
    state: &ClusterState,
    draft: &Draft,
    new_rev: &str,
    running: &BTreeMap<ObjectId, Option<String>>,
) -> Vec<Change> {
    let mut out = Vec::new();
    // A wave relabels; the default tag's followers keep `istio-injection` and move with the tag.
    let relabels = if draft.kind == PhaseKind::Migrate {
        draft.namespaces.as_slice()
    } else {
        &[]
    };
    for ns in relabels {
        let carries = state
            .labels(&namespace_id(ns))
            .is_some_and(|l| l.contains_key(INJECTION_LABEL));
        if carries {
            out.push(Change::Labels {
                id: namespace_id(ns),
                api_version: "v1".into(),
                set: BTreeMap::new(),
                remove: BTreeSet::from([INJECTION_LABEL.to_string()]),
                via: Via::Command(format!("kubectl label namespace {ns} {INJECTION_LABEL}-")),
            });
        }
    }
    // The wave's Gateway API Gateways: their own `istio.io/rev` label, merged like a
    // namespace's (istiod of the new revision then takes them and rolls their Deployments).
    if draft.kind == PhaseKind::Migrate {
        for id in &draft.gateways {
            let Some(o) = state.objects.get(id) else {
                continue;
            };
            out.push(Change::Labels {
                id: id.clone(),
                api_version: o.api_version.clone(),
                set: BTreeMap::from([(REV_LABEL.to_string(), new_rev.to_string())]),
                remove: BTreeSet::new(),
                via: Via::File,
            });
        }
    }
    let restart = BTreeMap::from([(RESTART_ANNOTATION.to_string(), Some(new_rev.to_string()))]);
    for id in &draft.workloads {
        let Some(o) = state.objects.get(id) else {
            continue;
        };
        let labels = BTreeMap::from([(REV_LABEL.to_string(), Some(new_rev.to_string()))]);
        out.push(Change::Template {
            id: id.clone(),
            api_version: o.api_version.clone(),
            command: template_patch_command(id, &labels, &restart),
            labels,
            annotations: restart.clone(),
        });
    }
    let mut after = state.clone();
    for c in draft.changes.iter().chain(&out) {
        after.apply(c);
    }
    let webhooks = after.injector_webhooks();
    let moved: BTreeSet<&str> = draft.namespaces.iter().map(String::as_str).collect();
    let named: BTreeSet<&ObjectId> = draft.workloads.iter().collect();
    for (id, was) in running {
        let in_wave = id.namespace.as_deref().is_some_and(|ns| moved.contains(ns));
        if !in_wave || named.contains(id) {
            continue;
        }
        let Some(o) = after.objects.get(id) else {
            continue;
        };
        let will = revision_of(&workload_injectors(&after, &webhooks, o)).map(str::to_string);
        if will != *was {
            out.push(Change::Template {
                id: id.clone(),
                api_version: o.api_version.clone(),
                labels: BTreeMap::new(),
                annotations: restart.clone(),
                command: template_patch_command(id, &BTreeMap::new(), &restart),
            });
        }
    }
    out
}

/// What the plan expects of each wave's namespaces after `waves_done` waves of `hop`: the new
/// revision for the waves done, the old one for the rest, borrowed from the hop (a phase's
/// expectations are built as such a map, then `rebase`d on the previous phase's).
pub fn expected<'h>(hop: &'h HopInput<'_>, waves_done: usize) -> Fresh<'h> {
    let (old, new) = (hop.from.revision.label(), hop.to.revision.label());
    let mut m = Fresh::new();
    for (wi, wave) in hop.waves.iter().enumerate() {
        let rev = if wi < waves_done { new } else { old };
        for ns in &wave.namespaces {
            m.insert(ns, Some(rev));
        }
    }
    m
}

/// A phase's expectations as built, borrowing names and revisions (see `rebase`).
pub type Fresh<'a> = BTreeMap<&'a str, Option<&'a str>>;

/// `fresh` as an `Expected` that shares with `previous` every entry the two agree on: only what
/// changed (a wave's namespaces) is allocated, so a plan of thousands of namespaces keeps one
/// copy of their expectations, and diffs with `previous` skip the rest. One walk of both maps
/// in key order.
pub(super) fn rebase(fresh: &Fresh<'_>, previous: &Expected) -> Expected {
    let mut out = previous.clone();
    let mut before = previous.iter().peekable();
    for (name, rev) in fresh {
        // Keys of `previous` sorting before `name` are not in `fresh`.
        while let Some((gone, _)) = before.next_if(|(k, _)| k.as_str() < *name) {
            out.remove(gone);
        }
        match before.next_if(|(k, _)| k.as_str() == *name) {
            Some((_, had)) if had.as_deref() == *rev => {}
            _ => {
                out.insert(name.to_string(), rev.map(str::to_string));
            }
        }
    }
    for (gone, _) in before {
        out.remove(gone);
    }
    out
}

/// Simulates the hop's phases (and its uninstall, when the policy asks for it) from `start`:
/// after every step the invariants hold, at the end of every phase with the hop's expectations.
/// `fixed` holds the namespaces no wave moves, each with the revision it must keep; `running`
/// the revision each known workload's pods run, updated by every restart.
pub fn run(
    start: Start<'_>,
    hop: &HopInput<'_>,
    drafts: Vec<Draft>,
    at: At,
    cluster: &Around<'_>,
    running: &mut BTreeMap<ObjectId, Option<String>>,
) -> Result<HopOut> {
    let Around {
        known,
        fixed,
        followers,
        tag_followers,
        ambient,
    } = *cluster;
    let mut any_single: Expected = hop
        .waves
        .iter()
        .flat_map(|w| &w.namespaces)
        .chain(followers)
        .chain(tag_followers.values().flatten())
        .chain(ambient)
        .map(|n| (n.clone(), None))
        .collect();
    any_single.extend(fixed.clone());
    let removable = ids(&hop.old);
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
    // Canary gateways: the Services the cutover applies select the gateway pods of the old
    // revision before the canary phase, of both after it, of the new one only from the cutover.
    let cutover_services: Vec<ObjectId> = all
        .iter()
        .filter(|d| d.kind == PhaseKind::GatewayCutover)
        .flat_map(|d| d.changes.iter().map(|c| c.id().clone()))
        .collect();
    let width = at.width;
    let mut state = start.state.clone();
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
        evaluated: Vec::new(),
    };
    let mut waves_done = 0;
    let mut tag_moved = false;
    let mut tags_moved: BTreeSet<String> = BTreeSet::new();
    let mut ztunnel_moved = false;
    for (i, mut draft) in all.into_iter().enumerate() {
        let index = at.first_index + i;
        let dir = format!("{index:0width$}-{}", draft.name);
        let phase_at = PhaseAt {
            index,
            kind: draft.kind,
            dir: dir.clone(),
            from: hop.from.revision.clone(),
            to: hop.to.revision.clone(),
        };
        match draft.kind {
            PhaseKind::Uninstall => {
                draft.changes = uninstall_changes(&state, &needed, &removable, hop.kubernetes);
                still_used(&state, &draft.changes, hop, running, known, &phase_at)?;
            }
            PhaseKind::DefaultTag => {
                let off = switch_off_legacy_injectors(&state, &draft.changes);
                draft.changes.extend(off);
                tag_moved = true;
                draft.namespaces = followers.to_vec();
                let more = wave_changes(&state, &draft, hop.to.revision.label(), running);
                draft.changes.extend(more);
            }
            PhaseKind::Tag => {
                let t = draft.tag.clone().unwrap_or_default();
                draft.namespaces = tag_followers.get(&t).cloned().unwrap_or_default();
                tags_moved.insert(t);
                let more = wave_changes(&state, &draft, hop.to.revision.label(), running);
                draft.changes.extend(more);
            }
            PhaseKind::Ztunnel => ztunnel_moved = true,
            PhaseKind::Migrate => {
                waves_done = draft.wave + 1;
                let more = wave_changes(&state, &draft, hop.to.revision.label(), running);
                draft.changes.extend(more);
            }
            _ => {}
        }
        sort_changes(&mut draft.changes);
        let before = state.clone();
        let mut end = expected(hop, waves_done);
        end.extend(fixed.iter().map(|(n, r)| (n.as_str(), r.as_deref())));
        let follows = if tag_moved { &hop.to } else { &hop.from };
        end.extend(
            followers
                .iter()
                .map(|n| (n.as_str(), Some(follows.revision.label()))),
        );
        let serves = if ztunnel_moved { &hop.to } else { &hop.from };
        end.extend(
            ambient
                .iter()
                .map(|n| (n.as_str(), Some(serves.revision.label()))),
        );
        for (t, namespaces) in tag_followers {
            let side = if tags_moved.contains(t) {
                &hop.to
            } else {
                &hop.from
            };
            end.extend(
                namespaces
                    .iter()
                    .map(|n| (n.as_str(), Some(side.revision.label()))),
            );
        }
        let seen = (
            out.evaluated.last().unwrap_or(start.evaluated),
            out.expected.last().unwrap_or(start.expected),
        );
        let end = rebase(&end, seen.1);
        let (next, evaluated) =
            simulate::run_from(&state, Some(seen), &draft.changes, &any_single, &end, known)
                .map_err(|violation| Refusal::UnsafePhase {
                    at: phase_at.clone(),
                    violation,
                })?;
        state = next;
        restarted(&state, &draft, hop, running, &phase_at)?;
        if matches!(draft.kind, PhaseKind::Gateways | PhaseKind::GatewayCutover) {
            let (old, new) = (hop.from.revision.label(), hop.to.revision.label());
            let expected: BTreeSet<String> = if draft.kind == PhaseKind::Gateways {
                [old, new].into_iter().map(str::to_string).collect()
            } else {
                BTreeSet::from([new.to_string()])
            };
            for service in &cutover_services {
                let found = state.gateway_revisions(service);
                if found != expected {
                    return Err(Refusal::GatewayServiceRevisions {
                        at: phase_at,
                        service: service.clone(),
                        expected: expected.into_iter().collect(),
                        found: found.into_iter().collect(),
                    });
                }
            }
        }
        let manual = match draft.kind {
            PhaseKind::Migrate | PhaseKind::DefaultTag | PhaseKind::Tag => {
                not_restartable(&before, &state, &draft.namespaces)
            }
            _ => Vec::new(),
        };
        out.phases.push(Phase {
            index,
            hop: at.hop,
            kind: draft.kind,
            name: draft.name,
            dir,
            namespaces: draft.namespaces,
            manual,
            changes: draft.changes,
        });
        out.states.push(state.clone());
        out.expected.push(end);
        out.evaluated.push(evaluated);
    }
    Ok(out)
}

/// The uninstall: every object of the old install (its render, with what the install added)
/// still in the state that the end state does not need (not rendered by the new revision, not
/// a namespace the policy names), never CRDs or Namespaces. Nothing the old install did not make
/// is deleted, whatever the inventory holds.
fn uninstall_changes(
    state: &ClusterState,
    needed: &BTreeSet<ObjectId>,
    removable: &BTreeSet<ObjectId>,
    kubernetes: Option<Minor>,
) -> Vec<Change> {
    state
        .objects
        .values()
        .filter(|o| removable.contains(&o.id) && !needed.contains(&o.id))
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

/// After a phase: each workload it restarted runs pods of the revision its template now meets.
/// A wave refuses every workload of its namespaces, and every workload it moves, whose new pods
/// would still get the old revision (its template pins it), restarted or not.
fn restarted(
    state: &ClusterState,
    draft: &Draft,
    hop: &HopInput<'_>,
    running: &mut BTreeMap<ObjectId, Option<String>>,
    at: &PhaseAt,
) -> Result<()> {
    let webhooks = state.injector_webhooks();
    let old = hop.from.revision.label();
    for c in &draft.changes {
        let Change::Template { id, .. } = c else {
            continue;
        };
        if let Some(o) = state.objects.get(id) {
            let now = revision_of(&workload_injectors(state, &webhooks, o)).map(str::to_string);
            running.insert(id.clone(), now);
        }
    }
    if !matches!(
        draft.kind,
        PhaseKind::Migrate | PhaseKind::DefaultTag | PhaseKind::Tag
    ) {
        return Ok(());
    }
    let moved: BTreeSet<&str> = draft.namespaces.iter().map(String::as_str).collect();
    let named: BTreeSet<&ObjectId> = draft.workloads.iter().collect();
    let mut pinned = Vec::new();
    for id in running.keys() {
        let in_wave = id.namespace.as_deref().is_some_and(|ns| moved.contains(ns));
        if !in_wave && !named.contains(id) {
            continue;
        }
        let Some(o) = state.objects.get(id) else {
            continue;
        };
        let found = workload_injectors(state, &webhooks, o);
        if revision_of(&found) == Some(old) {
            pinned.push((id.clone(), found));
        }
    }
    if !pinned.is_empty() {
        return Err(Refusal::Pinned {
            at: at.clone(),
            workloads: pinned,
        });
    }
    Ok(())
}

/// What a wave cannot restart by patching a template: bare Pods, Jobs and ReplicaSets no
/// Deployment owns, in its namespaces, whose new pods would meet another injector after the
/// wave than before it (only an inventory that captured them shows them).
fn not_restartable(
    before: &ClusterState,
    after: &ClusterState,
    namespaces: &[String],
) -> Vec<ObjectId> {
    let (was, now) = (before.injector_webhooks(), after.injector_webhooks());
    let moved: BTreeSet<&str> = namespaces.iter().map(String::as_str).collect();
    // Only these kinds can be what no template patch restarts (the match below says which).
    before
        .of_kind("", "Pod")
        .chain(before.of_kind("apps", "ReplicaSet"))
        .chain(before.of_kind("batch", "Job"))
        .filter(|o| {
            o.id.namespace
                .as_deref()
                .is_some_and(|ns| moved.contains(ns))
        })
        .filter(|o| {
            let owned = crate::manifest::value_at(&o.body, &["metadata", "ownerReferences"])
                .and_then(serde_yaml::Value::as_sequence)
                .is_some_and(|refs| !refs.is_empty());
            match o.id.kind.as_str() {
                "Pod" => o.id.group.is_empty() && !owned,
                "Job" => o.id.group == "batch",
                "ReplicaSet" => o.id.group == "apps" && !owned,
                _ => false,
            }
        })
        .filter(|o| {
            let pod = match o.id.kind.as_str() {
                "Pod" => o.labels(),
                _ => crate::cluster::pod_template_labels(o),
            };
            let ns = namespace_id(o.id.namespace.as_deref().unwrap_or(""));
            let injected = |s: &ClusterState, w: &crate::mesh::InjectorWebhooks| {
                revision_of(&w.matching(&s.labels(&ns).unwrap_or_default(), &pod))
                    .map(str::to_string)
            };
            injected(before, &was) != injected(after, &now)
        })
        .map(|o| o.id.clone())
        .collect()
}

/// Before the uninstall: nothing may still use the old revision. Every namespace it would still
/// inject, every workload whose pods still run its sidecars, and every object left behind that
/// references what the uninstall deletes (a revision tag's webhook, a validator, a config) is
/// listed at once.
fn still_used(
    state: &ClusterState,
    changes: &[Change],
    hop: &HopInput<'_>,
    running: &BTreeMap<ObjectId, Option<String>>,
    known: &BTreeSet<Violation>,
    at: &PhaseAt,
) -> Result<()> {
    let old = hop.from.revision.label();
    let webhooks = state.injector_webhooks();
    let namespaces: Vec<String> = state
        .of_kind("", "Namespace")
        .filter(|o| revision_of(&webhooks.matching(&o.labels(), &BTreeMap::new())) == Some(old))
        .map(|o| o.id.name.clone())
        .collect();
    let workloads: Vec<ObjectId> = running
        .iter()
        .filter(|(id, r)| r.as_deref() == Some(old) && state.objects.contains_key(*id))
        .map(|(id, _)| id.clone())
        .collect();
    let mut after = state.clone();
    for c in changes {
        after.apply(c);
    }
    let deleted: Vec<&ObjectId> = changes.iter().map(Change::id).collect();
    let mut references: BTreeSet<Violation> = dangling_references(&after, &deleted);
    references.extend(
        violations(
            &after,
            &Expectations {
                namespaces: &Expected::new(),
            },
        )
        .into_iter()
        .filter(|v| matches!(v, Violation::DanglingWebhook { .. })),
    );
    // What the new render itself still references is a render defect the simulation reports
    // with its own advice; here only what the plan leaves behind of the old revision's users.
    let rendered = ids(&hop.new);
    references.retain(|v| {
        let by = match v {
            Violation::DeletedButReferenced { by, .. } => Some(by),
            Violation::DanglingWebhook { webhook, .. } => Some(webhook),
            _ => None,
        };
        !known.contains(v) && by.is_none_or(|b| !rendered.contains(b))
    });
    if namespaces.is_empty() && workloads.is_empty() && references.is_empty() {
        return Ok(());
    }
    Err(Refusal::StillUsed {
        at: at.clone(),
        namespaces,
        workloads,
        references: references.into_iter().collect(),
    })
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
