//! The `plan.json` document: the one set of types both sides of the file use. `emit` builds a
//! `PlanDoc` from the plan and the bundle and serializes it; `check` (`verify`, `show`,
//! `plan --format text`, `compile --check`) deserializes the same types from a written output.
//!
//! Owns: the file's name, apiVersion and kind, its field names (camelCase), their order (the
//! declaration order below is the byte order of the file) and which fields are left out when
//! empty. Reading is tolerant: unknown fields are ignored (later versions add some), the fields
//! `check` reads are required and the others default when absent, so a plan written by another
//! version still reads. Must not: compute anything (no plan, layout or digest logic, no I/O):
//! these are data types only, and a field is renamed never, only added.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::diff::{ControlPlaneDiff, PhaseDelta};

/// The machine-readable plan; it records the sha256 of every other file of the output.
pub const PLAN_JSON: &str = "plan.json";
/// What `plan.json` says it is, and what a reader requires.
pub const PLAN_API_VERSION: &str = "istio-canary.dev/v1alpha2";
/// The apiVersion of plans written before the injection tables were grouped (`injection.rows`):
/// they hold one `injection.namespaces` entry per namespace, and still read.
pub const PLAN_API_VERSION_V1ALPHA1: &str = "istio-canary.dev/v1alpha1";
pub const PLAN_KIND: &str = "CanaryUpgradePlan";

/// The whole `plan.json`.
///
/// `control_plane_diff` and each phase's `delta` are written but never read back: they are
/// `diff`'s own types (Serialize only, made of `manifest::ObjectId`s), nothing that reads a
/// written output uses them, and giving them `Deserialize` would make the reader refuse a plan
/// whose diff a later version writes differently. So they are `skip_deserializing` (their
/// `Default` when read) and the JSON under those keys is ignored like any unknown field.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDoc {
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub name: String,
    pub tool_version: String,
    /// `null` when the policy names no Kubernetes version (the plan was not checked against one).
    #[serde(default)]
    pub kubernetes_version: Option<String>,
    pub from: SideDoc,
    pub to: SideDoc,
    #[serde(default)]
    pub hops: Vec<HopDoc>,
    pub inputs: InputsDoc,
    #[serde(default)]
    pub assumptions: Vec<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    pub phases: Vec<PhaseDoc>,
    pub injection: InjectionDoc,
    /// The old revision's render against the new one's (`diff`). Written only (see above).
    #[serde(skip_deserializing)]
    pub control_plane_diff: ControlPlaneDiff,
    /// Which revision injects each namespace after phase N, then rollback N.
    #[serde(default)]
    pub rollback_injection: InjectionDoc,
    /// The phase whose end state `live/` holds, or `null` (no `live/`).
    #[serde(default)]
    pub promote: Option<PromoteDoc>,
    /// sha256 of every other file of the output, by path (left out while it is being built:
    /// PLAN.md is rendered from the document before the digests exist).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

/// One control plane: its Istio version and its `istio.io/rev` value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SideDoc {
    pub version: String,
    pub revision: String,
}

/// One canary cycle (1-based).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[serde(rename_all = "camelCase")]
pub struct HopDoc {
    pub index: usize,
    pub from: SideDoc,
    pub to: SideDoc,
    /// In a plan of several hops, the hop's old render against its new one (the top-level
    /// `controlPlaneDiff` is the first hop's). Written only.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub control_plane_diff: Option<ControlPlaneDiff>,
}

/// The digests of the compile's inputs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputsDoc {
    pub policy: FileDigestDoc,
    pub istio_operators: BTreeMap<String, String>,
    pub istioctl: BTreeMap<String, String>,
    /// The cluster inventory state 0 was made from (`spec.inventory`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<FileDigestDoc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileDigestDoc {
    pub path: String,
    pub sha256: String,
}

/// One phase: its meaning (from the plan) and its files (from the layout), relative to `dir`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseDoc {
    pub index: usize,
    /// 1-based index into `hops`.
    #[serde(default)]
    pub hop: usize,
    pub name: String,
    pub kind: String,
    pub dir: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    pub summary: String,
    pub commands: Vec<String>,
    #[serde(default)]
    pub server_side: Vec<String>,
    #[serde(default)]
    pub checks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
    /// What an Argo CD or Flux user must run by hand in this phase, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// Earlier phases (directories) whose Flux Kustomizations must be suspended before this
    /// phase runs: their files would put back what it changes or deletes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flux_suspend: Vec<String>,
    pub apply: Vec<EntryDoc>,
    pub patch: Vec<PatchDoc>,
    pub delete: Vec<EntryDoc>,
    /// What the phase adds, changes and deletes in the simulated cluster, by identity. Written
    /// only (see `PlanDoc`).
    #[serde(skip_deserializing)]
    pub delta: PhaseDelta,
    /// How to undo the phase (absent for uninstall: the point of no return).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackDoc>,
}

/// How to undo one phase. Nothing reads it back, so every field defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RollbackDoc {
    /// `null` when the rollback has nothing to run (no directory is written).
    pub dir: Option<String>,
    pub commands: Vec<String>,
    pub server_side: Vec<String>,
    pub checks: Vec<String>,
    /// Files relative to `dir`; delete stubs are under `delete/`.
    pub apply: Vec<EntryDoc>,
    pub patch: Vec<PatchDoc>,
    pub delete: Vec<EntryDoc>,
}

/// The promote point and what `live/` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PromoteDoc {
    pub index: usize,
    pub dir: String,
    /// The directory holding the desired state after that phase.
    pub live: String,
    /// Its files, relative to `live`.
    pub files: Vec<String>,
}

/// One object file (or delete stub) of a directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryDoc {
    #[serde(default)]
    pub api_version: String,
    pub kind: String,
    /// `null` for cluster-scoped objects, so every entry has the same keys.
    pub namespace: Option<String>,
    pub name: String,
    pub file: String,
}

/// One label patch: by a file of the directory, or by a command.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchDoc {
    #[serde(default)]
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// Labels set (merged into the object's labels).
    pub set_labels: BTreeMap<String, String>,
    /// Labels removed.
    pub remove_labels: Vec<String>,
    /// For a pod-template patch (a restart or a per-workload move): the template's labels and
    /// annotations set, or removed (`null`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub template_labels: BTreeMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub template_annotations: BTreeMap<String, Option<String>>,
    /// The file in the directory that carries the patch, or `null`.
    pub file: Option<String>,
    /// The command that makes the patch, or `null`.
    pub command: Option<String>,
}

/// Which revision injects each namespace, by state.
///
/// Since `v1alpha2` the table is written compactly: `rows` holds each distinct row once (the
/// cells and the tag), with every namespace that has it. A `v1alpha1` plan holds `namespaces`
/// instead, one row per namespace; a reader takes either (`check::injection_rows`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InjectionDoc {
    /// `before`, then each phase's directory (or, for rollbacks, `<dir>, then rollback`).
    pub states: Vec<String>,
    /// One row per namespace (`v1alpha1` only; never written now).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<InjectionRowDoc>,
    /// Each distinct row once, with its namespaces (`v1alpha2`), in the order of the row's first
    /// namespace in the plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<InjectionGroupDoc>,
}

/// One namespace: the revision injecting it in each state, one cell per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectionRowDoc {
    pub namespace: String,
    /// The revision tag the namespace selects (`istio.io/rev=<tag>`), when it follows a tag the
    /// plan moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub states: Vec<String>,
}

/// The namespaces whose rows are the same: the same tag, and the same cell in every state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectionGroupDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub states: Vec<String>,
    /// In plan order.
    pub namespaces: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_ignores_unknown_fields_and_the_written_only_ones() {
        let text = r#"{"name": "p", "toolVersion": "1", "from": {"version": "1", "revision": "a"},
            "to": {"version": "2", "revision": "b"},
            "inputs": {"policy": {"path": "c", "sha256": "d"}, "istioOperators": {}, "istioctl": {}},
            "phases": [{"index": 1, "name": "crds", "kind": "crds", "dir": "01-crds", "summary": "s",
              "commands": [], "apply": [], "patch": [], "delete": [], "delta": {"added": [{"x": 1}]},
              "later": true}],
            "injection": {"states": ["before"], "namespaces": []},
            "controlPlaneDiff": "anything", "files": {}, "addedLater": 1}"#;
        let doc: PlanDoc = serde_json::from_str(text).unwrap();
        assert_eq!(doc.phases[0].dir, "01-crds");
        assert!(doc.phases[0].rollback.is_none() && doc.promote.is_none());
    }

    #[test]
    fn a_field_check_reads_is_required() {
        let err = serde_json::from_str::<PlanDoc>(r#"{"name": "p"}"#).unwrap_err();
        assert!(err.to_string().contains("toolVersion"), "{err}");
    }

    #[test]
    fn writing_keeps_declaration_order_and_leaves_out_empty_optionals() {
        let doc = PhaseDoc {
            index: 1,
            kind: "crds".into(),
            ..PhaseDoc::default()
        };
        let text = serde_json::to_string(&doc).unwrap();
        assert!(
            text.starts_with(r#"{"index":1,"hop":0,"name":"","kind":"crds","dir":"","summary""#),
            "{text}"
        );
        assert!(
            !text.contains("namespaces") && !text.contains("undo") && !text.contains("rollback")
        );
    }
}
