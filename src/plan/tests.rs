//! Unit tests of the planner, on small hand-made renders (no istioctl, no binary): per hop, per
//! phase kind, the typed refusals, and the rollbacks.

use std::collections::{BTreeMap, BTreeSet};

use super::refusal::{PhaseAt, Refusal};
use super::*;
use crate::cluster::namespace_id;
use crate::istio::{INJECTION_LABEL, REV_LABEL};
use crate::manifest::parse_manifest;
use crate::mesh::Violation;

/// The objects istioctl renders for one revision, cut to what the invariants read: a CRD, the
/// control plane (service account, mesh config, istiod, its Service), the injector, and, when
/// asked, the default tag and validator and an ingress gateway.
fn render(rev: &Revision, crd_version: &str, tags: bool, gateway: bool) -> Vec<Object> {
    let label = rev.label();
    let suffix = rev.name().map(|n| format!("-{n}")).unwrap_or_default();
    let istiod = rev.istiod();
    let selector = match rev {
        Revision::Default => format!(
            "namespaceSelector: {{matchExpressions: [{{key: {INJECTION_LABEL}, operator: In, values: [enabled]}}]}}"
        ),
        Revision::Named(r) => format!(
            "namespaceSelector: {{matchExpressions: [{{key: {REV_LABEL}, operator: In, values: ['{r}']}}, {{key: {INJECTION_LABEL}, operator: DoesNotExist}}]}}"
        ),
    };
    let hook = |name: &str, sel: &str| {
        format!(
            "- name: {name}\n  clientConfig: {{service: {{name: {istiod}, namespace: istio-system}}}}\n  rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}}]\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  {sel}\n"
        )
    };
    let mut docs = vec![
        format!("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: virtualservices.networking.istio.io}}\nspec: {{group: networking.istio.io, marker: '{crd_version}'}}\n"),
        format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {istiod}, namespace: istio-system}}\n"),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio{suffix}, namespace: istio-system}}\ndata:\n  mesh: |-\n    defaultConfig:\n      discoveryAddress: {istiod}.istio-system.svc:15012\n"),
        format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {istiod}, namespace: istio-system}}\nspec:\n  template:\n    metadata:\n      labels: {{app: istiod, {REV_LABEL}: {label}}}\n    spec:\n      serviceAccountName: {istiod}\n      volumes:\n      - name: config\n        configMap: {{name: istio{suffix}}}\n      containers:\n      - name: discovery\n        args: [discovery]\n"),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {istiod}, namespace: istio-system}}\nspec:\n  selector: {{app: istiod, {REV_LABEL}: {label}}}\n"),
        format!("apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: istio-sidecar-injector{suffix}, labels: {{{REV_LABEL}: {label}}}}}\nwebhooks:\n{}", hook("rev.namespace.sidecar-injector.istio.io", &selector)),
    ];
    if tags {
        docs.push(format!("apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: istio-revision-tag-default, labels: {{{REV_LABEL}: {label}, istio.io/tag: default}}}}\nwebhooks:\n{}", hook("namespace.sidecar-injector.istio.io", &format!("namespaceSelector: {{matchExpressions: [{{key: {INJECTION_LABEL}, operator: In, values: [enabled]}}]}}"))));
        docs.push(format!("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: istiod-default-validator, labels: {{{REV_LABEL}: {label}}}}}\nwebhooks:\n- name: validation.istio.io\n  clientConfig: {{service: {{name: {istiod}, namespace: istio-system}}}}\n  rules: [{{operations: [CREATE, UPDATE], apiGroups: [networking.istio.io], apiVersions: ['*'], resources: ['*']}}]\n  sideEffects: None\n  admissionReviewVersions: [v1]\n"));
    }
    if gateway {
        docs.push(format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: istio-ingressgateway, namespace: istio-system}}\nspec:\n  template:\n    metadata:\n      labels: {{app: istio-ingressgateway, {REV_LABEL}: {label}}}\n    spec:\n      containers:\n      - name: istio-proxy\n        args: [proxy, router]\n        env:\n        - {{name: CA_ADDR, value: '{istiod}.istio-system.svc:15012'}}\n"));
        docs.push("apiVersion: v1\nkind: Service\nmetadata: {name: istio-ingressgateway, namespace: istio-system}\nspec:\n  selector: {app: istio-ingressgateway}\n".to_string());
    }
    parse_manifest(&docs.join("---\n"), "test")
        .unwrap()
        .iter()
        .map(normalize)
        .collect()
}

fn side(version: &str, rev: &Revision) -> PlanSide {
    PlanSide {
        version: Version::parse(version).unwrap(),
        revision: rev.clone(),
        istioctl_sha256: "0".repeat(64),
        istioctl_pins: BTreeMap::from([(version.to_string(), "0".repeat(64))]),
        operator_path: "iop.yaml".into(),
        operator_sha256: "1".repeat(64),
        istio_namespace: "istio-system".into(),
    }
}

fn waves(spec: &[(&str, &[&str])]) -> Vec<Wave> {
    spec.iter()
        .map(|(name, namespaces)| Wave {
            name: name.to_string(),
            namespaces: namespaces.iter().map(ToString::to_string).collect(),
            workloads: Vec::new(),
            gateways: Vec::new(),
        })
        .collect()
}

fn named(r: &str) -> Revision {
    Revision::Named(r.into())
}

struct Case {
    old: Revision,
    new: Revision,
    waves: Vec<Wave>,
    default_tag: bool,
    uninstall_old: bool,
    old_objects: Vec<Object>,
    new_objects: Vec<Object>,
    remove_gateways: BTreeSet<String>,
    versions: (&'static str, &'static str),
    kubernetes: Option<Minor>,
    inventory: Option<crate::inventory::Inventory>,
}

impl Case {
    fn new(old: Revision, new: Revision) -> Case {
        Case {
            old_objects: render(&old, "v1", false, false),
            new_objects: render(&new, "v2", true, false),
            old,
            new,
            waves: waves(&[("canary", &["shop"]), ("rest", &["cart", "pay"])]),
            default_tag: true,
            uninstall_old: true,
            remove_gateways: BTreeSet::new(),
            versions: ("1.13.5", "1.14.1"),
            kubernetes: None,
            inventory: None,
        }
    }

    fn hop(&self) -> HopInput<'_> {
        HopInput {
            canary_gateways: false,
            from: side(self.versions.0, &self.old),
            to: side(self.versions.1, &self.new),
            old: self.old_objects.clone(),
            new: self.new_objects.clone(),
            spec: "iop.yaml",
            waves: &self.waves,
            default_tag: self.default_tag,
            uninstall_old: self.uninstall_old,
            kubernetes: self.kubernetes,
            remove_gateways: &self.remove_gateways,
            several: false,
            tags: &[],
            gateways_after: None,
        }
    }

    fn plan(&self) -> Result<Plan> {
        plan_hops(&PlanInput {
            name: "test".into(),
            policy_path: "canary.yaml".into(),
            policy_sha256: "2".repeat(64),
            kubernetes_version: self.kubernetes,
            hops: vec![self.hop()],
            promote: None,
            default_tag_declared: false,
            inventory: self.inventory.as_ref().map(|i| InventoryInput {
                path: "inventory.yaml".into(),
                sha256: "3".repeat(64),
                inventory: i,
            }),
            // Two threads: the unit tests run the parallel rollbacks and tables.
            jobs: std::num::NonZeroUsize::new(2).expect("2 is not 0"),
        })
    }
}

fn kinds(plan: &Plan) -> Vec<(PhaseKind, &str)> {
    plan.phases
        .iter()
        .map(|p| (p.kind, p.dir.as_str()))
        .collect()
}

fn labels_of(plan: &Plan, n: usize, ns: &str) -> BTreeMap<String, String> {
    let mut l = plan.states[n].labels(&namespace_id(ns)).unwrap();
    l.remove(crate::k8s::NAME_LABEL);
    l
}

#[test]
fn a_hop_is_crds_install_one_migrate_per_wave_the_tag_then_uninstall() {
    let p = Case::new(named("1-13-5"), named("1-14-1")).plan().unwrap();
    assert_eq!(
        kinds(&p),
        [
            (PhaseKind::Crds, "01-crds"),
            (PhaseKind::Install, "02-install-1-14-1"),
            (PhaseKind::Migrate, "03-migrate-canary"),
            (PhaseKind::Migrate, "04-migrate-rest"),
            (PhaseKind::DefaultTag, "05-default-tag-1-14-1"),
            (PhaseKind::Uninstall, "06-uninstall-1-13-5"),
        ]
    );
    assert_eq!(p.states.len(), p.phases.len() + 1);
    assert_eq!(p.expected.len(), p.states.len());
    assert!(p.phases.iter().all(|ph| ph.hop == 0));
    assert_eq!(p.hops.len(), 1);
    // What each state expects: the old revision before a namespace's wave, the new one after.
    let exp = |n: usize, ns: &str| p.expected[n][ns].clone().unwrap();
    assert_eq!(exp(0, "shop"), "1-13-5");
    assert_eq!(exp(3, "shop"), "1-14-1");
    assert_eq!(exp(3, "cart"), "1-13-5");
    assert_eq!(exp(4, "pay"), "1-14-1");
    // Every phase before the uninstall has a rollback; the uninstall has none.
    assert_eq!(p.rollbacks.len(), 5);
    assert!(p.rollbacks.iter().all(|r| r.phase_index < 6));
}

#[test]
fn state_zero_is_the_old_render_with_the_canonical_label() {
    let p = Case::new(named("1-13-5"), named("1-14-1")).plan().unwrap();
    assert_eq!(
        labels_of(&p, 0, "shop"),
        BTreeMap::from([(REV_LABEL.to_string(), "1-13-5".to_string())])
    );
    assert!(p.states[0]
        .objects
        .keys()
        .any(|id| id.name == "istiod-1-13-5" && id.kind == "Deployment"));
    assert!(matches!(
        p.assumptions.as_slice(),
        [Assumption::CanonicalLabels { key, value, .. }] if key == REV_LABEL && value == "1-13-5"
    ));
    let p = Case::new(Revision::Default, named("1-14-1"))
        .plan()
        .unwrap();
    assert_eq!(
        labels_of(&p, 0, "shop"),
        BTreeMap::from([(INJECTION_LABEL.to_string(), "enabled".to_string())])
    );
}

#[test]
fn a_migrate_phase_relabels_only_its_wave_by_a_label_merge() {
    let p = Case::new(named("1-13-5"), named("1-14-1")).plan().unwrap();
    let canary = &p.phases[2];
    assert_eq!(canary.namespaces, ["shop"]);
    assert!(matches!(
        canary.changes.as_slice(),
        [Change::Labels { id, set, remove, via: Via::File, .. }]
            if id.name == "shop" && set[REV_LABEL] == "1-14-1" && remove.is_empty()
    ));
    assert_eq!(labels_of(&p, 3, "shop")[REV_LABEL], "1-14-1");
    assert_eq!(labels_of(&p, 3, "cart")[REV_LABEL], "1-13-5");
    assert_eq!(p.injection[0].namespace, "shop");
    assert_eq!(&*p.injection[0].states[2], "1-13-5");
    assert_eq!(&*p.injection[0].states[3], "1-14-1");
}

#[test]
fn from_an_unrevisioned_install_the_legacy_label_goes_by_command_after_the_file() {
    let p = Case::new(Revision::Default, named("1-14-1"))
        .plan()
        .unwrap();
    let canary = &p.phases[2];
    let vias: Vec<&Via> = canary
        .changes
        .iter()
        .map(|c| match c {
            Change::Labels { via, .. } => via,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        vias,
        [
            &Via::File,
            &Via::Command(format!("kubectl label namespace shop {INJECTION_LABEL}-"))
        ]
    );
    // The step between them keeps the namespace on the old revision (istio-injection wins).
    let steps = steps(&canary.changes);
    assert_eq!(steps.len(), 2);
    assert_eq!(
        labels_of(&p, 3, "shop"),
        BTreeMap::from([(REV_LABEL.to_string(), "1-14-1".to_string())])
    );
    // The default-tag phase switches the legacy injector off (it would match twice otherwise).
    let tag = p
        .phases
        .iter()
        .find(|ph| ph.kind == PhaseKind::DefaultTag)
        .unwrap();
    let off = tag
        .changes
        .iter()
        .find_map(|c| match c {
            Change::Apply(o) if o.id.name == "istio-sidecar-injector" => Some(o),
            _ => None,
        })
        .expect("the legacy injector is re-applied switched off");
    assert!(off
        .to_yaml()
        .unwrap()
        .contains("istio.io/deactivated: never-match"));
}

#[test]
fn the_uninstall_deletes_what_the_end_needs_not_and_never_crds_or_namespaces() {
    let p = Case::new(named("1-13-5"), named("1-14-1")).plan().unwrap();
    let uninstall = p.phases.last().unwrap();
    assert_eq!(uninstall.kind, PhaseKind::Uninstall);
    let deleted: BTreeSet<String> = uninstall
        .deletes()
        .map(|d| format!("{}/{}", d.id.kind, d.id.name))
        .collect();
    assert_eq!(
        deleted,
        BTreeSet::from(
            [
                "ConfigMap/istio-1-13-5",
                "Deployment/istiod-1-13-5",
                "MutatingWebhookConfiguration/istio-sidecar-injector-1-13-5",
                "Service/istiod-1-13-5",
                "ServiceAccount/istiod-1-13-5",
            ]
            .map(String::from)
        )
    );
    // Webhooks go first, so nothing calls a Service being deleted.
    assert_eq!(
        uninstall.deletes().next().unwrap().id.kind,
        "MutatingWebhookConfiguration"
    );
    let end = p.states.last().unwrap();
    assert!(end
        .objects
        .keys()
        .any(|id| id.kind == "CustomResourceDefinition"));
    for ns in ["shop", "cart", "pay"] {
        assert!(end.objects.contains_key(&namespace_id(ns)));
    }
}

#[test]
fn without_the_default_tag_no_tag_phase_and_no_uninstall_of_a_revision_in_use() {
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    c.default_tag = false;
    c.uninstall_old = false;
    c.new_objects = render(&c.new, "v2", false, false);
    let p = c.plan().unwrap();
    assert_eq!(
        p.phases.iter().map(|ph| ph.kind).collect::<Vec<_>>(),
        [
            PhaseKind::Crds,
            PhaseKind::Install,
            PhaseKind::Migrate,
            PhaseKind::Migrate
        ]
    );
    // The old revision still runs at the end.
    assert!(p
        .states
        .last()
        .unwrap()
        .objects
        .keys()
        .any(|id| id.name == "istiod-1-13-5"));
}

#[test]
fn gateways_move_in_their_own_phase_after_the_waves() {
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    c.old_objects = render(&c.old, "v1", false, true);
    c.new_objects = render(&c.new, "v2", true, true);
    let p = c.plan().unwrap();
    let gw = p
        .phases
        .iter()
        .find(|ph| ph.kind == PhaseKind::Gateways)
        .unwrap();
    assert_eq!(gw.dir, "05-gateways-1-14-1");
    let names: BTreeSet<&str> = gw.changes.iter().map(|c| c.id().name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["istio-ingressgateway"]));
    assert_eq!(gw.changes.len(), 2, "the Deployment and the Service");
    // The uninstall keeps the gateway: the new render still has it.
    assert!(p
        .phases
        .last()
        .unwrap()
        .deletes()
        .all(|d| d.id.name != "istio-ingressgateway"));
}

#[test]
fn a_dropped_gateway_is_refused_unless_listed() {
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    c.old_objects = render(&c.old, "v1", false, true);
    let Err(Refusal::GatewaysDropped { old_revision, lost }) = c.plan() else {
        panic!("a dropped gateway must be refused");
    };
    assert_eq!(old_revision, named("1-13-5"));
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].0, "istio-system/istio-ingressgateway");
    c.remove_gateways = BTreeSet::from(["istio-system/istio-ingressgateway".to_string()]);
    let p = c.plan().unwrap();
    assert!(p
        .phases
        .last()
        .unwrap()
        .deletes()
        .any(|d| d.id.name == "istio-ingressgateway"));
}

#[test]
fn renders_that_cannot_work_are_refused_by_kind() {
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    c.new_objects.clear();
    assert!(matches!(c.plan(), Err(Refusal::EmptyRender { .. })));

    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    c.new_objects.retain(|o| o.id.kind != "Deployment");
    assert!(
        matches!(c.plan(), Err(Refusal::NoIstiod { revision, .. }) if revision == named("1-14-1"))
    );

    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    c.new_objects
        .retain(|o| o.id.kind != "CustomResourceDefinition");
    assert!(matches!(c.plan(), Err(Refusal::NoCrds { old_crds: 1, .. })));

    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    c.new_objects
        .retain(|o| o.id.name != "istio-sidecar-injector-1-14-1");
    assert!(matches!(c.plan(), Err(Refusal::NoInjector { found, .. }) if found.is_empty()));

    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    c.new_objects
        .retain(|o| o.id.name != "istiod-default-validator");
    assert!(matches!(c.plan(), Err(Refusal::NoDefaultValidator { .. })));

    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    c.new_objects
        .retain(|o| o.id.name != "istio-revision-tag-default");
    assert!(matches!(c.plan(), Err(Refusal::NoDefaultTag { .. })));
}

#[test]
fn an_install_that_rewrites_the_running_revision_is_refused() {
    // The new render carries the old revision's mesh config with other content.
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    let mut mesh = c
        .old_objects
        .iter()
        .find(|o| o.id.name == "istio-1-13-5")
        .unwrap()
        .clone();
    mesh.body.insert("extra".into(), "changed".into());
    c.new_objects.push(mesh);
    let Err(Refusal::InstallOverwrites { object, .. }) = c.plan() else {
        panic!("must be refused");
    };
    assert_eq!(object.name, "istio-1-13-5");
}

#[test]
fn uninstalling_a_revision_a_kept_webhook_still_calls_is_refused_at_the_uninstall() {
    // The new render holds a webhook that calls the old revision's istiod: fine until the
    // uninstall deletes that Service.
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    c.new_objects.push(
        parse_manifest("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: stale-validator}\nwebhooks:\n- name: stale.validation.istio.io\n  clientConfig: {service: {name: istiod-1-13-5, namespace: istio-system}}\n  sideEffects: None\n  admissionReviewVersions: [v1]\n", "t")
            .unwrap()
            .remove(0),
    );
    let Err(Refusal::UnsafePhase { at, violation }) = c.plan() else {
        panic!("must be refused");
    };
    assert_eq!(at.kind, PhaseKind::Uninstall);
    assert_eq!(at.dir, "06-uninstall-1-13-5");
    assert!(
        matches!(&violation, Violation::DanglingWebhook { missing: true, service, webhook }
            if service.name == "istiod-1-13-5" && webhook.name == "stale-validator"),
        "{violation:?}"
    );
}

#[test]
fn the_advice_of_a_refusal_follows_the_phase_kind_not_its_name() {
    // A revision named so that the install's directory holds `-uninstall-`.
    let v = Violation::DanglingWebhook {
        webhook: namespace_id("x"),
        service: crate::cluster::service_id("istio-system", "istiod-uninstall-x"),
        missing: true,
    };
    let at = |kind: PhaseKind, dir: &str| PhaseAt {
        index: 2,
        kind,
        dir: dir.into(),
        from: named("1-13-5"),
        to: named("uninstall-x"),
    };
    let install = crate::describe::refusal(&Refusal::UnsafePhase {
        at: at(PhaseKind::Install, "02-install-uninstall-x"),
        violation: v.clone(),
    });
    let help = install.help.unwrap_or_default();
    assert!(
        help.starts_with("a webhook with failurePolicy Fail"),
        "{help}"
    );
    let uninstall = crate::describe::refusal(&Refusal::UnsafePhase {
        at: at(PhaseKind::Uninstall, "06-uninstall-1-13-5"),
        violation: v,
    });
    let help = uninstall.help.unwrap_or_default();
    assert!(help.starts_with("move every tag"), "{help}");
}

#[test]
fn a_new_revision_named_like_an_uninstall_gets_the_install_advice_end_to_end() {
    // The new render's validator calls a Service the render lacks: refused at the install.
    let mut c = Case::new(named("1-13-5"), named("uninstall-x"));
    c.new_objects.push(
        parse_manifest("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: istio-validator-uninstall-x-istio-system}\nwebhooks:\n- name: rev.validation.istio.io\n  clientConfig: {service: {name: istiod-gone, namespace: istio-system}}\n  sideEffects: None\n  admissionReviewVersions: [v1]\n", "t")
            .unwrap()
            .remove(0),
    );
    let Err(r) = c.plan() else {
        panic!("must be refused")
    };
    let Refusal::UnsafePhase { at, .. } = &r else {
        panic!("{r:?}")
    };
    assert_eq!(at.dir, "02-install-uninstall-x");
    let err = crate::describe::refusal(&r);
    assert!(
        err.help
            .as_deref()
            .is_some_and(|h| h.contains("the render of revision uninstall-x must include")),
        "{err}"
    );
}

#[test]
fn every_rollback_is_simulated_back_to_the_state_before_its_phase() {
    for old in [Revision::Default, named("1-13-5")] {
        let p = Case::new(old, named("1-14-1")).plan().unwrap();
        for rb in &p.rollbacks {
            let n = rb.phase_index;
            let back = simulate_rollback(
                &rb.dir,
                &rb.changes,
                &p.states[n - 1],
                &p.states[n],
                &p.expected[n - 1],
                &BTreeSet::new(),
            )
            .unwrap();
            let strip = |s: &ClusterState| -> Vec<ObjectId> {
                s.objects
                    .keys()
                    .filter(|id| id.kind != "CustomResourceDefinition")
                    .cloned()
                    .collect()
            };
            assert_eq!(strip(&back), strip(&p.states[n - 1]), "{}", rb.dir);
        }
        // The CRD rollback changes nothing: CRDs are never rolled back.
        assert!(p.rollbacks[0].changes.is_empty());
    }
}

#[test]
fn a_rollback_that_leaves_an_object_behind_is_refused_with_the_object() {
    let p = Case::new(named("1-13-5"), named("1-14-1")).plan().unwrap();
    let install = &p.rollbacks[1];
    let kept: Vec<Change> = install
        .changes
        .iter()
        .filter(|c| c.id().kind != "ServiceAccount")
        .cloned()
        .collect();
    let Err(Refusal::RollbackDiffers { object, how, dir }) = simulate_rollback(
        &install.dir,
        &kept,
        &p.states[1],
        &p.states[2],
        &p.expected[1],
        &BTreeSet::new(),
    ) else {
        panic!("must be refused");
    };
    assert_eq!(dir, "rollback/02-install-1-14-1");
    assert_eq!(object.name, "istiod-1-14-1");
    assert_eq!(how, refusal::Differs::LeftBehind);
}

#[test]
fn placement_puts_each_object_in_one_phase_kind() {
    let objects = render(&named("1-14-1"), "v2", true, true);
    let placed: BTreeMap<String, PhaseKind> = objects
        .iter()
        .zip(placement(&objects))
        .map(|(o, k)| (format!("{}/{}", o.id.kind, o.id.name), k))
        .collect();
    assert_eq!(
        placed["CustomResourceDefinition/virtualservices.networking.istio.io"],
        PhaseKind::Crds
    );
    assert_eq!(placed["Deployment/istiod-1-14-1"], PhaseKind::Install);
    assert_eq!(
        placed["MutatingWebhookConfiguration/istio-revision-tag-default"],
        PhaseKind::DefaultTag
    );
    assert_eq!(
        placed["ValidatingWebhookConfiguration/istiod-default-validator"],
        PhaseKind::DefaultTag
    );
    assert_eq!(
        placed["Deployment/istio-ingressgateway"],
        PhaseKind::Gateways
    );
    assert_eq!(placed["Service/istio-ingressgateway"], PhaseKind::Gateways);
}

#[test]
fn directory_numbers_widen_when_a_plan_passes_99_phases() {
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    let names: Vec<String> = (0..97).map(|i| format!("ns{i}")).collect();
    c.waves = names
        .iter()
        .map(|n| Wave {
            name: format!("w-{n}"),
            namespaces: vec![n.clone()],
            workloads: Vec::new(),
            gateways: Vec::new(),
        })
        .collect();
    let p = c.plan().unwrap();
    assert_eq!(p.phases[0].dir, "001-crds");
    assert_eq!(p.phases.last().unwrap().dir, "101-uninstall-1-13-5");
}

#[test]
fn an_old_install_that_owns_the_default_tag_gets_it_back_from_every_rollback() {
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    c.old_objects = render(&c.old, "v1", true, false);
    let p = c.plan().unwrap();
    assert!(p.assumptions.iter().any(|a| matches!(a,
        Assumption::InstallAdded { objects, declared: false, .. } if objects.len() == 2)));
    let tag_phase = p
        .phases
        .iter()
        .find(|ph| ph.kind == PhaseKind::DefaultTag)
        .unwrap();
    let rb = p
        .rollbacks
        .iter()
        .find(|r| r.phase_index == tag_phase.index)
        .unwrap();
    assert_eq!(
        rb.deletes().count(),
        0,
        "nothing that existed before is deleted"
    );
    let reapplied: BTreeSet<&str> = rb
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Apply(o) => Some(o.id.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reapplied,
        BTreeSet::from(["istio-revision-tag-default", "istiod-default-validator"])
    );
    // And the uninstall keeps them: the new revision's copies replaced them.
    assert!(p
        .phases
        .last()
        .unwrap()
        .deletes()
        .all(|d| d.id.name != "istio-revision-tag-default"));
}

#[test]
fn an_istio_minor_the_support_table_lacks_is_an_explicit_unknown() {
    let mut c = Case::new(named("1-40-0"), named("1-41-0"));
    c.versions = ("1.40.0", "1.41.0");
    c.kubernetes = Some(Minor::new(1, 40));
    let p = c.plan().unwrap();
    let unknown: Vec<String> = p
        .assumptions
        .iter()
        .filter_map(|a| match a {
            Assumption::SupportUnknown { istio, kubernetes } => {
                Some(format!("{istio} on {kubernetes}"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(unknown, ["1.40 on 1.40", "1.41 on 1.40"]);
    let texts = crate::describe::describe(&p);
    assert_eq!(texts.notes.len(), 2);
    assert!(
        texts.notes[0].contains("was not checked"),
        "{}",
        texts.notes[0]
    );
    // A known minor outside its range is still refused.
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    c.kubernetes = Some(Minor::new(1, 30));
    assert!(matches!(c.plan(), Err(Refusal::IstioUnsupported { .. })));
}

#[test]
fn a_rollback_that_would_reapply_an_unserved_api_version_is_refused() {
    // The install updates a shared PDB from policy/v1beta1 to policy/v1; on 1.25 its rollback
    // could not put the old one back.
    let pdb = |api: &str| {
        parse_manifest(&format!("apiVersion: {api}\nkind: PodDisruptionBudget\nmetadata: {{name: shared, namespace: istio-system}}\nspec: {{minAvailable: 1}}\n"), "t")
            .unwrap()
            .remove(0)
    };
    let mut c = Case::new(named("1-15-3"), named("1-16-1"));
    c.versions = ("1.15.3", "1.16.1");
    c.kubernetes = Some(Minor::new(1, 25));
    c.old_objects.push(pdb("policy/v1beta1"));
    c.new_objects.push(pdb("policy/v1"));
    let Err(Refusal::ApiNotServedIn { place, objects, .. }) = c.plan() else {
        panic!("must be refused");
    };
    assert_eq!(place, "rollback/02-install-1-16-1");
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].api_version, "policy/v1beta1");
    // On 1.24 both versions are served.
    c.kubernetes = Some(Minor::new(1, 24));
    assert!(c.plan().is_ok());
}

#[test]
fn injectors_that_cannot_be_evaluated_are_refused_wherever_they_are() {
    let conditions = |objects: &mut Vec<Object>, name: &str| {
        for o in objects.iter_mut().filter(|o| o.id.name == name) {
            if let Some(serde_yaml::Value::Sequence(hooks)) = o.body.get_mut("webhooks") {
                for h in hooks
                    .iter_mut()
                    .filter_map(serde_yaml::Value::as_mapping_mut)
                {
                    let c: serde_yaml::Value =
                        serde_yaml::from_str("[{name: c, expression: 'true'}]").unwrap();
                    h.insert("matchConditions".into(), c);
                }
            }
        }
    };
    // In the new render: refused at the install, naming the webhook.
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    conditions(&mut c.new_objects, "istio-sidecar-injector-1-14-1");
    let r = c.plan().unwrap_err();
    assert!(matches!(&r, Refusal::UndecidableRender { .. }), "{r:?}");
    let text = crate::describe::refusal(&r).to_string();
    assert!(text.contains("istio-sidecar-injector-1-14-1"), "{text}");
    // In the old install: refused before any phase, never a warning.
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    conditions(&mut c.old_objects, "istio-sidecar-injector-1-13-5");
    let r = c.plan().unwrap_err();
    let Refusal::UndecidableStart { violation } = &r else {
        panic!("{r:?}")
    };
    assert!(matches!(violation, Violation::Unevaluable { .. }));
    let text = crate::describe::refusal(&r).to_string();
    assert!(
        text.starts_with("error: before the upgrade, the injector webhook rev.namespace.sidecar-injector.istio.io of MutatingWebhookConfiguration"),
        "{text}"
    );
}

/// Runs a client-side command list the way kubectl would on `state`: `kubectl label` merges,
/// `kubectl apply -k DIR` three-way-merges each partial object of `changes` (what the directory
/// holds) against its last-applied configuration; other commands (restarts) change nothing here.
/// Each label patch a list of changes carries as a file, as the partial object the file holds.
fn label_files(changes: &[Change]) -> impl Iterator<Item = (&ObjectId, Object)> {
    changes.iter().filter_map(|c| match c {
        Change::Labels {
            id,
            api_version,
            set,
            via: Via::File,
            ..
        } => Some((id, crate::layout::label_patch_object(api_version, id, set))),
        _ => None,
    })
}

/// The labels a `kubectl label` command sets (`KEY=VALUE`) and removes (`KEY-`).
fn label_args(words: &[&str]) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let (mut set, mut remove) = (BTreeMap::new(), BTreeSet::new());
    for w in words.iter().filter(|w| !w.starts_with("--")) {
        match w.split_once('=') {
            Some((k, v)) => {
                set.insert(k.to_string(), v.to_string());
            }
            None => {
                remove.insert(w.trim_end_matches('-').to_string());
            }
        }
    }
    (set, remove)
}

fn run_client_side(state: &mut ClusterState, commands: &[String], changes: &[Change], dir: &str) {
    for cmd in commands {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["kubectl", "label", "namespace", name, rest @ ..] => {
                let id = namespace_id(name);
                let (set, remove) = label_args(rest);
                state.apply(&Change::Labels {
                    id,
                    api_version: "v1".into(),
                    set,
                    remove,
                    via: Via::File,
                });
            }
            // A whole directory's label files: every namespace one of them names.
            ["kubectl", "label", "-f", d, rest @ ..] if *d == format!("{dir}/") => {
                let (set, remove) = label_args(rest);
                let ids: Vec<ObjectId> = label_files(changes).map(|(id, _)| id.clone()).collect();
                assert!(!ids.is_empty(), "{cmd}: the directory has no label file");
                for id in ids {
                    state.apply(&Change::Labels {
                        id,
                        api_version: "v1".into(),
                        set: set.clone(),
                        remove: remove.clone(),
                        via: Via::File,
                    });
                }
            }
            ["kubectl", "apply", "-k", d] if *d == dir => {
                for (id, partial) in label_files(changes) {
                    if let Some(live) = state.objects.get(id) {
                        let merged = crate::cluster::client_side_apply(live, &partial).unwrap();
                        state.insert(merged);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The state with every named namespace as its owner made it with `kubectl apply`: an owner
/// label and annotation, and the last-applied configuration holding them.
fn owned(state: &ClusterState, names: &[String]) -> ClusterState {
    let mut out = state.clone();
    for ns in names {
        let Some(o) = out.objects.get_mut(&namespace_id(ns)) else {
            continue;
        };
        let mut labels = o.labels();
        labels.remove(crate::k8s::NAME_LABEL);
        labels.insert("team".into(), "payments".into());
        let applied = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": labels, "annotations": {"owner": "app-team"}}});
        let mut text =
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n");
        for (k, v) in &labels {
            text.push_str(&format!("    {k}: '{v}'\n"));
        }
        text.push_str(&format!(
            "  annotations:\n    owner: app-team\n    {}: '{}'\n",
            crate::cluster::LAST_APPLIED,
            applied
        ));
        *o = std::sync::Arc::new(parse_manifest(&text, "t").unwrap().remove(0));
    }
    out
}

#[test]
fn every_client_side_command_keeps_the_namespace_owners_labels() {
    // A wave past `describe::NAMES_SHOWN` is relabelled by one command over its directory.
    let big: Vec<String> = (0..=crate::describe::NAMES_SHOWN)
        .map(|i| format!("team-{i:02}"))
        .collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    for (old, wide) in [
        (Revision::Default, false),
        (named("1-13-5"), false),
        (Revision::Default, true),
        (named("1-13-5"), true),
    ] {
        let mut case = Case::new(old, named("1-14-1"));
        if wide {
            case.waves = waves(&[("canary", &["shop"]), ("rest", &big)]);
        }
        let p = case.plan().unwrap();
        let texts = crate::describe::describe(&p);
        if wide {
            let rest = p
                .phases
                .iter()
                .position(|ph| ph.name == "migrate-rest")
                .unwrap();
            let dir = format!("{}/", p.phases[rest].dir);
            for commands in [
                &texts.phases[rest].commands,
                &texts.rollbacks[rest].commands,
            ] {
                assert!(
                    commands.iter().any(|c| c.starts_with("kubectl label -f ")),
                    "{commands:?}"
                );
                assert!(commands.len() <= 3, "{commands:?}");
            }
            assert!(
                texts.phases[rest].commands[0].contains(&dir),
                "{:?}",
                texts.phases[rest].commands
            );
            if p.from().revision == Revision::Default {
                // Argo CD and Flux users are told of the one removal command over the directory.
                let note = texts.phases[rest].controller.as_deref().unwrap_or_default();
                assert!(
                    note.contains("the 1 `kubectl label … istio-injection-` command above"),
                    "{note}"
                );
            }
        }
        let names: Vec<String> = p.injection.iter().map(|r| r.namespace.clone()).collect();
        let check = |what: &str,
                     start: &ClusterState,
                     end: &ClusterState,
                     commands: &[String],
                     changes: &[Change],
                     dir: &str| {
            let mut s = owned(start, &names);
            run_client_side(&mut s, commands, changes, dir);
            for ns in &names {
                let o = &s.objects[&namespace_id(ns)];
                assert_eq!(
                    o.label("team").as_deref(),
                    Some("payments"),
                    "{what}: {ns} lost its owner's label"
                );
                assert_eq!(
                    crate::manifest::str_at(&o.body, &["metadata", "annotations", "owner"]),
                    Some("app-team"),
                    "{what}: {ns}"
                );
                let want = end.labels(&namespace_id(ns)).unwrap();
                for key in [REV_LABEL, INJECTION_LABEL] {
                    assert_eq!(o.label(key), want.get(key).cloned(), "{what}: {ns} {key}");
                }
            }
        };
        for (phase, text) in p.phases.iter().zip(&texts.phases) {
            let n = phase.index;
            check(
                &phase.dir,
                &p.states[n - 1],
                &p.states[n],
                &text.commands,
                &phase.changes,
                &phase.dir,
            );
        }
        for (rb, text) in p.rollbacks.iter().zip(&texts.rollbacks) {
            let n = rb.phase_index;
            check(
                &rb.dir,
                &p.states[n],
                &p.states[n - 1],
                &text.commands,
                &rb.changes,
                &rb.dir,
            );
        }
    }
}

#[test]
fn a_plan_of_no_hop_is_refused() {
    let r = plan_hops(&PlanInput {
        name: "test".into(),
        policy_path: "canary.yaml".into(),
        policy_sha256: String::new(),
        kubernetes_version: None,
        hops: Vec::new(),
        promote: None,
        default_tag_declared: false,
        inventory: None,
        jobs: std::num::NonZeroUsize::MIN,
    });
    assert!(matches!(r, Err(Refusal::NoHop)));
}

// ---- With an inventory: the cluster as it is ----

/// An inventory of the cluster the case's old render was installed in: every object of the
/// render whose kind `kubectl get` captures (not the CRDs, not RBAC), plus `extra` (YAML
/// documents: namespaces, workloads, whatever else the cluster holds).
fn inventory(c: &Case, extra: &str) -> crate::inventory::Inventory {
    let captured = [
        "Namespace",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ];
    let mut objects: Vec<Object> = c
        .old_objects
        .iter()
        .filter(|o| captured.contains(&o.id.kind.as_str()))
        .cloned()
        .collect();
    objects.extend(parse_manifest(extra, "inventory").unwrap());
    let kinds = objects
        .iter()
        .map(|o| (o.id.group.clone(), o.id.kind.clone()))
        .collect();
    crate::inventory::Inventory { objects, kinds }
}

fn ns_doc(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n  annotations: {{owner: app-team}}\n---\n")
}

fn deployment_doc(ns: &str, name: &str, pod_labels: &str) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  template:\n    metadata:\n      labels: {{app: {name}{pod_labels}}}\n    spec:\n      containers:\n      - {{name: app, image: app}}\n---\n")
}

/// The three namespaces of the case's waves on the old revision, each with an owner's label,
/// and a workload in each.
fn the_waves(rev: &str) -> String {
    let mut out = String::new();
    for ns in ["shop", "cart", "pay"] {
        out.push_str(&ns_doc(ns, &format!("{REV_LABEL}: '{rev}', team: {ns}")));
        out.push_str(&deployment_doc(ns, "web", ""));
    }
    out
}

/// An injector of revision `rev` that selects pods by their own `istio.io/rev` label in
/// namespaces with no injection label (Istio's `rev.object` webhook).
fn object_injector(rev: &str) -> Object {
    parse_manifest(&format!("apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: istio-sidecar-injector-object-{rev}, labels: {{{REV_LABEL}: '{rev}'}}}}\nwebhooks:\n- name: rev.object.sidecar-injector.istio.io\n  clientConfig: {{service: {{name: istiod-{rev}, namespace: istio-system}}}}\n  rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}}]\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  namespaceSelector: {{matchExpressions: [{{key: {REV_LABEL}, operator: DoesNotExist}}, {{key: {INJECTION_LABEL}, operator: DoesNotExist}}]}}\n  objectSelector: {{matchExpressions: [{{key: {REV_LABEL}, operator: In, values: ['{rev}']}}]}}\n"), "t")
        .unwrap()
        .remove(0)
}

fn with_inventory(extra: &str) -> Case {
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    c.inventory = Some(inventory(&c, &format!("{}{extra}", the_waves("1-13-5"))));
    c
}

fn web(ns: &str) -> ObjectId {
    ObjectId {
        group: "apps".into(),
        kind: "Deployment".into(),
        namespace: Some(ns.into()),
        name: "web".into(),
    }
}

#[test]
fn an_inventory_is_state_zero_and_each_wave_restarts_its_workloads_by_a_template_patch() {
    let c = with_inventory(&format!(
        "{}apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: team-settings, namespace: istio-system}}\n",
        ns_doc("other", "team: x")
    ));
    let p = c.plan().unwrap();
    // State 0 is the cluster as captured: the owners' labels, the namespace no wave names.
    assert_eq!(
        labels_of(&p, 0, "shop").get("team").map(String::as_str),
        Some("shop")
    );
    assert!(p.states[0].objects.contains_key(&namespace_id("other")));
    assert!(
        matches!(&p.assumptions[0], Assumption::Inventory { held, .. } if held.contains(&"Deployment.apps".to_string()))
    );
    // The canary wave restarts shop's workload, with a patch that sets the restart annotation
    // to the new revision, after the relabel.
    let canary = &p.phases[2];
    let restarts: Vec<&Change> = canary
        .changes
        .iter()
        .filter(|c| matches!(c, Change::Template { .. }))
        .collect();
    assert_eq!(restarts.len(), 1);
    let Change::Template {
        id,
        annotations,
        command,
        ..
    } = restarts[0]
    else {
        unreachable!()
    };
    assert_eq!(*id, web("shop"));
    assert_eq!(
        annotations.get(RESTART_ANNOTATION),
        Some(&Some("1-14-1".to_string()))
    );
    assert_eq!(
        command,
        "kubectl patch deployment.apps -n shop web --type merge -p '{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"istio-canary.dev/restarted-for\":\"1-14-1\"}}}}}'"
    );
    assert!(
        matches!(canary.changes.last(), Some(Change::Template { .. })),
        "restarts run last"
    );
    // Its rollback patches the template back, restarting the pods onto the old revision.
    let rb = &p.rollbacks[2];
    assert!(rb
        .changes
        .iter()
        .any(|c| matches!(c, Change::Template { id, annotations, .. }
        if *id == web("shop") && annotations.get(RESTART_ANNOTATION) == Some(&None))));
    // The uninstall deletes what the old install made and nothing else the inventory holds.
    let uninstall = p.phases.last().unwrap();
    assert_eq!(uninstall.kind, PhaseKind::Uninstall);
    let end = p.states.last().unwrap();
    assert!(
        end.objects.keys().any(|id| id.name == "team-settings"),
        "the uninstall deleted a ConfigMap the old install did not make"
    );
    assert!(end.objects.contains_key(&web("pay")));
    assert!(uninstall
        .deletes()
        .all(|d| ids(&c.old_objects).contains(&d.id)));
    // live/ owns what the renders made, never the users' objects.
    for change in live_changes(&p, p.phases.len()) {
        assert!(
            p.rendered.contains(change.id()) || change.id().kind == "Namespace",
            "live/ would own {}",
            change.id()
        );
        assert_ne!(change.id().name, "other");
    }
}

#[test]
fn namespaces_and_workloads_the_old_revision_injects_outside_every_wave_are_refused() {
    let mut c = with_inventory(&format!(
        "{}{}{}",
        ns_doc("legacy", &format!("{REV_LABEL}: '1-13-5'")),
        ns_doc("edge", "team: edge"),
        deployment_doc("edge", "api", &format!(", {REV_LABEL}: '1-13-5'"))
    ));
    c.old_objects.push(object_injector("1-13-5"));
    c.new_objects.push(object_injector("1-14-1"));
    let inv = inventory(
        &c,
        &format!(
            "{}{}{}{}",
            the_waves("1-13-5"),
            ns_doc("legacy", &format!("{REV_LABEL}: '1-13-5'")),
            ns_doc("edge", "team: edge"),
            deployment_doc("edge", "api", &format!(", {REV_LABEL}: '1-13-5'"))
        ),
    );
    c.inventory = Some(inv);
    let api = ObjectId {
        name: "api".into(),
        ..web("edge")
    };
    match c.plan() {
        Err(Refusal::Forgotten {
            namespaces,
            workloads,
            ..
        }) => {
            assert_eq!(namespaces, vec!["legacy".to_string()]);
            assert_eq!(workloads, vec![api.clone()]);
        }
        other => panic!("must be refused: {other:?}"),
    }
    let text = crate::describe::refusal(&c.plan().unwrap_err()).to_string();
    assert!(
        text.contains("revision 1-13-5 still injects what no wave moves"),
        "{text}"
    );
    assert!(
        text.contains("namespace legacy") && text.contains("Deployment.apps edge/api"),
        "{text}"
    );

    // Moved: the namespace in a wave, the workload by its wave's `workloads`.
    c.waves[1].namespaces.push("legacy".into());
    c.waves[1].workloads.push(api.clone());
    let p = c.plan().unwrap();
    let rest = &p.phases[3];
    assert!(rest
        .changes
        .iter()
        .any(|ch| matches!(ch, Change::Template { id, labels, .. }
        if *id == api && labels.get(REV_LABEL) == Some(&Some("1-14-1".to_string())))));

    // Kept: without the uninstall, what no wave names stays on the old revision, checked in
    // every state.
    c.waves[1].namespaces.pop();
    c.waves[1].workloads.clear();
    c.uninstall_old = false;
    c.default_tag = true;
    let p = c.plan().unwrap();
    for (n, state) in p.states.iter().enumerate() {
        let labels = state.labels(&namespace_id("legacy")).unwrap();
        let found = state.injectors(&labels, &BTreeMap::new());
        assert_eq!(start::revision_of(&found), Some("1-13-5"), "state {n}");
        assert_eq!(
            p.expected[n].get("legacy"),
            Some(&Some("1-13-5".to_string())),
            "state {n}"
        );
    }
}

#[test]
fn ambiguous_injection_labels_in_the_inventory_are_refused_all_at_once() {
    let c = with_inventory(&format!(
        "{}{}",
        ns_doc(
            "both",
            &format!("{REV_LABEL}: '1-13-5', {INJECTION_LABEL}: enabled")
        ),
        ns_doc("empty", &format!("{REV_LABEL}: ''"))
    ));
    let Err(Refusal::AmbiguousLabels { namespaces, .. }) = c.plan() else {
        panic!("must be refused");
    };
    use super::refusal::Ambiguous;
    assert_eq!(
        namespaces,
        vec![
            ("both".to_string(), Ambiguous::BothLabels),
            ("empty".to_string(), Ambiguous::EmptyValue(REV_LABEL)),
        ]
    );
}

#[test]
fn an_inventory_that_the_old_render_does_not_explain_is_refused_listing_both_ways() {
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    let mut inv = inventory(
        &c,
        &format!(
            "{}apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio-extra, namespace: istio-system, labels: {{{REV_LABEL}: '1-13-5'}}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app-config, namespace: shop, labels: {{{REV_LABEL}: '1-13-5'}}}}\n",
            the_waves("1-13-5")
        ),
    );
    inv.objects
        .retain(|o| o.id.name != "istiod-1-13-5" || o.id.kind != "Deployment");
    c.inventory = Some(inv);
    let Err(Refusal::NotInstalled {
        missing,
        unexplained,
        ..
    }) = c.plan()
    else {
        panic!("must be refused");
    };
    assert_eq!(
        missing.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec!["Deployment.apps istio-system/istiod-1-13-5"]
    );
    // Only the control plane's own places: an app's ConfigMap labelled for the revision is not
    // the install's.
    assert_eq!(
        unexplained
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["ConfigMap istio-system/istio-extra"]
    );
}

#[test]
fn a_revision_tag_left_on_the_old_revision_blocks_its_uninstall() {
    let tag = format!("apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: istio-revision-tag-prod, labels: {{{REV_LABEL}: '1-13-5', istio.io/tag: prod}}}}\nwebhooks:\n- name: rev.namespace.sidecar-injector.istio.io\n  clientConfig: {{service: {{name: istiod-1-13-5, namespace: istio-system}}}}\n  rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}}]\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  namespaceSelector: {{matchExpressions: [{{key: {REV_LABEL}, operator: In, values: [prod]}}, {{key: {INJECTION_LABEL}, operator: DoesNotExist}}]}}\n---\n");
    // A namespace on the tag is injected by the old revision: forgotten unless a wave moves it.
    let c = with_inventory(&format!(
        "{tag}{}",
        ns_doc("tagged", &format!("{REV_LABEL}: prod"))
    ));
    let Err(Refusal::Forgotten { namespaces, .. }) = c.plan() else {
        panic!("must be refused");
    };
    assert_eq!(namespaces, vec!["tagged".to_string()]);
    // With no namespace on it, the tag itself still calls the old istiod: the uninstall is
    // refused, naming it.
    let c = with_inventory(&tag);
    let Err(Refusal::StillUsed { at, references, .. }) = c.plan() else {
        panic!("must be refused");
    };
    assert_eq!(at.kind, PhaseKind::Uninstall);
    assert!(
        references
            .iter()
            .any(|v| v.to_string().contains("istio-revision-tag-prod")),
        "{references:?}"
    );
    // Keeping the old revision keeps the tag working.
    let mut c = with_inventory(&tag);
    c.uninstall_old = false;
    c.plan().unwrap();
}

#[test]
fn a_workload_whose_template_pins_the_old_revision_is_refused_at_its_wave() {
    // An old injector that takes pods labelled `pin: old` wherever they are, and a new one that
    // leaves them alone: relabelling the namespace does not move them.
    let mut c = Case::new(named("1-13-5"), named("1-14-1"));
    let pin = format!("apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: istio-sidecar-injector-pin-1-13-5, labels: {{{REV_LABEL}: '1-13-5'}}}}\nwebhooks:\n- name: pin.sidecar-injector.istio.io\n  clientConfig: {{service: {{name: istiod-1-13-5, namespace: istio-system}}}}\n  rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}}]\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  objectSelector: {{matchLabels: {{pin: old}}}}\n");
    c.old_objects
        .push(parse_manifest(&pin, "t").unwrap().remove(0));
    for o in c.old_objects.iter_mut().chain(c.new_objects.iter_mut()) {
        if o.id.kind == "MutatingWebhookConfiguration" && !o.id.name.contains("pin") {
            let Some(serde_yaml::Value::Sequence(hooks)) = o.body.get_mut("webhooks") else {
                continue;
            };
            for h in hooks
                .iter_mut()
                .filter_map(serde_yaml::Value::as_mapping_mut)
            {
                h.insert(
                    "objectSelector".into(),
                    serde_yaml::from_str(
                        "{matchExpressions: [{key: pin, operator: DoesNotExist}]}",
                    )
                    .unwrap(),
                );
            }
        }
    }
    let mut extra = the_waves("1-13-5");
    extra.push_str(&deployment_doc("shop", "pinned", ", pin: old"));
    c.inventory = Some(inventory(&c, &extra));
    let Err(Refusal::Pinned { at, workloads }) = c.plan() else {
        panic!("must be refused");
    };
    assert_eq!(at.dir, "03-migrate-canary");
    assert_eq!(workloads.len(), 1);
    assert_eq!(workloads[0].0.name, "pinned");
}

#[test]
fn owners_labels_and_annotations_survive_every_phase_and_rollback_of_an_inventory_plan() {
    let p = with_inventory("").plan().unwrap();
    let check = |what: &str, state: &ClusterState| {
        for ns in ["shop", "cart", "pay"] {
            let o = &state.objects[&namespace_id(ns)];
            assert_eq!(o.label("team").as_deref(), Some(ns), "{what}: {ns}");
            assert_eq!(
                crate::manifest::str_at(&o.body, &["metadata", "annotations", "owner"]),
                Some("app-team"),
                "{what}: {ns}"
            );
        }
    };
    for (n, s) in p.states.iter().enumerate() {
        check(&format!("state {n}"), s);
    }
    for rb in &p.rollbacks {
        let mut s = p.states[rb.phase_index].clone();
        for c in &rb.changes {
            s.apply(c);
        }
        check(&rb.dir, &s);
    }
}

#[test]
fn what_a_wave_cannot_restart_is_listed_on_its_phase() {
    let c = with_inventory(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: debug, namespace: shop}\nspec: {containers: [{name: a, image: a}]}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-1, uid: u}]}\nspec: {containers: [{name: a, image: a}]}\n---\n\
         apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate, namespace: cart}\nspec: {template: {metadata: {labels: {job: m}}, spec: {containers: [{name: a, image: a}]}}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: batch}\n---\n\
         apiVersion: batch/v1\nkind: Job\nmetadata: {name: report, namespace: batch}\nspec: {template: {metadata: {labels: {job: r}}, spec: {containers: [{name: a, image: a}]}}}\n",
    );
    let p = c.plan().unwrap();
    let names =
        |i: usize| -> Vec<String> { p.phases[i].manual.iter().map(ToString::to_string).collect() };
    // The owned Pod is restarted with its Deployment's template; a Job outside the waves stays.
    assert_eq!(names(2), vec!["Pod shop/debug"]);
    assert_eq!(names(3), vec!["Job.batch cart/migrate"]);
    let texts = crate::describe::describe(&p);
    assert!(
        texts.phases[2].summary.contains("Not restarted by this phase (no template to patch): `Pod shop/debug`; recreate them by hand"),
        "{}",
        texts.phases[2].summary
    );
}

/// Replays a phase's or rollback's server-side commands (`kubectl apply --server-side … -k DIR`
/// for its label files, `kubectl label` for its label commands) on namespaces with their field
/// owners, the way the API server would (`cluster::server_side_apply`, `cluster::kubectl_label`),
/// checking after every step that each namespace is injected by exactly one healthy injector of
/// `webhooks_from`.
fn run_server_side(
    labels: &mut BTreeMap<String, (Object, crate::cluster::FieldOwners)>,
    commands: &[String],
    changes: &[Change],
    dir: &str,
    webhooks_from: &ClusterState,
    what: &str,
) {
    for cmd in commands {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["kubectl", "apply", "--server-side", manager, rest @ ..]
                if rest.last() == Some(&dir) =>
            {
                let manager = manager.trim_start_matches("--field-manager=");
                let force = rest.contains(&"--force-conflicts");
                for (id, partial) in label_files(changes) {
                    let (live, owners) = labels.get_mut(&id.name).unwrap();
                    let (o, w) =
                        crate::cluster::server_side_apply(live, owners, &partial, manager, force)
                            .unwrap_or_else(|e| panic!("{what}: `{cmd}` conflicts: {e:?}"));
                    *live = o;
                    *owners = w;
                }
            }
            ["kubectl", "label", "namespace", name, rest @ ..] => {
                let (set, remove) = label_args(rest);
                let (live, owners) = labels.get_mut(*name).unwrap();
                let (o, w) = crate::cluster::kubectl_label(live, owners, &set, &remove);
                *live = o;
                *owners = w;
            }
            _ => continue,
        }
        let webhooks = webhooks_from.injector_webhooks();
        for (ns, (o, _)) in labels.iter() {
            let found = webhooks.matching(&o.labels(), &BTreeMap::new());
            assert!(
                start::revision_of(&found).is_some(),
                "{what}: after `{cmd}`, {ns} would be injected by {}",
                crate::mesh::describe(&found)
            );
        }
    }
}

#[test]
fn every_server_side_apply_keeps_the_namespace_owners_labels_and_ends_where_the_plan_says() {
    let cases = [
        Case::new(Revision::Default, named("1-14-1")),
        Case::new(named("1-13-5"), named("1-14-1")),
        with_inventory(""),
    ];

    // kubectl as PLAN.md says, then Argo CD (`ServerSideApply=true`) and Flux, which apply the
    // same directories server-side with their own managers, always forcing conflicts.
    let appliers: [Option<&str>; 3] = [
        None,
        Some("argocd-controller"),
        Some("kustomize-controller"),
    ];
    for (c, applier) in cases
        .iter()
        .flat_map(|c| appliers.iter().map(move |a| (c, *a)))
    {
        let p = c.plan().unwrap();
        let mut texts = crate::describe::describe(&p);
        if let Some(manager) = applier {
            let as_controller = |cmds: &mut Vec<String>| {
                for cmd in cmds.iter_mut() {
                    if cmd.starts_with("kubectl apply --server-side") {
                        *cmd = cmd
                            .replace(
                                &format!("--field-manager={}", crate::describe::FIELD_MANAGER),
                                &format!("--field-manager={manager}"),
                            )
                            .replace(" --force-conflicts", "")
                            .replace(" -k ", " --force-conflicts -k ");
                    }
                }
            };
            texts
                .phases
                .iter_mut()
                .for_each(|t| as_controller(&mut t.server_side));
            texts
                .rollbacks
                .iter_mut()
                .for_each(|t| as_controller(&mut t.server_side));
        }
        let names: Vec<String> = p.injection.iter().map(|r| r.namespace.clone()).collect();
        // Namespaces created with `kubectl apply`: every label and annotation owned by it.
        let created = owned(&p.states[0], &names);
        let mut labels: BTreeMap<String, (Object, crate::cluster::FieldOwners)> = names
            .iter()
            .map(|ns| {
                let o = (*created.objects[&namespace_id(ns)]).clone();
                let owners = crate::cluster::owned_by(&o, "kubectl-client-side-apply");
                (ns.clone(), (o, owners))
            })
            .collect();
        let check = |what: &str,
                     labels: &BTreeMap<String, (Object, crate::cluster::FieldOwners)>,
                     end: &ClusterState| {
            for (ns, (o, _)) in labels {
                assert_eq!(o.label("team").as_deref(), Some("payments"), "{what}: {ns}");
                assert_eq!(
                    crate::manifest::str_at(&o.body, &["metadata", "annotations", "owner"]),
                    Some("app-team"),
                    "{what}: {ns}"
                );
                let want = end.labels(&namespace_id(ns)).unwrap();
                for key in [REV_LABEL, INJECTION_LABEL] {
                    assert_eq!(o.label(key), want.get(key).cloned(), "{what}: {ns} {key}");
                }
            }
        };
        let mut after = vec![labels.clone()];
        for (phase, text) in p.phases.iter().zip(&texts.phases) {
            let n = phase.index;
            run_server_side(
                &mut labels,
                &text.server_side,
                &phase.changes,
                &phase.dir,
                &p.states[n],
                &phase.dir,
            );
            check(&phase.dir, &labels, &p.states[n]);
            after.push(labels.clone());
        }
        for (rb, text) in p.rollbacks.iter().zip(&texts.rollbacks) {
            let n = rb.phase_index;
            let mut back = after[n].clone();
            run_server_side(
                &mut back,
                &text.server_side,
                &rb.changes,
                &rb.dir,
                &p.states[n - 1],
                &rb.dir,
            );
            check(&rb.dir, &back, &p.states[n - 1]);
        }
    }
}

#[test]
fn namespaces_that_follow_the_default_move_and_restart_with_the_default_tag() {
    let mut c = Case::new(Revision::Default, named("1-14-1"));
    let mut extra = String::new();
    for ns in ["shop", "cart", "pay", "legacy"] {
        extra.push_str(&ns_doc(
            ns,
            &format!("{INJECTION_LABEL}: enabled, team: {ns}"),
        ));
        extra.push_str(&deployment_doc(ns, "web", ""));
    }
    c.inventory = Some(inventory(&c, &extra));
    let p = c.plan().unwrap();
    let tag = p
        .phases
        .iter()
        .find(|ph| ph.kind == PhaseKind::DefaultTag)
        .unwrap();
    // `legacy` is in no wave: it follows the default, so it moves with the tag, keeps its
    // label, and its workload restarts in that phase.
    assert_eq!(tag.namespaces, vec!["legacy".to_string()]);
    assert!(tag
        .changes
        .iter()
        .any(|ch| matches!(ch, Change::Template { id, .. } if *id == web("legacy"))));
    assert!(!tag
        .changes
        .iter()
        .any(|ch| matches!(ch, Change::Labels { .. })));
    let n = tag.index;
    assert_eq!(
        p.expected[n - 1].get("legacy"),
        Some(&Some("default".to_string()))
    );
    assert_eq!(
        p.expected[n].get("legacy"),
        Some(&Some("1-14-1".to_string()))
    );
    assert_eq!(
        labels_of(&p, n, "legacy")
            .get(INJECTION_LABEL)
            .map(String::as_str),
        Some("enabled")
    );
    assert!(p.injection.iter().any(|r| r.namespace == "legacy"));
    // Its rollback restarts it again, onto the old revision.
    let rb = &p.rollbacks[n - 1];
    assert!(rb
        .changes
        .iter()
        .any(|ch| matches!(ch, Change::Template { id, .. } if *id == web("legacy"))));
    // Without moving the default tag (and keeping the old revision), it stays where it is.
    c.default_tag = false;
    c.uninstall_old = false;
    let p = c.plan().unwrap();
    assert!(p.phases.iter().all(|ph| ph.kind != PhaseKind::DefaultTag));
    for (i, e) in p.expected.iter().enumerate() {
        assert_eq!(
            e.get("legacy"),
            Some(&Some("default".to_string())),
            "state {i}"
        );
    }
}

#[test]
fn a_label_removal_no_controller_runs_is_said_for_argo_cd_and_flux() {
    let p = Case::new(Revision::Default, named("1-14-1"))
        .plan()
        .unwrap();
    let texts = crate::describe::describe(&p);
    let canary = &texts.phases[2];
    let note = canary.controller.as_deref().unwrap();
    assert!(
        note.starts_with("Argo CD and Flux apply only the directory: they do not run the 1 `kubectl label … istio-injection-` command above, and until it has run, `shop` stays on revision `default`"),
        "{note}"
    );
    let p = Case::new(named("1-13-5"), named("1-14-1")).plan().unwrap();
    let texts = crate::describe::describe(&p);
    assert!(texts.phases.iter().all(|t| t.controller.is_none()));
}

#[test]
fn a_dangling_webhook_before_the_upgrade_is_called_harmless_only_when_it_cannot_block() {
    for (policy, harmless) in [("Ignore", true), ("Fail", false)] {
        let mut c = Case::new(named("1-13-5"), named("1-14-1"));
        let stale = parse_manifest(&format!("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: stale}}\nwebhooks:\n- name: stale.validation.istio.io\n  clientConfig: {{service: {{name: istiod, namespace: istio-system}}}}\n  failurePolicy: {policy}\n  sideEffects: None\n  admissionReviewVersions: [v1]\n"), "t")
            .unwrap()
            .remove(0);
        c.old_objects.push(stale.clone());
        c.new_objects.push(stale);
        let p = c.plan().unwrap();
        let texts = crate::describe::describe(&p);
        assert_eq!(texts.warnings.len(), 1, "{policy}");
        assert_eq!(
            texts.warnings[0].contains("(harmless: its failurePolicy is Ignore"),
            harmless,
            "{policy}: {}",
            texts.warnings[0]
        );
    }
}

/// The one simulation refuses a step after which a gateway Service that had gateway pods behind
/// it selects none (a cutover to a revision whose gateways are not there), and lets through the
/// same switch once they are.
#[test]
fn the_simulation_refuses_a_step_that_leaves_a_gateway_service_without_pods() {
    let objects = parse_manifest(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: gw, namespace: edge}\nspec:\n  template:\n    metadata:\n      labels: {app: gw, istio.io/rev: a}\n    spec:\n      containers:\n      - name: istio-proxy\n        args: [proxy, router]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: gw, namespace: edge}\nspec:\n  selector: {app: gw}\n",
        "t",
    )
    .unwrap();
    let state = ClusterState::from_objects(&objects);
    let cutover = parse_manifest(
        "apiVersion: v1\nkind: Service\nmetadata: {name: gw, namespace: edge}\nspec:\n  selector: {app: gw, istio.io/rev: b}\n",
        "t",
    )
    .unwrap()
    .remove(0);
    let none = simulate::Expected::new();
    let changes = vec![Change::Apply(cutover.clone())];
    match simulate::run_from(&state, None, &changes, &none, &none, &BTreeSet::new()).map(|_| ()) {
        Err(Violation::GatewayServiceEmpty { service, had }) => {
            assert_eq!(service, cutover.id);
            assert_eq!(had, ["a"]);
        }
        other => panic!("{other:?}"),
    }
    let canary = parse_manifest(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: gw-b, namespace: edge}\nspec:\n  template:\n    metadata:\n      labels: {app: gw, istio.io/rev: b}\n    spec:\n      containers:\n      - name: istio-proxy\n        args: [proxy, router]\n",
        "t",
    )
    .unwrap()
    .remove(0);
    let with_canary = vec![Change::Apply(canary), Change::Apply(cutover)];
    assert!(simulate::run_from(&state, None, &with_canary, &none, &none, &BTreeSet::new()).is_ok());
}

#[test]
fn the_injection_table_groups_each_wave_and_names_every_exception() {
    let names: Vec<String> = (0..=crate::describe::NAMES_SHOWN + 2)
        .map(|i| format!("team-{i:02}"))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut case = Case::new(named("1-13-5"), named("1-14-1"));
    case.waves = waves(&[("canary", &["shop"]), ("rest", &refs)]);
    let p = case.plan().unwrap();
    let rest = p
        .phases
        .iter()
        .find(|ph| ph.name == "migrate-rest")
        .unwrap();
    let groups = crate::describe::injection_groups(&p, &p.injection);
    let labels: Vec<&str> = groups.iter().map(|g| g.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "wave `canary`: `shop`".to_string(),
            format!(
                "wave `rest`: {} namespaces (one file each in `{}/`)",
                names.len(),
                rest.dir
            ),
        ]
    );
    // One namespace of the wave behaves unlike the rest of it (its last cell differs), and a
    // namespace in no wave follows a tag: both are named, the wave's usual row is counted.
    let mut rows = p.injection.clone();
    let odd = rows.iter_mut().find(|r| r.namespace == "team-05").unwrap();
    *odd.states.last_mut().unwrap() = "none".into();
    let mut follower = rows[0].clone();
    follower.namespace = "checkout".into();
    follower.tag = Some("prod".into());
    rows.push(follower);
    let groups = crate::describe::injection_groups(&p, &rows);
    let labels: Vec<&str> = groups.iter().map(|g| g.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "wave `canary`: `shop`".to_string(),
            format!(
                "wave `rest`: {} namespaces (one file each in `{}/`, all but the exceptions below)",
                names.len() - 1,
                rest.dir
            ),
            "wave `rest`, unlike the rest of it: `team-05`".to_string(),
            "in no wave, follows tag `prod`: `checkout`".to_string(),
        ]
    );
    assert_eq!(groups[2].states.last().map(String::as_str), Some("none"));
}

/// istio-cni and ztunnel of revision `rev`, as the charts render them, cut to what the planner
/// reads: the DaemonSets, their accounts, istio-cni's ConfigMap and binding.
fn node_agents(rev: &Revision, version: &str, strategy: &str) -> Vec<Object> {
    let istiod = rev.istiod();
    let docs = [
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: istio-cni, namespace: istio-system}\n".to_string(),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: istio-cni}\nrules: []\n".to_string(),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: istio-cni}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: istio-cni}\nsubjects: [{kind: ServiceAccount, name: istio-cni, namespace: istio-system}]\n".to_string(),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio-cni-config, namespace: istio-system}}\ndata: {{v: '{version}'}}\n"),
        format!("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: istio-cni-node, namespace: istio-system}}\nspec:\n  template:\n    spec:\n      serviceAccountName: istio-cni\n      containers:\n      - name: install-cni\n        image: docker.io/istio/install-cni:{version}\n        envFrom: [{{configMapRef: {{name: istio-cni-config}}}}]\n"),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: ztunnel, namespace: istio-system}\n".to_string(),
        format!("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: ztunnel, namespace: istio-system}}\nspec:\n  updateStrategy: {{type: {strategy}}}\n  template:\n    spec:\n      serviceAccountName: ztunnel\n      containers:\n      - name: istio-proxy\n        image: docker.io/istio/ztunnel:{version}\n        args: [proxy, ztunnel]\n        env:\n        - {{name: CA_ADDRESS, value: '{istiod}.istio-system.svc:15012'}}\n        - {{name: XDS_ADDRESS, value: '{istiod}.istio-system.svc:15012'}}\n"),
    ];
    parse_manifest(&docs.join("---\n"), "test")
        .unwrap()
        .iter()
        .map(normalize)
        .collect()
}

#[test]
fn node_agents_move_in_place_after_the_install_cni_first_and_are_never_uninstalled() {
    let (old, new) = (named("1-23-1"), named("1-24-0"));
    let mut c = Case::new(old.clone(), new.clone());
    c.versions = ("1.23.1", "1.24.0");
    c.old_objects
        .extend(node_agents(&old, "1.23.1", "OnDelete"));
    c.new_objects
        .extend(node_agents(&new, "1.24.0", "OnDelete"));
    let p = c.plan().unwrap();
    assert_eq!(
        kinds(&p)[..4],
        [
            (PhaseKind::Crds, "01-crds"),
            (PhaseKind::Install, "02-install-1-24-0"),
            (PhaseKind::Cni, "03-cni-1-24-0"),
            (PhaseKind::Ztunnel, "04-ztunnel-1-24-0"),
        ]
    );
    let names = |kind: PhaseKind| -> BTreeSet<String> {
        p.phases
            .iter()
            .filter(|ph| ph.kind == kind)
            .flat_map(|ph| ph.changes.iter().map(|c| c.id().name.clone()))
            .collect()
    };
    assert_eq!(
        names(PhaseKind::Cni),
        BTreeSet::from(["istio-cni", "istio-cni-config", "istio-cni-node"].map(String::from))
    );
    assert_eq!(
        names(PhaseKind::Ztunnel),
        BTreeSet::from(["ztunnel"].map(String::from))
    );
    assert!(names(PhaseKind::Install)
        .iter()
        .all(|n| !n.contains("cni") && n != "ztunnel"));
    assert!(names(PhaseKind::Uninstall)
        .iter()
        .all(|n| !n.contains("cni") && n != "ztunnel"));
    // The ztunnel phase re-points ztunnel at the new istiod: the uninstall may delete the old.
    let ztunnel = p
        .phases
        .iter()
        .find(|ph| ph.kind == PhaseKind::Ztunnel)
        .unwrap();
    let after = &p.states[ztunnel.index];
    let z = after
        .objects
        .values()
        .find(|o| o.id.name == "ztunnel" && o.id.kind == "DaemonSet")
        .unwrap();
    assert_eq!(
        crate::istio::ztunnel_istiod(z).unwrap().name,
        "istiod-1-24-0"
    );
    // Each rollback puts the previous versions back.
    let rb = p
        .rollbacks
        .iter()
        .find(|rb| rb.phase_index == ztunnel.index)
        .unwrap();
    let before = &p.states[ztunnel.index - 1];
    assert!(rb.changes.iter().any(
        |c| matches!(c, Change::Apply(o) if Some(&**before.objects.get(&o.id).unwrap()) == Some(o))
    ));
}

#[test]
fn node_agents_the_hop_cannot_upgrade_are_refused_by_kind() {
    let (old, new) = (named("1-23-1"), named("1-24-0"));
    let case = |old_agents: Vec<Object>, new_agents: Vec<Object>, versions| {
        let mut c = Case::new(old.clone(), new.clone());
        c.versions = versions;
        c.old_objects.extend(old_agents);
        c.new_objects.extend(new_agents);
        c.plan().unwrap_err()
    };
    let v = ("1.23.1", "1.24.0");
    let cni_only = |agents: Vec<Object>| -> Vec<Object> {
        agents
            .into_iter()
            .filter(|o| !o.id.name.contains("ztunnel"))
            .collect()
    };
    assert!(matches!(
        case(
            node_agents(&old, "1.23.1", "OnDelete"),
            cni_only(node_agents(&new, "1.24.0", "OnDelete")),
            v
        ),
        Refusal::NodeAgentDropped {
            agent: crate::istio::NodeAgent::Ztunnel,
            ..
        }
    ));
    assert!(matches!(
        case(
            node_agents(&old, "1.23.1", "OnDelete"),
            node_agents(&new, "1.24.0", "RollingUpdate"),
            v
        ),
        Refusal::ZtunnelRollsItself { .. }
    ));
    let elsewhere: Vec<Object> = node_agents(&new, "1.24.0", "OnDelete")
        .into_iter()
        .map(|o| {
            let text = o
                .to_yaml()
                .unwrap()
                .replace("istiod-1-24-0", "istiod-1-23-1");
            parse_manifest(&text, "t").unwrap().remove(0)
        })
        .collect();
    assert!(matches!(
        case(node_agents(&old, "1.23.1", "OnDelete"), elsewhere, v),
        Refusal::ZtunnelElsewhere { .. }
    ));
    assert!(matches!(
        case(
            cni_only(node_agents(&old, "1.22.1", "OnDelete")),
            cni_only(node_agents(&new, "1.24.0", "OnDelete")),
            ("1.22.1", "1.24.0")
        ),
        Refusal::NodeAgentSkew {
            agent: crate::istio::NodeAgent::Cni,
            ..
        }
    ));
    assert!(matches!(
        case(
            node_agents(&old, "1.21.1", "OnDelete"),
            node_agents(&new, "1.22.0", "OnDelete"),
            ("1.21.1", "1.22.0")
        ),
        Refusal::AmbientTooEarly { .. }
    ));
}

#[test]
fn rebased_expectations_equal_the_fresh_ones() {
    // Whatever the two maps hold (a namespace expected elsewhere, one no longer named, one named
    // anew, one the same), the rebased map is the fresh one.
    let map = |pairs: &[(&str, Option<&str>)]| -> Expected {
        pairs
            .iter()
            .map(|(n, r)| (n.to_string(), r.map(str::to_string)))
            .collect()
    };
    let previous = map(&[
        ("a", Some("1")),
        ("b", Some("1")),
        ("c", None),
        ("d", Some("1")),
    ]);
    let fresh = map(&[
        ("a", Some("2")),
        ("c", None),
        ("d", Some("1")),
        ("e", Some("2")),
    ]);
    let built = |m: &Expected| -> BTreeMap<String, Option<String>> {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let rebase = |fresh: &Expected, previous: &Expected| {
        let b = built(fresh);
        let borrowed: hop::Fresh<'_> = b.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        hop::rebase(&borrowed, previous)
    };
    assert_eq!(rebase(&fresh, &previous), fresh);
    assert_eq!(rebase(&previous, &fresh), previous);
    assert_eq!(rebase(&Expected::new(), &previous), Expected::new());
    assert_eq!(rebase(&fresh, &Expected::new()), fresh);
    assert_eq!(rebase(&previous, &previous), previous);
    // Last keys removed, first ones kept, and the other way round.
    let head = map(&[("a", Some("1")), ("b", Some("1"))]);
    let tail = map(&[("c", None), ("d", Some("1"))]);
    assert_eq!(rebase(&head, &previous), head);
    assert_eq!(rebase(&tail, &previous), tail);
}
