//! The plan in words: each phase's summary, the exact commands that run it (client-side and
//! server-side apply), the checks that show it worked and what its rollback cannot do; each
//! rollback's commands, checks and note; the assumptions and warnings; and every refusal's
//! message and help line. Read from the plan; nothing here is decided.
//!
//! Owns: every sentence and shell command a user reads about a plan (PLAN.md, plan.json, stderr),
//! and the one place refusals become `Error`s. Must not: change the plan, decide what a phase
//! does, or lay out files (that is `layout`).

use std::collections::BTreeMap;

use crate::cluster::{as_stored, kubectl_ref, Change, ClusterState, Via};
use crate::error::Error;
use crate::istio::{
    is_default_tag_webhook, is_tag_object, NodeAgent, Revision, AMBIENT_MODE,
    AMBIENT_UPGRADE_SINCE, DATAPLANE_MODE_LABEL, DEFAULT_TAG_WEBHOOK, DEFAULT_VALIDATOR,
    INJECTION_LABEL, REV_LABEL,
};
use crate::k8s::{NotServed, NAME_LABEL};
use crate::mesh::GatewaySelects;
use crate::mesh::{describe as injectors, Violation};
use crate::plan::refusal::{Ambiguous, Differs, PhaseAt, Refusal};
use crate::plan::{Assumption, Phase, PhaseKind, Plan, Rollback};

/// The field manager of every server-side apply the plan runs.
pub const FIELD_MANAGER: &str = "istio-canary";

/// What a reviewer reads about one phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseText {
    pub summary: String,
    /// What to run, in order (client-side `kubectl apply`).
    pub commands: Vec<String>,
    /// The same phase for `kubectl apply --server-side`.
    pub server_side: Vec<String>,
    /// Commands that check the phase worked, each after a comment saying what it must show.
    pub checks: Vec<String>,
    /// What the phase's rollback cannot do (CRDs kept, workloads to restart), if anything.
    pub undo: Option<String>,
    /// What an Argo CD or Flux user must know beyond "the controller applies the directory":
    /// a label removal no controller runs, if the phase has one.
    pub controller: Option<String>,
    /// The earlier phases (directories) whose files apply an object this phase changes or
    /// deletes: under Flux their Kustomizations, once resumed, re-apply those files every
    /// interval and would undo this phase, so they are suspended first.
    pub flux_suspend: Vec<String>,
}

/// What a reviewer reads about one rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackText {
    /// The 1-based index of the phase the rollback undoes.
    pub phase_index: usize,
    /// What to run, in order (client-side `kubectl apply`); empty when there is nothing to undo.
    pub commands: Vec<String>,
    /// The same with `kubectl apply --server-side`.
    pub server_side: Vec<String>,
    /// Commands that check the rollback worked.
    pub checks: Vec<String>,
    /// What the rollback does not do, if anything.
    pub note: Option<String>,
}

/// The whole plan in words: `phases[i]` for `plan.phases[i]`, `rollbacks[i]` for
/// `plan.rollbacks[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    pub phases: Vec<PhaseText>,
    pub rollbacks: Vec<RollbackText>,
    pub assumptions: Vec<String>,
    pub warnings: Vec<String>,
    /// What the stderr summary says besides the warnings: the checks that could not be made.
    pub notes: Vec<String>,
    /// PLAN.md's injection table, namespaces that behave alike on one row (`injection_groups`).
    pub injection: Vec<InjectionGroup>,
    /// The same for "phase N, then rollback N".
    pub rollback_injection: Vec<InjectionGroup>,
}

/// One row of PLAN.md's injection table: the namespaces it stands for, in words, and the cell of
/// each state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InjectionGroup {
    pub label: String,
    pub states: Vec<String>,
}

/// Up to this many names, a list of namespaces is shown name by name; past it, by its count and
/// where the full list is.
pub const NAMES_SHOWN: usize = 10;

/// Every text of the plan.
pub fn describe(plan: &Plan) -> Texts {
    let rollbacks: Vec<RollbackText> = plan.rollbacks.iter().map(|rb| rollback(plan, rb)).collect();
    let writes = Writes::of(plan);
    let phases = plan
        .phases
        .iter()
        .map(|p| {
            let mut text = phase(plan, p);
            text.flux_suspend = writes.superseded(plan, p);
            // A phase with a rollback is undone by it: its undo line is what the rollback
            // cannot do.
            if let Some(i) = plan.rollbacks.iter().position(|r| r.phase_index == p.index) {
                text.undo = rollbacks[i].note.clone();
            }
            text
        })
        .collect();
    Texts {
        phases,
        rollbacks,
        assumptions: plan.assumptions.iter().map(assumption).collect(),
        warnings: plan.warnings.iter().map(|w| warning(plan, w)).collect(),
        notes: plan
            .assumptions
            .iter()
            .filter(|a| matches!(a, Assumption::SupportUnknown { .. }))
            .map(assumption)
            .collect(),
        injection: injection_groups(plan, &plan.injection),
        rollback_injection: injection_groups(plan, &plan.rollback_injection),
    }
}

/// Where a namespace of the injection table comes from: the wave that moves it (by the name and
/// directory of its first migrate phase), or no wave: it follows a tag, or the default revision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Origin {
    Wave { name: String, dir: String },
    Default,
    Tag(String),
}

/// The wave name of a migrate phase: `migrate-<wave>`, with `-<revision>` after it in a plan of
/// several hops.
fn wave_name(plan: &Plan, phase: &Phase) -> String {
    let name = phase.name.strip_prefix("migrate-").unwrap_or(&phase.name);
    let suffix = format!("-{}", plan.hop_of(phase).to.revision.label());
    match name.strip_suffix(&suffix) {
        Some(wave) if plan.hops.len() > 1 => wave.to_string(),
        _ => name.to_string(),
    }
}

/// PLAN.md's injection table, grouped. Namespaces behave alike when their whole row is the same
/// (the tag they follow and the cell of every state). Rows are gathered by origin (each wave, in
/// plan order; namespaces in no wave that follow the default revision; those that follow each
/// tag), and within an origin the row most of its namespaces have (the first, on a tie) is its
/// usual row: one table row, naming its namespaces when there are at most `NAMES_SHOWN`, else
/// their count and the wave's directory, which holds a file per namespace. Every other row of the
/// origin is an exception and names every namespace it has, as does every row of tag followers.
pub fn injection_groups(plan: &Plan, rows: &[crate::plan::InjectionRow]) -> Vec<InjectionGroup> {
    let mut wave_of: BTreeMap<&str, Origin> = BTreeMap::new();
    for p in plan.phases.iter().filter(|p| p.kind == PhaseKind::Migrate) {
        for ns in &p.namespaces {
            wave_of.entry(ns.as_str()).or_insert_with(|| Origin::Wave {
                name: wave_name(plan, p),
                dir: p.dir.clone(),
            });
        }
    }
    // Origins in order of their first namespace; within each, distinct rows in order of their
    // first namespace, with their namespaces.
    // A row: the tag and the cells.
    type Row<'a> = (&'a Option<String>, &'a Vec<std::sync::Arc<str>>);
    // Each distinct row of an origin, with its namespaces.
    type Rows<'a> = Vec<(Row<'a>, Vec<&'a str>)>;
    let mut origins: Vec<(Origin, Rows<'_>)> = Vec::new();
    let mut origin_index: BTreeMap<Origin, usize> = BTreeMap::new();
    let mut row_index: BTreeMap<(usize, Row<'_>), usize> = BTreeMap::new();
    for r in rows {
        let origin = match (wave_of.get(r.namespace.as_str()), &r.tag) {
            (Some(o), _) => o.clone(),
            (None, Some(t)) => Origin::Tag(t.clone()),
            (None, None) => Origin::Default,
        };
        let o = *origin_index.entry(origin.clone()).or_insert_with(|| {
            origins.push((origin, Vec::new()));
            origins.len() - 1
        });
        let key = (&r.tag, &r.states);
        let list = &mut origins[o].1;
        let i = *row_index.entry((o, key)).or_insert_with(|| {
            list.push((key, Vec::new()));
            list.len() - 1
        });
        list[i].1.push(r.namespace.as_str());
    }
    let mut out = Vec::new();
    for (origin, list) in &origins {
        // The usual row: the most namespaces, the first on a tie.
        let usual = list.iter().enumerate().fold(0, |best, (i, (_, nss))| {
            if nss.len() > list[best].1.len() {
                i
            } else {
                best
            }
        });
        let who = match origin {
            Origin::Wave { name, .. } => format!("wave `{name}`"),
            Origin::Default => "in no wave, follows the default revision".to_string(),
            Origin::Tag(t) => format!("in no wave, follows tag `{t}`"),
        };
        let order = std::iter::once(usual).chain((0..list.len()).filter(|&i| i != usual));
        for i in order {
            let ((_, states), nss) = &list[i];
            let names: Vec<String> = nss.iter().map(|n| n.to_string()).collect();
            let label = if i != usual {
                format!("{who}, unlike the rest of it: {}", quoted_list(&names))
            } else if nss.len() <= NAMES_SHOWN || matches!(origin, Origin::Tag(_)) {
                format!("{who}: {}", quoted_list(&names))
            } else {
                let but = if list.len() > 1 {
                    ", all but the exceptions below"
                } else {
                    ""
                };
                match origin {
                    Origin::Wave { dir, .. } => format!(
                        "{who}: {} namespaces (one file each in `{dir}/`{but})",
                        nss.len()
                    ),
                    _ => format!(
                        "{who}: {} namespaces (plan.json's `injection.rows` lists them{but})",
                        nss.len()
                    ),
                }
            };
            out.push(InjectionGroup {
                label,
                states: states.iter().map(|c| c.to_string()).collect(),
            });
        }
    }
    out
}

/// A problem state 0 already has, in words, with what it means when that is knowable: a webhook
/// whose every hook has `failurePolicy: Ignore` cannot block anything, so a missing backend only
/// means its checks do not run.
pub fn warning(plan: &Plan, v: &Violation) -> String {
    let Violation::DanglingWebhook { webhook, .. } = v else {
        return v.to_string();
    };
    let ignored = plan.states[0].objects.get(webhook).is_some_and(|o| {
        match o
            .body
            .get("webhooks")
            .and_then(serde_yaml::Value::as_sequence)
        {
            Some(hooks) if !hooks.is_empty() => hooks.iter().all(|h| {
                h.get("failurePolicy").and_then(serde_yaml::Value::as_str) == Some("Ignore")
            }),
            _ => false,
        }
    });
    if ignored {
        format!(
            "{v} (harmless: its failurePolicy is Ignore, so kube-apiserver lets every request it matches through unchecked)"
        )
    } else {
        v.to_string()
    }
}

/// An assumption in words.
pub fn assumption(a: &Assumption) -> String {
    match a {
        Assumption::CanonicalLabels {
            key,
            value,
            revision,
        } => format!(
            "No cluster inventory was given: every namespace in the waves is assumed to carry exactly `{key}={value}` before the upgrade, and nothing else in the cluster is assumed to use revision `{revision}`."
        ),
        Assumption::Inventory {
            path,
            held,
            from_render,
        } => {
            let mut text = format!(
                "The cluster before the upgrade is the inventory `{path}` for {}.",
                held.join(", ")
            );
            if !from_render.is_empty() {
                text.push_str(&format!(
                    " The inventory holds no {}: those are assumed to be as the old spec renders them.",
                    from_render.join(", ")
                ));
            }
            text.push_str(" Running pods are assumed to have been injected by the webhooks the inventory shows (it holds no Pods). Check: `istioctl proxy-status` lists every proxy with the istiod, and so the revision, it is connected to.");
            text
        }
        Assumption::TagUsers { tags, revision } => {
            let selectors: Vec<String> = tags.iter().map(|t| format!("`{REV_LABEL}={t}`")).collect();
            format!(
                "No cluster inventory was given: the revision tags {} are assumed to exist and point at revision `{revision}` (`istioctl tag list` shows them), and which namespaces select them ({}) is not known: moving a tag moves every namespace that selects it, and its workloads need a restart to get the new sidecars. Give an inventory (spec.inventory) to have them simulated and restarted by name. Check: `kubectl get namespaces -l '{REV_LABEL} in ({})'`.",
                quoted_list(tags),
                selectors.join(", "),
                tags.join(",")
            )
        }
        Assumption::AmbientUnknown => format!(
            "No cluster inventory was given: which namespaces are in ambient mode is not known. Namespaces labelled `{DATAPLANE_MODE_LABEL}={AMBIENT_MODE}` (and no sidecar injection label: a pod that gets a sidecar is not captured by ambient) are served by ztunnel, not an injector: they follow ztunnel to the new revision in the ztunnel phase, with no relabel and no restart. Never put them in a wave: its `{REV_LABEL}` label would make the sidecar injector match them. Check: `kubectl get namespaces -l {DATAPLANE_MODE_LABEL}={AMBIENT_MODE} -L {REV_LABEL},{INJECTION_LABEL}`."
        ),
        Assumption::SupportUnknown { istio, kubernetes } => format!(
            "istio-canary's support table does not know Istio {istio}: whether it supports Kubernetes {kubernetes} (spec.kubernetesVersion) was not checked. Check the supported releases on istio.io (docs/releases/supported-releases) before applying."
        ),
        Assumption::InstallAdded {
            objects,
            revision,
            declared,
        } => {
            let names: Vec<String> = objects.iter().map(|id| format!("`{id}`")).collect();
            let kinds: Vec<String> = objects
                .iter()
                .map(|id| format!("{}/{}", id.kind.to_lowercase(), id.name))
                .collect();
            format!(
                "{} the cluster holds {}, pointing at revision `{revision}` (`istioctl install` creates them; `manifest generate` does not render them). Every rollback puts them back as they were. Check: `kubectl get {} -L {REV_LABEL}` must show `{}` for each; if it does not, set `spec.from.defaultTag: false`.",
                if *declared {
                    "As the policy says (`spec.from.defaultTag: true`),"
                } else {
                    "The old revision is assumed to own the default tag:"
                },
                names.join(", "),
                kinds.join(" "),
                revision.label()
            )
        }
    }
}

fn server_side_apply(dir: &str, takes_over: bool) -> String {
    format!(
        "kubectl apply --server-side --field-manager={FIELD_MANAGER}{} -k {dir}",
        if takes_over { " --force-conflicts" } else { "" }
    )
}

fn label_commands(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Labels {
                via: Via::Command(cmd),
                ..
            } => Some(cmd.clone()),
            _ => None,
        })
        .collect()
}

/// The `kubectl patch` of each pod-template change (restarts and per-workload moves), in order;
/// past `NAMES_SHOWN` of them, one line that runs them all from plan.json, which lists each
/// (`istio-canary show DIR --restarts`), so PLAN.md does not grow with the workloads.
fn template_commands(changes: &[Change], dir: &str) -> Vec<String> {
    let commands: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Template { command, .. } => Some(command.clone()),
            _ => None,
        })
        .collect();
    if commands.len() <= NAMES_SHOWN {
        return commands;
    }
    vec![
        format!(
            "# the {} pod-template patches of {dir}/, a `kubectl patch` each (plan.json lists them), in order:",
            commands.len()
        ),
        format!("istio-canary show {dir} --out . --restarts | sh -e"),
    ]
}

/// A word of a shell command: as it is when it holds only characters no shell reads specially,
/// single-quoted otherwise.
fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/=-:".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// The `kubectl label … --overwrite` command for each label patch carried by a file: how a
/// client-side user applies it. `kubectl apply` of the partial object would not do: its
/// three-way merge deletes every label and annotation the live object's last-applied
/// configuration holds and the file lacks (`cluster::client_side_apply`), while `kubectl label`
/// and server-side apply merge (`cluster::ClusterState::apply`).
pub fn file_label_commands(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Labels {
                id,
                set,
                via: Via::File,
                ..
            } if !set.is_empty() => {
                let pairs: Vec<String> = set
                    .iter()
                    .map(|(k, v)| shell_word(&format!("{k}={v}")))
                    .collect();
                Some(format!(
                    "kubectl label {} {} --overwrite",
                    kubectl_ref(id),
                    pairs.join(" ")
                ))
            }
            _ => None,
        })
        .collect()
}

/// The namespaces whose label patches are files of the directory (`Via::File`), when the
/// directory holds nothing else: what `kubectl get -f DIR/` and `kubectl label -f DIR/` visit.
fn dir_namespaces(changes: &[Change]) -> Option<std::collections::BTreeSet<&str>> {
    if !only_label_files(changes) {
        return None;
    }
    let mut out = std::collections::BTreeSet::new();
    for c in changes {
        if let Change::Labels {
            id, via: Via::File, ..
        } = c
        {
            if id.kind != "Namespace" || !id.group.is_empty() {
                return None;
            }
            out.insert(id.name.as_str());
        }
    }
    Some(out)
}

/// Whether `names` are more than `NAMES_SHOWN` and exactly the namespaces of the directory's
/// files: then a command over the directory (`-f DIR/`) stands for one command per name.
fn whole_dir(changes: &[Change], names: &[&str]) -> bool {
    names.len() > NAMES_SHOWN
        && dir_namespaces(changes)
            .is_some_and(|d| d.len() == names.len() && names.iter().all(|n| d.contains(n)))
}

/// The shell words that print the namespace of every file of `dir`, one per line.
fn dir_names(dir: &str) -> String {
    format!("kubectl get -f {dir}/ -o name | cut -d/ -f2")
}

/// The restart of every workload of the namespaces `names`: one command each, or, for the whole
/// directory's namespaces past `NAMES_SHOWN`, one loop over the directory.
fn restart_commands(changes: &[Change], names: &[String], dir: &str) -> Vec<String> {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    if whole_dir(changes, &refs) {
        return vec![format!(
            "{} | xargs -n1 kubectl rollout restart deployment,statefulset,daemonset -n",
            dir_names(dir)
        )];
    }
    names
        .iter()
        .map(|ns| format!("kubectl rollout restart deployment,statefulset,daemonset -n {ns}"))
        .collect()
}

/// A label selector `kubernetes.io/metadata.name in (…),<rest>` for `names`, quoted for the
/// shell: the names as they are, or, for the whole directory's namespaces past `NAMES_SHOWN`,
/// read from the directory by a command substitution.
fn names_selector(changes: &[Change], names: &[&str], dir: &str, rest: &str) -> String {
    if whole_dir(changes, names) {
        // Single quotes around the selector (`!` stays literal in every shell), double quotes
        // around the substitution.
        format!(
            "'{NAME_LABEL} in ('\"$({} | paste -sd, -)\"'),{rest}'",
            dir_names(dir)
        )
    } else {
        format!("'{NAME_LABEL} in ({}),{rest}'", names.join(","))
    }
}

/// Namespaces in a sentence: by name up to `NAMES_SHOWN`, else their count and `listed` (where
/// the whole list is).
fn names_or_count(names: &[String], listed: &str) -> String {
    if names.len() <= NAMES_SHOWN {
        quoted_list(names)
    } else {
        format!("{} namespaces ({listed})", names.len())
    }
}

/// The client-side `kubectl label` commands of a directory's label files and of its label
/// commands. Past `NAMES_SHOWN` namespaces, when every file sets the same labels (and every
/// label command of the namespaces does the same), one `kubectl label -f DIR/` stands for each.
fn dir_label_commands(changes: &[Change], dir: &str) -> (Vec<String>, Vec<String>) {
    let files = file_label_commands(changes);
    let commands = label_commands(changes);
    let Some(names) = dir_namespaces(changes) else {
        return (files, commands);
    };
    if names.len() <= NAMES_SHOWN {
        return (files, commands);
    }
    let args = |set: &BTreeMap<String, String>, remove: &std::collections::BTreeSet<String>| {
        let mut words: Vec<String> = set
            .iter()
            .map(|(k, v)| shell_word(&format!("{k}={v}")))
            .collect();
        words.extend(remove.iter().map(|k| shell_word(&format!("{k}-"))));
        words.join(" ")
    };
    // Every file sets the same labels.
    let sets: std::collections::BTreeSet<&BTreeMap<String, String>> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Labels {
                set,
                via: Via::File,
                ..
            } => Some(set),
            _ => None,
        })
        .collect();
    let files = match sets.iter().next() {
        Some(set) if sets.len() == 1 && !set.is_empty() => vec![format!(
            "kubectl label -f {dir}/ {} --overwrite",
            args(set, &Default::default())
        )],
        _ => files,
    };
    // Every namespace of the directory has the same label command, and nothing else has one.
    let by_command: Vec<(&str, String)> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Labels {
                id,
                set,
                remove,
                via: Via::Command(_),
                ..
            } => Some((id.name.as_str(), args(set, remove))),
            _ => None,
        })
        .collect();
    let same: std::collections::BTreeSet<&String> = by_command.iter().map(|(_, a)| a).collect();
    let covered: Vec<&str> = by_command.iter().map(|(n, _)| *n).collect();
    let commands = match same.iter().next() {
        Some(a) if same.len() == 1 && whole_dir(changes, &covered) => {
            vec![format!("kubectl label -f {dir}/ {a}")]
        }
        _ => commands,
    };
    (files, commands)
}

/// Whether every file a list of changes writes is a label patch (no whole object).
fn only_label_files(changes: &[Change]) -> bool {
    !changes.iter().any(|c| matches!(c, Change::Apply(_)))
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Summary, commands and checks of a phase (its undo line is its rollback's note).
pub fn phase(plan: &Plan, phase: &Phase) -> PhaseText {
    let hop = plan.hop_of(phase);
    let before = &plan.states[phase.index - 1];
    let old = &hop.from.revision;
    let new = &hop.to.revision;
    let dir = &phase.dir;
    let apply = format!("kubectl apply -k {dir}");
    // Server-side apply needs --force-conflicts only where the phase changes an object (or a
    // label) someone else wrote before the upgrade; the tool's own objects never conflict.
    let takes_over = phase.changes.iter().any(|c| match c {
        Change::Apply(o) => before
            .objects
            .get(&o.id)
            .is_some_and(|b| b.body != as_stored(o).body),
        Change::Labels {
            id, via: Via::File, ..
        } => before.objects.contains_key(id),
        _ => false,
    });
    let label_commands = label_commands(&phase.changes);
    let n_files = phase
        .changes
        .iter()
        .filter(|c| {
            !matches!(
                c,
                Change::Delete(_)
                    | Change::Template { .. }
                    | Change::Labels {
                        via: Via::Command(_),
                        ..
                    }
            )
        })
        .count();
    let n_deletes = phase.deletes().count();
    let istio_ns = &hop.to.istio_namespace;
    let (summary, commands, checks) = match phase.kind {
        PhaseKind::Crds => (
            format!("Upgrade the {n_files} shared Istio CRDs to {} first. They serve every revision; no later phase deletes them, and no rollback downgrades them.", hop.to.version),
            vec![apply.clone()],
            vec![format!("kubectl wait --for condition=established --timeout=60s -f {dir}/")],
        ),
        PhaseKind::Install => (
            format!("Install revision `{new}` beside `{old}`: its control plane and the shared base objects it updates. No workload moves yet; gateways and tags are later phases."),
            vec![apply.clone()],
            vec![format!("kubectl -n {istio_ns} rollout status deployment/{} --timeout=300s", new.istiod())],
        ),
        PhaseKind::Cni | PhaseKind::Ztunnel => node_agent_phase(phase, before, hop, &apply),
        PhaseKind::Migrate => {
            let names: Vec<&str> = phase.namespaces.iter().map(String::as_str).collect();
            // Client-side: `kubectl label` for each relabel (see `file_label_commands`), or one
            // over the directory for a wave past `NAMES_SHOWN`.
            let (mut commands, removals) = dir_label_commands(&phase.changes, dir);
            commands.extend(removals);
            let restarts = template_commands(&phase.changes, dir);
            if restarts.is_empty() {
                commands.extend(restart_commands(&phase.changes, &phase.namespaces, dir));
            } else {
                // With an inventory: one deterministic pod-template patch per workload whose
                // injection the relabel changes (one rollout each; running it again changes nothing).
                commands.extend(restarts);
            }
            let mut checks = Vec::new();
            if !phase.namespaces.is_empty() {
                checks.extend([
                    format!("# must list nothing: a namespace of this wave not labelled {REV_LABEL}={new}"),
                    format!("kubectl get namespaces -l {}", names_selector(&phase.changes, &names, dir, &format!("{REV_LABEL}!={new}"))),
                    format!("# must list nothing: {INJECTION_LABEL} with any value, even empty, overrides {REV_LABEL}"),
                    format!("kubectl get namespaces -l {}", names_selector(&phase.changes, &names, dir, INJECTION_LABEL)),
                ]);
            }
            checks.extend([
                format!("# every pod must show a sidecar of {}", new.istiod()),
                format!("istioctl proxy-status --revision {new}"),
            ]);
            let summary = if phase.namespaces.is_empty() {
                format!(
                    "Move to revision `{new}` what this wave names one by one: {}.",
                    one_by_one(&phase.changes).join(", ")
                )
            } else {
                format!(
                    "Move {} to revision `{new}`: set the label `{REV_LABEL}={new}` (a label merge: `kubectl label`, or the directory applied server-side or by Argo CD or Flux; never a client-side `kubectl apply` of the directory, whose three-way merge would delete the namespace owner's labels){}, then restart their workloads so the new sidecars are injected.",
                    if phase.namespaces.len() <= NAMES_SHOWN {
                        format!("namespaces {}", quoted_list(&phase.namespaces))
                    } else {
                        format!("the {} namespaces of this wave (one file each in `{dir}/`; plan.json's `namespaces` lists them)", phase.namespaces.len())
                    },
                    if label_commands.is_empty() { String::new() } else { format!(", and `kubectl label` removes `{INJECTION_LABEL}`, which would otherwise keep them on the default revision") }
                )
            };
            (summary, commands, checks)
        }
        PhaseKind::Gateways if has_cutover(plan, phase) => {
            let (summary, checks) = canary_gateways(plan, phase, false);
            (summary, vec![apply.clone()], checks)
        }
        PhaseKind::GatewayCutover => {
            let (summary, checks) = canary_gateways(plan, phase, true);
            (summary, vec![apply.clone()], checks)
        }
        PhaseKind::Gateways => (
            {
                let later: Vec<&str> = plan
                    .phases
                    .iter()
                    .filter(|p| p.hop == phase.hop && p.kind == PhaseKind::Migrate && p.index > phase.index)
                    .map(|p| p.dir.as_str())
                    .collect();
                if later.is_empty() {
                    format!("Move the gateways to revision `{new}`. Rendered gateways keep their names across revisions, so this upgrades them in place, after the workloads have moved.")
                } else {
                    format!(
                        "Move the gateways to revision `{new}` before the waves {} (spec.gateways.moveAfter). Rendered gateways keep their names across revisions, so this upgrades them in place; the gateways' proxies then run `{new}` while those waves' workloads still run `{old}`, within Istio's supported skew.",
                        quoted_list(&later.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    )
                }
            },
            vec![apply.clone()],
            vec![format!("kubectl -n {istio_ns} rollout status deployment --timeout=300s")],
        ),
        PhaseKind::DefaultTag => {
            let tag = phase
                .changes
                .iter()
                .find_map(|c| match c {
                    Change::Apply(o) if is_default_tag_webhook(o) => Some(o.id.name.as_str()),
                    _ => None,
                })
                .unwrap_or(DEFAULT_TAG_WEBHOOK);
            (
            format!(
                "Point the default revision tag (`{tag}`, `{DEFAULT_VALIDATOR}`) at `{new}`: `{INJECTION_LABEL}=enabled` namespaces and validation move to it.{}",
                // The phase applies, besides the tag objects, legacy injectors switched off.
                if phase
                    .changes
                    .iter()
                    .any(|c| matches!(c, Change::Apply(o) if !is_tag_object(o)))
                {
                    " Injectors of the old install that still match `istio-injection=enabled` are switched off the way `istioctl tag set default` does it, so no pod is matched by two injectors."
                } else {
                    ""
                }
            ) + &if phase.namespaces.is_empty() {
                String::new()
            } else {
                format!(
                    " Namespaces in no wave that follow the default move with it: {}{}.",
                    names_or_count(&phase.namespaces, "plan.json's `namespaces` lists them"),
                    if template_commands(&phase.changes, dir).is_empty() {
                        String::new()
                    } else {
                        "; the `kubectl patch` commands then restart their workloads".to_string()
                    }
                )
            },
            [apply.clone()]
                .into_iter()
                .chain(template_commands(&phase.changes, dir))
                .collect(),
            vec![
                format!("# must show {new} for both"),
                format!("kubectl get mutatingwebhookconfiguration {tag} validatingwebhookconfiguration {DEFAULT_VALIDATOR} -L {REV_LABEL}"),
            ],
        )
        }
        PhaseKind::Tag => {
            let tag = phase
                .changes
                .iter()
                .find_map(|c| match c {
                    Change::Apply(o) => crate::istio::tag_of(o),
                    _ => None,
                })
                .unwrap_or_default();
            let webhooks: Vec<String> = phase
                .changes
                .iter()
                .filter(|c| matches!(c, Change::Apply(o) if o.id.kind == "MutatingWebhookConfiguration"))
                .map(|c| c.id().name.clone())
                .collect();
            let restarts = template_commands(&phase.changes, dir);
            (
                format!(
                    "Point the revision tag `{tag}` at `{new}`: every namespace labelled `{REV_LABEL}={tag}` moves to it, with no relabel.{}",
                    if phase.namespaces.is_empty() {
                        format!(" Restart their workloads so the new sidecars are injected: `kubectl get namespaces -l {REV_LABEL}={tag}` lists them.")
                    } else {
                        format!(
                            " It moves {}{}.",
                            names_or_count(&phase.namespaces, "plan.json's `namespaces` lists them"),
                            if restarts.is_empty() {
                                String::new()
                            } else {
                                "; the `kubectl patch` commands then restart their workloads".to_string()
                            }
                        )
                    }
                ),
                [apply.clone()].into_iter().chain(restarts).collect(),
                vec![
                    format!("# must show {new} for the tag"),
                    format!(
                        "kubectl get mutatingwebhookconfiguration {} -L {REV_LABEL}",
                        webhooks.join(" ")
                    ),
                    format!("# every pod of the namespaces that select the tag must show {}", new.istiod()),
                    format!("istioctl proxy-status --revision {new}"),
                ],
            )
        }
        PhaseKind::Uninstall => {
            let mut checks = vec![
                format!("# must list nothing: namespaces still selecting revision {old}"),
                match old {
                    Revision::Named(r) => format!("kubectl get namespaces -l '{REV_LABEL}={r}'"),
                    Revision::Default => format!("kubectl get namespaces -l '{INJECTION_LABEL}=enabled,!{REV_LABEL}'"),
                },
            ];
            let webhooks: Vec<String> = phase
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
            )
        }
    };
    let server_side = if phase.kind == PhaseKind::Uninstall {
        commands.clone()
    } else if only_label_files(&phase.changes) {
        // The label commands that stand for the directory's files are replaced by the
        // directory, applied server-side.
        let set = dir_label_commands(&phase.changes, dir).0.len();
        let mut v = vec![server_side_apply(dir, takes_over)];
        v.extend(commands.iter().skip(set).cloned());
        v
    } else {
        let mut v = vec![server_side_apply(dir, takes_over)];
        v.extend(commands.iter().skip(1).cloned());
        v
    };
    // Removing a label another manager co-owns is not something a server-side apply can do
    // (it removes only what its manager alone owns): the command stays a command.
    // (One command over the directory when it stands for every namespace's.)
    let dir_commands = dir_label_commands(&phase.changes, dir).1;
    let removals: Vec<&String> = dir_commands
        .iter()
        .filter(|c| c.trim_end().ends_with(&format!("{INJECTION_LABEL}-")))
        .collect();
    let controller = (!removals.is_empty()).then(|| {
        format!(
            "Argo CD and Flux apply only the directory: they do not run the {} `kubectl label … {INJECTION_LABEL}-` command{} above, and until {} run, {} {} on revision `{old}` (`{INJECTION_LABEL}` wins over `{REV_LABEL}`). Run {} after the sync. To move such namespaces without a command, leave them out of the waves: with `spec.inventory`, namespaces labelled `{INJECTION_LABEL}=enabled` follow the default tag and move without any relabel in the default-tag phase (its restarts stay commands, as in every phase).",
            removals.len(),
            if removals.len() == 1 { "" } else { "s" },
            if removals.len() == 1 { "it has" } else { "they have" },
            names_or_count(&phase.namespaces, &format!("one file each in `{dir}/`")),
            if phase.namespaces.len() == 1 { "stays" } else { "stay" },
            if removals.len() == 1 { "it" } else { "them" },
        )
    });
    let mut summary = summary;
    let mut checks = checks;
    gateway_moves(plan, phase, &mut summary, &mut checks);
    if !phase.manual.is_empty() {
        let names: Vec<String> = phase.manual.iter().map(|id| format!("`{id}`")).collect();
        summary.push_str(&format!(
            " Not restarted by this phase (no template to patch): {}; recreate them by hand so their pods get sidecars of revision `{new}`.",
            names.join(", ")
        ));
    }
    PhaseText {
        summary,
        commands,
        server_side,
        checks,
        undo: None,
        controller,
        // Filled in by `describe`, from every phase's writes at once (`Writes`).
        flux_suspend: Vec::new(),
    }
}

/// Every change of every phase, by the object it is about: (phase position, change), in phase
/// order. `superseded` compares a phase's changes with the earlier ones about the same objects
/// only, so its cost is the changes that meet, not phases × changes.
struct Writes<'p> {
    by_id: std::collections::HashMap<&'p crate::manifest::ObjectId, Vec<(usize, &'p Change)>>,
}

impl<'p> Writes<'p> {
    fn of(plan: &'p Plan) -> Writes<'p> {
        let mut by_id: std::collections::HashMap<_, Vec<(usize, &Change)>> =
            std::collections::HashMap::new();
        for (i, p) in plan.phases.iter().enumerate() {
            for c in &p.changes {
                by_id.entry(c.id()).or_default().push((i, c));
            }
        }
        Writes { by_id }
    }

    /// The earlier phases with files holding an object this phase writes differently (another
    /// body, other labels), deletes, or changes by command so that it no longer is as they
    /// wrote it. A resumed Flux Kustomization re-applies its files every interval, server-side
    /// with the field manager every Kustomization shares (so it also removes what a later
    /// phase's files added) and `prune: false` (so it recreates what was deleted): it would
    /// undo this phase.
    fn superseded(&self, plan: &Plan, phase: &Phase) -> Vec<String> {
        let after = &plan.states[phase.index];
        // What this phase leaves as each object it touches: its file's form, or, for one it
        // deletes or changes by command, what the state after it holds.
        let mut written: std::collections::BTreeMap<&crate::manifest::ObjectId, Written<'_>> =
            std::collections::BTreeMap::new();
        for c in &phase.changes {
            let w = match c {
                Change::Apply(o) => Written::Body(as_stored(o).body),
                Change::Labels {
                    set,
                    via: Via::File,
                    ..
                } => Written::Labels(set),
                _ => Written::AsAfter,
            };
            written.insert(c.id(), w);
        }
        let mut found = std::collections::BTreeSet::new();
        for (id, w) in &written {
            let Some(earlier) = self.by_id.get(id) else {
                continue;
            };
            for (q, c) in earlier.iter().take_while(|(q, _)| *q + 1 < phase.index) {
                if !found.contains(q) && rewrites(c, w, after) {
                    found.insert(*q);
                }
            }
        }
        found
            .into_iter()
            .map(|q| plan.phases[q].dir.clone())
            .collect()
    }
}

/// Whether an earlier phase's change `c`, re-applied, would undo how a later phase leaves the
/// same object (`w`; `after`: the state after the later phase). Only files are re-applied: an
/// earlier command never is.
fn rewrites(c: &Change, w: &Written<'_>, after: &crate::cluster::ClusterState) -> bool {
    match (c, w) {
        (Change::Apply(o), Written::Body(b)) => as_stored(o).body != *b,
        (
            Change::Labels {
                set,
                via: Via::File,
                ..
            },
            Written::Labels(l),
        ) => set != *l,
        // An object the later phase deletes is absent after it: any earlier file recreates it.
        (Change::Apply(o), Written::AsAfter) => {
            after.objects.get(&o.id).map(|x| &x.body) != Some(&as_stored(o).body)
        }
        (
            Change::Labels {
                id,
                set,
                via: Via::File,
                ..
            },
            Written::AsAfter,
        ) => {
            let now = after.labels(id).unwrap_or_default();
            set.iter().any(|(k, v)| now.get(k) != Some(v))
        }
        // A file of the earlier phase and another form in this one (a whole object over a
        // label patch, or the reverse): the two writes differ.
        (Change::Apply(_) | Change::Labels { via: Via::File, .. }, _) => true,
        _ => false,
    }
}

/// How a phase leaves an object it touches (see `superseded`).
enum Written<'a> {
    /// A whole object's file.
    Body(serde_yaml::Mapping),
    /// A label file: an earlier one that sets other labels, or fewer, is superseded (Flux's
    /// server-side apply with one shared field manager removes the keys it omits).
    Labels(&'a std::collections::BTreeMap<String, String>),
    /// Deleted or changed by command: as the state after the phase holds it (or not).
    AsAfter,
}

/// Whether the phase's hop moves its gateways as canaries (a cutover phase follows).
fn has_cutover(plan: &Plan, phase: &Phase) -> bool {
    plan.phases
        .iter()
        .any(|p| p.hop == phase.hop && p.kind == PhaseKind::GatewayCutover)
}

/// The summary and checks of a canary gateway phase (`cutover`: the Services' switch) from the
/// Services it applies and the gateway pods each selects after it.
fn canary_gateways(plan: &Plan, phase: &Phase, cutover: bool) -> (String, Vec<String>) {
    let hop = plan.hop_of(phase);
    let (old, new) = (&hop.from.revision, &hop.to.revision);
    let after = &plan.states[phase.index];
    let services: Vec<&crate::manifest::Object> = phase
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Apply(o) if o.id.kind == "Service" => Some(o),
            _ => None,
        })
        .collect();
    let deployments: Vec<String> = phase
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Apply(o) if o.id.kind == "Deployment" => Some(format!(
                "`{}/{}`",
                o.id.namespace.as_deref().unwrap_or(""),
                o.id.name
            )),
            _ => None,
        })
        .collect();
    let names: Vec<String> = services
        .iter()
        .map(|o| {
            format!(
                "`{}/{}` ({})",
                o.id.namespace.as_deref().unwrap_or(""),
                o.id.name,
                after
                    .gateway_revisions(&o.id)
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(" + ")
            )
        })
        .collect();
    let summary = if cutover {
        format!(
            "Cut the gateways over to revision `{new}`: the gateway Services' selectors gain `{REV_LABEL}: {new}`, so they send traffic to the pods of `{new}` only; their names, and so their load-balancer addresses, stay. Services and the revisions they then select: {}. The Deployments of `{old}` get no more traffic and are deleted with the uninstall; the rollback switches the selectors back to both revisions.",
            names.join(", ")
        )
    } else {
        format!(
            "Deploy the gateways of revision `{new}` beside those of `{old}` (canary gateways): {} behind the unchanged Services, which now select the pods of both revisions, so traffic splits across them by ready pods. Services and the revisions they then select: {}. Watch the new pods take traffic before the cutover.",
            deployments.join(", "),
            names.join(", ")
        )
    };
    let mut checks = Vec::new();
    for o in &services {
        let ns = o.id.namespace.as_deref().unwrap_or("");
        let selector: Vec<String> = match crate::manifest::value_at(&o.body, &["spec", "selector"])
        {
            Some(serde_yaml::Value::Mapping(m)) => m
                .iter()
                .filter(|(k, _)| k.as_str() != Some(REV_LABEL))
                .filter_map(|(k, v)| Some(format!("{}={}", k.as_str()?, v.as_str()?)))
                .collect(),
            _ => Vec::new(),
        };
        checks.push(format!(
            "# the ready pods behind Service {ns}/{}: {}",
            o.id.name,
            if cutover {
                format!("only revision {new} receives traffic (its selector names it)")
            } else {
                format!("pods of both {old} and {new}")
            }
        ));
        checks.push(format!(
            "kubectl get pods -n {ns} -l '{}' -L {REV_LABEL}",
            selector.join(",")
        ));
        if cutover {
            checks.push(format!(
                "kubectl get service -n {ns} {} -o jsonpath='{{.spec.selector}}'",
                o.id.name
            ));
        }
    }
    (summary, checks)
}

/// What a wave without namespaces moves, one phrase per object: workloads by their pod
/// template's `istio.io/rev`, Gateway API Gateways by their own label (a label merge, like a
/// namespace's).
fn one_by_one(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Template { id, labels, .. } if labels.contains_key(REV_LABEL) => Some(format!(
                "`{}/{}/{}` (the `{REV_LABEL}` label of its pod template; the patch restarts it)",
                id.namespace.as_deref().unwrap_or(""),
                id.kind.to_lowercase(),
                id.name
            )),
            Change::Labels { id, set, .. } if set.contains_key(REV_LABEL) => Some(format!(
                "{} `{}/{}` (its own `{REV_LABEL}` label: a label merge, by `kubectl label` or the directory applied server-side or by Argo CD or Flux)",
                id.kind,
                id.namespace.as_deref().unwrap_or(""),
                id.name
            )),
            _ => None,
        })
        .collect()
}

/// The Gateway API Gateways whose istiod changes in `phase` (by their own label, their
/// namespace's, a tag or the default revision: whatever the simulation says moved them), with
/// a check each, and the outage Istio before 1.31 causes when a Gateway changes istiod.
fn gateway_moves(plan: &Plan, phase: &Phase, summary: &mut String, checks: &mut Vec<String>) {
    let (before, after) = (&plan.states[phase.index - 1], &plan.states[phase.index]);
    let hop = plan.hop_of(phase);
    let mut moved = Vec::new();
    for gw in after.istio_gateways() {
        let was = before
            .objects
            .get(&gw.id)
            .map(|b| before.gateway_owners(b))
            .unwrap_or_default();
        let now = after.gateway_owners(gw);
        if was != now && !was.is_empty() && !now.is_empty() {
            moved.push((gw, was.join(", "), now.join(", ")));
        }
    }
    if moved.is_empty() {
        return;
    }
    let names: Vec<String> = moved
        .iter()
        .map(|(gw, was, now)| {
            format!(
                "`{}/{}` ({was} -> {now})",
                gw.id.namespace.as_deref().unwrap_or(""),
                gw.id.name
            )
        })
        .collect();
    summary.push_str(&format!(
        " Gateway API Gateways this phase hands to another istiod (which then rolls their Deployments): {}.",
        names.join(", ")
    ));
    let from = &hop.from.version;
    if (from.major, from.minor) < (1, 31) {
        summary.push_str(&format!(
            " Istio {from} drops a Gateway the moment another istiod takes it and pushes an empty configuration to its running pods until the new ones are ready (istio#59959, fixed in 1.31): expect a brief outage of each, and run this phase in a quiet window."
        ));
    }
    for (gw, _, now) in &moved {
        let ns = gw.id.namespace.as_deref().unwrap_or("");
        checks.push(format!(
            "# every pod of Gateway {ns}/{} must show {} (its CA_ADDR names the istiod that generated it)",
            gw.id.name,
            now.split(", ")
                .map(|r| format!("istiod-{r}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        checks.push(format!(
            "kubectl get pods -n {ns} -l gateway.networking.k8s.io/gateway-name={} -o jsonpath='{{range .items[*]}}{{.metadata.name}} {{.spec.containers[0].env[?(@.name==\"CA_ADDR\")].value}}{{\"\\n\"}}{{end}}'",
            gw.id.name
        ));
    }
}

/// Commands, checks and note of one rollback.
pub fn rollback(plan: &Plan, rb: &Rollback) -> RollbackText {
    let Some(phase) = plan.phases.get(rb.phase_index - 1) else {
        return RollbackText {
            phase_index: rb.phase_index,
            commands: Vec::new(),
            server_side: Vec::new(),
            checks: Vec::new(),
            note: None,
        };
    };
    let after: &ClusterState = &plan.states[phase.index];
    let hop = plan.hop_of(phase);
    let dir = &rb.dir;
    let (old, new) = (&hop.from.revision, &hop.to.revision);
    let changes = &rb.changes;
    let has_files = changes
        .iter()
        .any(|c| matches!(c, Change::Apply(_) | Change::Labels { via: Via::File, .. }));
    let has_deletes = rb.deletes().next().is_some();
    let takes_over = changes.iter().any(|c| match c {
        Change::Apply(o) => after.objects.get(&o.id).is_some_and(|a| a.body != o.body),
        Change::Labels {
            id, via: Via::File, ..
        } => after.objects.contains_key(id),
        _ => false,
    });
    let mut commands = Vec::new();
    let mut server_side = Vec::new();
    let (file_commands, label_commands) = dir_label_commands(changes, dir);
    if has_files {
        if only_label_files(changes) {
            commands.extend(file_commands);
        } else {
            commands.push(format!("kubectl apply -k {dir}"));
        }
        server_side.push(server_side_apply(dir, takes_over));
    }
    commands.extend(label_commands.iter().cloned());
    server_side.extend(label_commands.iter().cloned());
    let restarts = template_commands(changes, dir);
    commands.extend(restarts.iter().cloned());
    server_side.extend(restarts.iter().cloned());
    if has_deletes {
        let delete = format!("kubectl delete --ignore-not-found -f {dir}/delete/");
        commands.push(delete.clone());
        server_side.push(delete);
    }
    let mut checks = Vec::new();
    // Webhook configurations the rollback switches off with its files and then deletes.
    let switched_off: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Apply(o) if rb.deletes().any(|d| d.id == o.id) => Some(o.id.name.clone()),
            _ => None,
        })
        .collect();
    if has_files {
        checks.push(format!(
            "# must show no difference (istiod's own runtime changes to webhooks' caBundle and failurePolicy aside{}): the objects are back as they were before {}",
            if switched_off.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} the rollback switched off and deleted show as to be created",
                    switched_off.join(", ")
                )
            },
            phase.dir
        ));
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
        let names: Vec<&str> = namespaces.iter().map(String::as_str).collect();
        checks.push(format!(
            "kubectl get namespaces -l {}",
            names_selector(changes, &names, dir, key)
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
            hop.to.version
        )),
        PhaseKind::Migrate
            if restarts.is_empty()
                && whole_dir(
                    &phase.changes,
                    &phase.namespaces.iter().map(String::as_str).collect::<Vec<_>>(),
                ) =>
        {
            Some(format!(
            "after the rollback, restart the workloads of the {} namespaces of `{}/` again (`{}`) so their pods get sidecars of revision `{old}`.",
            phase.namespaces.len(),
            phase.dir,
            restart_commands(&phase.changes, &phase.namespaces, &phase.dir).join("; ")
        ))
        }
        PhaseKind::Migrate if restarts.is_empty() => Some(format!(
            "after the rollback, restart the workloads of {} again (`kubectl rollout restart deployment,statefulset,daemonset -n NAMESPACE`) so their pods get sidecars of revision `{old}`.",
            quoted_list(&phase.namespaces)
        )),
        PhaseKind::Migrate => Some(format!(
            "the `kubectl patch` commands put the pod templates back, which restarts the workloads, so their pods get sidecars of revision `{old}` again."
        )),
        PhaseKind::DefaultTag => Some(format!(
            "pods injected through the default tag since this phase keep sidecars of revision `{new}` until they restart."
        )),
        PhaseKind::Tag => Some(format!(
            "pods injected through the tag since this phase keep sidecars of revision `{new}` until they restart; restart the workloads of the namespaces that select it."
        )),
        PhaseKind::Cni => Some(format!(
            "the DaemonSet rolls istio-cni back to Istio {} node by node on its own; pods started meanwhile keep the network setup the new agent made.",
            hop.from.version
        )),
        PhaseKind::Ztunnel => Some(format!(
            "this puts the ztunnel DaemonSet back as it was (connected to `{}` again); with its earlier update strategy it may restart every node's ztunnel by itself. Where it does not (`OnDelete`), repeat the node-by-node procedure of the phase to bring each node's ztunnel back to Istio {}.",
            old.istiod(),
            hop.from.version
        )),
        _ => None,
    };
    RollbackText {
        phase_index: rb.phase_index,
        commands,
        server_side,
        checks,
        note,
    }
}

/// One line per object: what it uses and why the cluster does not serve it.
fn unserved_lines(objects: &[crate::plan::refusal::Unserved]) -> String {
    objects
        .iter()
        .map(|u| {
            let why = match &u.why {
                NotServed::RemovedIn(v) => format!("removed in Kubernetes {v}"),
                NotServed::IntroducedIn(v) => format!("first served in Kubernetes {v}"),
            };
            format!("{} uses {} ({why})", u.id, u.api_version)
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

const DEFECT_HELP: &str = "the rollback is derived from the simulated states before and after its phase; this is a defect of istio-canary: please report it with the policy";

/// The help line of a phase that breaks an invariant: chosen by what the phase is and what broke,
/// never by its name.
fn unsafe_phase_help(at: &PhaseAt, v: &Violation) -> String {
    match v {
        Violation::ValidatorNotDefault { .. } => {
            format!("{DEFAULT_VALIDATOR} must call the istiod of the revision the default tag points at: render both from the same revision (values.defaultRevision and values.revisionTags are set by istio-canary; check what the istioctl renders)")
        }
        Violation::DanglingWebhook { .. } if at.kind == PhaseKind::Uninstall => {
            "move every tag and the default validator off the old revision before deleting it (defaultTag: true), or keep it (uninstallOld: false)".to_string()
        }
        Violation::DanglingWebhook { .. } => format!(
            "a webhook with failurePolicy Fail and no backend refuses every request it matches: the render of revision {} must include the Service (and istiod) its webhooks call",
            at.to
        ),
        // A namespace no wave names that follows the default tag moves with it: that is a
        // policy choice to make, not a render to fix.
        Violation::Injection {
            namespace, found, ..
        } if at.kind == PhaseKind::DefaultTag
            && matches!(found.as_slice(), [one] if one.target == crate::mesh::Target::Revision(at.to.label().to_string())) =>
        {
            format!(
                "namespace {namespace} follows the default tag (`{INJECTION_LABEL}=enabled`) and no wave moves it: moving the tag would move it to revision {} without a restart. Add it to a wave, or leave the default tag where it is (defaultTag: false, uninstallOld: false)",
                at.to
            )
        }
        Violation::Injection { .. } => format!(
            "the phases must keep every namespace injected by exactly one revision; check the IstioOperator specs of revisions {} and {}",
            at.from, at.to
        ),
        Violation::DeletedButReferenced { .. } => {
            "the new revision still uses it: render it from the new spec too (components.base), or keep the old revision (uninstallOld: false)".to_string()
        }
        Violation::Unevaluable { .. } => {
            "istio-canary evaluates injector webhooks the way kube-apiserver does and refuses to guess what it cannot evaluate: remove the field from the webhook (its configuration comes from the IstioOperator spec or from the cluster), or upgrade this mesh by hand".to_string()
        }
        Violation::SeveralRevisions { .. } => {
            "a Service in front of istiod must select one revision (its selector needs istio.io/rev): which istiod answers would otherwise depend on endpoints; fix the Service's selector in the IstioOperator spec".to_string()
        }
        Violation::GatewayServiceEmpty { .. } => format!(
            "a gateway Service must keep selecting ready gateway pods at every step: render the gateways of revision {} with the same pod labels as those of {} (or list the gateway in removeGateways, which deletes its Service with it)",
            at.to, at.from
        ),
        Violation::GatewayOwners { owners, selects, gateway } if owners.is_empty() && at.kind == PhaseKind::Uninstall => {
            let ns = gateway.namespace.as_deref().unwrap_or("");
            let how = match selects {
                GatewaySelects::Own(v) if v == at.from.label() => format!("list `{ns}/{}` in a wave's `gateways` (its own {REV_LABEL} wins over its namespace's, so relabelling the namespace does not move it)", gateway.name),
                GatewaySelects::Own(t) => format!("move the tag `{t}` it selects (spec.tags), or list `{ns}/{}` in a wave's `gateways`", gateway.name),
                GatewaySelects::Namespace(v) if v.is_empty() => "it follows the default revision: move the default tag (defaultTag: true)".to_string(),
                GatewaySelects::Namespace(v) if v == at.from.label() => format!("move its namespace `{ns}` in a wave, or list `{ns}/{}` in a wave's `gateways`", gateway.name),
                GatewaySelects::Namespace(t) => format!("move the tag `{t}` its namespace selects (spec.tags), or list `{ns}/{}` in a wave's `gateways`", gateway.name),
                GatewaySelects::Everyone => "create its namespace, or delete the Gateway".to_string(),
            };
            format!("the Gateway is still programmed by revision {} when it is deleted: {how}; or keep the old revision (uninstallOld: false)", at.from)
        }
        Violation::GatewayOwners { .. } => format!(
            "istiod of a revision programs the Gateways that select it or a tag pointing at it (istio.io/rev on the Gateway, else on its namespace, else the default revision): every Gateway must select exactly one installed revision after every step; check which labels and tags the phase changes between revisions {} and {}",
            at.from, at.to
        ),
    }
}

/// A refusal as the user sees it: the one place its message and help are made.
pub fn refusal(r: &Refusal) -> Error {
    match r {
        Refusal::NoHop => Error::new("the upgrade has no hop: nothing moves from one revision to another")
            .with_help("set spec.to.version to a version after spec.from.version"),
        Refusal::RendersMismatch { releases, renders } => Error::new(format!(
            "internal error: {renders} renders for the {releases} control planes of the path"
        )),
        Refusal::EmptyRender {
            version,
            revision,
            spec,
        } => Error::new(format!(
            "istioctl {version} rendered no objects for revision {revision}"
        ))
        .with_help(format!(
            "check {spec}: a profile such as `empty` with no component enabled renders nothing"
        )),
        Refusal::NoIstiod { revision, spec } => Error::new(format!(
            "the render of revision {revision} has no istiod Deployment: nothing would serve the namespaces moved to it"
        ))
        .with_help(format!("enable the control plane in {spec} (components.pilot.enabled: true, or a profile that enables it)")),
        Refusal::NoCrds {
            revision,
            spec,
            old_revision,
            old_version,
            new_version,
            old_crds,
        } => Error::new(format!(
            "the render of revision {revision} has no CRDs, but revision {old_revision} was installed with {old_crds}: Istio's CRDs would stay at {old_version} while istiod {new_version} runs"
        ))
        .with_help(format!("enable the base component in {spec} (components.base.enabled: true)")),
        Refusal::NoInjector {
            revision,
            spec,
            found,
        } => Error::new(format!(
            "the render of revision {revision} has no sidecar-injector webhook for namespaces labelled {REV_LABEL}={revision} (found: {}), but the policy moves namespaces to it",
            injectors(found)
        ))
        .with_help(format!("the injector comes with the control plane in {spec}: check components.pilot, values.sidecarInjectorWebhook and values.global.operatorManageWebhooks")),
        Refusal::NoDefaultTag { version } => Error::new(format!(
            "istioctl {version} rendered no {DEFAULT_TAG_WEBHOOK} for values.revisionTags=[default]"
        ))
        .with_help("this istioctl cannot render revision tags offline; set defaultTag: false and move the tag with `istioctl tag set default` instead"),
        Refusal::NoRevisionTag { tag, version } => Error::new(format!(
            "istioctl {version} rendered no webhook configuration for revision tag `{tag}` (values.revisionTags)"
        ))
        .with_help("this istioctl cannot render revision tags offline; remove the tag from spec.tags and move it with `istioctl tag set` instead"),
        Refusal::NoDefaultValidator {
            version,
            revision,
            old_revision,
            spec,
        } => Error::new(format!(
            "istioctl {version} rendered no {DEFAULT_VALIDATOR} for values.defaultRevision={revision}: validation of Istio resources would stay on revision {old_revision}"
        ))
        .with_help(format!("config validation may be off in {spec} (values.global.configValidation); enable it, or set defaultTag: false and keep the old revision")),
        Refusal::InstallOverwrites {
            revision,
            old_revision,
            object,
        } => Error::new(format!(
            "installing revision {revision} would overwrite {object} of the running revision {old_revision}"
        ))
        .with_help("the two revisions must render disjoint control-plane objects: check the revision names and the IstioOperator specs"),
        Refusal::GatewaysDropped { old_revision, lost } => {
            let lines: Vec<String> = lost
                .iter()
                .map(|(key, ids)| {
                    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                    format!("gateway {key}: {}", ids.join(", "))
                })
                .collect();
            Error::new(format!(
                "the new IstioOperator spec no longer renders objects of gateways revision {old_revision} runs; the plan would delete them:\n  {}",
                lines.join("\n  ")
            ))
            .with_help("a deleted gateway Service loses its load balancer address: keep the gateway in the spec, or, to remove it on purpose, list it under spec.removeGateways (e.g. `removeGateways: [istio-system/istio-egressgateway]`)")
        }
        Refusal::IstioUnsupported {
            istio,
            lowest,
            highest,
            kubernetes,
        } => crate::policy::istio_unsupported(*istio, *lowest, *highest, *kubernetes),
        Refusal::KubernetesBetweenHops {
            kubernetes,
            istio,
            lowest,
            highest,
            hop,
            from,
            to,
            window,
        } => {
            let before = hop - 1;
            let when = match window {
                Some((lo, hi)) if lo == hi => format!("upgrade the cluster to Kubernetes {lo}"),
                Some((lo, hi)) => format!("upgrade the cluster to a Kubernetes version from {lo} to {hi}"),
                None => "no Kubernetes version is supported by both, so no cluster upgrade lets this hop run; choose other versions in spec.path".to_string(),
            };
            Error::new(format!(
                "Istio {istio} supports Kubernetes {lowest} to {highest}, not {kubernetes} (spec.kubernetesVersion): hop {hop} ({from} -> {to}) cannot run on this cluster"
            ))
            .with_help(format!(
                "{when} after hop {before} ends on {from} and before hop {hop} starts: compile the path in two policies, up to {from} with kubernetesVersion \"{kubernetes}\", then from {from} with the upgraded cluster's version"
            ))
        }
        Refusal::ApiNotServed {
            kubernetes,
            version,
            objects,
        } => Error::new(format!(
            "Kubernetes {kubernetes} does not serve the API versions of {} rendered object{}:\n  {}",
            objects.len(),
            if objects.len() == 1 { "" } else { "s" },
            unserved_lines(objects)
        ))
        .with_help(format!("istioctl {version} renders for older clusters: choose an Istio version that supports Kubernetes {kubernetes}")),
        Refusal::ApiNotServedIn {
            place,
            kubernetes,
            objects,
        } => Error::new(format!(
            "{place} would re-apply {} object{} with API versions Kubernetes {kubernetes} does not serve:\n  {}",
            objects.len(),
            if objects.len() == 1 { "" } else { "s" },
            unserved_lines(objects)
        ))
        .with_help("the cluster stores these objects of the old revision, but putting them back needs an API version it serves: upgrade Kubernetes only after the Istio upgrade, or go through an Istio version whose render the cluster serves"),
        Refusal::UnsafePhase { at, violation } => {
            Error::new(format!("after phase {}, {violation}", at.dir))
                .with_help(unsafe_phase_help(at, violation))
        }
        Refusal::GatewayServiceRevisions {
            at,
            service,
            expected,
            found,
        } => Error::new(format!(
            "after phase {}, Service {}/{} would send traffic to the gateway pods of {} instead of revision {}",
            at.dir,
            service.namespace.as_deref().unwrap_or(""),
            service.name,
            if found.is_empty() { "no revision".to_string() } else { format!("revision {}", found.join(" + ")) },
            expected.join(" + ")
        ))
        .with_help(format!(
            "canary gateways keep one Service for both revisions' gateway Deployments: the gateway's pods must carry the same labels the Service selects in revisions {} and {} (the gateway's name and `label` in the IstioOperator spec), so that it selects both until the cutover and only {} after it",
            at.from, at.to, at.to
        )),
        Refusal::UndecidableRender { revision, violation } => {
            Error::new(format!("in the render of revision {revision}, {violation}")).with_help(
                "istio-canary evaluates webhooks the way kube-apiserver does and refuses to guess what it cannot evaluate: check the IstioOperator spec of the new revision",
            )
        }
        Refusal::UndecidableStart { violation } => {
            Error::new(format!("before the upgrade, {violation}")).with_help(match violation {
                Violation::SeveralRevisions { .. } => "the old install's Service in front of istiod selects several revisions: fix it before planning the upgrade",
                _ => "istio-canary refuses to guess what kube-apiserver would do: remove what it cannot evaluate from the old install's webhooks, or upgrade this mesh by hand",
            })
        }
        Refusal::UnsafeRollback { dir, violation } => {
            Error::new(format!("after rollback {dir}, {violation}")).with_help(DEFECT_HELP)
        }
        Refusal::RollbackDiffers { dir, object, how } => {
            let why = match how {
                Differs::Content => "would differ from",
                Differs::Missing => "would be missing, unlike",
                Differs::LeftBehind => "would exist, unlike",
            };
            Error::new(format!(
                "rollback {dir} does not return the cluster to the state before its phase: {object} {why} the state before it"
            ))
            .with_help(DEFECT_HELP)
        }
        Refusal::AmbiguousLabels {
            inventory,
            namespaces,
        } => {
            let lines: Vec<String> = namespaces
                .iter()
                .map(|(ns, why)| match why {
                    Ambiguous::BothLabels => format!(
                        "namespace {ns} carries both `{INJECTION_LABEL}` and `{REV_LABEL}` (`{INJECTION_LABEL}` wins; the revision label is ignored)"
                    ),
                    Ambiguous::EmptyValue(key) => {
                        format!("namespace {ns} carries `{key}` with an empty value")
                    }
                })
                .collect();
            Error::new(format!(
                "the inventory {inventory} shows namespaces whose injection labels are ambiguous:\n  {}",
                lines.join("\n  ")
            ))
            .with_help(format!(
                "give each namespace one injection label with a value (`kubectl label namespace NAME {INJECTION_LABEL}-` or `{REV_LABEL}-` removes one), capture the inventory again and compile again"
            ))
        }
        Refusal::NotInstalled {
            inventory,
            revision,
            missing,
            unexplained,
        } => {
            let mut lines = Vec::new();
            for id in missing {
                lines.push(format!("{id}: rendered for revision {revision}, not in the cluster"));
            }
            for id in unexplained {
                lines.push(format!(
                    "{id}: in the cluster, labelled {REV_LABEL}={}, not rendered",
                    revision.label()
                ));
            }
            Error::new(format!(
                "the inventory {inventory} does not match the render of revision {revision}, so the old spec is not what was installed:\n  {}",
                lines.join("\n  ")
            ))
            .with_help("point spec.from.istioOperator (and spec.from.version) at the spec and version the cluster was installed with; `spec.from.defaultTag` says whether the install created the default tag and validator")
        }
        Refusal::Forgotten {
            revision,
            namespaces,
            workloads,
        } => {
            let mut lines: Vec<String> = namespaces
                .iter()
                .map(|ns| format!("namespace {ns}"))
                .collect();
            lines.extend(workloads.iter().map(ToString::to_string));
            Error::new(format!(
                "revision {revision} still injects what no wave moves, and the plan deletes it:\n  {}",
                lines.join("\n  ")
            ))
            .with_help("add each namespace to a wave (or each workload to a wave's `workloads`), or keep the old revision (uninstallOld: false)")
        }
        Refusal::Pinned { at, workloads } => {
            let lines: Vec<String> = workloads
                .iter()
                .map(|(id, found)| format!("{id}: its new pods would be injected by {}", crate::mesh::describe(found)))
                .collect();
            Error::new(format!(
                "after phase {}, workloads restarted for revision {} would not move to it:\n  {}",
                at.dir,
                at.to,
                lines.join("\n  ")
            ))
            .with_help(format!(
                "their pod templates pin a revision (`{REV_LABEL}` or `sidecar.istio.io/inject` on the pod): move them with the wave's `workloads`, or change their templates"
            ))
        }
        Refusal::StillUsed {
            at,
            namespaces,
            workloads,
            references,
        } => {
            let mut lines: Vec<String> = namespaces
                .iter()
                .map(|ns| format!("namespace {ns} is injected by it"))
                .collect();
            lines.extend(workloads.iter().map(|id| format!("{id} runs its sidecars")));
            lines.extend(references.iter().map(ToString::to_string));
            Error::new(format!(
                "phase {} would delete revision {} while it is still used:\n  {}",
                at.dir,
                at.from,
                lines.join("\n  ")
            ))
            .with_help(format!("move what still uses it in a wave before the uninstall; point a revision tag still on it at the new revision (`istioctl tag set TAG --revision {} --overwrite`) and capture the inventory again; or keep the old revision (uninstallOld: false){}", at.to,
                // A node agent the plan does not manage (installed by Helm, say) connects to one
                // istiod: it moves only when its owner re-points it.
                if references.iter().any(|v| matches!(v, Violation::DeletedButReferenced { by, .. } if by.kind == "DaemonSet")) {
                    format!(". A DaemonSet such as ztunnel that the IstioOperator spec does not render is not upgraded by this plan: upgrade it where it is managed (for ztunnel, the Helm chart with `revision: {}`) before the uninstall, or render it from the spec (components.ztunnel)", at.to)
                } else {
                    String::new()
                }))
        }
        Refusal::NodeAgentDropped {
            agent,
            object,
            revision,
            spec,
        } => Error::new(format!(
            "the render of revision {revision} has no {agent}, but the running install has {object}: its uninstall would remove {agent} from every node"
        ))
        .with_help(format!("{agent} is upgraded in place, never by revision: keep it enabled in {spec} (components.{}.enabled: true); removing it is a change of its own, not part of an upgrade", agent_component(*agent))),
        Refusal::NodeAgentMoved {
            agent,
            from,
            to,
            version,
        } => Error::new(format!(
            "istioctl {version} renders {agent} as {to}, but the running one is {from}: two of it would run on every node while the upgrade lasts"
        ))
        .with_help(format!("keep {agent} where it runs: set components.{}.namespace: {} in the new IstioOperator spec (Istio 1.24 moved istio-cni's default from kube-system to istio-system)", agent_component(*agent), from.namespace.as_deref().unwrap_or(""))),
        Refusal::AmbientTooEarly { version } => Error::new(format!(
            "ztunnel runs on Istio {version}, before ambient mode's beta ({}.{}): Istio documents no upgrade of ambient mode from or to it",
            AMBIENT_UPGRADE_SINCE.0, AMBIENT_UPGRADE_SINCE.1
        ))
        .with_help(format!("reinstall ambient mode on Istio {}.{} or later instead of upgrading it, or disable components.ztunnel", AMBIENT_UPGRADE_SINCE.0, AMBIENT_UPGRADE_SINCE.1)),
        Refusal::NodeAgentSkew { agent, from, to } => {
            let (lo, hi) = agent.skew();
            Error::new(format!(
                "{agent} cannot be upgraded in place from {from} to {to}: it runs beside both control planes while the hop lasts, and Istio supports {agent} only from {} minor below to {} minor above a control plane",
                -lo, hi
            ))
            .with_help("upgrade one minor per hop: list the minor in between in spec.path, or leave maxMinorSkip at 1")
        }
        Refusal::ZtunnelElsewhere {
            revision,
            service,
            spec,
        } => Error::new(format!(
            "the ztunnel of revision {revision} connects to {}, not to {}: ztunnel must follow the new control plane",
            service.as_ref().map(|s| format!("Service {}/{}", s.namespace.as_deref().unwrap_or(""), s.name)).unwrap_or_else(|| "no Service of the cluster".to_string()),
            revision.istiod()
        ))
        .with_help(format!("remove values.ztunnel.xdsAddress and values.ztunnel.caAddress from {spec}: the chart then connects ztunnel to the revision's istiod")),
        Refusal::ZtunnelRollsItself { strategy, spec } => Error::new(format!(
            "the new ztunnel DaemonSet has update strategy {strategy}: applying it would restart ztunnel on every node by itself, cutting each node's ambient connections with no drain"
        ))
        .with_help(format!("set values.ztunnel.updateStrategy: {{type: OnDelete}} in {spec}: the ztunnel phase then upgrades one node at a time (cordon, drain, delete the old ztunnel pod, uncordon)")),
        Refusal::AmbientInWave {
            inventory,
            namespaces,
        } => Error::new(format!(
            "the inventory `{inventory}` shows namespaces in ambient mode, served by ztunnel, in a wave: {}",
            namespaces.join(", ")
        ))
        .with_help(format!("remove them from the waves: they follow ztunnel to the new revision in its phase; a wave's {REV_LABEL} label would make the sidecar injector match them")),
        Refusal::PromoteUnknown {
            source,
            phase,
            phases,
            location,
        } => {
            let list: Vec<String> = phases.iter().map(|(i, n)| format!("{i} {n}")).collect();
            let mut err = Error::new(format!(
                "{source} `{phase}` names no phase of this plan; its phases are: {}",
                list.join(", ")
            ))
            .with_help("give the index or the name of the phase whose end state live/ should hold");
            err.location = location.clone();
            err
        }
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        refusal(&r)
    }
}

/// A refusal shows as the error the user sees.
impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        refusal(self).fmt(f)
    }
}

/// The IstioOperator component of a node agent.
fn agent_component(agent: NodeAgent) -> &'static str {
    match agent {
        NodeAgent::Cni => "cni",
        NodeAgent::Ztunnel => "ztunnel",
    }
}

/// Summary, commands and checks of a node-agent phase: istio-cni rolls out by itself; ztunnel
/// (`OnDelete`) is replaced node by node.
fn node_agent_phase(
    phase: &Phase,
    before: &ClusterState,
    hop: &crate::plan::Hop,
    apply: &str,
) -> (String, Vec<String>, Vec<String>) {
    let new = &hop.to.revision;
    let daemonset = phase.changes.iter().find_map(|c| match c {
        Change::Apply(o) if o.id.kind == "DaemonSet" => Some(o),
        _ => None,
    });
    let (ns, name) = daemonset
        .map(|o| {
            (
                o.id.namespace.clone().unwrap_or_default(),
                o.id.name.clone(),
            )
        })
        .unwrap_or_default();
    // The DaemonSet's own pod selector, as `-l` takes it.
    let pods = daemonset
        .and_then(|o| {
            match crate::manifest::value_at(&o.body, &["spec", "selector", "matchLabels"]) {
                Some(serde_yaml::Value::Mapping(m)) => Some(
                    m.iter()
                        .filter_map(|(k, v)| Some(format!("{}={}", k.as_str()?, v.as_str()?)))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                _ => None,
            }
        })
        .unwrap_or_default();
    let existed = daemonset.is_some_and(|o| before.objects.contains_key(&o.id));
    match phase.kind {
        PhaseKind::Cni => (
            format!(
                "Upgrade istio-cni in place to Istio {} (`{ns}/{name}`), after the new control plane and never ahead of it: istio-cni cannot be canaried, even with revisions. Its DaemonSet rolls node by node by itself; pods keep their network setup. Run it before any wave, so the new revision's sidecars meet the new CNI.",
                hop.to.version
            ),
            vec![apply.to_string()],
            vec![
                format!("kubectl -n {ns} rollout status daemonset/{name} --timeout=600s"),
                format!("# must show Istio {} on every node", hop.to.version),
                format!("kubectl -n {ns} get pods -l {pods} -o 'custom-columns=NODE:.spec.nodeName,IMAGE:.spec.containers[0].image'"),
            ],
        ),
        _ => {
            let mut commands = vec![apply.to_string()];
            if existed {
                commands.extend([
                    "# then one node at a time (OnDelete: nothing restarts until its pod is deleted):".to_string(),
                    "kubectl cordon NODE".to_string(),
                    "kubectl drain NODE --ignore-daemonsets --delete-emptydir-data".to_string(),
                    format!("kubectl -n {ns} delete pod -l {pods} --field-selector spec.nodeName=NODE"),
                    format!("until kubectl -n {ns} wait pod -l {pods} --field-selector spec.nodeName=NODE --for condition=Ready --timeout=300s; do sleep 5; done"),
                    "kubectl uncordon NODE".to_string(),
                ]);
            }
            (
                format!(
                    "Upgrade ztunnel in place to Istio {} and point it at `{}` (`{ns}/{name}`), after istio-cni: ztunnel cannot be canaried, even with revisions. The DaemonSet is `OnDelete`, so applying it restarts nothing; {}Namespaces in ambient mode follow it to revision `{new}` with no relabel and no restart.",
                    hop.to.version,
                    new.istiod(),
                    if existed {
                        "replace each node's ztunnel one node at a time: cordon and drain the node (its ambient pods move away), delete its old ztunnel pod, wait for the new one to be ready, uncordon. "
                    } else {
                        "this is its first install, so each node's ztunnel starts as it comes. "
                    }
                ),
                commands,
                vec![
                    format!("# must list nothing once every node is done: a ztunnel pod not yet on Istio {}", hop.to.version),
                    format!("kubectl -n {ns} get pods -l {pods} -o 'custom-columns=NODE:.spec.nodeName,IMAGE:.spec.containers[0].image' --no-headers | grep -v ':{}$'", hop.to.version),
                    "# must show the same number twice: every node's ztunnel pod is of the new DaemonSet".to_string(),
                    format!("kubectl -n {ns} get daemonset/{name} -o jsonpath='{{.status.updatedNumberScheduled}} {{.status.desiredNumberScheduled}}'"),
                    format!("# every ztunnel must show {}", new.istiod()),
                    "istioctl ztunnel-config workloads".to_string(),
                ],
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::service_id;
    use crate::layout::fixtures::{object, phase, plan};
    use crate::manifest::Object;
    use std::collections::BTreeSet;

    /// Namespace `name`'s labels set (`set`) by file or command.
    fn labels(name: &str, set: &[(&str, &str)], via: Via) -> Change {
        Change::Labels {
            id: crate::cluster::namespace_id(name),
            api_version: "v1".into(),
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            remove: BTreeSet::new(),
            via,
        }
    }

    /// Which earlier phases' Flux Kustomizations the third phase supersedes, after a first that
    /// writes namespace `app`'s label by file, a ConfigMap whole, and namespace `other`'s label by
    /// command, and a second that changes nothing.
    fn superseded_by(third: Vec<Change>, after: &[&str]) -> Vec<String> {
        let ns = |labels: &str| {
            object(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: app, labels: {{{labels}}}}}\n"
            ))
        };
        let objects: BTreeMap<&str, Object> = [
            ("app", ns("istio.io/rev: a")),
            ("app+extra", ns("istio.io/rev: a, extra: x")),
            ("cm", object("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: app}\n")),
            ("other", object("apiVersion: v1\nkind: Namespace\nmetadata: {name: other, labels: {istio.io/rev: a}}\n")),
        ]
        .into_iter()
        .collect();
        let first = vec![
            labels("app", &[("istio.io/rev", "a")], Via::File),
            Change::Apply(objects["cm"].clone()),
            labels(
                "other",
                &[("istio.io/rev", "a")],
                Via::Command("kubectl label".into()),
            ),
        ];
        let before: Vec<&Object> = ["app", "cm", "other"].iter().map(|k| &objects[k]).collect();
        let p = plan(
            vec![
                before.clone(),
                before.clone(),
                before,
                after.iter().map(|k| &objects[k]).collect(),
            ],
            vec![
                phase(PhaseKind::Migrate, 1, first),
                phase(PhaseKind::Migrate, 2, Vec::new()),
                phase(PhaseKind::Migrate, 3, third),
            ],
        );
        Writes::of(&p).superseded(&p, &p.phases[2])
    }

    #[test]
    fn a_phase_supersedes_each_earlier_file_flux_would_reapply_over_it() {
        let first = vec!["01-migrate".to_string()];
        let label_file = |set: &[(&str, &str)]| labels("app", set, Via::File);
        // A label file that adds a key to the earlier one's, values unchanged: re-applied with
        // the one field manager, the earlier file would remove it.
        let more = label_file(&[("istio.io/rev", "a"), ("extra", "x")]);
        assert_eq!(
            superseded_by(vec![more], &["app+extra", "cm", "other"]),
            first
        );
        // The same labels again: nothing to undo.
        let same = label_file(&[("istio.io/rev", "a")]);
        assert!(superseded_by(vec![same], &["app", "cm", "other"]).is_empty());
        // The whole namespace over the earlier label file, with the same labels: the label file
        // re-applied would drop every other field the one field manager owned.
        let whole = Change::Apply(object(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: app, labels: {istio.io/rev: a}}\n",
        ));
        assert_eq!(superseded_by(vec![whole], &["app", "cm", "other"]), first);
        // Deleted: the earlier file would recreate it.
        let gone = |id: ObjectId| {
            Change::Delete(crate::cluster::DeleteRef {
                api_version: "v1".into(),
                id,
            })
        };
        let cm = ObjectId {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: Some("app".into()),
            name: "c".into(),
        };
        assert_eq!(superseded_by(vec![gone(cm)], &["app", "other"]), first);
        // A namespace the earlier phase labelled by command only: no file of it to re-apply.
        let other = crate::cluster::namespace_id("other");
        assert!(superseded_by(vec![gone(other)], &["app", "cm"]).is_empty());
    }

    use crate::k8s::Minor;
    use crate::manifest::ObjectId;

    fn webhook() -> ObjectId {
        ObjectId {
            group: "admissionregistration.k8s.io".into(),
            kind: "MutatingWebhookConfiguration".into(),
            namespace: None,
            name: "istio-sidecar-injector".into(),
        }
    }

    #[test]
    fn path_refusals_without_a_fixture_say_what_and_how_to_fix_it() {
        let v = |t: &str| semver::Version::parse(t).unwrap();
        assert_eq!(
            refusal(&Refusal::NoRevisionTag { tag: "prod-stable".into(), version: v("1.14.1") }).to_string(),
            "error: istioctl 1.14.1 rendered no webhook configuration for revision tag `prod-stable` (values.revisionTags)\nhelp: this istioctl cannot render revision tags offline; remove the tag from spec.tags and move it with `istioctl tag set` instead"
        );
        assert_eq!(
            refusal(&Refusal::RendersMismatch {
                releases: 3,
                renders: 2
            })
            .to_string(),
            "error: internal error: 2 renders for the 3 control planes of the path"
        );
        let between = |window| Refusal::KubernetesBetweenHops {
            kubernetes: Minor::new(1, 21),
            istio: Minor::new(1, 15),
            lowest: Minor::new(1, 22),
            highest: Minor::new(1, 25),
            hop: 2,
            from: v("1.14.1"),
            to: v("1.15.3"),
            window,
        };
        let help = |r: &Refusal| refusal(r).help.unwrap_or_default();
        assert!(help(&between(Some((Minor::new(1, 22), Minor::new(1, 22)))))
            .starts_with("upgrade the cluster to Kubernetes 1.22 after hop 1 ends on 1.14.1 and before hop 2 starts"));
        assert!(help(&between(None)).starts_with(
            "no Kubernetes version is supported by both, so no cluster upgrade lets this hop run; choose other versions in spec.path after hop 1"
        ));
    }

    #[test]
    fn refusals_without_a_fixture_say_what_and_how_to_fix_it() {
        assert_eq!(
            refusal(&Refusal::NoHop).to_string(),
            "error: the upgrade has no hop: nothing moves from one revision to another\nhelp: set spec.to.version to a version after spec.from.version"
        );
        let several = Violation::SeveralRevisions {
            webhook: webhook(),
            service: service_id("istio-system", "istiod"),
            revisions: vec!["1-13-5".into(), "default".into()],
        };
        assert_eq!(
            refusal(&Refusal::UndecidableStart { violation: several.clone() }).to_string(),
            "error: before the upgrade, MutatingWebhookConfiguration.admissionregistration.k8s.io istio-sidecar-injector calls Service istio-system/istiod, which selects istiod of revisions 1-13-5, default\nhelp: the old install's Service in front of istiod selects several revisions: fix it before planning the upgrade"
        );
        let unreadable = Violation::Unevaluable {
            config: webhook(),
            webhook: "rev.namespace.sidecar-injector.istio.io".into(),
            why: "matchConditions cannot be evaluated".into(),
        };
        let text = refusal(&Refusal::UndecidableStart {
            violation: unreadable.clone(),
        })
        .to_string();
        assert!(text.ends_with("help: istio-canary refuses to guess what kube-apiserver would do: remove what it cannot evaluate from the old install's webhooks, or upgrade this mesh by hand"), "{text}");
        let text = refusal(&Refusal::UndecidableRender {
            revision: Revision::Named("1-14-1".into()),
            violation: several,
        })
        .to_string();
        assert!(
            text.starts_with(
                "error: in the render of revision 1-14-1, MutatingWebhookConfiguration"
            ),
            "{text}"
        );
        let at = PhaseAt {
            index: 3,
            kind: PhaseKind::Migrate,
            dir: "03-migrate-a".into(),
            from: Revision::Named("1-13-5".into()),
            to: Revision::Named("1-14-1".into()),
        };
        let text = refusal(&Refusal::UnsafePhase {
            at,
            violation: unreadable,
        })
        .to_string();
        assert!(
            text.contains(
                "help: istio-canary evaluates injector webhooks the way kube-apiserver does"
            ),
            "{text}"
        );
    }

    fn deployment(ns: &str, name: &str) -> ObjectId {
        ObjectId {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: Some(ns.into()),
            name: name.into(),
        }
    }

    #[test]
    fn an_uninstall_of_a_revision_still_in_use_lists_every_user() {
        let at = PhaseAt {
            index: 7,
            kind: PhaseKind::Uninstall,
            dir: "07-uninstall-1-13-5".into(),
            from: Revision::Named("1-13-5".into()),
            to: Revision::Named("1-14-1".into()),
        };
        let text = refusal(&Refusal::StillUsed {
            at,
            namespaces: vec!["legacy".into()],
            workloads: vec![deployment("edge", "api")],
            references: Vec::new(),
        })
        .to_string();
        assert_eq!(
            text,
            "error: phase 07-uninstall-1-13-5 would delete revision 1-13-5 while it is still used:\n  namespace legacy is injected by it\n  Deployment.apps edge/api runs its sidecars\nhelp: move what still uses it in a wave before the uninstall; point a revision tag still on it at the new revision (`istioctl tag set TAG --revision 1-14-1 --overwrite`) and capture the inventory again; or keep the old revision (uninstallOld: false)"
        );
    }

    #[test]
    fn a_pinned_workload_is_named_with_the_injector_its_pods_would_meet() {
        let at = PhaseAt {
            index: 3,
            kind: PhaseKind::Migrate,
            dir: "03-migrate-canary".into(),
            from: Revision::Named("1-13-5".into()),
            to: Revision::Named("1-14-1".into()),
        };
        let found = vec![crate::mesh::Injection {
            config: "istio-sidecar-injector-1-13-5".into(),
            webhook: "rev.object.sidecar-injector.istio.io".into(),
            target: crate::mesh::Target::Revision("1-13-5".into()),
        }];
        let text = refusal(&Refusal::Pinned {
            at,
            workloads: vec![(deployment("shop", "cart"), found)],
        })
        .to_string();
        assert_eq!(
            text,
            "error: after phase 03-migrate-canary, workloads restarted for revision 1-14-1 would not move to it:\n  Deployment.apps shop/cart: its new pods would be injected by 1-13-5\nhelp: their pod templates pin a revision (`istio.io/rev` or `sidecar.istio.io/inject` on the pod): move them with the wave's `workloads`, or change their templates"
        );
    }
}
