//! The round trip: every file the tool writes reads back as the same values in a YAML 1.1 reader
//! (PyYAML, both its pure-Python and its libyaml loader) and in the project's reader (serde_yaml),
//! and each object file holds exactly the object the plan holds. The IstioOperator spec handed to
//! istioctl and a corpus of hostile scalars get the same check.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixtures, read_tree, run};
use istio_canary::cluster::{Change, Via};
use istio_canary::pipeline::CompileConfig;
use istio_canary::render::{operator_for, TagRequest};
use istio_canary::{compile, layout, policy, yamlout};
use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::{Mapping, Value};

/// Reads every file named on the command line with PyYAML and prints {path: [non-empty
/// documents]} as JSON. Both loaders must agree; a value JSON cannot hold (a timestamp) fails the script.
const PYYAML: &str = r#"
import json, os, sys, yaml
loaders = [yaml.SafeLoader]
if getattr(yaml, "__with_libyaml__", False):
    loaders.append(yaml.CSafeLoader)
    if os.environ.get("ROUNDTRIP_FAST"):
        loaders = [yaml.CSafeLoader]
out = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    reads = [list(yaml.load_all(text, Loader=loader)) for loader in loaders]
    for other in reads[1:]:
        if other != reads[0]:
            sys.exit("%s: PyYAML's pure-Python and libyaml loaders disagree" % path)
    out[path] = [doc for doc in reads[0] if doc is not None]
json.dump(out, sys.stdout)
"#;

/// PyYAML's reading of each file: path -> the list of its documents. `fast` uses only the
/// libyaml loader (when PyYAML has it), for megabytes of input.
fn pyyaml_with(paths: &[PathBuf], fast: bool) -> BTreeMap<String, Json> {
    let mut command = Command::new("python3");
    if fast {
        command.env("ROUNDTRIP_FAST", "1");
    }
    let out = command
        .arg("-c")
        .arg(PYYAML)
        .args(paths)
        .output()
        .expect("python3 (with PyYAML) is needed, as for the stand-in istioctl");
    assert!(
        out.status.success(),
        "PyYAML could not read the output: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn pyyaml(paths: &[PathBuf]) -> BTreeMap<String, Json> {
    pyyaml_with(paths, false)
}

/// serde_yaml's reading of a text: the list of its non-empty documents, as JSON values (empty
/// ones are skipped, as `parse_manifest` and the PyYAML script skip them).
fn serde_yaml_docs(text: &str) -> Json {
    let docs: Vec<Json> = serde_yaml::Deserializer::from_str(text)
        .map(|doc| serde_json::to_value(Value::deserialize(doc).unwrap()).unwrap())
        .filter(|doc| !doc.is_null())
        .collect();
    Json::Array(docs)
}

/// The first place two JSON values differ, as `path: left != right`, or None when equal.
fn difference(a: &Json, b: &Json, path: &str) -> Option<String> {
    if a == b {
        return None;
    }
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            let only_right = y.keys().filter(|k| !x.contains_key(*k));
            for key in x.keys().chain(only_right) {
                let here = format!("{path}.{key}");
                match (x.get(key), y.get(key)) {
                    (Some(l), Some(r)) => {
                        if let Some(d) = difference(l, r, &here) {
                            return Some(d);
                        }
                    }
                    (l, r) => return Some(format!("{here}: {l:?} != {r:?}")),
                }
            }
            None
        }
        (Json::Array(x), Json::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (l, r))| difference(l, r, &format!("{path}[{i}]"))),
        _ => Some(format!("{path}: {a:?} != {b:?}")),
    }
}

/// Asserts two readings are equal, naming the first difference.
fn assert_same(left: &Json, right: &Json, what: &str) {
    if let Some(d) = difference(left, right, "") {
        panic!("{what}: {d}");
    }
}

/// Writes `texts` to files in a temp dir and returns PyYAML's reading of each, in order.
fn pyyaml_texts(texts: &[String]) -> Vec<Json> {
    pyyaml_texts_with(texts, false)
}

fn pyyaml_texts_with(texts: &[String], fast: bool) -> Vec<Json> {
    let tmp = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let path = tmp.path().join(format!("{i}.yaml"));
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    let mut read = pyyaml_with(&paths, fast);
    paths
        .iter()
        .map(|p| read.remove(&p.to_string_lossy().into_owned()).unwrap())
        .collect()
}

fn scenario_policies() -> Vec<PathBuf> {
    let mut policies = vec![fixtures().join("example/canary.yaml")];
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures().join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path().join("canary.yaml"))
        .filter(|p| p.is_file())
        .collect();
    dirs.sort();
    policies.extend(dirs);
    policies
}

/// The identity of an object as written: (apiVersion, kind, namespace, name).
fn identity(doc: &Json) -> (String, String, String, String) {
    let s = |v: &Json| v.as_str().unwrap_or_default().to_string();
    (
        s(&doc["apiVersion"]),
        s(&doc["kind"]),
        s(&doc["metadata"]["namespace"]),
        s(&doc["metadata"]["name"]),
    )
}

fn check_scenario(policy: &Path) {
    let dir = policy.parent().unwrap();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bundles");
    let result = run(
        dir,
        &[
            "compile",
            "--policy",
            "canary.yaml",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(result.code, 0, "{name}: {}", result.stderr);
    let files = read_tree(&out);

    // Every file but the Markdown: PyYAML and serde_yaml read the same values.
    let yaml_files: Vec<&String> = files.keys().filter(|p| !p.ends_with(".md")).collect();
    let paths: Vec<PathBuf> = yaml_files.iter().map(|p| out.join(p)).collect();
    let read = pyyaml(&paths);
    let mut by_file = BTreeMap::new();
    for (rel, path) in yaml_files.iter().zip(&paths) {
        let ours = serde_yaml_docs(&files[*rel]);
        let theirs = &read[&path.to_string_lossy().into_owned()];
        assert_same(
            &ours,
            theirs,
            &format!("{name}: {rel} reads differently in serde_yaml and PyYAML (YAML 1.1)"),
        );
        by_file.insert((*rel).clone(), ours);
    }

    // Each object file holds the object the plan holds, and every planned object has a file.
    let compiled = compile(&CompileConfig {
        istioctl_timeout: std::time::Duration::from_secs(60),
        ..CompileConfig::new(policy.to_path_buf(), out.clone())
    })
    .unwrap();
    let mut expected = BTreeMap::new();
    let protection = layout::Protection::of(&compiled.plan);
    for phase in &compiled.plan.phases {
        for change in &phase.changes {
            let body = match change {
                // Objects are written in their Git form: nulls dropped, sync-wave and prune
                // annotations added (layout::Protection::git_form).
                Change::Apply(object) => {
                    serde_json::to_value(&protection.git_form(object.clone()).body).unwrap()
                }
                Change::Labels {
                    id,
                    api_version,
                    set,
                    via: Via::File,
                    ..
                } => {
                    let object = layout::label_patch_object(api_version, id, set);
                    serde_json::to_value(&protection.git_form(object).body).unwrap()
                }
                _ => continue,
            };
            expected.insert((phase.dir.clone(), identity(&body)), body);
        }
        for d in phase.deletes() {
            let mut metadata = serde_json::Map::new();
            metadata.insert("name".into(), Json::String(d.id.name.clone()));
            if let Some(ns) = &d.id.namespace {
                metadata.insert("namespace".into(), Json::String(ns.clone()));
            }
            let stub = serde_json::json!({
                "apiVersion": d.api_version, "kind": d.id.kind, "metadata": metadata,
            });
            expected.insert((phase.dir.clone(), identity(&stub)), stub);
        }
    }
    for (rel, docs) in &by_file {
        let Some((phase_dir, file)) = rel.split_once('/') else {
            continue;
        };
        // Only phase directories hold planned objects (argocd/, flux/ hold the GitOps manifests).
        if !file.ends_with(".yaml") || !phase_dir.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let [doc] = docs.as_array().unwrap().as_slice() else {
            panic!("{name}: {rel} holds more or less than one document");
        };
        let want = expected
            .remove(&(phase_dir.to_string(), identity(doc)))
            .unwrap_or_else(|| panic!("{name}: {rel} holds an object the plan does not"));
        assert_same(
            doc,
            &want,
            &format!("{name}: {rel} differs from the planned object"),
        );
    }
    let missing: Vec<_> = expected.keys().collect();
    assert!(
        missing.is_empty(),
        "{name}: planned but not written: {missing:?}"
    );
}

fn every_scenario_file_reads_the_same_in_yaml_1_1_and_1_2() {
    for policy in scenario_policies() {
        check_scenario(&policy);
    }
}

fn the_spec_handed_to_istioctl_reads_the_same_in_yaml_1_1_and_1_2() {
    let mut texts = Vec::new();
    let mut specs = Vec::new();
    for path in scenario_policies() {
        let policy = policy::load(&path).unwrap();
        for (side, tags) in [
            (&policy.from, TagRequest::default()),
            (
                &policy.to,
                TagRequest {
                    revision_tags: vec!["default".to_string()],
                    default_revision: true,
                },
            ),
        ] {
            let spec = operator_for(&side.operator.document, &side.revision, &tags);
            texts.push(yamlout::mapping_to_string(&spec).unwrap());
            specs.push(serde_json::to_value(&spec).unwrap());
        }
    }
    let read = pyyaml_texts(&texts);
    for ((text, spec), theirs) in texts.iter().zip(&specs).zip(&read) {
        let want = Json::Array(vec![spec.clone()]);
        assert_same(&want, theirs, &format!("PyYAML read of\n{text}"));
        assert_same(
            &want,
            &serde_yaml_docs(text),
            &format!("serde_yaml read of\n{text}"),
        );
    }
    // The hostile fixture's values arrive as the strings the user quoted.
    let hostile = texts
        .iter()
        .find(|t| t.contains("BASE60"))
        .expect("the yaml11-scalars spec");
    for line in [
        "        BOOL_ON: 'on'\n",
        "        BASE60: '1:20'\n",
        "        OCTAL: '0o17'\n",
        "        TILDE: '~'\n",
        "        'on': 'y'\n",
        "      istioNamespace: 'off'\n",
    ] {
        assert!(hostile.contains(line), "{line:?} not in\n{hostile}");
    }
}

/// Strings that some reader resolves to something else when written plain, and strings that
/// must stay plain; each is written as a value and as a key.
const CORPUS: &[&str] = &[
    "y",
    "Y",
    "yes",
    "Yes",
    "YES",
    "n",
    "N",
    "no",
    "No",
    "NO",
    "true",
    "True",
    "TRUE",
    "false",
    "False",
    "FALSE",
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
    "~",
    "null",
    "Null",
    "NULL",
    "",
    "0",
    "12",
    "-3",
    "+1",
    "0o17",
    "0O17",
    "017",
    "0x1F",
    "0X1F",
    "0x_1F",
    "0b101",
    "0B101",
    "0b1_0",
    "-0b101",
    "1_000",
    "1_",
    "1:20",
    "-1:20:30",
    "190:20:30",
    "1e3",
    "1E3",
    "1e+3",
    "1.5e-3",
    ".5",
    "1.",
    "-.5",
    ".inf",
    "-.Inf",
    "+.INF",
    ".nan",
    ".NaN",
    "1_0.5",
    "1:20.5",
    "6.8523015e+5",
    "685.230_15e+03",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10 -5",
    "2002-1-2",
    "<<",
    "=",
    "- a",
    "?",
    "? a",
    ":",
    ": a",
    ",a",
    "[a",
    "]a",
    "{a",
    "}a",
    "#a",
    "&a",
    "*a",
    "!a",
    "|a",
    ">a",
    "'a",
    "\"a",
    "%a",
    "@a",
    "`a",
    "a: b",
    "a #b",
    "a:",
    " a",
    "a ",
    "a\tb",
    "\u{1}",
    "\u{7f}",
    "\u{feff}a",
    "a\u{85}b",
    "a\u{2028}b",
    "a\u{2029}b",
    "a\rb",
    "a\r\nb",
    "---",
    "...",
    "--- a",
    "istio-system",
    "1.14.1",
    "1-14-1",
    "a:b",
    "a#b",
    "-a",
    ":a",
    "?a",
    "1.0.0",
    "docker.io/istio/pilot:1.14.1",
    "yess",
    "0xg",
    "_1",
    "2001-12-14x",
    "a'b",
    "a\"b",
    "ü",
    "😀",
    "a\nb",
    "a\nb\n",
    "a\nb\n\n",
    " a\nb",
    "\na",
    "a \nb",
    "\n",
    "\n\n",
    "a\\b",
    "\u{a0}",
    "\u{ad}x",
    "x\u{fffe}",
];

/// Fragments that the generated strings are made of.
const FRAGMENTS: &[&str] = &[
    "a",
    "istio",
    "-",
    "?",
    ":",
    " ",
    "#",
    "'",
    "\"",
    "\n",
    "\t",
    ",",
    "[",
    "]",
    "{",
    "}",
    "&",
    "*",
    "!",
    "|",
    ">",
    "%",
    "@",
    "`",
    "1",
    "0",
    "0x",
    "0o",
    "0b",
    "e",
    "E",
    ".",
    "_",
    "~",
    "+",
    "null",
    "true",
    "on",
    "yes",
    "No",
    "y",
    "<<",
    "=",
    "2001-12-14",
    "12:30",
    "ü",
    "😀",
    "\u{85}",
    "\u{2028}",
    "\u{feff}",
    "\u{1}",
    "\r",
    "---",
    "...",
    "\\",
    ".inf",
    ".nan",
];

/// The corpus, plus 3000 strings of up to five fragments from a fixed-seed generator.
fn hostile_strings() -> Vec<String> {
    let mut out: Vec<String> = CORPUS.iter().map(|s| s.to_string()).collect();
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Keys over 128 bytes are written as explicit `? key` entries.
    out.push("k".repeat(200));
    out.push(format!("{} on", "long key".repeat(20)));
    out.push(format!("{}\nsecond line", "x".repeat(150)));
    for _ in 0..3000 {
        let n = 1 + next() % 5;
        out.push(
            (0..n)
                .map(|_| FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize])
                .collect(),
        );
    }
    out
}

fn hostile_scalars_read_the_same_in_yaml_1_1_and_1_2() {
    let strings = hostile_strings();
    let mut values = Mapping::new();
    let mut keys = Mapping::new();
    for (i, s) in strings.iter().enumerate() {
        values.insert(Value::String(format!("v{i}")), Value::String(s.to_string()));
        keys.insert(Value::String(s.to_string()), Value::Number(i.into()));
    }
    let mut nested = Mapping::new();
    nested.insert(
        "list".into(),
        Value::Sequence(strings.iter().map(|s| Value::String(s.clone())).collect()),
    );
    nested.insert("values".into(), Value::Mapping(values.clone()));
    let floats: Vec<Value> = [1e16, 1.5e-7, -2.5e300, 0.1, 3.0, -0.0]
        .into_iter()
        .map(|f| Value::Number(f.into()))
        .collect();
    nested.insert("floats".into(), Value::Sequence(floats));
    let docs = [values, keys, nested];
    let texts: Vec<String> = docs
        .iter()
        .map(|m| yamlout::mapping_to_string(m).unwrap())
        .collect();
    let read = pyyaml_texts(&texts);
    for ((doc, text), theirs) in docs.iter().zip(&texts).zip(&read) {
        let want = Json::Array(vec![serde_json::to_value(doc).unwrap()]);
        assert_same(&want, theirs, "PyYAML (YAML 1.1)");
        assert_same(&want, &serde_yaml_docs(text), "serde_yaml (YAML 1.2)");
    }
}

/// The scenario outputs hold the hostile fixture's namespaces quoted, where kubectl would
/// otherwise read a boolean.
fn yaml11_fixture_namespaces_are_quoted() {
    let dir = fixtures().join("scenarios/yaml11-scalars");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bundles");
    let result = run(
        &dir,
        &[
            "compile",
            "--policy",
            "canary.yaml",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(result.code, 0, "{}", result.stderr);
    let files = read_tree(&out);
    let all: String = files.values().cloned().collect();
    for quoted in [
        "  namespace: 'off'\n",
        "  namespace: 'yes'\n",
        "  namespace: 'no'\n",
        "  name: 'on'\n",
        "  name: 'y'\n",
    ] {
        assert!(all.contains(quoted), "{quoted:?} missing");
    }
}

/// True if any string (key or value) in `v` is ambiguous written plain although serde_yaml
/// reads it plain as the string (so serde_yaml wrote it plain), or holds a character only YAML
/// 1.1 treats as a line break, or if `v` holds a float: the only places the writer may differ
/// from serde_yaml.
fn holds_ambiguous_scalar(v: &Value) -> bool {
    match v {
        Value::String(s) => {
            (yamlout::plain_is_ambiguous(s)
                && serde_yaml::from_str::<Value>(s).is_ok_and(|read| read.as_str() == Some(s)))
                || s.contains(['\r', '\u{85}', '\u{2028}', '\u{2029}'])
        }
        Value::Number(n) => n.is_f64(),
        Value::Sequence(seq) => seq.iter().any(holds_ambiguous_scalar),
        Value::Mapping(m) => m
            .iter()
            .any(|(k, v)| holds_ambiguous_scalar(k) || holds_ambiguous_scalar(v)),
        _ => false,
    }
}

/// Real istioctl output (the recorded goldens): every object is written byte for byte as
/// serde_yaml wrote it, unless it holds a scalar some reader would misread, and PyYAML reads
/// every written object back as the object.
fn recorded_istioctl_objects_are_written_as_serde_yaml_wrote_them() {
    let Some(dir) = common::recordings("writing every recorded object") else {
        return;
    };
    let mut goldens: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flat_map(|e| std::fs::read_dir(e.unwrap().path()).into_iter().flatten())
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".golden.yaml"))
        .collect();
    goldens.sort();
    assert!(goldens.len() >= 10, "{goldens:?}");
    let (mut texts, mut bodies) = (Vec::new(), Vec::new());
    let mut identical = 0;
    for golden in &goldens {
        let text = std::fs::read_to_string(golden).unwrap();
        for object in istio_canary::manifest::parse_manifest(&text, "golden").unwrap() {
            let ours = object.to_yaml().unwrap();
            if !holds_ambiguous_scalar(&Value::Mapping(object.body.clone())) {
                let theirs = serde_yaml::to_string(&object.body).unwrap();
                assert_eq!(ours, theirs, "{}: {}", golden.display(), object.id);
                identical += 1;
            }
            texts.push(ours);
            bodies.push(serde_json::to_value(&object.body).unwrap());
        }
    }
    assert!(
        identical * 10 > texts.len() * 9,
        "only {identical} of {} objects compared byte for byte",
        texts.len()
    );
    for ((text, body), theirs) in texts
        .iter()
        .zip(&bodies)
        .zip(pyyaml_texts_with(&texts, true))
    {
        assert_same(
            &Json::Array(vec![body.clone()]),
            &theirs,
            &format!("PyYAML read of\n{text}"),
        );
    }
}

tests!(
    every_scenario_file_reads_the_same_in_yaml_1_1_and_1_2,
    the_spec_handed_to_istioctl_reads_the_same_in_yaml_1_1_and_1_2,
    hostile_scalars_read_the_same_in_yaml_1_1_and_1_2,
    yaml11_fixture_namespaces_are_quoted,
    recorded_istioctl_objects_are_written_as_serde_yaml_wrote_them,
);
