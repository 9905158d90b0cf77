//! The stand-in istioctl (fixtures/istioctl) must render what the real istioctl rendered: for
//! every recording in `../shared/upstream-istioctl-output`, the stand-in of that release line,
//! given the same IstioOperator input, prints the same objects in the same order, with the same
//! API versions and labels, and the same webhooks (names, clientConfig, rules, selectors).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use istio_canary::manifest::{parse_manifest, value_at, Object};

use common::{fixtures, recordings};

/// Recording directory -> the stand-in versions that mirror it (the example's 1.27.0 and
/// 1.28.0 among them).
const MIRRORS: &[(&str, &str)] = &[
    ("1.13.0", "1.13.5"),
    ("1.14.0", "1.14.1"),
    ("1.17.0", "1.17.2"),
    ("1.20.0", "1.20.0"),
    ("1.24.0", "1.24.0"),
    ("1.24.0", "1.27.0"),
    ("1.24.0", "1.28.0"),
    ("1.30.0", "1.30.0"),
];

fn render(version: &str, input: &std::path::Path) -> Vec<Object> {
    let out = Command::new(fixtures().join(format!("istioctl/istioctl-{version}")))
        .args(["manifest", "generate", "-f"])
        .arg(input)
        .output()
        .expect("run the stand-in");
    assert!(
        out.status.success(),
        "stand-in {version}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_manifest(&String::from_utf8_lossy(&out.stdout), "stand-in").unwrap()
}

fn identity(o: &Object) -> String {
    format!("{} {}", o.api_version, o.id)
}

fn webhooks(o: &Object) -> Option<String> {
    value_at(&o.body, &["webhooks"]).map(|w| serde_yaml::to_string(w).unwrap())
}

fn stand_in_matches_every_recording() {
    let Some(dir) = recordings("comparing the stand-in with every recording") else {
        return;
    };
    let mut failures = Vec::new();
    for (recording, version) in MIRRORS {
        for case in ["all_on", "pilot_default"] {
            let golden_text =
                std::fs::read_to_string(dir.join(format!("{recording}/{case}.golden.yaml")))
                    .unwrap();
            let golden = parse_manifest(&golden_text, case).unwrap();
            let ours = render(version, &dir.join(format!("{recording}/{case}.input.yaml")));
            let label = format!("{recording}/{case} vs stand-in {version}");
            let g_ids: Vec<String> = golden.iter().map(identity).collect();
            let o_ids: Vec<String> = ours.iter().map(identity).collect();
            if g_ids != o_ids {
                failures.push(format!(
                    "{label}: objects differ\n  recorded: {g_ids:#?}\n  stand-in: {o_ids:#?}"
                ));
                continue;
            }
            let ours_by_id: BTreeMap<_, _> = ours.iter().map(|o| (o.id.clone(), o)).collect();
            for g in &golden {
                let o = ours_by_id[&g.id];
                if g.labels() != o.labels() {
                    failures.push(format!(
                        "{label}: labels of {} differ\n  recorded: {:?}\n  stand-in: {:?}",
                        g.id,
                        g.labels(),
                        o.labels()
                    ));
                }
                if webhooks(g) != webhooks(o) {
                    failures.push(format!(
                        "{label}: webhooks of {} differ\n--- recorded\n{}\n--- stand-in\n{}",
                        g.id,
                        webhooks(g).unwrap_or_default(),
                        webhooks(o).unwrap_or_default()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn stand_in_renders_revisions_and_tags_like_the_charts() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("iop.yaml");
    std::fs::write(&input, "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  revision: 1-14-1\n  values:\n    revisionTags: [default]\n    defaultRevision: 1-14-1\n").unwrap();
    let objects = render("1.14.1", &input);
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o.id.kind == kind && o.id.name == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let deploy = find("Deployment", "istiod-1-14-1");
    assert_eq!(deploy.label("istio.io/rev").as_deref(), Some("1-14-1"));
    let injector = find(
        "MutatingWebhookConfiguration",
        "istio-sidecar-injector-1-14-1",
    );
    let names: Vec<String> = match value_at(&injector.body, &["webhooks"]) {
        Some(serde_yaml::Value::Sequence(s)) => s
            .iter()
            .filter_map(|w| w.get("name").and_then(|n| n.as_str()).map(str::to_string))
            .collect(),
        _ => vec![],
    };
    assert_eq!(
        names,
        [
            "rev.namespace.sidecar-injector.istio.io",
            "rev.object.sidecar-injector.istio.io"
        ]
    );
    let tag = find("MutatingWebhookConfiguration", "istio-revision-tag-default");
    assert_eq!(tag.label("istio.io/tag").as_deref(), Some("default"));
    let tag_text = tag.to_yaml().unwrap();
    assert!(tag_text.contains("name: istiod-1-14-1"), "{tag_text}");
    assert!(
        tag_text.contains("namespace.sidecar-injector.istio.io"),
        "{tag_text}"
    );
    let validator = find("ValidatingWebhookConfiguration", "istiod-default-validator");
    assert!(
        validator.to_yaml().unwrap().contains("name: istiod-1-14-1"),
        "{}",
        validator.to_yaml().unwrap()
    );
    let gateway = find("Deployment", "istio-ingressgateway");
    assert_eq!(gateway.label("istio.io/rev").as_deref(), Some("1-14-1"));
}

/// The recordings hold no istio-cni or ztunnel object (their inputs disable istio-cni, which the
/// identity comparison above checks), but from 1.24 the recorded istiod names the ztunnel it
/// trusts to ask for certificates on behalf of the node's pods (`CA_TRUSTED_NODE_ACCOUNTS`,
/// `<namespace>/<service account>`): the stand-in's ztunnel for the same input, with
/// `components.ztunnel` enabled, must run as that account.
fn stand_in_ztunnel_runs_as_the_account_the_recorded_istiod_trusts() {
    let Some(dir) = recordings("comparing the stand-in's ztunnel with the recorded istiod") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (recording, version) in MIRRORS {
        let golden_text =
            std::fs::read_to_string(dir.join(format!("{recording}/all_on.golden.yaml"))).unwrap();
        let golden = parse_manifest(&golden_text, "all_on").unwrap();
        let trusted = golden
            .iter()
            .filter(|o| o.id.kind == "Deployment" && o.id.name == "istiod")
            .flat_map(|o| env_values(o, "CA_TRUSTED_NODE_ACCOUNTS"))
            .next();
        let Some(trusted) = trusted else {
            continue;
        };
        let input_text =
            std::fs::read_to_string(dir.join(format!("{recording}/all_on.input.yaml"))).unwrap();
        let mut input: serde_yaml::Value = serde_yaml::from_str(&input_text).unwrap();
        input["spec"]["components"]["ztunnel"] = serde_yaml::from_str("{enabled: true}").unwrap();
        let path = tmp.path().join(format!("{version}.yaml"));
        std::fs::write(&path, serde_yaml::to_string(&input).unwrap()).unwrap();
        let ours = render(version, &path);
        let ztunnel = ours
            .iter()
            .find(|o| o.id.kind == "DaemonSet" && o.id.name == "ztunnel")
            .unwrap_or_else(|| panic!("stand-in {version}: no ztunnel DaemonSet"));
        let account = value_at(
            &ztunnel.body,
            &["spec", "template", "spec", "serviceAccountName"],
        )
        .and_then(|v| v.as_str())
        .unwrap_or("");
        let runs_as = format!(
            "{}/{account}",
            ztunnel.id.namespace.as_deref().unwrap_or("")
        );
        assert_eq!(
            runs_as, trusted,
            "{recording} vs stand-in {version}: ztunnel's account"
        );
        assert!(
            ours.iter().any(|o| o.id.kind == "ServiceAccount"
                && format!("{}/{}", o.id.namespace.as_deref().unwrap_or(""), o.id.name) == trusted),
            "stand-in {version}: no ServiceAccount {trusted}"
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "the recordings from 1.24 on name ztunnel's account"
    );
}

/// The values of a container env variable of a workload.
fn env_values(o: &Object, name: &str) -> Vec<String> {
    let Some(serde_yaml::Value::Sequence(cs)) =
        value_at(&o.body, &["spec", "template", "spec", "containers"])
    else {
        return Vec::new();
    };
    cs.iter()
        .filter_map(|c| c.get("env").and_then(|e| e.as_sequence()))
        .flatten()
        .filter(|e| e.get("name").and_then(|n| n.as_str()) == Some(name))
        .filter_map(|e| e.get("value").and_then(|v| v.as_str()).map(str::to_string))
        .collect()
}

tests!(
    stand_in_matches_every_recording,
    stand_in_renders_revisions_and_tags_like_the_charts,
    stand_in_ztunnel_runs_as_the_account_the_recorded_istiod_trusts,
);
