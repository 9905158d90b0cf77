//! `live/` at several promote points of the example: snapshotted whole with the root
//! `Kustomization`, and checked for what a GitOps user relies on (the root builds `live/`, the
//! `Kustomization` lists every file, nothing of the old revision after the uninstall, no nulls).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{combined, compile_into, fixtures, snapshot_settings};

fn compile(dir: &Path, extra: &[&str]) -> BTreeMap<String, String> {
    let tmp = tempfile::tempdir().unwrap();
    compile_into(dir, &tmp.path().join("bundles"), extra)
}

fn live_of(files: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    files
        .iter()
        .filter(|(p, _)| p.starts_with("live/") || *p == "Kustomization")
        .map(|(p, t)| (p.clone(), t.clone()))
        .collect()
}

fn plan_json(files: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::from_str(&files["plan.json"]).unwrap()
}

#[test]
fn live_at_several_promote_points_of_the_example() {
    let example = fixtures().join("example");
    // The same phase by index, zero-padded index and name; the last phase is the uninstall.
    for (promote, index, snapshot) in [
        ("02", 2, "promote-example-02-install"),
        ("migrate-rest", 4, "promote-example-04-migrate-rest"),
        ("7", 7, "promote-example-07-uninstall"),
    ] {
        let files = compile(&example, &["--promote", promote]);
        let plan = plan_json(&files);
        assert_eq!(plan["promote"]["index"], index, "{promote}");
        let live = live_of(&files);
        assert!(
            files["Kustomization"].contains("resources:\n- live\n"),
            "{promote}: the root must build live/"
        );
        // live/Kustomization lists exactly the other files of live/.
        let listed: Vec<&str> = files["live/Kustomization"]
            .lines()
            .filter_map(|l| l.strip_prefix("- "))
            .collect();
        let present: Vec<&str> = live
            .keys()
            .filter_map(|p| p.strip_prefix("live/"))
            .filter(|p| *p != "Kustomization")
            .collect();
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(sorted, present, "{promote}");
        for (path, text) in &live {
            assert!(
                !text.contains(": null") && !text.contains("- null"),
                "{promote}: {path} holds a null"
            );
        }
        let old_objects = live.keys().filter(|p| p.contains("1-27-0")).count();
        if index == 7 {
            assert_eq!(
                old_objects, 0,
                "{promote}: live/ after the uninstall still holds revision 1-27-0"
            );
        } else {
            assert!(
                old_objects > 0,
                "{promote}: both revisions run before the uninstall"
            );
        }
        snapshot_settings().bind(|| insta::assert_snapshot!(snapshot, combined(&live)));
    }
}

#[test]
fn the_flag_overrides_spec_promote_and_no_promote_builds_nothing() {
    let dir = fixtures().join("scenarios/promote-migrate");
    let files = compile(&dir, &[]);
    assert_eq!(plan_json(&files)["promote"]["dir"], "03-migrate-canary");
    let files = compile(&dir, &["--promote", "uninstall-1-13-5"]);
    assert_eq!(plan_json(&files)["promote"]["dir"], "07-uninstall-1-13-5");

    let files = compile(&fixtures().join("example"), &[]);
    assert!(files.keys().all(|p| !p.starts_with("live/")));
    assert!(
        files["Kustomization"].contains("\nresources: []\n"),
        "{}",
        files["Kustomization"]
    );
    assert!(plan_json(&files)["promote"].is_null());
}
