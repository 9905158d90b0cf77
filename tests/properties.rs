//! Property: over generated policies and render variants (components on and off, gateways
//! renamed or dropped, tags present or not, revisioned or unrevisioned old installs), every plan
//! is either refused or safe after every phase, checked here independently of the planner's own
//! loop: every named namespace is injected by exactly one healthy injector of the revision its
//! wave says, no webhook calls a missing Service, and the injection table says one revision.
//!
//! Renders come from the stand-in istioctl, computed once per distinct input and cached.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use istio_canary::istio::Revision;
use istio_canary::manifest::parse_manifest;
use istio_canary::mesh::{violations, Expectations, Expected, Violation};
use istio_canary::plan::plan;
use istio_canary::policy::{load_from, Policy};
use istio_canary::render::Rendered;
use proptest::prelude::*;

/// The plans here are made on two threads (the rollbacks and injection tables in parallel), as
/// a compile on a machine of two cores or more makes them.
const TWO_JOBS: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(2) {
    Some(n) => n,
    None => std::num::NonZeroUsize::MIN,
};

fn standin(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/istioctl/istioctl-{version}"))
}

/// The IstioOperator spec of a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Spec {
    pilot: bool,
    base: bool,
    /// 0 = no ingress gateway, 1 = `istio-ingressgateway`, 2 = renamed `ingress-b`.
    ingress: u8,
    egress: bool,
}

impl Spec {
    fn text(self) -> String {
        let mut s = String::from(
            "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  profile: default\n  components:\n",
        );
        s += &format!("    pilot:\n      enabled: {}\n", self.pilot);
        s += &format!("    base:\n      enabled: {}\n", self.base);
        s += "    ingressGateways:\n";
        match self.ingress {
            0 => s += "    - name: istio-ingressgateway\n      enabled: false\n",
            1 => s += "    - name: istio-ingressgateway\n      enabled: true\n",
            _ => s += "    - name: ingress-b\n      enabled: true\n",
        }
        s += &format!(
            "    egressGateways:\n    - name: istio-egressgateway\n      enabled: {}\n",
            self.egress
        );
        s
    }
}

type Key = (Spec, &'static str, Option<String>, bool);
static RENDERS: Mutex<Option<HashMap<Key, String>>> = Mutex::new(None);

/// The stand-in's output for a spec, version, revision and whether the default tag is rendered.
fn render(spec: Spec, version: &'static str, revision: Option<String>, tags: bool) -> String {
    let key = (spec, version, revision.clone(), tags);
    if let Some(text) = RENDERS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .get(&key)
    {
        return text.clone();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("iop.yaml"), spec.text()).unwrap();
    let mut cmd = Command::new(standin(version));
    cmd.current_dir(dir.path())
        .args(["manifest", "generate", "-f", "iop.yaml"]);
    if let Some(r) = &revision {
        cmd.args(["--set", &format!("revision={r}")]);
        if tags {
            cmd.args(["--set", "values.revisionTags.[0]=default"])
                .args(["--set", &format!("values.defaultRevision={r}")]);
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    RENDERS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(key, text.clone());
    text
}

#[derive(Debug, Clone)]
struct Case {
    old_default: bool,
    old_spec: Spec,
    new_spec: Spec,
    default_tag: bool,
    uninstall: bool,
    waves: Vec<Vec<String>>,
    remove_egress: bool,
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.85),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(|(pilot, base, ingress, egress)| Spec {
            pilot,
            base,
            ingress,
            egress,
        })
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        prop_oneof![
            Just(Spec {
                pilot: true,
                base: true,
                ingress: 1,
                egress: true
            }),
            Just(Spec {
                pilot: true,
                base: true,
                ingress: 1,
                egress: false
            }),
        ],
        spec_strategy(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(1usize..3, 1..4),
        any::<bool>(),
    )
        .prop_map(
            |(old_default, old_spec, new_spec, default_tag, uninstall, sizes, remove_egress)| {
                let mut n = 0;
                let waves = sizes
                    .into_iter()
                    .map(|k| {
                        (0..k)
                            .map(|_| {
                                n += 1;
                                format!("ns{n}")
                            })
                            .collect()
                    })
                    .collect();
                Case {
                    old_default,
                    old_spec,
                    new_spec,
                    default_tag,
                    // defaultTag: false with uninstallOld: true is refused by the policy.
                    uninstall: uninstall && default_tag,
                    waves,
                    remove_egress,
                }
            },
        )
}

fn policy_text(c: &Case) -> String {
    let mut s = String::from("apiVersion: istio-canary.dev/v1alpha1\nkind: CanaryUpgrade\nmetadata:\n  name: prop\nspec:\n  istioOperator: new.yaml\n  from:\n    version: 1.13.5\n    istioOperator: old.yaml\n");
    if c.old_default {
        s += "    revision: default\n";
    }
    s += "  to:\n    version: 1.14.1\n  istioctl:\n";
    for v in ["1.13.5", "1.14.1"] {
        s += &format!(
            "    \"{v}\": {{path: istioctl-{v}, sha256: {}}}\n",
            "0".repeat(64)
        );
    }
    s += &format!(
        "  defaultTag: {}\n  uninstallOld: {}\n",
        c.default_tag, c.uninstall
    );
    if c.remove_egress {
        s += "  removeGateways: [istio-system/istio-egressgateway]\n";
    }
    s += "  waves:\n";
    for (i, w) in c.waves.iter().enumerate() {
        s += &format!("  - name: w{i}\n    namespaces: [{}]\n", w.join(", "));
    }
    s
}

fn rendered(version: &str, revision: Revision, text: &str) -> Rendered {
    Rendered {
        version: version.parse().unwrap(),
        revision,
        istio_namespace: "istio-system".into(),
        objects: parse_manifest(text, "istioctl manifest generate").unwrap(),
    }
}

/// The policy of a case, read from a string with its specs in memory, and its two renders.
fn inputs(c: &Case) -> Result<(Policy, Rendered, Rendered), istio_canary::error::Error> {
    let files: BTreeMap<PathBuf, String> = [
        (PathBuf::from("/p/old.yaml"), c.old_spec.text()),
        (PathBuf::from("/p/new.yaml"), c.new_spec.text()),
    ]
    .into();
    let read = |p: &Path, _: u64| {
        files
            .get(p)
            .map(|t| t.as_bytes().to_vec())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    };
    let policy = load_from(
        policy_text(c).as_bytes(),
        Path::new("/p/canary.yaml"),
        &read,
    )?;
    let old_rev = policy.from.revision.clone();
    let old_text = render(
        c.old_spec,
        "1.13.5",
        old_rev.name().map(str::to_string),
        false,
    );
    let new_text = render(c.new_spec, "1.14.1", Some("1-14-1".into()), c.default_tag);
    let old = rendered("1.13.5", old_rev, &old_text);
    let new = rendered("1.14.1", policy.to.revision.clone(), &new_text);
    Ok((policy, old, new))
}

fn check(c: &Case) -> Result<(), TestCaseError> {
    let (policy, old, new) =
        inputs(c).map_err(|e| TestCaseError::fail(format!("policy refused: {e}")))?;
    let old_rev = policy.from.revision.clone();
    let Ok(p) = plan(&policy, &[&old, &new], TWO_JOBS) else {
        // A refusal is an allowed outcome (exit 2).
        return Ok(());
    };
    prop_assert_eq!(p.states.len(), p.phases.len() + 1);
    // Independent check of every state at a phase boundary.
    let mut done_waves = 0;
    let state0_expect: Expected = c
        .waves
        .iter()
        .flatten()
        .map(|n| (n.clone(), Some(old_rev.label().to_string())))
        .collect();
    let start = violations(
        &p.states[0],
        &Expectations {
            namespaces: &state0_expect,
        },
    );
    for (i, state) in p.states.iter().enumerate() {
        if i > 0 && p.phases[i - 1].kind == istio_canary::plan::PhaseKind::Migrate {
            done_waves += 1;
        }
        let expect: Expected = c
            .waves
            .iter()
            .enumerate()
            .flat_map(|(wi, w)| {
                let rev = if wi < done_waves {
                    "1-14-1"
                } else {
                    old_rev.label()
                };
                w.iter().map(move |n| (n.clone(), Some(rev.to_string())))
            })
            .collect();
        let found: Vec<Violation> = violations(
            state,
            &Expectations {
                namespaces: &expect,
            },
        )
        .into_iter()
        .filter(|v| !start.contains(v))
        .collect();
        prop_assert!(
            found.is_empty(),
            "state {i} of an accepted plan is unsafe: {:?}",
            found
        );
    }
    for row in &p.injection {
        for (i, cell) in row.states.iter().enumerate() {
            prop_assert!(
                &**cell == "1-14-1" || &**cell == old_rev.label(),
                "namespace {} in state {i}: injected by `{cell}`",
                row.namespace
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, .. ProptestConfig::default() })]
    #[test]
    fn every_accepted_plan_is_safe_after_every_phase(c in case_strategy()) {
        check(&c)?;
    }
}

/// The example's shape (revisioned old install, every component, default tag, uninstall) with
/// these waves.
fn example_shape(waves: Vec<Vec<String>>) -> Case {
    let spec = Spec {
        pilot: true,
        base: true,
        ingress: 1,
        egress: true,
    };
    Case {
        old_default: false,
        old_spec: spec,
        new_spec: spec,
        default_tag: true,
        uninstall: true,
        waves,
        remove_egress: false,
    }
}

/// The generator reaches both outcomes: this guards the property against a generator (or a
/// planner) that refuses everything.
#[test]
fn the_example_shape_is_accepted() {
    let c = example_shape(vec![vec!["a".into()], vec!["b".into(), "c".into()]]);
    let (policy, old, new) = inputs(&c).unwrap();
    let p = plan(&policy, &[&old, &new], TWO_JOBS).unwrap();
    assert_eq!(p.phases.len(), 7);
    check(&c).unwrap();
}

/// Past 99 phases the directory numbers get a third digit, so `ls` order stays phase order.
#[test]
fn phase_directories_sort_in_phase_order_past_99_phases() {
    let c = example_shape((0..99).map(|i| vec![format!("ns{i}")]).collect());
    let (policy, old, new) = inputs(&c).unwrap();
    let p = plan(&policy, &[&old, &new], TWO_JOBS).unwrap();
    assert_eq!(p.phases.len(), 104);
    let dirs: Vec<&str> = p.phases.iter().map(|ph| ph.dir.as_str()).collect();
    let mut sorted = dirs.clone();
    sorted.sort();
    assert_eq!(dirs, sorted);
    assert_eq!(dirs[0], "001-crds");
    assert_eq!(dirs[103], "104-uninstall-1-13-5");
}
