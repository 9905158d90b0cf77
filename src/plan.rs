//! The planner: from the policy and the renders to hops and phases, each phase an ordered list of
//! changes over a simulated mesh, with every state kept and every phase's meaning (summary,
//! commands, checks, undo) decided here. Pure: no files, no processes, no clock.
//!
//! Owns: which object goes in which phase, the apply order inside a phase, the namespace
//! relabels, the default-tag move (and switching off a legacy injector), the deletion set
//! (derived from the simulated end state), API versions for delete stubs, the refusals of renders
//! that cannot work, and the safety invariants evaluated on the state after every step of every
//! phase (see `mesh`), the rollback of every phase before the uninstall (derived from the states
//! before and after it, and simulated like a phase), and the live desired state at the promote
//! point. Must not: read files, run istioctl, or produce file text (that is `emit`).

use std::collections::{BTreeMap, BTreeSet};

use semver::Version;
use serde::Serialize;
use serde_yaml::{Mapping, Value};

use crate::error::{Error, Result};
use crate::k8s::{self, Minor};
use crate::manifest::{is_tag_object, Object, ObjectId};
use crate::mesh::{
    dangling_references, describe, is_gateway_workload, is_istiod, namespace_id, namespace_object,
    pod_template_labels, references, violations, Change, DeleteRef, Expectations, MeshState,
    Target, Via, Violation, INJECTION_LABEL, NAME_LABEL, REV_LABEL,
};
use crate::policy::{Policy, Revision};
use crate::render::Rendered;

/// The selector `istioctl tag set default` puts on a legacy injector to switch it off.
pub const NEVER_MATCH_LABEL: &str = "istio.io/deactivated";
/// Namespaces no wave may restart: the cluster's own, and the control plane's.
pub const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseKind {
    Crds,
    Install,
    Migrate,
    Gateways,
    DefaultTag,
    Uninstall,
}

impl PhaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Crds => "crds",
            PhaseKind::Install => "install",
            PhaseKind::Migrate => "migrate",
            PhaseKind::Gateways => "gateways",
            PhaseKind::DefaultTag => "default-tag",
            PhaseKind::Uninstall => "uninstall",
        }
    }
}

/// One step of the upgrade.
#[derive(Debug, Clone)]
pub struct Phase {
    /// 1-based position.
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
    /// In the order they run: files of the directory (apply rank order), then commands, then
    /// deletes (delete rank order).
    pub changes: Vec<Change>,
    pub summary: String,
    /// What to run, in order (client-side `kubectl apply`).
    pub commands: Vec<String>,
    /// The same phase for `kubectl apply --server-side`.
    pub server_side: Vec<String>,
    /// Commands that check the phase worked, each with what it must show.
    pub checks: Vec<String>,
    pub undo: Option<String>,
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
    pub operator_path: String,
    pub operator_sha256: String,
    pub istio_namespace: String,
}

/// One canary cycle from one revision to the next.
#[derive(Debug, Clone)]
pub struct Hop {
    pub from: PlanSide,
    pub to: PlanSide,
}

/// For one namespace: which revision injects its pods in each state (state 0 is before the
/// upgrade, state N after phase N).
#[derive(Debug, Clone, Serialize)]
pub struct InjectionRow {
    pub namespace: String,
    pub states: Vec<String>,
}

/// The whole upgrade.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub policy_path: String,
    pub policy_sha256: String,
    pub kubernetes_version: Option<Minor>,
    pub hops: Vec<Hop>,
    pub phases: Vec<Phase>,
    /// `states[0]` is the cluster before the upgrade, `states[n]` after phase n.
    pub states: Vec<MeshState>,
    pub injection: Vec<InjectionRow>,
    /// What the plan assumed about the cluster (no inventory).
    pub assumptions: Vec<String>,
    /// Problems already present before the upgrade (not caused by any phase).
    pub warnings: Vec<String>,
    /// What each phase adds, changes and deletes: `deltas[i]` is phase `i + 1`
    /// (`states[i]` -> `states[i + 1]`).
    pub deltas: Vec<crate::diff::PhaseDelta>,
    /// The control plane of the old render against the new one (both normalized).
    pub diff: crate::diff::ControlPlaneDiff,
    /// One per phase before the uninstall, in phase order: what undoes it (see `rollbacks`).
    pub rollbacks: Vec<Rollback>,
    /// For each namespace: which revision injects it after phase N, then rollback N, one cell per
    /// entry of `rollbacks`.
    pub rollback_injection: Vec<InjectionRow>,
    /// The 1-based index of the phase whose end state `live/` holds (`spec.promote`).
    pub promote: Option<usize>,
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
    /// What to run, in order (client-side `kubectl apply`); empty when there is nothing to undo.
    pub commands: Vec<String>,
    /// The same with `kubectl apply --server-side`.
    pub server_side: Vec<String>,
    /// Commands that check the rollback worked, each with what it must show.
    pub checks: Vec<String>,
    /// What the rollback does not do (CRDs kept, workloads to restart), if anything.
    pub note: Option<String>,
}

impl Rollback {
    pub fn deletes(&self) -> impl Iterator<Item = &DeleteRef> {
        deletes_of(&self.changes)
    }
}

impl Plan {
    /// The first (today: the only) hop's sides.
    pub fn from(&self) -> &PlanSide {
        &self.hops[0].from
    }
    pub fn to(&self) -> &PlanSide {
        &self.hops[self.hops.len() - 1].to
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
        _ if id.group.ends_with("istio.io") => 21,
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

/// Builds the plan from the policy and the renders of the old and the new revision. Pure: the
/// same inputs give the same plan.
pub fn plan(policy: &Policy, old: &Rendered, new: &Rendered) -> Result<Plan> {
    let hop = Hop {
        from: plan_side(&policy.from),
        to: plan_side(&policy.to),
    };
    let old_objects: Vec<Object> = old.objects.iter().map(normalize).collect();
    let new_objects: Vec<Object> = new.objects.iter().map(normalize).collect();
    check_render(policy, old, &old_objects, new, &new_objects)?;
    if let Some(k) = policy.kubernetes_version {
        check_kubernetes(policy, k, &new_objects)?;
    }

    // State 0: the old render plus every namespace the policy names, labelled as the old install
    // expects (no inventory: the canonical labels).
    let old_label = match &old.revision {
        Revision::Default => (INJECTION_LABEL, "enabled".to_string()),
        Revision::Named(r) => (REV_LABEL, r.clone()),
    };
    let mut state = MeshState::from_objects(&old_objects);
    let mut named: Vec<String> = Vec::new();
    for wave in &policy.waves {
        for ns in &wave.namespaces {
            let labels = BTreeMap::from([(old_label.0.to_string(), old_label.1.clone())]);
            state
                .objects
                .insert(namespace_id(ns), namespace_object(ns, &labels));
            named.push(ns.clone());
        }
    }
    let assumptions = vec![format!(
        "No cluster inventory was given: every namespace in the waves is assumed to carry exactly `{}={}` before the upgrade, and nothing else in the cluster is assumed to use revision `{}`.",
        old_label.0, old_label.1, old.revision
    )];

    // Sort the new render into phases.
    let gateway_ids = gateway_objects(&new_objects);
    let mut crds = Vec::new();
    let mut install = Vec::new();
    let mut gateways = Vec::new();
    let mut tags = Vec::new();
    for o in &new_objects {
        if o.id.kind == "CustomResourceDefinition" {
            crds.push(o.clone());
        } else if is_tag_object(o) {
            tags.push(o.clone());
        } else if gateway_ids.contains(&o.id) {
            gateways.push(o.clone());
        } else {
            install.push(o.clone());
        }
    }
    check_install_disjoint(&install, old, &old_objects, new)?;
    check_gateways_kept(policy, &old_objects, &new_objects)?;

    let mut drafts: Vec<Draft> = Vec::new();
    drafts.push(Draft::new(PhaseKind::Crds, "crds".into(), applies(crds)));
    drafts.push(Draft::new(
        PhaseKind::Install,
        format!("install-{}", new.revision),
        applies(install),
    ));
    let new_rev = new.revision.label().to_string();
    for wave in &policy.waves {
        let mut changes = Vec::new();
        let mut commands = Vec::new();
        for ns in &wave.namespaces {
            changes.push(Change::Labels {
                id: namespace_id(ns),
                api_version: "v1".into(),
                set: BTreeMap::from([(REV_LABEL.to_string(), new_rev.clone())]),
                remove: BTreeSet::new(),
                via: Via::File,
            });
        }
        // `istio-injection` wins over `istio.io/rev`; it is removed after the new label is set,
        // so the namespace is injected by the old revision until the moment it moves.
        for ns in &wave.namespaces {
            if old_label.0 == INJECTION_LABEL {
                let command = format!("kubectl label namespace {ns} {INJECTION_LABEL}-");
                commands.push(Change::Labels {
                    id: namespace_id(ns),
                    api_version: "v1".into(),
                    set: BTreeMap::new(),
                    remove: BTreeSet::from([INJECTION_LABEL.to_string()]),
                    via: Via::Command(command),
                });
            }
        }
        changes.extend(commands);
        let mut d = Draft::new(
            PhaseKind::Migrate,
            format!("migrate-{}", wave.name),
            changes,
        );
        d.namespaces = wave.namespaces.clone();
        drafts.push(d);
    }
    if !gateways.is_empty() {
        drafts.push(Draft::new(
            PhaseKind::Gateways,
            format!("gateways-{}", new.revision),
            applies(gateways),
        ));
    }
    if policy.default_tag {
        drafts.push(Draft::new(
            PhaseKind::DefaultTag,
            format!("default-tag-{}", new.revision),
            applies(tags.clone()),
        ));
    }

    // Simulate. The uninstall phase is derived from the state the others leave.
    let width = if drafts.len() + 1 >= 100 { 3 } else { 2 };
    let expected = |upto_wave: usize| -> BTreeMap<String, Option<String>> {
        let mut m = BTreeMap::new();
        for (wi, wave) in policy.waves.iter().enumerate() {
            for ns in &wave.namespaces {
                let rev = if wi < upto_wave {
                    &new_rev
                } else {
                    &old_label_rev(old)
                };
                m.insert(ns.clone(), Some(rev.clone()));
            }
        }
        m
    };
    let any_single: BTreeMap<String, Option<String>> =
        named.iter().map(|n| (n.clone(), None)).collect();
    let start = violations(
        &state,
        &Expectations {
            namespaces: &expected(0),
        },
    );
    let warnings: Vec<String> = start.iter().map(ToString::to_string).collect();

    let mut states = vec![state.clone()];
    let mut phases: Vec<Phase> = Vec::new();
    let mut waves_done = 0;
    let needed: BTreeSet<ObjectId> = new_objects
        .iter()
        .map(|o| o.id.clone())
        .chain(named.iter().map(|n| namespace_id(n)))
        .collect();
    let mut all = drafts;
    if policy.uninstall_old {
        all.push(Draft::new(
            PhaseKind::Uninstall,
            format!("uninstall-{}", old.revision),
            Vec::new(),
        ));
    }
    for (i, mut draft) in all.into_iter().enumerate() {
        let before = state.clone();
        if draft.kind == PhaseKind::Uninstall {
            draft.changes = uninstall_changes(&state, &needed, policy.kubernetes_version);
        }
        if draft.kind == PhaseKind::DefaultTag {
            draft
                .changes
                .extend(switch_off_legacy_injectors(&state, &draft.changes));
        }
        sort_changes(&mut draft.changes);
        let phase_index = i + 1;
        let dir = format!("{phase_index:0width$}-{}", draft.name);
        let steps = change_steps(&draft.changes);
        if draft.kind == PhaseKind::Migrate {
            waves_done += 1;
        }
        let last = steps.len() - 1;
        for (si, step) in steps.iter().enumerate() {
            for c in step {
                state.apply(c);
            }
            let expect = if si == last {
                expected(waves_done)
            } else {
                any_single.clone()
            };
            let mut found = violations(
                &state,
                &Expectations {
                    namespaces: &expect,
                },
            );
            let deleted: Vec<&ObjectId> = step
                .iter()
                .filter(|c| matches!(c, Change::Delete(_)))
                .map(|c| c.id())
                .collect();
            found.extend(dangling_references(&state, &deleted));
            if let Some(v) = found.into_iter().find(|v| !start.contains(v)) {
                return Err(refusal(&dir, &v, policy));
            }
        }
        let phase = describe_phase(&hop, draft, phase_index, dir, &before, &state);
        phases.push(phase);
        states.push(state.clone());
    }

    let injection = injection_table(&named, &states);
    let deltas = crate::diff::phase_deltas(&states);
    let diff =
        crate::diff::control_plane_diff(&old.revision, &old_objects, &new.revision, &new_objects);
    let mut plan = Plan {
        name: policy.name.clone(),
        policy_path: policy
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        policy_sha256: policy.sha256.clone(),
        kubernetes_version: policy.kubernetes_version,
        hops: vec![hop],
        phases,
        states,
        injection,
        assumptions,
        warnings,
        deltas,
        diff,
        rollbacks: Vec::new(),
        rollback_injection: Vec::new(),
        promote: None,
    };
    add_rollbacks(&mut plan, policy, &named)?;
    plan.promote = match &policy.promote {
        Some(p) => Some(resolve_promote(&plan, p)?),
        None => None,
    };
    Ok(plan)
}

fn old_label_rev(old: &Rendered) -> String {
    old.revision.label().to_string()
}

// ---------------------------------------------------------------------------------------------
// Rollbacks and the live desired state: both derived from the kept states, never hand-written.

/// The directory of the rollback of a phase: `rollback/03-migrate-canary`.
pub fn rollback_dir(phase: &Phase) -> String {
    format!("rollback/{}", phase.dir)
}

/// What the plan expects of the namespaces after the first `upto` phases: the old revision
/// before a namespace's wave, the new one from it on.
fn expectations_after(
    policy: &Policy,
    phases: &[Phase],
    upto: usize,
) -> BTreeMap<String, Option<String>> {
    let waves_done = phases
        .iter()
        .take(upto)
        .filter(|p| p.kind == PhaseKind::Migrate)
        .count();
    let mut m = BTreeMap::new();
    for (wi, wave) in policy.waves.iter().enumerate() {
        let side = if wi < waves_done {
            &policy.to
        } else {
            &policy.from
        };
        for ns in &wave.namespaces {
            m.insert(ns.clone(), Some(side.revision.label().to_string()));
        }
    }
    m
}

/// The changes that take the cluster from `after` (the state phase `phase` leaves) back to
/// `before` (the state it started from), for every object the phase touched: an object it changed
/// or deleted is re-applied as it was; an object it created is deleted (a stub with an API version
/// the cluster serves); labels it patched are patched back (a file sets what `before` had, a
/// `kubectl label … KEY-` command removes what `before` lacked: never a null label). CRDs are never
/// rolled back. Objects that existed before the phase are never deleted.
pub fn rollback_changes(
    phase: &Phase,
    before: &MeshState,
    after: &MeshState,
    kubernetes: Option<Minor>,
) -> Vec<Change> {
    let mut whole: BTreeSet<&ObjectId> = BTreeSet::new();
    let mut labelled: BTreeSet<&ObjectId> = BTreeSet::new();
    for c in &phase.changes {
        match c {
            Change::Labels { id, .. } => {
                labelled.insert(id);
            }
            _ => {
                whole.insert(c.id());
            }
        }
    }
    let mut out = Vec::new();
    for id in &whole {
        if id.kind == "CustomResourceDefinition" {
            continue;
        }
        match (before.objects.get(*id), after.objects.get(*id)) {
            (Some(b), Some(a)) if b == a => {}
            (Some(b), _) => out.push(Change::Apply(b.clone())),
            (None, Some(a)) => out.push(Change::Delete(DeleteRef {
                api_version: k8s::delete_api_version(
                    &a.id.group,
                    &a.id.kind,
                    &a.api_version,
                    kubernetes,
                ),
                id: a.id.clone(),
            })),
            (None, None) => {}
        }
    }
    for id in labelled.difference(&whole) {
        let (Some(b), Some(a)) = (before.objects.get(*id), after.objects.get(*id)) else {
            continue;
        };
        let (was, now) = (b.labels(), a.labels());
        let set: BTreeMap<String, String> = was
            .iter()
            .filter(|(k, v)| now.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let remove: BTreeSet<String> = now
            .keys()
            .filter(|k| !was.contains_key(*k))
            .cloned()
            .collect();
        if !set.is_empty() {
            out.push(Change::Labels {
                id: (*id).clone(),
                api_version: a.api_version.clone(),
                set,
                remove: BTreeSet::new(),
                via: Via::File,
            });
        }
        if !remove.is_empty() {
            let command = label_remove_command(id, &remove);
            out.push(Change::Labels {
                id: (*id).clone(),
                api_version: a.api_version.clone(),
                set: BTreeMap::new(),
                remove,
                via: Via::Command(command),
            });
        }
    }
    sort_changes(&mut out);
    out
}

/// `kubectl label namespace shop istio.io/rev-`: removes labels, the way the migrate phase does.
fn label_remove_command(id: &ObjectId, keys: &BTreeSet<String>) -> String {
    let mut kind = id.kind.to_lowercase();
    if !id.group.is_empty() {
        kind = format!("{kind}.{}", id.group);
    }
    let ns = id
        .namespace
        .as_ref()
        .map(|n| format!(" -n {n}"))
        .unwrap_or_default();
    let keys: Vec<String> = keys.iter().map(|k| format!("{k}-")).collect();
    format!("kubectl label {kind}{ns} {} {}", id.name, keys.join(" "))
}

/// The steps a list of changes runs as: the directory, then each command, then the deletes.
fn change_steps(changes: &[Change]) -> Vec<Vec<&Change>> {
    let mut steps: Vec<Vec<&Change>> = vec![Vec::new()];
    for c in changes {
        match c {
            Change::Labels {
                via: Via::Command(_),
                ..
            } => steps.push(vec![c]),
            Change::Delete(_) => {
                if steps
                    .last()
                    .is_some_and(|s| s.iter().all(|x| !matches!(x, Change::Delete(_))))
                {
                    steps.push(Vec::new());
                }
                if let Some(s) = steps.last_mut() {
                    s.push(c);
                }
            }
            _ => steps[0].push(c),
        }
    }
    steps
}

/// Simulates a rollback from `after`: after every step, the invariants with the expectations of
/// the state before the phase (and no dangling reference for its deletes); at the end, the state
/// must equal `before` object for object, except the CRDs, which stay as the phase left them.
/// `start` holds the violations state 0 already had (not blamed on the rollback). Public so that
/// tests can show its refusals on rollbacks the planner would never derive.
pub fn simulate_rollback(
    dir: &str,
    changes: &[Change],
    before: &MeshState,
    after: &MeshState,
    expect: &BTreeMap<String, Option<String>>,
    start: &BTreeSet<Violation>,
) -> Result<MeshState> {
    let mut state = after.clone();
    for step in change_steps(changes) {
        for c in &step {
            state.apply(c);
        }
        let mut found = violations(&state, &Expectations { namespaces: expect });
        let deleted: Vec<&ObjectId> = step
            .iter()
            .filter(|c| matches!(c, Change::Delete(_)))
            .map(|c| c.id())
            .collect();
        found.extend(dangling_references(&state, &deleted));
        if let Some(v) = found.into_iter().find(|v| !start.contains(v)) {
            return Err(Error::new(format!("after rollback {dir}, {v}")).with_help(
                "the rollback is derived from the simulated states before and after its phase; this is a defect of istio-canary: please report it with the policy",
            ));
        }
    }
    let stored = |s: &MeshState| -> BTreeMap<ObjectId, Object> {
        s.objects
            .iter()
            .map(|(id, o)| (id.clone(), crate::mesh::as_stored(o)))
            .collect()
    };
    let mut expected = stored(before);
    expected.retain(|id, _| id.kind != "CustomResourceDefinition");
    expected.extend(
        stored(after)
            .into_iter()
            .filter(|(id, _)| id.kind == "CustomResourceDefinition"),
    );
    let got = stored(&state);
    let ids: BTreeSet<&ObjectId> = expected.keys().chain(got.keys()).collect();
    for id in ids {
        let why = match (expected.get(id), got.get(id)) {
            (Some(e), Some(g)) if e == g => continue,
            (Some(_), Some(_)) => "would differ from",
            (Some(_), None) => "would be missing, unlike",
            (None, Some(_)) => "would exist, unlike",
            (None, None) => continue,
        };
        return Err(Error::new(format!(
            "rollback {dir} does not return the cluster to the state before its phase: {id} {why} the state before it"
        ))
        .with_help("the rollback is derived from the simulated states before and after its phase; this is a defect of istio-canary: please report it with the policy"));
    }
    Ok(state)
}

/// Commands, checks and note of one rollback: decided here, written down by `emit`.
fn describe_rollback(
    plan: &Plan,
    phase: &Phase,
    changes: Vec<Change>,
    after: &MeshState,
) -> Rollback {
    let dir = rollback_dir(phase);
    let old = &plan.from().revision;
    let new = &plan.to().revision;
    let has_files = changes
        .iter()
        .any(|c| matches!(c, Change::Apply(_) | Change::Labels { via: Via::File, .. }));
    let has_deletes = changes.iter().any(|c| matches!(c, Change::Delete(_)));
    let label_commands: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Labels {
                via: Via::Command(cmd),
                ..
            } => Some(cmd.clone()),
            _ => None,
        })
        .collect();
    let takes_over = changes.iter().any(|c| match c {
        Change::Apply(o) => after.objects.get(&o.id).is_some_and(|a| a.body != o.body),
        Change::Labels {
            id, via: Via::File, ..
        } => after.objects.contains_key(id),
        _ => false,
    });
    let mut commands = Vec::new();
    let mut server_side = Vec::new();
    if has_files {
        commands.push(format!("kubectl apply -k {dir}"));
        server_side.push(format!(
            "kubectl apply --server-side --field-manager=istio-canary{} -k {dir}",
            if takes_over { " --force-conflicts" } else { "" }
        ));
    }
    commands.extend(label_commands.iter().cloned());
    server_side.extend(label_commands.iter().cloned());
    if has_deletes {
        let delete = format!("kubectl delete --ignore-not-found -f {dir}/delete/");
        commands.push(delete.clone());
        server_side.push(delete);
    }
    let mut checks = Vec::new();
    if has_files {
        checks.push(format!("# must show no difference (istiod's own runtime changes to webhooks' caBundle and failurePolicy aside): the objects are back as they were before {}", phase.dir));
        checks.push(format!("kubectl diff -k {dir}"));
    }
    let removed: BTreeMap<String, Vec<String>> =
        changes.iter().fold(BTreeMap::new(), |mut m, c| {
            if let Change::Labels {
                id,
                remove,
                via: Via::Command(_),
                ..
            } = c
            {
                if id.kind == "Namespace" {
                    for k in remove {
                        m.entry(k.clone())
                            .or_insert_with(Vec::new)
                            .push(id.name.clone());
                    }
                }
            }
            m
        });
    for (key, namespaces) in &removed {
        checks.push(format!(
            "# must list nothing: the label {key} is removed again"
        ));
        checks.push(format!(
            "kubectl get namespaces -l '{NAME_LABEL} in ({}),{key}'",
            namespaces.join(",")
        ));
    }
    if has_deletes {
        checks.push(format!(
            "# must list nothing: what {} created is deleted",
            phase.dir
        ));
        checks.push(format!("kubectl get --ignore-not-found -f {dir}/delete/"));
    }
    let note = match phase.kind {
        PhaseKind::Crds => Some(format!(
            "nothing to roll back: CRDs are never rolled back. Revision `{old}` keeps working with the CRDs of Istio {}, and deleting or downgrading a CRD would delete or break every Istio resource of that kind in the cluster.",
            plan.to().version
        )),
        PhaseKind::Migrate => Some(format!(
            "after the rollback, restart the workloads of {} again (`kubectl rollout restart deployment,statefulset,daemonset -n NAMESPACE`) so their pods get sidecars of revision `{old}`.",
            phase.namespaces.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        )),
        PhaseKind::DefaultTag => Some(format!(
            "pods injected through the default tag since this phase keep sidecars of revision `{new}` until they restart."
        )),
        _ => None,
    };
    Rollback {
        phase_index: phase.index,
        dir,
        changes,
        commands,
        server_side,
        checks,
        note,
    }
}

/// Derives and simulates the rollback of every phase before the uninstall (phase N's changes on
/// the state before it, then the rollback's), and puts the rollback's note in the phase's undo
/// line: the rollback replaces the hand-written undo, which keeps only what a rollback cannot do.
fn add_rollbacks(plan: &mut Plan, policy: &Policy, named: &[String]) -> Result<()> {
    let start = violations(
        &plan.states[0],
        &Expectations {
            namespaces: &expectations_after(policy, &plan.phases, 0),
        },
    );
    let mut rollbacks = Vec::new();
    let mut ends = Vec::new();
    for phase in &plan.phases {
        if phase.kind == PhaseKind::Uninstall {
            break;
        }
        let n = phase.index;
        let (before, after) = (&plan.states[n - 1], &plan.states[n]);
        let changes = rollback_changes(phase, before, after, plan.kubernetes_version);
        let rollback = describe_rollback(plan, phase, changes, after);
        let expect = expectations_after(policy, &plan.phases, n - 1);
        ends.push(simulate_rollback(
            &rollback.dir,
            &rollback.changes,
            before,
            after,
            &expect,
            &start,
        )?);
        rollbacks.push(rollback);
    }
    for rb in &rollbacks {
        if let Some(p) = plan.phases.get_mut(rb.phase_index - 1) {
            p.undo = rb.note.clone();
        }
    }
    plan.rollback_injection = injection_table(named, &ends);
    plan.rollbacks = rollbacks;
    Ok(())
}

/// The phase `spec.promote` (or `--promote`) names, by index, name or directory.
fn resolve_promote(plan: &Plan, promote: &crate::policy::Promote) -> Result<usize> {
    use crate::policy::PhaseRef;
    let found = plan.phases.iter().find(|p| match &promote.phase {
        PhaseRef::Index(i) => p.index as u64 == *i,
        PhaseRef::Name(n) => p.name == *n || p.dir == *n,
    });
    if let Some(p) = found {
        return Ok(p.index);
    }
    let phases: Vec<String> = plan
        .phases
        .iter()
        .map(|p| format!("{} {}", p.index, p.name))
        .collect();
    let mut err = Error::new(format!(
        "{} `{}` names no phase of this plan; its phases are: {}",
        promote.source,
        promote.phase,
        phases.join(", ")
    ))
    .with_help("give the index or the name of the phase whose end state live/ should hold");
    err.location = promote.location.clone();
    Err(err)
}

/// The label keys the plan manages on the namespaces it moves: every key a phase sets or
/// removes.
pub fn managed_labels(plan: &Plan) -> BTreeSet<String> {
    plan.phases
        .iter()
        .flat_map(|p| p.changes.iter())
        .filter_map(|c| match c {
            Change::Labels { set, remove, .. } => {
                Some(set.keys().chain(remove.iter()).cloned().collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

/// The complete desired state after phase `n` as the plan manages it, for `live/`: every object
/// of `states[n]` whole (what the renders made and no uninstall removed), except the namespaces
/// the policy names, which are label patches holding only the labels the plan manages, as of
/// that phase. Apply rank order.
pub fn live_changes(plan: &Plan, n: usize) -> Vec<Change> {
    let Some(state) = plan.states.get(n) else {
        return Vec::new();
    };
    let named: BTreeSet<ObjectId> = plan
        .injection
        .iter()
        .map(|r| namespace_id(&r.namespace))
        .collect();
    let managed = managed_labels(plan);
    let mut out: Vec<Change> = state
        .objects
        .values()
        .map(|o| {
            if named.contains(&o.id) {
                Change::Labels {
                    id: o.id.clone(),
                    api_version: o.api_version.clone(),
                    set: o
                        .labels()
                        .into_iter()
                        .filter(|(k, _)| managed.contains(k))
                        .collect(),
                    remove: BTreeSet::new(),
                    via: Via::File,
                }
            } else {
                Change::Apply(o.clone())
            }
        })
        .collect();
    sort_changes(&mut out);
    out
}

struct Draft {
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

fn applies(objects: Vec<Object>) -> Vec<Change> {
    objects.into_iter().map(Change::Apply).collect()
}

/// Files in apply-rank order, commands in the order given, deletes in delete-rank order.
fn sort_changes(changes: &mut [Change]) {
    let group = |c: &Change| match c {
        Change::Apply(_) | Change::Labels { via: Via::File, .. } => 0,
        Change::Labels { .. } => 1,
        Change::Delete(_) => 2,
    };
    changes.sort_by(|a, b| {
        let key = |c: &Change| match group(c) {
            0 => (0, apply_rank(c.id()), Some(c.id().clone())),
            1 => (1, 0, None),
            _ => (2, delete_rank(c.id()), Some(c.id().clone())),
        };
        key(a).cmp(&key(b))
    });
}

fn plan_side(side: &crate::policy::Side) -> PlanSide {
    PlanSide {
        version: side.version.clone(),
        revision: side.revision.clone(),
        istioctl_sha256: side.istioctl.sha256.clone(),
        operator_path: side.operator.declared.clone(),
        operator_sha256: side.operator.sha256.clone(),
        istio_namespace: side.operator.istio_namespace.clone(),
    }
}

/// The uninstall: every object of the state the end state does not need (not rendered by the
/// new revision, not a namespace the policy names), never CRDs or Namespaces.
fn uninstall_changes(
    state: &MeshState,
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
fn switch_off_legacy_injectors(state: &MeshState, tag_changes: &[Change]) -> Vec<Change> {
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

/// The objects of each gateway workload in a render: the workload, the Services selecting its
/// pods, its ServiceAccount, HPAs and PDBs targeting it, and the RoleBindings of its
/// ServiceAccount with their Roles.
fn gateway_objects(objects: &[Object]) -> BTreeSet<ObjectId> {
    gateways_of(objects).into_values().flatten().collect()
}

fn gateways_of(objects: &[Object]) -> BTreeMap<ObjectId, BTreeSet<ObjectId>> {
    let mut out = BTreeMap::new();
    for gw in objects.iter().filter(|o| is_gateway_workload(o)) {
        let pods = pod_template_labels(gw);
        let mut set = BTreeSet::from([gw.id.clone()]);
        let refs = references(gw);
        for o in objects.iter().filter(|o| o.id.namespace == gw.id.namespace) {
            let selects = |path: &[&str]| match crate::manifest::value_at(&o.body, path) {
                Some(Value::Mapping(sel)) if !sel.is_empty() => sel.iter().all(|(k, v)| {
                    k.as_str()
                        .is_some_and(|k| pods.get(k).map(String::as_str) == v.as_str())
                }),
                _ => false,
            };
            let belongs = match o.id.kind.as_str() {
                "Service" => selects(&["spec", "selector"]),
                "PodDisruptionBudget" => selects(&["spec", "selector", "matchLabels"]),
                "HorizontalPodAutoscaler" => references(o).contains(&gw.id),
                "ServiceAccount" => refs.contains(&o.id),
                _ => false,
            };
            if belongs {
                set.insert(o.id.clone());
            }
        }
        let sas: BTreeSet<ObjectId> = set
            .iter()
            .filter(|id| id.kind == "ServiceAccount")
            .cloned()
            .collect();
        for o in objects.iter().filter(|o| o.id.kind == "RoleBinding") {
            let r = references(o);
            if r.iter().any(|id| sas.contains(id)) {
                set.insert(o.id.clone());
                set.extend(r.into_iter().filter(|id| id.kind == "Role"));
            }
        }
        out.insert(gw.id.clone(), set);
    }
    out
}

/// Refuses a new render that would drop a gateway the old one had, unless the policy names the
/// gateway in `removeGateways`.
fn check_gateways_kept(policy: &Policy, old: &[Object], new: &[Object]) -> Result<()> {
    let new_ids: BTreeSet<&ObjectId> = new.iter().map(|o| &o.id).collect();
    let mut lost = Vec::new();
    for (gw, objects) in gateways_of(old) {
        let key = format!("{}/{}", gw.namespace.as_deref().unwrap_or(""), gw.name);
        if policy.remove_gateways.contains(&key) {
            continue;
        }
        let missing: Vec<String> = objects
            .iter()
            .filter(|id| !new_ids.contains(id))
            .map(ToString::to_string)
            .collect();
        if !missing.is_empty() {
            lost.push(format!("gateway {key}: {}", missing.join(", ")));
        }
    }
    if lost.is_empty() {
        return Ok(());
    }
    Err(Error::new(format!(
        "the new IstioOperator spec no longer renders objects of gateways revision {} runs; the plan would delete them:\n  {}",
        policy.from.revision,
        lost.join("\n  ")
    ))
    .with_help("a deleted gateway Service loses its load balancer address: keep the gateway in the spec, or, to remove it on purpose, list it under spec.removeGateways (e.g. `removeGateways: [istio-system/istio-egressgateway]`)"))
}

/// Renders that cannot work are refused before any phase is built.
fn check_render(
    policy: &Policy,
    old: &Rendered,
    old_objects: &[Object],
    new: &Rendered,
    new_objects: &[Object],
) -> Result<()> {
    let spec = &policy.to.operator.declared;
    let rev = new.revision.label();
    if new_objects.is_empty() {
        return Err(Error::new(format!(
            "istioctl {} rendered no objects for revision {rev}",
            new.version
        ))
        .with_help(format!(
            "check {spec}: a profile such as `empty` with no component enabled renders nothing"
        )));
    }
    let has_istiod = new_objects.iter().any(|o| {
        is_istiod(o) && pod_template_labels(o).get(REV_LABEL).map(String::as_str) == Some(rev)
    });
    if !has_istiod {
        return Err(Error::new(format!(
            "the render of revision {rev} has no istiod Deployment: nothing would serve the namespaces moved to it"
        ))
        .with_help(format!("enable the control plane in {spec} (components.pilot.enabled: true, or a profile that enables it)")));
    }
    let old_crds = old_objects
        .iter()
        .filter(|o| o.id.kind == "CustomResourceDefinition")
        .count();
    let new_crds = new_objects
        .iter()
        .filter(|o| o.id.kind == "CustomResourceDefinition")
        .count();
    if old_crds > 0 && new_crds == 0 {
        return Err(Error::new(format!(
            "the render of revision {rev} has no CRDs, but revision {} was installed with {old_crds}: Istio's CRDs would stay at {} while istiod {} runs",
            old.revision, old.version, new.version
        ))
        .with_help(format!("enable the base component in {spec} (components.base.enabled: true)")));
    }
    // A namespace labelled for the new revision must be injected by it.
    let probe = MeshState::from_objects(new_objects);
    let labels = BTreeMap::from([
        (REV_LABEL.to_string(), rev.to_string()),
        (NAME_LABEL.to_string(), "istio-canary-probe".to_string()),
    ]);
    let found = probe.injectors(&labels, &BTreeMap::new());
    let serves = found
        .iter()
        .filter(|i| i.target == Target::Revision(rev.to_string()))
        .count();
    if serves != 1 {
        return Err(Error::new(format!(
            "the render of revision {rev} has no sidecar-injector webhook for namespaces labelled istio.io/rev={rev} (found: {}), but the policy moves namespaces to it",
            describe(&found)
        ))
        .with_help(format!("the injector comes with the control plane in {spec}: check components.pilot, values.sidecarInjectorWebhook and values.global.operatorManageWebhooks")));
    }
    if policy.default_tag {
        let has = |kind: &str, name: &str| {
            new_objects
                .iter()
                .any(|o| o.id.kind == kind && o.id.name == name)
        };
        if !has("MutatingWebhookConfiguration", "istio-revision-tag-default") {
            return Err(Error::new(format!(
                "istioctl {} rendered no istio-revision-tag-default for values.revisionTags=[default]",
                new.version
            ))
            .with_help("this istioctl cannot render revision tags offline; set defaultTag: false and move the tag with `istioctl tag set default` instead"));
        }
        if !has("ValidatingWebhookConfiguration", "istiod-default-validator") {
            return Err(Error::new(format!(
                "istioctl {} rendered no istiod-default-validator for values.defaultRevision={rev}: validation of Istio resources would stay on revision {}",
                new.version, old.revision
            ))
            .with_help(format!("config validation may be off in {spec} (values.global.configValidation); enable it, or set defaultTag: false and keep the old revision")));
        }
    }
    Ok(())
}

/// The new install must not change the running control plane in place.
fn check_install_disjoint(
    install: &[Object],
    old: &Rendered,
    old_objects: &[Object],
    new: &Rendered,
) -> Result<()> {
    // The old revision's own objects, found by what they do: its istiod Deployments, the config
    // maps and secrets their pods mount, the Services that select them, and every webhook
    // configuration whose webhooks reach them. (Service accounts carry no behaviour; shared
    // base objects may be updated by the new install.)
    let rev = old.revision.label();
    let state = MeshState::from_objects(old_objects);
    let mut own: BTreeSet<ObjectId> = BTreeSet::new();
    for o in old_objects {
        let is_old_istiod =
            is_istiod(o) && pod_template_labels(o).get(REV_LABEL).map(String::as_str) == Some(rev);
        let reaches_old = match o.id.kind.as_str() {
            "Service" => state.istiod_revisions(&o.id).contains(rev),
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
                state.webhook_config_revision(&o.id).as_deref() == Some(rev)
            }
            _ => false,
        };
        if is_old_istiod {
            own.insert(o.id.clone());
            own.extend(
                references(o)
                    .into_iter()
                    .filter(|r| r.kind == "ConfigMap" || r.kind == "Secret"),
            );
        }
        if reaches_old {
            own.insert(o.id.clone());
        }
    }
    let old_by_id: BTreeMap<&ObjectId, &Object> = old_objects.iter().map(|o| (&o.id, o)).collect();
    if let Some(clash) = install.iter().find(|o| {
        own.contains(&o.id)
            && old_by_id
                .get(&o.id)
                .is_some_and(|before| before.body != o.body)
    }) {
        return Err(Error::new(format!(
            "installing revision {} would overwrite {} of the running revision {}",
            new.revision, clash.id, old.revision
        ))
        .with_help("the two revisions must render disjoint control-plane objects: check the revision names and the IstioOperator specs"));
    }
    Ok(())
}

/// Refuses Istio versions outside the support table for the cluster, and objects whose API
/// version the cluster does not serve.
fn check_kubernetes(policy: &Policy, k: Minor, new_objects: &[Object]) -> Result<()> {
    for side in [&policy.from, &policy.to] {
        let istio = Minor::new(side.version.major, side.version.minor);
        if let Some((lo, hi)) = k8s::istio_supports(istio) {
            if k < lo || k > hi {
                return Err(Error::new(format!(
                    "Istio {istio} supports Kubernetes {lo} to {hi}, not {k} (spec.kubernetesVersion)"
                ))
                .with_help("Istio's support table (istio.io, docs/releases/supported-releases): upgrade Kubernetes or Istio in hops that both revisions support"));
            }
        }
    }
    let mut bad = Vec::new();
    for o in new_objects {
        if let Err(why) = k8s::serves(k, &o.api_version, &o.id.kind) {
            let why = match why {
                k8s::NotServed::RemovedIn(v) => format!("removed in Kubernetes {v}"),
                k8s::NotServed::IntroducedIn(v) => format!("first served in Kubernetes {v}"),
            };
            bad.push(format!("{} uses {} ({why})", o.id, o.api_version));
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err(Error::new(format!(
        "Kubernetes {k} does not serve the API versions of {} rendered object{}:\n  {}",
        bad.len(),
        if bad.len() == 1 { "" } else { "s" },
        bad.join("\n  ")
    ))
    .with_help(format!("istioctl {} renders for older clusters: choose an Istio version that supports Kubernetes {k}", policy.to.version)))
}

fn refusal(dir: &str, v: &Violation, policy: &Policy) -> Error {
    let help = match v {
        Violation::ValidatorNotDefault { .. } => {
            "istiod-default-validator must call the istiod of the revision the default tag points at: render both from the same revision (values.defaultRevision and values.revisionTags are set by istio-canary; check what the istioctl renders)".to_string()
        }
        Violation::DanglingWebhook { .. } if dir.contains("-uninstall-") => {
            "move every tag and the default validator off the old revision before deleting it (defaultTag: true), or keep it (uninstallOld: false)".to_string()
        }
        Violation::DanglingWebhook { .. } => format!(
            "a webhook with failurePolicy Fail and no backend refuses every request it matches: the render of revision {} must include the Service (and istiod) its webhooks call",
            policy.to.revision
        ),
        Violation::Injection { .. } => format!(
            "the phases must keep every namespace injected by exactly one revision; check the IstioOperator specs of revisions {} and {}",
            policy.from.revision, policy.to.revision
        ),
        Violation::DeletedButReferenced { .. } => {
            "the new revision still uses it: render it from the new spec too (components.base), or keep the old revision (uninstallOld: false)".to_string()
        }
    };
    Error::new(format!("after phase {dir}, {v}")).with_help(help)
}

fn injection_table(named: &[String], states: &[MeshState]) -> Vec<InjectionRow> {
    let webhooks: Vec<_> = states.iter().map(MeshState::injector_webhooks).collect();
    named
        .iter()
        .map(|ns| InjectionRow {
            namespace: ns.clone(),
            states: states
                .iter()
                .zip(&webhooks)
                .map(|(s, w)| {
                    let labels = s.labels(&namespace_id(ns)).unwrap_or_default();
                    describe(&w.matching(&labels, &BTreeMap::new()))
                })
                .collect(),
        })
        .collect()
}

/// Summary, commands, checks and undo of a phase: all decided here, only written down by `emit`.
fn describe_phase(
    hop: &Hop,
    draft: Draft,
    index: usize,
    dir: String,
    before: &MeshState,
    after: &MeshState,
) -> Phase {
    let old = &hop.from.revision;
    let new = &hop.to.revision;
    let apply = format!("kubectl apply -k {dir}");
    // Server-side apply needs --force-conflicts only where the phase changes an object (or a
    // label) someone else wrote before the upgrade; the tool's own objects never conflict.
    let takes_over = draft.changes.iter().any(|c| match c {
        Change::Apply(o) => before
            .objects
            .get(&o.id)
            .is_some_and(|b| b.body != crate::mesh::as_stored(o).body),
        Change::Labels {
            id, via: Via::File, ..
        } => before.objects.contains_key(id),
        _ => false,
    });
    let ssa = format!(
        "kubectl apply --server-side --field-manager=istio-canary{} -k {dir}",
        if takes_over { " --force-conflicts" } else { "" }
    );
    let label_commands: Vec<String> = draft
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Labels {
                via: Via::Command(cmd),
                ..
            } => Some(cmd.clone()),
            _ => None,
        })
        .collect();
    let n_files = draft
        .changes
        .iter()
        .filter(|c| {
            !matches!(
                c,
                Change::Delete(_)
                    | Change::Labels {
                        via: Via::Command(_),
                        ..
                    }
            )
        })
        .count();
    let n_deletes = draft
        .changes
        .iter()
        .filter(|c| matches!(c, Change::Delete(_)))
        .count();
    let istio_ns = &hop.to.istio_namespace;
    let (summary, commands, checks, undo) = match draft.kind {
        PhaseKind::Crds => (
            format!("Upgrade the {n_files} shared Istio CRDs to {} first. They serve every revision; no later phase deletes them, and no rollback downgrades them.", hop.to.version),
            vec![apply.clone()],
            vec![format!("kubectl wait --for condition=established --timeout=60s -f {dir}/")],
            Some(format!("none needed: Istio's CRDs stay compatible with revision `{old}`, and no phase downgrades or deletes them.")),
        ),
        PhaseKind::Install => (
            format!("Install revision `{new}` beside `{old}`: its control plane and the shared base objects it updates. No workload moves yet; gateways and tags are later phases."),
            vec![apply.clone()],
            vec![format!("kubectl -n {istio_ns} rollout status deployment/{} --timeout=300s", new.istiod())],
            Some(format!(
                "nothing runs on revision `{new}` yet. To abandon the upgrade, delete the revision's own objects (their names carry `{new}`): `for f in {dir}/*{new}*.yaml; do kubectl delete --ignore-not-found -f \"$f\"; done`. Do not `kubectl delete -k {dir}`: it also holds shared objects revision `{old}` uses."
            )),
        ),
        PhaseKind::Migrate => {
            let ns_list = draft.namespaces.join(",");
            let mut commands = vec![apply.clone()];
            commands.extend(label_commands.iter().cloned());
            for ns in &draft.namespaces {
                commands.push(format!("kubectl rollout restart deployment,statefulset,daemonset -n {ns}"));
            }
            let mut checks = vec![
                format!("# must list nothing: a namespace of this wave not labelled {REV_LABEL}={new}"),
                format!("kubectl get namespaces -l '{NAME_LABEL} in ({ns_list}),{REV_LABEL}!={new}'"),
                format!("# must list nothing: {INJECTION_LABEL} with any value, even empty, overrides {REV_LABEL}"),
                format!("kubectl get namespaces -l '{NAME_LABEL} in ({ns_list}),{INJECTION_LABEL}'"),
            ];
            checks.push(format!("# every pod must show a sidecar of {}", new.istiod()));
            checks.push(format!("istioctl proxy-status --revision {new}"));
            let restore: Vec<String> = draft
                .namespaces
                .iter()
                .map(|ns| relabel_command(ns, before, after))
                .collect();
            (
                format!(
                    "Move namespaces {} to revision `{new}`: the directory sets the label `{REV_LABEL}={new}` (a label merge, nothing else of the Namespace changes){}, then restart their workloads so the new sidecars are injected.",
                    draft.namespaces.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                    if label_commands.is_empty() { String::new() } else { format!(", and `kubectl label` removes `{INJECTION_LABEL}`, which would otherwise keep them on the default revision") }
                ),
                commands,
                checks,
                Some(format!("`{}`, then restart the workloads of those namespaces again.", restore.join(" && "))),
            )
        }
        PhaseKind::Gateways => (
            format!("Move the gateways to revision `{new}`. Rendered gateways keep their names across revisions, so this upgrades them in place, after the workloads have moved."),
            vec![apply.clone()],
            vec![format!("kubectl -n {istio_ns} rollout status deployment --timeout=300s")],
            Some(format!(
                "re-apply the gateway objects of revision `{old}` (render them with istioctl {}); gateways keep their names, so this is an in-place rollback.",
                hop.from.version
            )),
        ),
        PhaseKind::DefaultTag => (
            format!(
                "Point the default revision tag (`istio-revision-tag-default`, `istiod-default-validator`) at `{new}`: `istio-injection=enabled` namespaces and validation move to it.{}",
                if draft.changes.iter().any(|c| before.objects.contains_key(c.id())) {
                    " Injectors of the old install that still match `istio-injection=enabled` are switched off the way `istioctl tag set default` does it, so no pod is matched by two injectors."
                } else {
                    ""
                }
            ),
            vec![apply.clone()],
            vec![
                format!("# must show {new} for both"),
                format!("kubectl get mutatingwebhookconfiguration istio-revision-tag-default validatingwebhookconfiguration istiod-default-validator -L {REV_LABEL}"),
            ],
            Some(match old {
                Revision::Named(r) => format!(
                    "point the default tag back with `istioctl tag set default --revision {r} --overwrite` (istioctl {}).",
                    hop.from.version
                ),
                Revision::Default => format!(
                    "`kubectl delete mutatingwebhookconfiguration istio-revision-tag-default && kubectl delete validatingwebhookconfiguration istiod-default-validator`, then re-apply the unrevisioned `istio-sidecar-injector` as istioctl {} renders it (this phase switched its selectors off).",
                    hop.from.version
                ),
            }),
        ),
        PhaseKind::Uninstall => {
            let mut checks = Vec::new();
            checks.push(format!("# must list nothing: namespaces still selecting revision {old}"));
            checks.push(match old {
                Revision::Named(r) => format!("kubectl get namespaces -l '{REV_LABEL}={r}'"),
                Revision::Default => format!("kubectl get namespaces -l '{INJECTION_LABEL}=enabled,!{REV_LABEL}'"),
            });
            let webhooks: Vec<String> = draft
                .changes
                .iter()
                .filter(|c| c.id().kind.ends_with("WebhookConfiguration"))
                .map(|c| c.id().name.clone())
                .collect();
            checks.push(format!(
                "# must list only what this phase deletes ({}): webhook configurations, tags included, still labelled for revision {old}",
                if webhooks.is_empty() { "nothing".to_string() } else { webhooks.join(", ") }
            ));
            checks.push(format!(
                "kubectl get mutatingwebhookconfigurations,validatingwebhookconfigurations -l '{REV_LABEL}={}'",
                old.label()
            ));
            checks.push(format!("# every proxy must show {}:", new.istiod()));
            checks.push("istioctl proxy-status".to_string());
            (
                format!(
                    "Delete revision `{old}`: the {n_deletes} objects the simulated end state no longer needs (what its render created that revision `{new}` does not render). Never CRDs or Namespaces. Run the checks first: they must show nothing still uses it."
                ),
                vec![format!("kubectl delete --ignore-not-found -f {dir}/")],
                checks,
                None,
            )
        }
    };
    let server_side = if draft.kind == PhaseKind::Uninstall {
        commands.clone()
    } else {
        let mut v = vec![ssa];
        v.extend(commands.iter().skip(1).cloned());
        v
    };
    Phase {
        index,
        hop: 0,
        kind: draft.kind,
        name: draft.name,
        dir,
        namespaces: draft.namespaces,
        changes: draft.changes,
        summary,
        commands,
        server_side,
        checks,
        undo,
    }
}

/// The `kubectl label` command that gives a namespace back the labels it had in `before`.
fn relabel_command(ns: &str, before: &MeshState, after: &MeshState) -> String {
    let id = namespace_id(ns);
    let was = before.labels(&id).unwrap_or_default();
    let now = after.labels(&id).unwrap_or_default();
    let mut parts = Vec::new();
    for key in [REV_LABEL, INJECTION_LABEL] {
        match (was.get(key), now.get(key)) {
            (Some(v), Some(n)) if v == n => {}
            (Some(v), _) => parts.push(format!("{key}={v}")),
            (None, Some(_)) => parts.push(format!("{key}-")),
            (None, None) => {}
        }
    }
    format!(
        "kubectl label namespace {ns} {} --overwrite",
        parts.join(" ")
    )
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
    let is_tag = crate::manifest::is_tag_object(&o);
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
