//! `istio-canary schema`, the JSON Schema of `canary.yaml`, checked with python's jsonschema
//! (Draft 7, as editors read it) against the fixtures: every policy `policy::load` accepts
//! passes it, every fixture refused for its structure (an unknown or missing field, a wrong
//! type) fails it, and so do hand-broken copies of the example. Without python3 or jsonschema
//! the tests are reported `ignored (not run: …)` (`common::unavailable`); with `CI` set they
//! fail.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{fixture_dirs, fixtures, run};

/// Reads the schema (argv[1]) and {name: document} as JSON on stdin; prints {name: [error, …]}.
const VALIDATE: &str = r#"
import json, sys
try:
    import jsonschema
except ImportError:
    print("MISSING jsonschema")
    sys.exit(3)
with open(sys.argv[1], encoding="utf-8") as f:
    schema = json.load(f)
jsonschema.Draft7Validator.check_schema(schema)
validator = jsonschema.Draft7Validator(schema)
docs = json.load(sys.stdin)
out = {}
for name, doc in docs.items():
    out[name] = sorted(
        "/".join(str(p) for p in e.absolute_path) + ": " + e.message
        for e in validator.iter_errors(doc)
    )
json.dump(out, sys.stdout)
"#;

/// The schema as `istio-canary schema` prints it.
fn schema_text() -> String {
    let r = run(&fixtures(), &["schema"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "");
    r.stdout
}

/// Each document's schema errors (empty: valid), or None when the validator cannot run here.
fn schema_errors(
    docs: &BTreeMap<String, serde_json::Value>,
) -> Option<BTreeMap<String, Vec<String>>> {
    let tmp = tempfile::tempdir().expect("temp dir");
    let schema = tmp.path().join("canary.schema.json");
    std::fs::write(&schema, schema_text()).expect("write the schema");
    let child = Command::new("python3")
        .arg("-c")
        .arg(VALIDATE)
        .arg(&schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            common::unavailable(&format!("schema validation: python3 cannot run: {e}"));
            return None;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        serde_json::to_writer(&mut stdin, docs).expect("write the documents");
    }
    let out = child.wait_with_output().expect("wait for python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.starts_with("MISSING ") {
        common::unavailable("schema validation: the python module jsonschema is not installed");
        return None;
    }
    assert!(
        out.status.success(),
        "validator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_str(&stdout).expect("the validator's JSON"))
}

/// Every fixture policy: the example, the scenarios and the error cases.
fn fixture_policies() -> Vec<PathBuf> {
    let mut dirs = vec![fixtures().join("example")];
    dirs.extend(fixture_dirs("scenarios"));
    dirs.extend(fixture_dirs("errors"));
    dirs.extend(fixture_dirs("lint"));
    dirs.into_iter().map(|d| d.join("canary.yaml")).collect()
}

fn name_of(path: &Path) -> String {
    path.parent()
        .and_then(|p| p.strip_prefix(fixtures()).ok())
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// The policy as JSON, or None when it is no JSON document (a non-string key, not YAML).
fn as_json(text: &str) -> Option<serde_json::Value> {
    serde_yaml::from_str(text).ok()
}

/// Whether a schema error says that a text field holds a number in `doc`
/// (`spec/istioctl/1.14.1/sha256: 1.1e+63 is not of type 'string'`).
fn is_number_for_text(doc: &serde_json::Value, error: &str) -> bool {
    let Some((path, message)) = error.split_once(": ") else {
        return false;
    };
    let pointer = format!("/{path}");
    message.ends_with("is not of type 'string'")
        && doc
            .pointer(&pointer)
            .is_some_and(serde_json::Value::is_number)
}

fn the_schema_command_prints_a_draft_7_schema_of_the_policy() {
    let text = schema_text();
    assert!(text.ends_with("}\n"));
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["title"], "CanaryUpgrade");
    assert_eq!(
        schema["properties"]["apiVersion"]["const"],
        istio_canary::policy::API_VERSION
    );
    assert_eq!(
        schema["properties"]["kind"]["const"],
        istio_canary::policy::KIND
    );
    assert_eq!(schema["additionalProperties"], false);
    // Every field the example sets is described: editors complete them.
    let spec = &schema["definitions"]["Spec"]["properties"];
    for field in [
        "istioOperator",
        "from",
        "to",
        "waves",
        "istioctl",
        "defaultTag",
        "promote",
    ] {
        assert!(spec.get(field).is_some(), "spec.{field}");
    }
    assert_eq!(text, istio_canary::policy::json_schema());
}

fn every_policy_that_loads_passes_the_schema() {
    let mut docs = BTreeMap::new();
    for path in fixture_policies() {
        if istio_canary::policy::load(&path).is_err() {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a fixture");
        let doc =
            as_json(&text).unwrap_or_else(|| panic!("{}: loads but is no JSON", path.display()));
        docs.insert(name_of(&path), doc);
    }
    assert!(docs.len() > 40, "{} fixture policies load", docs.len());
    let Some(errors) = schema_errors(&docs) else {
        return;
    };
    // The one known difference: serde_yaml reads a plain scalar YAML resolves to a number as
    // text where the loader wants text, the schema (like an editor) does not; the README says
    // to quote such values.
    let refused: Vec<String> = errors
        .iter()
        .map(|(name, e)| {
            let other: Vec<&String> = e
                .iter()
                .filter(|line| !is_number_for_text(&docs[name], line))
                .collect();
            (name, other)
        })
        .filter(|(_, e)| !e.is_empty())
        .map(|(name, e)| format!("{name}: {e:?}"))
        .collect();
    assert!(
        refused.is_empty(),
        "the schema refuses policies that load:\n{}",
        refused.join("\n")
    );
}

fn every_fixture_refused_for_its_structure_fails_the_schema() {
    let mut docs = BTreeMap::new();
    for path in fixture_policies() {
        let Err(e) = istio_canary::policy::load(&path) else {
            continue;
        };
        let message = e.to_string();
        let structural = ["unknown field", "missing field", "invalid type"]
            .iter()
            .any(|m| message.contains(m));
        let bytes = std::fs::read(&path).expect("read a fixture");
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        if let (true, Some(doc)) = (structural, as_json(&text)) {
            docs.insert(name_of(&path), doc);
        }
    }
    assert!(docs.len() >= 2, "{docs:?}");
    let Some(errors) = schema_errors(&docs) else {
        return;
    };
    for (name, e) in errors {
        assert!(
            !e.is_empty(),
            "{name} is refused by the loader, not by the schema"
        );
    }
}

fn broken_policies_fail_the_schema_where_they_are_broken() {
    let example = std::fs::read_to_string(fixtures().join("example/canary.yaml")).expect("example");
    // (name, text edit, the path the schema error must name)
    let cases: [(&str, &str, &str, &str); 8] = [
        ("misspelled field", "  waves:", "  wave:", "spec"),
        (
            "wrong apiVersion",
            "istio-canary.dev/v1alpha1",
            "istio-canary.dev/v1",
            "apiVersion",
        ),
        (
            "unquoted version",
            "version: 1.28.0",
            "version: 1.28",
            "spec/to/version",
        ),
        (
            "boolean as text",
            "spec:\n",
            "spec:\n  defaultTag: maybe\n",
            "spec/defaultTag",
        ),
        (
            "unknown top-level field",
            "spec:\n",
            "status: {}\nspec:\n",
            "",
        ),
        (
            "a pin with both forms",
            "      sha256: ",
            "      platforms: {}\n      sha256: ",
            "spec/istioctl/1.27.0",
        ),
        (
            "a platform pin without its digest",
            "  istioctl:\n",
            "  istioctl:\n    \"1.0.0\": {platforms: {linux/amd64: {path: x}}}\n",
            "spec/istioctl/1.0.0/platforms/linux/amd64",
        ),
        (
            "promote zero",
            "spec:\n",
            "spec:\n  promote: 0\n",
            "spec/promote",
        ),
    ];
    let mut docs = BTreeMap::new();
    for (name, from, to, _) in cases {
        assert!(
            example.contains(from),
            "{name}: the example has no {from:?}"
        );
        let text = example.replacen(from, to, 1);
        // The loader refuses each too: the schema only says it earlier, in the editor.
        let policy = fixtures().join("example/canary.yaml");
        let loaded =
            istio_canary::policy::load_from(text.as_bytes(), &policy, &|p: &Path, _: u64| {
                std::fs::read(p)
            });
        assert!(loaded.is_err(), "{name}: the loader accepts it");
        let doc = as_json(&text).unwrap_or_else(|| panic!("{name}: not JSON"));
        docs.insert(name.to_string(), doc);
    }
    let Some(errors) = schema_errors(&docs) else {
        return;
    };
    for (name, _, _, at) in cases {
        let e = &errors[name];
        assert!(
            e.iter().any(|line| line.starts_with(&format!("{at}: "))),
            "{name}: {e:?}"
        );
    }
}

tests!(
    the_schema_command_prints_a_draft_7_schema_of_the_policy,
    every_policy_that_loads_passes_the_schema,
    every_fixture_refused_for_its_structure_fails_the_schema,
    broken_policies_fail_the_schema_where_they_are_broken,
);
