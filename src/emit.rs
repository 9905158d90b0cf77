//! Emitting a plan as files: a pure function from the plan to a sorted map of path -> text.
//!
//! Owns: the output layout (one directory per phase, one file per object, `Kustomization`,
//! delete stubs, `plan.json`, `PLAN.md`, the marker file), file naming, headers, and every
//! template (embedded from `templates/`, rendered by minijinja with strict undefined behaviour).
//! Must not: touch the filesystem, run processes, or change what the plan decided. Text is `\n`
//! terminated and byte-identical for identical plans.

use std::collections::BTreeMap;

use minijinja::{context, Environment, UndefinedBehavior};
use serde::Serialize;
use serde_yaml::{Mapping, Value};

use crate::error::{Error, Result};
use crate::manifest::ObjectId;
use crate::plan::{apply_rank, delete_rank, Phase, PhaseKind, Plan};
use crate::policy::Revision;

pub const TEMPLATE_HEADER: &str = "header.j2";
pub const TEMPLATE_DELETE_HEADER: &str = "delete-header.j2";
pub const TEMPLATE_KUSTOMIZATION: &str = "Kustomization.j2";
pub const TEMPLATE_MARKER: &str = "marker.j2";
pub const TEMPLATE_PLAN_MD: &str = "PLAN.md.j2";

const TEMPLATES: &[(&str, &str)] = &[
    (TEMPLATE_HEADER, include_str!("../templates/header.j2")),
    (
        TEMPLATE_DELETE_HEADER,
        include_str!("../templates/delete-header.j2"),
    ),
    (
        TEMPLATE_KUSTOMIZATION,
        include_str!("../templates/Kustomization.j2"),
    ),
    (TEMPLATE_MARKER, include_str!("../templates/marker.j2")),
    (TEMPLATE_PLAN_MD, include_str!("../templates/PLAN.md.j2")),
];

/// The file that marks a directory as written by istio-canary (so `write` may replace it).
pub const MARKER_FILE: &str = ".istio-canary";
/// The kustomization file's name: one kustomize recognises and `kubectl apply -f DIR` skips.
pub const KUSTOMIZATION_FILE: &str = "Kustomization";

/// Facts about the run that appear in the output.
#[derive(Debug, Clone)]
pub struct EmitContext {
    pub tool_version: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PlanView {
    comment: String,
    api_version: &'static str,
    kind: &'static str,
    name: String,
    tool_version: String,
    from: SideView,
    to: SideView,
    inputs: InputsView,
    phases: Vec<PhaseView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SideView {
    version: String,
    revision: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InputsView {
    policy: FileDigest,
    istio_operators: BTreeMap<String, String>,
    istioctl: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct FileDigest {
    path: String,
    sha256: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhaseView {
    index: usize,
    name: String,
    kind: &'static str,
    dir: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    namespaces: Vec<String>,
    summary: String,
    commands: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    undo: Option<String>,
    apply: Vec<EntryView>,
    delete: Vec<EntryView>,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct EntryView {
    api_version: String,
    kind: String,
    /// `null` for cluster-scoped objects, so every entry has the same keys.
    namespace: Option<String>,
    name: String,
    file: String,
}

fn environment() -> Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .map_err(|e| Error::new(format!("template {name} is invalid: {e}")))?;
    }
    Ok(env)
}

fn render(env: &Environment<'_>, name: &str, ctx: minijinja::Value) -> Result<String> {
    env.get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| Error::new(format!("rendering template {name}: {e}")))
}

/// File names for a phase's objects: `<rank>-<kind>[_<namespace>]_<name>.yaml`, with the API
/// group added to the kind only where two objects would otherwise share a name.
fn file_names(ids: &[(u8, &ObjectId)]) -> Vec<String> {
    let base = |rank: u8, id: &ObjectId, with_group: bool| {
        let mut kind = id.kind.to_lowercase();
        if with_group && !id.group.is_empty() {
            kind = format!("{kind}.{}", id.group);
        }
        match &id.namespace {
            Some(ns) => format!("{rank:02}-{kind}_{ns}_{}.yaml", id.name),
            None => format!("{rank:02}-{kind}_{}.yaml", id.name),
        }
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (rank, id) in ids {
        *counts.entry(base(*rank, id, false)).or_default() += 1;
    }
    ids.iter()
        .map(|(rank, id)| {
            let plain = base(*rank, id, false);
            if counts.get(&plain).copied().unwrap_or(0) > 1 {
                base(*rank, id, true)
            } else {
                plain
            }
        })
        .collect()
}

fn entry(api_version: &str, id: &ObjectId, file: &str) -> EntryView {
    EntryView {
        api_version: api_version.to_string(),
        kind: id.kind.clone(),
        namespace: id.namespace.clone(),
        name: id.name.clone(),
        file: file.to_string(),
    }
}

fn undo_line(phase: &Phase, plan: &Plan) -> Option<String> {
    let old = &plan.from.revision;
    match phase.kind {
        PhaseKind::Crds => Some(format!(
            "none needed: Istio's CRDs stay compatible with revision `{old}`, and no phase downgrades or deletes them."
        )),
        PhaseKind::Install => Some(format!(
            "nothing runs on revision `{rev}` yet. To abandon the upgrade, delete the revision's own objects (their names carry `{rev}`): `for f in {dir}/*{rev}*.yaml; do kubectl delete --ignore-not-found -f \"$f\"; done`. Do not `kubectl delete -k {dir}`: it also holds shared objects revision `{old}` uses.",
            rev = plan.to.revision,
            dir = phase.dir()
        )),
        PhaseKind::Migrate => {
            let ns = phase.namespaces.join(" ");
            let relabel = match old {
                Revision::Default => format!("kubectl label ns {ns} istio.io/rev- istio-injection=enabled --overwrite"),
                Revision::Named(r) => format!("kubectl label ns {ns} istio.io/rev={r} --overwrite"),
            };
            Some(format!("`{relabel}`, then restart the workloads of those namespaces again."))
        }
        PhaseKind::Gateways => Some(format!(
            "re-apply the gateway objects of revision `{old}` (render them with istioctl {}); gateways keep their names, so this is an in-place rollback.",
            plan.from.version
        )),
        PhaseKind::DefaultTag => Some(match old {
            Revision::Named(r) => format!(
                "point the default tag back with `istioctl tag set default --revision {r} --overwrite` (istioctl {}).",
                plan.from.version
            ),
            Revision::Default => format!(
                "`kubectl delete mutatingwebhookconfiguration istio-revision-tag-default && kubectl delete validatingwebhookconfiguration istiod-default-validator`, then re-apply the unrevisioned `istio-sidecar-injector` as istioctl {} renders it (this phase switched its selectors off).",
                plan.from.version
            ),
        }),
        PhaseKind::Uninstall => None,
    }
}

fn summary_and_commands(phase: &Phase, plan: &Plan) -> (String, Vec<String>) {
    let dir = phase.dir();
    let apply = format!("kubectl apply -k {dir}");
    match phase.kind {
        PhaseKind::Crds => (
            format!(
                "Upgrade the {} shared Istio CRDs to {} first. They serve every revision; no later phase deletes them.",
                phase.apply.len(),
                plan.to.version
            ),
            vec![apply, format!("kubectl wait --for condition=established --timeout=60s -f {dir}/")],
        ),
        PhaseKind::Install => (
            format!(
                "Install revision `{}` beside `{}`: its control plane and the shared base objects it updates. No workload moves yet; gateways and tags are later phases.",
                plan.to.revision, plan.from.revision
            ),
            vec![apply, format!("kubectl -n {} rollout status deployment/{} --timeout=300s", plan.to.istio_namespace, plan.to.revision.istiod())],
        ),
        PhaseKind::Migrate => {
            let mut commands = vec![apply];
            for ns in &phase.namespaces {
                commands.push(format!("kubectl rollout restart deployment,statefulset,daemonset -n {ns}"));
            }
            commands.push(format!(
                "kubectl get ns {} -L istio-injection,istio.io/rev",
                phase.namespaces.join(" ")
            ));
            (
                format!(
                    "Move namespaces {} to revision `{}`: label `istio.io/rev={}` and remove `istio-injection` (the Namespace objects set it to null, which `kubectl apply` removes from the live object), then restart their workloads so the new sidecars are injected.",
                    phase.namespaces.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                    plan.to.revision,
                    plan.to.revision
                ),
                commands,
            )
        }
        PhaseKind::Gateways => (
            format!(
                "Move the gateways to revision `{}`. Rendered gateways keep their names across revisions, so this upgrades them in place, after the workloads have moved.",
                plan.to.revision
            ),
            vec![apply],
        ),
        PhaseKind::DefaultTag => (
            format!(
                "Point the default revision tag (`istio-revision-tag-default`, `istiod-default-validator`) at `{}`: `istio-injection=enabled` namespaces and validation move to it.{}",
                plan.to.revision,
                if plan.from.revision == Revision::Default {
                    " The unrevisioned `istio-sidecar-injector` is switched off the way `istioctl tag set default` does it, so no pod is matched by two injectors."
                } else {
                    ""
                }
            ),
            vec![apply],
        ),
        PhaseKind::Uninstall => (
            format!(
                "Delete revision `{}`: the {} objects of its render that the final state does not keep. Never CRDs, Namespaces or shared objects the new revision still renders. Check first that nothing still uses it.",
                plan.from.revision,
                phase.delete.len()
            ),
            {
                let mut commands = Vec::new();
                if let Revision::Named(r) = &plan.from.revision {
                    commands.push(format!("# must list nothing: namespaces still labelled for revision {r}"));
                    commands.push(format!("kubectl get ns -l istio.io/rev={r}"));
                }
                commands.push(format!("# every proxy must show {}:", plan.to.revision.istiod()));
                commands.push("istioctl proxy-status".to_string());
                commands.push(format!("kubectl delete --ignore-not-found -f {dir}/"));
                commands
            },
        ),
    }
}

/// Turns a plan into files: path (relative to the output directory) -> text.
pub fn emit(plan: &Plan, ctx: &EmitContext) -> Result<BTreeMap<String, String>> {
    let env = environment()?;
    let base = context! { tool_version => ctx.tool_version, plan_name => plan.name };
    let header = render(&env, TEMPLATE_HEADER, base.clone())?;
    let mut files = BTreeMap::new();
    let mut phases = Vec::new();

    for phase in &plan.phases {
        let dir = phase.dir();
        let ids: Vec<(u8, &ObjectId)> = phase
            .apply
            .iter()
            .map(|o| (apply_rank(&o.id), &o.id))
            .collect();
        let names = file_names(&ids);
        let mut apply = Vec::new();
        for (object, file) in phase.apply.iter().zip(&names) {
            files.insert(
                format!("{dir}/{file}"),
                format!("{header}{}", object.to_yaml()),
            );
            apply.push(entry(&object.api_version, &object.id, file));
        }
        let ids: Vec<(u8, &ObjectId)> = phase
            .delete
            .iter()
            .map(|d| (delete_rank(&d.id), &d.id))
            .collect();
        let names = file_names(&ids);
        let mut delete = Vec::new();
        if !phase.delete.is_empty() {
            let delete_header = render(
                &env,
                TEMPLATE_DELETE_HEADER,
                context! { tool_version => ctx.tool_version, plan_name => plan.name, old_revision => plan.from.revision.label(), dir => dir },
            )?;
            for (d, file) in phase.delete.iter().zip(&names) {
                files.insert(
                    format!("{dir}/{file}"),
                    format!("{delete_header}{}", stub_yaml(&d.api_version, &d.id)),
                );
                delete.push(entry(&d.api_version, &d.id, file));
            }
        }
        let (summary, commands) = summary_and_commands(phase, plan);
        phases.push(PhaseView {
            index: phase.index,
            name: dir.clone(),
            kind: phase.kind.as_str(),
            dir,
            namespaces: phase.namespaces.clone(),
            summary,
            commands,
            undo: undo_line(phase, plan),
            apply,
            delete,
        });
    }

    let mut istio_operators = BTreeMap::new();
    istio_operators.insert(
        plan.from.operator_path.clone(),
        plan.from.operator_sha256.clone(),
    );
    istio_operators.insert(
        plan.to.operator_path.clone(),
        plan.to.operator_sha256.clone(),
    );
    let mut istioctl = BTreeMap::new();
    istioctl.insert(
        plan.from.version.to_string(),
        plan.from.istioctl_sha256.clone(),
    );
    istioctl.insert(plan.to.version.to_string(), plan.to.istioctl_sha256.clone());
    let view = PlanView {
        comment: format!(
            "Generated by istio-canary {} (`istio-canary compile`) from CanaryUpgrade \"{}\". Do not edit.",
            ctx.tool_version, plan.name
        ),
        api_version: "istio-canary.dev/v1alpha1",
        kind: "CanaryUpgradePlan",
        name: plan.name.clone(),
        tool_version: ctx.tool_version.clone(),
        from: SideView { version: plan.from.version.to_string(), revision: plan.from.revision.label().to_string() },
        to: SideView { version: plan.to.version.to_string(), revision: plan.to.revision.label().to_string() },
        inputs: InputsView {
            policy: FileDigest { path: plan.policy_path.clone(), sha256: plan.policy_sha256.clone() },
            istio_operators,
            istioctl,
        },
        phases,
    };

    for p in &view.phases {
        if p.kind != PhaseKind::Uninstall.as_str() {
            let text = render(
                &env,
                TEMPLATE_KUSTOMIZATION,
                context! { ..base.clone(), ..context! { phase => p } },
            )?;
            files.insert(format!("{}/{KUSTOMIZATION_FILE}", p.dir), text);
        }
    }
    let json = serde_json::to_string_pretty(&view)
        .map_err(|e| Error::new(format!("serializing plan.json: {e}")))?;
    files.insert("plan.json".to_string(), format!("{json}\n"));
    let md = render(
        &env,
        TEMPLATE_PLAN_MD,
        context! { ..base.clone(), ..minijinja::Value::from_serialize(&view) },
    )?;
    files.insert("PLAN.md".to_string(), md);
    files.insert(
        MARKER_FILE.to_string(),
        render(&env, TEMPLATE_MARKER, base)?,
    );

    for text in files.values_mut() {
        normalize_text(text);
    }
    Ok(files)
}

/// A delete stub: apiVersion, kind, namespace, name; nothing an apply could use.
fn stub_yaml(api_version: &str, id: &ObjectId) -> String {
    let mut metadata = Mapping::new();
    metadata.insert("name".into(), Value::String(id.name.clone()));
    if let Some(ns) = &id.namespace {
        metadata.insert("namespace".into(), Value::String(ns.clone()));
    }
    let mut body = Mapping::new();
    body.insert("apiVersion".into(), Value::String(api_version.to_string()));
    body.insert("kind".into(), Value::String(id.kind.clone()));
    body.insert("metadata".into(), Value::Mapping(metadata));
    serde_yaml::to_string(&body).unwrap_or_default()
}

/// `\n` line ends, no trailing blanks at the end, exactly one final newline.
fn normalize_text(text: &mut String) {
    if text.contains('\r') {
        *text = text.replace("\r\n", "\n");
    }
    let trimmed = text.trim_end_matches('\n').len();
    text.truncate(trimmed);
    text.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_constant_names_an_embedded_template() {
        let env = environment().unwrap();
        for name in [
            TEMPLATE_HEADER,
            TEMPLATE_DELETE_HEADER,
            TEMPLATE_KUSTOMIZATION,
            TEMPLATE_MARKER,
            TEMPLATE_PLAN_MD,
        ] {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn strict_templates_reject_unknown_variables() {
        let env = environment().unwrap();
        let err = render(&env, TEMPLATE_HEADER, context! { tool_version => "1" }).unwrap_err();
        assert!(err.message.contains("header.j2"), "{}", err.message);
    }

    #[test]
    fn file_names_add_the_group_only_on_collision() {
        let a = ObjectId {
            group: "networking.istio.io".into(),
            kind: "Gateway".into(),
            namespace: Some("n".into()),
            name: "g".into(),
        };
        let b = ObjectId {
            group: "gateway.networking.k8s.io".into(),
            kind: "Gateway".into(),
            namespace: Some("n".into()),
            name: "g".into(),
        };
        let c = ObjectId {
            group: String::new(),
            kind: "Service".into(),
            namespace: None,
            name: "s".into(),
        };
        let names = file_names(&[(21, &a), (21, &b), (30, &c)]);
        assert_eq!(
            names,
            [
                "21-gateway.networking.istio.io_n_g.yaml",
                "21-gateway.gateway.networking.k8s.io_n_g.yaml",
                "30-service_s.yaml"
            ]
        );
    }
}
