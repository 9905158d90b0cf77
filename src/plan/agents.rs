//! The node agents of a hop: istio-cni and ztunnel, per-node DaemonSets that Istio upgrades in
//! place, never by revision ("even with the use of revisions", istio.io's ambient upgrade guide).
//! `objects` finds each agent's objects in a render (the DaemonSet and what only it uses);
//! `check` refuses what the hop cannot do with them, before any phase is built.
//!
//! Owns: which objects of a render belong to which node agent, and the refusals about them (an
//! agent dropped or moved to another namespace, an Istio version that cannot upgrade ambient
//! mode, a skew Istio does not support, a ztunnel connected elsewhere than the new istiod or
//! updated by its DaemonSet controller). Must not: build phases or word anything.

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::ClusterState;
use crate::istio::{node_agent, ztunnel_istiod, NodeAgent, AMBIENT_UPGRADE_SINCE};
use crate::manifest::{str_at, Object, ObjectId};
use crate::mesh::{references, Target};
use crate::plan::refusal::Refusal;
use crate::plan::{HopInput, Result};

/// The objects of each node agent in a render: its DaemonSet, the ServiceAccount and ConfigMaps
/// it references, the bindings of that ServiceAccount and the roles they bind (when nothing but
/// the agent's bindings binds them).
pub fn objects(render: &[Object]) -> BTreeMap<ObjectId, NodeAgent> {
    let mut out = BTreeMap::new();
    let ids: BTreeSet<&ObjectId> = render.iter().map(|o| &o.id).collect();
    for ds in render.iter() {
        let Some(agent) = node_agent(ds) else {
            continue;
        };
        out.insert(ds.id.clone(), agent);
        let refs = references(ds);
        let sas: BTreeSet<&ObjectId> = refs
            .iter()
            .filter(|r| {
                ids.contains(r) && matches!(r.kind.as_str(), "ServiceAccount" | "ConfigMap")
            })
            .collect();
        for r in &sas {
            out.insert((*r).clone(), agent);
        }
        for b in render
            .iter()
            .filter(|o| matches!(o.id.kind.as_str(), "RoleBinding" | "ClusterRoleBinding"))
        {
            let r = references(b);
            if !r.iter().any(|id| sas.contains(id)) {
                continue;
            }
            out.insert(b.id.clone(), agent);
            for role in r.into_iter().filter(|id| id.kind.ends_with("Role")) {
                let bound_elsewhere = render.iter().any(|o| {
                    o.id != b.id
                        && o.id.kind.ends_with("Binding")
                        && references(o).contains(&role)
                        && !references(o).iter().any(|id| sas.contains(id))
                });
                if ids.contains(&role) && !bound_elsewhere {
                    out.insert(role, agent);
                }
            }
        }
    }
    out
}

/// The minor of a version, for skew arithmetic.
fn minor(v: &semver::Version) -> i64 {
    i64::try_from(v.minor).unwrap_or(i64::MAX)
}

/// Refuses a hop whose node agents cannot be upgraded the way Istio documents it.
pub fn check(hop: &HopInput<'_>) -> Result<()> {
    let old = objects(&hop.old);
    let new = objects(&hop.new);
    let daemonsets = |m: &BTreeMap<ObjectId, NodeAgent>| -> BTreeMap<NodeAgent, ObjectId> {
        m.iter()
            .filter(|(id, _)| id.kind == "DaemonSet")
            .map(|(id, a)| (*a, id.clone()))
            .collect()
    };
    let (old_ds, new_ds) = (daemonsets(&old), daemonsets(&new));
    for (agent, id) in &old_ds {
        match new_ds.get(agent) {
            None => {
                return Err(Refusal::NodeAgentDropped {
                    agent: *agent,
                    object: id.clone(),
                    revision: hop.to.revision.clone(),
                    spec: hop.spec.to_string(),
                })
            }
            Some(to) if to != id => {
                return Err(Refusal::NodeAgentMoved {
                    agent: *agent,
                    from: id.clone(),
                    to: to.clone(),
                    version: hop.to.version.clone(),
                })
            }
            Some(_) => {}
        }
    }
    // Ambient mode before its beta cannot be upgraded: Istio documents no path.
    let since = semver::Version::new(AMBIENT_UPGRADE_SINCE.0, AMBIENT_UPGRADE_SINCE.1, 0);
    for (side, agents) in [(&hop.from, &old_ds), (&hop.to, &new_ds)] {
        if agents.contains_key(&NodeAgent::Ztunnel) && side.version < since {
            return Err(Refusal::AmbientTooEarly {
                version: side.version.clone(),
            });
        }
    }
    // istio-cni runs beside both control planes while the hop lasts: before its phase at the
    // old version with the new istiod, after it at the new version with the old istiod.
    let gap = minor(&hop.to.version) - minor(&hop.from.version);
    if new_ds.contains_key(&NodeAgent::Cni) || old_ds.contains_key(&NodeAgent::Cni) {
        let (lo, hi) = NodeAgent::Cni.skew();
        if gap > hi || -gap < lo {
            return Err(Refusal::NodeAgentSkew {
                agent: NodeAgent::Cni,
                from: hop.from.version.clone(),
                to: hop.to.version.clone(),
            });
        }
    }
    if let Some(id) = new_ds.get(&NodeAgent::Ztunnel) {
        let Some(ztunnel) = hop.new.iter().find(|o| &o.id == id) else {
            return Ok(());
        };
        // The new ztunnel must connect to the new revision's istiod, which the render holds.
        let probe = ClusterState::from_objects(&hop.new);
        let rev = hop.to.revision.label().to_string();
        let reaches = probe
            .ztunnels()
            .into_iter()
            .find(|z| z.config == format!("{}/{}", id.namespace.as_deref().unwrap_or(""), id.name))
            .map(|z| z.target);
        if reaches != Some(Target::NodeAgent(rev)) {
            return Err(Refusal::ZtunnelElsewhere {
                revision: hop.to.revision.clone(),
                service: ztunnel_istiod(ztunnel),
                spec: hop.spec.to_string(),
            });
        }
        let strategy = str_at(&ztunnel.body, &["spec", "updateStrategy", "type"])
            .unwrap_or("RollingUpdate")
            .to_string();
        if strategy != "OnDelete" {
            return Err(Refusal::ZtunnelRollsItself {
                strategy,
                spec: hop.spec.to_string(),
            });
        }
    }
    Ok(())
}
