//! What the renders of one hop must hold before any phase is built: a control plane and an
//! injector for the new revision, CRDs when the old install had them, the tag objects the policy
//! asks for, API versions and an Istio version the cluster serves, an install that leaves the
//! running revision's own objects alone, and every gateway the old revision runs.
//!
//! Owns: those refusals, decided on the normalized renders. Must not: build phases or say
//! anything in words (refusals are typed; `describe` words them).

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use crate::cluster::{pod_template_labels, ClusterState};
use crate::istio::{
    is_default_tag_webhook, is_gateway_workload, is_istiod, DEFAULT_VALIDATOR, REV_LABEL,
};
use crate::k8s::{self, Minor, NAME_LABEL};
use crate::manifest::{Object, ObjectId};
use crate::mesh::{references, violations, Expectations, Expected, Target, Violation};
use crate::plan::refusal::{Refusal, Unserved};
use crate::plan::{HopInput, Result};

/// Renders that cannot work are refused before any phase is built.
pub fn render(hop: &HopInput<'_>) -> Result<()> {
    let spec = hop.spec.to_string();
    let rev = hop.to.revision.label();
    if hop.new.is_empty() {
        return Err(Refusal::EmptyRender {
            version: hop.to.version.clone(),
            revision: hop.to.revision.clone(),
            spec,
        });
    }
    let has_istiod = hop.new.iter().any(|o| {
        is_istiod(o) && pod_template_labels(o).get(REV_LABEL).map(String::as_str) == Some(rev)
    });
    if !has_istiod {
        return Err(Refusal::NoIstiod {
            revision: hop.to.revision.clone(),
            spec,
        });
    }
    let crds = |objects: &[Object]| {
        objects
            .iter()
            .filter(|o| o.id.kind == "CustomResourceDefinition")
            .count()
    };
    let old_crds = crds(&hop.old);
    if old_crds > 0 && crds(&hop.new) == 0 {
        return Err(Refusal::NoCrds {
            revision: hop.to.revision.clone(),
            spec,
            old_revision: hop.from.revision.clone(),
            old_version: hop.from.version.clone(),
            new_version: hop.to.version.clone(),
            old_crds,
        });
    }
    // A namespace labelled for the new revision must be injected by it, and the render must
    // be one the evaluation can read.
    let probe = ClusterState::from_objects(&hop.new);
    let unreadable = violations(
        &probe,
        &Expectations {
            namespaces: &Expected::new(),
        },
    )
    .into_iter()
    .find(Violation::is_undecidable);
    if let Some(violation) = unreadable {
        return Err(Refusal::UndecidableRender {
            revision: hop.to.revision.clone(),
            violation,
        });
    }
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
        return Err(Refusal::NoInjector {
            revision: hop.to.revision.clone(),
            spec,
            found,
        });
    }
    if hop.default_tag {
        let has = |kind: &str, name: &str| {
            hop.new
                .iter()
                .any(|o| o.id.kind == kind && o.id.name == name)
        };
        if !hop.new.iter().any(is_default_tag_webhook) {
            return Err(Refusal::NoDefaultTag {
                version: hop.to.version.clone(),
            });
        }
        if !has("ValidatingWebhookConfiguration", DEFAULT_VALIDATOR) {
            return Err(Refusal::NoDefaultValidator {
                version: hop.to.version.clone(),
                revision: hop.to.revision.clone(),
                old_revision: hop.from.revision.clone(),
                spec,
            });
        }
    }
    Ok(())
}

/// Every Istio of the path must support the policy's Kubernetes version. When the first does
/// and a later one does not, the refusal says between which hops the cluster must be upgraded
/// and to which versions (those both Istios of that hop support). Minors the support table does
/// not know are assumptions, not refusals.
pub fn kubernetes_path(hops: &[HopInput<'_>], k: Minor) -> Result<()> {
    let minor = |v: &semver::Version| Minor::new(v.major, v.minor);
    let Some(first) = hops.first() else {
        return Ok(());
    };
    let unsupported =
        |v: &semver::Version| k8s::istio_supports(minor(v)).filter(|(lo, hi)| k < *lo || k > *hi);
    if let Some((lowest, highest)) = unsupported(&first.from.version) {
        return Err(Refusal::IstioUnsupported {
            istio: minor(&first.from.version),
            lowest,
            highest,
            kubernetes: k,
        });
    }
    for (i, hop) in hops.iter().enumerate() {
        let Some((lowest, highest)) = unsupported(&hop.to.version) else {
            continue;
        };
        if hops.len() == 1 {
            return Err(Refusal::IstioUnsupported {
                istio: minor(&hop.to.version),
                lowest,
                highest,
                kubernetes: k,
            });
        }
        let window = k8s::istio_supports(minor(&hop.from.version))
            .map(|(lo, hi)| (lo.max(lowest), hi.min(highest)))
            .filter(|(lo, hi)| lo <= hi);
        return Err(Refusal::KubernetesBetweenHops {
            kubernetes: k,
            istio: minor(&hop.to.version),
            lowest,
            highest,
            hop: i + 1,
            from: hop.from.version.clone(),
            to: hop.to.version.clone(),
            window,
        });
    }
    Ok(())
}

/// Refuses Istio versions outside the support table for the cluster, and objects of the new
/// render whose API version the cluster does not serve.
pub fn kubernetes(hop: &HopInput<'_>, k: Minor) -> Result<()> {
    for side in [&hop.from, &hop.to] {
        let istio = Minor::new(side.version.major, side.version.minor);
        if let Some((lowest, highest)) = k8s::istio_support_gap(istio, k) {
            return Err(Refusal::IstioUnsupported {
                istio,
                lowest,
                highest,
                kubernetes: k,
            });
        }
    }
    let objects: Vec<Unserved> = hop
        .new
        .iter()
        .filter_map(|o| {
            k8s::serves(k, &o.api_version, &o.id.kind)
                .err()
                .map(|why| Unserved {
                    id: o.id.clone(),
                    api_version: o.api_version.clone(),
                    why,
                })
        })
        .collect();
    if objects.is_empty() {
        return Ok(());
    }
    Err(Refusal::ApiNotServed {
        kubernetes: k,
        version: hop.to.version.clone(),
        objects,
    })
}

/// The new install must not change the running control plane in place.
pub fn install_disjoint(install: &[Object], hop: &HopInput<'_>) -> Result<()> {
    // The old revision's own objects, found by what they do: its istiod Deployments, the config
    // maps and secrets their pods mount, the Services that select them, and every webhook
    // configuration whose webhooks reach them. (Service accounts carry no behaviour; shared
    // base objects may be updated by the new install.)
    let rev = hop.from.revision.label();
    let state = ClusterState::from_objects(&hop.old);
    let mut own: BTreeSet<ObjectId> = BTreeSet::new();
    for o in &hop.old {
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
    let old_by_id: BTreeMap<&ObjectId, &Object> = hop.old.iter().map(|o| (&o.id, o)).collect();
    if let Some(clash) = install.iter().find(|o| {
        own.contains(&o.id)
            && old_by_id
                .get(&o.id)
                .is_some_and(|before| before.body != o.body)
    }) {
        return Err(Refusal::InstallOverwrites {
            revision: hop.to.revision.clone(),
            old_revision: hop.from.revision.clone(),
            object: clash.id.clone(),
        });
    }
    Ok(())
}

/// The objects of each gateway workload in a render: the workload, the Services selecting its
/// pods, its ServiceAccount, HPAs and PDBs targeting it, and the RoleBindings of its
/// ServiceAccount with their Roles.
pub fn gateway_objects(objects: &[Object]) -> BTreeSet<ObjectId> {
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
pub fn gateways_kept(hop: &HopInput<'_>) -> Result<()> {
    let new_ids: BTreeSet<&ObjectId> = hop.new.iter().map(|o| &o.id).collect();
    let mut lost = Vec::new();
    for (gw, objects) in gateways_of(&hop.old) {
        let key = format!("{}/{}", gw.namespace.as_deref().unwrap_or(""), gw.name);
        if hop.remove_gateways.contains(&key) {
            continue;
        }
        // Canary gateways: the new revision's Deployment (and its autoscaler) is the old one's,
        // renamed for the new revision (`canary::canary_render`).
        let renamed = |id: &ObjectId| -> bool {
            let base = id
                .name
                .strip_suffix(&format!("-{}", hop.from.revision.label()))
                .unwrap_or(&id.name);
            let canary = ObjectId {
                name: format!("{base}-{}", hop.to.revision.label()),
                ..id.clone()
            };
            hop.canary_gateways && new_ids.contains(&canary)
        };
        let missing: Vec<ObjectId> = objects
            .iter()
            .filter(|id| !new_ids.contains(id) && !renamed(id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            lost.push((key, missing));
        }
    }
    if lost.is_empty() {
        return Ok(());
    }
    Err(Refusal::GatewaysDropped {
        old_revision: hop.from.revision.clone(),
        lost,
    })
}
