//! Canary gateways (`spec.gateways.mode: canary`): the form of a render in which each gateway
//! Deployment of revision R is a Deployment of its own, `<name>-R`, selecting only R's pods,
//! behind the gateway's unchanged Service, whose selector ends on R's pods (what Istio's gateway
//! chart does from 1.29 with `service.selectorLabels`). The old Deployment keeps its name and
//! serves until the cutover; the uninstall deletes it like any object of the old render.
//!
//! Owns: renaming a render's gateway Deployments and their HorizontalPodAutoscalers, the
//! revision in their selectors and pod labels and in the gateway Services' selectors, and the
//! Service a canary phase applies before the cutover (selecting both revisions). Must not:
//! decide phases, simulate, or word anything.

use serde_yaml::{Mapping, Value};

use crate::istio::{is_gateway_workload, REV_LABEL};
use crate::manifest::{Object, ObjectId};

/// The canary form of one render of revision `revision` (`revision.label()`): every gateway
/// Deployment renamed `<name>-<revision>`, its selector and pod labels carrying
/// `istio.io/rev=<revision>`; the HorizontalPodAutoscalers scaling it renamed the same way and
/// pointed at it; every Service selecting its pods selecting only that revision's.
pub fn canary_render(objects: &[Object], revision: &str) -> Vec<Object> {
    let gateways: Vec<&Object> = objects
        .iter()
        .filter(|o| o.id.kind == "Deployment" && is_gateway_workload(o))
        .collect();
    if gateways.is_empty() {
        return objects.to_vec();
    }
    let renamed = |id: &ObjectId| -> Option<String> {
        gateways
            .iter()
            .find(|g| &g.id == id)
            .map(|g| format!("{}-{revision}", g.id.name))
    };
    let selected_by = |o: &Object| -> bool {
        let Some(Value::Mapping(sel)) = crate::manifest::value_at(&o.body, &["spec", "selector"])
        else {
            return false;
        };
        !sel.is_empty()
            && gateways.iter().any(|g| {
                g.id.namespace == o.id.namespace && {
                    let pods = crate::cluster::pod_template_labels(g);
                    sel.iter().all(|(k, v)| {
                        k.as_str()
                            .is_some_and(|k| pods.get(k).map(String::as_str) == v.as_str())
                    })
                }
            })
    };
    objects
        .iter()
        .map(|o| {
            let mut o = o.clone();
            match o.id.kind.as_str() {
                "Deployment" => {
                    if let Some(name) = renamed(&o.id) {
                        rename(&mut o, &name);
                        set(&mut o.body, &["spec", "selector", "matchLabels"], revision);
                        set(
                            &mut o.body,
                            &["spec", "template", "metadata", "labels"],
                            revision,
                        );
                    }
                }
                "HorizontalPodAutoscaler" => {
                    let target =
                        crate::manifest::str_at(&o.body, &["spec", "scaleTargetRef", "name"])
                            .map(str::to_string);
                    let scaled = target.and_then(|t| {
                        renamed(&ObjectId {
                            group: "apps".into(),
                            kind: "Deployment".into(),
                            namespace: o.id.namespace.clone(),
                            name: t,
                        })
                    });
                    if let Some(deployment) = scaled {
                        let name = format!("{}-{revision}", o.id.name);
                        rename(&mut o, &name);
                        if let Some(Value::Mapping(target)) =
                            value_mut(&mut o.body, &["spec", "scaleTargetRef"])
                        {
                            target.insert("name".into(), Value::from(deployment));
                        }
                    }
                }
                "Service" if selected_by(&o) => {
                    if let Some(Value::Mapping(sel)) = value_mut(&mut o.body, &["spec", "selector"])
                    {
                        sel.insert(REV_LABEL.into(), Value::from(revision));
                    }
                }
                _ => {}
            }
            o
        })
        .collect()
}

/// A gateway Service as the canary phase applies it: its selector without `istio.io/rev`, so it
/// selects the gateway pods of both revisions until the cutover.
pub fn shared_service(o: &Object) -> Object {
    let mut o = o.clone();
    if let Some(Value::Mapping(sel)) = value_mut(&mut o.body, &["spec", "selector"]) {
        sel.remove(REV_LABEL);
    }
    o
}

fn rename(o: &mut Object, name: &str) {
    o.id.name = name.to_string();
    if let Some(Value::Mapping(m)) = o.body.get_mut("metadata") {
        m.insert("name".into(), Value::from(name));
    }
}

/// Sets `istio.io/rev=<revision>` in the mapping at `path`, creating it when absent.
fn set(body: &mut Mapping, path: &[&str], revision: &str) {
    let mut at = body;
    for key in path {
        let next = at
            .entry(Value::from(*key))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if !next.is_mapping() {
            *next = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(m) = next else { return };
        at = m;
    }
    at.insert(REV_LABEL.into(), Value::from(revision));
}

fn value_mut<'a>(body: &'a mut Mapping, path: &[&str]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let mut v = body.get_mut(*first)?;
    for key in rest {
        v = v.as_mapping_mut()?.get_mut(*key)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_manifest;

    const RENDER: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: gw, namespace: istio-system}\nspec:\n  selector:\n    matchLabels: {app: gw}\n  template:\n    metadata:\n      labels: {app: gw}\n    spec:\n      containers:\n      - name: istio-proxy\n        args: [proxy, router]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: gw, namespace: istio-system}\nspec:\n  selector: {app: gw}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: istio-system}\nspec:\n  selector: {app: other}\n---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: gw, namespace: istio-system}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: gw}\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: gw, namespace: istio-system}\nspec:\n  selector:\n    matchLabels: {app: gw}\n";

    fn by_name<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Object {
        objects
            .iter()
            .find(|o| o.id.kind == kind && o.id.name == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    #[test]
    fn a_canary_render_gives_each_gateway_a_deployment_of_its_revision_behind_the_same_service() {
        let objects = parse_manifest(RENDER, "t").unwrap();
        let out = canary_render(&objects, "1-30-0");
        let d = by_name(&out, "Deployment", "gw-1-30-0");
        assert_eq!(
            crate::manifest::str_at(&d.body, &["metadata", "name"]),
            Some("gw-1-30-0")
        );
        assert_eq!(
            crate::cluster::pod_template_labels(d)
                .get(REV_LABEL)
                .map(String::as_str),
            Some("1-30-0")
        );
        assert_eq!(
            crate::manifest::str_at(&d.body, &["spec", "selector", "matchLabels", REV_LABEL]),
            Some("1-30-0")
        );
        let hpa = by_name(&out, "HorizontalPodAutoscaler", "gw-1-30-0");
        assert_eq!(
            crate::manifest::str_at(&hpa.body, &["spec", "scaleTargetRef", "name"]),
            Some("gw-1-30-0")
        );
        let svc = by_name(&out, "Service", "gw");
        assert_eq!(
            crate::manifest::str_at(&svc.body, &["spec", "selector", REV_LABEL]),
            Some("1-30-0")
        );
        // A Service that selects no gateway, and the disruption budget, are left alone.
        assert_eq!(
            by_name(&out, "Service", "other"),
            by_name(&objects, "Service", "other")
        );
        assert_eq!(
            by_name(&out, "PodDisruptionBudget", "gw"),
            by_name(&objects, "PodDisruptionBudget", "gw")
        );
        // Before the cutover the Service selects both revisions' pods.
        assert_eq!(shared_service(svc), *by_name(&objects, "Service", "gw"));
    }
}
