//! Property test over generated policies (1 to 3 hops, version by version from 1.13.5; 1 to 4
//! waves, 1 to 3 namespaces each, an unrevisioned or revisioned old install, the default tag on
//! or off with `uninstallOld` consistent, gateways present or absent in the old and the new
//! spec, a revision tag moved after install or any wave, or none; no node agent, istio-cni, or
//! ambient mode with istio-cni and ztunnel, on 1.24 to 1.27, with an ambient namespace and a
//! wave namespace labelled for both in the inventory): the plan, built from stand-in renders computed once per variant, must satisfy what
//! GitOps users and rollbacks rely on:
//!
//! - replaying the phases' changes on state 0 (the uninstall's deletes included) gives the
//!   plan's states, and for every promote point `live/` (as emitted, parsed back) equals that
//!   state restricted to what the plan manages;
//! - phase N, then rollback N, returns to the state before phase N (CRDs aside: never rolled
//!   back);
//! - the injection invariants hold after every step of both sequences: every named namespace
//!   injected by exactly one healthy injector (an ambient one served by exactly one healthy
//!   ztunnel), and by the expected revision at the end of each
//!   phase and each rollback; every Gateway API Gateway of an Istio class programmed by exactly
//!   one istiod.
//!
//! With a generated inventory, Gateways in every mode (moved with their namespace's wave, by
//! their own label in a wave's `gateways`, with a tag, with the default tag, or by nothing) are
//! refused exactly when Istio's rule says one would be left with no istiod or two, and otherwise
//! end programmed by the revision their mover leads to.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use istio_canary::cluster::{as_stored, namespace_id, Change, ClusterState, Via};
use istio_canary::describe::describe;
use istio_canary::emit::{emit, EmitContext};
use istio_canary::layout::{
    layout, ARGOCD_KEEP, ARGOCD_SYNC_OPTIONS, ARGOCD_SYNC_WAVE, FLUX_PRUNE, FLUX_PRUNE_DISABLED,
};
use istio_canary::manifest::{parse_manifest, Object, ObjectId};
use istio_canary::mesh::{dangling_references, violations, Expectations, Expected, Violation};
use istio_canary::plan::{plan, simulate_rollback, PhaseKind, Plan, Refusal, RESTART_ANNOTATION};
use istio_canary::policy::{load_from, InventoryFile, Policy};
use istio_canary::render::{Istioctl, Rendered, TagRequest};
use proptest::prelude::*;
use serde_yaml::Value;

use common::{fixtures, standin_sha256};

/// The plans here are made on two threads (the rollbacks and injection tables in parallel), as
/// a compile on a machine of two cores or more makes them.
const TWO_JOBS: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(2) {
    Some(n) => n,
    None => std::num::NonZeroUsize::MIN,
};

const GATEWAYS_SPEC: &str = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  profile: default\n  components:\n    ingressGateways:\n    - name: istio-ingressgateway\n      enabled: true\n    egressGateways:\n    - name: istio-egressgateway\n      enabled: true\n";
const MINIMAL_SPEC: &str =
    "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  profile: minimal\n";

/// The versions a generated path goes through, one minor per hop.
const CHAIN: [&str; 4] = ["1.13.5", "1.14.1", "1.15.3", "1.16.2"];
/// The same for a mesh with node agents (istio-cni in istio-system from 1.24; ambient mode
/// upgradable from 1.22).
const AGENT_CHAIN: [&str; 4] = ["1.24.0", "1.25.0", "1.26.0", "1.27.0"];

/// The node agents of a generated mesh: none, istio-cni, or ambient mode (istio-cni and
/// ztunnel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agents {
    None,
    Cni,
    Ambient,
}

/// The IstioOperator spec of a generated side: gateways or not, with its node agents.
fn spec_text(gateways: bool, agents: Agents) -> String {
    let base = if gateways {
        GATEWAYS_SPEC
    } else {
        MINIMAL_SPEC
    };
    match agents {
        Agents::None => base.to_string(),
        Agents::Cni => {
            let mut t = base.to_string();
            if !gateways {
                t.push_str("  components:\n");
            }
            t.push_str("    cni:\n      enabled: true\n");
            t
        }
        Agents::Ambient => {
            let mut t = base
                .replace("profile: default", "profile: ambient")
                .replace("profile: minimal", "profile: ambient");
            if !gateways {
                t.push_str("  components: {}\n");
            }
            t.push_str("  values:\n    ztunnel:\n      updateStrategy:\n        type: OnDelete\n");
            t
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    /// How many hops (1 to 3): the upgrade goes from `CHAIN[0]` to `CHAIN[hops]`.
    hops: usize,
    /// A revision tag `prod-stable` the plan moves: `Some(0)` after install, `Some(k)` after
    /// wave `k - 1`, `None`: no tag.
    tag_after: Option<usize>,
    /// Whether a tag moved after a wave is listed by the wave (`waves[].tags`) rather than in
    /// `spec.tags` with `moveAfter`.
    tag_in_wave: bool,
    waves: Vec<usize>,
    old_default: bool,
    default_tag: bool,
    uninstall_old: bool,
    old_gateways: bool,
    new_gateways: bool,
    /// The node agents of both sides (every hop keeps them; dropping one is refused).
    agents: Agents,
}

impl Case {
    fn chain(&self) -> [&'static str; 4] {
        match self.agents {
            Agents::None => CHAIN,
            _ => AGENT_CHAIN,
        }
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(1usize..=3, 1..=4),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![3 => Just(1usize), 1 => Just(2usize), 1 => Just(3usize)],
        (prop::option::of(0usize..=4), any::<bool>()),
        prop_oneof![2 => Just(Agents::None), 1 => Just(Agents::Cni), 1 => Just(Agents::Ambient)],
    )
        .prop_map(
            |(
                waves,
                old_default,
                default_tag,
                uninstall,
                old_gateways,
                new_gateways,
                hops,
                (tag, tag_in_wave),
                agents,
            )| {
                // Every hop but the last deletes its old revision, which the default tag must
                // have left: a path of several hops moves it.
                let default_tag = default_tag || hops > 1;
                let tag_after = tag.map(|t| t.min(waves.len()));
                Case {
                    hops,
                    tag_after,
                    tag_in_wave,
                    waves,
                    old_default,
                    default_tag,
                    // uninstallOld needs the default tag moved (the policy refuses it otherwise).
                    uninstall_old: default_tag && uninstall,
                    old_gateways,
                    new_gateways,
                    agents,
                }
            },
        )
}

fn policy_text(c: &Case) -> String {
    let sha = standin_sha256();
    let mut waves = String::new();
    for (wi, n) in c.waves.iter().enumerate() {
        let ns: Vec<String> = (0..*n).map(|i| format!("ns{wi}x{i}")).collect();
        waves.push_str(&format!(
            "  - name: w{wi}\n    namespaces: [{}]\n",
            ns.join(", ")
        ));
        if c.tag_in_wave && c.tag_after == Some(wi + 1) {
            waves.push_str("    tags: [prod-stable]\n");
        }
    }
    let remove = if c.old_gateways && !c.new_gateways {
        "[istio-system/istio-ingressgateway, istio-system/istio-egressgateway]"
    } else {
        "[]"
    };
    let tags = match c.tag_after {
        None => String::new(),
        Some(0) => "  tags:\n  - name: prod-stable\n    moveAfter: install\n".to_string(),
        Some(_) if c.tag_in_wave => String::new(),
        Some(k) => format!(
            "  tags:\n  - name: prod-stable\n    moveAfter: w{}\n",
            k - 1
        ),
    };
    let chain = c.chain();
    let pins: String = chain[..=c.hops]
        .iter()
        .map(|v| format!("    \"{v}\": {{path: ../istioctl/istioctl-{v}, sha256: {sha}}}\n"))
        .collect();
    format!(
        "apiVersion: istio-canary.dev/v1alpha1\nkind: CanaryUpgrade\nmetadata:\n  name: prop\nspec:\n  istioOperator: {new}\n  from:\n    version: {from}\n{rev}    istioOperator: {old}\n  to:\n    version: {to}\n  istioctl:\n{pins}  waves:\n{waves}  defaultTag: {tag}\n  uninstallOld: {uninstall}\n  removeGateways: {remove}\n{tags}",
        from = chain[0],
        to = chain[c.hops],
        new = spec_name(c.new_gateways, c.agents),
        old = spec_name(c.old_gateways, c.agents),
        rev = if c.old_default { "    revision: default\n" } else { "" },
        tag = c.default_tag,
        uninstall = c.uninstall_old,
    )
}

/// The file name a generated spec is read as.
fn spec_name(gateways: bool, agents: Agents) -> String {
    format!(
        "{}-{}.yaml",
        if gateways { "gateways" } else { "minimal" },
        format!("{agents:?}").to_lowercase()
    )
}

fn load(c: &Case) -> Policy {
    // A policy held in memory, as if it were beside the example (so the pins resolve).
    let path: PathBuf = fixtures().join("example/prop.yaml");
    let read = |p: &Path, _: u64| -> std::io::Result<Vec<u8>> {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        for gateways in [false, true] {
            for agents in [Agents::None, Agents::Cni, Agents::Ambient] {
                if name == spec_name(gateways, agents) {
                    return Ok(spec_text(gateways, agents).into_bytes());
                }
            }
        }
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    };
    load_from(policy_text(c).as_bytes(), &path, &read).unwrap()
}

/// Stand-in renders, computed once per (side, revision, spec, tags): `release` indexes
/// `Policy::releases` (0 is the old side).
fn render(policy: &Policy, release: usize, tagged: bool) -> Rendered {
    static CACHE: OnceLock<Mutex<HashMap<String, Rendered>>> = OnceLock::new();
    let side = policy.releases()[release];
    let mut tags = if tagged {
        TagRequest {
            revision_tags: vec!["default".into()],
            default_revision: true,
        }
    } else {
        TagRequest::default()
    };
    // As the pipeline does: the tags the plan moves exist on every control plane of the path.
    tags.revision_tags
        .extend(policy.tags.iter().map(|t| t.name.clone()));
    let key = format!(
        "{}:{}:{}:{}:{}",
        side.version,
        side.revision,
        side.operator.sha256,
        tags.default_revision,
        tags.revision_tags.join(",")
    );
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(r) = cache.lock().unwrap().get(&key) {
        return r.clone();
    }
    let ctl = Istioctl::verify(&side.version, &side.istioctl, Duration::from_secs(120)).unwrap();
    let r = ctl.manifest_generate(side, &tags).unwrap();
    cache.lock().unwrap().insert(key, r.clone());
    r
}

/// The hop the state after the first `upto` phases belongs to, and the phases of that hop done.
fn hop_at(p: &Plan, upto: usize) -> (usize, Vec<&istio_canary::plan::Phase>) {
    let hop = match upto {
        0 => 0,
        n => p.phases[n - 1].hop,
    };
    let done = p.phases[..upto].iter().filter(|ph| ph.hop == hop).collect();
    (hop, done)
}

/// The revision each named namespace must be injected by after the first `upto` phases: in the
/// hop that state belongs to, the new revision for the waves it moved, the old one for the rest.
fn expected(policy: &Policy, p: &Plan, upto: usize) -> Expected {
    let (hop, phases) = hop_at(p, upto);
    let done = phases
        .iter()
        .filter(|ph| ph.kind == PhaseKind::Migrate)
        .count();
    let mut m = Expected::new();
    for (wi, w) in policy.waves.iter().enumerate() {
        let side = if wi < done {
            &p.hops[hop].to
        } else {
            &p.hops[hop].from
        };
        for ns in &w.namespaces {
            m.insert(ns.clone(), Some(side.revision.label().to_string()));
        }
    }
    m
}

/// Applies changes step by step (the directory, each command, the deletes), checking after
/// each step that every named namespace has exactly one healthy injector and nothing deleted is
/// still referenced; at the end, that each namespace has the revision `end` expects.
fn run_steps(
    state: &mut ClusterState,
    changes: &[Change],
    end: &Expected,
    known: &BTreeSet<Violation>,
    what: &str,
) {
    let any: Expected = end.keys().map(|k| (k.clone(), None)).collect();
    let mut steps: Vec<Vec<&Change>> = vec![Vec::new()];
    for c in changes {
        match c {
            Change::Labels {
                via: Via::Command(_),
                ..
            } => steps.push(vec![c]),
            Change::Template { .. } => {
                if !steps
                    .last()
                    .unwrap()
                    .iter()
                    .any(|x| matches!(x, Change::Template { .. }))
                {
                    steps.push(Vec::new());
                }
                steps.last_mut().unwrap().push(c);
            }
            Change::Delete(_) => {
                if !steps
                    .last()
                    .unwrap()
                    .iter()
                    .any(|x| matches!(x, Change::Delete(_)))
                {
                    steps.push(Vec::new());
                }
                steps.last_mut().unwrap().push(c);
            }
            _ => steps[0].push(c),
        }
    }
    let last = steps.len() - 1;
    for (i, step) in steps.iter().enumerate() {
        for c in step {
            state.apply(c);
        }
        let expect = if i == last { end } else { &any };
        let mut found = violations(state, &Expectations { namespaces: expect });
        let deleted: Vec<&ObjectId> = step
            .iter()
            .filter(|c| matches!(c, Change::Delete(_)))
            .map(|c| c.id())
            .collect();
        found.extend(dangling_references(state, &deleted));
        let new: Vec<String> = found
            .iter()
            .filter(|v| !known.contains(v))
            .map(ToString::to_string)
            .collect();
        assert!(new.is_empty(), "{what}, step {i}: {new:?}");
    }
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            m.retain(|_, x| !x.is_null());
            for (_, x) in m.iter_mut() {
                strip_nulls(x);
            }
        }
        Value::Sequence(s) => {
            s.retain(|x| !x.is_null());
            for x in s.iter_mut() {
                strip_nulls(x);
            }
        }
        _ => {}
    }
}

/// The object without what its Git form adds (sync wave, prune protection) and without an
/// `annotations` map left empty by that: what the cluster is meant to hold.
fn without_git_metadata(v: &mut Value) {
    let Some(Value::Mapping(metadata)) = v.get_mut("metadata") else {
        return;
    };
    if let Some(Value::Mapping(annotations)) = metadata.get_mut("annotations") {
        for key in [ARGOCD_SYNC_WAVE, ARGOCD_SYNC_OPTIONS, FLUX_PRUNE] {
            annotations.remove(key);
        }
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
}

fn without_crds(s: &ClusterState) -> BTreeMap<ObjectId, Object> {
    s.objects
        .iter()
        .filter(|(id, _)| id.kind != "CustomResourceDefinition")
        .map(|(id, o)| (id.clone(), as_stored(o)))
        .collect()
}

/// The render of every release of the policy's path, as the pipeline makes them.
fn renders(policy: &Policy) -> Vec<Rendered> {
    (0..policy.releases().len())
        .map(|i| render(policy, i, i > 0 && policy.default_tag))
        .collect()
}

fn check(c: &Case) {
    let policy = load(c);
    let renders = renders(&policy);
    check_plan(c, &policy, &renders.iter().collect::<Vec<_>>());
}

/// The revision each named namespace must be injected by after the first `upto` phases, and
/// (with an inventory) each namespace no wave names keeps the revision it had before the upgrade.
fn expected_all(policy: &Policy, p: &Plan, upto: usize) -> Expected {
    let mut m = expected(policy, p, upto);
    let (hop, phases) = hop_at(p, upto);
    let tag_moved = phases.iter().any(|ph| ph.kind == PhaseKind::DefaultTag);
    if policy.inventory.is_some() {
        let s0 = &p.states[0];
        for o in s0.objects.values().filter(|o| o.id.kind == "Namespace") {
            if m.contains_key(&o.id.name) {
                continue;
            }
            let found = s0.injectors(&o.labels(), &BTreeMap::new());
            // Served by ztunnel: it follows ztunnel, which moves in the hop's ztunnel phase.
            if let [one] = found.as_slice() {
                if let istio_canary::mesh::Target::NodeAgent(_) = &one.target {
                    let moved = phases.iter().any(|ph| ph.kind == PhaseKind::Ztunnel);
                    let side = if moved {
                        &p.hops[hop].to
                    } else {
                        &p.hops[hop].from
                    };
                    m.insert(o.id.name.clone(), Some(side.revision.label().to_string()));
                    continue;
                }
            }
            if let [one] = found.as_slice() {
                if let istio_canary::mesh::Target::Revision(r) = &one.target {
                    // `istio-injection=enabled` follows the default revision: it moves when
                    // the default tag does, in every hop.
                    let on_first = *r == policy.from.revision.label();
                    let follows =
                        o.label("istio-injection").as_deref() == Some("enabled") && on_first;
                    // `istio.io/rev=<tag>` of a tag the plan moves: moves with its phase.
                    let selects_tag = on_first
                        && o.label("istio.io/rev")
                            .is_some_and(|t| policy.tags.iter().any(|m| m.name == t));
                    let moved = if selects_tag {
                        phases.iter().any(|ph| ph.kind == PhaseKind::Tag)
                    } else {
                        tag_moved
                    };
                    let rev = match (follows || selects_tag, moved) {
                        (false, _) => r.clone(),
                        (true, true) => p.hops[hop].to.revision.label().to_string(),
                        (true, false) => p.hops[hop].from.revision.label().to_string(),
                    };
                    m.insert(o.id.name.clone(), Some(rev));
                }
            }
        }
    }
    m
}

fn check_plan(c: &Case, policy: &Policy, renders: &[&Rendered]) -> Plan {
    let p = plan(policy, renders, TWO_JOBS).unwrap_or_else(|e| panic!("{c:?}: refused: {e}"));
    assert_eq!(p.hops.len(), c.hops, "{c:?}");
    // What the plan may own in live/: the renders' objects and the named namespaces (an
    // inventory's other objects, the users' workloads among them, never).
    let mut rendered: BTreeSet<ObjectId> = renders
        .iter()
        .flat_map(|r| &r.objects)
        .map(|o| o.id.clone())
        .collect();
    // Canary gateways: each revision's gateway Deployment and autoscaler carry its name.
    if policy.gateway_mode == istio_canary::policy::GatewayMode::Canary {
        let revisions: Vec<String> = policy
            .releases()
            .iter()
            .map(|r| format!("-{}", r.revision.label()))
            .collect();
        rendered.extend(
            p.rendered
                .iter()
                .filter(|id| revisions.iter().any(|r| id.name.ends_with(r.as_str())))
                .filter(|id| matches!(id.kind.as_str(), "Deployment" | "HorizontalPodAutoscaler"))
                .cloned(),
        );
    }
    // (and the Gateways the waves relabel: live/ holds their label too, never the rest of them)
    let named: BTreeSet<ObjectId> = policy
        .waves
        .iter()
        .flat_map(|w| {
            w.namespaces
                .iter()
                .map(|n| namespace_id(n))
                .chain(w.gateways.iter().cloned())
        })
        .collect();
    let known = violations(
        &p.states[0],
        &Expectations {
            namespaces: &expected_all(policy, &p, 0),
        },
    );

    // Forward: replay every phase on state 0.
    let mut replay = vec![p.states[0].clone()];
    for (i, phase) in p.phases.iter().enumerate() {
        let mut s = replay[i].clone();
        let end = expected_all(policy, &p, i + 1);
        run_steps(&mut s, &phase.changes, &end, &known, &phase.dir);
        assert_eq!(s, p.states[i + 1], "{c:?}: replaying {}", phase.dir);
        replay.push(s);
    }

    // Phase N, then rollback N: back to the state before N; every phase before the uninstall
    // has one.
    let before_uninstall = p
        .phases
        .iter()
        .filter(|ph| ph.kind != PhaseKind::Uninstall)
        .count();
    assert_eq!(p.rollbacks.len(), before_uninstall, "{c:?}");
    for rb in &p.rollbacks {
        let n = rb.phase_index;
        let mut s = replay[n].clone();
        let end = expected_all(policy, &p, n - 1);
        run_steps(&mut s, &rb.changes, &end, &known, &rb.dir);
        assert_eq!(
            without_crds(&s),
            without_crds(&replay[n - 1]),
            "{c:?}: {} does not return to the state before its phase",
            rb.dir
        );
        for d in rb.deletes() {
            assert!(
                !replay[n - 1].objects.contains_key(&d.id),
                "{c:?}: {} deletes {}, which existed before its phase",
                rb.dir,
                d.id
            );
        }
    }

    // live/ at every promote point equals the replayed state restricted to what the plan
    // manages: whole objects, and the named namespaces with only the managed labels.
    let managed: BTreeSet<String> = p
        .phases
        .iter()
        .flat_map(|ph| ph.changes.iter())
        .filter_map(|ch| match ch {
            Change::Labels { set, remove, .. } => {
                Some(set.keys().chain(remove.iter()).cloned().collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect();
    let ctx = EmitContext {
        tool_version: "test".into(),
        gitops: Default::default(),
        jobs: TWO_JOBS,
    };
    for (n, state) in replay.iter().enumerate().skip(1) {
        let mut at = p.clone();
        at.promote = Some(n);
        let files = emit(&at, &describe(&at), layout(&at, TWO_JOBS).unwrap(), &ctx).unwrap();
        let mut live: BTreeMap<ObjectId, Object> = BTreeMap::new();
        for (path, text) in files.iter().filter(|(p, _)| p.starts_with("live/")) {
            if path == "live/Kustomization" {
                continue;
            }
            for o in parse_manifest(text, path).unwrap() {
                assert!(live.insert(o.id.clone(), o).is_none(), "{path}: twice");
            }
        }
        let owned: BTreeMap<&ObjectId, &Object> = state
            .objects
            .iter()
            .filter(|(id, _)| rendered.contains(*id) || named.contains(*id))
            .map(|(id, o)| (id, &**o))
            .collect();
        assert_eq!(
            live.keys().collect::<BTreeSet<_>>(),
            owned.keys().copied().collect::<BTreeSet<_>>(),
            "{c:?}: live/ after phase {n} holds other objects than the state"
        );
        for (id, o) in owned {
            let got = &live[id];
            if named.contains(id) || id.kind == "CustomResourceDefinition" {
                let annotations = got.body["metadata"]["annotations"].clone();
                assert_eq!(
                    (&annotations[ARGOCD_SYNC_OPTIONS], &annotations[FLUX_PRUNE]),
                    (&Value::from(ARGOCD_KEEP), &Value::from(FLUX_PRUNE_DISABLED)),
                    "{c:?}: live/ after {n}: {id} is not protected from pruning"
                );
            }
            if named.contains(id) {
                let want: BTreeMap<String, String> = o
                    .labels()
                    .into_iter()
                    .filter(|(k, _)| managed.contains(k))
                    .collect();
                assert_eq!(got.labels(), want, "{c:?}: live/ after {n}: {id}");
                let mut got = Value::Mapping(got.body.clone());
                without_git_metadata(&mut got);
                let meta = got.get("metadata").and_then(Value::as_mapping).unwrap();
                let identity = if id.namespace.is_some() { 3 } else { 2 };
                assert_eq!(meta.len(), identity, "{c:?}: {id} in live/ must be partial");
            } else {
                let mut want = Value::Mapping(as_stored(o).body);
                strip_nulls(&mut want);
                without_git_metadata(&mut want);
                let mut got = Value::Mapping(got.body.clone());
                without_git_metadata(&mut got);
                assert_eq!(got, want, "{c:?}: live/ after {n}: {id}");
            }
        }
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn live_rollback_and_injection_hold_for_generated_policies(c in case()) {
        check(&c);
    }
}

/// A generated cluster around the case's waves: owners' labels, annotations and last-applied
/// configurations on every namespace, 0 to 2 workloads in each (some opted out of injection),
/// a namespace outside the mesh, optionally one more on the old revision that no wave names,
/// and ConfigMaps of the users, in the app namespaces and in the control plane's.
#[derive(Debug, Clone)]
struct Cluster {
    workloads: Vec<Vec<bool>>,
    stray_on_old: bool,
    /// Gateway API Gateways of the cluster, each moved (or not) its own way.
    gateways: Vec<Gw>,
}

/// How a generated Gateway API Gateway selects its istiod, and so what moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gw {
    /// No label of its own, in the first namespace of wave `k`: moves with the namespace.
    InNamespaceOf(usize),
    /// Its own `istio.io/rev=<old>`, in namespace `edge`, listed in wave `k`'s `gateways`.
    Listed(usize),
    /// No label of its own, in the namespace that selects the moved tag (or, without a tag,
    /// in `quiet`, like `Default`).
    Tag,
    /// No label anywhere (namespace `quiet`): follows the default revision.
    Default,
    /// Its own `istio.io/rev=<old>` and listed nowhere: nothing moves it.
    Unlisted,
}

fn cluster() -> impl Strategy<Value = (Case, Cluster)> {
    case().prop_flat_map(|c| {
        let n: usize = c.waves.iter().sum();
        let waves = c.waves.len();
        let gw = (0usize..5, 0..waves).prop_map(|(mode, k)| match mode {
            0 => Gw::InNamespaceOf(k),
            1 => Gw::Listed(k),
            2 => Gw::Tag,
            3 => Gw::Default,
            _ => Gw::Unlisted,
        });
        (
            Just(c),
            prop::collection::vec(prop::collection::vec(any::<bool>(), 0..=2), n),
            any::<bool>(),
            prop::collection::vec(gw, 0..=3),
        )
            .prop_map(|(c, workloads, stray_on_old, gateways)| {
                (
                    c,
                    Cluster {
                        workloads,
                        stray_on_old,
                        gateways,
                    },
                )
            })
    })
}

/// The namespace and name of generated Gateway `i`, and its own `istio.io/rev` label.
fn gateway_place(policy: &Policy, gw: Gw, i: usize) -> (String, String, Option<String>) {
    let old = policy.from.revision.label().to_string();
    let name = format!("gw{i}");
    match gw {
        Gw::InNamespaceOf(k) => (policy.waves[k].namespaces[0].clone(), name, None),
        Gw::Listed(_) | Gw::Unlisted => ("edge".into(), name, Some(old)),
        Gw::Tag if !policy.tags.is_empty() => ("tagged".into(), name, None),
        Gw::Tag | Gw::Default => ("quiet".into(), name, None),
    }
}

fn inventory_yaml(policy: &Policy, old: &Rendered, cl: &Cluster) -> String {
    let (key, value) = match policy.from.revision.name() {
        None => ("istio-injection", "enabled".to_string()),
        Some(r) => ("istio.io/rev", r.to_string()),
    };
    let mut items: Vec<serde_json::Value> = old
        .objects
        .iter()
        .filter(|o| matches!(o.id.kind.as_str(), "Deployment" | "ConfigMap"))
        .map(|o| serde_json::to_value(Value::Mapping(o.body.clone())).unwrap())
        .collect();
    let ns = |name: &str, labels: serde_json::Value| {
        let last = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels.clone(), "annotations": {"owner": "app-team"}}});
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name,
            "labels": labels, "uid": "1", "resourceVersion": "7",
            "annotations": {"owner": "app-team", "kubectl.kubernetes.io/last-applied-configuration": last.to_string()}},
            "status": {"phase": "Active"}})
    };
    let mut names: Vec<String> = policy
        .waves
        .iter()
        .flat_map(|w| w.namespaces.clone())
        .collect();
    if cl.stray_on_old {
        names.push("stray".into());
    }
    // A namespace that selects the tag the plan moves, in no wave: it moves with the tag.
    let tagged = policy.tags.first().map(|t| t.name.clone());
    if tagged.is_some() {
        names.push("tagged".into());
    }
    // In ambient mode: a namespace served by ztunnel, in no wave (it follows ztunnel).
    let ambient = policy.from.version.minor >= 24
        && old
            .objects
            .iter()
            .any(|o| o.id.kind == "DaemonSet" && o.id.name == "ztunnel");
    if ambient {
        names.push("amb".into());
    }
    for (i, name) in names.iter().enumerate() {
        let mut labels = match &tagged {
            Some(t) if name == "tagged" => {
                serde_json::json!({"istio.io/rev": t, "team": format!("t{i}")})
            }
            _ if name == "amb" => serde_json::json!({"team": format!("t{i}")}),
            _ => serde_json::json!({key: value, "team": format!("t{i}")}),
        };
        // The ambient namespace, and the first of the waves too: a namespace labelled for both
        // gets sidecars (ambient does not capture them), so it moves with its wave.
        if ambient && (name == "amb" || i == 0) {
            labels["istio.io/dataplane-mode"] = "ambient".into();
        }
        items.push(ns(name, labels));
        items.push(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": name}, "data": {"a": "b"}}));
        let workloads = if name == "tagged" || name == "amb" {
            vec![false]
        } else {
            cl.workloads.get(i).cloned().unwrap_or_default()
        };
        for (j, opted_out) in workloads.iter().enumerate() {
            let mut labels = serde_json::json!({"app": format!("app{j}")});
            if *opted_out {
                labels["sidecar.istio.io/inject"] = "false".into();
            }
            items.push(serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("app{j}"), "namespace": name, "generation": 2},
                "spec": {"template": {"metadata": {"labels": labels, "annotations": {"owner": "app-team"}},
                    "spec": {"containers": [{"name": "app", "image": "app"}]}}},
                "status": {"replicas": 1}}));
        }
    }
    items.push(ns("quiet", serde_json::json!({"team": "sre"})));
    items.push(ns("edge", serde_json::json!({"team": "edge"})));
    for (i, gw) in cl.gateways.iter().enumerate() {
        let (namespace, name, own) = gateway_place(policy, *gw, i);
        let mut metadata = serde_json::json!({"name": name, "namespace": namespace});
        if let Some(r) = own {
            metadata["labels"] = serde_json::json!({"istio.io/rev": r});
        }
        let class = if i % 2 == 0 {
            "istio"
        } else {
            "istio-waypoint"
        };
        items.push(
            serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": metadata, "spec": {"gatewayClassName": class,
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        );
    }
    items.push(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "team-settings", "namespace": "istio-system"}, "data": {"a": "b"}}));
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// What the owners set and the plan must never change: a namespace's labels but the injection
/// ones, and all its annotations; a workload's whole body but the pod template's restart
/// annotation and revision label; every other object of the inventory, whole.
fn owned_fields(o: &Object) -> Value {
    let mut v = Value::Mapping(o.body.clone());
    if o.id.kind == "Namespace" {
        if let Some(Value::Mapping(l)) = v["metadata"].get_mut("labels") {
            for k in ["istio.io/rev", "istio-injection"] {
                l.remove(k);
            }
        }
    }
    if o.id.kind == "Gateway" {
        if let Some(Value::Mapping(l)) = v["metadata"].get_mut("labels") {
            l.remove("istio.io/rev");
        }
    }
    if o.id.kind == "Deployment" {
        if let Some(Value::Mapping(t)) = v["spec"]["template"].get_mut("metadata") {
            if let Some(Value::Mapping(a)) = t.get_mut("annotations") {
                a.remove(RESTART_ANNOTATION);
            }
            if let Some(Value::Mapping(l)) = t.get_mut("labels") {
                l.remove("istio.io/rev");
            }
        }
    }
    v
}

/// Which revision's sidecar a pod of workload `o` gets in state `s`, evaluated here (not by the
/// planner's code): exactly one injector, leading to one revision.
fn runs(s: &ClusterState, o: &Object) -> Option<String> {
    let ns = s
        .labels(&namespace_id(o.id.namespace.as_deref().unwrap()))
        .unwrap();
    let pod: BTreeMap<String, String> = o.body["spec"]["template"]["metadata"]["labels"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_string(),
                        v.as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    match s.injectors(&ns, &pod).as_slice() {
        [one] => match &one.target {
            istio_canary::mesh::Target::Revision(r) => Some(r.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn check_inventory(c: &Case, cl: &Cluster) {
    let mut policy = load(c);
    let all = renders(&policy);
    let old = &all[0];
    let text = inventory_yaml(&policy, old, cl);
    policy.inventory = Some(InventoryFile {
        path: "inventory.yaml".into(),
        declared: "inventory.yaml".into(),
        sha256: String::new(),
        inventory: istio_canary::inventory::parse(text.as_bytes(), Path::new("inventory.yaml"))
            .unwrap(),
    });
    // `stray` is in no wave. Labelled `istio-injection=enabled` (an unrevisioned old install)
    // it follows the default and moves with the default tag when the plan moves it; otherwise
    // it stays on the old revision, which the plan may then not delete.
    // (Every hop but the last deletes its old revision.)
    let follows = c.old_default && c.default_tag;
    let old_deleted = c.uninstall_old || c.hops > 1;
    if cl.stray_on_old && old_deleted && !follows {
        match plan(&policy, &all.iter().collect::<Vec<_>>(), TWO_JOBS) {
            Err(Refusal::Forgotten { namespaces, .. }) => {
                assert_eq!(namespaces, vec!["stray".to_string()], "{c:?} {cl:?}");
            }
            other => panic!("{c:?} {cl:?}: a namespace left on the deleted revision: {other:?}"),
        }
        return;
    }
    // Gateways: a wave's `gateways` lists its own; what istiod programs each is decided here,
    // from Istio's rule, not by the planner. A Gateway that keeps its own label of the old
    // revision is left with no istiod when that revision goes. An unrevisioned old istiod's
    // revision is `default`: it keeps taking what selects nothing (or `default`) after the
    // default tag has moved, so such a Gateway would be programmed twice.
    let mut refused = BTreeSet::new();
    for (i, gw) in cl.gateways.iter().enumerate() {
        let (namespace, name, _) = gateway_place(&policy, *gw, i);
        let id = ObjectId {
            group: "gateway.networking.k8s.io".into(),
            kind: "Gateway".into(),
            namespace: Some(namespace),
            name,
        };
        if let Gw::Listed(k) = gw {
            policy.waves[*k].gateways.push(id.clone());
        }
        let selects_default =
            matches!(gw, Gw::Default | Gw::Unlisted) || (*gw == Gw::Tag && policy.tags.is_empty());
        if (*gw == Gw::Unlisted && old_deleted) || (follows && selects_default) {
            refused.insert(id);
        }
    }
    if !refused.is_empty() {
        match plan(&policy, &all.iter().collect::<Vec<_>>(), TWO_JOBS) {
            Err(Refusal::UnsafePhase {
                violation: Violation::GatewayOwners { gateway, .. },
                ..
            }) => assert!(refused.contains(&gateway), "{c:?} {cl:?}: {gateway}"),
            other => panic!("{c:?} {cl:?}: a Gateway left without exactly one istiod: {other:?}"),
        }
        return;
    }
    let p = check_plan(c, &policy, &all.iter().collect::<Vec<_>>());
    // Every Gateway ends programmed by the istiod its mover leads to: the last revision when
    // something moves it, else the first.
    let last = p.states.last().unwrap();
    let new_end = p.hops.last().unwrap().to.revision.label().to_string();
    let old_start = policy.from.revision.label().to_string();
    for (i, gw) in cl.gateways.iter().enumerate() {
        let (namespace, name, _) = gateway_place(&policy, *gw, i);
        let o = last
            .istio_gateways()
            .find(|g| g.id.namespace.as_deref() == Some(&namespace) && g.id.name == name)
            .unwrap_or_else(|| panic!("{c:?} {cl:?}: {namespace}/{name} is gone"));
        let moved = match gw {
            Gw::Default => c.default_tag,
            Gw::Tag => !policy.tags.is_empty() || c.default_tag,
            Gw::Unlisted => false,
            _ => true,
        };
        // What nothing moves keeps the istiod it had before the upgrade: the old revision, or
        // none at all when nothing was the default revision then (a warning of state 0).
        let want = if moved {
            vec![new_end.clone()]
        } else {
            p.states[0].gateway_owners(&p.states[0].objects[&o.id])
        };
        assert!(
            want.len() == 1 || !moved,
            "{c:?} {cl:?}: {namespace}/{name}"
        );
        assert!(
            want.is_empty() || moved || want == [old_start.clone()],
            "{c:?} {cl:?}: {namespace}/{name}"
        );
        assert_eq!(
            last.gateway_owners(o),
            want,
            "{c:?} {cl:?}: {namespace}/{name}"
        );
    }
    let inventory = &policy.inventory.as_ref().unwrap().inventory;
    let users: Vec<&Object> = inventory
        .objects
        .iter()
        .filter(|o| !old.objects.iter().any(|r| r.id == o.id))
        .collect();
    let mut ends: Vec<(String, ClusterState)> = p
        .states
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("state {i}"), s.clone()))
        .collect();
    for rb in &p.rollbacks {
        let mut s = p.states[rb.phase_index].clone();
        for ch in &rb.changes {
            s.apply(ch);
        }
        ends.push((rb.dir.clone(), s));
    }
    for (what, s) in &ends {
        for u in &users {
            let got = s
                .objects
                .get(&u.id)
                .unwrap_or_else(|| panic!("{c:?} {cl:?}: {what}: {} deleted", u.id));
            assert_eq!(
                owned_fields(got),
                owned_fields(&as_stored(&istio_canary::istio::normalize(u))),
                "{c:?} {cl:?}: {what}: {} lost what its owner set",
                u.id
            );
        }
    }
    // Every workload runs the sidecar of the revision its last restart met: every injected
    // workload of a wave ends on the new revision, and after an uninstall none runs the deleted
    // revision's.
    let old_rev = policy.from.revision.label().to_string();
    let new_rev = policy.to.revision.label().to_string();
    let mut running: BTreeMap<ObjectId, Option<String>> = users
        .iter()
        .filter(|o| o.id.kind == "Deployment")
        .map(|o| {
            (
                o.id.clone(),
                runs(&p.states[0], &p.states[0].objects[&o.id]),
            )
        })
        .collect();
    for ph in &p.phases {
        for ch in &ph.changes {
            if let Change::Template { id, .. } = ch {
                let s = &p.states[ph.index];
                running.insert(id.clone(), runs(s, &s.objects[id]));
            }
        }
    }
    for (id, r) in &running {
        let before = runs(&p.states[0], &p.states[0].objects[id]);
        let moved = id.namespace.as_deref() != Some("stray") || follows;
        if before.is_some() && moved {
            assert_eq!(
                r.as_deref(),
                Some(new_rev.as_str()),
                "{c:?} {cl:?}: {id} was not moved"
            );
        }
        if before.is_some() && !moved {
            assert_eq!(
                r, &before,
                "{c:?} {cl:?}: {id} moved though nothing moves it"
            );
        }
        if c.uninstall_old {
            assert_ne!(
                r.as_deref(),
                Some(old_rev.as_str()),
                "{c:?} {cl:?}: {id} left on the deleted revision"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_inventories_keep_what_owners_set_and_move_every_user(
        (c, cl) in cluster()
    ) {
        check_inventory(&c, &cl);
    }
}

/// An old revision that already had the default tag and `istiod-default-validator` (an install
/// made with `values.defaultRevision`): the default-tag phase changes them, so its rollback must
/// re-apply the old revision's versions (istio#43227: a validator left on the abandoned revision
/// rejects all config), never delete them.
#[test]
fn rollback_puts_an_existing_default_tag_and_validator_back() {
    for gateways in [false, true] {
        let c = Case {
            hops: 1,
            tag_after: None,
            tag_in_wave: false,
            waves: vec![2],
            old_default: false,
            default_tag: true,
            uninstall_old: true,
            old_gateways: gateways,
            new_gateways: gateways,
            agents: Agents::None,
        };
        let policy = load(&c);
        let old = render(&policy, 0, true);
        let new = render(&policy, 1, true);
        let p = check_plan(&c, &policy, &[&old, &new]);
        let tag_phase = p
            .phases
            .iter()
            .find(|ph| ph.kind == PhaseKind::DefaultTag)
            .unwrap();
        let rb = p
            .rollbacks
            .iter()
            .find(|rb| rb.phase_index == tag_phase.index)
            .unwrap();
        for name in ["istiod-default-validator", "istio-revision-tag-default"] {
            let before = p.states[tag_phase.index - 1]
                .objects
                .values()
                .find(|o| o.id.name == name)
                .map(|o| &**o)
                .unwrap_or_else(|| panic!("the old install has no {name}"));
            let reapplied = rb.changes.iter().find_map(|ch| match ch {
                Change::Apply(o) if o.id.name == name => Some(o),
                _ => None,
            });
            assert_eq!(
                reapplied,
                Some(before),
                "{name} must go back to the old revision"
            );
            assert!(rb.deletes().all(|d| d.id.name != name), "{name} deleted");
        }
    }
}

/// The variants the generator may miss in 12 cases, each once.
#[test]
fn every_variant_once() {
    for bits in 0..32u32 {
        let b = |i: u32| bits & (1 << i) != 0;
        check(&Case {
            hops: 1,
            tag_after: None,
            tag_in_wave: false,
            waves: vec![1, 2],
            old_default: b(0),
            default_tag: b(1),
            uninstall_old: b(1) && b(2),
            old_gateways: b(3),
            new_gateways: b(4),
            agents: Agents::None,
        });
    }
}

/// Paths of two and three hops, each once with an unrevisioned and a revisioned old install
/// and gateways kept, dropped and added, whatever the generator draws.
#[test]
fn every_path_length_once() {
    for hops in [2, 3] {
        for (old_default, old_gateways, new_gateways) in [
            (false, true, true),
            (true, true, false),
            (false, false, true),
        ] {
            check(&Case {
                hops,
                tag_after: Some(usize::from(old_default)),
                tag_in_wave: old_default,
                waves: vec![1, 2],
                old_default,
                default_tag: true,
                uninstall_old: hops == 2,
                old_gateways,
                new_gateways,
                agents: Agents::None,
            });
        }
    }
}

/// istio-cni and ambient mode on paths of one to three hops, with and without gateways and an
/// inventory (ambient namespaces, a namespace labelled for both ambient and a revision), each
/// once: every node-agent phase comes right after its hop's install, istio-cni before ztunnel,
/// and no uninstall deletes them.
#[test]
fn node_agents_once_per_path_length() {
    for agents in [Agents::Cni, Agents::Ambient] {
        for hops in [1, 2, 3] {
            let c = Case {
                hops,
                tag_after: None,
                tag_in_wave: false,
                waves: vec![1, 2],
                old_default: hops == 2,
                default_tag: true,
                uninstall_old: true,
                old_gateways: hops != 1,
                new_gateways: hops != 1,
                agents,
            };
            let policy = load(&c);
            let all = renders(&policy);
            let p = check_plan(&c, &policy, &all.iter().collect::<Vec<_>>());
            for (h, _) in p.hops.iter().enumerate() {
                let kinds: Vec<PhaseKind> = p
                    .phases
                    .iter()
                    .filter(|ph| ph.hop == h)
                    .map(|ph| ph.kind)
                    .collect();
                let want: &[PhaseKind] = match agents {
                    Agents::Cni => &[PhaseKind::Crds, PhaseKind::Install, PhaseKind::Cni],
                    _ => &[
                        PhaseKind::Crds,
                        PhaseKind::Install,
                        PhaseKind::Cni,
                        PhaseKind::Ztunnel,
                    ],
                };
                assert_eq!(&kinds[..want.len()], want, "{c:?}: hop {h}");
            }
            let agent_ids: BTreeSet<ObjectId> = all[0]
                .objects
                .iter()
                .filter(|o| o.id.kind == "DaemonSet")
                .map(|o| o.id.clone())
                .collect();
            assert!(!agent_ids.is_empty(), "{c:?}");
            for ph in &p.phases {
                assert!(
                    ph.deletes().all(|d| !agent_ids.contains(&d.id)),
                    "{c:?}: {} deletes a node agent",
                    ph.dir
                );
            }
            check_inventory(
                &c,
                &Cluster {
                    workloads: vec![vec![true, false], vec![false], vec![]],
                    stray_on_old: false,
                    gateways: vec![Gw::InNamespaceOf(1), Gw::Default],
                },
            );
        }
    }
}

/// The refusals of the rollback simulation, shown on rollbacks the planner would never derive: a
/// default-tag rollback that leaves `istiod-default-validator` on the abandoned revision
/// (istio#43227), and install rollbacks that leave some of the new revision's objects behind.
#[test]
fn the_simulation_refuses_a_broken_rollback() {
    let c = Case {
        hops: 1,
        tag_after: None,
        tag_in_wave: false,
        waves: vec![1],
        old_default: false,
        default_tag: true,
        uninstall_old: true,
        old_gateways: false,
        new_gateways: false,
        agents: Agents::None,
    };
    let policy = load(&c);
    let old = render(&policy, 0, true);
    let new = render(&policy, 1, true);
    let p = plan(&policy, &[&old, &new], TWO_JOBS).unwrap();
    let known = violations(
        &p.states[0],
        &Expectations {
            namespaces: &expected(&policy, &p, 0),
        },
    );
    let refusal = |kind: PhaseKind, keep: &dyn Fn(&Change) -> bool| {
        let phase = p.phases.iter().find(|ph| ph.kind == kind).unwrap();
        let rb = &p.rollbacks[phase.index - 1];
        let broken: Vec<Change> = rb.changes.iter().filter(|ch| keep(ch)).cloned().collect();
        assert!(broken.len() < rb.changes.len(), "nothing was dropped");
        let n = phase.index;
        simulate_rollback(
            &rb.dir,
            &broken,
            &p.states[n - 1],
            &p.states[n],
            &expected(&policy, &p, n - 1),
            &known,
        )
        .unwrap_err()
        .to_string()
    };
    let validator = refusal(PhaseKind::DefaultTag, &|ch| {
        ch.id().name != "istiod-default-validator"
    });
    // Keeping the mesh config while deleting the istiod Service it names is a dangling reference.
    let dangling = refusal(
        PhaseKind::Install,
        &|ch| !matches!(ch, Change::Delete(d) if d.id.kind == "ConfigMap"),
    );
    // An EnvoyFilter left behind breaks no invariant: only the state comparison sees it.
    let left_behind = refusal(
        PhaseKind::Install,
        &|ch| !matches!(ch, Change::Delete(d) if d.id.kind == "EnvoyFilter"),
    );
    common::snapshot_settings().bind(|| {
        insta::assert_snapshot!("rollback-refusal-validator", validator);
        insta::assert_snapshot!("rollback-refusal-dangling", dangling);
        insta::assert_snapshot!("rollback-refusal-left-behind", left_behind);
    });
}

/// Canary gateways (`spec.gateways.mode: canary`, 1.28.0 -> 1.29.0): replayed, rolled back and
/// checked after every step like any plan, and each gateway Service selects the pods of the old
/// revision, then both, then the new one only, with a second Deployment in between and the old
/// one deleted by the uninstall.
#[test]
fn canary_gateways_move_the_service_to_the_new_pods_and_never_leave_it_without_any() {
    let sha = standin_sha256();
    let text = format!(
        "apiVersion: istio-canary.dev/v1alpha1\nkind: CanaryUpgrade\nmetadata:\n  name: prop\nspec:\n  istioOperator: gateways.yaml\n  from:\n    version: 1.28.0\n  to:\n    version: 1.29.0\n  istioctl:\n    \"1.28.0\": {{path: ../istioctl/istioctl-1.28.0, sha256: {sha}}}\n    \"1.29.0\": {{path: ../istioctl/istioctl-1.29.0, sha256: {sha}}}\n  gateways:\n    mode: canary\n    moveAfter: w0\n  waves:\n  - name: w0\n    namespaces: [ns0x0]\n  - name: w1\n    namespaces: [ns1x0]\n"
    );
    let path: PathBuf = fixtures().join("example/prop.yaml");
    let read =
        |_: &Path, _: u64| -> std::io::Result<Vec<u8>> { Ok(GATEWAYS_SPEC.as_bytes().to_vec()) };
    let policy = load_from(text.as_bytes(), &path, &read).unwrap();
    let all = renders(&policy);
    let c = Case {
        hops: 1,
        tag_after: None,
        tag_in_wave: false,
        waves: vec![1, 1],
        old_default: false,
        default_tag: true,
        uninstall_old: true,
        old_gateways: true,
        new_gateways: true,
        agents: Agents::None,
    };
    let p = check_plan(&c, &policy, &all.iter().collect::<Vec<_>>());
    let svc = ObjectId {
        group: String::new(),
        kind: "Service".into(),
        namespace: Some("istio-system".into()),
        name: "istio-ingressgateway".into(),
    };
    let revisions =
        |n: usize| -> Vec<String> { p.states[n].gateway_revisions(&svc).into_iter().collect() };
    let at = |kind: PhaseKind| p.phases.iter().find(|ph| ph.kind == kind).unwrap().index;
    let (canary, cutover) = (at(PhaseKind::Gateways), at(PhaseKind::GatewayCutover));
    assert_eq!(cutover, canary + 1);
    assert_eq!(revisions(canary - 1), ["1-28-0"]);
    assert_eq!(revisions(canary), ["1-28-0", "1-29-0"]);
    assert_eq!(revisions(cutover), ["1-29-0"]);
    assert_eq!(revisions(p.states.len() - 1), ["1-29-0"]);
    let deployment = |name: &str| ObjectId {
        group: "apps".into(),
        kind: "Deployment".into(),
        namespace: Some("istio-system".into()),
        name: name.into(),
    };
    let last = p.states.last().unwrap();
    assert!(!last
        .objects
        .contains_key(&deployment("istio-ingressgateway")));
    assert!(last
        .objects
        .contains_key(&deployment("istio-ingressgateway-1-29-0")));
    // The rollback of the cutover points the Service at both revisions again.
    let rb = p
        .rollbacks
        .iter()
        .find(|r| r.phase_index == cutover)
        .unwrap();
    let mut s = p.states[cutover].clone();
    for ch in &rb.changes {
        s.apply(ch);
    }
    assert_eq!(
        s.gateway_revisions(&svc).into_iter().collect::<Vec<_>>(),
        ["1-28-0", "1-29-0"]
    );
}

/// Canary gateways whose new Service selects a label only the new revision's pods carry: after
/// the canary phase it would send no traffic to the old pods, which the plan must refuse (the
/// Service must select both revisions until the cutover), naming the phase and the Service.
#[test]
fn canary_gateways_refuse_a_service_that_leaves_the_old_pods_before_the_cutover() {
    let sha = standin_sha256();
    let text = format!(
        "apiVersion: istio-canary.dev/v1alpha1\nkind: CanaryUpgrade\nmetadata:\n  name: prop\nspec:\n  istioOperator: gateways.yaml\n  from:\n    version: 1.28.0\n  to:\n    version: 1.29.0\n  istioctl:\n    \"1.28.0\": {{path: ../istioctl/istioctl-1.28.0, sha256: {sha}}}\n    \"1.29.0\": {{path: ../istioctl/istioctl-1.29.0, sha256: {sha}}}\n  gateways:\n    mode: canary\n  waves:\n  - name: w0\n    namespaces: [ns0x0]\n"
    );
    let path: PathBuf = fixtures().join("example/prop.yaml");
    let read =
        |_: &Path, _: u64| -> std::io::Result<Vec<u8>> { Ok(GATEWAYS_SPEC.as_bytes().to_vec()) };
    let policy = load_from(text.as_bytes(), &path, &read).unwrap();
    let mut all = renders(&policy);
    let version = Value::from("v2");
    for o in &mut all[1].objects {
        if o.id.name != "istio-ingressgateway" {
            continue;
        }
        let path: &[&str] = match o.id.kind.as_str() {
            "Service" => &["spec", "selector"],
            "Deployment" => &["spec", "template", "metadata", "labels"],
            _ => continue,
        };
        let mut at = &mut o.body;
        for key in path {
            at = at.get_mut(*key).and_then(Value::as_mapping_mut).unwrap();
        }
        at.insert("version".into(), version.clone());
    }
    match plan(&policy, &all.iter().collect::<Vec<_>>(), TWO_JOBS) {
        Err(e @ Refusal::GatewayServiceRevisions { .. }) => {
            let Refusal::GatewayServiceRevisions {
                at,
                service,
                expected,
                found,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(at.kind, PhaseKind::Gateways);
            assert_eq!(service.name, "istio-ingressgateway");
            assert_eq!(expected, &["1-28-0", "1-29-0"]);
            assert_eq!(found, &["1-29-0"]);
            let message = istio_canary::describe::refusal(&e).to_string();
            assert!(
                message.contains("Service istio-system/istio-ingressgateway would send traffic to the gateway pods of revision 1-29-0 instead of revision 1-28-0 + 1-29-0"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}
