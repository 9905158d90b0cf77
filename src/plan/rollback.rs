//! Rollbacks and the live desired state, both derived from the kept states, never hand-written.
//! The rollback of phase N takes the cluster from `states[N]` back to `states[N-1]`; it is
//! simulated by the same function as the phases, with the expectations of the state before the
//! phase, and must end object for object where the phase started (CRDs aside: never rolled
//! back).
//!
//! Owns: the rollback changes, their simulation and end-state check, the promote point and
//! `live_changes`. Must not: word anything (commands and notes are `describe`'s).

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::{
    as_stored, kubectl_ref, template_patch_command, Change, ClusterState, DeleteRef, Via,
};
use crate::k8s::{self, Minor};
use crate::manifest::{Object, ObjectId};
use crate::mesh::{Evaluated, Violation};
use crate::plan::refusal::{Differs, Refusal};
use crate::plan::simulate::{self, Expected};
use crate::plan::{rollback_dir, sort_changes, Phase, PhaseKind, Plan, Result, Rollback};

/// The changes that take the cluster from `after` (the state phase `phase` leaves) back to
/// `before` (the state it started from), for every object the phase touched: an object it changed
/// or deleted is re-applied as it was; an object it created is deleted (a stub with an API version
/// the cluster serves), a webhook configuration switched off by the files first when they
/// restore another (so an injector or validator restored and one being deleted never both
/// apply); labels it patched are patched back (a file sets what `before` had, a
/// `kubectl label … KEY-` command removes what `before` lacked: never a null label). CRDs are never
/// rolled back. Objects that existed before the phase are never deleted.
pub fn rollback_changes(
    phase: &Phase,
    before: &ClusterState,
    after: &ClusterState,
    kubernetes: Option<Minor>,
) -> Vec<Change> {
    let mut whole: BTreeSet<&ObjectId> = BTreeSet::new();
    let mut labelled: BTreeSet<&ObjectId> = BTreeSet::new();
    let mut templated: BTreeSet<&ObjectId> = BTreeSet::new();
    for c in &phase.changes {
        match c {
            Change::Labels { id, .. } => {
                labelled.insert(id);
            }
            Change::Template { id, .. } => {
                templated.insert(id);
            }
            _ => {
                whole.insert(c.id());
            }
        }
    }
    let mut out = Vec::new();
    let mut created_webhooks = Vec::new();
    for id in &whole {
        if id.kind == "CustomResourceDefinition" {
            continue;
        }
        match (before.objects.get(*id), after.objects.get(*id)) {
            (Some(b), Some(a)) if b == a => {}
            (Some(b), _) => out.push(Change::Apply((**b).clone())),
            (None, Some(a)) => {
                if is_webhook_config(&a.id) {
                    created_webhooks.push(a);
                }
                out.push(Change::Delete(DeleteRef {
                    api_version: k8s::delete_api_version(
                        &a.id.group,
                        &a.id.kind,
                        &a.api_version,
                        kubernetes,
                    ),
                    id: a.id.clone(),
                }))
            }
            (None, None) => {}
        }
    }
    // When the rollback's files restore a webhook configuration (a legacy injector the phase
    // switched off, say), each one the phase created is switched off by the same files before it
    // is deleted: the restored and the created never both inject a pod or validate a write.
    let restores = out
        .iter()
        .any(|c| matches!(c, Change::Apply(o) if is_webhook_config(&o.id)));
    if restores {
        for a in created_webhooks {
            out.push(Change::Apply(crate::istio::neutralize_injector(a)));
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
    for id in templated.difference(&whole) {
        let (Some(b), Some(a)) = (before.objects.get(*id), after.objects.get(*id)) else {
            continue;
        };
        let back = |field: &str| -> BTreeMap<String, Option<String>> {
            let (was, now) = (template_map(b, field), template_map(a, field));
            let mut patch: BTreeMap<String, Option<String>> = was
                .iter()
                .filter(|(k, v)| now.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
            patch.extend(
                now.keys()
                    .filter(|k| !was.contains_key(*k))
                    .map(|k| (k.clone(), None)),
            );
            patch
        };
        let (labels, annotations) = (back("labels"), back("annotations"));
        if labels.is_empty() && annotations.is_empty() {
            continue;
        }
        out.push(Change::Template {
            id: (*id).clone(),
            api_version: a.api_version.clone(),
            command: template_patch_command(id, &labels, &annotations),
            labels,
            annotations,
        });
    }
    sort_changes(&mut out);
    out
}

fn is_webhook_config(id: &ObjectId) -> bool {
    matches!(
        id.kind.as_str(),
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"
    )
}

/// A workload's pod-template labels or annotations (`field`).
fn template_map(o: &Object, field: &str) -> BTreeMap<String, String> {
    match crate::manifest::value_at(&o.body, &["spec", "template", "metadata", field]) {
        Some(serde_yaml::Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), crate::cluster::scalar(v)?)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `kubectl label namespace shop istio.io/rev-`: removes labels, the way the migrate phase does.
fn label_remove_command(id: &ObjectId, keys: &BTreeSet<String>) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("{k}-")).collect();
    format!("kubectl label {} {}", kubectl_ref(id), keys.join(" "))
}

/// Simulates a rollback from `after` with the one simulation (`expect`, the expectations of the
/// state before the phase, after every step; no dangling reference for its deletes); at the end,
/// the state must equal `before` object for object, except the CRDs, which stay as the phase
/// left them. `known` holds the violations state 0 already had (not blamed on the rollback).
/// Public so that tests can show its refusals on rollbacks the planner would never derive.
pub fn simulate_rollback(
    dir: &str,
    changes: &[Change],
    before: &ClusterState,
    after: &ClusterState,
    expect: &Expected,
    known: &BTreeSet<Violation>,
) -> Result<ClusterState> {
    rollback_from(dir, changes, (before, after, None), expect, known)
}

/// `simulate_rollback`, resuming from what the simulation knew of `after` (and the
/// expectations it was judged by) when `seen` holds it.
fn rollback_from(
    dir: &str,
    changes: &[Change],
    (before, after, seen): (
        &ClusterState,
        &ClusterState,
        Option<(&Evaluated, &Expected)>,
    ),
    expect: &Expected,
    known: &BTreeSet<Violation>,
) -> Result<ClusterState> {
    let (state, _) =
        simulate::run_from(after, seen, changes, expect, expect, known).map_err(|violation| {
            Refusal::UnsafeRollback {
                dir: dir.to_string(),
                violation,
            }
        })?;
    // What the state must be: `before`, with the CRDs as `after` has them. Only the objects
    // where the end state differs from that can differ (the maps' diffs skip what they share);
    // each is compared as the API server stores it, in identity order.
    let is_crd = |id: &ObjectId| id.kind == "CustomResourceDefinition";
    let differing: BTreeSet<&ObjectId> = (before.objects.diff(&state.objects))
        .map(diff_key)
        .filter(|id| !is_crd(id))
        .chain(
            after
                .objects
                .diff(&state.objects)
                .map(diff_key)
                .filter(|id| is_crd(id)),
        )
        .collect();
    for id in differing {
        let wanted = if is_crd(id) { after } else { before };
        let stored = |s: &ClusterState| s.get(id).map(as_stored);
        let how = match (stored(wanted), stored(&state)) {
            (Some(e), Some(g)) if e == g => continue,
            (Some(_), Some(_)) => Differs::Content,
            (Some(_), None) => Differs::Missing,
            (None, Some(_)) => Differs::LeftBehind,
            (None, None) => continue,
        };
        return Err(Refusal::RollbackDiffers {
            dir: dir.to_string(),
            object: id.clone(),
            how,
        });
    }
    Ok(state)
}

/// The identity an entry of a diff of two states is about.
pub(crate) fn diff_key<'a>(
    item: imbl::ordmap::DiffItem<'a, 'a, ObjectId, std::sync::Arc<Object>>,
) -> &'a ObjectId {
    match item {
        imbl::ordmap::DiffItem::Add(id, _) | imbl::ordmap::DiffItem::Remove(id, _) => id,
        imbl::ordmap::DiffItem::Update { old: (id, _), .. } => id,
    }
}

/// Derives and simulates the rollback of every phase but the uninstalls (phase N's changes on
/// the state before it, then the rollback's), in every hop: a hop's phases roll back to where
/// the hop started, never past an earlier hop's uninstall. Returns them with the state each
/// ends in.
/// `evaluated[n]`: what the simulation knew of `plan.states[n]` (each rollback resumes from the
/// state it starts at).
pub fn plan_rollbacks(
    plan: &Plan,
    evaluated: &[Evaluated],
    known: &BTreeSet<Violation>,
    jobs: std::num::NonZeroUsize,
) -> Result<(Vec<Rollback>, Vec<ClusterState>)> {
    let phases: Vec<&Phase> = plan
        .phases
        .iter()
        .filter(|p| p.kind != PhaseKind::Uninstall)
        .collect();
    // Each rollback starts from a kept state and reads nothing another one makes, so they are
    // simulated on `jobs` threads; the results come back in phase order, and the error is the
    // first phase's, as in a serial run.
    let results = crate::jobs::map(&phases, jobs, |_, phase| {
        let n = phase.index;
        let (before, after) = (&plan.states[n - 1], &plan.states[n]);
        let rollback = Rollback {
            phase_index: n,
            dir: rollback_dir(phase),
            changes: rollback_changes(phase, before, after, plan.kubernetes_version),
        };
        let seen = evaluated.get(n).map(|e| (e, &plan.expected[n]));
        let end = rollback_from(
            &rollback.dir,
            &rollback.changes,
            (before, after, seen),
            &plan.expected[n - 1],
            known,
        )?;
        Ok((rollback, end))
    });
    let mut rollbacks = Vec::with_capacity(results.len());
    let mut ends = Vec::with_capacity(results.len());
    for result in results {
        let (rollback, end) = result?;
        rollbacks.push(rollback);
        ends.push(end);
    }
    Ok((rollbacks, ends))
}

/// The phase `spec.promote` (or `--promote`) names, by index, name or directory.
pub fn resolve_promote(plan: &Plan, promote: &crate::policy::Promote) -> Result<usize> {
    use crate::policy::PhaseRef;
    let found = plan.phases.iter().find(|p| match &promote.phase {
        PhaseRef::Index(i) => p.index as u64 == *i,
        PhaseRef::Name(n) => p.name == *n || p.dir == *n,
    });
    if let Some(p) = found {
        return Ok(p.index);
    }
    Err(Refusal::PromoteUnknown {
        source: promote.source,
        phase: promote.phase.to_string(),
        phases: plan
            .phases
            .iter()
            .map(|p| (p.index, p.name.clone()))
            .collect(),
        location: promote.location.clone(),
    })
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
    // The namespaces the waves relabel (not those that only follow the default tag: the plan
    // never writes their labels) and the Gateways whose own label they set.
    let named: BTreeSet<ObjectId> = plan
        .phases
        .iter()
        .filter(|p| p.kind == PhaseKind::Migrate)
        .flat_map(|p| {
            p.namespaces
                .iter()
                .map(|n| crate::cluster::namespace_id(n))
                .chain(p.changes.iter().filter_map(|c| match c {
                    Change::Labels {
                        id, via: Via::File, ..
                    } => Some(id.clone()),
                    _ => None,
                }))
        })
        .collect();
    let managed = managed_labels(plan);
    let mut out: Vec<Change> = state
        .objects
        .values()
        .filter(|o| named.contains(&o.id) || plan.rendered.contains(&o.id))
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
                Change::Apply((**o).clone())
            }
        })
        .collect();
    sort_changes(&mut out);
    out
}
