//! The planner: from the policy and the renders to hops and phases, each phase an ordered list of
//! changes over a simulated cluster, with every state kept. Pure: no files, no processes, no
//! clock; the same inputs give the same plan.
//!
//! A plan is a fold over hops: `start` makes state 0 (the one place it is made), `hop::plan_hop`
//! takes a start state and one hop and returns the hop's phases and end state, every step of
//! every phase checked by the one simulation function (`simulate::run_from`), which also checks every
//! rollback (`rollback`). What the renders must hold before any phase is built is in `checks`;
//! why a plan is refused is a typed `Refusal`.
//!
//! Owns: which object goes in which phase, the apply order inside a phase, the namespace
//! relabels, the default-tag move (and switching off a legacy injector), the deletion set
//! (derived from the simulated end state), API versions for delete stubs, the expectations of
//! every state, the rollback of every phase before the uninstall, and the live desired state at
//! the promote point. Must not: read files, run istioctl, or produce any text for users (phase
//! text is `describe`, file layout is `layout`, bytes are `emit`).

// A refusal ends the compile and is made once; keeping it unboxed lets tests and callers match
// on it directly. The Ok path of these few calls is not hot.
#![allow(clippy::result_large_err)]

mod agents;
mod canary;
mod checks;
mod hop;
pub mod refusal;
mod rollback;
mod simulate;
mod start;

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;

use semver::Version;
use serde::Serialize;

use crate::cluster::{Change, ClusterState, DeleteRef, Via};
use crate::istio::{is_istio_group, normalize, Revision};
use crate::k8s::Minor;
use crate::manifest::{Object, ObjectId};
use crate::mesh::Violation;
use crate::policy::{Policy, Wave};
use crate::render::Rendered;

pub use hop::placement;
pub use refusal::Refusal;
pub use rollback::{live_changes, managed_labels, rollback_changes, simulate_rollback};
pub use simulate::{steps, Expected};
pub use start::{Assumption, InventoryInput};

pub type Result<T, E = Refusal> = std::result::Result<T, E>;

/// The pod-template annotation a restart sets, to the revision the restart moves the pods to:
/// deterministic (running the patch again changes nothing and rolls nothing out), and a rollback
/// that sets it back (or removes it) restarts the pods again.
pub const RESTART_ANNOTATION: &str = "istio-canary.dev/restarted-for";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseKind {
    Crds,
    Install,
    /// istio-cni upgraded in place, right after the new control plane (never ahead of it).
    Cni,
    /// ztunnel upgraded in place and re-pointed at the new istiod, after istio-cni, node by node.
    Ztunnel,
    Migrate,
    Gateways,
    /// Canary gateways: the gateway Services' selectors switched to the new revision's pods.
    GatewayCutover,
    DefaultTag,
    /// A revision tag of `spec.tags` moved to the hop's new revision.
    Tag,
    Uninstall,
}

impl PhaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Crds => "crds",
            PhaseKind::Install => "install",
            PhaseKind::Cni => "cni",
            PhaseKind::Ztunnel => "ztunnel",
            PhaseKind::Migrate => "migrate",
            PhaseKind::Gateways => "gateways",
            PhaseKind::GatewayCutover => "gateway-cutover",
            PhaseKind::DefaultTag => "default-tag",
            PhaseKind::Tag => "tag",
            PhaseKind::Uninstall => "uninstall",
        }
    }
}

/// One step of the upgrade: what it changes, in order. Its text (summary, commands, checks) is
/// `describe`'s, read from this and the states around it.
#[derive(Debug, Clone)]
pub struct Phase {
    /// 1-based position in the whole plan.
    pub index: usize,
    /// 0-based index into `Plan::hops`.
    pub hop: usize,
    pub kind: PhaseKind,
    /// `crds`, `install-1-14-1`, `migrate-canary`, …
    pub name: String,
    /// The directory, `03-migrate-canary` (the number is padded so `ls` order is phase order).
    pub dir: String,
    /// For `migrate` phases: the namespaces moved.
    pub namespaces: Vec<String>,
    /// For `migrate` phases with an inventory: what the wave cannot restart by a template patch
    /// (bare Pods, Jobs, ReplicaSets no Deployment owns) whose new pods would meet another
    /// injector; someone recreates them by hand.
    pub manual: Vec<ObjectId>,
    /// In the order they run: files of the directory (apply rank order), then commands, then
    /// deletes (delete rank order).
    pub changes: Vec<Change>,
}

impl Phase {
    pub fn deletes(&self) -> impl Iterator<Item = &DeleteRef> {
        deletes_of(&self.changes)
    }
}

/// The deletes among `changes`, in order.
fn deletes_of(changes: &[Change]) -> impl Iterator<Item = &DeleteRef> {
    changes.iter().filter_map(|c| match c {
        Change::Delete(d) => Some(d),
        _ => None,
    })
}

/// One control plane as the plan sees it.
#[derive(Debug, Clone)]
pub struct PlanSide {
    pub version: Version,
    pub revision: Revision,
    pub istioctl_sha256: String,
    /// Every binary the policy pins for this version (`policy::Pin::recorded`), as plan.json
    /// records them: the same whichever machine compiles.
    pub istioctl_pins: BTreeMap<String, String>,
    pub operator_path: String,
    pub operator_sha256: String,
    pub istio_namespace: String,
}

/// One canary cycle from one revision to the next, and what changes between their renders.
#[derive(Debug, Clone)]
pub struct Hop {
    pub from: PlanSide,
    pub to: PlanSide,
    /// The control plane of the hop's old render against its new one (both normalized).
    pub diff: crate::diff::ControlPlaneDiff,
}

/// For one namespace: which revision injects its pods in each state (state 0 is before the
/// upgrade, state N after phase N).
#[derive(Debug, Clone, Serialize)]
pub struct InjectionRow {
    pub namespace: String,
    /// The revision tag it selects, when it follows a tag the plan moves.
    pub tag: Option<String>,
    /// One cell per state; each distinct text is allocated once per table and shared by every
    /// cell that holds it.
    pub states: Vec<std::sync::Arc<str>>,
}

/// The whole upgrade.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub policy_path: String,
    pub policy_sha256: String,
    pub kubernetes_version: Option<Minor>,
    /// Never empty: `plan` makes at least one.
    pub hops: Vec<Hop>,
    pub phases: Vec<Phase>,
    /// `states[0]` is the cluster before the upgrade, `states[n]` after phase n (state 0 only
    /// once `release_states` has run, as in `pipeline::Compiled`).
    pub states: Vec<ClusterState>,
    /// What the plan expects of every state: `expected[n]` for `states[n]`.
    pub expected: Vec<Expected>,
    pub injection: Vec<InjectionRow>,
    /// What the plan assumed about the cluster (no inventory).
    pub assumptions: Vec<Assumption>,
    /// Problems already present before the upgrade (not caused by any phase, never blamed on
    /// one).
    pub warnings: Vec<Violation>,
    /// What each phase adds, changes and deletes: `deltas[i]` is phase `i + 1`
    /// (`states[i]` -> `states[i + 1]`).
    pub deltas: Vec<crate::diff::PhaseDelta>,
    /// One per phase but the uninstalls, in phase order: what undoes it (see `rollback`).
    pub rollbacks: Vec<Rollback>,
    /// For each namespace: which revision injects it after phase N, then rollback N, one cell per
    /// entry of `rollbacks`.
    pub rollback_injection: Vec<InjectionRow>,
    /// The 1-based index of the phase whose end state `live/` holds (`spec.promote`).
    pub promote: Option<usize>,
    /// Every object any render of the plan holds: what `live/` may own (an inventory's other
    /// objects, the users' workloads among them, are never written there).
    pub rendered: BTreeSet<ObjectId>,
    /// The inventory state 0 was made from, as the policy names it, and its sha256.
    pub inventory: Option<(String, String)>,
}

/// What undoes one phase, computed from the states before and after it (never written by hand):
/// objects the phase changed or deleted are re-applied as they were before it, objects it created
/// are deleted, labels it patched are patched back. CRDs are never rolled back.
#[derive(Debug, Clone)]
pub struct Rollback {
    /// The 1-based index of the phase it undoes.
    pub phase_index: usize,
    /// `rollback/03-migrate-canary`.
    pub dir: String,
    /// In the order they run: files of the directory (apply rank order), then commands, then
    /// deletes (delete rank order, stubs in `<dir>/delete/`).
    pub changes: Vec<Change>,
}

impl Rollback {
    pub fn deletes(&self) -> impl Iterator<Item = &DeleteRef> {
        deletes_of(&self.changes)
    }
}

impl Plan {
    /// Releases every kept state but state 0, and their expectations: once the plan is described
    /// and laid out nothing reads them (`emit` reads the bundle), and for thousands of namespaces
    /// they are most of a plan's memory. After it, `states` and `expected` hold state 0 only.
    pub fn release_states(&mut self) {
        self.states.truncate(1);
        self.expected.truncate(1);
    }

    /// Where the whole upgrade starts: the first hop's old side.
    pub fn from(&self) -> &PlanSide {
        &self.hops[0].from
    }
    /// Where the whole upgrade ends: the last hop's new side.
    pub fn to(&self) -> &PlanSide {
        &self.hops[self.hops.len() - 1].to
    }
    /// The hop a phase belongs to.
    pub fn hop_of(&self, phase: &Phase) -> &Hop {
        &self.hops[phase.hop]
    }
}

/// Order of kinds inside an apply phase: namespaces and CRDs, then RBAC, then config, then
/// workloads, then webhooks (which must not point at a Service before it exists).
pub fn apply_rank(id: &ObjectId) -> u8 {
    match id.kind.as_str() {
        "CustomResourceDefinition" => 0,
        "Namespace" => 1,
        "ServiceAccount" => 10,
        "ClusterRole" => 11,
        "ClusterRoleBinding" => 12,
        "Role" => 13,
        "RoleBinding" => 14,
        "ConfigMap" | "Secret" => 20,
        _ if is_istio_group(&id.group) => 21,
        "Service" => 30,
        "Deployment" | "DaemonSet" | "StatefulSet" => 31,
        "PodDisruptionBudget" => 32,
        "HorizontalPodAutoscaler" => 33,
        "NetworkPolicy" => 34,
        "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding" => 40,
        "MutatingWebhookConfiguration" => 41,
        "ValidatingWebhookConfiguration" => 42,
        _ => 35,
    }
}

/// Deletion runs in reverse: webhooks first, so nothing points at a Service being removed.
pub fn delete_rank(id: &ObjectId) -> u8 {
    99 - apply_rank(id)
}

/// The rollback directory of a phase: `rollback/03-migrate-canary`.
pub fn rollback_dir(phase: &Phase) -> String {
    format!("rollback/{}", phase.dir)
}

/// What one hop is planned from: its two sides, their normalized renders and what the policy
/// asks of every hop.
pub struct HopInput<'a> {
    pub from: PlanSide,
    pub to: PlanSide,
    /// The old side's render, normalized (`istio::normalize`).
    pub old: Vec<Object>,
    /// The new side's render, normalized.
    pub new: Vec<Object>,
    /// The IstioOperator spec of the new side, as the policy names it (for messages).
    pub spec: &'a str,
    pub waves: &'a [Wave],
    pub default_tag: bool,
    pub uninstall_old: bool,
    pub kubernetes: Option<Minor>,
    /// `namespace/name` of the gateways the policy removes on purpose.
    pub remove_gateways: &'a BTreeSet<String>,
    /// Whether the plan has several hops (phase names then carry the hop's new revision).
    pub several: bool,
    /// The revision tags the hop moves besides `default` (`spec.tags`).
    pub tags: &'a [crate::policy::TagMove],
    /// `install` or a wave after which the rendered gateways move (`None`: after the last
    /// wave).
    pub gateways_after: Option<&'a str>,
    /// `spec.gateways.mode: canary`: the renders are in canary form (`canary::canary_render`),
    /// and the gateways move in a canary phase and a cutover.
    pub canary_gateways: bool,
}

/// What a whole plan is made from: the policy's identity and promote point, and its hops in
/// order (each hop starts where the previous one ends).
pub struct PlanInput<'a> {
    pub name: String,
    /// The policy's file name, as plan.json records it.
    pub policy_path: String,
    pub policy_sha256: String,
    pub kubernetes_version: Option<Minor>,
    /// At least one (`plan_hops` refuses an empty path).
    pub hops: Vec<HopInput<'a>>,
    pub promote: Option<&'a crate::policy::Promote>,
    /// Whether the policy says (rather than the plan assumes) that the old revision owns the
    /// default tag and validator.
    pub default_tag_declared: bool,
    /// The cluster as it is, when the policy gives an inventory (else state 0 is assumed).
    pub inventory: Option<InventoryInput<'a>>,
    /// How many threads may simulate the rollbacks and evaluate the injection tables (each is
    /// independent of the others; the plan is the same for any number).
    pub jobs: NonZeroUsize,
}

/// Builds the plan from the policy and the render of each of its releases
/// (`Policy::releases`, in order: hop `i` goes from `renders[i]` to `renders[i + 1]`). Every hop
/// but the last deletes its old revision (three control planes side by side serve nobody); the
/// last one does when the policy says so. Pure: the same inputs give the same plan, whatever
/// `jobs` (the threads it may use).
pub fn plan(policy: &Policy, renders: &[&Rendered], jobs: NonZeroUsize) -> Result<Plan> {
    let releases = policy.releases();
    if renders.len() != releases.len() {
        return Err(Refusal::RendersMismatch {
            releases: releases.len(),
            renders: renders.len(),
        });
    }
    let canary = policy.gateway_mode == crate::policy::GatewayMode::Canary;
    // With canary gateways, every render the plan installs is in canary form; the running
    // cluster's (the first) is as it is.
    let normalized: Vec<Vec<Object>> = renders
        .iter()
        .zip(&releases)
        .enumerate()
        .map(|(i, (r, release))| {
            let objects: Vec<Object> = r.objects.iter().map(normalize).collect();
            if canary && i > 0 {
                canary::canary_render(&objects, release.revision.label())
            } else {
                objects
            }
        })
        .collect();
    let last = releases.len() - 1;
    let hops = (0..last)
        .map(|i| HopInput {
            from: plan_side(releases[i]),
            to: plan_side(releases[i + 1]),
            old: normalized[i].clone(),
            new: normalized[i + 1].clone(),
            spec: &releases[i + 1].operator.declared,
            waves: &policy.waves,
            default_tag: policy.default_tag,
            uninstall_old: i + 1 < last || policy.uninstall_old,
            kubernetes: policy.kubernetes_version,
            remove_gateways: &policy.remove_gateways,
            several: last > 1,
            tags: &policy.tags,
            gateways_after: policy.gateways_after.as_deref(),
            canary_gateways: canary,
        })
        .collect();
    plan_hops(&PlanInput {
        name: policy.name.clone(),
        policy_path: policy
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        policy_sha256: policy.sha256.clone(),
        kubernetes_version: policy.kubernetes_version,
        hops,
        promote: policy.promote.as_ref(),
        default_tag_declared: policy.from_default_tag_declared,
        inventory: policy.inventory.as_ref().map(|i| InventoryInput {
            path: i.declared.clone(),
            sha256: i.sha256.clone(),
            inventory: &i.inventory,
        }),
        jobs,
    })
}

/// The plan as a fold over hops: state 0 (`start`), then each hop's phases simulated from the
/// previous hop's end state, then the rollback of every phase before an uninstall, then the
/// promote point.
pub fn plan_hops(input: &PlanInput<'_>) -> Result<Plan> {
    let Some(first) = input.hops.first() else {
        return Err(Refusal::NoHop);
    };
    let start = match &input.inventory {
        Some(inventory) => start::from_inventory(first, inventory, input.default_tag_declared)?,
        None => start::assumed(
            first,
            first.waves.iter().flat_map(|w| &w.namespaces),
            input.default_tag_declared,
        ),
    };

    if let Some(v) = start.known.iter().find(|v| v.is_undecidable()) {
        return Err(Refusal::UndecidableStart {
            violation: v.clone(),
        });
    }

    if let Some(k) = input.kubernetes_version {
        checks::kubernetes_path(&input.hops, k)?;
    }

    // Every hop's phases are drafted first: directory numbers are padded to the width the whole
    // plan needs (an uninstall slot counted per hop, whether or not the policy uninstalls).
    let drafted = input
        .hops
        .iter()
        .map(hop::drafts)
        .collect::<Result<Vec<_>>>()?;
    let slots: usize = drafted.iter().map(|d| d.len() + 1).sum();
    let width = if slots >= 100 { 3 } else { 2 };

    let mut states = vec![start.state.clone()];
    let mut expected = vec![start.expected.clone()];
    // What the simulation knew of each state: the next phase, and the rollback back from it,
    // resume from there instead of evaluating every namespace again.
    let mut evaluated =
        vec![crate::mesh::Watch::new(&start.state, &start.expected).into_evaluated()];
    let mut phases: Vec<Phase> = Vec::new();
    let mut planned_hops = Vec::new();
    let mut running = start.workloads.clone();
    for (h, (hop_input, drafts)) in input.hops.iter().zip(drafted).enumerate() {
        // The three lists start with state 0 and grow together: the hop starts at their last.
        let last = states.len() - 1;
        let at = hop::At {
            hop: h,
            first_index: phases.len() + 1,
            width,
        };
        let out = hop::run(
            hop::Start {
                state: &states[last],
                expected: &expected[last],
                evaluated: &evaluated[last],
            },
            hop_input,
            drafts,
            at,
            &hop::Around {
                known: &start.known,
                fixed: &start.fixed,
                followers: &start.followers,
                tag_followers: &start.tag_followers,
                ambient: &start.ambient,
            },
            &mut running,
        )?;
        phases.extend(out.phases);
        states.extend(out.states);
        expected.extend(out.expected);
        evaluated.extend(out.evaluated);
        planned_hops.push(out.hop);
    }

    let mut assumptions = start.assumptions;
    if let Some(k) = input.kubernetes_version {
        let mut seen = BTreeSet::new();
        for side in input.hops.iter().flat_map(|h| [&h.from, &h.to]) {
            let istio = Minor::new(side.version.major, side.version.minor);
            if crate::k8s::istio_supports(istio).is_none() && seen.insert(istio) {
                assumptions.push(Assumption::SupportUnknown {
                    istio,
                    kubernetes: k,
                });
            }
        }
    }

    let rendered: BTreeSet<ObjectId> = input
        .hops
        .iter()
        .flat_map(|h| h.old.iter().chain(&h.new))
        .map(|o| o.id.clone())
        .collect();
    let tags: BTreeMap<&str, &str> = start
        .tag_followers
        .iter()
        .flat_map(|(t, nss)| nss.iter().map(move |n| (n.as_str(), t.as_str())))
        .collect();
    let deltas = crate::diff::phase_deltas(&states);
    let mut plan = Plan {
        hops: planned_hops,
        phases,
        states,
        expected,
        assumptions,
        warnings: start.known.iter().cloned().collect(),
        deltas,
        rendered,
        inventory: input
            .inventory
            .as_ref()
            .map(|i| (i.path.clone(), i.sha256.clone())),
        ..empty_plan(input)
    };
    let (rollbacks, ends) = rollback::plan_rollbacks(&plan, &evaluated, &start.known, input.jobs)?;
    // The two tables read different states: each is evaluated on a thread of its own.
    let (injection, rollback_injection) = crate::jobs::join(
        input.jobs,
        || injection_table(&start.namespaces, &tags, &plan.states),
        || injection_table(&start.namespaces, &tags, &ends),
    );
    plan.injection = injection;
    plan.rollback_injection = rollback_injection;
    plan.rollbacks = rollbacks;
    plan.promote = match input.promote {
        Some(p) => Some(rollback::resolve_promote(&plan, p)?),
        None => None,
    };
    if let Some(k) = plan.kubernetes_version {
        served_everywhere(&plan, k)?;
    }
    Ok(plan)
}

/// Every object the output applies outside the phases (the rollbacks' re-applies and `live/`)
/// uses an API version the cluster serves, like the new render (`checks::kubernetes`).
fn served_everywhere(plan: &Plan, k: Minor) -> Result<()> {
    let mut places: Vec<(String, Vec<Change>)> = plan
        .rollbacks
        .iter()
        .map(|rb| (rb.dir.clone(), rb.changes.clone()))
        .collect();
    if let Some(n) = plan.promote {
        places.push(("live".to_string(), live_changes(plan, n)));
    }
    for (place, changes) in places {
        let objects: Vec<refusal::Unserved> =
            changes
                .iter()
                .filter_map(|c| match c {
                    Change::Apply(o) => crate::k8s::serves(k, &o.api_version, &o.id.kind)
                        .err()
                        .map(|why| refusal::Unserved {
                            id: o.id.clone(),
                            api_version: o.api_version.clone(),
                            why,
                        }),
                    _ => None,
                })
                .collect();
        if !objects.is_empty() {
            return Err(Refusal::ApiNotServedIn {
                place,
                kubernetes: k,
                objects,
            });
        }
    }
    Ok(())
}

/// The plan's identity with nothing planned yet (what the fold fills in).
fn empty_plan(input: &PlanInput<'_>) -> Plan {
    Plan {
        name: input.name.clone(),
        policy_path: input.policy_path.clone(),
        policy_sha256: input.policy_sha256.clone(),
        kubernetes_version: input.kubernetes_version,
        hops: Vec::new(),
        phases: Vec::new(),
        states: vec![ClusterState::default()],
        expected: vec![Expected::new()],
        injection: Vec::new(),
        assumptions: Vec::new(),
        warnings: Vec::new(),
        deltas: Vec::new(),
        rollbacks: Vec::new(),
        rollback_injection: Vec::new(),
        promote: None,
        rendered: BTreeSet::new(),
        inventory: None,
    }
}

/// Which injector serves each named namespace in each state, as the injection table shows it.
/// Each state is evaluated from the one before, like the simulation does (`mesh::Watch`): when
/// their diff changes no webhook, Service or Deployment, only the namespaces it relabels are
/// evaluated again; otherwise every namespace is, once per distinct label set
/// (`mesh::NamespaceInjection`).
fn injection_table(
    named: &[String],
    tags: &BTreeMap<&str, &str>,
    states: &[ClusterState],
) -> Vec<InjectionRow> {
    let mut rows: Vec<InjectionRow> = named
        .iter()
        .map(|ns| InjectionRow {
            namespace: ns.clone(),
            tag: tags.get(ns.as_str()).map(|t| t.to_string()),
            states: Vec::with_capacity(states.len()),
        })
        .collect();
    // A table of thousands of namespaces over dozens of states holds a handful of distinct
    // texts: each is made once.
    let mut texts: BTreeMap<String, std::sync::Arc<str>> = BTreeMap::new();
    let mut last: Option<(&ClusterState, crate::mesh::NamespaceInjection)> = None;
    for s in states {
        let relabelled = last.as_ref().and_then(|(prev, _)| relabelled_only(prev, s));
        let injection = match (relabelled.is_some(), last.take()) {
            (true, Some((_, injection))) => injection,
            _ => crate::mesh::NamespaceInjection::new(s),
        };
        let injection = &mut last.insert((s, injection)).1;
        // Every namespace is read in one walk of the state's; a relabelled one (of a few) is
        // looked up.
        let mut objects = crate::mesh::NamespaceCursor::new(s);
        for row in &mut rows {
            let object = match (&relabelled, row.states.last()) {
                (Some(changed), Some(cell)) if !changed.contains(row.namespace.as_str()) => {
                    row.states.push(cell.clone());
                    continue;
                }
                (Some(_), Some(_)) => s.get(&crate::cluster::namespace_id(&row.namespace)),
                _ => objects.get(&row.namespace),
            };
            let text = crate::mesh::describe(injection.of_object(object));
            let cell = texts
                .entry(text)
                .or_insert_with_key(|text| text.as_str().into());
            row.states.push(cell.clone());
        }
    }
    rows
}

/// The namespaces `after` changes from `before`, when it changes nothing that can change
/// another namespace's injection (`mesh::is_mesh_kind`); `None` when it does.
fn relabelled_only<'a>(
    before: &'a ClusterState,
    after: &'a ClusterState,
) -> Option<BTreeSet<&'a str>> {
    let mut out = BTreeSet::new();
    for id in before.objects.diff(&after.objects).map(rollback::diff_key) {
        if crate::mesh::is_mesh_kind(id) {
            return None;
        }
        if id.kind == "Namespace" && id.group.is_empty() {
            out.insert(id.name.as_str());
        }
    }
    Some(out)
}

fn applies(objects: Vec<Object>) -> Vec<Change> {
    objects.into_iter().map(Change::Apply).collect()
}

/// Files in apply-rank order, commands in the order given, deletes in delete-rank order.
fn sort_changes(changes: &mut [Change]) {
    let group = |c: &Change| match c {
        Change::Apply(_) | Change::Labels { via: Via::File, .. } => 0,
        Change::Labels { .. } => 1,
        Change::Template { .. } => 2,
        Change::Delete(_) => 3,
    };
    changes.sort_by(|a, b| {
        let key = |c: &Change| match group(c) {
            0 => (0, apply_rank(c.id()), Some(c.id().clone())),
            1 => (1, 0, None),
            2 => (2, 0, Some(c.id().clone())),
            _ => (3, delete_rank(c.id()), Some(c.id().clone())),
        };
        key(a).cmp(&key(b))
    });
}

fn plan_side(side: &crate::policy::Release) -> PlanSide {
    PlanSide {
        version: side.version.clone(),
        revision: side.revision.clone(),
        istioctl_sha256: side.istioctl.sha256.clone(),
        istioctl_pins: side.istioctl.recorded.clone(),
        operator_path: side.operator.declared.clone(),
        operator_sha256: side.operator.sha256.clone(),
        istio_namespace: side.operator.istio_namespace.clone(),
    }
}

/// The ids of a set of objects.
fn ids<'a>(objects: impl IntoIterator<Item = &'a Object>) -> BTreeSet<ObjectId> {
    objects.into_iter().map(|o| o.id.clone()).collect()
}

#[cfg(test)]
mod tests;
