//! GitOps: the `argocd/` Applications and `flux/` Kustomizations that sync the phase directories
//! and `live/` with zero drift, and that run nothing by themselves.
//!
//! Owns: the objects of `argocd/` and `flux/` (one Application and one Kustomization per
//! directory of the bundle that has a `Kustomization`, plus `live` only when the bundle has
//! `live/`), their names (`<plan>-<dir>`, shortened to 63 characters with a digest), their
//! values (from the policy's `spec.gitops`, else the controller's usual default, else a
//! `${GITOPS_*}` placeholder), their gates (no automated sync on a phase Application, `suspend:
//! true` on every phase Kustomization), their sync order, which files each folder's
//! `Kustomization` lists (the phase objects, never `live.yaml`), and the ignore rules for the
//! webhook fields istiod changes at runtime (`caBundle`, the validators' `failurePolicy`). Must
//! not: decide phases or their contents (that is `plan`), decide anything about an object written
//! to Git (its path, annotations, sync wave or prune protection: that is `layout`, and gitops only
//! reads the bundle's objects), render a `Kustomization` (that is `emit`), do any I/O, or write
//! anything into a phase directory that `kubectl apply -k`/`-f` or a GitOps directory scan of it
//! would read: its files live in their own top-level folders.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value as Json};
use serde_yaml::Value;

use crate::error::{Error, Result};
use crate::istio::REV_LABEL;
use crate::layout::{Bundle, ARGOCD_SYNC_WAVE, LIVE_DIR};
use crate::manifest::Object;
use crate::plan::Plan;
use crate::policy::{sha256_hex, Cluster, GitOps};

/// The folder of the Argo CD Applications.
pub const ARGOCD_DIR: &str = "argocd";
/// The folder of the Flux Kustomizations.
pub const FLUX_DIR: &str = "flux";

// The placeholder variables, written `${NAME}` where the policy gives no value and the
// controller has no usual default. Flux's `postBuild.substitute`/`substituteFrom` and
// `flux envsubst` fill them in; Argo CD does not.

/// Argo CD's `source.repoURL` (`spec.gitops.repoURL`).
pub const REPO_URL_VAR: &str = "GITOPS_REPO_URL";
/// The bundle's directory inside the repository (`spec.gitops.path`), both controllers.
pub const PATH_VAR: &str = "GITOPS_PATH";
/// Argo CD's `destination.server` (`spec.gitops.argocd.destination`).
pub const ARGOCD_SERVER_VAR: &str = "GITOPS_ARGOCD_SERVER";
/// Flux's `sourceRef.name` (`spec.gitops.flux.sourceRef`).
pub const FLUX_SOURCE_VAR: &str = "GITOPS_FLUX_SOURCE_NAME";

/// Defaults where the policy says nothing: Argo CD's and Flux's install namespaces, Argo CD's
/// built-in project, the default branch, Flux's Git source.
pub const ARGOCD_NAMESPACE: &str = "argocd";
pub const ARGOCD_PROJECT: &str = "default";
pub const TARGET_REVISION: &str = "HEAD";
pub const FLUX_NAMESPACE: &str = "flux-system";
pub const FLUX_SOURCE_KIND: &str = "GitRepository";

/// The longest object name: Argo CD's tracking label and Flux's
/// `kustomize.toolkit.fluxcd.io/name` label hold it, and a label value has at most 63
/// characters.
pub const MAX_NAME: usize = 63;
/// How many hex digits of the full name's sha256 a shortened name ends with.
const NAME_DIGEST: usize = 8;

/// Flux's per-object apply policy: `IfNotPresent` creates the object once and never updates it,
/// so a parent Kustomization that applies `flux/` leaves `flux resume`/`suspend` alone.
pub const FLUX_SSA: &str = "kustomize.toolkit.fluxcd.io/ssa";
pub const FLUX_SSA_IF_NOT_PRESENT: &str = "IfNotPresent";

const WEBHOOK_GROUP: &str = crate::k8s::ADMISSION_GROUP;
const MUTATING: &str = "MutatingWebhookConfiguration";
const VALIDATING: &str = "ValidatingWebhookConfiguration";
/// istiod patches the CA into every webhook it serves.
pub const CA_BUNDLE_PATH: &str = ".webhooks[]?.clientConfig.caBundle";
/// istiod's validation controller flips `Ignore` to `Fail` once it serves (istio/istio#52785).
pub const FAILURE_POLICY_PATH: &str = ".webhooks[]?.failurePolicy";

/// What `files` gives emit: the files, what each folder's `Kustomization` lists, and the names
/// PLAN.md tells the operator to sync, resume and suspend.
#[derive(Debug, Clone)]
pub struct Output {
    /// `argocd/*.yaml` and `flux/*.yaml` (path -> text).
    pub files: BTreeMap<String, String>,
    /// The files `argocd/Kustomization` and `flux/Kustomization` list (the phase objects), in
    /// phase order.
    pub argocd: Vec<String>,
    pub flux: Vec<String>,
    /// Phase directory -> the name of its Application and of its Kustomization.
    pub phases: BTreeMap<String, String>,
    /// The name of the `live` Application and Kustomization, when the bundle has `live/`.
    pub live: Option<String>,
    pub argocd_namespace: String,
    pub flux_namespace: String,
    /// The placeholder variables left in the files (`REPO_URL_VAR`, …), sorted.
    pub placeholders: Vec<&'static str>,
}

fn placeholder(var: &str) -> String {
    format!("${{{var}}}")
}

/// The name of the Application and the Kustomization of `dir`: `<plan>-<dir>`, or, when that
/// is longer than `MAX_NAME`, its start, `-` and the first `NAME_DIGEST` hex digits of its
/// sha256 (deterministic, at most `MAX_NAME` characters, ending with a letter or digit).
pub fn object_name(plan: &str, dir: &str) -> String {
    let full = format!("{plan}-{dir}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let digest = sha256_hex(full.as_bytes());
    let keep: String = full.chars().take(MAX_NAME - 1 - NAME_DIGEST).collect();
    let start = keep.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{start}-{}", &digest[..NAME_DIGEST])
}

/// The values every object shares, from the policy, a default or a placeholder.
struct Values {
    argocd_namespace: String,
    project: String,
    repo_url: String,
    target_revision: String,
    destination: Json,
    /// The bundle's directory in the repository, empty for its root.
    path: String,
    flux_namespace: String,
    source_ref: Json,
    argocd_placeholders: Vec<&'static str>,
    flux_placeholders: Vec<&'static str>,
}

impl Values {
    fn of(g: &GitOps) -> Values {
        let mut argocd_placeholders = Vec::new();
        let mut flux_placeholders = Vec::new();
        let repo_url = g.repo_url.clone().unwrap_or_else(|| {
            argocd_placeholders.push(REPO_URL_VAR);
            placeholder(REPO_URL_VAR)
        });
        let path = match g.path.as_deref() {
            Some(".") => String::new(),
            Some(p) => p.to_string(),
            None => {
                argocd_placeholders.push(PATH_VAR);
                flux_placeholders.push(PATH_VAR);
                placeholder(PATH_VAR)
            }
        };
        let destination = match &g.argocd.destination {
            Some(d) => {
                let mut dest = match &d.cluster {
                    Cluster::Server(s) => json!({"server": s}),
                    Cluster::Name(n) => json!({"name": n}),
                };
                if let Some(ns) = &d.namespace {
                    dest["namespace"] = json!(ns);
                }
                dest
            }
            None => {
                argocd_placeholders.push(ARGOCD_SERVER_VAR);
                json!({"server": placeholder(ARGOCD_SERVER_VAR)})
            }
        };
        let source_ref = match &g.flux.source_ref {
            Some(s) => {
                let mut r = json!({
                    "kind": s.kind.as_deref().unwrap_or(FLUX_SOURCE_KIND),
                    "name": s.name,
                });
                if let Some(ns) = &s.namespace {
                    r["namespace"] = json!(ns);
                }
                r
            }
            None => {
                flux_placeholders.push(FLUX_SOURCE_VAR);
                json!({"kind": FLUX_SOURCE_KIND, "name": placeholder(FLUX_SOURCE_VAR)})
            }
        };
        argocd_placeholders.sort_unstable();
        flux_placeholders.sort_unstable();
        Values {
            argocd_namespace: g
                .argocd
                .namespace
                .clone()
                .unwrap_or_else(|| ARGOCD_NAMESPACE.into()),
            project: g
                .argocd
                .project
                .clone()
                .unwrap_or_else(|| ARGOCD_PROJECT.into()),
            repo_url,
            target_revision: g
                .target_revision
                .clone()
                .unwrap_or_else(|| TARGET_REVISION.into()),
            destination,
            path,
            flux_namespace: g
                .flux
                .namespace
                .clone()
                .unwrap_or_else(|| FLUX_NAMESPACE.into()),
            source_ref,
            argocd_placeholders,
            flux_placeholders,
        }
    }

    /// Argo CD's `source.path` of a bundle directory (relative to the repository root).
    fn argocd_path(&self, dir: &str) -> String {
        if self.path.is_empty() {
            dir.to_string()
        } else {
            format!("{}/{dir}", self.path)
        }
    }

    /// Flux's `spec.path` of a bundle directory (`./` and relative to the source's root).
    fn flux_path(&self, dir: &str) -> String {
        format!("./{}", self.argocd_path(dir))
    }
}

/// ValidatingWebhookConfigurations istiod's validation controller reconciles (those carrying an
/// `istio.io/rev` label: `istio-validator-<rev>-<ns>`, `istiod-default-validator`), with the
/// index of every webhook that sets a `failurePolicy`.
fn flipped_validators<'a>(
    objects: impl IntoIterator<Item = &'a Object>,
) -> BTreeMap<String, Vec<usize>> {
    let mut out = BTreeMap::new();
    for o in objects {
        if o.id.group != WEBHOOK_GROUP || o.id.kind != VALIDATING || o.label(REV_LABEL).is_none() {
            continue;
        }
        let indices = match o.body.get("webhooks") {
            Some(Value::Sequence(webhooks)) => webhooks
                .iter()
                .enumerate()
                .filter(|(_, w)| w.get("failurePolicy").is_some_and(|f| !f.is_null()))
                .map(|(i, _)| i)
                .collect(),
            _ => Vec::new(),
        };
        out.insert(o.id.name.clone(), indices);
    }
    out
}

fn has_kind<'a>(objects: impl IntoIterator<Item = &'a Object>, kind: &str) -> bool {
    objects
        .into_iter()
        .any(|o| o.id.group == WEBHOOK_GROUP && o.id.kind == kind)
}

/// Argo CD `ignoreDifferences` for a set of objects: the `caBundle` of every webhook, and the
/// `failurePolicy` of the validators istiod flips.
fn ignore_differences(
    mutating: bool,
    validating: bool,
    flipped: &BTreeMap<String, Vec<usize>>,
) -> Vec<Json> {
    let mut rules = Vec::new();
    if mutating {
        rules.push(json!({"group": WEBHOOK_GROUP, "kind": MUTATING, "jqPathExpressions": [CA_BUNDLE_PATH]}));
    }
    if validating {
        rules.push(json!({"group": WEBHOOK_GROUP, "kind": VALIDATING, "jqPathExpressions": [CA_BUNDLE_PATH]}));
    }
    for name in flipped.keys() {
        rules.push(json!({"group": WEBHOOK_GROUP, "kind": VALIDATING, "name": name, "jqPathExpressions": [FAILURE_POLICY_PATH]}));
    }
    rules
}

/// Flux `patches` that take `failurePolicy` out of the validators istiod flips before Flux
/// applies them: a field Flux does not apply is a field it does not own, so istiod's value
/// stands and no reconcile resets it.
fn flux_patches(flipped: &BTreeMap<String, Vec<usize>>) -> Vec<Json> {
    flipped
        .iter()
        .filter(|(_, indices)| !indices.is_empty())
        .map(|(name, indices)| {
            let ops: String = indices
                .iter()
                .map(|i| format!("- op: remove\n  path: /webhooks/{i}/failurePolicy\n"))
                .collect();
            json!({
                "target": {"group": WEBHOOK_GROUP, "version": "v1", "kind": VALIDATING, "name": name},
                "patch": ops,
            })
        })
        .collect()
}

fn application(v: &Values, name: &str, dir: &str, wave: Option<usize>, rules: Vec<Json>) -> Json {
    let mut metadata = json!({"name": name, "namespace": v.argocd_namespace});
    if let Some(w) = wave {
        metadata["annotations"] = json!({ARGOCD_SYNC_WAVE: w.to_string()});
    }
    let mut options = vec!["RespectIgnoreDifferences=true", "ServerSideApply=true"];
    let mut sync = json!({});
    // Only live/ syncs by itself: a phase runs when the operator syncs it.
    if wave.is_none() {
        options.push("PruneLast=true");
        sync["automated"] = json!({"prune": true, "selfHeal": true});
    }
    sync["syncOptions"] = json!(options);
    let mut spec = json!({
        "project": v.project,
        "source": {"repoURL": v.repo_url, "targetRevision": v.target_revision, "path": v.argocd_path(dir)},
        "destination": v.destination,
        "syncPolicy": sync,
    });
    if !rules.is_empty() {
        spec["ignoreDifferences"] = Json::Array(rules);
    }
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": metadata, "spec": spec})
}

/// What a Flux Kustomization syncs.
enum Syncs<'a> {
    /// A phase directory, after the phase named `after` (the previous one's object, if any).
    Phase { after: Option<&'a str> },
    /// `live/`.
    Live,
}

/// A Flux Kustomization: for a phase, suspended, created once by a parent (`IfNotPresent`),
/// after the previous phase, never pruning; for `live/`, reconciling and pruning.
fn kustomization(v: &Values, name: &str, dir: &str, syncs: Syncs<'_>, patches: Vec<Json>) -> Json {
    let mut metadata = json!({"name": name, "namespace": v.flux_namespace});
    let mut spec = json!({
        "interval": "10m",
        "timeout": "5m",
        "sourceRef": v.source_ref,
        "path": v.flux_path(dir),
        "prune": matches!(syncs, Syncs::Live),
        "wait": true,
    });
    if let Syncs::Phase { after } = syncs {
        metadata["annotations"] = json!({FLUX_SSA: FLUX_SSA_IF_NOT_PRESENT});
        spec["suspend"] = json!(true);
        if let Some(d) = after {
            spec["dependsOn"] = json!([{ "name": d }]);
        }
    }
    if !patches.is_empty() {
        spec["patches"] = Json::Array(patches);
    }
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": metadata,
        "spec": spec,
    })
}

const README: &str = "README, \"GitOps: Argo CD and Flux\"";

/// The comment lines after the generated header: how the object runs, then the placeholders it
/// holds and who fills them.
fn notes(lines: &[String], placeholders: &[&str], argocd: bool) -> String {
    let mut out: String = lines.iter().map(|l| format!("# {l}\n")).collect();
    if !placeholders.is_empty() {
        let vars: Vec<String> = placeholders.iter().map(|p| placeholder(p)).collect();
        out.push_str(&format!("# Placeholders: {}\n", vars.join(" ")));
        if argocd {
            out.push_str(&format!(
                "# Argo CD substitutes nothing: set spec.gitops in the policy ({README}).\n"
            ));
        } else {
            out.push_str(&format!(
                "# Set spec.gitops in the policy, or let Flux's postBuild substitution or `flux envsubst`\n# fill them in ({README}).\n"
            ));
        }
    }
    out
}

fn yaml_file(header: &str, notes: &str, value: &Json) -> Result<String> {
    // Through the one YAML writer, so YAML 1.1 readers (kubectl, Argo CD, Flux) read the same.
    let value = serde_yaml::to_value(value)
        .map_err(|e| Error::new(format!("serializing a GitOps manifest: {e}")))?;
    let text = crate::yamlout::to_string(&value)?;
    Ok(format!("{header}{notes}{text}"))
}

/// The `argocd/` and `flux/` files, each starting with `header`: one Application and one
/// Kustomization per phase directory that has a `Kustomization` (the uninstall phase only
/// deletes; in GitOps it is the prune of `live/`), in phase order, and one of each for `live/`
/// when the bundle has it. The ignore rules of a phase are read from the objects the bundle
/// writes there.
pub fn files(plan: &Plan, bundle: &Bundle, gitops: &GitOps, header: &str) -> Result<Output> {
    let v = Values::of(gitops);
    let mut out = Output {
        files: BTreeMap::new(),
        argocd: Vec::new(),
        flux: Vec::new(),
        phases: BTreeMap::new(),
        live: None,
        argocd_namespace: v.argocd_namespace.clone(),
        flux_namespace: v.flux_namespace.clone(),
        placeholders: v
            .argocd_placeholders
            .iter()
            .chain(&v.flux_placeholders)
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let mut previous: Option<String> = None;
    for (phase, dir) in plan.phases.iter().zip(&bundle.phases) {
        if dir.kustomization.is_none() {
            continue;
        }
        let name = object_name(&plan.name, &dir.path);
        // The objects its files apply whole (their Git form strips nulls and adds annotations,
        // neither of which the webhook rules read).
        let objects: Vec<&Object> = phase
            .changes
            .iter()
            .filter_map(|c| match c {
                crate::cluster::Change::Apply(o) => Some(o),
                _ => None,
            })
            .collect();
        let flipped = flipped_validators(objects.iter().copied());
        let rules = ignore_differences(
            has_kind(objects.iter().copied(), MUTATING),
            has_kind(objects.iter().copied(), VALIDATING),
            &flipped,
        );
        let file = format!("{}.yaml", dir.path);
        let app = application(&v, &name, &dir.path, Some(phase.index), rules);
        let app_notes = notes(
            &[
                format!(
                    "Phase {}: no automated sync, so applying this file runs nothing. Once the",
                    dir.path
                ),
                "previous phase's checks pass (PLAN.md), run it with:".into(),
                format!("  argocd app sync {name}"),
            ],
            &v.argocd_placeholders,
            true,
        );
        out.files.insert(
            format!("{ARGOCD_DIR}/{file}"),
            yaml_file(header, &app_notes, &app)?,
        );
        let ks = kustomization(
            &v,
            &name,
            &dir.path,
            Syncs::Phase {
                after: previous.as_deref(),
            },
            flux_patches(&flipped),
        );
        let ns = &v.flux_namespace;
        let ks_notes = notes(
            &[
                format!(
                    "Phase {}: suspended, so applying this file runs nothing. Once the previous",
                    dir.path
                ),
                "phase's checks pass (PLAN.md), run it with:".into(),
                format!("  flux resume kustomization {name} -n {ns}"),
                "Before rolling it back, stop Flux from re-applying it:".into(),
                format!("  flux suspend kustomization {name} -n {ns}"),
            ],
            &v.flux_placeholders,
            false,
        );
        out.files.insert(
            format!("{FLUX_DIR}/{file}"),
            yaml_file(header, &ks_notes, &ks)?,
        );
        out.argocd.push(file.clone());
        out.flux.push(file);
        out.phases.insert(dir.path.clone(), name.clone());
        previous = Some(name);
    }

    if bundle.live.is_some() {
        live(plan, bundle, &v, header, &mut out)?;
    }
    let mut names: BTreeSet<&String> = BTreeSet::new();
    for name in out.phases.values().chain(&out.live) {
        if !names.insert(name) {
            return Err(Error::new(format!(
                "internal error: two GitOps objects are named `{name}`"
            )));
        }
    }
    Ok(out)
}

/// The Application and Kustomization of `live/`, which holds the state at the promote point:
/// that may be any state of the plan, so the rules cover every webhook configuration of every
/// state (`LiveDir::admission`).
fn live(plan: &Plan, bundle: &Bundle, v: &Values, header: &str, out: &mut Output) -> Result<()> {
    let states = bundle.live.iter().flat_map(|l| &l.admission);
    let all: Vec<&Object> = states.clone().flatten().map(|o| &**o).collect();
    let mut flipped: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for state in states {
        for (name, indices) in flipped_validators(state.iter().map(|o| &**o)) {
            // The same name in two states (the default validator before and after the move):
            // patch only the webhooks every version has, so no JSON patch misses its path.
            if seen.insert(name.clone()) {
                flipped.insert(name, indices);
            } else if let Some(have) = flipped.get_mut(&name) {
                have.retain(|i| indices.contains(i));
            }
        }
    }
    let rules = ignore_differences(
        has_kind(all.iter().copied(), MUTATING),
        has_kind(all.iter().copied(), VALIDATING),
        &flipped,
    );
    let name = object_name(&plan.name, LIVE_DIR);
    let file = format!("{LIVE_DIR}.yaml");
    let app = application(v, &name, LIVE_DIR, None, rules);
    let app_notes = notes(
        &[
            "live/: automated sync with prune and selfHeal. Roll back by lowering spec.promote in Git".into(),
            "(selfHeal undoes a kubectl rollback). On one cluster, use either this Application or the".into(),
            "phase Applications, never both.".into(),
        ],
        &v.argocd_placeholders,
        true,
    );
    out.files.insert(
        format!("{ARGOCD_DIR}/{file}"),
        yaml_file(header, &app_notes, &app)?,
    );
    let ks = kustomization(v, &name, LIVE_DIR, Syncs::Live, flux_patches(&flipped));
    let ks_notes = notes(
        &[
            "live/: reconciled and pruned every interval. Roll back by lowering spec.promote in Git".into(),
            "(drift correction undoes a kubectl rollback). On one cluster, use either this Kustomization".into(),
            "or the phase Kustomizations, never both.".into(),
        ],
        &v.flux_placeholders,
        false,
    );
    out.files.insert(
        format!("{FLUX_DIR}/{file}"),
        yaml_file(header, &ks_notes, &ks)?,
    );
    out.live = Some(name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Change, DeleteRef};
    use crate::layout::fixtures::{object, phase, plan};
    use crate::layout::layout;
    use crate::plan::PhaseKind;
    use crate::policy::{ArgoCd, Destination, Flux, SourceRef};

    fn vwc(name: &str, webhooks: usize) -> Object {
        let hooks: String = (0..webhooks)
            .map(|i| format!("- name: w{i}\n  failurePolicy: Ignore\n"))
            .collect();
        object(&format!("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: {name}\n  labels:\n    istio.io/rev: r\nwebhooks:\n{hooks}"))
    }

    fn compile(p: &Plan, g: &GitOps) -> Output {
        files(p, &layout(p, std::num::NonZeroUsize::MIN).unwrap(), g, "").unwrap()
    }

    /// Two apply phases and an uninstall, with `live/` after phase `promote`.
    fn three_phases(name: &str, promote: Option<usize>) -> Plan {
        let new = vwc("istio-validator-r", 1);
        let mut uninstall = phase(PhaseKind::Uninstall, 3, Vec::new());
        uninstall.changes.push(Change::Delete(DeleteRef {
            api_version: "v1".into(),
            id: vwc("istio-validator-old", 1).id,
        }));
        let mut p = plan(
            vec![vec![], vec![&new], vec![&new], vec![&new]],
            vec![
                phase(PhaseKind::Install, 1, vec![Change::Apply(new.clone())]),
                phase(PhaseKind::Gateways, 2, vec![Change::Apply(new.clone())]),
                uninstall,
            ],
        );
        p.name = name.into();
        p.promote = promote;
        p
    }

    fn doc(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn live_patches_only_the_webhooks_every_version_has() {
        let old = vwc("istiod-default-validator", 2);
        let new = vwc("istiod-default-validator", 1);
        let mut p = plan(vec![vec![&old], vec![&new]], Vec::new());
        p.promote = Some(1);
        let out = compile(&p, &GitOps::default());
        let live = &out.files["flux/live.yaml"];
        assert!(live.contains("/webhooks/0/failurePolicy"), "{live}");
        assert!(!live.contains("/webhooks/1/failurePolicy"), "{live}");
        let app = &out.files["argocd/live.yaml"];
        assert!(app.contains("name: istiod-default-validator"), "{app}");
    }

    #[test]
    fn one_application_per_directory_with_a_kustomization_and_live_only_with_live() {
        let out = compile(&three_phases("p", None), &GitOps::default());
        let names: Vec<&str> = out.files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "argocd/01-install.yaml",
                "argocd/02-gateways.yaml",
                "flux/01-install.yaml",
                "flux/02-gateways.yaml"
            ]
        );
        assert_eq!(out.argocd, ["01-install.yaml", "02-gateways.yaml"]);
        assert_eq!(out.flux, out.argocd);
        assert_eq!(out.live, None);
        let app = &out.files["argocd/01-install.yaml"];
        assert!(app.contains("name: istio-validator-r"), "{app}");
        assert!(out.files["flux/01-install.yaml"].contains("/webhooks/0/failurePolicy"));

        // With live/, one more of each, never listed with the phase objects.
        let out = compile(&three_phases("p", Some(2)), &GitOps::default());
        assert!(out.files.contains_key("argocd/live.yaml"));
        assert!(out.files.contains_key("flux/live.yaml"));
        assert_eq!(out.live.as_deref(), Some("p-live"));
        assert_eq!(out.argocd, ["01-install.yaml", "02-gateways.yaml"]);
    }

    #[test]
    fn phases_run_nothing_by_themselves_and_live_does() {
        let out = compile(&three_phases("p", Some(2)), &GitOps::default());
        for dir in ["01-install", "02-gateways"] {
            let app = doc(&out.files[&format!("argocd/{dir}.yaml")]);
            assert!(
                app["spec"]["syncPolicy"].get("automated").is_none(),
                "{dir}"
            );
            let ks = doc(&out.files[&format!("flux/{dir}.yaml")]);
            assert_eq!(ks["spec"]["suspend"], Value::Bool(true), "{dir}");
            assert_eq!(ks["spec"]["prune"], Value::Bool(false), "{dir}");
            assert_eq!(
                ks["metadata"]["annotations"][FLUX_SSA],
                Value::from(FLUX_SSA_IF_NOT_PRESENT)
            );
        }
        let ks = doc(&out.files["flux/02-gateways.yaml"]);
        assert_eq!(
            ks["spec"]["dependsOn"][0]["name"],
            Value::from("p-01-install")
        );
        let live = doc(&out.files["flux/live.yaml"]);
        assert!(live["spec"].get("suspend").is_none());
        assert_eq!(live["spec"]["prune"], Value::Bool(true));
        let app = doc(&out.files["argocd/live.yaml"]);
        assert_eq!(
            app["spec"]["syncPolicy"]["automated"]["selfHeal"],
            Value::Bool(true)
        );
    }

    #[test]
    fn long_names_are_shortened_with_a_digest() {
        assert_eq!(object_name("p", "01-crds"), "p-01-crds");
        let plan_name = "a".repeat(63);
        for dir in ["01-crds", "03-migrate-canary", LIVE_DIR] {
            let full = format!("{plan_name}-{dir}");
            let name = object_name(&plan_name, dir);
            assert_eq!(name.len(), MAX_NAME, "{name}");
            assert_eq!(
                name,
                format!("{}-{}", &full[..54], &sha256_hex(full.as_bytes())[..8])
            );
            assert!(crate::names::is_dns1123_label(&name), "{name}");
            assert_eq!(name, object_name(&plan_name, dir), "deterministic");
        }
        assert_ne!(
            object_name(&plan_name, "01-a"),
            object_name(&plan_name, "01-b")
        );
        // A cut that ends on `-` drops it: the name stays a label.
        let plan_name = format!("{}-b", "a".repeat(52));
        let name = object_name(&plan_name, "01-crds");
        assert!(name.starts_with(&format!("{}-", "a".repeat(52))), "{name}");
        assert!(!name.contains("--"), "{name}");
        assert!(crate::names::is_dns1123_label(&name), "{name}");
        // Exactly 63 characters are kept as they are.
        let plan_name = "c".repeat(55);
        assert_eq!(
            object_name(&plan_name, "01-crds"),
            format!("{plan_name}-01-crds")
        );
    }

    #[test]
    fn depends_on_and_live_use_the_shortened_names() {
        let long = "x".repeat(60);
        let out = compile(&three_phases(&long, Some(2)), &GitOps::default());
        let first = object_name(&long, "01-install");
        assert!(first.len() <= MAX_NAME && first != format!("{long}-01-install"));
        assert_eq!(out.phases["01-install"], first);
        let ks = doc(&out.files["flux/02-gateways.yaml"]);
        assert_eq!(
            ks["spec"]["dependsOn"][0]["name"],
            Value::from(first.as_str())
        );
        assert_eq!(
            ks["metadata"]["name"],
            Value::from(object_name(&long, "02-gateways").as_str())
        );
        let live = doc(&out.files["argocd/live.yaml"]);
        assert_eq!(
            live["metadata"]["name"],
            Value::from(object_name(&long, LIVE_DIR).as_str())
        );
        for text in out.files.values() {
            let name = doc(text)["metadata"]["name"].as_str().unwrap().to_string();
            assert!(name.len() <= MAX_NAME, "{name}");
        }
    }

    #[test]
    fn without_the_policy_every_site_value_is_a_placeholder() {
        let out = compile(&three_phases("p", Some(2)), &GitOps::default());
        assert_eq!(
            out.placeholders,
            [ARGOCD_SERVER_VAR, FLUX_SOURCE_VAR, PATH_VAR, REPO_URL_VAR]
        );
        let app = doc(&out.files["argocd/01-install.yaml"]);
        assert_eq!(
            app["spec"]["source"]["repoURL"],
            Value::from("${GITOPS_REPO_URL}")
        );
        assert_eq!(
            app["spec"]["source"]["path"],
            Value::from("${GITOPS_PATH}/01-install")
        );
        assert_eq!(
            app["spec"]["destination"]["server"],
            Value::from("${GITOPS_ARGOCD_SERVER}")
        );
        assert_eq!(app["metadata"]["namespace"], Value::from(ARGOCD_NAMESPACE));
        assert_eq!(app["spec"]["project"], Value::from(ARGOCD_PROJECT));
        let ks = doc(&out.files["flux/live.yaml"]);
        assert_eq!(ks["spec"]["path"], Value::from("./${GITOPS_PATH}/live"));
        assert_eq!(
            ks["spec"]["sourceRef"]["name"],
            Value::from("${GITOPS_FLUX_SOURCE_NAME}")
        );
        assert_eq!(
            ks["spec"]["sourceRef"]["kind"],
            Value::from(FLUX_SOURCE_KIND)
        );
        assert!(out.files["flux/live.yaml"]
            .contains("# Placeholders: ${GITOPS_FLUX_SOURCE_NAME} ${GITOPS_PATH}\n"));
    }

    #[test]
    fn the_policy_fills_in_every_value() {
        let g = GitOps {
            repo_url: Some("https://git.example.com/mesh.git".into()),
            target_revision: Some("main".into()),
            path: Some(".".into()),
            argocd: ArgoCd {
                namespace: Some("gitops".into()),
                project: Some("mesh".into()),
                destination: Some(Destination {
                    cluster: Cluster::Name("prod".into()),
                    namespace: Some("istio-system".into()),
                }),
            },
            flux: Flux {
                namespace: Some("flux".into()),
                source_ref: Some(SourceRef {
                    kind: Some("OCIRepository".into()),
                    name: "mesh".into(),
                    namespace: Some("sources".into()),
                }),
            },
        };
        let out = compile(&three_phases("p", Some(2)), &g);
        assert!(out.placeholders.is_empty());
        for (path, text) in &out.files {
            assert!(!text.contains("${"), "{path}: {text}");
            assert!(!text.contains("Placeholders"), "{path}: {text}");
        }
        let app = doc(&out.files["argocd/02-gateways.yaml"]);
        assert_eq!(app["metadata"]["namespace"], Value::from("gitops"));
        assert_eq!(app["spec"]["project"], Value::from("mesh"));
        assert_eq!(app["spec"]["source"]["path"], Value::from("02-gateways"));
        assert_eq!(app["spec"]["source"]["targetRevision"], Value::from("main"));
        assert_eq!(app["spec"]["destination"]["name"], Value::from("prod"));
        assert!(app["spec"]["destination"].get("server").is_none());
        let ks = doc(&out.files["flux/live.yaml"]);
        assert_eq!(ks["metadata"]["namespace"], Value::from("flux"));
        assert_eq!(ks["spec"]["path"], Value::from("./live"));
        assert_eq!(
            ks["spec"]["sourceRef"]["kind"],
            Value::from("OCIRepository")
        );
        assert_eq!(ks["spec"]["sourceRef"]["namespace"], Value::from("sources"));
        assert_eq!(out.flux_namespace, "flux");
        let out = compile(
            &three_phases("p", None),
            &GitOps {
                path: Some("clusters/prod".into()),
                ..GitOps::default()
            },
        );
        let ks = doc(&out.files["flux/01-install.yaml"]);
        assert_eq!(
            ks["spec"]["path"],
            Value::from("./clusters/prod/01-install")
        );
    }

    #[test]
    fn flux_patches_remove_each_failure_policy() {
        let vwc = object("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: v\n  labels:\n    istio.io/rev: r\nwebhooks:\n- name: a\n  failurePolicy: Ignore\n- name: b\n");
        let flipped = flipped_validators([&vwc]);
        assert_eq!(flipped.get("v"), Some(&vec![0]));
        let p = flux_patches(&flipped);
        assert_eq!(
            p[0]["patch"],
            Json::String("- op: remove\n  path: /webhooks/0/failurePolicy\n".into())
        );
    }
}
